//! Support for the engine corruption tests: fixture images made by the real
//! tools, the locations of their metadata (from `debugfs` and `dumpe2fs`),
//! a bounded walker over the whole tree, and a watchdog that turns a hang or
//! a panic of the engine into a test failure with the case's name.
//!
//! Invariants: the walker is bounded on its own (depth, entries, readdir
//! calls, bytes read), so any hang it reports is the engine's; every engine
//! call's outcome is recorded as Ok or an error kind, never unwrapped.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fsvc_ext4::error::Error;
use fsvc_ext4::io::{IoChannel, IoError};
use fsvc_ext4::{FileKind, Fs, OpenOptions, ROOT_INO};

/// Walk limits: the walker must terminate on any image.
const MAX_DEPTH: usize = 12;
const MAX_ENTRIES: usize = 20_000;
const READDIR_BATCH: usize = 64;
const MAX_FILE_BYTES: u64 = 4 << 20;
const READ_CHUNK: usize = 64 << 10;

/// Superblock location and fields used by the cases (ext4 on-disk format).
pub const SB_OFFSET: usize = 1024;
/// Offset of the superblock checksum inside the superblock.
pub const SB_CSUM: usize = 0x3FC;

/// Error kind names, for recording and asserting.
pub fn kind(e: &Error) -> &'static str {
    match e {
        Error::Io(_) => "Io",
        Error::Corrupt { .. } => "Corrupt",
        Error::Checksum { .. } => "Checksum",
        Error::Unsupported(_) => "Unsupported",
        Error::NeedsRecovery => "NeedsRecovery",
        Error::NotExt(_) => "NotExt",
        Error::NoSuchInode(_) => "NoSuchInode",
        Error::NotFound => "NotFound",
        Error::NotDirectory => "NotDirectory",
        Error::IsDirectory => "IsDirectory",
        Error::NotSymlink => "NotSymlink",
        Error::NoXattr => "NoXattr",
        Error::NameTooLong => "NameTooLong",
        Error::Invalid(_) => "Invalid",
        _ => "other",
    }
}

