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
//! Invariants: a block number is checked against the device size before any
//! backend access ([`IoError::OutOfRange`]); the cache never holds more
//! than its budget (whole blocks; a budget under one block caches nothing);
//! a failed read is never cached. File data (`read_blocks`) bypasses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

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

/// Metadata cache budget used when the caller passes 0.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;
/// Most shards a cache is split into.
const MAX_SHARDS: usize = 16;
/// Fewest slots a shard should have before the cache is split further, so
/// that small caches keep a useful CLOCK sweep instead of one slot per shard.
const MIN_SLOTS_PER_SHARD: usize = 64;
/// Fibonacci hashing multiplier (2^64 / golden ratio).
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
struct Slot {
    blk: u64,
    data: Arc<[u8]>,
    referenced: bool,
}

/// One CLOCK ring: `map` points into `slots`; `None` slots are free.
#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u64, usize>,
    slots: Vec<Option<Slot>>,
    hand: usize,
    capacity: usize,
}

impl Shard {
    fn get(&mut self, blk: u64) -> Option<Arc<[u8]>> {
        let idx = *self.map.get(&blk)?;
        let slot = self.slots.get_mut(idx)?.as_mut()?;
        slot.referenced = true;
        Some(slot.data.clone())
    }

    /// Inserts `data` unless `blk` is already cached; returns the cached copy.
    fn insert(&mut self, blk: u64, data: Arc<[u8]>) -> Arc<[u8]> {
        if let Some(existing) = self.get(blk) {
            return existing;
        }
        if self.capacity == 0 {
            return data;
        }
        let idx = if self.slots.len() < self.capacity {
            self.slots.push(None);
            self.slots.len() - 1
        } else {
            self.victim()
        };
        if let Some(old) = self.slots[idx].take() {
            self.map.remove(&old.blk);
        }
        self.slots[idx] = Some(Slot {
            blk,
            data: data.clone(),
            referenced: false,
        });
        self.map.insert(blk, idx);
        data
    }

