//! The format's size and count limits, computed from the superblock the way
//! the kernel's ext4 computes them, so that a size field an image chose is
//! judged by the rule the kernel applies and never drives unbounded work.
//!
//! - [`extent_max_bytes`] is the kernel's `s_maxbytes` (`ext4_max_size`):
//!   32-bit logical block numbers less one block (so that the length of an
//!   extent ending at the limit still fits), and without `huge_file` the
//!   2^32 − 1 sectors `i_blocks` can count.
//! - [`indirect_max_bytes`] is `s_bitmap_maxbytes` (`ext4_max_bitmap_size`):
//!   what 12 direct, one single-, one double- and one triple-indirect
//!   pointer address, unless the data and mapping blocks together would
//!   pass what `i_blocks` can count (2^32 − 1 sectors, or 2^48 − 1 blocks
//!   with `huge_file`), in which case the largest file whose data plus
//!   mapping blocks fit.
//! - Both are capped at the host's `MAX_LFS_FILESIZE` (`i64::MAX`).
//!
//! Which one applies to an inode follows `ext4_get_maxbytes`: extent-mapped
//! inodes (`EXTENTS_FL`) get `s_maxbytes`, every other inode (block maps,
//! and inline data, which has no extent flag) `s_bitmap_maxbytes`. The
//! kernel refuses an inode whose size passes its limit when it reads the
//! inode (`__ext4_iget`, "bad i_size value"), and so does `Inode::parse`.
//!
//! Invariant: every function here is pure arithmetic on validated
//! superblock values (block size log in 10..=16), with no overflow.

use super::superblock::{incompat, ro_compat, Superblock};

/// Direct block pointers in `i_block` (`EXT4_NDIR_BLOCKS`).
pub const NDIR_BLOCKS: u64 = 12;
/// The largest file offset the host's VFS allows (`MAX_LFS_FILESIZE` on a
/// 64-bit kernel: `LLONG_MAX`).
pub const MAX_LFS_FILESIZE: u64 = i64::MAX as u64;
/// Most links an inode may have (`EXT4_LINK_MAX`); a directory with
/// `dir_nlink` stores 1 once it passes this. Nothing is bounded by it when
/// reading (a `u16` drives no walk); a write path must refuse a link past
/// it (EMLINK), as the kernel does.
pub const LINK_MAX: u32 = 65000;
/// Largest extended attribute value the format allows
/// (`EXT4_XATTR_SIZE_MAX`); values in a block or the inode are further
/// bounded by the area holding them.
pub const XATTR_SIZE_MAX: u32 = 1 << 24;
/// Longest path the VFS accepts, including the terminating NUL (`PATH_MAX`).
pub const PATH_MAX: u64 = 4096;
/// Bytes of `i_block`, where a fast symlink keeps its target and its NUL.
pub const I_BLOCK_BYTES: u64 = 60;
/// Largest size of a directory without `largedir`: the kernel reads only
/// `i_size_lo` for anything but a regular file (`ext4_isize`).
pub const MAX_DIR_BYTES_SMALL: u64 = u32::MAX as u64;

/// Bits of a 512-byte sector.
const SECTOR_BITS: u32 = 9;
/// Largest `i_blocks` without `huge_file`: 32 bits of 512-byte sectors.
const I_BLOCKS_32: u64 = (1 << 32) - 1;
/// Largest `i_blocks` with `huge_file`: 48 bits (in filesystem blocks when
/// the inode has `HUGE_FILE_FL`).
const I_BLOCKS_48: u64 = (1 << 48) - 1;
/// Logical blocks an extent can start at: 32-bit `ee_block`.
const EXTENT_LBLK_LIMIT: u64 = (1 << 32) - 1;

