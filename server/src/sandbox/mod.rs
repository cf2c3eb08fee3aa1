//! The sandbox the server enters before it reads one byte of the image:
//! [`enter`] is the one place in the server that drops privilege.
//!
//! Order (each step's module says why it sits where it does):
//! 0. refuse unless the process is single-threaded (Landlock and seccomp
//!    apply to the calling thread and the threads it creates later; a thread
//!    that already exists would stay unconfined);
//! 1. `fds`: keep only the listed descriptors (0/1/2 → `/dev/null` when not
//!    listed), while `/dev/null` can still be opened;
//! 2. `creds` (steps 2-5): not dumpable, bounding set (while
//!    `CAP_SETPCAP` exists), uid/gid drop when still root, clear every
//!    capability set, `no_new_privs`;
//! 6. `landlock`: every filesystem and network right handled with no rules,
//!    scopes for abstract unix sockets and signals;
//! 7. `rlimits`: core 0, memlock 0, a small descriptor limit (before
//!    seccomp, so that the filter can forbid setting limits);
//! 8. `seccomp`: the allowlist, last, since the earlier steps need calls
//!    it forbids.
//!
//! Invariants: [`is_entered`] is true only after every step succeeded, and
//! [`gate`] (the image channel's [`AccessGate`]) is open exactly then. Any
//! error leaves the process partly confined and the caller must exit; the
//! server never continues without the sandbox.

mod creds;
mod fds;
mod landlock;
mod rlimits;
mod seccomp;
mod sys;

use std::fmt;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use fsvc_ext4::io::AccessGate;
use nix::errno::Errno;

pub use self::landlock::{LandlockEnforcement, LandlockOutcome};

/// Set once, after the last step of [`enter`] succeeded.
static ENTERED: AtomicBool = AtomicBool::new(false);
/// Set when [`enter`] starts, so a second call is refused even if the first
/// failed half way.
static STARTED: AtomicBool = AtomicBool::new(false);

/// What the caller asks of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Descriptors that stay open. Every descriptor a live Rust object owns
    /// must be listed, and each listed one must be open; everything else is
    /// closed. 0/1/2 are never left closed: when unlisted (or listed but
    /// closed) they are pointed at `/dev/null`.
    pub keep_fds: Vec<RawFd>,
    /// The uid to switch to, used only if the process is still root.
    pub uid: u32,
    /// The gid to switch to, used only if the process is still root.
    pub gid: u32,
}

/// What [`enter`] enforced. `Display` gives the one-line summary the server
/// logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxReport {
    /// Real/effective/saved uid after the sandbox.
    pub uid: u32,
    /// Real/effective/saved gid after the sandbox.
    pub gid: u32,
    /// The process was root and switched to the configured ids.
    pub dropped_from_root: bool,
    /// Capabilities left in the bounding set (0 when it could be emptied;
    /// harmless under `no_new_privs` without execve).
    pub bounding_left: u32,
    /// Supplementary groups left.
    pub groups_left: usize,
    /// What Landlock enforces.
    pub landlock: LandlockOutcome,
    /// Syscalls the seccomp allow filter lets through.
    pub seccomp_allowed: usize,
    /// Syscalls that always fail softly with an errno.
    pub seccomp_soft_denied: usize,
    /// `RLIMIT_NOFILE` as set.
    pub rlimit_nofile: u64,
    /// The kept descriptors (besides 0/1/2).
    pub kept_fds: Vec<RawFd>,
}

impl fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sandbox: uid={} gid={}{} groups={} caps=cleared bounding={} no_new_privs=1 {} \
             seccomp=filter({} syscalls allowed, {} soft-denied, default kill) \
             rlimits=core:0,memlock:0,nofile:{} fds={:?}",
            self.uid,
            self.gid,
            if self.dropped_from_root {
                " (dropped from root)"
            } else {
                ""
            },
            self.groups_left,
            if self.bounding_left == 0 {
                "empty".to_string()
            } else {
                format!("{}-left", self.bounding_left)
            },
            self.landlock,
            self.seccomp_allowed,
            self.seccomp_soft_denied,
            self.rlimit_nofile,
            self.kept_fds,
        )
    }
}

