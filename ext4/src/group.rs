//! Block group descriptors: where each group's bitmaps and inode table
//! live, its free counts, flags and checksums.
//!
//! Parsing ([`GroupDesc::parse`]) is pure. [`gdt_location`] computes where
//! group `g`'s descriptor block lies, with or without meta_bg.
//! [`GroupDesc::check`] verifies the descriptor's checksum (crc16 for
//! gdt_csum, the low 16 bits of crc32c for metadata_csum) and that its
//! bitmaps and inode table lie inside the filesystem.

use super::bytes::{le16, le32, put_le16, put_le32};
use super::csum::{crc16, crc32c};
use super::error::{Error, Result};
use super::num::{GroupNo, Pblk};
use super::superblock::Superblock;

// Descriptor field offsets (32-byte part, then the 64bit extension).
const BG_BLOCK_BITMAP_LO: usize = 0x0;
const BG_INODE_BITMAP_LO: usize = 0x4;
const BG_INODE_TABLE_LO: usize = 0x8;
const BG_FREE_BLOCKS_COUNT_LO: usize = 0xC;
const BG_FREE_INODES_COUNT_LO: usize = 0xE;
const BG_USED_DIRS_COUNT_LO: usize = 0x10;
const BG_FLAGS: usize = 0x12;
const BG_BLOCK_BITMAP_CSUM_LO: usize = 0x18;
const BG_INODE_BITMAP_CSUM_LO: usize = 0x1A;
const BG_ITABLE_UNUSED_LO: usize = 0x1C;
/// Offset of `bg_checksum`.
pub const BG_CHECKSUM: usize = 0x1E;
const BG_BLOCK_BITMAP_HI: usize = 0x20;
const BG_INODE_BITMAP_HI: usize = 0x24;
const BG_INODE_TABLE_HI: usize = 0x28;
const BG_FREE_BLOCKS_COUNT_HI: usize = 0x2C;
const BG_FREE_INODES_COUNT_HI: usize = 0x2E;
const BG_USED_DIRS_COUNT_HI: usize = 0x30;
const BG_ITABLE_UNUSED_HI: usize = 0x32;
const BG_BLOCK_BITMAP_CSUM_HI: usize = 0x38;
const BG_INODE_BITMAP_CSUM_HI: usize = 0x3A;
/// Descriptor sizes from which the high halves of the bitmap checksums exist.
const BLOCK_BITMAP_CSUM_HI_END: usize = BG_BLOCK_BITMAP_CSUM_HI + 2;
const INODE_BITMAP_CSUM_HI_END: usize = BG_INODE_BITMAP_CSUM_HI + 2;
/// Size of the 64bit descriptor fields the engine reads.
const DESC_64_END: usize = 0x40;

/// `bg_flags`: the inode table and bitmap are not initialized.
pub const BG_INODE_UNINIT: u16 = 0x1;
/// `bg_flags`: the block bitmap is not initialized.
pub const BG_BLOCK_UNINIT: u16 = 0x2;
/// `bg_flags`: the inode table is zeroed.
pub const BG_INODE_ZEROED: u16 = 0x4;

/// One parsed group descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    /// Group number.
    pub group: GroupNo,
    /// Block bitmap location.
    pub block_bitmap: Pblk,
    /// Inode bitmap location.
    pub inode_bitmap: Pblk,
    /// First block of the inode table.
    pub inode_table: Pblk,
    /// Free blocks (clusters with bigalloc).
    pub free_blocks: u32,
    /// Free inodes.
    pub free_inodes: u32,
    /// Directories.
    pub used_dirs: u32,
    /// BG_* flags.
    pub flags: u16,
    /// Unused inodes at the end of the table (meaningful with group checksums).
    pub itable_unused: u32,
    /// Block bitmap checksum (hi half only when the descriptor has it).
    pub block_bitmap_csum: u32,
    /// Inode bitmap checksum.
    pub inode_bitmap_csum: u32,
    /// Stored descriptor checksum.
    pub checksum: u16,
    /// Whether the descriptor's checksum matched (false: its inodes and
    /// bitmaps are refused with [`Error::Checksum`], the rest of the fs stays readable).
    pub csum_ok: bool,
}

