//! Reaching a server (DESIGN.md step 1): the systemd-activated socket
//! `<sockdir>/<type>` when it exists and accepts, otherwise a server spawned
//! over a socketpair.
//!
//! The spawned server's contract (the server's spawned mode relies on
//! it): argv `["fsvc-server: SOURCE on DIR"]` (the process title), the
//! environment exactly `FSVC_SPAWNED=1`, fd 3 the
//! `SOCK_SEQPACKET` socket, fd 4 the log (also on fd 2, so a panic message
//! lands in the log), fds 0 and 1 `/dev/null`, no other fd; uid/gid the
//! server ids, no supplementary groups, no capabilities, `no_new_privs`, its
//! own session, cwd `/`, umask 077, default signal dispositions.
//!
//! A spawned server that mounted keeps running after the helper exits (it
//! is reparented); only a failed one is reaped, with a deadline.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use fsvc_protocol::FsType;
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{lstat, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::policy;
use crate::{klog, sys};

/// How long a failed spawned server gets to exit on its own before SIGKILL.
const REAP_GRACE: Duration = Duration::from_secs(2);
/// How often the reaper looks.
const REAP_POLL: Duration = Duration::from_millis(20);

/// How the helper reached its server.
#[derive(Debug)]
pub enum Route {
    /// Connected to a listening socket at this path.
    Socket(String),
    /// Spawned this process.
    Spawned(Pid),
}

/// A connected server.
#[derive(Debug)]
pub struct Reached {
    /// The socket.
    pub sock: OwnedFd,
    /// How.
    pub route: Route,
}

/// Connects to `<socket_dir>/<type>` if it exists and accepts; `Ok(None)`
/// when there is nothing there (or a stale socket), so the caller spawns.
pub fn connect_socket(socket_dir: &Path, fs_type: FsType) -> Result<Option<Reached>, String> {
    let path = socket_dir.join(fs_type.name());
    let (Ok(dir_st), Ok(sock_st)) = (lstat(socket_dir), lstat(&path)) else {
        return Ok(None);
    };
    let is_socket = SFlag::from_bits_truncate(sock_st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK;
    // What fsvc.socket makes: root's socket in a directory only root may
    // write. Anything else could be someone posing as the server, who would
    // be handed the source: spawn instead.
    if !policy::trusted(&dir_st) || !is_socket || sock_st.st_uid != 0 {
        klog::warn(&format!(
            "ignoring the server socket {}: it and its directory must be root's and writable by root only",
            path.display()
        ));
        return Ok(None);
    }
    let addr =
        UnixAddr::new(&path).map_err(|e| format!("bad socket path {}: {e}", path.display()))?;
    // Non-blocking for the connect only: a listener whose backlog is full
    // would otherwise block us forever.
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    match connect(sock.as_raw_fd(), &addr) {
        Ok(()) => {
            fcntl(&sock, FcntlArg::F_SETFL(OFlag::empty()))
                .map_err(|e| format!("cannot make the socket blocking: {e}"))?;
            Ok(Some(Reached {
                sock,
                route: Route::Socket(path.display().to_string()),
            }))
        }
        // Nobody listens (socket unit stopped), or it does not accept
        // (backlog full): fall back to spawning.
        Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) | Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(format!("cannot connect to {}: {e}", path.display())),
    }
}

/// Spawns the server per the contract in the module doc.
pub fn spawn(log_path: &Path, title: &str) -> Result<Reached, String> {
    let path = policy::server_path()?;
    let meta = std::fs::metadata(&path)
        .map_err(|e| format!("cannot find the server at {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("the server {} is not a file", path.display()));
    }
    let (uid, gid) = policy::server_ids()?;
    let log = open_log(log_path)?;
    let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let (ours, theirs) =
        fsvc_protocol::seqpacket_pair().map_err(|e| format!("cannot create a socketpair: {e}"))?;
    let plan = sys::SpawnPlan {
        path: CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("server path {} contains a NUL byte", path.display()))?,
        argv: vec![process_title(title)],
        envp: vec![c"FSVC_SPAWNED=1".to_owned()],
        sock: theirs,
        log,
        null,
        uid,
        gid,
    };
    let pid = sys::spawn_server(&plan).map_err(|e| format!("cannot start the server: {e}"))?;
    // `plan` (the server's socket end, log, null) is dropped here: only the
    // child holds them now, so its exit is seen as a hang-up.
    drop(plan);
    Ok(Reached {
        sock: ours,
        route: Route::Spawned(Pid::from_raw(pid)),
    })
}

/// Longest process title passed (ps shows the whole command line).
const MAX_TITLE: usize = 512;

/// argv\[0\] of the spawned server: `fsvc-server: SOURCE on DIR`, so that
/// `ps` says which server serves what. Control characters become `?` and
/// the length is capped; a NUL cannot occur (paths from argv have none).
fn process_title(title: &str) -> CString {
    let mut t: String = title
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    while t.len() > MAX_TITLE {
        t.pop();
    }
    CString::new(t).unwrap_or_else(|_| c"fsvc-server".to_owned())
}

/// The log fd for a spawned server: `path`, else /dev/null when it cannot be opened.
fn open_log(path: &Path) -> Result<OwnedFd, String> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    open(path, flags, Mode::from_bits_truncate(0o600))
        .or_else(|_| {
            open(
                "/dev/null",
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        })
        .map_err(|e| {
            format!(
                "cannot open a log for the server ({} or /dev/null): {e}",
                path.display()
            )
        })
}

/// Why the server's uid may not have been able to execute the server, as
/// far as mode bits tell (ACLs may say otherwise, so this only explains a
/// failed exec, it never refuses one). The usual case is a build in a
/// private directory (a checkout in /root, a 0700 home).
fn unreachable_hint() -> Option<String> {
    let path = policy::server_path().ok()?;
    let (uid, gid) = policy::server_ids().ok()?;
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.uid(), m.gid(), m.mode() & 0o7777))
    };
    let (blocked, mode) = first_blocked(&path, uid, gid, stat)?;
    Some(format!(
        "uid {uid} may not {} {} (mode {mode:04o}), so it cannot run {}; build or install fsvc where others may enter (make install puts the server in a libexec directory)",
        if blocked == path { "execute" } else { "enter" },
        blocked.display(),
        path.display()
    ))
}

