//! Issue 3, corruption item, end to end: images made by `mkfs.ext4 -d`
//! (ext4 with metadata_csum, ext3 without), damaged on disk at offsets found
//! with debugfs, then mounted for real through `fsvc-mount`.
//!
//! What must hold:
//! - a damaged superblock, or bytes that are no filesystem at all: the
//!   helper exits 32 with a readable reason, nothing is mounted, no server
//!   is left running;
//! - a damaged inode, directory block, xattr block or extent block: the
//!   mount succeeds, the damaged object answers EUCLEAN (EIO accepted only
//!   for file data reads), everything else reads exactly as the kernel's
//!   ext4 reads the same damaged image, the server survives, and `umount`
//!   ends it;
//! - directories and an extent tree that loop: walking the mount ends (a
//!   bounded `find` and a bounded in-process walk), the server survives.
//!
//! Invariant: no operation on a mount can hang the test. In-process walks
//! run on a worker thread with a deadline; past it the FUSE connection is
//! aborted (which fails every pending request) and the test fails.

use fsvc_tests::damage::{
    extent_block, first_block, flip, inode_offset, patch, show_errs, tolerant_walk, under, within,
    xattr_block, Walk, WalkLimits,
};
use fsvc_tests::fixtures::{debugfs, garbage_image, pseudo_random, FsKind, Mkfs};
use fsvc_tests::mount::{alive, run_helper, servers_of, FsvcMount, FsvcOptions, KernelMount};
use fsvc_tests::oracle::{self, Compare, Record};
use fsvc_tests::require_privileged;
use fsvc_tests::sys::{lgetxattr, llistxattr};
use fsvc_tests::util::{mounts_at, poll_until, read_lossy, run, wait_bounded, TempDir};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `mount(8)`'s "mount failure" exit code.
const MOUNT_FAILURE: i32 = 32;
/// Far longer than any walk of these small images takes: past it, a hang.
const LIMIT: Duration = Duration::from_secs(90);
/// Block size of every fixture here (explicit, so the xattr fits a block).
const BLOCK: u64 = 4096;

/// Superblock offset and the fields damaged below (ext4 on-disk format).
const SB: u64 = 1024;
const SB_LOG_BLOCK_SIZE: u64 = 0x18;
const SB_BLOCKS_PER_GROUP: u64 = 0x20;
const SB_MAGIC: u64 = 0x38;
/// Inode fields: `i_size_lo`, `i_block` (60 bytes: extent root or block map).
const I_SIZE_LO: u64 = 0x04;
const I_BLOCK: u64 = 0x28;
/// `i_block[12]`, the single-indirect pointer of a block-mapped inode.
const I_BLOCK_IND: u64 = I_BLOCK + 12 * 4;
/// Extent header: depth at +6, entry count at +2; entries are 12 bytes.
const EH_ENTRIES: u64 = 2;
const EH_DEPTH: u64 = 6;
const EXT_ENTRY: u64 = 12;

const EUCLEAN: i32 = libc::EUCLEAN;

/// Serializes this file's tests. While one test walks a kernel mount, a
/// process another test thread forks holds a copy of the walker's fd table
/// until it execs; on a loaded machine that window is long enough for the
/// walker's immediate `umount` to fail with "target is busy".
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ------------------------------------------------------------ small helpers

fn opts(o: &str) -> FsvcOptions {
    FsvcOptions {
        options: o.to_string(),
        ..FsvcOptions::default()
    }
}

// ------------------------------------------------------- the fixture tree

