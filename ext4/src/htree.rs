//! Hash-indexed directories (htree / `dir_index`): parsing and checking the
//! dx root and dx node blocks, and the index walk used by `Fs::lookup`.
//!
//! Layout: logical block 0 of an indexed directory is the dx root: a "."
//! entry (rec_len 12), a ".." entry whose rec_len covers the rest of the
//! block, then `dx_root_info` (hash version, info length 8, indirect levels)
//! at byte 24 and the `{limit, count, block}` header plus `{hash, block}`
//! entries at byte 32. Interior dx nodes are a fake empty dirent spanning the
//! whole block followed by the same header/entries at byte 8. With
//! `metadata_csum` an 8-byte `dx_tail` follows the `limit` entry slots.
//!
//! Invariants: `limit` must be exactly what the block size allows, `count`
//! in 1..=limit, the depth at most 2 index levels (3 with `largedir`), every
//! child block inside the directory and never one already on the current
//! path (a loop is corruption), and collision continuation visits each leaf
//! at most once. Every offset is checked against the block.

use std::sync::Arc;

use super::bytes::{get_le16, get_le32};
use super::csum::crc32c;
use super::dirent::rec_len_from_disk;
use super::error::{Error, Result};
use super::hash::{self, DX_HASH_TEA, DX_HASH_UNSIGNED_DELTA};
use super::num::{InodeNo, Lblk};

/// Offset of `dx_root_info` in the root block (after "." and "..").
pub const DX_ROOT_INFO_OFFSET: usize = 24;
/// `dx_root_info.info_length` value.
pub const DX_ROOT_INFO_LEN: u8 = 8;
/// Offset of the count/limit header in the root block.
pub const DX_ROOT_ENTRIES_OFFSET: usize = 32;
/// Offset of the count/limit header in an interior node.
pub const DX_NODE_ENTRIES_OFFSET: usize = 8;
/// Size of one `{hash, block}` entry (and of the count/limit header).
pub const DX_ENTRY_SIZE: usize = 8;
/// Size of the metadata_csum `dx_tail`.
pub const DX_TAIL_SIZE: usize = 8;
/// `dx_root_info.unused_flags` bit meaning "incompatible hash": refused.
const DX_FLAG_INCOMPAT: u8 = 1;
/// The child-block field holds a logical block in its low 28 bits.
const DX_BLOCK_MASK: u32 = 0x0fff_ffff;

/// Which kind of index block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DxKind {
    /// Logical block 0.
    Root,
    /// Interior node.
    Node,
}

/// The parsed root info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DxRootInfo {
    /// On-disk hash version (0 legacy, 1 half_md4, 2 tea).
    pub hash_version: u8,
    /// Index levels below the root (0 = root points at leaves).
    pub indirect_levels: u8,
}

/// A checked view of an index block's entries.
#[derive(Debug, Clone)]
pub struct DxBlock {
    data: Arc<[u8]>,
    entries: usize,
    count: usize,
}

impl DxBlock {
    /// Number of entries (the first has an implicit hash of 0).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Hash of entry `i` (0 for entry 0).
    pub fn hash(&self, i: usize) -> u32 {
        if i == 0 {
            return 0;
        }
        get_le32(&self.data, self.entries + i * DX_ENTRY_SIZE).unwrap_or(0)
    }

    /// Child logical block of entry `i`.
    pub fn block(&self, i: usize) -> Lblk {
        Lblk(
            get_le32(&self.data, self.entries + i * DX_ENTRY_SIZE + 4).unwrap_or(0) & DX_BLOCK_MASK,
        )
    }

