//! fallocate (the kernel's `ext4_fallocate` and the VFS checks before it):
//! preallocation with unwritten extents (with or without `KEEP_SIZE`),
//! `PUNCH_HOLE`, `ZERO_RANGE`, `COLLAPSE_RANGE` and `INSERT_RANGE`.
//!
//! The kernel's rules, kept here: unknown mode bits, a hole punched
//! without `KEEP_SIZE` and punch with zero-range are `Unsupported`
//! (EOPNOTSUPP); collapse and insert take no other bit and need
//! block-aligned offset and length (`Invalid`, EINVAL), collapse must end
//! before the end of the file and insert start before it; preallocation,
//! zero-range, collapse and insert need an extent-mapped file
//! (`Unsupported` on block maps), a punched hole works on both. A punch
//! stops at the end of the file (rounded up to the page, as the kernel's);
//! partial blocks at the edges of a punched or zeroed range get zeros
//! written. Every mode sets mtime and ctime and, for non-root callers,
//! clears set-user-id/set-group-id (`file_modified`).
//!
//! Each call is one transaction: preallocation and zero-range check the
//! space for every hole first, so they either complete or change nothing.

use crate::attr_write::kill_suid_on_write;
use crate::blockmap::{self, Lookup};
use crate::error::{Error, Result};
use crate::extent_edit::{self, MAX_LEN_UNINIT};
use crate::extent_remove;
use crate::file_write::{at, check_regular, lblk};
use crate::flags::{check_may_modify, handle_inode, Change};
use crate::fs::Fs;
use crate::inode::{flags, Inode};
use crate::num::InodeNo;
use crate::tx::{Creds, Tx};

/// fallocate mode bits (`linux/falloc.h`).
pub mod mode {
    /// Do not change the file size.
    pub const KEEP_SIZE: u32 = 0x01;
    /// Deallocate the range (with `KEEP_SIZE`).
    pub const PUNCH_HOLE: u32 = 0x02;
    /// Obsolete, refused by the kernel.
    pub const NO_HIDE_STALE: u32 = 0x04;
    /// Remove the range, moving what follows down.
    pub const COLLAPSE_RANGE: u32 = 0x08;
    /// Make the range read as zeros (unwritten extents).
    pub const ZERO_RANGE: u32 = 0x10;
    /// Insert a hole, moving what follows up.
    pub const INSERT_RANGE: u32 = 0x20;
}

use mode::*;

/// The page size the kernel rounds a punch at the end of the file to.
const PAGE_SIZE: u64 = 4096;

impl Fs {
    /// fallocate(2) on regular file `ino`: `mode` as the kernel takes it
    /// (the module docs list the rules), `offset` and `len` in bytes.
    pub fn fallocate(
        &self,
        creds: Creds,
        ino: InodeNo,
        mode: u32,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let _lock = self.inode_locks().write(ino);
        let mut tx = self.begin(creds)?;
        match self.fallocate_in(&mut tx, ino, mode, offset, len) {
            Ok(()) => tx.commit(),
            Err(e) => {
                drop(tx);
                self.fail(&e, at("fallocate", ino));
                Err(e)
            }
        }
    }

