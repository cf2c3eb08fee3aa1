//! Test fixtures for the write path: real images made by `mkfs.ext4` at
//! test time (never committed), opened read-write on a [`MemChannel`], and
//! checked with `e2fsck -fn` afterwards. For the engine's unit tests and,
//! through the `test-util` feature, for its integration tests and other
//! crates' tests.
//!
//! ```ignore
//! let Some(img) = testfs::Image::mkfs(&["-b", "1024"], "8M") else { return };
//! let fs = img.open_rw();
//! let mut tx = fs.begin(Creds::ROOT)?;
//! // ... change through tx ...
//! tx.commit()?;
//! fs.unmount()?;
//! img.fsck_clean();
//! ```
//!
//! A missing `mkfs.ext4`/`e2fsck` makes [`Image::mkfs`] print why and return
//! `None` (the test skips), or panic when `FSVC_REQUIRE_PRIVILEGED=1`
//! (CI has e2fsprogs, so a skip there is a failure).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::fs::Fs;
use crate::io::mem::MemChannel;
use crate::io::testutil::skip;
use crate::types::OpenOptions;

/// An image in memory, made by mkfs.
#[derive(Debug, Clone)]
pub struct Image {
    /// The device the filesystem is opened on.
    pub mem: Arc<MemChannel>,
    /// The mkfs arguments, for messages.
    pub args: Vec<String>,
}

/// What `e2fsck -fn` said.
#[derive(Debug, Clone)]
pub struct Fsck {
    /// Exit status (0 clean, 4 errors left uncorrected, 8 operational error).
    pub code: i32,
    /// Its standard output and error.
    pub output: String,
}

