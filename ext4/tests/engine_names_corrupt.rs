//! Namespace engine tests, hostile images: damaged dirents, directory and
//! xattr checksums, dx roots and looping dx nodes, xattr offsets, inline
//! directories and symlink sizes each give Corrupt/Checksum, never a panic
//! or a hang, and the rest of the filesystem stays readable.

mod names_fixtures;

use fsvc_ext4::{Error, ROOT_INO};
use names_fixtures::*;

#[test]
fn corrupt_linear_directories() {
    const BS: usize = 4096;
    // Structure checks on an image without checksums (so the structure, not
    // a checksum, is what fails), checksums on one with them.
    let s = Scratch::new("corrupt-dir");
    populate_small(&s.tree().join("small"));
    let img = s.mkfs(&["-b", "4096", "-O", "^metadata_csum"], "16M");
    let pristine = std::fs::read(&img).unwrap();
    let blk = bmap(&img, "small", 0) * BS;
    let dir = open(&img).lookup(ROOT_INO, b"small").unwrap();
    type Patch = fn(&mut [u8], usize);
    let cases: [(&str, Patch); 5] = [
        ("rec_len past the block", |b, at| {
            put16(b, at + 12 + 4, 0x2000)
        }),
        ("name_len past rec_len", |b, at| b[at + 6] = 200),
        ("rec_len below minimum", |b, at| put16(b, at + 12 + 4, 4)),
        ("unaligned rec_len", |b, at| put16(b, at + 4, 14)),
        ("inode out of range", |b, at| put32(b, at + 24, 0x7fff_ffff)),
    ];
    for (what, patch) in cases {
        let mut b = pristine.clone();
        patch(&mut b, blk);
        let fs = open_bytes(b).unwrap();
        assert!(is_corrupt(read_dir_result(&fs, dir)), "{what}: read_dir");
        assert!(is_corrupt(fs.lookup(dir, b"f1")), "{what}: lookup");
        // The rest of the filesystem stays readable.
        assert!(fs.lookup(ROOT_INO, b"small").is_ok(), "{what}");
    }

    let s = Scratch::new("corrupt-dircsum");
    populate_small(&s.tree().join("small"));
    let img = s.mkfs(&["-b", "4096"], "16M");
    let mut b = std::fs::read(&img).unwrap();
    let at = bmap(&img, "small", 0) * BS + 30;
    b[at] ^= 0x40;
    let fs = open_bytes(b).unwrap();
    let dir = fs.lookup(ROOT_INO, b"small").unwrap();
    assert!(
        is_checksum(read_dir_result(&fs, dir)),
        "bad leaf checksum: read_dir"
    );
    assert!(
        is_checksum(fs.lookup(dir, b"f1")),
        "bad leaf checksum: lookup"
    );
}

#[test]
fn corrupt_htree_indexes() {
    const BS: usize = 1024;
    let s = Scratch::new("corrupt-htree");
    populate_big(&s.tree().join("big"), 6000);
    let img = s.mkfs(&["-b", "1024", "-O", "^metadata_csum"], "64M");
    e2fsck_d(&img);
    assert_eq!(htree_levels(&img, "big"), Some(1));
    let pristine = std::fs::read(&img).unwrap();
    let root = bmap(&img, "big", 0) * BS;
    let dir = open(&img).lookup(ROOT_INO, b"big").unwrap();
    let probe = |b: Vec<u8>, what: &str, also_readdir: bool| {
        let fs = open_bytes(b).unwrap();
        // Every name must now fail as corruption (or, at worst, be found);
        // never a panic or a hang.
        let mut errors = 0;
        for i in (0..6000).step_by(97) {
            let mut name = odd_name(i);
            if i % 3 == 0 {
                name.extend_from_slice(b"_some_longer_suffix");
            }
            match fs.lookup(dir, &name) {
                Err(Error::Corrupt { .. }) => errors += 1,
                Ok(_) => {}
                Err(e) => panic!("{what}: unexpected {e}"),
            }
        }
        assert!(errors > 0, "{what}: no lookup noticed");
        if also_readdir {
            assert!(is_corrupt(read_dir_result(&fs, dir)), "{what}: read_dir");
        }
    };
    let mut b = pristine.clone();
    put16(&mut b, root + 0x20, 200);
    probe(b, "dx root limit", true);
    let mut b = pristine.clone();
    b[root + 0x1e] = 3;
    probe(b, "dx root levels", true);
    let mut b = pristine.clone();
    b[root + 0x1c] = 9;
    probe(b, "dx root hash version", true);
    let mut b = pristine.clone();
    let limit = u16::from_le_bytes([b[root + 0x20], b[root + 0x21]]);
    put16(&mut b, root + 0x22, limit + 1);
    probe(b, "dx root count above limit", true);
    // Every interior node points back at itself / at the root: a loop.
    let count = usize::from(u16::from_le_bytes([
        pristine[root + 0x22],
        pristine[root + 0x23],
    ]));
    for target in ["self", "root", "past the end"] {
        let mut b = pristine.clone();
        for i in 0..count {
            let node_lblk = u32::from_le_bytes(
                pristine[root + 0x24 + 8 * i..root + 0x28 + 8 * i]
                    .try_into()
                    .unwrap(),
            );
            let node = bmap(&img, "big", u64::from(node_lblk)) * BS;
            let ncount = usize::from(u16::from_le_bytes([b[node + 10], b[node + 11]]));
            let to = match target {
                "self" => node_lblk,
                "root" => 0,
                _ => 0x0fff_fff0,
            };
            for j in 0..ncount {
                put32(&mut b, node + 8 + 8 * j + 4, to);
            }
        }
        // read_dir does not follow the index, so only lookups notice.
        probe(b, &format!("dx node pointing at {target}"), false);
    }
}

