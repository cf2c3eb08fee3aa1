//! The three workloads, run against a mounted tree: sequential read of the
//! large files, lstat of every small file, and listing every directory.
//!
//! Invariants: each pass checks what it got against the [`Layout`] (bytes
//! read, sizes, entry counts), so a system that returns wrong or short data
//! is reported as an error instead of a flattering number. Timing covers the
//! filesystem calls only.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::tree::{Layout, SMALL_FILE_SIZE};

/// Read buffer for the sequential workload (what `cp`/`dd bs=1M` use).
const READ_BUF: usize = 1 << 20;

/// A workload of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Read every large file start to end.
    SeqRead,
    /// lstat every small file.
    Stat,
    /// List every directory.
    Readdir,
}

impl Workload {
    /// All workloads, in table order.
    pub const ALL: [Workload; 3] = [Workload::SeqRead, Workload::Stat, Workload::Readdir];

    /// Name used in the table and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::SeqRead => "seq_read",
            Workload::Stat => "stat",
            Workload::Readdir => "readdir",
        }
    }

    /// Unit of the rate.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::SeqRead => "MB/s",
            Workload::Stat => "stat/s",
            Workload::Readdir => "entries/s",
        }
    }

    /// Runs one pass under `root` and returns the rate in [`Self::unit`].
    pub fn pass(self, root: &Path, layout: &Layout) -> Result<f64> {
        let (amount, took) = match self {
            Workload::SeqRead => seq_read(root, layout)?,
            Workload::Stat => stat_all(root, layout)?,
            Workload::Readdir => readdir_all(root, layout)?,
        };
        let secs = took.as_secs_f64().max(1e-9);
        Ok(match self {
            Workload::SeqRead => amount / secs / 1e6,
            _ => amount / secs,
        })
    }
}

fn seq_read(root: &Path, layout: &Layout) -> Result<(f64, Duration)> {
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    let start = Instant::now();
    for (rel, size) in &layout.large {
        let path = root.join(rel);
        let mut f = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        let mut got = 0u64;
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("read {} at {got}", path.display()))?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        if got != *size {
            bail!("{}: read {got} bytes, expected {size}", path.display());
        }
        total += got;
    }
    Ok((total as f64, start.elapsed()))
}

fn stat_all(root: &Path, layout: &Layout) -> Result<(f64, Duration)> {
    let start = Instant::now();
    for rel in &layout.small {
        let path = root.join(rel);
        let md =
            fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
        if !md.is_file() || md.len() != SMALL_FILE_SIZE as u64 {
            bail!("{}: wrong type or size {}", path.display(), md.len());
        }
    }
    Ok((layout.small.len() as f64, start.elapsed()))
}

fn readdir_all(root: &Path, layout: &Layout) -> Result<(f64, Duration)> {
    let start = Instant::now();
    let mut total = 0usize;
    for (rel, want) in &layout.dirs {
        let path = root.join(rel);
        let mut n = 0usize;
        for e in fs::read_dir(&path).with_context(|| format!("readdir {}", path.display()))? {
            e.with_context(|| format!("readdir {}", path.display()))?;
            n += 1;
        }
        // The root also holds lost+found; others hold exactly what we wrote.
        if n < *want {
            bail!("{}: {n} entries, expected at least {want}", path.display());
        }
        total += n;
    }
    Ok((total as f64, start.elapsed()))
}
