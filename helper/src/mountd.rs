//! fsvc-mountd, the mount service (issue 11): the helper binary started by
//! systemd under the name `fsvc-mountd`, once per connection of
//! `fsvc-mountd.socket` (`Accept=yes`, the connection on fd 3), modelled on
//! systemd-mountfsd's `MountImage`. One request, one answer, exit.
//!
//! Order, and why: refuse unless root (only systemd starts it; the file is
//! the helper, which may be installed setuid, so a user running it under
//! this name gets nothing); take and check the connection; learn the
//! caller from the socket (`SO_PEERCRED`, recorded by the kernel at
//! `connect`, so it cannot be swapped later; the message's content is never
//! an identity); receive the request ([`MountImage`], with its fds); judge
//! the caller with the user-mount policy (rule `users.detached` too); then
//! the helper's own mount path, detached ([`crate::mount_on`]); answer with
//! a [`Delivery`]: the mount fd, or an errno and a line.
//!
//! A source passed as an fd is used as that fd: the server's file request
//! is served by opening `/proc/self/fd/N` (the very file, no path resolved
//! again; the caller's filesystem ids are checked against it as for any
//! source), with the helper's `O_EXCL`/`flock` rules, and never with more
//! access than the passed fd had: a read-only fd makes a read-only mount.
//! With a user-namespace fd the mount is idmapped into that namespace
//! (`mount_setattr(MOUNT_ATTR_IDMAP)` on the detached mount, the server
//! opting into `FUSE_ALLOW_IDMAP`), only when the caller owns it (rule
//! `userns-owner`, checked with `NS_GET_OWNER_UID`, for root too).
//!
//! The caller's supplementary groups are not known to the service (it has
//! only `SO_PEERCRED`), so access granted through a group alone is refused,
//! which fails closed.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use fsvc_helper::cli::Target;
use fsvc_protocol::{
    Caller, Delivery, DetachedMount, ImageSource, MountImage, MOUNT_IMAGE_VERSION,
};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{getsockopt, setsockopt, sockopt, SockType};
use nix::sys::stat::{fstat, SFlag};
use nix::sys::time::TimeVal;

use crate::{failed, mount_on, policy, sys, usage, Failure, Job};

/// Runs one request of the service.
pub fn serve() -> Result<(), Failure> {
    if !nix::unistd::getuid().is_root() {
        return Err(usage(
            "fsvc-mountd is the mount service: systemd starts it as root for each connection of fsvc-mountd.socket; use fsvc-mount --detached instead",
        ));
    }
    let sock = activation()?;
    let creds = getsockopt(&sock, sockopt::PeerCredentials)
        .map_err(|e| failed(format!("cannot learn who is calling (SO_PEERCRED): {e}")))?;
    let caller = Caller {
        uid: creds.uid(),
        gid: creds.gid(),
        groups: Vec::new(),
    };
    // The service's own settings come from its unit (it runs as root).
    let root = Caller {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };
    let knobs = policy::knobs(&root, |k| std::env::var_os(k)).map_err(usage)?;
    let tv = TimeVal::new(
        i64::try_from(knobs.timeout.as_secs()).unwrap_or(i64::MAX),
        0,
    );
    setsockopt(&sock, sockopt::SendTimeout, &tv)
        .map_err(|e| failed(format!("cannot set a send timeout: {e}")))?;
    let answer = match fsvc_protocol::recv_msg::<MountImage>(sock.as_fd(), knobs.timeout) {
        Ok((req, fds)) => handle(&req, fds, &caller, &knobs, creds.pid()),
        Err(e) => Err(Failure {
            errno: libc::EPROTO,
            ..failed(format!("cannot read the request: {e}"))
        }),
    };
    let sent = match &answer {
        Ok((mount, what)) => fsvc_protocol::send_msg(
            sock.as_fd(),
            &Delivery::Mounted(what.clone()),
            &[mount.as_fd()],
        ),
        Err(f) => fsvc_protocol::send_msg(sock.as_fd(), &Delivery::Refused(f.refusal()), &[]),
    };
    crate::klog::info(&match &answer {
        Ok((_, what)) => format!(
            "fsvc-mountd: passed a detached mount of {} to uid {} (pid {})",
            what.source,
            caller.uid,
            creds.pid()
        ),
        Err(f) => format!(
            "fsvc-mountd: refused uid {} (pid {}): {}",
            caller.uid,
            creds.pid(),
            f.message
        ),
    });
    sent.map_err(|e| failed(format!("cannot answer the caller: {e}")))?;
    answer.map(drop)
}