/// `s_maxbytes` for extent-mapped files with `2^log_block`-byte blocks.
pub fn extent_max_bytes(log_block: u32, huge_file: bool) -> u64 {
    let res = EXTENT_LBLK_LIMIT << log_block;
    let upper = if huge_file {
        MAX_LFS_FILESIZE
    } else {
        // Whole blocks that i_blocks (in sectors) can count.
        (I_BLOCKS_32 >> (log_block - SECTOR_BITS)) << log_block
    };
    res.min(upper).min(MAX_LFS_FILESIZE)
}

/// `s_bitmap_maxbytes` for block-mapped files with `2^log_block`-byte blocks.
pub fn indirect_max_bytes(log_block: u32, huge_file: bool) -> u64 {
    // Pointers per block, and the limit of i_blocks in filesystem blocks.
    let ppb: u64 = 1 << (log_block - 2);
    let upper = if huge_file {
        I_BLOCKS_48
    } else {
        I_BLOCKS_32 >> (log_block - SECTOR_BITS)
    };
    let addressable = NDIR_BLOCKS + ppb + ppb * ppb + ppb * ppb * ppb;
    // Mapping blocks of a dense file of that size: the single-indirect
    // block, the double-indirect block and its children, the
    // triple-indirect block, its children and grandchildren.
    let meta_full = 1 + (1 + ppb) + (1 + ppb + ppb * ppb);
    let blocks = if addressable + meta_full <= upper {
        addressable
    } else {
        // i_blocks is the limit: the largest dense file whose data and
        // mapping blocks together fit in `upper` blocks.
        let mut rest = upper - NDIR_BLOCKS - ppb;
        let mut meta = 1;
        if rest < ppb * ppb {
            meta += 1 + rest.div_ceil(ppb);
        } else {
            meta += 1 + ppb;
            rest -= ppb * ppb;
            meta += 1 + rest.div_ceil(ppb) + rest.div_ceil(ppb * ppb);
        }
        upper - meta
    };
    blocks
        .checked_shl(log_block)
        .filter(|b| b >> log_block == blocks)
        .unwrap_or(MAX_LFS_FILESIZE)
        .min(MAX_LFS_FILESIZE)
}

impl Superblock {
    /// This filesystem's limits.
    pub fn limits(&self) -> Limits {
        Limits::new(self)
    }
}

/// The limits of one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `s_maxbytes`: the largest extent-mapped file.
    pub extent_max_bytes: u64,
    /// `s_bitmap_maxbytes`: the largest block-mapped (or inline) file.
    pub indirect_max_bytes: u64,
    /// The filesystem has `largedir` (64-bit directory sizes, three htree levels).
    pub largedir: bool,
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks in the filesystem: no walk over one file's blocks needs more.
    pub blocks_count: u64,
}

impl Limits {
    /// The limits of the filesystem `sb` describes.
    pub fn new(sb: &Superblock) -> Limits {
        let huge = sb.has_ro_compat(ro_compat::HUGE_FILE);
        Limits {
            extent_max_bytes: extent_max_bytes(sb.log_block_size, huge),
            indirect_max_bytes: indirect_max_bytes(sb.log_block_size, huge),
            largedir: sb.has_incompat(incompat::LARGEDIR),
            block_size: sb.block_size,
            blocks_count: sb.blocks_count,
        }
    }

    /// The largest size an inode may have (`ext4_get_maxbytes`): by its
    /// mapping (`extents` = the inode has `EXTENTS_FL`).
    pub fn max_file_bytes(&self, extents: bool) -> u64 {
        if extents {
            self.extent_max_bytes
        } else {
            self.indirect_max_bytes
        }
    }

    /// Whether `i_size_high` counts for an inode (`ext4_isize`): for
    /// regular files always, for everything else only with `largedir`
    /// (ext2 kept the directory ACL there).
    pub fn size_high_counts(&self, regular: bool) -> bool {
        regular || self.largedir
    }

