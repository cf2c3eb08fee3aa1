//! POSIX ACLs: ext4's compact on-disk ACL (the value of the
//! `system.posix_acl_access`/`_default` xattrs, name indexes 2 and 3)
//! converted to the Linux xattr ACL format that getxattr(2) returns.
//!
//! On disk: a 4-byte header (version 1) then entries `{tag u16, perm u16}`
//! for USER_OBJ, GROUP_OBJ, MASK and OTHER, and `{tag u16, perm u16, id u32}`
//! for named USER and GROUP. The xattr format: a 4-byte header (version 2)
//! then 8-byte entries `{tag u16, perm u16, id u32}` where the short tags
//! carry `ACL_UNDEFINED_ID`.
//!
//! Invariants: the input is untrusted; every entry is bounds-checked, an
//! unknown tag, a wrong version or trailing bytes is corruption, and an ACL
//! with no entries is "no ACL" (as the kernel treats it).

use super::error::{Error, Result};

/// On-disk ACL version.
pub const EXT4_ACL_VERSION: u32 = 1;
/// xattr ACL version.
pub const POSIX_ACL_XATTR_VERSION: u32 = 2;
/// Id of entries that have none.
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// ACL tags.
pub mod tag {
    /// The owner.
    pub const USER_OBJ: u16 = 0x01;
    /// A named user.
    pub const USER: u16 = 0x02;
    /// The owning group.
    pub const GROUP_OBJ: u16 = 0x04;
    /// A named group.
    pub const GROUP: u16 = 0x08;
    /// The mask.
    pub const MASK: u16 = 0x10;
    /// Everyone else.
    pub const OTHER: u16 = 0x20;
}

const HEADER_SIZE: usize = 4;
const SHORT_ENTRY: usize = 4;
const LONG_ENTRY: usize = 8;

/// Converts an on-disk ACL to the xattr format. `Ok(None)` for an ACL with
/// no entries (reported as "no such attribute").
pub fn disk_to_xattr(value: &[u8], what: &dyn Fn() -> String) -> Result<Option<Vec<u8>>> {
    let bad = |d: &str| Error::corrupt(what(), d.to_string());
    let version = value
        .get(..HEADER_SIZE)
        .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
        .ok_or_else(|| bad("ACL shorter than its header"))?;
    if version != EXT4_ACL_VERSION {
        return Err(bad("unknown on-disk ACL version"));
    }
    let mut out = POSIX_ACL_XATTR_VERSION.to_le_bytes().to_vec();
    let mut pos = HEADER_SIZE;
    // Each entry consumes at least 4 bytes, so this loop is bounded.
    while pos < value.len() {
        let e = value
            .get(pos..pos + SHORT_ENTRY)
            .ok_or_else(|| bad("truncated ACL entry"))?;
        let t = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = match t {
            tag::USER_OBJ | tag::GROUP_OBJ | tag::MASK | tag::OTHER => {
                pos += SHORT_ENTRY;
                ACL_UNDEFINED_ID
            }
            tag::USER | tag::GROUP => {
                let l = value
                    .get(pos..pos + LONG_ENTRY)
                    .ok_or_else(|| bad("truncated ACL entry"))?;
                pos += LONG_ENTRY;
                u32::from_le_bytes([l[4], l[5], l[6], l[7]])
            }
            _ => return Err(bad("unknown ACL tag")),
        };
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    if out.len() == HEADER_SIZE {
        return Ok(None);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what() -> String {
        "acl".into()
    }

    #[test]
    fn converts_short_and_long_entries() {
        let mut d = 1u32.to_le_bytes().to_vec();
        d.extend_from_slice(&[1, 0, 6, 0]); // USER_OBJ rw-
        d.extend_from_slice(&[2, 0, 4, 0, 0xe8, 0x03, 0, 0]); // USER 1000 r--
        d.extend_from_slice(&[4, 0, 4, 0]); // GROUP_OBJ
        d.extend_from_slice(&[0x10, 0, 4, 0]); // MASK
        d.extend_from_slice(&[0x20, 0, 0, 0]); // OTHER
        let x = disk_to_xattr(&d, &what).unwrap().unwrap();
        assert_eq!(x.len(), 4 + 5 * 8);
        assert_eq!(&x[..4], &2u32.to_le_bytes());
        assert_eq!(&x[4..12], &[1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&x[12..20], &[2, 0, 4, 0, 0xe8, 0x03, 0, 0]);
    }

    #[test]
    fn rejects_malformed() {
        let v1 = 1u32.to_le_bytes();
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![1, 0],
            2u32.to_le_bytes().to_vec(),
            [&v1[..], &[1, 0, 6]].concat(),
            [&v1[..], &[2, 0, 6, 0, 1, 0]].concat(),
            [&v1[..], &[0x40, 0, 6, 0]].concat(),
        ];
        for c in cases {
            assert!(disk_to_xattr(&c, &what).is_err(), "{c:?}");
        }
    }

    #[test]
    fn empty_acl_is_none() {
        assert_eq!(disk_to_xattr(&1u32.to_le_bytes(), &what).unwrap(), None);
    }
}
