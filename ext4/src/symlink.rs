//! Symbolic links: `Fs::read_link`.
//!
//! Three storages: *fast* symlinks keep the target in `i_block` (60 bytes,
//! the inode owns no data blocks: `i_blocks` is zero or just the xattr
//! block's share), *slow* symlinks keep it in data block 0, and inline_data
//! symlinks keep it in `i_block` + `system.data`.
//!
//! Invariants (as the kernel enforces them): a fast target is 1..=59 bytes
//! with no NUL inside; a slow target is shorter than the block and than
//! PATH_MAX and its block is not a hole; a slow target ends at its first
//! NUL, as readlink(2) reports it.

use super::error::{Error, Result};
use super::fs::Fs;
use super::inode::flags as iflags;
use super::num::{InodeNo, Lblk};
use super::types::FileKind;

pub use super::limits::PATH_MAX;

impl Fs {
    /// The target of symlink `ino`.
    pub fn read_link(&self, ino: InodeNo) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        if inode.kind() != FileKind::Symlink {
            return Err(Error::NotSymlink);
        }
        let what = || format!("symlink {ino}");
        if inode.size == 0 || inode.size >= PATH_MAX {
            return Err(Error::corrupt(
                what(),
                format!("target length {}", inode.size),
            ));
        }
        let size = inode.size as usize;
        if inode.has_flag(iflags::INLINE_DATA) {
            let mut buf = vec![0u8; size];
            let n = self.read_inline(&inode, 0, &mut buf)?;
            buf.truncate(n);
            return Ok(buf);
        }
        let sb = self.sb();
        let limits = sb.limits();
        if inode.is_fast_symlink(sb) {
            // Fast symlink: the target is in i_block.
            if inode.size > limits.max_symlink_len(true) {
                return Err(Error::corrupt(what(), "fast symlink longer than i_block"));
            }
            let target = inode
                .i_block()
                .get(..size)
                .ok_or_else(|| Error::corrupt(what(), "inode too small"))?;
            if target.contains(&0) {
                return Err(Error::corrupt(what(), "NUL inside a fast symlink"));
            }
            return Ok(target.to_vec());
        }
        if inode.size > limits.max_symlink_len(false) {
            return Err(Error::corrupt(what(), "target longer than a block"));
        }
        if self.map_block(&inode, Lblk(0))?.is_none() {
            return Err(Error::corrupt(what(), "target block is a hole"));
        }
        let mut block = vec![0u8; sb.block_size as usize];
        self.read_file_block(&inode, Lblk(0), &mut block)?;
        block.truncate(size);
        if let Some(nul) = block.iter().position(|&b| b == 0) {
            block.truncate(nul);
        }
        Ok(block)
    }
}
