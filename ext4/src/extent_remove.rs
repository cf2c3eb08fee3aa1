//! Extent tree removals and shifts inside a transaction: free the
//! mappings of a logical range (truncate, punch hole, collapse), move
//! every mapping past a point up or down (insert and collapse range), and
//! walk the whole tree (checks).
//!
//! Invariants (with those of `extent_edit`):
//! - a removal frees each data block it unmaps once, as
//!   [`AllocKind::Data`], and each tree block it empties as
//!   [`AllocKind::Meta`]; a block met twice is corruption, found before it
//!   would be freed twice;
//! - an index entry keeps its child's first key when a removal cuts the
//!   child's head, a node left empty goes with its index entry, and the
//!   root takes its only child's entries while they fit (depth shrinks);
//! - an extent cut in its middle keeps its head in place; its tail is
//!   inserted after the removal, from the reserved pool if need be (the
//!   removal cannot be undone halfway; if even that fails the caller must
//!   abort the transaction);
//! - a shift changes keys only, in every node holding keys past the point,
//!   and never reorders: the caller made room first.

use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::extent::LOGICAL_LIMIT;
use crate::extent_edit::{find_path, insert, load, name, sectors, store, Ent, Node, ROOT_CAPACITY};
use crate::inode::Inode;
use crate::num::{Lblk, Pblk};
use crate::tx::{AllocKind, Tx};

/// Frees `len` blocks from `start` of this inode (data or tree blocks),
/// uncounting them from `i_blocks`. A block the transaction already freed
/// is mapped twice: corruption.
pub(crate) fn release(
    tx: &mut Tx,
    inode: &mut Inode,
    start: Pblk,
    len: u64,
    kind: AllocKind,
    what: &str,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    if tx.freed().first_overlap(start.0, len).is_some() {
        return Err(Error::corrupt(
            what.to_string(),
            format!("blocks {start}+{len} are mapped twice"),
        ));
    }
    tx.free_blocks(start, len, kind)?;
    inode.blocks = inode.blocks.saturating_sub(len.saturating_mul(sectors(tx)));
    Ok(())
}

/// Removes every mapping at or after logical block `from` (truncate).
pub fn remove_from(tx: &mut Tx, inode: &mut Inode, from: u64) -> Result<()> {
    remove_range(tx, inode, from, LOGICAL_LIMIT)
}

/// Removes the mappings of `[start, end)`, freeing their blocks.
pub fn remove_range(tx: &mut Tx, inode: &mut Inode, start: u64, end: u64) -> Result<()> {
    if start >= end {
        return Ok(());
    }
    let mut root = load(tx, inode, None, None, 0, LOGICAL_LIMIT)?;
    let mut tail = None;
    let changed = cut(tx, inode, &mut root, LOGICAL_LIMIT, start, end, &mut tail)?;
    let shrunk = shrink(tx, inode, &mut root)?;
    if changed || shrunk {
        store(tx, inode, &root, false)?;
    }
    if let Some(t) = tail {
        insert(tx, inode, t, AllocKind::MetaReserved, false)?;
    }
    Ok(())
}

/// Pulls the root's only child into the root while its entries fit; an
/// empty index root becomes an empty leaf. Whether the root changed.
fn shrink(tx: &mut Tx, inode: &mut Inode, root: &mut Node) -> Result<bool> {
    let mut shrunk = false;
    while root.depth > 0 {
        if root.ents.is_empty() {
            root.depth = 0;
            root.max = ROOT_CAPACITY;
            return Ok(true);
        }
        if root.ents.len() != 1 {
            break;
        }
        let e = root.ents[0];
        let child = load(
            tx,
            inode,
            Some(Pblk(e.ptr)),
            Some(root.depth - 1),
            u64::from(e.key),
            LOGICAL_LIMIT,
        )?;
        if child.ents.len() > root.max {
            break;
        }
        let what = name(inode);
        release(tx, inode, Pblk(e.ptr), 1, AllocKind::Meta, &what)?;
        root.depth = child.depth;
        root.ents = child.ents;
        shrunk = true;
    }
    Ok(shrunk)
}

