//! System zones: the blocks that hold the filesystem's own metadata
//! (superblock and descriptor copies, reserved GDT blocks, bitmaps, inode
//! tables, the journal, the MMP block), as the kernel's block_validity keeps
//! them. Built once at open from the superblock and the descriptors; a
//! sorted set of disjoint intervals, each with the kind of metadata in it.
//!
//! Used so that no change ever writes over metadata, whatever a hostile
//! image says: allocation never hands out a zone block (a bitmap that says
//! one is free is corruption), a transaction's `modify` of a file's block
//! (extent, directory, xattr, indirect) inside a zone is refused, data
//! writes into a zone are refused; a transaction changes a zone block only
//! through the path that owns that kind (allocators for bitmaps and
//! descriptors, inode writes for inode tables, the superblock code).
//!
//! Invariants: intervals are sorted, non-empty and disjoint; two
//! overlapping intervals (possible only on a hostile image) are merged into
//! one whose kind is [`ZoneKind::Overlap`], which no owner may modify.
//!
//! Before any of that, [`ZoneCheck`] makes the check the kernel makes when
//! it mounts (`ext4_setup_system_zone`): no group's metadata may start
//! inside another's, and the journal's blocks (`ext4_protect_reserved_inode`,
//! journal replay or not) may overlap none. Overlapping metadata means one
//! structure's blocks are another's, so nothing read from either can be
//! trusted; the kernel refuses such a filesystem ("failed to initialize
//! system zone"), and so does `Fs::open`. The check costs O(groups × log
//! zones) time and, as the kernel's tree does, merges adjacent zones, so its
//! memory stays small for the usual layouts (flex_bg packs bitmaps and
//! tables together).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::group::GroupDesc;
use crate::num::{GroupNo, Pblk};
use crate::superblock::{incompat, Superblock};

/// Blocks at the start of group `g` holding a superblock copy, the
/// descriptor table (or, with meta_bg, the group's share of it) and the
/// reserved descriptor blocks (the kernel's `ext4_num_base_meta_blocks`).
pub fn base_meta_blocks(sb: &Superblock, g: GroupNo) -> u64 {
    let has_super = sb.group_has_super(g);
    let dpb = sb.descs_per_block();
    let meta = sb.has_incompat(incompat::META_BG);
    if !meta || g.0 / dpb < sb.first_meta_bg {
        if !has_super {
            return 0;
        }
        let gdb = if meta {
            u64::from(sb.first_meta_bg)
        } else {
            u64::from(sb.group_count.div_ceil(dpb))
        };
        1 + gdb + u64::from(sb.reserved_gdt_blocks)
    } else {
        // meta_bg: the first, second and last group of each meta group
        // hold a copy of its one descriptor block.
        let r = g.0 % dpb;
        u64::from(has_super) + u64::from(r == 0 || r == 1 || r == dpb - 1)
    }
}

/// What a system zone holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ZoneKind {
    /// Boot block and superblock copies (block 0 up to the first data
    /// block too).
    Super,
    /// Group descriptor blocks and reserved GDT blocks.
    Gdt,
    /// A group's block bitmap.
    BlockBitmap,
    /// A group's inode bitmap.
    InodeBitmap,
    /// Inode table blocks.
    InodeTable,
    /// The internal journal's blocks and its mapping blocks.
    Journal,
    /// The multi-mount protection block.
    Mmp,
    /// Metadata areas that overlap each other (a damaged image): no one
    /// may change these blocks.
    Overlap,
}

/// One interval of the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    /// First block.
    pub start: Pblk,
    /// Number of blocks (at least 1).
    pub len: u64,
    /// What it holds.
    pub kind: ZoneKind,
}

impl Zone {
    /// One past the last block.
    pub fn end(&self) -> Pblk {
        self.start.saturating_add(self.len)
    }
}

/// The sorted interval set of system zones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemZones {
    zones: Vec<Zone>,
}

impl SystemZones {
    /// The set of `zones` (in any order, possibly overlapping or empty):
    /// sorted, overlapping intervals merged (kind [`ZoneKind::Overlap`]
    /// unless both have the same kind), adjacent ones of one kind joined.
    pub fn from_intervals(mut zones: Vec<Zone>) -> SystemZones {
        zones.retain(|z| z.len > 0);
        zones.sort_unstable_by_key(|z| (z.start, z.len));
        let mut out: Vec<Zone> = Vec::with_capacity(zones.len());
        for z in zones {
            match out.last_mut() {
                Some(last) if z.start < last.end() => {
                    if z.kind != last.kind {
                        last.kind = ZoneKind::Overlap;
                    }
                    let end = last.end().max(z.end());
                    last.len = end.0 - last.start.0;
                }
                Some(last) if z.start == last.end() && z.kind == last.kind => {
                    last.len = last.len.saturating_add(z.len);
                }
                _ => out.push(z),
            }
        }
        SystemZones { zones: out }
    }

