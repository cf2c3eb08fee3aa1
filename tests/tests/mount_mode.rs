//! Issue 7, the mount mode: `-o ro` is read-only (and asks the source
//! read-write, as a journal replay may need it); `norecovery` asks it
//! read-only; a mount that would be read-write is read-only with a warning
//! naming `-o ro` until the engine writes (never a silent read-only mount;
//! the warning, and this test's case for it, go when `ENGINE_WRITES`
//! flips); `-o rw` on a write-protected source (a read-only loop device,
//! an immutable image file) falls back to read-only with a warning, as the
//! kernel does. The VFS flags the server must know (atime mode, `sync`,
//! `dirsync`, `lazytime`) reach it.
//!
//! Invariants: fsvc never changes an image here (checked by hash); every
//! mount and loop device is released before the test returns.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fsvc_tests::fixtures::{FsKind, Mkfs};
use fsvc_tests::mount::{run_helper, servers_of, FsvcMount, FsvcOptions};
use fsvc_tests::oracle::sha256_file;
use fsvc_tests::require_privileged;
use fsvc_tests::util::{mounts_at, poll_until, read_lossy, TempDir};

fn opts(o: &str) -> FsvcOptions {
    FsvcOptions {
        options: o.to_string(),
        ..FsvcOptions::default()
    }
}

/// A small ext4 image holding `hello` ("hello\n").
fn image(scratch: &TempDir) -> PathBuf {
    let tree = scratch.subdir("tree").unwrap();
    std::fs::write(tree.join("hello"), b"hello\n").unwrap();
    let img = scratch.join("image");
    Mkfs::new(FsKind::Ext4)
        .size_mib(16)
        .build(Some(&tree), &img)
        .unwrap();
    img
}

