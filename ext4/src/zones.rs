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

use crate::num::{GroupNo, Pblk};
use crate::superblock::Superblock;

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
        let sb_blk = sb.superblock_block();
        zones.push(z(Pblk(0), sb_blk.0 + 1, ZoneKind::Super));
        let dpb = u64::from(sb.descs_per_block());
        let gdt_blocks = u64::from(sb.group_count).div_ceil(dpb);
        let meta_bg = sb.has_incompat(crate::superblock::incompat::META_BG);
        let first_meta_bg = u64::from(sb.first_meta_bg);
        for g in (0..sb.group_count).map(GroupNo) {
            let first = sb.group_first_block(g);
            let has_super = sb.group_has_super(g);
            if has_super && g.0 != 0 {
                zones.push(z(first, 1, ZoneKind::Super));
            }
            // Where this group's superblock copy ends: descriptors follow it.
            let after_super = if g.0 == 0 { sb_blk } else { first }.saturating_add(1);
            if has_super {
                let classic = if meta_bg { first_meta_bg } else { gdt_blocks };
                let reserved = u64::from(sb.reserved_gdt_blocks);
                zones.push(z(after_super, classic + reserved, ZoneKind::Gdt));
            }
            if meta_bg {
                // A meta group's descriptor block sits in its first, second
                // and last groups, after a superblock copy if there is one.
                let index = u64::from(g.0) / dpb;
                let r = u64::from(g.0) % dpb;
                if index >= first_meta_bg && (r == 0 || r == 1 || r == dpb - 1) {
                    let at = if has_super { after_super } else { first };
                    zones.push(z(at, 1, ZoneKind::Gdt));
                }
            }
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
    }
}
