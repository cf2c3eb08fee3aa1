//! Inode allocation (the kernel's ialloc.c): inode bitmaps, descriptor
//! counts, INODE_UNINIT and `itable_unused`, Orlov spreading.
//!
//! Not implemented yet: answers [`Error::Unsupported`] while the
//! allocator is being built; the API is the one that stays.

use crate::error::{Error, Result};
use crate::num::InodeNo;
use crate::tx::Tx;

impl Tx<'_> {
    /// Allocates an inode for a new file of `mode` in `parent` (see
    /// `TxBlocks::alloc_inode`).
    pub fn alloc_inode(&mut self, parent: InodeNo, mode: u16) -> Result<InodeNo> {
        let _ = (parent, mode);
        Err(Error::Unsupported(
            "inode allocation (allocator not built yet)".into(),
        ))
    }

    /// Frees inode `ino` (see `TxBlocks::free_inode`).
    pub fn free_inode(&mut self, ino: InodeNo, mode: u16) -> Result<()> {
        let _ = (ino, mode);
        Err(Error::Unsupported(
            "freeing inodes (allocator not built yet)".into(),
        ))
    }
}
