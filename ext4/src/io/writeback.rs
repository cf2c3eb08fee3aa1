//! Write-back of the block cache: how dirty metadata blocks reach the
//! device, and how file data is written past the cache.
//!
//! [`BlockDevice::writeback_through`] collects the dirty blocks (of journal
//! transactions up to a given id; every one without a journal), sorts them
//! by block number and writes each run of neighbours with one device write
//! (at most [`MAX_RUN_BYTES`]), then marks a block clean only if the cache
//! still holds the very copy that was written (a commit that replaced it
//! meanwhile left a newer dirty copy, which stays dirty). It works on the
//! immutable `Arc<[u8]>` copies, so it holds no shard lock during IO.
//!
//! Errors are sticky: a failed write leaves its blocks dirty (they are
//! retried by the next writeback) and the first error is kept until
//! [`BlockDevice::take_write_error`] hands it to the next sync or unmount,
//! so a failure in a background or early writeback is never lost.
//!
//! Invariants: one writeback at a time (a mutex); no block is written
//! outside the device (every slot was range-checked when installed); data
//! writes ([`BlockDevice::write_data`]) drop the cached copies of the blocks
//! they overwrite after the device write, so the cache never serves a copy
//! older than the device's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::cache::BlockDevice;
use super::IoError;

/// Largest single device write writeback issues (a run of neighbouring
/// dirty blocks longer than this is split).
pub const MAX_RUN_BYTES: usize = 1 << 20;
/// Memory alignment of writeback buffers (what `O_DIRECT` wants).
const WRITE_ALIGN: usize = 4096;

/// Write-back bookkeeping of a [`BlockDevice`].
#[derive(Debug, Default)]
pub(super) struct WritebackState {
    /// Serializes writebacks.
    running: Mutex<()>,
    /// The first write error not yet reported.
    first_error: Mutex<Option<IoError>>,
    meta_writes: AtomicU64,
    meta_blocks_written: AtomicU64,
    data_writes: AtomicU64,
    data_blocks_written: AtomicU64,
}