/// The first of `path`'s directories (from `/` down) that `uid`/`gid`
/// (no other groups) may not search, or `path` itself if they may not
/// execute it, with its mode; `stat` gives owner, group and mode.
fn first_blocked(
    path: &Path,
    uid: u32,
    gid: u32,
    stat: impl Fn(&Path) -> Option<(u32, u32, u32)>,
) -> Option<(std::path::PathBuf, u32)> {
    let mut steps: Vec<&Path> = path.ancestors().collect();
    steps.reverse();
    steps.into_iter().find_map(|p| {
        let (owner, group, mode) = stat(p)?;
        let shift = if owner == uid {
            6
        } else if group == gid {
            3
        } else {
            0
        };
        (mode >> shift & 1 == 0).then(|| (p.to_path_buf(), mode))
    })
}

/// Reaps a spawned server that failed: waits up to [`REAP_GRACE`] for it to
/// exit, then kills it. Returns a description of how it ended when that
/// adds something (it failed before exec, or died of a signal).
pub fn reap_failed(pid: Pid) -> Option<String> {
    let mut deadline = Instant::now() + REAP_GRACE;
    let mut killed = false;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            // Only a failure before exec is worth a word: after exec the
            // server said why in its Goodbye or its log.
            Ok(WaitStatus::Exited(_, code)) => {
                let hint = if sys::child_exec_failed(code) {
                    unreachable_hint()
                } else {
                    None
                };
                return sys::describe_child_exit(code).map(|what| {
                    format!(
                        "the spawned server {what} (exit status {code}){}",
                        hint.map(|h| format!(": {h}")).unwrap_or_default()
                    )
                });
            }
            Ok(WaitStatus::Signaled(_, sig, _)) if !killed => {
                return Some(format!("the server was killed by {sig}"))
            }
            Ok(WaitStatus::Signaled(..)) => return None,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            if killed {
                return None;
            }
            // It had its chance; a failed mount's server must not linger.
            let _ = kill(pid, Signal::SIGKILL);
            killed = true;
            deadline = Instant::now() + REAP_GRACE;
            continue;
        }
        sleep(REAP_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_blocked_names_the_private_directory() {
        let tree = |p: &Path| -> Option<(u32, u32, u32)> {
            Some(match p.to_str()? {
                "/" => (0, 0, 0o755),
                "/root" => (0, 0, 0o700),
                "/home/u" => (1000, 1000, 0o750),
                "/srv/grp" => (0, 65534, 0o750),
                "/srv/own" => (65534, 0, 0o700),
                p if p.ends_with("noexec") => (0, 0, 0o644),
                _ => (0, 0, 0o755),
            })
        };
        let cases: [(&str, Option<(&str, u32)>); 7] = [
            ("/usr/libexec/fsvc/fsvc-server", None),
            (
                "/root/fsvc/target/debug/fsvc-server",
                Some(("/root", 0o700)),
            ),
            ("/home/u/src/fsvc-server", Some(("/home/u", 0o750))),
            ("/srv/grp/fsvc-server", None),
            ("/srv/own/fsvc-server", None),
            ("/opt/noexec", Some(("/opt/noexec", 0o644))),
            ("/", None),
        ];
        for (path, want) in cases {
            let got = first_blocked(Path::new(path), 65534, 65534, tree);
            let got = got.as_ref().map(|(p, m)| (p.to_str().unwrap_or("?"), *m));
            assert_eq!(got, want, "{path}");
        }
    }
}
