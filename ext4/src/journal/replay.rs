//! Replaying the log, in the kernel's three passes (`fs/jbd2/recovery.c`):
//!
//! 1. **Scan** from `s_start`/`s_sequence` for the end of the log: each
//!    transaction is a run of descriptor and revoke blocks ending in a
//!    commit block, all carrying its ID; the walk ends at the first block
//!    without the magic, of another transaction or of an unknown type.
//!    Checksums decide too: a commit block failing its checksum (v1 over
//!    the transaction, v2/v3 over itself) ends the log there with
//!    `async_commit` and is corruption without (the mount is refused, as
//!    the kernel refuses it, and nothing has been written); a descriptor
//!    or revoke block failing its tail checksum is stale data from an
//!    older log if its commit time goes backwards (the log ends), and
//!    corruption otherwise.
//! 2. **Revoke**: the revoke records of the transactions found, into a
//!    [`RevokeTable`]; and every tag's target checked (see below) before
//!    anything is written.
//! 3. **Replay** every logged block of those transactions not revoked by
//!    the same or a later transaction, un-escaped, written straight through
//!    the IO channel (never a cache, so no stale copy can survive), then one
//!    flush. A block whose tag checksum (v2/v3) fails is skipped, as the
//!    kernel skips it; the rest is replayed and then recovery fails, as it
//!    does in the kernel, leaving the journal to replay again (e2fsck).
//!
//! Invariants (a hostile journal): every pass reads at most the log area's
//! size in blocks, then stops with an error; every target is checked to lie
//! at or after `Targets::first`, below the filesystem's end and outside the
//! journal before the first write, and again before each write.

use super::commit::{self, CommitBlock, CommitCsum};
use super::csum::{block_tag_checksum, crc32_be, tail_ok};
use super::descriptor::{tag_flag, DescriptorBlock};
use super::handle::Journal;
use super::header::{block_type, unescape, BlockHeader};
use super::reader::LogReader;
use super::revoke::{RevokeBlock, RevokeTable};
use super::superblock::{checksum_type, LogArea};
use super::tid;
use crate::error::{Error, Result};
use crate::num::Pblk;

/// Reads the block count from a logged copy of the block holding the
/// filesystem superblock (`None` when the copy does not parse).
pub type BlockCountOf<'a> = &'a dyn Fn(&[u8]) -> Option<u64>;

/// Where replay may write, for the filesystem holding the journal.
#[derive(Clone, Copy)]
pub struct Targets<'a> {
    /// First block replay may write (ext4: `s_first_data_block`; block 0
    /// of a 1 KiB-block filesystem is the boot block).
    pub first: Pblk,
    /// Replay writes below this block (the filesystem's block count).
    pub limit: u64,
    /// The block holding the filesystem superblock, and how to read the
    /// block count from a logged copy of it: an online resize logs the
    /// grown superblock with the new groups' blocks, which lie past the
    /// old count. A copy that does not parse raises nothing.
    pub superblock: Option<(Pblk, BlockCountOf<'a>)>,
}

impl std::fmt::Debug for Targets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("first", &self.first)
            .field("limit", &self.limit)
            .field("superblock", &self.superblock.map(|(b, _)| b))
            .finish()
    }
}

