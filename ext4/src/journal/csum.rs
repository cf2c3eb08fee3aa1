//! jbd2's checksums.
//!
//! - **v1** (`COMPAT_CHECKSUM`): one CRC-32 per transaction, the kernel's
//!   `crc32_be` (MSB-first, polynomial 0x04C11DB7, no inversion), chained
//!   from `!0` over every descriptor block and every logged data block in
//!   log order, stored in the commit block.
//! - **v2/v3** (`INCOMPAT_CSUM_V2`/`_V3`): raw crc32c (ext4's, see
//!   [`crate::csum::crc32c`]) seeded with crc32c(`!0`, journal UUID): over a
//!   descriptor or revoke block with its tail zeroed, over a commit block
//!   with `h_chksum[0]` zeroed, and per logged block over the big-endian
//!   transaction ID followed by the block as it sits in the journal (before
//!   un-escaping). v2 keeps the low 16 bits of a tag's checksum, v3 all 32.
//! - The journal superblock's own checksum (v2/v3) is crc32c(`!0`) over its
//!   1024 bytes with `s_checksum` zeroed, not the UUID seed.
//!
//! Every stored checksum is big-endian.

use super::be::Be32;
use crate::csum::{crc32c, crc32c_zeroed};

/// MSB-first CRC-32 polynomial (the kernel's `CRC32_POLY_BE`).
const CRC32_POLY_BE: u32 = 0x04C1_1DB7;

/// Table for the byte-at-a-time MSB-first CRC-32, built at compile time.
const CRC32_BE_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ CRC32_POLY_BE
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The kernel's `crc32_be(crc, data)`: MSB-first CRC-32 continuing from
/// `crc`, no inversion (v1 transaction checksums start at `!0`).
pub fn crc32_be(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        let idx = ((crc >> 24) ^ u32::from(b)) & 0xff;
        crc = (crc << 8) ^ CRC32_BE_TABLE.get(idx as usize).copied().unwrap_or(0);
    }
    crc
}

/// The v2/v3 checksum seed of a journal: crc32c(`!0`, its UUID).
pub fn seed(uuid: &[u8; 16]) -> u32 {
    crc32c(!0, uuid)
}

/// Size of the checksum tail at the end of descriptor and revoke blocks
/// (v2/v3): one big-endian u32.
pub const TAIL_SIZE: usize = 4;

/// Where a block's tail checksum sits.
fn tail_field(block: &[u8]) -> Be32 {
    Be32(block.len().saturating_sub(TAIL_SIZE))
}

/// The tail checksum a descriptor or revoke block should carry.
pub fn tail_checksum(seed: u32, block: &[u8]) -> u32 {
    let at = block.len().saturating_sub(TAIL_SIZE);
    crc32c_zeroed(seed, block, at..block.len())
}

/// Whether a descriptor or revoke block's tail checksum is right.
pub fn tail_ok(seed: u32, block: &[u8]) -> bool {
    tail_field(block).get(block) == tail_checksum(seed, block)
}

/// Stores the tail checksum of a descriptor or revoke block.
pub fn set_tail(seed: u32, block: &mut [u8]) {
    let c = tail_checksum(seed, block);
    tail_field(block).set(block, c);
}

/// The v2/v3 checksum of one logged block of transaction `sequence`, over
/// the block as it is stored in the journal (escaped).
pub fn block_tag_checksum(seed: u32, sequence: u32, data: &[u8]) -> u32 {
    crc32c(crc32c(seed, &sequence.to_be_bytes()), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_be_check_value() {
        // CRC-32/MPEG-2 (poly 0x04C11DB7, init !0, no reflection, no xorout)
        // of "123456789" is 0x0376E6E7: exactly crc32_be(!0, ..).
        assert_eq!(crc32_be(!0, b"123456789"), 0x0376_E6E7);
        // Incremental.
        assert_eq!(
            crc32_be(crc32_be(!0, b"1234"), b"56789"),
            crc32_be(!0, b"123456789")
        );
    }

    #[test]
    fn tail_checksum_covers_the_block_with_the_tail_zeroed() {
        let mut b: Vec<u8> = (0..64u8).collect();
        set_tail(0x1234_5678, &mut b);
        assert!(tail_ok(0x1234_5678, &b));
        assert!(!tail_ok(0x1234_5679, &b));
        let mut z = b.clone();
        z[60..].fill(0);
        assert_eq!(Be32(60).get(&b), crc32c(0x1234_5678, &z));
        b[3] ^= 1;
        assert!(!tail_ok(0x1234_5678, &b));
    }

    #[test]
    fn block_tag_checksum_chains_sequence_then_data() {
        let data = [7u8; 32];
        let mut joined = 5u32.to_be_bytes().to_vec();
        joined.extend_from_slice(&data);
        assert_eq!(block_tag_checksum(99, 5, &data), crc32c(99, &joined));
    }
}
