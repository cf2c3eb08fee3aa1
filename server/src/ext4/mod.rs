//! The ext2/ext3/ext4 engine: parses untrusted on-disk structures and
//! answers read requests. It knows nothing of FUSE or errno; it returns
//! typed errors ([`Error`]) that the FUSE adapter maps at its boundary.
//!
//! Rules (DESIGN.md, "The engine"): every length, offset, count and block
//! number read from disk is checked before use; every walk over on-disk
//! links is bounded; arithmetic on disk values is checked; checksums are
//! verified on read. A corrupt structure is an [`Error`], never a panic.
//!
//! Layout: `fs` is the handle ([`Fs`]); `superblock`, `group`, `inode`,
//! `extent`, `indirect`, `csum` are the core, `limits` the format's size
//! limits as the kernel computes them; `dir`, `htree`, `hash`,
//! `inline`, `xattr`, `acl`, `symlink` build the namespace on top.

pub mod acl;
pub mod bytes;
pub mod csum;
pub mod dir;
pub mod error;
pub mod extent;
pub mod features;
pub mod fs;
pub mod group;
pub mod hash;
pub mod htree;
pub mod indirect;
pub mod inline;
pub mod inode;
pub mod limits;
pub mod superblock;
pub mod symlink;
#[cfg(test)]
mod testblocks;
pub mod xattr;

pub use error::{Error, Result};
pub use fs::{DirEntry, FileKind, Fs, OpenOptions, Stat, StatFs, Timestamp, ROOT_INO};
