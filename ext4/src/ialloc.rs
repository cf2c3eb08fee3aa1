//! Inode allocation (the kernel's ialloc.c): inode bitmaps, descriptor
//! counts, INODE_UNINIT and `itable_unused`, Orlov spreading.
//!
//! Where a new inode goes, as the kernel's `find_group_orlov` and
//! `find_group_other` decide, at the granularity of flex groups when the
//! filesystem has them (then the first group of the chosen flex group with
//! a free inode):
//! - a directory at the top level: a group picked from a pseudo-random
//!   start among those with at least the average free inodes and free
//!   blocks, fewest directories first, so top-level trees spread out;
//! - another directory: the first group from the parent's with room
//!   (directories under a limit, free inodes and blocks above a floor),
//!   else any with the average free inodes, else any;
//! - anything else: the parent's group if it has free inodes and blocks,
//!   else a quadratic probe from it, else any group with a free inode.
//!
//! Invariants: the inode returned is marked in its bitmap and counted
//! (descriptor, free count, directories) in this transaction; its table
//! slot is zeroed (whether or not the group's table was ever zeroed:
//! ITABLE_ZEROED) and inside the used part of the table (`itable_unused`
//! shrunk as needed); inodes below `s_first_ino` are never handed out or
//! freed; freeing an inode that is free is corruption.

use crate::alloc_state::BitmapKind;
use crate::bitmap::{find_bit, set_bits, test_bit};
use crate::error::{Error, Result, Space};
use crate::inode::table_slot;
use crate::inode::{S_IFDIR, S_IFMT};
use crate::num::{GroupNo, InodeNo};
use crate::tx::Tx;
use crate::zones::ZoneKind;

/// Free figures of one group or flex group, as this transaction sees them.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    free_inodes: u64,
    free_blocks: u64,
    dirs: u64,
}

