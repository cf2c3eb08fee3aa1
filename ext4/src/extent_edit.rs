//! Extent tree edits inside a transaction: look up a logical block,
//! insert an extent (merging with its neighbours, splitting full leaves
//! and index nodes, growing the tree's depth), and remove everything from
//! a logical block on (truncate: extents cut or freed, index and leaf
//! blocks freed at any depth, the depth shrinking back).
//!
//! Nodes are read through the transaction and validated exactly as the
//! reader (`extent`) validates them, with the key range their parent
//! gives, so an edit never follows a node a read would refuse.
//!
//! Invariants kept on every node this module writes:
//! - an index entry's key is its child's first key (e2fsck checks it):
//!   an insert at position 0 corrects the keys up the path;
//! - keys strictly increase, extents do not overlap, no non-root node is
//!   empty (a node emptied by a truncate is freed with its index entry);
//! - block nodes get `eh_max` = the block's capacity and the crc32c tail
//!   (metadata_csum, the inode's seed); existing nodes keep their `eh_max`;
//! - `i_blocks` counts every block allocated or freed here, data and
//!   tree blocks alike;
//! - an insert allocates every tree block it needs before it changes any
//!   node, so running out of space leaves the tree as it was.

use std::sync::Arc;

use crate::bytes::{le16, le32, put_le16, put_le32};
use crate::csum::crc32c;
use crate::error::{Error, Result, Space};
use crate::extent::{
    check_entries, check_tail, entry, index_child, map_leaf, parse_extent, parse_header,
    pick_index, ENTRY_LEN, EXTENT_MAGIC, HEADER_LEN, LOGICAL_LIMIT, MAX_DEPTH, MAX_INIT_LEN,
};
use crate::inode::{Inode, I_BLOCK_LEN};
use crate::num::Pblk;
use crate::tx::{AllocKind, Tx};

/// Entries the root in `i_block` holds.
pub const ROOT_CAPACITY: usize = (I_BLOCK_LEN - HEADER_LEN) / ENTRY_LEN;
/// Longest initialized extent.
pub const MAX_LEN_INIT: u32 = MAX_INIT_LEN as u32;
/// Longest uninitialized extent (`ee_len` above 32768 marks one).
pub const MAX_LEN_UNINIT: u32 = MAX_INIT_LEN as u32 - 1;

// Header fields written (the reader's offsets).
const EH_MAGIC: usize = 0;
const EH_ENTRIES: usize = 2;
const EH_MAX: usize = 4;
const EH_DEPTH: usize = 6;

/// One entry of a node: an extent (leaf) or an index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ent {
    /// First logical block (`ee_block` / `ei_block`).
    pub(crate) key: u32,
    /// First physical block (leaf) or the child block (index).
    pub(crate) ptr: u64,
    /// `ee_len` as stored (leaves; 0 in index entries).
    pub(crate) raw_len: u16,
}

impl Ent {
    /// An extent of `len` blocks (1..=the maximum for its kind).
    pub(crate) fn extent(key: u32, len: u32, pblk: Pblk, uninit: bool) -> Ent {
        let raw = if uninit { len + MAX_LEN_INIT } else { len };
        Ent {
            key,
            ptr: pblk.0,
            raw_len: raw as u16,
        }
    }

    fn index(key: u32, child: Pblk) -> Ent {
        Ent {
            key,
            ptr: child.0,
            raw_len: 0,
        }
    }

    /// Blocks an extent maps.
    pub(crate) fn len(self) -> u32 {
        let raw = u32::from(self.raw_len);
        if raw > MAX_LEN_INIT {
            raw - MAX_LEN_INIT
        } else {
            raw
        }
    }

    /// Whether an extent is uninitialized.
    pub(crate) fn uninit(self) -> bool {
        u32::from(self.raw_len) > MAX_LEN_INIT
    }

    /// One past an extent's last logical block.
    pub(crate) fn end(self) -> u64 {
        u64::from(self.key) + u64::from(self.len())
    }

    pub(crate) fn set_len(&mut self, len: u32) {
        *self = Ent::extent(self.key, len, Pblk(self.ptr), self.uninit());
    }
}

