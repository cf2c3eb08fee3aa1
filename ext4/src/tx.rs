//! The transaction handle [`Tx`]: every change to the filesystem is made
//! through one (docs/design-notes.md, "Write path").
//!
//! `Fs::begin(creds)` takes the change lock exclusively and returns a
//! `Tx`. The write algorithms then read metadata only through it
//! ([`Tx::get`]: the block as this transaction sees it), get write access
//! to a block with [`Tx::modify`] (a private copy; the cache keeps the
//! committed version, which *is* the pre-image), start a just-allocated
//! block with [`Tx::new_block`], allocate and free blocks and inodes, and
//! read and write inodes ([`Tx::inode`], [`Tx::write_inode`]: encoded with
//! their checksum). [`Tx::commit`] installs every changed block into the
//! cache as a new dirty copy, all at once under the change lock, so a
//! reader sees all of the operation or none of it; [`Tx::abort`] (or
//! dropping the `Tx`) discards the private copies: nothing reached the
//! cache or any shared in-memory state.
//!
//! Invariants:
//! - Nothing shared changes before commit: the group table, the free
//!   counts, the superblock fields and the cache are updated only by
//!   `commit`, from what the `Tx` holds privately. Abort therefore has
//!   nothing to undo.
//! - `modify`/`new_block` (a file's own metadata: extent and index nodes,
//!   indirect blocks, directory blocks, xattr blocks) refuse a block
//!   outside the filesystem or inside a system zone ([`Error::Corrupt`]:
//!   whatever pointed there is damaged) and a block this `Tx` freed
//!   ([`Error::Internal`]). System blocks (bitmaps, descriptors, inode
//!   tables, the superblock) are changed only by this crate's own paths,
//!   each checked to be of the kind it owns.
//! - A block freed in a `Tx` is never handed out again by the same `Tx`;
//!   at commit its cached copy (dirty or not) is dropped and no copy of it
//!   is installed.
//! - Commit does no device IO. With a journal, commit adds the blocks to
//!   the running journal transaction (`journaled.rs`); past the cache's
//!   dirty limit or the journal transaction's size, the committing thread
//!   commits the journal (or, without one, writes back) after it released
//!   the change lock.
//! - Each encoder sets its own checksum (inodes, descriptors, bitmaps, the
//!   superblock here; extent, directory and xattr blocks by the code that
//!   builds them): commit recomputes nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result, Space};
use crate::fs::Fs;
use crate::group::{self, GroupDesc};
use crate::inode::{self, Inode};
use crate::locks::WriteGuard;
use crate::num::{GroupNo, InodeNo, Pblk};
use crate::ranges::RangeSet;
use crate::super_fields::SuperFields;
use crate::superblock::{Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::types::Timestamp;
use crate::wstate::WriteState;
use crate::zones::ZoneKind;

/// Who asks for a change: the FUSE request's caller. Decides who may use
/// the reserved blocks and owns what an operation creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    /// User id (fsuid).
    pub uid: u32,
    /// Group id (fsgid).
    pub gid: u32,
}

impl Creds {
    /// The filesystem itself (root): used for the engine's own
    /// transactions (mount, sync, unmount, error records).
    pub const ROOT: Creds = Creds { uid: 0, gid: 0 };
}

/// What an allocation is for: decides how much of the reserve it may use,
/// and (with a journal) whether freeing it needs a revoke record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocKind {
    /// File data.
    Data,
    /// A file's metadata block (extent or index node, indirect block,
    /// directory block, xattr block).
    Meta,
    /// A metadata block an operation must have to finish what it already
    /// started and cannot undo (e.g. splitting an extent while punching a
    /// hole): may dip into the kernel's reserved pool, as the kernel's
    /// `EXT4_MB_USE_RESERVED` does.
    MetaReserved,
}

