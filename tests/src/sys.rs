//! The only `unsafe` of the test crate: extended-attribute syscalls that do
//! not follow symlinks (`llistxattr`, `lgetxattr`), which neither std nor nix
//! offers, adopting a freshly received raw fd as an `OwnedFd`, and
//! `move_mount` (attaching a detached mount fd, as a container runtime does).
//!
//! Invariant: every buffer handed to the kernel is a live `Vec` whose length
//! is passed alongside; sizes are re-queried when the value grew in between
//! (`ERANGE`), a bounded number of times.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How often to retry when a value changes size between the size query and
/// the read (`ERANGE`).
const MAX_RETRIES: usize = 8;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Calls `f(buf_ptr, len)` the getxattr-family way: size query, then read.
fn sized_call(mut f: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    for _ in 0..MAX_RETRIES {
        let n = f(std::ptr::null_mut(), 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; n as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let m = f(buf.as_mut_ptr().cast(), buf.len());
        if m < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(m as usize);
        return Ok(buf);
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// Names of the extended attributes of `path` itself (symlinks not followed).
pub fn llistxattr(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let c = cpath(path)?;
    let raw = sized_call(|ptr, len| {
        // SAFETY: `c` is a valid NUL-terminated string; `ptr` is either null
        // with len 0 (size query) or points to a live buffer of `len` bytes.
        unsafe { libc::llistxattr(c.as_ptr(), ptr.cast(), len) }
    })?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Value of extended attribute `name` of `path` itself (symlinks not followed).
pub fn lgetxattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let c = cpath(path)?;
    let n = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains NUL"))?;
    sized_call(|ptr, len| {
        // SAFETY: both strings are valid and NUL-terminated; `ptr` is null
        // with len 0 or a live buffer of `len` bytes.
        unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), ptr, len) }
    })
}

/// Adopts `fd`, a descriptor the caller just received from the kernel
/// (accept, recvmsg SCM_RIGHTS) and owns exclusively.
pub fn adopt_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller got `fd` from a syscall that just created it for
    // this process and has not wrapped or closed it, so ownership is unique.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `MOVE_MOUNT_F_EMPTY_PATH` (<linux/mount.h>): the source is the fd itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `move_mount(mount, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH)`:
/// attaches the detached mount `mount` on `dir` in the caller's mount
/// namespace.
pub fn move_mount_to(mount: std::os::fd::BorrowedFd<'_>, dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let to = cpath(dir)?;
    let empty = c"";
    // SAFETY: both strings are valid NUL-terminated for the call's
    // duration; the fd is open (borrowed).
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
