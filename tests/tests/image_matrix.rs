//! Issue 3, "Must show": every kind of image mkfs.ext4 makes reads through a
//! real fsvc mount exactly as the kernel's ext4 reads it. One test per image
//! so failures name the configuration and the images build in parallel.

use fsvc_tests::check::{check_varied_fixture, kernel_vs_fsvc};
use fsvc_tests::fixtures::{
    big_dir_image, deep_extent_image, has_inline_data, varied_image, FsKind, Mkfs, TreeOptions,
};
use fsvc_tests::oracle::{find, Kind};
use fsvc_tests::require_privileged;
use fsvc_tests::util::TempDir;

/// Builds the varied tree into an image with `mkfs`, checks the fixture and
/// compares fsvc with the kernel.
fn varied(name: &str, mkfs: Mkfs, opts: TreeOptions, ns_times: bool) {
    if !require_privileged(name) {
        return;
    }
    let scratch = TempDir::new(name).unwrap();
    let image = varied_image(&scratch, &mkfs, &opts)
        .unwrap_or_else(|e| panic!("{name}: fixture ({}) failed: {e:#}", mkfs.describe()));
    let recs = kernel_vs_fsvc(&image, &scratch)
        .unwrap_or_else(|e| panic!("{name} ({}): {e:#}", mkfs.describe()));
    check_varied_fixture(&recs, ns_times).unwrap();
}

#[test]
fn ext2_1k_blocks_indirect_maps_and_huge_sparse() {
    // 1 KiB blocks: the data past 4 GiB sits behind triple indirect blocks.
    let opts = TreeOptions {
        huge_sparse: true,
        ..TreeOptions::default()
    };
    varied(
        "ext2-1k",
        Mkfs::new(FsKind::Ext2).block_size(1024),
        opts,
        true,
    );
}

#[test]
fn ext3_2k_blocks() {
    varied(
        "ext3-2k",
        Mkfs::new(FsKind::Ext3).block_size(2048),
        TreeOptions::default(),
        true,
    );
}

#[test]
fn ext4_4k_defaults() {
    varied(
        "ext4-4k",
        Mkfs::new(FsKind::Ext4),
        TreeOptions::default(),
        true,
    );
}

#[test]
fn ext4_1k_blocks() {
    varied(
        "ext4-1k",
        Mkfs::new(FsKind::Ext4).block_size(1024),
        TreeOptions::default(),
        true,
    );
}

#[test]
fn ext4_2k_no_64bit_no_metadata_csum_gdt_csum() {
    let mkfs = Mkfs::new(FsKind::Ext4)
        .block_size(2048)
        .feature("^64bit")
        .feature("^metadata_csum")
        .feature("uninit_bg");
    varied("ext4-nocsum", mkfs, TreeOptions::default(), true);
}

#[test]
fn ext4_no_flex_bg_huge_file_dir_index() {
    let mkfs = Mkfs::new(FsKind::Ext4)
        .feature("^flex_bg")
        .feature("^huge_file")
        .feature("^dir_index");
    varied("ext4-noflex", mkfs, TreeOptions::default(), true);
}

#[test]
fn ext4_128_byte_inodes() {
    // No room for nanoseconds or extended epochs: both readers must agree
    // on the clamped values.
    let mkfs = Mkfs::new(FsKind::Ext4).inode_size(128);
    varied("ext4-i128", mkfs, TreeOptions::default(), false);
}

#[test]
fn ext4_meta_bg_sparse_super2() {
    let mkfs = Mkfs::new(FsKind::Ext4)
        .feature("meta_bg")
        .feature("^resize_inode")
        .feature("sparse_super2");
    varied("ext4-metabg", mkfs, TreeOptions::default(), true);
}

#[test]
fn ext2_no_filetype_no_dir_index() {
    let mkfs = Mkfs::new(FsKind::Ext2)
        .feature("^filetype")
        .feature("^dir_index");
    varied("ext2-nofiletype", mkfs, TreeOptions::default(), true);
}

#[test]
fn ext4_inline_data() {
    let name = "ext4_inline_data";
    if !require_privileged(name) {
        return;
    }
    let scratch = TempDir::new("inline").unwrap();
    let mkfs = Mkfs::new(FsKind::Ext4).feature("inline_data");
    let image = varied_image(&scratch, &mkfs, &TreeOptions::default()).unwrap();
    // The fixture must really hold inline files and directories.
    assert!(
        has_inline_data(&image, "/files/tiny1").unwrap(),
        "tiny1 not inline"
    );
    assert!(
        has_inline_data(&image, "/empty-dir").unwrap(),
        "empty-dir not inline"
    );
    let recs = kernel_vs_fsvc(&image, &scratch).unwrap();
    check_varied_fixture(&recs, true).unwrap();
}

#[test]
fn ext4_50000_entry_htree_directory() {
    if !require_privileged("ext4_50000_entry_htree_directory") {
        return;
    }
    let scratch = TempDir::new("bigdir").unwrap();
    let image = big_dir_image(&scratch, 50_000).unwrap();
    let recs = kernel_vs_fsvc(&image, &scratch).unwrap();
    let n = recs.iter().filter(|r| r.path.starts_with(b"big/")).count();
    assert_eq!(n, 50_001, "kernel sees {n} entries in /big");
}

#[test]
fn ext4_depth2_extent_tree() {
    if !require_privileged("ext4_depth2_extent_tree") {
        return;
    }
    let scratch = TempDir::new("deep").unwrap();
    let image = deep_extent_image(&scratch).unwrap();
    let recs = kernel_vs_fsvc(&image, &scratch).unwrap();
    let deep = find(&recs, "deep").expect("deep file");
    assert_eq!(deep.kind, Kind::File);
    assert_eq!(deep.size, 16 << 20);
    // Half the file is holes: fewer blocks than the size.
    assert!(deep.blocks * 512 < deep.size, "holes were not punched");
}
