//! Issue 2: the same mount through systemd socket activation, emulated with
//! `systemd-socket-activate --seqpacket --accept` (what `fsvc.socket` with
//! `Accept=yes` does): the helper finds the socket in `FSVC_SOCKET_DIR`,
//! connects, and the activated server serves a tree equal to the kernel's.

use fsvc_tests::check::{check_varied_fixture, fsvc_matches};
use fsvc_tests::fixtures::{varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{kernel_records, FsvcMount, FsvcOptions};
use fsvc_tests::oracle::{self, Compare};
use fsvc_tests::privilege::require_tools;
use fsvc_tests::require_privileged;
use fsvc_tests::util::{bin, poll_until, ppid, read_lossy, TempDir};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The background `systemd-socket-activate`; killed on drop.
struct Activator {
    child: Child,
}

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn socket_activated_server_reads_as_kernel() {
    let name = "socket_activated_server_reads_as_kernel";
    if !require_privileged(name) || !require_tools(name, &["systemd-socket-activate"]) {
        return;
    }
    let scratch = TempDir::new("sockact").unwrap();
    let image = varied_image(&scratch, &Mkfs::new(FsKind::Ext4), &TreeOptions::default()).unwrap();
    let expected = kernel_records(&image, &scratch).unwrap();
    check_varied_fixture(&expected, true).unwrap();

    let sockets = scratch.subdir("sockets").unwrap();
    let socket = sockets.join("ext4");
    let act_log = scratch.join("activator.log");
    let child = Command::new("systemd-socket-activate")
        .args(["--seqpacket", "--accept", "-l"])
        .arg(&socket)
        .arg(bin("fsvc-server"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&act_log).unwrap())
        .stderr(std::fs::File::create(scratch.join("activator.err")).unwrap())
        .spawn()
        .expect("start systemd-socket-activate");
    let act = Activator { child };
    assert!(
        poll_until(Duration::from_secs(30), || socket.exists()),
        "activator never created {}: {}",
        socket.display(),
        read_lossy(&scratch.join("activator.err"))
    );

    let opts = FsvcOptions {
        socket_dir: Some(sockets.clone()),
        ..FsvcOptions::default()
    };
    let dir = scratch.subdir("mnt").unwrap();
    let m = FsvcMount::mount(&image, &dir, &opts, &scratch).unwrap_or_else(|e| {
        panic!(
            "{e:#}\n--- activator stderr ---\n{}",
            read_lossy(&scratch.join("activator.err"))
        )
    });
    // The server that serves the mount is the activator's child: the helper
    // went through the socket, not its own spawn.
    let pid = m.server_pid().expect("no fsvc-server holds the image");
    assert_eq!(
        ppid(pid),
        Some(act.child.id() as i32),
        "server {pid} was not started by the socket activator\n{}",
        m.diagnostics()
    );
    let actual = oracle::walk(m.path()).unwrap();
    oracle::assert_same(
        &expected,
        &actual,
        Compare::EXACT,
        &format!(
            "{}\n--- activator stderr ---\n{}",
            m.diagnostics(),
            read_lossy(&scratch.join("activator.err"))
        ),
    );
    m.unmount().unwrap();

    // The activator keeps listening: a second mount gets a fresh server.
    fsvc_matches(&image, &expected, &opts, Compare::EXACT, &scratch).unwrap();
    drop(act);
}