/// A node in memory.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Its block; `None` for the root in `i_block`.
    pub(crate) blk: Option<Pblk>,
    /// `eh_depth`.
    pub(crate) depth: u16,
    /// `eh_max`.
    pub(crate) max: usize,
    /// The entries.
    pub(crate) ents: Vec<Ent>,
}

/// One level of a path from the root to a leaf.
#[derive(Debug)]
pub(crate) struct Level {
    /// The node.
    pub(crate) node: Node,
    /// Index nodes: the entry followed. Leaves: how many extents start at
    /// or before the block looked for (its insertion position).
    pub(crate) idx: usize,
    /// Keys of this node lie in `[lo, hi)`: what its parent allows.
    pub(crate) lo: u64,
    /// See `lo`.
    pub(crate) hi: u64,
}

/// What a logical block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Mapped to `pblk`, with `len` blocks of the same extent from there.
    Mapped {
        /// Physical block of the block looked up.
        pblk: Pblk,
        /// Blocks from there to the extent's end (at least 1).
        len: u64,
        /// The extent is uninitialized (its blocks read as zeros).
        uninit: bool,
    },
    /// Not mapped, for `len` blocks (up to the next extent or the end of
    /// the logical space).
    Hole {
        /// Blocks of the hole from the block looked up (at least 1).
        len: u64,
    },
}

pub(crate) fn name(inode: &Inode) -> String {
    format!("extent tree of inode {}", inode.ino)
}

/// Entries a block node holds.
fn block_capacity(tx: &Tx) -> usize {
    (tx.sb().block_size as usize - HEADER_LEN) / ENTRY_LEN
}

/// 512-byte sectors per block (`i_blocks` units).
pub(crate) fn sectors(tx: &Tx) -> u64 {
    u64::from(tx.sb().block_size / 512)
}

/// Reads and validates a node: the root (`blk` `None`) or a block, of
/// depth `expect` (any depth up to the limit for the root), its keys in
/// `[lo, hi)`.
pub(crate) fn load(
    tx: &Tx,
    inode: &Inode,
    blk: Option<Pblk>,
    expect: Option<u16>,
    lo: u64,
    hi: u64,
) -> Result<Node> {
    let sb = tx.sb();
    let what = || name(inode);
    let owned: Option<Arc<[u8]>> = match blk {
        Some(b) => Some(tx.get(b)?),
        None => None,
    };
    let raw: &[u8] = owned.as_deref().unwrap_or(inode.i_block());
    let capacity = if blk.is_some() {
        block_capacity(tx)
    } else {
        ROOT_CAPACITY
    };
    let h = parse_header(raw, capacity, &what)?;
    if blk.is_some() && sb.metadata_csum() {
        check_tail(raw, h.max, inode.csum_seed, &what)?;
    }
    check_entries(&h, &what)?;
    match expect {
        None if h.depth > MAX_DEPTH => {
            return Err(Error::corrupt(
                what(),
                format!("depth {} too deep", h.depth),
            ));
        }
        Some(d) if h.depth != d => {
            return Err(Error::corrupt(
                what(),
                format!("node depth {} where {d} was expected", h.depth),
            ));
        }
        _ => {}
    }
    if blk.is_some() && h.entries == 0 {
        return Err(Error::corrupt(what(), "empty non-root node"));
    }
    if h.depth == 0 {
        map_leaf(sb, raw, h.entries, lo, lo, hi, &what)?;
    } else {
        if h.entries == 0 {
            return Err(Error::corrupt(what(), "index node without entries"));
        }
        pick_index(sb, raw, h.entries, lo, lo, hi, &what)?;
    }
    let ents = (0..h.entries)
        .map(|i| {
            let e = entry(raw, i);
            if h.depth == 0 {
                let x = parse_extent(e);
                Ent::extent(x.lblk.0, x.len, x.pblk, x.uninit)
            } else {
                Ent::index(le32(e, 0), index_child(e))
            }
        })
        .collect();
    Ok(Node {
        blk,
        depth: h.depth,
        max: h.max,
        ents,
    })
}

