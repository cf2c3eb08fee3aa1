//! The 12-byte header every jbd2 metadata block starts with (superblock,
//! descriptor, commit, revoke): magic, block type, transaction ID.
//!
//! A logged data block carries no header; one whose first four bytes
//! happen to equal the magic is stored with them zeroed and its tag marked
//! `ESCAPE` (see [`super::descriptor`]), so that the log walk never takes
//! data for a header.

use super::be::Be32;

/// `h_magic` of every jbd2 metadata block.
pub const JBD2_MAGIC: u32 = 0xC03B_3998;

/// `h_blocktype` values.
pub mod block_type {
    /// A descriptor block: tags naming the filesystem blocks that follow it.
    pub const DESCRIPTOR: u32 = 1;
    /// A commit block: the transaction is complete.
    pub const COMMIT: u32 = 2;
    /// A version-1 journal superblock (no feature fields).
    pub const SUPERBLOCK_V1: u32 = 3;
    /// A version-2 journal superblock.
    pub const SUPERBLOCK_V2: u32 = 4;
    /// A revoke block: filesystem blocks not to replay from older transactions.
    pub const REVOKE: u32 = 5;
}

const H_MAGIC: Be32 = Be32(0x0);
const H_BLOCKTYPE: Be32 = Be32(0x4);
const H_SEQUENCE: Be32 = Be32(0x8);

/// Size of the header.
pub const HEADER_SIZE: usize = H_SEQUENCE.end();

/// `journal_header_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// `h_magic` ([`JBD2_MAGIC`] for a real header).
    pub magic: u32,
    /// `h_blocktype` ([`block_type`]).
    pub block_type: u32,
    /// `h_sequence`: the transaction ID the block belongs to.
    pub sequence: u32,
}

impl BlockHeader {
    /// A header of `block_type` for transaction `sequence`.
    pub fn new(block_type: u32, sequence: u32) -> BlockHeader {
        BlockHeader {
            magic: JBD2_MAGIC,
            block_type,
            sequence,
        }
    }

    /// Decodes the header at the start of `b` (`None` when `b` is shorter).
    pub fn decode(b: &[u8]) -> Option<BlockHeader> {
        if b.len() < HEADER_SIZE {
            return None;
        }
        Some(BlockHeader {
            magic: H_MAGIC.get(b),
            block_type: H_BLOCKTYPE.get(b),
            sequence: H_SEQUENCE.get(b),
        })
    }

    /// Encodes the header into the start of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        H_MAGIC.set(b, self.magic);
        H_BLOCKTYPE.set(b, self.block_type);
        H_SEQUENCE.set(b, self.sequence);
    }

    /// Whether the magic is jbd2's.
    pub fn has_magic(&self) -> bool {
        self.magic == JBD2_MAGIC
    }
}

/// Whether a block starts with the jbd2 magic (a data block that does must
/// be escaped before it is logged).
pub fn starts_with_magic(block: &[u8]) -> bool {
    block.len() >= 4 && H_MAGIC.get(block) == JBD2_MAGIC
}

/// Restores the magic an escaped block had in its first four bytes.
pub fn unescape(block: &mut [u8]) {
    H_MAGIC.set(block, JBD2_MAGIC);
}

/// Zeroes the first four bytes of a block that starts with the magic, as
/// jbd2 does before logging it; returns whether it did (the tag then
/// carries `ESCAPE`).
pub fn escape(block: &mut [u8]) -> bool {
    if starts_with_magic(block) {
        H_MAGIC.set(block, 0);
        true
    } else {
        false
    }
}
