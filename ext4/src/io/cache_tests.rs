//! Tests of the block layer: cache hits and misses, eviction within the
//! budget, readahead windows and their bounds, concurrent readers.

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

/// A channel over a [`MemChannel`] that reports a chosen sector size
/// and records every read as (first block, block count).
#[derive(Debug)]
struct Recorder {
    inner: Arc<MemChannel>,
    sector: u32,
    reads: Mutex<Vec<(u64, u64)>>,
}

impl Recorder {
    fn new(blocks: u64, sector: u32) -> Arc<Recorder> {
        Arc::new(Recorder {
            inner: device(blocks),
            sector,
            reads: Mutex::new(Vec::new()),
        })
    }

    fn take(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

impl IoChannel for Recorder {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let bs = u64::from(BS);
        self.reads
            .lock()
            .unwrap()
            .push((offset / bs, buf.len() as u64 / bs));
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        self.inner.write_at(offset, buf)
    }
    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn sector_size(&self) -> u32 {
        self.sector
    }
    fn is_block_device(&self) -> bool {
        false
    }
    fn is_read_only(&self) -> bool {
        true
    }
}

/// Blocks in the default readahead window at [`BS`].
const WIN: u64 = META_WINDOW_BYTES / BS as u64;

#[test]
fn a_miss_reads_its_whole_sector() {
    let rec = Recorder::new(64, 4096);
    let dev = BlockDevice::new(rec.clone(), BS, 0);
    assert_eq!(dev.read_meta(5).unwrap()[0], 5);
    // Blocks 4..8 share the 4 KiB sector: one read, all four cached.
    assert_eq!(rec.take(), vec![(4, 4)]);
    for b in 4..8 {
        assert_eq!(dev.read_meta(b).unwrap()[0], b as u8);
    }
    assert_eq!(rec.take(), vec![]);
    let st = dev.stats();
    assert_eq!((st.meta_reads, st.meta_blocks_read), (1, 4));
    // Blocks as large as the sector: just the block.
    let rec = Recorder::new(64, 512);
    let dev = BlockDevice::new(rec.clone(), BS, 0);
    dev.read_meta(5).unwrap();
    assert_eq!(rec.take(), vec![(5, 1)]);
}

#[test]
fn readahead_reads_the_window_clipped_to_the_span_once() {
    // (block, span, expected device read) on a fresh cache.
    let cases: &[(u64, Range<u64>, (u64, u64))] = &[
        (20, 10..50, (10, 40)),
        (20, 0..1000, (0, WIN)),
        (WIN + 3, 0..1000, (WIN, WIN)),
        (WIN + 3, WIN + 3..WIN + 5, (WIN + 3, 2)),
        // A span without the block is ignored.
        (20, 30..40, (20, 1)),
        // Clipped to the device.
        (3 * WIN - 1, 0..u64::MAX, (2 * WIN, WIN)),
    ];
    for (blk, span, want) in cases {
        let rec = Recorder::new(3 * WIN, 512);
        let dev = BlockDevice::new(rec.clone(), BS, 0);
        let got = dev.read_meta_ahead(*blk, span.clone()).unwrap();
        assert_eq!(got[0], *blk as u8);
        assert_eq!(rec.take(), vec![*want], "block {blk} span {span:?}");
        // Everything read is cached: reading it again costs nothing.
        for b in want.0..want.0 + want.1 {
            assert_eq!(dev.read_meta(b).unwrap()[0], b as u8);
        }
        assert_eq!(rec.take(), vec![], "block {blk} span {span:?}");
    }
}

#[test]
fn readahead_stops_at_cached_blocks() {
    let rec = Recorder::new(2 * WIN, 4096);
    let dev = BlockDevice::new(rec.clone(), BS, 0);
    dev.read_meta(30).unwrap(); // caches the sector 28..32
    dev.read_meta(9).unwrap(); // caches 8..12
    rec.take();
    dev.read_meta_ahead(20, 0..WIN).unwrap();
    assert_eq!(rec.take(), vec![(12, 16)]);
    dev.read_meta_ahead(40, 0..WIN).unwrap();
    assert_eq!(rec.take(), vec![(32, WIN - 32)]);
    dev.read_meta_ahead(2, 0..WIN).unwrap();
    assert_eq!(rec.take(), vec![(0, 8)]);
    // The whole window is cached now, each block read exactly once.
    assert_eq!(dev.stats().meta_blocks_read, WIN);
}

#[test]
fn readahead_is_bounded_by_the_cache() {
    // 32 blocks of cache: windows of 32 / WINDOW_CACHE_DIVISOR blocks.
    let rec = Recorder::new(4 * WIN, 512);
    let dev = BlockDevice::new(rec.clone(), BS, 32 * BS as usize);
    let cap = dev.cache_capacity_bytes();
    let per = 32 / WINDOW_CACHE_DIVISOR;
    for b in 0..4 * WIN {
        assert_eq!(dev.read_meta_ahead(b, 0..4 * WIN).unwrap()[0], b as u8);
        assert!(dev.cached_bytes() <= cap);
    }
    let reads = rec.take();
    assert_eq!(reads.len() as u64, 4 * WIN / per);
    assert!(reads.iter().all(|&(_, n)| n == per), "{reads:?}");
}

#[test]
fn a_bad_spot_in_the_window_does_not_fail_the_block() {
    let faulty = Arc::new(FaultyChannel::new(device(2 * WIN)));
    let dev = BlockDevice::new(faulty.clone(), BS, 0);
    faulty.fail_read_blocks(BS, 25..26);
    assert_eq!(dev.read_meta_ahead(20, 0..WIN).unwrap()[0], 20);
    assert!(matches!(
        dev.read_meta_ahead(25, 0..WIN),
        Err(IoError::Injected { .. })
    ));
    faulty.clear_faults();
    assert_eq!(dev.read_meta_ahead(25, 0..WIN).unwrap()[0], 25);
}

#[test]
fn readahead_never_replaces_a_cached_block() {
    // Widening a window to whole 4 KiB sectors re-reads cached blocks;
    // the copies already cached must stay (a future write-back cache
    // keeps its dirty blocks there).
    let rec = Recorder::new(WIN, 4096);
    let dev = BlockDevice::new(rec.clone(), BS, 0);
    let five = dev.read_meta(5).unwrap();
    dev.forget(4);
    rec.take();
    dev.read_meta(4).unwrap();
    assert_eq!(rec.take(), vec![(4, 4)]);
    assert!(Arc::ptr_eq(&five, &dev.read_meta(5).unwrap()));
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
            meta_blocks_read: 2,
            data_reads: 0,
            data_blocks_read: 0
        }
    );
    dev.forget(5);
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
