//! Block layer over an [`IoChannel`]: whole filesystem blocks by number,
//! with a bounded cache for metadata blocks.
//!
//! The cache holds immutable `Arc<[u8]>` copies of metadata blocks, bounded
//! by a byte budget (default [`DEFAULT_CACHE_BYTES`]). It is split into
//! shards, each behind its own mutex, so FUSE worker threads looking up
//! different blocks do not serialize; a block's shard comes from a
//! multiplicative hash of its number (strided layouts such as one group
//! descriptor per 32768 blocks still spread). Each shard evicts with CLOCK
//! (second chance): an approximation of LRU whose hit path only sets a bit.
//! Device reads happen outside the shard lock; two threads missing the same
//! block may both read it, and the first insertion wins.
//!
//! Readahead: the device is usually opened `O_DIRECT` (no kernel page cache,
//! no kernel readahead), so every miss is a device round trip, and metadata
//! is read in bursts of neighbours (an inode table while a directory is
//! listed or its files are stat'ed, a directory's blocks one after the
//! other). A miss therefore reads more than the one block, in one device
//! read, and caches every block it brought in:
//! - [`BlockDevice::read_meta`] reads the whole device sector around the
//!   block (a 1 KiB block on a 4 KiB-sector device costs the same read as
//!   its three neighbours);
//! - [`BlockDevice::read_meta_ahead`] also takes the span the caller knows
//!   is useful (the used part of a group's inode table, a directory's
//!   contiguous extent) and reads the [`META_WINDOW_BYTES`]-aligned window
//!   around the block, clipped to that span, to the blocks not cached yet
//!   and to a fraction of the cache ([`WINDOW_CACHE_DIVISOR`]), so that a
//!   small cache is never flushed by its own readahead.
//!
//! Write-back (the write path, see `writeback.rs`): a slot is `Clean` or
//! dirty with the journal transaction id it belongs to (0 without a
//! journal). A transaction's commit installs its blocks dirty
//! ([`BlockDevice::install_dirty`]), replacing whatever copy was cached;
//! dirty slots are pinned (never evicted) until writeback has written them
//! home. [`BlockDevice::forget`] drops a freed block's copy, dirty or not.
//! Data writes ([`BlockDevice::write_data`]) drop the cached copies of the
//! blocks they overwrite.
//!
//! Invariants: a block number is checked against the device size before any
//! backend access ([`IoError::OutOfRange`]); the cache never holds more
//! clean blocks than its budget (whole blocks; a budget under one block
//! caches nothing clean); dirty blocks are never evicted, so a shard whose
//! slots are all dirty grows past its share until writeback cleans them
//! (the filesystem writes back early when dirty bytes pass
//! [`BlockDevice::dirty_limit`], so this stays bounded); a failed read is
//! never cached; a block already cached is never replaced by a copy read
//! later (readahead never overwrites, only a commit does); one miss issues
//! one device read of at most [`META_WINDOW_BYTES`] plus a sector on either
//! side. File data (`read_blocks`) bypasses the cache. Blocks near a
//! metadata block may be cached although they are not metadata: every write
//! updates or drops the cached copy of every block it writes, data included.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

use super::{IoChannel, IoError};

/// Counters of block traffic, for tests that check work is linear.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    /// Metadata block requests (hits and misses).
    pub meta_requests: u64,
    /// Device reads issued for metadata (one per miss).
    pub meta_reads: u64,
    /// Blocks those reads brought in (the missed ones plus readahead).
    pub meta_blocks_read: u64,
    /// Device reads issued through `read_blocks` (file data).
    pub data_reads: u64,
    /// Data blocks read from the device through `read_blocks`.
    pub data_blocks_read: u64,
}

