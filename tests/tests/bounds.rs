//! Issue 6 end to end: file sizes past the format's limit, through a real
//! fsvc mount, judged against the kernel's ext4.
//!
//! What must hold, on an ext2 (1 KiB blocks), an ext3 and an ext4
//! (metadata_csum) image of the varied tree:
//! - the limits the engine computes (`s_maxbytes`, `s_bitmap_maxbytes`) are
//!   the kernel's: on a kernel mount, a file truncates to the limit and
//!   not one byte past it (EFBIG);
//! - with the size of a hole-only and of an empty file set past the limit
//!   (`debugfs -w sif`), those files answer EUCLEAN at once (lookup, stat,
//!   open, read), the corruption is logged once per inode, everything else
//!   reads exactly as the kernel reads the same image (which refuses the
//!   two files too), and the server stays up: the mount still serves
//!   afterwards and `umount` ends it.

use fsvc_ext4::limits::{extent_max_bytes, indirect_max_bytes};
use fsvc_tests::damage::{
    block_size, has_feature, show_errs, tolerant_walk, under, within, Walk, WalkLimits,
};
use fsvc_tests::fixtures::{debugfs, varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{alive, FsvcMount, FsvcOptions, KernelMount};
use fsvc_tests::oracle::{self, Compare, Record};
use fsvc_tests::require_privileged;
use fsvc_tests::util::{read_lossy, run, TempDir};
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Far longer than any of these walks takes: past it, a hang.
const LIMIT: Duration = Duration::from_secs(120);
/// The victims: a file of holes only, and an empty file.
const SPARSE: &str = "sparse/all-hole";
const EMPTY: &str = "files/empty";
/// The size the issue reports (2^55 bytes), far past every limit.
const REPORTED: u64 = 1 << 55;

/// Serializes the tests of this file: each mounts through the kernel and
/// fsvc and walks; running them together only makes a loaded machine
/// slower (and a fork elsewhere can hold a walker's fd across `umount`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The three image kinds the issue names.
fn kinds() -> Vec<(&'static str, Mkfs)> {
    vec![
        ("ext2-1k", Mkfs::new(FsKind::Ext2).block_size(1024)),
        ("ext3", Mkfs::new(FsKind::Ext3)),
        ("ext4", Mkfs::new(FsKind::Ext4).feature("metadata_csum")),
    ]
}

/// The limit for a file of `image` mapped by extents or not, from the
/// engine's computation (checked against the kernel below).
fn limit_of(image: &Path, extents: bool) -> u64 {
    let log = block_size(image).trailing_zeros();
    let huge = has_feature(image, "huge_file");
    if extents {
        extent_max_bytes(log, huge)
    } else {
        indirect_max_bytes(log, huge)
    }
}

/// Whether `path`'s inode is extent-mapped (debugfs `stat` flags).
fn uses_extents(image: &Path, path: &str) -> bool {
    let out = debugfs(image, &format!("stat /{path}")).unwrap();
    let flags = out
        .split("Flags:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no flags in {out}"));
    flags & 0x80000 != 0
}

/// The inode number of `path` (debugfs `stat`).
fn ino_of(image: &Path, path: &str) -> u64 {
    let out = debugfs(image, &format!("stat /{path}")).unwrap();
    out.split("Inode:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no inode number in {out}"))
}

#[test]
fn the_kernel_truncates_to_our_limits_and_not_past_them() {
    if !require_privileged("the_kernel_truncates_to_our_limits_and_not_past_them") {
        return;
    }
    let _serial = serial();
    for (tag, mkfs) in kinds() {
        let scratch = TempDir::new(&format!("bounds-limit-{tag}")).unwrap();
        let image = scratch.join("image");
        mkfs.clone().size_mib(16).build(None, &image).unwrap();
        let dir = scratch.subdir("kernel").unwrap();
        let km = KernelMount::rw(&image, &dir).unwrap();
        let path = dir.join("f");
        let f = fs::File::create(&path).unwrap();
        drop(f);
        // The kernel maps new files by extents exactly when the fs has them.
        let extents = has_feature(&image, "extent");
        let max = limit_of(&image, extents);
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(max)
            .unwrap_or_else(|e| panic!("{tag}: the kernel refuses our limit {max}: {e}"));
        let e = f.set_len(max + 1).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EFBIG),
            "{tag}: one byte past our limit {max}: {e}"
        );
        eprintln!("{tag}: extents={extents} limit={max}: the kernel agrees");
        drop(f);
        km.unmount().unwrap();
    }
}

/// Applies `sizes` ((path, size)) to `image` with debugfs.
fn set_sizes(image: &Path, sizes: &[(&str, u64)]) {
    for (path, size) in sizes {
        run(Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(format!("sif /{path} size {size}"))
            .arg(image))
        .unwrap();
    }
}

/// Records whose paths are not under any of `victims`.
fn others(w: &Walk, victims: &[&str]) -> Vec<Record> {
    w.recs
        .values()
        .filter(|r| !victims.iter().any(|v| under(&r.path, v)))
        .cloned()
        .collect()
}

/// The victim's errors, as (path, errno), sorted.
fn victim_errs(w: &Walk) -> Vec<(Vec<u8>, Option<i32>)> {
    w.errs.iter().map(|(p, (_, e))| (p.clone(), *e)).collect()
}

/// One access to a path.
type Op = fn(&Path) -> io::Result<()>;