/// Builds the source tree: one victim per damaged structure, a neighbour
/// next to each, and an untouched `ok/` subtree.
fn build_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
    };
    let setx = |rel: &str, name: &str, value: &[u8]| {
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        run(Command::new("setfattr")
            .args(["-n", name, "-v"])
            .arg(format!("0x{hex}"))
            .arg(root.join(rel)))
        .unwrap();
    };
    w("ok/small.txt", b"untouched\n");
    w("ok/data", &pseudo_random(601, 100_000));
    w("ok/sub/deep.txt", b"deep\n");
    std::os::unix::fs::symlink("small.txt", root.join("ok/link")).unwrap();
    setx("ok/small.txt", "user.fine", b"fine");
    // 100 KB: a block-mapped (ext3) inode needs its single-indirect block.
    w("inode/victim", &pseudo_random(602, 100_000));
    w("inode/neighbour", b"next to the damaged inode\n");
    for i in 0..5 {
        w(
            &format!("dir/victim/f{i}"),
            format!("in victim dir {i}\n").as_bytes(),
        );
    }
    w("dir/neighbour", b"next to the damaged directory\n");
    w("xattr/victim", b"xattr victim\n");
    setx("xattr/victim", "user.big", &pseudo_random(603, 2000));
    setx("xattr/victim", "user.second", b"two");
    w("xattr/neighbour", b"xattr neighbour\n");
    setx("xattr/neighbour", "user.small", b"small");
    // 64 one-block fragments with holes between: more than the inode's four
    // extents, so an extent tree block (ETB) holds them.
    {
        fs::create_dir_all(root.join("ext")).unwrap();
        let f = fs::File::create(root.join("ext/victim")).unwrap();
        for i in 0..64u64 {
            f.write_all_at(&pseudo_random(700 + i, BLOCK as usize), i * 2 * BLOCK)
                .unwrap();
        }
    }
    w("ext/neighbour", &pseudo_random(604, 50_000));
    fs::create_dir_all(root.join("loop/a/b")).unwrap();
    w("loop/a/b/f", b"inside the loop\n");
}

fn make_image(scratch: &TempDir, mkfs: &Mkfs, name: &str) -> PathBuf {
    let tree = scratch.join(format!("{name}-tree"));
    build_tree(&tree);
    let image = scratch.join(name);
    mkfs.build(Some(&tree), &image).unwrap();
    fs::remove_dir_all(&tree).unwrap();
    fsvc_tests::fixtures::fsck_clean(&image).unwrap();
    image
}

// ------------------------------------------------- superblock / not ext4

/// The helper must refuse `image`: exit 32, a one-line readable reason that
/// contains one of `words`, nothing mounted, no server left.
fn assert_refused(image: &Path, scratch: &TempDir, words: &[&str]) {
    let dir = scratch.subdir("mnt").unwrap();
    let run = run_helper(image, &dir, &opts("ro"), scratch).unwrap();
    let d = run.diagnostics();
    assert_eq!(run.code(), MOUNT_FAILURE, "{}\n{d}", image.display());
    let reason = run.stderr.trim().to_lowercase();
    assert!(!reason.is_empty(), "no reason printed\n{d}");
    assert!(
        !reason.contains("panicked") && !run.log.contains("panicked"),
        "a panic\n{d}"
    );
    assert!(
        words.iter().any(|w| reason.contains(w)),
        "reason does not name the problem (wanted one of {words:?})\n{d}"
    );
    assert!(mounts_at(&dir).unwrap().is_empty(), "mounted anyway\n{d}");
    let canon = fs::canonicalize(image).unwrap();
    assert!(
        poll_until(Duration::from_secs(20), || servers_of(&canon).is_empty()),
        "server(s) {:?} left running\n{d}",
        servers_of(&canon)
    );
}

#[test]
fn damaged_superblocks_are_refused_with_a_reason() {
    if !require_privileged("damaged_superblocks_are_refused_with_a_reason") {
        return;
    }
    let _serial = serial();
    let scratch = TempDir::new("corrupt-sb").unwrap();
    let ext4 = make_image(&scratch, &Mkfs::new(FsKind::Ext4).size_mib(32), "sb.ext4");
    let ext3 = make_image(&scratch, &Mkfs::new(FsKind::Ext3).size_mib(32), "sb.ext3");

    // Magic gone: not an ext filesystem.
    let img = scratch.join("magic.ext4");
    fs::copy(&ext4, &img).unwrap();
    patch(&img, SB + SB_MAGIC, &[0, 0]);
    assert_refused(&img, &scratch, &["magic", "not an ext"]);

    // A geometry field changed, checksum left stale: the checksum catches it.
    let img = scratch.join("geometry-stale-csum.ext4");
    fs::copy(&ext4, &img).unwrap();
    patch(&img, SB + SB_BLOCKS_PER_GROUP, &0u32.to_le_bytes());
    assert_refused(&img, &scratch, &["checksum"]);

    // No checksum to catch it (ext3): the field's own check must.
    let img = scratch.join("geometry.ext3");
    fs::copy(&ext3, &img).unwrap();
    patch(&img, SB + SB_LOG_BLOCK_SIZE, &30u32.to_le_bytes());
    assert_refused(&img, &scratch, &["block size", "superblock"]);
    let img = scratch.join("blocks-per-group.ext3");
    fs::copy(&ext3, &img).unwrap();
    patch(&img, SB + SB_BLOCKS_PER_GROUP, &0u32.to_le_bytes());
    assert_refused(&img, &scratch, &["blocks per group", "superblock"]);
}

