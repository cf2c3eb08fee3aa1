//! Feature bits of the superblock (compat, incompat, ro_compat), which of
//! them this engine reads, and the refusal of the others by name.
//!
//! Invariant: [`check_features`] accepts exactly the incompat bits in
//! [`INCOMPAT_KNOWN`]; anything else is [`Error::Unsupported`] naming the
//! feature (or its bit when it has no name).

use super::error::{Error, Result};

/// Compatible features (`s_feature_compat`).
pub mod compat {
    /// Preallocate directory blocks.
    pub const DIR_PREALLOC: u32 = 0x1;
    /// AFS magic inodes.
    pub const IMAGIC_INODES: u32 = 0x2;
    /// Has a journal.
    pub const HAS_JOURNAL: u32 = 0x4;
    /// Extended attributes.
    pub const EXT_ATTR: u32 = 0x8;
    /// Reserved GDT blocks for online growth.
    pub const RESIZE_INODE: u32 = 0x10;
    /// Hashed directory indexes.
    pub const DIR_INDEX: u32 = 0x20;
    /// Lazy block groups (unused).
    pub const LAZY_BG: u32 = 0x40;
    /// Exclude inode (unused).
    pub const EXCLUDE_INODE: u32 = 0x80;
    /// Exclude bitmap (unused).
    pub const EXCLUDE_BITMAP: u32 = 0x100;
    /// Backup superblocks only where `s_backup_bgs` says.
    pub const SPARSE_SUPER2: u32 = 0x200;
    /// Fast commits in the journal.
    pub const FAST_COMMIT: u32 = 0x400;
    /// Inode numbers never change (encryption).
    pub const STABLE_INODES: u32 = 0x800;
    /// Orphan file.
    pub const ORPHAN_FILE: u32 = 0x1000;
}

/// Incompatible features (`s_feature_incompat`).
pub mod incompat {
    /// Compression (never finished; refused).
    pub const COMPRESSION: u32 = 0x1;
    /// Directory entries record the file type.
    pub const FILETYPE: u32 = 0x2;
    /// The journal needs recovery.
    pub const RECOVER: u32 = 0x4;
    /// This is an external journal device.
    pub const JOURNAL_DEV: u32 = 0x8;
    /// Meta block groups.
    pub const META_BG: u32 = 0x10;
    /// Extent trees.
    pub const EXTENTS: u32 = 0x40;
    /// 64-bit block numbers.
    pub const BIT64: u32 = 0x80;
    /// Multiple mount protection.
    pub const MMP: u32 = 0x100;
    /// Flexible block groups.
    pub const FLEX_BG: u32 = 0x200;
    /// Large xattr values in inodes.
    pub const EA_INODE: u32 = 0x400;
    /// Data in directory entries (Lustre; refused).
    pub const DIRDATA: u32 = 0x1000;
    /// Checksum seed stored in the superblock.
    pub const CSUM_SEED: u32 = 0x2000;
    /// Directories > 2 GiB or 3-level htree.
    pub const LARGEDIR: u32 = 0x4000;
    /// Data in the inode.
    pub const INLINE_DATA: u32 = 0x8000;
    /// Encrypted inodes.
    pub const ENCRYPT: u32 = 0x10000;
    /// Case-insensitive directories.
    pub const CASEFOLD: u32 = 0x20000;
}

/// Read-only-compatible features (`s_feature_ro_compat`).
pub mod ro_compat {
    /// Backup superblocks in some groups only.
    pub const SPARSE_SUPER: u32 = 0x1;
    /// Files larger than 2 GiB.
    pub const LARGE_FILE: u32 = 0x2;
    /// B-tree directories (unused).
    pub const BTREE_DIR: u32 = 0x4;
    /// `i_blocks` in filesystem blocks for some inodes; 48-bit counts.
    pub const HUGE_FILE: u32 = 0x8;
    /// crc16 group descriptor checksums.
    pub const GDT_CSUM: u32 = 0x10;
    /// Directories with more than 65000 subdirectories.
    pub const DIR_NLINK: u32 = 0x20;
    /// Large inodes carry extra fields.
    pub const EXTRA_ISIZE: u32 = 0x40;
    /// Snapshots.
    pub const HAS_SNAPSHOT: u32 = 0x80;
    /// Quota inodes.
    pub const QUOTA: u32 = 0x100;
    /// Clusters of blocks as the allocation unit.
    pub const BIGALLOC: u32 = 0x200;
    /// crc32c checksums on all metadata.
    pub const METADATA_CSUM: u32 = 0x400;
    /// Replicas (unused).
    pub const REPLICA: u32 = 0x800;
    /// Read-only filesystem image.
    pub const READONLY: u32 = 0x1000;
    /// Project quotas.
    pub const PROJECT: u32 = 0x2000;
    /// Shared blocks.
    pub const SHARED_BLOCKS: u32 = 0x4000;
    /// fs-verity.
    pub const VERITY: u32 = 0x8000;
    /// The orphan file has entries.
    pub const ORPHAN_PRESENT: u32 = 0x10000;
}

