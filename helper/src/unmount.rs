//! Unmounting an fsvc mount so that, when this returns, the server has
//! written everything and released the source (DESIGN.md step 8):
//! `fsvc-mount -u DIR`, and the umount(8) helper `/sbin/umount.fuse.fsvc`
//! (umount(8) runs `umount.<type>` for the type in mountinfo,
//! `fuse.fsvc.ext4`, and falls back to the name without the last
//! `.subtype`, so one helper serves ext2, ext3 and ext4).
//!
//! Why a helper: the mount is a plain FUSE mount, for which the kernel sends
//! no FUSE_DESTROY and `umount2(2)` returns as soon as the connection is
//! cut, while the server is still flushing (docs/design-notes.md,
//! "Unmount"). So this waits for the server itself:
//!
//! 1. pin DIR (`O_PATH`, looked up as the caller) and find its mountinfo
//!    entry by mount id; it must be an fsvc mount (`fuse.fsvc.*`), and a
//!    non-root caller's own (`user_id=` is theirs: rule `own-mounts-only`);
//! 2. find the servers: `fsvc-server` processes holding a `/dev/fuse` fd of
//!    the mount's FUSE connection (fdinfo's `fuse_connection:` is the
//!    mount's device number), each taken as a pidfd *before* the unmount
//!    (no pid reuse). Not by the source path, which names whatever the
//!    user makes it name by now; kernels before 6.12 do not show the
//!    connection, and there the source path is the fallback, but such a
//!    guess is never killed on a user's behalf;
//! 3. `umount2` through the pinned fd (`MNT_DETACH` for `-l`, `MNT_FORCE`
//!    for `-f`);
//! 4. wait for every pidfd, bounded by `[unmount] timeout_secs` of the
//!    policy (default 60 s). A server still running then is killed and the
//!    unmount reported failed (the data may be incomplete: run e2fsck);
//!    after a lazy unmount it is left to finish the files still open.
//!
//! Every outcome that needs attention goes to the kernel log as well, since
//! umount(8)'s caller (systemd, udisks) may not show stderr.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use fsvc_helper::cli::UnmountArgs;
use fsvc_helper::policy_file::{Denial, RULE_OWN_MOUNTS_ONLY};
use fsvc_protocol::Caller;
use nix::fcntl::{open, OFlag};
use nix::mount::{umount2, MntFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::{major, minor, stat, FileStat, Mode, SFlag};

use crate::mountinfo::{mount_id, read_mountinfo, MountEntry};
use crate::policy::{self, Knobs};
use crate::{failed, klog, sys, usage, utab, Failure};

/// Grace after a SIGKILL for the kernel to reap a killed server.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Pins DIR's parent (`O_PATH`, looked up as the caller) and returns it
/// with DIR's last component.
fn pin_parent(dir: &str, caller: &Caller) -> Result<(OwnedFd, String), Failure> {
    let trimmed = dir.trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        Some(("", n)) => ("/", n),
        Some((p, n)) => (p, n),
        None => (".", trimmed),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(usage(format!("{dir}: not a mountpoint")));
    }
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = policy::as_caller(caller, || open(Path::new(parent), flags, Mode::empty()))
        .map_err(|e| usage(format!("cannot open {parent}: {}", e.desc())))?;
    Ok((fd, name.to_string()))
}

/// The mount id and canonical path of what is mounted at `parent/name`
/// (the name not followed, looked up as the caller), through a
/// short-lived `O_PATH` fd.
fn mount_at(
    parent: &OwnedFd,
    name: &str,
    dir: &str,
    caller: &Caller,
) -> Result<(u64, String), Failure> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let fd = policy::as_caller(caller, || {
        nix::fcntl::openat(parent, name, flags, Mode::empty())
    })
    .map_err(|e| usage(format!("cannot open {dir}: {}", e.desc())))?;
    let id = mount_id(fd.as_fd()).map_err(failed)?;
    let here = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| failed(format!("cannot resolve {dir}: {e}")))?;
    Ok((id, here))
}

/// Whether an fd (a `/proc/PID/fd/N` entry) is open on the same file as
/// the source: the same device for block devices, the same inode for images.
fn same_file(fd_st: &FileStat, src: &FileStat) -> bool {
    let fmt = |st: &FileStat| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    match fmt(src) {
        SFlag::S_IFBLK => fmt(fd_st) == SFlag::S_IFBLK && fd_st.st_rdev == src.st_rdev,
        _ => fd_st.st_dev == src.st_dev && fd_st.st_ino == src.st_ino,
    }
}

/// A device number as the kernel encodes it inside (`MKDEV`: 12-bit major
/// above a 20-bit minor), which is how fdinfo prints `fuse_connection:`.
fn kernel_dev((major, minor): (u32, u32)) -> u64 {
    (u64::from(major) << 20) | u64::from(minor)
}

