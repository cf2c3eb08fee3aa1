//! Opening the source for the server (DESIGN.md step 3).
//!
//! Block devices: `O_EXCL|O_DIRECT` (the kernel refuses a second exclusive
//! opener and anything mounted). Regular-file images: no `O_EXCL` meaning
//! there, so an `flock` instead (exclusive for read-write, shared for
//! read-only), held by the open file description the server inherits;
//! `O_DIRECT` when the host filesystem takes it. A busy source is retried
//! every [`RETRY_INTERVAL`] until [`BUSY_DEADLINE`], because a previous
//! server may still be releasing it. Anything else is neither opened nor
//! touched (a char device or fifo could have side effects on open).
//!
//! For a non-root caller the open itself is made with the caller's
//! filesystem ids (rule `source-access`: they must be able to open it
//! themselves, with the access asked), and the policy's source rules judge
//! the file that was opened, from its fd, never the path again.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use std::os::fd::{AsFd, OwnedFd};

use fsvc_helper::policy_file::{self, Denial};
use fsvc_protocol::{Access, FileGrant, Refusal};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, stat, FileStat, Mode, SFlag};

use crate::policy::{self, UserMount};
use crate::sys;

/// How often a busy source is tried again.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How long a busy source is tried before giving up.
pub const BUSY_DEADLINE: Duration = Duration::from_secs(5);

/// What kind of file the source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Block,
    Regular,
}

fn kind_of(st: &FileStat) -> Option<Kind> {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFBLK => Some(Kind::Block),
        SFlag::S_IFREG => Some(Kind::Regular),
        _ => None,
    }
}

fn refusal(errno: Errno, message: String) -> Refusal {
    Refusal {
        errno: errno as i32,
        message,
    }
}

/// One attempt's outcome: busy is retried, the rest is final.
enum Attempt {
    Done(OwnedFd, FileGrant),
    Busy,
    Failed(Refusal),
}

/// Why the source was not opened: the refusal sent to the server, and
/// whether a policy rule made it (the helper then reports that rule
/// itself, with exit 1, rather than whatever the server says).
#[derive(Debug)]
pub struct SourceRefusal {
    /// What the server is told.
    pub refusal: Refusal,
    /// A policy rule refused (a non-root caller's mount).
    pub by_policy: bool,
}

impl From<Refusal> for SourceRefusal {
    fn from(refusal: Refusal) -> SourceRefusal {
        SourceRefusal {
            refusal,
            by_policy: false,
        }
    }
}

/// Opens `path` with `access` for the server, retrying while busy; for a
/// non-root caller (`user`), as that caller and only what the policy allows.
pub fn open_source(
    path: &str,
    access: Access,
    user: Option<&UserMount>,
) -> Result<(OwnedFd, FileGrant), SourceRefusal> {
    let deadline = Instant::now() + BUSY_DEADLINE;
    loop {
        let tried = match user {
            Some(u) => policy::as_caller(&u.caller, || attempt(path, access)),
            None => attempt(path, access),
        };
        match tried {
            Attempt::Done(fd, grant) => {
                if let Some(u) = user {
                    judge(&fd, u)?;
                }
                return Ok((fd, grant));
            }
            Attempt::Failed(r)
                if user.is_some() && [libc::EACCES, libc::EPERM].contains(&r.errno) =>
            {
                return Err(SourceRefusal {
                    refusal: Refusal {
                        message: Denial {
                            rule: policy_file::RULE_SOURCE_ACCESS,
                            detail: r.message,
                        }
                        .to_string(),
                        ..r
                    },
                    by_policy: true,
                })
            }
            Attempt::Failed(r) => return Err(r.into()),
            Attempt::Busy if Instant::now() >= deadline => {
                return Err(refusal(
                    Errno::EBUSY,
                    format!(
                        "{path} is in use (mounted elsewhere?); still busy after {} s",
                        BUSY_DEADLINE.as_secs()
                    ),
                )
                .into())
            }
            Attempt::Busy => sleep(RETRY_INTERVAL),
        }
    }
}

/// Applies the policy's source rules to the opened file.
fn judge(fd: &OwnedFd, u: &UserMount) -> Result<(), SourceRefusal> {
    let facts = policy::source_facts(fd.as_fd()).map_err(|m| refusal(Errno::EIO, m))?;
    u.policy.check_source(&facts).map_err(|d| SourceRefusal {
        refusal: refusal(Errno::EACCES, d.to_string()),
        by_policy: true,
    })
}