/// Writes `node` back (into `i_block` for the root; `fresh`: a block just
/// allocated, never read).
pub(crate) fn store(tx: &mut Tx, inode: &mut Inode, node: &Node, fresh: bool) -> Result<()> {
    let len = match node.blk {
        None => I_BLOCK_LEN,
        Some(_) => tx.sb().block_size as usize,
    };
    let mut buf = vec![0u8; len];
    let put = |buf: &mut [u8]| -> Option<()> {
        put_le16(buf, EH_MAGIC, EXTENT_MAGIC)?;
        put_le16(buf, EH_ENTRIES, u16::try_from(node.ents.len()).ok()?)?;
        put_le16(buf, EH_MAX, u16::try_from(node.max).ok()?)?;
        put_le16(buf, EH_DEPTH, node.depth)?;
        for (i, e) in node.ents.iter().enumerate() {
            let o = HEADER_LEN + i * ENTRY_LEN;
            put_le32(buf, o, e.key)?;
            if node.depth == 0 {
                put_le16(buf, o + 4, e.raw_len)?;
                put_le16(buf, o + 6, (e.ptr >> 32) as u16)?;
                put_le32(buf, o + 8, e.ptr as u32)?;
            } else {
                put_le32(buf, o + 4, e.ptr as u32)?;
                put_le16(buf, o + 8, (e.ptr >> 32) as u16)?;
            }
        }
        Some(())
    };
    if node.ents.len() > node.max || put(&mut buf).is_none() {
        return Err(Error::Internal(format!(
            "{}: node of {} entries (max {}) does not encode",
            name(inode),
            node.ents.len(),
            node.max
        )));
    }
    match node.blk {
        None => inode.i_block_mut().copy_from_slice(&buf),
        Some(b) => {
            if tx.sb().metadata_csum() {
                let tail = HEADER_LEN + node.max * ENTRY_LEN;
                let c = crc32c(inode.csum_seed, buf.get(..tail).unwrap_or(&[]));
                put_le32(&mut buf, tail, c).ok_or_else(|| {
                    Error::Internal(format!("{}: no room for the checksum", name(inode)))
                })?;
            }
            let dst = if fresh {
                tx.new_block(b)?
            } else {
                tx.modify(b)?
            };
            dst.copy_from_slice(&buf);
        }
    }
    Ok(())
}

/// The path from the root to the leaf where `lblk` is or would be.
pub(crate) fn find_path(tx: &Tx, inode: &Inode, lblk: u64) -> Result<Vec<Level>> {
    let mut path = Vec::new();
    let (mut blk, mut expect, mut lo, mut hi) = (None, None, 0u64, LOGICAL_LIMIT);
    // The depth strictly decreases: at most MAX_DEPTH + 1 nodes.
    for _ in 0..=MAX_DEPTH {
        let node = load(tx, inode, blk, expect, lo, hi)?;
        let at = node.ents.partition_point(|e| u64::from(e.key) <= lblk);
        if node.depth == 0 {
            path.push(Level {
                node,
                idx: at,
                lo,
                hi,
            });
            return Ok(path);
        }
        let i = at.saturating_sub(1);
        let (child_lo, child) = match node.ents.get(i) {
            Some(e) => (u64::from(e.key), Pblk(e.ptr)),
            None => return Err(Error::corrupt(name(inode), "index node without entries")),
        };
        let child_hi = node.ents.get(i + 1).map_or(hi, |n| u64::from(n.key));
        expect = Some(node.depth - 1);
        blk = Some(child);
        path.push(Level {
            node,
            idx: i,
            lo,
            hi,
        });
        (lo, hi) = (child_lo, child_hi);
    }
    Err(Error::corrupt(
        name(inode),
        "tree deeper than the depth limit",
    ))
}

/// What `lblk` is, from the leaf of a path found for it.
pub(crate) fn found_in(path: &[Level], lblk: u64) -> Found {
    let Some(leaf) = path.last() else {
        return Found::Hole { len: 1 };
    };
    if let Some(e) = leaf.idx.checked_sub(1).and_then(|i| leaf.node.ents.get(i)) {
        if e.end() > lblk {
            let off = lblk - u64::from(e.key);
            return Found::Mapped {
                pblk: Pblk(e.ptr.saturating_add(off)),
                len: e.end() - lblk,
                uninit: e.uninit(),
            };
        }
    }
    let next = leaf
        .node
        .ents
        .get(leaf.idx)
        .map_or(leaf.hi, |e| u64::from(e.key));
    Found::Hole {
        len: next.saturating_sub(lblk).max(1),
    }
}

