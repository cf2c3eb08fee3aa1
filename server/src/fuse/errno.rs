//! The one place engine errors become errno, and where damaged objects are
//! reported to the log.
//!
//! Both users of an engine error's errno take it from [`errno_of`]: the
//! FUSE replies (through [`ErrorLog::errno`]) and the status the server
//! reports to the helper when opening the filesystem fails
//! ([`engine_errno`], used by `main.rs`). The values follow what the
//! kernel's ext4 answers for the same condition, at mount time as well as
//! per request.
//!
//! Invariant: a corrupt or checksum-failing object is logged once (keyed by
//! the object the engine names, e.g. "inode 12"), however many requests hit
//! it, and the set of remembered objects is bounded so a thoroughly broken
//! image cannot grow the server's memory through its error log.

use std::collections::HashSet;
use std::sync::Mutex;

use fuser::Errno;

use fsvc_ext4::Error;

/// `EUCLEAN`, "structure needs cleaning": what the kernel's ext4 returns
/// for corruption (it calls it `EFSCORRUPTED`). fuser names no constant for
/// it. Checksum failures get it too: the kernel's own `EFSBADCRC` (EBADMSG)
/// reads as "bad message" to users, and the issue asks for EUCLEAN.
pub(crate) fn euclean() -> Errno {
    Errno::from_i32(libc::EUCLEAN)
}

/// Most distinct objects remembered for log-once; past it, one line says
/// that later reports are suppressed.
const MAX_REMEMBERED: usize = 4096;

/// The errno for `e`, before context (see [`ErrorLog::errno`]).
pub(crate) fn errno_of(e: &Error) -> Errno {
    match e {
        Error::Corrupt { .. } | Error::Checksum { .. } => euclean(),
        Error::Io(_) => Errno::EIO,
        Error::NotFound => Errno::ENOENT,
        Error::NotDirectory => Errno::ENOTDIR,
        Error::IsDirectory => Errno::EISDIR,
        Error::NotSymlink => Errno::EINVAL,
        Error::NoXattr => Errno::NO_XATTR,
        Error::NameTooLong => Errno::ENAMETOOLONG,
        Error::Invalid(_) => Errno::EINVAL,
        // A node id the kernel holds that no longer names a live inode: the
        // NFS-style "stale handle" answer. (Where an inode number comes from
        // a directory entry instead, the caller maps this to EUCLEAN.)
        Error::NoSuchInode(_) => Errno::ESTALE,
        Error::Unsupported(_) => Errno::EOPNOTSUPP,
        // Mount-time refusals, as the kernel's ext4 gives them: a journal
        // it may not replay is "read-only file system"; a bad superblock is
        // "invalid argument" (mount(8): "wrong fs type, bad superblock").
        Error::NeedsRecovery => Errno::EROFS,
        Error::NotExt(_) => Errno::EINVAL,
        Error::ReadOnly | Error::RwRefused(_) => Errno::EROFS,
        Error::NoSpace(_) => Errno::ENOSPC,
        Error::FileTooBig => Errno::EFBIG,
        Error::NotPermitted(_) => Errno::EPERM,
        Error::Exists => Errno::EEXIST,
        Error::ValueTooBig => Errno::E2BIG,
        Error::NotEmpty => Errno::ENOTEMPTY,
        Error::TooManyLinks => Errno::EMLINK,
        Error::Stopped | Error::Internal(_) => Errno::EIO,
        // The engine's error enum is non_exhaustive: anything new is an I/O
        // error until someone decides better.
        #[allow(unreachable_patterns)]
        _ => Errno::EIO,
    }
}

/// The errno value (a positive `errno` number) for an engine error: what
/// the server reports to the helper when the engine refuses to open the
/// filesystem. The same table as every FUSE reply (see [`errno_of`]).
pub fn engine_errno(e: &Error) -> i32 {
    errno_of(e).code()
}

/// Remembers which damaged objects were already reported.
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    seen: Mutex<(HashSet<String>, bool)>,
}

