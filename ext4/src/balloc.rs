//! Block allocation (the kernel's balloc.c and, much simplified, mballoc.c)
//! and the loading of a group's bitmaps for change, which the inode
//! allocator (`ialloc.rs`) shares.
//!
//! Allocation is goal-directed: the goal's group is searched first, from
//! the goal (a free goal block is taken with whatever run follows it, so a
//! growing file stays contiguous), for a run of the length asked; then
//! every other group in order for such a run; then, failing that, for any
//! free block. A caller that needs more loops (an allocation returns
//! 1..=len contiguous blocks).
//!
//! Invariants:
//! - a bitmap is trusted only after it was checked once per mount against
//!   its descriptor (checksum with metadata_csum, free bits equal to the
//!   descriptor's count, every system-zone block of the group marked in
//!   use); a group that fails is marked damaged, the operation fails
//!   ([`Error::Corrupt`] / [`Error::Checksum`]: the caller aborts and
//!   records it with `Fs::fail`) and the group is never touched again this
//!   mount;
//! - an uninitialized bitmap (BLOCK_UNINIT/INODE_UNINIT) is built from the
//!   group's own metadata (the system zones inside it) and the padding
//!   rule, checked against the descriptor the same way, and the flag
//!   cleared in the same transaction;
//! - no block inside a system zone is ever handed out or freed, whatever a
//!   bitmap says (that is corruption);
//! - a block freed in a transaction is not handed out again by it, nor,
//!   with a journal, by any transaction before the journal commit that
//!   frees it is durable (`journaled.rs`);
//! - every changed bitmap's checksum and its descriptor (counts, flags,
//!   checksum) are updated in the same transaction; the free counts of the
//!   transaction move with them.

use crate::alloc_state::BitmapKind;
use crate::bitmap::{self, all_set, bitmap_bytes, count_clear, find_bit, mark_end, set_bits};
use crate::error::{Error, Result, Space};
use crate::group::{self, GroupDesc};
use crate::inode::{Inode, S_IFMT, S_IFREG};
use crate::num::{GroupNo, InodeNo, Pblk};
use crate::superblock::incompat;
use crate::tx::{AllocKind, Tx};
use crate::zones::ZoneKind;

/// Flex group size from which the kernel puts directories and files in
/// different groups of the flex group (`EXT4_FLEX_SIZE_DIR_ALLOC_SCHEME`).
const FLEX_SIZE_DIR_ALLOC_SCHEME: u32 = 4;

