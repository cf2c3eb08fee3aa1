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
    /// A change on a filesystem that is read-only: opened so, or turned
    /// read-only by `errors=remount-ro` after an error (EROFS).
    #[error("the filesystem is read-only")]
    ReadOnly,
    /// No room left for what a change needs (ENOSPC); nothing was changed.
    #[error("no space left: {0}")]
    NoSpace(Space),
    /// The filesystem cannot be opened read-write: the message says why
    /// and what to do (run e2fsck, mount read-only, ...).
    #[error("cannot mount read-write: {0}")]
    RwRefused(String),
    /// `errors=panic` stopped the filesystem after an error: nothing more
    /// is served.
    #[error("the filesystem was stopped after an error (errors=panic)")]
    Stopped,
    /// A file would be larger than the format allows (EFBIG).
    #[error("file too large")]
    FileTooBig,
    /// The change is not allowed (EPERM): an immutable or append-only
    /// inode, a flag only a privileged caller may change. The string says
    /// which rule refused it.
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    /// What the change would create exists already (EEXIST), e.g. an
    /// extended attribute set with XATTR_CREATE.
    #[error("already exists")]
    Exists,
    /// An extended attribute value is larger than any filesystem may hold
    /// (E2BIG: past `XATTR_SIZE_MAX`, 64 KiB).
    #[error("extended attribute value too large")]
    ValueTooBig,
    /// The directory is not empty (ENOTEMPTY).
    #[error("directory not empty")]
    NotEmpty,
    /// The inode has as many links as the format allows (EMLINK).
    #[error("too many links")]
    TooManyLinks,
    /// An internal rule was broken (a lock taken in the wrong order, a
    /// transaction used after its end): a bug in fsvc, never the image's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What ran out ([`Error::NoSpace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Free blocks (for this caller: reserved blocks are kept from
    /// unprivileged callers).
    Blocks,
    /// Free inodes.
    Inodes,
    /// Room for extended attributes (the in-inode area and the one xattr
    /// block are full, or the value does not fit in a block).
    Xattrs,
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Space::Blocks => "no free blocks",
            Space::Inodes => "no free inodes",
            Space::Xattrs => "no room for the extended attribute",
        })
    }
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
