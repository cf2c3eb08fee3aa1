//! The journal layouts round-trip (property tests), their checksums verify
//! what they set, and the superblock's validation refuses each bad field.

use proptest::prelude::*;

use super::commit::{self, CommitBlock, CommitCsum, COMMIT_STRUCT_SIZE};
use super::csum::{set_tail, tail_ok};
use super::descriptor::{tag_flag, BlockTag, DescriptorBlock, TagCsum, TagFormat, UUID_SIZE};
use super::header::{block_type, BlockHeader, HEADER_SIZE, JBD2_MAGIC};
use super::revoke::RevokeBlock;
use super::superblock::{checksum_type, feature, JournalSuperblock, SIZE};
use crate::error::Error;
use crate::num::Pblk;

const FORMATS: [TagFormat; 6] = [
    TagFormat {
        csum: TagCsum::None,
        bit64: false,
    },
    TagFormat {
        csum: TagCsum::None,
        bit64: true,
    },
    TagFormat {
        csum: TagCsum::V2,
        bit64: false,
    },
    TagFormat {
        csum: TagCsum::V2,
        bit64: true,
    },
    TagFormat {
        csum: TagCsum::V3,
        bit64: false,
    },
    TagFormat {
        csum: TagCsum::V3,
        bit64: true,
    },
];

#[test]
fn tag_sizes_are_the_kernels() {
    // journal_tag_bytes: tag3 16; classic 12 (+2 with csum v2), -4 without 64bit.
    let sizes: Vec<usize> = FORMATS.iter().map(|f| f.size()).collect();
    assert_eq!(sizes, [8, 12, 10, 14, 16, 16]);
    // A 1 KiB descriptor, 32-bit, no checksums: (1024 - 12 - 8 - 16) / 8 + 1.
    assert_eq!(FORMATS[0].capacity(1024), 124);
    // tag3 in 4 KiB with the tail: (4096 - 4 - 12 - 16 - 16) / 16 + 1.
    assert_eq!(FORMATS[5].capacity(4096), 254);
}

fn sb_strategy() -> impl Strategy<Value = JournalSuperblock> {
    (
        (any::<[u32; 3]>(), any::<[u32; 6]>(), any::<i32>()),
        (any::<[u32; 3]>(), any::<[u8; 16]>(), any::<[u32; 4]>()),
        (
            any::<u8>(),
            any::<[u32; 3]>(),
            prop::collection::vec(any::<u8>(), 768),
        ),
    )
        .prop_map(
            |((h, v, errno), (f, uuid, u), (ct, t, users))| JournalSuperblock {
                header: BlockHeader {
                    magic: h[0],
                    block_type: h[1],
                    sequence: h[2],
                },
                block_size: v[0],
                maxlen: v[1],
                first: v[2],
                sequence: v[3],
                start: v[4],
                errno,
                feature_compat: f[0],
                feature_incompat: f[1],
                feature_ro_compat: f[2],
                uuid,
                nr_users: u[0],
                dynsuper: u[1],
                max_transaction: u[2],
                max_trans_data: u[3],
                checksum_type: ct,
                num_fc_blocks: t[0],
                head: t[1],
                checksum: t[2],
                users: users.try_into().unwrap_or([0; 768]),
            },
        )
}

fn tag_strategy(fmt: TagFormat) -> impl Strategy<Value = BlockTag> {
    let classic = fmt.csum != TagCsum::V3;
    let has_high = !classic || fmt.bit64;
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 16]>(),
    )
        .prop_map(move |(lo, hi, flags, csum, uuid)| {
            let mut flags = if classic { flags & 0xffff } else { flags };
            flags &= !tag_flag::LAST_TAG;
            BlockTag {
                blocknr: lo,
                blocknr_high: if has_high { hi } else { 0 },
                flags,
                checksum: if classic { csum & 0xffff } else { csum },
                uuid: (flags & tag_flag::SAME_UUID == 0).then_some(uuid),
            }
        })
}