/// The transaction interface the write algorithms (file data, namespace,
/// attributes) are written against. [`Tx`] implements it; so may a test
/// double.
///
/// Rules for implementors and callers:
/// - read metadata only through `get` (never `Fs`'s readers, which see
///   the committed state and are refused inside a transaction);
/// - check everything that can fail for lack of space, names, links,
///   permissions **before** the first `modify` ([`TxBlocks::check_space`]);
/// - every block changed through `modify`/`new_block` gets its checksum
///   set by the caller's encoder before commit;
/// - an allocation returns a contiguous run of 1..=`len` blocks: loop for
///   more; the caller accounts the blocks in its inode (`i_blocks`).
pub trait TxBlocks {
    /// The superblock (geometry and features as opened).
    fn sb(&self) -> &Superblock;
    /// Who asked for this change.
    fn creds(&self) -> Creds;
    /// The time of this change (taken once at `begin`: every timestamp an
    /// operation sets is the same).
    fn now(&self) -> Timestamp;
    /// Metadata block `blk` as this transaction sees it.
    fn get(&self, blk: Pblk) -> Result<Arc<[u8]>>;
    /// Write access to a file's metadata block `blk` (read first, private
    /// copy). Refused inside system zones and outside the filesystem.
    fn modify(&mut self, blk: Pblk) -> Result<&mut [u8]>;
    /// Write access to a file's metadata block `blk` just allocated:
    /// zero-filled, never read from the device.
    fn new_block(&mut self, blk: Pblk) -> Result<&mut [u8]>;
    /// Allocates a contiguous run of 1..=`len` blocks near `goal` for
    /// inode `owner`. [`Error::NoSpace`] when none is left for this caller.
    fn alloc_blocks(
        &mut self,
        goal: Pblk,
        len: u32,
        owner: InodeNo,
        kind: AllocKind,
    ) -> Result<(Pblk, u32)>;
    /// Frees `len` blocks from `start` (all allocated, none in a system zone).
    fn free_blocks(&mut self, start: Pblk, len: u64, kind: AllocKind) -> Result<()>;
    /// Allocates an inode for a new file of `mode` in directory `parent`
    /// (Orlov spreading for top-level directories, near the parent
    /// otherwise). The inode's table slot is initialized (zeroed) but not
    /// written: build it ([`Inode::fresh`]) and [`TxBlocks::write_inode`] it.
    fn alloc_inode(&mut self, parent: InodeNo, mode: u16) -> Result<InodeNo>;
    /// Frees inode `ino` (of `mode`, for the directory count); its on-disk
    /// contents are the caller's (dtime, links 0).
    fn free_inode(&mut self, ino: InodeNo, mode: u16) -> Result<()>;
    /// Inode `ino` as this transaction sees it (orphans with no links
    /// included).
    fn inode(&self, ino: InodeNo) -> Result<Inode>;
    /// Writes `inode` into its table slot: every field encoded, checksum set.
    fn write_inode(&mut self, inode: &Inode) -> Result<()>;
    /// Fails with [`Error::NoSpace`] unless `blocks` blocks (for this
    /// caller, reserve excluded) and `inodes` inodes are free now.
    fn check_space(&self, blocks: u64, inodes: u64) -> Result<()>;
    /// The default allocation goal for `inode`'s blocks when it has none
    /// mapped yet: the start of its group's (flex group's) data area.
    fn inode_goal(&self, inode: &Inode) -> Pblk;
    /// A generation number for a new inode ([`Inode::fresh`]).
    fn next_generation(&mut self) -> u32;
}

/// A block changed by the transaction.
#[derive(Debug)]
struct TxBlock {
    data: Arc<[u8]>,
}

/// A transaction (see the module docs). Holds the change lock until it is
/// committed, aborted or dropped.
#[derive(Debug)]
pub struct Tx<'fs> {
    fs: &'fs Fs,
    guard: WriteGuard<'fs, WriteState>,
    blocks: HashMap<Pblk, TxBlock>,
    /// Groups whose descriptor this transaction changed.
    groups: BTreeSet<GroupNo>,
    /// The superblock fields, once this transaction changed them.
    sbf: Option<SuperFields>,
    /// Blocks freed here: not reusable before commit, dropped from the cache at commit.
    freed: RangeSet,
    /// Change of the free block and inode counts.
    free_blocks_delta: i64,
    free_inodes_delta: i64,
    creds: Creds,
    now: Timestamp,
}

/// The current time as ext4 stores it.
pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nsec: d.subsec_nanos(),
    }
}

