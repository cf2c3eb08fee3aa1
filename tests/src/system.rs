//! Test fixtures that touch the system outside the test's temp dir, each a
//! guard that undoes itself: a loop device over an image, and the
//! umount(8) helper link `/sbin/umount.fuse.fsvc` (umount(8) only looks in
//! /sbin), plus the two "is the source free?" probes the unmount tests use.
//!
//! Invariant: a guard only removes what it created itself; an existing
//! helper (an installed fsvc) is used as it is and left in place.

use anyhow::{bail, Context, Result};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use crate::util::{bin, run};

/// Where umount(8) finds the helper for `fuse.fsvc.*` mounts.
pub const UMOUNT_HELPER: &str = "/sbin/umount.fuse.fsvc";

/// Serializes the tests of one binary that install system-wide things.
static SYSTEM: Mutex<()> = Mutex::new(());

/// The file whose `flock` serializes such tests across processes (two
/// test binaries, or two checkouts on one machine, must not swap
/// `/sbin/umount.fuse.fsvc` or `/etc/fsvc/policy.toml` under each other).
pub const SYSTEM_LOCK_FILE: &str = "/run/fsvc-tests.lock";

/// Exclusive use of the machine-wide things tests change (the umount
/// helper link, the policy file, test users' mounts, /etc/fstab): held
/// in this process (a mutex) and across processes (a `flock`).
#[derive(Debug)]
pub struct SystemLock {
    _flock: nix::fcntl::Flock<std::fs::File>,
    _mutex: MutexGuard<'static, ()>,
}

impl SystemLock {
    /// Waits for the lock (blocking: the holder is a test that ends).
    pub fn take() -> Result<SystemLock> {
        let mutex = SYSTEM.lock().unwrap_or_else(|p| p.into_inner());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(SYSTEM_LOCK_FILE)
            .with_context(|| format!("open {SYSTEM_LOCK_FILE}"))?;
        let flock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("flock {SYSTEM_LOCK_FILE}: {e}"))?;
        Ok(SystemLock {
            _flock: flock,
            _mutex: mutex,
        })
    }
}

/// Holds the system lock and the umount helper link while alive.
#[derive(Debug)]
pub struct UmountHelper {
    created: bool,
    _lock: SystemLock,
}

impl UmountHelper {
    /// Makes `/sbin/umount.fuse.fsvc` point at the built `fsvc-mount` unless
    /// one is there already.
    pub fn install() -> Result<UmountHelper> {
        let lock = SystemLock::take()?;
        let path = Path::new(UMOUNT_HELPER);
        let created = if path.symlink_metadata().is_ok() {
            false
        } else {
            std::os::unix::fs::symlink(bin("fsvc-mount"), path)
                .with_context(|| format!("symlink {UMOUNT_HELPER}"))?;
            true
        };
        Ok(UmountHelper {
            created,
            _lock: lock,
        })
    }
}

impl Drop for UmountHelper {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(UMOUNT_HELPER);
        }
    }
}

/// A loop device over an image, detached on drop.
#[derive(Debug)]
pub struct LoopDev {
    path: PathBuf,
}

impl LoopDev {
    /// `losetup --find --show IMAGE`.
    pub fn attach(image: &Path) -> Result<LoopDev> {
        let out = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image))?;
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dev.starts_with("/dev/loop") {
            bail!("losetup printed {dev:?}");
        }
        Ok(LoopDev {
            path: PathBuf::from(dev),
        })
    }

    /// The device node.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// Opens a block device with `O_EXCL` (what a mounter does): fails with
/// EBUSY while anyone holds it exclusively or has it mounted.
pub fn open_excl(dev: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    open(
        dev,
        OFlag::O_RDONLY | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// Whether an exclusive `flock` on an image can be had at once (what
/// fsvc's helper takes before a read-write mount; a live server holds a
/// lock on it). The lock is released before returning.
pub fn image_lock_free(image: &Path) -> Result<bool> {
    let f = std::fs::File::open(image).with_context(|| format!("open {}", image.display()))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_unlocked_on_drop) => Ok(true),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(false),
        Err((_, e)) => bail!("flock {}: {e}", image.display()),
    }
}
