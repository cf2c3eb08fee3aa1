//! The few raw system calls the sandbox needs that neither `nix` nor `caps`
//! offers in the form needed: `close_range(2)`, an all-zero `capset(2)`, and
//! dropping every capability-bounding-set entry the running kernel knows
//! (including ones newer than any crate's capability list).
//!
//! Invariant: every function here is a thin, safe wrapper: it takes plain
//! integers, passes no pointer the kernel could keep, and reports failure as
//! an [`Errno`].
#![allow(unsafe_code)]

use std::os::fd::RawFd;

use nix::errno::Errno;

/// Closes every file descriptor in `first..=last`.
///
/// Callers must make sure no live Rust object (`OwnedFd`, `File`, ...) still
/// owns a descriptor in that range; the sandbox documents this as the
/// contract of `SandboxConfig::keep_fds`.
pub(super) fn close_range(first: u32, last: u32) -> Result<(), Errno> {
    // SAFETY: close_range takes three integers and touches no memory of ours.
    // Closing descriptors cannot violate memory safety; the ownership
    // contract above is documented for the caller of `enter`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            libc::c_uint::from(first),
            libc::c_uint::from(last),
            0 as libc::c_uint,
        )
    };
    Errno::result(r).map(drop)
}

/// Sets the effective, permitted and inheritable capability sets of the
/// calling thread to empty with one `capset(2)` (version 3, both 32-bit
/// words), so that no intermediate state keeps a capability.
pub(super) fn clear_capsets() -> Result<(), Errno> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and data are valid, initialised, laid out as the
    // kernel's `__user_cap_header_struct`/`__user_cap_data_struct` (repr C),
    // sized for version 3 (two data structs), and live across the call; the
    // kernel only reads `data` and may write `header.version`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    Errno::result(r).map(drop)
}

/// `_LINUX_CAPABILITY_VERSION_3` from `<linux/capability.h>`.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
#[derive(Debug)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Upper bound on capability numbers probed; the kernel answers EINVAL past
/// its last capability, which ends the loop earlier.
const CAP_PROBE_LIMIT: libc::c_ulong = 64;

/// Drops every capability the kernel still has in the bounding set.
/// Returns how many were dropped. Needs `CAP_SETPCAP` in the effective set.
pub(super) fn drop_bounding_set() -> Result<u32, Errno> {
    let mut dropped = 0;
    for cap in 0..CAP_PROBE_LIMIT {
        // SAFETY: PR_CAPBSET_READ takes an integer capability number and
        // reads no memory of ours.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        match Errno::result(present) {
            Ok(0) => continue,
            Ok(_) => {}
            // EINVAL: past the kernel's last capability.
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(e),
        }
        // SAFETY: as above, integers only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        Errno::result(r)?;
        dropped += 1;
    }
    Ok(dropped)
}

/// Counts capabilities left in the bounding set (for the report).
pub(super) fn bounding_set_len() -> Result<u32, Errno> {
    let mut n = 0;
    for cap in 0..CAP_PROBE_LIMIT {
        // SAFETY: PR_CAPBSET_READ takes an integer and reads no memory.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        match Errno::result(present) {
            Ok(0) => {}
            Ok(_) => n += 1,
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Clears the ambient capability set (`PR_CAP_AMBIENT_CLEAR_ALL`).
pub(super) fn clear_ambient() -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Errno::result(r).map(drop)
}

/// `Ok` when `fd` is an open descriptor (`fcntl(F_GETFD)`).
pub(super) fn fd_is_open(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: F_GETFD reads only the descriptor table entry; an unknown
    // number yields EBADF. No memory is passed.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    Errno::result(r).map(drop)
}

/// `dup2(old, new)`: makes `new` refer to what `old` refers to.
///
/// Used only on the standard descriptors 0/1/2, which no Rust object owns
/// exclusively (std's `Stdout` etc. only borrow the number).
pub(super) fn dup2(old: RawFd, new: RawFd) -> Result<(), Errno> {
    // SAFETY: integers only; replacing 0/1/2 cannot invalidate an owned
    // descriptor (see the function documentation).
    let r = unsafe { libc::dup2(old, new) };
    Errno::result(r).map(drop)
}
