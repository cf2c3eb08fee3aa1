//! The three block-device ioctls the IO channel needs, and nothing else.
//!
//! This is the only module of `io` allowed to use `unsafe`: `ioctl(2)` has
//! no safe wrapper. Each call passes a pointer to a local of exactly the
//! type the kernel writes for that request, on a borrowed (hence open) fd.
//! Each is called once, when the channel is made, before the sandbox.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// `_IOR(0x12, 114, size_t)`: device size in bytes (`u64`).
const BLK_IOC_MAGIC: u8 = 0x12;
/// Request number of `BLKGETSIZE64` within the `0x12` ioctl family.
const BLKGETSIZE64_NR: u8 = 114;

// BLKGETSIZE64 is declared with `size_t` but the kernel always writes a u64.
nix::ioctl_read!(blkgetsize64, BLK_IOC_MAGIC, BLKGETSIZE64_NR, u64);
// BLKSSZGET is a "bad" ioctl (`_IO(0x12,104)` with no size encoded) that writes an int.
nix::ioctl_read_bad!(blksszget, libc::BLKSSZGET, libc::c_int);
/// Request number of `BLKROGET` within the `0x12` family (`_IO(0x12,94)`,
/// another "bad" ioctl that writes an int: non-zero when read-only).
const BLKROGET_NR: u8 = 94;
nix::ioctl_read_bad!(
    blkroget,
    nix::request_code_none!(BLK_IOC_MAGIC, BLKROGET_NR),
    libc::c_int
);

/// Size in bytes of the block device behind `fd` (`BLKGETSIZE64`).
pub(crate) fn block_device_size(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: `fd` is a valid open descriptor for the lifetime of the borrow,
    // and BLKGETSIZE64 writes exactly one u64 through the pointer, which
    // points to the local `size`.
    unsafe { blkgetsize64(fd.as_raw_fd(), &mut size) }.map_err(std::io::Error::from)?;
    Ok(size)
}

/// Logical sector size of the block device behind `fd` (`BLKSSZGET`).
pub(crate) fn block_device_sector_size(fd: BorrowedFd<'_>) -> std::io::Result<u32> {
    let mut ssz: libc::c_int = 0;
    // SAFETY: `fd` is a valid open descriptor for the lifetime of the borrow,
    // and BLKSSZGET writes exactly one c_int through the pointer, which points
    // to the local `ssz`.
    unsafe { blksszget(fd.as_raw_fd(), &mut ssz) }.map_err(std::io::Error::from)?;
    u32::try_from(ssz).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("BLKSSZGET returned a negative sector size ({ssz})"),
        )
    })
}

/// Whether the block device behind `fd` is read-only (`BLKROGET`): a
/// read-only loop device or a write-protected disk still opens `O_RDWR`
/// on recent kernels, and refuses the writes themselves (EPERM).
pub(crate) fn block_device_read_only(fd: BorrowedFd<'_>) -> std::io::Result<bool> {
    let mut ro: libc::c_int = 0;
    // SAFETY: `fd` is a valid open descriptor for the lifetime of the borrow,
    // and BLKROGET writes exactly one c_int through the pointer, which points
    // to the local `ro`.
    unsafe { blkroget(fd.as_raw_fd(), &mut ro) }.map_err(std::io::Error::from)?;
    Ok(ro != 0)
}
