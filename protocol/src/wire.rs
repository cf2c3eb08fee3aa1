//! Framing and fd passing over `SOCK_SEQPACKET`.
//!
//! One message is one packet: the postcard encoding of a [`HelperMsg`] or
//! [`ServerMsg`], at most [`MAX_MESSAGE_SIZE`] bytes, with its fds (if any)
//! attached as one `SCM_RIGHTS` control message. `SOCK_SEQPACKET` keeps
//! packet boundaries, so no length prefix is needed and a packet can never
//! be read half.
//!
//! Invariants of the receive path (the peer is hostile):
//! - every receive waits at most the given timeout ([`WireError::Timeout`]);
//! - fds are received with `MSG_CMSG_CLOEXEC` and become [`OwnedFd`]s before
//!   anything else is looked at, so every early return closes them;
//! - a truncated packet (`MSG_TRUNC`), truncated control data (`MSG_CTRUNC`),
//!   an unknown control message, an fd count different from the message's
//!   [`WireMessage::fd_count`], trailing bytes, a decode error or a string
//!   over its limit is an error, and every fd that came with the packet is
//!   closed;
//! - nothing derived from the peer's bytes can panic.
//!
//! The send path checks the same limits, so a bug on our side shows up as an
//! error here rather than as a rejection by the peer.

use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::delegate::{Delivery, ImageSource, MountImage};
use crate::messages::{
    HelperMsg, MountInfo, MountRequest, Refusal, ServerMsg, MAX_MESSAGE_SIZE, MAX_OPTIONS_LEN,
    MAX_PATH_LEN, MAX_REASON_LEN,
};

mod adopt;
mod cmsg;

/// Most fds one packet may carry. No message carries more than one; the
/// receive buffer still has room for a few more so that a peer sending too
/// many is reported as a wrong fd count (with every fd closed) rather than
/// as truncated control data.
pub const MAX_FDS_PER_MESSAGE: usize = 4;

/// Longest FUSE subtype accepted in a [`MountRequest`] (fs type names are short).
pub const MAX_SUBTYPE_LEN: usize = 64;

