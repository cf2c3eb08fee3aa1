//! The journal superblock (`journal_superblock_t`): block 0 of the journal,
//! 1024 bytes used, big-endian.
//!
//! [`JournalSuperblock::decode`] is total (any 1024 bytes decode) and
//! [`JournalSuperblock::encode_into`] writes exactly the fields decode
//! read, at the same offsets (one layout, [`layout`]), so decoding a block
//! and encoding the result over it changes nothing. Validation is
//! separate: [`JournalSuperblock::validate`] checks what the kernel's
//! `journal_check_superblock`/`journal_reset` check, and a little more
//! (`s_start` inside the log area), and yields the log area.
//!
//! Version 1 superblocks have no feature fields: their feature words are
//! treated as zero whatever the bytes hold, as the kernel does.

use super::be::{Be32, Raw};
use super::descriptor::{TagCsum, TagFormat};
use super::header::{block_type, BlockHeader};
use crate::csum::crc32c_zeroed;
use crate::error::{Error, Result};

/// Size of the structure (the rest of the block is unused).
pub const SIZE: usize = 1024;

/// Fewest blocks a journal may have (`JBD2_MIN_JOURNAL_BLOCKS`).
pub const MIN_JOURNAL_BLOCKS: u32 = 1024;

/// Fast-commit area size when `s_num_fc_blks` is 0.
pub const DEFAULT_FAST_COMMIT_BLOCKS: u32 = 256;

/// Feature bits (meaningful in version-2 superblocks only).
pub mod feature {
    /// `s_feature_compat`.
    pub mod compat {
        /// v1 transaction checksums (crc32_be in the commit block).
        pub const CHECKSUM: u32 = 0x1;
    }
    /// `s_feature_incompat`.
    pub mod incompat {
        /// Revoke blocks.
        pub const REVOKE: u32 = 0x1;
        /// 64-bit block numbers in tags and revoke records.
        pub const BIT64: u32 = 0x2;
        /// Commit blocks written without waiting for the transaction's blocks.
        pub const ASYNC_COMMIT: u32 = 0x4;
        /// v2 checksums (16-bit tag checksums).
        pub const CSUM_V2: u32 = 0x8;
        /// v3 checksums (32-bit tag checksums, tag3 layout).
        pub const CSUM_V3: u32 = 0x10;
        /// A fast-commit area at the end of the journal.
        pub const FAST_COMMIT: u32 = 0x20;
    }
    /// Incompat features the kernel (and this engine's parser) know.
    pub const INCOMPAT_KNOWN: u32 = incompat::REVOKE
        | incompat::BIT64
        | incompat::ASYNC_COMMIT
        | incompat::CSUM_V2
        | incompat::CSUM_V3
        | incompat::FAST_COMMIT;
    /// Ro-compat features known: none are defined.
    pub const RO_COMPAT_KNOWN: u32 = 0;
}

/// `s_checksum_type` values.
pub mod checksum_type {
    /// CRC-32 (v1 commit blocks).
    pub const CRC32: u8 = 1;
    /// MD5 (never used).
    pub const MD5: u8 = 2;
    /// SHA-1 (never used).
    pub const SHA1: u8 = 3;
    /// crc32c (v2/v3).
    pub const CRC32C: u8 = 4;
}

/// Field offsets (`include/linux/jbd2.h`).
pub mod layout {
    use super::{Be32, Raw};
    /// `s_blocksize`.
    pub const BLOCKSIZE: Be32 = Be32(0x0C);
    /// `s_maxlen`: blocks in the journal.
    pub const MAXLEN: Be32 = Be32(0x10);
    /// `s_first`: first block of the log area.
    pub const FIRST: Be32 = Be32(0x14);
    /// `s_sequence`: first transaction expected in the log.
    pub const SEQUENCE: Be32 = Be32(0x18);
    /// `s_start`: journal block where the log starts; 0 = clean.
    pub const START: Be32 = Be32(0x1C);
    /// `s_errno`: error recorded by a journal abort.
    pub const ERRNO: Be32 = Be32(0x20);
    /// `s_feature_compat`.
    pub const FEATURE_COMPAT: Be32 = Be32(0x24);
    /// `s_feature_incompat`.
    pub const FEATURE_INCOMPAT: Be32 = Be32(0x28);
    /// `s_feature_ro_compat`.
    pub const FEATURE_RO_COMPAT: Be32 = Be32(0x2C);
    /// `s_uuid`.
    pub const UUID: Raw<16> = Raw(0x30);
    /// `s_nr_users`.
    pub const NR_USERS: Be32 = Be32(0x40);
    /// `s_dynsuper`.
    pub const DYNSUPER: Be32 = Be32(0x44);
    /// `s_max_transaction`.
    pub const MAX_TRANSACTION: Be32 = Be32(0x48);
    /// `s_max_trans_data`.
    pub const MAX_TRANS_DATA: Be32 = Be32(0x4C);
    /// `s_checksum_type`.
    pub const CHECKSUM_TYPE: Raw<1> = Raw(0x50);
    /// `s_num_fc_blks`.
    pub const NUM_FC_BLKS: Be32 = Be32(0x54);
    /// `s_head`: the log head, kept up to date while the journal is clean.
    pub const HEAD: Be32 = Be32(0x58);
    /// `s_checksum`.
    pub const CHECKSUM: Be32 = Be32(0xFC);
    /// `s_users`: UUIDs of the filesystems sharing the journal.
    pub const USERS: Raw<768> = Raw(0x100);
}

