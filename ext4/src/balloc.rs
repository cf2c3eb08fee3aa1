//! Block allocation (the kernel's balloc.c/mballoc.c): bitmaps, group
//! descriptor and superblock counters, goals.
//!
//! Not implemented yet: `alloc_blocks` answers [`Error::Unsupported`]
//! while the allocator is being built; the API is the one that stays.

use crate::error::{Error, Result};
use crate::inode::{Inode, S_IFMT, S_IFREG};
use crate::num::{GroupNo, InodeNo, Pblk};
use crate::superblock::incompat;
use crate::tx::{AllocKind, Tx};

impl Tx<'_> {
    /// Allocates a contiguous run of 1..=`len` blocks near `goal` for
    /// inode `owner` (see `TxBlocks::alloc_blocks`).
    pub fn alloc_blocks(
        &mut self,
        goal: Pblk,
        len: u32,
        owner: InodeNo,
        kind: AllocKind,
    ) -> Result<(Pblk, u32)> {
        let _ = (goal, len, owner, kind);
        Err(Error::Unsupported(
            "block allocation (allocator not built yet)".into(),
        ))
    }

    /// Frees `len` blocks from `start` (see `TxBlocks::free_blocks`).
    pub fn free_blocks(&mut self, start: Pblk, len: u64, kind: AllocKind) -> Result<()> {
        let _ = (start, len, kind);
        Err(Error::Unsupported(
            "freeing blocks (allocator not built yet)".into(),
        ))
    }

    /// The default goal for `inode`'s first blocks, as the kernel's
    /// `ext4_inode_to_goal_block`: the first block of the inode's group;
    /// with flex_bg groups of 4 or more, of its flex group, plus one group
    /// for regular files (directories stay next to the metadata).
    pub fn inode_goal(&self, inode: &Inode) -> Pblk {
        let sb = self.sb();
        let mut g = inode.ino.0.saturating_sub(1) / sb.inodes_per_group.max(1);
        let flex = if sb.has_incompat(incompat::FLEX_BG) {
            1u32.checked_shl(u32::from(sb.log_groups_per_flex))
                .unwrap_or(1)
        } else {
            1
        };
        if flex >= FLEX_SIZE_DIR_ALLOC_SCHEME {
            g &= !(flex - 1);
            if inode.mode & S_IFMT == S_IFREG {
                g += 1;
            }
        }
        let g = g.min(sb.group_count.saturating_sub(1));
        sb.group_first_block(GroupNo(g))
    }
}

/// Flex group size from which the kernel puts directories and files in
/// different groups of the flex group (`EXT4_FLEX_SIZE_DIR_ALLOC_SCHEME`).
const FLEX_SIZE_DIR_ALLOC_SCHEME: u32 = 4;