/// Metadata cache budget used when the caller passes 0.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;
/// Largest metadata readahead window (see the module documentation): 256
/// KiB is 1024 inodes of 256 bytes, or a directory of a few thousand
/// entries whole. Measured on a VM disk after drop_caches, one direct read
/// costs about the same from 4 KiB to 256 KiB (the round trip dominates),
/// and a listing's inodes (a parent's subdirectories are spread a few
/// hundred inodes apart by `mkfs -d` and by Orlov) then come in a quarter
/// of the reads that 64 KiB windows took.
pub const META_WINDOW_BYTES: u64 = 256 << 10;
/// Memory alignment of readahead buffers (a page: what `O_DIRECT` needs).
const READ_ALIGN: usize = 4096;
/// A readahead window is at most this fraction of the cache capacity.
pub const WINDOW_CACHE_DIVISOR: u64 = 8;
/// Most shards a cache is split into.
const MAX_SHARDS: usize = 16;
/// Fewest slots a shard should have before the cache is split further, so
/// that small caches keep a useful CLOCK sweep instead of one slot per shard.
const MIN_SLOTS_PER_SHARD: usize = 64;
/// Dirty bytes may reach this fraction of the budget before writeback runs early.
const DIRTY_LIMIT_DIVISOR: usize = 4;
/// Fibonacci hashing multiplier (2^64 / golden ratio).
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) blk: u64,
    pub(super) data: Arc<[u8]>,
    referenced: bool,
    /// `Some(tid)` while the slot holds a copy newer than the device's
    /// (pinned: never evicted); `tid` is the journal transaction it
    /// belongs to, 0 without a journal.
    pub(super) dirty: Option<u64>,
}

/// One CLOCK ring: `map` points into `slots`; `None` slots are free.
/// `slots` may grow past `capacity` only with dirty slots (pinned).
#[derive(Debug, Default)]
pub(super) struct Shard {
    map: HashMap<u64, usize>,
    pub(super) slots: Vec<Option<Slot>>,
    hand: usize,
    capacity: usize,
    /// Dirty slots in this shard.
    pub(super) dirty: usize,
}

impl Shard {
    fn contains(&self, blk: u64) -> bool {
        self.map.contains_key(&blk)
    }

    fn get(&mut self, blk: u64) -> Option<Arc<[u8]>> {
        let idx = *self.map.get(&blk)?;
        let slot = self.slots.get_mut(idx)?.as_mut()?;
        slot.referenced = true;
        Some(slot.data.clone())
    }

    /// Inserts a clean `data` unless `blk` is already cached; returns the
    /// cached copy. When every slot is dirty the block is not cached.
    fn insert(&mut self, blk: u64, data: Arc<[u8]>) -> Arc<[u8]> {
        if let Some(existing) = self.get(blk) {
            return existing;
        }
        if let Some(idx) = self.free_slot() {
            self.put(idx, blk, data.clone(), None);
        }
        data
    }

    /// Installs `data` as the dirty copy of `blk` (transaction `tid`),
    /// replacing any cached copy; never fails for want of room (dirty slots
    /// are pinned, so the shard grows past its capacity if it must).
    pub(super) fn install_dirty(&mut self, blk: u64, data: Arc<[u8]>, tid: u64) {
        if let Some(&idx) = self.map.get(&blk) {
            if let Some(Some(slot)) = self.slots.get_mut(idx) {
                if slot.dirty.is_none() {
                    self.dirty += 1;
                }
                slot.data = data;
                slot.dirty = Some(tid);
                slot.referenced = true;
                return;
            }
        }
        // A dirty block always gets a slot: a free or clean one if there
        // is room, else a new one past the capacity.
        let idx = match self.free_slot() {
            Some(idx) => idx,
            None => match self.slots.iter().position(Option::is_none) {
                Some(idx) => idx,
                None => {
                    self.slots.push(None);
                    self.slots.len() - 1
                }
            },
        };
        self.put(idx, blk, data, Some(tid));
    }

    /// The dirty copy of `blk`, if there is one (no reference bit set:
    /// the journal's gathering is not a use).
    pub(super) fn dirty_copy(&self, blk: u64) -> Option<Arc<[u8]>> {
        let idx = *self.map.get(&blk)?;
        let slot = self.slots.get(idx)?.as_ref()?;
        slot.dirty.map(|_| slot.data.clone())
    }

