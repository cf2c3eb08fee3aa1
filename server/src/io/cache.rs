//! Block layer over an [`IoChannel`]: whole filesystem blocks by number,
//! with a bounded cache for metadata blocks.
//!
//! (First cut: no cache yet; the signatures are final. The cache, LRU and
//! bounded by bytes, comes in behind `read_meta`.)
//!
//! Invariant: a block number is checked against the device size before any
//! backend access ([`IoError::OutOfRange`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{IoChannel, IoError};

/// Counters of block traffic, for tests that check work is linear.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    /// Metadata block requests (hits and misses).
    pub meta_requests: u64,
    /// Metadata blocks read from the device (misses).
    pub meta_reads: u64,
    /// Data blocks read from the device through `read_blocks`.
    pub data_blocks_read: u64,
}

/// Whole-block access with a bounded metadata cache.
#[derive(Debug)]
pub struct BlockDevice {
    io: Arc<dyn IoChannel>,
    block_size: u32,
    meta_requests: AtomicU64,
    meta_reads: AtomicU64,
    data_blocks_read: AtomicU64,
}

impl BlockDevice {
    /// A block layer over `io` with blocks of `block_size` bytes (a power of two,
    /// 1024..=65536) and a metadata cache of at most `cache_bytes` (0 = default).
    pub fn new(io: Arc<dyn IoChannel>, block_size: u32, _cache_bytes: usize) -> BlockDevice {
        BlockDevice {
            io,
            block_size,
            meta_requests: AtomicU64::new(0),
            meta_reads: AtomicU64::new(0),
            data_blocks_read: AtomicU64::new(0),
        }
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The channel underneath.
    pub fn io(&self) -> &Arc<dyn IoChannel> {
        &self.io
    }

    /// Number of whole blocks on the device.
    pub fn device_blocks(&self) -> u64 {
        self.io.size() / u64::from(self.block_size)
    }

    /// A metadata block, through the cache.
    pub fn read_meta(&self, blk: u64) -> Result<Arc<[u8]>, IoError> {
        self.meta_requests.fetch_add(1, Ordering::Relaxed);
        let mut buf = vec![0u8; self.block_size as usize];
        self.read_raw(blk, &mut buf)?;
        self.meta_reads.fetch_add(1, Ordering::Relaxed);
        Ok(buf.into())
    }

    /// Reads `buf.len() / block_size` consecutive blocks starting at `blk`,
    /// bypassing the cache. `buf.len()` must be a multiple of the block size.
    pub fn read_blocks(&self, blk: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.read_raw(blk, buf)?;
        let n = buf.len() as u64 / u64::from(self.block_size);
        self.data_blocks_read.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets every cached block.
    pub fn invalidate_all(&self) {}

    /// Traffic counters so far.
    pub fn stats(&self) -> BlockStats {
        BlockStats {
            meta_requests: self.meta_requests.load(Ordering::Relaxed),
            meta_reads: self.meta_reads.load(Ordering::Relaxed),
            data_blocks_read: self.data_blocks_read.load(Ordering::Relaxed),
        }
    }

    fn read_raw(&self, blk: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let bs = u64::from(self.block_size);
        let size = self.io.size();
        let out = || IoError::OutOfRange {
            offset: blk.saturating_mul(bs),
            len: buf.len() as u64,
            size,
        };
        let offset = blk.checked_mul(bs).ok_or_else(out)?;
        let end = offset.checked_add(buf.len() as u64).ok_or_else(out)?;
        if end > size {
            return Err(out());
        }
        self.io.read_at(offset, buf)
    }
}