/// Removes `[start, end)` from `node` (keys below `hi`); an extent cut in
/// its middle leaves its tail in `tail` when the node has no room for it.
/// Whether the node changed.
fn cut(
    tx: &mut Tx,
    inode: &mut Inode,
    node: &mut Node,
    hi: u64,
    start: u64,
    end: u64,
    tail: &mut Option<Ent>,
) -> Result<bool> {
    let what = name(inode);
    let mut changed = false;
    if node.depth == 0 {
        let mut out = Vec::with_capacity(node.ents.len() + 1);
        let mut right = None;
        for &e in &node.ents {
            let (k, en) = (u64::from(e.key), e.end());
            if en <= start || k >= end {
                out.push(e);
                continue;
            }
            changed = true;
            let (s, t) = (k.max(start), en.min(end));
            release(
                tx,
                inode,
                Pblk(e.ptr + (s - k)),
                t - s,
                AllocKind::Data,
                &what,
            )?;
            if k < start {
                let mut head = e;
                head.set_len((start - k) as u32);
                out.push(head);
            }
            if en > end {
                let piece = Ent::extent(
                    end as u32,
                    (en - end) as u32,
                    Pblk(e.ptr + (end - k)),
                    e.uninit(),
                );
                if k < start {
                    right = Some(out.len());
                }
                out.push(piece);
            }
        }
        if out.len() > node.max {
            // Only an extent cut in its middle adds an entry.
            if let Some(i) = right {
                *tail = Some(out.remove(i));
            }
        }
        node.ents = out;
        return Ok(changed);
    }
    let keys: Vec<u64> = node.ents.iter().map(|e| u64::from(e.key)).collect();
    let mut out = Vec::with_capacity(node.ents.len());
    for (i, &e) in node.ents.iter().enumerate() {
        let child_hi = keys.get(i + 1).copied().unwrap_or(hi);
        if child_hi <= start || keys[i] >= end {
            out.push(e);
            continue;
        }
        let child_blk = Pblk(e.ptr);
        let (mut child, _) = child(tx, inode, node, i, hi)?;
        if start <= keys[i] && child_hi <= end {
            free_subtree(tx, inode, &child, child_hi)?;
            release(tx, inode, child_blk, 1, AllocKind::Meta, &what)?;
            changed = true;
            continue;
        }
        if !cut(tx, inode, &mut child, child_hi, start, end, tail)? {
            out.push(e);
            continue;
        }
        changed = true;
        match child.ents.first() {
            None => release(tx, inode, child_blk, 1, AllocKind::Meta, &what)?,
            Some(first) => {
                store(tx, inode, &child, false)?;
                out.push(Ent {
                    key: first.key,
                    ..e
                });
            }
        }
    }
    node.ents = out;
    Ok(changed)
}

/// Child `i` of index node `node` (whose keys lie below `hi`), read and
/// validated with its key range, and the end of that range.
fn child(tx: &Tx, inode: &Inode, node: &Node, i: usize, hi: u64) -> Result<(Node, u64)> {
    let e = node.ents[i];
    let child_hi = node.ents.get(i + 1).map_or(hi, |n| u64::from(n.key));
    let c = load(
        tx,
        inode,
        Some(Pblk(e.ptr)),
        Some(node.depth - 1),
        u64::from(e.key),
        child_hi,
    )?;
    Ok((c, child_hi))
}

/// Frees everything `node` maps and every node below it (not `node`'s
/// own block); its keys lie below `hi`.
fn free_subtree(tx: &mut Tx, inode: &mut Inode, node: &Node, hi: u64) -> Result<()> {
    let what = name(inode);
    if node.depth == 0 {
        for e in &node.ents {
            release(
                tx,
                inode,
                Pblk(e.ptr),
                u64::from(e.len()),
                AllocKind::Data,
                &what,
            )?;
        }
        return Ok(());
    }
    for (i, e) in node.ents.iter().enumerate() {
        let (c, child_hi) = child(tx, inode, node, i, hi)?;
        free_subtree(tx, inode, &c, child_hi)?;
        release(tx, inode, Pblk(e.ptr), 1, AllocKind::Meta, &what)?;
    }
    Ok(())
}

