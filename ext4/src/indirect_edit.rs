//! Block map edits (ext2/ext3 indirect blocks, and ext4 inodes without
//! `EXTENTS_FL`) inside a transaction: allocate a run of blocks into a
//! hole, creating the single, double and triple indirect blocks on the
//! way, and free everything from a logical block on (truncate).
//!
//! Invariants:
//! - every pointer followed is checked to lie inside the filesystem, and
//!   the walk is at most three blocks deep; an indirect block changed here
//!   goes through `Tx::modify`, which refuses system-zone blocks;
//! - an allocation gets all its indirect blocks and at least one data
//!   block before it links anything, so running out of space changes
//!   nothing; the indirect blocks come first at the goal, the data right
//!   after them (the kernel's layout: `ext4_alloc_branch`);
//! - a truncate frees an indirect block once no pointer in it is left;
//!   a block pointed to twice is corruption, found before it is freed twice;
//! - `i_blocks` counts every block allocated or freed here.

use crate::bytes::{le32, put_le32};
use crate::error::{Error, Result, Space};
use crate::extent_edit::sectors;
use crate::extent_remove::release;
use crate::indirect::{self, offsets, DIRECT_BLOCKS};
use crate::inode::Inode;
use crate::num::{Lblk, Pblk};
use crate::tx::{AllocKind, Tx};

/// Highest block number a 32-bit pointer holds, plus one.
const POINTER_LIMIT: u64 = 1 << 32;

fn name(inode: &Inode) -> String {
    format!("block map of inode {}", inode.ino)
}

fn per_block(tx: &Tx) -> u64 {
    u64::from(tx.sb().block_size / 4)
}

/// A pointer read from the map, checked to lie inside the filesystem.
fn checked(tx: &Tx, inode: &Inode, p: u32) -> Result<Pblk> {
    let b = Pblk(u64::from(p));
    if tx.sb().block_in_fs(b) {
        Ok(b)
    } else {
        Err(Error::corrupt(
            name(inode),
            format!("pointer to block {b} outside the filesystem"),
        ))
    }
}

fn ptr_at(b: &[u8], i: u64) -> u32 {
    le32(b, (i as usize) * 4)
}

/// Sets pointer `i` of `container` (`None`: `i_block`) to `v`.
fn set_ptr(tx: &mut Tx, inode: &mut Inode, container: Option<Pblk>, i: u64, v: u32) -> Result<()> {
    let off = (i as usize) * 4;
    let dst: &mut [u8] = match container {
        None => inode.i_block_mut(),
        Some(b) => tx.modify(b)?,
    };
    put_le32(dst, off, v).ok_or_else(|| Error::Internal(format!("pointer {i} outside its block")))
}

/// What `lblk` maps to through the transaction (holes with their length).
pub fn lookup(tx: &Tx, inode: &Inode, lblk: Lblk) -> Result<crate::types::Mapping> {
    let read = |b: Pblk| tx.get(b);
    indirect::map(
        tx.sb(),
        inode.i_block(),
        lblk,
        &read,
        &format!("inode {}", inode.ino),
    )
}