impl Tx<'_> {
    /// Allocates an inode for a new file of `mode` in `parent` (see
    /// `TxBlocks::alloc_inode`).
    pub fn alloc_inode(&mut self, parent: InodeNo, mode: u16) -> Result<InodeNo> {
        if self.free_inodes_count() == 0 {
            return Err(Error::NoSpace(Space::Inodes));
        }
        let is_dir = mode & S_IFMT == S_IFDIR;
        let flex = self.flex_size();
        let stats = self.flex_stats(flex)?;
        let parent_flex = parent.0.saturating_sub(1) / self.sb().inodes_per_group.max(1) / flex;
        let order = if is_dir && parent == InodeNo::ROOT {
            self.orlov_top(&stats)
        } else if is_dir {
            orlov_near(&stats, parent_flex, self.sb().inodes_per_group, flex)
        } else {
            other_groups(&stats, parent_flex, parent.0)
        };
        let n = self.sb().group_count;
        for f in order {
            for g in (f * flex..(f * flex).saturating_add(flex).min(n)).map(GroupNo) {
                if !self.may_allocate_in(g, |gd| gd.free_inodes > 0)? {
                    continue;
                }
                if let Some(ino) = self.take_inode_in(g, is_dir)? {
                    return Ok(ino);
                }
            }
        }
        Err(Error::NoSpace(Space::Inodes))
    }

    /// Frees inode `ino` (see `TxBlocks::free_inode`).
    pub fn free_inode(&mut self, ino: InodeNo, mode: u16) -> Result<()> {
        let sb = self.sb();
        if ino < sb.first_ino || ino.0 > sb.inodes_count {
            return Err(Error::Internal(format!("inode {ino} cannot be freed")));
        }
        let Some((g, index)) = ino.group_index(sb.inodes_per_group) else {
            return Err(Error::Internal(format!("inode {ino} cannot be freed")));
        };
        let (gd, bm) = self.prepare_bitmap(g, BitmapKind::Inode)?;
        let is_dir = mode & S_IFMT == S_IFDIR;
        if !test_bit(&self.get(bm)?, index) {
            self.state_mut().alloc.mark_damaged(g);
            return Err(Error::corrupt(
                format!("inode bitmap of group {g}"),
                format!("inode {ino} being freed is already free"),
            ));
        }
        if is_dir && gd.used_dirs == 0 {
            self.state_mut().alloc.mark_damaged(g);
            return Err(Error::corrupt(
                format!("group descriptor {g}"),
                format!("no directories counted, directory inode {ino} being freed"),
            ));
        }
        set_bits(
            self.modify_system(bm, ZoneKind::InodeBitmap)?,
            index,
            1,
            false,
        );
        self.finish_bitmap(g, BitmapKind::Inode, |gd| {
            gd.free_inodes = gd.free_inodes.saturating_add(1);
            if is_dir {
                gd.used_dirs -= 1;
            }
        })?;
        self.count_inodes(1);
        Ok(())
    }

    /// A generation number for a new inode (pseudo-random, as the kernel's).
    pub fn next_generation(&mut self) -> u32 {
        self.state_mut().alloc.next_random() as u32
    }

    /// Free figures per flex group (per group when `flex` is 1).
    fn flex_stats(&self, flex: u32) -> Result<Vec<Stats>> {
        let n = self.sb().group_count;
        let mut out = vec![Stats::default(); n.div_ceil(flex) as usize];
        for g in (0..n).map(GroupNo) {
            let gd = self.group(g)?;
            if let Some(s) = out.get_mut((g.0 / flex) as usize) {
                s.free_inodes += u64::from(gd.free_inodes);
                s.free_blocks += u64::from(gd.free_blocks);
                s.dirs += u64::from(gd.used_dirs);
            }
        }
        Ok(out)
    }

    /// Top-level directory: from a pseudo-random start, the flex groups
    /// with at least the average free inodes and blocks, fewest
    /// directories first; then the rest in order.
    fn orlov_top(&mut self, stats: &[Stats]) -> Vec<u32> {
        let n = stats.len() as u32;
        let (avg_i, avg_b) = averages(stats);
        let start = (self.state_mut().alloc.next_random() % u64::from(n.max(1))) as u32;
        let ring = (0..n).map(|i| (start + i) % n);
        let mut good: Vec<u32> = ring
            .clone()
            .filter(|&f| {
                let s = stats[f as usize];
                s.free_inodes > 0 && s.free_inodes >= avg_i && s.free_blocks >= avg_b
            })
            .collect();
        // Stable: among equals, the ring order from the random start.
        good.sort_by_key(|&f| stats[f as usize].dirs);
        good.extend(ring);
        dedup_order(good, n)
    }
}

/// Average free inodes and free blocks per (flex) group.
fn averages(stats: &[Stats]) -> (u64, u64) {
    let n = stats.len().max(1) as u64;
    let fi: u64 = stats.iter().map(|s| s.free_inodes).sum();
    let fb: u64 = stats.iter().map(|s| s.free_blocks).sum();
    (fi / n, fb / n)
}

/// A non-top-level directory (the kernel's limits): from the parent's flex
/// group, the first with fewer directories than `max_dirs` and free inodes
/// and blocks above floors; then those with average free inodes; then all.
fn orlov_near(stats: &[Stats], parent: u32, ipg: u32, flex: u32) -> Vec<u32> {
    let n = stats.len() as u32;
    let (avg_i, avg_b) = averages(stats);
    let dirs: u64 = stats.iter().map(|s| s.dirs).sum();
    let per = u64::from(ipg) * u64::from(flex);
    let max_dirs = dirs / u64::from(n.max(1)) + per / 16;
    let min_inodes = avg_i.saturating_sub(per / 4).max(1);
    let min_blocks = avg_b.saturating_sub(per / 4);
    let ring: Vec<u32> = (0..n).map(|i| (parent + i) % n.max(1)).collect();
    let mut out: Vec<u32> = ring
        .iter()
        .copied()
        .filter(|&f| {
            let s = stats[f as usize];
            s.dirs < max_dirs && s.free_inodes >= min_inodes && s.free_blocks >= min_blocks
        })
        .collect();
    out.extend(
        ring.iter()
            .copied()
            .filter(|&f| stats[f as usize].free_inodes >= avg_i.max(1)),
    );
    out.extend(ring);
    dedup_order(out, n)
}

