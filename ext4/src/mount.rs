//! The write side of what the kernel keeps in super.c: opening read-write
//! (the refusals, marking the superblock mounted), beginning transactions,
//! the reader guard, writeback, sync, unmount, and the error policy
//! (`fail`, `errors=continue|remount-ro|panic`).
//!
//! Decisions (docs/design-notes.md, "Write path"):
//! - A read-write open is refused ([`Error::RwRefused`], saying what to
//!   do) on a read-only device, when the superblock records errors, with
//!   unknown ro_compat features, with features whose on-disk upkeep the
//!   engine does not do (bigalloc, quota, project, shared_blocks, the
//!   `readonly` feature, orphan_present, MMP), and when the journal needs
//!   recovery (already refused by `Fs::open` unless `norecovery`, which
//!   implies read-only).
//! - Mounted read-write, the superblock says not clean (`s_state` without
//!   VALID), `s_mnt_count` + 1, `s_mtime` now, as the kernel does; with a
//!   journal also needs_recovery, durable before the first journal commit
//!   (`journaled.rs`), and cleared at unmount after a full checkpoint.
//! - Unmount writes the state back as it was at mount (plus ERROR_FS if an
//!   error was recorded), the exact free counts, `s_wtime` and
//!   `s_kbytes_written`, after writing every dirty block home, then flushes.
//! - After an error with `errors=remount-ro`, no new change is accepted,
//!   but changes already committed (complete operations the caller was
//!   told succeeded) are still written home at sync and unmount.

use crate::error::{Error, Result};
use crate::extent;
use crate::fs::Fs;
use crate::group::GroupDesc;
use crate::indirect;
use crate::inode::flags;
use crate::locks::{InodeLocks, ReadGuard};
use crate::num::{GroupNo, InodeNo, Lblk, Pblk};
use crate::super_fields::{errcode, ErrorInfo};
use crate::superblock::{compat, incompat, ro_compat, STATE_ERROR, STATE_VALID};
use crate::tx::{Creds, Tx};
use crate::wstate::{ErrorBehavior, Mode, WriteState};
use crate::zones::{SystemZones, Zone, ZoneCheck, ZoneKind};
use std::sync::atomic::Ordering;

/// Kernel limit on the reserved pool of clusters (`ext4_calculate_resv_clusters`).
const RESV_CLUSTERS_MAX: u64 = 4096;
/// The reserved pool is this fraction (1/50 = 2%) of the clusters.
const RESV_CLUSTERS_DIVISOR: u64 = 50;
/// Most extent runs of the journal inode walked for the system zones.
pub const MAX_JOURNAL_RUNS: u32 = 1 << 16;
/// Journal commits `begin` makes at most while waiting for room in the
/// running transaction.
const BEGIN_COMMIT_TRIES: u32 = 3;
/// `s_max_mnt_count` the kernel writes when it finds 0.
const DEFAULT_MAX_MNT_COUNT: u16 = 20;

/// ro_compat features whose on-disk upkeep the engine does not do, with
/// what the refusal says.
const RW_UNSUPPORTED_RO_COMPAT: &[(u32, &str)] = &[
    (ro_compat::BIGALLOC, "bigalloc (clusters of blocks)"),
    (ro_compat::QUOTA, "quota (usage is not kept up to date)"),
    (
        ro_compat::PROJECT,
        "project quota (usage is not kept up to date)",
    ),
    (ro_compat::SHARED_BLOCKS, "shared_blocks"),
    (
        ro_compat::READONLY,
        "readonly (the image asks to stay read-only)",
    ),
    (
        ro_compat::ORPHAN_PRESENT,
        "orphan_present (orphan file entries to process)",
    ),
];

/// Where an error was found, for the superblock's error record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorAt {
    /// The operation ("create", "writeback", ...), at most 32 bytes kept.
    pub func: &'static str,
    /// The inode involved, 0 if none.
    pub ino: InodeNo,
    /// The block involved, 0 if none.
    pub block: Pblk,
}

