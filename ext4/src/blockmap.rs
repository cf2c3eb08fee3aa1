//! A file's block mapping, changed inside a transaction, whatever its
//! kind (extent tree or indirect block map): the building blocks every
//! operation that gives a file blocks or takes them away uses (writes,
//! truncate, directory growth, fallocate, evict).
//!
//! - [`map_alloc`]: map logical blocks `[lblk, lblk + n)`, allocating the
//!   holes (goal-directed, so a file growing in order stays contiguous);
//! - [`free_from`]: free everything mapped at or after a logical block;
//! - [`lookup`]: what a logical block maps to, as the transaction sees it;
//! - [`init_empty`]: the empty mapping of a new inode.
//!
//! Contract for callers: the inode is the transaction's copy
//! (`tx.inode(ino)`), changed here in memory (`i_block`, `i_blocks`) and
//! written by the caller with `tx.write_inode` together with its own
//! changes (size, times); `i_size` is the caller's. Blocks handed out
//! fresh hold whatever was on the device: the caller writes all of each
//! (data through `fs.write_data` before the commit; metadata through
//! `tx.new_block`). An existing mapping that overlaps a system zone is
//! [`Error::Corrupt`] (a hostile map must never make a write land on
//! metadata): the caller aborts and calls `fs.fail`.
//!
//! Running out of space: an allocation step either completes or changes
//! nothing, so [`map_alloc`] returns the runs it mapped before space ran
//! out (fewer blocks than asked), and [`Error::NoSpace`] only when it
//! could map nothing at all; the tree is consistent either way. Any other
//! error leaves the transaction half-changed: abort it.

use crate::error::{Error, Result};
use crate::extent::LOGICAL_LIMIT;
use crate::extent_edit::{self, Ent, Found};
use crate::extent_remove;
use crate::indirect;
use crate::indirect_edit;
use crate::inode::{flags, Inode};
use crate::num::{Lblk, Pblk};
use crate::superblock::{incompat, Superblock};
use crate::tx::{AllocKind, Tx};
use crate::types::FileKind;

pub use crate::extent_edit::Found as Lookup;

/// A run of logical blocks mapped by [`map_alloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First logical block.
    pub lblk: Lblk,
    /// First physical block (the run is physically contiguous).
    pub pblk: Pblk,
    /// Blocks in the run (at least 1).
    pub len: u32,
    /// Allocated by this call: the blocks hold stale bytes until written.
    pub fresh: bool,
    /// Mapped by an uninitialized extent (reads as zeros until written and
    /// converted).
    pub uninit: bool,
}

/// Whether the inode has a block map at all (fast symlinks and device,
/// fifo and socket inodes keep other things in `i_block`).
fn has_map(tx: &Tx, inode: &Inode) -> Result<bool> {
    if inode.has_flag(flags::INLINE_DATA) {
        return Err(Error::Invalid(format!(
            "inode {} keeps its data inline",
            inode.ino
        )));
    }
    Ok(match inode.kind() {
        FileKind::File | FileKind::Dir => true,
        // A target of 60 bytes or more is never in `i_block`: a new slow
        // symlink (no block yet) is mapped too.
        FileKind::Symlink => {
            !inode.is_fast_symlink(tx.sb()) || inode.size >= crate::inode::I_BLOCK_LEN as u64
        }
        _ => false,
    })
}

/// What logical block `lblk` of `inode` maps to, as the transaction sees it.
pub fn lookup(tx: &Tx, inode: &Inode, lblk: Lblk) -> Result<Found> {
    if !has_map(tx, inode)? {
        return Ok(Found::Hole {
            len: LOGICAL_LIMIT - lblk.as_u64(),
        });
    }
    if inode.has_flag(flags::EXTENTS) {
        return extent_edit::lookup(tx, inode, lblk.as_u64());
    }
    let m = indirect_edit::lookup(tx, inode, lblk)?;
    Ok(match m.pblk {
        Some(pblk) => Found::Mapped {
            pblk,
            len: m.len,
            uninit: false,
        },
        None => Found::Hole { len: m.len },
    })
}

