//! Images whose journal needs recovery, made by the real kernel: mount an
//! ext3/ext4 image read-write, write (workloads below), `fsync`, shut the
//! filesystem down with `EXT4_IOC_SHUTDOWN` and `EXT4_GOING_FLAGS_NOLOGFLUSH`
//! (nothing more reaches the log, as after a crash), copy the image, and
//! unmount.
//!
//! Why `fsync` and a copy before the unmount: `sync` (and `syncfs`) write
//! the committed metadata home too (`sync_bdevs`), and so does the unmount
//! after a shutdown (the block device is synced when it is released), so
//! nothing would exist only in the journal. An application's `fsync`
//! commits the journal without that, and the copy taken right after the
//! shutdown is exactly what a power cut at that instant leaves: data and
//! journal on disk, the new metadata only in the journal.
//!
//! Invariants:
//! - Each builder verifies, on the copy, that `needs_recovery` is set, that
//!   what it promises is only in the journal (debugfs, which does not
//!   replay, does not see the newest names), and its workload's property
//!   (the log wraps; revoke blocks are logged), so a test can never pass on
//!   an image that lacks what it tests.
//! - The expected tree is walked from the kernel's own mount after the
//!   last fsync (mounted `noatime`, so walking changes nothing).
//! - The only `unsafe` here is the one `ioctl` call; the flags word it reads
//!   is a live local for the whole call.
#![allow(unsafe_code)]

use crate::fixtures::{debugfs, pseudo_random, set_xattr, Mkfs};
use crate::mount::KernelMount;
use crate::oracle::{self, Record};
use crate::util::{run, TempDir};
use anyhow::{bail, ensure, Context, Result};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
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

/// `dumpe2fs -h IMAGE` (stdout).
pub fn dumpe2fs_header(image: &Path) -> Result<String> {
    let out = run(Command::new("dumpe2fs").arg("-h").arg(image))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of one `Name:  value` line of `dumpe2fs -h`.
pub fn dumpe2fs_field(image: &Path, name: &str) -> Result<String> {
    let text = dumpe2fs_header(image)?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|f| f.trim().to_string())
        .with_context(|| format!("no {name:?} line in dumpe2fs -h {}", image.display()))
}

/// The features line of `dumpe2fs -h IMAGE`.
pub fn features(image: &Path) -> Result<String> {
    dumpe2fs_field(image, "Filesystem features")
}

/// True when the superblock says the journal needs recovery.
pub fn needs_recovery(image: &Path) -> Result<bool> {
    Ok(features(image)?.split(' ').any(|f| f == "needs_recovery"))
}

/// The journal's log head (`s_start`, "Journal start"): 0 when clean.
pub fn journal_start(image: &Path) -> Result<u64> {
    dumpe2fs_field(image, "Journal start")?
        .parse()
        .context("Journal start is not a number")
}

/// What `debugfs logdump` says about the log: the block it starts at and
/// every (block type name, journal block) it walks.
#[derive(Debug, Clone)]
pub struct LogDump {
    /// "Journal starts at block N".
    pub start: u64,
    /// (type name, journal block) in log order.
    pub blocks: Vec<(String, u64)>,
}

impl LogDump {
    /// Whether the live log crosses the end of the journal (a block before
    /// the start follows one after it).
    pub fn wrapped(&self) -> bool {
        self.blocks.iter().any(|(_, b)| *b < self.start)
    }

    /// How many blocks of a type ("revoke table", "commit block", ...).
    pub fn count(&self, kind: &str) -> usize {
        self.blocks.iter().filter(|(k, _)| k == kind).count()
    }
}