impl ErrorAt {
    /// An error in operation `func`.
    pub fn func(func: &'static str) -> ErrorAt {
        ErrorAt {
            func,
            ..ErrorAt::default()
        }
    }

    /// An error in operation `func` on inode `ino`.
    pub fn inode(func: &'static str, ino: InodeNo) -> ErrorAt {
        ErrorAt {
            func,
            ino,
            ..ErrorAt::default()
        }
    }
}

impl Fs {
    /// Why this filesystem cannot be opened read-write, if it cannot.
    pub(crate) fn rw_refusal(&self) -> Option<String> {
        let sb = self.sb();
        if self.dev().io().is_read_only() {
            return Some("the device or image is read-only; mount it with -o ro".into());
        }
        if sb.state & STATE_ERROR != 0 {
            return Some(
                "the superblock records errors; run e2fsck on it first, or mount it read-only (-o ro)"
                    .into(),
            );
        }
        if sb.unknown_ro_compat != 0 {
            return Some(format!(
                "unknown read-only-compatible features {:#x}; mount it read-only (-o ro)",
                sb.unknown_ro_compat
            ));
        }
        if let Some((_, name)) = RW_UNSUPPORTED_RO_COMPAT
            .iter()
            .find(|(bit, _)| sb.has_ro_compat(*bit))
        {
            return Some(format!(
                "fsvc does not write filesystems with {name}; mount it read-only (-o ro)"
            ));
        }
        if sb.has_incompat(incompat::MMP) {
            return Some(
                "multi-mount protection (mmp) is not supported read-write yet; mount it read-only (-o ro)"
                    .into(),
            );
        }
        if sb.has_incompat(incompat::RECOVER) {
            return Some(
                "the journal needs recovery (norecovery implies read-only); run e2fsck, or mount read-only"
                    .into(),
            );
        }
        None
    }

    /// Makes the filesystem read-write (called by `Fs::open`): refusals,
    /// then the superblock marked mounted and written home at once.
    pub(crate) fn open_rw(&self) -> Result<()> {
        if let Some(why) = self.rw_refusal() {
            return Err(Error::RwRefused(why));
        }
        let log = self.open_log()?;
        self.w.set_mode(Mode::ReadWrite);
        let mut tx = self.begin_internal()?;
        let now = tx.now().sec;
        let f = tx.sb_fields_mut();
        f.state &= !STATE_VALID;
        f.mnt_count = f.mnt_count.wrapping_add(1);
        if f.max_mnt_count == 0 {
            f.max_mnt_count = DEFAULT_MAX_MNT_COUNT;
        }
        f.mtime = now;
        if log.is_some() {
            // Durable before the first journal commit: a crash from here
            // on makes the next mount (or e2fsck) replay the log.
            f.feature_incompat |= incompat::RECOVER;
        }
        tx.commit()?;
        self.write_home()?;
        match log {
            Some(writer) => self.start_journal(writer),
            None => Ok(()),
        }
    }

    /// The log writer on this filesystem's journal, for a read-write
    /// mount (`None` without a journal): the journal superblock gets the
    /// features of a default kernel mount. An external journal, or one too
    /// small for a transaction, refuses the read-write mount.
    fn open_log(&self) -> Result<Option<crate::journal::LogWriter>> {
        let sb = self.sb();
        if !sb.has_compat(compat::HAS_JOURNAL) {
            return Ok(None);
        }
        if sb.journal_inum.0 == 0 {
            return Err(Error::RwRefused(
                "fsvc does not write through an external journal; mount it read-only (-o ro)"
                    .into(),
            ));
        }
        let writer = crate::journal::recover::open_for_writing(self.dev().io(), sb)?;
        crate::journaled::usable_capacity(&writer)?;
        Ok(Some(writer))
    }

