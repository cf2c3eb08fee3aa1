//! Table-driven tests of superblock parsing on synthetic bytes.
use super::synth::*;
use super::*;
use crate::num::{GroupNo, Pblk};

const DEV: u64 = 8192 * 1024;

#[test]
fn good_superblock_parses() {
    let sb = Superblock::parse(&good(), DEV).unwrap();
    assert_eq!(sb.block_size, 1024);
    assert_eq!(sb.group_count, 1);
    assert_eq!(sb.inodes_per_block, 4);
    assert_eq!(sb.itable_blocks_per_group, 512);
    assert_eq!(sb.desc_size, 32);
    assert_eq!(sb.csum_seed, crc32c(!0, &[7u8; 16]));
    assert!(sb.metadata_csum() && !sb.gdt_csum());
    assert_eq!(sb.superblock_block(), Pblk(1));
}

#[test]
fn each_check_fails() {
    type Edit = fn(&mut Vec<u8>);
    // (edit, expected error text); the checksum is fixed after each edit.
    let cases: &[(Edit, &str)] = &[
        (|b| put32(b, S_LOG_BLOCK_SIZE, 7), "log block size"),
        (|b| put32(b, S_LOG_CLUSTER_SIZE, 1), "cluster size"),
        (|b| put16(b, S_INODE_SIZE, 100), "inode size"),
        (|b| put16(b, S_INODE_SIZE, 384), "inode size"),
        (|b| put16(b, S_INODE_SIZE, 2048), "inode size"),
        (|b| put32(b, S_FIRST_INO, 5), "first inode"),
        (|b| put32(b, S_BLOCKS_PER_GROUP, 0), "blocks per group"),
        (
            |b| put32(b, S_CLUSTERS_PER_GROUP, 9000),
            "clusters per group",
        ),
        (|b| put32(b, S_BLOCKS_PER_GROUP, 4096), "inconsistent"),
        (|b| put32(b, S_INODES_PER_GROUP, 2), "inodes per group"),
        (|b| put32(b, S_INODES_PER_GROUP, 9000), "inodes per group"),
        (|b| put32(b, S_INODES_PER_GROUP, 2046), "multiple"),
        (|b| put32(b, S_FIRST_DATA_BLOCK, 0), "first data block 0"),
        (|b| put32(b, S_FIRST_DATA_BLOCK, 8192), "first data block"),
        (|b| put32(b, S_BLOCKS_COUNT_LO, 0), "first data block"),
        (|b| put32(b, S_BLOCKS_COUNT_LO, 8193), "exceeds the device"),
        (|b| put32(b, S_R_BLOCKS_COUNT_LO, 9000), "reserved blocks"),
        (|b| put32(b, S_INODES_COUNT, 4096), "inode count"),
        (|b| put16(b, S_RESERVED_GDT_BLOCKS, 300), "reserved GDT"),
        (
            |b| {
                put32(b, S_FEATURE_INCOMPAT, incompat::BIT64 | incompat::EXTENTS);
                put16(b, S_DESC_SIZE, 32);
            },
            "descriptor size",
        ),
        (
            |b| {
                put32(b, S_FEATURE_INCOMPAT, incompat::BIT64 | incompat::EXTENTS);
                put16(b, S_DESC_SIZE, 96);
            },
            "descriptor size",
        ),
        (
            |b| {
                put32(b, S_FEATURE_INCOMPAT, incompat::META_BG);
                put32(b, S_FIRST_META_BG, 2);
            },
            "first meta block group",
        ),
        (
            |b| {
                let ro = ro_compat::METADATA_CSUM | ro_compat::EXTRA_ISIZE;
                put32(b, S_FEATURE_RO_COMPAT, ro);
                put16(b, S_MIN_EXTRA_ISIZE, 200);
            },
            "extra inode sizes",
        ),
        (
            |b| {
                put32(b, S_FEATURE_INCOMPAT, incompat::FLEX_BG | incompat::EXTENTS);
                b[S_LOG_GROUPS_PER_FLEX] = 32;
            },
            "log groups per flex",
        ),
        (|b| b[S_CHECKSUM_TYPE] = 2, "checksum type"),
        (
            |b| put32(b, S_FEATURE_INCOMPAT, incompat::ENCRYPT),
            "encrypt",
        ),
        (
            |b| put32(b, S_FEATURE_INCOMPAT, incompat::CASEFOLD),
            "casefold",
        ),
        (
            |b| put32(b, S_FEATURE_INCOMPAT, incompat::COMPRESSION),
            "compression",
        ),
        (
            |b| put32(b, S_FEATURE_INCOMPAT, incompat::JOURNAL_DEV),
            "journal_dev",
        ),
        (
            |b| put32(b, S_FEATURE_INCOMPAT, incompat::DIRDATA),
            "dirdata",
        ),
        (|b| put32(b, S_FEATURE_INCOMPAT, 1 << 30), "0x40000000"),
        (|b| put16(b, S_MAGIC, 0x1234), "magic"),
    ];
    for (i, (edit, want)) in cases.iter().enumerate() {
        let mut b = good();
        edit(&mut b);
        fix_csum(&mut b);
        let e = Superblock::parse(&b, DEV).unwrap_err();
        assert!(
            e.to_string().contains(want),
            "case {i}: got {e:?}, wanted {want:?}"
        );
    }
}

