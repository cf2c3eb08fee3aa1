//! Issue 2, abuse "Must show" items visible only end to end: a server (here a
//! scripted fake on the systemd socket path) that exits without goodbye,
//! never answers, sends garbage, oversized packets, fds where none belong,
//! messages out of order, or asks for a file other than the source; and bad
//! input on the command line (a source that is not ext4, a missing source,
//! an unknown option). Each must end in a clear error, nothing mounted, no
//! server left behind, and no hang.

use fsvc_protocol::{
    Access, HelperMsg, MountRequest, ServerMsg, MAX_MESSAGE_SIZE, PROTOCOL_VERSION_MAX,
};
use fsvc_tests::fake_server::{Conn, FakeServer};
use fsvc_tests::fixtures::{garbage_image, pseudo_random, varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{run_helper_limited, servers_of, FsvcOptions, HelperRun};
use fsvc_tests::require_privileged;
use fsvc_tests::util::{mounts_at, poll_until, TempDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The helper's receive timeout in these tests.
const TIMEOUT_SECS: u32 = 2;
/// Far beyond the timeout: a helper still running then is hung.
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// A failed helper run must explain itself in one readable line, without a
/// Rust panic.
fn assert_clear_failure(run: &HelperRun, dir: &Path) {
    let d = run.diagnostics();
    assert!(!run.status.success(), "helper succeeded\n{d}");
    assert!(
        matches!(run.code(), 1 | 32),
        "exit code {} is not a mount(8) code\n{d}",
        run.code()
    );
    let reason = run.stderr.trim();
    assert!(!reason.is_empty(), "no reason printed\n{d}");
    assert!(
        !reason.contains("panicked") && !reason.contains("RUST_BACKTRACE"),
        "helper panicked\n{d}"
    );
    assert!(
        mounts_at(dir).unwrap().is_empty(),
        "something is mounted at {}\n{d}",
        dir.display()
    );
}

/// Runs the helper against a fake server running `script`.
fn against_fake<F>(tag: &str, script: F) -> (HelperRun, anyhow::Result<()>)
where
    F: FnOnce(Conn) -> anyhow::Result<()> + Send + 'static,
{
    let scratch = TempDir::new(tag).unwrap();
    let sockets = scratch.subdir("sockets").unwrap();
    let image = scratch.join("image");
    // The fake never reads it; it only has to exist for the helper.
    garbage_image(&image, 1).unwrap();
    let dir = scratch.subdir("mnt").unwrap();
    let fake = FakeServer::start(&sockets, script).unwrap();
    let opts = FsvcOptions {
        socket_dir: Some(sockets),
        timeout_secs: Some(TIMEOUT_SECS),
        ..FsvcOptions::default()
    };
    let run = run_helper_limited(&image, &dir, &opts, &scratch, HANG_LIMIT)
        .unwrap_or_else(|e| panic!("{tag}: {e:#}"));
    let script_result = fake.finish();
    assert_clear_failure(&run, &dir);
    (run, script_result)
}

fn hello(conn: &Conn) -> anyhow::Result<()> {
    match conn.expect()? {
        HelperMsg::Hello { .. } => Ok(()),
        other => anyhow::bail!("first helper message was {other:?}"),
    }
}

macro_rules! gate {
    ($name:expr) => {
        if !require_privileged($name) {
            return;
        }
    };
}

#[test]
fn server_exits_right_after_accept() {
    gate!("server_exits_right_after_accept");
    let (_run, r) = against_fake("abuse-exit0", |conn| {
        drop(conn);
        Ok(())
    });
    r.unwrap();
}

#[test]
fn server_exits_without_goodbye_mid_conversation() {
    gate!("server_exits_without_goodbye_mid_conversation");
    let (_run, r) = against_fake("abuse-nobye", |conn| {
        match conn.handshake()? {
            HelperMsg::MountInfo(_) => {}
            other => anyhow::bail!("expected MountInfo, got {other:?}"),
        }
        conn.send(&ServerMsg::FilesDone)?;
        drop(conn);
        Ok(())
    });
    r.unwrap();
}

#[test]
fn server_never_answers() {
    gate!("server_never_answers");
    let (_run, r) = against_fake("abuse-silent", |conn| {
        hello(&conn)?;
        // Say nothing; hold the connection until the helper gives up.
        conn.wait_for_close();
        Ok(())
    });
    r.unwrap();
}

#[test]
fn server_goes_silent_after_handshake() {
    gate!("server_goes_silent_after_handshake");
    let (_run, r) = against_fake("abuse-silent2", |conn| {
        conn.handshake()?;
        conn.wait_for_close();
        Ok(())
    });
    r.unwrap();
}

#[test]
fn server_sends_garbage() {
    gate!("server_sends_garbage");
    let (_run, r) = against_fake("abuse-garbage", |conn| {
        hello(&conn)?;
        conn.send_raw(&pseudo_random(7, 333))?;
        conn.wait_for_close();
        Ok(())
    });
    r.unwrap();
}

#[test]
fn server_sends_oversized_packet() {
    gate!("server_sends_oversized_packet");
    let (_run, r) = against_fake("abuse-big", |conn| {
        hello(&conn)?;
        // A valid message padded past the size limit.
        let mut bytes = fsvc_tests::fake_server::encode(&ServerMsg::Hello {
            version: PROTOCOL_VERSION_MAX,
        });
        bytes.resize(MAX_MESSAGE_SIZE * 3, 0);
        conn.send_raw(&bytes)?;
        conn.wait_for_close();
        Ok(())
    });
    r.unwrap();
}

#[test]
fn server_attaches_an_fd_to_hello() {
    gate!("server_attaches_an_fd_to_hello");
    let (_run, r) = against_fake("abuse-fd", |conn| {
        hello(&conn)?;
        let devnull = std::fs::File::open("/dev/null")?;
        conn.send_with_fd(
            &ServerMsg::Hello {
                version: PROTOCOL_VERSION_MAX,
            },
            &devnull,
        )?;
        conn.wait_for_close();
        Ok(())
    });
    r.unwrap();
}

#[test]
fn server_sends_mount_request_out_of_order() {
    gate!("server_sends_mount_request_out_of_order");
    let (_run, r) = against_fake("abuse-order", |conn| {
        hello(&conn)?;
        // A mount request before the version is agreed.
        conn.send(&ServerMsg::MountRequest(MountRequest {
            fs_name: "x".into(),
            subtype: "ext4".into(),
            read_only: true,
            default_permissions: true,
            allow_other: true,
        }))?;
        // If the helper answers at all, it must not hand over /dev/fuse.
        let r = conn.recv()?;
        anyhow::ensure!(
            r.fds.is_empty(),
            "helper sent an fd out of order: {:?}",
            r.msg
        );
        conn.wait_for_close();
        Ok(())
    });
    r.unwrap();
}

#[test]
fn file_request_for_another_path_is_refused() {
    gate!("file_request_for_another_path_is_refused");
    let (_run, r) = against_fake("abuse-path", |conn| {
        match conn.handshake()? {
            HelperMsg::MountInfo(info) => {
                anyhow::ensure!(info.source != "/etc/shadow", "odd source");
            }
            other => anyhow::bail!("expected MountInfo, got {other:?}"),
        }
        conn.send(&ServerMsg::FileRequest {
            path: "/etc/shadow".into(),
            access: Access::ReadOnly,
        })?;
        // Either a refusal without an fd, or the helper hangs up.
        let r = conn.recv()?;
        anyhow::ensure!(r.fds.is_empty(), "helper granted an fd for /etc/shadow!");
        match r.msg {
            Some(HelperMsg::FileReply(Err(_))) | None => {}
            Some(other) => anyhow::bail!("unexpected answer to a foreign path: {other:?}"),
        }
        let _ = conn.send(&ServerMsg::Goodbye {
            status: libc::EACCES,
            reason: "fake server gives up".into(),
        });
        conn.wait_for_close();
        Ok(())
    });
    r.unwrap();
}

/// Runs the real helper (spawn mode) on `source` with `-o opts`.
fn real_run(tag: &str, source: &Path, opts: &str, scratch: &TempDir) -> (HelperRun, PathBuf) {
    let dir = scratch.subdir(&format!("mnt-{tag}")).unwrap();
    let o = FsvcOptions {
        options: opts.into(),
        timeout_secs: Some(10),
        ..FsvcOptions::default()
    };
    let run = run_helper_limited(source, &dir, &o, scratch, HANG_LIMIT).unwrap();
    (run, dir)
}

/// No server may outlive a refused mount.
fn assert_no_server_left(image: &Path, run: &HelperRun) {
    let Ok(c) = std::fs::canonicalize(image) else {
        return;
    };
    assert!(
        poll_until(Duration::from_secs(10), || servers_of(&c).is_empty()),
        "a server still holds {}\n{}",
        image.display(),
        run.diagnostics()
    );
}

#[test]
fn source_that_is_not_ext4_fails_with_32() {
    gate!("source_that_is_not_ext4_fails_with_32");
    let scratch = TempDir::new("abuse-notext4").unwrap();
    let image = scratch.join("random.img");
    garbage_image(&image, 8).unwrap();
    let (run, dir) = real_run("garbage", &image, "ro", &scratch);
    assert_clear_failure(&run, &dir);
    assert_eq!(run.code(), 32, "{}", run.diagnostics());
    assert_no_server_left(&image, &run);
}

#[test]
fn missing_source_fails_naming_it() {
    gate!("missing_source_fails_naming_it");
    let scratch = TempDir::new("abuse-missing").unwrap();
    let image = scratch.join("no-such-image");
    let (run, dir) = real_run("missing", &image, "ro", &scratch);
    assert_clear_failure(&run, &dir);
    let e = run.stderr.to_lowercase();
    assert!(
        e.contains("no-such-image") || e.contains("no such file"),
        "the reason does not say what is missing\n{}",
        run.diagnostics()
    );
}

#[test]
fn unknown_option_is_refused_by_name() {
    gate!("unknown_option_is_refused_by_name");
    let scratch = TempDir::new("abuse-opt").unwrap();
    let image = varied_image(
        &scratch,
        &Mkfs::new(FsKind::Ext4).size_mib(32),
        &TreeOptions {
            large_bytes: 4096,
            ..TreeOptions::default()
        },
    )
    .unwrap();
    let (run, dir) = real_run("opt", &image, "ro,frobnicate=7", &scratch);
    assert_clear_failure(&run, &dir);
    assert!(
        run.stderr.contains("frobnicate"),
        "the refusal does not name the option\n{}",
        run.diagnostics()
    );
    assert_no_server_left(&image, &run);
}
