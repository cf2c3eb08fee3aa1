//! Writing transactions into the log: the jbd2 commit path
//! (`jbd2_journal_commit_transaction`), the log tail kept in the journal
//! superblock, and checkpoint bookkeeping. The journaled write path puts a
//! committed `Tx`'s metadata blocks (and the revoke records of metadata
//! blocks it freed) in one [`LogTransaction`] and hands it to
//! [`LogWriter::commit`]; once those blocks are written home and flushed it
//! calls [`LogWriter::checkpointed`].
//!
//! Layout of one transaction, as jbd2 writes it: revoke blocks, then
//! descriptor blocks each followed by the blocks its tags name (escaped
//! when they start with the jbd2 magic), then the commit block.
//! [`encode_transaction`] builds those blocks with the module's layouts
//! (the tests' log builder uses it too, so the replay tests read exactly
//! what the writer writes).
//!
//! Ordering (each step durable before the next, as jbd2 with barriers):
//! the superblock's `s_start` is set before the first transaction of an
//! empty log; the transaction's blocks; a device flush; the commit block; a
//! device flush. With `async_commit` the commit block goes with the other
//! blocks (its checksum covers them) and one flush follows. A transaction
//! is durable when [`LogWriter::commit`] returns.
//!
//! Invariants: a transaction never overwrites a block of an older
//! transaction not yet checkpointed (the log keeps one block of slack, so a
//! full log is never mistaken for an empty one); the writer starts only on
//! a journal with nothing to replay; every block is written inside the log
//! area through the journal's map.

use std::collections::VecDeque;

use super::commit::{self, CommitBlock, CRC32_CHKSUM_SIZE};
use super::csum::{block_tag_checksum, crc32_be, set_tail};
use super::descriptor::{tag_flag, BlockTag, DescriptorBlock, TagFormat};
use super::header::{block_type, escape, BlockHeader};
use super::revoke::RevokeBlock;
use super::superblock::{checksum_type, JournalSuperblock};
use super::{tid, Journal};
use crate::error::{Error, Result};
use crate::num::Pblk;

/// One transaction for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTransaction {
    /// Metadata blocks to log: (filesystem block, its new contents, one
    /// whole block). Each block at most once.
    pub blocks: Vec<(Pblk, Vec<u8>)>,
    /// Filesystem blocks whose older logged copies must not be replayed
    /// (metadata blocks freed, possibly reused for data).
    pub revokes: Vec<Pblk>,
    /// Commit time, seconds since the epoch.
    pub sec: u64,
    /// Commit time, nanoseconds.
    pub nsec: u32,
}

/// What a log block of an encoded transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogBlockKind {
    /// A revoke block.
    Revoke,
    /// A descriptor block.
    Descriptor,
    /// A logged copy of a filesystem block (escaped if need be).
    Data,
    /// The commit block.
    Commit,
}

/// One block of an encoded transaction, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBlock {
    /// What it is.
    pub kind: LogBlockKind,
    /// Its bytes (one journal block).
    pub data: Vec<u8>,
}

/// Log blocks a transaction of `blocks` logged blocks and `revokes`
/// revoke records takes in a journal with superblock `sb` (the commit
/// block included).
pub fn log_blocks_needed(sb: &JournalSuperblock, blocks: usize, revokes: usize) -> u64 {
    let bs = sb.block_size as usize;
    let fmt = sb.tag_format();
    let per_desc = fmt.capacity(bs).max(1);
    let per_revoke = RevokeBlock::capacity(bs, sb.bit64(), fmt.has_tail()).max(1);
    let blocks = blocks as u64;
    blocks + blocks.div_ceil(per_desc as u64) + (revokes as u64).div_ceil(per_revoke as u64) + 1
}

