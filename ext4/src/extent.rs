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
use super::num::{Lblk, Pblk};
use super::superblock::Superblock;
use super::types::Mapping;

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
pub(crate) const EH_MAGIC: usize = 0;
pub(crate) const EH_ENTRIES: usize = 2;
pub(crate) const EH_MAX: usize = 4;
pub(crate) const EH_DEPTH: usize = 6;
// Entry fields (index: ei_block, ei_leaf_lo, ei_leaf_hi; leaf: ee_block, ee_len, ee_start_hi, ee_start_lo).
pub(crate) const E_BLOCK: usize = 0;
pub(crate) const EI_LEAF_LO: usize = 4;
pub(crate) const EI_LEAF_HI: usize = 8;
pub(crate) const EE_LEN: usize = 4;
pub(crate) const EE_START_HI: usize = 6;
pub(crate) const EE_START_LO: usize = 8;

/// One validated extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical block.
    pub lblk: Lblk,
    /// Length in blocks (1..=32768).
    pub len: u32,
    /// First physical block.
    pub pblk: Pblk,
    /// Uninitialized (reads as zeros).
    pub uninit: bool,
}

/// A node header's fields, as parsed.
pub(crate) struct Header {
    /// `eh_entries`.
    pub(crate) entries: usize,
    /// `eh_max`.
    pub(crate) max: usize,
    /// `eh_depth`.
    pub(crate) depth: u16,
}

/// Checks the parts of a header needed to find the checksum tail (magic,
/// `max` within capacity).
pub(crate) fn parse_header(
    node: &[u8],
    capacity: usize,
    what: &dyn Fn() -> String,
) -> Result<Header> {
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

/// `eh_entries ≤ eh_max`: the entries a walk reads are bounded by the
/// node's capacity.
pub(crate) fn check_entries(h: &Header, what: &dyn Fn() -> String) -> Result<()> {
    if h.entries > h.max {
        return Err(Error::corrupt(
            what(),
            format!("extent node has {} entries, max {}", h.entries, h.max),
        ));
    }
    Ok(())
}

pub(crate) fn entry(node: &[u8], i: usize) -> &[u8] {
    let off = HEADER_LEN + i * ENTRY_LEN;
    node.get(off..off + ENTRY_LEN).unwrap_or(&[])
}

pub(crate) fn parse_extent(e: &[u8]) -> Extent {
    let raw_len = le16(e, EE_LEN);
    let (len, uninit) = if raw_len > MAX_INIT_LEN {
        (u32::from(raw_len - MAX_INIT_LEN), true)
    } else {
        (u32::from(raw_len), false)
    };
    Extent {
        lblk: Lblk(le32(e, E_BLOCK)),
        len,
        pblk: Pblk(u64::from(le32(e, EE_START_LO)) | (u64::from(le16(e, EE_START_HI)) << 32)),
        uninit,
    }
}

/// Verifies the crc32c tail of a non-root node (`max` entries long).
pub(crate) fn check_tail(
    node: &[u8],
    max: usize,
    seed: u32,
    what: &dyn Fn() -> String,
) -> Result<()> {
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
    lblk: Lblk,
    read: &dyn Fn(Pblk) -> Result<Arc<[u8]>>,
    what: &str,
) -> Result<Mapping> {
    let name = || format!("extent tree of {what}");
    let lblk = lblk.as_u64();
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
        check_entries(&h, &name)?;
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
        let Some(i) = pick_index(sb, node, h.entries, lblk, lo, hi, &name)? else {
            // Before the first key: a hole up to it.
            let first = u64::from(le32(entry(node, 0), E_BLOCK));
            return Ok(Mapping {
                pblk: None,
                len: first - lblk,
            });
        };
        let e = entry(node, i);
        let child = index_child(e);
        lo = u64::from(le32(e, E_BLOCK));
        if i + 1 < h.entries {
            hi = u64::from(le32(entry(node, i + 1), E_BLOCK));
        }
        expect_depth = Some(h.depth - 1);
        owned = Some(read(child)?);
    }
    Err(Error::corrupt(name(), "tree deeper than the depth limit"))
}

/// The child block of an index entry.
pub(crate) fn index_child(e: &[u8]) -> Pblk {
    Pblk(u64::from(le32(e, EI_LEAF_LO)) | (u64::from(le16(e, EI_LEAF_HI)) << 32))
}

