//! The types of the engine's public API that several of its modules share:
//! what `stat`, `read_dir` and `statfs` report ([`Stat`], [`DirEntry`],
//! [`StatFs`]), file types and timestamps, how a filesystem is opened
//! ([`OpenOptions`]) and where a file's logical block lives ([`Mapping`]).
//!
//! Invariant: this module depends on nothing else in the engine but
//! [`crate::num`], so every module can use these types without importing
//! the handle (`fs`) or each other.

use crate::num::{InodeNo, Pblk};

/// Inode number of the root directory.
pub const ROOT_INO: InodeNo = InodeNo::ROOT;

/// How to open a filesystem.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Open read-only: nothing is ever written. Read-write otherwise (see
    /// `Fs::open` for what refuses it).
    pub read_only: bool,
    /// Do not look at the journal (`-o norecovery`/`noload`): a journal that
    /// needs recovery is ignored instead of refusing the mount.
    pub norecovery: bool,
    /// Bytes the metadata cache may hold (0 = the default).
    pub cache_bytes: usize,
    /// What an error found while changing leads to (`errors=`); `None`:
    /// what the superblock's `s_errors` says.
    pub errors: Option<ErrorBehavior>,
    /// Longest time committed changes may wait before they are written
    /// (`-o commit=`, the journal's commit interval); `None`: the default
    /// (the kernel's 5 seconds).
    pub commit_interval: Option<std::time::Duration>,
}

/// What to do when corruption or an IO error is found while changing the
/// filesystem (`errors=`; by default what the superblock's `s_errors` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorBehavior {
    /// Record the error and carry on.
    Continue,
    /// Record the error and refuse every later change.
    RemountRo,
    /// Record the error and stop serving (the server exits non-zero: a
    /// userspace server cannot panic the kernel).
    Panic,
}

/// A point in time as ext4 stores it (seconds since the epoch, possibly
/// negative or past 2038 with the extra epoch bits, and nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01 UTC.
    pub sec: i64,
    /// Nanoseconds, < 1e9.
    pub nsec: u32,
}

/// The type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// What `stat` reports about an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Inode number (ext4's).
    pub ino: InodeNo,
    /// Inode generation (for NFS-style handles).
    pub generation: u32,
    /// File type.
    pub kind: FileKind,
    /// Permission bits incl. setuid/setgid/sticky (mode & 0o7777).
    pub perm: u16,
    /// Owner (32-bit, high half included).
    pub uid: u32,
    /// Group (32-bit, high half included).
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Link count.
    pub nlink: u32,
    /// Allocated space in 512-byte units (huge_file aware).
    pub blocks: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Creation time (large inodes only; zero otherwise).
    pub crtime: Timestamp,
    /// Device number for char/block devices, as (major, minor).
    pub rdev: (u32, u32),
    /// ext4 inode flags (EXT4_*_FL).
    pub flags: u32,
}

/// One directory entry produced by `read_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode the entry points to.
    pub ino: InodeNo,
    /// The name (no NUL, 1..=255 bytes).
    pub name: Vec<u8>,
    /// Type from the entry's file-type byte when the fs has it, else from the inode.
    pub kind: FileKind,
    /// Cookie that resumes right after this entry (never 0).
    pub next_cookie: u64,
}

/// Filesystem-wide figures for statfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFs {
    /// Block size in bytes.
    pub block_size: u32,
    /// Total blocks (minus overhead, as the kernel reports with `minixdf` off).
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Free blocks available to unprivileged users (free minus reserved).
    pub blocks_avail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Longest name.
    pub name_max: u32,
    /// Filesystem id (from the UUID, as the kernel derives it).
    pub fsid: u64,
}

/// Where a logical block lives, and for how many blocks the answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Physical block of the logical block asked, `None` for a hole or an
    /// uninitialized extent (reads as zeros).
    pub pblk: Option<Pblk>,
    /// Number of blocks from the one asked for which the answer continues
    /// (physically contiguous, or hole), at least 1.
    pub len: u64,
}