/// The `fuse_connection:` of an fdinfo text, when the kernel shows one
/// (a `/dev/fuse` fd; Linux 6.12 and later).
fn fuse_connection(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("fuse_connection:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A process serving the mount, and how that was established.
#[derive(Debug)]
struct Server {
    pid: i32,
    pidfd: OwnedFd,
    /// It holds this mount's FUSE connection (exact). Otherwise it only
    /// holds a file that the mount's source path names now: an old
    /// kernel's best guess, which a user can steer by changing what the
    /// path names, so it is waited for but never killed on a user's behalf.
    by_connection: bool,
}

/// Every `fsvc-server` (by `comm`, which the process title does not
/// change) serving `entry`: holding a `/dev/fuse` fd of the mount's FUSE
/// connection or, on kernels whose fdinfo does not name the connection,
/// holding the file the source names. Each is a pidfd taken *before* its
/// fds are inspected, and kept only if the process is still alive after,
/// so the inspected process is the pidfd's (its pid cannot be reused while
/// it has not been reaped).
fn servers_of(entry: &MountEntry) -> Vec<Server> {
    let conn = kernel_dev(entry.dev);
    let src = stat(entry.source.as_str()).ok();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() != "fsvc-server" {
            continue;
        }
        let Ok(pidfd) = sys::pidfd_open(pid) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let (mut by_connection, mut old_kernel, mut holds_source) = (false, false, false);
        for fd in fds.flatten() {
            let Ok(st) = stat(&fd.path()) else { continue };
            let is_fuse = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
                && (major(st.st_rdev), minor(st.st_rdev)) == FUSE_DEV;
            if is_fuse {
                let info = std::fs::read_to_string(format!(
                    "/proc/{pid}/fdinfo/{}",
                    fd.file_name().to_string_lossy()
                ))
                .unwrap_or_default();
                match fuse_connection(&info) {
                    Some(c) => by_connection |= c == conn,
                    None => old_kernel = true,
                }
            } else if let Some(src) = &src {
                holds_source |= same_file(&st, src);
            }
        }
        if (by_connection || (old_kernel && holds_source)) && !exited(&pidfd) {
            found.push(Server {
                pid,
                pidfd,
                by_connection,
            });
        }
    }
    found
}

/// `/dev/fuse`'s device number (misc major 10, minor 229).
const FUSE_DEV: (u64, u64) = (10, 229);

/// Whether the process of a pidfd has exited (the pidfd is readable).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Waits until every pidfd is readable (its process exited) or `deadline`;
/// returns the pids still running.
fn wait_exit(servers: &[Server], deadline: Instant) -> Vec<i32> {
    let mut pending: Vec<usize> = (0..servers.len()).collect();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds: Vec<PollFd<'_>> = pending
            .iter()
            .filter_map(|&i| servers.get(i))
            .map(|srv| PollFd::new(srv.pidfd.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = u16::try_from(left.as_millis().min(10_000)).unwrap_or(10_000);
        if poll(&mut fds, PollTimeout::from(ms)).is_err() {
            continue;
        }
        let done: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        pending = pending
            .into_iter()
            .zip(done)
            .filter_map(|(i, d)| (!d).then_some(i))
            .collect();
    }
    pending
        .into_iter()
        .filter_map(|i| servers.get(i).map(|srv| srv.pid))
        .collect()
}

/// The unmount deadline: the policy's `[unmount] timeout_secs` when the
/// file exists and parses, else the default; `FSVC_UNMOUNT_TIMEOUT_SECS`
/// for root (tests).
fn unmount_timeout(caller: &Caller, knobs: &Knobs) -> Duration {
    if let (true, Some(t)) = (policy::is_root(caller), knobs.unmount_timeout) {
        return t;
    }
    let secs = match policy::load_policy() {
        Ok(Some(p)) => p.unmount.timeout_secs,
        _ => fsvc_helper::policy_file::DEFAULT_UNMOUNT_TIMEOUT_SECS,
    };
    Duration::from_secs(secs)
}

/// `umount2` of `parent/name`: through the pinned parent and a last
/// component that is not followed (an fd on the mount itself would make it
/// busy). The mount id was checked through the same parent a moment ago;
/// between the two only the caller's own tree can change (its parent is
/// theirs or root's).
fn unmount_at(parent: &OwnedFd, name: &str, dir: &str, flags: MntFlags) -> Result<(), Failure> {
    nix::unistd::fchdir(parent)
        .map_err(|e| failed(format!("cannot enter the parent of {dir}: {e}")))?;
    let res = umount2(name, flags | MntFlags::UMOUNT_NOFOLLOW);
    let _ = nix::unistd::chdir("/");
    res.map_err(|e| match e {
        nix::errno::Errno::EBUSY => failed(format!(
            "{dir}: target is busy (files are open on it; close them, or use umount -l)"
        )),
        e => failed(format!("cannot unmount {dir}: {}", e.desc())),
    })
}

/// DIR holds a mount that is not fsvc's. umount(8) runs this helper for
/// one only when a utab line of ours outlived its mount at this target
/// (umount2(2) or `fusermount3 -u` removed that mount) and now matches
/// this one: the line goes, and for root (whose umount(8) would otherwise
/// have unmounted it) the mount is unmounted as umount(8) would have; a
/// user is told to run umount again, as this setuid helper unmounts no
/// one's mount but fsvc's.
fn not_fsvc(
    entry: &MountEntry,
    parent: &OwnedFd,
    name: &str,
    dir: &str,
    flags: MntFlags,
    caller: &Caller,
) -> Result<(), Failure> {
    let stale = utab::forget(None, &entry.mountpoint).unwrap_or(0) > 0;
    if stale && policy::is_root(caller) {
        return unmount_at(parent, name, dir, flags);
    }
    Err(usage(format!(
        "{dir} is not an fsvc mount (it is {}); use umount{}",
        entry.fstype,
        if stale {
            " (a stale fsvc line for it in /run/mount/utab, which made umount run this helper, was removed: run umount again)"
        } else {
            ""
        }
    )))
}

/// Runs the unmount per the module doc.
pub fn run(u: &UnmountArgs, caller: &Caller, knobs: &Knobs) -> Result<(), Failure> {
    let dir = &u.mountpoint;
    let (parent, name) = pin_parent(dir, caller)?;
    let (id, here) = mount_at(&parent, &name, dir, caller)?;
    let entry = read_mountinfo()
        .map_err(failed)?
        .into_iter()
        .find(|m| m.id == id)
        .filter(|m| m.mountpoint == here)
        .ok_or_else(|| usage(format!("{dir}: not mounted")))?;
    let mut mflags = MntFlags::empty();
    if u.lazy {
        mflags |= MntFlags::MNT_DETACH;
    }
    if u.force {
        mflags |= MntFlags::MNT_FORCE;
    }
    if !entry.is_fsvc() {
        return not_fsvc(&entry, &parent, &name, dir, mflags, caller);
    }
    if !policy::is_root(caller) && entry.user_id() != Some(caller.uid) {
        return Err(usage(format!(
            "{}",
            Denial {
                rule: RULE_OWN_MOUNTS_ONLY,
                detail: format!(
                    "{dir} was mounted by uid {}, not by you (uid {})",
                    entry
                        .user_id()
                        .map_or_else(|| "?".to_string(), |u| u.to_string()),
                    caller.uid
                ),
            }
        )));
    }
    let what = format!("{} on {}", entry.source, entry.mountpoint);
    // Found before the unmount: afterwards the server may be gone and its
    // pid reused. The pidfds refer to these processes whatever happens.
    let servers = servers_of(&entry);

    unmount_at(&parent, &name, dir, mflags)?;
    // umount(8) removes the line itself after we succeed; fsvc-mount -u
    // and a umount(8) that found no line have nobody else to do it.
    if let Err(e) = utab::forget(Some(id), &entry.mountpoint) {
        eprintln!("fsvc-mount: warning: unmounted {what}, but {e}");
    }

    if servers.is_empty() {
        let msg = format!(
            "unmounted {what}, but no server was serving it (it had died): the filesystem may not have been closed cleanly; check it with e2fsck -f {}",
            entry.source
        );
        klog::warn(&msg);
        eprintln!("fsvc-mount: {msg}");
        return Ok(());
    }
    let timeout = unmount_timeout(caller, knobs);
    let still = wait_exit(&servers, Instant::now() + timeout);
    if still.is_empty() {
        if u.verbose {
            println!("fsvc-mount: unmounted {what}; the server finished and released the source");
        }
        return Ok(());
    }
    if u.lazy {
        let msg = format!(
            "detached {what}; its server (pid {still:?}) keeps serving files that are still open and finishes when they are closed"
        );
        klog::info(&msg);
        if u.verbose {
            println!("fsvc-mount: {msg}");
        }
        return Ok(());
    }
    for srv in &servers {
        // Only a process known to serve this very mount, unless root asks.
        if still.contains(&srv.pid) && (srv.by_connection || policy::is_root(caller)) {
            let _ = sys::pidfd_send_signal(srv.pidfd.as_fd(), libc::SIGKILL);
        }
    }
    let survivors = wait_exit(&servers, Instant::now() + KILL_GRACE);
    let msg = format!(
        "the server (pid {still:?}) for {what} had not finished {} s after the unmount and was killed{}; the data may be incomplete: check it with e2fsck -f {}",
        timeout.as_secs(),
        if survivors.is_empty() {
            ""
        } else {
            " (it has not exited yet: it may be stuck in the device)"
        },
        entry.source
    );
    klog::error(&msg);
    Err(failed(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_connections() {
        // fdinfo of a /dev/fuse fd as Linux 6.18 prints it, and an older one.
        let new = "pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t89\nfuse_connection:\t41\n";
        let old = "pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t89\n";
        assert_eq!(fuse_connection(new), Some(41));
        assert_eq!(fuse_connection(old), None);
        let cases = [
            ((0, 41), 41),
            ((0, 1_048_575), 1_048_575),
            ((8, 1), (8 << 20) | 1),
        ];
        for (dev, want) in cases {
            assert_eq!(kernel_dev(dev), want, "{dev:?}");
        }
    }
}
