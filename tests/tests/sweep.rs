//! Issue 6: a randomized sweep of damaged images through real fsvc mounts.
//!
//! Five image kinds (ext2 1 KiB, ext3 4 KiB, ext4 4 KiB with metadata_csum,
//! ext4 1 KiB without checksums, ext4 with inline_data) are made from the
//! varied tree plus a fragmented file and a multi-block indexed directory.
//! Each trial flips one to four bits in one metadata block (the primary
//! superblock, the group descriptors, a bitmap, a used inode-table block,
//! or a directory, extent, indirect or xattr block: located with e2image
//! and dumpe2fs), mounts the image through `fsvc-mount`, walks the whole
//! tree (lstat, readdir, readlink, every xattr, and every regular file
//! read: whole up to 64 MiB, head and tail past that) under a watchdog,
//! and unmounts.
//!
//! What must hold: zero hangs (the watchdog aborts the FUSE connection and
//! the trial fails), zero server deaths (the server must still answer after
//! the walk, no panic in its log, and exit on `umount`), and a refused
//! mount must say why and leave no server behind. The classification of
//! the trials (refused / clean / EUCLEAN objects / other errors) is printed.
//!
//! `FSVC_SWEEP_TRIALS=N` sets the number of trials (default 200, two to
//! three minutes on a loaded 2-core machine); `FSVC_SWEEP_SEED=N` the seed. A failing trial's damaged
//! image is kept under `/tmp/fsvc-sweep-failures` with its damage printed.

