//! The ext2/3/4 superblock: 1024 bytes at byte 1024 of the device.
//!
//! [`Superblock::parse`] takes the raw bytes (no I/O), checks the magic,
//! the crc32c checksum when metadata_csum is on, the feature sets and every
//! geometry value before any other part of the engine relies on them. After
//! a successful parse: the block size is a power of two in 1024..=65536,
//! the inode size a power of two in 128..=block size, blocks and inodes per
//! group are non-zero and fit a bitmap block, the group count is consistent
//! with both the block count and the inode count, and the descriptor size
//! is 32, or a power of two in 64..=1024 with 64bit.

use super::bytes::{array, le16, le32, u8_at};
use super::csum::crc32c;
use super::error::{Error, Result};
use super::features::{check_features, RO_COMPAT_KNOWN};
pub use super::features::{compat, incompat, ro_compat};
use super::num::{GroupNo, InodeNo, Pblk};

/// Byte offset of the primary superblock on the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock structure.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// `s_magic`.
pub const EXT4_MAGIC: u16 = 0xEF53;

// Field offsets (kernel Documentation/filesystems/ext4/super.rst).
const S_INODES_COUNT: usize = 0x0;
const S_BLOCKS_COUNT_LO: usize = 0x4;
const S_R_BLOCKS_COUNT_LO: usize = 0x8;
pub(crate) const S_FREE_BLOCKS_COUNT_LO: usize = 0xC;
pub(crate) const S_FREE_INODES_COUNT: usize = 0x10;
const S_FIRST_DATA_BLOCK: usize = 0x14;
const S_LOG_BLOCK_SIZE: usize = 0x18;
const S_LOG_CLUSTER_SIZE: usize = 0x1C;
const S_BLOCKS_PER_GROUP: usize = 0x20;
const S_CLUSTERS_PER_GROUP: usize = 0x24;
const S_INODES_PER_GROUP: usize = 0x28;
const S_MAGIC: usize = 0x38;
pub(crate) const S_STATE: usize = 0x3A;
pub(crate) const S_ERRORS: usize = 0x3C;
const S_CREATOR_OS: usize = 0x48;
const S_REV_LEVEL: usize = 0x4C;
const S_FIRST_INO: usize = 0x54;
const S_INODE_SIZE: usize = 0x58;
pub(crate) const S_FEATURE_COMPAT: usize = 0x5C;
pub(crate) const S_FEATURE_INCOMPAT: usize = 0x60;
pub(crate) const S_FEATURE_RO_COMPAT: usize = 0x64;
const S_UUID: usize = 0x68;
const S_VOLUME_NAME: usize = 0x78;
const S_RESERVED_GDT_BLOCKS: usize = 0xCE;
const S_JOURNAL_UUID: usize = 0xD0;
const S_JOURNAL_INUM: usize = 0xE0;
/// Offset of `s_journal_dev` (device number of an external journal).
pub(crate) const S_JOURNAL_DEV: usize = 0xE4;
pub(crate) const S_LAST_ORPHAN: usize = 0xE8;
const S_HASH_SEED: usize = 0xEC;
const S_DEF_HASH_VERSION: usize = 0xFC;
const S_DESC_SIZE: usize = 0xFE;
const S_FIRST_META_BG: usize = 0x104;
const S_BLOCKS_COUNT_HI: usize = 0x150;
const S_R_BLOCKS_COUNT_HI: usize = 0x154;
pub(crate) const S_FREE_BLOCKS_COUNT_HI: usize = 0x158;
const S_MIN_EXTRA_ISIZE: usize = 0x15C;
const S_WANT_EXTRA_ISIZE: usize = 0x15E;
const S_FLAGS: usize = 0x160;
const S_MMP_INTERVAL: usize = 0x166;
const S_MMP_BLOCK: usize = 0x168;
const S_LOG_GROUPS_PER_FLEX: usize = 0x174;
const S_CHECKSUM_TYPE: usize = 0x175;
const S_USR_QUOTA_INUM: usize = 0x240;
const S_GRP_QUOTA_INUM: usize = 0x244;
const S_OVERHEAD_CLUSTERS: usize = 0x248;
const S_BACKUP_BGS: usize = 0x24C;
const S_PRJ_QUOTA_INUM: usize = 0x26C;
const S_CHECKSUM_SEED: usize = 0x270;
const S_ENCODING: usize = 0x27C;
const S_ORPHAN_FILE_INUM: usize = 0x280;
/// Offset of `s_checksum`, the last field; the checksum covers everything before it.
pub const S_CHECKSUM: usize = 0x3FC;