/// `order` with every (flex) group below `n` once, at its first place.
fn dedup_order(order: Vec<u32>, n: u32) -> Vec<u32> {
    let mut seen = vec![false; n as usize];
    order
        .into_iter()
        .filter(|&f| match seen.get_mut(f as usize) {
            Some(s) if !*s => {
                *s = true;
                true
            }
            _ => false,
        })
        .collect()
}

/// Anything but a directory: the parent's flex group if it has free
/// inodes and blocks, then a quadratic probe from it (the kernel's hash of
/// the parent's number), then every group in order.
fn other_groups(stats: &[Stats], parent: u32, parent_ino: u32) -> Vec<u32> {
    let n = stats.len() as u32;
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let has_room = |f: u32| {
        let s = stats[f as usize];
        s.free_inodes > 0 && s.free_blocks > 0
    };
    let parent = parent % n;
    if has_room(parent) {
        out.push(parent);
    }
    let mut f = (parent + parent_ino % n) % n;
    let mut step = 1u32;
    while step < n {
        f = (f + step) % n;
        if has_room(f) {
            out.push(f);
        }
        step <<= 1;
    }
    out.extend((0..n).map(|i| (parent + i) % n));
    dedup_order(out, n)
}

impl Tx<'_> {
    /// Takes the first free inode of group `g` (none below `s_first_ino`),
    /// if its bitmap has one.
    fn take_inode_in(&mut self, g: GroupNo, is_dir: bool) -> Result<Option<InodeNo>> {
        let sb = self.sb();
        let ipg = sb.inodes_per_group;
        let (gd, bm) = self.prepare_bitmap(g, BitmapKind::Inode)?;
        let data = self.get(bm)?;
        // Inodes below s_first_ino are reserved whatever the bitmap says.
        let first_index = sb.first_ino.0.saturating_sub(1 + g.0.saturating_mul(ipg));
        let Some(index) = find_bit(&data, first_index.min(ipg), ipg, false) else {
            return Ok(None);
        };
        if gd.free_inodes == 0 {
            self.state_mut().alloc.mark_damaged(g);
            return Err(Error::corrupt(
                format!("group descriptor {g}"),
                "no free inodes, but a free one in its bitmap",
            ));
        }
        let ino =
            g.0.checked_mul(ipg)
                .and_then(|v| v.checked_add(index + 1))
                .map(InodeNo)
                .ok_or_else(|| Error::Internal(format!("group {g}: inode number past 32 bits")))?;
        // A group with inodes in use has its blocks accounted too (the
        // kernel initializes the block bitmap here as well).
        if gd.block_uninit(sb) {
            self.prepare_bitmap(g, BitmapKind::Block)?;
        }
        set_bits(
            self.modify_system(bm, ZoneKind::InodeBitmap)?,
            index,
            1,
            true,
        );
        let used = ipg.saturating_sub(gd.itable_unused);
        let grows = sb.has_group_csum() && index >= used;
        self.finish_bitmap(g, BitmapKind::Inode, |gd| {
            gd.free_inodes -= 1;
            if is_dir {
                gd.used_dirs += 1;
            }
            if grows {
                gd.itable_unused = ipg - index - 1;
            }
        })?;
        self.count_inodes(-1);
        // The slot starts zeroed: it may hold anything when the table was
        // never zeroed (no ITABLE_ZEROED), or a deleted inode's remains.
        let gd = self.group(g)?;
        let (blk, off) = table_slot(sb, &gd, index);
        let isz = usize::from(sb.inode_size);
        let block = self.modify_system(blk, ZoneKind::InodeTable)?;
        block
            .get_mut(off..off + isz)
            .ok_or_else(|| Error::corrupt(format!("inode {ino}"), "outside its table block"))?
            .fill(0);
        Ok(Some(ino))
    }
}

#[cfg(test)]
#[path = "ialloc_tests.rs"]
mod tests;
