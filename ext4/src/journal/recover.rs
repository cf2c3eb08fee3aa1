//! Recovery of an ext3/ext4 filesystem at mount, as the kernel's ext4 does
//! it (`ext4_load_journal`, `jbd2_journal_recover`,
//! `ext4_mark_recovery_complete`): the entry point [`recover`].
//!
//! It is a step of its own, run on the IO channel before [`Fs::open`]
//! (which never writes, and refuses a filesystem that still needs
//! recovery unless told `norecovery`): nothing is cached yet, so nothing
//! stale can survive the replay, and a caller that forgets the step gets a
//! refusal, never a filesystem read from under its journal.
//!
//! Order of the writes (each step durable before the next): the replayed
//! blocks, flush; the journal superblock marked empty (`s_start` 0, the
//! sequence past the last replayed transaction, the head where the log
//! ended, the checksum features a default kernel mount sets), flush; the filesystem
//! superblock re-read and re-verified (the journal may have replayed it:
//! ext4 journals its superblock), its error fields restored to what they
//! were before the replay (as `ext4_load_journal` keeps them), the error
//! state set if the journal recorded an abort, `needs_recovery` cleared,
//! its checksum set, flush. A crash between any two steps leaves a
//! filesystem that recovers again correctly.
//!
//! Not done here: the orphan list (see [`crate::orphan`]): freeing orphans
//! needs the write engine, so they are left for it (or e2fsck) and only
//! reported.

use std::fmt;
use std::sync::Arc;

use super::handle::Journal;
use super::map::{JournalMap, Run};
use super::replay::{Replay, Targets};
use super::superblock::JournalSuperblock;
use super::writer::LogWriter;
use crate::error::{Error, Result};
use crate::inode::flags as iflags;
use crate::io::IoChannel;
use crate::num::{InodeNo, Lblk, Pblk};
use crate::super_fields::SuperFields;
use crate::superblock::{
    compat, incompat, Superblock, STATE_ERROR, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, S_JOURNAL_DEV,
};
use crate::{FileKind, Fs, OpenOptions};

/// Metadata cache of the short-lived handle that finds the journal.
const PROBE_CACHE_BYTES: usize = 1 << 20;

/// What [`recover`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The filesystem did not need recovery; nothing was written.
    NotNeeded,
    /// The journal was replayed (or found empty) and `needs_recovery` cleared.
    Recovered(RecoveryReport),
}

/// What a recovery did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The journal inode.
    pub journal_inode: InodeNo,
    /// The replay (`None` when the log was already empty: `s_start` 0).
    pub replay: Option<Replay>,
    /// A journal abort error (`s_errno`, negative errno) found and moved to
    /// the filesystem's error state.
    pub journal_errno: i32,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.replay {
            None => write!(
                f,
                "journal (inode {}) was already empty",
                self.journal_inode
            )?,
            Some(r) => {
                write!(
                    f,
                    "journal replayed: transactions {}..{} ({}), {} log blocks{}, {} blocks \
                     written, {} revoke records, {} revoked blocks skipped",
                    r.first_tid,
                    r.end_tid,
                    r.transactions(),
                    r.log_blocks,
                    if r.wrapped { " (wrapped)" } else { "" },
                    r.blocks_written,
                    r.revoke_records,
                    r.revoked_skipped
                )?;
                if r.partial_commits > 0 {
                    write!(f, ", {} torn commit blocks accepted", r.partial_commits)?;
                }
            }
        }
        if self.journal_errno != 0 {
            write!(
                f,
                "; the journal recorded error {}: the filesystem is marked as having errors",
                self.journal_errno
            )?;
        }
        Ok(())
    }
}