/// Every access to `p` fails with EUCLEAN, twice over (no cached success).
fn all_euclean(p: &Path) -> Result<(), String> {
    let ops: [(&str, Op); 4] = [
        ("lstat", |p| fs::symlink_metadata(p).map(drop)),
        ("stat", |p| fs::metadata(p).map(drop)),
        ("open", |p| fs::File::open(p).map(drop)),
        ("read", |p| fs::read(p).map(drop)),
    ];
    for round in 0..2 {
        for (op, f) in ops {
            match f(p) {
                Err(e) if e.raw_os_error() == Some(libc::EUCLEAN) => {}
                other => {
                    return Err(format!(
                        "{} {op} (round {round}): {other:?}, wanted EUCLEAN",
                        p.display()
                    ))
                }
            }
        }
    }
    Ok(())
}

fn one_case(tag: &str, base: &Path, scratch: &TempDir, sizes: &[(&str, u64)]) {
    let image = scratch.join(format!("{tag}.img"));
    fs::copy(base, &image).unwrap();
    set_sizes(&image, sizes);
    let victims: Vec<&str> = sizes.iter().map(|(p, _)| *p).collect();

    // The kernel's view of the same damaged image (a copy, to be safe).
    let copy = scratch.join(format!("{tag}.kernel"));
    fs::copy(&image, &copy).unwrap();
    let kdir = scratch.subdir(&format!("{tag}-kernel")).unwrap();
    let km = KernelMount::ro(&copy, &kdir).unwrap();
    let kpath = km.path().to_path_buf();
    let k2 = kpath.clone();
    let kernel = within(tag, &kpath, LIMIT, move || {
        tolerant_walk(&k2, WalkLimits::default())
    });
    km.unmount().unwrap();
    let kerrs = victim_errs(&kernel);
    let want: Vec<(Vec<u8>, Option<i32>)> = {
        let mut v: Vec<_> = victims
            .iter()
            .map(|p| (p.as_bytes().to_vec(), Some(libc::EUCLEAN)))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        kerrs,
        want,
        "{tag}: the kernel does not refuse exactly the two files: {}",
        show_errs(&kernel)
    );

    let mnt = scratch.subdir(&format!("{tag}-fsvc")).unwrap();
    let opts = FsvcOptions::default();
    let m = FsvcMount::mount(&image, &mnt, &opts, scratch).unwrap();
    let pid = m
        .server_pid()
        .unwrap_or_else(|| panic!("{tag}: no server\n{}", m.diagnostics()));
    let root = m.path().to_path_buf();
    for v in &victims {
        let p = root.join(v);
        if let Err(e) = within(tag, &root, LIMIT, move || all_euclean(&p)) {
            panic!("{tag}: {e}\n{}", m.diagnostics());
        }
    }
    let r2 = root.clone();
    let ours = within(tag, &root, LIMIT, move || {
        tolerant_walk(&r2, WalkLimits::default())
    });
    assert_eq!(
        victim_errs(&ours),
        want,
        "{tag}: fsvc errors: {}\n{}",
        show_errs(&ours),
        m.diagnostics()
    );
    let expected = others(&kernel, &victims);
    assert!(
        oracle::find(&expected, "files/large").is_some(),
        "{tag}: the kernel's view lacks the control files"
    );
    oracle::assert_same(
        &expected,
        &others(&ours, &victims),
        Compare::EXACT,
        &m.diagnostics(),
    );

    // Still serving: a control file reads again, the victims still fail.
    let r2 = root.clone();
    let again = within(tag, &root, LIMIT, move || {
        (
            oracle::sha256_file(&r2.join("files/large")).ok(),
            fs::read(r2.join(EMPTY)).map_err(|e| e.raw_os_error()),
        )
    });
    let large = oracle::find(&expected, "files/large").and_then(|r| r.sha256);
    assert_eq!(again.0, large, "{tag}: control file after the errors");
    if victims.contains(&EMPTY) {
        assert_eq!(again.1, Err(Some(libc::EUCLEAN)), "{tag}");
    }
    assert!(alive(pid), "{tag}: server died\n{}", m.diagnostics());

    // Logged once per damaged inode, however often it was asked for.
    let log = read_lossy(&m.helper_run().log_path);
    assert!(!log.contains("panicked"), "{tag}: panic\n{log}");
    for (v, size) in sizes {
        let ino = ino_of(&image, v);
        let line = format!("corrupt inode {ino}: size {size} past the format's limit");
        let n = log.matches(&line).count();
        assert_eq!(n, 1, "{tag}: {line:?} logged {n} times\n{log}");
    }
    m.unmount()
        .unwrap_or_else(|e| panic!("{tag}: umount: {e:#}"));
}

#[test]
fn sizes_past_maxbytes_answer_euclean_and_the_rest_reads_as_the_kernel() {
    if !require_privileged("sizes_past_maxbytes_answer_euclean_and_the_rest_reads_as_the_kernel") {
        return;
    }
    let _serial = serial();
    for (tag, mkfs) in kinds() {
        let scratch = TempDir::new(&format!("bounds-{tag}")).unwrap();
        let base = varied_image(&scratch, &mkfs, &TreeOptions::default()).unwrap();
        let bs = block_size(&base);
        let sparse_max = limit_of(&base, uses_extents(&base, SPARSE));
        let empty_max = limit_of(&base, uses_extents(&base, EMPTY));
        eprintln!("{tag}: limits: {SPARSE} {sparse_max}, {EMPTY} {empty_max}");
        // Just past the limit, the 2^55, a block past, and the
        // largest value a signed 64-bit size can hold.
        one_case(
            &format!("{tag}-a"),
            &base,
            &scratch,
            &[(SPARSE, sparse_max + 1), (EMPTY, REPORTED)],
        );
        one_case(
            &format!("{tag}-b"),
            &base,
            &scratch,
            &[(SPARSE, i64::MAX as u64), (EMPTY, empty_max + bs)],
        );
    }
}
