//! The system zone: the blocks the filesystem's own group metadata
//! occupies (superblock copies, descriptor blocks, reserved descriptor
//! blocks, bitmaps, inode tables), and the check the kernel makes on them
//! when it mounts (`ext4_setup_system_zone`): no zone may start inside
//! another one, and the journal's blocks (added by `Fs::open`, as the
//! kernel's `ext4_protect_reserved_inode` does, journal replay or not) may
//! overlap none. Overlapping metadata means that one structure's blocks
//! are another's, so nothing read from either can be trusted; the kernel
//! refuses such a filesystem ("failed to initialize system zone"), and so
//! does `Fs::open`.
//!
//! Invariants: the check costs O(groups × log zones) time and, as the
//! kernel's tree does, merges adjacent zones, so its memory stays small
//! for the usual layouts (flex_bg packs bitmaps and tables together).

use std::collections::BTreeMap;

use super::error::{Error, Result};
use super::group::GroupDesc;
use super::num::GroupNo;
use super::superblock::{incompat, Superblock};

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

/// The system zone: start → end (exclusive) of disjoint block ranges,
/// adjacent ones merged.
#[derive(Debug, Default)]
pub struct SystemZone(BTreeMap<u64, u64>);

impl SystemZone {
    /// The zone of every group's metadata, built in the kernel's order (a
    /// group's base metadata, block bitmap, inode bitmap, inode table):
    /// an error when one starts inside another.
    pub fn of_groups(sb: &Superblock, groups: &[GroupDesc]) -> Result<SystemZone> {
        let mut zones = SystemZone::default();
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
            let mut z = SystemZone::default();
            let got = adds.iter().position(|&(s, l)| z.add(s, l, &w).is_err());
            assert_eq!(got, *refused, "case {i}");
        }
        let mut z = SystemZone::default();
        for &(s, l) in &[(0u64, 10u64), (20, 5), (10, 10), (40, 2), (30, 20)] {
            z.add(s, l, &w).unwrap();
        }
        let got: Vec<(u64, u64)> = z.0.into_iter().collect();
        assert_eq!(got, vec![(0, 25), (30, 50)], "merged and absorbed");
        // An inode's run must overlap nothing at all.
        let mut z = SystemZone::default();
        z.add(10, 10, &w).unwrap();
        for (s, l, ok) in [(0, 10, true), (5, 6, false), (19, 3, false), (20, 4, true)] {
            assert_eq!(z.add_inode_run(s, l, &w).is_ok(), ok, "run {s}+{l}");
        }
    }
}