/// What went wrong on the socket. Every variant says what a person could check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Nothing arrived in time.
    #[error("no message from the peer within {0:?} (is it stuck or gone?)")]
    Timeout(Duration),
    /// The peer closed its end (it exited or gave up).
    #[error("the peer closed the connection")]
    PeerClosed,
    /// A socket system call failed.
    #[error("socket {op} failed: {errno}")]
    Os {
        /// The call: "poll", "sendmsg", "recvmsg".
        op: &'static str,
        /// What the kernel said.
        errno: Errno,
    },
    /// The encoded message is bigger than the protocol allows.
    #[error("message of {size} bytes exceeds the protocol limit of {max} bytes")]
    TooLarge {
        /// Bytes of the packet (for a received one: at least this many).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The kernel cut off control data: the peer sent more fds than fit.
    #[error("the peer sent more file descriptors than any message carries ({received} received, the rest cut off; all were closed)")]
    ControlTruncated {
        /// Fds that did arrive (and were closed).
        received: usize,
    },
    /// A control message other than `SCM_RIGHTS` arrived.
    #[error("unexpected control message (level {level}, type {kind}) from the peer")]
    UnexpectedControl {
        /// `cmsg_level`.
        level: i32,
        /// `cmsg_type`.
        kind: i32,
    },
    /// The message came with the wrong number of fds.
    #[error("{message} must carry {expected} file descriptor(s), but {got} came with it")]
    FdCount {
        /// The message kind, e.g. "FileReply(Ok)".
        message: &'static str,
        /// What the message requires.
        expected: usize,
        /// What came.
        got: usize,
    },
    /// The bytes are not a valid message of this direction.
    #[error("malformed message from the peer: {0}")]
    Decode(#[source] postcard::Error),
    /// The message decoded but bytes were left over.
    #[error("malformed message from the peer: {0} trailing byte(s)")]
    TrailingBytes(usize),
    /// Our own message could not be encoded (a bug, or a limit exceeded).
    #[error("cannot encode message: {0}")]
    Encode(#[source] postcard::Error),
    /// A string field is over its limit or contains a NUL byte.
    #[error("field {field} is invalid: {problem}")]
    BadField {
        /// Which field ("MountInfo.source", ...).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A message type that travels over the wire: postcard-encodable, knows its
/// fd count and checks its own limits.
pub trait WireMessage: Serialize + DeserializeOwned + fmt::Debug {
    /// Number of fds that must accompany the message.
    fn fd_count(&self) -> usize;
    /// Short name of the variant for error messages.
    fn kind(&self) -> &'static str;
    /// Checks every string against its limit (and paths against NUL bytes).
    fn check_limits(&self) -> Result<(), WireError>;
}

impl WireMessage for HelperMsg {
    fn fd_count(&self) -> usize {
        HelperMsg::fd_count(self)
    }

    fn kind(&self) -> &'static str {
        match self {
            HelperMsg::Hello { .. } => "Hello",
            HelperMsg::MountInfo(_) => "MountInfo",
            HelperMsg::FileReply(Ok(_)) => "FileReply(Ok)",
            HelperMsg::FileReply(Err(_)) => "FileReply(Err)",
            HelperMsg::MountReply(Ok(())) => "MountReply(Ok)",
            HelperMsg::MountReply(Err(_)) => "MountReply(Err)",
        }
    }

    fn check_limits(&self) -> Result<(), WireError> {
        match self {
            HelperMsg::Hello { .. } => Ok(()),
            HelperMsg::MountInfo(info) => check_mount_info(info),
            HelperMsg::FileReply(Ok(_)) | HelperMsg::MountReply(Ok(())) => Ok(()),
            HelperMsg::FileReply(Err(r)) | HelperMsg::MountReply(Err(r)) => check_refusal(r),
        }
    }
}

impl WireMessage for ServerMsg {
    fn fd_count(&self) -> usize {
        ServerMsg::fd_count(self)
    }

    fn kind(&self) -> &'static str {
        match self {
            ServerMsg::Hello { .. } => "Hello",
            ServerMsg::FileRequest { .. } => "FileRequest",
            ServerMsg::FilesDone => "FilesDone",
            ServerMsg::MountRequest(_) => "MountRequest",
            ServerMsg::Goodbye { .. } => "Goodbye",
        }
    }

    fn check_limits(&self) -> Result<(), WireError> {
        match self {
            ServerMsg::Hello { .. } | ServerMsg::FilesDone => Ok(()),
            ServerMsg::FileRequest { path, .. } => check_path("FileRequest.path", path),
            ServerMsg::MountRequest(req) => check_mount_request(req),
            ServerMsg::Goodbye { reason, .. } => {
                check_len("Goodbye.reason", reason, MAX_REASON_LEN)
            }
        }
    }
}

impl WireMessage for Delivery {
    fn fd_count(&self) -> usize {
        Delivery::fd_count(self)
    }

    fn kind(&self) -> &'static str {
        match self {
            Delivery::Mounted(_) => "Delivery::Mounted",
            Delivery::Refused(_) => "Delivery::Refused",
        }
    }

    fn check_limits(&self) -> Result<(), WireError> {
        match self {
            Delivery::Mounted(m) => {
                check_path("DetachedMount.source", &m.source)?;
                check_len("DetachedMount.note", &m.note, MAX_REASON_LEN)
            }
            Delivery::Refused(r) => check_refusal(r),
        }
    }
}

impl WireMessage for MountImage {
    fn fd_count(&self) -> usize {
        MountImage::fd_count(self)
    }

    fn kind(&self) -> &'static str {
        "MountImage"
    }

    fn check_limits(&self) -> Result<(), WireError> {
        if let ImageSource::Path(p) = &self.source {
            check_path("MountImage.source", p)?;
        }
        check_len("MountImage.options", &self.options, MAX_OPTIONS_LEN)?;
        if self.options.contains('\0') {
            return Err(WireError::BadField {
                field: "MountImage.options",
                problem: "contains a NUL byte".to_owned(),
            });
        }
        Ok(())
    }
}

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), WireError> {
    if s.len() > max {
        return Err(WireError::BadField {
            field,
            problem: format!("{} bytes, more than the limit of {max}", s.len()),
        });
    }
    Ok(())
}

/// Paths go to open(2) and mount(2) as C strings: an interior NUL would
/// silently shorten them, so it is refused here.
fn check_path(field: &'static str, s: &str) -> Result<(), WireError> {
    check_len(field, s, MAX_PATH_LEN)?;
    if s.is_empty() {
        return Err(WireError::BadField {
            field,
            problem: "empty".to_owned(),
        });
    }
    if s.contains('\0') {
        return Err(WireError::BadField {
            field,
            problem: "contains a NUL byte".to_owned(),
        });
    }
    Ok(())
}

