//! Issue 6, the superblock's counts and sizes: every field that drives a
//! loop or an allocation gets the kernel's treatment, checked against the
//! kernel itself.
//!
//! Each case sets one superblock field with `debugfs -w ssv` (which keeps
//! the checksum right, so the field's own check is what is tested) on a
//! copy of an ext4 (metadata_csum, 64bit, flex_bg) and an ext2 (1 KiB
//! blocks) image of the varied tree, then mounts it through the kernel's
//! ext4 (read-only, no journal) and through fsvc. What must hold: fsvc
//! mounts exactly when the kernel does (refusing with a reason otherwise),
//! and when both mount, the walk of the tree (records and the errno of
//! every entry that fails) is the kernel's, within a watchdog, with the
//! server alive after it.

use fsvc_tests::damage::{
    header_field, header_value, show_errs, tolerant_walk, within, Walk, WalkLimits,
};
use fsvc_tests::fixtures::{varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{alive, run_helper, servers_of, FsvcMount, FsvcOptions, KernelMount};
use fsvc_tests::oracle::{self, Compare, Record};
use fsvc_tests::require_privileged;
use fsvc_tests::util::{poll_until, run, TempDir};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Far longer than these walks take: past it, a hang.
const LIMIT: Duration = Duration::from_secs(120);

/// (debugfs field name, value) cases for an image: the limits each check
/// draws (at and past them) and values a naive reader would loop or
/// allocate on.
fn cases(image: &Path) -> Vec<(&'static str, u64)> {
    let bs = header_value(image, "Block size:");
    let ipg = header_value(image, "Inodes per group:");
    let inodes = header_value(image, "Inode count:");
    let blocks = header_value(image, "Block count:");
    let bpg = header_value(image, "Blocks per group:");
    let mut v = vec![
        // flex_bg's group size: the kernel ignores values outside 1..=31.
        ("log_groups_per_flex", 0),
        ("log_groups_per_flex", 31),
        ("log_groups_per_flex", 32),
        ("log_groups_per_flex", 255),
        // At most a quarter of a block of reserved GDT blocks.
        ("reserved_gdt_blocks", bs / 4),
        ("reserved_gdt_blocks", bs / 4 + 1),
        ("reserved_gdt_blocks", 65535),
        // The first ordinary inode: 11 at least; inodes below it are
        // reserved (a name leading to one is corruption).
        ("first_ino", 10),
        ("first_ino", 12),
        ("first_ino", inodes + 1),
        // Inode size: a power of two from 128 to the block size.
        ("inode_size", 64),
        ("inode_size", 384),
        ("inode_size", bs * 2),
        // Inodes per group: at most a bitmap block's bits, and the
        // inode count must be groups times it.
        ("inodes_per_group", ipg + 8),
        ("inodes_per_group", bs * 8 + 8),
        ("inodes_count", inodes + 1),
        ("inodes_count", 0),
        // Blocks: not past the device, groups consistent with the count.
        ("blocks_count", blocks * 4),
        ("blocks_count", blocks - 1),
        ("blocks_per_group", 0),
        ("blocks_per_group", bs * 8 + 8),
        ("blocks_per_group", bpg / 2),
        ("first_data_block", blocks),
        ("log_cluster_size", 3),
        // Extra inode sizes past the inode's room.
        ("min_extra_isize", 200),
        ("want_extra_isize", 200),
        // The journal inode: the read-only, no-journal mount ignores it.
        ("journal_inum", 0),
        ("journal_inum", 2),
        ("journal_inum", inodes + 100),
    ];
    if bs == 1024 {
        v.push(("first_data_block", 0));
    } else {
        v.push(("first_data_block", 1));
    }
    if header_field(image, "Group descriptor size:").is_some_and(|d| d > 32) {
        // 64bit: a power of two from 64 to 1024 and at most a block.
        v.extend([("desc_size", 32), ("desc_size", 96), ("desc_size", 2048)]);
    }
    v
}

/// Records of a walk, sorted by path, and its errors.
fn recs(w: &Walk) -> Vec<Record> {
    w.recs.values().cloned().collect()
}

fn errs(w: &Walk) -> Vec<(Vec<u8>, Option<i32>)> {
    w.errs.iter().map(|(p, (_, e))| (p.clone(), *e)).collect()
}

/// One case: returns a line for the summary.
fn one(tag: &str, base: &Path, field: &str, value: u64, scratch: &TempDir) -> String {
    let what = format!("{tag}: ssv {field} {value}");
    let image = scratch.join("case.img");
    fs::copy(base, &image).unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("ssv {field} {value}"))
        .arg(&image))
    .unwrap();
    let copy = scratch.join("case.kernel");
    fs::copy(&image, &copy).unwrap();
    let kdir = scratch.subdir("kernel").unwrap();
    let kernel = match KernelMount::ro(&copy, &kdir) {
        Ok(km) => {
            let p = km.path().to_path_buf();
            let p2 = p.clone();
            let w = within(&what, &p, LIMIT, move || {
                tolerant_walk(&p2, WalkLimits::default())
            });
            km.unmount().unwrap();
            Some(w)
        }
        Err(_) => None,
    };
    let mnt = scratch.subdir("fsvc").unwrap();
    let opts = FsvcOptions::default();
    let run = run_helper(&image, &mnt, &opts, scratch).unwrap();
    let Some(kernel) = kernel else {
        let canon = fs::canonicalize(&image).unwrap();
        if run.status.success() {
            // Unmounted (by the guard's drop) before the test fails.
            let m = FsvcMount::adopt(&image, &mnt, run).unwrap();
            panic!(
                "{what}: the kernel refuses it, fsvc mounts it\n{}",
                m.diagnostics()
            );
        }
        assert_eq!(run.code(), 32, "{what}: exit code\n{}", run.diagnostics());
        assert!(!run.stderr.trim().is_empty(), "{what}: no reason given");
        assert!(
            poll_until(Duration::from_secs(20), || servers_of(&canon).is_empty()),
            "{what}: a server is left"
        );
        return format!("{what}: both refuse ({})", run.stderr.trim());
    };
    assert!(
        run.status.success(),
        "{what}: the kernel mounts it, fsvc refuses (kernel errors: {})\n{}",
        show_errs(&kernel),
        run.diagnostics()
    );
    let m = FsvcMount::adopt(&image, &mnt, run).unwrap();
    let pid = m.server_pid().expect("server");
    let root = m.path().to_path_buf();
    let r2 = root.clone();
    let ours = within(&what, &root, LIMIT, move || {
        tolerant_walk(&r2, WalkLimits::default())
    });
    assert_eq!(
        errs(&ours),
        errs(&kernel),
        "{what}: errors differ: fsvc {} / kernel {}\n{}",
        show_errs(&ours),
        show_errs(&kernel),
        m.diagnostics()
    );
    oracle::assert_same(
        &recs(&kernel),
        &recs(&ours),
        Compare::EXACT,
        &m.diagnostics(),
    );
    assert!(alive(pid), "{what}: server died\n{}", m.diagnostics());
    m.unmount().unwrap();
    format!(
        "{what}: both mount, same tree ({} entries, {} errors)",
        kernel.recs.len(),
        kernel.errs.len()
    )
}

#[test]
fn superblock_fields_get_the_kernels_treatment() {
    if !require_privileged("superblock_fields_get_the_kernels_treatment") {
        return;
    }
    for (tag, mkfs) in [
        ("ext4", Mkfs::new(FsKind::Ext4).feature("metadata_csum")),
        ("ext2-1k", Mkfs::new(FsKind::Ext2).block_size(1024)),
    ] {
        let scratch = TempDir::new(&format!("bounds-sb-{tag}")).unwrap();
        let base = varied_image(&scratch, &mkfs.size_mib(32), &TreeOptions::default()).unwrap();
        for (field, value) in cases(&base) {
            eprintln!("{}", one(tag, &base, field, value, &scratch));
        }
    }
}
