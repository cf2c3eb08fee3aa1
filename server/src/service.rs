//! The server's side of the helper protocol (see `fsvc_protocol` for the
//! conversation and DESIGN.md "The mount, step by step").
//!
//! [`Service`] walks the conversation in its only legal order:
//! [`Service::accept`] (versions, mount info, option validation), then
//! [`Service::request_file`] as often as needed, [`Service::files_done`],
//! [`Service::request_mount`], and [`Service::goodbye`].
//!
//! Invariants:
//! - every receive waits at most the service's timeout;
//! - the helper is a peer to check, not to trust blindly: a message out of
//!   order, of the wrong kind or with a wrong fd count is a protocol error;
//!   so is a granted fd that is not what it claims (a block device or
//!   regular file for the source, a character device for `/dev/fuse`);
//! - on any error caused by the peer, the service says Goodbye with a
//!   non-zero status and the reason (when the socket still works) and then
//!   refuses every further call; [`Service::goodbye`] after that is a no-op,
//!   so a caller can always end with it without sending two;
//! - nothing the peer sends can panic this module.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use fsvc_protocol::{
    clamp_reason, negotiate, recv_helper_msg, send_server_msg, Access, FileGrant, HelperMsg,
    MountInfo, MountRequest, Refusal, ServerMsg, WireError, WireMessage, PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::{fstat, SFlag};

pub mod activation;
mod inherited;
pub mod options;

pub use options::{AtimeMode, ErrorBehavior, FsOptions, MountFlags, OptionError};