/// Whether a test that needs the e2fsprogs tools must fail rather than skip.
pub fn tools_or_skip() -> bool {
    let ok = ["mkfs.ext4", "debugfs", "dumpe2fs", "e2fsck"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    if !ok {
        if std::env::var("FSVC_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("e2fsprogs tools missing and FSVC_REQUIRE_PRIVILEGED=1 forbids skipping");
        }
        eprintln!("skipping: e2fsprogs (mkfs.ext4, debugfs, dumpe2fs, e2fsck) not installed");
    }
    ok
}

// ---------------------------------------------------------------- fixtures

/// One fixture image with what we know about it.
#[derive(Debug)]
pub struct Fixture {
    /// Variant name ("ext4-csum-4k", ...).
    pub name: &'static str,
    /// The image bytes.
    pub image: Arc<Vec<u8>>,
    /// Block size.
    pub block_size: usize,
    /// metadata_csum enabled.
    pub csum: bool,
    /// Extents (ext4) rather than indirect maps.
    pub extents: bool,
    /// 64bit feature (64-byte group descriptors).
    pub desc_size: usize,
    /// Expected contents of every regular file, by path ("/a/f1").
    pub files: BTreeMap<String, Vec<u8>>,
    /// Per path: inode number, byte offset of the inode, and its blocks.
    pub inodes: BTreeMap<String, InodeInfo>,
    /// Blocks holding filesystem metadata (superblock, descriptors, bitmaps,
    /// used inode-table blocks, directory, extent, indirect and xattr blocks).
    pub meta_blocks: Vec<u64>,
    /// Block of group 0's descriptor table.
    pub gdt_block: u64,
}

/// Where an inode and its blocks are.
#[derive(Debug, Clone, Default)]
pub struct InodeInfo {
    /// Inode number.
    pub ino: u32,
    /// Byte offset of the inode in the image.
    pub offset: usize,
    /// Logical → physical data blocks.
    pub data: Vec<(u64, u64)>,
    /// Mapping blocks by debugfs label ("IND", "ETB0", ...).
    pub map_blocks: Vec<(String, u64)>,
    /// External xattr block, if any.
    pub xattr_block: Option<u64>,
    /// Depth of the extent tree (extent files only).
    pub extent_depth: Option<u16>,
}

/// A variant: name and mkfs arguments.
pub const VARIANTS: &[(&str, &[&str])] = &[
    ("ext2-4k", &["-t", "ext2", "-b", "4096"]),
    ("ext3-1k", &["-t", "ext3", "-b", "1024"]),
    ("ext4-csum-4k", &["-t", "ext4", "-b", "4096"]),
    ("ext4-csum-1k", &["-t", "ext4", "-b", "1024"]),
    (
        "ext4-nocsum-1k",
        &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"],
    ),
    (
        "ext4-inline-4k",
        &["-t", "ext4", "-b", "4096", "-O", "inline_data"],
    ),
];

/// Names in the htree directory: long, so that a 1 KiB-block image needs
/// two index levels.
pub const HTREE_ENTRIES: usize = 1500;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A small deterministic generator for the random trials.
#[derive(Debug)]
pub struct TrialRng(pub u64);
impl TrialRng {
    /// Next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes the source tree and returns the expected file contents.
fn make_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut files = BTreeMap::new();
    let mut put = |rel: &str, data: Vec<u8>| {
        let p = root.join(rel.trim_start_matches('/'));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, &data).expect("write fixture file");
        files.insert(rel.to_string(), data);
    };
    put("/a/f1", rng.bytes(70_000));
    put("/a/f2", rng.bytes(5_000));
    put("/a/f3", rng.bytes(40));
    put("/a/empty", Vec::new());
    for i in 0..3 {
        put(&format!("/b/b{i}"), rng.bytes(3000 + i * 700));
    }
    put("/c/c0", rng.bytes(9000));
    for i in 0..HTREE_ENTRIES {
        put(&format!("/h/n{i:05}_{}", "x".repeat(150)), Vec::new());
    }
    std::os::unix::fs::symlink("a/f1", root.join("fast_link")).expect("symlink");
    std::os::unix::fs::symlink("y".repeat(100), root.join("slow_link")).expect("symlink");
    // 500 one-block fragments separated by holes: with 1 KiB blocks the
    // extent tree needs depth 2; ext2/ext3 need indirect and double-indirect
    // blocks. mkfs -d keeps holes (it copies with SEEK_DATA/SEEK_HOLE).
    let sparse_bs = 4096u64;
    let mut sparse = vec![0u8; (1000 * sparse_bs) as usize];
    for i in 0..500u64 {
        let chunk = rng.bytes(1024);
        let at = (i * 2 * sparse_bs) as usize;
        sparse[at..at + 1024].copy_from_slice(&chunk);
    }
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(root.join("sparse")).expect("create sparse");
        for i in 0..500u64 {
            let at = i * 2 * sparse_bs;
            f.seek(SeekFrom::Start(at)).expect("seek");
            f.write_all(&sparse[at as usize..at as usize + 1024])
                .expect("write");
        }
        f.set_len(1000 * sparse_bs).expect("set_len");
    }
    files.insert("/sparse".into(), sparse);
    files
}

/// Parses a debugfs block list ("(0-11):100-111, (IND):112, (12):113").
fn parse_blocks(text: &str, info: &mut InodeInfo) {
    for tok in text.split(|c: char| c == ',' || c.is_whitespace()) {
        let Some((label, phys)) = tok.trim().split_once("):") else {
            continue;
        };
        let label = label.trim_start_matches('(');
        let (p0, _p1) = match phys.split_once('-') {
            Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>()),
            None => (phys.parse::<u64>(), phys.parse::<u64>()),
        };
        let Ok(p0) = p0 else { continue };
        if let Some((l0, l1)) = label.split_once('-') {
            if let (Ok(l0), Ok(l1)) = (l0.parse::<u64>(), l1.parse::<u64>()) {
                for k in 0..=(l1 - l0) {
                    info.data.push((l0 + k, p0 + k));
                }
            }
        } else if let Ok(l) = label.parse::<u64>() {
            info.data.push((l, p0));
        } else {
            info.map_blocks.push((label.to_string(), p0));
        }
    }
}

/// Runs debugfs commands (one per line) on `image`; output split per command.
fn debugfs(image: &Path, cmds: &[String], write: bool) -> Vec<String> {
    let script = image.with_extension("cmds");
    fs::write(&script, cmds.join("\n") + "\n").expect("write debugfs script");
    let mut c = Command::new("debugfs");
    if write {
        c.arg("-w");
    }
    let out = sh(c.arg("-f").arg(&script).arg(image));
    // Each command's output follows its echo "debugfs: CMD".
    out.split("debugfs: ").skip(1).map(str::to_string).collect()
}

