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
//! # Module map
//!
//! `Fs`'s methods live with their concern, as the kernel splits them; each
//! of those modules adds an `impl Fs` block:
//!
//! | concern (kernel file) | module | `Fs` methods |
//! |---|---|---|
//! | open, statfs (super.c) | [`fs`] | `open`, `statfs`, `sb`, `group`, `meta_block`, `dev`, `notes` |
//! | inode read (inode.c) | [`inode`] | `inode`, `stat` |
//! | data map and read (inode.c) | [`data`] | `map_extent`, `map_block`, `read`, `read_inode_data`, `read_file_block` |
//! | lookup, readdir (namei.c, dir.c) | [`dir`] | `lookup`, `read_dir` |
//! | bitmaps (balloc.c, ialloc.c) | [`bitmap`] | `verify_bitmaps` |
//! | xattrs (xattr.c) | [`xattr`] | `list_xattrs`, `get_xattr` |
//! | data write, truncate (file.c, inode.c) | [`file_write`] | `write`, `truncate`, `truncate_in` |
//! | fallocate (extents.c) | [`fallocate`] | `fallocate` |
//! | copy_file_range (read_write.c) | [`copy_range`] | `copy_file_range` |
//! | inline data (inline.c) | [`inline`] | (crate-internal readers) |
//! | symlinks (symlink.c) | [`symlink`] | `read_link` |
//! | read-write open, sync, unmount, errors (super.c) | [`mount`] | `begin`, `sync`, `unmount`, `fail`, `write_data`, `is_read_only` |
//! | namespace changes (namei.c) | [`namei`], [`rename`] | `create`, `mknod`, `mkdir`, `symlink`, `link`, `unlink`, `rmdir`, `evict`, `rename` |
//! | setattr, atime (inode.c `ext4_setattr`, VFS `touch_atime`) | [`attr_write`] | `setattr`, `touch_atime` |
//! | xattr set/remove, ACLs (xattr.c, acl.c) | [`xattr_write`], [`acl_write`] | `set_xattr`, `remove_xattr` |
//! | inode flags, append-only/immutable rules (ioctl.c) | [`flags`] | `get_flags`, `set_flags`, `get_version` |
//!
//! The write path (docs/design-notes.md, "Write path"): [`tx`] (the
//! transaction handle `Tx` and the `TxBlocks` trait the write algorithms
//! use), [`locks`] (inode lock table, change lock), [`zones`] (system
//! zones; also checked for overlaps at mount, as the kernel does),
//! [`wstate`] (mount mode and write state), [`super_fields`] (the
//! superblock's changing fields), `balloc`/`ialloc` (the allocators),
//! [`ranges`] (block range sets), `testfs` (mkfs-made test images, with
//! the `test-util` feature). File mappings change through [`blockmap`]
//! (map-or-allocate, free-from, for both kinds), built on
//! [`extent_edit`] (extent tree insert, split, depth growth),
//! [`extent_remove`] (range removal, depth shrinking, shifts)
//! and [`indirect_edit`] (indirect block maps). The namespace:
//! [`new_inode`] (a fresh inode's set-up), [`dir_edit`] (entry insert and
//! removal inside a dirent region), [`htree_edit`] (index changes),
//! `dir_tx` (directories read and changed through a `Tx`).
//!
//! On-disk formats, pure (bytes in, values out; no `Fs`): [`superblock`]
//! (with [`features`]), [`group`] (descriptors), [`inode`] (the `Inode`
//! itself), [`extent`] and [`indirect`] (block maps), [`dirent`] (entries
//! and leaf tails), [`htree`] (dx index) with [`hash`], [`xattr`] entries
//! with [`acl`]. Below them: [`bytes`] (field readers), [`csum`] (crc32c,
//! crc16), [`error`]; beside them: [`types`] (the API's shared types) and
//! [`num`] (`InodeNo`, `Lblk`, `Pblk`, `GroupNo`). [`io`] is the device
//! (channel trait, unixfd/memory/fault backends, block cache, access gate).
//! [`limits`] computes the format's size limits from the superblock as the
//! kernel does (docs/design-notes.md, "Engine": hostile-image bounds).
//!
//! The journal: [`journal`] (jbd2's on-disk layouts, decode and encode, and
//! recovery: `journal::recover`, the step run before `Fs::open`, which
//! itself never writes), [`journaled`] (journaled writes: the running
//! transaction under `Tx::commit`, journal commit, checkpoint),
//! [`committer`] (the commit interval's thread) and
//! [`orphan`] (finds the orphans a crash left).
//!
//! The import graph between these modules is acyclic, except that a module
//! adding an `impl Fs` block imports the `Fs` type
//! (`tests/import_graph.rs` checks it).

pub mod acl;
pub mod acl_write;
mod alloc_state;
pub mod attr_write;
mod balloc;
pub mod bitmap;
pub mod blockmap;
pub mod bytes;
pub mod committer;
pub mod copy_range;
pub mod csum;
pub mod data;
pub mod dir;
pub mod dir_edit;
mod dir_tx;
pub mod dirent;
pub mod error;
pub mod extent;
pub mod extent_edit;
pub mod extent_remove;
pub mod fallocate;
pub mod features;
pub mod file_write;
pub mod flags;
pub mod fs;
pub mod group;
pub mod hash;
pub mod htree;
pub mod htree_edit;
mod ialloc;
pub mod indirect;
pub mod indirect_edit;
pub mod inline;
pub mod inode;
pub mod io;
pub mod journal;
pub mod journaled;
pub mod limits;
pub mod locks;
pub mod mount;
pub mod namei;
pub mod new_inode;
pub mod num;
pub mod orphan;
pub mod ranges;
pub mod rename;
pub mod super_fields;
pub mod superblock;
pub mod symlink;
#[cfg(test)]
mod testblocks;
#[cfg(any(test, feature = "test-util"))]
pub mod testfs;
pub mod tx;
pub mod types;
pub mod wstate;
pub mod xattr;
pub mod xattr_write;
pub mod zones;

pub use error::{Error, Result, Space};
pub use fs::Fs;
pub use num::{GroupNo, InodeNo, Lblk, Pblk};
pub use types::{
    DirEntry, ErrorBehavior, FileKind, OpenOptions, Stat, StatFs, Timestamp, ROOT_INO,
};
