//! Changing hash-indexed (htree) directories, the pure half: building a
//! dx root out of a full linear block 0, splitting a full leaf by hash,
//! index entry inserts, interior node set-up and splits, a new index
//! level. Bytes in, bytes out; `dir_tx` reads and writes the blocks
//! through the transaction and sets the checksums ([`htree::set_dx_tail`],
//! `dir_edit::set_leaf_tail`).
//!
//! As the kernel's namei.c (`make_indexed_dir`, `do_split`,
//! `dx_insert_block`, `ext4_dx_add_entry`):
//! - the root keeps "." (12 bytes) and a ".." whose record spans the rest
//!   of the block, then the root info (hash version from
//!   `s_def_hash_version`, info length 8, levels), then the entries;
//! - a leaf split sorts the leaf's entries by hash, moves the upper part
//!   (about half the bytes) to the new leaf, packs both, and returns the
//!   new leaf's index key: its first hash, plus 1 when that hash continues
//!   from the old leaf (a collision run split across two leaves);
//! - an index node split moves the upper half of its entries.
//!
//! Invariants: entries within an index block stay sorted by hash (entry
//! 0 has the implicit hash 0); a split leaves both leaves' chains covering
//! their regions exactly; every offset is checked against its block.

use crate::dir_edit::rec_len_to_disk;
use crate::dirent::{parse_region, rec_len_for, DirentFormat};
use crate::error::{Error, Result};
use crate::hash::{self, NameHash};
use crate::htree::{
    DxKind, DxParams, DX_ENTRY_SIZE, DX_NODE_ENTRIES_OFFSET, DX_ROOT_ENTRIES_OFFSET,
    DX_ROOT_INFO_LEN, DX_ROOT_INFO_OFFSET,
};
use crate::num::Lblk;

/// Bytes of "." and of ".." at the start of block 0.
const DOT_REC_LEN: usize = 12;

/// How names are hashed in one directory.
#[derive(Debug, Clone, Copy)]
pub struct Hasher {
    /// Effective hash version (unsigned flavour folded in).
    pub version: u8,
    /// `s_hash_seed`.
    pub seed: [u32; 4],
}

impl Hasher {
    /// The hash of `name`.
    pub fn hash(&self, name: &[u8], what: &dyn Fn() -> String) -> Result<NameHash> {
        hash::dx_hash(name, self.version, &self.seed)
            .map_err(|e| Error::corrupt(what(), e.to_string()))
    }
}

fn entries_offset(kind: DxKind) -> usize {
    match kind {
        DxKind::Root => DX_ROOT_ENTRIES_OFFSET,
        DxKind::Node => DX_NODE_ENTRIES_OFFSET,
    }
}

fn bad(what: &str) -> Error {
    Error::Internal(format!("index block: {what} out of bounds"))
}

fn get16(b: &[u8], off: usize) -> Result<u16> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad("field"))
}