/// The blocks of transaction `tid` holding `tx`, for a journal with
/// superblock `sb`, in the order they go into the log.
pub fn encode_transaction(
    sb: &JournalSuperblock,
    tid: u32,
    tx: &LogTransaction,
) -> Result<Vec<LogBlock>> {
    let bs = sb.block_size as usize;
    let fmt: TagFormat = sb.tag_format();
    let seed = sb.csum_seed();
    let tail = fmt.has_tail();
    let mut out = Vec::new();
    let per_revoke = RevokeBlock::capacity(bs, sb.bit64(), tail);
    if per_revoke == 0 && !tx.revokes.is_empty() {
        return Err(Error::Invalid(
            "journal blocks too small for revoke records".into(),
        ));
    }
    for chunk in tx.revokes.chunks(per_revoke.max(1)) {
        let r = RevokeBlock {
            header: BlockHeader::new(block_type::REVOKE, tid),
            records: chunk.to_vec(),
        };
        let mut b = r.encode(bs, sb.bit64(), tail)?;
        if tail {
            set_tail(seed, &mut b);
        }
        out.push(LogBlock {
            kind: LogBlockKind::Revoke,
            data: b,
        });
    }
    // v1 checksum: crc32_be over the descriptor and logged blocks.
    let mut crc = !0u32;
    let cap = fmt.capacity(bs);
    if cap == 0 && !tx.blocks.is_empty() {
        return Err(Error::Invalid("journal blocks too small for a tag".into()));
    }
    for chunk in tx.blocks.chunks(cap.max(1)) {
        let mut tags = Vec::with_capacity(chunk.len());
        let mut logged = Vec::with_capacity(chunk.len());
        for (i, (target, data)) in chunk.iter().enumerate() {
            if data.len() != bs {
                return Err(Error::Invalid(format!(
                    "logged block {target} of {} bytes, journal block size {bs}",
                    data.len()
                )));
            }
            let mut data = data.clone();
            let mut flags = 0;
            if escape(&mut data) {
                flags |= tag_flag::ESCAPE;
            }
            if i > 0 {
                flags |= tag_flag::SAME_UUID;
            }
            if i + 1 == chunk.len() {
                flags |= tag_flag::LAST_TAG;
            }
            let mut tag = BlockTag::new(fmt, *target, flags);
            if i == 0 {
                tag.uuid = Some(sb.uuid);
            }
            // Over the block as it is in the log (escaped), as recovery
            // verifies it.
            tag.set_checksum(fmt, block_tag_checksum(seed, tid, &data));
            tags.push(tag);
            logged.push(data);
        }
        let d = DescriptorBlock {
            header: BlockHeader::new(block_type::DESCRIPTOR, tid),
            tags,
        };
        let mut b = d.encode(fmt, bs)?;
        if tail {
            set_tail(seed, &mut b);
        }
        crc = crc32_be(crc, &b);
        out.push(LogBlock {
            kind: LogBlockKind::Descriptor,
            data: b,
        });
        for data in logged {
            crc = crc32_be(crc, &data);
            out.push(LogBlock {
                kind: LogBlockKind::Data,
                data,
            });
        }
    }
    let mut c = CommitBlock::new(tid, tx.sec, tx.nsec);
    if sb.csum_v1() {
        c.chksum_type = checksum_type::CRC32;
        c.chksum_size = CRC32_CHKSUM_SIZE;
        c.chksum[0] = crc;
    }
    let mut b = c.encode(bs);
    if sb.csum_v2or3() {
        commit::set_csum(seed, &mut b);
    }
    out.push(LogBlock {
        kind: LogBlockKind::Commit,
        data: b,
    });
    Ok(out)
}

/// A transaction in the log, not yet checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Its transaction ID.
    pub tid: u32,
    /// Journal block where it starts.
    pub start: u32,
    /// Log blocks it takes.
    pub len: u32,
}

/// Writes transactions into a journal (see the module docs).
#[derive(Debug)]
pub struct LogWriter {
    journal: Journal,
    /// Where the next transaction goes.
    head: u32,
    /// The next transaction's ID.
    next_tid: u32,
    /// Committed transactions not yet checkpointed, oldest first.
    live: VecDeque<Committed>,
}

impl LogWriter {
    /// A writer on `journal`, which must have nothing to replay (run
    /// recovery first). The log starts at the start of its area, with the
    /// superblock's sequence as the next transaction ID.
    pub fn new(journal: Journal) -> Result<LogWriter> {
        if journal.needs_recovery() {
            return Err(Error::NeedsRecovery);
        }
        let sb = journal.superblock();
        if sb.block_size as usize != journal.block_size() as usize {
            return Err(Error::corrupt(
                "journal superblock",
                "block size differs from the filesystem's",
            ));
        }
        let head = journal.area().first;
        let next_tid = sb.sequence;
        Ok(LogWriter {
            journal,
            head,
            next_tid,
            live: VecDeque::new(),
        })
    }