/// Why the scan found the log to end where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// Journal block without the jbd2 magic.
    NoMagic {
        /// The journal block.
        block: u32,
    },
    /// A block of another transaction.
    OtherTransaction {
        /// The journal block.
        block: u32,
        /// Its transaction ID.
        found: u32,
    },
    /// A block of an unknown type.
    UnknownType {
        /// The journal block.
        block: u32,
        /// Its type.
        block_type: u32,
    },
    /// A transaction whose checksum failed and whose commit time goes
    /// backwards: left over from an older log.
    Stale {
        /// The transaction.
        tid: u32,
    },
    /// A commit block failing its checksum under `async_commit`: that
    /// transaction (the last) is dropped.
    AsyncCommitChecksum {
        /// The transaction.
        tid: u32,
    },
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// First transaction in the log (`s_sequence`).
    pub first_tid: u32,
    /// First transaction not replayed: `first_tid..end_tid` were.
    pub end_tid: u32,
    /// Journal blocks the complete transactions span.
    pub log_blocks: u32,
    /// Whether those blocks wrap around the end of the log area.
    pub wrapped: bool,
    /// The journal block after the last replayed commit block, where jbd2
    /// puts the log head (`s_head`) once the journal is empty again; the
    /// log's first block when nothing was replayed.
    pub head: u32,
    /// Why the log ends there.
    pub end: Option<LogEnd>,
    /// Filesystem blocks written.
    pub blocks_written: u64,
    /// Revoke records read.
    pub revoke_records: u64,
    /// Logged blocks skipped because they were revoked.
    pub revoked_skipped: u64,
    /// Commit blocks accepted as torn after their header.
    pub partial_commits: u32,
}

impl Replay {
    /// Transactions replayed.
    pub fn transactions(&self) -> u32 {
        self.end_tid.wrapping_sub(self.first_tid)
    }
}

/// A position in the log with the pass's budget.
struct Cursor<'j> {
    reader: LogReader<'j>,
    area: LogArea,
    pos: u32,
    /// Blocks consumed so far; a pass may consume at most the area's size.
    used: u32,
    wrapped: bool,
}

impl<'j> Cursor<'j> {
    fn new(j: &'j Journal) -> Cursor<'j> {
        Cursor {
            reader: LogReader::new(&j.io, &j.map, j.block_size, j.area.last),
            area: j.area,
            pos: j.sb.start,
            used: 0,
            wrapped: false,
        }
    }

    /// Takes `n` positions of the budget and moves past them.
    fn advance(&mut self, n: u32) -> Result<()> {
        let used = self.used.saturating_add(n);
        if used > self.area.len() {
            return Err(Error::corrupt(
                "journal",
                format!(
                    "the log runs on for more than the {} blocks of the journal",
                    self.area.len()
                ),
            ));
        }
        self.used = used;
        let next = self.area.advance(self.pos, n);
        if n > 0 && next <= self.pos {
            self.wrapped = true;
        }
        self.pos = next;
        Ok(())
    }

    /// The block at the cursor and its journal block number; moves past it.
    fn next(&mut self) -> Result<(u32, &[u8])> {
        let here = self.pos;
        self.advance(1)?;
        Ok((here, self.reader.block(here)?))
    }
}

fn header_of(b: &[u8]) -> BlockHeader {
    BlockHeader::decode(b).unwrap_or(BlockHeader {
        magic: 0,
        block_type: 0,
        sequence: 0,
    })
}

fn transaction(tid: u32) -> String {
    format!("journal transaction {tid}")
}

/// What the scan found.
#[derive(Debug)]
struct Scan {
    end_tid: u32,
    end: LogEnd,
    /// Blocks of the transactions to replay.
    log_blocks: u32,
    wrapped: bool,
    head: Option<u32>,
    partial_commits: u32,
}

/// Counts of the replay pass.
#[derive(Debug, Default)]
struct Written {
    blocks: u64,
    revoked: u64,
    bad_checksum: u64,
    unreadable: u64,
    /// The first skipped block: (transaction, journal block, target).
    first_bad: Option<(u32, u32, Pblk)>,
}

impl Journal {
    /// Replays the log into the filesystem (the three passes, then a
    /// flush). The journal superblock is not touched: once this returns
    /// Ok the caller marks the journal empty ([`Journal::mark_empty`] with
    /// [`Replay::end_tid`] + 1 and [`Replay::head`]). A journal with
    /// `s_start` 0 replays nothing.
    pub fn replay(&self, targets: &Targets<'_>) -> Result<Replay> {
        let first_tid = self.sb.sequence;
        if !self.needs_recovery() {
            return Ok(Replay {
                first_tid,
                end_tid: first_tid,
                log_blocks: 0,
                wrapped: false,
                head: self.area.first,
                end: None,
                blocks_written: 0,
                revoke_records: 0,
                revoked_skipped: 0,
                partial_commits: 0,
            });
        }
        let scan = self.scan()?;
        let revokes = self.collect_revokes(&scan, targets)?;
        let written = self.write_back(&scan, &revokes, targets);
        // Whatever happened, what was written must reach the disk before
        // anyone looks at it (the kernel syncs after a failed pass too).
        let flushed = self.io.flush();
        let written = written?;
        flushed?;
        if written.bad_checksum > 0 || written.unreadable > 0 {
            let (tid, jblock, target) = written.first_bad.unwrap_or_default();
            return Err(Error::checksum(format!(
                "{} journal block(s) ({} failing their checksum, {} unreadable; the first: \
                 journal block {jblock} of transaction {tid}, for filesystem block {target}); \
                 the rest was replayed and the journal still needs recovery: run e2fsck",
                written.bad_checksum + written.unreadable,
                written.bad_checksum,
                written.unreadable
            )));
        }
        Ok(Replay {
            first_tid,
            end_tid: scan.end_tid,
            log_blocks: scan.log_blocks,
            wrapped: scan.wrapped,
            head: scan.head.unwrap_or(self.area.first),
            end: Some(scan.end),
            blocks_written: written.blocks,
            revoke_records: revokes.records(),
            revoked_skipped: written.revoked,
            partial_commits: scan.partial_commits,
        })
    }

