//! The helper's side of the conversation (protocol/src/lib.rs has the
//! order): Hello, MountInfo, file requests until FilesDone, one mount
//! request, Goodbye.
//!
//! The server is treated as hostile: a message out of order, garbage, a
//! wrong fd count or silence past the timeout ends the conversation with an
//! error, and if the mount was already made it is detached, so nothing stays
//! half-mounted. The only path the server may have opened is the source
//! named on the command line, and only until it says FilesDone.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use fsvc_protocol::{
    clamp_reason, Access, HelperMsg, MountInfo, MountRequest, Refusal, ServerMsg,
    PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};

use crate::conn::{Conn, ConnError};
use crate::mount::{self, MountPlan, Mounted};
use crate::options::SplitOptions;
use crate::policy::UserMount;
use crate::source;

/// Most file requests served in one conversation. The protocol needs one or
/// two (read-write, then read-only); the bound stops a server from making
/// the helper open the source in a loop.
const MAX_FILE_REQUESTS: usize = 16;

/// Where the conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// File requests are served.
    Files,
    /// FilesDone came; a mount request may come.
    AwaitMount,
    /// The mount request was answered (mounted or refused).
    MountAnswered,
}

/// What the session needs that is not in [`MountInfo`].
#[derive(Debug)]
pub struct Context<'a> {
    /// The pinned mountpoint; `None` for a detached mount.
    pub dir: Option<BorrowedFd<'a>>,
    /// The split options (mount attributes, superblock flags).
    pub options: &'a SplitOptions,
    /// The source as mountinfo shows it (absolute).
    pub shown_source: &'a str,
    /// What is opened when the server asks for the source: the path as
    /// named, or `/proc/self/fd/N` of a source the caller passed as an fd
    /// (the same file, never a path resolved again).
    pub open_path: &'a str,
    /// A non-root caller's policy (`None` for root).
    pub user: Option<&'a UserMount>,
}

/// How a failed session ended: the message to print.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SessionError {
    /// One line for the person.
    pub message: String,
    /// A policy rule of the helper's refused the source (exit 1, not 32):
    /// the message is then the helper's own denial, not the server's words.
    pub by_policy: bool,
}

impl SessionError {
    fn new(message: impl Into<String>) -> SessionError {
        SessionError {
            message: message.into(),
            by_policy: false,
        }
    }
}

/// What the server said with a successful goodbye when it had nothing to
/// tell the person mounting.
const NOTHING_TO_TELL: &str = "mounted";

/// A mount made and served.
#[derive(Debug)]
pub struct Served {
    /// The note the server wants the person mounting to see (why the mount
    /// is read-only when they did not ask for it), made printable.
    pub note: Option<String>,
    /// The new mount's id, when it could be read (a mount on a directory).
    pub mount_id: Option<u64>,
    /// A detached mount's fd, for the caller.
    pub detached: Option<OwnedFd>,
    /// The server mounted read-only.
    pub read_only: bool,
}

/// Runs the conversation; `Ok` means mounted and served.
pub fn run(conn: &Conn, info: &MountInfo, ctx: &Context<'_>) -> Result<Served, SessionError> {
    let mut mounted: Option<Mounted> = None;
    let result = converse(conn, info, ctx, &mut mounted);
    match (result, mounted) {
        (Ok((note, read_only)), m) => {
            let note = printable(note.trim());
            let mount_id = m.as_ref().and_then(|m| m.mount_id());
            Ok(Served {
                note: (!note.is_empty() && note != NOTHING_TO_TELL).then_some(note),
                mount_id,
                detached: m.and_then(Mounted::into_detached),
                read_only,
            })
        }
        (Err(e), None) => Err(e),
        (Err(e), Some(m)) => match m.detach() {
            Ok(()) => Err(SessionError {
                message: format!("{} (the mount was undone)", e.message),
                ..e
            }),
            Err(d) => Err(SessionError {
                message: format!("{}; and {d}: run umount -l {}", e.message, info.mountpoint),
                ..e
            }),
        },
    }
}

fn conn_err(e: ConnError) -> SessionError {
    SessionError::new(e.to_string())
}

fn protocol(what: String) -> SessionError {
    SessionError::new(format!(
        "protocol error: {what}; nothing was mounted by this exchange"
    ))
}

/// Makes a peer-provided string safe to print on a terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn refuse(errno: i32, message: String) -> Refusal {
    Refusal {
        errno,
        message: clamp_reason(&message),
    }
}