    /// Longest symlink target: a fast one fits `i_block` with its NUL; a
    /// slow one fits one block and `PATH_MAX`, both with the NUL (the
    /// kernel's `ext4_symlink` refuses longer ones with ENAMETOOLONG).
    pub fn max_symlink_len(&self, fast: bool) -> u64 {
        if fast {
            I_BLOCK_BYTES - 1
        } else {
            u64::from(self.block_size).min(PATH_MAX) - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;

    /// (log block size, huge_file, s_maxbytes, s_bitmap_maxbytes), worked
    /// out by hand from the kernel's rules (see the module doc).
    const TABLE: &[(u32, bool, u64, u64)] = &[
        // 1 KiB: extents (2^32-1) blocks; without huge_file i_blocks caps
        // at 2^31-1 blocks. Block maps: 12 + 256 + 256^2 + 256^3 blocks.
        (10, true, (4 * TIB) - KIB, 16_843_020 * KIB),
        (10, false, (2 * TIB) - KIB, 16_843_020 * KIB),
        // 2 KiB: i_blocks caps extents at 2^30-1 blocks without huge_file.
        (11, true, (8 * TIB) - 2 * KIB, 134_480_396 * 2 * KIB),
        (11, false, (2 * TIB) - 2 * KIB, 134_480_396 * 2 * KIB),
        // 4 KiB: the common case. Block maps without huge_file: i_blocks
        // (2^29-1 blocks) limits, less the mapping blocks.
        (12, true, (16 * TIB) - 4 * KIB, 1_074_791_436 * 4 * KIB),
        (12, false, (2 * TIB) - 4 * KIB, 536_346_110 * 4 * KIB),
        // 64 KiB: extents reach 2^48 - 64 KiB; block maps with huge_file
        // address 12 + 2^14 + 2^28 + 2^42 blocks.
        (
            16,
            true,
            (1 << 48) - 64 * KIB,
            (12 + (1 << 14) + (1 << 28) + (1 << 42)) * 64 * KIB,
        ),
        (16, false, (2 * TIB) - 64 * KIB, 33_552_382 * 64 * KIB),
    ];

    #[test]
    fn maxbytes_table() {
        for &(log, huge, ext, ind) in TABLE {
            assert_eq!(
                extent_max_bytes(log, huge),
                ext,
                "extents, log {log} huge {huge}"
            );
            assert_eq!(
                indirect_max_bytes(log, huge),
                ind,
                "indirect, log {log} huge {huge}"
            );
        }
    }

    #[test]
    fn well_known_figures() {
        // The figures users know: about 16 GiB per block-mapped file at
        // 1 KiB blocks, 16 TiB per extent file at 4 KiB with huge_file.
        let ind_1k = indirect_max_bytes(10, false);
        assert!(ind_1k > 16 * GIB && ind_1k < 17 * GIB, "{ind_1k}");
        assert_eq!(extent_max_bytes(12, true), 16 * TIB - 4 * KIB);
        // Every limit is a whole number of blocks and below i64::MAX.
        for log in 10..=16 {
            for huge in [false, true] {
                for v in [extent_max_bytes(log, huge), indirect_max_bytes(log, huge)] {
                    assert_eq!(v % (1 << log), 0, "log {log} huge {huge}");
                    assert!(v <= MAX_LFS_FILESIZE);
                }
            }
        }
    }

    #[test]
    fn per_inode_choice_and_symlinks() {
        let sb = crate::superblock::synth::parsed(); // 1 KiB, huge_file
        let l = Limits::new(&sb);
        assert_eq!(l.max_file_bytes(true), 4 * TIB - KIB);
        assert_eq!(l.max_file_bytes(false), 16_843_020 * KIB);
        assert!(l.size_high_counts(true));
        assert!(
            !l.size_high_counts(false),
            "no largedir in the synthetic sb"
        );
        assert_eq!(l.max_symlink_len(true), 59);
        assert_eq!(l.max_symlink_len(false), 1023);
        let big = Limits {
            block_size: 65536,
            ..l
        };
        assert_eq!(big.max_symlink_len(false), 4095);
    }
}
