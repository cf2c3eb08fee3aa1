//! Indirect block maps (ext2/ext3, and ext4 inodes without `EXTENTS_FL`).
//!
//! `i_block` holds 12 direct pointers, then one single-, one double- and
//! one triple-indirect pointer. A zero pointer is a hole (at any level).
//! Every non-zero pointer is checked to lie inside the filesystem before it
//! is followed or returned; the walk is at most three blocks deep.

use std::sync::Arc;

use super::bytes::le32;
use super::error::{Error, Result};
use super::num::{Lblk, Pblk};
use super::superblock::Superblock;
use super::types::Mapping;

/// Direct pointers in `i_block`.
pub const DIRECT_BLOCKS: u64 = 12;
/// Index of the single-indirect pointer in `i_block`.
pub const IND_SLOT: usize = 12;
/// Index of the double-indirect pointer.
pub const DIND_SLOT: usize = 13;
/// Index of the triple-indirect pointer.
pub const TIND_SLOT: usize = 14;

/// Checks the direct pointers of `i_block` as the kernel does when it reads
/// a block-mapped inode (`ext4_ind_check_inode`: the 12 direct pointers,
/// not the indirect ones, which are checked when a read follows them):
/// each is a hole or a block inside the filesystem.
pub fn check_direct(sb: &Superblock, i_block: &[u8], what: &str) -> Result<()> {
    for slot in 0..DIRECT_BLOCKS as usize {
        let p = Pblk(u64::from(le32(i_block, slot * 4)));
        if p.0 != 0 && !sb.block_in_fs(p) {
            return Err(Error::corrupt(
                format!("block map of {what}"),
                format!("direct pointer {slot} to block {p} outside the filesystem"),
            ));
        }
    }
    Ok(())
}

/// Where logical block `lblk` lives with `per` pointers per block: its
/// `i_block` slot and its index in each indirect block below that slot
/// (none for a direct block, up to three); `None` past what the map
/// addresses.
pub fn offsets(per: u64, lblk: u64) -> Option<(usize, Vec<u64>)> {
    if lblk < DIRECT_BLOCKS {
        return Some((lblk as usize, vec![]));
    }
    let r = lblk - DIRECT_BLOCKS;
    let p2 = per * per;
    if r < per {
        Some((IND_SLOT, vec![r]))
    } else if r - per < p2 {
        let r = r - per;
        Some((DIND_SLOT, vec![r / per, r % per]))
    } else if r - per - p2 < p2 * per {
        let r = r - per - p2;
        Some((TIND_SLOT, vec![r / p2, (r / per) % per, r % per]))
    } else {
        None
    }
}

/// Blocks a block map addresses with `per` pointers per block.
pub fn addressable(per: u64) -> u64 {
    DIRECT_BLOCKS + per + per * per + per * per * per
}

