//! The fsvc-server binary's activation and early failures, driven the way
//! systemd and the helper start it: argv, `LISTEN_*`, fd 3 (and fd 4 for
//! the log). A fake helper on the other end of the socket checks that every
//! failure ends in a Goodbye with a non-zero status and a reason, and exit
//! status 1 (2 for usage).
//!
//! bash places the fds: the socket comes in as stdin and is moved to fd 3
//! (`3<&0 0</dev/null`), the log pipe as stdout moved to fd 4; systemd's
//! `LISTEN_PID` is the shell's `$$`, which `exec` hands to the server.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fsvc_protocol::{
    recv_server_msg, send_helper_msg, send_packet, Access, Caller, FileGrant, FsType, HelperMsg,
    MountInfo, Refusal, ServerMsg, WireError, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};
use nix::errno::Errno;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

const SERVER: &str = env!("CARGO_BIN_EXE_fsvc-server");
/// Failsafe only: a broken server fails the test instead of hanging it.
const LONG: Duration = Duration::from_secs(30);

fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    fsvc_protocol::seqpacket_pair().expect("socketpair")
}

/// How to start the server.
enum Start {
    /// `fsvc-server --spawned`, socket on fd 3, log pipe on fd 4.
    Spawned,
    /// Socket activation: `LISTEN_PID=$$ LISTEN_FDS=1`, socket on fd 3.
    Systemd,
}

struct Running {
    child: Child,
    helper: OwnedFd,
    /// Spawned: the log (fd 4); systemd: stderr.
    log: File,
}