/// Parses `debugfs -R logdump IMAGE`.
pub fn logdump(image: &Path) -> Result<LogDump> {
    let out = run(Command::new("debugfs").arg("-R").arg("logdump").arg(image))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut start = None;
    let mut blocks = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Journal starts at block ") {
            start = rest.split(',').next().and_then(|n| n.trim().parse().ok());
        } else if let Some(rest) = line.strip_prefix("Found expected sequence ") {
            // "N, type T (NAME) at block B"
            let name = rest
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(n, _)| n.to_string());
            let block = rest
                .rsplit_once("at block ")
                .and_then(|(_, b)| b.trim().parse().ok());
            if let (Some(n), Some(b)) = (name, block) {
                blocks.push((n, b));
            }
        }
    }
    Ok(LogDump {
        start: start.with_context(|| {
            format!(
                "no log start in logdump:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?,
        blocks,
    })
}

/// What the kernel does before the shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A tree of every kind of entry, after a `sync`ed older tree some of
    /// which it rewrites, renames and deletes.
    Tree,
    /// Hundreds of small fsynced transactions on a small journal, until the
    /// live log wraps around the journal's end.
    Wrap,
    /// A directory of many files (its blocks logged), deleted (revoke
    /// records), then the freed space filled by a new file.
    Revoke,
}

/// One dirty-journal image to make.
#[derive(Debug, Clone)]
pub struct DirtySpec {
    /// Short name (file names, messages).
    pub name: &'static str,
    /// The filesystem.
    pub mkfs: Mkfs,
    /// Extra kernel mount options for the writing mount (`journal_checksum`, ...).
    pub mount_opts: &'static str,
    /// What to write.
    pub workload: Workload,
}

/// A dirty-journal image and what it must read as once replayed.
#[derive(Debug)]
pub struct DirtyImage {
    /// The image (needs recovery).
    pub path: PathBuf,
    /// The tree the kernel showed after the last fsync (the oracle).
    pub expected: Vec<Record>,
    /// The log as debugfs walked it.
    pub log: LogDump,
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).with_context(|| format!("write {}", path.display()))
}

/// fsyncs every entry under `root` (files and directories): each commits
/// the running transaction, and a file's fsync first allocates its
/// delayed blocks.
fn fsync_tree(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p)?;
        if m.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
        if m.is_dir() || m.is_file() {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("fsync {}", p.display()))?;
        }
    }
    Ok(())
}

/// Names (relative to the root) that the workload creates last: debugfs
/// must not see them before the replay.
fn newest_names(w: Workload) -> &'static [&'static str] {
    match w {
        Workload::Tree => &["new"],
        Workload::Wrap => &["last"],
        Workload::Revoke => &["reuse"],
    }
}

/// The older tree of [`Workload::Tree`], put in the image by mkfs (so it
/// is on disk in place, and no `sync` is needed: see the module doc).
fn old_tree(root: &Path) -> Result<()> {
    fs::create_dir_all(root.join("old"))?;
    write(&root.join("old/keep"), b"kept as it was\n")?;
    write(&root.join("old/rewrite"), &pseudo_random(11, 1000))?;
    write(&root.join("old/gone"), b"deleted later\n")?;
    write(&root.join("old/moved"), &pseudo_random(12, 3000))?;
    Ok(())
}

fn tree_workload(m: &Path) -> Result<()> {
    // The new tree: only in the journal once fsynced.
    let n = m.join("new");
    fs::create_dir_all(n.join("sub/deeper"))?;
    write(&n.join("big"), &pseudo_random(13, 300_000))?;
    write(&n.join("small"), b"small file\n")?;
    write(&n.join("sub/x"), &pseudo_random(14, 5000))?;
    write(&n.join("sub/deeper/y"), &pseudo_random(15, 70_000))?;
    symlink("small", n.join("link"))?;
    symlink("l".repeat(200), n.join("slow-link"))?;
    fs::hard_link(n.join("small"), n.join("hard"))?;
    set_xattr(&n.join("small"), "user.colour", b"blue")?;
    set_xattr(&n.join("sub/x"), "user.big", &pseudo_random(16, 900))?;
    fs::set_permissions(n.join("small"), fs::Permissions::from_mode(0o640))?;
    lchown(n.join("sub/x"), Some(1234), Some(5678))?;
    let sparse = File::create(n.join("sparse"))?;
    sparse.set_len(1 << 20)?;
    std::os::unix::fs::FileExt::write_at(&sparse, &pseudo_random(17, 4096), 700_000)?;
    drop(sparse);
    mknod(
        &n.join("fifo"),
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(0o644),
        0,
    )?;
    mknod(
        &n.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )?;
    for i in 0..40 {
        write(
            &n.join(format!("many-{i:03}-{}", "n".repeat(60))),
            &[i as u8; 300],
        )?;
    }
    // Changes to the older tree.
    write(&m.join("old/rewrite"), &pseudo_random(18, 2500))?;
    fs::remove_file(m.join("old/gone"))?;
    fs::rename(m.join("old/moved"), n.join("moved"))?;
    fsync_tree(m)
}