    /// Marks `blk` clean if it still holds `data` (a newer commit may have
    /// replaced it while writeback wrote the old copy: that one stays dirty).
    pub(super) fn mark_clean(&mut self, blk: u64, data: &Arc<[u8]>) {
        let Some(&idx) = self.map.get(&blk) else {
            return;
        };
        if let Some(Some(slot)) = self.slots.get_mut(idx) {
            if slot.dirty.is_some() && Arc::ptr_eq(&slot.data, data) {
                slot.dirty = None;
                self.dirty -= 1;
            }
        }
        self.trim();
    }

    fn put(&mut self, idx: usize, blk: u64, data: Arc<[u8]>, dirty: Option<u64>) {
        if let Some(old) = self.slots.get_mut(idx).and_then(Option::take) {
            self.map.remove(&old.blk);
            if old.dirty.is_some() {
                self.dirty -= 1;
            }
        }
        if dirty.is_some() {
            self.dirty += 1;
        }
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = Some(Slot {
                blk,
                data,
                referenced: false,
                dirty,
            });
            self.map.insert(blk, idx);
        }
    }

    /// A slot for one more clean block: a free one while the shard holds
    /// fewer blocks than its capacity, else the CLOCK victim's; `None` when
    /// the shard is full and every block in it is dirty.
    fn free_slot(&mut self) -> Option<usize> {
        if self.map.len() < self.capacity {
            if self.slots.len() == self.map.len() {
                self.slots.push(None);
                return Some(self.slots.len() - 1);
            }
            return self.victim_from(false);
        }
        self.victim_from(true)
    }

    /// CLOCK: the first free or unreferenced clean slot from the hand,
    /// clearing reference bits on the way; dirty slots are skipped. Two
    /// sweeps find one unless every slot is dirty. With `occupied`, free
    /// slots are skipped too (for evicting).
    fn victim_from(&mut self, occupied: bool) -> Option<usize> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        for _ in 0..2 * n {
            let idx = self.hand % n;
            self.hand = (idx + 1) % n;
            match &mut self.slots[idx] {
                None if occupied => {}
                None => return Some(idx),
                Some(s) if s.dirty.is_some() => {}
                Some(s) if s.referenced => s.referenced = false,
                Some(_) => return Some(idx),
            }
        }
        None
    }

    /// Evicts clean blocks until the shard is back within its capacity
    /// (after dirty blocks that pushed it over were written home).
    fn trim(&mut self) {
        while self.map.len() > self.capacity {
            let Some(idx) = self.victim_from(true) else {
                return;
            };
            if let Some(blk) = self.slots.get(idx).and_then(|s| s.as_ref()).map(|s| s.blk) {
                self.remove(blk);
            }
        }
    }

    /// Drops `blk`'s copy, dirty or not.
    fn remove(&mut self, blk: u64) {
        if let Some(idx) = self.map.remove(&blk) {
            if let Some(slot) = self.slots.get_mut(idx) {
                if slot.as_ref().is_some_and(|s| s.dirty.is_some()) {
                    self.dirty -= 1;
                }
                *slot = None;
            }
        }
        // Slots past the capacity exist only for dirty blocks: give them
        // back once they are free again.
        while self.slots.len() > self.capacity && matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
    }

    /// Drops every cached block of `range` (cheaper of the two ways: by
    /// number when the range is short, by a scan of the map otherwise).
    fn remove_range(&mut self, range: &Range<u64>) {
        let len = range.end.saturating_sub(range.start);
        if len <= self.map.len() as u64 {
            for b in range.clone() {
                self.remove(b);
            }
        } else {
            let hit: Vec<u64> = self
                .map
                .keys()
                .copied()
                .filter(|b| range.contains(b))
                .collect();
            for b in hit {
                self.remove(b);
            }
        }
    }

    /// Drops every clean block (dirty ones stay: they are not written yet).
    fn clear_clean(&mut self) {
        let clean: Vec<u64> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.dirty.is_none())
            .map(|s| s.blk)
            .collect();
        for b in clean {
            self.remove(b);
        }
        if self.map.is_empty() {
            self.slots.clear();
            self.hand = 0;
        }
    }
}