/// Splits the extent spanning logical block `at` (if one starts before it
/// and ends after it) into two at `at`, so that a shift from `at` moves
/// only whole extents.
pub fn split_at(tx: &mut Tx, inode: &mut Inode, at: u64) -> Result<()> {
    let path = find_path(tx, inode, at)?;
    let Some(leaf) = path.last() else {
        return Ok(());
    };
    let Some(i) = leaf.idx.checked_sub(1) else {
        return Ok(());
    };
    let e = leaf.node.ents[i];
    if !(u64::from(e.key) < at && e.end() > at) {
        return Ok(());
    }
    let k = u64::from(e.key);
    let right = Ent::extent(
        at as u32,
        (e.end() - at) as u32,
        Pblk(e.ptr + (at - k)),
        e.uninit(),
    );
    let mut node = leaf.node.clone();
    node.ents[i].set_len((at - k) as u32);
    store(tx, inode, &node, false)?;
    insert(tx, inode, right, AllocKind::MetaReserved, false)
}

/// Adds `delta` to the logical start of every extent at or after `from`
/// (`delta` < 0: the caller emptied `[from + delta, from)` first; > 0: it
/// split at `from` and checked the end of the logical space).
pub fn shift(tx: &mut Tx, inode: &mut Inode, from: u64, delta: i64) -> Result<()> {
    let mut root = load(tx, inode, None, None, 0, LOGICAL_LIMIT)?;
    if shift_node(tx, inode, &mut root, LOGICAL_LIMIT, from, delta)? {
        store(tx, inode, &root, false)?;
    }
    Ok(())
}

fn moved(key: u32, delta: i64, inode: &Inode) -> Result<u32> {
    i64::from(key)
        .checked_add(delta)
        .and_then(|k| u32::try_from(k).ok())
        .ok_or_else(|| Error::Internal(format!("{}: key {key} shifted out of range", name(inode))))
}

fn shift_node(
    tx: &mut Tx,
    inode: &mut Inode,
    node: &mut Node,
    hi: u64,
    from: u64,
    delta: i64,
) -> Result<bool> {
    let mut changed = false;
    if node.depth == 0 {
        for e in node.ents.iter_mut() {
            if u64::from(e.key) >= from {
                e.key = moved(e.key, delta, inode)?;
                changed = true;
            }
        }
        return Ok(changed);
    }
    let keys: Vec<u64> = node.ents.iter().map(|e| u64::from(e.key)).collect();
    for i in 0..node.ents.len() {
        let child_hi = keys.get(i + 1).copied().unwrap_or(hi);
        if child_hi <= from {
            continue;
        }
        let e = node.ents[i];
        let (mut child, _) = child(tx, inode, node, i, hi)?;
        if shift_node(tx, inode, &mut child, child_hi, from, delta)? {
            store(tx, inode, &child, false)?;
        }
        if keys[i] >= from {
            node.ents[i].key = moved(e.key, delta, inode)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// What a walk over the whole tree found ([`tree_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeStats {
    /// The root's depth.
    pub depth: u16,
    /// Index and leaf blocks (the root in `i_block` not counted).
    pub blocks: u64,
    /// Every extent, in logical order.
    pub extents: Vec<Extent>,
}

/// Walks every node of the tree (for tests and checks).
pub fn tree_stats(tx: &Tx, inode: &Inode) -> Result<TreeStats> {
    let root = load(tx, inode, None, None, 0, LOGICAL_LIMIT)?;
    let mut st = TreeStats {
        depth: root.depth,
        blocks: 0,
        extents: Vec::new(),
    };
    walk(tx, inode, &root, LOGICAL_LIMIT, &mut st)?;
    Ok(st)
}

fn walk(tx: &Tx, inode: &Inode, node: &Node, hi: u64, st: &mut TreeStats) -> Result<()> {
    if node.depth == 0 {
        st.extents.extend(node.ents.iter().map(|e| Extent {
            lblk: Lblk(e.key),
            len: e.len(),
            pblk: Pblk(e.ptr),
            uninit: e.uninit(),
        }));
        return Ok(());
    }
    for i in 0..node.ents.len() {
        let (c, child_hi) = child(tx, inode, node, i, hi)?;
        st.blocks += 1;
        walk(tx, inode, &c, child_hi, st)?;
    }
    Ok(())
}