fn converse(
    conn: &Conn,
    info: &MountInfo,
    ctx: &Context<'_>,
    mounted: &mut Option<Mounted>,
) -> Result<(String, bool), SessionError> {
    conn.send(
        &HelperMsg::Hello {
            min_version: PROTOCOL_VERSION_MIN,
            max_version: PROTOCOL_VERSION_MAX,
        },
        &[],
    )
    .map_err(conn_err)?;
    match conn.recv().map_err(conn_err)? {
        ServerMsg::Hello { version } if (PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION_MAX).contains(&version) => {}
        ServerMsg::Hello { version } => {
            return Err(protocol(format!(
                "the server chose protocol version {version}, outside {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}"
            )))
        }
        ServerMsg::Goodbye { status, reason } => return Err(goodbye_error(status, &reason, None, None)),
        other => return Err(protocol(format!("expected Hello, got {}", kind(&other)))),
    }
    conn.send(&HelperMsg::MountInfo(info.clone()), &[])
        .map_err(conn_err)?;

    let mut phase = Phase::Files;
    let mut last_refusal: Option<String> = None;
    // The policy denial of the latest file request, if it was one: when the
    // server then gives up, that denial is the reason.
    let mut policy_denial: Option<String> = None;
    let mut file_requests = 0usize;
    // What the mount was made as (the server may fall back to read-only).
    let mut read_only = info.read_only;
    loop {
        let msg = conn.recv().map_err(|e| match (&e, mounted.is_some()) {
            (ConnError::Closed, true) => SessionError::new("the server exited after mounting, without saying it serves (see the kernel log / FSVC_LOG)"),
            _ => conn_err(e),
        })?;
        match msg {
            ServerMsg::FileRequest { path, access } => {
                file_requests += 1;
                if file_requests > MAX_FILE_REQUESTS {
                    return Err(protocol(format!(
                        "more than {MAX_FILE_REQUESTS} file requests"
                    )));
                }
                let reply = if phase != Phase::Files {
                    Err(refuse(
                        libc::EPERM,
                        "file requests are over (the server said FilesDone)".into(),
                    )
                    .into())
                } else if path != info.source {
                    Err(refuse(
                        libc::EACCES,
                        format!(
                            "server asked for {}, only the source {} may be opened",
                            printable(&path),
                            info.source
                        ),
                    )
                    .into())
                } else {
                    source::open_source(ctx.open_path, access, ctx.user)
                };
                policy_denial = match &reply {
                    Err(r) if r.by_policy => Some(r.refusal.message.clone()),
                    _ => None,
                };
                match reply.map_err(|r| r.refusal) {
                    Ok((fd, grant)) => {
                        conn.send(&HelperMsg::FileReply(Ok(grant)), &[fd.as_fd()])
                            .map_err(conn_err)?;
                        // Our copy closes here; the server's copy keeps the lock.
                        drop(fd);
                    }
                    Err(r) => {
                        // A read-write denial is normally followed by a
                        // read-only retry; it is not the reason to report.
                        let rw_denied = access == Access::ReadWrite
                            && [libc::EROFS, libc::EACCES, libc::EPERM].contains(&r.errno);
                        if !rw_denied {
                            last_refusal = Some(r.message.clone());
                        }
                        conn.send(&HelperMsg::FileReply(Err(r)), &[])
                            .map_err(conn_err)?;
                    }
                }
            }
            ServerMsg::FilesDone if phase == Phase::Files => phase = Phase::AwaitMount,
            ServerMsg::MountRequest(req) if phase == Phase::AwaitMount => {
                phase = Phase::MountAnswered;
                read_only |= req.read_only;
                match do_mount(&req, info, ctx) {
                    Ok(m) => {
                        let sent = conn.send(&HelperMsg::MountReply(Ok(())), &[m.fuse.as_fd()]);
                        *mounted = Some(m);
                        sent.map_err(conn_err)?;
                    }
                    Err(r) => {
                        last_refusal = Some(r.message.clone());
                        conn.send(&HelperMsg::MountReply(Err(r)), &[])
                            .map_err(conn_err)?;
                    }
                }
            }
            ServerMsg::Goodbye { status: 0, reason } if mounted.is_some() => {
                return Ok((reason, read_only))
            }
            ServerMsg::Goodbye { status: 0, .. } => {
                return Err(protocol(
                    "the server reported success without a mount".into(),
                ))
            }
            ServerMsg::Goodbye { status, reason } => {
                return Err(goodbye_error(
                    status,
                    &reason,
                    last_refusal.as_deref(),
                    policy_denial,
                ))
            }
            other => {
                return Err(protocol(format!(
                    "unexpected {} while {}",
                    kind(&other),
                    match phase {
                        Phase::Files => "serving file requests",
                        Phase::AwaitMount => "waiting for the mount request",
                        Phase::MountAnswered => "waiting for the server's goodbye",
                    }
                )))
            }
        }
    }
}

fn goodbye_error(
    status: i32,
    reason: &str,
    last_refusal: Option<&str>,
    policy_denial: Option<String>,
) -> SessionError {
    if let Some(message) = policy_denial {
        return SessionError {
            message,
            by_policy: true,
        };
    }
    let reason = printable(reason.trim());
    let text = match (reason.is_empty(), last_refusal) {
        (false, _) => reason,
        (true, Some(r)) => r.to_string(),
        (true, None) => format!("the server failed with status {status} and gave no reason"),
    };
    SessionError::new(text)
}

fn kind(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::Hello { .. } => "Hello",
        ServerMsg::FileRequest { .. } => "FileRequest",
        ServerMsg::FilesDone => "FilesDone",
        ServerMsg::MountRequest(_) => "MountRequest",
        ServerMsg::Goodbye { .. } => "Goodbye",
    }
}

fn do_mount(req: &MountRequest, info: &MountInfo, ctx: &Context<'_>) -> Result<Mounted, Refusal> {
    if req.allow_other && !info.allow_other_permitted {
        return Err(refuse(
            libc::EPERM,
            "allow_other is not permitted for this caller".into(),
        ));
    }
    let plan = MountPlan {
        source: ctx.shown_source,
        mountpoint: &info.mountpoint,
        dir: ctx.dir,
        fs_type: info.fs_type,
        attrs: ctx.options.mount_attrs,
        sb: ctx.options.sb_flags,
        read_only: req.read_only || info.read_only,
        default_permissions: req.default_permissions,
        allow_other: req.allow_other,
        uid: info.caller.uid,
        gid: info.caller.gid,
        caller_is_root: info.caller.uid == 0,
    };
    mount::mount(&plan).map_err(|r| refuse(r.errno, r.message))
}