/// `s_checksum_type` value for crc32c, the only one defined.
pub const CHECKSUM_TYPE_CRC32C: u8 = 1;

/// `s_rev_level` of the original format (fixed 128-byte inodes, first inode 11).
pub const GOOD_OLD_REV: u32 = 0;
/// Inode size of revision 0.
pub const GOOD_OLD_INODE_SIZE: u16 = 128;
/// First non-reserved inode of revision 0.
pub const GOOD_OLD_FIRST_INO: u32 = 11;

/// Smallest and largest supported block-size logarithms (1 KiB .. 64 KiB).
const MIN_LOG_BLOCK_SIZE: u32 = 10;
const MAX_LOG_BLOCK_SIZE: u32 = 16;
/// Largest `s_log_cluster_size` (1 GiB clusters), as the kernel allows.
const MAX_LOG_CLUSTER_SIZE: u32 = 20;
/// Descriptor sizes.
pub const DESC_SIZE_32: u16 = 32;
const MIN_DESC_SIZE_64BIT: u16 = 64;
const MAX_DESC_SIZE: u16 = 1024;
/// Largest `s_log_groups_per_flex` the kernel mounts with flex_bg (its
/// allocator refuses 32 and up: "too many log groups per flexible block
/// group"); without flex_bg the field is ignored.
const MAX_LOG_GROUPS_PER_FLEX: u8 = 31;

/// `s_state` bit: cleanly unmounted.
pub const STATE_VALID: u16 = 0x1;
/// `s_state` bit: errors detected.
pub const STATE_ERROR: u16 = 0x2;
/// `s_state` bit: orphans being recovered.
pub const STATE_ORPHAN: u16 = 0x4;

/// `s_flags`: directory hashes use signed chars.
pub const FLAGS_SIGNED_HASH: u32 = 0x1;
/// `s_flags`: directory hashes use unsigned chars.
pub const FLAGS_UNSIGNED_HASH: u32 = 0x2;

/// Whether the default directory hash treats name bytes as unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashSignedness {
    /// `s_flags` says signed chars.
    Signed,
    /// `s_flags` says unsigned chars.
    Unsigned,
}

