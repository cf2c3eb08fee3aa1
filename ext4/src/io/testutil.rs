//! Helpers shared by the io and fuse unit tests: unique temp paths,
//! deterministic test data, and the privileged-skip rule (a test that needs
//! root or a device it cannot have prints why and skips, unless
//! `FSVC_REQUIRE_PRIVILEGED=1`, where the skip is a failure).
//!
//! Compiled for this crate's own tests and, through the `test-util`
//! feature, for the server's unit tests (its dev-dependency enables it);
//! never part of a release build.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Skips (returns) with a printed reason, or panics when privileged tests are required.
pub fn skip(reason: &str) {
    if std::env::var("FSVC_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("FSVC_REQUIRE_PRIVILEGED=1 but the test cannot run: {reason}");
    }
    eprintln!("SKIP: {reason}");
}

/// Whether the process is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A fresh directory under `base` (removed on drop).
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `/<base>/iofuse-<tag>-<pid>-<n>`.
    pub fn new_in(base: &str, tag: &str) -> std::io::Result<TempDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = PathBuf::from(base).join(format!("iofuse-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    /// Same under /tmp.
    pub fn new(tag: &str) -> std::io::Result<TempDir> {
        TempDir::new_in("/tmp", tag)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes of deterministic pseudo-random data (xorshift), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
