//! Extent trees: logical → physical block mapping for inodes with
//! `EXTENTS_FL`.
//!
//! The root lives in `i_block` (a 12-byte header and up to 4 entries);
//! deeper nodes are blocks ending in a crc32c tail (metadata_csum). Every
//! node is validated before use: magic, `entries ≤ max ≤ capacity`, the
//! depth exactly one less than its parent's (so a node pointing back at an
//! ancestor is caught, and a walk reads at most [`MAX_DEPTH`]` + 1` nodes),
//! keys strictly increasing and inside the parent's key range, extents not
//! overlapping, non-empty, and their physical ranges inside the filesystem.

use std::sync::Arc;

use super::bytes::{le16, le32};
use super::csum::crc32c;
use super::error::{Error, Result};
use super::superblock::Superblock;

/// Extent header magic.
pub const EXTENT_MAGIC: u16 = 0xF30A;
/// Deepest tree the kernel builds or accepts.
pub const MAX_DEPTH: u16 = 5;
/// Size of the header and of each entry.
pub const HEADER_LEN: usize = 12;
/// Size of an index or leaf entry.
pub const ENTRY_LEN: usize = 12;
/// `ee_len` above this marks an uninitialized extent of `ee_len - MAX_INIT_LEN` blocks.
pub const MAX_INIT_LEN: u16 = 32768;
/// Logical blocks addressable by an extent tree (32-bit logical block numbers).
pub const LOGICAL_LIMIT: u64 = 1 << 32;

// Header fields.
const EH_MAGIC: usize = 0;
const EH_ENTRIES: usize = 2;
const EH_MAX: usize = 4;
const EH_DEPTH: usize = 6;
// Entry fields (index: ei_block, ei_leaf_lo, ei_leaf_hi; leaf: ee_block, ee_len, ee_start_hi, ee_start_lo).
const E_BLOCK: usize = 0;
const EI_LEAF_LO: usize = 4;
const EI_LEAF_HI: usize = 8;
const EE_LEN: usize = 4;
const EE_START_HI: usize = 6;
const EE_START_LO: usize = 8;

/// Where a logical block lives, and for how many blocks the answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Physical block of the logical block asked, `None` for a hole or an
    /// uninitialized extent (reads as zeros).
    pub pblk: Option<u64>,
    /// Number of blocks from the one asked for which the answer continues
    /// (physically contiguous, or hole), at least 1.
    pub len: u64,
}

/// One validated extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical block.
    pub lblk: u32,
    /// Length in blocks (1..=32768).
    pub len: u32,
    /// First physical block.
    pub pblk: u64,
    /// Uninitialized (reads as zeros).
    pub uninit: bool,
}

struct Header {
    entries: usize,
    max: usize,
    depth: u16,
}

/// Checks the parts of a header needed to find the checksum tail (magic,
/// `max` within capacity).
fn parse_header(node: &[u8], capacity: usize, what: &dyn Fn() -> String) -> Result<Header> {
    let magic = le16(node, EH_MAGIC);
    if magic != EXTENT_MAGIC {
        return Err(Error::corrupt(
            what(),
            format!("extent header magic {magic:#06x}"),
        ));
    }
    let max = usize::from(le16(node, EH_MAX));
    if max == 0 || max > capacity {
        return Err(Error::corrupt(
            what(),
            format!("extent node max {max} (capacity {capacity})"),
        ));
    }
    Ok(Header {
        entries: usize::from(le16(node, EH_ENTRIES)),
        max,
        depth: le16(node, EH_DEPTH),
    })
}

fn entry(node: &[u8], i: usize) -> &[u8] {
    let off = HEADER_LEN + i * ENTRY_LEN;
    node.get(off..off + ENTRY_LEN).unwrap_or(&[])
}

fn parse_extent(e: &[u8]) -> Extent {
    let raw_len = le16(e, EE_LEN);
    let (len, uninit) = if raw_len > MAX_INIT_LEN {
        (u32::from(raw_len - MAX_INIT_LEN), true)
    } else {
        (u32::from(raw_len), false)
    };
    Extent {
        lblk: le32(e, E_BLOCK),
        len,
        pblk: u64::from(le32(e, EE_START_LO)) | (u64::from(le16(e, EE_START_HI)) << 32),
        uninit,
    }
}

/// Verifies the crc32c tail of a non-root node (`max` entries long).
fn check_tail(node: &[u8], max: usize, seed: u32, what: &dyn Fn() -> String) -> Result<()> {
    let tail = HEADER_LEN + max * ENTRY_LEN;
    let stored = super::bytes::get_le32(node, tail)
        .ok_or_else(|| Error::corrupt(what(), "extent block has no room for its checksum"))?;
    let c = crc32c(seed, node.get(..tail).unwrap_or(&[]));
    if c != stored {
        return Err(Error::checksum(what()));
    }
    Ok(())
}