fn check_mount_info(info: &MountInfo) -> Result<(), WireError> {
    check_path("MountInfo.source", &info.source)?;
    check_path("MountInfo.mountpoint", &info.mountpoint)?;
    check_len("MountInfo.fs_options", &info.fs_options, MAX_OPTIONS_LEN)?;
    if info.fs_options.contains('\0') {
        return Err(WireError::BadField {
            field: "MountInfo.fs_options",
            problem: "contains a NUL byte".to_owned(),
        });
    }
    Ok(())
}

fn check_refusal(r: &Refusal) -> Result<(), WireError> {
    check_len("Refusal.message", &r.message, MAX_REASON_LEN)
}

fn check_mount_request(req: &MountRequest) -> Result<(), WireError> {
    check_path("MountRequest.fs_name", &req.fs_name)?;
    check_len("MountRequest.subtype", &req.subtype, MAX_SUBTYPE_LEN)?;
    // The subtype ends up in the mount options string ("subtype=..."), where
    // a comma or '=' would inject another option.
    if !req
        .subtype
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(WireError::BadField {
            field: "MountRequest.subtype",
            problem: "only ASCII letters, digits, '.', '_' and '-' are allowed".to_owned(),
        });
    }
    Ok(())
}

/// A connected pair of the protocol's sockets: `AF_UNIX`,
/// `SOCK_SEQPACKET` (one message per packet, boundaries kept),
/// close-on-exec. The helper spawns a server over one; tests use them as
/// both peers.
pub fn seqpacket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Shortens `reason` to at most [`MAX_REASON_LEN`] bytes on a character
/// boundary, so that a long error message never makes a Goodbye or a
/// Refusal unsendable.
pub fn clamp_reason(reason: &str) -> String {
    clamp_to(reason, MAX_REASON_LEN)
}

fn clamp_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Encodes `msg` after checking its limits.
pub fn encode<M: WireMessage>(msg: &M) -> Result<Vec<u8>, WireError> {
    msg.check_limits()?;
    let bytes = postcard::to_stdvec(msg).map_err(WireError::Encode)?;
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    Ok(bytes)
}

/// Decodes one packet's bytes: size limit, postcard, no trailing bytes,
/// string limits. Never panics on any input (see the proptest).
pub fn decode<M: WireMessage>(bytes: &[u8]) -> Result<M, WireError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    let (msg, rest) = postcard::take_from_bytes::<M>(bytes).map_err(WireError::Decode)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    msg.check_limits()?;
    Ok(msg)
}

/// Sends one message with its fds. The fd count must match the message.
pub fn send_msg<M: WireMessage>(
    sock: BorrowedFd<'_>,
    msg: &M,
    fds: &[BorrowedFd<'_>],
) -> Result<(), WireError> {
    if fds.len() != msg.fd_count() {
        return Err(WireError::FdCount {
            message: msg.kind(),
            expected: msg.fd_count(),
            got: fds.len(),
        });
    }
    let bytes = encode(msg)?;
    send_packet(sock, &bytes, fds)
}

/// Sends raw bytes as one packet with the given fds, without any check.
/// For tests and fuzzing of the peer's receive path; the protocol itself
/// goes through [`send_msg`].
pub fn send_packet(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), WireError> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let iov = [IoSlice::new(bytes)];
    loop {
        // MSG_NOSIGNAL: a peer that went away must be an EPIPE error, not a
        // SIGPIPE that kills us before we can say why.
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == bytes.len() => return Ok(()),
            // SOCK_SEQPACKET sends whole packets or fails; a short count
            // would mean the socket is not what it should be.
            Ok(n) => {
                return Err(WireError::TooLarge {
                    size: bytes.len(),
                    max: n,
                })
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => return Err(WireError::PeerClosed),
            Err(errno) => {
                return Err(WireError::Os {
                    op: "sendmsg",
                    errno,
                })
            }
        }
    }
}

/// Waits up to `timeout` for one packet and decodes it as `M`, returning
/// the message and the fds that came with it (exactly `msg.fd_count()`).
pub fn recv_msg<M: WireMessage>(
    sock: BorrowedFd<'_>,
    timeout: Duration,
) -> Result<(M, Vec<OwnedFd>), WireError> {
    let (bytes, fds) = recv_packet(sock, timeout, MAX_FDS_PER_MESSAGE)?;
    // On any error below, `fds` is dropped, which closes every received fd.
    let msg: M = decode(&bytes)?;
    if fds.len() != msg.fd_count() {
        return Err(WireError::FdCount {
            message: msg.kind(),
            expected: msg.fd_count(),
            got: fds.len(),
        });
    }
    Ok((msg, fds))
}