/// The decoded journal superblock (every field, as stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSuperblock {
    /// Header (`SUPERBLOCK_V1` or `_V2` for a real one).
    pub header: BlockHeader,
    /// `s_blocksize`.
    pub block_size: u32,
    /// `s_maxlen`.
    pub maxlen: u32,
    /// `s_first`.
    pub first: u32,
    /// `s_sequence`.
    pub sequence: u32,
    /// `s_start` (0: nothing to recover).
    pub start: u32,
    /// `s_errno` (negative errno of a journal abort, 0 if none).
    pub errno: i32,
    /// `s_feature_compat` as stored (see [`JournalSuperblock::compat`]).
    pub feature_compat: u32,
    /// `s_feature_incompat` as stored.
    pub feature_incompat: u32,
    /// `s_feature_ro_compat` as stored.
    pub feature_ro_compat: u32,
    /// `s_uuid`.
    pub uuid: [u8; 16],
    /// `s_nr_users`.
    pub nr_users: u32,
    /// `s_dynsuper`.
    pub dynsuper: u32,
    /// `s_max_transaction`.
    pub max_transaction: u32,
    /// `s_max_trans_data`.
    pub max_trans_data: u32,
    /// `s_checksum_type`.
    pub checksum_type: u8,
    /// `s_num_fc_blks`.
    pub num_fc_blocks: u32,
    /// `s_head`.
    pub head: u32,
    /// `s_checksum`.
    pub checksum: u32,
    /// `s_users`.
    pub users: [u8; 768],
}

/// The circular log area of a journal: blocks `first..last`; the block
/// after `last - 1` is `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogArea {
    /// First block of the log (`s_first`).
    pub first: u32,
    /// One past the last block of the log (`s_maxlen`, less the fast-commit area).
    pub last: u32,
}

impl LogArea {
    /// Blocks in the log area (at least [`MIN_JOURNAL_BLOCKS`] - 1 once validated).
    pub fn len(&self) -> u32 {
        self.last.saturating_sub(self.first)
    }

    /// Whether the area is empty (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether journal block `b` lies in the area.
    pub fn contains(&self, b: u32) -> bool {
        b >= self.first && b < self.last
    }

    /// Journal block `n` positions after `b` (which lies in the area),
    /// wrapping from the end of the area to its start.
    pub fn advance(&self, b: u32, n: u32) -> u32 {
        let len = u64::from(self.len().max(1));
        let rel = u64::from(b.saturating_sub(self.first)) + u64::from(n);
        // rel % len < len <= u32::MAX - first, so the sum fits.
        self.first.saturating_add((rel % len) as u32)
    }
}

fn corrupt(detail: impl Into<String>) -> Error {
    Error::corrupt("journal superblock", detail)
}

impl JournalSuperblock {
    /// A fresh version-2 superblock (features, UUID and the rest zero; the
    /// writer fills them in).
    pub fn new_v2(block_size: u32, maxlen: u32, first: u32) -> JournalSuperblock {
        JournalSuperblock {
            header: BlockHeader::new(block_type::SUPERBLOCK_V2, 0),
            block_size,
            maxlen,
            first,
            sequence: 1,
            start: 0,
            errno: 0,
            feature_compat: 0,
            feature_incompat: 0,
            feature_ro_compat: 0,
            uuid: [0; 16],
            nr_users: 1,
            dynsuper: 0,
            max_transaction: 0,
            max_trans_data: 0,
            checksum_type: 0,
            num_fc_blocks: 0,
            head: 0,
            checksum: 0,
            users: [0; 768],
        }
    }