#[test]
fn flex_group_size_only_matters_with_flex_bg() {
    // Without flex_bg the kernel ignores the field; with it, up to 31.
    for (flex, log, ok) in [(false, 255u8, true), (true, 31, true), (true, 32, false)] {
        let mut b = good();
        if flex {
            put32(
                b.as_mut(),
                S_FEATURE_INCOMPAT,
                incompat::FLEX_BG | incompat::EXTENTS,
            );
        }
        b[S_LOG_GROUPS_PER_FLEX] = log;
        fix_csum(&mut b);
        assert_eq!(
            Superblock::parse(&b, DEV).is_ok(),
            ok,
            "flex_bg {flex}, log {log}"
        );
    }
}

#[test]
fn checksum_mismatch() {
    let mut b = good();
    b[S_VOLUME_NAME] ^= 1;
    assert!(matches!(
        Superblock::parse(&b, DEV).unwrap_err(),
        Error::Checksum { .. }
    ));
    // Without metadata_csum the same edit is fine.
    put32(&mut b, S_FEATURE_RO_COMPAT, 0);
    assert!(Superblock::parse(&b, DEV).is_ok());
}

#[test]
fn csum_seed_feature_uses_stored_seed() {
    let mut b = good();
    put32(
        &mut b,
        S_FEATURE_INCOMPAT,
        incompat::EXTENTS | incompat::CSUM_SEED,
    );
    put32(&mut b, S_CHECKSUM_SEED, 0xDEAD_BEEF);
    fix_csum(&mut b);
    assert_eq!(Superblock::parse(&b, DEV).unwrap().csum_seed, 0xDEAD_BEEF);
}

#[test]
fn short_buffer_and_unknown_ro_compat() {
    assert!(matches!(
        Superblock::parse(&[0u8; 100], DEV).unwrap_err(),
        Error::NotExt(_)
    ));
    let mut b = good();
    put32(
        &mut b,
        S_FEATURE_RO_COMPAT,
        ro_compat::METADATA_CSUM | 1 << 20,
    );
    fix_csum(&mut b);
    assert_eq!(
        Superblock::parse(&b, DEV).unwrap().unknown_ro_compat,
        1 << 20
    );
}

#[test]
fn backup_groups() {
    let mut sb = parsed();
    sb.feature_ro_compat |= ro_compat::SPARSE_SUPER;
    let with: Vec<u32> = (0..60)
        .filter(|&g| sb.group_has_super(GroupNo(g)))
        .collect();
    assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49]);
    sb.feature_compat |= compat::SPARSE_SUPER2;
    sb.backup_bgs = [1, 40];
    let with: Vec<u32> = (0..60)
        .filter(|&g| sb.group_has_super(GroupNo(g)))
        .collect();
    assert_eq!(with, vec![0, 1, 40]);
    sb.feature_compat = 0;
    sb.feature_ro_compat = 0;
    assert!((0..10).all(|g| sb.group_has_super(GroupNo(g))));
}
