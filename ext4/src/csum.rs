//! Checksums used by ext4 metadata: crc32c (metadata_csum) and crc16
//! (the older gdt_csum feature).
//!
//! ext4's crc32c is the "raw" Castagnoli CRC: no inversion on entry or exit,
//! the caller passes the running value (`!0` to start, or a seed). The
//! `crc32c` crate computes the standard (inverted) form, so
//! `raw(c, d) = !standard_append(!c, d)`.
//!
//! The crc16 is the reflected ANSI CRC-16 (polynomial 0x8005, reflected
//! 0xA001), again without inversion; gdt_csum starts it at `!0`.

/// Polynomial of the reflected CRC-16 (ANSI 0x8005, bit-reversed).
const CRC16_POLY_REFLECTED: u16 = 0xA001;

/// Table for the byte-at-a-time CRC-16, built at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC16_POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Raw crc32c of `data` continuing from `crc` (ext4's `ext4_chksum`).
pub fn crc32c(crc: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!crc, data)
}

/// Raw crc32c of `data` continuing from `crc`, with `zeroed` (a range of
/// `data`, relative to its start) treated as zero bytes: how every ext4
/// checksum covers its own structure with the checksum field blanked.
/// A `zeroed` range past the end of `data` is clipped.
pub fn crc32c_zeroed(crc: u32, data: &[u8], zeroed: std::ops::Range<usize>) -> u32 {
    let start = zeroed.start.min(data.len());
    let end = zeroed.end.clamp(start, data.len());
    let (head, rest) = data.split_at(start);
    let tail = rest.get(end - start..).unwrap_or(&[]);
    let zeros = [0u8; 8];
    let mut c = crc32c(crc, head);
    let mut n = end - start;
    while n > 0 {
        let k = n.min(zeros.len());
        c = crc32c(c, zeros.get(..k).unwrap_or(&[]));
        n -= k;
    }
    crc32c(c, tail)
}

/// Raw CRC-16 (reflected 0x8005) of `data` continuing from `crc`.
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        let idx = usize::from((crc ^ u16::from(b)) & 0xff);
        crc = (crc >> 8) ^ CRC16_TABLE.get(idx).copied().unwrap_or(0);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_standard_check_value() {
        // The standard CRC-32C check value of "123456789" is 0xE3069283;
        // the raw form with !0 start is its complement.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn crc32c_is_incremental() {
        let whole = crc32c(0x1234, b"hello world");
        let parts = crc32c(crc32c(0x1234, b"hello "), b"world");
        assert_eq!(whole, parts);
    }

    #[test]
    fn crc32c_zeroed_matches_explicit_zeroing() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut z = data.clone();
        z[10..30].fill(0);
        assert_eq!(crc32c_zeroed(7, &data, 10..30), crc32c(7, &z));
        // Clipped range.
        let mut z2 = data.clone();
        z2[98..].fill(0);
        assert_eq!(crc32c_zeroed(7, &data, 98..200), crc32c(7, &z2));
        assert_eq!(crc32c_zeroed(7, &data, 200..300), crc32c(7, &data));
    }

    #[test]
    fn crc16_check_value() {
        // CRC-16/ARC of "123456789" (init 0, no xorout) is 0xBB3D;
        // CRC-16/MODBUS (init 0xFFFF) is 0x4B37.
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
        assert_eq!(crc16(0xFFFF, b"123456789"), 0x4B37);
    }
}
