//! Validates the harness itself against fuse2fs, an independent FUSE reader
//! of ext4: if fuse2fs reads the varied image as the kernel does (save the
//! nanoseconds it drops and its own inode numbers), the oracle, fixtures and
//! mount guards work, whatever state fsvc is in.

use fsvc_tests::check::check_varied_fixture;
use fsvc_tests::fixtures::{varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{kernel_records, Fuse2fsMount};
use fsvc_tests::oracle::{self, Compare};
use fsvc_tests::privilege::require_tools;
use fsvc_tests::require_privileged;
use fsvc_tests::util::TempDir;

#[test]
fn fuse2fs_reads_varied_tree_as_kernel() {
    if !require_privileged("fuse2fs_reads_varied_tree_as_kernel")
        || !require_tools("fuse2fs_reads_varied_tree_as_kernel", &["fuse2fs"])
    {
        return;
    }
    let scratch = TempDir::new("fuse2fs").unwrap();
    let image = varied_image(
        &scratch,
        &Mkfs::new(FsKind::Ext4).size_mib(64),
        &TreeOptions::default(),
    )
    .unwrap();
    let expected = kernel_records(&image, &scratch).unwrap();
    check_varied_fixture(&expected, true).unwrap();

    let dir = scratch.subdir("fuse2fs-mnt").unwrap();
    let m = Fuse2fsMount::ro(&image, &dir).unwrap();
    let actual = oracle::walk(m.path()).unwrap();
    drop(m);
    oracle::assert_same(&expected, &actual, Compare::FUSE2FS, "(fuse2fs)");

    // The oracle must be able to fail: a mismatching record is reported.
    let mut tampered = actual.clone();
    if let Some(r) = tampered.iter_mut().find(|r| r.path == b"files/small.txt") {
        r.sha256 = Some([0; 32]);
    }
    let d = oracle::diff(&expected, &tampered, Compare::FUSE2FS);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].contains("files/small.txt: sha256"), "{d:?}");
}