/// Maps logical block `lblk` of a block-mapped inode. The returned length
/// extends over following pointers of the same pointer block that continue
/// the run (physically contiguous, or holes).
pub fn map(
    sb: &Superblock,
    i_block: &[u8],
    lblk: Lblk,
    read: &dyn Fn(Pblk) -> Result<Arc<[u8]>>,
    what: &str,
) -> Result<Mapping> {
    let name = || format!("block map of {what}");
    let lblk = lblk.as_u64();
    let per = u64::from(sb.block_size / 4);
    let ptr = |b: &[u8], i: u64| -> u32 { le32(b, (i as usize) * 4) };
    let check = |p: u32| -> Result<Pblk> {
        let p = Pblk(u64::from(p));
        if sb.block_in_fs(p) {
            Ok(p)
        } else {
            Err(Error::corrupt(
                name(),
                format!("pointer to block {p} outside the filesystem"),
            ))
        }
    };

    let Some((slot, path)) = offsets(per, lblk) else {
        // Past what the map can address: one hole to the end of the
        // offset space (a walk over it is one step).
        return Ok(Mapping {
            pblk: None,
            len: (u64::MAX - lblk).max(1),
        });
    };

    // Span of logical blocks covered by one pointer at each remaining depth.
    let span = |levels_below: usize| -> u64 { per.pow(levels_below as u32) };

    // The run continues along the pointer array that holds the final pointer.
    let run_in = |arr: &[u8], idx: u64, end: u64, first: u32| -> Result<Mapping> {
        let mut len = 1;
        let mut i = idx + 1;
        while i < end {
            let p = ptr(arr, i);
            let cont = if first == 0 {
                p == 0
            } else {
                u64::from(p) == u64::from(first) + len
            };
            if !cont {
                break;
            }
            if p != 0 {
                check(p)?;
            }
            len += 1;
            i += 1;
        }
        Ok(Mapping {
            pblk: if first == 0 {
                None
            } else {
                Some(check(first)?)
            },
            len,
        })
    };

    let root = ptr(i_block, slot as u64);
    if path.is_empty() {
        return run_in(i_block, slot as u64, DIRECT_BLOCKS, root);
    }
    if root == 0 {
        // The whole subtree is a hole; it covers span(levels) blocks from its start.
        let levels = path.len();
        let offset_in: u64 = path
            .iter()
            .enumerate()
            .map(|(d, &i)| i * span(levels - 1 - d))
            .sum();
        return Ok(Mapping {
            pblk: None,
            len: span(levels) - offset_in,
        });
    }
    let mut blk = check(root)?;
    for (d, &idx) in path.iter().enumerate() {
        let arr = read(blk)?;
        let p = ptr(&arr, idx);
        let below = path.len() - 1 - d;
        if below == 0 {
            return run_in(&arr, idx, per, p);
        }
        if p == 0 {
            let offset_in: u64 = path[d + 1..]
                .iter()
                .enumerate()
                .map(|(k, &i)| i * span(below - 1 - k))
                .sum();
            return Ok(Mapping {
                pblk: None,
                len: span(below) - offset_in,
            });
        }
        blk = check(p)?;
    }
    Err(Error::corrupt(name(), "walk ended without a pointer"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::superblock::synth;
    use crate::testblocks::{lb, m, reader};

    /// [`super::map`] with the logical block as a plain integer.
    fn map(
        sb: &Superblock,
        ib: &[u8],
        l: u64,
        read: &dyn Fn(Pblk) -> Result<Arc<[u8]>>,
        what: &str,
    ) -> Result<Mapping> {
        super::map(sb, ib, lb(l), read, what)
    }

    fn ptrs(v: &[(usize, u32)], len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        for &(i, p) in v {
            b[i * 4..i * 4 + 4].copy_from_slice(&p.to_le_bytes());
        }
        b
    }

    #[test]
    fn direct_single_double_triple() {
        let sb = synth::parsed(); // 1 KiB blocks: 256 pointers per block
        let ib = ptrs(
            &[
                (0, 500),
                (1, 501),
                (2, 502),
                (5, 600),
                (12, 10),
                (13, 11),
                (14, 12),
            ],
            60,
        );
        let blocks = HashMap::from([
            (10, ptrs(&[(0, 700), (1, 701), (255, 800)], 1024)),
            (11, ptrs(&[(1, 20)], 1024)),
            (20, ptrs(&[(3, 900)], 1024)),
            (12, ptrs(&[(0, 30)], 1024)),
            (30, ptrs(&[(0, 31)], 1024)),
            (31, ptrs(&[(7, 1234)], 1024)),
        ]);
        let read = reader(blocks);
        let per = 256u64;
        let cases = [
            (0, m(Some(500), 3)),
            (2, m(Some(502), 1)),
            (3, m(None, 2)),
            (5, m(Some(600), 1)),
            (6, m(None, 6)),
            (12, m(Some(700), 2)),
            (14, m(None, 253)),
            (12 + 255, m(Some(800), 1)),
            (12 + per, m(None, per)), // double, first subtree absent
            (12 + per + per + 3, m(Some(900), 1)), // double, second subtree
            (12 + per + per + 4, m(None, per - 4)),
            (12 + per + per * per + 7, m(Some(1234), 1)), // triple
            (12 + per + per * per + 8, m(None, per - 8)),
            (12 + per + per * per + per, m(None, per)), // absent 2nd-level entry
            (
                12 + per + per * per + per * per * per,
                m(None, u64::MAX - (12 + per + per * per + per * per * per)),
            ), // past the map
        ];
        for (l, want) in cases {
            assert_eq!(map(&sb, &ib, l, &read, "t").unwrap(), want, "lblk {l}");
        }
        // Absent single-indirect block: hole over its whole span.
        let ib2 = ptrs(&[], 60);
        assert_eq!(map(&sb, &ib2, 12, &read, "t").unwrap(), m(None, per));
        assert_eq!(map(&sb, &ib2, 20, &read, "t").unwrap(), m(None, per - 8));
    }

    #[test]
    fn pointers_outside_the_fs() {
        let sb = synth::parsed();
        let read = reader(HashMap::from([(10, ptrs(&[(0, 9000)], 1024))]));
        for (ib, l) in [
            (ptrs(&[(0, 8192)], 60), 0u64),
            (ptrs(&[(12, 9999)], 60), 12),
            (ptrs(&[(12, 10)], 60), 12),
            (ptrs(&[(0, 8191), (1, 8192)], 60), 0), // a run continuing out of the fs
        ] {
            let e = map(&sb, &ib, l, &read, "t").unwrap_err();
            assert!(e.to_string().contains("outside"), "{e}");
        }
    }
}
