//! Namespace engine tests, directories: dx hashes against debugfs, linear
//! directories across formats, htree lookups for every hash and depth, and
//! the linear cost of reading a 50 000-entry directory in batches.
//! Fixtures are made at test time (names_fixtures).

mod names_fixtures;

use std::process::Command;

use fsvc_ext4::{Error, InodeNo};
use names_fixtures::*;

use fsvc_ext4::hash::dx_hash;

#[test]
fn hashes_match_debugfs() {
    let s = Scratch::new("hash");
    let img = s.mkfs(&["-b", "1024"], "4M");
    let seeds = [
        "00000000-0000-0000-0000-000000000000",
        "6f1c3d2e-9a8b-4c7d-8e5f-0123456789ab",
    ];
    let names: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            let mut n = odd_name(i * 3);
            // Lengths across the 16- and 32-byte block boundaries.
            n.extend(std::iter::repeat_n(b'z', (i * 5) % 70));
            n
        })
        .collect();
    for seed in seeds {
        let words = seed_words(seed);
        for version in 0..6u8 {
            // debugfs takes raw bytes on its command lines: build them as bytes.
            let mut cmds = Vec::new();
            for n in &names {
                cmds.extend_from_slice(format!("dx_hash -h {version} -s {seed} ").as_bytes());
                cmds.extend_from_slice(n);
                cmds.push(b'\n');
            }
            let cmdfile = s.0.join("cmds");
            std::fs::write(&cmdfile, &cmds).unwrap();
            let out = Command::new("debugfs")
                .arg("-f")
                .arg(&cmdfile)
                .arg(&img)
                .output()
                .unwrap();
            let lines: Vec<&[u8]> = out
                .stdout
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"Hash of "))
                .collect();
            assert_eq!(lines.len(), names.len());
            for (n, l) in names.iter().zip(lines) {
                let text = String::from_utf8_lossy(l);
                let tail = text.rsplit(" is ").next().unwrap();
                let hex: Vec<u32> = tail
                    .split_whitespace()
                    .filter_map(|t| t.trim_matches(|c| c == '(' || c == ')').strip_prefix("0x"))
                    .map(|t| u32::from_str_radix(t, 16).unwrap())
                    .collect();
                let h = dx_hash(n, version, &words).unwrap();
                assert_eq!(
                    (h.major, h.minor),
                    (hex[0], hex[1]),
                    "v{version} seed {seed} name {n:?}"
                );
            }
        }
    }
}

fn seed_words(uuid: &str) -> [u32; 4] {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    [0, 1, 2, 3].map(|i| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]))
}

#[test]
fn linear_directories_across_formats() {
    let variants: [(&str, &[&str], bool); 7] = [
        ("ext4-4k", &["-b", "4096"], true),
        ("ext4-1k", &["-b", "1024"], true),
        ("ext4-nocsum", &["-b", "4096", "-O", "^metadata_csum"], true),
        ("ext4-2k-noindex", &["-b", "2048", "-O", "^dir_index"], true),
        ("ext2", &["-t", "ext2", "-b", "1024"], true),
        ("ext2-nofiletype", &["-t", "ext2", "-O", "^filetype"], false),
        ("ext3", &["-t", "ext3", "-b", "2048"], true),
    ];
    for (name, args, filetype) in variants {
        let s = Scratch::new(name);
        populate_small(&s.tree().join("small"));
        let img = s.mkfs(args, "16M");
        let fs = open(&img);
        check_dir(&fs, &img, &s.tree().join("small"), "small", filetype);
        check_dir(
            &fs,
            &img,
            &s.tree().join("small/sub"),
            "small/sub",
            filetype,
        );
        let file = resolve(&fs, "small/f1");
        assert!(matches!(fs.lookup(file, b"x"), Err(Error::NotDirectory)));
        assert!(matches!(
            fs.read_dir(file, 0, &mut |_| true),
            Err(Error::NotDirectory)
        ));
        assert_eq!(
            fs.lookup(resolve(&fs, "small/sub"), b"..").unwrap(),
            resolve(&fs, "small")
        );
    }
}

