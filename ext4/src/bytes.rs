//! Little-endian field readers for on-disk structures.
//!
//! Invariant: these never panic. A read past the end of the slice yields
//! `None` from the `get_*` forms; the plain forms are for buffers whose
//! length the caller has already checked and return 0 when out of range
//! (a structure shorter than its fixed layout is rejected before any field
//! is read, so the 0 fallback is never observed on checked buffers).

/// The `N` bytes at `off`, if they lie inside `b`.
pub fn array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    b.get(off..end)?.try_into().ok()
}

/// Little-endian u16 at `off`, `None` past the end.
pub fn get_le16(b: &[u8], off: usize) -> Option<u16> {
    array::<2>(b, off).map(u16::from_le_bytes)
}

/// Little-endian u32 at `off`, `None` past the end.
pub fn get_le32(b: &[u8], off: usize) -> Option<u32> {
    array::<4>(b, off).map(u32::from_le_bytes)
}

/// Little-endian u64 at `off`, `None` past the end.
pub fn get_le64(b: &[u8], off: usize) -> Option<u64> {
    array::<8>(b, off).map(u64::from_le_bytes)
}

/// Little-endian u16 at `off` of a length-checked buffer (0 past the end).
pub fn le16(b: &[u8], off: usize) -> u16 {
    get_le16(b, off).unwrap_or(0)
}

/// Little-endian u32 at `off` of a length-checked buffer (0 past the end).
pub fn le32(b: &[u8], off: usize) -> u32 {
    get_le32(b, off).unwrap_or(0)
}

/// Little-endian u64 at `off` of a length-checked buffer (0 past the end).
pub fn le64(b: &[u8], off: usize) -> u64 {
    get_le64(b, off).unwrap_or(0)
}

/// Byte at `off` of a length-checked buffer (0 past the end).
pub fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le16(&b, 0), 0x0201);
        assert_eq!(le32(&b, 4), 0x0807_0605);
        assert_eq!(le64(&b, 0), 0x0807_0605_0403_0201);
        assert_eq!(get_le32(&b, 5), None);
        assert_eq!(get_le16(&b, usize::MAX), None);
        assert_eq!(le32(&b, 6), 0);
        assert_eq!(u8_at(&b, 8), 0);
    }
}