/// Looks `lblk` up through the transaction.
pub fn lookup(tx: &Tx, inode: &Inode, lblk: u64) -> Result<Found> {
    Ok(found_in(&find_path(tx, inode, lblk)?, lblk))
}

/// A goal for new data at `lblk`: keep the distance to the nearest extent
/// of the leaf (so a growing file stays contiguous), as the kernel's
/// `ext4_ext_find_goal`; the leaf's own block, or the inode's group.
pub(crate) fn goal(tx: &Tx, inode: &Inode, path: &[Level], lblk: u64) -> Pblk {
    if let Some(leaf) = path.last() {
        let ents = &leaf.node.ents;
        if let Some(e) = leaf.idx.checked_sub(1).and_then(|i| ents.get(i)) {
            return Pblk(e.ptr.saturating_add(lblk - u64::from(e.key)));
        }
        if let Some(e) = ents.get(leaf.idx) {
            return Pblk(e.ptr.saturating_sub(u64::from(e.key) - lblk));
        }
        if let Some(b) = leaf.node.blk {
            return b.saturating_add(1);
        }
    }
    tx.inode_goal(inode)
}

pub(crate) fn can_merge(a: Ent, b: Ent) -> bool {
    let max = if a.uninit() {
        MAX_LEN_UNINIT
    } else {
        MAX_LEN_INIT
    };
    a.uninit() == b.uninit()
        && a.end() == u64::from(b.key)
        && a.ptr.checked_add(u64::from(a.len())) == Some(b.ptr)
        && a.len() + b.len() <= max
}

/// Inserts extent `new` (covering a hole: nothing of it is mapped) into
/// the tree, merging it with a neighbour where it continues one.
/// [`Error::NoSpace`] when a tree block is needed and none is left: then
/// nothing changed.
pub(crate) fn insert(
    tx: &mut Tx,
    inode: &mut Inode,
    new: Ent,
    kind: AllocKind,
    merge: bool,
) -> Result<()> {
    let mut path = find_path(tx, inode, u64::from(new.key))?;
    let last = path.len() - 1;
    let pos = path[last].idx;
    let leaf = &mut path[last].node;
    if merge && pos > 0 && can_merge(leaf.ents[pos - 1], new) {
        let len = leaf.ents[pos - 1].len() + new.len();
        leaf.ents[pos - 1].set_len(len);
        if pos < leaf.ents.len() && can_merge(leaf.ents[pos - 1], leaf.ents[pos]) {
            let len = leaf.ents[pos - 1].len() + leaf.ents[pos].len();
            leaf.ents[pos - 1].set_len(len);
            leaf.ents.remove(pos);
        }
        return store(tx, inode, &path[last].node, false);
    }
    if merge && pos < leaf.ents.len() && can_merge(new, leaf.ents[pos]) {
        let len = new.len() + leaf.ents[pos].len();
        leaf.ents[pos] = Ent::extent(new.key, len, Pblk(new.ptr), new.uninit());
        store(tx, inode, &path[last].node, false)?;
        return if pos == 0 {
            fix_keys(tx, inode, &mut path, last)
        } else {
            Ok(())
        };
    }
    // Every full node from the leaf up needs a block (a split, or for the
    // root a new level); the first node with room takes the last entry.
    let mut need = 0u32;
    for lvl in (0..=last).rev() {
        if path[lvl].node.ents.len() < path[lvl].node.max {
            break;
        }
        need += 1;
    }
    if need as usize == path.len() && path[0].node.depth >= MAX_DEPTH {
        return Err(Error::FileTooBig);
    }
    let goal_blk = path[last]
        .node
        .blk
        .map_or(Pblk(new.ptr.saturating_sub(1)), |b| b.saturating_add(1));
    let mut spare = alloc_tree_blocks(tx, inode, goal_blk, need, kind)?;
    insert_at(tx, inode, &mut path, last, pos, new, &mut spare)?;
    if spare.is_empty() {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "{}: {} tree blocks allocated and not used",
            name(inode),
            spare.len()
        )))
    }
}

