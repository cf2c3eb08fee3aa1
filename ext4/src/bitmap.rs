//! Block and inode bitmaps: what the kernel keeps in balloc.c and
//! ialloc.c. Today their checksums (metadata_csum) are verified; the
//! allocators will live here.
//!
//! Invariants: a bitmap of a group whose descriptor failed its checksum is
//! never trusted (`Error::Checksum`); an uninitialized bitmap
//! (`BLOCK_UNINIT`/`INODE_UNINIT`) is not read at all; the checksum covers
//! exactly the bitmap's bits (`clusters_per_group` or `inodes_per_group`
//! bits), not the whole block.

use super::csum::crc32c;
use super::error::{Error, Result};
use super::fs::Fs;
use super::group;
use super::num::GroupNo;
use super::superblock::Superblock;

/// Number of blocks the bitmap of `bits` bits occupies, as bytes.
pub fn bitmap_bytes(bits: u32) -> usize {
    (bits / 8) as usize
}

/// Checksum of a bitmap (`bytes` bytes of `data`), as stored (truncated to
/// 16 bits when the descriptor has no high half).
pub fn bitmap_checksum(sb: &Superblock, data: &[u8], bytes: usize, full: bool) -> u32 {
    let c = crc32c(sb.csum_seed, data.get(..bytes).unwrap_or(data));
    if full {
        c
    } else {
        c & 0xFFFF
    }
}

impl Fs {
    /// Reads group `g`'s block and inode bitmaps and verifies their
    /// checksums (metadata_csum). Uninitialized bitmaps are skipped.
    pub fn verify_bitmaps(&self, g: GroupNo) -> Result<()> {
        let sb = self.sb();
        let gd = self.group(g)?;
        if !gd.csum_ok {
            return Err(Error::checksum(format!("group descriptor {g}")));
        }
        if !sb.metadata_csum() {
            return Ok(());
        }
        let (block_full, inode_full) = group::bitmap_csum_full(sb);
        if !gd.block_uninit(sb) {
            let data = self.meta_block(gd.block_bitmap)?;
            let c = bitmap_checksum(sb, &data, bitmap_bytes(sb.clusters_per_group), block_full);
            if c != gd.block_bitmap_csum {
                return Err(Error::checksum(format!("block bitmap of group {g}")));
            }
        }
        if !gd.inode_uninit(sb) {
            let data = self.meta_block(gd.inode_bitmap)?;
            let c = bitmap_checksum(sb, &data, bitmap_bytes(sb.inodes_per_group), inode_full);
            if c != gd.inode_bitmap_csum {
                return Err(Error::checksum(format!("inode bitmap of group {g}")));
            }
        }
        Ok(())
    }
}
