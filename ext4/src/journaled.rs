//! Journaled writes: the running jbd2 transaction under [`crate::tx::Tx`]'s
//! commit, the journal commit that logs it, and the checkpoint that writes
//! logged blocks home and moves the log's tail (docs/design-notes.md,
//! "Journal").
//!
//! How the pieces fit:
//! - **Running transaction** ([`Running`], in the write state under the
//!   change lock): every `Tx` commit installs its blocks dirty in the cache
//!   with the running epoch and adds their numbers to `blocks`; the blocks
//!   it freed join `freed` and are not handed out again before the journal
//!   commit that frees them is durable (a crash before it would otherwise
//!   find them in two owners).
//! - **Journal commit** ([`Fs::journal_commit`]): under the journal lock,
//!   it takes the change lock exclusively only to gather the running
//!   transaction (the cache's dirty copies of `blocks`: immutable `Arc`s,
//!   so nothing is copied under the lock) and start the next epoch; it then
//!   writes the log transaction (revoke records, descriptors, blocks, flush,
//!   commit block, flush: [`crate::journal::LogWriter::commit`]) with the
//!   change lock released, so readers and new operations go on meanwhile.
//!   Only when it is durable are the freed blocks released for reuse.
//! - **Checkpoint** ([`Fs::checkpoint`]): writes home, for every block of
//!   the transactions in the log, the newest logged copy (not the cache's
//!   copy, which may belong to the running transaction: home must never
//!   hold an uncommitted block), flushes, then moves the log's tail past
//!   them in the journal superblock. A cache slot becomes clean only when
//!   the copy written is still the one it holds.
//! - **Freed blocks and revokes**: a block freed by a transaction being
//!   committed, if a live (not checkpointed) transaction logged it, gets a
//!   revoke record (replay must not write the old metadata over what the
//!   block holds next) and its logged copies are dropped from the live
//!   transactions once the commit is durable (the checkpoint must not write
//!   it home either: it may be file data by then).
//!
//! Invariants:
//! - Lock order: inode locks → the journal lock ([`JournalLog`]) → the
//!   change lock → leaves. The journal lock is held across log and home
//!   writes and flushes; the change lock never is (only while gathering).
//!   A thread holding the change lock never takes the journal lock.
//! - Home (outside the log) never receives a metadata block of a
//!   transaction whose commit block is not durable.
//! - A freed block is reusable only after the journal commit of the
//!   transaction that freed it; until then the allocators skip it.
//! - Commit order is tid order; checkpoints free the log oldest first.
//! - File data (`Fs::write_data`) goes straight to the device before the
//!   transaction that maps it commits; the flush before the commit block
//!   makes it durable first: data=ordered.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::journal::writer::log_blocks_needed;
use crate::journal::{LogTransaction, LogWriter};
use crate::num::Pblk;
use crate::ranges::RangeSet;

/// A running transaction may hold this fraction of the most one commit
/// can carry before the next operation commits it first (jbd2 limits a
/// transaction to a quarter of the journal, `j_max_transaction_buffers`).
const SOFT_LIMIT_DIVISOR: usize = 4;

/// The running transaction (part of the write state, under the change
/// lock).
#[derive(Debug, Default)]
pub(crate) struct Running {
    /// The cache's transaction id for blocks installed now (starts at 1;
    /// 0 means no journal).
    pub(crate) epoch: u64,
    /// Blocks installed dirty since the last journal commit.
    pub(crate) blocks: BTreeSet<u64>,
    /// Blocks freed since the last journal commit (not reusable yet).
    pub(crate) freed: RangeSet,
    /// Blocks freed by the transaction being committed now (not reusable
    /// until its commit block is durable).
    pub(crate) committing_freed: RangeSet,
    /// Blocks past which the next operation commits first.
    pub(crate) soft_limit: usize,
    /// Most blocks one journal commit can carry (a transaction that would
    /// grow past it is refused).
    pub(crate) hard_limit: usize,
}

impl Running {
    /// Whether the running transaction should be committed before more
    /// is added to it.
    pub(crate) fn over_soft_limit(&self) -> bool {
        self.blocks.len() >= self.soft_limit
    }

    /// Whether `blk` may not be handed out (freed by a transaction whose
    /// journal commit is not durable yet).
    pub(crate) fn first_unavailable(&self, start: u64, len: u64) -> Option<(u64, u64)> {
        match (
            self.freed.first_overlap(start, len),
            self.committing_freed.first_overlap(start, len),
        ) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Blocks not reusable yet.
    pub(crate) fn unavailable_total(&self) -> u64 {
        self.freed.total() + self.committing_freed.total()
    }

    /// Adds a committed `Tx`'s installed blocks and freed ranges.
    pub(crate) fn join(&mut self, installed: impl Iterator<Item = u64>, freed: &RangeSet) {
        self.blocks.extend(installed);
        for (s, l) in freed.iter() {
            let gone: Vec<u64> = self.blocks.range(s..s.saturating_add(l)).copied().collect();
            for b in gone {
                self.blocks.remove(&b);
            }
            self.freed.insert(s, l);
        }
    }
}

/// A committed transaction still in the log (not checkpointed).
#[derive(Debug)]
struct Live {
    /// Its jbd2 transaction id.
    tid: u32,
    /// The copies it logged (the cache may hold newer ones).
    blocks: Vec<(u64, Arc<[u8]>)>,
}

/// Counters of the journal's work, for tests and the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    /// Transactions committed to the log.
    pub commits: u64,
    /// Metadata blocks logged.
    pub blocks_logged: u64,
    /// Revoke records written.
    pub revokes: u64,
    /// Checkpoints that moved the log's tail.
    pub checkpoints: u64,
    /// Transactions in the log now (committed, not checkpointed).
    pub live: u64,
}

