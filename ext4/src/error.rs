//! The engine's typed errors. The FUSE adapter maps them to errno
//! (`Corrupt`/`Checksum` → EUCLEAN, `Io` → EIO, and so on); nothing in the
//! engine knows errno.

use crate::io::IoError;
use crate::num::InodeNo;

/// Result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the engine. Variants name the failing step or object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// An on-disk structure is malformed (the string says which and how).
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// The object: "superblock", "inode 12", "extent tree of inode 12", ...
        what: String,
        /// What check failed.
        detail: String,
    },
    /// A checksum did not match.
    #[error("checksum mismatch in {what}")]
    Checksum {
        /// The object whose checksum failed.
        what: String,
    },
    /// The filesystem uses an incompatible feature this engine cannot read.
    #[error("unsupported feature: {0}")]
    Unsupported(String),
    /// The journal needs recovery (replay), which needs write access to
    /// the device (or the caller did not run `journal::recover`).
    #[error("the journal needs recovery, which needs write access to the device: mount with -o norecovery to mount read-only without replaying it, make the device writable, or run e2fsck")]
    NeedsRecovery,
    /// Not a valid ext2/3/4 filesystem (bad magic and the like): the message says why.
    #[error("not an ext2/ext3/ext4 filesystem: {0}")]
    NotExt(String),
    /// The inode number is out of range or the inode is not in use.
    #[error("inode {0} does not exist")]
    NoSuchInode(InodeNo),
    /// A name was not found in a directory.
    #[error("no such entry")]
    NotFound,
    /// The operation wants a directory.
    #[error("not a directory")]
    NotDirectory,
    /// The operation does not apply to a directory.
    #[error("is a directory")]
    IsDirectory,
    /// The inode is not a symlink.
    #[error("not a symbolic link")]
    NotSymlink,
    /// The extended attribute does not exist.
    #[error("no such extended attribute")]
    NoXattr,
    /// A name is longer than the format allows (255 bytes).
    #[error("name too long")]
    NameTooLong,
    /// An argument is invalid (offset past the limits, bad xattr name, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl Error {
    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Shorthand for [`Error::Checksum`].
    pub fn checksum(what: impl Into<String>) -> Error {
        Error::Checksum { what: what.into() }
    }
}
