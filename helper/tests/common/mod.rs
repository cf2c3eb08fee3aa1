//! Test harness: a fake server the test scripts, reached by the real
//! `fsvc-mount` binary through `FSVC_SOCKET_DIR`, with a short
//! `FSVC_TIMEOUT_SECS`. Each fixture lives in its own `/tmp/helper-*` dir.
//!
//! Invariant: no test can hang: the helper is waited for with a generous
//! bound and killed past it (that is a failure, not a timing assertion),
//! and every fake-server receive has a timeout.
#![allow(dead_code)]

mod fd;

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fsvc_protocol::{HelperMsg, MountInfo, ServerMsg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};

/// The helper binary under test.
pub const HELPER: &str = env!("CARGO_BIN_EXE_fsvc-mount");
/// Timeout the helper is given (seconds).
pub const HELPER_TIMEOUT_SECS: u64 = 2;
/// Fake server receive timeout: longer than anything the helper should take.
pub const SERVER_RECV: Duration = Duration::from_secs(15);
/// Bound after which a helper counts as hung.
const HANG_BOUND: Duration = Duration::from_secs(60);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Skips (returns false) when not root, unless FSVC_REQUIRE_PRIVILEGED=1.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let msg = format!("{test}: skipped: needs root (the helper serves root callers only)");
    if std::env::var("FSVC_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{msg}, and FSVC_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("{msg}");
    false
}

/// A temp dir with a socket dir, an image file and a mountpoint.
#[derive(Debug)]
pub struct Fixture {
    /// Root of the fixture.
    pub dir: PathBuf,
    /// `FSVC_SOCKET_DIR`.
    pub sockdir: PathBuf,
    /// The image (a regular file).
    pub img: PathBuf,
    /// The mountpoint.
    pub mnt: PathBuf,
    /// The listener at `<sockdir>/ext4`.
    pub listener: OwnedFd,
}

impl Fixture {
    /// Makes the fixture.
    pub fn new(name: &str) -> Fixture {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/helper-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sockdir = dir.join("sock");
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&sockdir).expect("sockdir");
        std::fs::create_dir_all(&mnt).expect("mnt");
        let img = dir.join("image");
        std::fs::write(&img, vec![0u8; 1 << 20]).expect("image");
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        bind(
            listener.as_raw_fd(),
            &UnixAddr::new(&sockdir.join("ext4")).expect("addr"),
        )
        .expect("bind");
        listen(&listener, Backlog::new(4).expect("backlog")).expect("listen");
        Fixture {
            dir,
            sockdir,
            img,
            mnt,
            listener,
        }
    }

    /// The image path as a string.
    pub fn img_str(&self) -> String {
        self.img.to_str().expect("utf8").to_string()
    }

    /// A helper command for this fixture: `IMG MNT -t service.ext4` plus `extra`.
    pub fn helper(&self, extra: &[&str]) -> Command {
        let mut c = self.helper_argv(&[]);
        c.arg(&self.img)
            .arg(&self.mnt)
            .args(["-t", "service.ext4"])
            .args(extra);
        c
    }

    /// A helper command with exactly `argv` and this fixture's environment.
    pub fn helper_argv(&self, argv: &[&str]) -> Command {
        self.command(Path::new(HELPER), argv)
    }

    /// [`Fixture::helper`] for a caller other than root: the build
    /// directory may be out of their reach (a checkout in /root, or in a
    /// 0700 home, as Debian makes them), so a copy of the helper in the
    /// fixture's directory (0755) is run.
    pub fn helper_for_anyone(&self) -> Command {
        use std::os::unix::fs::PermissionsExt;
        let copy = self.dir.join("fsvc-mount");
        std::fs::copy(HELPER, &copy).expect("copy the helper");
        for p in [&self.dir, &copy] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let mut c = self.command(&copy, &[]);
        c.arg(&self.img).arg(&self.mnt).args(["-t", "service.ext4"]);
        c
    }

    fn command(&self, program: &Path, argv: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(argv)
            .env("FSVC_SOCKET_DIR", &self.sockdir)
            .env("FSVC_TIMEOUT_SECS", HELPER_TIMEOUT_SECS.to_string())
            .env("FSVC_LOG", self.dir.join("server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs the helper with `server` scripting the accepted connection.
    /// `server` runs on its own thread and returns what the test asserts on.
    pub fn run<T: Send + 'static>(
        &self,
        extra: &[&str],
        server: impl FnOnce(OwnedFd) -> T + Send + 'static,
    ) -> (Outcome, Option<T>) {
        let child = self.helper(extra).spawn().expect("spawn helper");
        let conn = accept_within(&self.listener, Duration::from_secs(20));
        let handle = conn.map(|c| std::thread::spawn(move || server(c)));
        let outcome = wait_bounded(child);
        let value = handle.map(|h| h.join().expect("fake server panicked"));
        (outcome, value)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Never leave our mount behind (only ever ours: the fixture's dir).
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Accepts one connection, or None if none came in time.
pub fn accept_within(listener: &OwnedFd, t: Duration) -> Option<OwnedFd> {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(t.as_millis()).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) if n > 0 => accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC)
            .ok()
            .map(fd::adopt_accepted),
        _ => None,
    }
}

/// How the helper ended.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Outcome {
    /// Asserts exit 32 and a one-line message containing `want`.
    pub fn assert_mount_failure(&self, want: &str) {
        assert_eq!(self.code, Some(32), "{self:?}");
        assert!(
            self.stderr.contains(want),
            "stderr lacks {want:?}: {self:?}"
        );
        assert!(self.stderr.starts_with("fsvc-mount: "), "{self:?}");
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "one line: {self:?}"
        );
    }
}

/// Waits for the helper; past [`HANG_BOUND`] kills it and fails the test.
pub fn wait_bounded(mut child: Child) -> Outcome {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > HANG_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fsvc-mount hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Outcome {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Receives one helper message (panics on error: the helper must be well-formed).
pub fn recv(sock: &OwnedFd) -> (HelperMsg, Vec<OwnedFd>) {
    fsvc_protocol::recv_helper_msg(sock.as_fd(), SERVER_RECV).expect("helper message")
}

/// Sends one server message.
pub fn send(sock: &OwnedFd, msg: &ServerMsg) {
    fsvc_protocol::send_server_msg(sock.as_fd(), msg).expect("send to helper");
}

/// Plays the opening: receives Hello, answers version 1, receives MountInfo.
pub fn handshake(sock: &OwnedFd) -> MountInfo {
    match recv(sock) {
        (
            HelperMsg::Hello {
                min_version,
                max_version,
            },
            fds,
        ) => {
            assert!(fds.is_empty());
            let v = fsvc_protocol::PROTOCOL_VERSION_MAX;
            assert!(min_version <= v && v <= max_version);
        }
        other => panic!("expected Hello, got {other:?}"),
    }
    send(
        sock,
        &ServerMsg::Hello {
            version: fsvc_protocol::PROTOCOL_VERSION_MAX,
        },
    );
    match recv(sock) {
        (HelperMsg::MountInfo(info), fds) => {
            assert!(fds.is_empty());
            info
        }
        other => panic!("expected MountInfo, got {other:?}"),
    }
}

/// Waits until the helper closes its end (so the test knows it has gone).
pub fn wait_closed(sock: &OwnedFd) -> bool {
    matches!(
        fsvc_protocol::recv_helper_msg(sock.as_fd(), SERVER_RECV),
        Err(fsvc_protocol::WireError::PeerClosed)
    )
}

/// Whether `path` is a mountpoint in this mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_str().expect("utf8");
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want))
}