/// The parsed, validated superblock.
#[derive(Debug, Clone)]
pub struct Superblock {
    /// The 1024 raw bytes.
    pub raw: Vec<u8>,
    /// Total inodes.
    pub inodes_count: u32,
    /// Total blocks (hi half only with 64bit).
    pub blocks_count: u64,
    /// Blocks reserved for root.
    pub r_blocks_count: u64,
    /// Free blocks as recorded in the superblock (the group descriptors are authoritative).
    pub free_blocks_count: u64,
    /// Free inodes as recorded in the superblock.
    pub free_inodes_count: u32,
    /// First block of group 0 (1 with 1 KiB blocks, else 0).
    pub first_data_block: u32,
    /// log2(block size).
    pub log_block_size: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// log2(cluster size in blocks) (0 without bigalloc).
    pub log_cluster_ratio: u32,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Clusters per group (= blocks per group without bigalloc).
    pub clusters_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// `s_state` (STATE_*).
    pub state: u16,
    /// `s_errors`: 1 continue, 2 remount-ro, 3 panic.
    pub errors: u16,
    /// `s_creator_os`.
    pub creator_os: u32,
    /// Revision (0 = good old, 1 = dynamic).
    pub rev_level: u32,
    /// First non-reserved inode.
    pub first_ino: InodeNo,
    /// Bytes per on-disk inode.
    pub inode_size: u16,
    /// Compatible features.
    pub feature_compat: u32,
    /// Incompatible features.
    pub feature_incompat: u32,
    /// Read-only-compatible features.
    pub feature_ro_compat: u32,
    /// Ro-compat bits this engine does not know (recorded; the mount is read-only anyway).
    pub unknown_ro_compat: u32,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
    /// Volume label (NULs trimmed).
    pub volume_name: Vec<u8>,
    /// GDT blocks reserved for growth (per group with a superblock backup).
    pub reserved_gdt_blocks: u16,
    /// Journal UUID (external journal).
    pub journal_uuid: [u8; 16],
    /// Journal inode (0 = none).
    pub journal_inum: InodeNo,
    /// Head of the orphan inode list.
    pub last_orphan: InodeNo,
    /// Directory hash seed.
    pub hash_seed: [u32; 4],
    /// Default directory hash version (0 legacy, 1 half_md4, 2 tea; +3 unsigned variants).
    pub def_hash_version: u8,
    /// Group descriptor size in bytes (32 without 64bit).
    pub desc_size: u16,
    /// First meta block group (meta_bg).
    pub first_meta_bg: u32,
    /// Minimum extra inode size all inodes have.
    pub min_extra_isize: u16,
    /// Extra inode size new inodes should have.
    pub want_extra_isize: u16,
    /// `s_flags` (FLAGS_*).
    pub flags: u32,
    /// MMP check interval (seconds).
    pub mmp_interval: u16,
    /// MMP block.
    pub mmp_block: Pblk,
    /// log2(groups per flex group) (flex_bg).
    pub log_groups_per_flex: u8,
    /// Overhead clusters recorded by mkfs/resize (0 = not recorded).
    pub overhead_clusters: u32,
    /// Groups with superblock backups under sparse_super2.
    pub backup_bgs: [u32; 2],
    /// Seed for crc32c metadata checksums (csum_seed or crc32c(uuid)); 0 without metadata_csum.
    pub csum_seed: u32,
    /// Filename encoding (casefold).
    pub encoding: u16,
    /// Orphan file inode.
    pub orphan_file_inum: InodeNo,
    /// User, group and project quota inodes (0 = none).
    pub quota_inums: [InodeNo; 3],
    /// Number of block groups.
    pub group_count: u32,
    /// Inodes per inode-table block.
    pub inodes_per_block: u32,
    /// Inode-table blocks per group.
    pub itable_blocks_per_group: u32,
}

fn corrupt(detail: impl Into<String>) -> Error {
    Error::corrupt("superblock", detail)
}

