//! The tree oracle: walk a mounted tree (never following symlinks) into a
//! sorted list of records, and compare two such lists field by field.
//!
//! The kernel's ext4 mounted read-only (`ro,noload`) is the reference; an
//! fsvc (or fuse2fs) mount of the same image must produce the same records.
//!
//! Invariants:
//! - Records are sorted by their raw path bytes, so directory entry order
//!   never matters.
//! - Every field is compared unless [`Compare`] turns it off for a known,
//!   documented reason (fuse2fs drops nanoseconds and has its own inode
//!   numbers); the root's inode number is never compared (FUSE shows 1).

use crate::sys;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// File type of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    Char,
    /// Block device.
    Block,
}

/// Everything the oracle knows about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Path relative to the mount root, raw bytes ("" is the root).
    pub path: Vec<u8>,
    /// Type.
    pub kind: Kind,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_size`.
    pub size: u64,
    /// `st_blocks` (512-byte units).
    pub blocks: u64,
    /// Link count.
    pub nlink: u64,
    /// Inode number.
    pub ino: u64,
    /// mtime (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// atime.
    pub atime: (i64, i64),
    /// ctime.
    pub ctime: (i64, i64),
    /// Device number (major, minor) for device nodes, else (0, 0).
    pub rdev: (u64, u64),
    /// Symlink target bytes.
    pub target: Option<Vec<u8>>,
    /// Extended attributes, names to values (including system.posix_acl_*).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// sha256 of a regular file's contents.
    pub sha256: Option<[u8; 32]>,
}

/// Reads the whole file and hashes it (1 MiB reads).
pub fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

fn xattrs_of(path: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let names = match sys::llistxattr(path) {
        Ok(n) => n,
        // "No xattrs supported" and "none" read the same.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("llistxattr {}", path.display())),
    };
    let mut map = BTreeMap::new();
    for name in names {
        let v = sys::lgetxattr(path, &name)
            .with_context(|| format!("lgetxattr {} {}", path.display(), name.escape_ascii()))?;
        map.insert(name, v);
    }
    Ok(map)
}

/// Builds the record of one entry (`rel` relative to `root`).
pub fn record(root: &Path, rel: &[u8]) -> Result<Record> {
    record_inner(root, rel, true)
}

/// [`record`] without reading a regular file's contents (no `sha256`):
/// for walks that read files their own way.
pub fn record_meta(root: &Path, rel: &[u8]) -> Result<Record> {
    record_inner(root, rel, false)
}

fn record_inner(root: &Path, rel: &[u8], hash: bool) -> Result<Record> {
    let path = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    };
    let md = fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::Char
    } else {
        Kind::Block
    };
    let rdev = if matches!(kind, Kind::Char | Kind::Block) {
        let r = md.rdev();
        (libc::major(r) as u64, libc::minor(r) as u64)
    } else {
        (0, 0)
    };
    let target = if kind == Kind::Symlink {
        Some(
            fs::read_link(&path)
                .with_context(|| format!("readlink {}", path.display()))?
                .into_os_string()
                .into_encoded_bytes(),
        )
    } else {
        None
    };
    let sha256 = if kind == Kind::File && hash {
        Some(sha256_file(&path)?)
    } else {
        None
    };
    Ok(Record {
        path: rel.to_vec(),
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: md.size(),
        blocks: md.blocks(),
        nlink: md.nlink(),
        ino: md.ino(),
        mtime: (md.mtime(), md.mtime_nsec()),
        atime: (md.atime(), md.atime_nsec()),
        ctime: (md.ctime(), md.ctime_nsec()),
        rdev,
        target,
        xattrs: xattrs_of(&path)?,
        sha256,
    })
}

/// Walks the tree under `root` (not following symlinks, not crossing into
/// anything but directories) and returns its records sorted by path.
pub fn walk(root: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let rec = record(root, &rel)?;
        if rec.kind == Kind::Dir {
            let dir: PathBuf = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(OsStr::from_bytes(&rel))
            };
            for entry in fs::read_dir(&dir).with_context(|| format!("readdir {}", dir.display()))? {
                let entry = entry.with_context(|| format!("readdir {}", dir.display()))?;
                let name = entry.file_name().into_encoded_bytes();
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(&name);
                stack.push(child);
            }
        }
        out.push(rec);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Which fields to compare.
#[derive(Debug, Clone, Copy)]
pub struct Compare {
    /// Compare nanoseconds of timestamps (fuse2fs drops them).
    pub nsec: bool,
    /// Compare inode numbers (except the root's).
    pub ino: bool,
    /// Compare atime and ctime too (mtime always).
    pub atime_ctime: bool,
    /// Compare `st_blocks`.
    pub blocks: bool,
}

impl Compare {
    /// Everything: what an fsvc mount must match.
    pub const EXACT: Compare = Compare {
        nsec: true,
        ino: true,
        atime_ctime: true,
        blocks: true,
    };
    /// What fuse2fs can match (no nanoseconds, its own inode numbers).
    pub const FUSE2FS: Compare = Compare {
        nsec: false,
        ino: false,
        atime_ctime: true,
        blocks: true,
    };
}

fn show(path: &[u8]) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", path.escape_ascii())
    }
}

fn short(v: &[u8]) -> String {
    if v.len() > 48 {
        format!("{}... ({} bytes)", v[..48].escape_ascii(), v.len())
    } else {
        format!("\"{}\"", v.escape_ascii())
    }
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Differences between one record pair, as readable lines.
fn diff_record(a: &Record, b: &Record, c: Compare, out: &mut Vec<String>) {
    let p = show(&a.path);
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{p}: {name}: expected {x}, got {y}"));
        }
    };
    let t = |v: (i64, i64)| {
        if c.nsec {
            format!("{}.{:09}", v.0, v.1)
        } else {
            v.0.to_string()
        }
    };
    field("type", format!("{:?}", a.kind), format!("{:?}", b.kind));
    field("mode", format!("{:o}", a.mode), format!("{:o}", b.mode));
    field("uid", a.uid.to_string(), b.uid.to_string());
    field("gid", a.gid.to_string(), b.gid.to_string());
    field("size", a.size.to_string(), b.size.to_string());
    field("nlink", a.nlink.to_string(), b.nlink.to_string());
    if c.blocks {
        field("blocks", a.blocks.to_string(), b.blocks.to_string());
    }
    if c.ino && !a.path.is_empty() {
        field("ino", a.ino.to_string(), b.ino.to_string());
    }
    field("mtime", t(a.mtime), t(b.mtime));
    if c.atime_ctime {
        field("atime", t(a.atime), t(b.atime));
        field("ctime", t(a.ctime), t(b.ctime));
    }
    field("rdev", format!("{:?}", a.rdev), format!("{:?}", b.rdev));
    field(
        "symlink target",
        a.target.as_deref().map(short).unwrap_or_default(),
        b.target.as_deref().map(short).unwrap_or_default(),
    );
    field(
        "sha256",
        a.sha256.as_ref().map(hex).unwrap_or_default(),
        b.sha256.as_ref().map(hex).unwrap_or_default(),
    );
    for (name, va) in &a.xattrs {
        match b.xattrs.get(name) {
            None => out.push(format!("{p}: xattr {} missing", name.escape_ascii())),
            Some(vb) if vb != va => out.push(format!(
                "{p}: xattr {}: expected {}, got {}",
                name.escape_ascii(),
                short(va),
                short(vb)
            )),
            Some(_) => {}
        }
    }
    for name in b.xattrs.keys().filter(|n| !a.xattrs.contains_key(*n)) {
        out.push(format!("{p}: unexpected xattr {}", name.escape_ascii()));
    }
}

/// All differences between `expected` and `actual` (both sorted by path).
pub fn diff(expected: &[Record], actual: &[Record], c: Compare) -> Vec<String> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < actual.len() {
        match (expected.get(i), actual.get(j)) {
            (Some(a), Some(b)) if a.path == b.path => {
                diff_record(a, b, c, &mut out);
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.path < b.path => {
                out.push(format!("{}: missing", show(&a.path)));
                i += 1;
            }
            (Some(_), Some(b)) | (None, Some(b)) => {
                out.push(format!("{}: unexpected entry", show(&b.path)));
                j += 1;
            }
            (Some(a), None) => {
                out.push(format!("{}: missing", show(&a.path)));
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Panics with the first `max` differences (and `context`, e.g. the server
/// log) when the trees differ.
pub fn assert_same(expected: &[Record], actual: &[Record], c: Compare, context: &str) {
    let d = diff(expected, actual, c);
    if d.is_empty() {
        return;
    }
    let mut msg = format!(
        "trees differ: {} difference(s) over {} expected / {} actual entries; first ones:\n",
        d.len(),
        expected.len(),
        actual.len()
    );
    for line in d.iter().take(40) {
        let _ = writeln!(msg, "  {line}");
    }
    let _ = write!(msg, "{context}");
    panic!("{msg}");
}

/// Looks up a record by its relative path.
pub fn find<'a>(records: &'a [Record], rel: &str) -> Option<&'a Record> {
    records
        .binary_search_by(|r| r.path.as_slice().cmp(rel.as_bytes()))
        .ok()
        .and_then(|i| records.get(i))
}