fn descriptor_strategy() -> impl Strategy<Value = (TagFormat, usize, DescriptorBlock)> {
    (
        0..FORMATS.len(),
        prop::sample::select(vec![1024usize, 4096]),
    )
        .prop_flat_map(|(i, bs)| {
            let fmt = FORMATS[i];
            let max = fmt.tag_space(bs).saturating_sub(HEADER_SIZE) / (fmt.size() + UUID_SIZE);
            (
                Just(fmt),
                Just(bs),
                any::<u32>(),
                prop::collection::vec(tag_strategy(fmt), 1..=max.max(1)),
            )
        })
        .prop_map(|(fmt, bs, seq, mut tags)| {
            if let Some(last) = tags.last_mut() {
                last.flags |= tag_flag::LAST_TAG;
            }
            (
                fmt,
                bs,
                DescriptorBlock {
                    header: BlockHeader::new(block_type::DESCRIPTOR, seq),
                    tags,
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn header_round_trips(t in any::<u32>(), s in any::<u32>(), m in any::<u32>()) {
        let h = BlockHeader { magic: m, block_type: t, sequence: s };
        let mut b = [0u8; HEADER_SIZE];
        h.encode(&mut b);
        prop_assert_eq!(BlockHeader::decode(&b), Some(h));
    }

    #[test]
    fn superblock_round_trips(sb in sb_strategy()) {
        let b = sb.encode();
        prop_assert_eq!(b.len(), SIZE);
        prop_assert_eq!(JournalSuperblock::decode(&b), Some(sb));
    }

    #[test]
    fn superblock_bytes_survive_decode_then_encode(bytes in prop::collection::vec(any::<u8>(), SIZE..=SIZE + 64)) {
        let sb = JournalSuperblock::decode(&bytes).unwrap();
        let mut again = bytes.clone();
        sb.encode_into(&mut again);
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn descriptor_blocks_round_trip((fmt, bs, d) in descriptor_strategy()) {
        let b = d.encode(fmt, bs).unwrap();
        prop_assert_eq!(b.len(), bs);
        prop_assert_eq!(DescriptorBlock::decode(fmt, &b), d);
    }

    #[test]
    fn descriptor_bytes_survive_decode_then_encode(
        i in 0..FORMATS.len(),
        bytes in prop::collection::vec(any::<u8>(), 64..600),
    ) {
        let fmt = FORMATS[i];
        let d = DescriptorBlock::decode(fmt, &bytes);
        let mut again = bytes.clone();
        d.encode_into(fmt, &mut again);
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn tag_targets_keep_the_high_half_only_with_64bit(i in 0..FORMATS.len(), blk in any::<u64>()) {
        let fmt = FORMATS[i];
        let tag = BlockTag::new(fmt, Pblk(blk), tag_flag::LAST_TAG | tag_flag::SAME_UUID);
        let want = Pblk(if fmt.bit64 { blk } else { blk & 0xffff_ffff });
        prop_assert_eq!(tag.target(fmt), want);
        let d = DescriptorBlock { header: BlockHeader::new(block_type::DESCRIPTOR, 1), tags: vec![tag] };
        let b = d.encode(fmt, 1024).unwrap();
        prop_assert_eq!(DescriptorBlock::decode(fmt, &b).tags[0].target(fmt), want);
    }

    #[test]
    fn revoke_blocks_round_trip(
        bit64 in any::<bool>(),
        tail in any::<bool>(),
        bs in prop::sample::select(vec![1024usize, 4096]),
        seq in any::<u32>(),
        recs in prop::collection::vec(any::<u64>(), 0..200),
    ) {
        let cap = RevokeBlock::capacity(bs, bit64, tail);
        let records: Vec<Pblk> = recs
            .into_iter()
            .take(cap)
            .map(|r| Pblk(if bit64 { r } else { r & 0xffff_ffff }))
            .collect();
        let r = RevokeBlock { header: BlockHeader::new(block_type::REVOKE, seq), records };
        let b = r.encode(bs, bit64, tail).unwrap();
        prop_assert_eq!(RevokeBlock::decode(&b, bit64, tail).unwrap(), r);
    }

    #[test]
    fn commit_blocks_round_trip(
        seq in any::<u32>(),
        t in any::<u8>(),
        s in any::<u8>(),
        sums in any::<[u32; 8]>(),
        sec in any::<u64>(),
        nsec in any::<u32>(),
    ) {
        let c = CommitBlock {
            header: BlockHeader::new(block_type::COMMIT, seq),
            chksum_type: t,
            chksum_size: s,
            chksum: sums,
            commit_sec: sec,
            commit_nsec: nsec,
        };
        let b = c.encode(1024);
        prop_assert_eq!(CommitBlock::decode(&b), Some(c));
    }

    #[test]
    fn commit_bytes_survive_decode_then_encode(bytes in prop::collection::vec(any::<u8>(), COMMIT_STRUCT_SIZE..2048)) {
        let c = CommitBlock::decode(&bytes).unwrap();
        let mut again = bytes.clone();
        c.encode_into(&mut again);
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn checksums_verify_what_they_set(seed in any::<u32>(), bytes in prop::collection::vec(any::<u8>(), 1024..=1024), flip in 0usize..1024) {
        // Tails (descriptor and revoke blocks).
        let mut b = bytes.clone();
        set_tail(seed, &mut b);
        prop_assert!(tail_ok(seed, &b));
        b[flip.min(1019)] ^= 0x40;
        prop_assert!(!tail_ok(seed, &b));
        // Commit blocks.
        let mut c = bytes.clone();
        commit::set_csum(seed, &mut c);
        prop_assert_eq!(commit::verify_csum(seed, &c), CommitCsum::Good);
        let at = if (0x10..0x14).contains(&flip) { 0x20 } else { flip };
        c[at] ^= 0x40;
        prop_assert_ne!(commit::verify_csum(seed, &c), CommitCsum::Good);
        // The journal superblock.
        let mut s = bytes;
        JournalSuperblock::set_checksum(&mut s);
        let sb = JournalSuperblock::decode(&s).unwrap();
        prop_assert_eq!(JournalSuperblock::checksum_of(&s), sb.checksum);
    }
}

#[test]
fn descriptor_encode_refuses_what_would_not_decode_back() {
    let fmt = FORMATS[5];
    let tag = |flags| BlockTag::new(fmt, Pblk(5), flags);
    let d = |tags| DescriptorBlock {
        header: BlockHeader::new(block_type::DESCRIPTOR, 1),
        tags,
    };
    assert!(d(vec![]).encode(fmt, 1024).is_err(), "no tag");
    assert!(
        d(vec![tag(tag_flag::SAME_UUID)]).encode(fmt, 1024).is_err(),
        "no LAST_TAG"
    );
    assert!(
        d(vec![tag(tag_flag::LAST_TAG), tag(tag_flag::LAST_TAG)])
            .encode(fmt, 1024)
            .is_err(),
        "LAST_TAG early"
    );
    let too_many = (0..fmt.capacity(1024) + 1)
        .map(|i| {
            let mut f = if i == 0 { 0 } else { tag_flag::SAME_UUID };
            if i == fmt.capacity(1024) {
                f |= tag_flag::LAST_TAG;
            }
            tag(f)
        })
        .collect();
    assert!(d(too_many).encode(fmt, 1024).is_err(), "overflow");
    let r = RevokeBlock {
        header: BlockHeader::new(block_type::REVOKE, 1),
        records: vec![Pblk(1 << 33)],
    };
    assert!(
        r.encode(1024, false, false).is_err(),
        "64-bit record in 32-bit"
    );
}

/// A valid v2 superblock (v3 checksums) for a 4096-block journal, raw.
fn good_sb() -> (JournalSuperblock, Vec<u8>) {
    let mut sb = JournalSuperblock::new_v2(4096, 4096, 1);
    sb.feature_incompat = feature::incompat::CSUM_V3 | feature::incompat::BIT64;
    sb.checksum_type = checksum_type::CRC32C;
    sb.uuid = [3; 16];
    sb.start = 10;
    let mut raw = sb.encode();
    JournalSuperblock::set_checksum(&mut raw);
    (JournalSuperblock::decode(&raw).unwrap(), raw)
}

#[test]
fn superblock_validation_refuses_each_bad_field() {
    let (sb, raw) = good_sb();
    let area = sb.validate(&raw, 4096, 4096).unwrap();
    assert_eq!((area.first, area.last), (1, 4096));
    type Edit = fn(&mut JournalSuperblock);
    // (what, edit, fs block size, journal blocks, expected message part)
    let cases: &[(&str, Edit, u32, u64, &str)] = &[
        ("magic", |s| s.header.magic = 0, 4096, 4096, "magic"),
        (
            "type",
            |s| s.header.block_type = 9,
            4096,
            4096,
            "block type",
        ),
        ("block size", |_| {}, 1024, 4096, "block size"),
        ("too long", |_| {}, 4096, 4095, "holds only"),
        ("first 0", |s| s.first = 0, 4096, 4096, "log start"),
        ("first past", |s| s.first = 4096, 4096, 4096, "log start"),
        ("too short", |s| s.first = 3074, 4096, 4096, "shorter than"),
        (
            "unknown incompat",
            |s| s.feature_incompat |= 0x100,
            4096,
            4096,
            "journal features",
        ),
        (
            "ro_compat",
            |s| s.feature_ro_compat = 1,
            4096,
            4096,
            "journal features",
        ),
        (
            "v2 and v3",
            |s| s.feature_incompat |= feature::incompat::CSUM_V2,
            4096,
            4096,
            "v2 and v3",
        ),
        (
            "v1 and v3",
            |s| s.feature_compat |= feature::compat::CHECKSUM,
            4096,
            4096,
            "v1 and",
        ),
        (
            "csum type",
            |s| s.checksum_type = 1,
            4096,
            4096,
            "checksum type",
        ),
        (
            "start before first",
            |s| s.start = 0x8000_0000,
            4096,
            4096,
            "log head",
        ),
    ];
    for (what, edit, fs_bs, total, msg) in cases {
        let mut s = sb.clone();
        edit(&mut s);
        let mut raw = s.encode();
        JournalSuperblock::set_checksum(&mut raw);
        let s = JournalSuperblock::decode(&raw).unwrap();
        let e = s.validate(&raw, *fs_bs, *total).expect_err(what);
        assert!(e.to_string().contains(msg), "{what}: {e}");
    }
    // A checksum that does not match.
    let mut bad = raw.clone();
    bad[0x70] ^= 1;
    let s = JournalSuperblock::decode(&bad).unwrap();
    assert!(matches!(
        s.validate(&bad, 4096, 4096),
        Err(Error::Checksum { .. })
    ));
}

#[test]
fn version_1_superblocks_have_no_features() {
    let (mut sb, _) = good_sb();
    sb.header.block_type = block_type::SUPERBLOCK_V1;
    sb.feature_incompat = !0;
    sb.feature_ro_compat = !0;
    let raw = sb.encode();
    let sb = JournalSuperblock::decode(&raw).unwrap();
    assert_eq!(sb.version(), 1);
    assert_eq!(sb.incompat(), 0);
    assert!(!sb.csum_v2or3() && !sb.bit64());
    sb.validate(&raw, 4096, 4096).unwrap();
    assert_eq!(sb.tag_format().size(), 8);
}

#[test]
fn fast_commit_area_shortens_the_log() {
    let (mut sb, _) = good_sb();
    sb.feature_incompat |= feature::incompat::FAST_COMMIT;
    sb.num_fc_blocks = 0;
    let mut raw = sb.encode();
    JournalSuperblock::set_checksum(&mut raw);
    let sb = JournalSuperblock::decode(&raw).unwrap();
    assert_eq!(sb.validate(&raw, 4096, 4096).unwrap().last, 4096 - 256);
    assert_eq!(JBD2_MAGIC, 0xC03B_3998);
}