    /// Pass 1: the end of the log.
    fn scan(&self) -> Result<Scan> {
        let sb = &self.sb;
        let fmt = sb.tag_format();
        let seed = sb.csum_seed();
        let mut cur = Cursor::new(self);
        let mut tid = sb.sequence;
        let mut crc = !0u32;
        // Set by a descriptor or revoke block failing its checksum: the
        // commit time then decides between stale data and corruption.
        let mut bad_block_csum = false;
        let mut last_commit_time = 0u64;
        // Set by an async commit failing its checksum: the log ends before it.
        let mut async_end: Option<u32> = None;
        let mut complete = (0u32, false, None);
        let mut partial_commits = 0u32;
        let end = loop {
            let (here, b) = cur.next()?;
            let h = header_of(b);
            if !h.has_magic() {
                break LogEnd::NoMagic { block: here };
            }
            if h.sequence != tid {
                break LogEnd::OtherTransaction {
                    block: here,
                    found: h.sequence,
                };
            }
            match h.block_type {
                block_type::DESCRIPTOR => {
                    if fmt.has_tail() && !tail_ok(seed, b) {
                        bad_block_csum = true;
                    }
                    let d = DescriptorBlock::decode(fmt, b);
                    let n = d.tags.len() as u32;
                    if sb.csum_v1() && async_end.is_none() {
                        crc = crc32_be(crc, b);
                        for _ in 0..n {
                            let (_, data) = cur.next()?;
                            crc = crc32_be(crc, data);
                        }
                    } else {
                        cur.advance(n)?;
                    }
                }
                block_type::REVOKE => {
                    if fmt.has_tail() && !tail_ok(seed, b) {
                        bad_block_csum = true;
                    }
                }
                block_type::COMMIT => {
                    let c = CommitBlock::decode(b).ok_or_else(|| {
                        Error::corrupt(transaction(tid), "commit block too short")
                    })?;
                    let time = c.commit_sec;
                    if bad_block_csum {
                        if time >= last_commit_time {
                            return Err(Error::checksum(format!(
                                "{} (a descriptor or revoke block)",
                                transaction(tid)
                            )));
                        }
                        break LogEnd::Stale { tid };
                    }
                    let good = if sb.csum_v1() || sb.csum_v2or3() {
                        // A later commit after an async commit that failed
                        // its checksum: that one was not the last, so it was
                        // corruption, not a commit cut short.
                        if let Some(bad) = async_end {
                            return Err(failed_commit(bad));
                        }
                        if sb.csum_v1() {
                            let v1 = c.chksum_type == checksum_type::CRC32
                                && c.chksum_size == commit::CRC32_CHKSUM_SIZE
                                && c.chksum[0] == crc;
                            let none = c.chksum_type == 0 && c.chksum_size == 0 && c.chksum[0] == 0;
                            v1 || none
                        } else {
                            match commit::verify_csum(seed, b) {
                                CommitCsum::Good => true,
                                CommitCsum::Partial => {
                                    partial_commits += 1;
                                    true
                                }
                                CommitCsum::Bad => false,
                            }
                        }
                    } else {
                        true
                    };
                    crc = !0;
                    if !good {
                        if time < last_commit_time {
                            break LogEnd::Stale { tid };
                        }
                        if !sb.async_commit() {
                            return Err(failed_commit(tid));
                        }
                        async_end = Some(tid);
                    }
                    last_commit_time = time;
                    tid = tid.wrapping_add(1);
                    if async_end.is_none() {
                        complete = (cur.used, cur.wrapped, Some(cur.pos));
                    }
                }
                other => {
                    break LogEnd::UnknownType {
                        block: here,
                        block_type: other,
                    }
                }
            }
        };
        let (end_tid, end) = match async_end {
            Some(t) => (t, LogEnd::AsyncCommitChecksum { tid: t }),
            None => (tid, end),
        };
        Ok(Scan {
            end_tid,
            end,
            log_blocks: complete.0,
            wrapped: complete.1,
            head: complete.2,
            partial_commits,
        })
    }

