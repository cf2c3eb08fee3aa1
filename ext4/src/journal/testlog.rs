//! Test journals: a device of `fs_blocks` blocks with a journal laid out
//! contiguously inside it, and a writer of transactions encoded by the
//! production writer's [`encode_transaction`] (revoke blocks, then
//! descriptors each followed by its blocks, then the commit block),
//! wrapping around the log area. Tests then damage what they want by
//! editing [`TestLog::dev`] at the positions [`TestLog::write`] returns.

use std::sync::Arc;

use super::map::JournalMap;
use super::replay::Targets;
use super::superblock::{checksum_type, feature, JournalSuperblock, LogArea};
use super::writer::{encode_transaction, LogBlockKind, LogTransaction};
use super::Journal;
use crate::io::{IoChannel, MemChannel};
use crate::num::Pblk;

/// Device block where journal block 0 sits.
pub const JOURNAL_START: u64 = 2048;

/// One transaction to write.
#[derive(Debug, Clone, Default)]
pub struct Tx {
    /// Logged blocks: (filesystem block, contents).
    pub blocks: Vec<(u64, Vec<u8>)>,
    /// Revoked filesystem blocks.
    pub revokes: Vec<u64>,
    /// Commit time (seconds).
    pub time: u64,
    /// Leave the commit block out (a transaction cut short).
    pub no_commit: bool,
}

/// Where a written transaction's blocks went (journal block numbers).
#[derive(Debug, Clone, Default)]
pub struct Placed {
    /// Revoke blocks.
    pub revokes: Vec<u32>,
    /// Descriptor blocks.
    pub descriptors: Vec<u32>,
    /// Logged blocks, in tag order.
    pub data: Vec<u32>,
    /// The commit block.
    pub commit: Option<u32>,
}

/// A device with a journal being written.
#[derive(Debug)]
pub struct TestLog {
    /// Block size.
    pub bs: usize,
    /// Blocks of the device (= the filesystem).
    pub fs_blocks: u64,
    /// The journal superblock (written by [`TestLog::finish`]).
    pub sb: JournalSuperblock,
    /// The device bytes.
    pub dev: Vec<u8>,
    /// Next log position.
    pub pos: u32,
    /// Next transaction ID.
    pub tid: u32,
}

/// Fill byte of filesystem block `b` before any replay (so tests see what
/// was written and what was not).
pub fn background(b: u64) -> u8 {
    (b % 251) as u8 ^ 0x5A
}

/// Contents for a logged block: a recognisable pattern.
pub fn pattern(bs: usize, seed: u64) -> Vec<u8> {
    (0..bs)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 253) as u8)
        .collect()
}

impl TestLog {
    /// A device of `fs_blocks` blocks of `bs` bytes with a journal of
    /// `maxlen` blocks (log area 1..maxlen) and the given features.
    pub fn new(bs: usize, fs_blocks: u64, maxlen: u32, compat: u32, incompat: u32) -> TestLog {
        let mut dev = vec![0u8; bs * fs_blocks as usize];
        for (b, chunk) in dev.chunks_mut(bs).enumerate() {
            chunk.fill(background(b as u64));
        }
        // The journal area starts out zeroed, as mkfs leaves it.
        let j0 = JOURNAL_START as usize * bs;
        dev[j0..j0 + maxlen as usize * bs].fill(0);
        let mut sb = JournalSuperblock::new_v2(bs as u32, maxlen, 1);
        sb.feature_compat = compat;
        sb.feature_incompat = incompat;
        sb.uuid = *b"fsvc-test-uuid!!";
        sb.sequence = 7;
        if sb.csum_v2or3() {
            sb.checksum_type = checksum_type::CRC32C;
        }
        TestLog {
            bs,
            fs_blocks,
            sb,
            dev,
            pos: 1,
            tid: 7,
        }
    }

    /// Starts the log at journal block `pos` with transaction `tid`.
    pub fn start_at(&mut self, pos: u32, tid: u32) {
        self.pos = pos;
        self.tid = tid;
        self.sb.sequence = tid;
    }