    fn fallocate_in(&self, tx: &mut Tx, ino: InodeNo, m: u32, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Err(Error::Invalid("fallocate of 0 bytes".into()));
        }
        let known = KEEP_SIZE | PUNCH_HOLE | COLLAPSE_RANGE | ZERO_RANGE | INSERT_RANGE;
        if m & !known != 0 {
            return Err(Error::Unsupported(format!("fallocate mode {m:#x}")));
        }
        if m & PUNCH_HOLE != 0 && (m & KEEP_SIZE == 0 || m & ZERO_RANGE != 0) {
            return Err(Error::Unsupported(
                "a punched hole needs KEEP_SIZE and excludes ZERO_RANGE".into(),
            ));
        }
        if m & (COLLAPSE_RANGE | INSERT_RANGE) != 0 && m & !(COLLAPSE_RANGE | INSERT_RANGE) != 0
            || m & COLLAPSE_RANGE != 0 && m & INSERT_RANGE != 0
        {
            return Err(Error::Invalid(
                "collapse and insert range take no other mode".into(),
            ));
        }
        let mut inode = handle_inode(tx, ino)?;
        check_regular(&inode)?;
        // vfs_fallocate: an append-only file takes plain preallocation
        // only; an immutable one nothing.
        if m & !KEEP_SIZE != 0 || inode.has_flag(flags::IMMUTABLE) {
            check_may_modify(&inode, Change::Truncate)?;
        }
        let extents = inode.has_flag(flags::EXTENTS);
        let max = self.sb().limits().max_file_bytes(extents);
        let end = offset.checked_add(len).ok_or(Error::FileTooBig)?;
        if m & PUNCH_HOLE == 0 && end > max {
            return Err(Error::FileTooBig);
        }
        if m & PUNCH_HOLE == 0 && !extents {
            return Err(Error::Unsupported(format!(
                "fallocate mode {m:#x} on block-mapped inode {ino}"
            )));
        }
        let bs = u64::from(self.block_size());
        if m & PUNCH_HOLE != 0 {
            if offset >= inode.size {
                return Ok(());
            }
            let end = end.min(inode.size.div_ceil(PAGE_SIZE) * PAGE_SIZE);
            self.zero_edges(tx, &inode, offset, end)?;
            blockmap::free_range(tx, &mut inode, offset.div_ceil(bs), end / bs)?;
        } else if m & COLLAPSE_RANGE != 0 {
            if offset % bs != 0 || len % bs != 0 {
                return Err(Error::Invalid("collapse range not block-aligned".into()));
            }
            if end >= inode.size {
                return Err(Error::Invalid(
                    "collapse range reaching the end of the file".into(),
                ));
            }
            let (a, d) = (offset / bs, len / bs);
            extent_remove::remove_range(tx, &mut inode, a, a + d)?;
            extent_remove::shift(tx, &mut inode, a + d, -(d as i64))?;
            inode.size -= len;
        } else if m & INSERT_RANGE != 0 {
            if offset % bs != 0 || len % bs != 0 {
                return Err(Error::Invalid("insert range not block-aligned".into()));
            }
            if offset >= inode.size {
                return Err(Error::Invalid("insert range at or past the end".into()));
            }
            if inode.size.checked_add(len).is_none_or(|s| s > max) {
                return Err(Error::FileTooBig);
            }
            let (a, d) = (offset / bs, len / bs);
            let last_end = extent_remove::tree_stats(tx, &inode)?
                .extents
                .last()
                .map_or(0, |e| e.lblk.as_u64() + u64::from(e.len));
            if last_end + d > max.div_ceil(bs) {
                return Err(Error::FileTooBig);
            }
            extent_remove::split_at(tx, &mut inode, a)?;
            extent_remove::shift(tx, &mut inode, a, d as i64)?;
            inode.size += len;
        } else if m & ZERO_RANGE != 0 {
            self.zero_edges(tx, &inode, offset, end)?;
            let (a, b) = (offset.div_ceil(bs), end / bs);
            self.prealloc(tx, &mut inode, a, b, true)?;
            if m & KEEP_SIZE == 0 {
                inode.size = inode.size.max(end);
            }
        } else {
            self.prealloc(tx, &mut inode, offset / bs, end.div_ceil(bs), false)?;
            if m & KEEP_SIZE == 0 {
                inode.size = inode.size.max(end);
            }
        }
        let now = tx.now();
        inode.mtime = now;
        inode.ctime = now;
        kill_suid_on_write(&mut inode, tx.creds());
        tx.write_inode(&inode)
    }

    /// Zeroes the partial blocks at the edges of byte range `[from, to)`.
    fn zero_edges(&self, tx: &Tx, inode: &Inode, from: u64, to: u64) -> Result<()> {
        let bs = u64::from(self.block_size());
        if from >= to {
            return Ok(());
        }
        let head_end = (from / bs + 1) * bs;
        if from % bs != 0 || to < head_end {
            self.zero_in_block(tx, inode, from, to.min(head_end))?;
        }
        if to % bs != 0 && to / bs > from / bs {
            self.zero_in_block(tx, inode, to - to % bs, to)?;
        }
        Ok(())
    }

    /// Gives logical blocks `[a, b)` unwritten extents where they are holes;
    /// with `zero`, written extents there become unwritten too (their
    /// blocks stay). The space for every hole is checked first.
    fn prealloc(&self, tx: &mut Tx, inode: &mut Inode, a: u64, b: u64, zero: bool) -> Result<()> {
        let mut holes = 0u64;
        let mut cur = a;
        while cur < b {
            let (len, hole) = match blockmap::lookup(tx, inode, lblk(cur)?)? {
                Lookup::Hole { len } => (len, true),
                Lookup::Mapped { len, .. } => (len, false),
            };
            let n = len.min(b - cur);
            if hole {
                holes += n;
            }
            cur += n;
        }
        tx.check_space(holes, 0)?;
        let mut cur = a;
        while cur < b {
            let n = (b - cur).min(u64::from(MAX_LEN_UNINIT)) as u32;
            match blockmap::lookup(tx, inode, lblk(cur)?)? {
                Lookup::Mapped {
                    len, uninit: false, ..
                } if zero => {
                    let k = len.min(u64::from(n)) as u32;
                    extent_edit::set_written(tx, inode, cur, k, false)?;
                    cur += u64::from(k);
                }
                Lookup::Mapped { len, .. } => cur += len.min(u64::from(n)),
                Lookup::Hole { len } => {
                    let k = len.min(u64::from(n)) as u32;
                    let runs = blockmap::preallocate(tx, inode, lblk(cur)?, k)?;
                    let got: u64 = runs.iter().map(|r| u64::from(r.len)).sum();
                    if got < u64::from(k) {
                        return Err(Error::NoSpace(crate::error::Space::Blocks));
                    }
                    cur += got;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "fallocate_tests.rs"]
mod tests;
