//! The engine core against the Linux kernel's own ext4 (loop mounts; root
//! only): every file of the standard tree stats and reads the same through
//! both, statfs matches, and a file with a depth-2 extent tree (2048 holes
//! punched into 16 MiB) and with unwritten extents reads identically.
//!
//! Without root or loop devices these tests print why and skip, unless
//! `FSVC_REQUIRE_PRIVILEGED=1`, which turns the skip into a failure.

mod core_util;

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use core_util::*;
use fsvc_ext4::{FileKind, Fs, InodeNo};
use nix::fcntl::{fallocate, FallocateFlags};

/// Compares one file as the kernel sees it with the engine.
fn compare(fs: &Fs, path: &Path, rel: &str, ctx: &str) {
    let m = std::fs::symlink_metadata(path).unwrap();
    let ino = InodeNo(u32::try_from(m.ino()).unwrap());
    let st = fs
        .stat(ino)
        .unwrap_or_else(|e| panic!("{ctx}: stat {rel}: {e}"));
    assert_eq!(u32::from(st.perm), m.mode() & 0o7777, "{ctx} {rel} mode");
    let kind = match m.mode() & 0o170000 {
        0o100000 => FileKind::File,
        0o040000 => FileKind::Dir,
        0o120000 => FileKind::Symlink,
        0o020000 => FileKind::CharDev,
        0o060000 => FileKind::BlockDev,
        0o010000 => FileKind::Fifo,
        _ => FileKind::Socket,
    };
    assert_eq!(st.kind, kind, "{ctx} {rel} kind");
    assert_eq!((st.uid, st.gid), (m.uid(), m.gid()), "{ctx} {rel} owner");
    assert_eq!(st.size, m.size(), "{ctx} {rel} size");
    assert_eq!(u64::from(st.nlink), m.nlink(), "{ctx} {rel} nlink");
    assert_eq!(st.blocks, m.blocks(), "{ctx} {rel} blocks");
    assert_eq!(
        (st.mtime.sec, i64::from(st.mtime.nsec)),
        (m.mtime(), m.mtime_nsec()),
        "{ctx} {rel} mtime"
    );
    assert_eq!(
        (st.ctime.sec, i64::from(st.ctime.nsec)),
        (m.ctime(), m.ctime_nsec()),
        "{ctx} {rel} ctime"
    );
    assert_eq!(
        (st.atime.sec, i64::from(st.atime.nsec)),
        (m.atime(), m.atime_nsec()),
        "{ctx} {rel} atime"
    );
    if matches!(kind, FileKind::CharDev | FileKind::BlockDev) {
        let r = m.rdev();
        let want = (
            nix::sys::stat::major(r) as u32,
            nix::sys::stat::minor(r) as u32,
        );
        assert_eq!(st.rdev, want, "{ctx} {rel} rdev");
    }
    match kind {
        FileKind::File if m.size() > 64 << 20 => {
            // The 5 GiB sparse file: compare windows at the start, across
            // 4 GiB and at the end instead of 5 GiB of zeros.
            let f = File::open(path).unwrap();
            for at in [0, (4 << 30) - 4096, m.size() - 100_000] {
                let mut want = vec![0u8; 100_000];
                f.read_exact_at(&mut want, at).unwrap();
                let mut got = vec![0xAAu8; 100_000];
                assert_eq!(fs.read(ino, at, &mut got).unwrap(), 100_000);
                assert!(got == want, "{ctx}: {rel} at {at}");
            }
        }
        FileKind::File => {
            let want = std::fs::read(path).unwrap();
            assert!(
                read_all(fs, ino, 1 << 20) == want,
                "{ctx}: contents of {rel}"
            );
        }
        FileKind::Symlink => {
            let want = std::fs::read_link(path).unwrap();
            let got = read_all(fs, ino, 4096);
            assert_eq!(got, want.as_os_str().as_encoded_bytes(), "{ctx}: {rel}");
        }
        _ => {}
    }
}

fn walk(fs: &Fs, root: &Path, dir: &Path, ctx: &str, seen: &mut usize) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == "lost+found" {
            continue;
        }
        compare(fs, &p, &rel, ctx);
        *seen += 1;
        if e.file_type().unwrap().is_dir() {
            walk(fs, root, &p, ctx, seen);
        }
    }
}