    /// The zones of `sb`'s fixed layout and `groups` (each group's block
    /// bitmap, inode bitmap and inode table, as the descriptors say), plus
    /// `extra` (the journal's blocks, found by the caller).
    pub fn build(
        sb: &Superblock,
        groups: impl Iterator<Item = (Pblk, Pblk, Pblk)>,
        extra: Vec<Zone>,
    ) -> SystemZones {
        let mut zones = extra;
        let z = |start: Pblk, len: u64, kind: ZoneKind| Zone { start, len, kind };
        // Everything before the first data block, and the primary superblock.
        zones.push(z(Pblk(0), sb.superblock_block().0 + 1, ZoneKind::Super));
        for g in (0..sb.group_count).map(GroupNo) {
            // A group's base metadata: its superblock copy (group 0's is
            // above), then its descriptor blocks and reserved GDT blocks.
            let first = sb.group_first_block(g);
            let has_super = u64::from(sb.group_has_super(g));
            if has_super == 1 && g.0 != 0 {
                zones.push(z(first, 1, ZoneKind::Super));
            }
            let gdt = base_meta_blocks(sb, g).saturating_sub(has_super);
            zones.push(z(first.saturating_add(has_super), gdt, ZoneKind::Gdt));
        }
        for (bb, ib, it) in groups {
            zones.push(z(bb, 1, ZoneKind::BlockBitmap));
            zones.push(z(ib, 1, ZoneKind::InodeBitmap));
            zones.push(z(
                it,
                u64::from(sb.itable_blocks_per_group),
                ZoneKind::InodeTable,
            ));
        }
        if sb.has_incompat(crate::superblock::incompat::MMP) && sb.mmp_block.0 != 0 {
            zones.push(z(sb.mmp_block, 1, ZoneKind::Mmp));
        }
        SystemZones::from_intervals(zones)
    }

    /// The first zone that intersects `[start, start + len)`.
    pub fn find(&self, start: Pblk, len: u64) -> Option<Zone> {
        let end = start.saturating_add(len.max(1));
        // The first zone ending after `start` is the only candidate.
        let i = self.zones.partition_point(|z| z.end() <= start);
        self.zones.get(i).copied().filter(|z| z.start < end)
    }

    /// The zones intersecting `[start, end)`, each clipped to it, in order.
    pub fn clipped(&self, start: Pblk, end: Pblk) -> impl Iterator<Item = Zone> + '_ {
        let i = self.zones.partition_point(|z| z.end() <= start);
        self.zones[i..]
            .iter()
            .take_while(move |z| z.start < end)
            .map(move |z| {
                let s = z.start.max(start);
                Zone {
                    start: s,
                    len: z.end().min(end).0 - s.0,
                    kind: z.kind,
                }
            })
    }

    /// The kind of metadata block `blk` holds, `None` outside every zone.
    pub fn kind_of(&self, blk: Pblk) -> Option<ZoneKind> {
        self.find(blk, 1).map(|z| z.kind)
    }

    /// Whether every block of `[start, start + len)` lies outside the zones.
    pub fn is_clear(&self, start: Pblk, len: u64) -> bool {
        self.find(start, len).is_none()
    }

    /// The intervals, sorted.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Blocks in all zones.
    pub fn total_blocks(&self) -> u64 {
        self.zones.iter().map(|z| z.len).sum()
    }
}

/// The mount-time check of the system zones (module doc): start → end
/// (exclusive) of disjoint block ranges, adjacent ones merged.
#[derive(Debug, Default)]
pub struct ZoneCheck(BTreeMap<u64, u64>);

impl ZoneCheck {
    /// The zone of every group's metadata, built in the kernel's order (a
    /// group's base metadata, block bitmap, inode bitmap, inode table):
    /// an error when one starts inside another.
    pub fn of_groups(sb: &Superblock, groups: &[GroupDesc]) -> Result<ZoneCheck> {
        let mut zones = ZoneCheck::default();
        let itable = u64::from(sb.itable_blocks_per_group);
        for gd in groups {
            let g = gd.group;
            zones.add(sb.group_first_block(g).0, base_meta_blocks(sb, g), &|| {
                format!("the superblock and descriptors of group {g}")
            })?;
            zones.add(gd.block_bitmap.0, 1, &|| {
                format!("block bitmap of group {g}")
            })?;
            zones.add(gd.inode_bitmap.0, 1, &|| {
                format!("inode bitmap of group {g}")
            })?;
            zones.add(gd.inode_table.0, itable, &|| {
                format!("inode table of group {g}")
            })?;
        }
        Ok(zones)
    }

    /// Adds the blocks `[start, start + len)` of a reserved inode (the
    /// journal): an error when they overlap anything already in the zone
    /// (the kernel's `ext4_sb_block_valid` test).
    pub fn add_inode_run(&mut self, start: u64, len: u64, what: &dyn Fn() -> String) -> Result<()> {
        let end = start.saturating_add(len);
        if let Some((&s, &e)) = self.0.range(..end).next_back() {
            if len > 0 && e > start {
                return Err(Error::corrupt(
                    what(),
                    format!("blocks {start}..{end} overlap metadata at blocks {s}..{e}"),
                ));
            }
        }
        self.add(start, len, what)
    }

