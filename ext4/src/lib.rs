//! fsvc-ext4, the ext2/ext3/ext4 engine: parses untrusted on-disk
//! structures and answers read requests, through the IO channel ([`io`])
//! it carries with it. It knows nothing of FUSE, errno, the sandbox or the
//! helper protocol, and builds and tests without them (`cargo test -p
//! fsvc-ext4`); the server, the fuzzers and offline tools all use it the
//! same way. It returns typed errors ([`Error`]) that the FUSE adapter maps
//! to errno at its boundary.
//!
//! The only tie to the sandbox is [`io::AccessGate`]: the server builds one
//! from its sandbox and hands it to [`io::UnixFdChannel`], which refuses
//! every access while the gate is shut.
//!
//! Rules (DESIGN.md, "The engine"): every length, offset, count and block
//! number read from disk is checked before use; every walk over on-disk
//! links is bounded; arithmetic on disk values is checked; checksums are
//! verified on read. A corrupt structure is an [`Error`], never a panic.
//!
//! Layout: `fs` is the handle ([`Fs`]); `superblock`, `group`, `inode`,
//! `extent`, `indirect`, `csum` are the core; `dir`, `htree`, `hash`,
//! `inline`, `xattr`, `acl`, `symlink` build the namespace on top; `io` is
//! the device below (channel trait, unixfd/memory/fault backends, block
//! cache, access gate); `journal` is jbd2 (on-disk layouts, recovery at
//! mount, run before `Fs::open`), `orphan` finds the orphans left behind.

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
pub mod io;
pub mod journal;
pub mod orphan;
pub mod superblock;
pub mod symlink;
#[cfg(test)]
mod testblocks;
pub mod xattr;

pub use error::{Error, Result};
pub use fs::{DirEntry, FileKind, Fs, OpenOptions, Stat, StatFs, Timestamp, ROOT_INO};
