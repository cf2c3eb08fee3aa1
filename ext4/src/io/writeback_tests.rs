//! Tests of write-back: coalescing, pinning, sticky errors, forget, data
//! writes dropping cached copies, journal transaction filters.

use std::sync::{Arc, Mutex};

use crate::io::cache::BlockDevice;
use crate::io::faulty::{AfterCut, FaultyChannel};
use crate::io::mem::MemChannel;
use crate::io::{IoChannel, IoError};

const BS: u32 = 1024;

/// A writable channel that records every write as (first block, blocks).
#[derive(Debug)]
struct Recorder {
    inner: MemChannel,
    writes: Mutex<Vec<(u64, u64)>>,
}

impl Recorder {
    fn new(blocks: u64) -> Arc<Recorder> {
        Arc::new(Recorder {
            inner: MemChannel::new(vec![0u8; (blocks * u64::from(BS)) as usize]),
            writes: Mutex::new(Vec::new()),
        })
    }

    fn take(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }

    fn block(&self, b: u64) -> Vec<u8> {
        let mut v = vec![0u8; BS as usize];
        self.inner.read_at(b * u64::from(BS), &mut v).unwrap();
        v
    }
}

impl IoChannel for Recorder {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        let bs = u64::from(BS);
        self.writes
            .lock()
            .unwrap()
            .push((offset / bs, buf.len() as u64 / bs));
        self.inner.write_at(offset, buf)
    }
    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn is_block_device(&self) -> bool {
        false
    }
    fn is_read_only(&self) -> bool {
        false
    }
}

fn block(fill: u8) -> Arc<[u8]> {
    vec![fill; BS as usize].into()
}

#[test]
fn writeback_sorts_and_coalesces_neighbours() {
    let rec = Recorder::new(64);
    let dev = BlockDevice::new(rec.clone(), BS, 0);
    // Installed out of order; two runs (3..6 and 9..11) and a loner (20).
    for b in [10u64, 4, 20, 3, 9, 5] {
        dev.install_dirty(b, block(b as u8), 0).unwrap();
    }
    assert_eq!(dev.dirty_blocks(), vec![3, 4, 5, 9, 10, 20]);
    assert_eq!(dev.dirty_bytes(), 6 * BS as usize);
    assert_eq!(dev.writeback().unwrap(), 6);
    assert_eq!(rec.take(), vec![(3, 3), (9, 2), (20, 1)]);
    for b in [3u64, 4, 5, 9, 10, 20] {
        assert!(rec.block(b).iter().all(|&x| x == b as u8), "block {b}");
    }
    assert!(dev.dirty_blocks().is_empty());
    assert_eq!(dev.write_stats().meta_writes, 3);
    assert_eq!(dev.write_stats().meta_blocks_written, 6);
    // Clean now: nothing more to write, and the cache still serves them.
    assert_eq!(dev.writeback().unwrap(), 0);
    assert!(rec.take().is_empty());
    assert_eq!(dev.read_meta(4).unwrap()[0], 4);
}

#[test]
fn long_runs_are_split_at_the_largest_write() {
    let rec = Recorder::new(2100);
    let dev = BlockDevice::new(rec.clone(), BS, 4 << 20);
    for b in 0..1500u64 {
        dev.install_dirty(b, block(1), 0).unwrap();
    }
    dev.writeback().unwrap();
    let per = (super::MAX_RUN_BYTES / BS as usize) as u64;
    assert_eq!(rec.take(), vec![(0, per), (per, 1500 - per)]);
}

#[test]
fn dirty_blocks_are_pinned_past_the_budget() {
    let rec = Recorder::new(256);
    // Room for 4 clean blocks.
    let dev = BlockDevice::new(rec.clone(), BS, 4 * BS as usize);
    assert_eq!(dev.cache_capacity_bytes(), 4 * BS as usize);
    for b in 0..10u64 {
        dev.install_dirty(b, block(100 + b as u8), 0).unwrap();
    }
    // Reads of other blocks cannot evict them.
    for b in 100..140u64 {
        dev.read_meta(b).unwrap();
    }
    assert_eq!(dev.dirty_blocks(), (0..10).collect::<Vec<_>>());
    for b in 0..10u64 {
        assert_eq!(dev.read_meta(b).unwrap()[0], 100 + b as u8);
    }
    assert!(rec.take().is_empty(), "nothing written before writeback");
    dev.writeback().unwrap();
    // Clean again: the next reads evict them and the cache is back in budget.
    for b in 100..140u64 {
        dev.read_meta(b).unwrap();
    }
    assert!(
        dev.cached_bytes() <= dev.cache_capacity_bytes(),
        "{} cached, {} budget",
        dev.cached_bytes(),
        dev.cache_capacity_bytes()
    );
    // The limit that triggers early writeback is a quarter of the budget.
    assert_eq!(dev.dirty_limit(), BS as usize);
}

