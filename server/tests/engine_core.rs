//! Integration tests of the engine core (superblock, group descriptors,
//! inodes, extent and indirect maps, read, statfs) against images that
//! `mkfs.ext4 -d` makes at test time, with debugfs and the kernel's own
//! ext4 (loop mount, when root) as oracles; and corrupted images, which must
//! give typed errors, never a panic.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use fsvc_server::ext4::extent;
use fsvc_server::ext4::{Error, FileKind, Fs, OpenOptions, Timestamp};
use fsvc_server::io::mem::MemChannel;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "core-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Regular files of the standard tree: (path, expected contents).
fn standard_files(with_big: bool) -> Vec<(&'static str, Vec<u8>)> {
    let mut sparse = vec![0u8; 3 << 20];
    sparse[1 << 20..(1 << 20) + 10_000].copy_from_slice(&noise(7, 10_000));
    let mut fragmented = vec![0u8; 2 << 20];
    // 12 data islands separated by holes: more extents than the inode root holds.
    for i in 0..12 {
        let at = i * (160 << 10);
        fragmented[at..at + 5000].copy_from_slice(&noise(100 + i as u64, 5000));
    }
    let mut v = vec![
        ("small", b"hello world\n".to_vec()),
        ("empty", Vec::new()),
        ("multi", noise(1, 300_000)),
        ("sparse", sparse),
        ("fragmented", fragmented),
        ("dir/sub/nested", noise(3, 5000)),
        ("owned", b"owned by someone else".to_vec()),
    ];
    if with_big {
        // Checked specially (sparse 5 GiB).
        v.push(("big", Vec::new()));
    }
    v
}

const BIG_SIZE: u64 = 5 << 30;
const BIG_TAIL: &[u8] = b"the end of a file past 4 GiB\n";

/// Builds the standard source tree under `root`.
fn make_tree(root: &Path, with_big: bool) {
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    for (p, data) in standard_files(false) {
        let path = root.join(p);
        if p == "sparse" || p == "fragmented" {
            // Write only the non-zero parts so the file is really sparse.
            let f = std::fs::File::create(&path).unwrap();
            f.set_len(data.len() as u64).unwrap();
            use std::os::unix::fs::FileExt;
            let mut i = 0;
            while i < data.len() {
                let end = (i + 4096).min(data.len());
                if data[i..end].iter().any(|&b| b != 0) {
                    f.write_all_at(&data[i..end], i as u64).unwrap();
                }
                i = end;
            }
        } else {
            std::fs::write(&path, &data).unwrap();
        }
    }
    if with_big {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(root.join("big")).unwrap();
        f.set_len(BIG_SIZE).unwrap();
        f.write_all_at(BIG_TAIL, BIG_SIZE - BIG_TAIL.len() as u64)
            .unwrap();
        f.write_all_at(b"start", 0).unwrap();
    }
    std::os::unix::fs::symlink("small", root.join("fastlink")).unwrap();
    std::os::unix::fs::symlink("x".repeat(200), root.join("slowlink")).unwrap();
    std::fs::set_permissions(root.join("owned"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    let is_root = nix::unistd::geteuid().is_root();
    if is_root {
        // High halves of uid/gid in use.
        std::os::unix::fs::chown(root.join("owned"), Some(70_000), Some(70_001)).unwrap();
        let mk = |name: &str, kind: &str, maj: &str, min: &str| {
            run(Command::new("mknod")
                .arg(root.join(name))
                .args([kind, maj, min]));
        };
        mk("cdev", "c", "300", "70000"); // needs the new 32-bit encoding
        mk("bdev", "b", "8", "1"); // fits the old 16-bit encoding
    }
    run(Command::new("mkfifo").arg(root.join("fifo")));
    let _ = std::os::unix::net::UnixListener::bind(root.join("sock"));
    run(Command::new("touch")
        .args(["-h", "-d", "2031-05-06 07:08:09.123456789"])
        .arg(root.join("small")));
}

/// Makes an image of `size` from `tree` with extra mkfs arguments.
fn mkfs(dir: &Path, args: &[&str], tree: &Path, size: &str) -> PathBuf {
    let img = dir.join("img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0"])
        .args(args)
        .arg("-d")
        .arg(tree)
        .arg(&img)
        .arg(size));
    img
}

