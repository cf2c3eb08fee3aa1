//! Step 1 of the sandbox: leave open exactly the descriptors the caller
//! lists, plus 0/1/2.
//!
//! Decision on 0/1/2: a standard descriptor that is not in `keep_fds` is
//! pointed at `/dev/null` instead of being closed. A closed 0/1/2 would be
//! handed out again by the next `recvmsg` (the `/dev/fuse` fd arrives after
//! the sandbox) and a stray `println!` or a panic message would then be
//! written into that descriptor. `/dev/null` is opened here, before
//! Landlock, which would refuse it later. Under systemd the journal is fd 2
//! and the caller lists it; a spawned server gets 0/1/2 closed by the helper,
//! so they become `/dev/null` here.
//!
//! Invariant (the caller's contract): every descriptor a live Rust object
//! still owns is listed in `keep_fds`; anything else is closed.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use nix::errno::Errno;

use super::{sys, SandboxError};

/// The standard descriptors 0, 1, 2.
const STD_FDS: [RawFd; 3] = [0, 1, 2];

/// Path of the null device the unkept standard descriptors are pointed at.
const DEV_NULL: &str = "/dev/null";

/// Checks `keep` and returns it sorted and deduplicated: every entry must
/// be a non-negative, open descriptor (a typo here would otherwise silently
/// close the descriptor the server needs). Exception: a listed 0/1/2 that is
/// closed (a spawned server's, closed by the helper) is dropped from the
/// list, so that it is filled with `/dev/null` like an unlisted one.
fn validate(keep: &[RawFd]) -> Result<Vec<RawFd>, SandboxError> {
    let mut sorted = keep.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut kept = Vec::with_capacity(sorted.len());
    for fd in sorted {
        if fd < 0 {
            return Err(SandboxError::BadKeptFd {
                fd,
                errno: Errno::EBADF,
            });
        }
        match sys::fd_is_open(fd) {
            Ok(()) => kept.push(fd),
            Err(Errno::EBADF) if STD_FDS.contains(&fd) => {}
            Err(errno) => return Err(SandboxError::BadKeptFd { fd, errno }),
        }
    }
    Ok(kept)
}

/// Redirects unkept 0/1/2 to `/dev/null`, then closes every descriptor that
/// is neither kept nor standard. Returns the kept list, sorted.
pub(super) fn close_unkept(keep: &[RawFd]) -> Result<Vec<RawFd>, SandboxError> {
    let kept = validate(keep)?;
    let missing_std: Vec<RawFd> = STD_FDS
        .iter()
        .copied()
        .filter(|fd| !kept.contains(fd))
        .collect();
    if !missing_std.is_empty() {
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open(DEV_NULL)
            .map_err(SandboxError::DevNull)?;
        let null_fd = null.as_raw_fd();
        for &fd in &missing_std {
            if fd != null_fd {
                sys::dup2(null_fd, fd).map_err(SandboxError::CloseFds)?;
            }
        }
        if null_fd <= 2 {
            // It landed on a standard slot that was free: that slot is now
            // the redirect itself and must stay open.
            let _ = null.into_raw_fd();
        }
        // Otherwise `null` drops here and its extra descriptor closes.
    }
    let mut keep_all: Vec<RawFd> = kept.iter().copied().chain(STD_FDS).collect();
    keep_all.sort_unstable();
    keep_all.dedup();
    // Close every gap between kept descriptors, then everything above the
    // highest one. `close_range` needs no /proc and cannot miss a descriptor
    // opened concurrently (there is no other thread; enter() checked).
    let mut next: u32 = 0;
    for &fd in &keep_all {
        let fd = u32::try_from(fd).map_err(|_| SandboxError::CloseFds(Errno::EBADF))?;
        if fd > next {
            sys::close_range(next, fd - 1).map_err(SandboxError::CloseFds)?;
        }
        next = fd.saturating_add(1);
    }
    sys::close_range(next, u32::MAX).map_err(SandboxError::CloseFds)?;
    Ok(kept)
}