/// Sends a message from the helper to the server.
pub fn send_helper_msg(
    sock: BorrowedFd<'_>,
    msg: &HelperMsg,
    fds: &[BorrowedFd<'_>],
) -> Result<(), WireError> {
    send_msg(sock, msg, fds)
}

/// Receives a message from the helper (on the server's side).
pub fn recv_helper_msg(
    sock: BorrowedFd<'_>,
    timeout: Duration,
) -> Result<(HelperMsg, Vec<OwnedFd>), WireError> {
    recv_msg(sock, timeout)
}

/// Sends a message from the server to the helper (none carries fds).
pub fn send_server_msg(sock: BorrowedFd<'_>, msg: &ServerMsg) -> Result<(), WireError> {
    send_msg(sock, msg, &[])
}

/// Receives a message from the server (on the helper's side).
pub fn recv_server_msg(sock: BorrowedFd<'_>, timeout: Duration) -> Result<ServerMsg, WireError> {
    recv_msg::<ServerMsg>(sock, timeout).map(|(msg, _no_fds)| msg)
}

/// Waits until `sock` is readable or the deadline passes. EINTR retries
/// with the time that is left.
fn wait_readable(sock: BorrowedFd<'_>, timeout: Duration) -> Result<(), WireError> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => timeout,
        };
        // Round up so that a sub-millisecond remainder still waits, and
        // clamp what poll(2) cannot express.
        let ms = left.as_micros().div_ceil(1000);
        let poll_timeout =
            PollTimeout::try_from(ms.min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX);
        let mut pfd = [PollFd::new(sock, PollFlags::POLLIN)];
        match nix::poll::poll(&mut pfd, poll_timeout) {
            Ok(0) => return Err(WireError::Timeout(timeout)),
            // Readable, or hung up / in error: recvmsg tells which.
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(WireError::Os { op: "poll", errno }),
        }
    }
}

/// Receives one raw packet (bytes and fds) with room for `fd_space` fds in
/// the control buffer. Checks truncation and control messages, not the
/// content. Exposed inside the crate so tests can shrink `fd_space` and
/// provoke `MSG_CTRUNC`.
pub(crate) fn recv_packet(
    sock: BorrowedFd<'_>,
    timeout: Duration,
    fd_space: usize,
) -> Result<(Vec<u8>, Vec<OwnedFd>), WireError> {
    wait_readable(sock, timeout)?;

    // One byte more than the limit: a packet that fills it is oversize even
    // if the kernel did not have to truncate it.
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
    let mut cmsg_buf = cmsg::buffer_for_fds(fd_space);
    let (bytes, flags) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut reset_seen = false;
        loop {
            // MSG_DONTWAIT: poll said readable, but never block past the
            // deadline should the packet be gone by now.
            match recvmsg::<UnixAddr>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_buf),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(r) => break (r.bytes, r.flags),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(WireError::Timeout(timeout)),
                // A peer that closes with packets of ours still unread resets
                // the connection, and the kernel reports that error before
                // the packets the peer sent last (typically its goodbye).
                // Reading the error clears it: look once more.
                Err(Errno::ECONNRESET) if !reset_seen => reset_seen = true,
                Err(Errno::ECONNRESET) => return Err(WireError::PeerClosed),
                Err(errno) => {
                    return Err(WireError::Os {
                        op: "recvmsg",
                        errno,
                    })
                }
            }
        }
    };

    // Take ownership of every fd the kernel installed before looking at
    // anything else, so that every return below closes them. The control
    // buffer is parsed here rather than through nix's iterator because that
    // refuses to iterate after MSG_CTRUNC, which is exactly when the fds
    // that did fit must still be found and closed.
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut unexpected = None;
    for c in cmsg::parse(&cmsg_buf) {
        if c.is_scm_rights() {
            fds.extend(adopt::adopt_received(c.fds()));
        } else if unexpected.is_none() {
            unexpected = Some((c.level, c.kind));
        }
    }

    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(WireError::ControlTruncated {
            received: fds.len(),
        });
    }
    if let Some((level, kind)) = unexpected {
        return Err(WireError::UnexpectedControl { level, kind });
    }
    if flags.contains(MsgFlags::MSG_TRUNC) || bytes > MAX_MESSAGE_SIZE {
        return Err(WireError::TooLarge {
            size: bytes,
            max: MAX_MESSAGE_SIZE,
        });
    }
    if bytes == 0 && fds.is_empty() {
        // End of stream (no message is empty, so a zero-length packet is
        // treated the same: the peer has nothing more to say).
        return Err(WireError::PeerClosed);
    }
    buf.truncate(bytes);
    Ok((buf, fds))
}

#[cfg(test)]
mod tests;