    /// Pass 2: revoke records, and every target checked before the first write.
    fn collect_revokes(&self, scan: &Scan, targets: &Targets<'_>) -> Result<RevokeTable> {
        let sb = &self.sb;
        let fmt = sb.tag_format();
        let seed = sb.csum_seed();
        let mut table = RevokeTable::new();
        let mut cur = Cursor::new(self);
        let mut tid = sb.sequence;
        let mut limit = targets.limit;
        // The highest target seen: (block, transaction, journal block).
        let mut highest: Option<(Pblk, u32, u32)> = None;
        while !tid::at_or_after(tid, scan.end_tid) {
            let (here, b) = cur.next()?;
            let h = header_of(b);
            if !h.has_magic() || h.sequence != tid {
                return Err(pass_mismatch("revoke", tid, scan.end_tid));
            }
            match h.block_type {
                block_type::DESCRIPTOR => {
                    if fmt.has_tail() && !tail_ok(seed, b) {
                        return Err(Error::checksum(format!(
                            "descriptor block {here} of {}",
                            transaction(tid)
                        )));
                    }
                    let d = DescriptorBlock::decode(fmt, b);
                    for tag in &d.tags {
                        let t = tag.target(fmt);
                        let jblock = cur.pos;
                        self.check_target(t, targets, tid, jblock)?;
                        if highest.is_none_or(|(h, _, _)| t > h) {
                            highest = Some((t, tid, jblock));
                        }
                        match targets.superblock {
                            Some((sb_block, count_of)) if t == sb_block => {
                                let (_, data) = cur.next()?;
                                let mut copy = data.to_vec();
                                if tag.has(tag_flag::ESCAPE) {
                                    unescape(&mut copy);
                                }
                                if let Some(n) = count_of(&copy) {
                                    limit = limit.max(n);
                                }
                            }
                            _ => cur.advance(1)?,
                        }
                    }
                }
                block_type::REVOKE => {
                    let r = RevokeBlock::decode(b, sb.bit64(), fmt.has_tail())?;
                    for blk in r.records {
                        table.insert(blk, tid)?;
                    }
                }
                block_type::COMMIT => tid = tid.wrapping_add(1),
                _ => return Err(pass_mismatch("revoke", tid, scan.end_tid)),
            }
        }
        if let Some((t, tid, jblock)) = highest {
            if t.0 >= limit {
                return Err(Error::corrupt(
                    transaction(tid),
                    format!(
                        "journal block {jblock} is for block {t}, past the end of the \
                         filesystem ({limit} blocks)"
                    ),
                ));
            }
        }
        Ok(table)
    }

