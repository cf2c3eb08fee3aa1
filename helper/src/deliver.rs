//! Handing a detached mount to the caller (`fsvc-mount --detached SOCKET`,
//! issue 11): connect to the caller's listening `SOCK_SEQPACKET` socket
//! before anything is mounted (a wrong path fails before a server starts),
//! then send one [`Delivery`] with the mount fd when the server serves.
//!
//! The connect is made with the caller's filesystem ids (a setuid helper
//! must not reach a socket the caller could not), and non-blocking, so a
//! listener that does not accept cannot hold the helper. Sends time out.
//! Once sent, the fd is the caller's; the helper's copy is closed when it
//! exits, so the caller's is then the mount's only reference.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use fsvc_protocol::{Delivery, WireError};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{
    connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;

use crate::policy::{self, UserMount};

/// A connected socket of the caller's.
#[derive(Debug)]
pub struct Recipient {
    sock: OwnedFd,
    path: String,
}

/// Connects to `path` (as the caller when `user` is a non-root caller).
pub fn connect_to(
    path: &str,
    user: Option<&UserMount>,
    timeout: Duration,
) -> Result<Recipient, String> {
    let addr = UnixAddr::new(path).map_err(|e| format!("bad socket path {path}: {e}"))?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    let attempt = || connect(sock.as_raw_fd(), &addr);
    let res = match user {
        Some(u) => policy::as_caller(&u.caller, attempt),
        None => attempt(),
    };
    res.map_err(|e| {
        let why = match e {
            Errno::ENOENT => "no such socket".to_string(),
            Errno::ECONNREFUSED => "nothing listens there".to_string(),
            Errno::EPROTOTYPE => "it is not a SOCK_SEQPACKET socket".to_string(),
            Errno::EAGAIN => "it does not accept connections".to_string(),
            e => e.desc().to_string(),
        };
        format!("cannot connect to {path} to pass the mount: {why}")
    })?;
    fcntl(&sock, FcntlArg::F_SETFL(OFlag::empty()))
        .map_err(|e| format!("cannot make the socket blocking: {e}"))?;
    let tv = TimeVal::new(
        i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        i64::from(timeout.subsec_micros()),
    );
    setsockopt(&sock, sockopt::SendTimeout, &tv)
        .map_err(|e| format!("cannot set a send timeout on {path}: {e}"))?;
    Ok(Recipient {
        sock,
        path: path.to_string(),
    })
}

impl Recipient {
    /// The socket's path, for messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sends `msg`, with `mount` when it is [`Delivery::Mounted`].
    pub fn send(&self, msg: &Delivery, mount: Option<&OwnedFd>) -> Result<(), String> {
        let fds: Vec<_> = mount.iter().map(|fd| fd.as_fd()).collect();
        fsvc_protocol::send_msg(self.sock.as_fd(), msg, &fds).map_err(|e| match e {
            WireError::PeerClosed => format!("{} closed before the mount was passed", self.path),
            WireError::Os {
                errno: Errno::EAGAIN,
                ..
            } => format!("{} stopped reading; the mount was not passed", self.path),
            e => format!("cannot pass the mount to {}: {e}", self.path),
        })
    }
}
