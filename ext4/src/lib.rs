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
//! cache with write-back, access gate).
//!
//! The write path (docs/design-notes.md, "Write path"): `tx` (the
//! transaction handle `Tx` and the `TxBlocks` trait the write algorithms
//! use), `locks` (inode lock table, change lock), `zones` (system zones),
//! `mount` (read-write open, `begin`, sync, unmount, `fail` and
//! `errors=`), `wstate` (mode and write state), `super_fields` (the
//! superblock's changing fields), `balloc`/`ialloc` (allocators),
//! `ranges` (block range sets), `testfs` (mkfs-made test images, with the
//! `test-util` feature).

pub mod acl;
mod alloc_state;
mod balloc;
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
mod ialloc;
pub mod indirect;
pub mod inline;
pub mod inode;
pub mod io;
pub mod locks;
pub mod mount;
pub mod ranges;
pub mod super_fields;
pub mod superblock;
pub mod symlink;
#[cfg(test)]
mod testblocks;
#[cfg(any(test, feature = "test-util"))]
pub mod testfs;
pub mod tx;
pub mod wstate;
pub mod xattr;
pub mod zones;

pub use error::{Error, Result, Space};
pub use fs::{DirEntry, FileKind, Fs, OpenOptions, Stat, StatFs, Timestamp, ROOT_INO};
