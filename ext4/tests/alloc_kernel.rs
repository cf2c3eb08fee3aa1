//! The allocators' work as the Linux kernel's ext4 judges it (loop mounts;
//! root only): after the engine has allocated in every group (turning
//! BLOCK_UNINIT/INODE_UNINIT groups into initialized ones, with their
//! bitmap checksums) and freed it all again, the kernel mounts the image,
//! fills it with a file and a spread of directories (which makes it load
//! and verify every group's bitmaps) and removes them; its verdict is the
//! superblock it leaves (no error recorded), the space it found (all the
//! engine freed), and e2fsck -fn.
//!
//! Without root or loop devices these tests print why and skip, unless
//! `FSVC_REQUIRE_PRIVILEGED=1`, which turns the skip into a failure.

mod core_util;

use std::fs::File;
use std::io::Write;
use std::process::Command;

use core_util::*;
use fsvc_ext4::group::{BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use fsvc_ext4::inode::{S_IFDIR, S_IFREG};
use fsvc_ext4::testfs::{fsck_bytes, Image, GEOMETRIES};
use fsvc_ext4::tx::{AllocKind, Creds};
use fsvc_ext4::{GroupNo, InodeNo, Pblk};

/// The owner of the engine's allocations (any inode number does).
const OWNER: InodeNo = InodeNo(12);

/// The engine allocates blocks in every group and inodes across groups,
/// commits, frees them all, commits and unmounts. Returns how many groups
/// it initialized.
fn engine_round(img: &Image, name: &str) -> usize {
    let fs = img.open_rw();
    let sb = fs.sb();
    let uninit = |fs: &fsvc_ext4::Fs| {
        (0..sb.group_count)
            .filter(|&g| {
                fs.group(GroupNo(g)).unwrap().flags & (BG_BLOCK_UNINIT | BG_INODE_UNINIT) != 0
            })
            .count()
    };
    let before = uninit(&fs);
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let mut runs = Vec::new();
    for g in (0..sb.group_count).map(GroupNo) {
        let goal = sb
            .group_first_block(g)
            .saturating_add(u64::from(sb.blocks_per_group / 2))
            .min(Pblk(sb.blocks_count - 1));
        runs.push(tx.alloc_blocks(goal, 16, OWNER, AllocKind::Data).unwrap());
    }
    // Top-level directories spread out, files next to them: inodes in
    // many groups.
    let mut inodes = Vec::new();
    for _ in 0..sb.group_count {
        let d = tx.alloc_inode(InodeNo::ROOT, S_IFDIR | 0o755).unwrap();
        inodes.push((d, S_IFDIR));
        let f = tx.alloc_inode(d, S_IFREG | 0o644).unwrap();
        inodes.push((f, S_IFREG));
    }
    tx.commit().unwrap();
    let after = uninit(&fs);
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    for &(s, n) in &runs {
        tx.free_blocks(s, u64::from(n), AllocKind::Data).unwrap();
    }
    for &(i, mode) in &inodes {
        tx.free_inode(i, mode).unwrap();
    }
    tx.commit().unwrap();
    fs.unmount().unwrap();
    img.fsck_clean();
    assert!(after <= before, "{name}");
    before - after
}

/// Runs the kernel over the image at `path`: fill it with one file, make
/// directories and files until inodes or space run out, sync, remove it
/// all. Returns the bytes the file reached.
fn kernel_fill(path: &std::path::Path, dir: &std::path::Path) -> u64 {
    let m = Mount::new(path, dir, "rw");
    let mut f = File::create(m.0.join("fill")).unwrap();
    let chunk = vec![0xA5u8; 1 << 16];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = f.sync_all();
    drop(f);
    let mut made = 0;
    for i in 0..2000 {
        let d = m.0.join(format!("d{i}"));
        if std::fs::create_dir(&d).is_err() || File::create(d.join("f")).is_err() {
            break;
        }
        made += 1;
    }
    assert!(made > 0, "the kernel made no directory");
    run(Command::new("sync").arg("-f").arg(&m.0));
    for i in 0..made {
        let _ = std::fs::remove_dir_all(m.0.join(format!("d{i}")));
    }
    std::fs::remove_file(m.0.join("fill")).unwrap();
    drop(m);
    written
}

#[test]
fn the_kernel_accepts_what_the_allocators_left() {
    if !privileged("the_kernel_accepts_what_the_allocators_left") {
        return;
    }
    let scratch = Scratch::new("alloc-kernel");
    let mut initialized = 0;
    for (name, args, size) in GEOMETRIES {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        initialized += engine_round(&img, name);
        let fs = img.open_ro();
        let free = fs.statfs().blocks_free * u64::from(fs.sb().block_size);
        drop(fs);
        let path = scratch.0.join(format!("{name}.img"));
        std::fs::write(&path, img.bytes()).unwrap();
        let written = kernel_fill(&path, &scratch.0.join(format!("{name}.mnt")));
        // The kernel found all the space the engine gave back (root may
        // use the reserve; what the file could not have is its own
        // mapping blocks, a few percent at most).
        assert!(
            written >= free - free / 16,
            "{name}: the kernel wrote {written} of {free} free bytes"
        );
        let bytes = std::fs::read(&path).unwrap();
        let state = run(Command::new("dumpe2fs").arg("-h").arg(&path));
        assert!(
            state
                .lines()
                .any(|l| l.starts_with("Filesystem state:") && l.ends_with(" clean")),
            "{name}: the kernel left the state\n{state}"
        );
        assert!(
            !state.contains("FS Error count"),
            "{name}: the kernel recorded errors\n{state}"
        );
        let r = fsck_bytes(&bytes);
        assert_eq!(
            r.code, 0,
            "{name}: e2fsck -fn after the kernel:\n{}",
            r.output
        );
    }
    assert!(initialized > 0, "no geometry had an uninitialized group");
}