impl<'fs> Tx<'fs> {
    /// Starts a transaction (called by `Fs::begin`, which checked the mode).
    pub(crate) fn start(fs: &'fs Fs, guard: WriteGuard<'fs, WriteState>, creds: Creds) -> Tx<'fs> {
        Tx {
            fs,
            guard,
            blocks: HashMap::new(),
            groups: BTreeSet::new(),
            sbf: None,
            freed: RangeSet::new(),
            free_blocks_delta: 0,
            free_inodes_delta: 0,
            creds,
            now: now(),
        }
    }

    /// The filesystem.
    pub fn fs(&self) -> &'fs Fs {
        self.fs
    }

    /// The superblock (geometry and features as opened).
    pub fn sb(&self) -> &'fs Superblock {
        self.fs.sb()
    }

    /// The write state under the change lock.
    pub(crate) fn state(&self) -> &WriteState {
        self.guard.state()
    }

    /// The write state under the change lock, to change. Only hints and
    /// verification marks may change before commit (never what abort
    /// would have to restore).
    pub(crate) fn state_mut(&mut self) -> &mut WriteState {
        self.guard.state_mut()
    }

    /// Metadata block `blk` as this transaction sees it: its own copy if it
    /// changed the block, else the committed one (through the cache).
    pub fn get(&self, blk: Pblk) -> Result<Arc<[u8]>> {
        match self.blocks.get(&blk) {
            Some(b) => Ok(b.data.clone()),
            None => self.fs.meta_block(blk),
        }
    }

    /// Whether this transaction changed block `blk`.
    pub fn is_modified(&self, blk: Pblk) -> bool {
        self.blocks.contains_key(&blk)
    }

    /// Checks that `blk` may hold a file's metadata.
    fn check_file_block(&self, blk: Pblk) -> Result<()> {
        let sb = self.sb();
        if !sb.block_in_fs(blk) {
            return Err(Error::corrupt(
                format!("block {blk}"),
                format!("outside the filesystem ({} blocks)", sb.blocks_count),
            ));
        }
        if let Some(z) = self.fs.zones().find(blk, 1) {
            return Err(Error::corrupt(
                format!("block {blk}"),
                format!("a file's block inside the system zone ({:?})", z.kind),
            ));
        }
        if self.freed.contains(blk.0) {
            return Err(Error::Internal(format!(
                "block {blk} changed after this transaction freed it"
            )));
        }
        if self.journal_unavailable(blk.0, 1).is_some() {
            return Err(Error::Internal(format!(
                "block {blk} changed after a transaction not yet journaled freed it"
            )));
        }
        Ok(())
    }

    /// Write access to a file's metadata block (see [`TxBlocks::modify`]).
    pub fn modify(&mut self, blk: Pblk) -> Result<&mut [u8]> {
        self.check_file_block(blk)?;
        self.private_copy(blk, false)
    }

    /// Write access to a just-allocated file metadata block, zero-filled.
    pub fn new_block(&mut self, blk: Pblk) -> Result<&mut [u8]> {
        self.check_file_block(blk)?;
        self.private_copy(blk, true)
    }

    /// Write access to system block `blk`, which must be of `kind`.
    pub(crate) fn modify_system(&mut self, blk: Pblk, kind: ZoneKind) -> Result<&mut [u8]> {
        self.check_system(blk, kind)?;
        self.private_copy(blk, false)
    }

    /// [`Tx::modify_system`] for a block whose old contents do not matter
    /// (an uninitialized bitmap or inode table block being initialized).
    pub(crate) fn new_system(&mut self, blk: Pblk, kind: ZoneKind) -> Result<&mut [u8]> {
        self.check_system(blk, kind)?;
        self.private_copy(blk, true)
    }

    fn check_system(&self, blk: Pblk, kind: ZoneKind) -> Result<()> {
        match self.fs.zones().kind_of(blk) {
            Some(k) if k == kind => Ok(()),
            other => Err(Error::corrupt(
                format!("block {blk}"),
                format!("expected {kind:?} metadata, the system zones say {other:?}"),
            )),
        }
    }

    /// This transaction's own copy of `blk` (made on first use: a copy of
    /// the committed block, or zeros), to change.
    fn private_copy(&mut self, blk: Pblk, zeroed: bool) -> Result<&mut [u8]> {
        let bs = self.sb().block_size as usize;
        if zeroed || !self.blocks.contains_key(&blk) {
            let data: Arc<[u8]> = if zeroed {
                vec![0u8; bs].into()
            } else {
                let cur = self.fs.meta_block(blk)?;
                Arc::from(&cur[..])
            };
            self.blocks.insert(blk, TxBlock { data });
        }
        let b = self
            .blocks
            .get_mut(&blk)
            .ok_or_else(|| Error::Internal(format!("block {blk} vanished from the transaction")))?;
        // A `get` clone may still be alive: copy on write.
        if Arc::get_mut(&mut b.data).is_none() {
            b.data = Arc::from(&b.data[..]);
        }
        Arc::get_mut(&mut b.data)
            .ok_or_else(|| Error::Internal(format!("block {blk} shared after copy")))
    }

    /// Group descriptor `g` as this transaction sees it.
    pub fn group(&self, g: GroupNo) -> Result<GroupDesc> {
        if !self.groups.contains(&g) {
            return self.fs.group(g);
        }
        let sb = self.sb();
        let (blk, off) = group::gdt_location(sb, g)?;
        let block = self.get(blk)?;
        let raw = block
            .get(off..off + usize::from(sb.desc_size))
            .ok_or_else(|| Error::corrupt(format!("group descriptor {g}"), "truncated"))?;
        let mut gd = GroupDesc::parse(sb, g, raw)?;
        gd.check(sb, raw)?;
        Ok(gd)
    }

    /// Changes group descriptor `g` with `f`, re-encoding it with its
    /// checksum. A descriptor whose checksum failed is never changed.
    pub(crate) fn update_group(
        &mut self,
        g: GroupNo,
        f: impl FnOnce(&mut GroupDesc),
    ) -> Result<GroupDesc> {
        let mut gd = self.group(g)?;
        if !gd.csum_ok {
            return Err(Error::checksum(format!("group descriptor {g}")));
        }
        f(&mut gd);
        let sb = self.sb();
        let (blk, off) = group::gdt_location(sb, g)?;
        let ds = usize::from(sb.desc_size);
        let raw = self.modify_system(blk, ZoneKind::Gdt)?;
        let slot = raw
            .get_mut(off..off + ds)
            .ok_or_else(|| Error::corrupt(format!("group descriptor {g}"), "truncated"))?;
        gd.encode(sb, slot)?;
        self.groups.insert(g);
        Ok(gd)
    }

    /// The table block and byte offset of inode `ino`, if its slot is
    /// initialized (not in an INODE_UNINIT group nor past `itable_unused`).
    pub(crate) fn inode_slot(&self, ino: InodeNo) -> Result<(Pblk, usize)> {
        let loc = inode::locate(self.sb(), ino, |g| self.group(g))?;
        Ok((loc.blk, loc.off))
    }

    /// Inode `ino` as this transaction sees it (see [`TxBlocks::inode`]).
    pub fn inode(&self, ino: InodeNo) -> Result<Inode> {
        let (blk, off) = self.inode_slot(ino)?;
        let block = self.get(blk)?;
        let isz = usize::from(self.sb().inode_size);
        let raw = block
            .get(off..off + isz)
            .ok_or_else(|| Error::corrupt(format!("inode {ino}"), "outside its table block"))?;
        Inode::parse_unlinked(self.sb(), ino, raw)
    }

    /// Writes `inode` into its slot (see [`TxBlocks::write_inode`]).
    pub fn write_inode(&mut self, inode: &Inode) -> Result<()> {
        let raw = inode.encode(self.sb())?;
        let (blk, off) = self.inode_slot(inode.ino)?;
        let block = self.modify_system(blk, ZoneKind::InodeTable)?;
        let slot = block.get_mut(off..off + raw.len()).ok_or_else(|| {
            Error::corrupt(format!("inode {}", inode.ino), "outside its table block")
        })?;
        slot.copy_from_slice(&raw);
        Ok(())
    }

    /// The superblock's changing fields as this transaction sees them.
    /// The free counts in it are those at `begin`: see
    /// [`Tx::free_blocks_count`] and [`Tx::free_inodes_count`].
    pub fn sb_fields(&self) -> &SuperFields {
        self.sbf.as_ref().unwrap_or(&self.guard.state().sbf)
    }

    /// The superblock's changing fields, to change (the orphan list head,
    /// a feature bit set on first use): the superblock is rewritten at
    /// commit. The free counts are the allocators' and are set at commit.
    pub fn sb_fields_mut(&mut self) -> &mut SuperFields {
        let base = &self.guard.state().sbf;
        self.sbf.get_or_insert_with(|| base.clone())
    }

    /// Free blocks now (clusters with bigalloc), this transaction included.
    pub fn free_blocks_count(&self) -> u64 {
        apply(self.state().sbf.free_blocks, self.free_blocks_delta)
    }

    /// Free inodes now, this transaction included.
    pub fn free_inodes_count(&self) -> u64 {
        apply(
            u64::from(self.state().sbf.free_inodes),
            self.free_inodes_delta,
        )
    }

    /// Records a change of the free counts (allocators only).
    pub(crate) fn count_blocks(&mut self, delta: i64) {
        self.free_blocks_delta += delta;
    }

    /// Records a change of the free inode count (allocators only).
    pub(crate) fn count_inodes(&mut self, delta: i64) {
        self.free_inodes_delta += delta;
    }

    /// The blocks freed so far by this transaction.
    pub(crate) fn freed(&self) -> &RangeSet {
        &self.freed
    }

    /// The first range intersecting `[start, start + len)` that may not be
    /// handed out: freed by this transaction, or by a committed one whose
    /// journal commit is not durable yet.
    pub(crate) fn first_unavailable(&self, start: u64, len: u64) -> Option<(u64, u64)> {
        match (
            self.freed.first_overlap(start, len),
            self.journal_unavailable(start, len),
        ) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// [`Tx::first_unavailable`] for the journal's part only.
    fn journal_unavailable(&self, start: u64, len: u64) -> Option<(u64, u64)> {
        self.state()
            .journal
            .as_ref()
            .and_then(|r| r.first_unavailable(start, len))
    }

    /// Notes that `[start, start + len)` was freed (allocators only).
    pub(crate) fn note_freed(&mut self, start: Pblk, len: u64) {
        self.freed.insert(start.0, len);
    }

    /// Who asked for this change.
    pub fn creds(&self) -> Creds {
        self.creds
    }

    /// The time of this change.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Blocks free for this caller and allocation kind: the kernel's
    /// `ext4_has_free_clusters` rule. Unprivileged callers leave the root
    /// reserve (`s_r_blocks_count`) and the reserved pool; root, the
    /// reserved uid and members of the reserved gid leave the pool; a
    /// [`AllocKind::MetaReserved`] allocation may use everything.
    /// Blocks this transaction freed do not count: they are not reused
    /// before it commits.
    pub fn available_blocks(&self, kind: AllocKind) -> u64 {
        let not_yet = self
            .state()
            .journal
            .as_ref()
            .map_or(0, |r| r.unavailable_total());
        let free = self
            .free_blocks_count()
            .saturating_sub(self.freed.total())
            .saturating_sub(not_yet);
        let sb = self.sb();
        let pool = self.fs.reserved_pool();
        let root_reserve = sb.r_blocks_count >> sb.log_cluster_ratio;
        let f = self.sb_fields();
        let privileged = self.creds.uid == 0
            || self.creds.uid == u32::from(f.def_resuid)
            || (f.def_resgid != 0 && self.creds.gid == u32::from(f.def_resgid));
        let keep = match kind {
            AllocKind::MetaReserved => 0,
            _ if privileged => pool,
            _ => pool.saturating_add(root_reserve),
        };
        free.saturating_sub(keep)
    }

    /// See [`TxBlocks::check_space`].
    pub fn check_space(&self, blocks: u64, inodes: u64) -> Result<()> {
        if blocks > self.available_blocks(AllocKind::Data) {
            return Err(Error::NoSpace(Space::Blocks));
        }
        if inodes > self.free_inodes_count() {
            return Err(Error::NoSpace(Space::Inodes));
        }
        Ok(())
    }

    /// Discards the transaction: nothing it did reaches the cache or any
    /// shared state (the same as dropping it).
    pub fn abort(self) {}

    /// Commits: writes the superblock fields if they changed, installs
    /// every changed block into the cache as dirty, drops freed blocks'
    /// cached copies, publishes the changed group descriptors and counts,
    /// all under the change lock; then, past the dirty limit, writes back.
    /// On an error nothing was installed (the transaction is aborted).
    pub fn commit(mut self) -> Result<()> {
        self.publish()?;
        let fs = self.fs;
        drop(self);
        fs.after_commit();
        Ok(())
    }

    /// The part of commit done under the change lock.
    fn publish(&mut self) -> Result<()> {
        let sb = self.sb();
        let mut fields = self.sbf.take();
        let free_blocks = self.free_blocks_count();
        let free_inodes = u32::try_from(self.free_inodes_count())
            .map_err(|_| Error::Internal("free inode count past 32 bits".into()))?;
        if let Some(f) = fields.as_mut() {
            f.free_blocks = free_blocks;
            f.free_inodes = free_inodes;
            self.encode_super(f)?;
        }
        // Everything that could fail is done before the first install.
        let new_groups = self
            .groups
            .iter()
            .map(|&g| self.group(g))
            .collect::<Result<Vec<_>>>()?;
        let freed = std::mem::take(&mut self.freed);
        self.blocks.retain(|&b, _| !freed.contains(b.0));
        let bs = sb.block_size as usize;
        let device_blocks = self.fs.dev().device_blocks();
        if let Some((&b, _)) = self
            .blocks
            .iter()
            .find(|(&b, t)| t.data.len() != bs || b.0 >= device_blocks)
        {
            return Err(Error::Internal(format!("block {b} cannot be installed")));
        }
        if let Some(run) = self.guard.state().journal.as_ref() {
            let new = self
                .blocks
                .keys()
                .filter(|b| !run.blocks.contains(&b.0))
                .count();
            if run.blocks.len() + new > run.hard_limit {
                return Err(Error::Internal(format!(
                    "an operation changing {} metadata blocks does not fit one journal \
                     transaction ({} blocks, {} already running)",
                    self.blocks.len(),
                    run.hard_limit,
                    run.blocks.len()
                )));
            }
        }
        let tid = self.guard.state().journal.as_ref().map_or(0, |r| r.epoch);
        let dev = self.fs.dev();
        let installed: Vec<u64> = self.blocks.keys().map(|b| b.0).collect();
        for (blk, b) in self.blocks.drain() {
            // Checked above: cannot fail.
            dev.install_dirty(blk.0, b.data, tid)?;
        }
        for (start, len) in freed.iter() {
            dev.forget_range(start..start.saturating_add(len));
        }
        self.fs.publish_groups(new_groups);
        let st = self.guard.state_mut();
        if let Some(run) = st.journal.as_mut() {
            run.join(installed.into_iter(), &freed);
        }
        if let Some(f) = fields {
            st.sbf = f;
        }
        st.sbf.free_blocks = free_blocks;
        st.sbf.free_inodes = free_inodes;
        self.fs.write_side().publish(&self.guard.state().sbf);
        Ok(())
    }

    /// Writes `f` into the primary superblock's block.
    fn encode_super(&mut self, f: &SuperFields) -> Result<()> {
        let sb = self.sb();
        let blk = sb.superblock_block();
        let off = (SUPERBLOCK_OFFSET % u64::from(sb.block_size)) as usize;
        let block = self.modify_system(blk, ZoneKind::Super)?;
        let raw = block
            .get_mut(off..off + SUPERBLOCK_SIZE)
            .ok_or_else(|| Error::Internal("superblock outside its block".into()))?;
        f.encode(sb, raw)
    }
}