/// The step of [`enter`] that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// `enter` was already called in this process.
    #[error("sandbox: enter() was already called")]
    AlreadyEntered,
    /// Threads exist; they would escape Landlock and seccomp.
    #[error("sandbox: the process has {0} threads, the sandbox must be entered while it has one")]
    NotSingleThreaded(usize),
    /// The thread count could not be read from /proc.
    #[error("sandbox: cannot verify the process is single-threaded: {0}")]
    ThreadCount(String),
    /// A descriptor in `keep_fds` is invalid or not open.
    #[error("sandbox: kept descriptor {fd} is not open: {errno}")]
    BadKeptFd {
        /// The descriptor.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
    /// `/dev/null` could not be opened for unkept 0/1/2.
    #[error("sandbox: cannot open /dev/null for the standard descriptors: {0}")]
    DevNull(std::io::Error),
    /// Closing or redirecting descriptors failed.
    #[error("sandbox: closing descriptors failed: {0}")]
    CloseFds(Errno),
    /// `PR_SET_DUMPABLE 0` failed.
    #[error("sandbox: PR_SET_DUMPABLE failed: {0}")]
    Dumpable(Errno),
    /// Reading uids/gids/groups failed.
    #[error("sandbox: reading the process ids failed: {0}")]
    GetIds(Errno),
    /// The configured uid or gid is root.
    #[error("sandbox: refusing to switch to uid {uid} gid {gid}: must not be root")]
    RootTarget {
        /// Configured uid.
        uid: u32,
        /// Configured gid.
        gid: u32,
    },
    /// `setgroups([])` failed.
    #[error("sandbox: setgroups([]) failed: {0}")]
    SetGroups(Errno),
    /// `setresgid` failed.
    #[error("sandbox: setresgid failed: {0}")]
    SetGid(Errno),
    /// `setresuid` failed.
    #[error("sandbox: setresuid failed: {0}")]
    SetUid(Errno),
    /// The ids after the drop are not what they must be.
    #[error("sandbox: identity check after the uid drop failed: {0}")]
    VerifyIds(String),
    /// Dropping the bounding set failed.
    #[error("sandbox: dropping the capability bounding set failed: {0}")]
    Bounding(Errno),
    /// Clearing capability sets failed (syscall).
    #[error("sandbox: clearing capabilities failed: {0}")]
    CapsErrno(Errno),
    /// Clearing or checking capability sets failed.
    #[error("sandbox: capabilities: {0}")]
    Caps(String),
    /// `PR_SET_NO_NEW_PRIVS` failed or did not stick.
    #[error("sandbox: PR_SET_NO_NEW_PRIVS failed: {0}")]
    NoNewPrivs(Errno),
    /// Building or applying the Landlock ruleset failed.
    #[error("sandbox: landlock: {0}")]
    Landlock(String),
    /// The kernel has Landlock but enforced nothing.
    #[error("sandbox: landlock (kernel ABI {kernel_abi}) enforced nothing; refusing to continue")]
    LandlockNotEnforced {
        /// The kernel's Landlock ABI.
        kernel_abi: i32,
    },
    /// Setting a resource limit failed.
    #[error("sandbox: setrlimit(RLIMIT_{resource}) failed: {errno}")]
    Rlimit {
        /// The limit's name.
        resource: &'static str,
        /// Why.
        errno: Errno,
    },
    /// Building or installing the seccomp filter failed.
    #[error("sandbox: seccomp: {0}")]
    Seccomp(String),
}

/// True only after [`enter`] fully succeeded in this process.
pub fn is_entered() -> bool {
    ENTERED.load(Ordering::SeqCst)
}

/// The IO channel's gate for the image: closed until [`enter`] has fully
/// succeeded in this process, so a channel built with it reads and writes
/// nothing before the sandbox is in place.
pub fn gate() -> AccessGate {
    AccessGate::until(is_entered)
}

/// Counts the threads of this process from `/proc/self/status`, falling
/// back to `/proc/self/task`.
fn thread_count() -> Result<usize, SandboxError> {
    const FIELD: &str = "Threads:";
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => status
            .lines()
            .find_map(|l| l.strip_prefix(FIELD))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| {
                SandboxError::ThreadCount("no Threads: line in /proc/self/status".into())
            }),
        Err(status_err) => std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .map_err(|e| {
                SandboxError::ThreadCount(format!(
                    "/proc/self/status: {status_err}; /proc/self/task: {e}"
                ))
            }),
    }
}

/// Enters the sandbox; see the module documentation for the order. Must be
/// called once, before any thread exists. On error the process is partly
/// confined and must exit.
pub fn enter(cfg: &SandboxConfig) -> Result<SandboxReport, SandboxError> {
    if STARTED.swap(true, Ordering::SeqCst) {
        return Err(SandboxError::AlreadyEntered);
    }
    // Step 0 reads /proc, which Landlock will hide; it must be first.
    let threads = thread_count()?;
    if threads != 1 {
        return Err(SandboxError::NotSingleThreaded(threads));
    }
    // Step 1 before anything else: fewer open descriptors, fewer things the
    // remaining steps (and an exploit) could reach; /dev/null still opens.
    let kept = fds::close_unkept(&cfg.keep_fds)?;
    // Steps 2-5.
    let creds = creds::drop_privileges(cfg)?;
    // Step 6 after no_new_privs (which an unprivileged Landlock needs).
    let landlock = landlock::restrict()?;
    // Step 7.
    let limits = rlimits::apply(&kept)?;
    // Step 8, last.
    let filter = seccomp::install(&landlock)?;
    ENTERED.store(true, Ordering::SeqCst);
    Ok(SandboxReport {
        uid: creds.uid,
        gid: creds.gid,
        dropped_from_root: creds.dropped_from_root,
        bounding_left: creds.bounding_left,
        groups_left: creds.groups_left,
        landlock,
        seccomp_allowed: filter.allowed,
        seccomp_soft_denied: filter.soft_denied,
        rlimit_nofile: limits.nofile,
        kept_fds: kept,
    })
}
