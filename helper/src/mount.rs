//! Making the FUSE mount (DESIGN.md step 6) and undoing it.
//!
//! New mount API first: `fsopen("fuse")`, `fsconfig` (source, subtype, fd,
//! rootmode, ids, flags), `FSCONFIG_CMD_CREATE`, `fsmount` with the VFS
//! attributes, `move_mount` onto the directory pinned at start (no path is
//! resolved again, so no symlink race). Kernels without it (`ENOSYS`) get
//! `mount(2)` with `fd=` onto `/proc/self/fd/<pinned>`, which also names the
//! pinned directory rather than a path.
//!
//! The kernel's fs_context error log is drained into the error message, so
//! "Unknown parameter" and friends reach the person.
//!
//! A detached mount (`--detached`, issue 11) stops before `move_mount`: the
//! `fsmount` fd is the mount, attached nowhere, and is handed to the caller.
//! It needs the new API (there is no `mount(2)` form of a detached mount).
//!
//! Invariant: a [`Mounted`] is the only way to undo a mount, and it refers
//! to the mount's root itself (the `fsmount` fd, or a handle checked to be
//! a FUSE root), so `detach` can never unmount something else.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use fsvc_protocol::{FsType, Refusal};
use nix::fcntl::{open, OFlag};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statfs::{fstatfs, FUSE_SUPER_MAGIC};

use crate::options::SbFlags;
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// `rootmode=` for FUSE: a directory (S_IFDIR, octal).
const FUSE_ROOTMODE: &str = "40000";
/// Most fs_context log lines kept in an error message.
const MAX_LOG_LINES: usize = 8;

/// The FUSE subtype: `fsvc.ext4`, so mountinfo's type is `fuse.fsvc.ext4`:
/// a person (and `findmnt -t`) sees the mount is fsvc's, and umount(8)
/// finds `/sbin/umount.fuse.fsvc` for it (docs/design-notes.md).
pub fn subtype(fs_type: FsType) -> String {
    format!("fsvc.{}", fs_type.name())
}

/// Everything the mount needs, decided before the server asked.
#[derive(Debug)]
pub struct MountPlan<'a> {
    /// The source as the user named it (shown as the mount source).
    pub source: &'a str,
    /// The mountpoint as named (for messages and the fallback's check).
    pub mountpoint: &'a str,
    /// The pinned mountpoint; `None` for a detached mount.
    pub dir: Option<BorrowedFd<'a>>,
    /// The fs type (the FUSE subtype).
    pub fs_type: FsType,
    /// MOUNT_ATTR_* to apply.
    pub attrs: u64,
    /// Superblock flags.
    pub sb: SbFlags,
    /// Mount read-only.
    pub read_only: bool,
    /// `default_permissions`.
    pub default_permissions: bool,
    /// `allow_other`.
    pub allow_other: bool,
    /// Caller's uid (`user_id=`).
    pub uid: u32,
    /// Caller's gid (`group_id=`).
    pub gid: u32,
    /// The caller is root (otherwise nosuid,nodev are forced).
    pub caller_is_root: bool,
}

/// A mount that exists; the handle refers to its root.
#[derive(Debug)]
pub struct Mounted {
    root: Option<OwnedFd>,
    /// The mount was attached nowhere (`root` is then the `fsmount` fd and
    /// the only reference to it).
    detached: bool,
    /// The `/dev/fuse` fd to send to the server.
    pub fuse: OwnedFd,
}

impl Mounted {
    /// A detached mount's fd (the caller's to attach), `None` for a mount
    /// made on a directory.
    pub fn into_detached(self) -> Option<OwnedFd> {
        if self.detached {
            self.root
        } else {
            None
        }
    }

    /// The new mount's id (mountinfo's first field), when its root is known.
    pub fn mount_id(&self) -> Option<u64> {
        self.root
            .as_ref()
            .and_then(|r| crate::mountinfo::mount_id(r.as_fd()).ok())
    }