/// Writes fsynced transactions until the live log (read by debugfs from
/// the image under the mount) wraps, bounded.
fn wrap_workload(m: &Path, image: &Path) -> Result<()> {
    const BATCH: usize = 20;
    const MAX_FILES: usize = 4000;
    for i in 0..MAX_FILES {
        let dir = m.join(format!("w{:02}", i / 100));
        if i % 100 == 0 {
            fs::create_dir(&dir)?;
        }
        let f = dir.join(format!("f{i:04}"));
        write(&f, &pseudo_random(1000 + i as u64, 6000))?;
        File::open(&f)?.sync_all()?;
        // Read under the live mount: a superblock caught mid-write makes
        // debugfs fail, which only means "look again later".
        if i % BATCH == BATCH - 1 && i > 200 && logdump(image).is_ok_and(|l| l.wrapped()) {
            fs::create_dir(m.join("last"))?;
            write(&m.join("last/marker"), b"the last transaction\n")?;
            return fsync_tree(&m.join("last"));
        }
    }
    bail!("the log did not wrap after {MAX_FILES} fsynced files")
}

fn revoke_workload(m: &Path) -> Result<()> {
    let d = m.join("doomed");
    fs::create_dir(&d)?;
    for i in 0..400 {
        write(
            &d.join(format!("entry-{i:04}-{}", "d".repeat(80))),
            &[7; 100],
        )?;
    }
    // Large enough for indirect blocks (ext3) or an extent index.
    write(&d.join("big"), &pseudo_random(21, 3 << 20))?;
    // Two commits (not one per file: the journal must still hold them,
    // not have checkpointed them away, when the shutdown comes).
    File::open(d.join("big"))?.sync_all()?;
    File::open(&d)?.sync_all()?;
    fs::remove_dir_all(&d)?;
    File::open(m)?.sync_all()?;
    // Fill most of the free space so the freed blocks are reused for data:
    // a replay that ignored the revoke records would write old directory
    // blocks over this file.
    let st = nix::sys::statvfs::statvfs(m)?;
    let free = st.blocks_free() as u64 * st.fragment_size() as u64;
    let len = free.saturating_sub(free / 20 + (2 << 20));
    write(&m.join("reuse"), &pseudo_random(22, len as usize))?;
    fsync_tree(m)
}

/// Attempts at making an image whose newest metadata is only in the
/// journal: the kernel's periodic writeback may write it home first on a
/// loaded machine (the block device's dirty pages expire 30 s after the
/// device first became dirty), which the builder detects and retries.
const ATTEMPTS: usize = 3;

/// Makes `spec` in `scratch` and verifies its promises (see the module doc).
pub fn dirty_image(scratch: &TempDir, spec: &DirtySpec) -> Result<DirtyImage> {
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        match make_dirty(scratch, spec, attempt)? {
            Ok(img) => return Ok(img),
            Err(why) => last = Some(why),
        }
    }
    bail!(
        "{}: {ATTEMPTS} attempts, never only in the journal: {}",
        spec.name,
        last.unwrap_or_default()
    )
}