/// Allocates `n` tree blocks near `goal` (all or none), counted in `i_blocks`.
fn alloc_tree_blocks(
    tx: &mut Tx,
    inode: &mut Inode,
    goal: Pblk,
    n: u32,
    kind: AllocKind,
) -> Result<Vec<Pblk>> {
    if u64::from(n) > tx.available_blocks(kind) {
        return Err(Error::NoSpace(Space::Blocks));
    }
    let mut got: Vec<Pblk> = Vec::new();
    for _ in 0..n {
        let g = got.last().map_or(goal, |b| b.saturating_add(1));
        match tx.alloc_blocks(g, 1, inode.ino, kind) {
            Ok((b, _)) => got.push(b),
            Err(e) => {
                for b in got {
                    tx.free_blocks(b, 1, kind)?;
                }
                return Err(e);
            }
        }
    }
    inode.blocks = inode.blocks.saturating_add(u64::from(n) * sectors(tx));
    // Used from the end: the first block allocated goes to the leaf.
    got.reverse();
    Ok(got)
}

/// Inserts `e` at `pos` of the node at level `lvl`, splitting it (or
/// growing the tree at the root) when it is full, with blocks from `spare`.
fn insert_at(
    tx: &mut Tx,
    inode: &mut Inode,
    path: &mut Vec<Level>,
    lvl: usize,
    pos: usize,
    e: Ent,
    spare: &mut Vec<Pblk>,
) -> Result<()> {
    let no_block = || Error::Internal("extent insert ran out of allocated blocks".into());
    let cap = block_capacity(tx);
    if path[lvl].node.ents.len() < path[lvl].node.max {
        path[lvl].node.ents.insert(pos, e);
        store(tx, inode, &path[lvl].node, false)?;
        return if pos == 0 {
            fix_keys(tx, inode, path, lvl)
        } else {
            Ok(())
        };
    }
    let b = spare.pop().ok_or_else(no_block)?;
    if lvl == 0 {
        // A new level: the root's entries move to a block, the root
        // points to it.
        let root = &mut path[0];
        if root.node.depth >= MAX_DEPTH {
            return Err(Error::FileTooBig);
        }
        let child = Node {
            blk: Some(b),
            depth: root.node.depth,
            max: cap,
            ents: std::mem::take(&mut root.node.ents),
        };
        let first = child.ents.first().map_or(0, |x| x.key);
        root.node.depth += 1;
        root.node.ents = vec![Ent::index(first, b)];
        let (idx, lo, hi) = (root.idx, root.lo, root.hi);
        root.idx = 0;
        store(tx, inode, &child, true)?;
        store(tx, inode, &path[0].node, false)?;
        path.insert(
            1,
            Level {
                node: child,
                idx,
                lo,
                hi,
            },
        );
        return insert_at(tx, inode, path, 1, pos, e, spare);
    }
    // Split: an append puts only the new entry in the new node (so a file
    // written in order fills its nodes), anything else halves the node.
    let node = &mut path[lvl].node;
    let len = node.ents.len();
    let s = if pos == len { len } else { len / 2 };
    let mut right_ents = node.ents.split_off(s);
    if pos < s {
        node.ents.insert(pos, e);
    } else {
        right_ents.insert(pos - s, e);
    }
    let right = Node {
        blk: Some(b),
        depth: node.depth,
        max: cap,
        ents: right_ents,
    };
    store(tx, inode, &path[lvl].node, false)?;
    store(tx, inode, &right, true)?;
    if pos == 0 {
        fix_keys(tx, inode, path, lvl)?;
    }
    let key = right.ents.first().map_or(0, |x| x.key);
    let pidx = path[lvl - 1].idx + 1;
    insert_at(tx, inode, path, lvl - 1, pidx, Ent::index(key, b), spare)
}