#[test]
fn a_commit_replaces_the_cached_copy_and_stays_dirty_until_written() {
    let rec = Recorder::new(16);
    let dev = BlockDevice::new(rec.clone(), BS, 0);
    assert_eq!(dev.read_meta(7).unwrap()[0], 0);
    dev.install_dirty(7, block(1), 1).unwrap();
    assert_eq!(dev.read_meta(7).unwrap()[0], 1);
    let first = dev.read_meta(7).unwrap();
    dev.install_dirty(7, block(2), 2).unwrap();
    // Writeback that wrote the first copy must not clean the second.
    dev.shard(7).mark_clean(7, &first);
    assert_eq!(dev.dirty_blocks(), vec![7]);
    // A journal checkpoint of transactions up to 1 does not touch it.
    assert_eq!(dev.writeback_through(1).unwrap(), 0);
    assert_eq!(dev.writeback_through(2).unwrap(), 1);
    assert_eq!(rec.block(7)[0], 2);
}

#[test]
fn write_errors_are_sticky_and_blocks_stay_dirty() {
    let mem = Arc::new(MemChannel::new(vec![0u8; 64 * BS as usize]));
    let faulty = Arc::new(FaultyChannel::new(mem.clone()));
    let dev = BlockDevice::new(faulty.clone(), BS, 0);
    for b in [1u64, 2, 8] {
        dev.install_dirty(b, block(9), 0).unwrap();
    }
    faulty.stop_after_writes(1, AfterCut::Fail);
    // The first run gets through, the second fails: reported, kept, dirty.
    assert!(matches!(dev.writeback(), Err(IoError::Injected { .. })));
    assert_eq!(dev.dirty_blocks(), vec![8]);
    assert!(dev.has_write_error());
    // A data write failing later does not replace the first error.
    assert!(dev.write_data(30, &block(1)).is_err());
    assert!(matches!(
        dev.take_write_error(),
        Some(IoError::Injected { offset }) if offset == 8 * u64::from(BS)
    ));
    assert!(dev.take_write_error().is_none(), "reported once");
    faulty.clear_faults();
    assert_eq!(dev.writeback().unwrap(), 1);
    let mut got = vec![0u8; BS as usize];
    mem.read_at(8 * u64::from(BS), &mut got).unwrap();
    assert!(got.iter().all(|&x| x == 9));
    assert!(dev.take_write_error().is_none());
}

#[test]
fn forget_drops_a_dirty_copy_and_invalidate_all_keeps_it() {
    let rec = Recorder::new(16);
    let dev = BlockDevice::new(rec.clone(), BS, 0);
    dev.install_dirty(3, block(5), 0).unwrap();
    dev.install_dirty(4, block(6), 0).unwrap();
    dev.read_meta(9).unwrap();
    dev.invalidate_all();
    assert_eq!(dev.dirty_blocks(), vec![3, 4]);
    assert_eq!(dev.cached_bytes(), 2 * BS as usize);
    dev.forget(3);
    dev.forget_range(0..1000);
    assert!(dev.dirty_blocks().is_empty());
    assert_eq!(dev.dirty_bytes(), 0);
    assert_eq!(dev.writeback().unwrap(), 0);
    assert!(rec.take().is_empty(), "a forgotten block is never written");
    assert!(rec.block(3).iter().all(|&x| x == 0));
}

#[test]
fn data_writes_drop_cached_copies() {
    let rec = Recorder::new(16);
    let dev = BlockDevice::new(rec.clone(), BS, 0);
    // Readahead (or anything) cached blocks 4..8.
    assert_eq!(dev.read_meta(5).unwrap()[0], 0);
    let mut buf = vec![0u8; 2 * BS as usize];
    buf[..BS as usize].fill(7);
    buf[BS as usize..].fill(8);
    dev.write_data(5, &buf).unwrap();
    assert_eq!(rec.take(), vec![(5, 2)]);
    assert_eq!(dev.read_meta(5).unwrap()[0], 7);
    assert_eq!(dev.read_meta(6).unwrap()[0], 8);
    assert_eq!(dev.write_stats().data_blocks_written, 2);
    // Partial blocks and off-device writes are refused before any IO.
    assert!(matches!(
        dev.write_data(5, &[0u8; 100]),
        Err(IoError::BadBuffer { .. })
    ));
    assert!(matches!(
        dev.write_data(16, &block(0)),
        Err(IoError::OutOfRange { .. })
    ));
    assert!(matches!(
        dev.install_dirty(16, block(0), 0),
        Err(IoError::OutOfRange { .. })
    ));
    assert!(rec.take().is_empty());
}