/// Allocates up to `want` blocks into the hole at `lblk` (`hole` blocks
/// long, as a lookup said) and links them; returns the run (first
/// physical block, length). [`Error::NoSpace`] when not even one block
/// (with the indirect blocks it needs) is left: nothing changed.
pub fn alloc_into_hole(
    tx: &mut Tx,
    inode: &mut Inode,
    lblk: u64,
    want: u64,
    hole: u64,
) -> Result<(Pblk, u32)> {
    let per = per_block(tx);
    let (slot, idx) = offsets(per, lblk).ok_or(Error::FileTooBig)?;
    // The pointer arrays already there, from the root down.
    let mut containers: Vec<Pblk> = Vec::new();
    let mut p = le32(inode.i_block(), slot * 4);
    for &i in &idx {
        if p == 0 {
            break;
        }
        let b = checked(tx, inode, p)?;
        containers.push(b);
        p = ptr_at(&tx.get(b)?, i);
    }
    if p != 0 && containers.len() == idx.len() {
        return Err(Error::Internal(format!(
            "{}: block {lblk} is mapped, not a hole",
            name(inode)
        )));
    }
    let missing = idx.len() - containers.len();
    // Room left in the pointer array that holds the data pointers.
    let room = match idx.last() {
        None => DIRECT_BLOCKS - lblk,
        Some(&i) => per - i,
    };
    let want = want.min(hole).min(room).min(u64::from(u32::MAX)).max(1) as u32;
    let goal = match lblk.checked_sub(1).map(|l| u32::try_from(l).map(Lblk)) {
        Some(Ok(prev)) => match lookup(tx, inode, prev)?.pblk {
            Some(b) => b.saturating_add(1),
            None => containers
                .last()
                .map_or_else(|| tx.inode_goal(inode), |b| b.saturating_add(1)),
        },
        _ => tx.inode_goal(inode),
    };
    let mut meta: Vec<Pblk> = Vec::new();
    let give_back = |tx: &mut Tx, meta: &[Pblk], data: Option<(Pblk, u32)>| -> Result<()> {
        for &b in meta {
            tx.free_blocks(b, 1, AllocKind::Meta)?;
        }
        if let Some((d, n)) = data {
            tx.free_blocks(d, u64::from(n), AllocKind::Data)?;
        }
        Ok(())
    };
    for _ in 0..missing {
        let g = meta.last().map_or(goal, |b| b.saturating_add(1));
        match tx.alloc_blocks(g, 1, inode.ino, AllocKind::Meta) {
            Ok((b, _)) if b.0 < POINTER_LIMIT => meta.push(b),
            Ok((b, _)) => {
                tx.free_blocks(b, 1, AllocKind::Meta)?;
                give_back(tx, &meta, None)?;
                return Err(Error::NoSpace(Space::Blocks));
            }
            Err(e) => {
                give_back(tx, &meta, None)?;
                return Err(e);
            }
        }
    }
    let g = meta.last().map_or(goal, |b| b.saturating_add(1));
    let (data, got) = match tx.alloc_blocks(g, want, inode.ino, AllocKind::Data) {
        Ok((d, n)) if d.0 + u64::from(n) <= POINTER_LIMIT => (d, n),
        Ok(run) => {
            give_back(tx, &meta, Some(run))?;
            return Err(Error::NoSpace(Space::Blocks));
        }
        Err(e) => {
            give_back(tx, &meta, None)?;
            return Err(e);
        }
    };
    // Link: fresh indirect blocks zeroed, each pointing to the next, the
    // lowest holding the data pointers; the topmost hung where the map
    // ended.
    for &b in &meta {
        tx.new_block(b)?;
    }
    let depth0 = containers.len();
    for (k, &b) in meta.iter().enumerate() {
        let level = depth0 + k;
        let (parent, i) = match level.checked_sub(1) {
            None => (None, slot as u64),
            Some(l) => (
                Some(if k == 0 { containers[l] } else { meta[k - 1] }),
                idx[l],
            ),
        };
        set_ptr(tx, inode, parent, i, b.0 as u32)?;
    }
    let (leaf, first) = match idx.last() {
        None => (None, slot as u64),
        Some(&i) => (
            Some(
                meta.last()
                    .copied()
                    .unwrap_or_else(|| containers[depth0 - 1]),
            ),
            i,
        ),
    };
    for j in 0..u64::from(got) {
        set_ptr(tx, inode, leaf, first + j, (data.0 + j) as u32)?;
    }
    let added = (meta.len() as u64 + u64::from(got)).saturating_mul(sectors(tx));
    inode.blocks = inode.blocks.saturating_add(added);
    Ok((data, got))
}

/// Runs of data blocks waiting to be freed together.
#[derive(Debug, Default)]
struct Pending {
    start: u64,
    len: u64,
}

impl Pending {
    fn add(&mut self, tx: &mut Tx, inode: &mut Inode, b: Pblk) -> Result<()> {
        if self.len > 0 && self.start + self.len == b.0 {
            self.len += 1;
            return Ok(());
        }
        self.flush(tx, inode)?;
        (self.start, self.len) = (b.0, 1);
        Ok(())
    }

    fn flush(&mut self, tx: &mut Tx, inode: &mut Inode) -> Result<()> {
        let what = name(inode);
        release(
            tx,
            inode,
            Pblk(self.start),
            self.len,
            AllocKind::Data,
            &what,
        )?;
        self.len = 0;
        Ok(())
    }
}

/// Frees every block mapped at or after logical block `from`, and the
/// indirect blocks left without pointers.
pub fn remove_from(tx: &mut Tx, inode: &mut Inode, from: u64) -> Result<()> {
    remove_range(tx, inode, from, u64::MAX)
}

