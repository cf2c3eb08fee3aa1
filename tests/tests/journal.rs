//! Issue 8, replay: images the kernel left with a dirty journal (see
//! `journal_fixture`: the newest files exist only in the journal) are
//! replayed at mount as the kernel replays them.
//!
//! For each variant (64bit + checksum v3, a wrapped log, revoke records,
//! ext3 without checksums and 32-bit tags, 1 KiB blocks, v1 checksums,
//! async_commit, 32-bit tag3):
//! - the engine's `journal::recover` on one copy leaves every block as the
//!   kernel's own replay (a read-only mount) of another copy leaves it,
//!   superblock aside;
//! - `fsvc-mount -o ro` of the image (a writable file) replays it and reads
//!   exactly what the kernel showed after the last fsync, and what the
//!   kernel shows after its own replay;
//! - afterwards needs_recovery is clear, the log empty, `e2fsck -fn`
//!   clean, and the kernel mounts the image on a read-only loop device
//!   (which it refuses when recovery is needed) and reads the same tree.
//!
//! Kernel rules: a dirty journal on a read-only device refuses the mount
//! (exit 32, a reason naming `norecovery`) and changes nothing;
//! `norecovery`/`noload` mount read-only without replay, reading what the
//! kernel's `ro,noload` mount reads. A clean journal mounts normally.
//!
//! Invariants: the kernel only ever mounts copies; every mount and loop
//! device is owned by a guard.