impl GroupDesc {
    /// Parses descriptor `group` from its `desc_size` raw bytes. Does not verify.
    pub fn parse(sb: &Superblock, group: GroupNo, raw: &[u8]) -> Result<GroupDesc> {
        let ds = usize::from(sb.desc_size);
        let raw = raw
            .get(..ds)
            .ok_or_else(|| Error::corrupt(format!("group descriptor {group}"), "truncated"))?;
        let wide = sb.is_64bit() && ds >= DESC_64_END;
        let hi32 = |off: usize| -> u64 {
            if wide {
                u64::from(le32(raw, off)) << 32
            } else {
                0
            }
        };
        let hi16 = |off: usize| -> u32 {
            if wide {
                u32::from(le16(raw, off)) << 16
            } else {
                0
            }
        };
        let csum_hi = |off: usize, end: usize| -> u32 {
            if sb.is_64bit() && ds >= end {
                u32::from(le16(raw, off)) << 16
            } else {
                0
            }
        };
        Ok(GroupDesc {
            group,
            block_bitmap: Pblk(u64::from(le32(raw, BG_BLOCK_BITMAP_LO)) | hi32(BG_BLOCK_BITMAP_HI)),
            inode_bitmap: Pblk(u64::from(le32(raw, BG_INODE_BITMAP_LO)) | hi32(BG_INODE_BITMAP_HI)),
            inode_table: Pblk(u64::from(le32(raw, BG_INODE_TABLE_LO)) | hi32(BG_INODE_TABLE_HI)),
            free_blocks: u32::from(le16(raw, BG_FREE_BLOCKS_COUNT_LO))
                | hi16(BG_FREE_BLOCKS_COUNT_HI),
            free_inodes: u32::from(le16(raw, BG_FREE_INODES_COUNT_LO))
                | hi16(BG_FREE_INODES_COUNT_HI),
            used_dirs: u32::from(le16(raw, BG_USED_DIRS_COUNT_LO)) | hi16(BG_USED_DIRS_COUNT_HI),
            flags: le16(raw, BG_FLAGS),
            itable_unused: u32::from(le16(raw, BG_ITABLE_UNUSED_LO)) | hi16(BG_ITABLE_UNUSED_HI),
            block_bitmap_csum: u32::from(le16(raw, BG_BLOCK_BITMAP_CSUM_LO))
                | csum_hi(BG_BLOCK_BITMAP_CSUM_HI, BLOCK_BITMAP_CSUM_HI_END),
            inode_bitmap_csum: u32::from(le16(raw, BG_INODE_BITMAP_CSUM_LO))
                | csum_hi(BG_INODE_BITMAP_CSUM_HI, INODE_BITMAP_CSUM_HI_END),
            checksum: le16(raw, BG_CHECKSUM),
            csum_ok: true,
        })
    }

    /// The checksum the descriptor should carry, or `None` when the
    /// filesystem has no group checksums.
    pub fn compute_checksum(sb: &Superblock, group: GroupNo, raw: &[u8]) -> Option<u16> {
        let ds = usize::from(sb.desc_size).min(raw.len());
        let raw = raw.get(..ds)?;
        let le_group = group.0.to_le_bytes();
        let after = raw.get(BG_CHECKSUM + 2..).unwrap_or(&[]);
        let before = raw.get(..BG_CHECKSUM).unwrap_or(raw);
        if sb.metadata_csum() {
            let mut c = crc32c(sb.csum_seed, &le_group);
            c = crc32c(c, before);
            c = crc32c(c, &[0, 0]);
            c = crc32c(c, after);
            // Truncation to the low half is the format.
            Some((c & 0xFFFF) as u16)
        } else if sb.gdt_csum() {
            let mut c = crc16(!0, &sb.uuid);
            c = crc16(c, &le_group);
            c = crc16(c, before);
            if sb.is_64bit() {
                c = crc16(c, after);
            }
            Some(c)
        } else {
            None
        }
    }

