//! Indirect block maps (ext2/ext3, and ext4 inodes without `EXTENTS_FL`).
//!
//! `i_block` holds 12 direct pointers, then one single-, one double- and
//! one triple-indirect pointer. A zero pointer is a hole (at any level).
//! Every non-zero pointer is checked to lie inside the filesystem before it
//! is followed or returned; the walk is at most three blocks deep.

use std::sync::Arc;

use super::bytes::le32;
use super::error::{Error, Result};
use super::extent::Mapping;
use super::superblock::Superblock;

/// Direct pointers in `i_block`.
pub const DIRECT_BLOCKS: u64 = 12;
/// Index of the single-indirect pointer in `i_block`.
const IND_SLOT: usize = 12;
/// Index of the double-indirect pointer.
const DIND_SLOT: usize = 13;
/// Index of the triple-indirect pointer.
const TIND_SLOT: usize = 14;

/// Maps logical block `lblk` of a block-mapped inode. The returned length
/// extends over following pointers of the same pointer block that continue
/// the run (physically contiguous, or holes).
pub fn map(
    sb: &Superblock,
    i_block: &[u8],
    lblk: u64,
    read: &dyn Fn(u64) -> Result<Arc<[u8]>>,
    what: &str,
) -> Result<Mapping> {
    let name = || format!("block map of {what}");
    let per = u64::from(sb.block_size / 4);
    let ptr = |b: &[u8], i: u64| -> u32 { le32(b, (i as usize) * 4) };
    let check = |p: u32| -> Result<u64> {
        let p = u64::from(p);
        if sb.block_in_fs(p) {
            Ok(p)
        } else {
            Err(Error::corrupt(
                name(),
                format!("pointer to block {p} outside the filesystem"),
            ))
        }
    };

    // Decompose lblk into a root slot and the indices at each level.
    let (slot, path): (usize, Vec<u64>) = if lblk < DIRECT_BLOCKS {
        (lblk as usize, vec![])
    } else {
        let r = lblk - DIRECT_BLOCKS;
        let p2 = per * per;
        if r < per {
            (IND_SLOT, vec![r])
        } else if r - per < p2 {
            let r = r - per;
            (DIND_SLOT, vec![r / per, r % per])
        } else if r - per - p2 < p2 * per {
            let r = r - per - p2;
            (TIND_SLOT, vec![r / p2, (r / per) % per, r % per])
        } else {
            return Ok(Mapping { pblk: None, len: 1 });
        }
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