fn build(name: &'static str, args: &[&str], work: &Path) -> Fixture {
    let dir = work.join(name);
    let tree = dir.join("tree");
    fs::create_dir_all(&tree).expect("mkdir");
    let files = make_tree(&tree);
    let image = dir.join("image");
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "corrupt"])
        .args(args)
        .arg("-d")
        .arg(&tree)
        .arg(&image)
        .arg("16M"));
    // Index the big directory (mkfs -d writes linear directories).
    let _ = Command::new("e2fsck").arg("-fyD").arg(&image).output();
    // Extended attributes: a small in-inode one and one big enough to need
    // an external block (800 bytes fits a 1 KiB block).
    let val = dir.join("bigval");
    fs::write(&val, "v".repeat(800)).expect("write value");
    debugfs(
        &image,
        &[
            "ea_set /a/f2 user.small hello".into(),
            format!("ea_set -f {} /b/b1 user.big", val.display()),
            "ea_set /b/b1 user.second two".into(),
        ],
        true,
    );

    // Expected contents come from debugfs (the image's own oracle), not the
    // source tree: mkfs may legitimately differ (with inline_data it drops a
    // trailing hole from a sparse file's size, and the kernel agrees).
    let mut files = files;
    let dumps: Vec<(String, PathBuf)> = files
        .keys()
        .filter(|p| !p.starts_with("/h/"))
        .enumerate()
        .map(|(i, p)| (p.clone(), dir.join(format!("dump{i}"))))
        .collect();
    let cmds: Vec<String> = dumps
        .iter()
        .map(|(p, out)| format!("dump {p} {}", out.display()))
        .collect();
    debugfs(&image, &cmds, false);
    for (p, out) in dumps {
        let mut data = fs::read(&out).unwrap_or_else(|e| panic!("{name}: debugfs dump {p}: {e}"));
        // debugfs 1.47.0 dumps an inline_data file as the whole 60-byte
        // i_block area: the bytes past the source's length are zero padding,
        // not file content. Trim them, but only when they really are zeros.
        if let Some(src) = files.get(&p) {
            if data.len() > src.len() && data[..src.len()] == src[..] {
                assert!(
                    data[src.len()..].iter().all(|&b| b == 0),
                    "{name}: debugfs dump of {p} has non-zero bytes past the file's end"
                );
                data.truncate(src.len());
            }
        }
        files.insert(p, data);
    }

    let header = sh(Command::new("dumpe2fs").arg("-h").arg(&image));
    let field = |k: &str| {
        header
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let features = field("Filesystem features:");
    let block_size: usize = field("Block size:").parse().expect("block size");
    let inode_size: usize = field("Inode size:").parse().unwrap_or(128);
    let csum = features.split(' ').any(|f| f == "metadata_csum");
    let extents = features.split(' ').any(|f| f == "extent");
    let desc_size = if features.split(' ').any(|f| f == "64bit") {
        field("Group descriptor size:").parse().unwrap_or(64)
    } else {
        32
    };

    let mut paths: Vec<String> = vec![
        "/".into(),
        "/a".into(),
        "/b".into(),
        "/c".into(),
        "/h".into(),
    ];
    paths.extend(["/fast_link", "/slow_link"].map(String::from));
    paths.extend(files.keys().filter(|p| !p.starts_with("/h/")).cloned());
    let mut cmds = Vec::new();
    for p in &paths {
        cmds.push(format!("imap {p}"));
        cmds.push(format!("stat {p}"));
    }
    let out = debugfs(&image, &cmds, false);
    let mut inodes = BTreeMap::new();
    for (i, p) in paths.iter().enumerate() {
        let (Some(imap), Some(stat)) = (out.get(2 * i), out.get(2 * i + 1)) else {
            continue;
        };
        let mut info = InodeInfo::default();
        // "Inode 13 is part of block group 0\n\tlocated at block 269, offset 0x0000"
        let words: Vec<&str> = imap.split_whitespace().collect();
        info.ino = words
            .iter()
            .position(|w| *w == "Inode")
            .and_then(|i| words.get(i + 1))
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        let blk = words
            .iter()
            .rposition(|w| *w == "block")
            .and_then(|i| words.get(i + 1))
            .and_then(|w| w.trim_end_matches(',').parse::<usize>().ok());
        let off = words
            .iter()
            .position(|w| *w == "offset")
            .and_then(|i| words.get(i + 1))
            .and_then(|w| usize::from_str_radix(w.trim_start_matches("0x"), 16).ok());
        if let (Some(b), Some(o)) = (blk, off) {
            info.offset = b * block_size + o;
        }
        if let Some(acl) = stat
            .lines()
            .find_map(|l| l.trim().strip_prefix("File ACL:"))
        {
            info.xattr_block = acl
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&b| b != 0);
        }
        let mut lines = stat
            .lines()
            .skip_while(|l| !(l.starts_with("EXTENTS:") || l.starts_with("BLOCKS:")));
        if lines.next().is_some() {
            let body: String = lines
                .take_while(|l| !l.starts_with("TOTAL"))
                .collect::<Vec<_>>()
                .join(" ");
            parse_blocks(&body, &mut info);
        }
        if extents && info.offset > 0 {
            // Extent header in i_block (inode offset 0x28): depth at +6.
            info.extent_depth = Some(0); // filled from the image below
        }
        inodes.insert(p.clone(), info);
    }

    let bytes = fs::read(&image).expect("read image");
    for info in inodes.values_mut() {
        if info.extent_depth.is_some() {
            let at = info.offset + 0x28;
            let magic = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            info.extent_depth =
                (magic == 0xF30A).then(|| u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]));
        }
    }

    // Metadata blocks: group 0's fixed metadata, then every block of the
    // objects above that is not plain file data.
    let groups = sh(Command::new("dumpe2fs").arg(&image));
    let mut meta = BTreeSet::new();
    let first_data_block = u64::from(block_size == 1024);
    meta.insert(first_data_block);
    let gdt_block = first_data_block + 1;
    meta.insert(gdt_block);
    for l in groups
        .lines()
        .skip_while(|l| !l.starts_with("Group 0"))
        .take(8)
    {
        for key in ["Block bitmap at ", "Inode bitmap at "] {
            if let Some(rest) = l.split(key).nth(1) {
                if let Some(b) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    meta.insert(b);
                }
            }
        }
    }
    for (p, info) in &inodes {
        if info.offset > 0 {
            meta.insert((info.offset / block_size) as u64);
        }
        meta.extend(info.map_blocks.iter().map(|(_, b)| *b));
        meta.extend(info.xattr_block);
        if !files.contains_key(p) {
            meta.extend(info.data.iter().map(|(_, b)| *b));
        }
    }
    Fixture {
        name,
        image: Arc::new(bytes),
        block_size,
        csum,
        extents,
        desc_size,
        files,
        inodes,
        meta_blocks: meta.into_iter().collect(),
        gdt_block,
    }
    .checked(inode_size)
}

