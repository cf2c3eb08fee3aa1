//! Fuzz target `journal`: the jbd2 parser and replay on a hostile journal.
//!
//! Input: byte 0 picks the block size (1 KiB or 4 KiB), the rest is the
//! start of the journal (block 0 its superblock); journal blocks past the
//! input read as zeros, so a short input still describes a full-size
//! journal. The journal sits at a fixed place inside a large sparse
//! in-memory device (a filesystem of 2^20 blocks) that records writes.
//! The target opens the journal, replays it, and marks it empty.
//!
//! Errors are fine. A bug is: a panic, a hang (libFuzzer's -timeout), a
//! write outside the filesystem, before its first data block, or into the
//! journal, or a replay that reports success and leaves a journal that
//! still needs recovery once marked empty.
//!
//! Seeds: `fuzz/seed.sh` dumps real journals the kernel left dirty (root
//! needed) into fuzz/corpus/journal/.

#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fsvc_ext4::io::{IoChannel, IoError};
use fsvc_ext4::journal::{Journal, JournalMap, Targets};
use fsvc_ext4::superblock::Superblock;
use fsvc_ext4::Pblk;
use libfuzzer_sys::fuzz_target;

/// Blocks of the filesystem (the device).
const FS_BLOCKS: u64 = 1 << 20;
/// Device block of journal block 0.
const JOURNAL_AT: u64 = 4096;
/// Largest journal the target maps (the superblock may claim less).
const MAX_JOURNAL: u32 = 1 << 16;
/// First block replay may write.
const FIRST: u64 = 1;

/// A sparse device: the input is the journal, everything else reads as
/// zeros until written; every write is recorded.
#[derive(Debug)]
struct Sparse {
    bs: u64,
    journal: Vec<u8>,
    written: Mutex<HashMap<u64, Vec<u8>>>,
}

impl Sparse {
    fn journal_range(&self) -> std::ops::Range<u64> {
        JOURNAL_AT * self.bs..(JOURNAL_AT + u64::from(MAX_JOURNAL)) * self.bs
    }
}

impl IoChannel for Sparse {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let end = offset + buf.len() as u64;
        if end > self.size() {
            return Err(IoError::OutOfRange {
                offset,
                len: buf.len() as u64,
                size: self.size(),
            });
        }
        let written = self.written.lock().unwrap();
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i as u64;
            let blk = at / self.bs;
            *b = if let Some(w) = written.get(&blk) {
                w[(at % self.bs) as usize]
            } else if self.journal_range().contains(&at) {
                let j = (at - JOURNAL_AT * self.bs) as usize;
                self.journal.get(j).copied().unwrap_or(0)
            } else {
                0
            };
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        assert_eq!(offset % self.bs, 0, "unaligned write at {offset}");
        assert_eq!(buf.len() as u64 % self.bs, 0, "partial block write");
        let mut written = self.written.lock().unwrap();
        for (i, chunk) in buf.chunks(self.bs as usize).enumerate() {
            written.insert(offset / self.bs + i as u64, chunk.to_vec());
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }

    fn size(&self) -> u64 {
        FS_BLOCKS * self.bs
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

fuzz_target!(|data: &[u8]| {
    let Some((&sel, journal)) = data.split_first() else {
        return;
    };
    let bs: u64 = if sel & 1 == 0 { 1024 } else { 4096 };
    if journal.len() as u64 > u64::from(MAX_JOURNAL) * bs {
        return;
    }
    let dev = Arc::new(Sparse {
        bs,
        journal: journal.to_vec(),
        written: Mutex::new(HashMap::new()),
    });
    let io: Arc<dyn IoChannel> = dev.clone();
    let map = JournalMap::contiguous(Pblk(JOURNAL_AT), MAX_JOURNAL);
    let Ok(mut j) = Journal::open(io.clone(), map, bs as u32, u64::from(MAX_JOURNAL)) else {
        return;
    };
    let maxlen = u64::from(j.superblock().maxlen);
    let device = io.size();
    // The superblock's block: 1 with 1 KiB blocks, else 0 (not writable
    // here since FIRST is 1, so with 4 KiB blocks the limit never grows).
    let sb_block = 1024 / bs;
    let sb_off = (1024 % bs) as usize;
    let count_of = move |b: &[u8]| -> Option<u64> {
        Superblock::parse(b.get(sb_off..sb_off + 1024)?, device)
            .ok()
            .map(|s| s.blocks_count)
    };
    let limit = FS_BLOCKS / 2;
    let targets = Targets {
        first: Pblk(FIRST),
        limit,
        superblock: Some((Pblk(sb_block), &count_of)),
    };
    let result = j.replay(&targets);
    {
        let written = dev.written.lock().unwrap();
        for &blk in written.keys() {
            assert!(blk >= FIRST, "replay wrote block {blk}, before the first");
            assert!(blk < FS_BLOCKS, "replay wrote block {blk}, past the device");
            assert!(
                !(JOURNAL_AT..JOURNAL_AT + maxlen).contains(&blk),
                "replay wrote block {blk}, inside the journal"
            );
            if blk >= limit {
                // Only a logged superblock copy that parses may raise the limit.
                let sb = written.get(&sb_block).expect("limit raised without a superblock");
                assert!(count_of(sb).is_some_and(|n| blk < n), "block {blk} past the limit");
            }
        }
    }
    if let Ok(r) = result {
        assert!(r.head < j.superblock().maxlen.max(1), "head {} outside the journal", r.head);
        if j.mark_empty(r.end_tid.wrapping_add(1), r.head).is_ok() {
            let again = Journal::open(io, j.map().clone(), bs as u32, u64::from(MAX_JOURNAL));
            if let Ok(again) = again {
                assert!(!again.needs_recovery(), "still dirty after mark_empty");
                let r2 = again.replay(&targets).expect("an empty journal replays");
                assert_eq!(r2.blocks_written, 0);
            }
        }
    }
});