    /// Lazily unmounts (MNT_DETACH): it never blocks on the FUSE server.
    /// Returns an error message when it could not.
    pub fn detach(self) -> Result<(), String> {
        if self.detached {
            // Closing the only fd of a mount attached nowhere destroys it.
            return Ok(());
        }
        let Some(root) = self.root else {
            return Err("cannot locate the mount to undo it".to_string());
        };
        // The magic link resolves to the mount's root, i.e. exactly our mount.
        let link = format!("/proc/self/fd/{}", root.as_raw_fd());
        umount2(link.as_str(), MntFlags::MNT_DETACH)
            .map_err(|e| format!("cannot undo the mount: {e}"))
    }
}

fn cstr(s: &str) -> Result<CString, Refusal> {
    CString::new(s).map_err(|_| Refusal {
        errno: libc::EINVAL,
        message: format!("{s:?} contains a NUL byte"),
    })
}

fn refusal_io(what: &str, e: &io::Error, log: &[String]) -> Refusal {
    let mut message = format!("{what}: {e}");
    if !log.is_empty() {
        message.push_str(" (kernel: ");
        message.push_str(&log.join("; "));
        message.push(')');
    }
    Refusal {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        message,
    }
}

/// Reads the fs_context log: one message per read() until ENODATA.
fn drain_log(fsfd: BorrowedFd<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut buf = [0u8; 1024];
    while lines.len() < MAX_LOG_LINES {
        match nix::unistd::read(fsfd, &mut buf) {
            Ok(n) if n > 0 => {
                let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                // Lines are "e fuse: ..." / "w ..." / "i ..."; keep the text.
                let text = text.get(2..).unwrap_or(&text).trim().to_string();
                lines.push(text);
            }
            _ => break,
        }
    }
    lines
}

/// Mounts per `plan`; on success returns the mount and the `/dev/fuse` fd.
pub fn mount(plan: &MountPlan<'_>) -> Result<Mounted, Refusal> {
    let fuse = open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
        Refusal {
            errno: e as i32,
            message: format!(
                "cannot open /dev/fuse: {} (is the fuse module loaded?)",
                e.desc()
            ),
        }
    })?;
    let mut attrs = plan.attrs;
    if plan.read_only {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    if !plan.caller_is_root {
        attrs |= MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    }
    match sys::fsopen(c"fuse", sys::FSOPEN_CLOEXEC) {
        Ok(fsfd) => new_api(plan, fsfd, fuse, attrs),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => match plan.dir {
            Some(dir) => legacy(plan, dir, fuse, attrs),
            None => Err(Refusal {
                errno: libc::ENOSYS,
                message:
                    "a detached mount needs the kernel's new mount API (fsopen, Linux 5.2 or later)"
                        .into(),
            }),
        },
        Err(e) => Err(refusal_io("fsopen(fuse) failed", &e, &[])),
    }
}

fn new_api(
    plan: &MountPlan<'_>,
    fsfd: OwnedFd,
    fuse: OwnedFd,
    attrs: u64,
) -> Result<Mounted, Refusal> {
    let fs = fsfd.as_fd();
    let fd_num = fuse.as_raw_fd().to_string();
    let (uid, gid) = (plan.uid.to_string(), plan.gid.to_string());
    let subtype = subtype(plan.fs_type);
    let strings: [(&std::ffi::CStr, &str); 6] = [
        (c"source", plan.source),
        (c"subtype", &subtype),
        (c"fd", &fd_num),
        (c"rootmode", FUSE_ROOTMODE),
        (c"user_id", &uid),
        (c"group_id", &gid),
    ];
    for (key, value) in strings {
        let v = cstr(value)?;
        sys::fsconfig_string(fs, key, &v).map_err(|e| {
            refusal_io(
                &format!("fsconfig {}={value} failed", key.to_string_lossy()),
                &e,
                &drain_log(fs),
            )
        })?;
    }
    let flags = [
        (c"default_permissions", plan.default_permissions),
        (c"allow_other", plan.allow_other),
        (c"ro", plan.read_only),
        (c"sync", plan.sb.sync),
        (c"dirsync", plan.sb.dirsync),
        (c"lazytime", plan.sb.lazytime),
    ];
    for (key, on) in flags {
        if on {
            sys::fsconfig_flag(fs, key).map_err(|e| {
                refusal_io(
                    &format!("fsconfig {} failed", key.to_string_lossy()),
                    &e,
                    &drain_log(fs),
                )
            })?;
        }
    }
    sys::fsconfig_create(fs)
        .map_err(|e| refusal_io("creating the FUSE superblock failed", &e, &drain_log(fs)))?;
    let mnt = sys::fsmount(fs, sys::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| refusal_io("fsmount failed", &e, &drain_log(fs)))?;
    let Some(dir) = plan.dir else {
        return Ok(Mounted {
            root: Some(mnt),
            detached: true,
            fuse,
        });
    };
    sys::move_mount_fds(mnt.as_fd(), dir).map_err(|e| {
        refusal_io(
            &format!("cannot attach the mount on {}", plan.mountpoint),
            &e,
            &drain_log(fs),
        )
    })?;
    Ok(Mounted {
        root: Some(mnt),
        detached: false,
        fuse,
    })
}