fn attempt(path: &str, access: Access) -> Attempt {
    let p = Path::new(path);
    let kind = match stat(p) {
        Ok(st) => match kind_of(&st) {
            Some(k) => k,
            None => {
                return Attempt::Failed(refusal(
                    Errno::ENOTBLK,
                    format!("{path} is neither a block device nor a regular file"),
                ))
            }
        },
        Err(e) => return Attempt::Failed(refusal(e, format!("cannot open {path}: {}", e.desc()))),
    };
    let mode_flags = match access {
        Access::ReadWrite => OFlag::O_RDWR,
        Access::ReadOnly => OFlag::O_RDONLY,
    };
    let base = mode_flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let (fd, direct) = match kind {
        Kind::Block => match open(p, base | OFlag::O_EXCL | OFlag::O_DIRECT, Mode::empty()) {
            Ok(fd) => (fd, true),
            Err(e) => return open_error(path, access, e),
        },
        Kind::Regular => match open(p, base | OFlag::O_DIRECT, Mode::empty()) {
            Ok(fd) => (fd, true),
            // The host filesystem does not do O_DIRECT (tmpfs, some FUSE).
            Err(Errno::EINVAL) => match open(p, base, Mode::empty()) {
                Ok(fd) => (fd, false),
                Err(e) => return open_error(path, access, e),
            },
            Err(e) => return open_error(path, access, e),
        },
    };
    // The path may have been swapped between stat and open; judge what was opened.
    match fstat(fd.as_fd()).ok().as_ref().and_then(kind_of) {
        Some(k) if k == kind => {}
        _ => {
            return Attempt::Failed(refusal(
                Errno::ENOTBLK,
                format!("{path} changed while being opened; try again"),
            ))
        }
    }
    // A write-protected block device opens O_RDWR all the same: ask its
    // flag, so that a read-write request gets the EROFS that makes the
    // server ask read-only (as the kernel mounts it read-only).
    if kind == Kind::Block && access == Access::ReadWrite {
        match sys::block_read_only(fd.as_fd()) {
            Ok(false) => {}
            Ok(true) => return open_error(path, access, Errno::EROFS),
            Err(e) => {
                return Attempt::Failed(refusal(
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    format!("cannot ask whether {path} is read-only: {e}"),
                ))
            }
        }
    }
    if kind == Kind::Regular {
        let op = match access {
            Access::ReadWrite => libc::LOCK_EX,
            Access::ReadOnly => libc::LOCK_SH,
        } | libc::LOCK_NB;
        match sys::flock(fd.as_fd(), op) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Attempt::Busy,
            Err(e) => {
                return Attempt::Failed(refusal(
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    format!("cannot lock {path}: {e}"),
                ))
            }
        }
    }
    let grant = FileGrant {
        read_only: access == Access::ReadOnly,
        block_device: kind == Kind::Block,
        direct,
    };
    Attempt::Done(fd, grant)
}

fn open_error(path: &str, access: Access, e: Errno) -> Attempt {
    match e {
        Errno::EBUSY => Attempt::Busy,
        Errno::EROFS | Errno::EACCES | Errno::EPERM if access == Access::ReadWrite => {
            Attempt::Failed(refusal(
                e,
                format!(
                    "cannot open {path} read-write: {} (ask read-only)",
                    e.desc()
                ),
            ))
        }

        _ => Attempt::Failed(refusal(e, format!("cannot open {path}: {}", e.desc()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("helper-src-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        dir
    }

    #[test]
    fn regular_image_is_locked_and_granted() {
        let dir = tmp("img");
        let img = dir.join("img");
        std::fs::File::create(&img)
            .and_then(|mut f| f.write_all(&[0u8; 4096]))
            .expect("img");
        let path = img.to_str().expect("utf8");
        let (fd, grant) = open_source(path, Access::ReadWrite, None).expect("opens");
        assert!(!grant.read_only && !grant.block_device);
        // The exclusive lock is held: a second opener (shared) would block.
        let second = open(
            img.as_path(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open");
        let err = sys::flock(second.as_fd(), libc::LOCK_SH | libc::LOCK_NB).expect_err("lock held");
        assert_eq!(err.raw_os_error(), Some(libc::EWOULDBLOCK));
        drop(fd);
        sys::flock(second.as_fd(), libc::LOCK_SH | libc::LOCK_NB).expect("released with the fd");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_what_is_not_an_image() {
        let dir = tmp("kinds");
        let missing = dir.join("missing");
        let cases: &[(&str, i32)] = &[
            (dir.to_str().expect("utf8"), libc::ENOTBLK),
            ("/dev/null", libc::ENOTBLK),
            (missing.to_str().expect("utf8"), libc::ENOENT),
        ];
        for (path, errno) in cases {
            let r = open_source(path, Access::ReadOnly, None)
                .expect_err(path)
                .refusal;
            assert_eq!(r.errno, *errno, "{path}: {}", r.message);
            assert!(r.message.contains(path), "{}", r.message);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
