//! File data: the half of the kernel's inode.c that maps logical blocks
//! to physical ones (through extents or indirect maps) and reads file
//! contents (`Fs::read`, also for directories and slow symlinks).
//!
//! Invariants: every physical block a mapping returns lies inside the
//! filesystem (checked by `extent`/`indirect`); a read never returns bytes
//! past `i_size`; holes and uninitialized extents read as zeros; each pass
//! of the read loop consumes at least one byte, so a read is bounded by its
//! buffer.

use std::sync::Arc;

use super::error::{Error, Result};
use super::extent;
use super::fs::Fs;
use super::indirect;
use super::inode::{flags, Inode};
use super::num::{InodeNo, Lblk, Pblk};
use super::superblock::Superblock;
use super::types::Mapping;

/// Logical → physical mapping of one block of `inode` with the length of
/// the run, reading mapping blocks with `read`: `Fs::map_extent` reads the
/// committed state, a transaction passes its own view (`Tx::get`).
pub fn map_via(
    sb: &Superblock,
    inode: &Inode,
    lblk: Lblk,
    read: &dyn Fn(Pblk) -> Result<Arc<[u8]>>,
) -> Result<Mapping> {
    let what = format!("inode {}", inode.ino);
    if inode.has_flag(flags::INLINE_DATA) {
        return Err(Error::Invalid(format!("{what} keeps its data inline")));
    }
    if inode.has_flag(flags::EXTENTS) {
        extent::map(sb, inode.i_block(), inode.csum_seed, lblk, read, &what)
    } else {
        indirect::map(sb, inode.i_block(), lblk, read, &what)
    }
}

impl Fs {
    /// Logical → physical mapping of one block with the length of the run.
    pub fn map_extent(&self, inode: &Inode, lblk: Lblk) -> Result<Mapping> {
        map_via(self.sb(), inode, lblk, &|b: Pblk| self.meta_block(b))
    }

    /// Logical → physical; `None` for holes and uninitialized extents.
    pub fn map_block(&self, inode: &Inode, lblk: Lblk) -> Result<Option<Pblk>> {
        Ok(self.map_extent(inode, lblk)?.pblk)
    }

    /// One block of file data into `buf` (at most one block long), zeros for holes.
    pub fn read_file_block(&self, inode: &Inode, lblk: Lblk, buf: &mut [u8]) -> Result<()> {
        let bs = self.sb().block_size as usize;
        if buf.len() > bs {
            return Err(Error::Invalid(format!(
                "buffer of {} bytes > block",
                buf.len()
            )));
        }
        match self.map_block(inode, lblk)? {
            None => buf.fill(0),
            Some(p) if buf.len() == bs => self.dev().read_blocks(p.0, buf)?,
            Some(p) => {
                let mut tmp = vec![0u8; bs];
                self.dev().read_blocks(p.0, &mut tmp)?;
                let n = buf.len();
                buf.copy_from_slice(tmp.get(..n).unwrap_or(&[]));
            }
        }
        Ok(())
    }

    /// Reads file data of `ino` at `offset` into `buf`; returns the bytes
    /// read (0 at or after the end of the file).
    pub fn read(&self, ino: InodeNo, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let inode = self.inode(ino)?;
        self.read_inode_data(&inode, offset, buf)
    }

    /// [`Fs::read`] for an inode already in hand.
    pub fn read_inode_data(&self, inode: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if inode.has_flag(flags::ENCRYPT) {
            return Err(Error::Unsupported(format!(
                "inode {} is encrypted",
                inode.ino
            )));
        }
        if inode.has_flag(flags::INLINE_DATA) {
            return self.read_inline(inode, offset, buf);
        }
        if offset >= inode.size {
            return Ok(0);
        }
        let want = (inode.size - offset).min(buf.len() as u64) as usize;
        let buf = buf.get_mut(..want).unwrap_or(&mut []);
        if inode.is_fast_symlink(self.sb()) {
            let src = inode.i_block().get(offset as usize..).unwrap_or(&[]);
            let n = src.len().min(buf.len());
            buf.get_mut(..n)
                .unwrap_or(&mut [])
                .copy_from_slice(src.get(..n).unwrap_or(&[]));
            buf.get_mut(n..).unwrap_or(&mut []).fill(0);
            return Ok(want);
        }
        let bs = u64::from(self.sb().block_size);
        let mut done = 0usize;
        let mut tmp: Vec<u8> = Vec::new();
        // Each pass consumes at least one byte, and a mapping at least one
        // block, so the loop is bounded by the buffer size.
        while done < want {
            let pos = offset + done as u64;
            let in_blk = (pos % bs) as usize;
            // Past the 32-bit logical space nothing is mapped.
            let m = match Lblk::of_offset(pos, self.sb().log_block_size) {
                Some(lblk) => self.map_extent(inode, lblk)?,
                None => Mapping {
                    pblk: None,
                    len: (want - done) as u64,
                },
            };
            let run_bytes = m.len.saturating_mul(bs).saturating_sub(in_blk as u64);
            let n = run_bytes.min((want - done) as u64) as usize;
            let dst = buf.get_mut(done..done + n).unwrap_or(&mut []);
            match m.pblk {
                None => dst.fill(0),
                Some(p) => {
                    // Whole run in one device read, through a bounce buffer
                    // only when the range is not block-aligned.
                    let nblocks = (in_blk as u64 + n as u64).div_ceil(bs);
                    if in_blk == 0 && n as u64 == nblocks * bs {
                        self.dev().read_blocks(p.0, dst)?;
                    } else {
                        tmp.resize((nblocks * bs) as usize, 0);
                        self.dev().read_blocks(p.0, &mut tmp)?;
                        dst.copy_from_slice(tmp.get(in_blk..in_blk + n).unwrap_or(&[]));
                    }
                }
            }
            done += n;
        }
        Ok(want)
    }
}
