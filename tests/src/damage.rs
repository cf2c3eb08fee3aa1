//! Damaging images and walking damaged mounts, for the corruption tests:
//! byte edits at offsets found with the real tools (debugfs, dumpe2fs,
//! e2image), a watchdog that turns a hang into an aborted FUSE connection,
//! and walks that record errors instead of stopping at them.
//!
//! Invariants:
//! - Every walk is bounded on its own (depth, entries, bytes read per
//!   file), so a walk that does not end is the filesystem's hang, never the
//!   walker's; the watchdog ([`bounded`]) aborts the FUSE connection after
//!   its limit, which fails every pending request and lets the walk return.
//! - Offsets come from the tools' view of the image, never from constants
//!   tied to one mkfs layout.

use crate::fixtures::debugfs;
use crate::oracle::{self, Record};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// Byte offset of the primary superblock.
pub const SB_OFFSET: u64 = 1024;
/// `s_log_block_size` within the superblock.
const SB_LOG_BLOCK_SIZE: u64 = 0x18;

// ------------------------------------------------------------ byte edits

/// Writes `bytes` at byte `at` of `image`.
pub fn patch(image: &Path, at: u64, bytes: &[u8]) {
    let f = fs::OpenOptions::new().write(true).open(image).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

/// Reads `len` bytes at byte `at` of `image`.
pub fn read_at(image: &Path, at: u64, len: usize) -> Vec<u8> {
    let f = fs::File::open(image).unwrap();
    let mut v = vec![0u8; len];
    f.read_exact_at(&mut v, at).unwrap();
    v
}

/// XORs the byte at `at` with `mask`.
pub fn flip(image: &Path, at: u64, mask: u8) {
    let b = read_at(image, at, 1)[0];
    patch(image, at, &[b ^ mask]);
}

/// The image's block size, from its superblock.
pub fn block_size(image: &Path) -> u64 {
    let raw = read_at(image, SB_OFFSET + SB_LOG_BLOCK_SIZE, 4);
    1024 << u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])
}

/// The text after `label` on its line of `dumpe2fs -h` (trimmed), if the
/// image's superblock shows that field.
pub fn header_text(image: &Path, label: &str) -> Option<String> {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
}

/// A numeric superblock field from `dumpe2fs -h` (by its label, colon
/// included), if shown.
pub fn header_field(image: &Path, label: &str) -> Option<u64> {
    header_text(image, label)?.parse().ok()
}

/// [`header_field`] for a field every image has.
pub fn header_value(image: &Path, label: &str) -> u64 {
    header_field(image, label).unwrap_or_else(|| panic!("no {label} in dumpe2fs -h"))
}

/// Whether `image` has feature `name` (dumpe2fs -h).
pub fn has_feature(image: &Path, name: &str) -> bool {
    header_text(image, "Filesystem features:")
        .is_some_and(|f| f.split_whitespace().any(|w| w == name))
}

// ------------------------------------------------- where things are (tools)

/// Byte offset of `path`'s inode (debugfs `imap`).
pub fn inode_offset(image: &Path, path: &str) -> u64 {
    let out = debugfs(image, &format!("imap {path}")).unwrap();
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .rposition(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .map(|w| w.trim_end_matches(','))
    };
    let block: u64 = after("block")
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("imap {path}: {out}"));
    let off = after("offset")
        .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("imap {path}: {out}"));
    block * block_size(image) + off
}

/// First data block of `path` (debugfs `blocks`).
pub fn first_block(image: &Path, path: &str) -> u64 {
    let out = debugfs(image, &format!("blocks {path}")).unwrap();
    out.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("blocks {path}: {out:?}"))
}

