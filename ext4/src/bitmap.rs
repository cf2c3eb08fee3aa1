//! Block and inode bitmaps, the format side of what the kernel keeps in
//! balloc.c and ialloc.c: their checksums (metadata_csum), bit operations
//! over a bitmap block (bit `i` is the group's block or inode `i`, least
//! significant bit first), and the padding rule. The allocators that use
//! them are `balloc.rs` and `ialloc.rs`.
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

/// Whether bit `i` is set (bits past the buffer read as set: never free).
pub fn test_bit(b: &[u8], i: u32) -> bool {
    b.get((i / 8) as usize)
        .is_none_or(|&byte| byte & (1 << (i % 8)) != 0)
}

/// Sets (`on`) or clears bits `[start, start + n)`; bits past the buffer
/// are ignored (callers check ranges against the group first).
pub fn set_bits(b: &mut [u8], start: u32, n: u32, on: bool) {
    for i in start..start.saturating_add(n) {
        if let Some(byte) = b.get_mut((i / 8) as usize) {
            if on {
                *byte |= 1 << (i % 8);
            } else {
                *byte &= !(1 << (i % 8));
            }
        }
    }
}

/// The first bit in `[from, limit)` whose value is `value`, skipping whole
/// bytes that cannot hold one.
pub fn find_bit(b: &[u8], from: u32, limit: u32, value: bool) -> Option<u32> {
    let skip = if value { 0x00 } else { 0xFF };
    let mut i = from;
    while i < limit {
        if i % 8 == 0 && limit - i >= 8 {
            match b.get((i / 8) as usize) {
                Some(&byte) if byte == skip => {
                    i += 8;
                    continue;
                }
                None => return None,
                _ => {}
            }
        }
        if test_bit(b, i) == value {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Clear bits in `[0, limit)`.
pub fn count_clear(b: &[u8], limit: u32) -> u32 {
    let whole = (limit / 8) as usize;
    let mut n: u32 = b.iter().take(whole).map(|byte| byte.count_zeros()).sum();
    for i in (whole as u32 * 8)..limit {
        n += u32::from(!test_bit(b, i));
    }
    n
}

/// Whether every bit of `[start, start + n)` is set.
pub fn all_set(b: &[u8], start: u32, n: u32) -> bool {
    find_bit(b, start, start.saturating_add(n), false).is_none()
}

/// Sets the padding: every bit from `used` to the end of the block (the
/// kernel's `ext4_mark_bitmap_end`), so bits past the group's blocks or
/// inodes are never free.
pub fn mark_end(b: &mut [u8], used: u32) {
    let end = u32::try_from(b.len().saturating_mul(8)).unwrap_or(u32::MAX);
    if used < end {
        set_bits(b, used, end - used, true);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_operations() {
        let mut b = vec![0u8; 4];
        set_bits(&mut b, 3, 10, true); // bits 3..13
        assert_eq!(b, [0xF8, 0x1F, 0, 0]);
        assert!(all_set(&b, 3, 10));
        assert!(!all_set(&b, 2, 2));
        // (from, limit, value) -> found
        let cases: &[(u32, u32, bool, Option<u32>)] = &[
            (0, 32, true, Some(3)),
            (3, 32, false, Some(13)),
            (13, 32, true, None),
            (0, 3, true, None),
            (16, 40, false, Some(16)),
            (32, 40, false, None), // past the buffer: set, never free
        ];
        for &(from, limit, value, want) in cases {
            assert_eq!(
                find_bit(&b, from, limit, value),
                want,
                "{from}..{limit} {value}"
            );
        }
        assert_eq!(count_clear(&b, 32), 22);
        assert_eq!(count_clear(&b, 13), 3);
        set_bits(&mut b, 4, 2, false);
        assert_eq!(b[0], 0xC8);
        mark_end(&mut b, 20);
        assert_eq!(b[2..], [0xF0, 0xFF]);
        assert_eq!(count_clear(&b, 32), 12);
        assert!(test_bit(&b, 999));
    }
}
