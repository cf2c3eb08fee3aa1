//! Taking ownership of fds this process inherited by number (fd 3 from
//! systemd or the helper, fd 4 the helper's log fd).
//!
//! The server's only `unsafe` outside the sandbox: turning an inherited fd
//! number into an [`OwnedFd`] is unsafe by nature. It is made sound by two
//! checks: the number must be open (`F_GETFD` succeeds), and each number
//! can be taken once per process (a registry refuses a second take, which
//! would otherwise create two owners if the number were reused after the
//! first owner closed it).
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// Fd numbers already taken.
static TAKEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Takes inherited fd `fd` if it is open and was not taken before, and
/// marks it close-on-exec (nothing we start should inherit it).
pub(crate) fn take(fd: RawFd) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if taken.contains(&fd) {
        return None;
    }
    // SAFETY: F_GETFD only reads the descriptor flags of `fd`; it is valid
    // to call on any number, open or not (EBADF when not).
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        return None;
    }
    taken.push(fd);
    // SAFETY: `fd` is open (checked just above) and was inherited by number:
    // no Rust object owns it, and the registry guarantees this is the only
    // OwnedFd ever made from this number in this process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Err(e) = fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
        log::debug!("could not set close-on-exec on fd {fd}: {e}");
    }
    Some(owned)
}