use fsvc_tests::damage::{
    block_size, bounded, bounded_record, header_value, metadata_blocks, patch, tolerant_walk_with,
    MetaKind, Walk, WalkLimits, SB_OFFSET,
};
use fsvc_tests::fixtures::{build_varied_tree, pseudo_random, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{alive, run_helper_limited, servers_of, FsvcMount, FsvcOptions};
use fsvc_tests::require_privileged;
use fsvc_tests::util::{poll_until, read_lossy, TempDir};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Trials by default: 40 per image kind (about 0.9 s each while other
/// builds load the machine: the suite's CI budget, not a timing claim).
const DEFAULT_TRIALS: usize = 200;
/// The watchdog per image: a walk of these small trees takes about a
/// second; far past this is a hang.
const WATCHDOG: Duration = Duration::from_secs(60);
/// A helper run (mount) longer than this is a hang.
const MOUNT_LIMIT: Duration = Duration::from_secs(60);
/// Files are read whole up to this size; past it, head and tail only (a
/// size the format allows can be terabytes of holes).
const READ_CAP: u64 = 64 << 20;
/// How far a tolerant walk goes (a looping directory must not make it endless).
const LIMITS: WalkLimits = WalkLimits {
    max_depth: 24,
    max_entries: 20_000,
};
/// Entries of the multi-block directory (long names: several blocks even
/// at 4 KiB, so e2fsck -D indexes it).
const BIG_DIR: usize = 400;

/// Writes a line of the sweep's report to stderr directly, past the test
/// harness's capture (which takes only `eprintln!`), so that the trial
/// count and the classification show in every run's output, CI's too.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Small deterministic generator for the trials.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One image kind of the sweep, built once.
struct Kind {
    name: &'static str,
    image: PathBuf,
    original: Vec<u8>,
    /// Metadata blocks by category (primary superblock and group 0's
    /// descriptors only: the engine reads no backup).
    meta: BTreeMap<MetaKind, Vec<u64>>,
    block: u64,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| {
        let v = v.trim();
        v.strip_prefix("0x")
            .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
    })
}

/// The varied tree plus a fragmented file (extent tree blocks, indirect
/// blocks) and a directory of [`BIG_DIR`] entries.
fn sweep_tree(root: &Path, block: u64) {
    let opts = TreeOptions {
        large_bytes: 300_000,
        huge_sparse: false,
        big_xattr_len: (block as usize).saturating_sub(256).min(1500),
    };
    build_varied_tree(root, &opts).unwrap();
    let frag = fs::File::create(root.join("frag")).unwrap();
    for i in 0..64u64 {
        frag.write_all_at(&pseudo_random(900 + i, block as usize), i * 2 * block)
            .unwrap();
    }
    fs::create_dir(root.join("bigdir")).unwrap();
    for i in 0..BIG_DIR {
        fs::write(
            root.join(format!("bigdir/entry-{i:04}-{}", "n".repeat(40))),
            format!("{i}\n"),
        )
        .unwrap();
    }
}

fn build_kind(name: &'static str, mkfs: Mkfs, scratch: &TempDir) -> Kind {
    let block = u64::from(mkfs.block_size.unwrap_or(4096));
    let tree = scratch.join(format!("{name}-tree"));
    sweep_tree(&tree, block);
    let image = scratch.join(format!("{name}.img"));
    mkfs.size_mib(16).build(Some(&tree), &image).unwrap();
    fs::remove_dir_all(&tree).unwrap();
    // Index the directories (mkfs -d writes linear ones), then check.
    let _ = Command::new("e2fsck").arg("-fyD").arg(&image).output();
    fsvc_tests::fixtures::fsck_clean(&image).unwrap();
    let mut meta = metadata_blocks(&image, scratch.path()).unwrap();
    let bpg = header_value(&image, "Blocks per group:");
    for k in [MetaKind::Superblock, MetaKind::GroupDescriptors] {
        if let Some(v) = meta.get_mut(&k) {
            v.retain(|&b| b < bpg);
        }
    }
    // Nothing reads the blocks reserved for growth.
    meta.remove(&MetaKind::ReservedGdt);
    meta.retain(|_, v| !v.is_empty());
    let original = fs::read(&image).unwrap();
    assert_eq!(block_size(&image), block, "{name}");
    Kind {
        name,
        image,
        original,
        meta,
        block,
    }
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// The helper refused the mount with a reason (exit 32).
    Refused,
    /// Mounted; everything read without an error.
    Clean,
    /// Mounted; the damaged objects answered EUCLEAN, all else read.
    Euclean,
    /// Mounted; errors other than EUCLEAN too (errno list).
    OtherErrors(Vec<Option<i32>>),
}

/// A trial that broke a rule, with what is needed to reproduce it.
#[derive(Debug)]
struct Failure {
    what: String,
    kept: PathBuf,
}

/// The bytes one trial changes: (offset, new bytes).
fn damage(k: &Kind, rng: &mut Rng) -> (MetaKind, Vec<(u64, u8)>) {
    let cats: Vec<&MetaKind> = k.meta.keys().collect();
    let cat = *cats[rng.below(cats.len() as u64) as usize];
    let (start, len) = if cat == MetaKind::Superblock {
        (SB_OFFSET, 1024)
    } else {
        let blocks = &k.meta[&cat];
        let b = blocks[rng.below(blocks.len() as u64) as usize];
        (b * k.block, k.block)
    };
    let flips = 1 + if rng.below(4) == 0 { rng.below(4) } else { 0 };
    let mut edits: Vec<(u64, u8)> = Vec::new();
    for _ in 0..flips {
        let at = start + rng.below(len);
        let bit = 1u8 << rng.below(8);
        match edits.iter_mut().find(|(o, _)| *o == at) {
            Some(e) => e.1 ^= bit,
            None => edits.push((at, k.original[at as usize] ^ bit)),
        }
    }
    (cat, edits)
}

/// The probe of the walk: a record without the hash, the file read with
/// `read_bounded`; counts the files read only in part.
fn probe(
    capped: Arc<AtomicUsize>,
) -> impl Fn(&Path, &[u8]) -> anyhow::Result<fsvc_tests::oracle::Record> {
    move |root, rel| {
        let r = bounded_record(root, rel, READ_CAP)?;
        if r.kind == fsvc_tests::oracle::Kind::File && r.size > READ_CAP {
            capped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(r)
    }
}

/// Runs one trial on the damaged image; `Err` is a broken rule.
fn trial(k: &Kind, scratch: &TempDir, capped: &Arc<AtomicUsize>) -> Result<Outcome, String> {
    let mnt = scratch
        .subdir(&format!("{}-mnt", k.name))
        .map_err(|e| e.to_string())?;
    let opts = FsvcOptions::default();
    let run = run_helper_limited(&k.image, &mnt, &opts, scratch, MOUNT_LIMIT)
        .map_err(|e| format!("mount hung or failed to run: {e:#}"))?;
    if run.log.contains("panicked") {
        return Err(format!("server panicked at mount\n{}", run.diagnostics()));
    }
    if !run.status.success() {
        let canon = fs::canonicalize(&k.image).map_err(|e| e.to_string())?;
        if run.code() != 32 || run.stderr.trim().is_empty() {
            return Err(format!(
                "refused without exit 32 and a reason\n{}",
                run.diagnostics()
            ));
        }
        if !poll_until(Duration::from_secs(20), || servers_of(&canon).is_empty()) {
            return Err(format!(
                "refused mount left a server\n{}",
                run.diagnostics()
            ));
        }
        return Ok(Outcome::Refused);
    }
    let m = FsvcMount::adopt(&k.image, &mnt, run).map_err(|e| format!("{e:#}"))?;
    let pid = m
        .server_pid()
        .ok_or_else(|| format!("mounted but no server found\n{}", m.diagnostics()))?;
    let root = m.path().to_path_buf();
    let walker = probe(capped.clone());
    let r2 = root.clone();
    let walk: Option<Walk> = bounded(&root, WATCHDOG, move || {
        tolerant_walk_with(&r2, LIMITS, &walker)
    });
    let Some(walk) = walk else {
        return Err(format!(
            "walk hung (> {WATCHDOG:?}); FUSE connection aborted\n{}",
            m.diagnostics()
        ));
    };
    let r2 = root.clone();
    let serving = bounded(&root, WATCHDOG, move || fs::symlink_metadata(&r2).is_ok());
    if serving != Some(true) || !alive(pid) {
        return Err(format!(
            "server gone after the walk (answers: {serving:?}, alive: {})\n{}",
            alive(pid),
            m.diagnostics()
        ));
    }
    let log = read_lossy(&m.helper_run().log_path);
    if log.contains("panicked") {
        return Err(format!("server panicked\n{}", m.diagnostics()));
    }
    let d = m.diagnostics();
    m.unmount().map_err(|e| format!("umount: {e:#}\n{d}"))?;
    if walk.errs.is_empty() {
        return Ok(Outcome::Clean);
    }
    let mut errnos: Vec<Option<i32>> = walk
        .errs
        .values()
        .map(|(_, e)| *e)
        .filter(|e| *e != Some(libc::EUCLEAN))
        .collect();
    errnos.sort();
    errnos.dedup();
    Ok(if errnos.is_empty() {
        Outcome::Euclean
    } else {
        Outcome::OtherErrors(errnos)
    })
}

#[test]
fn damaged_images_never_hang_or_kill_the_server() {
    if !require_privileged("damaged_images_never_hang_or_kill_the_server") {
        return;
    }
    let trials = env_u64("FSVC_SWEEP_TRIALS").map_or(DEFAULT_TRIALS, |n| n as usize);
    let seed = env_u64("FSVC_SWEEP_SEED").unwrap_or(0x5eed_0006);
    let scratch = TempDir::new("sweep").unwrap();
    let start = Instant::now();
    let kinds = vec![
        build_kind(
            "ext2-1k",
            Mkfs::new(FsKind::Ext2).block_size(1024),
            &scratch,
        ),
        build_kind("ext3-4k", Mkfs::new(FsKind::Ext3), &scratch),
        build_kind(
            "ext4-4k-csum",
            Mkfs::new(FsKind::Ext4).feature("metadata_csum"),
            &scratch,
        ),
        build_kind(
            "ext4-1k-nocsum",
            Mkfs::new(FsKind::Ext4)
                .block_size(1024)
                .feature("^metadata_csum"),
            &scratch,
        ),
        build_kind(
            "ext4-inline",
            Mkfs::new(FsKind::Ext4).feature("inline_data"),
            &scratch,
        ),
    ];
    for k in &kinds {
        let cats: Vec<String> = k
            .meta
            .iter()
            .map(|(c, v)| format!("{c:?} {}", v.len()))
            .collect();
        say!("sweep: {} metadata blocks: {}", k.name, cats.join(", "));
        assert!(
            k.meta.contains_key(&MetaKind::Tree) && k.meta.contains_key(&MetaKind::InodeTable),
            "{}: no metadata found",
            k.name
        );
    }
    let built = start.elapsed();

    let mut rng = Rng(seed | 1);
    let capped = Arc::new(AtomicUsize::new(0));
    let mut table: BTreeMap<(&str, Outcome), usize> = BTreeMap::new();
    let mut by_cat: BTreeMap<(&str, MetaKind), usize> = BTreeMap::new();
    let mut failures: Vec<Failure> = Vec::new();
    for t in 0..trials {
        let k = &kinds[t % kinds.len()];
        let (cat, edits) = damage(k, &mut rng);
        for &(at, b) in &edits {
            patch(&k.image, at, &[b]);
        }
        *by_cat.entry((k.name, cat)).or_default() += 1;
        let result = trial(k, &scratch, &capped);
        if let Err(what) = &result {
            let dir = Path::new("/tmp/fsvc-sweep-failures");
            let _ = fs::create_dir_all(dir);
            let kept = dir.join(format!("{}-seed{seed:x}-trial{t}.img", k.name));
            let _ = fs::copy(&k.image, &kept);
            let what = format!(
                "trial {t} ({}, {cat:?}, bytes {:?}): {what}",
                k.name,
                edits
                    .iter()
                    .map(|(o, b)| format!("{o}={b:#04x}"))
                    .collect::<Vec<_>>()
            );
            say!("sweep: FAILED {what}");
            failures.push(Failure { what, kept });
        }
        // Undo the damage for the next trial.
        for &(at, _) in &edits {
            patch(&k.image, at, &[k.original[at as usize]]);
        }
        if let Ok(o) = result {
            *table.entry((k.name, o)).or_default() += 1;
        }
    }

    // The classification, per kind and in total.
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    say!(
        "sweep: {trials} trials over {} image kinds (seed {seed:#x}), {:?} to build, {:?} in all",
        kinds.len(),
        built,
        start.elapsed()
    );
    for k in &kinds {
        let cats: Vec<String> = by_cat
            .iter()
            .filter(|((n, _), _)| *n == k.name)
            .map(|((_, c), n)| format!("{c:?} {n}"))
            .collect();
        let outs: Vec<String> = table
            .iter()
            .filter(|((n, _), _)| *n == k.name)
            .map(|((_, o), n)| {
                let label = label(o);
                *totals.entry(label.clone()).or_default() += n;
                format!("{label} {n}")
            })
            .collect();
        say!(
            "sweep:   {}: damaged {}; {}",
            k.name,
            cats.join(", "),
            outs.join(", ")
        );
    }
    let line: Vec<String> = totals.iter().map(|(l, n)| format!("{l} {n}")).collect();
    say!(
        "sweep: total: {}; files read head+tail only (size past {} MiB): {}; hangs or server deaths: {}",
        line.join(", "),
        READ_CAP >> 20,
        capped.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} trial(s) broke the rules (images kept):\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| format!("{}\n  kept: {}", f.what, f.kept.display()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let ran: usize = table.values().sum();
    assert_eq!(ran, trials, "every trial classified");
    // A meaningful run exercised both ends: some damage refused, some mounted.
    if trials >= DEFAULT_TRIALS {
        assert!(
            table.keys().any(|(_, o)| *o == Outcome::Refused)
                && table.keys().any(|(_, o)| *o != Outcome::Refused),
            "the damage never (or always) refused a mount: {table:?}"
        );
    }
    for k in &kinds {
        assert!(
            fs::read(&k.image).unwrap() == k.original,
            "{}: the damage was not undone",
            k.name
        );
    }
}

fn label(o: &Outcome) -> String {
    match o {
        Outcome::Refused => "mount refused".into(),
        Outcome::Clean => "mounted clean".into(),
        Outcome::Euclean => "mounted with EUCLEAN objects".into(),
        Outcome::OtherErrors(e) => format!("mounted with errors {e:?}"),
    }
}
