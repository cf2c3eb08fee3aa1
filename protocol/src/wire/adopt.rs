//! Taking ownership of fds the kernel just installed for us.
//!
//! This is the crate's only `unsafe`: nix's `recvmsg` hands received fds
//! back as raw numbers, and turning a raw number into an [`OwnedFd`] is
//! unsafe by nature. It is sound here because these numbers come from the
//! control buffer `recvmsg` just filled: the kernel installed each one into
//! our fd table for this packet, and nothing else in the process knows or
//! owns it yet.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Wraps fd numbers from an `SCM_RIGHTS` message received a moment ago.
/// Negative numbers (never produced by the kernel) are skipped.
pub(super) fn adopt_received(raw: Vec<RawFd>) -> Vec<OwnedFd> {
    raw.into_iter()
        .filter(|&fd| fd >= 0)
        .map(|fd| {
            // SAFETY: `fd` was installed into this process's fd table by the
            // recvmsg call that filled the control buffer it was parsed from
            // (see the module docs); nothing else owns it, so this OwnedFd is
            // its sole owner and will close it exactly once.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect()
}