/// Replays the journal of the filesystem on `io` if its superblock says it
/// needs recovery. A read-only channel with a journal to recover is
/// [`Error::NeedsRecovery`] (the kernel's rule: recovery needs write access;
/// `norecovery` is the way to mount such a device).
pub fn recover(io: &Arc<dyn IoChannel>) -> Result<Recovery> {
    let before = read_superblock(io)?;
    let sb = Superblock::parse(&before, io.size())?;
    if !sb.has_incompat(incompat::RECOVER) {
        return Ok(Recovery::NotNeeded);
    }
    if io.is_read_only() {
        return Err(Error::NeedsRecovery);
    }
    let mut journal = open_internal(io, &sb)?;
    let journal_inode = sb.journal_inum;
    let journal_errno = journal.superblock().errno;

    let replay = if journal.needs_recovery() {
        let device = io.size();
        let offset = SUPERBLOCK_OFFSET % u64::from(sb.block_size);
        let count_of = move |block: &[u8]| -> Option<u64> {
            let raw = block.get(offset as usize..offset as usize + SUPERBLOCK_SIZE)?;
            Superblock::parse(raw, device).ok().map(|s| s.blocks_count)
        };
        let targets = Targets {
            first: Pblk(u64::from(sb.first_data_block)),
            limit: sb.blocks_count,
            superblock: Some((sb.superblock_block(), &count_of)),
        };
        Some(journal.replay(&targets)?)
    } else {
        None
    };

    if let Some(r) = &replay {
        if journal.superblock().version() >= 2 {
            let (compat, incompat) = default_mount_features(journal.superblock(), &sb);
            journal.set_features(compat, incompat);
        }
        journal.mark_empty(r.end_tid.wrapping_add(1), r.head)?;
        io.flush()?;
    } else if journal_errno != 0 {
        // `ext4_clear_journal_err`: the error moves to the filesystem.
        let mut jsb = journal.superblock().clone();
        jsb.errno = 0;
        journal.write_superblock(jsb)?;
        io.flush()?;
    }

    let mut after = read_superblock(io)?;
    let replayed = Superblock::parse(&after, io.size()).map_err(|e| {
        Error::corrupt(
            "superblock after journal replay",
            format!("{e}; the journal was replayed: run e2fsck"),
        )
    })?;
    let kept = SuperFields::decode(&sb, &before);
    let mut fields = SuperFields::decode(&replayed, &after);
    // `ext4_load_journal` keeps the error record across the replay: a
    // replayed older superblock must not erase errors recorded since.
    fields.error_count = kept.error_count;
    fields.first_error = kept.first_error;
    fields.last_error = kept.last_error;
    fields.state |= kept.state & STATE_ERROR;
    if journal_errno != 0 {
        fields.state |= STATE_ERROR;
    }
    fields.feature_incompat &= !incompat::RECOVER;
    fields.encode(&replayed, &mut after)?;
    io.write_at(SUPERBLOCK_OFFSET, &after)?;
    io.flush()?;
    Ok(Recovery::Recovered(RecoveryReport {
        journal_inode,
        replay,
        journal_errno,
    }))
}

/// Opens the internal journal of the filesystem whose superblock is `sb`
/// (read and verified on `io`): checks that there is one, in an inode,
/// maps the inode's blocks through a short-lived read-only handle and
/// validates the journal superblock.
pub fn open_internal(io: &Arc<dyn IoChannel>, sb: &Superblock) -> Result<Journal> {
    if !sb.has_compat(compat::HAS_JOURNAL) {
        return Err(Error::corrupt(
            "superblock",
            "needs_recovery is set but the filesystem has no journal: run e2fsck",
        ));
    }
    let journal_dev = crate::bytes::le32(&sb.raw, S_JOURNAL_DEV);
    let external = journal_dev != 0 || sb.journal_uuid != [0; 16];
    if sb.journal_inum == InodeNo(0) {
        if external {
            return Err(Error::Unsupported(format!(
                "external journal (device {:#x}, uuid {}): fsvc replays internal journals \
                 only; mount with -o norecovery, or recover with the kernel or e2fsck",
                journal_dev,
                uuid_string(&sb.journal_uuid)
            )));
        }
        return Err(Error::corrupt(
            "superblock",
            "has_journal without a journal inode",
        ));
    }
    if journal_dev != 0 {
        return Err(Error::corrupt(
            "superblock",
            "both a journal inode and a journal device",
        ));
    }
    let probe = Fs::open(
        io.clone(),
        &OpenOptions {
            read_only: true,
            norecovery: true,
            cache_bytes: PROBE_CACHE_BYTES,
            ..OpenOptions::default()
        },
    )?;
    let ino = sb.journal_inum;
    let what = format!("journal inode {ino}");
    // A reserved inode: read as the kernel's EXT4_IGET_SPECIAL does.
    let inode = probe.special_inode(ino)?;
    if inode.links == 0 {
        return Err(Error::corrupt(what, "deleted (no links)"));
    }
    if inode.kind() != FileKind::File || inode.has_flag(iflags::ENCRYPT) {
        return Err(Error::corrupt(what, "not a plain regular file"));
    }
    let bs = u64::from(sb.block_size);
    let total = inode.size / bs;
    // The superblock says how much to map; it lives in journal block 0.
    let first = probe.map_block(&inode, Lblk(0))?.ok_or_else(|| {
        Error::corrupt(what.clone(), "block 0 (the journal superblock) is a hole")
    })?;
    let offset = first
        .0
        .checked_mul(bs)
        .ok_or_else(|| Error::corrupt(what.clone(), "block 0 maps past 2^64 bytes"))?;
    let mut raw = vec![0u8; sb.block_size as usize];
    io.read_at(offset, &mut raw)?;
    let jsb = JournalSuperblock::decode(&raw)
        .ok_or_else(|| Error::corrupt("journal superblock", "block shorter than 1024 bytes"))?;
    jsb.validate(&raw, sb.block_size, total)?;
    let maxlen = jsb.maxlen;
    let mut runs = Vec::new();
    let mut j = 0u32;
    // Each mapping covers at least one block: at most `maxlen` steps.
    while j < maxlen {
        let m = probe.map_extent(&inode, Lblk(j))?;
        let p = m
            .pblk
            .ok_or_else(|| Error::corrupt(what.clone(), format!("block {j} is a hole")))?;
        let len = u32::try_from(m.len.min(u64::from(maxlen - j))).unwrap_or(maxlen - j);
        runs.push(Run {
            jblock: j,
            pblock: p,
            len,
        });
        j += len.max(1);
    }
    drop(probe);
    let map = JournalMap::from_runs(runs)?;
    if map.contains(sb.superblock_block()) {
        return Err(Error::corrupt(
            what,
            "maps over the filesystem's superblock",
        ));
    }
    Journal::open(io.clone(), map, sb.block_size, total)
}