impl Superblock {
    /// Parses and validates the superblock from its 1024 raw bytes.
    ///
    /// `device_bytes` is the size of the device; a block count beyond it is
    /// refused (as the kernel does) so that every in-fs block number is
    /// readable.
    pub fn parse(raw: &[u8], device_bytes: u64) -> Result<Superblock> {
        let raw = raw
            .get(..SUPERBLOCK_SIZE)
            .ok_or_else(|| Error::NotExt("device smaller than a superblock".into()))?;
        let magic = le16(raw, S_MAGIC);
        if magic != EXT4_MAGIC {
            return Err(Error::NotExt(format!(
                "bad superblock magic {magic:#06x} (expected {EXT4_MAGIC:#06x})"
            )));
        }
        let feature_compat = le32(raw, S_FEATURE_COMPAT);
        let feature_incompat = le32(raw, S_FEATURE_INCOMPAT);
        let feature_ro_compat = le32(raw, S_FEATURE_RO_COMPAT);
        let metadata_csum = feature_ro_compat & ro_compat::METADATA_CSUM != 0;

        // Checksum first: with metadata_csum a mismatch means nothing else
        // in the block can be trusted.
        if metadata_csum {
            let ctype = u8_at(raw, S_CHECKSUM_TYPE);
            if ctype != CHECKSUM_TYPE_CRC32C {
                return Err(corrupt(format!("unknown checksum type {ctype}")));
            }
            let want = le32(raw, S_CHECKSUM);
            let got = crc32c(!0, raw.get(..S_CHECKSUM).unwrap_or(&[]));
            if want != got {
                return Err(Error::checksum("superblock"));
            }
        }
        check_features(feature_incompat)?;

        let rev_level = le32(raw, S_REV_LEVEL);
        let log_block_size = le32(raw, S_LOG_BLOCK_SIZE);
        let log_block = log_block_size
            .checked_add(MIN_LOG_BLOCK_SIZE)
            .filter(|l| *l <= MAX_LOG_BLOCK_SIZE)
            .ok_or_else(|| corrupt(format!("invalid log block size {log_block_size}")))?;
        let block_size = 1u32 << log_block;

        let bigalloc = feature_ro_compat & ro_compat::BIGALLOC != 0;
        let log_cluster_size = le32(raw, S_LOG_CLUSTER_SIZE);
        let log_cluster_ratio = if bigalloc {
            if log_cluster_size < log_block_size || log_cluster_size > MAX_LOG_CLUSTER_SIZE {
                return Err(corrupt(format!(
                    "cluster size log {log_cluster_size} invalid for block size log {log_block_size}"
                )));
            }
            log_cluster_size - log_block_size
        } else {
            if log_cluster_size != log_block_size {
                return Err(corrupt(format!(
                    "cluster size log {log_cluster_size} differs from block size log {log_block_size} without bigalloc"
                )));
            }
            0
        };

        let bit64 = feature_incompat & incompat::BIT64 != 0;
        let hi = |off: usize| -> u64 {
            if bit64 {
                u64::from(le32(raw, off)) << 32
            } else {
                0
            }
        };
        let blocks_count = u64::from(le32(raw, S_BLOCKS_COUNT_LO)) | hi(S_BLOCKS_COUNT_HI);
        let r_blocks_count = u64::from(le32(raw, S_R_BLOCKS_COUNT_LO)) | hi(S_R_BLOCKS_COUNT_HI);
        let free_blocks_count =
            u64::from(le32(raw, S_FREE_BLOCKS_COUNT_LO)) | hi(S_FREE_BLOCKS_COUNT_HI);
        let inodes_count = le32(raw, S_INODES_COUNT);
        let first_data_block = le32(raw, S_FIRST_DATA_BLOCK);
        let blocks_per_group = le32(raw, S_BLOCKS_PER_GROUP);
        let clusters_per_group = le32(raw, S_CLUSTERS_PER_GROUP);
        let inodes_per_group = le32(raw, S_INODES_PER_GROUP);

        let (inode_size, first_ino) = if rev_level == GOOD_OLD_REV {
            (GOOD_OLD_INODE_SIZE, GOOD_OLD_FIRST_INO)
        } else {
            (le16(raw, S_INODE_SIZE), le32(raw, S_FIRST_INO))
        };
        if inode_size < GOOD_OLD_INODE_SIZE
            || !inode_size.is_power_of_two()
            || u32::from(inode_size) > block_size
        {
            return Err(corrupt(format!("invalid inode size {inode_size}")));
        }
        // The kernel refuses only a first inode below 11; past the inode
        // count it mounts, and every name then leads to an illegal inode.
        if first_ino < GOOD_OLD_FIRST_INO {
            return Err(corrupt(format!("invalid first inode {first_ino}")));
        }

        let bits_per_block = block_size
            .checked_mul(8)
            .ok_or_else(|| corrupt("block size overflow"))?;
        if blocks_per_group == 0 || clusters_per_group == 0 {
            return Err(corrupt("zero blocks per group"));
        }
        if clusters_per_group > bits_per_block {
            return Err(corrupt(format!(
                "{clusters_per_group} clusters per group exceed one bitmap block ({bits_per_block})"
            )));
        }
        let expect_bpg = clusters_per_group
            .checked_shl(log_cluster_ratio)
            .filter(|v| v >> log_cluster_ratio == clusters_per_group);
        if expect_bpg != Some(blocks_per_group) {
            return Err(corrupt(format!(
                "blocks per group {blocks_per_group} inconsistent with clusters per group {clusters_per_group}"
            )));
        }
        let inodes_per_block = block_size / u32::from(inode_size);
        if inodes_per_group < inodes_per_block || inodes_per_group > bits_per_block {
            return Err(corrupt(format!(
                "invalid inodes per group {inodes_per_group}"
            )));
        }
        if inodes_per_group % inodes_per_block != 0 {
            return Err(corrupt(format!(
                "inodes per group {inodes_per_group} not a multiple of inodes per block {inodes_per_block}"
            )));
        }
        let itable_blocks_per_group = inodes_per_group / inodes_per_block;

        if blocks_count == 0 || u64::from(first_data_block) >= blocks_count {
            return Err(corrupt(format!(
                "first data block {first_data_block} beyond block count {blocks_count}"
            )));
        }
        if block_size == 1024 && !bigalloc && first_data_block == 0 {
            return Err(corrupt("first data block 0 with 1 KiB blocks"));
        }
        if r_blocks_count > blocks_count {
            return Err(corrupt(format!(
                "reserved blocks {r_blocks_count} exceed block count {blocks_count}"
            )));
        }
        let device_blocks = device_bytes / u64::from(block_size);
        if blocks_count > device_blocks {
            return Err(corrupt(format!(
                "block count {blocks_count} exceeds the device ({device_blocks} blocks)"
            )));
        }
        let groups64 =
            (blocks_count - u64::from(first_data_block)).div_ceil(u64::from(blocks_per_group));
        let group_count = u32::try_from(groups64)
            .map_err(|_| corrupt(format!("group count {groups64} too large")))?;
        if u64::from(group_count) * u64::from(inodes_per_group) != u64::from(inodes_count) {
            return Err(corrupt(format!(
                "inode count {inodes_count} is not {group_count} groups x {inodes_per_group}"
            )));
        }

        let desc_size = if bit64 {
            let d = le16(raw, S_DESC_SIZE);
            if !(MIN_DESC_SIZE_64BIT..=MAX_DESC_SIZE).contains(&d)
                || !d.is_power_of_two()
                || u32::from(d) > block_size
            {
                return Err(corrupt(format!("invalid descriptor size {d}")));
            }
            d
        } else {
            DESC_SIZE_32
        };
        let descs_per_block = block_size / u32::from(desc_size);
        let gdt_blocks = group_count.div_ceil(descs_per_block);
        let first_meta_bg = le32(raw, S_FIRST_META_BG);
        if feature_incompat & incompat::META_BG != 0 && first_meta_bg > gdt_blocks {
            return Err(corrupt(format!(
                "first meta block group {first_meta_bg} beyond {gdt_blocks} descriptor blocks"
            )));
        }
        let reserved_gdt_blocks = le16(raw, S_RESERVED_GDT_BLOCKS);
        if u32::from(reserved_gdt_blocks) > block_size / 4 {
            return Err(corrupt(format!(
                "{reserved_gdt_blocks} reserved GDT blocks exceed {}",
                block_size / 4
            )));
        }

        let log_groups_per_flex = u8_at(raw, S_LOG_GROUPS_PER_FLEX);
        if feature_incompat & incompat::FLEX_BG != 0
            && log_groups_per_flex > MAX_LOG_GROUPS_PER_FLEX
        {
            return Err(corrupt(format!(
                "{log_groups_per_flex} log groups per flex group (at most {MAX_LOG_GROUPS_PER_FLEX})"
            )));
        }

        let min_extra_isize = le16(raw, S_MIN_EXTRA_ISIZE);
        let want_extra_isize = le16(raw, S_WANT_EXTRA_ISIZE);
        let extra_room = inode_size - GOOD_OLD_INODE_SIZE;
        if feature_ro_compat & ro_compat::EXTRA_ISIZE != 0
            && (min_extra_isize > extra_room || want_extra_isize > extra_room)
        {
            return Err(corrupt(format!(
                "extra inode sizes {min_extra_isize}/{want_extra_isize} exceed inode size {inode_size}"
            )));
        }

        let uuid = array::<16>(raw, S_UUID).unwrap_or_default();
        let csum_seed = if !metadata_csum {
            0
        } else if feature_incompat & incompat::CSUM_SEED != 0 {
            le32(raw, S_CHECKSUM_SEED)
        } else {
            crc32c(!0, &uuid)
        };
        let volume_name = array::<16>(raw, S_VOLUME_NAME)
            .unwrap_or_default()
            .into_iter()
            .take_while(|&b| b != 0)
            .collect();
        let hash_seed = [
            le32(raw, S_HASH_SEED),
            le32(raw, S_HASH_SEED + 4),
            le32(raw, S_HASH_SEED + 8),
            le32(raw, S_HASH_SEED + 12),
        ];

        Ok(Superblock {
            raw: raw.to_vec(),
            inodes_count,
            blocks_count,
            r_blocks_count,
            free_blocks_count,
            free_inodes_count: le32(raw, S_FREE_INODES_COUNT),
            first_data_block,
            log_block_size: log_block,
            block_size,
            log_cluster_ratio,
            blocks_per_group,
            clusters_per_group,
            inodes_per_group,
            state: le16(raw, S_STATE),
            errors: le16(raw, S_ERRORS),
            creator_os: le32(raw, S_CREATOR_OS),
            rev_level,
            first_ino: InodeNo(first_ino),
            inode_size,
            feature_compat,
            feature_incompat,
            feature_ro_compat,
            unknown_ro_compat: feature_ro_compat & !RO_COMPAT_KNOWN,
            uuid,
            volume_name,
            reserved_gdt_blocks,
            journal_uuid: array::<16>(raw, S_JOURNAL_UUID).unwrap_or_default(),
            journal_inum: InodeNo(le32(raw, S_JOURNAL_INUM)),
            last_orphan: InodeNo(le32(raw, S_LAST_ORPHAN)),
            hash_seed,
            def_hash_version: u8_at(raw, S_DEF_HASH_VERSION),
            desc_size,
            first_meta_bg,
            min_extra_isize,
            want_extra_isize,
            flags: le32(raw, S_FLAGS),
            mmp_interval: le16(raw, S_MMP_INTERVAL),
            mmp_block: Pblk(
                u64::from(le32(raw, S_MMP_BLOCK)) | (u64::from(le32(raw, S_MMP_BLOCK + 4)) << 32),
            ),
            log_groups_per_flex,
            overhead_clusters: le32(raw, S_OVERHEAD_CLUSTERS),
            backup_bgs: [le32(raw, S_BACKUP_BGS), le32(raw, S_BACKUP_BGS + 4)],
            csum_seed,
            encoding: le16(raw, S_ENCODING),
            orphan_file_inum: InodeNo(le32(raw, S_ORPHAN_FILE_INUM)),
            quota_inums: [
                InodeNo(le32(raw, S_USR_QUOTA_INUM)),
                InodeNo(le32(raw, S_GRP_QUOTA_INUM)),
                InodeNo(le32(raw, S_PRJ_QUOTA_INUM)),
            ],
            group_count,
            inodes_per_block,
            itable_blocks_per_group,
        })
    }