#[test]
fn kernel_reads_the_same_tree() {
    if !privileged("kernel_reads_the_same_tree") {
        return;
    }
    // (mkfs args, clear s_overhead_clusters so that both the kernel and
    // the engine compute the overhead themselves)
    for (args, clear_overhead) in [
        (&["-t", "ext4", "-b", "4096"][..], false),
        (
            &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum,^64bit"][..],
            true,
        ),
        (&["-t", "ext3", "-b", "1024"][..], true),
        (&["-t", "ext2", "-b", "2048"][..], false),
        (
            &[
                "-t",
                "ext4",
                "-b",
                "1024",
                "-g",
                "512",
                "-O",
                "meta_bg,^resize_inode",
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
                "1024",
                "-O",
                "sparse_super2",
            ][..],
            true,
        ),
        (
            &[
                "-t",
                "ext4",
                "-b",
                "4096",
                "-O",
                "inline_data,metadata_csum_seed",
            ][..],
            false,
        ),
    ] {
        let ctx = format!("{args:?}");
        let s = Scratch::new("kern");
        let tree = s.0.join("tree");
        make_tree(&tree, true);
        let img = mkfs(&s.0, args, &tree, "32M");
        // Nanoseconds and epoch bits on a large inode, set behind the
        // kernel's back so it has to decode them itself.
        if clear_overhead {
            run(Command::new("debugfs")
                .args(["-w", "-R", "ssv overhead_clusters 0"])
                .arg(&img));
        }
        let bytes = std::fs::read(&img).unwrap();
        if open(&bytes).unwrap().sb().inode_size > 128 {
            run(Command::new("debugfs")
                .args(["-w", "-R", "sif /small mtime_extra 0x1d6f3455"])
                .arg(&img));
        }
        let bytes = std::fs::read(&img).unwrap();
        let fs = open(&bytes).unwrap();
        assert_eq!(fs.sb().overhead_clusters == 0, clear_overhead, "{ctx}");
        let mnt = s.0.join("mnt");
        let m = Mount::new(&img, &mnt, "ro");
        let mut seen = 0;
        walk(&fs, &mnt, &mnt, &ctx, &mut seen);
        assert!(seen >= 14, "{ctx}: only {seen} entries compared");
        compare(&fs, &mnt, "/", &ctx);

        let v = nix::sys::statvfs::statvfs(&mnt).unwrap();
        let sf = fs.statfs();
        assert_eq!(u64::from(sf.block_size), v.fragment_size() as u64, "{ctx}");
        assert_eq!(sf.blocks, v.blocks() as u64, "{ctx} f_blocks");
        assert_eq!(sf.blocks_free, v.blocks_free() as u64, "{ctx} f_bfree");
        assert_eq!(
            sf.blocks_avail,
            v.blocks_available() as u64,
            "{ctx} f_bavail"
        );
        assert_eq!(sf.files, v.files() as u64, "{ctx}");
        assert_eq!(sf.files_free, v.files_free() as u64, "{ctx}");
        assert_eq!(sf.fsid, v.filesystem_id() as u64, "{ctx} fsid");
        assert_eq!(u64::from(sf.name_max), v.name_max() as u64, "{ctx}");
        drop(m);
    }
}

/// Leaf-block count of debugfs's `ex` listing and the tree depth.
fn extent_depth(img: &Path, path: &str) -> u32 {
    let ex = debugfs(img, &format!("ex {path}"));
    let first = ex
        .lines()
        .find(|l| l.trim_start().starts_with("0/"))
        .unwrap_or_else(|| panic!("no extent listing: {ex}"));
    let depth = first.trim_start()[2..].split_whitespace().next().unwrap();
    depth.parse().unwrap()
}

#[test]
fn depth_two_extent_tree_and_unwritten_extents() {
    if !privileged("depth_two_extent_tree_and_unwritten_extents") {
        return;
    }
    for args in [
        &["-t", "ext4", "-b", "4096"][..],
        &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"][..],
    ] {
        let ctx = format!("{args:?}");
        let s = Scratch::new("deep");
        let tree = s.0.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        let img = mkfs(&s.0, args, &tree, "64M");
        let bs: u64 = if args.contains(&"1024") { 1024 } else { 4096 };
        let mnt = s.0.join("mnt");
        let (kernel_deep, kernel_unwritten) = {
            let _m = Mount::new(&img, &mnt, "rw");
            let data = noise(42, 16 << 20);
            let p = mnt.join("deep");
            std::fs::write(&p, &data).unwrap();
            let f = File::options().read(true).write(true).open(&p).unwrap();
            f.sync_all().unwrap();
            // 2048 holes, every other block from the start.
            let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            for i in 0..2048u64 {
                fallocate(&f, punch, (i * 2 * bs) as i64, bs as i64).unwrap();
            }
            f.sync_all().unwrap();
            // Unwritten extents: allocate 1 MiB, write 5000 bytes in the middle.
            let u = File::create(mnt.join("unwritten")).unwrap();
            fallocate(&u, FallocateFlags::empty(), 0, 1 << 20).unwrap();
            u.write_all_at(&noise(9, 5000), 300_000).unwrap();
            u.sync_all().unwrap();
            drop((f, u));
            run(&mut Command::new("sync"));
            // The kernel's read after dropping its caches.
            std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
            (
                std::fs::read(&p).unwrap(),
                std::fs::read(mnt.join("unwritten")).unwrap(),
            )
        };
        let depth = extent_depth(&img, "/deep");
        assert!(depth >= 2, "{ctx}: extent depth {depth}, wanted >= 2");
        let flags = debugfs(&img, "ex /unwritten");
        assert!(flags.contains('U'), "{ctx}: no unwritten extent: {flags}");

        let bytes = std::fs::read(&img).unwrap();
        let fs = open(&bytes).unwrap();
        let ino = debugfs_stat(&img, "deep").ino;
        for chunk in [1 << 20, 3 * 4096 + 17] {
            assert!(
                read_all(&fs, ino, chunk) == kernel_deep,
                "{ctx}: depth-{depth} file differs from the kernel's read (chunk {chunk})"
            );
        }
        let ino = debugfs_stat(&img, "unwritten").ino;
        assert!(
            read_all(&fs, ino, 65536) == kernel_unwritten,
            "{ctx}: unwritten"
        );
        assert_eq!(kernel_unwritten.len(), 1 << 20);
    }
}
