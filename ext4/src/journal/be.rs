//! Big-endian fields. jbd2 stores every number big-endian, unlike the rest
//! of ext4 (little-endian, `crate::bytes`). A journal structure's layout is
//! a list of these field descriptors (offset and width); the same
//! descriptor decodes the field and encodes it, so a structure cannot be
//! read at one offset and written at another.
//!
//! Invariant: never panics. `get` on a buffer too short yields 0 and `set`
//! writes nothing; decoders check the buffer length against the
//! structure's size before reading any field, so neither fallback is
//! reached on a checked buffer.

/// A big-endian u16 at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Be16(pub usize);

/// A big-endian u32 at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Be32(pub usize);

/// A big-endian u64 at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Be64(pub usize);

/// `N` raw bytes at a byte offset (UUIDs, byte-sized fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<const N: usize>(pub usize);

fn slice(b: &[u8], off: usize, n: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(n)?)
}

fn slice_mut(b: &mut [u8], off: usize, n: usize) -> Option<&mut [u8]> {
    b.get_mut(off..off.checked_add(n)?)
}

macro_rules! be_field {
    ($name:ident, $ty:ty, $n:expr) => {
        impl $name {
            /// Byte offset just past the field.
            pub const fn end(self) -> usize {
                self.0 + $n
            }
            /// Reads the field (0 when `b` is too short).
            pub fn get(self, b: &[u8]) -> $ty {
                slice(b, self.0, $n)
                    .and_then(|s| s.try_into().ok())
                    .map(<$ty>::from_be_bytes)
                    .unwrap_or(0)
            }
            /// Writes the field (nothing when `b` is too short).
            pub fn set(self, b: &mut [u8], v: $ty) {
                if let Some(s) = slice_mut(b, self.0, $n) {
                    s.copy_from_slice(&v.to_be_bytes());
                }
            }
        }
    };
}

be_field!(Be16, u16, 2);
be_field!(Be32, u32, 4);
be_field!(Be64, u64, 8);

impl<const N: usize> Raw<N> {
    /// Byte offset just past the field.
    pub const fn end(self) -> usize {
        self.0 + N
    }
    /// Reads the bytes (zeros when `b` is too short).
    pub fn get(self, b: &[u8]) -> [u8; N] {
        slice(b, self.0, N)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }
    /// Writes the bytes (nothing when `b` is too short).
    pub fn set(self, b: &mut [u8], v: &[u8; N]) {
        if let Some(s) = slice_mut(b, self.0, N) {
            s.copy_from_slice(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_never_panic() {
        let mut b = [0u8; 16];
        Be16(0).set(&mut b, 0x0102);
        Be32(2).set(&mut b, 0x0304_0506);
        Be64(6).set(&mut b, 0x0708_090A_0B0C_0D0E);
        Raw::<2>(14).set(&mut b, &[0xF0, 0xF1]);
        assert_eq!(
            &b[..],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xF0, 0xF1]
        );
        assert_eq!(Be16(0).get(&b), 0x0102);
        assert_eq!(Be32(2).get(&b), 0x0304_0506);
        assert_eq!(Be64(6).get(&b), 0x0708_090A_0B0C_0D0E);
        assert_eq!(Raw::<2>(14).get(&b), [0xF0, 0xF1]);
        // Out of range: 0 / zeros on read, nothing written.
        assert_eq!(Be32(14).get(&b), 0);
        assert_eq!(Be64(usize::MAX).get(&b), 0);
        assert_eq!(Raw::<4>(15).get(&b), [0; 4]);
        let before = b;
        Be32(13).set(&mut b, 0xFFFF_FFFF);
        Be16(usize::MAX).set(&mut b, 1);
        assert_eq!(b, before);
        assert_eq!(Be32(4).end(), 8);
    }
}
