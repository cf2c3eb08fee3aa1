//! FUSE adapter: the only place that knows FUSE and errno.
//!
//! [`FuseServer::new`] takes the opened filesystem and the `/dev/fuse` fd
//! the helper mounted with, performs the FUSE INIT handshake, and
//! [`FuseServer::run`] serves requests on several threads until the kernel
//! connection ends (unmount or abort).
//!
//! Sandbox constraints: the server runs under Landlock with no filesystem
//! access, so fuser's `clone_fd` (which reopens `/dev/fuse` to give each
//! thread its own fd) stays off; all worker threads share the one fd, which
//! the kernel supports (each read takes one whole request).
//!
//! Access control is the kernel's: the mount carries `user_id=`/`group_id=`
//! of the mounting user and `allow_other` only when the helper allowed it,
//! and the kernel refuses requests from anyone else before they reach us.
//! fuser's own filter compares the caller with the *server's* euid, which
//! is an unprivileged service uid, not the mount's owner (root, for a root
//! mount); it would refuse the very users the mount is for. So the session
//! ACL is always `All`, whatever `allow_other` says.

mod attr;
mod backend;
mod commit;
mod datagen;
#[cfg(test)]
mod engine_tests;
mod errno;
mod files;
mod filesystem;
mod handles;
mod nodes;
mod ops;
mod readahead;
mod readbuf;
#[cfg(test)]
mod rw_tests;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;
mod writes;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, Session, SessionACL};

use crate::mode::{MountMode, ReadOnlyReason};
use crate::service::MountFlags;
pub use commit::DEFAULT_COMMIT;
use commit::{CommitPlan, Committer};
pub use errno::engine_errno;
use fsvc_ext4::Fs;
use ops::Adapter;

/// Default number of FUSE worker threads. The work is mostly waiting on the
/// device (pread), not CPU, so more threads than the 2 cores of a typical
/// small host keep several reads in flight (kernel readahead issues
/// parallel requests); each thread costs a 16 MiB request buffer of address
/// space, so a handful, not dozens.
pub const DEFAULT_THREADS: usize = 4;

/// How to serve the mount.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Worker threads (0 = [`DEFAULT_THREADS`]).
    pub threads: usize,
    /// The mount mode: on a read-only mount, opens for writing and
    /// `access(W_OK)` are refused with EROFS.
    pub mode: MountMode,
    /// `sync`, `dirsync`, `lazytime` and the atime mode, for the write
    /// path and atime updates.
    pub flags: MountFlags,
    /// The helper allowed `allow_other` on the mount. Informational: the
    /// kernel enforces it (see the module documentation).
    pub allow_other: bool,
    /// Opt into `FUSE_ALLOW_IDMAP` (the helper idmaps the mount into a
    /// user namespace; `default_permissions` is always on). Only when
    /// asked: with it the kernel sends uid and gid -1 in every request but
    /// the creating ones (whose ids it maps through the mount's idmap), on
    /// every mount of the connection.
    pub allow_idmap: bool,
    /// Longest time a change may wait before it is written home
    /// (`commit=`; `None`: [`DEFAULT_COMMIT`]).
    pub commit: Option<Duration>,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            threads: DEFAULT_THREADS,
            mode: MountMode::ReadOnly(ReadOnlyReason::Requested),
            flags: MountFlags::default(),
            allow_other: false,
            allow_idmap: false,
            commit: None,
        }
    }
}

/// A FUSE session over an engine filesystem, past its INIT handshake.
#[derive(Debug)]
pub struct FuseServer {
    session: Session<Adapter>,
    /// The periodic commit's view: the filesystem, what changed, how often
    /// (`None` on a read-only mount: nothing to commit).
    commit: Option<CommitPlan>,
}

impl FuseServer {
    /// Takes over `fuse_fd` (an open `/dev/fuse` already mounted) and
    /// answers the kernel's INIT. Blocks until INIT arrives, which the
    /// kernel sends as soon as the mount exists.
    pub fn new(fs: Arc<Fs>, fuse_fd: OwnedFd, opts: &ServeOptions) -> std::io::Result<FuseServer> {
        FuseServer::with_backend(fs, fuse_fd, opts)
    }

    fn with_backend(
        fs: Arc<dyn backend::Backend>,
        fuse_fd: OwnedFd,
        opts: &ServeOptions,
    ) -> std::io::Result<FuseServer> {
        FuseServer::from_adapter(Adapter::new(fs, opts), fuse_fd, opts)
    }

    fn from_adapter(
        adapter: Adapter,
        fuse_fd: OwnedFd,
        opts: &ServeOptions,
    ) -> std::io::Result<FuseServer> {
        let mut config = Config::default();
        config.n_threads = Some(if opts.threads == 0 {
            DEFAULT_THREADS
        } else {
            opts.threads
        });
        // Reopening /dev/fuse is impossible under Landlock.
        config.clone_fd = false;
        config.acl = SessionACL::All;
        let commit = adapter.writable().then(|| CommitPlan {
            fs: adapter.fs.clone(),
            changes: adapter.changes.clone(),
            every: opts.commit.unwrap_or(DEFAULT_COMMIT),
        });
        let notifier = adapter.notifier.clone();
        let session = Session::from_fd(adapter, fuse_fd, SessionACL::All, config)?;
        // The INIT handshake is done: notifications may be sent from now on.
        let _ = notifier.set(session.notifier());
        Ok(FuseServer { session, commit })
    }

    /// Serves requests until the kernel ends the connection (unmount or
    /// abort), then returns. The caller then flushes and closes the device
    /// (`Fs::unmount`). On a read-write mount the periodic commit runs
    /// meanwhile (see `commit`), and has stopped when this returns.
    pub fn run(self) -> std::io::Result<()> {
        let committer = match self.commit {
            Some(plan) => Some(Committer::start(plan)?),
            None => None,
        };
        let served = self.session.run();
        if let Some(c) = committer {
            c.stop();
        }
        served
    }
}