/// One attempt: `Ok(Err(why))` when the kernel wrote the newest metadata
/// home before the shutdown (worth another try), `Err` on any other failure.
fn make_dirty(
    scratch: &TempDir,
    spec: &DirtySpec,
    attempt: usize,
) -> Result<std::result::Result<DirtyImage, String>> {
    let live = scratch.join(format!("{}.live", spec.name));
    let path = scratch.join(format!("{}.dirty", spec.name));
    if spec.workload == Workload::Tree {
        let seed = scratch.join(format!("{}-seed-{attempt}", spec.name));
        old_tree(&seed)?;
        spec.mkfs.build(Some(&seed), &live)?;
        fs::remove_dir_all(&seed)?;
    } else {
        spec.mkfs.build(None, &live)?;
    }
    let dir = scratch.subdir(&format!("{}-rw-{attempt}", spec.name))?;
    let mut opts = "loop,noatime".to_string();
    if !spec.mount_opts.is_empty() {
        opts = format!("{opts},{}", spec.mount_opts);
    }
    let m = KernelMount::with_options(&live, &dir, &opts)?;
    let res = (|| -> Result<Vec<Record>> {
        match spec.workload {
            Workload::Tree => tree_workload(&dir)?,
            Workload::Wrap => wrap_workload(&dir, &live)?,
            Workload::Revoke => revoke_workload(&dir)?,
        }
        let expected = oracle::walk(&dir)?;
        shutdown_nologflush(&dir).context("EXT4_IOC_SHUTDOWN NOLOGFLUSH")?;
        fs::copy(&live, &path)?;
        Ok(expected)
    })();
    // Unmount whatever happened (the guard would too, but report failure).
    let um = m.unmount();
    let expected = res.with_context(|| format!("{}: {}", spec.name, spec.mkfs.describe()))?;
    um?;
    fs::remove_file(&live)?;

    ensure!(
        needs_recovery(&path)?,
        "{}: needs_recovery not set after a NOLOGFLUSH shutdown: {}",
        spec.name,
        features(&path)?
    );
    let root = debugfs(&path, "ls -l /")?;
    for name in newest_names(spec.workload) {
        if root
            .lines()
            .any(|l| l.split_whitespace().last() == Some(name))
        {
            return Ok(Err(format!(
                "/{name} is on disk before the replay (not only in the journal):\n{root}"
            )));
        }
        ensure!(
            oracle::find(&expected, name).is_some(),
            "{}: the kernel did not show /{name}",
            spec.name
        );
    }
    let log = logdump(&path)?;
    ensure!(
        log.count("commit block") > 0,
        "{}: no committed transaction in the log: {log:?}",
        spec.name
    );
    match spec.workload {
        Workload::Wrap => ensure!(
            log.wrapped(),
            "{}: the log does not wrap: {log:?}",
            spec.name
        ),
        Workload::Revoke => ensure!(
            log.count("revoke table") > 0,
            "{}: no revoke block in the log",
            spec.name
        ),
        Workload::Tree => {
            let old = debugfs(&path, "ls -l /old")?;
            if !old.contains("gone") {
                return Ok(Err(
                    "the unlink of /old/gone reached the disk before the replay".into(),
                ));
            }
        }
    }
    Ok(Ok(DirtyImage {
        path,
        expected,
        log,
    }))
}

/// A loop device over an image (read-only when asked), detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    /// The device node (`/dev/loopN`).
    pub path: PathBuf,
}

impl LoopDevice {
    /// `losetup [-r] -f --show IMAGE`.
    pub fn new(image: &Path, read_only: bool) -> Result<LoopDevice> {
        let mut c = Command::new("losetup");
        if read_only {
            c.arg("-r");
        }
        let out = run(c.args(["-f", "--show"]).arg(image))?;
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ensure!(dev.starts_with("/dev/loop"), "losetup printed {dev:?}");
        Ok(LoopDevice {
            path: PathBuf::from(dev),
        })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}
