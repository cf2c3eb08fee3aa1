//! Issue 2, first "Must show": `fsvc-mount IMAGE DIR -o ro` on a varied
//! `mkfs.ext4 -d` image reads exactly as the kernel's ext4 reads the same
//! image (every field the oracle records, nanosecond times included), and a
//! plain `umount DIR` ends the server.

use fsvc_tests::check::{check_varied_fixture, fsvc_matches};
use fsvc_tests::fixtures::{varied_image, FsKind, Mkfs, TreeOptions, GIB};
use fsvc_tests::mount::{kernel_records, FsvcMount, FsvcOptions};
use fsvc_tests::oracle::{self, find, Compare};
use fsvc_tests::require_privileged;
use fsvc_tests::util::{mounts_at, TempDir};

#[test]
fn varied_tree_reads_as_kernel_and_umount_ends_server() {
    if !require_privileged("varied_tree_reads_as_kernel_and_umount_ends_server") {
        return;
    }
    let scratch = TempDir::new("mount-tree").unwrap();
    let opts = TreeOptions {
        huge_sparse: true,
        ..TreeOptions::default()
    };
    let image = varied_image(&scratch, &Mkfs::new(FsKind::Ext4).size_mib(128), &opts).unwrap();
    let expected = kernel_records(&image, &scratch).unwrap();
    check_varied_fixture(&expected, true).unwrap();
    let huge = find(&expected, "sparse/huge").expect("fixture has sparse/huge");
    assert!(
        huge.size > 4 * GIB,
        "huge sparse file is {} bytes",
        huge.size
    );

    let dir = scratch.subdir("mnt").unwrap();
    let m = FsvcMount::mount(&image, &dir, &FsvcOptions::default(), &scratch).unwrap();
    let entry = mounts_at(&dir).unwrap();
    assert_eq!(entry.len(), 1, "{entry:?}");
    assert!(
        entry[0].fstype.starts_with("fuse"),
        "mounted as {:?}, not through FUSE",
        entry[0]
    );
    assert!(
        entry[0].options.split(',').any(|o| o == "ro"),
        "-o ro mount is not read-only: {:?}",
        entry[0]
    );
    let actual = oracle::walk(m.path())
        .unwrap_or_else(|e| panic!("walk failed: {e:#}\n{}", m.diagnostics()));
    oracle::assert_same(&expected, &actual, Compare::EXACT, &m.diagnostics());

    let pid = m
        .server_pid()
        .unwrap_or_else(|| panic!("no fsvc-server holds the image\n{}", m.diagnostics()));
    assert!(fsvc_tests::mount::alive(pid));
    // Plain `umount DIR`, then the server must be gone (bounded poll).
    m.unmount().unwrap();
    assert!(
        !fsvc_tests::mount::alive(pid),
        "server {pid} survived umount"
    );
    assert!(mounts_at(&dir).unwrap().is_empty());
}

/// The argv mount(8) gives `/sbin/mount.service`: `-t service.ext4`.
#[test]
fn mount8_argv_with_service_type_reads_as_kernel() {
    if !require_privileged("mount8_argv_with_service_type_reads_as_kernel") {
        return;
    }
    let scratch = TempDir::new("mount8").unwrap();
    let image = varied_image(
        &scratch,
        &Mkfs::new(FsKind::Ext4).size_mib(64),
        &TreeOptions::default(),
    )
    .unwrap();
    let expected = kernel_records(&image, &scratch).unwrap();
    let opts = FsvcOptions {
        fs_type: Some("service.ext4".into()),
        ..FsvcOptions::default()
    };
    fsvc_matches(&image, &expected, &opts, Compare::EXACT, &scratch).unwrap();
}