    /// The write state when opening (free counts summed from `groups`).
    pub(crate) fn initial_write_state(&self, groups: &[GroupDesc]) -> WriteState {
        let sb = self.sb();
        let mut sbf = crate::super_fields::SuperFields::decode(sb, &sb.raw);
        sbf.free_blocks = groups.iter().map(|g| u64::from(g.free_blocks)).sum();
        sbf.free_inodes = groups.iter().map(|g| g.free_inodes).sum();
        let seed = u64::from(sb.hash_seed[0]) << 32 | u64::from(sb.hash_seed[1]) | 1;
        WriteState {
            mount_state: sbf.state,
            kbytes_at_open: sbf.kbytes_written,
            sbf,
            alloc: crate::alloc_state::AllocState::new(sb.group_count, seed),
            journal: None,
        }
    }

    /// The system zones of this filesystem: the fixed layout, every
    /// group's bitmaps and inode table, and `journal` (the internal
    /// journal's blocks, from [`Fs::protect_journal`]).
    pub(crate) fn build_zones(&self, journal: Vec<Zone>) -> SystemZones {
        let sb = self.sb();
        let groups: Vec<(Pblk, Pblk, Pblk)> = (0..sb.group_count)
            .filter_map(|g| self.group(GroupNo(g)).ok())
            .map(|gd| (gd.block_bitmap, gd.inode_bitmap, gd.inode_table))
            .collect();
        SystemZones::build(sb, groups.into_iter(), journal)
    }

    /// The internal journal's blocks (its mapped runs, then the blocks of
    /// its extent tree or indirect map), checked against `check` as the
    /// kernel does at every mount, replay or not
    /// (`ext4_protect_reserved_inode`): the journal must be an inode in use
    /// whose mapped runs overlap no group metadata and none of its own.
    /// Empty without a journal inode. The walk costs one step per mapped
    /// run or hole, never one per block of a size field, and stops after
    /// [`MAX_JOURNAL_RUNS`] runs.
    pub(crate) fn protect_journal(&self, check: &mut ZoneCheck) -> Result<Vec<Zone>> {
        let sb = self.sb();
        let ino = sb.journal_inum;
        if !sb.has_compat(compat::HAS_JOURNAL) || ino.0 == 0 {
            return Ok(Vec::new());
        }
        let what = || format!("journal inode {ino}");
        if ino < InodeNo::ROOT || ino.0 > sb.inodes_count {
            return Err(Error::corrupt(what(), "out of range"));
        }
        let inode = self.special_inode(ino).map_err(|e| match e {
            Error::NoSuchInode(_) => Error::corrupt(what(), "not in use"),
            e => e,
        })?;
        let z = |start: Pblk, len: u64| Zone {
            start,
            len,
            kind: ZoneKind::Journal,
        };
        let mapping_blocks = std::cell::RefCell::new(Vec::new());
        let read = |b: Pblk| {
            mapping_blocks.borrow_mut().push(b);
            self.meta_block(b)
        };
        let name = "journal inode";
        let end = inode.size.div_ceil(u64::from(sb.block_size));
        let mut out = Vec::new();
        let mut lblk = 0u64;
        for _ in 0..MAX_JOURNAL_RUNS {
            if lblk >= end {
                break;
            }
            // Below the size's block count, which fits the 32-bit space.
            let Ok(l) = u32::try_from(lblk).map(Lblk) else {
                break;
            };
            let m = if inode.has_flag(flags::EXTENTS) {
                extent::map(sb, inode.i_block(), inode.csum_seed, l, &read, name)
            } else {
                indirect::map(sb, inode.i_block(), l, &read, name)
            }?;
            let len = m.len.max(1).min(end - lblk);
            if let Some(p) = m.pblk {
                check.add_inode_run(p.0, len, &what)?;
                out.push(z(p, len));
            }
            lblk += len;
        }
        out.extend(mapping_blocks.into_inner().into_iter().map(|b| z(b, 1)));
        Ok(out)
    }