impl Fixture {
    fn checked(self, _inode_size: usize) -> Fixture {
        assert!(
            self.inodes["/a/f1"].ino > 0,
            "{}: debugfs imap parse failed",
            self.name
        );
        assert!(
            !self.inodes["/h"].data.is_empty(),
            "{}: htree dir has no blocks",
            self.name
        );
        self
    }

    /// Physical block of logical block `lblk` of `path`.
    pub fn phys(&self, path: &str, lblk: u64) -> Option<u64> {
        self.inodes
            .get(path)?
            .data
            .iter()
            .find(|(l, _)| *l == lblk)
            .map(|(_, p)| *p)
    }

    /// Byte range of physical block `b`.
    pub fn block_range(&self, b: u64) -> std::ops::Range<usize> {
        let s = b as usize * self.block_size;
        s..s + self.block_size
    }

    /// Byte offset of group 0's descriptor.
    pub fn gd0(&self) -> usize {
        self.gdt_block as usize * self.block_size
    }
}

/// Builds every variant once per test process.
pub fn fixtures() -> &'static [Fixture] {
    static F: std::sync::OnceLock<Vec<Fixture>> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let work = PathBuf::from(format!("/tmp/fsvc-corrupt-engine-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        // FSVC_CORRUPT_ONLY=NAME restricts the run to one variant (debugging).
        let only = std::env::var("FSVC_CORRUPT_ONLY").ok();
        let v = VARIANTS
            .iter()
            .filter(|(n, _)| only.as_deref().is_none_or(|o| o == *n))
            .map(|(n, a)| build(n, a, &work))
            .collect();
        let _ = fs::remove_dir_all(&work);
        v
    })
}

