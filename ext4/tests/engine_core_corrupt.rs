//! Corrupted images: flipped bytes in the superblock, group descriptors,
//! bitmaps, inodes and extent blocks give typed errors (Corrupt, Checksum,
//! Unsupported, NeedsRecovery), never a panic; the rest stays readable.

mod core_util;

use std::path::PathBuf;
use std::sync::Arc;

use core_util::*;
use fsvc_ext4::extent;
use fsvc_ext4::io::mem::MemChannel;
use fsvc_ext4::{Error, Fs, GroupNo, InodeNo, OpenOptions};

/// An image with the standard tree and the parsed engine view of it.
struct Fixture {
    _s: Scratch,
    path: PathBuf,
    bytes: Vec<u8>,
}

fn fixture(args: &[&str]) -> Fixture {
    let s = Scratch::new("bad");
    let tree = s.0.join("tree");
    make_tree(&tree, false);
    let path = mkfs(&s.0, args, &tree, "8M");
    let bytes = std::fs::read(&path).unwrap();
    Fixture { _s: s, path, bytes }
}

fn ino_of(f: &Fixture, p: &str) -> InodeNo {
    debugfs_stat(&f.path, p).ino
}

/// Byte offset of inode `ino` in the image.
fn inode_offset(fs: &Fs, ino: InodeNo) -> usize {
    let sb = fs.sb();
    let (g, idx) = ino.group_index(sb.inodes_per_group).unwrap();
    let gd = fs.group(g).unwrap();
    (gd.inode_table.0 * u64::from(sb.block_size) + u64::from(idx) * u64::from(sb.inode_size))
        as usize
}

fn is_corrupt(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. } | Error::Checksum { .. })
}