/// Validates every entry of an index node (keys strictly increasing and
/// inside `[lo, hi)`, children inside the filesystem, as the kernel's
/// `ext4_valid_extent_entries` does for index nodes) and picks the last
/// entry whose key is ≤ `lblk` (`None`: `lblk` lies before the first key).
pub(crate) fn pick_index(
    sb: &Superblock,
    node: &[u8],
    entries: usize,
    lblk: u64,
    lo: u64,
    hi: u64,
    name: &dyn Fn() -> String,
) -> Result<Option<usize>> {
    let mut chosen = None;
    let mut prev: Option<u64> = None;
    for i in 0..entries {
        let e = entry(node, i);
        let k = u64::from(le32(e, E_BLOCK));
        if prev.is_some_and(|p| k <= p) || k < lo || k >= hi {
            return Err(Error::corrupt(
                name(),
                format!("index key {k} out of order"),
            ));
        }
        let child = index_child(e);
        if !sb.block_in_fs(child) {
            return Err(Error::corrupt(
                name(),
                format!("index points to block {child} outside the filesystem"),
            ));
        }
        prev = Some(k);
        if k <= lblk {
            chosen = Some(i);
        }
    }
    Ok(chosen)
}

/// Checks the extent root in `i_block` the way the kernel does when it
/// reads the inode (`ext4_ext_check_inode`): the header (magic, `max`
/// within the root's capacity, `entries ≤ max`, depth at most
/// [`MAX_DEPTH`], entries in an index root) and every entry (extents
/// non-empty, in order, not overlapping, inside the filesystem; index keys
/// in order, children inside the filesystem). Deeper nodes are checked
/// when a read reaches them.
pub fn check_root(sb: &Superblock, i_block: &[u8], what: &str) -> Result<()> {
    let name = || format!("extent tree of {what}");
    let capacity = (i_block.len().saturating_sub(HEADER_LEN)) / ENTRY_LEN;
    let h = parse_header(i_block, capacity, &name)?;
    check_entries(&h, &name)?;
    if h.depth > MAX_DEPTH {
        return Err(Error::corrupt(
            name(),
            format!("depth {} too deep", h.depth),
        ));
    }
    if h.depth == 0 {
        return map_leaf(sb, i_block, h.entries, 0, 0, LOGICAL_LIMIT, &name).map(drop);
    }
    if h.entries == 0 {
        return Err(Error::corrupt(name(), "index node without entries"));
    }
    pick_index(sb, i_block, h.entries, 0, 0, LOGICAL_LIMIT, &name).map(drop)
}