/// Rewrites the superblock checksum (metadata_csum: crc32c of the first
/// 0x3FC bytes, stored without the final inversion) so that a semantic trap
/// is not merely caught by the checksum.
pub fn fix_sb_csum(img: &mut [u8]) {
    let sb = &img[SB_OFFSET..SB_OFFSET + 1024];
    let c = !crc32c::crc32c(&sb[..SB_CSUM]);
    img[SB_OFFSET + SB_CSUM..SB_OFFSET + SB_CSUM + 4].copy_from_slice(&c.to_le_bytes());
}

// ---------------------------------------------------------------- devices

/// An image with one patch applied on the fly: random trials share one
/// image without copying it for every trial.
#[derive(Debug)]
pub struct Patched {
    /// The undamaged image.
    pub base: Arc<Vec<u8>>,
    /// Byte offset of the patch.
    pub at: u64,
    /// Replacement bytes.
    pub bytes: Vec<u8>,
}

impl IoChannel for Patched {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let size = self.base.len() as u64;
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= size);
        let Some(end) = end else {
            return Err(IoError::OutOfRange {
                offset,
                len: buf.len() as u64,
                size,
            });
        };
        buf.copy_from_slice(&self.base[offset as usize..end as usize]);
        let p_end = self.at + self.bytes.len() as u64;
        let lo = offset.max(self.at);
        let hi = end.min(p_end);
        if lo < hi {
            buf[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&self.bytes[(lo - self.at) as usize..(hi - self.at) as usize]);
        }
        Ok(())
    }
    fn write_at(&self, _offset: u64, _buf: &[u8]) -> Result<(), IoError> {
        Err(IoError::ReadOnly)
    }
    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.base.len() as u64
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn is_block_device(&self) -> bool {
        false
    }
    fn is_read_only(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------- walking

/// What one open + walk observed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `Fs::open` failed with this kind.
    pub open_err: Option<&'static str>,
    /// Errors by path and operation.
    pub errors: Vec<(String, &'static str, &'static str)>,
    /// Regular files read completely and equal to the source tree.
    pub good: BTreeSet<String>,
    /// Regular files whose content differed (no error reported).
    pub mismatched: BTreeSet<String>,
    /// Directories listed completely.
    pub listed: BTreeSet<String>,
    /// Entries seen.
    pub entries: usize,
    /// The engine's messages, "path op: message", in order.
    pub details: Vec<String>,
    /// Readdir made no progress (a cookie came back twice): a FUSE readdir
    /// over this directory would never end.
    pub cookie_loops: Vec<String>,
}

impl Outcome {
    /// Error kinds seen (open included).
    pub fn kinds(&self) -> BTreeSet<&'static str> {
        let mut k: BTreeSet<_> = self.errors.iter().map(|e| e.2).collect();
        k.extend(self.open_err);
        k
    }

    /// Whether a Corrupt/Checksum error was reported for `path` (or at open).
    pub fn detected_at(&self, path: &str) -> bool {
        matches!(self.open_err, Some("Corrupt" | "Checksum" | "NotExt"))
            || self.errors.iter().any(|(p, _, k)| {
                // Damage to a directory also shows as failed lookups of its entries.
                let inside = p == path || p.strip_prefix(path).is_some_and(|r| r.starts_with('/'));
                inside && matches!(*k, "Corrupt" | "Checksum")
            })
    }

    /// Whether any Corrupt/Checksum error was reported anywhere.
    pub fn detected(&self) -> bool {
        self.kinds()
            .iter()
            .any(|k| matches!(*k, "Corrupt" | "Checksum" | "NotExt"))
    }
}

fn join(dir: &str, name: &[u8]) -> String {
    let n = String::from_utf8_lossy(name);
    if dir == "/" {
        format!("/{n}")
    } else {
        format!("{dir}/{n}")
    }
}

