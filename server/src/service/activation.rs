//! How the server was started, and taking the fds that come with it.
//!
//! Two ways, decided from argv and the environment before anything else:
//! - **systemd socket activation** (`Accept=yes`): `LISTEN_PID` is our pid,
//!   `LISTEN_FDS=1`, and fd 3 is the accepted connection. Logs go to stderr
//!   (the journal).
//! - **spawned by the helper**: the environment has `FSVC_SPAWNED=1` and
//!   argv\[0\] is the process title (`fsvc-server: SOURCE on DIR`, so `ps`
//!   says what this server serves), or (older helpers) argv is exactly
//!   `fsvc-server --spawned`; fd 3 is the socket and fd 4, if open, the log
//!   fd (the kernel log by default; see the helper's spawn contract in
//!   `helper/src/server.rs`).
//!
//! Anything else is a usage error. Either way fd 3 must be an `AF_UNIX`
//! `SOCK_SEQPACKET` socket: a server that would talk the protocol to
//! something else (a terminal, a file, a stream socket) refuses to start.
//!
//! [`decide`] is pure (argv, environment values, pid in; a mode out) so it
//! can be tested; [`activate`] applies it to the real process.

use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};

use super::inherited;

/// The fd systemd and the helper put the socket on (`SD_LISTEN_FDS_START`).
pub const SOCKET_FD: RawFd = 3;
/// The fd the helper puts the log on in spawned mode.
pub const LOG_FD: RawFd = 4;
/// The argument older helpers pass.
pub const SPAWNED_ARG: &str = "--spawned";
/// The environment variable the helper sets (to `1`) when it spawns us.
pub const SPAWNED_ENV: &str = "FSVC_SPAWNED";

/// How the server was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// systemd socket activation: log to stderr.
    Systemd,
    /// Spawned by the helper: log to fd 4 when open.
    Spawned,
}

/// The started server's fds.
#[derive(Debug)]
pub struct Activation {
    /// How it was started.
    pub mode: Mode,
    /// The connection to the helper (was fd 3).
    pub sock: OwnedFd,
    /// The log fd (fd 4) in spawned mode, when open.
    pub log: Option<OwnedFd>,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// Neither activation applies: print the usage.
    #[error("usage: fsvc-server is started by systemd socket activation or by fsvc-mount (fsvc-server --spawned); it is not run by hand")]
    Usage,
    /// `LISTEN_PID` names another process.
    #[error(
        "LISTEN_PID={got} is not this process ({ours}): the passed sockets are not meant for it"
    )]
    ListenPid {
        /// The variable's value.
        got: String,
        /// Our pid.
        ours: u32,
    },
    /// `LISTEN_FDS` is not 1.
    #[error("LISTEN_FDS={0}: expected exactly one connection (set Accept=yes in the socket unit)")]
    ListenFds(String),
    /// Only one of `LISTEN_PID`/`LISTEN_FDS` is set.
    #[error("LISTEN_PID and LISTEN_FDS must both be set for socket activation")]
    HalfActivated,
    /// fd 3 is not open.
    #[error("fd {SOCKET_FD} is not open: no connection was passed")]
    NoSocket,
    /// fd 3 is not an `AF_UNIX` `SOCK_SEQPACKET` socket.
    #[error("fd {SOCKET_FD} is not an AF_UNIX SOCK_SEQPACKET socket ({0}); use ListenSequentialPacket= in the socket unit")]
    NotSeqpacket(String),
}

/// Decides the mode from argv (including `argv[0]`), the value of
/// [`SPAWNED_ENV`] and those of `LISTEN_PID` and `LISTEN_FDS`.
pub fn decide(
    args: &[OsString],
    spawned: Option<&str>,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    our_pid: u32,
) -> Result<Mode, ActivationError> {
    let rest = args.get(1..).unwrap_or(&[]);
    match rest {
        [one] if one == SPAWNED_ARG => return Ok(Mode::Spawned),
        [] if spawned == Some("1") => return Ok(Mode::Spawned),
        [] => {}
        _ => return Err(ActivationError::Usage),
    }
    match (listen_pid, listen_fds) {
        (None, None) => Err(ActivationError::Usage),
        (Some(_), None) | (None, Some(_)) => Err(ActivationError::HalfActivated),
        (Some(pid), Some(fds)) => {
            if pid.parse::<u32>().ok() != Some(our_pid) {
                return Err(ActivationError::ListenPid {
                    got: pid.chars().take(32).collect(),
                    ours: our_pid,
                });
            }
            if fds != "1" {
                return Err(ActivationError::ListenFds(fds.chars().take(32).collect()));
            }
            Ok(Mode::Systemd)
        }
    }
}

