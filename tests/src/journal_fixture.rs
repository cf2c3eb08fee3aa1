//! Images whose journal needs recovery, made by the real kernel: mount an
//! ext3/ext4 image read-write, write, `sync`, write more, then shut the
//! filesystem down with `EXT4_IOC_SHUTDOWN` and `EXT4_GOING_FLAGS_NOLOGFLUSH`
//! (the log is not flushed, exactly as after a crash) and unmount.
//!
//! Invariants:
//! - The builder verifies with `dumpe2fs -h` that `needs_recovery` is set, so
//!   a test can never pass on an image whose journal happens to be clean.
//! - The only `unsafe` here is the one `ioctl` call; the flags word it reads
//!   is a live local for the whole call.
#![allow(unsafe_code)]

use crate::fixtures::{pseudo_random, FsKind, Mkfs};
use crate::mount::KernelMount;
use crate::util::{run, TempDir};
use anyhow::{ensure, Context, Result};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `EXT4_IOC_SHUTDOWN`: `_IOR('X', 125, __u32)`.
pub const EXT4_IOC_SHUTDOWN: u32 = 0x8004_587D;
/// `EXT4_GOING_FLAGS_NOLOGFLUSH`: shut down without flushing the journal.
pub const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// Shuts down the ext4 filesystem mounted at `mountpoint` without flushing
/// its log (everything not yet committed to the journal is lost, and what
/// is in the journal stays un-checkpointed).
pub fn shutdown_nologflush(mountpoint: &Path) -> io::Result<()> {
    let dir = File::open(mountpoint)?;
    let flags: u32 = EXT4_GOING_FLAGS_NOLOGFLUSH;
    // SAFETY: `dir` is an open fd for the whole call; the ioctl reads one
    // u32 through the pointer, which points at the live local `flags`.
    let rc = unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            EXT4_IOC_SHUTDOWN as libc::Ioctl,
            &flags as *const u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The features line of `dumpe2fs -h IMAGE`.
pub fn features(image: &Path) -> Result<String> {
    let out = run(Command::new("dumpe2fs").arg("-h").arg(image))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Filesystem features:"))
        .map(|f| f.trim().to_string())
        .with_context(|| format!("no features line in dumpe2fs -h {}", image.display()))
}

/// True when the superblock says the journal needs recovery.
pub fn needs_recovery(image: &Path) -> Result<bool> {
    Ok(features(image)?.split(' ').any(|f| f == "needs_recovery"))
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).with_context(|| format!("write {}", path.display()))
}

/// Makes `name` in `scratch`: a `kind` image (with a journal) holding a
/// small tree written by the kernel, then synced, then more writes, then a
/// NOLOGFLUSH shutdown and umount. Verified: `needs_recovery` is set.
pub fn dirty_journal_image(scratch: &TempDir, kind: FsKind, name: &str) -> Result<PathBuf> {
    ensure!(kind != FsKind::Ext2, "ext2 has no journal");
    let image = scratch.join(name);
    Mkfs::new(kind).size_mib(32).build(None, &image)?;
    let dir = scratch.subdir(&format!("{name}-rw"))?;
    let m = KernelMount::rw(&image, &dir)?;
    let res = (|| -> Result<()> {
        fs::create_dir_all(dir.join("synced/sub"))?;
        write(&dir.join("synced/a"), b"written before sync\n")?;
        write(&dir.join("synced/big"), &pseudo_random(501, 300_000))?;
        write(&dir.join("synced/sub/b"), &pseudo_random(502, 5000))?;
        std::os::unix::fs::symlink("a", dir.join("synced/link"))?;
        nix::unistd::sync();
        fs::create_dir(dir.join("later"))?;
        write(&dir.join("later/c"), &pseudo_random(503, 70_000))?;
        write(
            &dir.join("synced/a"),
            b"rewritten after sync, never flushed\n",
        )?;
        fs::remove_file(dir.join("synced/sub/b"))?;
        shutdown_nologflush(&dir).context("EXT4_IOC_SHUTDOWN NOLOGFLUSH")?;
        Ok(())
    })();
    // Unmount whatever happened (the guard would too, but report failure).
    let um = m.unmount();
    res?;
    um?;
    ensure!(
        needs_recovery(&image)?,
        "{}: needs_recovery not set after a NOLOGFLUSH shutdown: {}",
        image.display(),
        features(&image)?
    );
    Ok(image)
}
