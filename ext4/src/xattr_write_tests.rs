//! Unit tests of the xattr area encoder (against the reader in xattr.rs).

use super::*;
use crate::xattr::XattrFormat;

const FMT: XattrFormat = XattrFormat {
    ea_inode: false,
    max_ino: 100,
    first_ino: 11,
};

fn what() -> String {
    "t".into()
}

fn ent(index: u8, name: &str, value: &[u8]) -> Ent {
    Ent {
        index,
        name: name.as_bytes().to_vec(),
        value: Some(value.to_vec()),
    }
}

#[test]
fn ibody_round_trips_through_the_reader() {
    let ents = vec![
        ent(index::USER, "a", b"hello"),
        ent(index::SECURITY, "selinux", b""),
        ent(index::TRUSTED, "long.name", &[7u8; 13]),
    ];
    // 4 + 20 + 24 + 28 + 4 bytes of entries, 8 + 0 + 16 of values.
    assert!(encode_ibody(&ents, 103).unwrap().is_none());
    let area = encode_ibody(&ents, 104).unwrap().unwrap();
    let parsed = parse_ibody(&area, FMT, &what).unwrap();
    assert_eq!(load(parsed, &area, &what).unwrap(), ents);
    assert_eq!(encode_ibody(&[], 96).unwrap().unwrap(), vec![0u8; 96]);
}

#[test]
fn block_round_trips_with_checksum_and_hashes() {
    let ents = vec![
        ent(index::USER, "b", &[1u8; 300]),
        ent(index::USER, "bb", b"x"),
        ent(index::SECURITY, "c", b"yz"),
    ];
    let mut b = encode_block(&ents, 1024).unwrap().unwrap();
    seal_block(Some(0x1234), Pblk(77), &mut b);
    let parsed = parse_block(&b, Pblk(77), Some(0x1234), FMT, &what).unwrap();
    assert_eq!(load(parsed, &b, &what).unwrap(), ents);
    assert_eq!(get_le32(&b, H_REFCOUNT), Some(1));
    // Every entry carries its hash; the header hash combines them.
    let mut pos = BLOCK_HEADER_SIZE;
    for e in &ents {
        let stored = get_le32(&b, pos + 12).unwrap();
        assert_eq!(stored, entry_hash(&e.name, e.value.as_deref().unwrap()));
        pos += entry_len(e.name.len());
    }
    assert_eq!(get_le32(&b, H_HASH), Some(block_hash(&ents)));
    assert_ne!(block_hash(&ents), 0);
}

#[test]
fn space_is_counted_exactly() {
    // 96-byte in-inode area: magic 4, entry "a" 20, terminator 4: 68 bytes of value.
    for (len, fits) in [(68, true), (69, false), (0, true)] {
        let e = [ent(index::USER, "a", &vec![1u8; len])];
        assert_eq!(encode_ibody(&e, 96).unwrap().is_some(), fits, "{len}");
    }
    // A 1 KiB block: header 32, entry 20, terminator 4.
    for (len, fits) in [(968, true), (969, false)] {
        let e = [ent(index::USER, "a", &vec![1u8; len])];
        assert_eq!(encode_block(&e, 1024).unwrap().is_some(), fits, "{len}");
    }
    let ea = [Ent {
        index: index::USER,
        name: b"a".to_vec(),
        value: None,
    }];
    assert!(matches!(encode_ibody(&ea, 96), Err(Error::Unsupported(_))));
}

#[test]
fn hash_matches_the_kernel_formula() {
    // Name "ab", value "xyz\0" as one little-endian word.
    let h = (u32::from(b'a') << 5) ^ u32::from(b'b');
    let h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes(*b"xyz\0");
    assert_eq!(entry_hash(b"ab", b"xyz"), h);
    assert_eq!(entry_hash(b"", b""), 0);
}

#[test]
fn names_and_flags() {
    // (name, result: Ok(index) or the error's kind)
    let long = format!("user.{}", "n".repeat(256));
    let cases: &[(&[u8], std::result::Result<u8, &str>)] = &[
        (b"user.x", Ok(index::USER)),
        (b"trusted.x", Ok(index::TRUSTED)),
        (b"security.selinux", Ok(index::SECURITY)),
        (b"system.posix_acl_access", Ok(index::POSIX_ACL_ACCESS)),
        (b"system.posix_acl_default", Ok(index::POSIX_ACL_DEFAULT)),
        (b"system.posix_acl_accessX", Err("unsupported")),
        (b"system.data", Err("unsupported")),
        (b"other.x", Err("unsupported")),
        (b"user.", Err("invalid")),
        (long.as_bytes(), Err("long")),
    ];
    for &(name, want) in cases {
        match (resolve_name(name), want) {
            (Ok((i, _)), Ok(w)) => assert_eq!(i, w),
            (Err(Error::Unsupported(_)), Err("unsupported")) => {}
            (Err(Error::Invalid(_)), Err("invalid")) => {}
            (Err(Error::NameTooLong), Err("long")) => {}
            (got, _) => panic!("{:?}: {got:?}", String::from_utf8_lossy(name)),
        }
    }
    assert!(XattrFlags::from_bits(4).is_err());
    let f = XattrFlags::from_bits(XATTR_CREATE | XATTR_REPLACE).unwrap();
    assert!(f.create && f.replace && !f.kill_sgid);
}

proptest::proptest! {
    /// Any entry list the encoder accepts reads back identically, in the
    /// inode and in a block; one it refuses really does not fit.
    #[test]
    fn any_entries_round_trip(
        raw in proptest::collection::vec(
            (1u8..=7, proptest::collection::vec(1u8..=255, 1..40), proptest::collection::vec(0u8..=255, 0..300)),
            0..12,
        ),
        block in proptest::bool::ANY,
    ) {
        let ents: Vec<Ent> = raw
            .into_iter()
            .map(|(index, name, value)| Ent { index, name, value: Some(value) })
            .collect();
        let need: usize = ents
            .iter()
            .map(|e| entry_len(e.name.len()) + value_len(e.value.as_ref().unwrap().len()))
            .sum();
        if block {
            let got = encode_block(&ents, 1024).unwrap();
            proptest::prop_assert_eq!(got.is_some(), BLOCK_HEADER_SIZE + need + 4 <= 1024);
            if let Some(mut b) = got {
                seal_block(Some(7), Pblk(9), &mut b);
                let parsed = parse_block(&b, Pblk(9), Some(7), FMT, &what).unwrap();
                proptest::prop_assert_eq!(load(parsed, &b, &what).unwrap(), ents);
            }
        } else {
            let got = encode_ibody(&ents, 352).unwrap();
            proptest::prop_assert_eq!(got.is_some(), ents.is_empty() || IBODY_HEADER_SIZE + need + 4 <= 352);
            if let Some(a) = got {
                let parsed = parse_ibody(&a, FMT, &what).unwrap();
                proptest::prop_assert_eq!(load(parsed, &a, &what).unwrap(), ents);
            }
        }
    }
}
