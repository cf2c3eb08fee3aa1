//! Descriptor blocks: a header, then one tag per logged filesystem block
//! (the logged blocks follow the descriptor in the log, in tag order), then,
//! with v2/v3 checksums, a 4-byte checksum tail.
//!
//! Tags come in four sizes, decided by the journal's features
//! (`journal_tag_bytes`): the tag3 layout (16 bytes, v3 checksums) and the
//! classic layout of 8 bytes, 12 with 64-bit block numbers, each 2 bytes
//! longer with v2 checksums. A tag without `SAME_UUID` is followed by a
//! 16-byte UUID; the last tag carries `LAST_TAG`.
//!
//! Decoding follows the kernel's walk exactly: a tag is read while its
//! fixed part fits before the tail; a UUID is skipped whether or not it
//! fits; the walk stops after `LAST_TAG`. [`DescriptorBlock::encode_into`]
//! writes back exactly the bytes decode read.

use super::be::{Be16, Be32, Raw};
use super::csum::TAIL_SIZE;
use super::header::{BlockHeader, HEADER_SIZE};
use crate::error::{Error, Result};
use crate::num::Pblk;

/// Tag flags (`t_flags`).
pub mod tag_flag {
    /// The logged block started with the jbd2 magic, zeroed in the log.
    pub const ESCAPE: u32 = 0x1;
    /// No UUID follows this tag (same as the previous one).
    pub const SAME_UUID: u32 = 0x2;
    /// Block deleted by this transaction (never used by replay).
    pub const DELETED: u32 = 0x4;
    /// The descriptor's last tag.
    pub const LAST_TAG: u32 = 0x8;
}

/// Bytes of the UUID that follows a tag without `SAME_UUID`.
pub const UUID_SIZE: usize = 16;

/// Which per-block checksum a tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagCsum {
    /// None (no checksums, or v1 transaction checksums).
    None,
    /// v2: the low 16 bits of the block checksum, classic layout.
    V2,
    /// v3: the full 32 bits, tag3 layout.
    V3,
}

/// The tag layout of a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagFormat {
    /// Per-block checksum kind.
    pub csum: TagCsum,
    /// 64-bit block numbers (`t_blocknr_high` is read).
    pub bit64: bool,
}

// Classic layout (journal_block_tag_t).
const T_BLOCKNR: Be32 = Be32(0x0);
const T_CHECKSUM16: Be16 = Be16(0x4);
const T_FLAGS16: Be16 = Be16(0x6);
const T_BLOCKNR_HIGH: Be32 = Be32(0x8);
// tag3 layout (journal_block_tag3_t).
const T3_FLAGS: Be32 = Be32(0x4);
const T3_CHECKSUM: Be32 = Be32(0xC);

impl TagFormat {
    /// Bytes per tag, UUID not counted (`journal_tag_bytes`).
    pub fn size(&self) -> usize {
        match self.csum {
            TagCsum::V3 => T3_CHECKSUM.end(),
            TagCsum::V2 if self.bit64 => T_BLOCKNR_HIGH.end() + 2,
            TagCsum::V2 => T_FLAGS16.end() + 2,
            TagCsum::None if self.bit64 => T_BLOCKNR_HIGH.end(),
            TagCsum::None => T_FLAGS16.end(),
        }
    }

    /// Whether the layout has a `t_blocknr_high` field.
    fn has_high(&self) -> bool {
        self.csum == TagCsum::V3 || self.bit64
    }

    /// Whether descriptor (and revoke) blocks end with a checksum tail.
    pub fn has_tail(&self) -> bool {
        self.csum != TagCsum::None
    }

    /// Bytes of a `block_size` descriptor block that tags may use.
    pub fn tag_space(&self, block_size: usize) -> usize {
        let tail = if self.has_tail() { TAIL_SIZE } else { 0 };
        block_size.saturating_sub(tail)
    }