    /// Whether a compat feature bit is set.
    pub fn has_compat(&self, bit: u32) -> bool {
        self.feature_compat & bit != 0
    }

    /// Whether an incompat feature bit is set.
    pub fn has_incompat(&self, bit: u32) -> bool {
        self.feature_incompat & bit != 0
    }

    /// Whether a ro_compat feature bit is set.
    pub fn has_ro_compat(&self, bit: u32) -> bool {
        self.feature_ro_compat & bit != 0
    }

    /// crc32c metadata checksums are on.
    pub fn metadata_csum(&self) -> bool {
        self.has_ro_compat(ro_compat::METADATA_CSUM)
    }

    /// crc16 group descriptor checksums are on (and metadata_csum is not, which supersedes it).
    pub fn gdt_csum(&self) -> bool {
        !self.metadata_csum() && self.has_ro_compat(ro_compat::GDT_CSUM)
    }

    /// Group descriptors carry checksums of either kind (which makes the
    /// uninit flags and `itable_unused` meaningful).
    pub fn has_group_csum(&self) -> bool {
        self.metadata_csum() || self.has_ro_compat(ro_compat::GDT_CSUM)
    }

    /// 64-bit block numbers.
    pub fn is_64bit(&self) -> bool {
        self.has_incompat(incompat::BIT64)
    }

