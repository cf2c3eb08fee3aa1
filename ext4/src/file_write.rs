//! File data writes and truncate (the kernel's file.c write path,
//! `ext4_setattr`'s size change and `ext4_truncate`): `Fs::write` and
//! `Fs::truncate`.
//!
//! Order inside one operation (data=ordered): take the inode lock, begin
//! the transaction, map or allocate every block the write touches
//! (`blockmap::map_alloc`; uninitialized extents converted), write the
//! data straight to the device (`Fs::write_data`), then write the inode
//! and commit. A crash before the commit leaves the old metadata, which
//! never points at the new blocks; the old data of blocks overwritten in
//! place is replaced, as the kernel replaces it.
//!
//! Invariants:
//! - no byte past `i_size` is ever readable as stale data: a block mapped
//!   fresh is written whole (zeros around the bytes written), and the
//!   tail of the old last block is zeroed before the size grows over it
//!   (by a write past the end or a truncate up), as the kernel's
//!   `ext4_block_truncate_page` does at truncate down;
//! - a write either maps all the blocks it writes or stops short where
//!   space ran out (a short write, as the kernel's), and fails with
//!   `NoSpace` leaving the file as it was when it could map nothing;
//! - nothing past the format's size limit (`EFBIG`; a write crossing it
//!   is cut there, as `generic_write_check_limits` cuts it).

use crate::attr_write::kill_suid_on_write;
use crate::blockmap::{self, Run};
use crate::error::{Error, Result};
use crate::extent_edit;
use crate::flags::{check_may_modify, handle_inode, Change};
use crate::fs::Fs;
use crate::inode::{flags, Inode};
use crate::mount::ErrorAt;
use crate::num::{InodeNo, Lblk, Pblk};
use crate::tx::{Creds, Tx};
use crate::types::FileKind;

