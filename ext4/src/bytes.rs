//! Little-endian field readers and writers for on-disk structures.
//!
//! Invariant: these never panic. A read past the end of the slice yields
//! `None` from the `get_*` forms; the plain forms are for buffers whose
//! length the caller has already checked and return 0 when out of range
//! (a structure shorter than its fixed layout is rejected before any field
//! is read, so the 0 fallback is never observed on checked buffers).
//! Writers (`put_*`) fail (`None`) past the end and then write nothing, so
//! an encoder can `?` them and report a buffer too short instead of
//! writing half a field.

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

/// Writes the bytes of `v` at `off`; `None` (nothing written) past the end.
pub fn put_bytes(b: &mut [u8], off: usize, v: &[u8]) -> Option<()> {
    let end = off.checked_add(v.len())?;
    b.get_mut(off..end)?.copy_from_slice(v);
    Some(())
}

/// Writes a little-endian u16 at `off`; `None` past the end.
pub fn put_le16(b: &mut [u8], off: usize, v: u16) -> Option<()> {
    put_bytes(b, off, &v.to_le_bytes())
}

/// Writes a little-endian u32 at `off`; `None` past the end.
pub fn put_le32(b: &mut [u8], off: usize, v: u32) -> Option<()> {
    put_bytes(b, off, &v.to_le_bytes())
}

/// Writes a little-endian u64 at `off`; `None` past the end.
pub fn put_le64(b: &mut [u8], off: usize, v: u64) -> Option<()> {
    put_bytes(b, off, &v.to_le_bytes())
}

/// Writes one byte at `off`; `None` past the end.
pub fn put_u8(b: &mut [u8], off: usize, v: u8) -> Option<()> {
    *b.get_mut(off)? = v;
    Some(())
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

    #[test]
    fn writes_round_trip_and_fail_whole_past_the_end() {
        let mut b = [0u8; 8];
        assert_eq!(put_le16(&mut b, 0, 0x0201), Some(()));
        assert_eq!(put_le32(&mut b, 2, 0x0605_0403), Some(()));
        assert_eq!(put_u8(&mut b, 6, 7), Some(()));
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 0]);
        // A field straddling the end writes nothing.
        assert_eq!(put_le32(&mut b, 6, u32::MAX), None);
        assert_eq!(put_le64(&mut b, usize::MAX, 1), None);
        assert_eq!(b[6..], [7, 0]);
        assert_eq!(put_le64(&mut b, 0, u64::MAX), Some(()));
        assert_eq!(le64(&b, 0), u64::MAX);
    }
}