impl ErrorLog {
    /// Logs `e` once per object if it is worth a log line, and returns its errno.
    pub(crate) fn errno(&self, e: &Error, context: &str) -> Errno {
        let key = match e {
            Error::Corrupt { what, .. } | Error::Checksum { what } => Some(what.clone()),
            Error::Io(_) => Some(e.to_string()),
            _ => None,
        };
        if let Some(key) = key {
            if self.first_time(&key) {
                log::error!("{e} ({context})");
            }
        }
        errno_of(e)
    }

    /// Reports a corruption the adapter itself found (an entry naming an
    /// impossible inode) and returns EUCLEAN.
    pub(crate) fn corrupt(&self, what: &str, detail: &str) -> Errno {
        if self.first_time(what) {
            log::error!("corrupt {what}: {detail}; answering EUCLEAN for it from now on");
        }
        euclean()
    }

    fn first_time(&self, key: &str) -> bool {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, overflowed) = &mut *g;
        if seen.contains(key) {
            return false;
        }
        if seen.len() >= MAX_REMEMBERED {
            if !*overflowed {
                *overflowed = true;
                log::error!("too many damaged objects; further reports are not logged");
            }
            return false;
        }
        seen.insert(key.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsvc_ext4::io::IoError;
    use fsvc_ext4::Space;

    #[test]
    fn mapping_table() {
        let table: Vec<(Error, i32)> = vec![
            (Error::corrupt("inode 12", "bad extent"), libc::EUCLEAN),
            (Error::checksum("inode 12"), libc::EUCLEAN),
            (Error::Io(IoError::ReadOnly), libc::EIO),
            (Error::Io(IoError::Injected { offset: 4 }), libc::EIO),
            (Error::NotFound, libc::ENOENT),
            (Error::NotDirectory, libc::ENOTDIR),
            (Error::IsDirectory, libc::EISDIR),
            (Error::NotSymlink, libc::EINVAL),
            (Error::NoXattr, libc::ENODATA),
            (Error::NameTooLong, libc::ENAMETOOLONG),
            (Error::Invalid("x".into()), libc::EINVAL),
            (Error::NoSuchInode(fsvc_ext4::InodeNo(99)), libc::ESTALE),
            (Error::Unsupported("casefold".into()), libc::EOPNOTSUPP),
            (Error::NeedsRecovery, libc::EROFS),
            (Error::NotExt("bad magic".into()), libc::EINVAL),
            (Error::ReadOnly, libc::EROFS),
            (Error::RwRefused("errors recorded".into()), libc::EROFS),
            (Error::NoSpace(Space::Blocks), libc::ENOSPC),
            (Error::NoSpace(Space::Inodes), libc::ENOSPC),
            (Error::FileTooBig, libc::EFBIG),
            (Error::Exists, libc::EEXIST),
            (Error::NotEmpty, libc::ENOTEMPTY),
            (Error::TooManyLinks, libc::EMLINK),
            (
                Error::NotPermitted("link to a directory".into()),
                libc::EPERM,
            ),
            // errors=panic stopped the filesystem; a broken internal rule.
            (Error::Stopped, libc::EIO),
            (Error::Internal("lock order".into()), libc::EIO),
        ];
        let log = ErrorLog::default();
        for (e, want) in table {
            // The helper's status and the FUSE reply come from one table.
            assert_eq!(engine_errno(&e), want, "status for {e:?}");
            assert_eq!(log.errno(&e, "test").code(), want, "reply for {e:?}");
        }
    }

    #[test]
    fn logs_each_object_once_and_stays_bounded() {
        let log = ErrorLog::default();
        assert!(log.first_time("inode 12"));
        assert!(!log.first_time("inode 12"));
        assert!(log.first_time("inode 13"));
        for i in 0..2 * MAX_REMEMBERED {
            log.first_time(&format!("block {i}"));
        }
        let g = log.seen.lock().unwrap();
        assert_eq!(g.0.len(), MAX_REMEMBERED);
        assert!(g.1);
    }
}