    /// How the filesystem is serving now.
    pub fn mode(&self) -> Mode {
        self.w.mode()
    }

    /// Whether changes are refused (opened read-only, turned read-only by
    /// an error, stopped, or unmounted).
    pub fn is_read_only(&self) -> bool {
        self.mode() != Mode::ReadWrite
    }

    /// Whether `errors=panic` stopped the filesystem: the server must stop
    /// serving and exit non-zero.
    pub fn is_stopped(&self) -> bool {
        self.mode() == Mode::Stopped
    }

    /// What errors found while changing lead to.
    pub fn error_behavior(&self) -> ErrorBehavior {
        self.w.errors
    }

    /// The system zones (metadata areas no file block may be in).
    pub fn zones(&self) -> &SystemZones {
        &self.w.zones
    }

    /// The per-inode lock table (take inode locks before `begin`).
    pub fn inode_locks(&self) -> &InodeLocks {
        &self.w.inode_locks
    }

    /// The kernel's reserved pool of clusters (2% of them, at most 4096,
    /// extent filesystems only): kept from every allocation but those that
    /// must not fail.
    pub fn reserved_pool(&self) -> u64 {
        let sb = self.sb();
        if !sb.has_incompat(incompat::EXTENTS) {
            return 0;
        }
        ((sb.blocks_count >> sb.log_cluster_ratio) / RESV_CLUSTERS_DIVISOR).min(RESV_CLUSTERS_MAX)
    }