fn open(img: &[u8]) -> Result<Fs, Error> {
    Fs::open(
        Arc::new(MemChannel::read_only(img.to_vec())),
        &OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
}

/// What debugfs reports about a path.
#[derive(Debug, Default)]
struct DStat {
    ino: u32,
    mode: u16,
    uid: u32,
    gid: u32,
    size: u64,
    links: u32,
    blockcount: u64,
    times: Vec<(String, u32, Option<u32>)>,
    dev: Option<(u32, u32)>,
    flags: u32,
}

fn debugfs(img: &Path, cmd: &str) -> String {
    run(Command::new("debugfs").arg("-R").arg(cmd).arg(img))
}

fn field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let i = s.find(key)? + key.len();
    s[i..].split_whitespace().next()
}

fn hex(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn debugfs_stat(img: &Path, path: &str) -> DStat {
    let out = debugfs(img, &format!("stat /{path}"));
    let mut d = DStat {
        ino: field(&out, "Inode:").unwrap().parse().unwrap(),
        mode: u16::from_str_radix(field(&out, "Mode:").unwrap(), 8).unwrap(),
        uid: field(&out, "User:").unwrap().parse().unwrap(),
        gid: field(&out, "Group:").unwrap().parse().unwrap(),
        size: field(&out, "Size:").unwrap().parse().unwrap(),
        links: field(&out, "Links:").unwrap().parse().unwrap(),
        blockcount: field(&out, "Blockcount:").unwrap().parse().unwrap(),
        flags: hex(field(&out, "Flags:").unwrap()),
        ..Default::default()
    };
    for line in out.lines() {
        let t = line.trim_start();
        for name in ["ctime", "atime", "mtime", "crtime"] {
            if let Some(rest) = t.strip_prefix(&format!("{name}: ")) {
                let v = rest.split_whitespace().next().unwrap();
                let mut it = v.split(':');
                let sec = hex(it.next().unwrap());
                let extra = it.next().map(hex);
                d.times.push((name.to_string(), sec, extra));
            }
        }
        if let Some(rest) = t.split("major/minor number: ").nth(1) {
            let mm = rest.split_whitespace().next().unwrap();
            let (a, b) = mm.split_once(':').unwrap();
            d.dev = Some((a.parse().unwrap(), b.parse().unwrap()));
        }
    }
    d
}

/// Expected timestamp from debugfs's raw fields (kernel docs' rule: the
/// 32-bit seconds are signed, the extra word's low 2 bits add 2^32 each,
/// the rest are nanoseconds).
fn expect_time(sec: u32, extra: Option<u32>) -> Timestamp {
    let e = extra.unwrap_or(0);
    Timestamp {
        sec: i64::from(sec as i32) + (i64::from(e & 3) << 32),
        nsec: e >> 2,
    }
}

/// Reads a whole file through the engine in odd-sized chunks.
fn read_all(fs: &Fs, ino: u32, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = fs.read(ino, out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

const PATHS: &[&str] = &[
    "small",
    "empty",
    "multi",
    "sparse",
    "fragmented",
    "dir",
    "dir/sub",
    "dir/sub/nested",
    "owned",
    "fastlink",
    "slowlink",
    "fifo",
    "sock",
    "cdev",
    "bdev",
];

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
        assert_eq!(st.blocks, d.blockcount, "{ctx} {p} blocks");
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
    for (p, want) in standard_files(false) {
        let d = debugfs_stat(&img_path, p);
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
        let inode = fs.inode(d.ino).unwrap();
        if inode.flags & 0x1000_0000 != 0 {
            continue; // inline data symlink: the namespace helper's part
        }
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
    for g in 0..fs.sb().group_count {
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
    ext4_bigalloc: &["-t", "ext4", "-O", "bigalloc", "-C", "16384"], "64M", false;
}

// ---- corruption ---------------------------------------------------------

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

fn ino_of(f: &Fixture, p: &str) -> u32 {
    debugfs_stat(&f.path, p).ino
}

/// Byte offset of inode `ino` in the image.
fn inode_offset(fs: &Fs, ino: u32) -> usize {
    let sb = fs.sb();
    let g = (ino - 1) / sb.inodes_per_group;
    let idx = (ino - 1) % sb.inodes_per_group;
    let gd = fs.group(g).unwrap();
    (gd.inode_table * u64::from(sb.block_size) + u64::from(idx) * u64::from(sb.inode_size)) as usize
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
    assert!(fs.stat(2).is_ok());
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
        assert!(fs.group(1).unwrap().csum_ok);
        let gdt = (1024 / sb.block_size as usize + 1) * sb.block_size as usize;
        let ds = usize::from(sb.desc_size);
        // Flip the free-blocks count of group 1: only group 1 is refused.
        let mut b = f.bytes.clone();
        b[gdt + ds + 0xC] ^= 0x01;
        let fs2 = open(&b).unwrap();
        let ino_in_g1 = sb.inodes_per_group + 1;
        if csum {
            assert!(!fs2.group(1).unwrap().csum_ok, "{args:?}");
            assert!(matches!(
                fs2.inode(ino_in_g1).unwrap_err(),
                Error::Checksum { .. }
            ));
            assert!(matches!(
                fs2.verify_bitmaps(1).unwrap_err(),
                Error::Checksum { .. }
            ));
        } else {
            assert!(fs2.group(1).unwrap().csum_ok, "{args:?}");
        }
        assert!(fs2.stat(2).is_ok(), "{args:?}: group 0 stays readable");
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
    fs.verify_bitmaps(0).unwrap();
    let gd = fs.group(0).unwrap().clone();
    let mut b = f.bytes.clone();
    b[(gd.inode_bitmap * 1024) as usize] ^= 0x80;
    let fs = open(&b).unwrap();
    let e = fs.verify_bitmaps(0).unwrap_err();
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
        assert!(fs.stat(2).is_ok());
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
    assert!(matches!(fs.inode(0).unwrap_err(), Error::NoSuchInode(0)));
    let n = fs.sb().inodes_count;
    assert!(matches!(
        fs.inode(n + 1).unwrap_err(),
        Error::NoSuchInode(_)
    ));
    assert!(matches!(fs.inode(n).unwrap_err(), Error::NoSuchInode(_)));
}

/// The fragmented file's extent leaf block.
fn leaf_of(fs: &Fs, ino: u32) -> u64 {
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
    ] {
        let f = fixture(args);
        let fs = open(&f.bytes).unwrap();
        let sb = fs.sb().clone();
        // Metadata lives in the first blocks of group 0 (sb, GDT, bitmaps,
        // inode table) plus the extent/indirect blocks of the files.
        let gd = fs.group(0).unwrap().clone();
        let meta_end = ((gd.inode_table + u64::from(sb.itable_blocks_per_group)) * 1024) as usize;
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..150 {
            let mut b = f.bytes.clone();
            for _ in 0..8 {
                let at = 1024 + (next() as usize % (meta_end - 1024));
                b[at] ^= (next() as u8) | 1;
            }
            let Ok(fs) = open(&b) else { continue };
            let _ = fs.statfs();
            let mut buf = vec![0u8; 1 << 16];
            for ino in 1..=32 {
                let _ = fs.stat(ino);
                let _ = fs.read(ino, 0, &mut buf);
                let _ = fs.read(ino, 5_000_000_000, &mut buf);
            }
            for g in 0..fs.sb().group_count {
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
    let got: Vec<(u32, u64, u32)> = runs.iter().map(|r| (r.lblk, r.pblk, r.len)).collect();
    assert_eq!(got, want);
    let mapped: u64 = runs.iter().map(|r| u64::from(r.len)).sum();
    assert_eq!(mapped, 12 * 5, "5000 bytes = 5 KiB blocks each");
}
