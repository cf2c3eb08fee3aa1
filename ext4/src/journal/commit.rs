//! Commit blocks (`struct commit_header`): the header, a checksum type and
//! size, eight 32-bit checksum words, and the commit time.
//!
//! - v1 checksums: `h_chksum_type` = CRC32, `h_chksum_size` = 4 and
//!   `h_chksum[0]` the transaction's crc32_be ([`super::csum::crc32_be`]);
//!   type, size and checksum all 0 mean "not checksummed" (a kernel
//!   without `journal_checksum` wrote it).
//! - v2/v3: type and size 0, `h_chksum[0]` = crc32c(seed) over the whole
//!   block with `h_chksum[0]` zeroed. A commit block whose checksum only
//!   matches over its first [`COMMIT_STRUCT_SIZE`] bytes with the rest
//!   zeroed was torn after its header (the kernel accepts it as such,
//!   `jbd2_commit_block_csum_verify_partial`).

use super::be::{Be32, Be64, Raw};
use super::header::BlockHeader;
use crate::csum::crc32c_zeroed;

const H_CHKSUM_TYPE: Raw<1> = Raw(0x0C);
const H_CHKSUM_SIZE: Raw<1> = Raw(0x0D);
const H_CHKSUM: usize = 0x10;
/// Checksum words (`JBD2_CHECKSUM_BYTES`).
pub const CHECKSUM_WORDS: usize = 8;
const H_COMMIT_SEC: Be64 = Be64(0x30);
const H_COMMIT_NSEC: Be32 = Be32(0x38);
/// `sizeof(struct commit_header)` (60 bytes of fields, padded to 8).
pub const COMMIT_STRUCT_SIZE: usize = 64;
/// `h_chksum_size` of a v1 CRC-32.
pub const CRC32_CHKSUM_SIZE: u8 = 4;

fn chksum_word(i: usize) -> Be32 {
    Be32(H_CHKSUM + 4 * i)
}

/// A decoded commit block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitBlock {
    /// Header (`COMMIT`, the transaction ID).
    pub header: BlockHeader,
    /// `h_chksum_type`.
    pub chksum_type: u8,
    /// `h_chksum_size`.
    pub chksum_size: u8,
    /// `h_chksum`.
    pub chksum: [u32; CHECKSUM_WORDS],
    /// `h_commit_sec`.
    pub commit_sec: u64,
    /// `h_commit_nsec`.
    pub commit_nsec: u32,
}

/// What a v2/v3 commit checksum says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitCsum {
    /// The checksum matches.
    Good,
    /// It matches the header alone with the rest of the block zeroed: a
    /// commit block torn after its first sector.
    Partial,
    /// It does not match.
    Bad,
}

impl CommitBlock {
    /// A commit block for transaction `sequence` committed at `sec.nsec`.
    pub fn new(sequence: u32, sec: u64, nsec: u32) -> CommitBlock {
        CommitBlock {
            header: BlockHeader::new(super::header::block_type::COMMIT, sequence),
            chksum_type: 0,
            chksum_size: 0,
            chksum: [0; CHECKSUM_WORDS],
            commit_sec: sec,
            commit_nsec: nsec,
        }
    }

    /// Decodes the start of `b` (`None` when shorter than the structure).
    pub fn decode(b: &[u8]) -> Option<CommitBlock> {
        if b.len() < COMMIT_STRUCT_SIZE {
            return None;
        }
        let mut chksum = [0u32; CHECKSUM_WORDS];
        for (i, c) in chksum.iter_mut().enumerate() {
            *c = chksum_word(i).get(b);
        }
        Some(CommitBlock {
            header: BlockHeader::decode(b)?,
            chksum_type: H_CHKSUM_TYPE.get(b)[0],
            chksum_size: H_CHKSUM_SIZE.get(b)[0],
            chksum,
            commit_sec: H_COMMIT_SEC.get(b),
            commit_nsec: H_COMMIT_NSEC.get(b),
        })
    }

    /// Writes the fields into `b`, leaving padding and the rest of the block alone.
    pub fn encode_into(&self, b: &mut [u8]) {
        self.header.encode(b);
        H_CHKSUM_TYPE.set(b, &[self.chksum_type]);
        H_CHKSUM_SIZE.set(b, &[self.chksum_size]);
        for (i, c) in self.chksum.iter().enumerate() {
            chksum_word(i).set(b, *c);
        }
        H_COMMIT_SEC.set(b, self.commit_sec);
        H_COMMIT_NSEC.set(b, self.commit_nsec);
    }

    /// A fresh `block_size` commit block (for v2/v3, then [`set_csum`]).
    pub fn encode(&self, block_size: usize) -> Vec<u8> {
        let mut b = vec![0u8; block_size.max(COMMIT_STRUCT_SIZE)];
        self.encode_into(&mut b);
        b
    }
}

/// The v2/v3 checksum of commit block `b`.
pub fn csum(seed: u32, b: &[u8]) -> u32 {
    crc32c_zeroed(seed, b, H_CHKSUM..H_CHKSUM + 4)
}

/// Stores the v2/v3 checksum of commit block `b` in `h_chksum[0]`.
pub fn set_csum(seed: u32, b: &mut [u8]) {
    let c = csum(seed, b);
    chksum_word(0).set(b, c);
}

/// Checks the v2/v3 checksum of commit block `b`.
pub fn verify_csum(seed: u32, b: &[u8]) -> CommitCsum {
    let stored = chksum_word(0).get(b);
    if csum(seed, b) == stored {
        return CommitCsum::Good;
    }
    let mut head = vec![0u8; b.len()];
    if let (Some(dst), Some(src)) = (
        head.get_mut(..COMMIT_STRUCT_SIZE),
        b.get(..COMMIT_STRUCT_SIZE),
    ) {
        dst.copy_from_slice(src);
    }
    if csum(seed, &head) == stored {
        CommitCsum::Partial
    } else {
        CommitCsum::Bad
    }
}