    /// Holds the change lock shared while metadata is looked at: a reader
    /// never sees half of a commit. Take it around each engine read call
    /// that looks at metadata (not across a long data read); never call
    /// `begin`, `sync` or `unmount` while holding it (refused). Nested
    /// guards on one thread are free.
    pub fn read_guard(&self) -> Result<ReadGuard<'_, WriteState>> {
        if self.mode() == Mode::Stopped {
            return Err(Error::Stopped);
        }
        self.w.change.read()
    }

    /// Begins a transaction for a change asked by `creds` (inode locks
    /// first: see `locks`). Refused ([`Error::ReadOnly`]) unless the
    /// filesystem is read-write.
    /// With a journal, a running transaction past its size limit is
    /// committed first (outside the change lock), so that one operation
    /// always has room in the next journal commit.
    pub fn begin(&self, creds: Creds) -> Result<Tx<'_>> {
        self.check_writable()?;
        let mut tries = 0;
        loop {
            let guard = self.w.change.write()?;
            // An error may have turned the filesystem read-only while waiting.
            self.check_writable()?;
            let full = guard
                .state()
                .journal
                .as_ref()
                .is_some_and(|r| r.over_soft_limit());
            // Others may fill it again meanwhile: the hard limit at
            // commit still holds, so give up waiting after a few rounds.
            if !full || tries == BEGIN_COMMIT_TRIES {
                return Ok(Tx::start(self, guard, creds));
            }
            drop(guard);
            tries += 1;
            if let Err(e) = self.journal_commit() {
                self.fail(&e, ErrorAt::func("journal commit"));
                return Err(e);
            }
        }
    }

    /// One change made the way the write path's contract wants it: the
    /// inode locks of `inos` (all at once), a transaction for `creds`, `f`
    /// on it, commit; on an error the transaction is dropped and, for
    /// corruption, checksum and IO errors, recorded with [`Fs::fail`] at
    /// `at`. `f` checks what can fail before its first `modify`.
    pub fn change<T>(
        &self,
        creds: Creds,
        inos: &[InodeNo],
        at: ErrorAt,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let _locks = self.inode_locks().write_many(inos);
        let r = (|| {
            let mut tx = self.begin(creds)?;
            let v = f(&mut tx)?;
            tx.commit()?;
            Ok(v)
        })();
        r.inspect_err(|e| self.fail(e, at))
    }

    fn check_writable(&self) -> Result<()> {
        match self.mode() {
            Mode::ReadWrite => Ok(()),
            Mode::Stopped => Err(Error::Stopped),
            _ => Err(Error::ReadOnly),
        }
    }

    /// A transaction of the engine itself (mount, sync, unmount, error
    /// records), allowed in any mode that still writes.
    fn begin_internal(&self) -> Result<Tx<'_>> {
        let guard = self.w.change.write()?;
        Ok(Tx::start(self, guard, Creds::ROOT))
    }

    /// Installs descriptors a transaction changed into the group table.
    pub(crate) fn publish_groups(&self, changed: Vec<GroupDesc>) {
        if changed.is_empty() {
            return;
        }
        let mut table = self.groups_mut();
        for gd in changed {
            if let Some(slot) = table.get_mut(gd.group.index()) {
                *slot = gd;
            }
        }
    }

    /// After a commit (change lock released): with a journal, commit it
    /// when the running transaction passed its size limit, and commit and
    /// checkpoint when dirty blocks pass the cache's limit; without one,
    /// write back early past that limit. Not while an error is being
    /// recorded (that records through a commit of its own).
    pub(crate) fn after_commit(&self) {
        if self.w.failing.load(Ordering::SeqCst) {
            return;
        }
        let over_dirty = self.dev().dirty_bytes() > self.dev().dirty_limit();
        let over_journal = self
            .w
            .change
            .write()
            .map(|g| {
                g.state()
                    .journal
                    .as_ref()
                    .is_some_and(|r| r.over_soft_limit())
            })
            .unwrap_or(false);
        if over_dirty {
            // An error is kept (sticky) and recorded by `writeback`.
            let _ = self.writeback();
        } else if over_journal {
            if let Err(e) = self.journal_commit() {
                self.fail(&e, ErrorAt::func("journal commit"));
            }
        }
    }

    /// Writes every committed change home (no device flush without a
    /// journal). With a journal: commits the running transaction and
    /// checkpoints the log (which flushes). Without one: holds the change
    /// lock shared meanwhile, so that no commit can free and reuse a block
    /// whose old copy is being written. A write error is recorded as a
    /// filesystem error (`fail`) and stays pending for the next sync.
    pub fn writeback(&self) -> Result<()> {
        let res = match self.journal_flush() {
            Ok(true) => Ok(()),
            Ok(false) => {
                let _no_commits = self.w.change.read()?;
                self.dev().writeback().map(|_| ()).map_err(Error::Io)
            }
            Err(e) => Err(e),
        };
        res.inspect_err(|e| self.fail(e, ErrorAt::func("writeback")))
    }

    /// Every committed change home and durable, without the error policy
    /// (for the engine's own records): journal commit and checkpoint with
    /// a journal, writeback and device flush without.
    fn write_home(&self) -> Result<()> {
        if self.journal_flush()? {
            return Ok(());
        }
        {
            let _no_commits = self.w.change.read()?;
            self.dev().writeback()?;
        }
        Ok(self.dev().flush()?)
    }

    /// Every committed change durable (in the log or at home), without the
    /// error policy: a journal commit with a journal (whose flushes also
    /// make file data durable), else [`Fs::write_home`].
    fn make_durable(&self) -> Result<()> {
        if self.is_journaled() {
            return self.journal_commit();
        }
        self.write_home()
    }

    /// File data: writes `buf` (whole blocks) at block `blk` straight to
    /// the device, refusing blocks outside the filesystem or inside a
    /// system zone ([`Error::Corrupt`]: the mapping that led there is
    /// damaged). Drops cached copies of the blocks written. The caller
    /// holds the file's inode lock; the blocks are the file's (allocated
    /// and mapped, or about to be mapped by a transaction that commits
    /// after this write: data=ordered).
    pub fn write_data(&self, blk: Pblk, buf: &[u8]) -> Result<()> {
        self.check_writable()?;
        let bs = u64::from(self.block_size());
        let n = (buf.len() as u64).div_ceil(bs);
        if !self.sb().range_in_fs(blk, n) {
            return Err(Error::corrupt(
                format!("data block {blk}"),
                format!("{n} blocks past the end of the filesystem"),
            ));
        }
        if let Some(z) = self.zones().find(blk, n) {
            return Err(Error::corrupt(
                format!("data block {blk}"),
                format!(
                    "a data write into the system zone ({:?} at {})",
                    z.kind, z.start
                ),
            ));
        }
        Ok(self.dev().write_data(blk.0, buf)?)
    }

    /// Makes every completed change durable: the superblock (exact free
    /// counts, write time), every dirty block written home, the device
    /// flushed. Returns the first write error since the last sync, if any
    /// (also one from an early or background writeback). On a read-only
    /// filesystem it only reports pending errors.
    pub fn sync(&self) -> Result<()> {
        match self.mode() {
            Mode::ReadWrite | Mode::ErrorsReadOnly => {
                let res = if self.journal_idle()? {
                    // Nothing to commit: only file data may be in flight.
                    self.dev().flush().map_err(Error::Io)
                } else {
                    self.commit_super(None)?;
                    self.make_durable()
                };
                if let Err(e) = &res {
                    self.fail(e, ErrorAt::func("sync"));
                }
            }
            Mode::ReadOnly | Mode::Unmounted | Mode::Stopped => {}
        }
        match self.dev().take_write_error() {
            Some(e) => Err(Error::Io(e)),
            None => Ok(()),
        }
    }

    /// Whether a journal is running with nothing in its running
    /// transaction (a sync then has nothing to commit).
    fn journal_idle(&self) -> Result<bool> {
        // Exclusive only because readers' guards give no access to the
        // state; held for this look only.
        let guard = self.w.change.write()?;
        Ok(guard
            .state()
            .journal
            .as_ref()
            .is_some_and(|r| r.blocks.is_empty() && r.freed.is_empty()))
    }

    /// The commit interval's work (called by [`crate::committer`]'s
    /// thread): with a journal, the running transaction is committed when
    /// the last commit is older than `interval`; without one, dirty blocks
    /// are written home and flushed at most once per `interval`. Returns
    /// whether it committed or wrote. Errors go through the error policy
    /// and stay pending for the next sync.
    pub fn commit_if_due(&self, interval: std::time::Duration) -> Result<bool> {
        match self.mode() {
            Mode::ReadWrite | Mode::ErrorsReadOnly => {}
            Mode::ReadOnly | Mode::Unmounted | Mode::Stopped => return Ok(false),
        }
        let res = match self.journal_commit_if_older(interval) {
            Ok(Some(done)) => Ok(done),
            Ok(None) if self.dev().dirty_bytes() > 0 && self.periodic_due(interval) => {
                self.write_home().map(|()| true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        res.inspect_err(|e| self.fail(e, ErrorAt::func("periodic commit")))
    }

    /// Rewrites the superblock: exact free counts, write time, bytes
    /// written; `state`, when given (the end of the mount, the journal
    /// closed), replaces `s_state` and clears needs_recovery.
    fn commit_super(&self, state: Option<u16>) -> Result<()> {
        let mut tx = self.begin_internal()?;
        let written = self.dev().write_stats();
        let kbytes = tx.state().kbytes_at_open.saturating_add(
            (written.meta_blocks_written + written.data_blocks_written)
                .saturating_mul(u64::from(self.block_size()))
                >> 10,
        );
        let now = tx.now().sec;
        let f = tx.sb_fields_mut();
        f.wtime = now;
        f.kbytes_written = kbytes;
        if let Some(s) = state {
            f.state = s;
            f.feature_incompat &= !incompat::RECOVER;
        }
        tx.commit()
    }

    /// The end of the mount (called once by the server when the kernel
    /// connection has ended, before it closes the device and exits; the
    /// server logs the outcome and only then releases the device, so an
    /// unmount that waits for the server returns after this): every dirty block
    /// written home, the superblock marked as it was at mount (clean,
    /// unless an error was recorded meanwhile) with exact counts, the
    /// device flushed. Returns the first write error since the last sync
    /// (the filesystem is then not marked clean). A second call, or a call
    /// on a read-only mount, does nothing. After `errors=panic` stopped the
    /// filesystem nothing is written ([`Error::Stopped`]).
    pub fn unmount(&self) -> Result<()> {
        match self.mode() {
            Mode::ReadOnly | Mode::Unmounted => return Ok(()),
            Mode::Stopped => return Err(Error::Stopped),
            Mode::ReadWrite | Mode::ErrorsReadOnly => {}
        }
        // Everything committed goes home first (journal committed and
        // checkpointed: the log is empty): the clean mark must not reach
        // the device before the changes it vouches for.
        let first = self.write_home().err();
        let pending = self.dev().take_write_error().map(Error::Io).or(first);
        if let Some(e) = pending {
            // The log (if any) still holds what did not reach home: the
            // superblock keeps needs_recovery, the next mount replays.
            self.w.set_mode(Mode::Unmounted);
            return Err(e);
        }
        self.close_journal()?;
        let clean = {
            let guard = self.w.change.write()?;
            let st = guard.state();
            st.mount_state | (st.sbf.state & STATE_ERROR)
        };
        let res = self
            .commit_super(Some(clean))
            .and_then(|()| self.write_home());
        self.w.set_mode(Mode::Unmounted);
        res?;
        match self.dev().take_write_error() {
            Some(e) => Err(Error::Io(e)),
            None => Ok(()),
        }
    }

    /// Records an error found while changing the filesystem (corruption,
    /// a bad checksum, an IO error; other errors are not the filesystem's
    /// and are ignored here) in the superblock, as the kernel does (state
    /// ERROR_FS, error count, first and last error time, inode, block,
    /// function, code), written home at once; then applies `errors=`:
    /// continue; remount-ro (every later change refused); panic (stopped:
    /// nothing more served or written). Call it after the failed
    /// transaction was dropped (it is refused inside one).
    pub fn fail(&self, err: &Error, at: ErrorAt) {
        let code = match err {
            Error::Io(_) => errcode::EIO,
            Error::Checksum { .. } => errcode::EFSBADCRC,
            Error::Corrupt { .. } => errcode::EFSCORRUPTED,
            _ => return,
        };
        match self.mode() {
            Mode::ReadWrite | Mode::ErrorsReadOnly => {}
            Mode::ReadOnly | Mode::Stopped | Mode::Unmounted => return,
        }
        // The record's own commit must not start another journal commit
        // (whose failure would come back here).
        self.w.failing.store(true, Ordering::SeqCst);
        if let Ok(mut tx) = self.begin_internal() {
            let info = ErrorInfo {
                time: tx.now().sec,
                ino: at.ino.0,
                block: at.block.0,
                func: at.func.as_bytes().to_vec(),
                line: 0,
                errcode: code,
            };
            tx.sb_fields_mut().record_error(info);
            if tx.commit().is_ok() {
                // Best effort: the device may be what failed.
                let _ = self.write_home();
            }
        }
        self.w.failing.store(false, Ordering::SeqCst);
        match self.w.errors {
            ErrorBehavior::Continue => {}
            ErrorBehavior::RemountRo => self.w.set_mode(Mode::ErrorsReadOnly),
            ErrorBehavior::Panic => self.w.set_mode(Mode::Stopped),
        }
    }
}

impl Fs {
    /// The superblock's changing fields as last committed (state, counts,
    /// error record), for tools and tests.
    pub fn super_fields(&self) -> crate::super_fields::SuperFields {
        self.w.published()
    }
}

#[cfg(test)]
#[path = "mount_tests.rs"]
mod tests;
