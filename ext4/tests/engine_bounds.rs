//! Issue 6 at the engine: sizes and counts from the image are judged by the
//! format's limits as the kernel judges them, and no request or walk costs
//! more than the structure it reads.
//!
//! Images are made by `mkfs.ext4 -d` (ext2 1 KiB, ext3 4 KiB, ext4 4 KiB,
//! ext4 1 KiB, ext4 inline_data) and edited with `debugfs -w` (`sif`,
//! `link`) or direct byte writes; the engine reads them over an in-memory
//! channel whose traffic counters show the work each request did.

mod core_util;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;

use core_util::{debugfs, debugfs_stat, open, run, Scratch};
use fsvc_ext4::inode::flags;
use fsvc_ext4::num::InodeNo;
use fsvc_ext4::{Error, Fs};

/// The image kinds every table here runs on: (name, mkfs arguments).
const KINDS: &[(&str, &[&str])] = &[
    ("ext2-1k", &["-t", "ext2", "-b", "1024"]),
    ("ext3-4k", &["-t", "ext3", "-b", "4096"]),
    ("ext4-4k", &["-t", "ext4", "-b", "4096"]),
    (
        "ext4-1k-nohuge",
        &["-t", "ext4", "-b", "1024", "-O", "^huge_file"],
    ),
    (
        "ext4-inline",
        &["-t", "ext4", "-b", "4096", "-O", "inline_data"],
    ),
];

/// Entries of the test directory.
const DIR_FILES: usize = 40;

struct Image {
    _s: Scratch,
    path: PathBuf,
}

impl Image {
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
    fn fs(&self) -> Fs {
        open(&self.bytes()).unwrap()
    }
    fn ino(&self, p: &str) -> InodeNo {
        debugfs_stat(&self.path, p).ino
    }
    /// Runs `debugfs -w -R cmd`.
    fn edit(&self, cmd: &str) {
        run(Command::new("debugfs")
            .args(["-w", "-R", cmd])
            .arg(&self.path));
    }
}

/// A small tree: a hole-only file, an empty file, a small file and a
/// directory of [`DIR_FILES`] files.
fn image(args: &[&str]) -> Image {
    let s = Scratch::new("bounds");
    let tree = s.0.join("tree");
    std::fs::create_dir_all(tree.join("dir")).unwrap();
    std::fs::File::create(tree.join("hole"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    std::fs::write(tree.join("empty"), b"").unwrap();
    std::fs::write(tree.join("small"), b"small file\n").unwrap();
    for i in 0..DIR_FILES {
        std::fs::write(tree.join(format!("dir/f{i:02}")), format!("{i}\n")).unwrap();
    }
    let path = s.0.join("img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0"])
        .args(args)
        .arg("-d")
        .arg(&tree)
        .arg(&path)
        .arg("16M"));
    Image { _s: s, path }
}

fn resolve(fs: &Fs, path: &str) -> InodeNo {
    path.split('/').fold(InodeNo::ROOT, |dir, n| {
        fs.lookup(dir, n.as_bytes()).unwrap()
    })
}

fn is_past_limit(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. }) && e.to_string().contains("past the format's limit")
}

