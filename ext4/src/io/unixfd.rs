//! The unixfd backend: `pread`/`pwrite` on the fd the helper passed.
//!
//! Everything about the device (block device or regular file, size, logical
//! sector size, whether the fd has `O_DIRECT`) is learned in
//! [`UnixFdChannel::new`], which runs before the sandbox: afterwards the
//! seccomp filter may forbid `ioctl`, and nothing is re-learned.
//!
//! Invariants:
//! - With `O_DIRECT`, every `pread`/`pwrite` issued has a sector-aligned
//!   buffer address, offset and length. Unaligned requests bounce through an
//!   aligned buffer; a partial sector on write is read-modify-written.
//! - Every access is range-checked against the size learned at creation
//!   before any syscall ([`IoError::OutOfRange`]).
//! - While its [`AccessGate`] is closed (the server's: until the sandbox is
//!   entered), no byte of the image is read or written
//!   ([`IoError::NotSandboxed`]); the gate is checked before any syscall.
//! - `EINTR` is retried; a read that ends early is [`IoError::ShortRead`].

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::{fstat, SFlag};

use super::{sys, AccessGate, IoChannel, IoError};

/// Sector size assumed for a regular file read without `O_DIRECT`.
const DEFAULT_SECTOR: u32 = 512;
/// Alignment used for a regular file opened with `O_DIRECT`. The true
/// requirement is the host filesystem's device's logical sector size, which
/// cannot be learned without touching the image or the host's devices; 4096
/// satisfies every common device (512 and 4096), at the cost of bouncing
/// some 1 KiB-block accesses.
const DIRECT_FILE_SECTOR: u32 = 4096;
/// Smallest and largest logical sector sizes accepted from the device.
const MIN_SECTOR: u32 = 512;
/// See [`MIN_SECTOR`].
const MAX_SECTOR: u32 = 65536;
/// Memory alignment of bounce buffers: a page, which satisfies every
/// device's DMA alignment as well as any sector size up to it.
const BOUNCE_ALIGN: usize = 4096;
/// Largest bounce buffer; bigger unaligned requests are done in pieces so a
/// single request cannot make the server allocate without bound.
const MAX_BOUNCE: u64 = 1 << 20;

/// A channel over a block device or image file descriptor.
#[derive(Debug)]
pub struct UnixFdChannel {
    fd: OwnedFd,
    read_only: bool,
    gate: AccessGate,
    block_device: bool,
    size: u64,
    sector: u32,
    direct: bool,
    /// Set before every write, cleared by a successful `flush`.
    dirty: AtomicBool,
    /// Number of fsyncs issued (tests check that clean flushes do none).
    fsyncs: AtomicU64,
    /// Serializes the rare writes that clear `O_DIRECT` on the fd for a moment
    /// (see [`UnixFdChannel::write_buffered`]).
    flag_toggle: Mutex<()>,
}

/// A zeroed byte buffer whose usable part starts at an address aligned to
/// [`BOUNCE_ALIGN`]. Over-allocating a `Vec` and slicing needs no `unsafe`.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + BOUNCE_ALIGN];
        let addr = storage.as_ptr() as usize;
        let start = (BOUNCE_ALIGN - addr % BOUNCE_ALIGN) % BOUNCE_ALIGN;
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    fn get_mut(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(self.len);
        &mut self.storage[self.start..self.start + len]
    }
}

fn os(offset: u64, e: impl Into<std::io::Error>) -> IoError {
    IoError::Os {
        offset,
        source: e.into(),
    }
}

fn invalid(msg: String) -> IoError {
    os(
        0,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, msg),
    )
}