    /// The default hash's signedness, from `s_flags`. With neither flag set
    /// the kernel on x86 (signed `char`) hashes signed, so that is the default.
    pub fn hash_signedness(&self) -> HashSignedness {
        if self.flags & FLAGS_UNSIGNED_HASH != 0 {
            HashSignedness::Unsigned
        } else {
            HashSignedness::Signed
        }
    }

    /// Group descriptors per block.
    pub fn descs_per_block(&self) -> u32 {
        self.block_size / u32::from(self.desc_size)
    }

    /// Blocks per cluster (1 without bigalloc).
    pub fn cluster_ratio(&self) -> u64 {
        1u64 << self.log_cluster_ratio
    }

    /// Block holding the primary superblock (1 with 1 KiB blocks, else 0).
    pub fn superblock_block(&self) -> Pblk {
        Pblk(SUPERBLOCK_OFFSET / u64::from(self.block_size))
    }

    /// Whether group `g` holds a superblock backup (and so a GDT copy).
    pub fn group_has_super(&self, g: GroupNo) -> bool {
        let g = g.0;
        if g == 0 {
            return true;
        }
        if self.has_compat(compat::SPARSE_SUPER2) {
            return g == self.backup_bgs[0] || g == self.backup_bgs[1];
        }
        if g <= 1 || !self.has_ro_compat(ro_compat::SPARSE_SUPER) {
            return true;
        }
        if g & 1 == 0 {
            return false;
        }
        [3u32, 5, 7].iter().any(|&b| is_power_of(g, b))
    }