pub(crate) fn map_leaf(
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
        let start = x.lblk.as_u64();
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
                    pblk: if x.uninit {
                        None
                    } else {
                        x.pblk.checked_add(off)
                    },
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
    read: &dyn Fn(Pblk) -> Result<Arc<[u8]>>,
    what: &str,
    limit: usize,
) -> Result<(u16, Vec<Extent>)> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut lblk = 0u64;
    while out.len() < limit {
        let Ok(at) = u32::try_from(lblk).map(Lblk) else {
            break;
        };
        let m = map(sb, i_block, seed, at, read, what)?;
        if let Some(p) = m.pblk {
            out.push(Extent {
                lblk: at,
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::superblock::synth;
    use crate::testblocks::{lb, m, reader as mapper};

    /// [`super::map`] with the logical block as a plain integer.
    fn map(
        sb: &Superblock,
        root: &[u8],
        seed: u32,
        l: u64,
        read: &dyn Fn(Pblk) -> Result<Arc<[u8]>>,
        what: &str,
    ) -> Result<Mapping> {
        super::map(sb, root, seed, lb(l), read, what)
    }

    const SEED: u32 = 0x5eed;

    fn header(node: &mut [u8], entries: u16, max: u16, depth: u16) {
        node[0..2].copy_from_slice(&EXTENT_MAGIC.to_le_bytes());
        node[2..4].copy_from_slice(&entries.to_le_bytes());
        node[4..6].copy_from_slice(&max.to_le_bytes());
        node[6..8].copy_from_slice(&depth.to_le_bytes());
    }

    fn leaf_entry(node: &mut [u8], i: usize, lblk: u32, len: u16, pblk: u64) {
        let o = HEADER_LEN + i * ENTRY_LEN;
        node[o..o + 4].copy_from_slice(&lblk.to_le_bytes());
        node[o + 4..o + 6].copy_from_slice(&len.to_le_bytes());
        node[o + 6..o + 8].copy_from_slice(&((pblk >> 32) as u16).to_le_bytes());
        node[o + 8..o + 12].copy_from_slice(&(pblk as u32).to_le_bytes());
    }

    fn index_entry(node: &mut [u8], i: usize, lblk: u32, child: u64) {
        let o = HEADER_LEN + i * ENTRY_LEN;
        node[o..o + 4].copy_from_slice(&lblk.to_le_bytes());
        node[o + 4..o + 8].copy_from_slice(&(child as u32).to_le_bytes());
        node[o + 8..o + 10].copy_from_slice(&((child >> 32) as u16).to_le_bytes());
    }

    /// A 1 KiB block node with `max` = capacity and its checksum tail.
    fn block_node(fill: impl Fn(&mut [u8])) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        fill(&mut b);
        seal(&mut b);
        b
    }

    fn seal(b: &mut [u8]) {
        let max = usize::from(le16(b, EH_MAX));
        let tail = HEADER_LEN + max * ENTRY_LEN;
        let c = crc32c(SEED, &b[..tail]);
        b[tail..tail + 4].copy_from_slice(&c.to_le_bytes());
    }

    #[test]
    fn root_leaf_with_hole_and_uninit() {
        let sb = synth::parsed();
        let mut root = [0u8; 60];
        header(&mut root, 3, 4, 0);
        leaf_entry(&mut root, 0, 0, 10, 1000);
        leaf_entry(&mut root, 1, 20, 5 + MAX_INIT_LEN, 2000); // uninitialized
        leaf_entry(&mut root, 2, 30, 4000, 3000);
        let none = mapper(HashMap::new());
        let cases = [
            (0, m(Some(1000), 10)),
            (9, m(Some(1009), 1)),
            (10, m(None, 10)), // hole up to 20
            (22, m(None, 3)),  // uninit reads as zeros
            (25, m(None, 5)),
            (30, m(Some(3000), 4000)),
            (4029, m(Some(6999), 1)),
            (4030, m(None, LOGICAL_LIMIT - 4030)), // hole to the end
            (LOGICAL_LIMIT - 1, m(None, 1)),
        ];
        for (l, want) in cases {
            assert_eq!(
                map(&sb, &root, SEED, l, &none, "t").unwrap(),
                want,
                "lblk {l}"
            );
        }
        // ee_len of exactly 32768 is an initialized extent of 32768 blocks
        // (here too long for the 8192-block fs).
        leaf_entry(&mut root, 2, 30, MAX_INIT_LEN, 3000);
        let e = map(&sb, &root, SEED, 30, &none, "t").unwrap_err();
        assert!(e.to_string().contains("30+32768"), "{e}");
    }

    #[test]
    fn depth_one_and_two() {
        let sb = synth::parsed();
        let leaf_a = block_node(|b| {
            header(b, 2, 84, 0);
            leaf_entry(b, 0, 0, 4, 100);
            leaf_entry(b, 1, 10, 2, 200);
        });
        let leaf_b = block_node(|b| {
            header(b, 1, 84, 0);
            leaf_entry(b, 0, 100, 8, 300);
        });
        let idx = block_node(|b| {
            header(b, 2, 84, 1);
            index_entry(b, 0, 0, 50);
            index_entry(b, 1, 100, 51);
        });
        let mut root = [0u8; 60];
        header(&mut root, 1, 4, 2);
        index_entry(&mut root, 0, 0, 40);
        let blocks = HashMap::from([(40, idx), (50, leaf_a), (51, leaf_b)]);
        let read = mapper(blocks.clone());
        assert_eq!(
            map(&sb, &root, SEED, 2, &read, "t").unwrap(),
            m(Some(102), 2)
        );
        assert_eq!(map(&sb, &root, SEED, 5, &read, "t").unwrap(), m(None, 5));
        assert_eq!(map(&sb, &root, SEED, 12, &read, "t").unwrap(), m(None, 88));
        assert_eq!(
            map(&sb, &root, SEED, 107, &read, "t").unwrap(),
            m(Some(307), 1)
        );
        // A flipped bit in a leaf: checksum error.
        let mut bad = blocks.clone();
        bad.get_mut(&51).unwrap()[20] ^= 1;
        let e = map(&sb, &root, SEED, 107, &mapper(bad), "t").unwrap_err();
        assert!(matches!(e, Error::Checksum { .. }), "{e}");
        // The wrong seed (another inode's block): checksum error.
        let e = map(&sb, &root, SEED + 1, 2, &read, "t").unwrap_err();
        assert!(matches!(e, Error::Checksum { .. }), "{e}");
    }

    #[test]
    fn malformed_nodes() {
        let sb = synth::parsed();
        let none = mapper(HashMap::new());
        type Edit = fn(&mut [u8; 60]);
        let cases: &[(Edit, &str)] = &[
            (|r| r[0] = 0, "magic"),
            (|r| header(r, 5, 4, 0), "max"),
            (|r| header(r, 3, 2, 0), "entries"),
            (|r| header(r, 1, 0, 0), "max 0"),
            (|r| header(r, 1, 4, 6), "too deep"),
            (|r| header(r, 0, 4, 1), "index node without entries"),
            (
                |r| {
                    header(r, 2, 4, 0);
                    leaf_entry(r, 0, 0, 10, 100);
                    leaf_entry(r, 1, 5, 10, 200);
                },
                "overlaps",
            ),
            (
                |r| {
                    header(r, 1, 4, 0);
                    leaf_entry(r, 0, 0, 0, 100);
                },
                "zero-length",
            ),
            (
                |r| {
                    header(r, 1, 4, 0);
                    leaf_entry(r, 0, 0, 10, 8190);
                },
                "outside",
            ),
            (
                |r| {
                    header(r, 1, 4, 0);
                    leaf_entry(r, 0, 0, 10, 0);
                },
                "outside",
            ),
            (
                |r| {
                    header(r, 1, 4, 0);
                    leaf_entry(r, 0, u32::MAX - 2, 10, 100);
                },
                "overlaps",
            ),
            (
                |r| {
                    header(r, 2, 4, 1);
                    index_entry(r, 0, 5, 40);
                    index_entry(r, 1, 5, 41);
                },
                "out of order",
            ),
            (
                |r| {
                    header(r, 1, 4, 1);
                    index_entry(r, 0, 0, 9000);
                },
                "outside",
            ),
        ];
        for (edit, want) in cases {
            let mut root = [0u8; 60];
            header(&mut root, 0, 4, 0);
            edit(&mut root);
            let e = map(&sb, &root, SEED, 7, &none, "t").unwrap_err();
            assert!(e.to_string().contains(want), "{e} vs {want}");
        }
    }

    #[test]
    fn loops_and_depth_mismatch() {
        let sb = synth::parsed();
        // An index block that points to itself, claiming depth 1 under a depth-2 root.
        let selfref = block_node(|b| {
            header(b, 1, 84, 1);
            index_entry(b, 0, 0, 40);
        });
        let mut root = [0u8; 60];
        header(&mut root, 1, 4, 2);
        index_entry(&mut root, 0, 0, 40);
        let read = mapper(HashMap::from([(40, selfref)]));
        let e = map(&sb, &root, SEED, 0, &read, "t").unwrap_err();
        assert!(e.to_string().contains("depth 1 where 0"), "{e}");
        // A child key below the parent's key.
        let leaf = block_node(|b| {
            header(b, 1, 84, 0);
            leaf_entry(b, 0, 3, 1, 100);
        });
        let mut root = [0u8; 60];
        header(&mut root, 1, 4, 1);
        index_entry(&mut root, 0, 5, 41);
        let read = mapper(HashMap::from([(41, leaf)]));
        let e = map(&sb, &root, SEED, 6, &read, "t").unwrap_err();
        assert!(e.to_string().contains("overlaps or is out of order"), "{e}");
        // Before the first index key: a hole up to it, nothing read.
        assert_eq!(
            map(&sb, &root, SEED, 2, &mapper(HashMap::new()), "t").unwrap(),
            m(None, 3)
        );
    }
}