    /// Verifies the descriptor: location of its metadata inside the
    /// filesystem (an error: nothing in the group could be found), then its
    /// checksum (recorded in `csum_ok`).
    pub fn check(&mut self, sb: &Superblock, raw: &[u8]) -> Result<()> {
        let what = || format!("group descriptor {}", self.group);
        let flex = sb.has_incompat(super::superblock::incompat::FLEX_BG);
        let first = sb.group_first_block(self.group).0;
        let last = first
            .saturating_add(u64::from(sb.blocks_per_group))
            .min(sb.blocks_count);
        // Without flex_bg a group's metadata lives in the group itself.
        let inside = |b: Pblk, len: u64| -> bool {
            if flex {
                sb.range_in_fs(b, len)
            } else {
                b.0 >= first && b.0.checked_add(len).is_some_and(|e| e <= last)
            }
        };
        if !inside(self.block_bitmap, 1) {
            return Err(Error::corrupt(
                what(),
                format!("block bitmap {} outside the filesystem", self.block_bitmap),
            ));
        }
        if !inside(self.inode_bitmap, 1) {
            return Err(Error::corrupt(
                what(),
                format!("inode bitmap {} outside the filesystem", self.inode_bitmap),
            ));
        }
        if !inside(self.inode_table, u64::from(sb.itable_blocks_per_group)) {
            return Err(Error::corrupt(
                what(),
                format!("inode table {} outside the filesystem", self.inode_table),
            ));
        }
        if self.free_inodes > sb.inodes_per_group || self.itable_unused > sb.inodes_per_group {
            return Err(Error::corrupt(
                what(),
                "free or unused inode count exceeds the group",
            ));
        }
        if let Some(want) = Self::compute_checksum(sb, self.group, raw) {
            self.csum_ok = want == self.checksum;
        }
        Ok(())
    }

    /// Whether the inode table of this group is not initialized (group checksums on).
    pub fn inode_uninit(&self, sb: &Superblock) -> bool {
        sb.has_group_csum() && self.flags & BG_INODE_UNINIT != 0
    }

    /// Whether the block bitmap of this group is not initialized.
    pub fn block_uninit(&self, sb: &Superblock) -> bool {
        sb.has_group_csum() && self.flags & BG_BLOCK_UNINIT != 0
    }