    /// First block of group `g`.
    pub fn group_first_block(&self, g: GroupNo) -> Pblk {
        Pblk(u64::from(self.first_data_block) + u64::from(g.0) * u64::from(self.blocks_per_group))
    }

    /// Whether `blk` is a block number inside the filesystem's data area.
    pub fn block_in_fs(&self, blk: Pblk) -> bool {
        blk.0 >= u64::from(self.first_data_block) && blk.0 < self.blocks_count
    }

    /// Whether `[blk, blk+len)` lies inside the filesystem.
    pub fn range_in_fs(&self, blk: Pblk, len: u64) -> bool {
        blk.0 >= u64::from(self.first_data_block)
            && blk
                .0
                .checked_add(len)
                .is_some_and(|end| end <= self.blocks_count)
    }
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    while n > 1 && n % base == 0 {
        n /= base;
    }
    n == 1
}

/// Synthetic superblocks for unit tests of this and other modules.
#[cfg(test)]
pub(crate) mod synth {
    use super::*;

    /// A valid 1 KiB-block superblock: 8192 blocks, one group, 2048 inodes
    /// of 256 bytes, extents and metadata_csum, checksum filled in.
    pub fn good() -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_SIZE];
        put32(&mut b, S_INODES_COUNT, 2048);
        put32(&mut b, S_BLOCKS_COUNT_LO, 8192);
        put32(&mut b, S_R_BLOCKS_COUNT_LO, 409);
        put32(&mut b, S_FIRST_DATA_BLOCK, 1);
        put32(&mut b, S_BLOCKS_PER_GROUP, 8192);
        put32(&mut b, S_CLUSTERS_PER_GROUP, 8192);
        put32(&mut b, S_INODES_PER_GROUP, 2048);
        put16(&mut b, S_MAGIC, EXT4_MAGIC);
        put32(&mut b, S_REV_LEVEL, 1);
        put32(&mut b, S_FIRST_INO, 11);
        put16(&mut b, S_INODE_SIZE, 256);
        put32(
            &mut b,
            S_FEATURE_INCOMPAT,
            incompat::FILETYPE | incompat::EXTENTS,
        );
        put32(
            &mut b,
            S_FEATURE_RO_COMPAT,
            ro_compat::METADATA_CSUM | ro_compat::HUGE_FILE,
        );
        b[S_UUID..S_UUID + 16].copy_from_slice(&[7u8; 16]);
        b[S_CHECKSUM_TYPE] = CHECKSUM_TYPE_CRC32C;
        fix_csum(&mut b);
        b
    }

    /// Recomputes the checksum after an edit.
    pub fn fix_csum(b: &mut [u8]) {
        let c = crc32c(!0, &b[..S_CHECKSUM]);
        b[S_CHECKSUM..S_CHECKSUM + 4].copy_from_slice(&c.to_le_bytes());
    }

    /// Stores a little-endian u32.
    pub fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Stores a little-endian u16.
    pub fn put16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// The parsed good superblock.
    pub fn parsed() -> Superblock {
        Superblock::parse(&good(), 8192 * 1024).unwrap()
    }
}

#[cfg(test)]
mod tests;