fn scratch(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "fsvc-testfs-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Image {
    /// `mkfs.ext4 -q -F <args> IMG <size>` into memory (`-t ext2`/`ext3`
    /// and `-O` options go in `args`). `None` when mkfs cannot run.
    pub fn mkfs(args: &[&str], size: &str) -> Option<Image> {
        let path = scratch("mkfs");
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "root_owner=0:0"])
            .args(args)
            .arg(&path)
            .arg(size)
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                skip(&format!("mkfs.ext4 cannot run: {e}"));
                return None;
            }
        };
        assert!(
            out.status.success(),
            "mkfs.ext4 {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&path).expect("read the image mkfs made");
        let _ = std::fs::remove_file(&path);
        Some(Image {
            mem: Arc::new(MemChannel::new(bytes)),
            args: args.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Opens the filesystem read-write (panics with the reason if refused).
    pub fn open_rw(&self) -> Fs {
        self.open(false)
    }

    /// Opens the filesystem read-only.
    pub fn open_ro(&self) -> Fs {
        self.open(true)
    }

    fn open(&self, read_only: bool) -> Fs {
        let opts = OpenOptions {
            read_only,
            ..OpenOptions::default()
        };
        Fs::open(self.mem.clone(), &opts)
            .unwrap_or_else(|e| panic!("open {:?} (ro={read_only}): {e}", self.args))
    }

    /// A copy of the device's bytes now.
    pub fn bytes(&self) -> Vec<u8> {
        self.mem.snapshot()
    }

    /// `e2fsck -fn` of the device's current bytes.
    pub fn fsck(&self) -> Fsck {
        fsck_bytes(&self.bytes())
    }

    /// Asserts `e2fsck -fn` finds nothing wrong.
    pub fn fsck_clean(&self) {
        let r = self.fsck();
        assert_eq!(r.code, 0, "e2fsck -fn on {:?}:\n{}", self.args, r.output);
    }
}

impl Fsck {
    /// The numbers e2fsck lists after `"<what> bitmap differences:"`
    /// (`what` is "Block" or "Inode"), expanded: `+n` (in use but free in
    /// the bitmap) as `n`, `-n` (marked in use but unused) as `-n`.
    pub fn bitmap_differences(&self, what: &str) -> Vec<i64> {
        let key = format!("{what} bitmap differences:");
        let mut out = Vec::new();
        for line in self.output.lines() {
            let Some(rest) = line.trim_start().strip_prefix(&key) else {
                continue;
            };
            for tok in rest.split_whitespace() {
                let (sign, body) = match tok.split_at(1) {
                    ("+", b) => (1, b),
                    ("-", b) => (-1, b),
                    _ => panic!("e2fsck difference {tok:?}"),
                };
                let body = body.trim_start_matches('(').trim_end_matches(')');
                let (a, b) = body.split_once("--").unwrap_or((body, body));
                let (a, b): (i64, i64) = (a.parse().unwrap(), b.parse().unwrap());
                out.extend((a..=b).map(|n| sign * n));
            }
        }
        out
    }

    /// The lines of the report that are neither e2fsck's progress nor one
    /// of `allowed` (prefixes): what a test did not expect it to find.
    pub fn unexpected(&self, allowed: &[&str]) -> Vec<String> {
        const ROUTINE: &[&str] = &[
            "Pass ",
            "e2fsck ",
            "Fix? no",
            "Clear? no",
            "Warning: skipping journal recovery",
        ];
        self.output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains("WARNING: Filesystem still has errors"))
            .filter(|l| !(l.contains(" files (") && l.contains("non-contiguous")))
            .filter(|l| !ROUTINE.iter().chain(allowed).any(|p| l.starts_with(p)))
            .map(str::to_string)
            .collect()
    }
}

impl Image {
    /// A copy of this image changed by `debugfs -w -R <request>` (to make
    /// damage or odd states the engine must handle).
    pub fn debugfs_write(&self, request: &str) -> Image {
        let path = scratch("debugfs-w");
        std::fs::write(&path, self.bytes()).expect("write the image for debugfs");
        let out = Command::new("debugfs")
            .args(["-w", "-R", request])
            .arg(&path)
            .output()
            .expect("run debugfs");
        assert!(out.status.success(), "debugfs -w -R {request:?} failed");
        let bytes = std::fs::read(&path).expect("read the image debugfs changed");
        let _ = std::fs::remove_file(&path);
        Image {
            mem: Arc::new(MemChannel::new(bytes)),
            args: self.args.clone(),
        }
    }

    /// A fresh device holding a copy of this image's bytes.
    pub fn copy(&self) -> Image {
        Image {
            mem: Arc::new(MemChannel::new(self.bytes())),
            args: self.args.clone(),
        }
    }

    /// Runs `debugfs -R <request>` (read-only) on the device's current
    /// bytes and returns what it printed: e2fsprogs' own view of the
    /// image, an oracle independent of the engine.
    pub fn debugfs(&self, request: &str) -> String {
        let path = scratch("debugfs");
        std::fs::write(&path, self.bytes()).expect("write the image for debugfs");
        let out = Command::new("debugfs")
            .args(["-R", request])
            .arg(&path)
            .output()
            .expect("run debugfs");
        let _ = std::fs::remove_file(&path);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// `e2fsck -fn` of an image held in `bytes`.
pub fn fsck_bytes(bytes: &[u8]) -> Fsck {
    let path = scratch("fsck");
    std::fs::write(&path, bytes).expect("write the image for e2fsck");
    let out = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&path)
        .output()
        .expect("run e2fsck");
    let _ = std::fs::remove_file(&path);
    Fsck {
        code: out.status.code().unwrap_or(-1),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The geometries the write tests run on: (name, mkfs arguments, size).
pub const GEOMETRIES: &[(&str, &[&str], &str)] = &[
    ("ext4-1k", &["-b", "1024"], "16M"),
    ("ext4-4k", &["-b", "4096"], "64M"),
    (
        "ext4-1k-nocsum",
        &["-b", "1024", "-O", "^metadata_csum,uninit_bg"],
        "16M",
    ),
    ("ext4-4k-64bit", &["-b", "4096", "-O", "64bit"], "64M"),
    ("ext4-1k-noflex", &["-b", "1024", "-O", "^flex_bg"], "16M"),
    ("ext3-1k", &["-t", "ext3", "-b", "1024"], "16M"),
    ("ext2-4k", &["-t", "ext2", "-b", "4096"], "32M"),
    (
        "ext4-1k-meta_bg",
        &["-b", "1024", "-O", "meta_bg,^resize_inode"],
        "16M",
    ),
];

/// Cases of the allocators' randomized tests: `FSVC_ALLOC_CASES`, default
/// 24 (a few seconds each; raise it for a long run).
pub fn alloc_cases() -> u32 {
    std::env::var("FSVC_ALLOC_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

impl Image {
    /// [`Image::mkfs`] of a filesystem whose root holds `files` (name,
    /// contents), copied in by `mkfs -d` from a scratch directory.
    pub fn mkfs_with_files(args: &[&str], size: &str, files: &[(&str, &[u8])]) -> Option<Image> {
        let dir = scratch("tree");
        std::fs::create_dir_all(&dir).expect("make the scratch tree");
        for (name, data) in files {
            std::fs::write(dir.join(name), data).expect("write a scratch file");
        }
        let d = dir.to_string_lossy().into_owned();
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-d", &d]);
        let img = Image::mkfs(&a, size);
        let _ = std::fs::remove_dir_all(&dir);
        img
    }
}

/// A small deterministic generator (xorshift64*) for randomized tests, so
/// that a failing sequence is reproduced by its seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n` (0 for `n` 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