#[test]
fn corrupt_xattrs_and_symlinks() {
    const BS: usize = 4096;
    let s = Scratch::new("corrupt-xattr");
    populate_xattrs(&s.tree(), 3000);
    std::os::unix::fs::symlink("abc", s.tree().join("fast")).unwrap();
    let img = s.mkfs(&["-b", "4096", "-O", "^metadata_csum"], "16M");
    let pristine = std::fs::read(&img).unwrap();
    let fs0 = open(&img);
    let small = fs0.lookup(ROOT_INO, b"small").unwrap();
    let bigval = fs0.lookup(ROOT_INO, b"bigval").unwrap();
    let fast = fs0.lookup(ROOT_INO, b"fast").unwrap();
    let acl_blk = fs0.inode(bigval).unwrap().file_acl.0 as usize * BS;
    // In-inode area of "small": magic at 128 + extra_isize, first entry after.
    let ioff = inode_offset(&img, "small", BS);
    let extra = usize::from(u16::from_le_bytes([
        pristine[ioff + 128],
        pristine[ioff + 129],
    ]));
    let first = ioff + 128 + extra + 4;

    let mut b = pristine.clone();
    put16(&mut b, first + 2, 0xfff0);
    let fs = open_bytes(b).unwrap();
    assert!(
        is_corrupt(fs.list_xattrs(small)),
        "in-inode value offset out of bounds"
    );
    assert!(is_corrupt(fs.get_xattr(small, b"user.a")));

    let mut b = pristine.clone();
    put32(&mut b, first + 8, 0x7fff_ffff);
    assert!(
        is_corrupt(open_bytes(b).unwrap().list_xattrs(small)),
        "value size out of bounds"
    );

    let mut b = pristine.clone();
    b[first] = 250; // name_len past the area
    assert!(
        is_corrupt(open_bytes(b).unwrap().list_xattrs(small)),
        "name past the area"
    );

    let mut b = pristine.clone();
    b[acl_blk + 3] = 0;
    let fs = open_bytes(b).unwrap();
    assert!(
        is_corrupt(fs.get_xattr(bigval, b"user.big")),
        "bad block magic"
    );
    assert!(
        fs.get_xattr(small, b"user.a").is_ok(),
        "other inodes unaffected"
    );

    let mut b = pristine.clone();
    put16(&mut b, acl_blk + 32 + 2, 4090);
    assert!(
        is_corrupt(open_bytes(b).unwrap().get_xattr(bigval, b"user.big")),
        "block value offset"
    );

    // A fast symlink whose size claims more than i_block holds.
    let mut b = pristine.clone();
    put32(&mut b, inode_offset(&img, "fast", BS) + 4, 100);
    assert!(
        is_corrupt(open_bytes(b).unwrap().read_link(fast)),
        "fast symlink size"
    );

    // Checksums: a flipped byte in the xattr block of a metadata_csum image.
    let s = Scratch::new("corrupt-xattrcsum");
    populate_xattrs(&s.tree(), 3000);
    let img = s.mkfs(&["-b", "4096"], "16M");
    let mut b = std::fs::read(&img).unwrap();
    let fs0 = open(&img);
    let bigval = fs0.lookup(ROOT_INO, b"bigval").unwrap();
    let blk = fs0.inode(bigval).unwrap().file_acl.0 as usize * BS;
    b[blk + BS - 100] ^= 1;
    assert!(
        is_checksum(open_bytes(b).unwrap().get_xattr(bigval, b"user.big")),
        "xattr block csum"
    );
}

#[test]
fn corrupt_inline_directory() {
    let s = Scratch::new("corrupt-inline");
    std::fs::create_dir(s.tree().join("idir")).unwrap();
    mkfile(&s.tree().join("idir/a"), b"");
    let img = s.mkfs(
        &[
            "-b",
            "4096",
            "-I",
            "256",
            "-O",
            "inline_data,^metadata_csum",
        ],
        "8M",
    );
    let pristine = std::fs::read(&img).unwrap();
    let dir = open(&img).lookup(ROOT_INO, b"idir").unwrap();
    let iblock = inode_offset(&img, "idir", 4096) + 0x28;
    for (what, at, v) in [
        ("rec_len past i_block", 4 + 4, 200u16),
        ("rec_len zero", 4 + 4, 0),
    ] {
        let mut b = pristine.clone();
        put16(&mut b, iblock + at, v);
        let fs = open_bytes(b).unwrap();
        assert!(is_corrupt(read_dir_result(&fs, dir)), "{what}");
        assert!(is_corrupt(fs.lookup(dir, b"a")), "{what}");
    }
    let mut b = pristine.clone();
    put32(&mut b, iblock, 0x7fff_ffff);
    assert!(
        is_corrupt(open_bytes(b).unwrap().lookup(dir, b"..")),
        "parent out of range"
    );
}