fn start(how: Start) -> Running {
    let (helper, server) = seqpacket_pair();
    let (log_r, log_w) = nix::unistd::pipe().expect("pipe");
    let mut cmd = Command::new("bash");
    cmd.env_clear().stdin(Stdio::from(server));
    match how {
        Start::Spawned => {
            cmd.arg("-c")
                .arg(r#"exec "$0" --spawned 3<&0 0</dev/null 4>&1 1>/dev/null"#)
                .arg(SERVER)
                .stdout(Stdio::from(log_w))
                .stderr(Stdio::null());
        }
        Start::Systemd => {
            cmd.arg("-c")
                .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" 3<&0 0</dev/null"#)
                .arg(SERVER)
                .stdout(Stdio::null())
                .stderr(Stdio::from(log_w));
        }
    }
    let child = cmd.spawn().expect("spawn server");
    Running {
        child,
        helper,
        log: File::from(log_r),
    }
}

/// Waits for the child with a deadline (then kills it and fails).
fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects what the server sent until it closed, waits for it, reads its log.
fn finish(mut r: Running) -> (Vec<ServerMsg>, ExitStatus, String) {
    let mut sent = Vec::new();
    loop {
        match recv_server_msg(r.helper.as_fd(), LONG) {
            Ok(m) => sent.push(m),
            Err(WireError::PeerClosed) => break,
            Err(e) => {
                let _ = r.child.kill();
                panic!("reading the server: {e} (so far {sent:?})");
            }
        }
    }
    let status = wait(&mut r.child);
    let mut log = String::new();
    r.log.read_to_string(&mut log).expect("read log");
    (sent, status, log)
}

fn goodbye(sent: &[ServerMsg]) -> (i32, String) {
    match sent.last() {
        Some(ServerMsg::Goodbye { status, reason }) => (*status, reason.clone()),
        other => panic!("no goodbye: {other:?} in {sent:?}"),
    }
}

fn info(source: &str, options: &str) -> MountInfo {
    MountInfo {
        caller: Caller {
            uid: 0,
            gid: 0,
            groups: vec![],
        },
        fs_type: FsType::Ext4,
        source: source.to_owned(),
        mountpoint: "/nonexistent/plumbing-mnt".to_owned(),
        fs_options: options.to_owned(),
        read_only: true,
        allow_other_permitted: true,
        verbose: false,
        idmap: false,
    }
}

fn send(r: &Running, m: &HelperMsg, fds: &[std::os::fd::BorrowedFd<'_>]) {
    send_helper_msg(r.helper.as_fd(), m, fds).expect("send to server");
}

fn hello() -> HelperMsg {
    HelperMsg::Hello {
        min_version: PROTOCOL_VERSION_MIN,
        max_version: PROTOCOL_VERSION_MAX,
    }
}

#[test]
fn usage_errors_exit_2_or_1_without_touching_fds() {
    /// (argv after the program, LISTEN_PID, LISTEN_FDS, exit code, phrase)
    type Case<'a> = (
        &'a [&'a str],
        Option<&'a str>,
        Option<&'a str>,
        i32,
        &'a str,
    );
    let cases: &[Case<'_>] = &[
        (&[], None, None, 2, "usage"),
        (&["--help", "extra"], None, None, 2, "usage"),
        (&["--spawned", "extra"], None, None, 2, "usage"),
        (
            &[],
            Some("1"),
            Some("1"),
            1,
            "LISTEN_PID=1 is not this process",
        ),
        (&[], None, Some("1"), 1, "must both be set"),
    ];
    for (args, pid, fds, code, phrase) in cases {
        let mut cmd = Command::new(SERVER);
        cmd.env_clear().args(*args);
        if let Some(p) = pid {
            cmd.env("LISTEN_PID", p);
        }
        if let Some(f) = fds {
            cmd.env("LISTEN_FDS", f);
        }
        let out = cmd.output().expect("run server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(phrase), "{args:?}: {err:?} lacks {phrase:?}");
    }
    // --help and --version are answered (exit 0), on stdout.
    for (arg, phrase) in [
        ("--help", "fsvc-server(8)"),
        ("--version", env!("CARGO_PKG_VERSION")),
    ] {
        let out = Command::new(SERVER)
            .env_clear()
            .arg(arg)
            .output()
            .expect("run server");
        assert_eq!(out.status.code(), Some(0), "{arg}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(phrase),
            "{arg}: {out:?}"
        );
    }
}

#[test]
fn wrong_fd_3_is_refused() {
    // A stream socket instead of SOCK_SEQPACKET.
    let (_peer, stream) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let out = Command::new("bash")
        .env_clear()
        .arg("-c")
        .arg(r#"exec "$0" --spawned 3<&0 0</dev/null"#)
        .arg(SERVER)
        .stdin(Stdio::from(stream))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not an AF_UNIX SOCK_SEQPACKET socket"),
        "{err}"
    );

    // Nothing on fd 3 at all.
    let out = Command::new(SERVER)
        .env_clear()
        .arg("--spawned")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("fd 3 is not open"), "{err}");
}

#[test]
fn spawned_garbage_gets_a_goodbye_and_a_log_line() {
    let r = start(Start::Spawned);
    send_packet(r.helper.as_fd(), &[0xff; 40], &[]).expect("send garbage");
    let (sent, status, log) = finish(r);
    assert_eq!(status.code(), Some(1));
    let (st, reason) = goodbye(&sent);
    assert_eq!(st, Errno::EPROTO as i32);
    assert!(reason.contains("malformed"), "{reason}");
    // One record per line, named, on the log fd.
    let line = log
        .lines()
        .find(|l| l.contains("handshake failed"))
        .unwrap_or_else(|| panic!("log: {log:?}"));
    assert!(line.starts_with("fsvc-server["), "{line}");
    assert!(line.contains("]: ERROR: "), "{line}");
}

#[test]
fn systemd_bad_option_gets_a_goodbye_and_a_journal_line() {
    let r = start(Start::Systemd);
    send(&r, &hello(), &[]);
    send(
        &r,
        &HelperMsg::MountInfo(info("/nonexistent/img", "ro,frobnicate")),
        &[],
    );
    let (sent, status, log) = finish(r);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        sent.first(),
        Some(&ServerMsg::Hello {
            version: PROTOCOL_VERSION_MAX
        })
    );
    let (st, reason) = goodbye(&sent);
    assert_eq!(st, Errno::EINVAL as i32);
    assert_eq!(reason, "Unknown parameter 'frobnicate'");
    // The journal reads the priority prefix; systemd adds the name and pid.
    assert!(
        log.lines()
            .any(|l| l.starts_with("<3>") && l.contains("frobnicate")),
        "{log:?}"
    );
}

