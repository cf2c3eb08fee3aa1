//! Table-driven tests of the checks `Inode::parse` makes as the kernel's
//! `__ext4_iget` does: the size against the format's limit for the inode's
//! mapping, which size bits count for which file type, and the flags and
//! block references that contradict the filesystem.

use super::tests::{raw_inode, set_csum};
use super::*;
use crate::extent::EXTENT_MAGIC;
use crate::superblock::{incompat, synth};

const KIB: u64 = 1024;
/// The synthetic filesystem (1 KiB blocks, huge_file): s_maxbytes and
/// s_bitmap_maxbytes (see `limits`).
const EXTENT_MAX: u64 = (4 << 40) - KIB;
const INDIRECT_MAX: u64 = 16_843_020 * KIB;

fn put16(r: &mut [u8], at: usize, v: u16) {
    r[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(r: &mut [u8], at: usize, v: u32) {
    r[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// An empty extent root (magic, 0 entries, max 4, depth 0) in `i_block`.
fn extent_root(r: &mut [u8]) {
    put16(r, I_BLOCK, EXTENT_MAGIC);
    put16(r, I_BLOCK + 4, 4);
}

/// A raw inode of `mode` and `flags` with size `size`, checksum fixed.
fn inode_with(sb: &Superblock, mode: u16, flags: u32, size: u64) -> Vec<u8> {
    let mut r = raw_inode(sb, 12);
    put16(&mut r, I_MODE, mode | 0o644);
    put32(&mut r, I_FLAGS, flags);
    put32(&mut r, I_SIZE_LO, size as u32);
    put32(&mut r, I_SIZE_HIGH, (size >> 32) as u32);
    r[I_BLOCK..I_BLOCK + I_BLOCK_LEN].fill(0);
    if flags & flags::EXTENTS != 0 {
        extent_root(&mut r);
    }
    set_csum(sb, 12, &mut r);
    r
}

/// The synthetic superblock, with `largedir` when asked.
fn sb_with(largedir: bool) -> Superblock {
    let mut b = synth::good();
    if largedir {
        synth::put32(
            &mut b,
            0x60,
            incompat::FILETYPE | incompat::EXTENTS | incompat::LARGEDIR,
        );
        synth::fix_csum(&mut b);
    }
    Superblock::parse(&b, 8192 * 1024).unwrap()
}

#[test]
fn size_against_the_limit_of_the_mapping() {
    let ext = flags::EXTENTS;
    // (largedir, mode, flags, stored size, Some(size served) or None = corrupt)
    let cases: &[(bool, u16, u32, u64, Option<u64>)] = &[
        // Regular files: the limit of their mapping, inclusive.
        (false, S_IFREG, ext, EXTENT_MAX, Some(EXTENT_MAX)),
        (false, S_IFREG, ext, EXTENT_MAX + 1, None),
        (false, S_IFREG, 0, INDIRECT_MAX, Some(INDIRECT_MAX)),
        (false, S_IFREG, 0, INDIRECT_MAX + 1, None),
        // The report: 2^55 bytes on a block-mapped file.
        (false, S_IFREG, 0, 1 << 55, None),
        (false, S_IFREG, ext, 1 << 55, None),
        (false, S_IFREG, 0, u64::MAX, None),
        // Inline data has no extent flag: the block-map limit.
        (false, S_IFREG, flags::INLINE_DATA, INDIRECT_MAX + 1, None),
        // Without largedir the kernel reads only i_size_lo for anything
        // but a regular file: the high word (ext2's i_dir_acl) is ignored.
        (false, S_IFDIR, ext, (7 << 32) | 4096, Some(4096)),
        (false, S_IFDIR, 0, (1 << 63) | 2048, Some(2048)),
        (false, S_IFLNK, 0, (1 << 40) | 20, Some(20)),
        // With largedir a directory's size is 64 bits, under the same limits.
        (true, S_IFDIR, ext, (7 << 32) | 4096, Some((7 << 32) | 4096)),
        (true, S_IFDIR, ext, EXTENT_MAX + KIB, None),
        (true, S_IFDIR, 0, INDIRECT_MAX + KIB, None),
    ];
    for (i, &(largedir, mode, fl, size, want)) in cases.iter().enumerate() {
        let sb = sb_with(largedir);
        // A slow symlink needs blocks; a fast one none. 16 sectors: slow.
        let r = inode_with(&sb, mode, fl, size);
        let got = Inode::parse(&sb, InodeNo(12), &r);
        match (want, got) {
            (Some(w), Ok(inode)) => assert_eq!(inode.size, w, "case {i}"),
            (None, Err(e)) => {
                assert!(
                    matches!(e, Error::Corrupt { .. }) && e.to_string().contains("past the format"),
                    "case {i}: {e}"
                );
                assert!(
                    e.to_string().contains("inode 12"),
                    "case {i}: names the inode: {e}"
                );
            }
            (w, g) => panic!("case {i}: wanted {w:?}, got {g:?}"),
        }
    }
}

#[test]
fn contradicting_flags_and_references_are_corrupt() {
    type Edit = fn(&mut Vec<u8>);
    // (mode, flags, edit of the raw inode, expected error text); None: fine.
    let cases: &[(u16, u32, Edit, Option<&str>)] = &[
        // The synthetic fs has metadata_csum and no dir_index.
        (S_IFDIR, flags::INDEX, |_| {}, Some("htree flag")),
        (S_IFREG, flags::CASEFOLD, |_| {}, Some("casefold")),
        (S_IFLNK, flags::IMMUTABLE, |_| {}, Some("symlink")),
        (S_IFLNK, flags::APPEND, |_| {}, Some("symlink")),
        (S_IFREG, flags::IMMUTABLE, |_| {}, None),
        // An xattr block outside the 8192-block filesystem.
        (
            S_IFREG,
            0,
            |r| put32(r, I_FILE_ACL_LO, 9000),
            Some("extended attribute block"),
        ),
        (S_IFREG, 0, |r| put32(r, I_FILE_ACL_LO, 100), None),
        // Extent root: bad magic, entries past max, depth past 5, an
        // extent outside the filesystem, an index root without entries.
        (
            S_IFREG,
            flags::EXTENTS,
            |r| put16(r, I_BLOCK, 0x1234),
            Some("magic"),
        ),
        (
            S_IFREG,
            flags::EXTENTS,
            |r| put16(r, I_BLOCK + 2, 5),
            Some("entries"),
        ),
        (
            S_IFREG,
            flags::EXTENTS,
            |r| put16(r, I_BLOCK + 6, 6),
            Some("too deep"),
        ),
        (
            S_IFDIR,
            flags::EXTENTS,
            |r| {
                put16(r, I_BLOCK + 2, 1);
                put32(r, I_BLOCK + 12, 0); // ee_block
                put16(r, I_BLOCK + 16, 4); // ee_len
                put32(r, I_BLOCK + 20, 8190); // ee_start_lo: 8190..8194
            },
            Some("outside"),
        ),
        (
            S_IFREG,
            flags::EXTENTS,
            |r| put16(r, I_BLOCK + 6, 1),
            Some("without entries"),
        ),
        // Block map: a direct pointer outside the filesystem; an indirect
        // one is only followed (and checked) by a read.
        (
            S_IFREG,
            0,
            |r| put32(r, I_BLOCK + 4 * 3, 8192),
            Some("direct pointer 3"),
        ),
        (S_IFREG, 0, |r| put32(r, I_BLOCK + 4 * 12, 8192), None),
        // Device nodes keep a device number, not block references.
        (S_IFCHR, 0, |r| put32(r, I_BLOCK, 0xFFFF_FFFF), None),
    ];
    let sb = synth::parsed();
    for (i, &(mode, fl, edit, want)) in cases.iter().enumerate() {
        let mut r = inode_with(&sb, mode, fl, 100);
        edit(&mut r);
        set_csum(&sb, 12, &mut r);
        match (want, Inode::parse(&sb, InodeNo(12), &r)) {
            (None, Ok(_)) => {}
            (Some(w), Err(e)) => {
                assert!(
                    matches!(e, Error::Corrupt { .. }) && e.to_string().contains(w),
                    "case {i}: {e}, wanted {w:?}"
                );
            }
            (w, g) => panic!("case {i}: wanted {w:?}, got {g:?}"),
        }
    }
}

#[test]
fn fast_symlinks_as_the_kernel_tells_them() {
    let sb = synth::parsed(); // no ea_inode, 1 KiB blocks: 2 sectors per cluster
                              // (i_blocks in sectors, xattr block, inline flag, fast?)
    let cases: &[(u32, u32, bool, bool)] = &[
        (0, 0, false, true),
        (2, 0, false, false),
        (2, 100, false, true), // only the xattr block's cluster
        (4, 100, false, false),
        (0, 100, false, false), // fewer blocks than the xattr block: not fast
        (0, 0, true, false),    // inline data
    ];
    for (i, &(blocks, acl, inline, fast)) in cases.iter().enumerate() {
        let fl = if inline { flags::INLINE_DATA } else { 0 };
        let mut r = inode_with(&sb, S_IFLNK, fl, 20);
        put32(&mut r, I_BLOCKS_LO, blocks);
        put32(&mut r, I_FILE_ACL_LO, acl);
        set_csum(&sb, 12, &mut r);
        let inode = Inode::parse(&sb, InodeNo(12), &r).unwrap();
        assert_eq!(inode.is_fast_symlink(&sb), fast, "case {i}");
    }
}