/// External xattr block of `path` ("File ACL:" in debugfs `stat`).
pub fn xattr_block(image: &Path, path: &str) -> u64 {
    let out = debugfs(image, &format!("stat {path}")).unwrap();
    out.lines()
        .find_map(|l| l.split("File ACL:").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .filter(|&b| b != 0)
        .unwrap_or_else(|| panic!("{path} has no xattr block:\n{out}"))
}

/// The first extent tree block of `path` ("(ETB0):N" in debugfs `stat`).
pub fn extent_block(image: &Path, path: &str) -> u64 {
    let out = debugfs(image, &format!("stat {path}")).unwrap();
    out.split(|c: char| c == ',' || c.is_whitespace())
        .find_map(|t| t.strip_prefix("(ETB0):"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{path} has no extent block:\n{out}"))
}

/// Which kind of metadata a block holds, as far as dumpe2fs tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetaKind {
    /// A superblock (primary or backup).
    Superblock,
    /// Group descriptors.
    GroupDescriptors,
    /// Blocks reserved for the descriptors of future groups (online resize).
    ReservedGdt,
    /// A block or inode bitmap.
    Bitmap,
    /// An inode table block in use.
    InodeTable,
    /// Everything else that holds metadata: directory, extent tree,
    /// indirect and xattr blocks, slow symlink targets.
    Tree,
}

/// The image's metadata blocks by kind: `e2image -r` writes exactly the
/// metadata (data blocks and unused inode-table blocks are holes in its
/// output, and the journal is left out); dumpe2fs says which are the
/// group structures.
pub fn metadata_blocks(image: &Path, scratch: &Path) -> Result<BTreeMap<MetaKind, Vec<u64>>> {
    let bs = block_size(image);
    let raw = scratch.join("e2image.raw");
    let _ = fs::remove_file(&raw);
    let out = Command::new("e2image")
        .arg("-r")
        .arg(image)
        .arg(&raw)
        .output()?;
    if !out.status.success() {
        bail!("e2image -r: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut meta = BTreeSet::new();
    let f = fs::File::open(&raw)?;
    let size = f.metadata()?.len();
    let mut off = 0u64;
    while off < size {
        let Ok(data) = seek(&f, off, nix::unistd::Whence::SeekData) else {
            break;
        };
        let hole = seek(&f, data, nix::unistd::Whence::SeekHole)?;
        meta.extend(data / bs..hole.div_ceil(bs));
        off = hole;
    }
    fs::remove_file(&raw)?;
    // Group structures, from dumpe2fs's "at N" and "at N-M" fields.
    let groups = Command::new("dumpe2fs").arg(image).output()?;
    let text = String::from_utf8_lossy(&groups.stdout);
    let mut kinds: BTreeMap<u64, MetaKind> = BTreeMap::new();
    for line in text.lines() {
        let l = line.trim();
        let tags: &[(&str, MetaKind)] = &[
            ("superblock at ", MetaKind::Superblock),
            ("Group descriptors at ", MetaKind::GroupDescriptors),
            ("Reserved GDT blocks at ", MetaKind::ReservedGdt),
            ("Block bitmap at ", MetaKind::Bitmap),
            ("Inode bitmap at ", MetaKind::Bitmap),
            ("Inode table at ", MetaKind::InodeTable),
        ];
        for (tag, kind) in tags {
            for part in l.split(tag).skip(1) {
                let range = part.split([',', ' ']).next().unwrap_or("");
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    for blk in a..=b.min(a + (1 << 20)) {
                        kinds.insert(blk, *kind);
                    }
                }
            }
        }
    }
    let mut out: BTreeMap<MetaKind, Vec<u64>> = BTreeMap::new();
    for b in meta {
        let k = kinds.get(&b).copied().unwrap_or(MetaKind::Tree);
        out.entry(k).or_default().push(b);
    }
    Ok(out)
}

/// `lseek` with SEEK_DATA/SEEK_HOLE (nix's safe wrapper).
fn seek(f: &fs::File, off: u64, whence: nix::unistd::Whence) -> io::Result<u64> {
    let off = i64::try_from(off).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let r = nix::unistd::lseek(f, off, whence).map_err(io::Error::from)?;
    u64::try_from(r).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

// ------------------------------------------------------- bounded execution

/// The FUSE connection id (`/sys/fs/fuse/connections/N`) of the mount at
/// `dir`, from mountinfo (never touching the mount itself).
pub fn fuse_connection(dir: &Path) -> Option<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4).map(Path::new) == Some(dir))
            .then(|| f.get(2)?.split(':').nth(1).map(str::to_string))
            .flatten()
    })
}

/// Aborts the FUSE connection of the mount at `dir` (every pending and
/// later request fails with ENOTCONN).
pub fn abort_fuse(dir: &Path) {
    if let Some(c) = fuse_connection(dir) {
        let _ = fs::write(format!("/sys/fs/fuse/connections/{c}/abort"), "1");
    }
}

/// Runs `f` on a worker thread; `None` if it has not finished after
/// `limit`, in which case the FUSE connection of `mnt` was aborted (so
/// the worker's pending request fails and the thread ends).
pub fn bounded<T: Send + 'static>(
    mnt: &Path,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => Some(v),
        Err(_) => {
            abort_fuse(mnt);
            None
        }
    }
}

/// [`bounded`] that fails the test on a hang, naming `what`.
pub fn within<T: Send + 'static>(
    what: &str,
    mnt: &Path,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    bounded(mnt, limit, f).unwrap_or_else(|| {
        panic!("{what}: no answer within {limit:?} (hang); FUSE connection aborted")
    })
}