    /// Decodes the first [`SIZE`] bytes of `b` (`None` when shorter).
    pub fn decode(b: &[u8]) -> Option<JournalSuperblock> {
        use layout::*;
        if b.len() < SIZE {
            return None;
        }
        Some(JournalSuperblock {
            header: BlockHeader::decode(b)?,
            block_size: BLOCKSIZE.get(b),
            maxlen: MAXLEN.get(b),
            first: FIRST.get(b),
            sequence: SEQUENCE.get(b),
            start: START.get(b),
            errno: ERRNO.get(b) as i32,
            feature_compat: FEATURE_COMPAT.get(b),
            feature_incompat: FEATURE_INCOMPAT.get(b),
            feature_ro_compat: FEATURE_RO_COMPAT.get(b),
            uuid: UUID.get(b),
            nr_users: NR_USERS.get(b),
            dynsuper: DYNSUPER.get(b),
            max_transaction: MAX_TRANSACTION.get(b),
            max_trans_data: MAX_TRANS_DATA.get(b),
            checksum_type: CHECKSUM_TYPE.get(b)[0],
            num_fc_blocks: NUM_FC_BLKS.get(b),
            head: HEAD.get(b),
            checksum: CHECKSUM.get(b),
            users: USERS.get(b),
        })
    }

    /// Encodes every field into `b` (at least [`SIZE`] bytes), leaving the
    /// padding and anything past the structure as they are.
    pub fn encode_into(&self, b: &mut [u8]) {
        use layout::*;
        self.header.encode(b);
        BLOCKSIZE.set(b, self.block_size);
        MAXLEN.set(b, self.maxlen);
        FIRST.set(b, self.first);
        SEQUENCE.set(b, self.sequence);
        START.set(b, self.start);
        ERRNO.set(b, self.errno as u32);
        FEATURE_COMPAT.set(b, self.feature_compat);
        FEATURE_INCOMPAT.set(b, self.feature_incompat);
        FEATURE_RO_COMPAT.set(b, self.feature_ro_compat);
        UUID.set(b, &self.uuid);
        NR_USERS.set(b, self.nr_users);
        DYNSUPER.set(b, self.dynsuper);
        MAX_TRANSACTION.set(b, self.max_transaction);
        MAX_TRANS_DATA.set(b, self.max_trans_data);
        CHECKSUM_TYPE.set(b, &[self.checksum_type]);
        NUM_FC_BLKS.set(b, self.num_fc_blocks);
        HEAD.set(b, self.head);
        CHECKSUM.set(b, self.checksum);
        USERS.set(b, &self.users);
    }