/// `base + delta`, saturating at the bounds.
fn apply(base: u64, delta: i64) -> u64 {
    if delta >= 0 {
        base.saturating_add(delta.unsigned_abs())
    } else {
        base.saturating_sub(delta.unsigned_abs())
    }
}

impl TxBlocks for Tx<'_> {
    fn sb(&self) -> &Superblock {
        Tx::sb(self)
    }
    fn creds(&self) -> Creds {
        Tx::creds(self)
    }
    fn now(&self) -> Timestamp {
        Tx::now(self)
    }
    fn get(&self, blk: Pblk) -> Result<Arc<[u8]>> {
        Tx::get(self, blk)
    }
    fn modify(&mut self, blk: Pblk) -> Result<&mut [u8]> {
        Tx::modify(self, blk)
    }
    fn new_block(&mut self, blk: Pblk) -> Result<&mut [u8]> {
        Tx::new_block(self, blk)
    }
    fn alloc_blocks(
        &mut self,
        goal: Pblk,
        len: u32,
        owner: InodeNo,
        kind: AllocKind,
    ) -> Result<(Pblk, u32)> {
        Tx::alloc_blocks(self, goal, len, owner, kind)
    }
    fn free_blocks(&mut self, start: Pblk, len: u64, kind: AllocKind) -> Result<()> {
        Tx::free_blocks(self, start, len, kind)
    }
    fn alloc_inode(&mut self, parent: InodeNo, mode: u16) -> Result<InodeNo> {
        Tx::alloc_inode(self, parent, mode)
    }
    fn free_inode(&mut self, ino: InodeNo, mode: u16) -> Result<()> {
        Tx::free_inode(self, ino, mode)
    }
    fn inode(&self, ino: InodeNo) -> Result<Inode> {
        Tx::inode(self, ino)
    }
    fn write_inode(&mut self, inode: &Inode) -> Result<()> {
        Tx::write_inode(self, inode)
    }
    fn check_space(&self, blocks: u64, inodes: u64) -> Result<()> {
        Tx::check_space(self, blocks, inodes)
    }
    fn inode_goal(&self, inode: &Inode) -> Pblk {
        Tx::inode_goal(self, inode)
    }
    fn next_generation(&mut self) -> u32 {
        Tx::next_generation(self)
    }
}

#[cfg(test)]
#[path = "tx_tests.rs"]
mod tests;