    /// Adds `[start, start + len)`; an error when `start` lies inside a
    /// zone already added (the kernel's `add_system_zone` test).
    fn add(&mut self, start: u64, len: u64, what: &dyn Fn() -> String) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = start.saturating_add(len);
        let before = self.0.range(..=start).next_back().map(|(&s, &e)| (s, e));
        if let Some((s, e)) = before {
            if start < e {
                return Err(Error::corrupt(
                    "group descriptors",
                    format!(
                        "{} (blocks {start}..{end}) overlaps metadata at blocks {s}..{e}",
                        what()
                    ),
                ));
            }
        }
        // Merge with the zone ending where this one starts and the one
        // starting where it ends.
        let mut new_start = start;
        let mut new_end = end;
        if let Some((s, e)) = before.filter(|&(_, e)| e == start) {
            self.0.remove(&s);
            new_start = s;
            new_end = new_end.max(e);
        }
        // Zones this one covers or touches from the right (only a zone the
        // kernel's start test lets through can cover others) are absorbed,
        // so the map stays a set of disjoint intervals.
        let absorbed: Vec<(u64, u64)> = self.0.range(start..=end).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in absorbed {
            self.0.remove(&s);
            new_end = new_end.max(e);
        }
        self.0.insert(new_start, new_end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(start: u64, len: u64, kind: ZoneKind) -> Zone {
        Zone {
            start: Pblk(start),
            len,
            kind,
        }
    }

    #[test]
    fn intervals_are_sorted_merged_and_found() {
        use ZoneKind::*;
        let set = SystemZones::from_intervals(vec![
            z(100, 10, InodeTable),
            z(5, 1, BlockBitmap),
            z(6, 1, BlockBitmap),
            z(7, 1, InodeBitmap),
            z(105, 10, BlockBitmap), // overlaps the table: damaged
            z(50, 0, Journal),       // empty: dropped
        ]);
        assert_eq!(
            set.zones(),
            &[
                z(5, 2, BlockBitmap),
                z(7, 1, InodeBitmap),
                z(100, 15, Overlap)
            ]
        );
        // (start, len, first zone hit)
        let cases: &[(u64, u64, Option<u64>)] = &[
            (0, 5, None),
            (0, 6, Some(5)),
            (6, 1, Some(5)),
            (7, 1, Some(7)),
            (8, 92, None),
            (8, 93, Some(100)),
            (114, 1, Some(100)),
            (115, 1000, None),
            (u64::MAX, 5, None),
        ];
        for &(start, len, want) in cases {
            let got = set.find(Pblk(start), len).map(|z| z.start.0);
            assert_eq!(got, want, "{start}+{len}");
            assert_eq!(set.is_clear(Pblk(start), len), want.is_none());
        }
        assert_eq!(set.kind_of(Pblk(6)), Some(BlockBitmap));
        assert_eq!(set.kind_of(Pblk(8)), None);
        assert_eq!(set.total_blocks(), 18);
        let clip: Vec<_> = set.clipped(Pblk(6), Pblk(102)).collect();
        assert_eq!(
            clip,
            [
                z(6, 1, BlockBitmap),
                z(7, 1, InodeBitmap),
                z(100, 2, Overlap)
            ]
        );
        assert_eq!(set.clipped(Pblk(8), Pblk(100)).count(), 0);
    }

    #[test]
    fn zones_refuse_a_start_inside_and_merge_neighbours() {
        let w = || "t".to_string();
        // (zones added in order, index of the first refused, if any)
        type Case = (&'static [(u64, u64)], Option<usize>);
        let cases: &[Case] = &[
            (&[(0, 10), (10, 5), (20, 1)], None),
            (&[(0, 10), (5, 1)], Some(1)),
            (&[(0, 10), (9, 5)], Some(1)),
            (&[(0, 10), (10, 5), (14, 1)], Some(2)), // inside the merged zone
            (&[(20, 5), (10, 10), (15, 1)], Some(2)),
            // The kernel only tests the new zone's start: one that starts
            // before an existing zone and runs over it is accepted.
            (&[(20, 5), (10, 15)], None),
            (&[(5, 0), (5, 1)], None), // empty zones add nothing
        ];
        for (i, (adds, refused)) in cases.iter().enumerate() {
            let mut z = ZoneCheck::default();
            let got = adds.iter().position(|&(s, l)| z.add(s, l, &w).is_err());
            assert_eq!(got, *refused, "case {i}");
        }
        let mut z = ZoneCheck::default();
        for &(s, l) in &[(0u64, 10u64), (20, 5), (10, 10), (40, 2), (30, 20)] {
            z.add(s, l, &w).unwrap();
        }
        let got: Vec<(u64, u64)> = z.0.into_iter().collect();
        assert_eq!(got, vec![(0, 25), (30, 50)], "merged and absorbed");
        // An inode's run must overlap nothing at all.
        let mut z = ZoneCheck::default();
        z.add(10, 10, &w).unwrap();
        for (s, l, ok) in [(0, 10, true), (5, 6, false), (19, 3, false), (20, 4, true)] {
            assert_eq!(z.add_inode_run(s, l, &w).is_ok(), ok, "run {s}+{l}");
        }
    }
}