    /// The structure alone, padding zeroed.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SIZE];
        self.encode_into(&mut b);
        b
    }

    /// 1 or 2 (from the header's block type; 0 for anything else).
    pub fn version(&self) -> u32 {
        match self.header.block_type {
            block_type::SUPERBLOCK_V1 => 1,
            block_type::SUPERBLOCK_V2 => 2,
            _ => 0,
        }
    }

    /// Compat features in effect (none in a v1 superblock).
    pub fn compat(&self) -> u32 {
        if self.version() >= 2 {
            self.feature_compat
        } else {
            0
        }
    }

    /// Incompat features in effect (none in a v1 superblock).
    pub fn incompat(&self) -> u32 {
        if self.version() >= 2 {
            self.feature_incompat
        } else {
            0
        }
    }

    /// Whether an incompat feature is in effect.
    pub fn has_incompat(&self, bit: u32) -> bool {
        self.incompat() & bit != 0
    }

    /// v1 transaction checksums.
    pub fn csum_v1(&self) -> bool {
        self.compat() & feature::compat::CHECKSUM != 0
    }

    /// v2 or v3 checksums (descriptor tails, tag and commit checksums).
    pub fn csum_v2or3(&self) -> bool {
        self.has_incompat(feature::incompat::CSUM_V2 | feature::incompat::CSUM_V3)
    }

    /// 64-bit block numbers.
    pub fn bit64(&self) -> bool {
        self.has_incompat(feature::incompat::BIT64)
    }

    /// Commit blocks may reach the disk before the transaction's blocks.
    pub fn async_commit(&self) -> bool {
        self.has_incompat(feature::incompat::ASYNC_COMMIT)
    }

    /// The layout of descriptor tags these features imply.
    pub fn tag_format(&self) -> TagFormat {
        let csum = if self.has_incompat(feature::incompat::CSUM_V3) {
            TagCsum::V3
        } else if self.has_incompat(feature::incompat::CSUM_V2) {
            TagCsum::V2
        } else {
            TagCsum::None
        };
        TagFormat {
            csum,
            bit64: self.bit64(),
        }
    }

    /// The v2/v3 checksum seed (0 without v2/v3 checksums).
    pub fn csum_seed(&self) -> u32 {
        if self.csum_v2or3() {
            super::csum::seed(&self.uuid)
        } else {
            0
        }
    }

    /// The checksum `raw` (an encoded superblock) should carry.
    pub fn checksum_of(raw: &[u8]) -> u32 {
        let raw = raw.get(..SIZE).unwrap_or(raw);
        crc32c_zeroed(!0, raw, layout::CHECKSUM.0..layout::CHECKSUM.end())
    }

    /// Stores the checksum of `raw` in it.
    pub fn set_checksum(raw: &mut [u8]) {
        let c = Self::checksum_of(raw);
        layout::CHECKSUM.set(raw, c);
    }

    /// Checks the superblock `raw` decoded to against the filesystem's
    /// block size and the journal's size in blocks (`total_blocks`, from
    /// the journal inode), and returns its log area.
    pub fn validate(&self, raw: &[u8], fs_block_size: u32, total_blocks: u64) -> Result<LogArea> {
        use feature::incompat as inc;
        if !self.header.has_magic() {
            return Err(corrupt(format!("bad magic {:#010x}", self.header.magic)));
        }
        if self.version() == 0 {
            return Err(corrupt(format!(
                "unknown superblock block type {}",
                self.header.block_type
            )));
        }
        if self.block_size != fs_block_size {
            return Err(corrupt(format!(
                "block size {} differs from the filesystem's {fs_block_size}",
                self.block_size
            )));
        }
        if u64::from(self.maxlen) > total_blocks {
            return Err(corrupt(format!(
                "{} blocks, but the journal holds only {total_blocks}",
                self.maxlen
            )));
        }
        if self.first == 0 || self.first >= self.maxlen {
            return Err(corrupt(format!(
                "log start block {} outside the journal ({} blocks)",
                self.first, self.maxlen
            )));
        }
        if u64::from(self.first) + u64::from(MIN_JOURNAL_BLOCKS) > u64::from(self.maxlen) + 1 {
            return Err(corrupt(format!(
                "log of blocks {}..{} is shorter than {MIN_JOURNAL_BLOCKS} blocks",
                self.first, self.maxlen
            )));
        }
        let unknown_in = self.incompat() & !feature::INCOMPAT_KNOWN;
        let unknown_ro = if self.version() >= 2 {
            self.feature_ro_compat & !feature::RO_COMPAT_KNOWN
        } else {
            0
        };
        if unknown_in != 0 || unknown_ro != 0 {
            return Err(Error::Unsupported(format!(
                "journal features incompat {unknown_in:#x}, ro_compat {unknown_ro:#x}"
            )));
        }
        if self.has_incompat(inc::CSUM_V2) && self.has_incompat(inc::CSUM_V3) {
            return Err(corrupt("both checksum v2 and v3"));
        }
        if self.csum_v2or3() && self.csum_v1() {
            return Err(corrupt("both checksum v1 and v2/v3"));
        }
        if self.csum_v2or3() {
            if self.checksum_type != checksum_type::CRC32C {
                return Err(corrupt(format!(
                    "unknown checksum type {}",
                    self.checksum_type
                )));
            }
            if Self::checksum_of(raw) != self.checksum {
                return Err(Error::checksum("journal superblock"));
            }
        }
        let mut last = self.maxlen;
        if self.has_incompat(inc::FAST_COMMIT) {
            let fc = if self.num_fc_blocks == 0 {
                DEFAULT_FAST_COMMIT_BLOCKS
            } else {
                self.num_fc_blocks
            };
            if let Some(l) = self
                .maxlen
                .checked_sub(fc)
                .filter(|l| *l > self.first && *l >= MIN_JOURNAL_BLOCKS)
            {
                last = l;
            }
        }
        let area = LogArea {
            first: self.first,
            last,
        };
        if self.start != 0 && !area.contains(self.start) {
            return Err(corrupt(format!(
                "log head {} outside the log area {}..{}",
                self.start, area.first, area.last
            )));
        }
        Ok(area)
    }
}