// ------------------------------------------------------------------ walks

/// The errno in an error chain, if any.
pub fn errno_of(e: &anyhow::Error) -> Option<i32> {
    e.chain()
        .find_map(|c| c.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error)
}

/// Bounds of a tolerant walk: a looping directory must not make it endless.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Deepest directory level entered.
    pub max_depth: usize,
    /// Most entries (records and errors) before the walk stops.
    pub max_entries: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_depth: 24,
            max_entries: 20_000,
        }
    }
}

/// What a tolerant walk saw: readable records and the errors, by path.
#[derive(Debug, Default)]
pub struct Walk {
    /// Path → record of everything that could be read.
    pub recs: BTreeMap<Vec<u8>, Record>,
    /// Path → (operation, errno).
    pub errs: BTreeMap<Vec<u8>, (&'static str, Option<i32>)>,
}

/// A tolerant walk's per-entry probe: a full oracle [`Record`] (which reads
/// every file whole), or anything else that produces one.
pub type Probe<'a> = dyn Fn(&Path, &[u8]) -> Result<Record> + 'a;

/// Walks `root` like [`oracle::walk`], but records errors instead of
/// stopping, and is bounded in depth and entries.
pub fn tolerant_walk(root: &Path, limits: WalkLimits) -> Walk {
    tolerant_walk_with(root, limits, &oracle::record)
}

/// [`tolerant_walk`] with `probe` making each record.
pub fn tolerant_walk_with(root: &Path, limits: WalkLimits, probe: &Probe<'_>) -> Walk {
    let mut w = Walk::default();
    let mut stack: Vec<(Vec<u8>, usize)> = vec![(Vec::new(), 0)];
    while let Some((rel, depth)) = stack.pop() {
        if w.recs.len() + w.errs.len() >= limits.max_entries {
            w.errs.insert(rel, ("entry limit", None));
            break;
        }
        let rec = match probe(root, &rel) {
            Ok(r) => r,
            Err(e) => {
                w.errs.insert(rel, ("stat/read/xattr", errno_of(&e)));
                continue;
            }
        };
        let is_dir = rec.kind == oracle::Kind::Dir;
        w.recs.insert(rel.clone(), rec);
        if !is_dir || depth >= limits.max_depth {
            continue;
        }
        let dir = root.join(OsStr::from_bytes(&rel));
        let listing: io::Result<Vec<Vec<u8>>> = fs::read_dir(&dir).and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name().into_encoded_bytes()))
                .collect()
        });
        match listing {
            Ok(names) => {
                for name in names {
                    let mut child = rel.clone();
                    if !child.is_empty() {
                        child.push(b'/');
                    }
                    child.extend_from_slice(&name);
                    stack.push((child, depth + 1));
                }
            }
            Err(e) => {
                w.errs.insert(rel, ("readdir", e.raw_os_error()));
            }
        }
    }
    w
}

/// The errors of a walk, readable.
pub fn show_errs(w: &Walk) -> String {
    w.errs
        .iter()
        .map(|(p, (op, e))| format!("/{}: {op}: errno {e:?}", p.escape_ascii()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// True when `p` is `root` or below it (paths relative, bytes).
pub fn under(p: &[u8], root: &str) -> bool {
    p == root.as_bytes() || (p.starts_with(root.as_bytes()) && p.get(root.len()) == Some(&b'/'))
}

/// Reads `path` whole if it is at most `cap` bytes long, else its first
/// `cap` bytes and its last block: a size the format allows can still be
/// terabytes of holes no walk should stream. Returns the bytes read.
pub fn read_bounded(path: &Path, size: u64, cap: u64) -> io::Result<u64> {
    let f = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let head = size.min(cap);
    while done < head {
        let n = f.read_at(&mut buf, done)?;
        if n == 0 {
            break;
        }
        done += n as u64;
    }
    if size > cap {
        let tail = size - size.min(4096);
        done += f.read_at(&mut buf[..4096], tail)? as u64;
        // At and past the end: nothing.
        if f.read_at(&mut buf[..16], size)? != 0 {
            return Err(io::Error::other("data past the end of the file"));
        }
    }
    Ok(done)
}

/// A record like [`oracle::record`]'s, except that a regular file is read
/// with [`read_bounded`] (its hash is left out).
pub fn bounded_record(root: &Path, rel: &[u8], cap: u64) -> Result<Record> {
    let path = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    };
    let md = fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
    if md.file_type().is_file() {
        read_bounded(&path, md.len(), cap).with_context(|| format!("read {}", path.display()))?;
    }
    oracle::record_meta(root, rel)
}