impl Tx<'_> {
    /// Allocates a contiguous run of 1..=`len` blocks near `goal` for
    /// inode `owner` (see `TxBlocks::alloc_blocks`). `goal` outside the
    /// filesystem means "no goal": the start of the owner's group.
    pub fn alloc_blocks(
        &mut self,
        goal: Pblk,
        len: u32,
        owner: InodeNo,
        kind: AllocKind,
    ) -> Result<(Pblk, u32)> {
        if len == 0 {
            return Err(Error::Invalid("an allocation of 0 blocks".into()));
        }
        let avail = self.available_blocks(kind);
        if avail == 0 {
            return Err(Error::NoSpace(Space::Blocks));
        }
        let sb = self.sb();
        let want = u32::try_from(avail)
            .unwrap_or(u32::MAX)
            .min(len)
            .min(sb.blocks_per_group);
        let goal = if sb.block_in_fs(goal) {
            goal
        } else {
            self.goal_for(owner, true)
        };
        let (g0, off0) = self.block_group_of(goal)?;
        let n = sb.group_count;
        // Pass 0 wants the whole run (or the goal's own run); pass 1 takes
        // any free block.
        for pass in 0..2 {
            for i in 0..n {
                let g = GroupNo((g0.0 + i) % n);
                let need = if pass == 0 { want } else { 1 };
                // The goal's group is searched whatever it has left: the
                // run at the goal continues the file, however short.
                let enough = if i == 0 { 1 } else { need };
                if !self.may_allocate_in(g, |gd| gd.free_blocks >= enough)? {
                    continue;
                }
                let from = if i == 0 { off0 } else { 0 };
                if let Some((bit, got)) = self.find_run(g, from, want, need, pass == 0 && i == 0)? {
                    return self.take_blocks(g, bit, got);
                }
            }
        }
        Err(Error::NoSpace(Space::Blocks))
    }

    /// Frees `len` blocks from `start` (see `TxBlocks::free_blocks`): each
    /// must be allocated and outside every system zone. `kind` will decide
    /// whether the journal needs a revoke record.
    pub fn free_blocks(&mut self, start: Pblk, len: u64, kind: AllocKind) -> Result<()> {
        let _ = kind;
        if len == 0 {
            return Ok(());
        }
        let sb = self.sb();
        let what = || format!("blocks {start}+{len}");
        if !sb.range_in_fs(start, len) {
            return Err(Error::corrupt(
                what(),
                "freeing blocks outside the filesystem",
            ));
        }
        if let Some(z) = self.fs().zones().find(start, len) {
            return Err(Error::corrupt(
                what(),
                format!(
                    "freeing blocks of the system zone ({:?} at {})",
                    z.kind, z.start
                ),
            ));
        }
        if self.freed().first_overlap(start.0, len).is_some() {
            return Err(Error::Internal(format!(
                "{}: freed twice in one transaction",
                what()
            )));
        }
        let end = start.saturating_add(len);
        let mut cur = start;
        while cur < end {
            let (g, off) = self.block_group_of(cur)?;
            let room = self.blocks_in_group(g).saturating_sub(off);
            let n = u32::try_from(end.0 - cur.0).unwrap_or(u32::MAX).min(room);
            if n == 0 {
                return Err(Error::Internal(format!(
                    "block {cur}: no room in its group"
                )));
            }
            let (_, bm) = self.prepare_bitmap(g, BitmapKind::Block)?;
            if !all_set(&self.get(bm)?, off, n) {
                self.state_mut().alloc.mark_damaged(g);
                return Err(Error::corrupt(
                    format!("block bitmap of group {g}"),
                    format!("blocks {cur}+{n} being freed are already free"),
                ));
            }
            set_bits(
                self.modify_system(bm, ZoneKind::BlockBitmap)?,
                off,
                n,
                false,
            );
            self.finish_bitmap(g, BitmapKind::Block, |gd| {
                gd.free_blocks = gd.free_blocks.saturating_add(n);
            })?;
            cur = cur.saturating_add(u64::from(n));
        }
        self.count_blocks(i64::try_from(len).unwrap_or(i64::MAX));
        self.note_freed(start, len);
        Ok(())
    }

    /// The default goal for `inode`'s first blocks, as the kernel's
    /// `ext4_inode_to_goal_block`: the first block of the inode's group;
    /// with flex_bg groups of 4 or more, of its flex group, plus one group
    /// for regular files (directories stay next to the metadata).
    pub fn inode_goal(&self, inode: &Inode) -> Pblk {
        self.goal_for(inode.ino, inode.mode & S_IFMT == S_IFREG)
    }

    fn goal_for(&self, ino: InodeNo, regular: bool) -> Pblk {
        let sb = self.sb();
        let mut g = ino.0.saturating_sub(1) / sb.inodes_per_group.max(1);
        let flex = self.flex_size();
        if flex >= FLEX_SIZE_DIR_ALLOC_SCHEME {
            g &= !(flex - 1);
            if regular {
                g += 1;
            }
        }
        let g = g.min(sb.group_count.saturating_sub(1));
        sb.group_first_block(GroupNo(g))
    }

    /// Groups per flex group (1 without flex_bg).
    pub(crate) fn flex_size(&self) -> u32 {
        let sb = self.sb();
        if sb.has_incompat(incompat::FLEX_BG) {
            1u32.checked_shl(u32::from(sb.log_groups_per_flex))
                .unwrap_or(1)
        } else {
            1
        }
    }

    /// The group of block `blk` and its bit in that group's bitmap.
    fn block_group_of(&self, blk: Pblk) -> Result<(GroupNo, u32)> {
        let sb = self.sb();
        if !sb.block_in_fs(blk) {
            return Err(Error::Internal(format!(
                "block {blk} outside the filesystem"
            )));
        }
        let rel = blk.0 - u64::from(sb.first_data_block);
        let bpg = u64::from(sb.blocks_per_group.max(1));
        let g = u32::try_from(rel / bpg)
            .map_err(|_| Error::Internal(format!("block {blk}: group past 32 bits")))?;
        Ok((GroupNo(g), (rel % bpg) as u32))
    }

    /// Blocks in group `g` (the last group may be short).
    pub(crate) fn blocks_in_group(&self, g: GroupNo) -> u32 {
        let sb = self.sb();
        let first = sb.group_first_block(g).0;
        let left = sb.blocks_count.saturating_sub(first);
        u32::try_from(left)
            .unwrap_or(u32::MAX)
            .min(sb.blocks_per_group)
    }

    /// Whether group `g` may be allocated from: a sound descriptor, not
    /// damaged, and `enough` says its (this transaction's) counts suffice.
    pub(crate) fn may_allocate_in(
        &mut self,
        g: GroupNo,
        enough: impl FnOnce(&GroupDesc) -> bool,
    ) -> Result<bool> {
        if self.state_mut().alloc.is_damaged(g) {
            return Ok(false);
        }
        let gd = self.group(g)?;
        Ok(gd.csum_ok && enough(&gd))
    }

    /// In group `g`'s bitmap, a free run of at least `need` (at most
    /// `want`) bits from bit `from`, wrapping round to the group's start;
    /// with `take_goal`, a free bit `from` is taken with whatever run
    /// follows it. Blocks this transaction freed, or a transaction whose
    /// journal commit is not durable yet, are not free.
    fn find_run(
        &mut self,
        g: GroupNo,
        from: u32,
        want: u32,
        need: u32,
        take_goal: bool,
    ) -> Result<Option<(u32, u32)>> {
        let (_, bm) = self.prepare_bitmap(g, BitmapKind::Block)?;
        let data = self.get(bm)?;
        let limit = self.blocks_in_group(g);
        let first = self.sb().group_first_block(g).0;
        let from = from.min(limit);
        for (lo, hi) in [(from, limit), (0, from)] {
            let mut i = lo;
            while let Some(s) = find_bit(&data, i, hi, false) {
                let e = find_bit(&data, s, hi, true).unwrap_or(hi);
                for (rs, re) in self.unfreed_runs(first, s, e) {
                    let run = re - rs;
                    if run >= need || (take_goal && rs == from) {
                        return Ok(Some((rs, run.min(want))));
                    }
                }
                i = e;
            }
        }
        Ok(None)
    }

    /// The parts of bits `[s, e)` of a group starting at block `first`
    /// that may be handed out (see `Tx::first_unavailable`).
    fn unfreed_runs(&self, first: u64, s: u32, e: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut cur = s;
        while cur < e {
            let at = first + u64::from(cur);
            match self.first_unavailable(at, u64::from(e - cur)) {
                None => {
                    out.push((cur, e));
                    break;
                }
                Some((fs, fl)) => {
                    let fs_bit = u32::try_from(fs.saturating_sub(first)).unwrap_or(e);
                    if fs_bit > cur {
                        out.push((cur, fs_bit.min(e)));
                    }
                    let fe_bit = u32::try_from((fs + fl).saturating_sub(first)).unwrap_or(e);
                    cur = fe_bit.max(cur + 1);
                }
            }
        }
        out
    }

    /// Marks bits `[bit, bit + n)` of group `g` in use and accounts them.
    fn take_blocks(&mut self, g: GroupNo, bit: u32, n: u32) -> Result<(Pblk, u32)> {
        let start = self
            .sb()
            .group_first_block(g)
            .saturating_add(u64::from(bit));
        if let Some(z) = self.fs().zones().find(start, u64::from(n)) {
            self.state_mut().alloc.mark_damaged(g);
            return Err(Error::corrupt(
                format!("block bitmap of group {g}"),
                format!(
                    "says block {} of the system zone ({:?}) is free",
                    z.start.max(start),
                    z.kind
                ),
            ));
        }
        let gd = self.group(g)?;
        if gd.free_blocks < n {
            self.state_mut().alloc.mark_damaged(g);
            return Err(Error::corrupt(
                format!("group descriptor {g}"),
                format!("{} free blocks, but {n} free in its bitmap", gd.free_blocks),
            ));
        }
        let (_, bm) = self.prepare_bitmap(g, BitmapKind::Block)?;
        set_bits(self.modify_system(bm, ZoneKind::BlockBitmap)?, bit, n, true);
        self.finish_bitmap(g, BitmapKind::Block, |gd| gd.free_blocks -= n)?;
        self.count_blocks(-i64::from(n));
        Ok((start, n))
    }

    /// Makes group `g`'s bitmap of `kind` ready to be changed in this
    /// transaction and returns its descriptor and block (see the module
    /// docs: checked once per mount, built when uninitialized).
    pub(crate) fn prepare_bitmap(
        &mut self,
        g: GroupNo,
        kind: BitmapKind,
    ) -> Result<(GroupDesc, Pblk)> {
        let sb = self.sb();
        let what = || format!("{} bitmap of group {g}", kind_name(kind));
        if self.state_mut().alloc.is_damaged(g) {
            return Err(Error::corrupt(what(), "damaged earlier in this mount"));
        }
        let gd = self.group(g)?;
        if !gd.csum_ok {
            return Err(Error::checksum(format!("group descriptor {g}")));
        }
        let (blk, zone, uninit, bits, free) = match kind {
            BitmapKind::Block => (
                gd.block_bitmap,
                ZoneKind::BlockBitmap,
                gd.block_uninit(sb),
                self.blocks_in_group(g),
                gd.free_blocks,
            ),
            BitmapKind::Inode => (
                gd.inode_bitmap,
                ZoneKind::InodeBitmap,
                gd.inode_uninit(sb),
                sb.inodes_per_group,
                gd.free_inodes,
            ),
        };
        if uninit {
            let built = self.build_uninit(g, kind, bits);
            if count_clear(&built, bits) != free {
                self.state_mut().alloc.mark_damaged(g);
                return Err(Error::corrupt(
                    what(),
                    format!(
                        "uninitialized with {} free, the descriptor says {free}",
                        count_clear(&built, bits)
                    ),
                ));
            }
            self.new_system(blk, zone)?.copy_from_slice(&built);
            let flag = match kind {
                BitmapKind::Block => group::BG_BLOCK_UNINIT,
                BitmapKind::Inode => group::BG_INODE_UNINIT,
            };
            self.finish_bitmap(g, kind, |gd| gd.flags &= !flag)?;
            return Ok((self.group(g)?, blk));
        }
        if self.is_modified(blk) || self.state_mut().alloc.is_checked(g, kind) {
            return Ok((gd, blk));
        }
        let data = self.get(blk)?;
        if sb.metadata_csum() {
            let full = bitmap_csum_full(sb, kind);
            let want = match kind {
                BitmapKind::Block => gd.block_bitmap_csum,
                BitmapKind::Inode => gd.inode_bitmap_csum,
            };
            let csum_bits = match kind {
                BitmapKind::Block => sb.clusters_per_group,
                BitmapKind::Inode => sb.inodes_per_group,
            };
            if bitmap::bitmap_checksum(sb, &data, bitmap_bytes(csum_bits), full) != want {
                self.state_mut().alloc.mark_damaged(g);
                return Err(Error::checksum(what()));
            }
        }
        let have = count_clear(&data, bits);
        if have != free {
            self.state_mut().alloc.mark_damaged(g);
            return Err(Error::corrupt(
                what(),
                format!("{have} free, the descriptor says {free}"),
            ));
        }
        if kind == BitmapKind::Block {
            let first = sb.group_first_block(g);
            let end = first.saturating_add(u64::from(bits));
            let bad = self
                .fs()
                .zones()
                .clipped(first, end)
                .find(|z| !all_set(&data, (z.start.0 - first.0) as u32, z.len as u32));
            if let Some(z) = bad {
                self.state_mut().alloc.mark_damaged(g);
                return Err(Error::corrupt(
                    what(),
                    format!(
                        "says part of the system zone ({:?} at {}) is free",
                        z.kind, z.start
                    ),
                ));
            }
        }
        self.state_mut().alloc.set_checked(g, kind);
        Ok((gd, blk))
    }

    /// The bitmap of an uninitialized group: a block bitmap marks the
    /// system zones inside the group (its superblock and descriptor
    /// copies, its own bitmaps and inode table when flex_bg did not put
    /// them elsewhere), an inode bitmap nothing; both mark the padding.
    fn build_uninit(&self, g: GroupNo, kind: BitmapKind, bits: u32) -> Vec<u8> {
        let sb = self.sb();
        let mut b = vec![0u8; sb.block_size as usize];
        if kind == BitmapKind::Block {
            let first = sb.group_first_block(g);
            let end = first.saturating_add(u64::from(bits));
            for z in self.fs().zones().clipped(first, end) {
                set_bits(&mut b, (z.start.0 - first.0) as u32, z.len as u32, true);
            }
        }
        mark_end(&mut b, bits);
        b
    }

    /// Sets group `g`'s checksum of its `kind` bitmap from this
    /// transaction's copy, applies `f` to the descriptor and re-encodes it.
    pub(crate) fn finish_bitmap(
        &mut self,
        g: GroupNo,
        kind: BitmapKind,
        f: impl FnOnce(&mut GroupDesc),
    ) -> Result<()> {
        let sb = self.sb();
        let gd = self.group(g)?;
        let (blk, bits) = match kind {
            BitmapKind::Block => (gd.block_bitmap, sb.clusters_per_group),
            BitmapKind::Inode => (gd.inode_bitmap, sb.inodes_per_group),
        };
        let csum = if sb.metadata_csum() {
            let data = self.get(blk)?;
            Some(bitmap::bitmap_checksum(
                sb,
                &data,
                bitmap_bytes(bits),
                bitmap_csum_full(sb, kind),
            ))
        } else {
            None
        };
        self.update_group(g, |gd| {
            if let Some(c) = csum {
                match kind {
                    BitmapKind::Block => gd.block_bitmap_csum = c,
                    BitmapKind::Inode => gd.inode_bitmap_csum = c,
                }
            }
            f(gd);
        })?;
        Ok(())
    }
}

fn kind_name(kind: BitmapKind) -> &'static str {
    match kind {
        BitmapKind::Block => "block",
        BitmapKind::Inode => "inode",
    }
}

/// Whether the descriptor stores the full 32-bit checksum of `kind`.
fn bitmap_csum_full(sb: &crate::superblock::Superblock, kind: BitmapKind) -> bool {
    let (b, i) = group::bitmap_csum_full(sb);
    match kind {
        BitmapKind::Block => b,
        BitmapKind::Inode => i,
    }
}

#[cfg(test)]
#[path = "balloc_tests.rs"]
mod tests;