/// Frees every block mapped in `[start, end)`, and the indirect blocks
/// left without pointers.
pub fn remove_range(tx: &mut Tx, inode: &mut Inode, start: u64, end: u64) -> Result<()> {
    let per = per_block(tx);
    let mut pending = Pending::default();
    for slot in start.min(DIRECT_BLOCKS)..end.min(DIRECT_BLOCKS) {
        let p = le32(inode.i_block(), slot as usize * 4);
        if p != 0 {
            let b = checked(tx, inode, p)?;
            pending.add(tx, inode, b)?;
            set_ptr(tx, inode, None, slot, 0)?;
        }
    }
    let mut base = DIRECT_BLOCKS;
    for (k, slot) in [indirect::IND_SLOT, indirect::DIND_SLOT, indirect::TIND_SLOT]
        .into_iter()
        .enumerate()
    {
        let level = k as u32 + 1;
        let span = per.pow(level);
        let p = le32(inode.i_block(), slot * 4);
        if p != 0 && base + span > start && base < end {
            let b = checked(tx, inode, p)?;
            let range = Cut { start, end };
            if trunc_tree(tx, inode, b, level, base, range, &mut pending)? {
                pending.flush(tx, inode)?;
                let what = name(inode);
                release(tx, inode, b, 1, AllocKind::Meta, &what)?;
                set_ptr(tx, inode, None, slot as u64, 0)?;
            }
        }
        base += span;
    }
    pending.flush(tx, inode)
}

/// The logical range a removal frees.
#[derive(Debug, Clone, Copy)]
struct Cut {
    start: u64,
    end: u64,
}

/// Frees what the indirect block `blk` (`level` 1 = single) maps in the
/// cut; its first pointer maps logical block `base`. Returns whether no
/// pointer is left in it (the caller frees it).
fn trunc_tree(
    tx: &mut Tx,
    inode: &mut Inode,
    blk: Pblk,
    level: u32,
    base: u64,
    cut: Cut,
    pending: &mut Pending,
) -> Result<bool> {
    let per = per_block(tx);
    let child_span = per.pow(level - 1);
    let first = cut.start.saturating_sub(base) / child_span;
    let last = cut.end.saturating_sub(base).div_ceil(child_span).min(per);
    let arr = tx.get(blk)?;
    let mut cleared: Vec<u64> = Vec::new();
    let mut gone = vec![false; per as usize];
    for i in first..last {
        let p = ptr_at(&arr, i);
        if p == 0 {
            continue;
        }
        let b = checked(tx, inode, p)?;
        let child_base = base + i * child_span;
        if level == 1 {
            pending.add(tx, inode, b)?;
            cleared.push(i);
            gone[i as usize] = true;
        } else if trunc_tree(tx, inode, b, level - 1, child_base, cut, pending)? {
            pending.flush(tx, inode)?;
            let what = name(inode);
            release(tx, inode, b, 1, AllocKind::Meta, &what)?;
            cleared.push(i);
            gone[i as usize] = true;
        }
    }
    let left = (0..per).any(|i| ptr_at(&arr, i) != 0 && !gone[i as usize]);
    if left && !cleared.is_empty() {
        for &i in &cleared {
            set_ptr(tx, inode, Some(blk), i, 0)?;
        }
    }
    Ok(!left)
}

/// The indirect blocks of the map (for tests and checks).
pub fn meta_blocks(tx: &Tx, inode: &Inode) -> Result<u64> {
    let mut n = 0;
    for (k, slot) in [indirect::IND_SLOT, indirect::DIND_SLOT, indirect::TIND_SLOT]
        .into_iter()
        .enumerate()
    {
        let p = le32(inode.i_block(), slot * 4);
        if p != 0 {
            n += count_tree(tx, inode, checked(tx, inode, p)?, k as u32 + 1)?;
        }
    }
    Ok(n)
}

fn count_tree(tx: &Tx, inode: &Inode, blk: Pblk, level: u32) -> Result<u64> {
    let mut n = 1;
    if level > 1 {
        let arr = tx.get(blk)?;
        for i in 0..per_block(tx) {
            let p = ptr_at(&arr, i);
            if p != 0 {
                n += count_tree(tx, inode, checked(tx, inode, p)?, level - 1)?;
            }
        }
    }
    Ok(n)
}