/// Write traffic so far (see [`BlockDevice::write_stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Device writes issued by writeback (one per coalesced run).
    pub meta_writes: u64,
    /// Metadata blocks those writes carried.
    pub meta_blocks_written: u64,
    /// Device writes of file data.
    pub data_writes: u64,
    /// Data blocks written.
    pub data_blocks_written: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BlockDevice {
    /// Writes every dirty block home (see [`BlockDevice::writeback_through`]).
    pub fn writeback(&self) -> Result<usize, IoError> {
        self.writeback_through(u64::MAX)
    }

    /// Writes home the dirty blocks of journal transactions `<= max_tid`,
    /// sorted and coalesced; returns how many blocks were written. On a
    /// device error the remaining runs are still tried, the failed blocks
    /// stay dirty, the first error is kept for
    /// [`BlockDevice::take_write_error`] and also returned.
    pub fn writeback_through(&self, max_tid: u64) -> Result<usize, IoError> {
        let mut dirty: Vec<(u64, Arc<[u8]>)> = Vec::new();
        for shard in self.shards() {
            dirty.extend(
                shard
                    .slots
                    .iter()
                    .flatten()
                    .filter(|s| s.dirty.is_some_and(|t| t <= max_tid))
                    .map(|s| (s.blk, s.data.clone())),
            );
        }
        self.write_home(dirty)
    }

    /// Writes the given copies of blocks home, sorted and coalesced into
    /// runs of neighbours, and marks each block clean if the cache still
    /// holds the very copy written (a newer one stays dirty). Returns how
    /// many blocks were written. The journal's checkpoint writes its
    /// committed copies this way (the cache may already hold newer,
    /// uncommitted ones). Every block number must lie on the device. On a
    /// device error the remaining runs are still tried, the failed blocks
    /// stay dirty, the first error is kept for
    /// [`BlockDevice::take_write_error`] and also returned.
    pub fn write_home(&self, mut blocks: Vec<(u64, Arc<[u8]>)>) -> Result<usize, IoError> {
        let _one_at_a_time = lock(&self.wb.running);
        let dirty = &mut blocks;
        dirty.sort_unstable_by_key(|(b, _)| *b);
        dirty.dedup_by_key(|(b, _)| *b);
        let bs = self.block_size() as usize;
        let per_run = (MAX_RUN_BYTES / bs.max(1)).max(1);
        let mut written = 0;
        let mut first_err: Option<IoError> = None;
        let mut i = 0;
        while i < dirty.len() {
            let start = dirty[i].0;
            let mut j = i + 1;
            while j < dirty.len() && j - i < per_run && dirty[j].0 == start + (j - i) as u64 {
                j += 1;
            }
            let run = &dirty[i..j];
            match self.write_run(start, run) {
                Ok(()) => {
                    for (b, data) in run {
                        self.shard(*b).mark_clean(*b, data);
                    }
                    written += run.len();
                }
                Err(e) => {
                    self.record_error(&e);
                    first_err.get_or_insert(e);
                }
            }
            i = j;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// The dirty copy of `blk`, if the cache holds one (the journal
    /// gathers its running transaction's blocks this way).
    pub fn dirty_copy(&self, blk: u64) -> Option<Arc<[u8]>> {
        self.shard(blk).dirty_copy(blk)
    }

    /// Keeps `e` as the sticky write error (for writes made past the
    /// cache, e.g. the journal's), unless an earlier one is waiting.
    pub fn note_write_error(&self, e: &IoError) {
        self.record_error(e);
    }

    /// One device write of the consecutive blocks `run` (starting at `start`).
    fn write_run(&self, start: u64, run: &[(u64, Arc<[u8]>)]) -> Result<(), IoError> {
        let bs = self.block_size() as usize;
        let offset = self.check_bytes(start, (run.len() * bs) as u64)?;
        let len = run.len() * bs;
        let mut storage = vec![0u8; len + WRITE_ALIGN];
        let at = (WRITE_ALIGN - storage.as_ptr() as usize % WRITE_ALIGN) % WRITE_ALIGN;
        let buf = storage.get_mut(at..at + len).unwrap_or(&mut []);
        for ((_, data), chunk) in run.iter().zip(buf.chunks_exact_mut(bs)) {
            if data.len() != bs {
                return Err(IoError::BadBuffer {
                    want: bs,
                    got: data.len(),
                });
            }
            chunk.copy_from_slice(data);
        }
        self.io().write_at(offset, buf)?;
        self.wb.meta_writes.fetch_add(1, Ordering::Relaxed);
        self.wb
            .meta_blocks_written
            .fetch_add(run.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn record_error(&self, e: &IoError) {
        let mut slot = lock(&self.wb.first_error);
        if slot.is_none() {
            *slot = Some(e.clone());
        }
    }

    /// The first write error since the last call (writeback or data write),
    /// cleared by this call: the caller (sync, unmount) reports it.
    pub fn take_write_error(&self) -> Option<IoError> {
        lock(&self.wb.first_error).take()
    }

    /// Whether a write error is waiting to be reported.
    pub fn has_write_error(&self) -> bool {
        lock(&self.wb.first_error).is_some()
    }

    /// Writes file data: `buf` (whole blocks) at block `blk`, straight to
    /// the device, then drops any cached copy of those blocks (metadata
    /// readahead may have cached them). The caller has checked that the
    /// blocks are the file's and outside every system zone. A failure is
    /// also kept as the sticky write error.
    pub fn write_data(&self, blk: u64, buf: &[u8]) -> Result<(), IoError> {
        let bs = self.block_size() as usize;
        if buf.len() % bs.max(1) != 0 {
            return Err(IoError::BadBuffer {
                want: buf.len().div_ceil(bs.max(1)) * bs,
                got: buf.len(),
            });
        }
        let count = (buf.len() / bs.max(1)) as u64;
        let offset = self.check_bytes(blk, buf.len() as u64)?;
        let res = self.io().write_at(offset, buf);
        // Dropped whether or not the write reached the device: after a
        // failed write its contents are unknown.
        self.forget_range(blk..blk.saturating_add(count));
        if let Err(e) = &res {
            self.record_error(e);
        }
        res?;
        self.wb.data_writes.fetch_add(1, Ordering::Relaxed);
        self.wb
            .data_blocks_written
            .fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    /// Makes everything written so far durable (the channel's flush); a
    /// failure is also kept as the sticky write error.
    pub fn flush(&self) -> Result<(), IoError> {
        self.io().flush().inspect_err(|e| self.record_error(e))
    }

    /// The dirty blocks now, sorted (for tests and the journal).
    pub fn dirty_blocks(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .shards()
            .flat_map(|s| {
                s.slots
                    .iter()
                    .flatten()
                    .filter(|s| s.dirty.is_some())
                    .map(|s| s.blk)
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Write traffic counters so far.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            meta_writes: self.wb.meta_writes.load(Ordering::Relaxed),
            meta_blocks_written: self.wb.meta_blocks_written.load(Ordering::Relaxed),
            data_writes: self.wb.data_writes.load(Ordering::Relaxed),
            data_blocks_written: self.wb.data_blocks_written.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[path = "writeback_tests.rs"]
mod tests;