    fn area(&self) -> LogArea {
        LogArea {
            first: self.sb.first,
            last: self.sb.maxlen,
        }
    }

    /// Byte range of journal block `j` in the device.
    pub fn jrange(&self, j: u32) -> std::ops::Range<usize> {
        let start = (JOURNAL_START as usize + j as usize) * self.bs;
        start..start + self.bs
    }

    fn put(&mut self, block: &[u8]) -> u32 {
        let j = self.pos;
        let r = self.jrange(j);
        self.dev[r].copy_from_slice(block);
        self.pos = self.area().advance(j, 1);
        j
    }

    /// Appends transaction `tx` at the log's head, encoded by the writer's
    /// [`encode_transaction`].
    pub fn write(&mut self, tx: &Tx) -> Placed {
        if self.sb.start == 0 {
            self.sb.start = self.pos;
        }
        let log_tx = LogTransaction {
            blocks: tx
                .blocks
                .iter()
                .map(|(b, d)| (Pblk(*b), d.clone()))
                .collect(),
            revokes: tx.revokes.iter().map(|&b| Pblk(b)).collect(),
            sec: tx.time,
            nsec: 0,
        };
        let mut placed = Placed::default();
        for b in encode_transaction(&self.sb, self.tid, &log_tx).unwrap() {
            if b.kind == LogBlockKind::Commit && tx.no_commit {
                continue;
            }
            let j = self.put(&b.data);
            match b.kind {
                LogBlockKind::Revoke => placed.revokes.push(j),
                LogBlockKind::Descriptor => placed.descriptors.push(j),
                LogBlockKind::Data => placed.data.push(j),
                LogBlockKind::Commit => placed.commit = Some(j),
            }
        }
        self.tid = self.tid.wrapping_add(1);
        placed
    }

    /// Writes the journal superblock (with its checksum) into the device.
    pub fn finish(&mut self) {
        let mut b = self.sb.encode();
        if self.sb.csum_v2or3() {
            JournalSuperblock::set_checksum(&mut b);
        }
        let r = self.jrange(0);
        self.dev[r.start..r.start + b.len()].copy_from_slice(&b);
    }

    /// The device as a channel.
    pub fn channel(&self) -> Arc<dyn IoChannel> {
        Arc::new(MemChannel::new(self.dev.clone()))
    }

    /// The journal opened on `io`.
    pub fn open(&self, io: &Arc<dyn IoChannel>) -> crate::Result<Journal> {
        Journal::open(
            io.clone(),
            JournalMap::contiguous(Pblk(JOURNAL_START), self.sb.maxlen),
            self.bs as u32,
            u64::from(self.sb.maxlen),
        )
    }

    /// Where replay may write: all of the device from block 1.
    pub fn targets(&self) -> Targets<'static> {
        Targets {
            first: Pblk(1),
            limit: self.fs_blocks,
            superblock: None,
        }
    }
}

/// Every feature combination the tests run over: (name, compat, incompat).
pub const FORMATS: &[(&str, u32, u32)] = {
    use feature::compat::CHECKSUM;
    use feature::incompat::*;
    &[
        ("plain-32", 0, REVOKE),
        ("plain-64", 0, REVOKE | BIT64),
        ("v1-32", CHECKSUM, REVOKE),
        ("v1-64", CHECKSUM, REVOKE | BIT64),
        ("v1-async", CHECKSUM, REVOKE | BIT64 | ASYNC_COMMIT),
        ("v2-32", 0, REVOKE | CSUM_V2),
        ("v2-64", 0, REVOKE | BIT64 | CSUM_V2),
        ("v3-32", 0, REVOKE | CSUM_V3),
        ("v3-64", 0, REVOKE | BIT64 | CSUM_V3),
        ("v3-async", 0, REVOKE | BIT64 | CSUM_V3 | ASYNC_COMMIT),
    ]
};