#[test]
fn a_refused_source_is_reported_with_the_helpers_errno() {
    let r = start(Start::Spawned);
    send(&r, &hello(), &[]);
    send(
        &r,
        &HelperMsg::MountInfo(info("/dev/plumbing-nothing", "")),
        &[],
    );
    // Wait for each file request before answering, as the helper does.
    // Read-write first (a journal may need replaying); refused with
    // EACCES, the server asks again read-only, and that refusal is final.
    let mut sent = vec![recv_server_msg(r.helper.as_fd(), LONG).expect("server hello")];
    for want in [Access::ReadWrite, Access::ReadOnly] {
        let m = recv_server_msg(r.helper.as_fd(), LONG).expect("server message");
        assert!(
            matches!(&m, ServerMsg::FileRequest { path, access }
                if path == "/dev/plumbing-nothing" && *access == want),
            "wanted a {want:?} request: {m:?} after {sent:?}"
        );
        sent.push(m);
        send(
            &r,
            &HelperMsg::FileReply(Err(Refusal {
                errno: Errno::EACCES as i32,
                message: "permission denied".to_owned(),
            })),
            &[],
        );
    }
    let (rest, status, _log) = finish(r);
    assert_eq!(status.code(), Some(1));
    let (st, reason) = goodbye(&rest);
    assert_eq!(st, Errno::EACCES as i32);
    assert_eq!(
        reason,
        "cannot open /dev/plumbing-nothing: permission denied"
    );
}

/// Past the sandbox: a source that is not ext4 is refused by the engine
/// inside the sandbox, and nothing is mounted (no mount request is sent).
#[test]
fn a_non_ext4_source_is_refused_after_the_sandbox_without_a_mount_request() {
    let path = std::env::temp_dir().join(format!("plumbing-activation-{}.img", std::process::id()));
    std::fs::write(&path, vec![0u8; 1 << 20]).expect("write image");
    let img = File::open(&path).expect("open image");
    std::fs::remove_file(&path).expect("unlink image");

    let r = start(Start::Spawned);
    send(&r, &hello(), &[]);
    send(&r, &HelperMsg::MountInfo(info("/tmp/zeros.img", "")), &[]);
    let mut sent = vec![];
    for _ in 0..2 {
        sent.push(recv_server_msg(r.helper.as_fd(), LONG).expect("server message"));
    }
    assert!(matches!(sent[1], ServerMsg::FileRequest { .. }), "{sent:?}");
    let grant = FileGrant {
        read_only: true,
        block_device: false,
        direct: false,
    };
    send(&r, &HelperMsg::FileReply(Ok(grant)), &[img.as_fd()]);
    drop(img);
    let (rest, status, log) = finish(r);
    assert_eq!(status.code(), Some(1), "log: {log}");
    assert_eq!(rest.first(), Some(&ServerMsg::FilesDone), "{rest:?}");
    assert!(
        !rest.iter().any(|m| matches!(m, ServerMsg::MountRequest(_))),
        "asked to mount a refused image: {rest:?}"
    );
    let (st, reason) = goodbye(&rest);
    assert_eq!(st, Errno::EINVAL as i32, "{reason}");
    assert!(
        reason.starts_with("cannot mount /tmp/zeros.img: not an ext2/ext3/ext4 filesystem"),
        "{reason}"
    );
    // The engine ran inside the sandbox: its report precedes the refusal.
    let sandbox_at = log
        .find("sandbox: uid=")
        .unwrap_or_else(|| panic!("no sandbox report in {log:?}"));
    let refusal_at = log.find("cannot mount").expect("refusal logged");
    assert!(sandbox_at < refusal_at, "{log}");
}