    /// Index of the last entry whose hash is ≤ `target` (binary search;
    /// entry 0 covers everything below entry 1).
    pub fn find(&self, target: u32) -> usize {
        let (mut lo, mut hi) = (1usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.hash(mid) > target {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo - 1
    }
}

/// Static parameters of the index checks.
#[derive(Debug, Clone, Copy)]
pub struct DxParams {
    /// Block size.
    pub block_size: usize,
    /// The fs has `metadata_csum` (a dx_tail is present and verified).
    pub csum: bool,
    /// The directory inode's checksum seed.
    pub inode_seed: u32,
    /// The fs has `largedir` (3 index levels instead of 2).
    pub largedir: bool,
    /// `s_hash_seed` (all zero = the algorithms' default).
    pub seed: [u32; 4],
    /// The superblock says names were hashed as unsigned chars.
    pub unsigned_chars: bool,
    /// Directory size in blocks: every child block must be below it.
    pub nblocks: u64,
}

impl DxParams {
    /// The `limit` a block of this kind must carry.
    pub fn limit(&self, kind: DxKind) -> usize {
        let start = match kind {
            DxKind::Root => DX_ROOT_ENTRIES_OFFSET,
            DxKind::Node => DX_NODE_ENTRIES_OFFSET,
        };
        let tail = if self.csum { DX_TAIL_SIZE } else { 0 };
        self.block_size.saturating_sub(start + tail) / DX_ENTRY_SIZE
    }

    /// Highest allowed `indirect_levels` value.
    pub fn max_indirect_levels(&self) -> u8 {
        if self.largedir {
            2
        } else {
            1
        }
    }
}

/// Whether a block looks like an interior dx node: one empty dirent
/// spanning the whole block (a leaf always has a live entry or, with
/// metadata_csum, a tail).
pub fn is_dx_node(block: &[u8]) -> bool {
    get_le32(block, 0) == Some(0)
        && get_le16(block, 4).map(|r| rec_len_from_disk(r, block.len())) == Some(block.len())
}

/// Parses and checks the root info of block 0.
pub fn parse_root_info(
    block: &[u8],
    p: &DxParams,
    what: &dyn Fn() -> String,
) -> Result<DxRootInfo> {
    let bad = |d: String| Error::corrupt(what(), d);
    // "." then ".." spanning the rest of the block.
    let dot_len = get_le16(block, 4).map(|r| rec_len_from_disk(r, p.block_size));
    let dotdot_len = get_le16(block, 16).map(|r| rec_len_from_disk(r, p.block_size));
    if dot_len != Some(12) || dotdot_len != Some(p.block_size.saturating_sub(12)) {
        return Err(bad(
            "dx root does not start with '.' and a block-long '..'".into()
        ));
    }
    let info = block
        .get(DX_ROOT_INFO_OFFSET..DX_ROOT_INFO_OFFSET + 8)
        .ok_or_else(|| bad("dx root too short".into()))?;
    let (hash_version, info_len, levels, flags) = (info[4], info[5], info[6], info[7]);
    if hash_version > DX_HASH_TEA {
        return Err(bad(format!("unsupported dx hash version {hash_version}")));
    }
    if info_len != DX_ROOT_INFO_LEN {
        return Err(bad(format!("dx root info length {info_len}")));
    }
    if levels > p.max_indirect_levels() {
        return Err(bad(format!("dx root has {levels} indirect levels")));
    }
    if flags & DX_FLAG_INCOMPAT != 0 {
        return Err(bad("dx root has the incompatible-hash flag".into()));
    }
    Ok(DxRootInfo {
        hash_version,
        indirect_levels: levels,
    })
}

/// Checks an index block's limit/count and (with metadata_csum) its tail
/// checksum; returns the entry view.
pub fn check_block(
    data: Arc<[u8]>,
    kind: DxKind,
    p: &DxParams,
    what: &dyn Fn() -> String,
) -> Result<DxBlock> {
    let bad = |d: String| Error::corrupt(what(), d);
    if data.len() != p.block_size {
        return Err(bad("index block has the wrong size".into()));
    }
    let entries = match kind {
        DxKind::Root => DX_ROOT_ENTRIES_OFFSET,
        DxKind::Node => DX_NODE_ENTRIES_OFFSET,
    };
    let limit = usize::from(get_le16(&data, entries).unwrap_or(0));
    let count = usize::from(get_le16(&data, entries + 2).unwrap_or(0));
    if limit != p.limit(kind) {
        return Err(bad(format!("dx limit {limit}, expected {}", p.limit(kind))));
    }
    if count == 0 || count > limit {
        return Err(bad(format!("dx count {count} with limit {limit}")));
    }
    if p.csum {
        // limit was checked above, so the tail fits in the block.
        let tail = entries + limit * DX_ENTRY_SIZE;
        let covered = data
            .get(..entries + count * DX_ENTRY_SIZE)
            .ok_or_else(|| bad("dx entries past the block".into()))?;
        let reserved = data
            .get(tail..tail + 4)
            .ok_or_else(|| bad("no space for the dx checksum".into()))?;
        let stored =
            get_le32(&data, tail + 4).ok_or_else(|| bad("no space for the dx checksum".into()))?;
        // The checksum covers the used entries, then the tail with its
        // checksum field taken as zero.
        let c = crc32c(crc32c(crc32c(p.inode_seed, covered), reserved), &[0; 4]);
        if c != stored {
            return Err(Error::checksum(what()));
        }
    }
    Ok(DxBlock {
        data,
        entries,
        count,
    })
}

/// Sets the metadata_csum `dx_tail` checksum of an index block (the
/// inverse of the check in [`check_block`]): crc32c over the used entries
/// from the block's start, then the tail's reserved word, then a zero
/// checksum field.
pub fn set_dx_tail(block: &mut [u8], kind: DxKind, p: &DxParams) -> Result<()> {
    let entries = match kind {
        DxKind::Root => DX_ROOT_ENTRIES_OFFSET,
        DxKind::Node => DX_NODE_ENTRIES_OFFSET,
    };
    let bad = || Error::Internal("index block too small for its entries".into());
    let count = usize::from(get_le16(block, entries + 2).ok_or_else(bad)?);
    let tail = entries + p.limit(kind) * DX_ENTRY_SIZE;
    if count > p.limit(kind) || tail + DX_TAIL_SIZE > block.len() {
        return Err(bad());
    }
    let covered = block
        .get(..entries + count * DX_ENTRY_SIZE)
        .ok_or_else(bad)?;
    let reserved = block.get(tail..tail + 4).ok_or_else(bad)?;
    let c = crc32c(crc32c(crc32c(p.inode_seed, covered), reserved), &[0; 4]);
    block[tail + 4..tail + 8].copy_from_slice(&c.to_le_bytes());
    Ok(())
}

/// The hash version to use for a root's on-disk version given the
/// superblock's unsigned-char flag.
pub fn effective_hash_version(on_disk: u8, unsigned_chars: bool) -> u8 {
    if unsigned_chars && on_disk <= DX_HASH_TEA {
        on_disk + DX_HASH_UNSIGNED_DELTA
    } else {
        on_disk
    }
}

/// One level of the path from the root to a leaf.
#[derive(Debug, Clone)]
struct Frame {
    block: DxBlock,
    at: usize,
    lblk: Lblk,
}

/// Reads the index block at logical block `lblk` of the directory.
pub type ReadIndexBlock<'a> = dyn FnMut(Lblk) -> Result<Arc<[u8]>> + 'a;

/// Walks the index for `name` and calls `search_leaf(lblk)` on the leaf that
/// should hold it, then on following leaves while the next index entry
/// continues the same hash (a collision run split across leaves).
/// `search_leaf` returns `Some(ino)` to stop; `read` fetches a directory
/// block (holes are corruption).
pub fn lookup(
    name: &[u8],
    p: &DxParams,
    read: &mut ReadIndexBlock<'_>,
    search_leaf: &mut dyn FnMut(Lblk) -> Result<Option<InodeNo>>,
    what: &dyn Fn() -> String,
) -> Result<Option<InodeNo>> {
    let bad = |d: String| Error::corrupt(what(), d);
    let root = read(Lblk(0))?;
    let info = parse_root_info(&root, p, what)?;
    let version = effective_hash_version(info.hash_version, p.unsigned_chars);
    let target = hash::dx_hash(name, version, &p.seed)
        .map_err(|e| bad(e.to_string()))?
        .major;

    let mut path: Vec<Frame> = Vec::with_capacity(usize::from(info.indirect_levels) + 1);
    let block = check_block(root, DxKind::Root, p, what)?;
    let at = block.find(target);
    path.push(Frame {
        block,
        at,
        lblk: Lblk(0),
    });
    let levels = info.indirect_levels;
    let mut leaf = descend(&mut path, read, Some(target), levels, p, what)?;
    // Each iteration visits a new leaf further right, so at most nblocks.
    for _ in 0..p.nblocks {
        if let Some(ino) = search_leaf(leaf)? {
            return Ok(Some(ino));
        }
        // Find the next index entry to the right, climbing as needed.
        let mut depth = path.len();
        loop {
            if depth == 0 {
                return Ok(None);
            }
            let f = &mut path[depth - 1];
            if f.at + 1 < f.block.count() {
                f.at += 1;
                break;
            }
            depth -= 1;
        }
        let f = &path[depth - 1];
        if f.block.hash(f.at) & !1 != target {
            return Ok(None);
        }
        path.truncate(depth);
        // Below the climbed level, take the leftmost entries.
        leaf = descend(&mut path, read, None, levels, p, what)?;
    }
    Err(bad("dx collision chain longer than the directory".into()))
}

/// From the last frame of `path`, descends to a leaf: by binary search for
/// `target`, or along the leftmost entries when `target` is `None`. Pushes
/// the interior nodes it passes and returns the leaf's logical block.
fn descend(
    path: &mut Vec<Frame>,
    read: &mut ReadIndexBlock<'_>,
    target: Option<u32>,
    levels: u8,
    p: &DxParams,
    what: &dyn Fn() -> String,
) -> Result<Lblk> {
    let bad = |d: String| Error::corrupt(what(), d);
    loop {
        let Some(last) = path.last() else {
            return Err(bad("empty dx path".into()));
        };
        let child = last.block.block(last.at);
        if child.as_u64() >= p.nblocks {
            return Err(bad(format!(
                "dx entry points past the directory end (block {child})"
            )));
        }
        if child == Lblk(0) || path.iter().any(|f| f.lblk == child) {
            return Err(bad(format!("dx tree loops back to block {child}")));
        }
        if path.len() > usize::from(levels) {
            return Ok(child);
        }
        let data = read(child)?;
        if !is_dx_node(&data) {
            return Err(bad(format!("block {child} is not a dx node")));
        }
        let block = check_block(data, DxKind::Node, p, what)?;
        let at = target.map_or(0, |t| block.find(t));
        path.push(Frame {
            block,
            at,
            lblk: child,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DxParams {
        DxParams {
            block_size: 1024,
            csum: false,
            inode_seed: 0,
            largedir: false,
            seed: [0; 4],
            unsigned_chars: false,
            nblocks: 100,
        }
    }

    fn node(entries: &[(u32, u32)], limit: u16) -> Arc<[u8]> {
        let mut b = vec![0u8; 1024];
        b[4..6].copy_from_slice(&1024u16.to_le_bytes());
        b[8..10].copy_from_slice(&limit.to_le_bytes());
        b[10..12].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        for (i, &(h, blk)) in entries.iter().enumerate() {
            let o = 8 + i * 8;
            if i > 0 {
                b[o..o + 4].copy_from_slice(&h.to_le_bytes());
            }
            b[o + 4..o + 8].copy_from_slice(&blk.to_le_bytes());
        }
        b.into()
    }

    #[test]
    fn binary_search_picks_last_le() {
        let p = params();
        let n = node(
            &[(0, 1), (100, 2), (200, 3), (300, 4)],
            p.limit(DxKind::Node) as u16,
        );
        let b = check_block(n, DxKind::Node, &p, &|| "t".into()).unwrap();
        assert_eq!(b.find(0), 0);
        assert_eq!(b.find(99), 0);
        assert_eq!(b.find(100), 1);
        assert_eq!(b.find(250), 2);
        assert_eq!(b.find(u32::MAX), 3);
    }

    #[test]
    fn rejects_bad_limit_and_count() {
        let p = params();
        let bad_limit = node(&[(0, 1)], 5);
        assert!(check_block(bad_limit, DxKind::Node, &p, &|| "t".into()).is_err());
        let zero = node(&[], p.limit(DxKind::Node) as u16);
        assert!(check_block(zero, DxKind::Node, &p, &|| "t".into()).is_err());
    }

    /// A 1 KiB dx root: ".", a block-long "..", root info (hash version,
    /// info length, levels, flags) and a count/limit header.
    fn root(info: [u8; 4], limit: u16, count: u16) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        b[4..6].copy_from_slice(&12u16.to_le_bytes());
        b[16..18].copy_from_slice(&1012u16.to_le_bytes());
        b[DX_ROOT_INFO_OFFSET + 4..DX_ROOT_INFO_OFFSET + 8].copy_from_slice(&info);
        b[32..34].copy_from_slice(&limit.to_le_bytes());
        b[34..36].copy_from_slice(&count.to_le_bytes());
        b
    }

    #[test]
    fn root_checks_as_dx_probe_makes_them() {
        // The kernel's dx_probe refuses each of these ("unrecognised inode
        // hash code", "unimplemented hash flags", "htree depth exceeds",
        // "dx entry: limit", "dx entry: count beyond limit").
        let p = params();
        let big = DxParams {
            largedir: true,
            ..p
        };
        let lim = p.limit(DxKind::Root) as u16;
        // (root block, params, root info accepted, entries accepted)
        let cases: Vec<(&str, Vec<u8>, DxParams, bool, bool)> = vec![
            ("good", root([1, 8, 0, 0], lim, 1), p, true, true),
            (
                "tea, one level",
                root([2, 8, 1, 0], lim, lim),
                p,
                true,
                true,
            ),
            ("hash 3", root([3, 8, 0, 0], lim, 1), p, false, true),
            ("info length 9", root([1, 9, 0, 0], lim, 1), p, false, true),
            ("two levels", root([1, 8, 2, 0], lim, 1), p, false, true),
            (
                "two levels, largedir",
                root([1, 8, 2, 0], lim, 1),
                big,
                true,
                true,
            ),
            (
                "three levels, largedir",
                root([1, 8, 3, 0], lim, 1),
                big,
                false,
                true,
            ),
            ("incompat flag", root([1, 8, 0, 1], lim, 1), p, false, true),
            (
                "limit one short",
                root([1, 8, 0, 0], lim - 1, 1),
                p,
                true,
                false,
            ),
            (
                "limit one long",
                root([1, 8, 0, 0], lim + 1, 1),
                p,
                true,
                false,
            ),
            ("count 0", root([1, 8, 0, 0], lim, 0), p, true, false),
            (
                "count past limit",
                root([1, 8, 0, 0], lim, lim + 1),
                p,
                true,
                false,
            ),
            (
                "count 0xffff",
                root([1, 8, 0, 0], lim, u16::MAX),
                p,
                true,
                false,
            ),
            (
                "short '..'",
                {
                    let mut b = root([1, 8, 0, 0], lim, 1);
                    b[16..18].copy_from_slice(&12u16.to_le_bytes());
                    b
                },
                p,
                false,
                true,
            ),
        ];
        for (what, b, p, info_ok, block_ok) in cases {
            let w = || what.to_string();
            assert_eq!(
                parse_root_info(&b, &p, &w).is_ok(),
                info_ok,
                "{what}: root info"
            );
            let checked = check_block(b.into(), DxKind::Root, &p, &w);
            assert_eq!(checked.is_ok(), block_ok, "{what}: entries");
        }
    }

    #[test]
    fn index_entries_stay_inside_the_directory_and_never_loop() {
        // A root (one level) whose entries lead to (child, then leaf):
        // every child must be below the directory's block count and not
        // on the path already.
        let p = DxParams {
            nblocks: 8,
            ..params()
        };
        let lim = p.limit(DxKind::Root) as u16;
        let nlim = p.limit(DxKind::Node) as u16;
        let cases: &[(u32, u32, bool)] = &[
            (1, 2, true),
            (8, 2, false),          // child past the directory end
            (1, 9, false),          // leaf past the end
            (1, 1, false),          // the node names itself
            (1, 0, false),          // back to the root
            (0x1000_0001, 2, true), // the high 4 bits are not part of the block
        ];
        for &(child, leaf, ok) in cases {
            let mut r = root([1, 8, 1, 0], lim, 1);
            r[36..40].copy_from_slice(&child.to_le_bytes());
            let r: Arc<[u8]> = r.into();
            let n = node(&[(0, leaf)], nlim);
            let mut read = |l: Lblk| -> Result<Arc<[u8]>> {
                Ok(if l == Lblk(0) { r.clone() } else { n.clone() })
            };
            let mut leaves = Vec::new();
            let got = lookup(
                b"name",
                &p,
                &mut read,
                &mut |l| {
                    leaves.push(l);
                    Ok(None)
                },
                &|| "t".into(),
            );
            assert_eq!(got.is_ok(), ok, "child {child:#x} leaf {leaf}: {got:?}");
            if ok {
                assert_eq!(leaves, vec![Lblk(leaf)]);
            }
        }
    }

    #[test]
    fn node_detection() {
        assert!(is_dx_node(&node(&[(0, 1)], 10)));
        let mut leaf = vec![0u8; 1024];
        leaf[0] = 5;
        leaf[4..6].copy_from_slice(&1024u16.to_le_bytes());
        assert!(!is_dx_node(&leaf));
    }
}