/// How long to wait for each message from the helper unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong in the conversation with the helper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The socket or the framing failed while doing `step`.
    #[error("{step}: {source}")]
    Wire {
        /// What the server was doing ("waiting for the helper's hello", ...).
        step: &'static str,
        /// The wire error.
        #[source]
        source: WireError,
    },
    /// The helper's version range does not overlap ours.
    #[error("the helper speaks protocol versions {min}..={max} but this server speaks {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}: install matching fsvc-mount and fsvc-server")]
    NoCommonVersion {
        /// Helper's oldest version.
        min: u32,
        /// Helper's newest version.
        max: u32,
    },
    /// The helper sent a message that does not belong at this point.
    #[error("protocol error: expected {expected} from the helper, got {got}")]
    Unexpected {
        /// What the conversation called for.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// The filesystem options were refused.
    #[error("{0}")]
    Options(#[from] OptionError),
    /// A passed fd is not the kind of file the message says.
    #[error("the helper passed an unusable {what}: {detail}")]
    BadFd {
        /// "source" or "/dev/fuse".
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Our own code called the service out of order (a bug in the caller).
    #[error("internal error: {0} called out of order")]
    OutOfOrder(&'static str),
    /// The conversation already ended (after a Goodbye).
    #[error("the conversation with the helper has already ended")]
    Ended,
}

impl ServiceError {
    /// An errno-like status for the Goodbye that reports this error.
    pub fn status(&self) -> i32 {
        let errno = match self {
            ServiceError::Wire {
                source: WireError::Timeout(_),
                ..
            } => Errno::ETIMEDOUT,
            ServiceError::Wire {
                source: WireError::PeerClosed,
                ..
            }
            | ServiceError::Ended => Errno::EPIPE,
            ServiceError::Wire { .. }
            | ServiceError::Unexpected { .. }
            | ServiceError::BadFd { .. } => Errno::EPROTO,
            ServiceError::NoCommonVersion { .. } => Errno::EPROTONOSUPPORT,
            ServiceError::Options(OptionError::NotPermitted { .. }) => Errno::EPERM,
            ServiceError::Options(_) | ServiceError::OutOfOrder(_) => Errno::EINVAL,
        };
        errno as i32
    }
}

/// Where the conversation stands after `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// File requests allowed.
    Files,
    /// `FilesDone` sent; the mount request is next.
    FilesDone,
    /// `/dev/fuse` received; only Goodbye is left.
    Mounted,
    /// Goodbye sent (or the conversation broke): nothing more.
    Ended,
}

/// The server's end of one conversation with a helper.
#[derive(Debug)]
pub struct Service {
    sock: OwnedFd,
    timeout: Duration,
    version: u32,
    info: MountInfo,
    options: FsOptions,
    stage: Stage,
}

/// Best-effort Goodbye on a socket whose conversation failed: the peer may
/// be gone, in which case there is nobody left to tell.
fn say_goodbye(sock: BorrowedFd<'_>, status: i32, reason: &str) {
    let msg = ServerMsg::Goodbye {
        status,
        reason: clamp_reason(reason),
    };
    if let Err(e) = send_server_msg(sock, &msg) {
        log::debug!("could not send goodbye to the helper: {e}");
    }
}

/// Receives one message, or reports the failure (with a Goodbye) as `step`.
fn recv(
    sock: BorrowedFd<'_>,
    timeout: Duration,
    step: &'static str,
) -> Result<(HelperMsg, Vec<OwnedFd>), ServiceError> {
    recv_helper_msg(sock, timeout).map_err(|source| ServiceError::Wire { step, source })
}

fn send(sock: BorrowedFd<'_>, msg: &ServerMsg, step: &'static str) -> Result<(), ServiceError> {
    send_server_msg(sock, msg).map_err(|source| ServiceError::Wire { step, source })
}

/// Takes the single fd of a message whose fd count the wire layer checked.
fn single_fd(fds: Vec<OwnedFd>, what: &'static str) -> Result<OwnedFd, ServiceError> {
    let mut it = fds.into_iter();
    match (it.next(), it.next()) {
        (Some(fd), None) => Ok(fd),
        _ => Err(ServiceError::BadFd {
            what,
            detail: "expected exactly one file descriptor".to_owned(),
        }),
    }
}

/// Checks that the source fd is what the grant says: a block device or a
/// regular file, writable when granted read-write.
fn check_source_fd(fd: &OwnedFd, grant: &FileGrant) -> Result<(), ServiceError> {
    let bad = |detail: String| ServiceError::BadFd {
        what: "source",
        detail,
    };
    let st = fstat(fd).map_err(|e| bad(format!("fstat failed: {e}")))?;
    let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let is_block = fmt == SFlag::S_IFBLK;
    if !(is_block || fmt == SFlag::S_IFREG) {
        return Err(bad("neither a block device nor a regular file".to_owned()));
    }
    if is_block != grant.block_device {
        return Err(bad(format!(
            "the grant says block_device={} but the fd is {}",
            grant.block_device,
            if is_block {
                "a block device"
            } else {
                "a regular file"
            }
        )));
    }
    if !grant.read_only {
        let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| bad(format!("F_GETFL failed: {e}")))?;
        if OFlag::from_bits_truncate(fl) & OFlag::O_ACCMODE != OFlag::O_RDWR {
            return Err(bad(
                "granted read-write but not opened read-write".to_owned()
            ));
        }
    }
    Ok(())
}

/// Checks that the `/dev/fuse` fd is a character device.
fn check_fuse_fd(fd: &OwnedFd) -> Result<(), ServiceError> {
    let st = fstat(fd).map_err(|e| ServiceError::BadFd {
        what: "/dev/fuse",
        detail: format!("fstat failed: {e}"),
    })?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR {
        return Err(ServiceError::BadFd {
            what: "/dev/fuse",
            detail: "not a character device".to_owned(),
        });
    }
    Ok(())
}

impl Service {
    /// Runs the opening of the conversation on `sock`: the helper's Hello,
    /// our Hello with the negotiated version, the helper's `MountInfo`, and
    /// the validation of its filesystem options (syntax and policy).
    /// `timeout` bounds each receive, here and in every later call.
    ///
    /// On failure the helper has been told (Goodbye with the reason) where
    /// the socket still works, and the socket is closed.
    pub fn accept(sock: OwnedFd, timeout: Duration) -> Result<Service, ServiceError> {
        match Self::opening(sock.as_fd(), timeout) {
            Ok((version, info, options)) => Ok(Service {
                sock,
                timeout,
                version,
                info,
                options,
                stage: Stage::Files,
            }),
            Err(e) => {
                say_goodbye(sock.as_fd(), e.status(), &e.to_string());
                Err(e)
            }
        }
    }

    fn opening(
        sock: BorrowedFd<'_>,
        timeout: Duration,
    ) -> Result<(u32, MountInfo, FsOptions), ServiceError> {
        let (msg, _fds) = recv(sock, timeout, "waiting for the helper's hello")?;
        let HelperMsg::Hello {
            min_version,
            max_version,
        } = msg
        else {
            return Err(ServiceError::Unexpected {
                expected: "Hello",
                got: msg.kind(),
            });
        };
        let version = negotiate(min_version, max_version).ok_or(ServiceError::NoCommonVersion {
            min: min_version,
            max: max_version,
        })?;
        send(
            sock,
            &ServerMsg::Hello { version },
            "answering the helper's hello",
        )?;

        let (msg, _fds) = recv(sock, timeout, "waiting for the mount information")?;
        let HelperMsg::MountInfo(info) = msg else {
            return Err(ServiceError::Unexpected {
                expected: "MountInfo",
                got: msg.kind(),
            });
        };
        let options = FsOptions::parse(&info.fs_options)?;
        options.check_policy(&info)?;
        Ok((version, info, options))
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// What the helper said about the mount.
    pub fn mount_info(&self) -> &MountInfo {
        &self.info
    }

    /// The validated filesystem options.
    pub fn options(&self) -> &FsOptions {
        &self.options
    }

    /// The socket, for the sandbox's list of fds to keep.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The receive timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the conversation has ended (Goodbye sent or broken).
    pub fn has_ended(&self) -> bool {
        self.stage == Stage::Ended
    }

    /// Ends the conversation after a peer-caused error: tells the helper
    /// why (best effort) and refuses every later call.
    fn fail(&mut self, e: ServiceError) -> ServiceError {
        if self.stage != Stage::Ended {
            say_goodbye(self.sock.as_fd(), e.status(), &e.to_string());
            self.stage = Stage::Ended;
        }
        e
    }

    fn expect_stage(&self, want: Stage, call: &'static str) -> Result<(), ServiceError> {
        match self.stage {
            Stage::Ended => Err(ServiceError::Ended),
            s if s == want => Ok(()),
            _ => Err(ServiceError::OutOfOrder(call)),
        }
    }

    /// Asks the helper for the source (always the path named in
    /// `MountInfo::source`) with `access`. Returns the fd and the grant, or
    /// the helper's refusal (after which the caller may ask again with
    /// other access, or say Goodbye).
    pub fn request_file(
        &mut self,
        access: Access,
    ) -> Result<Result<(OwnedFd, FileGrant), Refusal>, ServiceError> {
        self.expect_stage(Stage::Files, "request_file")?;
        let req = ServerMsg::FileRequest {
            path: self.info.source.clone(),
            access,
        };
        let res = send(self.sock.as_fd(), &req, "requesting the source")
            .and_then(|()| recv(self.sock.as_fd(), self.timeout, "waiting for the source"))
            .and_then(|(msg, fds)| match msg {
                HelperMsg::FileReply(Ok(grant)) => {
                    let fd = single_fd(fds, "source")?;
                    check_source_fd(&fd, &grant)?;
                    if access == Access::ReadOnly && !grant.read_only {
                        // Harmless (we will not write) but worth knowing.
                        log::debug!("asked read-only, granted read-write");
                    }
                    Ok(Ok((fd, grant)))
                }
                HelperMsg::FileReply(Err(refusal)) => Ok(Err(refusal)),
                other => Err(ServiceError::Unexpected {
                    expected: "FileReply",
                    got: other.kind(),
                }),
            });
        res.map_err(|e| self.fail(e))
    }

    /// Tells the helper no more file requests will come.
    pub fn files_done(&mut self) -> Result<(), ServiceError> {
        self.expect_stage(Stage::Files, "files_done")?;
        let res = send(
            self.sock.as_fd(),
            &ServerMsg::FilesDone,
            "ending file requests",
        );
        res.map_err(|e| self.fail(e))?;
        self.stage = Stage::FilesDone;
        Ok(())
    }

    /// The mount request this server makes: the source as fs name, the fs
    /// type as subtype, `default_permissions` always (the kernel checks
    /// permissions against the files' own modes, like a kernel
    /// filesystem), and `allow_other` when permitted and either the caller
    /// is root (a root mount behaves like a kernel mount) or it was asked.
    pub fn mount_request(&self, read_only: bool) -> MountRequest {
        let info = &self.info;
        MountRequest {
            fs_name: info.source.clone(),
            subtype: info.fs_type.name().to_owned(),
            read_only,
            default_permissions: true,
            allow_other: info.allow_other_permitted
                && (info.caller.uid == 0 || self.options.allow_other),
        }
    }

    /// Asks the helper to mount. Returns the `/dev/fuse` fd of the new
    /// mount, or the helper's refusal.
    pub fn request_mount(
        &mut self,
        req: &MountRequest,
    ) -> Result<Result<OwnedFd, Refusal>, ServiceError> {
        self.expect_stage(Stage::FilesDone, "request_mount")?;
        if req.allow_other && !self.info.allow_other_permitted {
            return Err(ServiceError::Options(OptionError::NotPermitted {
                name: "allow_other",
                why: "the mount policy does not allow it for this user",
            }));
        }
        let msg = ServerMsg::MountRequest(req.clone());
        let res = send(self.sock.as_fd(), &msg, "requesting the mount")
            .and_then(|()| recv(self.sock.as_fd(), self.timeout, "waiting for the mount"))
            .and_then(|(msg, fds)| match msg {
                HelperMsg::MountReply(Ok(())) => {
                    let fd = single_fd(fds, "/dev/fuse")?;
                    check_fuse_fd(&fd)?;
                    Ok(Ok(fd))
                }
                HelperMsg::MountReply(Err(refusal)) => Ok(Err(refusal)),
                other => Err(ServiceError::Unexpected {
                    expected: "MountReply",
                    got: other.kind(),
                }),
            });
        let res = res.map_err(|e| self.fail(e))?;
        if res.is_ok() {
            self.stage = Stage::Mounted;
        }
        Ok(res)
    }

    /// Ends the conversation: status 0 means mounted and serving, anything
    /// else is an errno-like failure with a one-line `reason` (clamped to
    /// the protocol's limit). A no-op when the conversation already ended.
    pub fn goodbye(&mut self, status: i32, reason: &str) -> Result<(), ServiceError> {
        if self.stage == Stage::Ended {
            return Ok(());
        }
        self.stage = Stage::Ended;
        let msg = ServerMsg::Goodbye {
            status,
            reason: clamp_reason(reason),
        };
        send(self.sock.as_fd(), &msg, "saying goodbye")
    }
}