impl UnixFdChannel {
    /// Wraps `fd`, a block device or regular file. Learns everything it will
    /// need later (size, sector size, `O_DIRECT`) now, because it is called
    /// before the sandbox. A fd opened `O_RDONLY`, or a block device the
    /// kernel marks read-only, makes the channel read-only whatever
    /// `read_only` says. Every later access first asks `gate`
    /// (see [`AccessGate`]); this constructor itself touches no image byte.
    pub fn new(fd: OwnedFd, read_only: bool, gate: AccessGate) -> Result<UnixFdChannel, IoError> {
        let st = fstat(&fd).map_err(|e| os(0, e))?;
        let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let block_device = fmt == SFlag::S_IFBLK;
        if !block_device && fmt != SFlag::S_IFREG {
            return Err(invalid(
                "the source is neither a block device nor a regular file".into(),
            ));
        }
        let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL).map_err(|e| os(0, e))?);
        let direct = flags.contains(OFlag::O_DIRECT);
        let mut fd_read_only = (flags & OFlag::O_ACCMODE) == OFlag::O_RDONLY;
        let (size, sector) = if block_device {
            fd_read_only |= sys::block_device_read_only(fd.as_fd()).map_err(|e| os(0, e))?;
            let size = sys::block_device_size(fd.as_fd()).map_err(|e| os(0, e))?;
            let sector = sys::block_device_sector_size(fd.as_fd()).map_err(|e| os(0, e))?;
            (size, sector)
        } else {
            let size = u64::try_from(st.st_size).unwrap_or(0);
            (
                size,
                if direct {
                    DIRECT_FILE_SECTOR
                } else {
                    DEFAULT_SECTOR
                },
            )
        };
        if !sector.is_power_of_two() || !(MIN_SECTOR..=MAX_SECTOR).contains(&sector) {
            return Err(invalid(format!(
                "the device reports an unusable logical sector size ({sector})"
            )));
        }
        Ok(UnixFdChannel {
            fd,
            read_only: read_only || fd_read_only,
            gate,
            block_device,
            size,
            sector,
            direct,
            dirty: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            flag_toggle: Mutex::new(()),
        })
    }

    /// Whether the fd was opened with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// How many fsyncs `flush` has issued.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), IoError> {
        if !self.gate.is_open() {
            return Err(IoError::NotSandboxed);
        }
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(IoError::OutOfRange {
                offset,
                len: len as u64,
                size: self.size,
            }),
        }
    }

    fn aligned(&self, offset: u64, addr: usize, len: usize) -> bool {
        let s = u64::from(self.sector);
        !self.direct || (offset % s == 0 && len as u64 % s == 0 && addr as u64 % s == 0)
    }

    /// `pread` until `buf` is full or end of file; returns the bytes read.
    fn pread_full(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let off = libc::off_t::try_from(at).map_err(|_| invalid(format!("offset {at}")))?;
            match nix::sys::uio::pread(&self.fd, &mut buf[done..], off) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(os(at, e)),
            }
        }
        Ok(done)
    }

    /// `pwrite` all of `buf`.
    fn pwrite_full(&self, buf: &[u8], offset: u64) -> Result<(), IoError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let off = libc::off_t::try_from(at).map_err(|_| invalid(format!("offset {at}")))?;
            match nix::sys::uio::pwrite(&self.fd, &buf[done..], off) {
                Ok(0) => return Err(os(at, std::io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(os(at, e)),
            }
        }
        Ok(())
    }

    /// Sector-aligned span `[start, end)` of the next bounce piece that
    /// begins with byte `pos`, capped at [`MAX_BOUNCE`] bytes.
    fn span(&self, pos: u64, end: u64) -> (u64, u64) {
        let s = u64::from(self.sector);
        let a_start = pos / s * s;
        let a_end = end.div_ceil(s).saturating_mul(s);
        (a_start, a_end.min(a_start + MAX_BOUNCE))
    }

    /// A bounce buffer big enough for the first (largest) piece of `[offset, end)`.
    fn bounce(&self, offset: u64, end: u64) -> AlignedBuf {
        let (a_start, a_end) = self.span(offset, end);
        AlignedBuf::new((a_end - a_start) as usize)
    }

    fn read_bounced(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let end = offset + buf.len() as u64;
        let mut bounce = self.bounce(offset, end);
        let mut pos = offset;
        while pos < end {
            let (a_start, a_end) = self.span(pos, end);
            let piece_end = end.min(a_end);
            let chunk = bounce.get_mut((a_end - a_start) as usize);
            // At the end of a regular file whose size is not a sector
            // multiple the aligned read ends early; only the bytes asked
            // for must be there.
            let got = self.pread_full(chunk, a_start)?;
            if (got as u64) < piece_end - a_start {
                return Err(IoError::ShortRead {
                    offset,
                    wanted: buf.len(),
                    got: (a_start + got as u64).saturating_sub(offset) as usize,
                });
            }
            let src = &chunk[(pos - a_start) as usize..(piece_end - a_start) as usize];
            buf[(pos - offset) as usize..(piece_end - offset) as usize].copy_from_slice(src);
            pos = piece_end;
        }
        Ok(())
    }

    fn write_bounced(&self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        let s = u64::from(self.sector);
        let end = offset + buf.len() as u64;
        if end.div_ceil(s).saturating_mul(s) > self.size {
            // The last sector runs past the end of a regular file whose size
            // is not a sector multiple: an aligned write would grow the file.
            return self.write_buffered(offset, buf);
        }
        let mut bounce = self.bounce(offset, end);
        let mut pos = offset;
        while pos < end {
            let (a_start, a_end) = self.span(pos, end);
            let piece_end = end.min(a_end);
            let len = (a_end - a_start) as usize;
            let chunk = bounce.get_mut(len);
            let sec = s as usize;
            // Read-modify-write the partial sectors at either end.
            if pos > a_start {
                self.read_sector(&mut chunk[..sec], a_start, offset, buf.len())?;
            }
            if piece_end < a_end && (len > sec || pos == a_start) {
                self.read_sector(&mut chunk[len - sec..], a_end - s, offset, buf.len())?;
            }
            chunk[(pos - a_start) as usize..(piece_end - a_start) as usize]
                .copy_from_slice(&buf[(pos - offset) as usize..(piece_end - offset) as usize]);
            self.pwrite_full(chunk, a_start)?;
            pos = piece_end;
        }
        Ok(())
    }

    fn read_sector(
        &self,
        dst: &mut [u8],
        at: u64,
        offset: u64,
        wanted: usize,
    ) -> Result<(), IoError> {
        let got = self.pread_full(dst, at)?;
        if got < dst.len() {
            return Err(IoError::ShortRead {
                offset,
                wanted,
                got: 0,
            });
        }
        Ok(())
    }

    /// Writes through the page cache by clearing `O_DIRECT` on the fd for
    /// the duration of one write. Only used for the unaligned tail of a
    /// regular file (block devices are always a whole number of sectors).
    /// Other threads' I/O meanwhile is still correct (it is aligned either
    /// way); the mutex keeps two such writes from restoring the flag under
    /// each other.
    fn write_buffered(&self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        let _guard = self.flag_toggle.lock().unwrap_or_else(|e| e.into_inner());
        let flags =
            OFlag::from_bits_retain(fcntl(&self.fd, FcntlArg::F_GETFL).map_err(|e| os(offset, e))?);
        fcntl(&self.fd, FcntlArg::F_SETFL(flags - OFlag::O_DIRECT)).map_err(|e| os(offset, e))?;
        let res = self.pwrite_full(buf, offset);
        let restore = fcntl(&self.fd, FcntlArg::F_SETFL(flags)).map_err(|e| os(offset, e));
        res?;
        restore.map(|_| ())
    }
}

impl IoChannel for UnixFdChannel {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.check(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        if self.aligned(offset, buf.as_ptr() as usize, buf.len()) {
            let got = self.pread_full(buf, offset)?;
            if got < buf.len() {
                return Err(IoError::ShortRead {
                    offset,
                    wanted: buf.len(),
                    got,
                });
            }
            return Ok(());
        }
        self.read_bounced(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        if self.read_only {
            return Err(IoError::ReadOnly);
        }
        self.check(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        // Dirty before the write: a write that fails half-way still needs the fsync.
        self.dirty.store(true, Ordering::Release);
        if self.aligned(offset, buf.as_ptr() as usize, buf.len()) {
            return self.pwrite_full(buf, offset);
        }
        self.write_bounced(offset, buf)
    }

    fn flush(&self) -> Result<(), IoError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        nix::unistd::fsync(&self.fd).map_err(|e| {
            // Keep the data marked dirty so a later flush retries.
            self.dirty.store(true, Ordering::Release);
            os(0, e)
        })
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn sector_size(&self) -> u32 {
        self.sector
    }

    fn is_block_device(&self) -> bool {
        self.block_device
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
#[path = "unixfd_tests.rs"]
mod tests;
