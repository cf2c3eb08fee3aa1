//! Engine core against images that `mkfs.ext4 -d` makes at test time:
//! every file's stat compared with debugfs, contents with the source tree,
//! bitmaps verified, statfs against dumpe2fs; over a matrix of block sizes
//! and features.

mod core_util;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use core_util::*;
use fsvc_ext4::FileKind;

/// Opens the image, compares every path's stat with debugfs and every
/// regular file's contents with the source.
fn check_image(args: &[&str], size: &str, with_big: bool) {
    let s = Scratch::new("img");
    let tree = s.0.join("tree");
    make_tree(&tree, with_big);
    let img_path = mkfs(&s.0, args, &tree, size);
    // Give some timestamps nanoseconds and epoch bits (large inodes only).
    let bytes = std::fs::read(&img_path).unwrap();
    let fs = open(&bytes).unwrap_or_else(|e| panic!("{args:?}: open: {e}"));
    let large = fs.sb().inode_size > 128;
    if large {
        run(Command::new("debugfs")
            .args(["-w", "-R", "sif /small ctime_extra 0x1d6f3455"])
            .arg(&img_path));
        run(Command::new("debugfs")
            .args(["-w", "-R", "sif /multi mtime 0x80000010"])
            .arg(&img_path));
        run(Command::new("debugfs")
            .args(["-w", "-R", "sif /multi mtime_extra 0x00000006"])
            .arg(&img_path));
    }
    let bytes = std::fs::read(&img_path).unwrap();
    let fs = open(&bytes).unwrap_or_else(|e| panic!("{args:?}: open: {e}"));
    let ctx = format!("mkfs {args:?} {size}");

    for &p in PATHS {
        if tree.join(p).symlink_metadata().is_err() {
            continue; // device nodes need root
        }
        let d = debugfs_stat(&img_path, p);
        let st = fs
            .stat(d.ino)
            .unwrap_or_else(|e| panic!("{ctx}: stat {p}: {e}"));
        assert_eq!(st.ino, d.ino, "{ctx} {p}");
        assert_eq!(st.perm, d.mode & 0o7777, "{ctx} {p} mode");
        assert_eq!(st.uid, d.uid, "{ctx} {p} uid");
        assert_eq!(st.gid, d.gid, "{ctx} {p} gid");
        assert_eq!(st.size, d.size, "{ctx} {p} size");
        assert_eq!(st.nlink, d.links, "{ctx} {p} links");
        let inline_sectors = if d.flags & 0x1000_0000 != 0 && st.kind == FileKind::File {
            d.size.div_ceil(512) // the kernel's getattr adds these
        } else {
            0
        };
        assert_eq!(st.blocks, d.blockcount + inline_sectors, "{ctx} {p} blocks");
        assert_eq!(st.flags, d.flags, "{ctx} {p} flags");
        for (name, sec, extra) in &d.times {
            let want = expect_time(*sec, *extra);
            let got = match name.as_str() {
                "atime" => st.atime,
                "mtime" => st.mtime,
                "ctime" => st.ctime,
                _ => st.crtime,
            };
            assert_eq!(got, want, "{ctx} {p} {name}");
        }
        if let Some(dev) = d.dev {
            assert_eq!(st.rdev, dev, "{ctx} {p} rdev");
        }
        let meta = tree.join(p).symlink_metadata().unwrap();
        let kind = match p {
            "dir" | "dir/sub" => FileKind::Dir,
            "fastlink" | "slowlink" => FileKind::Symlink,
            "fifo" => FileKind::Fifo,
            "sock" => FileKind::Socket,
            "cdev" => FileKind::CharDev,
            "bdev" => FileKind::BlockDev,
            _ => FileKind::File,
        };
        assert_eq!(st.kind, kind, "{ctx} {p}");
        if kind != FileKind::Dir && kind != FileKind::Symlink {
            assert_eq!(
                u32::from(st.perm),
                meta.mode() & 0o7777,
                "{ctx} {p} source mode"
            );
        }
        if p == "owned" && nix::unistd::geteuid().is_root() {
            assert_eq!((st.uid, st.gid), (70_000, 70_001), "{ctx}");
        }
        if p == "small" && large {
            // Set above: 0x1d6f3455 = nsec 123456789 << 2 | epoch 1.
            assert_eq!(st.ctime.nsec, 123_456_789, "{ctx}");
            assert!(st.ctime.sec >= 1 << 32, "{ctx}: epoch bits ignored");
        }
        if p == "multi" && large {
            // 0x80000010 is before 1970 as a signed 32-bit value; epoch 2
            // (extra 0b10) moves it past 2038 by 2^33.
            assert_eq!(st.mtime.sec, -0x7fff_fff0 + (2i64 << 32), "{ctx}");
            assert_eq!(st.mtime.nsec, 1, "{ctx}");
        }
    }

    // Contents.
    // mke2fs -d with inline_data loses the tail of a file ending in a hole
    // (e2fsprogs 1.47.0): there, e2fsprogs' own reader (debugfs dump) is the
    // only oracle; elsewhere the source must match too.
    let mkfs_mangles = args.iter().any(|a| a.contains("inline_data"));
    for (p, source) in standard_files(false) {
        let d = debugfs_stat(&img_path, p);
        let dump = s.0.join("dump");
        debugfs(&img_path, &format!("dump /{p} {}", dump.display()));
        let mut want = std::fs::read(&dump).unwrap();
        // debugfs dumps all 60 bytes of i_block for inline files: cut at i_size.
        want.truncate(d.size as usize);
        if !mkfs_mangles {
            assert!(
                want == source,
                "{ctx}: debugfs reads {p} differently from the source"
            );
        }
        for chunk in [1 << 20, 7777] {
            let got = read_all(&fs, d.ino, chunk);
            assert!(got == want, "{ctx}: contents of {p} differ (chunk {chunk})");
        }
        // A read at an odd offset across block boundaries.
        if want.len() > 10_000 {
            let mut buf = vec![0u8; 9000];
            let n = fs.read(d.ino, 1001, &mut buf).unwrap();
            assert_eq!(n, 9000);
            assert!(buf == want[1001..10_001], "{ctx}: {p} at offset 1001");
        }
        // Past the end.
        let mut buf = [0u8; 16];
        assert_eq!(fs.read(d.ino, want.len() as u64 + 5, &mut buf).unwrap(), 0);
    }
    for (p, target) in [
        ("fastlink", b"small".to_vec()),
        ("slowlink", vec![b'x'; 200]),
    ] {
        let d = debugfs_stat(&img_path, p);
        assert_eq!(read_all(&fs, d.ino, 4096), target, "{ctx}: {p} target");
    }
    if with_big {
        let d = debugfs_stat(&img_path, "big");
        let st = fs.stat(d.ino).unwrap();
        assert_eq!(st.size, BIG_SIZE, "{ctx}");
        let mut buf = vec![0xAAu8; 100];
        let n = fs.read(d.ino, BIG_SIZE - 100, &mut buf).unwrap();
        assert_eq!(n, 100);
        assert!(buf[..100 - BIG_TAIL.len()].iter().all(|&b| b == 0), "{ctx}");
        assert_eq!(&buf[100 - BIG_TAIL.len()..], BIG_TAIL, "{ctx}");
        let mut head = [0u8; 8];
        fs.read(d.ino, 0, &mut head).unwrap();
        assert_eq!(&head, b"start\0\0\0", "{ctx}");
        // A hole in the middle, past 4 GiB.
        let mut mid = vec![1u8; 5000];
        assert_eq!(fs.read(d.ino, (4 << 30) + 12345, &mut mid).unwrap(), 5000);
        assert!(mid.iter().all(|&b| b == 0), "{ctx}");
    }

    // Every group's bitmaps check out.
    for g in (0..fs.sb().group_count).map(fsvc_ext4::GroupNo) {
        fs.verify_bitmaps(g)
            .unwrap_or_else(|e| panic!("{ctx}: bitmaps of group {g}: {e}"));
    }
    // statfs against dumpe2fs's counts.
    let sf = fs.statfs();
    let dump = run(Command::new("dumpe2fs").arg("-h").arg(&img_path));
    let num = |k: &str| -> u64 { field(&dump, k).unwrap().parse().unwrap() };
    assert_eq!(sf.files, num("Inode count:"), "{ctx}");
    assert_eq!(sf.files_free, num("Free inodes:"), "{ctx}");
    assert_eq!(sf.blocks_free, num("Free blocks:"), "{ctx}");
    assert_eq!(sf.block_size as u64, num("Block size:"), "{ctx}");
    assert!(sf.blocks <= num("Block count:") && sf.blocks > 0, "{ctx}");
    assert!(sf.blocks_avail <= sf.blocks_free, "{ctx}");
    assert_eq!(sf.name_max, 255);
}