/// Opens `io` and walks everything, bounded; compares file contents with
/// `expected`.
pub fn open_and_walk(io: Arc<dyn IoChannel>, expected: &BTreeMap<String, Vec<u8>>) -> Outcome {
    let mut out = Outcome::default();
    let opts = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    let fs = match Fs::open(io, &opts) {
        Ok(fs) => fs,
        Err(e) => {
            out.open_err = Some(kind(&e));
            return out;
        }
    };
    let rec = |out: &mut Outcome, path: &str, op: &'static str, e: &Error| {
        out.errors.push((path.to_string(), op, kind(e)));
        out.details.push(format!("{path} {op}: {e}"));
    };
    let _ = fs.statfs();
    let mut seen_dirs = HashSet::new();
    let mut queue = vec![(ROOT_INO, "/".to_string(), 0usize)];
    while let Some((dir, path, depth)) = queue.pop() {
        if depth > MAX_DEPTH || !seen_dirs.insert(dir) || out.entries > MAX_ENTRIES {
            continue;
        }
        if let Err(e) = fs.stat(dir) {
            rec(&mut out, &path, "stat", &e);
        }
        // List in batches, resuming from cookies, as FUSE does.
        let mut cookie = 0u64;
        let mut cookies = HashSet::new();
        let mut entries = Vec::new();
        let mut complete = false;
        for _ in 0..(MAX_ENTRIES / READDIR_BATCH + 2) {
            let mut batch = Vec::new();
            let r = fs.read_dir(dir, cookie, &mut |e| {
                batch.push(e);
                batch.len() < READDIR_BATCH
            });
            if let Err(e) = r {
                rec(&mut out, &path, "read_dir", &e);
                break;
            }
            let Some(last) = batch.last() else {
                complete = true;
                break;
            };
            if !cookies.insert(last.next_cookie) || last.next_cookie == cookie {
                out.cookie_loops.push(path.clone());
                break;
            }
            cookie = last.next_cookie;
            entries.extend(batch);
            if entries.len() > MAX_ENTRIES {
                break;
            }
        }
        if complete {
            out.listed.insert(path.clone());
        }
        for e in entries {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            out.entries += 1;
            if out.entries > MAX_ENTRIES {
                break;
            }
            let p = join(&path, &e.name);
            match fs.lookup(dir, &e.name) {
                Ok(ino) if ino != e.ino => out.errors.push((p.clone(), "lookup", "wrong-ino")),
                Ok(_) => {}
                Err(err) => rec(&mut out, &p, "lookup", &err),
            }
            let st = match fs.stat(e.ino) {
                Ok(st) => st,
                Err(err) => {
                    rec(&mut out, &p, "stat", &err);
                    continue;
                }
            };
            match fs.list_xattrs(e.ino) {
                Ok(names) => {
                    for n in names.iter().take(64) {
                        if let Err(err) = fs.get_xattr(e.ino, n) {
                            rec(&mut out, &p, "get_xattr", &err);
                        }
                    }
                }
                Err(err) => rec(&mut out, &p, "list_xattrs", &err),
            }
            match st.kind {
                FileKind::Dir => queue.push((e.ino, p, depth + 1)),
                FileKind::Symlink => {
                    if let Err(err) = fs.read_link(e.ino) {
                        rec(&mut out, &p, "read_link", &err);
                    }
                }
                FileKind::File => {
                    let mut data = Vec::new();
                    let mut buf = vec![0u8; READ_CHUNK];
                    let mut off = 0u64;
                    let mut failed = false;
                    while off < st.size.min(MAX_FILE_BYTES) {
                        match fs.read(e.ino, off, &mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                data.extend_from_slice(&buf[..n.min(buf.len())]);
                                off += n as u64;
                            }
                            Err(err) => {
                                rec(&mut out, &p, "read", &err);
                                failed = true;
                                break;
                            }
                        }
                    }
                    if !failed {
                        match expected.get(&p) {
                            Some(want) if *want == data => {
                                out.good.insert(p);
                            }
                            Some(_) => {
                                out.mismatched.insert(p);
                            }
                            None => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Runs `f` on its own thread; a panic or a run longer than `limit` fails
/// the test, naming `what`.
pub fn guarded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(limit) {
        Ok(()) => h
            .join()
            .unwrap_or_else(|_| panic!("{what}: the engine panicked")),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = h.join();
            panic!("{what}: the engine panicked")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: the engine hung (>{limit:?})"),
    }
}