/// The journal features a kernel mount with default options leaves
/// (`set_journal_csum_feature_set`, and `ext4_fill_super` for 64bit):
/// checksums follow the filesystem (v3 with metadata_csum, none without:
/// v1 needs `-o journal_checksum`), async_commit, a mount option, is off,
/// and a 64bit filesystem gets 64-bit block numbers in its tags.
pub fn default_mount_features(jsb: &JournalSuperblock, sb: &Superblock) -> (u32, u32) {
    use super::superblock::feature::{compat as jc, incompat as ji};
    let compat = jsb.feature_compat & !jc::CHECKSUM;
    let mut incompat = jsb.feature_incompat & !(ji::CSUM_V2 | ji::CSUM_V3 | ji::ASYNC_COMMIT);
    if sb.metadata_csum() {
        incompat |= ji::CSUM_V3;
    }
    if sb.is_64bit() {
        incompat |= ji::BIT64;
    }
    (compat, incompat)
}

/// The internal journal of the filesystem whose superblock is `sb`, ready
/// for the journaled write path: opened ([`open_internal`]), refused if it
/// still needs recovery ([`Error::NeedsRecovery`]: run [`recover`] first),
/// its features set as a default kernel mount sets them (version 2
/// superblocks; written and flushed), and a [`LogWriter`] on it.
pub fn open_for_writing(io: &Arc<dyn IoChannel>, sb: &Superblock) -> Result<LogWriter> {
    let mut journal = open_internal(io, sb)?;
    if journal.needs_recovery() {
        return Err(Error::NeedsRecovery);
    }
    if journal.superblock().version() >= 2 {
        let (compat, incompat) = default_mount_features(journal.superblock(), sb);
        if (compat, incompat)
            != (
                journal.superblock().feature_compat,
                journal.superblock().feature_incompat,
            )
        {
            journal.set_features(compat, incompat);
            journal.write_superblock(journal.superblock().clone())?;
            io.flush()?;
        }
    }
    LogWriter::new(journal)
}

fn read_superblock(io: &Arc<dyn IoChannel>) -> Result<Vec<u8>> {
    if io.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
        return Err(Error::NotExt(format!(
            "device of {} bytes is too small to hold a superblock",
            io.size()
        )));
    }
    let mut raw = vec![0u8; SUPERBLOCK_SIZE];
    io.read_at(SUPERBLOCK_OFFSET, &mut raw)?;
    Ok(raw)
}

fn uuid_string(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}