#[test]
fn corrupt_superblock_checksum_and_geometry() {
    let f = fixture(&["-t", "ext4", "-b", "1024"]);
    // metadata_csum: any flipped byte is a checksum error.
    for off in [0x0usize, 0x18, 0x20, 0x28, 0x58, 0x68] {
        let mut b = f.bytes.clone();
        b[1024 + off] ^= 0x10;
        let e = open(&b).unwrap_err();
        assert!(matches!(e, Error::Checksum { .. }), "offset {off:#x}: {e}");
    }
    // Bad magic.
    let mut b = f.bytes.clone();
    b[1024 + 0x38] = 0;
    assert!(matches!(open(&b).unwrap_err(), Error::NotExt(_)));

    // Without checksums the geometry checks are what catches it.
    let f = fixture(&["-t", "ext2", "-b", "1024"]);
    let put32 = |b: &mut Vec<u8>, off: usize, v: u32| {
        b[1024 + off..1024 + off + 4].copy_from_slice(&v.to_le_bytes())
    };
    let cases: &[(usize, u32, &str)] = &[
        (0x18, 7, "log block size"),
        (0x20, 0, "blocks per group"),
        (0x20, 1 << 20, "clusters per group"),
        (0x28, 0, "inodes per group"),
        (0x28, 100_000, "inodes per group"),
        (0x14, 0, "first data block 0"),
        (0x4, 0x7fff_ffff, "exceeds the device"),
        (0x0, 12345, "inode count"),
    ];
    for &(off, v, want) in cases {
        let mut b = f.bytes.clone();
        put32(&mut b, off, v);
        let e = open(&b).unwrap_err();
        assert!(is_corrupt(&e), "{off:#x}={v}: {e}");
        assert!(
            e.to_string().contains(want),
            "{off:#x}={v}: {e} (wanted {want:?})"
        );
    }
    // Unknown and refused incompat features are named.
    for (bit, name) in [
        (0x10000u32, "encrypt"),
        (0x20000, "casefold"),
        (0x4000_0000, "0x40000000"),
    ] {
        let mut b = f.bytes.clone();
        let cur = u32::from_le_bytes(b[1024 + 0x60..1024 + 0x64].try_into().unwrap());
        put32(&mut b, 0x60, cur | bit);
        let e = open(&b).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    // needs_recovery: refused unless norecovery.
    let mut b = f.bytes.clone();
    let cur = u32::from_le_bytes(b[1024 + 0x60..1024 + 0x64].try_into().unwrap());
    put32(&mut b, 0x60, cur | 0x4);
    assert!(matches!(open(&b).unwrap_err(), Error::NeedsRecovery));
    let fs = Fs::open(
        Arc::new(MemChannel::read_only(b)),
        &OpenOptions {
            read_only: true,
            norecovery: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(fs.stat(InodeNo(2)).is_ok());
}

#[test]
fn corrupt_group_descriptor() {
    // (mkfs args, whether descriptors carry a checksum)
    for (args, csum) in [
        (&["-t", "ext4", "-b", "1024", "-g", "2048"][..], true),
        (
            &[
                "-t",
                "ext4",
                "-b",
                "1024",
                "-g",
                "2048",
                "-O",
                "^metadata_csum,uninit_bg",
            ][..],
            true,
        ),
        (
            &[
                "-t",
                "ext4",
                "-b",
                "1024",
                "-g",
                "2048",
                "-O",
                "^metadata_csum,uninit_bg,^64bit",
            ][..],
            true,
        ),
        (
            &[
                "-t",
                "ext4",
                "-b",
                "1024",
                "-g",
                "2048",
                "-O",
                "^metadata_csum",
            ][..],
            false,
        ),
    ] {
        let f = fixture(args);
        let fs = open(&f.bytes).unwrap();
        let sb = fs.sb().clone();
        assert!(sb.group_count >= 2, "{args:?}");
        assert!(fs.group(GroupNo(1)).unwrap().csum_ok);
        let gdt = (1024 / sb.block_size as usize + 1) * sb.block_size as usize;
        let ds = usize::from(sb.desc_size);
        // Flip the free-blocks count of group 1: only group 1 is refused.
        let mut b = f.bytes.clone();
        b[gdt + ds + 0xC] ^= 0x01;
        let fs2 = open(&b).unwrap();
        let ino_in_g1 = InodeNo(sb.inodes_per_group + 1);
        if csum {
            assert!(!fs2.group(GroupNo(1)).unwrap().csum_ok, "{args:?}");
            assert!(matches!(
                fs2.inode(ino_in_g1).unwrap_err(),
                Error::Checksum { .. }
            ));
            assert!(matches!(
                fs2.verify_bitmaps(GroupNo(1)).unwrap_err(),
                Error::Checksum { .. }
            ));
        } else {
            assert!(fs2.group(GroupNo(1)).unwrap().csum_ok, "{args:?}");
        }
        assert!(
            fs2.stat(InodeNo(2)).is_ok(),
            "{args:?}: group 0 stays readable"
        );
        // An inode table outside the filesystem refuses the mount.
        let mut b = f.bytes.clone();
        b[gdt + ds + 0x8..gdt + ds + 0xC].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        let e = open(&b).unwrap_err();
        assert!(
            is_corrupt(&e) && e.to_string().contains("inode table"),
            "{e}"
        );
    }
}

#[test]
fn corrupt_bitmap_checksum() {
    let f = fixture(&["-t", "ext4", "-b", "1024"]);
    let fs = open(&f.bytes).unwrap();
    fs.verify_bitmaps(GroupNo(0)).unwrap();
    let gd = fs.group(GroupNo(0)).unwrap().clone();
    let mut b = f.bytes.clone();
    b[(gd.inode_bitmap.0 * 1024) as usize] ^= 0x80;
    let fs = open(&b).unwrap();
    let e = fs.verify_bitmaps(GroupNo(0)).unwrap_err();
    assert!(e.to_string().contains("inode bitmap"), "{e}");
}

#[test]
fn corrupt_inode() {
    // With metadata_csum: a flipped byte is a checksum error.
    let f = fixture(&["-t", "ext4", "-b", "1024"]);
    let fs = open(&f.bytes).unwrap();
    let ino = ino_of(&f, "small");
    let off = inode_offset(&fs, ino);
    for field in [0x4usize, 0x20, 0x28, 0x80, 0x90] {
        let mut b = f.bytes.clone();
        b[off + field] ^= 0x04;
        let fs = open(&b).unwrap();
        let e = fs.stat(ino).unwrap_err();
        assert!(matches!(e, Error::Checksum { .. }), "field {field:#x}: {e}");
        assert!(fs.stat(InodeNo(2)).is_ok());
    }
    // Without: structural checks.
    let f = fixture(&["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"]);
    let fs = open(&f.bytes).unwrap();
    let ino = ino_of(&f, "small");
    let off = inode_offset(&fs, ino);
    let mut b = f.bytes.clone();
    b[off + 1] = 0xF0; // file type 0o170000: invalid
    let e = open(&b).unwrap().stat(ino).unwrap_err();
    assert!(is_corrupt(&e) && e.to_string().contains("file type"), "{e}");
    let mut b = f.bytes.clone();
    b[off + 0x80..off + 0x82].copy_from_slice(&300u16.to_le_bytes());
    let e = open(&b).unwrap().stat(ino).unwrap_err();
    assert!(e.to_string().contains("extra inode size"), "{e}");
    // Out-of-range and never-used inodes.
    let fs = open(&f.bytes).unwrap();
    assert!(matches!(
        fs.inode(InodeNo(0)).unwrap_err(),
        Error::NoSuchInode(InodeNo(0))
    ));
    let n = fs.sb().inodes_count;
    assert!(matches!(
        fs.inode(InodeNo(n + 1)).unwrap_err(),
        Error::NoSuchInode(_)
    ));
    assert!(matches!(
        fs.inode(InodeNo(n)).unwrap_err(),
        Error::NoSuchInode(_)
    ));
}

/// The fragmented file's extent leaf block.
fn leaf_of(fs: &Fs, ino: InodeNo) -> u64 {
    let inode = fs.inode(ino).unwrap();
    let ib = inode.i_block();
    assert_eq!(u16::from_le_bytes([ib[6], ib[7]]), 1, "expected depth 1");
    u64::from(u32::from_le_bytes(ib[16..20].try_into().unwrap()))
}

#[test]
fn corrupt_extent_blocks() {
    for csum in [true, false] {
        let args: &[&str] = if csum {
            &["-t", "ext4", "-b", "1024"]
        } else {
            &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"]
        };
        let f = fixture(args);
        let fs = open(&f.bytes).unwrap();
        let ino = ino_of(&f, "fragmented");
        let leaf = leaf_of(&fs, ino) as usize * 1024;
        let cases: &[(usize, u8, &str)] = &[
            (0, 0x0B, "magic"),            // eh_magic
            (4, 0xFF, "max"),              // eh_max way over capacity
            (6, 0x01, "depth"),            // leaf claims depth 1
            (12 + 12, 0x00, "order"),      // 2nd extent's logical start := low byte 0
            (12 + 6, 0xFF, "outside"),     // ee_start_hi of extent 0
            (12 + 4, 0x00, "zero-length"), // ee_len low byte (len < 256)
        ];
        for &(off, val, why) in cases {
            let mut b = f.bytes.clone();
            b[leaf + off] = val;
            if off == 12 + 4 {
                b[leaf + off + 1] = 0;
            }
            let fs = open(&b).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let e = fs.read(ino, 0, &mut buf).unwrap_err();
            if csum && !matches!(why, "magic" | "max") {
                assert!(matches!(e, Error::Checksum { .. }), "{why}: {e}");
            } else {
                assert!(is_corrupt(&e), "{why}: {e}");
                if !csum {
                    assert!(e.to_string().contains(why), "{why}: {e}");
                }
            }
            // Other files stay readable.
            assert!(fs.read(ino_of(&f, "multi"), 0, &mut buf).is_ok());
        }
    }
}

#[test]
fn extent_loop_is_refused() {
    // Without checksums, make the leaf an index node pointing to itself:
    // depth must drop by one per level, so the walk stops at once.
    let f = fixture(&["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"]);
    let fs = open(&f.bytes).unwrap();
    let ino = ino_of(&f, "fragmented");
    let leaf = leaf_of(&fs, ino);
    let off = leaf as usize * 1024;
    let mut b = f.bytes.clone();
    b[off + 6..off + 8].copy_from_slice(&0u16.to_le_bytes());
    // Root depth 1 -> 2 and the leaf's depth 0 -> 1 with its entry 0 an index to itself.
    let ioff = inode_offset(&fs, ino);
    b[ioff + 0x28 + 6..ioff + 0x28 + 8].copy_from_slice(&2u16.to_le_bytes());
    b[off + 6..off + 8].copy_from_slice(&1u16.to_le_bytes());
    b[off + 12 + 4..off + 12 + 8].copy_from_slice(&(leaf as u32).to_le_bytes());
    b[off + 12 + 8..off + 12 + 10].copy_from_slice(&0u16.to_le_bytes());
    // Only that entry: the other extents, read as index entries, would
    // point outside the filesystem (every index entry is checked).
    b[off + 2..off + 4].copy_from_slice(&1u16.to_le_bytes());
    let fs = open(&b).unwrap();
    let mut buf = vec![0u8; 4096];
    let e = fs.read(ino, 0, &mut buf).unwrap_err();
    assert!(is_corrupt(&e) && e.to_string().contains("depth"), "{e}");
}

#[test]
fn random_corruption_never_panics() {
    // Flip bytes all over the metadata of a small image and use every
    // inode; errors are fine, panics are bugs.
    for args in [
        &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"][..],
        &["-t", "ext2", "-b", "1024"][..],
        &[
            "-t",
            "ext4",
            "-b",
            "1024",
            "-O",
            "^metadata_csum,^extent,^64bit",
        ][..],
    ] {
        let f = fixture(args);
        let fs = open(&f.bytes).unwrap();
        let sb = fs.sb().clone();
        // Metadata lives in the first blocks of group 0 (sb, GDT, bitmaps,
        // inode table) plus the extent/indirect blocks of the files.
        let gd = fs.group(GroupNo(0)).unwrap().clone();
        let meta_end = ((gd.inode_table.0 + u64::from(sb.itable_blocks_per_group)) * 1024) as usize;
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..150 {
            let mut b = f.bytes.clone();
            for k in 0..8 {
                // Mostly group 0's metadata; sometimes anywhere (extent and
                // indirect blocks, directory blocks).
                let span = if k % 2 == 0 {
                    meta_end - 1024
                } else {
                    b.len() - 1024
                };
                let at = 1024 + (next() as usize % span);
                b[at] ^= (next() as u8) | 1;
            }
            let Ok(fs) = open(&b) else { continue };
            let _ = fs.statfs();
            let mut buf = vec![0u8; 1 << 16];
            for ino in (1..=32).map(InodeNo) {
                let _ = fs.stat(ino);
                let _ = fs.read(ino, 0, &mut buf);
                let _ = fs.read(ino, 5_000_000_000, &mut buf);
            }
            for g in (0..fs.sb().group_count).map(GroupNo) {
                let _ = fs.verify_bitmaps(g);
            }
        }
    }
}

#[test]
fn extent_collect_lists_fragmented_runs() {
    let f = fixture(&["-t", "ext4", "-b", "1024"]);
    let fs = open(&f.bytes).unwrap();
    let ino = ino_of(&f, "fragmented");
    let inode = fs.inode(ino).unwrap();
    let (depth, runs) = extent::collect(
        fs.sb(),
        inode.i_block(),
        inode.csum_seed,
        &|b| fs.meta_block(b),
        "test",
        1000,
    )
    .unwrap();
    assert_eq!(depth, 1);
    // debugfs's leaf extents, with physically contiguous neighbours merged
    // (the engine reports runs).
    let ex = debugfs(&f.path, "ex /fragmented");
    let mut want: Vec<(u32, u64, u32)> = Vec::new();
    for line in ex.lines().filter(|l| l.trim_start().starts_with("1/")) {
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|t| !t.is_empty())
            .map(|t| t.parse().unwrap())
            .collect();
        // level, depth, index, count, lstart, lend, pstart, pend, len
        let (l, p, n) = (nums[4] as u32, nums[6], nums[8] as u32);
        match want.last_mut() {
            Some(w) if w.0 + w.2 == l && w.1 + u64::from(w.2) == p => w.2 += n,
            _ => want.push((l, p, n)),
        }
    }
    let got: Vec<(u32, u64, u32)> = runs.iter().map(|r| (r.lblk.0, r.pblk.0, r.len)).collect();
    assert_eq!(got, want);
    let mapped: u64 = runs.iter().map(|r| u64::from(r.len)).sum();
    assert_eq!(mapped, 12 * 5, "5000 bytes = 5 KiB blocks each");
}
