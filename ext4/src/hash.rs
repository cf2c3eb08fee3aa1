//! Directory-index name hashes (htree): legacy (`dx_hack_hash`), half-MD4 and
//! TEA, each in a signed-char and an unsigned-char flavour.
//!
//! The on-disk dx root names one of legacy/half_md4/tea; the superblock's
//! `s_flags` says whether name bytes were treated as signed or unsigned chars
//! when the directory was built (it matters only for bytes ≥ 0x80). The seed
//! is the superblock's `s_hash_seed`; an all-zero seed means "use the
//! algorithm's default starting state".
//!
//! Invariants: pure functions over bytes; never panic for any input (all
//! arithmetic is wrapping, as the format defines it); the returned major hash
//! always has its low bit clear (the low bit marks collision continuation in
//! index entries) and never equals the reserved end-of-directory value.
//!
//! Written from the ext4 format description (kernel
//! Documentation/filesystems/ext4/directory.rst) and checked against
//! `debugfs dx_hash` in the tests.

/// `s_def_hash_version` / dx root `hash_version`: legacy.
pub const DX_HASH_LEGACY: u8 = 0;
/// half-MD4.
pub const DX_HASH_HALF_MD4: u8 = 1;
/// TEA.
pub const DX_HASH_TEA: u8 = 2;
/// Legacy, unsigned chars (in-memory value: on-disk value + 3).
pub const DX_HASH_LEGACY_UNSIGNED: u8 = 3;
/// half-MD4, unsigned chars.
pub const DX_HASH_HALF_MD4_UNSIGNED: u8 = 4;
/// TEA, unsigned chars.
pub const DX_HASH_TEA_UNSIGNED: u8 = 5;
/// Offset between a signed version and its unsigned twin.
pub const DX_HASH_UNSIGNED_DELTA: u8 = 3;

/// The major hash value reserved for "end of directory" in 32-bit cookies
/// (`0x7fffffff << 1`); a name hashing to it is moved one step down.
const HTREE_EOF_32BIT_SHIFTED: u32 = 0x7fff_ffff << 1;

/// Default starting state of half-MD4 and TEA when the seed is zero (the MD4
/// initial values).
const DEFAULT_STATE: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The hash of a name: `major` orders the index, `minor` breaks ties
/// (unused by lookups, reported for completeness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameHash {
    /// Major hash, low bit clear.
    pub major: u32,
    /// Minor hash (0 for legacy).
    pub minor: u32,
}

/// Error: the hash version is not one this engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown directory hash version {0}")]
pub struct UnknownHash(pub u8);

/// A name byte widened as the filesystem's creator's C `char` would be.
fn widen(b: u8, signed: bool) -> u32 {
    if signed {
        b as i8 as i32 as u32
    } else {
        u32::from(b)
    }
}

/// The legacy "hack" hash: a simple multiplicative mix over the name bytes.
fn legacy(name: &[u8], signed: bool) -> u32 {
    let (mut h0, mut h1): (u32, u32) = (0x12a3_fe2d, 0x37ab_e8f9);
    for &b in name {
        let mut h = h1.wrapping_add(h0 ^ widen(b, signed).wrapping_mul(7_152_373));
        if h & 0x8000_0000 != 0 {
            h = h.wrapping_sub(0x7fff_ffff);
        }
        h1 = h0;
        h0 = h;
    }
    h0 << 1
}

/// Packs up to `out.len() * 4` name bytes into big-endian-ish words the way
/// the format defines: each word starts from a padding pattern derived from
/// the (remaining) length, bytes are shifted in from the right, and words past
/// the name's end are the padding pattern itself.
fn pack_words(msg: &[u8], signed: bool, out: &mut [u32]) {
    // The pattern is built from the length of the remaining message.
    let len = msg.len() as u32;
    let mut pad = len | (len << 8);
    pad |= pad << 16;
    let take = msg.len().min(out.len() * 4);
    let mut val = pad;
    let mut idx = 0;
    for (i, &b) in msg[..take].iter().enumerate() {
        val = widen(b, signed).wrapping_add(val << 8);
        if i % 4 == 3 {
            out[idx] = val;
            idx += 1;
            val = pad;
        }
    }
    if idx < out.len() {
        out[idx] = val;
        idx += 1;
    }
    for w in &mut out[idx..] {
        *w = pad;
    }
}