#[test]
fn random_bytes_are_refused_with_a_reason() {
    if !require_privileged("random_bytes_are_refused_with_a_reason") {
        return;
    }
    let _serial = serial();
    let scratch = TempDir::new("corrupt-garbage").unwrap();
    let img = scratch.join("garbage");
    garbage_image(&img, 8).unwrap();
    assert_refused(&img, &scratch, &["not an ext", "magic"]);
}

// ------------------------------------------------ damaged objects, mounted

/// Which structure of a victim was damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damaged {
    /// The inode itself (checksum) or its block map (no checksum).
    Inode,
    /// The directory's first block.
    DirBlock,
    /// The external xattr block.
    XattrBlock,
    /// The extent tree block.
    ExtentBlock,
}

/// One damaged object: its path (relative) and what was damaged.
#[derive(Debug, Clone, Copy)]
struct Victim {
    path: &'static str,
    what: Damaged,
}

/// Damages `image` for `csum` (checksum-guarded bit flips) or for an image
/// without checksums (structural damage), returning the damaged objects.
fn damage(image: &Path, csum: bool) -> Vec<Victim> {
    let mut v = Vec::new();
    let ino = inode_offset(image, "/inode/victim");
    if csum {
        flip(image, ino + I_SIZE_LO, 0x01);
    } else {
        patch(image, ino + I_BLOCK_IND, &0xFFFF_FF00u32.to_le_bytes());
    }
    v.push(Victim {
        path: "inode/victim",
        what: Damaged::Inode,
    });
    let dirb = first_block(image, "/dir/victim") * BLOCK;
    if csum {
        // A name byte of the third entry ("." and ".." take 12 bytes each).
        flip(image, dirb + 24 + 8, 0x20);
    } else {
        // rec_len 0 on the first entry: a naive parser spins on it.
        patch(image, dirb + 4, &[0, 0]);
    }
    v.push(Victim {
        path: "dir/victim",
        what: Damaged::DirBlock,
    });
    let xb = xattr_block(image, "/xattr/victim") * BLOCK;
    if csum {
        // Values are packed at the end of the block.
        flip(image, xb + BLOCK - 1, 0x04);
    } else {
        patch(image, xb, &[0, 0, 0, 0]);
    }
    v.push(Victim {
        path: "xattr/victim",
        what: Damaged::XattrBlock,
    });
    if csum {
        let eb = extent_block(image, "/ext/victim") * BLOCK;
        // The second extent's physical start.
        flip(image, eb + EXT_ENTRY + EXT_ENTRY + 8, 0x02);
        v.push(Victim {
            path: "ext/victim",
            what: Damaged::ExtentBlock,
        });
    }
    v
}

/// Records a problem unless `r` failed with EUCLEAN (or EIO when allowed).
fn expect_fail(problems: &mut Vec<String>, what: String, r: io::Result<()>, allow_eio: bool) {
    match r {
        Ok(()) => problems.push(format!("{what}: succeeded on a damaged object")),
        Err(e) => {
            let ok = e.raw_os_error() == Some(EUCLEAN)
                || (allow_eio && e.raw_os_error() == Some(libc::EIO));
            if !ok {
                problems.push(format!(
                    "{what}: {e} (errno {:?}), wanted EUCLEAN",
                    e.raw_os_error()
                ));
            }
        }
    }
}