fn ms_flags(plan: &MountPlan<'_>, attrs: u64) -> MsFlags {
    use crate::sys::*;
    let mut f = MsFlags::empty();
    let pairs = [
        (MOUNT_ATTR_RDONLY, MsFlags::MS_RDONLY),
        (MOUNT_ATTR_NOSUID, MsFlags::MS_NOSUID),
        (MOUNT_ATTR_NODEV, MsFlags::MS_NODEV),
        (MOUNT_ATTR_NOEXEC, MsFlags::MS_NOEXEC),
        (MOUNT_ATTR_NODIRATIME, MsFlags::MS_NODIRATIME),
    ];
    for (attr, ms) in pairs {
        if attrs & attr != 0 {
            f |= ms;
        }
    }
    if attrs & MOUNT_ATTR_NOSYMFOLLOW != 0 {
        f |= MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);
    }
    f |= match attrs & MOUNT_ATTR_ATIME_MASK {
        MOUNT_ATTR_NOATIME => MsFlags::MS_NOATIME,
        MOUNT_ATTR_STRICTATIME => MsFlags::MS_STRICTATIME,
        _ => MsFlags::MS_RELATIME,
    };
    if plan.sb.sync {
        f |= MsFlags::MS_SYNCHRONOUS;
    }
    if plan.sb.dirsync {
        f |= MsFlags::MS_DIRSYNC;
    }
    if plan.sb.lazytime {
        f |= MsFlags::MS_LAZYTIME;
    }
    f
}

fn legacy(
    plan: &MountPlan<'_>,
    dir: BorrowedFd<'_>,
    fuse: OwnedFd,
    attrs: u64,
) -> Result<Mounted, Refusal> {
    let mut data = format!(
        "fd={},rootmode={FUSE_ROOTMODE},user_id={},group_id={}",
        fuse.as_raw_fd(),
        plan.uid,
        plan.gid
    );
    if plan.default_permissions {
        data.push_str(",default_permissions");
    }
    if plan.allow_other {
        data.push_str(",allow_other");
    }
    let target = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let fstype = format!("fuse.{}", subtype(plan.fs_type));
    nix::mount::mount(
        Some(plan.source),
        target.as_str(),
        Some(fstype.as_str()),
        ms_flags(plan, attrs),
        Some(data.as_str()),
    )
    .map_err(|e| {
        refusal_io(
            &format!("mount on {} failed", plan.mountpoint),
            &io::Error::from(e),
            &[],
        )
    })?;
    // There is no fd of the new mount's root; take one through the path and
    // keep it only if it is a FUSE root, so detach can never hit another mount.
    let root = open(
        plan.mountpoint,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .filter(|fd| {
        fstatfs(fd.as_fd())
            .map(|s| s.filesystem_type() == FUSE_SUPER_MAGIC)
            .unwrap_or(false)
    });
    Ok(Mounted {
        root,
        detached: false,
        fuse,
    })
}