/// One half-MD4 compression of 8 input words into the 4-word state.
fn half_md4_round(state: &mut [u32; 4], x: &[u32; 8]) {
    fn f(x: u32, y: u32, z: u32) -> u32 {
        z ^ (x & (y ^ z))
    }
    fn g(x: u32, y: u32, z: u32) -> u32 {
        (x & y).wrapping_add((x ^ y) & z)
    }
    fn h(x: u32, y: u32, z: u32) -> u32 {
        x ^ y ^ z
    }
    const K2: u32 = 0x5a82_7999;
    const K3: u32 = 0x6ed9_eba1;
    let [mut a, mut b, mut c, mut d] = *state;
    // (function, word index, constant, rotation) for each step; the
    // registers rotate a→d→c→b between steps.
    type Mix = fn(u32, u32, u32) -> u32;
    let steps: [(Mix, usize, u32, u32); 24] = [
        (f, 0, 0, 3),
        (f, 1, 0, 7),
        (f, 2, 0, 11),
        (f, 3, 0, 19),
        (f, 4, 0, 3),
        (f, 5, 0, 7),
        (f, 6, 0, 11),
        (f, 7, 0, 19),
        (g, 1, K2, 3),
        (g, 3, K2, 5),
        (g, 5, K2, 9),
        (g, 7, K2, 13),
        (g, 0, K2, 3),
        (g, 2, K2, 5),
        (g, 4, K2, 9),
        (g, 6, K2, 13),
        (h, 3, K3, 3),
        (h, 7, K3, 9),
        (h, 2, K3, 11),
        (h, 6, K3, 15),
        (h, 1, K3, 3),
        (h, 5, K3, 9),
        (h, 0, K3, 11),
        (h, 4, K3, 15),
    ];
    for (i, &(mix, w, k, s)) in steps.iter().enumerate() {
        let input = x[w].wrapping_add(k);
        // Step i updates register (a, d, c, b)[i % 4] from the other three.
        match i % 4 {
            0 => {
                a = a
                    .wrapping_add(mix(b, c, d))
                    .wrapping_add(input)
                    .rotate_left(s)
            }
            1 => {
                d = d
                    .wrapping_add(mix(a, b, c))
                    .wrapping_add(input)
                    .rotate_left(s)
            }
            2 => {
                c = c
                    .wrapping_add(mix(d, a, b))
                    .wrapping_add(input)
                    .rotate_left(s)
            }
            _ => {
                b = b
                    .wrapping_add(mix(c, d, a))
                    .wrapping_add(input)
                    .rotate_left(s)
            }
        }
    }
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

/// One TEA compression (16 cycles) of 4 input words into state words 0 and 1.
fn tea_round(state: &mut [u32; 4], x: &[u32; 4]) {
    const DELTA: u32 = 0x9e37_79b9;
    let (mut b0, mut b1) = (state[0], state[1]);
    let [a, b, c, d] = *x;
    let mut sum: u32 = 0;
    for _ in 0..16 {
        sum = sum.wrapping_add(DELTA);
        b0 = b0.wrapping_add(
            (b1 << 4).wrapping_add(a) ^ b1.wrapping_add(sum) ^ (b1 >> 5).wrapping_add(b),
        );
        b1 = b1.wrapping_add(
            (b0 << 4).wrapping_add(c) ^ b0.wrapping_add(sum) ^ (b0 >> 5).wrapping_add(d),
        );
    }
    state[0] = state[0].wrapping_add(b0);
    state[1] = state[1].wrapping_add(b1);
}

/// Hashes `name` with `version` (0..=5, the in-memory numbering where +3
/// means unsigned chars) and `seed` (`s_hash_seed`; all zero = default).
pub fn dx_hash(name: &[u8], version: u8, seed: &[u32; 4]) -> Result<NameHash, UnknownHash> {
    let mut state = if seed.iter().any(|&w| w != 0) {
        *seed
    } else {
        DEFAULT_STATE
    };
    let (major, minor) = match version {
        DX_HASH_LEGACY | DX_HASH_LEGACY_UNSIGNED => (legacy(name, version == DX_HASH_LEGACY), 0),
        DX_HASH_HALF_MD4 | DX_HASH_HALF_MD4_UNSIGNED => {
            let signed = version == DX_HASH_HALF_MD4;
            let mut words = [0u32; 8];
            // Each round packs the *remaining* message (its length feeds the
            // padding), of which it uses the first 32 bytes. An empty name
            // gets no round at all.
            let mut off = 0;
            while let Some(rest) = name.get(off..).filter(|r| !r.is_empty()) {
                pack_words(rest, signed, &mut words);
                half_md4_round(&mut state, &words);
                off += 32;
            }
            (state[1], state[2])
        }
        DX_HASH_TEA | DX_HASH_TEA_UNSIGNED => {
            let signed = version == DX_HASH_TEA;
            let mut words = [0u32; 4];
            let mut off = 0;
            while let Some(rest) = name.get(off..).filter(|r| !r.is_empty()) {
                pack_words(rest, signed, &mut words);
                tea_round(&mut state, &words);
                off += 16;
            }
            (state[0], state[1])
        }
        other => return Err(UnknownHash(other)),
    };
    let mut major = major & !1;
    if major == HTREE_EOF_32BIT_SHIFTED {
        major = (0x7fff_ffff - 1) << 1;
    }
    Ok(NameHash { major, minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed by `debugfs -R "dx_hash -h N -s SEED NAME"` (e2fsprogs
    /// 1.47.0) for seed 01234567-89ab-cdef-0123-456789abcdef and name
    /// "h\xe9llo": pins the signed/unsigned split on a byte ≥ 0x80.
    #[test]
    fn known_values_high_byte() {
        let seed = seed_from_uuid("01234567-89ab-cdef-0123-456789abcdef");
        let name = b"h\xe9llo";
        let cases: [(u8, u32, u32); 6] = [
            (0, 0xa45a86cc, 0),
            (1, 0xd42da6d0, 0x55cf442a),
            (2, 0xe3c9cf5c, 0x385892bc),
            (3, 0xa38098d0, 0),
            (4, 0x9b4fd7be, 0x33ff8ee4),
            (5, 0xcd64276c, 0xd6c869fb),
        ];
        for (v, major, minor) in cases {
            let h = dx_hash(name, v, &seed).unwrap();
            assert_eq!((h.major, h.minor), (major, minor), "version {v}");
        }
    }

    #[test]
    fn zero_seed_uses_default_state() {
        // debugfs: dx_hash -h half_md4 -s 00000000-... hello
        let h = dx_hash(b"hello", DX_HASH_HALF_MD4, &[0; 4]).unwrap();
        assert_eq!((h.major, h.minor), (0x1746da32, 0x420013b5));
    }

    #[test]
    fn unknown_version_is_an_error() {
        assert_eq!(dx_hash(b"x", 6, &[0; 4]), Err(UnknownHash(6)));
    }

    #[test]
    fn total_on_odd_inputs() {
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 255, 300] {
            let name = vec![0xffu8; len];
            for v in 0..6 {
                let h = dx_hash(&name, v, &[1, 2, 3, 4]).unwrap();
                assert_eq!(h.major & 1, 0);
                assert_ne!(h.major, HTREE_EOF_32BIT_SHIFTED);
            }
        }
    }

    /// Parses a UUID string into the four little-endian seed words, as
    /// `s_hash_seed` stores them.
    pub(crate) fn seed_from_uuid(s: &str) -> [u32; 4] {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let mut out = [0u32; 4];
        for (i, w) in out.iter_mut().enumerate() {
            *w = u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ]);
        }
        out
    }
}