    /// Encodes the descriptor into `raw` (its `desc_size` bytes inside a
    /// descriptor block; bytes the engine does not model are kept) and sets
    /// its checksum: the inverse of [`GroupDesc::parse`]. High halves are
    /// written only where the descriptor has them; a value that does not
    /// fit a 32-byte descriptor is an error, nothing written.
    pub fn encode(&self, sb: &Superblock, raw: &mut [u8]) -> Result<()> {
        let ds = usize::from(sb.desc_size);
        let wide = sb.is_64bit() && ds >= DESC_64_END;
        let what = || format!("group descriptor {}", self.group);
        let narrow16 = |v: u32| v > u32::from(u16::MAX);
        let narrow32 = |v: u64| v > u64::from(u32::MAX);
        if !wide
            && (narrow32(self.block_bitmap.0)
                || narrow32(self.inode_bitmap.0)
                || narrow32(self.inode_table.0)
                || narrow16(self.free_blocks)
                || narrow16(self.free_inodes)
                || narrow16(self.used_dirs)
                || narrow16(self.itable_unused))
        {
            return Err(Error::Internal(format!(
                "{}: a value exceeds a 32-byte descriptor",
                what()
            )));
        }
        let raw = raw
            .get_mut(..ds)
            .ok_or_else(|| Error::Internal(format!("{}: buffer too short", what())))?;
        let (bb, ib) = bitmap_csum_full(sb);
        let lo16 = |v: u32| (v & 0xFFFF) as u16;
        let put = |raw: &mut [u8]| -> Option<()> {
            put_le32(raw, BG_BLOCK_BITMAP_LO, self.block_bitmap.0 as u32)?;
            put_le32(raw, BG_INODE_BITMAP_LO, self.inode_bitmap.0 as u32)?;
            put_le32(raw, BG_INODE_TABLE_LO, self.inode_table.0 as u32)?;
            put_le16(raw, BG_FREE_BLOCKS_COUNT_LO, lo16(self.free_blocks))?;
            put_le16(raw, BG_FREE_INODES_COUNT_LO, lo16(self.free_inodes))?;
            put_le16(raw, BG_USED_DIRS_COUNT_LO, lo16(self.used_dirs))?;
            put_le16(raw, BG_FLAGS, self.flags)?;
            put_le16(raw, BG_BLOCK_BITMAP_CSUM_LO, lo16(self.block_bitmap_csum))?;
            put_le16(raw, BG_INODE_BITMAP_CSUM_LO, lo16(self.inode_bitmap_csum))?;
            put_le16(raw, BG_ITABLE_UNUSED_LO, lo16(self.itable_unused))?;
            if wide {
                put_le32(raw, BG_BLOCK_BITMAP_HI, (self.block_bitmap.0 >> 32) as u32)?;
                put_le32(raw, BG_INODE_BITMAP_HI, (self.inode_bitmap.0 >> 32) as u32)?;
                put_le32(raw, BG_INODE_TABLE_HI, (self.inode_table.0 >> 32) as u32)?;
                put_le16(
                    raw,
                    BG_FREE_BLOCKS_COUNT_HI,
                    (self.free_blocks >> 16) as u16,
                )?;
                put_le16(
                    raw,
                    BG_FREE_INODES_COUNT_HI,
                    (self.free_inodes >> 16) as u16,
                )?;
                put_le16(raw, BG_USED_DIRS_COUNT_HI, (self.used_dirs >> 16) as u16)?;
                put_le16(raw, BG_ITABLE_UNUSED_HI, (self.itable_unused >> 16) as u16)?;
            }
            if bb {
                put_le16(
                    raw,
                    BG_BLOCK_BITMAP_CSUM_HI,
                    (self.block_bitmap_csum >> 16) as u16,
                )?;
            }
            if ib {
                put_le16(
                    raw,
                    BG_INODE_BITMAP_CSUM_HI,
                    (self.inode_bitmap_csum >> 16) as u16,
                )?;
            }
            match Self::compute_checksum(sb, self.group, raw) {
                Some(c) => put_le16(raw, BG_CHECKSUM, c),
                None => Some(()),
            }
        };
        put(raw).ok_or_else(|| Error::Internal(format!("{}: field past the buffer", what())))
    }
}

/// Block holding the descriptor of group `group`, and the byte offset of the
/// descriptor inside it.
pub fn gdt_location(sb: &Superblock, group: GroupNo) -> Result<(Pblk, usize)> {
    let dpb = sb.descs_per_block();
    let index = group.0 / dpb;
    let offset = (group.0 % dpb) as usize * usize::from(sb.desc_size);
    let meta = sb.has_incompat(super::superblock::incompat::META_BG);
    let blk = if !meta || index < sb.first_meta_bg {
        // The classic GDT follows the superblock's block (block 1 with
        // 1 KiB blocks even when bigalloc makes the first data block 0).
        sb.superblock_block().saturating_add(1 + u64::from(index))
    } else {
        // meta_bg: each meta group (dpb groups) keeps its descriptor block
        // in its first group, right after a superblock backup if it has one.
        let first_group = index
            .checked_mul(dpb)
            .ok_or_else(|| Error::corrupt("superblock", "meta_bg group overflow"))?;
        let mut has_super = u64::from(sb.group_has_super(GroupNo(first_group)));
        if sb.block_size == 1024 && first_group == 0 && sb.first_data_block == 0 {
            has_super += 1;
        }
        sb.group_first_block(GroupNo(first_group))
            .saturating_add(has_super)
    };
    if !sb.block_in_fs(blk) {
        return Err(Error::corrupt(
            format!("group descriptor {group}"),
            format!("descriptor block {blk} outside the filesystem"),
        ));
    }
    Ok((blk, offset))
}

/// Whether descriptors of this size carry the high halves of the bitmap checksums.
pub fn bitmap_csum_full(sb: &Superblock) -> (bool, bool) {
    let ds = usize::from(sb.desc_size);
    (
        sb.is_64bit() && ds >= BLOCK_BITMAP_CSUM_HI_END,
        sb.is_64bit() && ds >= INODE_BITMAP_CSUM_HI_END,
    )
}
