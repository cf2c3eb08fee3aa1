//! Step 7 of the sandbox: resource limits, soft and hard (so they cannot be
//! raised again without `CAP_SYS_RESOURCE`, which is gone).
//!
//! - `RLIMIT_CORE` 0: a crash must not write the image's contents (in
//!   memory) to a core file.
//! - `RLIMIT_MEMLOCK` 0: the server never locks memory.
//! - `RLIMIT_NOFILE`: a small margin above the highest kept descriptor; the
//!   server only ever receives `/dev/fuse` after this point.
//! - Not `RLIMIT_NPROC`: it counts threads of the uid, and the FUSE worker
//!   threads are created after the sandbox.
//! - Not `RLIMIT_FSIZE`: the server writes a regular-file image through the
//!   passed descriptor, which that limit would cut short.
//!
//! These are set just before the seccomp filter (not after it) so that the
//! filter can allow `prlimit64` for reading limits only.

use std::os::fd::RawFd;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use super::SandboxError;

/// Minimum `RLIMIT_NOFILE` (room for `/dev/fuse` and a few spares).
pub(super) const MIN_NOFILE: u64 = 64;
/// Descriptors allowed above the highest kept one.
const NOFILE_MARGIN: u64 = 32;

/// The limits as set, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RlimitOutcome {
    /// The `RLIMIT_NOFILE` value set (soft = hard).
    pub nofile: u64,
}

/// Sets the limits described in the module documentation. `kept` is the
/// sorted list of kept descriptors (0/1/2 are always open as well).
pub(super) fn apply(kept: &[RawFd]) -> Result<RlimitOutcome, SandboxError> {
    let highest = kept.iter().copied().max().map_or(2, |fd| fd.max(2));
    let highest = u64::try_from(highest).unwrap_or(0);
    let wanted = highest.saturating_add(NOFILE_MARGIN).max(MIN_NOFILE);
    // Never raise: if the hard limit is already lower, keep it.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|errno| SandboxError::Rlimit {
        resource: "NOFILE",
        errno,
    })?;
    let nofile = wanted.min(hard);
    for (resource, name, value) in [
        (Resource::RLIMIT_CORE, "CORE", 0),
        (Resource::RLIMIT_MEMLOCK, "MEMLOCK", 0),
        (Resource::RLIMIT_NOFILE, "NOFILE", nofile),
    ] {
        setrlimit(resource, value, value).map_err(|errno| SandboxError::Rlimit {
            resource: name,
            errno,
        })?;
    }
    Ok(RlimitOutcome { nofile })
}