/// The report, per image kind: the size of a hole-only and of an
/// empty file set to the limit, one past it and 2^55. At the limit the
/// file is served (a read near its end returns zeros and costs a few
/// metadata lookups, a read at the end returns nothing); past it the inode
/// is corrupt for every operation, and the rest of the tree is untouched.
#[test]
fn sizes_past_the_limit_are_corrupt_when_the_inode_is_read() {
    for &(kind, args) in KINDS {
        let base = image(args);
        let fs = base.fs();
        let limits = fs.sb().limits();
        for victim in ["hole", "empty"] {
            let ino = base.ino(victim);
            let extents = fs.inode(ino).unwrap().has_flag(flags::EXTENTS);
            let max = limits.max_file_bytes(extents);
            for (size, ok) in [(max, true), (max + 1, false), (1u64 << 55, false)] {
                let img = image(args);
                img.edit(&format!("sif /{victim} size {size}"));
                let fs = img.fs();
                let what = format!("{kind} {victim} size {size} (limit {max})");
                let r = fs.stat(ino);
                if ok {
                    assert_eq!(r.unwrap().size, size, "{what}");
                    let before = fs.dev().stats();
                    let mut buf = vec![0xAAu8; 1 << 20];
                    let n = fs.read(ino, size - 100_000, &mut buf).unwrap();
                    assert_eq!(n, 100_000, "{what}");
                    assert!(buf[..n].iter().all(|&b| b == 0), "{what}: zeros");
                    assert_eq!(fs.read(ino, size, &mut buf).unwrap(), 0, "{what}");
                    let s = fs.dev().stats();
                    assert_eq!(
                        s.data_reads, before.data_reads,
                        "{what}: a hole reads no data"
                    );
                    assert!(
                        s.meta_requests - before.meta_requests <= 16,
                        "{what}: {} metadata lookups for one read of a hole",
                        s.meta_requests - before.meta_requests
                    );
                } else {
                    let e = r.unwrap_err();
                    assert!(is_past_limit(&e), "{what}: {e}");
                    let mut buf = [0u8; 16];
                    assert!(
                        is_past_limit(&fs.read(ino, 0, &mut buf).unwrap_err()),
                        "{what}"
                    );
                    assert!(fs.list_xattrs(ino).is_err(), "{what}");
                    // The name still resolves (the directory is fine); the
                    // rest of the tree reads.
                    assert_eq!(
                        fs.lookup(InodeNo::ROOT, victim.as_bytes()).unwrap(),
                        ino,
                        "{what}"
                    );
                    let small = resolve(&fs, "small");
                    assert_eq!(fs.read(small, 0, &mut buf).unwrap(), 11, "{what}");
                    assert_eq!(entries(&fs, resolve(&fs, "dir")), DIR_FILES + 2, "{what}");
                }
            }
        }
    }
}

/// The entries a full listing of `dir` yields ("." and ".." included).
fn entries(fs: &Fs, dir: InodeNo) -> usize {
    let mut n = 0;
    fs.read_dir(dir, 0, &mut |_| {
        n += 1;
        true
    })
    .unwrap();
    n
}

/// Without largedir the kernel reads only `i_size_lo` of a directory
/// (ext2 kept `i_dir_acl` in the high word): garbage there changes nothing.
#[test]
fn directory_size_high_word_is_ignored_without_largedir() {
    for &(kind, args) in KINDS {
        let img = image(args);
        let fs0 = img.fs();
        let dir = resolve(&fs0, "dir");
        let size = fs0.stat(dir).unwrap().size;
        if fs0.inode(dir).unwrap().has_flag(flags::INLINE_DATA) {
            continue;
        }
        img.edit(&format!("sif /dir size {}", (0xABCDu64 << 32) | size));
        let fs = img.fs();
        assert_eq!(fs.stat(dir).unwrap().size, size, "{kind}");
        assert_eq!(entries(&fs, dir), DIR_FILES + 2, "{kind}");
    }
}

/// A directory whose size runs far past its blocks (a flipped size bit):
/// the kernel lists it, skipping the hole by its mapped length. So does the
/// engine, in a handful of lookups, where it used to walk (and give up on)
/// the hole block by block.
#[test]
fn a_long_directory_hole_costs_one_step() {
    for &(kind, args) in KINDS {
        let img = image(args);
        let fs0 = img.fs();
        let dir = resolve(&fs0, "dir");
        if fs0.inode(dir).unwrap().has_flag(flags::INLINE_DATA) {
            continue;
        }
        // 1 GiB: 2^20 or 2^18 blocks of hole after the directory's blocks.
        img.edit(&format!("sif /dir size {}", 1u64 << 30));
        let fs = img.fs();
        let before = fs.dev().stats();
        let mut names = Vec::new();
        fs.read_dir(dir, 0, &mut |e| {
            names.push(e.name);
            true
        })
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(names.len(), DIR_FILES + 2, "{kind}");
        assert!(
            matches!(fs.lookup(dir, b"nope"), Err(Error::NotFound)),
            "{kind}"
        );
        let s = fs.dev().stats();
        assert!(
            s.meta_requests - before.meta_requests < 200,
            "{kind}: {} metadata lookups for a two-block directory",
            s.meta_requests - before.meta_requests
        );
    }
}