    /// How many tags fit in a `block_size` descriptor block when only the
    /// first carries a UUID (what jbd2 writes).
    pub fn capacity(&self, block_size: usize) -> usize {
        let space = self.tag_space(block_size).saturating_sub(HEADER_SIZE);
        let t = self.size();
        if space < t + UUID_SIZE {
            return 0;
        }
        1 + (space - t - UUID_SIZE) / t
    }
}

/// One descriptor tag, every field as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTag {
    /// `t_blocknr`: low 32 bits of the filesystem block.
    pub blocknr: u32,
    /// `t_blocknr_high` (0 in layouts without the field; ignored without 64bit).
    pub blocknr_high: u32,
    /// `t_flags` ([`tag_flag`]); 16 bits in the classic layout.
    pub flags: u32,
    /// `t_checksum`: 16 bits in the classic layout, 32 in tag3.
    pub checksum: u32,
    /// The UUID after the tag, when `SAME_UUID` is clear and it lies in the block.
    pub uuid: Option<[u8; UUID_SIZE]>,
}

impl BlockTag {
    /// A tag for filesystem block `block` (split for the format) with `flags`.
    pub fn new(fmt: TagFormat, block: Pblk, flags: u32) -> BlockTag {
        let block = block.0;
        BlockTag {
            blocknr: block as u32,
            blocknr_high: if fmt.has_high() {
                (block >> 32) as u32
            } else {
                0
            },
            flags,
            checksum: 0,
            uuid: None,
        }
    }

    /// The filesystem block this tag logs (`read_tag_block`).
    pub fn target(&self, fmt: TagFormat) -> Pblk {
        let lo = u64::from(self.blocknr);
        Pblk(if fmt.bit64 {
            lo | (u64::from(self.blocknr_high) << 32)
        } else {
            lo
        })
    }

    /// Whether a flag is set. The kernel reads the flags as a big-endian
    /// 16-bit word at offset 6 in every layout, which in tag3 is the low
    /// half of the 32-bit field.
    pub fn has(&self, flag: u32) -> bool {
        self.flags & 0xffff & flag != 0
    }

    /// Whether the stored checksum matches `csum` (a full 32-bit block
    /// checksum; v2 keeps its low 16 bits). Always true without tag checksums.
    pub fn checksum_matches(&self, fmt: TagFormat, csum: u32) -> bool {
        match fmt.csum {
            TagCsum::None => true,
            TagCsum::V2 => self.checksum == csum & 0xffff,
            TagCsum::V3 => self.checksum == csum,
        }
    }

    /// Stores `csum` as the format keeps it.
    pub fn set_checksum(&mut self, fmt: TagFormat, csum: u32) {
        self.checksum = match fmt.csum {
            TagCsum::None => 0,
            TagCsum::V2 => csum & 0xffff,
            TagCsum::V3 => csum,
        };
    }

    /// Decodes the fixed part of a tag from the start of `b` (`fmt.size()` bytes).
    fn decode(fmt: TagFormat, b: &[u8]) -> BlockTag {
        let (flags, checksum) = match fmt.csum {
            TagCsum::V3 => (T3_FLAGS.get(b), T3_CHECKSUM.get(b)),
            _ => (u32::from(T_FLAGS16.get(b)), u32::from(T_CHECKSUM16.get(b))),
        };
        BlockTag {
            blocknr: T_BLOCKNR.get(b),
            blocknr_high: if fmt.has_high() {
                T_BLOCKNR_HIGH.get(b)
            } else {
                0
            },
            flags,
            checksum,
            uuid: None,
        }
    }

    /// Encodes the fixed part of a tag into the start of `b`.
    fn encode(&self, fmt: TagFormat, b: &mut [u8]) {
        T_BLOCKNR.set(b, self.blocknr);
        match fmt.csum {
            TagCsum::V3 => {
                T3_FLAGS.set(b, self.flags);
                T3_CHECKSUM.set(b, self.checksum);
            }
            _ => {
                T_FLAGS16.set(b, self.flags as u16);
                T_CHECKSUM16.set(b, self.checksum as u16);
            }
        }
        if fmt.has_high() {
            T_BLOCKNR_HIGH.set(b, self.blocknr_high);
        }
    }
}

