//! POSIX ACLs: ext4's compact on-disk ACL (the value of the
//! `system.posix_acl_access`/`_default` xattrs, name indexes 2 and 3)
//! converted to the Linux xattr ACL format that getxattr(2) returns, and
//! back (setxattr(2)): [`parse_xattr`] validates what a caller gives as the
//! kernel's `posix_acl_from_xattr` + `posix_acl_valid` do, [`encode_disk`]
//! writes ext4's format (`ext4_acl_to_disk`). The mode rules the VFS
//! applies with them are here too, as pure functions on [`AclEntry`] lists:
//! [`equiv_mode`] (`posix_acl_equiv_mode`: the mode an access ACL implies,
//! and whether the ACL says more than the mode), [`chmod`]
//! (`__posix_acl_chmod`: an access ACL following a chmod) and
//! [`create_masq`] (`posix_acl_create_masq`: a directory's default ACL
//! applied to a new child's mode).
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

/// One ACL entry: tag, permission bits (rwx, 0..=7), id (a uid for
/// [`tag::USER`], a gid for [`tag::GROUP`], [`ACL_UNDEFINED_ID`] otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    /// The tag ([`tag`]).
    pub tag: u16,
    /// Permission bits.
    pub perm: u16,
    /// The id.
    pub id: u32,
}

/// Read, write and execute: all the permission bits an entry may carry.
const PERM_RWX: u16 = 0o7;
/// The permission bits of a mode (user, group, other).
const MODE_RWX: u16 = 0o777;

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
    Ok(parse_disk(value, what)?.map(|e| encode_xattr(&e)))
}

