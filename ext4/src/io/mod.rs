//! The IO channel: how the engine reaches the device.
//!
//! [`IoChannel`] is byte-addressed at the bottom so that a backend can hide
//! its alignment rules (an `O_DIRECT` fd needs sector-aligned buffers and
//! offsets; the backend bounces through an aligned buffer and
//! read-modify-writes partial sectors). [`BlockDevice`] sits above it and
//! addresses whole filesystem blocks by number, with a bounded cache for
//! metadata blocks. File data bypasses the cache (the kernel's page cache
//! already holds it above FUSE).
//!
//! Invariants: a read never returns fewer bytes than asked (short reads are
//! [`IoError::ShortRead`]); an access past the end of the device is
//! [`IoError::OutOfRange`] and never reaches the backend.

use std::fmt;

pub mod cache;
pub mod faulty;
pub mod gate;
pub mod mem;
mod sys;
#[cfg(any(test, feature = "test-util"))]
#[doc(hidden)]
pub mod testutil;
pub mod unixfd;
pub mod writeback;

pub use cache::BlockDevice;
pub use faulty::FaultyChannel;
pub use gate::AccessGate;
pub use mem::MemChannel;
pub use unixfd::UnixFdChannel;
pub use writeback::WriteStats;

/// Errors of the IO channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The OS reported an error.
    #[error("device I/O failed at byte {offset}: {source}")]
    Os {
        /// Byte offset of the failed access.
        offset: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device ended before the read was satisfied.
    #[error("short read at byte {offset}: wanted {wanted} bytes, got {got}")]
    ShortRead {
        /// Byte offset of the read.
        offset: u64,
        /// Bytes asked.
        wanted: usize,
        /// Bytes returned.
        got: usize,
    },
    /// The access lies (partly) past the end of the device.
    #[error("access of {len} bytes at byte {offset} is past the end of the device ({size} bytes)")]
    OutOfRange {
        /// Byte offset asked.
        offset: u64,
        /// Length asked.
        len: u64,
        /// Device size.
        size: u64,
    },
    /// Writing to a read-only channel.
    #[error("the device is read-only")]
    ReadOnly,
    /// The channel's [`AccessGate`] is closed: for the server, the image was
    /// touched before the sandbox was entered.
    #[error("refusing to read the image before the sandbox is in place")]
    NotSandboxed,
    /// An injected fault (tests).
    #[error("injected fault at byte {offset}")]
    Injected {
        /// Byte offset of the failed access.
        offset: u64,
    },
    /// A buffer handed to the block layer is not whole blocks.
    #[error("a block buffer of {got} bytes where {want} were expected")]
    BadBuffer {
        /// Bytes expected.
        want: usize,
        /// Bytes given.
        got: usize,
    },
}

/// A copy of an error, so that a write error can be both returned and kept
/// (the sticky write error of writeback). The OS error keeps its errno.
impl Clone for IoError {
    fn clone(&self) -> IoError {
        match self {
            IoError::Os { offset, source } => IoError::Os {
                offset: *offset,
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            IoError::ShortRead {
                offset,
                wanted,
                got,
            } => IoError::ShortRead {
                offset: *offset,
                wanted: *wanted,
                got: *got,
            },
            IoError::OutOfRange { offset, len, size } => IoError::OutOfRange {
                offset: *offset,
                len: *len,
                size: *size,
            },
            IoError::ReadOnly => IoError::ReadOnly,
            IoError::NotSandboxed => IoError::NotSandboxed,
            IoError::Injected { offset } => IoError::Injected { offset: *offset },
            IoError::BadBuffer { want, got } => IoError::BadBuffer {
                want: *want,
                got: *got,
            },
        }
    }
}

/// A device the engine reads and writes. Implementations are shared between
/// FUSE worker threads, hence `Send + Sync` and `&self` methods.
pub trait IoChannel: Send + Sync + fmt::Debug {
    /// Reads exactly `buf.len()` bytes at byte `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes all of `buf` at byte `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), IoError>;
    /// Makes written data durable (fsync); a no-op when nothing was written since the last flush.
    fn flush(&self) -> Result<(), IoError>;
    /// Size of the device in bytes.
    fn size(&self) -> u64;
    /// Logical sector size (alignment unit for O_DIRECT), learned when the channel was made.
    fn sector_size(&self) -> u32;
    /// Whether the device is a block device (otherwise a regular file or memory).
    fn is_block_device(&self) -> bool;
    /// Whether writes are refused.
    fn is_read_only(&self) -> bool;
}