/// Marks `[lblk, lblk + len)`, which lies inside one extent of the other
/// state, written (initialized, `written`) or unwritten: the extent splits
/// into up to three, the changed part merging with a left neighbour of
/// its new state where it continues it. Marking written: the caller
/// writes every byte of those blocks (zeros where it has no data) before
/// the commit. [`Error::NoSpace`] before any change when the tree blocks
/// the splits may need are not free.
pub fn set_written(
    tx: &mut Tx,
    inode: &mut Inode,
    lblk: u64,
    len: u32,
    written: bool,
) -> Result<()> {
    let mut path = find_path(tx, inode, lblk)?;
    let last = path.len() - 1;
    let i = path[last].idx.checked_sub(1);
    let Some(e) = i.and_then(|i| path[last].node.ents.get(i).copied()) else {
        return Err(Error::Internal(format!(
            "{}: no extent at {lblk}",
            name(inode)
        )));
    };
    let end = lblk + u64::from(len);
    if e.uninit() != written || u64::from(e.key) > lblk || e.end() < end || len == 0 {
        return Err(Error::Internal(format!(
            "{}: {lblk}+{len} is not inside an extent to mark written={written}",
            name(inode)
        )));
    }
    if !written && len > MAX_LEN_UNINIT {
        return Err(Error::Internal(format!(
            "{}: {len} blocks are too many for one unwritten extent",
            name(inode)
        )));
    }
    let i = i.unwrap_or(0);
    // Two inserts at most, each a split per level and a new level.
    let need = 2 * (path.len() as u64 + 1);
    if need > tx.available_blocks(AllocKind::Meta) {
        return Err(Error::NoSpace(Space::Blocks));
    }
    let before = (lblk - u64::from(e.key)) as u32;
    let after = (e.end() - end) as u32;
    let at = |l: u64| Pblk(e.ptr + (l - u64::from(e.key)));
    let changed = Ent::extent(lblk as u32, len, at(lblk), !written);
    let rest = Ent::extent(end as u32, after, at(end), written);
    let leaf = &mut path[last].node;
    if before > 0 {
        leaf.ents[i].set_len(before);
        store(tx, inode, &path[last].node, false)?;
    } else if after > 0 {
        leaf.ents[i] = rest;
        store(tx, inode, &path[last].node, false)?;
        if i == 0 {
            fix_keys(tx, inode, &mut path, last)?;
        }
    } else {
        // The whole extent: changed in place, merged with its left
        // neighbour when that continues it.
        leaf.ents[i] = changed;
        if i > 0 && can_merge(leaf.ents[i - 1], changed) {
            let l = leaf.ents[i - 1].len() + len;
            leaf.ents[i - 1].set_len(l);
            leaf.ents.remove(i);
        }
        return store(tx, inode, &path[last].node, false);
    }
    insert(tx, inode, changed, AllocKind::Meta, true)?;
    if before > 0 && after > 0 {
        insert(tx, inode, rest, AllocKind::Meta, false)?;
    }
    Ok(())
}

/// After the first key of the node at `lvl` changed: the index entries
/// above it take the new key, as far up as the node is its parent's first.
pub(crate) fn fix_keys(
    tx: &mut Tx,
    inode: &mut Inode,
    path: &mut [Level],
    lvl: usize,
) -> Result<()> {
    let mut l = lvl;
    while l > 0 {
        let Some(first) = path[l].node.ents.first().map(|e| e.key) else {
            return Ok(());
        };
        let pi = path[l - 1].idx;
        let Some(pe) = path[l - 1].node.ents.get_mut(pi) else {
            return Err(Error::Internal("extent path index out of range".into()));
        };
        if pe.key == first {
            return Ok(());
        }
        pe.key = first;
        store(tx, inode, &path[l - 1].node, false)?;
        if pi != 0 {
            return Ok(());
        }
        l -= 1;
    }
    Ok(())
}

/// Writes an empty extent root (depth 0, no entries) into `i_block`.
pub fn init_root(inode: &mut Inode) {
    let ib = inode.i_block_mut();
    ib.fill(0);
    let _ = put_le16(ib, EH_MAGIC, EXTENT_MAGIC);
    let _ = put_le16(ib, EH_MAX, ROOT_CAPACITY as u16);
    debug_assert_eq!(le16(ib, EH_MAX), ROOT_CAPACITY as u16);
}