/// Asserts the operations on each damaged object fail with EUCLEAN (EIO
/// allowed for file data), and that the failure is repeatable.
fn check_victims(mnt: &Path, victims: &[Victim], csum: bool) -> Result<(), String> {
    let mut problems = Vec::new();
    for v in victims {
        let p = mnt.join(v.path);
        for round in 0..2 {
            let tag = |op: &str| format!("{} ({:?}) {op}, round {round}", v.path, v.what);
            match v.what {
                Damaged::Inode if csum => {
                    expect_fail(
                        &mut problems,
                        tag("lstat"),
                        fs::symlink_metadata(&p).map(drop),
                        false,
                    );
                    expect_fail(
                        &mut problems,
                        tag("open"),
                        fs::File::open(&p).map(drop),
                        false,
                    );
                }
                Damaged::Inode | Damaged::ExtentBlock => {
                    expect_fail(&mut problems, tag("read"), fs::read(&p).map(drop), true);
                }
                Damaged::DirBlock => {
                    let listing =
                        fs::read_dir(&p).and_then(|mut rd| rd.try_for_each(|e| e.map(drop)));
                    expect_fail(&mut problems, tag("readdir"), listing, false);
                    expect_fail(
                        &mut problems,
                        tag("lookup f0"),
                        fs::symlink_metadata(p.join("f0")).map(drop),
                        false,
                    );
                }
                Damaged::XattrBlock => {
                    expect_fail(
                        &mut problems,
                        tag("getxattr user.big"),
                        lgetxattr(&p, b"user.big").map(drop),
                        false,
                    );
                    expect_fail(
                        &mut problems,
                        tag("listxattr"),
                        llistxattr(&p).map(drop),
                        false,
                    );
                    match fs::read(&p) {
                        Ok(d) if d == b"xattr victim\n" => {}
                        other => {
                            problems.push(format!("{}: data unreadable: {other:?}", tag("read")))
                        }
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The whole damaged-objects scenario on one image.
fn damaged_objects_case(mkfs: Mkfs, csum: bool, tag: &str) {
    let scratch = TempDir::new(tag).unwrap();
    let image = make_image(&scratch, &mkfs, "image");
    let victims = damage(&image, csum);

    // The kernel's read of the damaged image (a copy, to be safe).
    let copy = scratch.join("kernel-copy");
    fs::copy(&image, &copy).unwrap();
    let kdir = scratch.subdir("kernel").unwrap();
    let km = KernelMount::ro(&copy, &kdir).unwrap();
    let kernel = tolerant_walk(km.path(), WalkLimits::default());
    km.unmount().unwrap();
    // The damage must be real: the kernel trips over each victim too (or,
    // for a directory block failing its checksum, shows it empty).
    for v in &victims {
        let hit = kernel.errs.keys().any(|p| under(p, v.path))
            || (v.what == Damaged::DirBlock
                && !kernel
                    .recs
                    .keys()
                    .any(|p| p.len() > v.path.len() && under(p, v.path)));
        assert!(
            hit,
            "{tag}: the kernel reads the damaged {:?} {} fine: {}",
            v.what,
            v.path,
            show_errs(&kernel)
        );
    }

    let mnt = scratch.subdir("mnt").unwrap();
    let m = FsvcMount::mount(&image, &mnt, &opts("ro"), &scratch).unwrap();
    let pid = m
        .server_pid()
        .unwrap_or_else(|| panic!("no server found\n{}", m.diagnostics()));
    let root = m.path().to_path_buf();
    let r2 = root.clone();
    let vs = victims.clone();
    let checked = within(tag, &root, LIMIT, move || check_victims(&r2, &vs, csum));
    if let Err(p) = checked {
        panic!(
            "{tag}: damaged objects answered wrongly:\n{p}\n{}",
            m.diagnostics()
        );
    }
    let r2 = root.clone();
    let fsvc = within(tag, &root, LIMIT, move || {
        tolerant_walk(&r2, WalkLimits::default())
    });
    eprintln!("{tag}: kernel errors: {}", show_errs(&kernel));
    eprintln!("{tag}: fsvc errors: {}", show_errs(&fsvc));

    // Errors only at the damaged objects, and only EUCLEAN/EIO.
    for (p, (op, errno)) in &fsvc.errs {
        let ours = victims.iter().any(|v| under(p, v.path));
        assert!(
            ours && matches!(*errno, Some(EUCLEAN) | Some(libc::EIO)),
            "{tag}: /{}: {op} failed with errno {errno:?}\n{}",
            p.escape_ascii(),
            m.diagnostics()
        );
    }
    // Everything else reads exactly as the kernel reads it.
    let keep = |w: &Walk| -> Vec<Record> {
        w.recs
            .values()
            .filter(|r| !victims.iter().any(|v| under(&r.path, v.path)))
            .cloned()
            .collect()
    };
    let (expected, actual) = (keep(&kernel), keep(&fsvc));
    assert!(
        oracle::find(&expected, "ok/sub/deep.txt").is_some(),
        "{tag}: kernel view lacks the control files"
    );
    oracle::assert_same(&expected, &actual, Compare::EXACT, &m.diagnostics());

    assert!(alive(pid), "{tag}: server died\n{}", m.diagnostics());
    assert!(
        !read_lossy(&m.helper_run().log_path).contains("panicked"),
        "{tag}: server panicked\n{}",
        m.diagnostics()
    );
    m.unmount().unwrap();
}

#[test]
fn ext4_csum_damaged_objects_answer_euclean_rest_reads_as_kernel() {
    if !require_privileged("ext4_csum_damaged_objects_answer_euclean_rest_reads_as_kernel") {
        return;
    }
    let _serial = serial();
    damaged_objects_case(
        Mkfs::new(FsKind::Ext4)
            .size_mib(32)
            .feature("metadata_csum"),
        true,
        "corrupt-ext4-csum",
    );
}

#[test]
fn ext3_damaged_objects_answer_euclean_rest_reads_as_kernel() {
    if !require_privileged("ext3_damaged_objects_answer_euclean_rest_reads_as_kernel") {
        return;
    }
    let _serial = serial();
    damaged_objects_case(Mkfs::new(FsKind::Ext3).size_mib(32), false, "corrupt-ext3");
}

// ------------------------------------------------------------------ loops

#[test]
fn looping_directories_and_extent_tree_terminate() {
    if !require_privileged("looping_directories_and_extent_tree_terminate") {
        return;
    }
    let _serial = serial();
    let scratch = TempDir::new("corrupt-loops").unwrap();
    // Without metadata_csum, so the extent loop meets the structural checks
    // rather than a checksum.
    let image = make_image(
        &scratch,
        &Mkfs::new(FsKind::Ext4)
            .size_mib(32)
            .feature("^metadata_csum"),
        "loops.ext4",
    );
    // Directory entries pointing back up: at the parent, at the root, at
    // the directory itself (debugfs keeps the blocks well-formed).
    let script = scratch.join("links.cmds");
    fs::write(
        &script,
        "link /loop/a /loop/a/b/up\nlink / /loop/a/b/root\nlink /loop/a/b /loop/a/b/self\n",
    )
    .unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(&image))
    .unwrap();
    let ls = debugfs(&image, "ls -l /loop/a/b").unwrap();
    for n in ["up", "root", "self"] {
        assert!(ls.contains(n), "debugfs link {n} missing:\n{ls}");
    }
    // Extent loop: the inode's root claims depth 2; the extent block claims
    // depth 1 and holds one index entry pointing at itself.
    let eb = extent_block(&image, "/ext/victim");
    let ino = inode_offset(&image, "/ext/victim");
    patch(&image, ino + I_BLOCK + EH_DEPTH, &2u16.to_le_bytes());
    let at = eb * BLOCK;
    patch(&image, at + EH_ENTRIES, &1u16.to_le_bytes());
    patch(&image, at + EH_DEPTH, &1u16.to_le_bytes());
    let mut idx = Vec::new();
    idx.extend_from_slice(&0u32.to_le_bytes()); // first logical block
    idx.extend_from_slice(&u32::try_from(eb).unwrap().to_le_bytes()); // leaf lo
    idx.extend_from_slice(&[0, 0, 0, 0]); // leaf hi, unused
    patch(&image, at + EXT_ENTRY, &idx);

    let mnt = scratch.subdir("mnt").unwrap();
    let m = FsvcMount::mount(&image, &mnt, &opts("ro"), &scratch).unwrap();
    let pid = m
        .server_pid()
        .unwrap_or_else(|| panic!("no server found\n{}", m.diagnostics()));

    // find(1): bounded by a kill after LIMIT.
    let mut find = Command::new("find")
        .arg(m.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = wait_bounded(&mut find, LIMIT, "find over the looping tree")
        .unwrap_or_else(|e| panic!("{e:#}\n{}", m.diagnostics()));
    eprintln!("find exited {st}");

    let root = m.path().to_path_buf();
    let r2 = root.clone();
    let walk = within("walk of the looping tree", &root, LIMIT, move || {
        tolerant_walk(&r2, WalkLimits::default())
    });
    eprintln!(
        "walk: {} records, errors: {}",
        walk.recs.len(),
        show_errs(&walk)
    );
    assert!(
        walk.errs.len() + walk.recs.len() < WalkLimits::default().max_entries,
        "the walk did not end by itself: the loops were followed\n{}",
        m.diagnostics()
    );
    assert!(
        walk.recs.contains_key(b"ok/sub/deep.txt".as_slice()),
        "control file unreadable\n{}",
        m.diagnostics()
    );
    let r2 = root.clone();
    let read = within("read of the looping extent tree", &root, LIMIT, move || {
        fs::read(r2.join("ext/victim")).map(|d| d.len())
    });
    let errno = read.as_ref().err().and_then(io::Error::raw_os_error);
    assert!(
        matches!(errno, Some(EUCLEAN) | Some(libc::EIO)),
        "reading a looping extent tree: {read:?}, wanted EUCLEAN\n{}",
        m.diagnostics()
    );
    assert!(alive(pid), "server died\n{}", m.diagnostics());
    m.unmount().unwrap();
}
