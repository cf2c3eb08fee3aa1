//! The benchmark's fixture: a generated tree (a few large files for
//! sequential reads, many 4 KiB files spread over directories for stat and
//! readdir) turned into ONE ext4 image by `mkfs.ext4 -d`.
//!
//! Invariants: contents are pseudo-random (seeded, reproducible) so that
//! neither mkfs nor any layer below can turn them into holes or compress
//! them; the [`Layout`] lists exactly what was written, and the workloads
//! check what they read against it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Size of every small file.
pub const SMALL_FILE_SIZE: usize = 4096;
/// Directory (relative to the image root) holding the large files.
const LARGE_DIR: &str = "large";
/// Directory (relative to the image root) holding the small-file directories.
const SMALL_DIR: &str = "small";
/// Bytes written per `write` call while generating large files.
const CHUNK: usize = 1 << 20;
const MIB: u64 = 1 << 20;

/// What the image contains, as paths relative to its root.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Large files and their sizes (sequential read workload).
    pub large: Vec<(PathBuf, u64)>,
    /// Every small file (stat workload).
    pub small: Vec<PathBuf>,
    /// Every directory that is listed by the readdir workload, with the
    /// number of entries it holds (without `.` and `..`).
    pub dirs: Vec<(PathBuf, usize)>,
}

impl Layout {
    /// Total bytes of the large files.
    pub fn large_bytes(&self) -> u64 {
        self.large.iter().map(|(_, s)| s).sum()
    }

    /// Total entries over the listed directories.
    pub fn dir_entries(&self) -> usize {
        self.dirs.iter().map(|(_, n)| n).sum()
    }
}

/// Deterministic xorshift64* generator: fast enough to fill hundreds of MiB.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes the tree under `root` (which must not exist yet).
pub fn generate(root: &Path, size_mib: u64, files: usize, dirs: usize) -> Result<Layout> {
    let dirs = dirs.max(1);
    fs::create_dir_all(root.join(LARGE_DIR))?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // A few large files rather than one: closer to a real tree, and each file
    // starts a fresh readahead window.
    let total = size_mib * MIB;
    let count: u64 = if size_mib >= 16 { 4 } else { 1 };
    let mut large = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    for i in 0..count {
        let size = total / count;
        let rel = Path::new(LARGE_DIR).join(format!("big{i}.bin"));
        let mut f = fs::File::create(root.join(&rel))?;
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            rng.fill(&mut buf[..n]);
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        large.push((rel, size));
    }

    let mut small = Vec::with_capacity(files);
    let mut per_dir = vec![0usize; dirs];
    for d in 0..dirs {
        fs::create_dir_all(root.join(SMALL_DIR).join(format!("d{d:03}")))?;
    }
    let mut data = [0u8; SMALL_FILE_SIZE];
    for i in 0..files {
        let d = i % dirs;
        let rel = Path::new(SMALL_DIR)
            .join(format!("d{d:03}"))
            .join(format!("f{i:06}"));
        rng.fill(&mut data);
        fs::write(root.join(&rel), data)?;
        per_dir[d] += 1;
        small.push(rel);
    }

    let mut listed = vec![
        (PathBuf::new(), 2),
        (PathBuf::from(LARGE_DIR), large.len()),
        (PathBuf::from(SMALL_DIR), dirs),
    ];
    for (d, n) in per_dir.iter().enumerate() {
        listed.push((Path::new(SMALL_DIR).join(format!("d{d:03}")), *n));
    }
    Ok(Layout {
        large,
        small,
        dirs: listed,
    })
}

/// Smallest image made: PEERS.md's figures come from a 2 GiB image made by
/// mkfs.ext4 defaults, which at this size means the "default" usage type
/// (4 KiB blocks, 256-byte inodes). Smaller images would get the "small"
/// type (1 KiB blocks, 128-byte inodes) and measure a different layout.
const MIN_IMAGE_BYTES: u64 = 2 << 30;
/// Superblock offset in the image, and the fields read back for the report.
const SB_OFFSET: u64 = 1024;
const SB_LEN: usize = 1024;
const SB_LOG_BLOCK_SIZE: usize = 0x18;
const SB_MAGIC: usize = 0x38;
const SB_REV_LEVEL: usize = 0x4c;
const SB_INODE_SIZE: usize = 0x58;
const EXT4_MAGIC: u16 = 0xef53;
/// Inode size of revision-0 filesystems (no `s_inode_size` field).
const GOOD_OLD_INODE_SIZE: u32 = 128;

/// Geometry of the made image, printed in the report header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Filesystem block size, bytes.
    pub block_size: u32,
    /// On-disk inode size, bytes.
    pub inode_size: u32,
}

/// Makes an ext4 image at `image` from `tree` with mkfs.ext4's defaults
/// (no `-N`, no `-b`, no `-I`): 2 GiB, or more if the tree needs it. The file
/// is sparse, so the unused space costs nothing.
pub fn make_image(tree: &Path, image: &Path, layout: &Layout) -> Result<Geometry> {
    let data = layout.large_bytes() + (layout.small.len() as u64) * SMALL_FILE_SIZE as u64;
    // 15% + 64 MiB covers the journal, inode tables and bitmaps at the
    // default inode ratio.
    let size_kib = (data + data / 7 + 64 * MIB).max(MIN_IMAGE_BYTES) / 1024;
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-t", "ext4", "-L", "fsvc-bench", "-d"])
        .arg(tree)
        .arg(image)
        .arg(format!("{size_kib}k"))
        .output()
        .context("running mkfs.ext4 (package e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    geometry(image)
}

/// Reads block and inode size back from the image's superblock.
pub fn geometry(image: &Path) -> Result<Geometry> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(image).with_context(|| format!("open {}", image.display()))?;
    let mut sb = [0u8; SB_LEN];
    f.read_exact_at(&mut sb, SB_OFFSET)
        .context("reading the superblock")?;
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    if u16_at(SB_MAGIC) != EXT4_MAGIC {
        bail!("{}: no ext4 superblock", image.display());
    }
    let log = u32_at(SB_LOG_BLOCK_SIZE);
    if log > 6 {
        bail!("{}: bad s_log_block_size {log}", image.display());
    }
    let inode_size = if u32_at(SB_REV_LEVEL) == 0 {
        GOOD_OLD_INODE_SIZE
    } else {
        u32::from(u16_at(SB_INODE_SIZE))
    };
    Ok(Geometry {
        block_size: 1024 << log,
        inode_size,
    })
}