impl Fs {
    /// Writes `data` into regular file `ino` at `offset` (at the end of the
    /// file when `append`, as `O_APPEND`). Returns the bytes written (fewer
    /// than asked when space ran out or the size limit was reached) and the
    /// file's new size. Sets mtime and ctime, and clears set-user-id (and
    /// set-group-id with group execute) when the caller is not root, as
    /// the kernel's `file_remove_privs`.
    ///
    /// Errors: `IsDirectory`, `Invalid` (not a regular file), `FileTooBig`
    /// (offset at or past the limit), `NoSpace` (no block could be had:
    /// nothing changed), `Unsupported` (inline-data files, for now).
    pub fn write(
        &self,
        creds: Creds,
        ino: InodeNo,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> Result<(usize, u64)> {
        let _lock = self.inode_locks().write(ino);
        self.write_locked(creds, ino, offset, data, append)
    }

    /// [`Fs::write`] for a caller that holds `ino`'s inode lock.
    pub(crate) fn write_locked(
        &self,
        creds: Creds,
        ino: InodeNo,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> Result<(usize, u64)> {
        let mut tx = self.begin(creds)?;
        match self.write_in(&mut tx, ino, offset, data, append) {
            Ok(done) => {
                tx.commit()?;
                Ok(done)
            }
            Err(e) => {
                drop(tx);
                self.fail(&e, at("write", ino));
                Err(e)
            }
        }
    }

    fn write_in(
        &self,
        tx: &mut Tx,
        ino: InodeNo,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> Result<(usize, u64)> {
        let mut inode = handle_inode(tx, ino)?;
        check_regular(&inode)?;
        let offset = if append { inode.size } else { offset };
        check_may_modify(
            &inode,
            Change::Write {
                offset,
                size: inode.size,
            },
        )?;
        let max = self
            .sb()
            .limits()
            .max_file_bytes(inode.has_flag(flags::EXTENTS));
        if offset >= max && !data.is_empty() {
            return Err(Error::FileTooBig);
        }
        let len = (data.len() as u64).min(max.saturating_sub(offset)) as usize;
        if len == 0 {
            return Ok((0, inode.size));
        }
        let bs = u64::from(self.block_size());
        let end = offset + len as u64;
        if offset > inode.size {
            self.zero_tail(tx, &inode)?;
        }
        let first = offset / bs;
        let nblocks = (end.div_ceil(bs) - first) as u32;
        let runs = blockmap::map_alloc(tx, &mut inode, lblk(first)?, nblocks)?;
        // The blocks mapped may stop short (space ran out): the write does too.
        let mapped_end = runs
            .last()
            .map_or(first, |r| r.lblk.as_u64() + u64::from(r.len));
        let end = end.min(mapped_end * bs);
        for run in &runs {
            if run.uninit {
                extent_edit::set_written(tx, &mut inode, run.lblk.as_u64(), run.len, true)?;
            }
            self.write_run(run, offset, &data[..(end - offset) as usize])?;
        }
        let written = (end - offset) as usize;
        inode.size = inode.size.max(end);
        let now = tx.now();
        inode.mtime = now;
        inode.ctime = now;
        kill_suid_on_write(&mut inode, tx.creds());
        tx.write_inode(&inode)?;
        Ok((written, inode.size))
    }

    /// Writes the part of `data` (which starts at byte `offset` of the
    /// file) that falls in `run`; the run's blocks outside it keep their
    /// bytes when they had some (read first) and get zeros when fresh or
    /// uninitialized.
    fn write_run(&self, run: &Run, offset: u64, data: &[u8]) -> Result<()> {
        let bs = u64::from(self.block_size());
        let run_start = run.lblk.as_u64() * bs;
        let run_end = run_start + u64::from(run.len) * bs;
        let from = offset.max(run_start);
        let to = (offset + data.len() as u64).min(run_end);
        if from >= to {
            return Ok(());
        }
        // Whole blocks covered by the data are written from it directly;
        // a partial block at either end goes through a block buffer.
        let head_blk = from / bs;
        let tail_blk = (to - 1) / bs;
        let keep_old = !run.fresh && !run.uninit;
        let pblk_of = |l: u64| Pblk(run.pblk.0 + (l - run.lblk.as_u64()));
        let partial = |this: &Fs, l: u64| -> Result<()> {
            let mut buf = vec![0u8; bs as usize];
            if keep_old {
                this.dev().read_blocks(pblk_of(l).0, &mut buf)?;
            }
            let b0 = l * bs;
            let s = from.max(b0);
            let e = to.min(b0 + bs);
            buf[(s - b0) as usize..(e - b0) as usize]
                .copy_from_slice(&data[(s - offset) as usize..(e - offset) as usize]);
            this.write_data(pblk_of(l), &buf)
        };
        let mut full_from = head_blk;
        if from % bs != 0 || to < (head_blk + 1) * bs {
            partial(self, head_blk)?;
            full_from = head_blk + 1;
        }
        let mut full_to = tail_blk + 1;
        if to % bs != 0 && tail_blk >= full_from {
            partial(self, tail_blk)?;
            full_to = tail_blk;
        }
        if full_from < full_to {
            let s = (full_from * bs - offset) as usize;
            let e = (full_to * bs - offset) as usize;
            self.write_data(pblk_of(full_from), &data[s..e])?;
        }
        Ok(())
    }

    /// Zeroes the old last block past `i_size` (when mapped and written),
    /// before the size grows over it.
    fn zero_tail(&self, tx: &Tx, inode: &Inode) -> Result<()> {
        let bs = u64::from(self.block_size());
        let end = inode.size.div_ceil(bs) * bs;
        self.zero_in_block(tx, inode, inode.size, end)
    }

    /// Zeroes bytes `[from, to)` of the file on the device, all inside one
    /// block, when that block is mapped and written (holes and unwritten
    /// extents read as zeros already).
    pub(crate) fn zero_in_block(&self, tx: &Tx, inode: &Inode, from: u64, to: u64) -> Result<()> {
        let bs = u64::from(self.block_size());
        if from >= to {
            return Ok(());
        }
        let l = from / bs;
        if (to - 1) / bs != l {
            return Err(Error::Internal(format!(
                "zeroing {from}..{to} spans blocks"
            )));
        }
        if let blockmap::Lookup::Mapped {
            pblk,
            uninit: false,
            ..
        } = blockmap::lookup(tx, inode, lblk(l)?)?
        {
            if let Some(z) = self.zones().find(pblk, 1) {
                return Err(Error::corrupt(
                    format!("block map of inode {}", inode.ino),
                    format!("block {pblk} in the system zone ({:?})", z.kind),
                ));
            }
            let mut buf = vec![0u8; bs as usize];
            self.dev().read_blocks(pblk.0, &mut buf)?;
            buf[(from - l * bs) as usize..(to - l * bs) as usize].fill(0);
            self.write_data(pblk, &buf)?;
        }
        Ok(())
    }

    /// Sets regular file `ino`'s size to `size`: blocks past it freed, the
    /// rest of the new last block zeroed (down), the old last block's tail
    /// zeroed (up: the file grows by a hole). mtime and ctime change when
    /// the size does (as `ext4_setattr`); set-user-id and set-group-id are
    /// cleared for non-root callers, as `do_truncate` does.
    pub fn truncate(&self, creds: Creds, ino: InodeNo, size: u64) -> Result<()> {
        let _lock = self.inode_locks().write(ino);
        let mut tx = self.begin(creds)?;
        match self.truncate_in(&mut tx, ino, size) {
            Ok(()) => tx.commit(),
            Err(e) => {
                drop(tx);
                self.fail(&e, at("truncate", ino));
                Err(e)
            }
        }
    }

    /// [`Fs::truncate`] inside a transaction the caller holds (setattr
    /// composes it with its other changes); the inode is written.
    pub fn truncate_in(&self, tx: &mut Tx, ino: InodeNo, size: u64) -> Result<()> {
        let mut inode = handle_inode(tx, ino)?;
        check_regular(&inode)?;
        check_may_modify(&inode, Change::Truncate)?;
        let max = self
            .sb()
            .limits()
            .max_file_bytes(inode.has_flag(flags::EXTENTS));
        if size > max {
            return Err(Error::FileTooBig);
        }
        let bs = u64::from(self.block_size());
        if size < inode.size {
            let mut cut = inode.clone();
            cut.size = size;
            self.zero_tail(tx, &cut)?;
        } else if size > inode.size {
            self.zero_tail(tx, &inode)?;
        }
        // As ext4_setattr: blocks past the size go when it shrinks or stays
        // (preallocated blocks past the end), not when it grows.
        if size <= inode.size {
            blockmap::free_from(tx, &mut inode, size.div_ceil(bs))?;
        }
        if size != inode.size {
            let now = tx.now();
            inode.mtime = now;
            inode.ctime = now;
            inode.size = size;
        }
        kill_suid_on_write(&mut inode, tx.creds());
        tx.write_inode(&inode)
    }
}

/// The operation and inode for an error record.
pub(crate) fn at(func: &'static str, ino: InodeNo) -> ErrorAt {
    ErrorAt {
        ino,
        ..ErrorAt::func(func)
    }
}

pub(crate) fn lblk(l: u64) -> Result<Lblk> {
    u32::try_from(l).map(Lblk).map_err(|_| Error::FileTooBig)
}

/// Only regular files take data writes and truncates here.
pub(crate) fn check_regular(inode: &Inode) -> Result<()> {
    match inode.kind() {
        FileKind::File => {}
        FileKind::Dir => return Err(Error::IsDirectory),
        _ => {
            return Err(Error::Invalid(format!(
                "inode {} is not a regular file",
                inode.ino
            )))
        }
    }
    if inode.has_flag(flags::INLINE_DATA) {
        return Err(Error::Unsupported(format!(
            "writing inline-data file {} (not yet)",
            inode.ino
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "file_write_tests.rs"]
mod tests;