/// Maps logical block `lblk` of an extent-mapped inode.
///
/// `i_block` is the inode's 60-byte root, `seed` its checksum seed (used
/// when `sb.metadata_csum()`), `read` fetches a metadata block, `what`
/// names the inode in errors ("inode 12").
pub fn map(
    sb: &Superblock,
    i_block: &[u8],
    seed: u32,
    lblk: u64,
    read: &dyn Fn(u64) -> Result<Arc<[u8]>>,
    what: &str,
) -> Result<Mapping> {
    let name = || format!("extent tree of {what}");
    if lblk >= LOGICAL_LIMIT {
        return Ok(Mapping { pblk: None, len: 1 });
    }
    let root_capacity = (i_block.len().saturating_sub(HEADER_LEN)) / ENTRY_LEN;
    let block_capacity = (sb.block_size as usize - HEADER_LEN) / ENTRY_LEN;

    let mut owned: Option<Arc<[u8]>> = None;
    let mut expect_depth: Option<u16> = None;
    // Keys of the current node lie in [lo, hi).
    let mut lo: u64 = 0;
    let mut hi: u64 = LOGICAL_LIMIT;
    // At most MAX_DEPTH + 1 nodes: the depth strictly decreases.
    for _ in 0..=MAX_DEPTH {
        let node: &[u8] = owned.as_deref().unwrap_or(i_block);
        let capacity = if owned.is_some() {
            block_capacity
        } else {
            root_capacity
        };
        let h = parse_header(node, capacity, &name)?;
        // A block's checksum first: if it fails nothing else in it is trustworthy.
        if owned.is_some() && sb.metadata_csum() {
            check_tail(node, h.max, seed, &name)?;
        }
        if h.entries > h.max {
            return Err(Error::corrupt(
                name(),
                format!("extent node has {} entries, max {}", h.entries, h.max),
            ));
        }
        match expect_depth {
            None if h.depth > MAX_DEPTH => {
                return Err(Error::corrupt(
                    name(),
                    format!("depth {} too deep", h.depth),
                ));
            }
            Some(d) if h.depth != d => {
                return Err(Error::corrupt(
                    name(),
                    format!("node depth {} where {d} was expected", h.depth),
                ));
            }
            _ => {}
        }
        if owned.is_some() && h.entries == 0 {
            return Err(Error::corrupt(name(), "empty non-root node"));
        }
        if h.depth == 0 {
            return map_leaf(sb, node, h.entries, lblk, lo, hi, &name);
        }
        if h.entries == 0 {
            return Err(Error::corrupt(name(), "index node without entries"));
        }
        // Validate all keys (strictly increasing, inside [lo, hi)) and pick
        // the last one <= lblk.
        let mut chosen: Option<usize> = None;
        let mut prev: Option<u64> = None;
        for i in 0..h.entries {
            let k = u64::from(le32(entry(node, i), E_BLOCK));
            if prev.is_some_and(|p| k <= p) || k < lo || k >= hi {
                return Err(Error::corrupt(
                    name(),
                    format!("index key {k} out of order"),
                ));
            }
            prev = Some(k);
            if k <= lblk {
                chosen = Some(i);
            }
        }
        let Some(i) = chosen else {
            // Before the first key: a hole up to it.
            let first = u64::from(le32(entry(node, 0), E_BLOCK));
            return Ok(Mapping {
                pblk: None,
                len: first - lblk,
            });
        };
        let e = entry(node, i);
        let child = u64::from(le32(e, EI_LEAF_LO)) | (u64::from(le16(e, EI_LEAF_HI)) << 32);
        if !sb.block_in_fs(child) {
            return Err(Error::corrupt(
                name(),
                format!("index points to block {child} outside the filesystem"),
            ));
        }
        lo = u64::from(le32(e, E_BLOCK));
        if i + 1 < h.entries {
            hi = u64::from(le32(entry(node, i + 1), E_BLOCK));
        }
        expect_depth = Some(h.depth - 1);
        owned = Some(read(child)?);
    }
    Err(Error::corrupt(name(), "tree deeper than the depth limit"))
}

fn map_leaf(
    sb: &Superblock,
    node: &[u8],
    entries: usize,
    lblk: u64,
    lo: u64,
    hi: u64,
    name: &dyn Fn() -> String,
) -> Result<Mapping> {
    let mut prev_end = lo;
    let mut found: Option<Mapping> = None;
    // Hole length when lblk falls between extents: up to the next extent start.
    let mut next_start = hi;
    for i in 0..entries {
        let x = parse_extent(entry(node, i));
        let start = u64::from(x.lblk);
        let end = start + u64::from(x.len);
        if x.len == 0 {
            return Err(Error::corrupt(
                name(),
                format!("zero-length extent at {start}"),
            ));
        }
        if start < prev_end || end > hi {
            return Err(Error::corrupt(
                name(),
                format!("extent {start}+{} overlaps or is out of order", x.len),
            ));
        }
        if !sb.range_in_fs(x.pblk, u64::from(x.len)) {
            return Err(Error::corrupt(
                name(),
                format!(
                    "extent {start}+{} points to blocks {}+{} outside the filesystem",
                    x.len, x.pblk, x.len
                ),
            ));
        }
        prev_end = end;
        if found.is_none() {
            if lblk >= start && lblk < end {
                let off = lblk - start;
                found = Some(Mapping {
                    pblk: if x.uninit { None } else { Some(x.pblk + off) },
                    len: end - lblk,
                });
            } else if start > lblk && next_start == hi {
                next_start = start;
            }
        }
    }
    Ok(found.unwrap_or(Mapping {
        pblk: None,
        len: next_start.saturating_sub(lblk).max(1),
    }))
}

/// All extents of the tree in logical order (for tests and tools), bounded
/// by `limit` extents.
pub fn collect(
    sb: &Superblock,
    i_block: &[u8],
    seed: u32,
    read: &dyn Fn(u64) -> Result<Arc<[u8]>>,
    what: &str,
    limit: usize,
) -> Result<(u16, Vec<Extent>)> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut lblk = 0u64;
    while lblk < LOGICAL_LIMIT && out.len() < limit {
        let m = map(sb, i_block, seed, lblk, read, what)?;
        if let Some(p) = m.pblk {
            out.push(Extent {
                lblk: lblk as u32,
                len: m.len.min(u64::from(u32::MAX)) as u32,
                pblk: p,
                uninit: false,
            });
        }
        lblk = lblk.saturating_add(m.len);
        depth = le16(i_block, EH_DEPTH);
    }
    Ok((depth, out))
}