/// Incompat features this engine reads.
pub const INCOMPAT_KNOWN: u32 = incompat::FILETYPE
    | incompat::RECOVER
    | incompat::META_BG
    | incompat::EXTENTS
    | incompat::BIT64
    | incompat::MMP
    | incompat::FLEX_BG
    | incompat::EA_INODE
    | incompat::CSUM_SEED
    | incompat::LARGEDIR
    | incompat::INLINE_DATA;

/// Ro-compat features the engine knows; others only mean "read-only",
/// which this engine always is, and are recorded.
pub const RO_COMPAT_KNOWN: u32 = ro_compat::SPARSE_SUPER
    | ro_compat::LARGE_FILE
    | ro_compat::BTREE_DIR
    | ro_compat::HUGE_FILE
    | ro_compat::GDT_CSUM
    | ro_compat::DIR_NLINK
    | ro_compat::EXTRA_ISIZE
    | ro_compat::QUOTA
    | ro_compat::BIGALLOC
    | ro_compat::METADATA_CSUM
    | ro_compat::READONLY
    | ro_compat::PROJECT
    | ro_compat::VERITY
    | ro_compat::ORPHAN_PRESENT;

/// Names of incompat bits, for messages.
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (incompat::COMPRESSION, "compression"),
    (incompat::FILETYPE, "filetype"),
    (incompat::RECOVER, "needs_recovery"),
    (incompat::JOURNAL_DEV, "journal_dev"),
    (incompat::META_BG, "meta_bg"),
    (incompat::EXTENTS, "extent"),
    (incompat::BIT64, "64bit"),
    (incompat::MMP, "mmp"),
    (incompat::FLEX_BG, "flex_bg"),
    (incompat::EA_INODE, "ea_inode"),
    (incompat::DIRDATA, "dirdata"),
    (incompat::CSUM_SEED, "metadata_csum_seed"),
    (incompat::LARGEDIR, "large_dir"),
    (incompat::INLINE_DATA, "inline_data"),
    (incompat::ENCRYPT, "encrypt"),
    (incompat::CASEFOLD, "casefold"),
];

/// Refuses incompat features this engine cannot read, naming them.
pub fn check_features(incompat_bits: u32) -> Result<()> {
    let refuse = |bit: u32, why: &str| -> Result<()> {
        if incompat_bits & bit != 0 {
            Err(Error::Unsupported(why.into()))
        } else {
            Ok(())
        }
    };
    refuse(incompat::COMPRESSION, "compression (never part of ext4)")?;
    refuse(
        incompat::JOURNAL_DEV,
        "journal_dev (this is an external journal device, not a filesystem)",
    )?;
    refuse(incompat::DIRDATA, "dirdata (Lustre directory data)")?;
    refuse(
        incompat::ENCRYPT,
        "encrypt (fscrypt-encrypted files cannot be read without their keys)",
    )?;
    refuse(
        incompat::CASEFOLD,
        "casefold (case-insensitive directories are not supported yet)",
    )?;
    let unknown = incompat_bits & !INCOMPAT_KNOWN;
    if unknown != 0 {
        let names: Vec<String> = (0..32)
            .map(|i| 1u32 << i)
            .filter(|b| unknown & b != 0)
            .map(|b| {
                INCOMPAT_NAMES
                    .iter()
                    .find(|(bit, _)| *bit == b)
                    .map_or_else(|| format!("incompat bit {b:#x}"), |(_, n)| (*n).to_string())
            })
            .collect();
        return Err(Error::Unsupported(names.join(", ")));
    }
    Ok(())
}
