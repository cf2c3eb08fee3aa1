//! The test harness's only `unsafe`: adopting the fd `accept4` returns as a
//! raw number (nix gives no `OwnedFd` for it).
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of a freshly accepted fd.
pub fn adopt_accepted(fd: RawFd) -> OwnedFd {
    // SAFETY: accept4 just installed `fd` in our table and returned it to
    // this caller only; nothing else owns it, so it is closed exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