/// Maps logical blocks `[lblk, lblk + n)` of `inode`, allocating every
/// hole, and returns the runs in logical order (see the module docs for
/// the contract and what running out of space gives).
/// [`Error::FileTooBig`] when the range passes what the mapping addresses.
pub fn map_alloc(tx: &mut Tx, inode: &mut Inode, lblk: Lblk, n: u32) -> Result<Vec<Run>> {
    map(tx, inode, lblk, n, false)
}

/// [`map_alloc`] for preallocation (fallocate): holes get uninitialized
/// extents (they read as zeros and need no data written). Extent-mapped
/// inodes only ([`Error::Unsupported`] otherwise, as the kernel's
/// EOPNOTSUPP).
pub fn preallocate(tx: &mut Tx, inode: &mut Inode, lblk: Lblk, n: u32) -> Result<Vec<Run>> {
    if !inode.has_flag(flags::EXTENTS) {
        return Err(Error::Unsupported(format!(
            "preallocating blocks of block-mapped inode {}",
            inode.ino
        )));
    }
    map(tx, inode, lblk, n, true)
}

fn map(tx: &mut Tx, inode: &mut Inode, lblk: Lblk, n: u32, unwritten: bool) -> Result<Vec<Run>> {
    if !has_map(tx, inode)? {
        return Err(Error::Invalid(format!(
            "inode {} has no block map",
            inode.ino
        )));
    }
    let extents = inode.has_flag(flags::EXTENTS);
    let per = u64::from(tx.sb().block_size / 4);
    let limit = if extents {
        LOGICAL_LIMIT
    } else {
        indirect::addressable(per).min(LOGICAL_LIMIT)
    };
    let start = lblk.as_u64();
    let end = start + u64::from(n);
    if end > limit {
        return Err(Error::FileTooBig);
    }
    let mut out = Vec::new();
    let mut cur = start;
    while cur < end {
        let step = if extents {
            extent_step(tx, inode, cur, end - cur, unwritten)
        } else {
            indirect_step(tx, inode, cur, end - cur)
        };
        match step {
            Ok(run) => {
                cur += u64::from(run.len);
                out.push(run);
            }
            Err(Error::NoSpace(s)) if out.is_empty() => return Err(Error::NoSpace(s)),
            Err(Error::NoSpace(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// An existing run about to be written: never inside a system zone.
fn checked_run(tx: &Tx, inode: &Inode, run: Run) -> Result<Run> {
    if let Some(z) = tx.fs().zones().find(run.pblk, u64::from(run.len)) {
        return Err(Error::corrupt(
            format!("block map of inode {}", inode.ino),
            format!(
                "logical block {} maps to block {} in the system zone ({:?} at {})",
                run.lblk, run.pblk, z.kind, z.start
            ),
        ));
    }
    Ok(run)
}

fn lblk_of(v: u64) -> Result<Lblk> {
    u32::try_from(v).map(Lblk).map_err(|_| Error::FileTooBig)
}

/// One step of [`map_alloc`] on an extent tree: the extent at `cur`, or
/// the hole there allocated (at most `left` blocks, one extent's worth).
fn extent_step(
    tx: &mut Tx,
    inode: &mut Inode,
    cur: u64,
    left: u64,
    unwritten: bool,
) -> Result<Run> {
    let path = extent_edit::find_path(tx, inode, cur)?;
    match extent_edit::found_in(&path, cur) {
        Found::Mapped { pblk, len, uninit } => {
            let run = Run {
                lblk: lblk_of(cur)?,
                pblk,
                len: len.min(left) as u32,
                fresh: false,
                uninit,
            };
            checked_run(tx, inode, run)
        }
        Found::Hole { len } => {
            // Leave room for the tree blocks the insert may need (a split
            // per level and a new level), or a last run taking every free
            // block would fail for want of one.
            let reserve = path.len() as u64 + 1;
            let room = tx
                .available_blocks(AllocKind::Data)
                .saturating_sub(reserve)
                .max(1);
            let longest = if unwritten {
                extent_edit::MAX_LEN_UNINIT
            } else {
                extent_edit::MAX_LEN_INIT
            };
            let want = len.min(left).min(u64::from(longest)).min(room) as u32;
            let goal = extent_edit::goal(tx, inode, &path, cur);
            drop(path);
            let (p, got) = tx.alloc_blocks(goal, want, inode.ino, AllocKind::Data)?;
            let sectors = u64::from(got) * extent_edit::sectors(tx);
            inode.blocks = inode.blocks.saturating_add(sectors);
            let key = lblk_of(cur)?;
            if let Err(e) = extent_edit::insert(
                tx,
                inode,
                Ent::extent(key.0, got, p, unwritten),
                AllocKind::Meta,
                true,
            ) {
                if matches!(e, Error::NoSpace(_)) {
                    tx.free_blocks(p, u64::from(got), AllocKind::Data)?;
                    inode.blocks = inode.blocks.saturating_sub(sectors);
                }
                return Err(e);
            }
            Ok(Run {
                lblk: key,
                pblk: p,
                len: got,
                fresh: true,
                uninit: unwritten,
            })
        }
    }
}

/// One step of [`map_alloc`] on a block map.
fn indirect_step(tx: &mut Tx, inode: &mut Inode, cur: u64, left: u64) -> Result<Run> {
    let lblk = lblk_of(cur)?;
    let m = indirect_edit::lookup(tx, inode, lblk)?;
    match m.pblk {
        Some(pblk) => {
            let run = Run {
                lblk,
                pblk,
                len: m.len.min(left) as u32,
                fresh: false,
                uninit: false,
            };
            checked_run(tx, inode, run)
        }
        None => {
            let (pblk, len) = indirect_edit::alloc_into_hole(tx, inode, cur, left, m.len)?;
            Ok(Run {
                lblk,
                pblk,
                len,
                fresh: true,
                uninit: false,
            })
        }
    }
}

/// Frees every block `inode` maps at or after logical block `first`, with
/// the tree or indirect blocks no longer needed (truncate). Inodes without
/// a block map have nothing to free.
pub fn free_from(tx: &mut Tx, inode: &mut Inode, first: u64) -> Result<()> {
    if !has_map(tx, inode)? || first >= LOGICAL_LIMIT {
        return Ok(());
    }
    if inode.has_flag(flags::EXTENTS) {
        extent_remove::remove_from(tx, inode, first)
    } else {
        indirect_edit::remove_from(tx, inode, first)
    }
}

/// Frees every block `inode` maps in `[start, end)` (punch hole), with
/// the tree or indirect blocks no longer needed. An extent cut in its
/// middle may need a tree block (taken from the reserved pool).
pub fn free_range(tx: &mut Tx, inode: &mut Inode, start: u64, end: u64) -> Result<()> {
    if !has_map(tx, inode)? || start >= end.min(LOGICAL_LIMIT) {
        return Ok(());
    }
    if inode.has_flag(flags::EXTENTS) {
        extent_remove::remove_range(tx, inode, start, end.min(LOGICAL_LIMIT))
    } else {
        indirect_edit::remove_range(tx, inode, start, end)
    }
}

/// Gives a new inode the empty mapping the kernel gives it: an empty
/// extent root with `EXTENTS_FL` where the filesystem has extents, an all
/// hole block map otherwise. For regular files, directories and slow
/// symlinks (the caller decides which inodes get a map).
pub fn init_empty(sb: &Superblock, inode: &mut Inode) {
    if sb.has_incompat(incompat::EXTENTS) {
        inode.flags |= flags::EXTENTS;
        extent_edit::init_root(inode);
    } else {
        inode.flags &= !flags::EXTENTS;
        inode.i_block_mut().fill(0);
    }
}

/// Blocks the mapping itself takes (extent index and leaf blocks, or
/// indirect blocks), walking all of it: for checks and tests.
pub fn mapping_blocks(tx: &Tx, inode: &Inode) -> Result<u64> {
    if !has_map(tx, inode)? {
        return Ok(0);
    }
    if inode.has_flag(flags::EXTENTS) {
        Ok(extent_remove::tree_stats(tx, inode)?.blocks)
    } else {
        indirect_edit::meta_blocks(tx, inode)
    }
}

#[cfg(test)]
#[path = "blockmap_tests.rs"]
mod tests;