macro_rules! image_tests {
    ($($name:ident: $args:expr, $size:expr, $big:expr;)*) => {$(
        #[test]
        fn $name() {
            check_image($args, $size, $big);
        }
    )*};
}

image_tests! {
    ext4_default_4k: &["-t", "ext4", "-b", "4096"], "32M", true;
    ext4_1k: &["-t", "ext4", "-b", "1024"], "16M", true;
    ext4_2k: &["-t", "ext4", "-b", "2048"], "16M", false;
    ext2_1k: &["-t", "ext2", "-b", "1024"], "16M", false;
    ext2_4k: &["-t", "ext2", "-b", "4096"], "16M", true;
    ext3_1k_triple_indirect: &["-t", "ext3", "-b", "1024"], "32M", true;
    ext3_2k: &["-t", "ext3", "-b", "2048"], "16M", false;
    ext4_no_64bit: &["-t", "ext4", "-O", "^64bit"], "16M", false;
    ext4_no_metadata_csum: &["-t", "ext4", "-O", "^metadata_csum"], "16M", false;
    ext4_no_csum_at_all: &["-t", "ext4", "-O", "^metadata_csum,^uninit_bg"], "16M", false;
    ext4_no_flex_bg: &["-t", "ext4", "-O", "^flex_bg", "-g", "2048", "-b", "1024"], "16M", false;
    ext4_no_huge_file: &["-t", "ext4", "-O", "^huge_file"], "16M", false;
    ext4_meta_bg: &["-t", "ext4", "-b", "1024", "-g", "512", "-O", "meta_bg,^resize_inode"], "16M", false;
    ext4_meta_bg_32bit: &["-t", "ext4", "-b", "1024", "-g", "256", "-O", "meta_bg,^resize_inode,^64bit"], "16M", false;
    ext4_sparse_super2: &["-t", "ext4", "-b", "1024", "-g", "1024", "-O", "sparse_super2"], "16M", false;
    ext4_no_sparse_super: &["-t", "ext4", "-b", "1024", "-g", "1024", "-O", "^sparse_super,^resize_inode"], "16M", false;
    ext4_csum_seed: &["-t", "ext4", "-O", "metadata_csum_seed"], "16M", false;
    ext4_small_inodes: &["-t", "ext4", "-I", "128"], "16M", false;
    ext4_no_extents: &["-t", "ext4", "-O", "^extent,^64bit", "-b", "1024"], "16M", false;
    ext4_inline_data: &["-t", "ext4", "-O", "inline_data"], "16M", false;
    ext4_inline_data_1k_nocsum: &["-t", "ext4", "-b", "1024", "-I", "256", "-O", "inline_data,^metadata_csum"], "16M", false;
    ext4_64k_blocks: &["-t", "ext4", "-b", "65536"], "64M", true;
    ext4_bigalloc: &["-t", "ext4", "-O", "bigalloc", "-C", "16384"], "64M", false;
}

/// A contiguous file is read as one run: the block layer sees one inode
/// lookup and the data blocks, not a metadata walk per block.
#[test]
fn contiguous_file_reads_as_one_run() {
    let s = Scratch::new("run");
    let tree = s.0.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let data = noise(77, 4 << 20);
    std::fs::write(tree.join("big4m"), &data).unwrap();
    let img = mkfs(&s.0, &["-t", "ext4", "-b", "4096"], &tree, "32M");
    let bytes = std::fs::read(&img).unwrap();
    let fs = open(&bytes).unwrap();
    let ino = debugfs_stat(&img, "big4m").ino;
    let before = fs.dev().stats();
    let mut buf = vec![0u8; 4 << 20];
    assert_eq!(fs.read(ino, 0, &mut buf).unwrap(), 4 << 20);
    assert!(buf == data);
    let after = fs.dev().stats();
    assert_eq!(after.data_blocks_read - before.data_blocks_read, 1024);
    // The inode's table block, nothing per data block.
    assert!(
        after.meta_requests - before.meta_requests <= 2,
        "{} metadata requests for one contiguous read",
        after.meta_requests - before.meta_requests
    );
}