    /// CLOCK: the first free or unreferenced slot from the hand, clearing
    /// reference bits on the way. Two sweeps always find one.
    fn victim(&mut self) -> usize {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let idx = self.hand;
            self.hand = (self.hand + 1) % n;
            match &mut self.slots[idx] {
                None => return idx,
                Some(s) if s.referenced => s.referenced = false,
                Some(_) => return idx,
            }
        }
        self.hand
    }

    fn remove(&mut self, blk: u64) {
        if let Some(idx) = self.map.remove(&blk) {
            if let Some(slot) = self.slots.get_mut(idx) {
                *slot = None;
            }
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.hand = 0;
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
    meta_requests: AtomicU64,
    meta_reads: AtomicU64,
    data_blocks_read: AtomicU64,
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
        BlockDevice {
            io,
            block_size,
            shards,
            shard_bits,
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

    fn shard(&self, blk: u64) -> std::sync::MutexGuard<'_, Shard> {
        let idx = if self.shard_bits == 0 {
            0
        } else {
            (blk.wrapping_mul(HASH_MUL) >> (64 - self.shard_bits)) as usize
        };
        self.shards[idx].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A metadata block, through the cache.
    pub fn read_meta(&self, blk: u64) -> Result<Arc<[u8]>, IoError> {
        self.meta_requests.fetch_add(1, Ordering::Relaxed);
        if let Some(hit) = self.shard(blk).get(blk) {
            return Ok(hit);
        }
        // Read without holding the shard lock: other threads keep hitting.
        let mut buf = vec![0u8; self.block_size as usize];
        self.read_raw(blk, &mut buf)?;
        self.meta_reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.shard(blk).insert(blk, buf.into()))
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
    pub fn invalidate_all(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// Forgets one cached block (for when it is freed or rewritten).
    pub fn invalidate(&self, blk: u64) {
        self.shard(blk).remove(blk);
    }

    /// Bytes of block data the cache holds now.
    pub fn cached_bytes(&self) -> usize {
        let blocks: usize = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum();
        blocks * self.block_size as usize
    }

    /// Most bytes the cache will ever hold.
    pub fn cache_capacity_bytes(&self) -> usize {
        let slots: usize = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).capacity)
            .sum();
        slots * self.block_size as usize
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::faulty::FaultyChannel;
    use crate::io::mem::MemChannel;

    const BS: u32 = 1024;

    /// A device of `blocks` blocks where every byte of block `b` is `b as u8`.
    fn device(blocks: u64) -> Arc<MemChannel> {
        let data = (0..blocks)
            .flat_map(|b| std::iter::repeat_n(b as u8, BS as usize))
            .collect();
        Arc::new(MemChannel::read_only(data))
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let dev = BlockDevice::new(device(64), BS, 0);
        let a = dev.read_meta(5).unwrap();
        let b = dev.read_meta(5).unwrap();
        assert!(a.iter().all(|&x| x == 5));
        assert!(Arc::ptr_eq(&a, &b), "second read must be the cached copy");
        dev.read_meta(6).unwrap();
        assert_eq!(
            dev.stats(),
            BlockStats {
                meta_requests: 3,
                meta_reads: 2,
                data_blocks_read: 0
            }
        );
        dev.invalidate(5);
        dev.read_meta(5).unwrap();
        assert_eq!(dev.stats().meta_reads, 3);
        dev.invalidate_all();
        assert_eq!(dev.cached_bytes(), 0);
        dev.read_meta(6).unwrap();
        assert_eq!(dev.stats().meta_reads, 4);
    }

    #[test]
    fn data_reads_bypass_the_cache() {
        let dev = BlockDevice::new(device(64), BS, 0);
        let mut buf = vec![0u8; 3 * BS as usize];
        dev.read_blocks(10, &mut buf).unwrap();
        assert_eq!(buf[0], 10);
        assert_eq!(buf[2 * BS as usize], 12);
        assert_eq!(dev.cached_bytes(), 0);
        let st = dev.stats();
        assert_eq!((st.meta_requests, st.data_blocks_read), (0, 3));
    }

    #[test]
    fn out_of_range_never_reaches_the_device() {
        let dev = BlockDevice::new(device(8), BS, 0);
        for blk in [8u64, u64::MAX / 2, u64::MAX] {
            assert!(matches!(
                dev.read_meta(blk),
                Err(IoError::OutOfRange { .. })
            ));
        }
        let mut buf = vec![0u8; 2 * BS as usize];
        assert!(matches!(
            dev.read_blocks(7, &mut buf),
            Err(IoError::OutOfRange { .. })
        ));
    }

    #[test]
    fn eviction_keeps_the_bound() {
        for budget in [
            0usize,
            1,
            BS as usize,
            8 * BS as usize,
            100 * BS as usize + 17,
        ] {
            let dev = BlockDevice::new(device(512), BS, budget.max(1));
            let cap = dev.cache_capacity_bytes();
            assert!(cap <= budget.max(1), "capacity {cap} over budget {budget}");
            for round in 0..3 {
                for b in 0..512 {
                    let blk = (b * 7 + round) % 512;
                    let got = dev.read_meta(blk).unwrap();
                    assert_eq!(got[0], blk as u8);
                    assert!(dev.cached_bytes() <= cap);
                }
            }
        }
    }

    #[test]
    fn clock_keeps_a_hot_block() {
        // 8 slots, one shard: block 0 is touched between every miss, so its
        // reference bit is always set when the hand passes and it survives.
        let dev = BlockDevice::new(device(256), BS, 8 * BS as usize);
        dev.read_meta(0).unwrap();
        for b in 1..200 {
            dev.read_meta(b).unwrap();
            dev.read_meta(0).unwrap();
        }
        // One miss for block 0 (the first) plus one per other block.
        assert_eq!(dev.stats().meta_reads, 200);
        assert_eq!(dev.cached_bytes(), 8 * BS as usize);
    }

    #[test]
    fn failed_reads_are_not_cached() {
        let faulty = Arc::new(FaultyChannel::new(device(16)));
        let dev = BlockDevice::new(faulty.clone(), BS, 0);
        faulty.fail_read_blocks(BS, 3..4);
        assert!(matches!(dev.read_meta(3), Err(IoError::Injected { .. })));
        faulty.clear_faults();
        assert_eq!(dev.read_meta(3).unwrap()[0], 3);
    }

    #[test]
    fn concurrent_readers_see_right_blocks() {
        let dev = Arc::new(BlockDevice::new(device(1024), BS, 0));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let dev = dev.clone();
                std::thread::spawn(move || {
                    for i in 0..4096u64 {
                        let blk = (i * 13 + t * 101) % 1024;
                        let got = dev.read_meta(blk).unwrap();
                        assert!(got.iter().all(|&x| x == blk as u8), "block {blk}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = dev.stats();
        assert_eq!(st.meta_requests, 4 * 4096);
        // Racing misses may read a block twice, but never more than once per thread.
        assert!((1024..=4 * 1024).contains(&st.meta_reads), "{st:?}");
        // The whole device fits in the default budget: now everything hits.
        let before = dev.stats().meta_reads;
        for blk in 0..1024 {
            dev.read_meta(blk).unwrap();
        }
        assert_eq!(dev.stats().meta_reads, before);
    }
}
