//! A scripted, misbehaving stand-in for `fsvc-server`, listening where the
//! helper looks for systemd sockets (`FSVC_SOCKET_DIR/<type>`), so tests can
//! abuse the helper from the server's side end to end.
//!
//! Invariants: every accept and receive has a timeout, so a helper that
//! never connects or never speaks cannot hang a test; received fds are
//! adopted as `OwnedFd` at once (and so closed).

use crate::sys::adopt_fd;
use anyhow::{bail, Context, Result};
use fsvc_protocol::{HelperMsg, ServerMsg};
use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, Backlog, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the fake waits for the helper to connect or speak.
pub const FAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Encodes one server message as a packet, exactly as `fsvc_protocol`
/// frames it (one message per SOCK_SEQPACKET packet).
pub fn encode(msg: &ServerMsg) -> Vec<u8> {
    fsvc_protocol::encode(msg).unwrap_or_default()
}

/// One accepted connection from the helper.
#[derive(Debug)]
pub struct Conn {
    fd: OwnedFd,
}

/// What the helper sent in one packet.
#[derive(Debug)]
pub struct Received {
    /// The decoded message, if it decoded.
    pub msg: Option<HelperMsg>,
    /// Raw bytes (empty at end of stream).
    pub bytes: Vec<u8>,
    /// Fds that came with it (already owned, closed on drop).
    pub fds: Vec<OwnedFd>,
}

impl Conn {
    /// Sends raw bytes as one packet.
    pub fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        socket::send(self.fd.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL).context("send")?;
        Ok(())
    }

    /// Sends a message.
    pub fn send(&self, msg: &ServerMsg) -> Result<()> {
        self.send_raw(&encode(msg))
    }

    /// Sends a message with an fd attached (a protocol violation for every
    /// server message).
    pub fn send_with_fd(&self, msg: &ServerMsg, fd: &impl AsRawFd) -> Result<()> {
        let bytes = encode(msg);
        let fds = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        socket::sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .context("sendmsg")?;
        Ok(())
    }

    /// Receives one packet (bounded by the receive timeout). End of stream
    /// gives empty bytes and no message.
    pub fn recv(&self) -> Result<Received> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg_space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
        let (n, raw_fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = socket::recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .context("recvmsg from helper")?;
            let mut fds = Vec::new();
            for c in msg.cmsgs().context("cmsgs")? {
                if let ControlMessageOwned::ScmRights(v) = c {
                    fds.extend(v);
                }
            }
            (msg.bytes, fds)
        };
        let fds = raw_fds.into_iter().map(adopt_fd).collect();
        buf.truncate(n);
        let msg = if n == 0 {
            None
        } else {
            fsvc_protocol::decode::<HelperMsg>(&buf).ok()
        };
        Ok(Received {
            msg,
            bytes: buf,
            fds,
        })
    }

    /// Receives and requires a decodable message.
    pub fn expect(&self) -> Result<HelperMsg> {
        let r = self.recv()?;
        match r.msg {
            Some(m) => Ok(m),
            None => bail!("helper sent {} undecodable bytes", r.bytes.len()),
        }
    }

    /// Does the opening handshake as a real server would: receives Hello,
    /// answers with the oldest version both speak, receives MountInfo.
    pub fn handshake(&self) -> Result<HelperMsg> {
        match self.expect()? {
            HelperMsg::Hello { min_version, .. } => self.send(&ServerMsg::Hello {
                version: min_version.max(fsvc_protocol::PROTOCOL_VERSION_MIN),
            })?,
            other => bail!("expected Hello, got {other:?}"),
        }
        self.expect()
    }

    /// Waits until the helper closes its end (or the timeout passes).
    pub fn wait_for_close(&self) {
        loop {
            match self.recv() {
                Ok(r) if r.bytes.is_empty() => return,
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    }
}

/// A listening fake server running one script in a thread.
#[derive(Debug)]
pub struct FakeServer {
    dir: PathBuf,
    thread: Option<JoinHandle<Result<()>>>,
}

impl FakeServer {
    /// Listens on `dir/ext4` and runs `script` on the first connection.
    pub fn start<F>(dir: &Path, script: F) -> Result<FakeServer>
    where
        F: FnOnce(Conn) -> Result<()> + Send + 'static,
    {
        let path = dir.join("ext4");
        let listener = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::bind(listener.as_raw_fd(), &UnixAddr::new(&path)?)?;
        socket::listen(&listener, Backlog::new(4)?)?;
        let tv = TimeVal::new(FAKE_TIMEOUT.as_secs() as _, 0);
        // accept(2) honours SO_RCVTIMEO on Linux.
        setsockopt(&listener, sockopt::ReceiveTimeout, &tv)?;
        let thread = std::thread::spawn(move || -> Result<()> {
            let fd = socket::accept(listener.as_raw_fd()).context("helper never connected")?;
            let fd = adopt_fd(fd);
            setsockopt(&fd, sockopt::ReceiveTimeout, &tv)?;
            drop(listener);
            script(Conn { fd })
        });
        Ok(FakeServer {
            dir: dir.to_path_buf(),
            thread: Some(thread),
        })
    }

    /// Waits for the script to finish and returns its result.
    pub fn finish(mut self) -> Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("fake server script panicked"),
            None => Ok(()),
        }
    }

    /// The socket directory (for `FSVC_SOCKET_DIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
