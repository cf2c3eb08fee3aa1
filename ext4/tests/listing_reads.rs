//! Device reads of a cold listing with attributes (what a FUSE readdirplus
//! costs the engine): the entries' inodes come from the inode table in
//! large windows (`io::cache::META_WINDOW_BYTES`), one device read per
//! 256 KiB of table they span, not one per inode nor per small window. Counts reads, never times them.
//! The fixture is the benchmark's shape: a parent whose subdirectories
//! each hold a few hundred files, laid out by `mkfs.ext4 -d`, which puts
//! every directory's files right after it in the inode table, so the
//! parent's children lie a few hundred inodes apart.

mod names_fixtures;

use fsvc_ext4::{FileKind, InodeNo};
use names_fixtures::*;

const SUBDIRS: usize = 20;
const FILES_PER_DIR: usize = 250;
const INODE_SIZE: u64 = 256;
/// What a listing may cost: one device read per 256 KiB of inode table
/// (64 KiB windows took 18 reads here, 256 KiB ones take 5).
const READ_PER_BYTES: u64 = 256 << 10;

#[test]
fn stat_after_listing_reads_each_inode_window_once() {
    let s = Scratch::new("listing-reads");
    for d in 0..SUBDIRS {
        let dir = s.tree().join("small").join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            mkfile(&dir.join(format!("f{f:06}")), b"");
        }
    }
    // The layout of mkfs.ext4's "default" type (what a 2 GiB image gets),
    // on an image small enough to hold in memory.
    let img = s.mkfs(&["-T", "default", "-b", "4096", "-I", "256"], "128M");
    let fs = open(&img);
    let parent = resolve(&fs, "small");
    let entries = read_all(&fs, parent);
    let children: Vec<InodeNo> = entries
        .iter()
        .filter(|e| e.name != b"." && e.name != b"..")
        .map(|e| e.ino)
        .collect();
    assert_eq!(children.len(), SUBDIRS);

    let before = fs.dev().stats();
    for &ino in &children {
        assert_eq!(fs.stat(ino).unwrap().kind, FileKind::Dir, "inode {ino}");
    }
    let after = fs.dev().stats();
    let reads = after.meta_reads - before.meta_reads;

    let lo = u64::from(children.iter().min().unwrap().0);
    let hi = u64::from(children.iter().max().unwrap().0);
    let span = (hi - lo + 1) * INODE_SIZE;
    // The fixture really is spread: small windows would need many reads.
    assert!(
        span > 8 * (64 << 10),
        "children span only {span} bytes of inode table"
    );
    // One read per aligned window the span touches.
    let windows = span.div_ceil(READ_PER_BYTES) + 1;
    println!("{SUBDIRS} subdirectories over {span} bytes of inode table: {reads} device reads");
    assert!(
        reads <= windows,
        "{reads} device reads for {span} bytes of inode table (at most {windows} windows)"
    );
}