/// A descriptor block: its header and its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorBlock {
    /// Header (`DESCRIPTOR`, the transaction ID).
    pub header: BlockHeader,
    /// The tags, in log order.
    pub tags: Vec<BlockTag>,
}

impl DescriptorBlock {
    /// Decodes the tags of descriptor block `b` (a whole journal block) as
    /// the kernel walks them (`count_tags`, `do_one_pass`).
    pub fn decode(fmt: TagFormat, b: &[u8]) -> DescriptorBlock {
        let header = BlockHeader::decode(b).unwrap_or(BlockHeader {
            magic: 0,
            block_type: 0,
            sequence: 0,
        });
        let mut tags = Vec::new();
        let limit = fmt.tag_space(b.len());
        let size = fmt.size();
        let mut off = HEADER_SIZE;
        // Each tag advances `off` by at least `size` (> 0): bounded by the block.
        while off + size <= limit {
            let mut tag = BlockTag::decode(fmt, b.get(off..).unwrap_or(&[]));
            off += size;
            if !tag.has(tag_flag::SAME_UUID) {
                let uuid = Raw::<UUID_SIZE>(off);
                tag.uuid = (uuid.end() <= limit).then(|| uuid.get(b));
                off += UUID_SIZE;
            }
            let last = tag.has(tag_flag::LAST_TAG);
            tags.push(tag);
            if last {
                break;
            }
        }
        DescriptorBlock { header, tags }
    }

    /// Writes the header and tags into `b` where [`DescriptorBlock::decode`]
    /// reads them, leaving other bytes alone; tags that do not fit are not
    /// written (see [`DescriptorBlock::encode`] for the checked form).
    pub fn encode_into(&self, fmt: TagFormat, b: &mut [u8]) {
        self.header.encode(b);
        let limit = fmt.tag_space(b.len());
        let size = fmt.size();
        let mut off = HEADER_SIZE;
        for tag in &self.tags {
            if off + size > limit {
                break;
            }
            if let Some(dst) = b.get_mut(off..) {
                tag.encode(fmt, dst);
            }
            off += size;
            if !tag.has(tag_flag::SAME_UUID) {
                if let Some(u) = &tag.uuid {
                    if Raw::<UUID_SIZE>(off).end() <= limit {
                        Raw::<UUID_SIZE>(off).set(b, u);
                    }
                }
                off += UUID_SIZE;
            }
        }
    }

    /// A fresh `block_size` descriptor block holding these tags (checksum
    /// tail left zero: see [`super::csum::set_tail`]). Refuses tags that do
    /// not fit, a last tag without `LAST_TAG` while room remains (it would
    /// not decode back), or a `LAST_TAG` before the end.
    pub fn encode(&self, fmt: TagFormat, block_size: usize) -> Result<Vec<u8>> {
        if self.tags.is_empty() {
            return Err(Error::Invalid("a descriptor block needs a tag".into()));
        }
        let limit = fmt.tag_space(block_size);
        let size = fmt.size();
        let mut off = HEADER_SIZE;
        for (i, tag) in self.tags.iter().enumerate() {
            let is_last = i + 1 == self.tags.len();
            if off + size > limit {
                return Err(Error::Invalid(format!(
                    "{} tags do not fit in a {block_size}-byte descriptor block",
                    self.tags.len()
                )));
            }
            if tag.has(tag_flag::LAST_TAG) != is_last {
                return Err(Error::Invalid(format!(
                    "tag {i} of {}: LAST_TAG must mark exactly the last tag",
                    self.tags.len()
                )));
            }
            off += size;
            if !tag.has(tag_flag::SAME_UUID) {
                off += UUID_SIZE;
            }
        }
        let mut b = vec![0u8; block_size];
        self.encode_into(fmt, &mut b);
        Ok(b)
    }
}