/// The journal's side (the journal lock): the log writer and the
/// committed transactions not yet checkpointed.
#[derive(Debug, Default)]
pub(crate) struct JournalLog {
    /// `None` without a journal, or once closed at unmount.
    writer: Option<LogWriter>,
    live: VecDeque<Live>,
    last_commit: Option<Instant>,
    stats: JournalStats,
}

/// The journal lock.
#[derive(Debug, Default)]
pub(crate) struct JournalLock(Mutex<JournalLog>);

impl JournalLock {
    fn lock(&self) -> MutexGuard<'_, JournalLog> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The most logged blocks one commit of `writer`'s journal can carry
/// when the log is empty, without revoke records.
fn commit_capacity(writer: &LogWriter) -> usize {
    let jsb = writer.journal().superblock();
    let room = writer.free();
    // log_blocks_needed grows by at least 1 per block: bisect.
    let (mut lo, mut hi) = (0usize, usize::try_from(room).unwrap_or(usize::MAX));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if log_blocks_needed(jsb, mid, 0) <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The most blocks one commit can carry, or why the journal is too small
/// to write through.
pub(crate) fn usable_capacity(writer: &LogWriter) -> Result<usize> {
    let hard = commit_capacity(writer);
    if hard < 2 * SOFT_LIMIT_DIVISOR {
        return Err(Error::RwRefused(format!(
            "the journal is too small to write through ({hard} blocks per transaction); \
             mount it read-only (-o ro)"
        )));
    }
    Ok(hard)
}

impl Fs {
    /// Whether this mount journals its changes now.
    pub fn is_journaled(&self) -> bool {
        self.w.journal.lock().writer.is_some()
    }

    /// The journal's counters (`None` when not journaling).
    pub fn journal_stats(&self) -> Option<JournalStats> {
        let j = self.w.journal.lock();
        j.writer.as_ref().map(|_| JournalStats {
            live: j.live.len() as u64,
            ..j.stats
        })
    }

    /// Starts journaling with `writer` (at a read-write mount, once the
    /// superblock saying needs_recovery is durable).
    pub(crate) fn start_journal(&self, writer: LogWriter) -> Result<()> {
        let hard = usable_capacity(&writer)?;
        let mut j = self.w.journal.lock();
        let mut guard = self.w.change.write()?;
        guard.state_mut().journal = Some(Running {
            epoch: 1,
            soft_limit: hard / SOFT_LIMIT_DIVISOR,
            hard_limit: hard,
            ..Running::default()
        });
        j.writer = Some(writer);
        j.last_commit = Some(Instant::now());
        Ok(())
    }

    /// Stops journaling (at unmount, after everything was committed and
    /// checkpointed): later writes go home directly.
    pub(crate) fn close_journal(&self) -> Result<()> {
        let mut j = self.w.journal.lock();
        let mut guard = self.w.change.write()?;
        guard.state_mut().journal = None;
        j.writer = None;
        j.live.clear();
        Ok(())
    }

    /// Commits the running transaction to the log (durable on return) if
    /// it holds anything; does nothing without a journal. No error policy
    /// here: the callers record errors (`fail`) once the journal lock is
    /// released.
    pub(crate) fn journal_commit(&self) -> Result<()> {
        let mut j = self.w.journal.lock();
        self.commit_locked(&mut j)
    }

    /// [`Fs::journal_commit`], then a checkpoint of everything in the log:
    /// every committed change is home and durable. `false` (nothing done)
    /// when not journaling.
    pub(crate) fn journal_flush(&self) -> Result<bool> {
        let mut j = self.w.journal.lock();
        if j.writer.is_none() {
            return Ok(false);
        }
        self.commit_locked(&mut j)?;
        self.checkpoint_locked(&mut j)?;
        Ok(true)
    }

    /// With a journal, commits the running transaction when the last
    /// commit (or periodic writeback) is older than `interval`:
    /// `Some(committed)`; `None` without a journal. Without one the caller
    /// writes home when [`Fs::periodic_due`] says so.
    pub(crate) fn journal_commit_if_older(&self, interval: Duration) -> Result<Option<bool>> {
        let mut j = self.w.journal.lock();
        if j.writer.is_none() {
            return Ok(None);
        }
        if j.last_commit.is_some_and(|t| t.elapsed() < interval) {
            return Ok(Some(false));
        }
        self.commit_locked(&mut j)?;
        j.last_commit = Some(Instant::now());
        Ok(Some(true))
    }

    /// Without a journal: whether the last periodic writeback is older
    /// than `interval` (then it counts as done now).
    pub(crate) fn periodic_due(&self, interval: Duration) -> bool {
        let mut j = self.w.journal.lock();
        if j.last_commit.is_some_and(|t| t.elapsed() < interval) {
            return false;
        }
        j.last_commit = Some(Instant::now());
        true
    }

    /// Writes home every block the log holds and empties the log.
    pub fn checkpoint(&self) -> Result<()> {
        let mut j = self.w.journal.lock();
        self.checkpoint_locked(&mut j)
    }

    fn commit_locked(&self, j: &mut JournalLog) -> Result<()> {
        if j.writer.is_none() {
            return Ok(());
        }
        // Gather the running transaction and start the next one.
        let (blocks, freed) = {
            let mut guard = self.w.change.write()?;
            let Some(run) = guard.state_mut().journal.as_mut() else {
                return Ok(());
            };
            if run.blocks.is_empty() && run.freed.is_empty() {
                return Ok(());
            }
            let dev = self.dev();
            let blocks: Vec<(u64, Arc<[u8]>)> = std::mem::take(&mut run.blocks)
                .into_iter()
                .filter_map(|b| dev.dirty_copy(b).map(|d| (b, d)))
                .collect();
            // A failed earlier commit left its freed blocks here: they
            // are freed by this one now.
            let mut freed = std::mem::take(&mut run.freed);
            for (s, l) in run.committing_freed.iter() {
                freed.insert(s, l);
            }
            run.committing_freed = freed.clone();
            run.epoch += 1;
            (blocks, freed)
        };
        let numbers: Vec<u64> = blocks.iter().map(|(b, _)| *b).collect();
        let res = self.log_transaction(j, blocks, &freed);
        let mut guard = self.w.change.write()?;
        if let Some(run) = guard.state_mut().journal.as_mut() {
            match &res {
                // Durable: the freed blocks may be reused now.
                Ok(()) => run.committing_freed = RangeSet::new(),
                // Not committed: its blocks (still dirty in the cache) go
                // with the next commit, its freed blocks stay unavailable.
                Err(_) => run.blocks.extend(numbers),
            }
        }
        res
    }

    /// Writes one log transaction of `blocks`, with revoke records for the
    /// live logged blocks in `freed`, checkpointing first if it does not
    /// fit; on success drops the freed blocks from the live transactions.
    fn log_transaction(
        &self,
        j: &mut JournalLog,
        blocks: Vec<(u64, Arc<[u8]>)>,
        freed: &RangeSet,
    ) -> Result<()> {
        let revokes = |j: &JournalLog| -> Vec<Pblk> {
            let set: BTreeSet<u64> = j
                .live
                .iter()
                .flat_map(|l| l.blocks.iter().map(|(b, _)| *b))
                .filter(|b| freed.contains(*b))
                .collect();
            set.into_iter().map(Pblk).collect()
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut tx = LogTransaction {
            blocks: blocks.iter().map(|(b, d)| (Pblk(*b), d.to_vec())).collect(),
            revokes: revokes(j),
            sec: now.as_secs(),
            nsec: now.subsec_nanos(),
        };
        let fits = j.writer.as_ref().is_some_and(|w| w.fits(&tx));
        if !fits {
            // An empty log needs no revoke records: nothing older replays.
            self.checkpoint_locked(j)?;
            tx.revokes = revokes(j);
        }
        let Some(writer) = j.writer.as_mut() else {
            return Ok(());
        };
        let committed = match writer.commit(&tx) {
            Ok(c) => c,
            Err(e) => {
                if let Error::Io(io) = &e {
                    self.dev().note_write_error(io);
                }
                return Err(e);
            }
        };
        for l in j.live.iter_mut() {
            l.blocks.retain(|(b, _)| !freed.contains(*b));
        }
        j.stats.commits += 1;
        j.stats.blocks_logged += tx.blocks.len() as u64;
        j.stats.revokes += tx.revokes.len() as u64;
        j.last_commit = Some(Instant::now());
        j.live.push_back(Live {
            tid: committed.tid,
            blocks,
        });
        Ok(())
    }

    fn checkpoint_locked(&self, j: &mut JournalLog) -> Result<()> {
        let Some(newest) = j.live.back().map(|l| l.tid) else {
            return Ok(());
        };
        // The newest logged copy of each block.
        let mut home: HashMap<u64, Arc<[u8]>> = HashMap::new();
        for l in j.live.iter().rev() {
            for (b, d) in &l.blocks {
                home.entry(*b).or_insert_with(|| d.clone());
            }
        }
        let dev = self.dev();
        dev.write_home(home.into_iter().collect())?;
        dev.flush()?;
        let Some(writer) = j.writer.as_mut() else {
            return Ok(());
        };
        if let Err(e) = writer.checkpointed(newest) {
            if let Error::Io(io) = &e {
                dev.note_write_error(io);
            }
            return Err(e);
        }
        j.live.clear();
        j.stats.checkpoints += 1;
        Ok(())
    }
}

#[cfg(test)]
#[path = "journaled_tests.rs"]
mod tests;