use fsvc_ext4::io::{AccessGate, UnixFdChannel};
use fsvc_ext4::journal::{self, Recovery};
use fsvc_tests::check::kernel_vs_fsvc;
use fsvc_tests::fixtures::{fsck_clean, varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::journal_fixture::{
    dirty_image, journal_start, needs_recovery, DirtyImage, DirtySpec, LoopDevice, Workload,
};
use fsvc_tests::mount::{
    kernel_records, run_helper, servers_of, FsvcMount, FsvcOptions, KernelMount,
};
use fsvc_tests::oracle::{self, sha256_file, Compare, Record};
use fsvc_tests::require_privileged;
use fsvc_tests::util::{mounts_at, poll_until, TempDir};
use std::path::Path;
use std::sync::Arc;
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

/// No server may be left holding `source` (bounded wait for its exit).
fn assert_no_server(source: &Path, what: &str) {
    let canon = std::fs::canonicalize(source).unwrap();
    assert!(
        poll_until(Duration::from_secs(20), || servers_of(&canon).is_empty()),
        "{what}: fsvc-server(s) {:?} still hold {}",
        servers_of(&canon),
        source.display()
    );
}

fn copy(from: &Path, scratch: &TempDir, name: &str) -> std::path::PathBuf {
    let to = scratch.join(name);
    std::fs::copy(from, &to).unwrap();
    to
}

/// The kernel's own replay of `image` (a read-only mount of a writable
/// loop device replays, as ext4 does; `-o ro,loop` would make the loop
/// device read-only); returns the tree it shows.
fn kernel_replay(image: &Path, scratch: &TempDir) -> Vec<Record> {
    let dir = scratch.subdir("kernel-replay").unwrap();
    let dev = LoopDevice::new(image, false).unwrap();
    let m = KernelMount::with_options(&dev.path, &dir, "ro").unwrap();
    let recs = oracle::walk(m.path()).unwrap();
    m.unmount().unwrap();
    drop(dev);
    assert!(
        !needs_recovery(image).unwrap(),
        "the kernel left needs_recovery set"
    );
    recs
}

/// The engine's recovery of `image` through the unixfd channel.
fn engine_replay(image: &Path) -> journal::RecoveryReport {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let io: Arc<dyn fsvc_ext4::io::IoChannel> =
        Arc::new(UnixFdChannel::new(f.into(), false, AccessGate::open()).unwrap());
    match journal::recover(&io).unwrap() {
        Recovery::Recovered(r) => r,
        Recovery::NotNeeded => panic!("{}: recovery not needed", image.display()),
    }
}

/// Block size of an image, from dumpe2fs.
fn block_size(image: &Path) -> usize {
    fsvc_tests::journal_fixture::dumpe2fs_field(image, "Block size")
        .unwrap()
        .parse()
        .unwrap()
}

/// Blocks that differ between two images of the same size.
fn differing_blocks(a: &Path, b: &Path, bs: usize) -> Vec<usize> {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(x.len(), y.len());
    x.chunks(bs)
        .zip(y.chunks(bs))
        .enumerate()
        .filter(|(_, (p, q))| p != q)
        .map(|(i, _)| i)
        .collect()
}

/// The whole scenario for one variant.
fn replay_case(spec: &DirtySpec) {
    let scratch = TempDir::new(&format!("journal-{}", spec.name)).unwrap();
    let DirtyImage {
        path,
        expected,
        log,
    } = dirty_image(&scratch, spec).unwrap_or_else(|e| panic!("{}: fixture: {e:#}", spec.name));
    let ctx = format!("{} ({})", spec.name, spec.mkfs.describe());

    // The kernel's replay of a copy, and the engine's of another.
    let kcopy = copy(&path, &scratch, "kernel-copy");
    let kernel = kernel_replay(&kcopy, &scratch);
    oracle::assert_same(
        &expected,
        &kernel,
        Compare::EXACT,
        &format!("{ctx}: kernel replay"),
    );
    let ecopy = copy(&path, &scratch, "engine-copy");
    let report = engine_replay(&ecopy);
    let replay = report
        .replay
        .clone()
        .unwrap_or_else(|| panic!("{ctx}: empty log: {report}"));
    assert!(
        replay.transactions() > 0 && replay.blocks_written > 0,
        "{ctx}: {report}"
    );
    assert_eq!(replay.wrapped, log.wrapped(), "{ctx}: {report}");
    if spec.workload == Workload::Revoke {
        assert!(
            replay.revoke_records > 0 && replay.revoked_skipped > 0,
            "{ctx}: the revoke records did not keep any logged block from being replayed: {report}"
        );
    }
    // Everything but the superblock's block is as the kernel left it (the
    // kernel also counts kbytes written and free blocks in it).
    let bs = block_size(&ecopy);
    let sb_block = 1024 / bs;
    let diff = differing_blocks(&kcopy, &ecopy, bs);
    assert!(
        diff.iter().all(|&b| b == sb_block),
        "{ctx}: blocks {:?} differ from the kernel's replay ({report})",
        &diff[..diff.len().min(20)]
    );
    assert!(!needs_recovery(&ecopy).unwrap(), "{ctx}");
    fsck_clean(&ecopy).unwrap_or_else(|e| panic!("{ctx}: engine replay: {e:#}"));

    // fsvc, read-only on a writable image: replays, then reads the tree.
    let dir = scratch.subdir("mnt").unwrap();
    let m = FsvcMount::mount(&path, &dir, &opts("ro"), &scratch)
        .unwrap_or_else(|e| panic!("{ctx}: {e:#}"));
    let actual = oracle::walk(m.path())
        .unwrap_or_else(|e| panic!("{ctx}: walk: {e:#}\n{}", m.diagnostics()));
    oracle::assert_same(&expected, &actual, Compare::EXACT, &m.diagnostics());
    oracle::assert_same(&kernel, &actual, Compare::EXACT, &m.diagnostics());
    let log_text = std::fs::read_to_string(&m.helper_run().log_path).unwrap_or_default();
    assert!(
        log_text.contains("journal replayed"),
        "{ctx}: the server did not log the replay\n{}",
        m.diagnostics()
    );
    m.unmount().unwrap_or_else(|e| panic!("{ctx}: {e:#}"));
    assert_no_server(&path, &ctx);

    // Recovered for good: the kernel has nothing left to replay.
    assert!(
        !needs_recovery(&path).unwrap(),
        "{ctx}: needs_recovery still set"
    );
    assert_eq!(
        journal_start(&path).unwrap(),
        0,
        "{ctx}: the log is not empty"
    );
    fsck_clean(&path).unwrap_or_else(|e| panic!("{ctx}: {e:#}"));
    let before = sha256_file(&path).unwrap();
    let ro = LoopDevice::new(&path, true).unwrap();
    let kdir = scratch.subdir("kernel-ro-dev").unwrap();
    let km = KernelMount::with_options(&ro.path, &kdir, "ro")
        .unwrap_or_else(|e| panic!("{ctx}: the kernel wants recovery still: {e:#}"));
    let after = oracle::walk(km.path()).unwrap();
    km.unmount().unwrap();
    drop(ro);
    oracle::assert_same(
        &expected,
        &after,
        Compare::EXACT,
        &format!("{ctx}: kernel after fsvc"),
    );
    assert_eq!(
        sha256_file(&path).unwrap(),
        before,
        "{ctx}: changed by a ro mount"
    );
}

fn ext4() -> Mkfs {
    Mkfs::new(FsKind::Ext4).size_mib(64)
}

macro_rules! replay_tests {
    ($($test:ident: $name:literal, $mkfs:expr, $mount:literal, $work:expr;)*) => {$(
        #[test]
        fn $test() {
            if !require_privileged(stringify!($test)) {
                return;
            }
            let _serial = serial();
            replay_case(&DirtySpec {
                name: $name,
                mkfs: $mkfs,
                mount_opts: $mount,
                workload: $work,
            });
        }
    )*};
}

replay_tests! {
    ext4_64bit_csum_v3_replays_as_the_kernel: "ext4-v3", ext4(), "", Workload::Tree;
    ext4_wrapped_log_replays_as_the_kernel:
        "ext4-wrap", ext4().journal_mib(4), "", Workload::Wrap;
    ext4_revoke_records_keep_reused_blocks: "ext4-revoke", ext4(), "", Workload::Revoke;
    ext3_no_checksums_32bit_tags_replays_as_the_kernel:
        "ext3", Mkfs::new(FsKind::Ext3).size_mib(64), "", Workload::Tree;
    ext3_revoke_records_keep_reused_blocks:
        "ext3-revoke", Mkfs::new(FsKind::Ext3).size_mib(64), "", Workload::Revoke;
    ext4_1k_blocks_replays_as_the_kernel:
        "ext4-1k", ext4().block_size(1024), "", Workload::Tree;
    ext4_csum_v1_replays_as_the_kernel:
        "ext4-v1", ext4().feature("^metadata_csum"), "journal_checksum", Workload::Tree;
    ext4_async_commit_replays_as_the_kernel:
        "ext4-async", ext4(), "journal_async_commit,data=writeback", Workload::Tree;
    ext4_32bit_tag3_replays_as_the_kernel:
        "ext4-32bit", ext4().feature("^64bit"), "", Workload::Tree;
}

/// Kernel rules on a dirty journal: a read-only device refuses the mount;
/// norecovery and noload mount it without replay, as the kernel's noload.
#[test]
fn dirty_journal_on_a_read_only_device_is_refused_and_norecovery_reads_without_replay() {
    if !require_privileged(
        "dirty_journal_on_a_read_only_device_is_refused_and_norecovery_reads_without_replay",
    ) {
        return;
    }
    let _serial = serial();
    let scratch = TempDir::new("journal-rules").unwrap();
    let spec = DirtySpec {
        name: "rules",
        mkfs: ext4(),
        mount_opts: "",
        workload: Workload::Tree,
    };
    let image = dirty_image(&scratch, &spec).unwrap().path;
    let before = sha256_file(&image).unwrap();
    let noload = kernel_records(&copy(&image, &scratch, "noload-copy"), &scratch).unwrap();
    assert!(
        oracle::find(&noload, "new").is_none() && oracle::find(&noload, "old").is_some(),
        "the kernel's noload view should have only the synced tree"
    );

    let dev = LoopDevice::new(&image, true).unwrap();
    let dir = scratch.subdir("mnt").unwrap();
    let run = run_helper(&dev.path, &dir, &opts("ro"), &scratch).unwrap();
    let d = run.diagnostics();
    assert_eq!(
        run.code(),
        MOUNT_FAILURE,
        "-o ro on a read-only device\n{d}"
    );
    let reason = run.stderr.to_lowercase();
    assert!(
        reason.contains("journal") && reason.contains("recover") && reason.contains("norecovery"),
        "the reason does not say the journal needs recovery and suggest norecovery\n{d}"
    );
    assert!(!reason.contains("panicked"), "helper panicked\n{d}");
    assert!(mounts_at(&dir).unwrap().is_empty(), "mounted anyway\n{d}");
    assert_no_server(&dev.path, "refused dirty mount");

    // (source, options): the read-only device and the writable image.
    let cases = [
        (dev.path.clone(), "ro,norecovery"),
        (dev.path.clone(), "noload"),
        (image.clone(), "ro,noload"),
        (image.clone(), "norecovery"),
    ];
    for (source, o) in &cases {
        let m = FsvcMount::mount(source, &dir, &opts(o), &scratch)
            .unwrap_or_else(|e| panic!("-o {o} on {}: {e:#}", source.display()));
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
        oracle::assert_same(&noload, &actual, Compare::EXACT, &m.diagnostics());
        m.unmount().unwrap_or_else(|e| panic!("-o {o}: {e:#}"));
        assert_no_server(source, o);
    }
    drop(dev);
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
        let before = sha256_file(&image).unwrap();
        kernel_vs_fsvc(&image, &scratch).unwrap_or_else(|e| panic!("{}: {e:#}", kind.name()));
        assert_no_server(&image, kind.name());
        assert_eq!(
            sha256_file(&image).unwrap(),
            before,
            "{}: a clean mount wrote to the image",
            kind.name()
        );
    }
}
