//! The helper's end of the socket: send a [`HelperMsg`] with its fds,
//! receive a [`ServerMsg`] with a timeout. Framing and the hostile-peer
//! checks live in `fsvc_protocol::wire`; this module only classifies its
//! errors into what the helper reports (no answer, hang-up, nonsense).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use fsvc_protocol::{HelperMsg, ServerMsg, WireError};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// Why a receive or send failed, in the helper's terms.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Nothing arrived in time.
    #[error("the server did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The server closed its end.
    #[error("the server exited without answering (see the kernel log / FSVC_LOG)")]
    Closed,
    /// Anything else: garbage, a wrong fd count, a socket error.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<WireError> for ConnError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Timeout(t) => ConnError::Timeout(t),
            WireError::PeerClosed => ConnError::Closed,
            // SO_SNDTIMEO expired: the server stopped reading.
            WireError::Os {
                op: "sendmsg",
                errno: nix::errno::Errno::EAGAIN,
            } => ConnError::Protocol("the server stopped reading its socket".into()),
            other => ConnError::Protocol(other.to_string()),
        }
    }
}

/// A connected socket to a server.
#[derive(Debug)]
pub struct Conn {
    sock: OwnedFd,
    timeout: Duration,
}

impl Conn {
    /// Wraps a connected `SOCK_SEQPACKET` socket. Sends get the same
    /// timeout as receives (`SO_SNDTIMEO`): a server that stops reading
    /// must not leave the helper blocked in `sendmsg`.
    pub fn new(sock: OwnedFd, timeout: Duration) -> Result<Self, String> {
        let tv = TimeVal::new(
            i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            i64::from(timeout.subsec_micros()),
        );
        setsockopt(&sock, sockopt::SendTimeout, &tv)
            .map_err(|e| format!("cannot set a send timeout on the server socket: {e}"))?;
        Ok(Conn { sock, timeout })
    }

    /// Sends one message with exactly the fds it carries.
    pub fn send(&self, msg: &HelperMsg, fds: &[BorrowedFd<'_>]) -> Result<(), ConnError> {
        fsvc_protocol::send_helper_msg(self.sock.as_fd(), msg, fds).map_err(ConnError::from)
    }

    /// Receives one message, waiting at most the timeout.
    pub fn recv(&self) -> Result<ServerMsg, ConnError> {
        fsvc_protocol::recv_server_msg(self.sock.as_fd(), self.timeout).map_err(ConnError::from)
    }
}