/// Checks that `fd` is an `AF_UNIX` `SOCK_SEQPACKET` socket.
pub fn check_seqpacket_unix(fd: &OwnedFd) -> Result<(), ActivationError> {
    use std::os::fd::AsRawFd;
    match getsockopt(fd, sockopt::SockType) {
        Ok(SockType::SeqPacket) => {}
        Ok(other) => return Err(ActivationError::NotSeqpacket(format!("type {other:?}"))),
        Err(e) => return Err(ActivationError::NotSeqpacket(format!("not a socket: {e}"))),
    }
    // getsockname into a UnixAddr fails unless the family is AF_UNIX.
    getsockname::<UnixAddr>(fd.as_raw_fd())
        .map(|_| ())
        .map_err(|e| ActivationError::NotSeqpacket(format!("not AF_UNIX: {e}")))
}

/// Applies [`decide`] to this process: reads argv and the environment,
/// takes fd 3 (and fd 4 when spawned) and checks the socket. Clears
/// `LISTEN_*` from the environment, as `sd_listen_fds(1)` does, so that
/// nothing later mistakes them for its own. Call first thing in `main`,
/// while the process is single-threaded.
pub fn activate() -> Result<Activation, ActivationError> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let spawned = std::env::var(SPAWNED_ENV).ok();
    let mode = decide(
        &args,
        spawned.as_deref(),
        pid.as_deref(),
        fds.as_deref(),
        std::process::id(),
    )?;
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", SPAWNED_ENV] {
        std::env::remove_var(var);
    }
    let sock = inherited::take(SOCKET_FD).ok_or(ActivationError::NoSocket)?;
    check_seqpacket_unix(&sock)?;
    let log = match mode {
        Mode::Spawned => inherited::take(LOG_FD),
        Mode::Systemd => None,
    };
    Ok(Activation { mode, sock, log })
}

#[cfg(test)]
mod tests {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag};

    use super::*;

    fn argv(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn decisions() {
        type Case = (
            &'static [&'static str],
            Option<&'static str>,
            Option<&'static str>,
            Result<Mode, &'static str>,
        );
        let cases: &[Case] = &[
            (&["fsvc-server", "--spawned"], None, None, Ok(Mode::Spawned)),
            (
                &["fsvc-server: /img on /mnt"],
                None,
                None,
                Ok(Mode::Spawned),
            ),
            (
                &["fsvc-server", "--spawned"],
                Some("1"),
                Some("1"),
                Ok(Mode::Spawned),
            ),
            (&["fsvc-server"], Some("42"), Some("1"), Ok(Mode::Systemd)),
            (&["fsvc-server"], None, None, Err("Usage")),
            (&[], None, None, Err("Usage")),
            (
                &["fsvc-server", "--help"],
                Some("42"),
                Some("1"),
                Err("Usage"),
            ),
            (&["fsvc-server", "--spawned", "x"], None, None, Err("Usage")),
            (&["fsvc-server"], Some("43"), Some("1"), Err("ListenPid")),
            (&["fsvc-server"], Some("x"), Some("1"), Err("ListenPid")),
            (&["fsvc-server"], Some("42"), Some("2"), Err("ListenFds")),
            (&["fsvc-server"], Some("42"), Some("0"), Err("ListenFds")),
            (&["fsvc-server"], Some("42"), None, Err("HalfActivated")),
            (&["fsvc-server"], None, Some("1"), Err("HalfActivated")),
        ];
        for (args, pid, fds, want) in cases {
            // Only the title case relies on FSVC_SPAWNED; the rest decide
            // the same either way, except that the variable alone does not
            // turn extra arguments into a spawn.
            let spawned = args.first().is_some_and(|a| a.contains(':')).then_some("1");
            let got = decide(&argv(args), spawned, *pid, *fds, 42);
            match (want, &got) {
                (Ok(m), Ok(g)) => assert_eq!(m, g),
                (Err(name), Err(e)) => {
                    assert!(format!("{e:?}").starts_with(name), "{args:?}: {e:?}")
                }
                _ => panic!("{args:?} {pid:?} {fds:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn socket_checks() {
        let (a, _b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        check_seqpacket_unix(&a).expect("seqpacket accepted");
        let (s, _t) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        assert!(matches!(
            check_seqpacket_unix(&s),
            Err(ActivationError::NotSeqpacket(_))
        ));
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        assert!(matches!(
            check_seqpacket_unix(&r),
            Err(ActivationError::NotSeqpacket(_))
        ));
    }

    #[test]
    fn inherited_fds_are_taken_once() {
        use std::os::fd::IntoRawFd;
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let n = w.into_raw_fd();
        let owned = inherited::take(n).expect("open fd taken");
        assert!(inherited::take(n).is_none(), "taken twice");
        drop(owned);
        drop(r);
        assert!(inherited::take(-1).is_none());
        assert!(inherited::take(1_000_000).is_none(), "closed number taken");
    }
}