fn put16(b: &mut [u8], off: usize, v: u16) -> Result<()> {
    b.get_mut(off..off + 2)
        .ok_or_else(|| bad("field"))?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put32(b: &mut [u8], off: usize, v: u32) -> Result<()> {
    b.get_mut(off..off + 4)
        .ok_or_else(|| bad("field"))?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// `(count, limit)` of an index block.
pub fn count_limit(block: &[u8], kind: DxKind) -> Result<(usize, usize)> {
    let e = entries_offset(kind);
    Ok((
        usize::from(get16(block, e + 2)?),
        usize::from(get16(block, e)?),
    ))
}

/// Entry `i` of an index block as `(hash, child)` (entry 0's hash is 0).
pub fn entry(block: &[u8], kind: DxKind, i: usize) -> Result<(u32, u32)> {
    let off = entries_offset(kind) + i * DX_ENTRY_SIZE;
    let s = block
        .get(off..off + DX_ENTRY_SIZE)
        .ok_or_else(|| bad("entry"))?;
    let h = if i == 0 {
        0
    } else {
        u32::from_le_bytes([s[0], s[1], s[2], s[3]])
    };
    Ok((h, u32::from_le_bytes([s[4], s[5], s[6], s[7]])))
}

/// Inserts `(hash, child)` after entry `at` (the kernel's
/// `dx_insert_block`); the block must have room.
pub fn insert_entry(
    block: &mut [u8],
    kind: DxKind,
    at: usize,
    hash: u32,
    child: Lblk,
) -> Result<()> {
    let e = entries_offset(kind);
    let (count, limit) = count_limit(block, kind)?;
    if count >= limit || at >= count {
        return Err(Error::Internal(format!(
            "index insert after {at} with count {count}, limit {limit}"
        )));
    }
    let from = e + (at + 1) * DX_ENTRY_SIZE;
    let end = e + count * DX_ENTRY_SIZE;
    if end + DX_ENTRY_SIZE > block.len() {
        return Err(bad("entries"));
    }
    block.copy_within(from..end, from + DX_ENTRY_SIZE);
    put32(block, from, hash)?;
    put32(block, from + 4, child.0)?;
    put16(block, e + 2, (count + 1) as u16)
}

/// Makes `block` an empty interior index node with room for `limit`
/// entries: a fake empty dirent spanning the block, then count 0.
pub fn init_node(block: &mut [u8], p: &DxParams) -> Result<()> {
    block.fill(0);
    put16(block, 4, rec_len_to_disk(block.len(), p.block_size))?;
    put16(block, DX_NODE_ENTRIES_OFFSET, p.limit(DxKind::Node) as u16)?;
    put16(block, DX_NODE_ENTRIES_OFFSET + 2, 0)
}

/// Copies `n` entries of `src` (from `first`) to the start of node `dst`
/// and sets `dst`'s count (its limit is set by [`init_node`]).
fn copy_entries(
    src: &[u8],
    src_kind: DxKind,
    first: usize,
    n: usize,
    dst: &mut [u8],
) -> Result<()> {
    let s = entries_offset(src_kind) + first * DX_ENTRY_SIZE;
    let len = n * DX_ENTRY_SIZE;
    let src = src.get(s..s + len).ok_or_else(|| bad("entries"))?;
    let d = DX_NODE_ENTRIES_OFFSET;
    // Entry 0's hash slot holds count and limit: keep the limit.
    let limit = get16(dst, d)?;
    dst.get_mut(d..d + len)
        .ok_or_else(|| bad("entries"))?
        .copy_from_slice(src);
    put16(dst, d, limit)?;
    put16(dst, d + 2, n as u16)
}

/// Moves every entry of a full root into `node` (fresh, [`init_node`])
/// and leaves the root with one entry pointing at it, one more level
/// (the kernel's "add a level" in `ext4_dx_add_entry`).
pub fn add_level(root: &mut [u8], node: &mut [u8], node_lblk: Lblk) -> Result<()> {
    let (count, _) = count_limit(root, DxKind::Root)?;
    copy_entries(root, DxKind::Root, 0, count, node)?;
    let e = DX_ROOT_ENTRIES_OFFSET;
    put16(root, e + 2, 1)?;
    put32(root, e + 4, node_lblk.0)?;
    let levels = DX_ROOT_INFO_OFFSET + 6;
    let l = root.get_mut(levels).ok_or_else(|| bad("root info"))?;
    *l += 1;
    Ok(())
}

/// Splits a full interior node: its upper half moves to `new` (fresh,
/// [`init_node`]); returns the hash the parent's new entry for `new`
/// carries.
pub fn split_node(old: &mut [u8], new: &mut [u8]) -> Result<u32> {
    let (count, _) = count_limit(old, DxKind::Node)?;
    if count < 2 {
        return Err(Error::Internal(
            "splitting an index node of one entry".into(),
        ));
    }
    let keep = count / 2;
    let (hash, _) = entry(old, DxKind::Node, keep)?;
    copy_entries(old, DxKind::Node, keep, count - keep, new)?;
    put16(old, DX_NODE_ENTRIES_OFFSET + 2, keep as u16)?;
    Ok(hash)
}

/// Turns a full linear block 0 into a dx root: returns the bytes of its
/// entries after ".." (to become leaf block 1) and rewrites `block` as
/// the root ("." and "..", root info, one entry pointing at block 1).
pub fn make_root(
    block: &mut [u8],
    fmt: DirentFormat,
    region_len: usize,
    p: &DxParams,
    def_hash_version: u8,
    what: &dyn Fn() -> String,
) -> Result<Vec<u8>> {
    let ents = parse_region(&block[..region_len], fmt, what)?;
    let (Some(dot), Some(dotdot)) = (ents.first(), ents.get(1)) else {
        return Err(Error::corrupt(what(), "block 0 lacks '.' and '..'"));
    };
    if dot.name != b"." || dot.rec_len != DOT_REC_LEN || dotdot.name != b".." {
        return Err(Error::corrupt(
            what(),
            "block 0 does not start with '.' and '..'",
        ));
    }
    let rest_at = dotdot.offset + dotdot.rec_len;
    let moved = block[rest_at..region_len].to_vec();
    block[DOT_REC_LEN * 2..].fill(0);
    // ".." keeps its inode, name and type; its record spans the block.
    put16(
        block,
        DOT_REC_LEN + 4,
        rec_len_to_disk(p.block_size - DOT_REC_LEN, p.block_size),
    )?;
    let info = DX_ROOT_INFO_OFFSET;
    block[info + 4] = def_hash_version;
    block[info + 5] = DX_ROOT_INFO_LEN;
    let e = DX_ROOT_ENTRIES_OFFSET;
    put16(block, e, p.limit(DxKind::Root) as u16)?;
    put16(block, e + 2, 1)?;
    put32(block, e + 4, 1)?;
    Ok(moved)
}

/// The in-use entries of a leaf region as (hash, minor, offset, length).
fn leaf_map(
    region: &[u8],
    fmt: DirentFormat,
    h: &Hasher,
    what: &dyn Fn() -> String,
) -> Result<Vec<(u32, u32, usize, usize)>> {
    let mut map = Vec::new();
    for d in parse_region(region, fmt, what)? {
        if d.in_use() {
            let nh = h.hash(d.name, what)?;
            map.push((nh.major, nh.minor, d.offset, rec_len_for(d.name.len())));
        }
    }
    // Stable by hash: equal hashes keep their order in the block.
    map.sort_by_key(|&(hash, minor, off, _)| (hash, minor, off));
    Ok(map)
}

/// Writes the records `recs` (offset, length in `src`) one after the
/// other into `dst` (a region of its own), the last one stretched to the
/// region's end.
fn pack(src: &[u8], recs: &[(usize, usize)], dst: &mut [u8], fmt: DirentFormat) -> Result<()> {
    dst.fill(0);
    let mut at = 0usize;
    for (i, &(off, len)) in recs.iter().enumerate() {
        let rec = src.get(off..off + len).ok_or_else(|| bad("leaf record"))?;
        let out = dst
            .get_mut(at..at + len)
            .ok_or_else(|| bad("leaf record"))?;
        out.copy_from_slice(rec);
        let rec_len = if i + 1 == recs.len() {
            dst.len() - at
        } else {
            len
        };
        put16(dst, at + 4, rec_len_to_disk(rec_len, fmt.block_size))?;
        at += len;
    }
    if recs.is_empty() {
        put16(dst, 4, rec_len_to_disk(dst.len(), fmt.block_size))?;
    }
    Ok(())
}

/// Splits the full leaf region `old` (the kernel's `do_split`): the
/// entries sorted by hash, the upper part (moving at most half the block
/// in bytes) packed into `new` (a region of the same length), the rest
/// packed back into `old`. Returns the new leaf's index key and the
/// hash from which names belong in the new leaf.
pub fn split_leaf(
    old: &mut [u8],
    new: &mut [u8],
    fmt: DirentFormat,
    h: &Hasher,
    what: &dyn Fn() -> String,
) -> Result<(u32, u32)> {
    let map = leaf_map(old, fmt, h, what)?;
    let count = map.len();
    if count < 2 {
        return Err(Error::corrupt(
            what(),
            "a full leaf with fewer than two entries",
        ));
    }
    let half = fmt.block_size / 2;
    let (mut size, mut moved) = (0usize, 0usize);
    let mut stopped_above_zero = false;
    for i in (0..count).rev() {
        let len = map[i].3;
        if size + len / 2 > half {
            stopped_above_zero = i > 0;
            break;
        }
        size += len;
        moved += 1;
    }
    let split = if stopped_above_zero {
        count - moved
    } else {
        count / 2
    };
    let split = split.clamp(1, count - 1);
    let hash2 = map[split].0;
    let continued = u32::from(hash2 == map[split - 1].0);
    let src = old.to_vec();
    let upper: Vec<(usize, usize)> = map[split..].iter().map(|m| (m.2, m.3)).collect();
    // The lower part keeps the block's order (the kernel packs in place).
    let mut lower: Vec<(usize, usize)> = map[..split].iter().map(|m| (m.2, m.3)).collect();
    lower.sort_unstable();
    pack(&src, &upper, new, fmt)?;
    pack(&src, &lower, old, fmt)?;
    Ok((hash2 | continued, hash2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir_edit::{find_slot, init_empty, insert, NewEntry};
    use crate::dirent::ft;
    use crate::num::InodeNo;

    const FMT: DirentFormat = DirentFormat {
        filetype: true,
        block_size: 1024,
        max_ino: 100_000,
    };
    const H: Hasher = Hasher {
        version: crate::hash::DX_HASH_HALF_MD4,
        seed: [1, 2, 3, 4],
    };
    fn what() -> String {
        "test".into()
    }
    fn params() -> DxParams {
        DxParams {
            block_size: 1024,
            csum: true,
            inode_seed: 7,
            largedir: false,
            seed: [1, 2, 3, 4],
            unsigned_chars: false,
            nblocks: 10,
        }
    }

    fn names(region: &[u8]) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = parse_region(region, FMT, &what)
            .unwrap()
            .iter()
            .filter(|d| d.in_use())
            .map(|d| d.name.to_vec())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn leaf_split_divides_by_hash_and_keeps_every_name() {
        let mut old = vec![0u8; 1012];
        init_empty(&mut old, FMT).unwrap();
        let mut all = Vec::new();
        for i in 0.. {
            let name = format!("name-{i}");
            let Some(at) = find_slot(&old, FMT, name.len(), &what).unwrap() else {
                break;
            };
            let e = NewEntry {
                ino: InodeNo(20 + i),
                name: name.as_bytes(),
                file_type: ft::REG,
            };
            insert(&mut old, FMT, at, &e, &what).unwrap();
            all.push(name.into_bytes());
        }
        all.sort();
        let mut new = vec![0u8; 1012];
        let (key, from) = split_leaf(&mut old, &mut new, FMT, &H, &what).unwrap();
        assert_eq!(key & !1, from);
        let (a, b) = (names(&old), names(&new));
        assert!(!a.is_empty() && !b.is_empty());
        let mut both = a.clone();
        both.extend(b.clone());
        both.sort();
        assert_eq!(both, all, "no name lost or doubled");
        for n in &a {
            assert!(H.hash(n, &what).unwrap().major <= from, "lower half");
        }
        for n in &b {
            assert!(H.hash(n, &what).unwrap().major >= from, "upper half");
        }
        // Both halves have room again.
        assert!(find_slot(&old, FMT, 20, &what).unwrap().is_some());
        assert!(find_slot(&new, FMT, 20, &what).unwrap().is_some());
    }

    #[test]
    fn index_inserts_splits_and_levels() {
        let p = params();
        // A node with entries 0..=count: (hash, child) sorted.
        let mut node = vec![0u8; 1024];
        init_node(&mut node, &p).unwrap();
        put16(&mut node, DX_NODE_ENTRIES_OFFSET + 2, 1).unwrap();
        put32(&mut node, DX_NODE_ENTRIES_OFFSET + 4, 1).unwrap();
        let limit = p.limit(DxKind::Node);
        for i in 1..limit {
            insert_entry(
                &mut node,
                DxKind::Node,
                i - 1,
                (i as u32) * 10,
                Lblk(i as u32 + 1),
            )
            .unwrap();
        }
        assert_eq!(count_limit(&node, DxKind::Node).unwrap(), (limit, limit));
        assert!(insert_entry(&mut node, DxKind::Node, 0, 5, Lblk(99)).is_err());
        let mut upper = vec![0u8; 1024];
        init_node(&mut upper, &p).unwrap();
        let hash = split_node(&mut node, &mut upper).unwrap();
        let (c1, _) = count_limit(&node, DxKind::Node).unwrap();
        let (c2, l2) = count_limit(&upper, DxKind::Node).unwrap();
        assert_eq!((c1 + c2, l2), (limit, limit));
        assert_eq!(hash, (c1 as u32) * 10);
        assert_eq!(
            entry(&upper, DxKind::Node, 1).unwrap(),
            (hash + 10, c1 as u32 + 2)
        );
        // Insert in the middle keeps order.
        insert_entry(&mut node, DxKind::Node, 2, 25, Lblk(77)).unwrap();
        assert_eq!(entry(&node, DxKind::Node, 3).unwrap(), (25, 77));
        assert_eq!(entry(&node, DxKind::Node, 4).unwrap(), (30, 4));
    }
}