    /// A target must lie at or after `targets.first` and outside the journal.
    fn check_target(&self, t: Pblk, targets: &Targets<'_>, tid: u32, jblock: u32) -> Result<()> {
        let why = if t < targets.first {
            "before the first block of the filesystem"
        } else if self.map.contains(t) {
            "inside the journal itself"
        } else {
            return Ok(());
        };
        Err(Error::corrupt(
            transaction(tid),
            format!("journal block {jblock} is for block {t}, {why}"),
        ))
    }

    /// Pass 3: the writes.
    fn write_back(
        &self,
        scan: &Scan,
        revokes: &RevokeTable,
        targets: &Targets<'_>,
    ) -> Result<Written> {
        let sb = &self.sb;
        let fmt = sb.tag_format();
        let seed = sb.csum_seed();
        let bs = u64::from(self.block_size);
        let mut out = Written::default();
        let mut cur = Cursor::new(self);
        let mut tid = sb.sequence;
        let mut limit = targets.limit;
        let mut buf = vec![0u8; self.block_size as usize];
        while !tid::at_or_after(tid, scan.end_tid) {
            let (_, b) = cur.next()?;
            let h = header_of(b);
            if !h.has_magic() || h.sequence != tid {
                return Err(pass_mismatch("replay", tid, scan.end_tid));
            }
            match h.block_type {
                block_type::DESCRIPTOR => {
                    let d = DescriptorBlock::decode(fmt, b);
                    for tag in &d.tags {
                        let t = tag.target(fmt);
                        let jblock = cur.pos;
                        let data = match cur.next() {
                            Ok((_, data)) => data,
                            Err(Error::Io(_)) => {
                                out.unreadable += 1;
                                out.first_bad.get_or_insert((tid, jblock, t));
                                continue;
                            }
                            Err(e) => return Err(e),
                        };
                        if revokes.is_revoked(t, tid) {
                            out.revoked += 1;
                            continue;
                        }
                        if !tag.checksum_matches(fmt, block_tag_checksum(seed, tid, data)) {
                            out.bad_checksum += 1;
                            out.first_bad.get_or_insert((tid, jblock, t));
                            continue;
                        }
                        buf.copy_from_slice(data);
                        if tag.has(tag_flag::ESCAPE) {
                            unescape(&mut buf);
                        }
                        if let Some((sb_block, count_of)) = targets.superblock {
                            if t == sb_block {
                                if let Some(n) = count_of(&buf) {
                                    limit = limit.max(n);
                                }
                            }
                        }
                        // Checked in pass 2 already; checked again because
                        // this is the write.
                        self.check_target(t, targets, tid, jblock)?;
                        if t.0 >= limit {
                            return Err(Error::corrupt(
                                transaction(tid),
                                format!("block {t} past the end of the filesystem"),
                            ));
                        }
                        let offset = t.0.checked_mul(bs).ok_or_else(|| {
                            Error::corrupt(transaction(tid), format!("block {t} past 2^64 bytes"))
                        })?;
                        self.io.write_at(offset, &buf)?;
                        out.blocks += 1;
                    }
                }
                block_type::COMMIT => tid = tid.wrapping_add(1),
                block_type::REVOKE => {}
                _ => return Err(pass_mismatch("replay", tid, scan.end_tid)),
            }
        }
        Ok(out)
    }
}

fn failed_commit(tid: u32) -> Error {
    Error::corrupt(
        transaction(tid),
        "its commit block fails its checksum (the kernel refuses the journal too); \
         nothing was replayed: run e2fsck, which replays the transactions before it",
    )
}

fn pass_mismatch(pass: &str, at: u32, expected: u32) -> Error {
    Error::corrupt(
        "journal",
        format!("the {pass} pass ended at transaction {at}, the scan at {expected}"),
    )
}