/// Parses an on-disk ACL into entries (`Ok(None)` for none): a wrong
/// version, an unknown tag or a truncated entry is corruption.
pub fn parse_disk(value: &[u8], what: &dyn Fn() -> String) -> Result<Option<Vec<AclEntry>>> {
    let bad = |d: &str| Error::corrupt(what(), d.to_string());
    let version = value
        .get(..HEADER_SIZE)
        .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
        .ok_or_else(|| bad("ACL shorter than its header"))?;
    if version != EXT4_ACL_VERSION {
        return Err(bad("unknown on-disk ACL version"));
    }
    let mut out = Vec::new();
    let mut pos = HEADER_SIZE;
    // Each entry consumes at least 4 bytes, so this loop is bounded.
    while pos < value.len() {
        let e = value
            .get(pos..pos + SHORT_ENTRY)
            .ok_or_else(|| bad("truncated ACL entry"))?;
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = match tag {
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
        out.push(AclEntry { tag, perm, id });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `entries` in the xattr format getxattr(2) returns (version 2, 8-byte
/// entries, [`ACL_UNDEFINED_ID`] where an entry has no id).
pub fn encode_xattr(entries: &[AclEntry]) -> Vec<u8> {
    let mut out = POSIX_ACL_XATTR_VERSION.to_le_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

/// Parses and validates an ACL in the xattr format a caller gives
/// (`posix_acl_from_xattr`, then `posix_acl_valid`): version 2, whole
/// 8-byte entries, permissions within rwx, entries in the canonical order
/// (USER_OBJ, USER..., GROUP_OBJ, GROUP..., MASK, OTHER) with a MASK
/// whenever a named entry exists. `Ok(None)` for no entries (removing the
/// ACL); [`Error::Invalid`] otherwise when malformed.
pub fn parse_xattr(value: &[u8]) -> Result<Option<Vec<AclEntry>>> {
    let bad = |d: &str| Error::Invalid(format!("POSIX ACL: {d}"));
    let version = value
        .get(..HEADER_SIZE)
        .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
        .ok_or_else(|| bad("shorter than its header"))?;
    if version != POSIX_ACL_XATTR_VERSION {
        return Err(bad("unknown version"));
    }
    let body = &value[HEADER_SIZE..];
    if body.len() % LONG_ENTRY != 0 {
        return Err(bad("not a whole number of entries"));
    }
    let entries: Vec<AclEntry> = body
        .chunks_exact(LONG_ENTRY)
        .map(|e| {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let id = match tag {
                tag::USER | tag::GROUP => u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                _ => ACL_UNDEFINED_ID,
            };
            AclEntry {
                tag,
                perm: u16::from_le_bytes([e[2], e[3]]),
                id,
            }
        })
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    validate(&entries).map_err(bad)?;
    Ok(Some(entries))
}

/// The kernel's `posix_acl_valid` order and content rules.
fn validate(entries: &[AclEntry]) -> std::result::Result<(), &'static str> {
    #[derive(PartialEq)]
    enum State {
        UserObj,
        User,
        Group,
        Other,
        Done,
    }
    let mut state = State::UserObj;
    let mut needs_mask = false;
    for e in entries {
        if e.perm & !PERM_RWX != 0 {
            return Err("permission bits beyond rwx");
        }
        state = match (e.tag, state) {
            (tag::USER_OBJ, State::UserObj) => State::User,
            (tag::USER, State::User) => {
                needs_mask = true;
                State::User
            }
            (tag::GROUP_OBJ, State::User) => State::Group,
            (tag::GROUP, State::Group) => {
                needs_mask = true;
                State::Group
            }
            (tag::MASK, State::Group) => State::Other,
            (tag::OTHER, State::Other) => State::Done,
            (tag::OTHER, State::Group) if !needs_mask => State::Done,
            _ => return Err("entries missing, repeated, out of order or of an unknown tag"),
        };
    }
    if state == State::Done {
        Ok(())
    } else {
        Err("entries missing")
    }
}

/// ext4's on-disk form of `entries` (`ext4_acl_to_disk`): version 1,
/// short entries for the owner, owning group, mask and other, long ones
/// (with the id) for named users and groups.
pub fn encode_disk(entries: &[AclEntry]) -> Vec<u8> {
    let mut out = EXT4_ACL_VERSION.to_le_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        if matches!(e.tag, tag::USER | tag::GROUP) {
            out.extend_from_slice(&e.id.to_le_bytes());
        }
    }
    out
}

/// The mode an access ACL implies for a file of `mode` (type and setid
/// bits kept; the group bits are the mask's when there is one), and
/// whether the ACL says more than that mode (named entries or a mask):
/// when it does not, the kernel stores no ACL (`posix_acl_equiv_mode`).
pub fn equiv_mode(entries: &[AclEntry], mode: u16) -> (u16, bool) {
    let mut perms = 0u16;
    let mut more = false;
    for e in entries {
        let p = e.perm & PERM_RWX;
        match e.tag {
            tag::USER_OBJ => perms |= p << 6,
            tag::GROUP_OBJ => perms |= p << 3,
            tag::OTHER => perms |= p,
            tag::MASK => {
                perms = (perms & !0o070) | (p << 3);
                more = true;
            }
            _ => more = true,
        }
    }
    ((mode & !MODE_RWX) | perms, more)
}

/// An access ACL after a chmod to `mode` (`__posix_acl_chmod`): the owner,
/// the mask (or the owning group without one) and other take the mode's
/// bits; named entries stay.
pub fn chmod(entries: &mut [AclEntry], mode: u16) {
    let has_mask = entries.iter().any(|e| e.tag == tag::MASK);
    for e in entries.iter_mut() {
        match e.tag {
            tag::USER_OBJ => e.perm = (mode >> 6) & PERM_RWX,
            tag::OTHER => e.perm = mode & PERM_RWX,
            tag::MASK => e.perm = (mode >> 3) & PERM_RWX,
            tag::GROUP_OBJ if !has_mask => e.perm = (mode >> 3) & PERM_RWX,
            _ => {}
        }
    }
}

/// A directory's default ACL applied to a new child created with `mode`
/// (`posix_acl_create_masq`): each of owner, mask (or owning group) and
/// other keeps only the bits both the ACL and the mode grant. Returns the
/// child's mode and whether the resulting access ACL must be stored (it
/// says more than the mode).
pub fn create_masq(entries: &mut [AclEntry], mode: u16) -> (u16, bool) {
    let mut m = mode;
    let mut more = false;
    let has_mask = entries.iter().any(|e| e.tag == tag::MASK);
    for e in entries.iter_mut() {
        match e.tag {
            tag::USER_OBJ => {
                e.perm &= (m >> 6) & PERM_RWX;
                m &= (e.perm << 6) | !0o700;
            }
            tag::OTHER => {
                e.perm &= m & PERM_RWX;
                m &= e.perm | !0o007;
            }
            tag::USER | tag::GROUP => more = true,
            tag::MASK => {
                more = true;
                e.perm &= (m >> 3) & PERM_RWX;
                m &= (e.perm << 3) | !0o070;
            }
            tag::GROUP_OBJ if !has_mask => {
                e.perm &= (m >> 3) & PERM_RWX;
                m &= (e.perm << 3) | !0o070;
            }
            _ => {}
        }
    }
    ((mode & !MODE_RWX) | (m & MODE_RWX), more)
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

    fn xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let e: Vec<AclEntry> = entries
            .iter()
            .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
            .collect();
        encode_xattr(&e)
    }

    const U: u32 = ACL_UNDEFINED_ID;

    #[test]
    fn validates_as_the_kernel() {
        use tag::*;
        type Entries<'a> = &'a [(u16, u16, u32)];
        let cases: &[(Entries, bool)] = &[
            (&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)], true),
            (
                &[
                    (USER_OBJ, 7, U),
                    (USER, 5, 1000),
                    (GROUP_OBJ, 4, U),
                    (GROUP, 6, 50),
                    (MASK, 7, U),
                    (OTHER, 0, U),
                ],
                true,
            ),
            // A named entry without a mask; a missing owner; out of order;
            // bits beyond rwx; an unknown tag; nothing after the group.
            (
                &[
                    (USER_OBJ, 7, U),
                    (USER, 5, 1000),
                    (GROUP_OBJ, 4, U),
                    (OTHER, 0, U),
                ],
                false,
            ),
            (&[(GROUP_OBJ, 4, U), (OTHER, 4, U)], false),
            (&[(USER_OBJ, 6, U), (OTHER, 4, U), (GROUP_OBJ, 4, U)], false),
            (&[(USER_OBJ, 8, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)], false),
            (
                &[
                    (USER_OBJ, 6, U),
                    (0x40, 4, U),
                    (GROUP_OBJ, 4, U),
                    (OTHER, 4, U),
                ],
                false,
            ),
            (&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U)], false),
        ];
        for (i, &(e, ok)) in cases.iter().enumerate() {
            assert_eq!(parse_xattr(&xattr(e)).is_ok(), ok, "case {i}");
        }
        assert_eq!(parse_xattr(&xattr(&[])).unwrap(), None);
        assert!(parse_xattr(&[2, 0, 0, 0, 1]).is_err());
        assert!(parse_xattr(&1u32.to_le_bytes()).is_err());
    }

    #[test]
    fn disk_round_trip() {
        use tag::*;
        let x = xattr(&[
            (USER_OBJ, 7, U),
            (USER, 5, 70_000),
            (GROUP_OBJ, 4, U),
            (MASK, 5, U),
            (OTHER, 1, U),
        ]);
        let e = parse_xattr(&x).unwrap().unwrap();
        let d = encode_disk(&e);
        assert_eq!(d.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(disk_to_xattr(&d, &what).unwrap().unwrap(), x);
        assert_eq!(parse_disk(&d, &what).unwrap().unwrap(), e);
    }

    #[test]
    fn mode_rules() {
        use tag::*;
        let e = |v: &[(u16, u16, u32)]| parse_xattr(&xattr(v)).unwrap().unwrap();
        let plain = e(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 0, U)]);
        assert_eq!(equiv_mode(&plain, 0o102777), (0o102640, false));
        let named = e(&[
            (USER_OBJ, 7, U),
            (USER, 7, 5),
            (GROUP_OBJ, 1, U),
            (MASK, 5, U),
            (OTHER, 4, U),
        ]);
        assert_eq!(equiv_mode(&named, 0o100000), (0o100754, true));
        let mut c = named.clone();
        chmod(&mut c, 0o640);
        let perms: Vec<u16> = c.iter().map(|e| e.perm).collect();
        assert_eq!(
            perms,
            [6, 7, 1, 4, 0],
            "owner, named kept, group kept, mask, other"
        );
        let mut p = plain.clone();
        chmod(&mut p, 0o751);
        assert_eq!(p.iter().map(|e| e.perm).collect::<Vec<_>>(), [7, 5, 1]);
        // Inheritance: create with 0666 under a default ACL granting r-x to others.
        let mut d = e(&[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (OTHER, 5, U)]);
        assert_eq!(create_masq(&mut d, 0o100666), (0o100644, false));
        assert_eq!(d.iter().map(|e| e.perm).collect::<Vec<_>>(), [6, 4, 4]);
        let mut d = e(&[
            (USER_OBJ, 7, U),
            (GROUP_OBJ, 7, U),
            (GROUP, 7, 9),
            (MASK, 5, U),
            (OTHER, 0, U),
        ]);
        assert_eq!(create_masq(&mut d, 0o040777), (0o040750, true));
        assert_eq!(
            d.iter().map(|e| e.perm).collect::<Vec<_>>(),
            [7, 7, 7, 5, 0]
        );
    }
}
