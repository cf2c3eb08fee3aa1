//! Issue 11, detached mounts: `fsvc-mount --detached SOCKET SOURCE` makes a
//! mount attached nowhere and passes its fd to the caller's socket. A
//! program standing in for a container runtime (`fsvc-runtime-probe`)
//! receives it, attaches it in a mount namespace of its own, and the tests
//! check: the tree there equals the kernel's read of the image, the host's
//! mount table never shows it, and once the namespace and the fd are gone
//! the server has exited and the image is unlocked. A caller that drops
//! the fd without attaching it leaks nothing either; a failure reaches the
//! caller's socket as an errno and a message.

use std::path::{Path, PathBuf};

use fsvc_tests::check::check_varied_fixture;
use fsvc_tests::fixtures::{varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{kernel_records, servers_of};
use fsvc_tests::oracle::{self, Compare};
use fsvc_tests::require_privileged;
use fsvc_tests::runtime_probe::{assert_released, Probe};
use fsvc_tests::system::image_lock_free;
use fsvc_tests::util::{mount_table, read_lossy, TempDir};

fn image(scratch: &TempDir) -> PathBuf {
    varied_image(
        scratch,
        &Mkfs::new(FsKind::Ext4).size_mib(64),
        &TreeOptions::default(),
    )
    .expect("image")
}

/// The host's mount table has no mount of `image`.
fn assert_not_on_host(image: &Path) {
    let shown = image.display().to_string();
    let host: Vec<_> = mount_table()
        .expect("mountinfo")
        .into_iter()
        .filter(|m| m.source == shown)
        .collect();
    assert!(host.is_empty(), "the host sees the mount: {host:?}");
}

#[test]
fn a_runtime_attaches_the_mount_in_its_own_namespace() {
    if !require_privileged("a_runtime_attaches_the_mount_in_its_own_namespace") {
        return;
    }
    let scratch = TempDir::new("detached").expect("scratch");
    let img = image(&scratch);
    let expected = kernel_records(&img, &scratch).expect("kernel records");
    check_varied_fixture(&expected, true).expect("fixture");

    let mut p = Probe::start(&scratch, &img, "ro", "attach");
    assert_eq!(p.line(), "helper-exit 0", "{}", p.diagnostics());
    assert_eq!(p.line(), "attached", "{}", p.diagnostics());
    let canon = std::fs::canonicalize(&img).expect("canonical");
    let servers = servers_of(&canon);
    assert_eq!(servers.len(), 1, "one server serves the detached mount");

    // In the probe's namespace: one fsvc mount on its directory ...
    let here = p.mount_entry();
    assert_eq!(here.fstype, "fuse.fsvc.ext4");
    assert_eq!(Path::new(&here.source), img, "the source a person named");
    assert!(here.has_option("ro"), "{here:?}");
    // ... whose tree is the kernel's read of the image ...
    let seen = oracle::walk(&p.attached_root()).expect("walk");
    oracle::assert_same(&expected, &seen, Compare::EXACT, &p.diagnostics());
    // ... and the host never sees it.
    assert_not_on_host(&img);
    assert!(!image_lock_free(&img).expect("flock"), "held while mounted");

    let log = p.log.clone();
    let status = p.finish();
    assert!(status.success(), "probe: {status}");
    assert_released(&img, &servers, &read_lossy(&log));
    assert!(
        read_lossy(&log).contains("unmounted: clean"),
        "{}",
        read_lossy(&log)
    );
}

#[test]
fn a_dropped_fd_leaks_nothing() {
    if !require_privileged("a_dropped_fd_leaks_nothing") {
        return;
    }
    let scratch = TempDir::new("detached-drop").expect("scratch");
    let img = image(&scratch);
    let mut p = Probe::start(&scratch, &img, "ro", "drop");
    assert_eq!(p.line(), "helper-exit 0", "{}", p.diagnostics());
    // The server may already be gone: what matters is that none is left.
    let canon = std::fs::canonicalize(&img).expect("canonical");
    let servers = servers_of(&canon);
    assert_eq!(p.line(), "dropped", "{}", p.diagnostics());
    let diag = p.diagnostics();
    assert!(p.finish().success());
    assert_released(&img, &servers, &diag);
    assert_not_on_host(&img);
}

#[test]
fn a_failure_reaches_the_socket_as_an_errno() {
    if !require_privileged("a_failure_reaches_the_socket_as_an_errno") {
        return;
    }
    let scratch = TempDir::new("detached-fail").expect("scratch");
    // Not an ext filesystem: the server refuses it.
    let junk = scratch.join("junk.img");
    std::fs::write(&junk, vec![0u8; 1 << 20]).expect("junk");
    let mut p = Probe::start(&scratch, &junk, "ro", "attach");
    assert_eq!(p.line(), "helper-exit 32", "{}", p.diagnostics());
    let refused = p.line();
    let rest = refused.strip_prefix("refused ").expect("a refusal");
    let (errno, message) = rest.split_once(' ').expect("errno and message");
    assert!(errno.parse::<i32>().is_ok_and(|e| e > 0), "{refused}");
    assert!(message.contains("junk.img"), "names the source: {refused}");
    assert!(p.finish().success());
    assert!(image_lock_free(&junk).expect("flock"));
}