fn mount_options(dir: &Path) -> Vec<String> {
    let m = mounts_at(dir).unwrap();
    m.first()
        .map(|e| e.options.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether a shared lock on `image` can be taken now (fsvc holds an
/// exclusive one while the source is open read-write, a shared one when
/// it is open read-only).
fn shared_lock_free(image: &Path) -> bool {
    let f = File::open(image).unwrap();
    // Dropping the lock (or the error's file) releases it at once.
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock).is_ok()
}

fn assert_no_server(source: &Path, what: &str) {
    let canon = std::fs::canonicalize(source).unwrap();
    assert!(
        poll_until(Duration::from_secs(20), || servers_of(&canon).is_empty()),
        "{what}: a server still holds {}",
        source.display()
    );
}

/// Opening `path` for writing fails with EROFS.
fn assert_write_refused(path: &Path, d: &str) {
    let w = std::fs::OpenOptions::new().write(true).open(path);
    assert_eq!(
        w.err().and_then(|e| e.raw_os_error()),
        Some(libc::EROFS),
        "write open of {}\n{d}",
        path.display()
    );
}

#[test]
fn ro_is_read_only_and_the_vfs_flags_reach_the_server() {
    if !require_privileged("ro_is_read_only_and_the_vfs_flags_reach_the_server") {
        return;
    }
    let scratch = TempDir::new("mode-ro").unwrap();
    let img = image(&scratch);
    let before = sha256_file(&img).unwrap();
    let dir = scratch.subdir("mnt").unwrap();
    let o = opts("ro,strictatime,nodiratime,sync,dirsync,lazytime");
    let m = FsvcMount::mount(&img, &dir, &o, &scratch).unwrap();
    let d = m.diagnostics();
    assert!(mount_options(&dir).iter().any(|x| x == "ro"), "{d}");
    assert_eq!(std::fs::read(dir.join("hello")).unwrap(), b"hello\n");
    assert_write_refused(&dir.join("hello"), &d);
    // -o ro asked the source read-write (a journal may need replaying).
    assert!(
        !shared_lock_free(&img),
        "the source was not asked read-write\n{d}"
    );
    let log = read_lossy(&m.helper_run().log_path);
    assert!(log.contains("mode: read-only (asked with -o ro)"), "{log}");
    for flag in [
        "sync: true",
        "dirsync: true",
        "lazytime: true",
        "atime: Strict",
        "nodiratime: true",
    ] {
        assert!(log.contains(flag), "{flag} did not reach the server\n{log}");
    }
    m.unmount().unwrap();
    assert_no_server(&img, "-o ro");
    assert_eq!(sha256_file(&img).unwrap(), before, "fsvc changed the image");
}

#[test]
fn norecovery_asks_the_source_read_only() {
    if !require_privileged("norecovery_asks_the_source_read_only") {
        return;
    }
    let scratch = TempDir::new("mode-norecovery").unwrap();
    let img = image(&scratch);
    let dir = scratch.subdir("mnt").unwrap();
    let m = FsvcMount::mount(&img, &dir, &opts("norecovery"), &scratch).unwrap();
    let d = m.diagnostics();
    assert!(mount_options(&dir).iter().any(|x| x == "ro"), "{d}");
    assert!(
        shared_lock_free(&img),
        "the source was asked read-write\n{d}"
    );
    assert_write_refused(&dir.join("hello"), &d);
    let log = read_lossy(&m.helper_run().log_path);
    assert!(log.contains("mode: read-only (norecovery)"), "{log}");
    m.unmount().unwrap();
    assert_no_server(&img, "norecovery");
}

/// A read-write mount today: read-only, and the helper says so.
fn assert_read_only_with_a_warning(m: &FsvcMount, dir: &Path, what: &str) {
    let d = m.diagnostics();
    let stderr = &m.helper_run().stderr;
    assert!(
        stderr.contains("warning")
            && stderr.contains("cannot write yet")
            && stderr.contains("-o ro"),
        "{what}: no warning naming -o ro\n{d}"
    );
    assert!(mount_options(dir).iter().any(|x| x == "ro"), "{what}\n{d}");
    assert_write_refused(&dir.join("hello"), &d);
    let log = read_lossy(&m.helper_run().log_path);
    assert!(
        log.contains("mode: read-only (the engine cannot write yet)"),
        "{what}\n{log}"
    );
}

#[test]
fn a_read_write_mount_warns_that_it_is_read_only_until_the_engine_writes() {
    if !require_privileged("a_read_write_mount_warns_that_it_is_read_only_until_the_engine_writes")
    {
        return;
    }
    let scratch = TempDir::new("mode-rw").unwrap();
    let img = image(&scratch);
    let before = sha256_file(&img).unwrap();
    let dir = scratch.subdir("mnt").unwrap();
    for o in ["", "rw", "ro,rw", "noatime"] {
        let what = format!("-o {o:?}");
        let m = FsvcMount::mount(&img, &dir, &opts(o), &scratch)
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_read_only_with_a_warning(&m, &dir, &what);
        m.unmount().unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_no_server(&img, o);
    }
    assert_eq!(sha256_file(&img).unwrap(), before, "fsvc changed the image");
}

/// A read-only loop device over `image`, detached on drop.
struct RoLoop(PathBuf);

impl RoLoop {
    fn new(image: &Path) -> RoLoop {
        let out = Command::new("losetup")
            .args(["-r", "-f", "--show"])
            .arg(image)
            .output()
            .expect("run losetup");
        assert!(out.status.success(), "losetup: {out:?}");
        RoLoop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

impl Drop for RoLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// `-o rw` on `source` mounts read-only with a warning saying why.
fn assert_falls_back(source: &Path, scratch: &TempDir, tag: &str) {
    let dir = scratch.subdir(&format!("mnt-{tag}")).unwrap();
    let run = run_helper(source, &dir, &opts("rw"), scratch).unwrap();
    let m = FsvcMount::adopt(source, &dir, run).unwrap_or_else(|e| panic!("{tag}: {e:#}"));
    let d = m.diagnostics();
    let stderr = &m.helper_run().stderr;
    assert!(
        stderr.contains("warning") && stderr.contains("write-protected"),
        "{tag}: no fallback message\n{d}"
    );
    assert!(mount_options(&dir).iter().any(|x| x == "ro"), "{tag}\n{d}");
    assert_eq!(std::fs::read(dir.join("hello")).unwrap(), b"hello\n");
    assert_write_refused(&dir.join("hello"), &d);
    let log = read_lossy(&m.helper_run().log_path);
    assert!(
        log.contains("mode: read-only (the source cannot be written"),
        "{tag}\n{log}"
    );
    m.unmount().unwrap_or_else(|e| panic!("{tag}: {e:#}"));
    assert_no_server(source, tag);
}

#[test]
fn rw_on_a_write_protected_source_falls_back_to_read_only() {
    if !require_privileged("rw_on_a_write_protected_source_falls_back_to_read_only") {
        return;
    }
    let scratch = TempDir::new("mode-fallback").unwrap();
    let img = image(&scratch);
    let before = sha256_file(&img).unwrap();
    {
        // O_RDWR on a read-only block device succeeds: the helper must ask
        // the device's flag to refuse it (EROFS).
        let dev = RoLoop::new(&img);
        assert_falls_back(&dev.0, &scratch, "ro-loop");
    }
    // An immutable image file: root's O_RDWR fails with EPERM.
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&img)
            .status()
            .is_ok_and(|s| s.success())
    };
    if chattr("+i") {
        assert_falls_back(&img, &scratch, "immutable");
        assert!(chattr("-i"), "chattr -i");
    } else {
        eprintln!(
            "note: {} takes no chattr +i; immutable case not run",
            img.display()
        );
    }
    assert_eq!(sha256_file(&img).unwrap(), before, "fsvc changed the image");
}