/// The connection systemd passed (`LISTEN_PID`/`LISTEN_FDS=1`, fd 3), checked
/// to be an `AF_UNIX` `SOCK_SEQPACKET` socket.
fn activation() -> Result<OwnedFd, Failure> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    if pid.as_deref() != Some(&std::process::id().to_string()) || fds.as_deref() != Some("1") {
        return Err(usage(
            "fsvc-mountd expects one connection from systemd (LISTEN_PID, LISTEN_FDS=1; Accept=yes)",
        ));
    }
    let sock =
        sys::take_activation_fd().ok_or_else(|| failed("fd 3 (the connection) is not open"))?;
    match getsockopt(&sock, sockopt::SockType) {
        Ok(SockType::SeqPacket) => Ok(sock),
        Ok(other) => Err(failed(format!(
            "fd 3 is a {other:?} socket, not SOCK_SEQPACKET (ListenSequentialPacket=)"
        ))),
        Err(e) => Err(failed(format!("fd 3 is not a socket: {e}"))),
    }
}

/// Judges and serves one request.
fn handle(
    req: &MountImage,
    fds: Vec<OwnedFd>,
    caller: &Caller,
    knobs: &policy::Knobs,
    pid: i32,
) -> Result<(OwnedFd, DetachedMount), Failure> {
    if req.version != MOUNT_IMAGE_VERSION {
        return Err(Failure {
            errno: libc::EPROTO,
            ..failed(format!(
                "request version {} is not spoken here (this service speaks {MOUNT_IMAGE_VERSION})",
                req.version
            ))
        });
    }
    let user = policy::check_caller(caller).map_err(usage)?;
    if let Some(u) = &user {
        u.policy
            .check_detached()
            .map_err(|d| usage(d.to_string()))?;
    }
    let mut fds = fds.into_iter();
    let source_fd = match req.source {
        ImageSource::Fd => fds.next(),
        ImageSource::Path(_) => None,
    };
    let userns = match req.user_namespace {
        true => Some(
            fds.next()
                .ok_or_else(|| failed("the user namespace fd is missing"))?,
        ),
        false => None,
    };
    let mut options = req.options.clone();
    let mut read_only = req.read_only;
    let (open_path, shown_source) = match (&req.source, &source_fd) {
        (ImageSource::Path(p), _) => {
            if !p.starts_with('/') {
                return Err(Failure {
                    errno: libc::EINVAL,
                    ..usage(format!("the source path {p} must be absolute"))
                });
            }
            (p.clone(), p.clone())
        }
        (ImageSource::Fd, Some(fd)) => {
            read_only |= !source_fd_writable(fd)?;
            let open = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let shown = std::fs::read_link(&open)
                .map(|p| p.to_string_lossy().into_owned())
                .ok()
                .filter(|s| s.starts_with('/'))
                .unwrap_or_else(|| format!("(fd of pid {pid})"));
            (open, shown)
        }
        (ImageSource::Fd, None) => return Err(failed("the source fd is missing")),
    };
    if read_only {
        if !options.is_empty() {
            options.push(',');
        }
        options.push_str("ro");
    }
    let target = Target::Detached(format!("the caller (uid {}, pid {pid})", caller.uid));
    let job = Job {
        open_path: &open_path,
        shown_source,
        target: &target,
        fs_type: req.fs_type,
        options: &options,
        verbose: false,
        fake: false,
        userns: userns.as_ref().map(|fd| fd.as_fd()),
    };
    // `source_fd` stays open until the mount is made: the path opened is its
    // /proc/self/fd link.
    let made = mount_on(&job, caller, knobs, user.as_ref(), None);
    drop(source_fd);
    match made? {
        Some(m) => Ok(m),
        None => Err(failed("internal error: no detached mount was made")),
    }
}

/// Whether a passed source fd may be written (it was opened read-write);
/// refuses what is neither a block device nor a regular file, and write-only fds.
fn source_fd_writable(fd: &OwnedFd) -> Result<bool, Failure> {
    let st = fstat(fd).map_err(|e| failed(format!("cannot stat the source fd: {e}")))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFBLK && kind != SFlag::S_IFREG {
        return Err(Failure {
            errno: libc::ENOTBLK,
            ..failed("the source fd is neither a block device nor a regular file")
        });
    }
    let flags = fcntl(fd, FcntlArg::F_GETFL)
        .map_err(|e| failed(format!("cannot read the source fd's flags: {e}")))?;
    match OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE {
        OFlag::O_RDWR => Ok(true),
        OFlag::O_RDONLY => Ok(false),
        _ => Err(Failure {
            errno: libc::EBADF,
            ..failed("the source fd is open write-only; it must be readable")
        }),
    }
}