/// A block-mapped directory whose indirect blocks all point back at the
/// same blocks maps 65 804 blocks on a 16 MiB filesystem: more than the
/// filesystem has, so the walk stops there as corrupt instead of listing
/// the same entries 65 804 times.
#[test]
fn a_directory_mapping_more_blocks_than_the_filesystem_is_corrupt() {
    let img = image(&["-t", "ext2", "-b", "1024"]);
    let fs0 = img.fs();
    let dir = resolve(&fs0, "dir");
    let blocks = fs0.sb().blocks_count;
    let out = debugfs(&img.path, "blocks /dir");
    let data: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let free = debugfs(&img.path, "ffb 2 1000");
    let mut it = free
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    let (ind, dind) = (it.next().unwrap(), it.next().unwrap());
    let per = 256usize;
    let ptrs = |to: u64| -> Vec<u8> { (0..per).flat_map(|_| (to as u32).to_le_bytes()).collect() };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&img.path)
        .unwrap();
    f.write_all_at(&ptrs(data), ind * 1024).unwrap();
    f.write_all_at(&ptrs(ind), dind * 1024).unwrap();
    drop(f);
    let mapped = 12 + per as u64 + (per * per) as u64;
    img.edit(&format!("sif /dir block[IND] {ind}"));
    img.edit(&format!("sif /dir block[DIND] {dind}"));
    img.edit(&format!("sif /dir size {}", mapped * 1024));
    assert!(mapped > blocks);
    let fs = img.fs();
    let mut seen = 0u64;
    let e = fs
        .read_dir(dir, 0, &mut |_| {
            seen += 1;
            true
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("more blocks than the filesystem"),
        "{e}"
    );
    // At most the filesystem's worth of blocks was listed.
    assert!(seen <= blocks * 1024 / 12, "{seen} entries");
    assert!(fs.lookup(dir, b"nope").is_err());
}

/// The kernel's "illegal inode #": a name leading to a reserved inode (the
/// resize inode, the journal) is corruption; the engine still reads those
/// inodes for itself.
#[test]
fn names_of_reserved_inodes_are_corrupt() {
    let img = image(&["-t", "ext4", "-b", "4096"]);
    img.edit("link <7> /resize");
    img.edit("link <8> /journal");
    let fs = img.fs();
    for (name, ino) in [("resize", InodeNo(7)), ("journal", InodeNo(8))] {
        assert_eq!(fs.lookup(InodeNo::ROOT, name.as_bytes()).unwrap(), ino);
        let e = fs.stat(ino).unwrap_err();
        assert!(
            matches!(e, Error::Corrupt { .. }) && e.to_string().contains("reserved inode"),
            "{name}: {e}"
        );
        assert!(fs.special_inode(ino).is_ok(), "{name}");
    }
    assert!(
        fs.stat(InodeNo::ROOT).is_ok() && fs.stat(InodeNo(11)).is_ok(),
        "root and lost+found"
    );
}

/// An EA inode (which holds one xattr value) reached by a name is
/// corruption; through its owner's xattr it reads.
#[test]
fn ea_inodes_are_values_not_files() {
    let img = image(&["-t", "ext4", "-b", "4096", "-O", "ea_inode"]);
    let val = img._s.0.join("value");
    std::fs::write(&val, vec![b'v'; 4096]).unwrap();
    img.edit(&format!("ea_set -f {} /small user.big", val.display()));
    let fs = img.fs();
    let small = resolve(&fs, "small");
    let v = fs.get_xattr(small, b"user.big").unwrap();
    assert!(
        v.len() == 4096 && v.iter().all(|&b| b == b'v'),
        "{} bytes",
        v.len()
    );
    // Find the EA inode: the first in-use inode flagged EA_INODE.
    let ea = (12..=fs.sb().inodes_count)
        .find(|&i| {
            fs.special_inode(InodeNo(i))
                .is_ok_and(|n| n.has_flag(flags::EA_INODE))
        })
        .expect("debugfs stored the value in an EA inode");
    img.edit(&format!("link <{ea}> /value"));
    let fs = img.fs();
    assert_eq!(fs.lookup(InodeNo::ROOT, b"value").unwrap(), InodeNo(ea));
    let e = fs.stat(InodeNo(ea)).unwrap_err();
    assert!(e.to_string().contains("EA inode"), "{e}");
    assert_eq!(fs.get_xattr(small, b"user.big").unwrap().len(), 4096);
}
