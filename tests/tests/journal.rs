//! Issue 3, journal item: a filesystem whose journal needs recovery (made by
//! the real kernel: write, sync, write, `EXT4_IOC_SHUTDOWN` NOLOGFLUSH,
//! umount) is refused by `fsvc-mount -o ro` with a reason that says so and
//! suggests `norecovery`; `-o ro,norecovery` and `-o ro,noload` mount it
//! without replay and read exactly as the kernel's `ro,noload` mount of a
//! copy of the same image. A clean journalled ext3/ext4 mounts normally.
//!
//! Invariants: the image is never changed by fsvc (checked by hash), the
//! kernel only ever reads a copy, and every mount is owned by a guard.

use fsvc_tests::check::kernel_vs_fsvc;
use fsvc_tests::fixtures::{varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::journal_fixture::{dirty_journal_image, needs_recovery};
use fsvc_tests::mount::{kernel_records, run_helper, servers_of, FsvcMount, FsvcOptions};
use fsvc_tests::oracle::{self, sha256_file, Compare};
use fsvc_tests::require_privileged;
use fsvc_tests::util::{mounts_at, poll_until, TempDir};
use std::path::Path;
use std::time::Duration;

/// `mount(8)`'s "mount failure" exit code.
const MOUNT_FAILURE: i32 = 32;

/// Serializes this file's tests. While one test walks a kernel mount, a
/// process another test thread forks holds a copy of the walker's fd table
/// until it execs; on a loaded machine that window is long enough for the
/// walker's immediate `umount` to fail with "target is busy".
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn opts(o: &str) -> FsvcOptions {
    FsvcOptions {
        options: o.to_string(),
        ..FsvcOptions::default()
    }
}

/// No server may be left holding `image` (bounded wait for its exit).
fn assert_no_server(image: &Path, what: &str) {
    let canon = std::fs::canonicalize(image).unwrap();
    assert!(
        poll_until(Duration::from_secs(20), || servers_of(&canon).is_empty()),
        "{what}: fsvc-server(s) {:?} still hold {}",
        servers_of(&canon),
        image.display()
    );
}

/// The whole journal scenario on one kind of filesystem.
fn dirty_journal_case(kind: FsKind) {
    let scratch = TempDir::new(&format!("journal-{}", kind.name())).unwrap();
    let image = dirty_journal_image(&scratch, kind, &format!("dirty.{}", kind.name())).unwrap();
    let before = sha256_file(&image).unwrap();

    // Plain read-only: refused, with the reason and the way out.
    let dir = scratch.subdir("mnt").unwrap();
    let run = run_helper(&image, &dir, &opts("ro"), &scratch).unwrap();
    let d = run.diagnostics();
    assert_eq!(run.code(), MOUNT_FAILURE, "-o ro on a dirty journal\n{d}");
    let reason = run.stderr.to_lowercase();
    assert!(
        reason.contains("journal") && reason.contains("recover"),
        "reason does not say the journal needs recovery\n{d}"
    );
    assert!(
        reason.contains("norecovery"),
        "reason does not suggest norecovery\n{d}"
    );
    assert!(!reason.contains("panicked"), "helper panicked\n{d}");
    assert!(mounts_at(&dir).unwrap().is_empty(), "mounted anyway\n{d}");
    assert_no_server(&image, "refused dirty mount");

    // The kernel's view without replay, read from a copy.
    let copy = scratch.join("kernel-copy");
    std::fs::copy(&image, &copy).unwrap();
    let expected = kernel_records(&copy, &scratch).unwrap();
    assert!(
        oracle::find(&expected, "synced").is_some(),
        "kernel noload view lacks the synced directory: {:?}",
        expected
            .iter()
            .map(|r| r.path.escape_ascii().to_string())
            .collect::<Vec<_>>()
    );

    for o in ["ro,norecovery", "ro,noload", "norecovery"] {
        let m = FsvcMount::mount(&image, &dir, &opts(o), &scratch)
            .unwrap_or_else(|e| panic!("-o {o}: {e:#}"));
        let entry = mounts_at(&dir).unwrap();
        assert!(
            entry
                .first()
                .is_some_and(|e| e.options.split(',').any(|x| x == "ro")),
            "-o {o} is not a read-only mount: {entry:?}\n{}",
            m.diagnostics()
        );
        let actual = oracle::walk(m.path())
            .unwrap_or_else(|e| panic!("-o {o}: walk failed: {e:#}\n{}", m.diagnostics()));
        oracle::assert_same(&expected, &actual, Compare::EXACT, &m.diagnostics());
        m.unmount().unwrap_or_else(|e| panic!("-o {o}: {e:#}"));
        assert_no_server(&image, o);
    }

    assert_eq!(
        sha256_file(&image).unwrap(),
        before,
        "fsvc changed the image"
    );
    assert!(
        needs_recovery(&image).unwrap(),
        "needs_recovery was cleared"
    );
}

#[test]
fn ext4_dirty_journal_refused_then_norecovery_reads_as_kernel_noload() {
    if !require_privileged("ext4_dirty_journal_refused_then_norecovery_reads_as_kernel_noload") {
        return;
    }
    let _serial = serial();
    dirty_journal_case(FsKind::Ext4);
}

#[test]
fn ext3_dirty_journal_refused_then_norecovery_reads_as_kernel_noload() {
    if !require_privileged("ext3_dirty_journal_refused_then_norecovery_reads_as_kernel_noload") {
        return;
    }
    let _serial = serial();
    dirty_journal_case(FsKind::Ext3);
}

#[test]
fn clean_journalled_ext3_and_ext4_mount_normally() {
    if !require_privileged("clean_journalled_ext3_and_ext4_mount_normally") {
        return;
    }
    let _serial = serial();
    for kind in [FsKind::Ext3, FsKind::Ext4] {
        let scratch = TempDir::new(&format!("journal-clean-{}", kind.name())).unwrap();
        let image = varied_image(&scratch, &Mkfs::new(kind), &TreeOptions::default()).unwrap();
        let feats = fsvc_tests::journal_fixture::features(&image).unwrap();
        assert!(
            feats.split(' ').any(|f| f == "has_journal"),
            "{}: no journal: {feats}",
            kind.name()
        );
        assert!(!needs_recovery(&image).unwrap(), "{}: {feats}", kind.name());
        kernel_vs_fsvc(&image, &scratch).unwrap_or_else(|e| panic!("{}: {e:#}", kind.name()));
        assert_no_server(&image, kind.name());
    }
}