#[test]
fn htree_lookups_every_hash() {
    // (label, mkfs args, default hash, entries, expected index levels)
    let variants: [(&str, &[&str], &str, usize, u32); 5] = [
        ("htree-md4", &["-b", "4096"], "half_md4", 3000, 0),
        ("htree-tea", &["-b", "4096"], "tea", 3000, 0),
        (
            "htree-legacy",
            &["-b", "2048", "-O", "^metadata_csum"],
            "legacy",
            3000,
            0,
        ),
        ("htree-2lvl", &["-b", "1024"], "half_md4", 6000, 1),
        (
            "htree-2lvl-tea",
            &["-b", "1024", "-O", "^metadata_csum"],
            "tea",
            6000,
            1,
        ),
    ];
    for (label, args, hash, n, levels) in variants {
        let s = Scratch::new(label);
        populate_big(&s.tree().join("big"), n);
        let img = s.mkfs(args, "64M");
        // e2fsck -D builds indexes with the superblock's default hash.
        let out = debugfs_w(&img, &format!("ssv def_hash_version {hash}"));
        assert!(!String::from_utf8_lossy(&out).contains("rror"), "{out:?}");
        e2fsck_d(&img);
        assert_eq!(
            htree_levels(&img, "big"),
            Some(levels),
            "{label}: index levels"
        );
        let fs = open(&img);
        let dir = resolve(&fs, "big");
        let want = ls_p(&img, "big");
        assert_eq!(want.len(), n + 2);
        for (ino, name) in &want {
            assert_eq!(
                fs.lookup(dir, name).unwrap(),
                *ino,
                "{label}: lookup {name:?}"
            );
        }
        for i in [n, n + 1, n * 2] {
            assert!(
                matches!(fs.lookup(dir, &odd_name(i)), Err(Error::NotFound)),
                "{label}"
            );
        }
        let mut got: Vec<(InodeNo, Vec<u8>)> = read_all(&fs, dir)
            .into_iter()
            .map(|e| (e.ino, e.name))
            .collect();
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "{label}: read_dir of an indexed directory");
    }
}

/// Images whose superblock says "unsigned char" hashing: the index was built
/// by e2fsck with the unsigned variants, and names with bytes ≥ 0x80 must be
/// found with them.
#[test]
fn htree_unsigned_hash_flag() {
    let s = Scratch::new("htree-unsigned");
    populate_big(&s.tree().join("big"), 3000);
    let img = s.mkfs(&["-b", "4096"], "64M");
    // s_flags: unsigned (2) instead of signed (1), then rebuild the index.
    let out = debugfs_w(&img, "ssv flags 2");
    assert!(!String::from_utf8_lossy(&out).contains("rror"), "{out:?}");
    e2fsck_d(&img);
    let fs = open(&img);
    let dir = resolve(&fs, "big");
    for (ino, name) in ls_p(&img, "big") {
        assert_eq!(fs.lookup(dir, &name).unwrap(), ino, "lookup {name:?}");
    }
}

#[test]
fn fifty_thousand_entries_read_in_linear_work() {
    if !privileged("fifty_thousand_entries_read_in_linear_work") {
        return;
    }
    // mkfs -d inserts entries one by one into a linear directory
    // (minutes for 50 000), so the kernel builds this one (indexed as it goes).
    let s = Scratch::new("big50k");
    let img = s.mkfs(&["-b", "4096", "-N", "60000"], "256M");
    {
        let m = KernelMount::new(&img, &s.0.join("mnt"), "rw");
        let dir = m.0.join("big");
        std::fs::create_dir(&dir).unwrap();
        for i in 0..50_000 {
            mkfile(&dir.join(format!("entry-{i:06}")), b"");
        }
    }
    assert!(
        htree_levels(&img, "big").is_some(),
        "the directory is indexed"
    );
    let fs = open(&img);
    let ino = resolve(&fs, "big");
    let size = fs.stat(ino).unwrap().size;
    let nblocks = size / 4096;
    let before = fs.dev().stats();
    let (all, calls) = read_batched(&fs, ino, 100);
    let after = fs.dev().stats();
    assert_eq!(all.len(), 50_002);
    let mut names: Vec<&[u8]> = all.iter().map(|e| &e.name[..]).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 50_002, "no duplicates across batches");
    let requests = after.meta_requests - before.meta_requests;
    let reads = after.meta_reads - before.meta_reads;
    println!("{nblocks} dir blocks, {calls} calls, {requests} meta requests, {reads} device reads");
    // Each call costs its inode, the block mapping and the block where it
    // resumes; each block is read once more when the walk enters it. A
    // rescan from the start would cost calls × blocks (≈ 500 × 400 here).
    assert!(
        requests <= 2 * nblocks + 4 * calls as u64 + 64,
        "{requests} metadata requests for {nblocks} blocks in {calls} calls"
    );
    assert!(reads <= requests);
}