    /// The journal written to.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The ID the next committed transaction gets.
    pub fn next_tid(&self) -> u32 {
        self.next_tid
    }

    /// Committed transactions not yet checkpointed, oldest first.
    pub fn live(&self) -> impl Iterator<Item = &Committed> {
        self.live.iter()
    }

    /// Log blocks in use by transactions not yet checkpointed.
    pub fn used(&self) -> u64 {
        self.live.iter().map(|c| u64::from(c.len)).sum()
    }

    /// Log blocks free for new transactions (one block of the area is kept
    /// as slack: head never catches up with the tail).
    pub fn free(&self) -> u64 {
        u64::from(self.journal.area().len())
            .saturating_sub(1)
            .saturating_sub(self.used())
    }

    /// Whether `tx` fits in the free log space now (otherwise checkpoint
    /// first: write home and flush the blocks of the oldest transactions,
    /// then [`LogWriter::checkpointed`]).
    pub fn fits(&self, tx: &LogTransaction) -> bool {
        log_blocks_needed(self.journal.superblock(), tx.blocks.len(), tx.revokes.len())
            <= self.free()
    }

    /// Writes `tx` into the log as the next transaction and makes it
    /// durable (see the module docs for the flushes). Refused
    /// ([`Error::Internal`]) when it does not fit ([`LogWriter::fits`]):
    /// the caller checkpoints first, and splits what is larger than the
    /// whole log. On an IO error the log may hold part of the
    /// transaction, never a commit block for it: recovery ignores it.
    pub fn commit(&mut self, tx: &LogTransaction) -> Result<Committed> {
        if !self.fits(tx) {
            return Err(Error::Internal(format!(
                "transaction of {} blocks and {} revokes does not fit the {} free log blocks",
                tx.blocks.len(),
                tx.revokes.len(),
                self.free()
            )));
        }
        let tid = self.next_tid;
        let blocks = encode_transaction(self.journal.superblock(), tid, tx)?;
        let len = u32::try_from(blocks.len())
            .map_err(|_| Error::Invalid("transaction past 2^32 log blocks".into()))?;
        let start = self.head;
        if self.live.is_empty() {
            // The log becomes non-empty: recovery must start here. Durable
            // before any block of the transaction (jbd2 updates the tail
            // with a flush before the first commit after an empty log).
            let mut sb = self.journal.superblock().clone();
            sb.start = start;
            sb.sequence = tid;
            self.journal.write_superblock(sb)?;
            self.journal.io().flush()?;
        }
        let area = self.journal.area();
        let asynchronous = self.journal.superblock().async_commit();
        let mut j = start;
        for b in &blocks {
            if b.kind == LogBlockKind::Commit && !asynchronous {
                // Everything the commit block vouches for is durable first.
                self.journal.io().flush()?;
            }
            self.journal.write_block(j, &b.data)?;
            j = area.advance(j, 1);
        }
        self.journal.io().flush()?;
        let c = Committed { tid, start, len };
        self.live.push_back(c);
        self.head = j;
        self.next_tid = tid.wrapping_add(1);
        Ok(c)
    }

    /// Records that every transaction up to and including `tid` is
    /// checkpointed (its blocks written home and flushed by the caller):
    /// moves the log's tail in the journal superblock past them, or marks
    /// the log empty when none is left, and flushes. Transactions after
    /// `tid` stay in the log.
    pub fn checkpointed(&mut self, tid: u32) -> Result<()> {
        let before = self.live.len();
        while let Some(c) = self.live.front() {
            if !tid::at_or_after(tid, c.tid) {
                break;
            }
            self.live.pop_front();
        }
        if self.live.len() == before {
            return Ok(());
        }
        let mut sb = self.journal.superblock().clone();
        match self.live.front() {
            Some(c) => {
                sb.start = c.start;
                sb.sequence = c.tid;
            }
            None => {
                sb.start = 0;
                sb.sequence = self.next_tid;
            }
        }
        self.journal.write_superblock(sb)?;
        self.journal.io().flush()?;
        Ok(())
    }
}