/// Whole-block access with a bounded metadata cache.
#[derive(Debug)]
pub struct BlockDevice {
    io: Arc<dyn IoChannel>,
    block_size: u32,
    shards: Vec<Mutex<Shard>>,
    /// log2 of `shards.len()`.
    shard_bits: u32,
    /// Blocks in the largest readahead window (at least 1).
    window_blocks: u64,
    meta_requests: AtomicU64,
    meta_reads: AtomicU64,
    meta_blocks_read: AtomicU64,
    data_reads: AtomicU64,
    data_blocks_read: AtomicU64,
    /// Write-back state (see `writeback.rs`).
    pub(super) wb: super::writeback::WritebackState,
}

impl BlockDevice {
    /// A block layer over `io` with blocks of `block_size` bytes (a power of two,
    /// 1024..=65536) and a metadata cache of at most `cache_bytes` (0 = default).
    pub fn new(io: Arc<dyn IoChannel>, block_size: u32, cache_bytes: usize) -> BlockDevice {
        let budget = if cache_bytes == 0 {
            DEFAULT_CACHE_BYTES
        } else {
            cache_bytes
        };
        let total_slots = budget / (block_size.max(1) as usize);
        let wanted = (total_slots / MIN_SLOTS_PER_SHARD).clamp(1, MAX_SHARDS);
        // Largest power of two not above `wanted`, so the hash can take top bits.
        let shard_bits = usize::BITS - 1 - wanted.leading_zeros();
        let n_shards = 1usize << shard_bits;
        let per_shard = total_slots / n_shards;
        let shards = (0..n_shards)
            .map(|_| {
                Mutex::new(Shard {
                    capacity: per_shard,
                    ..Shard::default()
                })
            })
            .collect();
        let capacity_blocks = (per_shard * n_shards) as u64;
        let window_blocks = (META_WINDOW_BYTES / u64::from(block_size.max(1)))
            .min(capacity_blocks / WINDOW_CACHE_DIVISOR)
            .max(1);
        BlockDevice {
            io,
            block_size,
            shards,
            shard_bits,
            window_blocks,
            meta_requests: AtomicU64::new(0),
            meta_reads: AtomicU64::new(0),
            meta_blocks_read: AtomicU64::new(0),
            data_reads: AtomicU64::new(0),
            data_blocks_read: AtomicU64::new(0),
            wb: super::writeback::WritebackState::default(),
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

    pub(super) fn shard(&self, blk: u64) -> std::sync::MutexGuard<'_, Shard> {
        let idx = if self.shard_bits == 0 {
            0
        } else {
            (blk.wrapping_mul(HASH_MUL) >> (64 - self.shard_bits)) as usize
        };
        self.shards[idx].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A metadata block, through the cache. A miss reads (and caches) the
    /// whole device sector around it.
    pub fn read_meta(&self, blk: u64) -> Result<Arc<[u8]>, IoError> {
        self.read_meta_ahead(blk, blk..blk.saturating_add(1))
    }

    /// A metadata block, through the cache; a miss reads, in one device
    /// read, the uncached blocks of the readahead window around `blk` that
    /// lie in `span` (the blocks the caller expects to need soon: e.g. the
    /// used part of an inode table, or a directory's extent), and caches
    /// them all. A `span` that does not contain `blk` is ignored.
    pub fn read_meta_ahead(&self, blk: u64, span: Range<u64>) -> Result<Arc<[u8]>, IoError> {
        self.meta_requests.fetch_add(1, Ordering::Relaxed);
        if let Some(hit) = self.shard(blk).get(blk) {
            return Ok(hit);
        }
        let window = self.window(blk, span);
        self.read_window(blk, window.clone()).or_else(|e| {
            // A bad spot elsewhere in the window must not fail this block:
            // retry with only the sector around it.
            let minimal = self.window(blk, blk..blk.saturating_add(1));
            if minimal == window {
                Err(e)
            } else {
                self.read_window(blk, minimal)
            }
        })
    }

    /// Reads `window` (which contains `blk`) in one device read, caches
    /// every block of it and returns `blk`'s.
    fn read_window(&self, blk: u64, window: Range<u64>) -> Result<Arc<[u8]>, IoError> {
        let bs = self.block_size as usize;
        let count = window.end.saturating_sub(window.start);
        // Read without holding any shard lock: other threads keep hitting.
        // A page-aligned buffer lets an O_DIRECT channel read straight into it.
        let len = count as usize * bs;
        let mut storage = vec![0u8; len + READ_ALIGN];
        let start = (READ_ALIGN - storage.as_ptr() as usize % READ_ALIGN) % READ_ALIGN;
        let buf = &mut storage[start..start + len];
        self.read_raw(window.start, buf)?;
        self.meta_reads.fetch_add(1, Ordering::Relaxed);
        self.meta_blocks_read.fetch_add(count, Ordering::Relaxed);
        let mut wanted = None;
        for (b, chunk) in (window.start..).zip(buf.chunks_exact(bs)) {
            let got = self.shard(b).insert(b, chunk.into());
            if b == blk {
                wanted = Some(got);
            }
        }
        // The window always contains `blk` (an off-device `blk` failed in
        // read_raw); the fallback only keeps this free of a panic path.
        match wanted {
            Some(data) => Ok(data),
            None => {
                let mut one = vec![0u8; bs];
                self.read_raw(blk, &mut one)?;
                Ok(one.into())
            }
        }
    }

    /// The blocks a miss of `blk` reads: the aligned window of
    /// `window_blocks` around it, clipped to `span`, to the device and to
    /// the run of uncached blocks around `blk`, then widened to whole
    /// device sectors (a direct-I/O device reads them anyway). Always
    /// contains `blk` when `blk` is on the device.
    fn window(&self, blk: u64, span: Range<u64>) -> Range<u64> {
        let dev_blocks = self.device_blocks();
        let one = blk..blk.saturating_add(1);
        if blk >= dev_blocks {
            // read_raw reports it as out of range.
            return one;
        }
        let span = if span.contains(&blk) { span } else { one };
        let base = blk - blk % self.window_blocks;
        let mut lo = span.start.max(base);
        let mut hi = span
            .end
            .min(base.saturating_add(self.window_blocks))
            .min(dev_blocks);
        if let Some(cached) = (lo..blk).rev().find(|&b| self.shard(b).contains(b)) {
            lo = cached + 1;
        }
        if let Some(cached) = (blk + 1..hi).find(|&b| self.shard(b).contains(b)) {
            hi = cached;
        }
        let per_sector = u64::from(self.io.sector_size() / self.block_size.max(1)).max(1);
        lo -= lo % per_sector;
        hi = hi
            .div_ceil(per_sector)
            .saturating_mul(per_sector)
            .min(dev_blocks);
        lo..hi
    }

    /// Reads `buf.len() / block_size` consecutive blocks starting at `blk`,
    /// bypassing the cache. `buf.len()` must be a multiple of the block size.
    pub fn read_blocks(&self, blk: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.read_raw(blk, buf)?;
        let n = buf.len() as u64 / u64::from(self.block_size);
        self.data_reads.fetch_add(1, Ordering::Relaxed);
        self.data_blocks_read.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Every shard, for walks over the whole cache (writeback, counters).
    pub(super) fn shards(&self) -> impl Iterator<Item = std::sync::MutexGuard<'_, Shard>> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Forgets every clean cached block (dirty ones are kept: they are not
    /// written home yet).
    pub fn invalidate_all(&self) {
        for mut s in self.shards() {
            s.clear_clean();
        }
    }

    /// Drops the cached copy of `blk`, dirty or not: for a block that was
    /// freed (a dirty copy of it must never be written home over whatever
    /// the block holds next).
    pub fn forget(&self, blk: u64) {
        self.shard(blk).remove(blk);
    }

    /// [`BlockDevice::forget`] for every block of `range`.
    pub fn forget_range(&self, range: Range<u64>) {
        if range.end.saturating_sub(range.start) <= MAX_SHARDS as u64 * 4 {
            for b in range {
                self.forget(b);
            }
        } else {
            for mut s in self.shards() {
                s.remove_range(&range);
            }
        }
    }

    /// Installs `data` (exactly one block) as the new, dirty copy of `blk`,
    /// belonging to journal transaction `tid` (0 without a journal). Only a
    /// transaction's commit calls this.
    pub fn install_dirty(&self, blk: u64, data: Arc<[u8]>, tid: u64) -> Result<(), IoError> {
        self.check_range(blk, 1)?;
        if data.len() != self.block_size as usize {
            return Err(IoError::BadBuffer {
                want: self.block_size as usize,
                got: data.len(),
            });
        }
        self.shard(blk).install_dirty(blk, data, tid);
        Ok(())
    }

    /// Whether the cache holds a copy of `blk` (clean or dirty).
    pub fn is_cached(&self, blk: u64) -> bool {
        self.shard(blk).map.contains_key(&blk)
    }

    /// Bytes of block data the cache holds now (clean and dirty).
    pub fn cached_bytes(&self) -> usize {
        let blocks: usize = self.shards().map(|s| s.map.len()).sum();
        blocks * self.block_size as usize
    }

    /// Bytes of dirty (not yet written home) blocks the cache holds.
    pub fn dirty_bytes(&self) -> usize {
        let blocks: usize = self.shards().map(|s| s.dirty).sum();
        blocks * self.block_size as usize
    }

    /// Most bytes the cache holds in clean blocks (its budget).
    pub fn cache_capacity_bytes(&self) -> usize {
        let slots: usize = self.shards().map(|s| s.capacity).sum();
        slots * self.block_size as usize
    }

    /// Dirty bytes past which the filesystem writes back early (a quarter
    /// of the budget, at least one block): commits stop growing the cache
    /// long before pinned blocks could crowd out the clean ones.
    pub fn dirty_limit(&self) -> usize {
        (self.cache_capacity_bytes() / DIRTY_LIMIT_DIVISOR).max(self.block_size as usize)
    }

    /// Traffic counters so far.
    pub fn stats(&self) -> BlockStats {
        BlockStats {
            meta_requests: self.meta_requests.load(Ordering::Relaxed),
            meta_reads: self.meta_reads.load(Ordering::Relaxed),
            meta_blocks_read: self.meta_blocks_read.load(Ordering::Relaxed),
            data_reads: self.data_reads.load(Ordering::Relaxed),
            data_blocks_read: self.data_blocks_read.load(Ordering::Relaxed),
        }
    }

    fn read_raw(&self, blk: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let offset = self.check_bytes(blk, buf.len() as u64)?;
        self.io.read_at(offset, buf)
    }

    /// Byte offset of block `blk` once `len` bytes from it are known to lie
    /// on the device.
    pub(super) fn check_bytes(&self, blk: u64, len: u64) -> Result<u64, IoError> {
        let bs = u64::from(self.block_size);
        let size = self.io.size();
        let out = || IoError::OutOfRange {
            offset: blk.saturating_mul(bs),
            len,
            size,
        };
        let offset = blk.checked_mul(bs).ok_or_else(out)?;
        let end = offset.checked_add(len).ok_or_else(out)?;
        if end > size {
            return Err(out());
        }
        Ok(offset)
    }

    /// [`BlockDevice::check_bytes`] for `count` whole blocks.
    fn check_range(&self, blk: u64, count: u64) -> Result<u64, IoError> {
        self.check_bytes(blk, count.saturating_mul(u64::from(self.block_size)))
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
