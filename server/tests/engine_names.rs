//! Integration tests of the engine's namespace half (directories, htree,
//! hashes, inline data, symlinks, xattrs, ACLs) against images made at test
//! time by mkfs.ext4 -d, e2fsck -D and debugfs, with debugfs, the source
//! tree (read through the host kernel) and kernel loop mounts as oracles.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fsvc_server::ext4::hash::dx_hash;
use fsvc_server::ext4::{inline, DirEntry, Error, FileKind, Fs, OpenOptions, ROOT_INO};
use fsvc_server::io::mem::MemChannel;

/// A scratch directory under /tmp, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("names-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("tree")).unwrap();
        Scratch(p)
    }
    fn tree(&self) -> PathBuf {
        self.0.join("tree")
    }
    fn img(&self) -> PathBuf {
        self.0.join("img")
    }
    /// mkfs.ext4 -d tree with `args`; returns the image path.
    fn mkfs(&self, args: &[&str], size: &str) -> PathBuf {
        let img = self.img();
        let _ = std::fs::remove_file(&img);
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
            .arg(self.tree())
            .args(args)
            .arg(&img)
            .arg(size)
            .output()
            .expect("run mkfs.ext4");
        assert!(
            out.status.success(),
            "mkfs.ext4 {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        img
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_bytes(b: Vec<u8>) -> fsvc_server::ext4::Result<Fs> {
    Fs::open(
        Arc::new(MemChannel::read_only(b)),
        &OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
}

fn open(img: &Path) -> Fs {
    open_bytes(std::fs::read(img).unwrap()).expect("open image")
}

fn debugfs(img: &Path, cmd: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .output()
        .expect("run debugfs");
    out.stdout
}

/// `e2fsck -fyD`: rebuilds (and indexes) every directory.
fn e2fsck_d(img: &Path) {
    let st = Command::new("e2fsck")
        .args(["-fyD"])
        .arg(img)
        .output()
        .expect("run e2fsck");
    // 0 = clean, 1 = corrected (the -D rewrite counts as a correction).
    assert!(matches!(st.status.code(), Some(0 | 1)), "e2fsck -fyD: {st:?}");
}

/// `debugfs ls -p DIR` as (ino, name) pairs, "." and ".." included.
fn ls_p(img: &Path, dir: &str) -> Vec<(u32, Vec<u8>)> {
    let out = debugfs(img, &format!("ls -p {dir}"));
    out.split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"/"))
        .map(|l| {
            let f: Vec<&[u8]> = l.split(|&b| b == b'/').collect();
            let ino = std::str::from_utf8(f[1]).unwrap().parse().unwrap();
            (ino, f[5].to_vec())
        })
        // debugfs also prints the empty entries that cover index blocks.
        .filter(|(ino, _)| *ino != 0)
        .collect()
}

fn resolve(fs: &Fs, path: &str) -> u32 {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs
            .lookup(ino, c.as_bytes())
            .unwrap_or_else(|e| panic!("lookup {c} in {path}: {e}"));
    }
    ino
}

fn read_all(fs: &Fs, dir: u32) -> Vec<DirEntry> {
    let mut v = Vec::new();
    fs.read_dir(dir, 0, &mut |e| {
        v.push(e);
        true
    })
    .unwrap();
    v
}

/// Reads a directory `batch` entries per call, resuming from cookies.
fn read_batched(fs: &Fs, dir: u32, batch: usize) -> (Vec<DirEntry>, usize) {
    let (mut all, mut cookie, mut calls) = (Vec::new(), 0u64, 0usize);
    loop {
        let mut got = Vec::new();
        fs.read_dir(dir, cookie, &mut |e| {
            got.push(e);
            got.len() < batch
        })
        .unwrap();
        calls += 1;
        let Some(last) = got.last() else { break };
        assert_ne!(last.next_cookie, 0);
        cookie = last.next_cookie;
        all.extend(got);
    }
    (all, calls)
}

fn kind_of(p: &Path) -> FileKind {
    let t = std::fs::symlink_metadata(p).unwrap().file_type();
    if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_fifo() {
        FileKind::Fifo
    } else if t.is_socket() {
        FileKind::Socket
    } else if t.is_char_device() {
        FileKind::CharDev
    } else if t.is_block_device() {
        FileKind::BlockDev
    } else {
        FileKind::File
    }
}

fn names_of(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

/// A name made of bytes ≥ 0x80 and ASCII, unique per `i`.
fn odd_name(i: usize) -> Vec<u8> {
    let mut n = format!("n{i}_").into_bytes();
    n.extend((0..(i % 23)).map(|k| 0x80 + ((i * 7 + k * 13) % 0x7f) as u8));
    n
}

fn mkfile(p: &Path, data: &[u8]) {
    std::fs::write(p, data).unwrap();
}

/// The variety of entries the directory tests cover.
fn populate_small(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..40 {
        mkfile(&dir.join(format!("f{i}")), b"x");
    }
    for i in 0..20 {
        mkfile(&dir.join(OsStr::from_bytes(&odd_name(i))), b"");
    }
    mkfile(&dir.join("L".repeat(255)), b"long");
    std::os::unix::fs::symlink("f1", dir.join("link")).unwrap();
    nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// Checks read_dir, lookup and cookie resumption of `path` against debugfs
/// and the source tree.
fn check_dir(fs: &Fs, img: &Path, src: &Path, path: &str, filetype: bool) {
    let dir = resolve(fs, path);
    let entries = read_all(fs, dir);
    let mut got: Vec<(u32, Vec<u8>)> = entries.iter().map(|e| (e.ino, e.name.clone())).collect();
    let mut want = ls_p(img, path);
    got.sort();
    want.sort();
    assert_eq!(got, want, "{path}: read_dir vs debugfs ls -p");
    let mut names: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| e.name.clone())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    names.sort();
    assert_eq!(names, names_of(src), "{path}: names vs source tree");
    for e in &entries {
        assert_eq!(fs.lookup(dir, &e.name).unwrap(), e.ino, "lookup {:?}", e.name);
        if e.name != b"." && e.name != b".." {
            let want = kind_of(&src.join(OsStr::from_bytes(&e.name)));
            assert_eq!(e.kind, want, "kind of {:?} (filetype {filetype})", e.name);
        }
    }
    assert!(matches!(fs.lookup(dir, b"absent"), Err(Error::NotFound)));
    assert!(matches!(fs.lookup(dir, &[b'a'; 256]), Err(Error::NameTooLong)));
    // Resume from every cookie: the rest is exactly the remaining entries.
    for (i, e) in entries.iter().enumerate() {
        let mut rest = Vec::new();
        fs.read_dir(dir, e.next_cookie, &mut |e| {
            rest.push(e);
            true
        })
        .unwrap();
        assert_eq!(rest, entries[i + 1..], "{path}: resume after entry {i}");
        // A cookie inside an entry resumes at a later boundary, never
        // repeating or inventing entries.
        let mut skew = Vec::new();
        fs.read_dir(dir, e.next_cookie + 1, &mut |e| {
            skew.push(e);
            true
        })
        .unwrap();
        assert!(skew.len() <= rest.len());
        assert_eq!(skew[..], rest[rest.len() - skew.len()..]);
    }
    let (batched, _) = read_batched(fs, dir, 1);
    assert_eq!(batched, entries);
}

#[test]
fn hashes_match_debugfs() {
    let s = Scratch::new("hash");
    let img = s.mkfs(&["-b", "1024"], "4M");
    let seeds = ["00000000-0000-0000-0000-000000000000", "6f1c3d2e-9a8b-4c7d-8e5f-0123456789ab"];
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
            let out = Command::new("debugfs").arg("-f").arg(&cmdfile).arg(&img).output().unwrap();
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
                assert_eq!((h.major, h.minor), (hex[0], hex[1]), "v{version} seed {seed} name {n:?}");
            }
        }
    }
}

fn seed_words(uuid: &str) -> [u32; 4] {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
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
        check_dir(&fs, &img, &s.tree().join("small/sub"), "small/sub", filetype);
        let file = resolve(&fs, "small/f1");
        assert!(matches!(fs.lookup(file, b"x"), Err(Error::NotDirectory)));
        assert!(matches!(fs.read_dir(file, 0, &mut |_| true), Err(Error::NotDirectory)));
        assert_eq!(fs.lookup(resolve(&fs, "small/sub"), b"..").unwrap(), resolve(&fs, "small"));
    }
}

/// Whether debugfs calls `dir` hash-indexed, and how many index levels.
fn htree_levels(img: &Path, dir: &str) -> Option<u32> {
    let out = String::from_utf8_lossy(&debugfs(img, &format!("htree_dump {dir}"))).into_owned();
    let l = out.lines().find(|l| l.contains("Indirect levels:"))?;
    l.rsplit(':').next()?.trim().parse().ok()
}

/// A directory of `n` entries with names of varied length and bytes.
fn populate_big(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let mut name = odd_name(i);
        if i % 3 == 0 {
            name.extend_from_slice(b"_some_longer_suffix");
        }
        mkfile(&dir.join(OsStr::from_bytes(&name)), b"");
    }
}

#[test]
fn htree_lookups_every_hash() {
    // (label, mkfs args, default hash, entries, expected index levels)
    let variants: [(&str, &[&str], &str, usize, u32); 5] = [
        ("htree-md4", &["-b", "4096"], "half_md4", 3000, 0),
        ("htree-tea", &["-b", "4096"], "tea", 3000, 0),
        ("htree-legacy", &["-b", "2048", "-O", "^metadata_csum"], "legacy", 3000, 0),
        ("htree-2lvl", &["-b", "1024"], "half_md4", 6000, 1),
        ("htree-2lvl-tea", &["-b", "1024", "-O", "^metadata_csum"], "tea", 6000, 1),
    ];
    for (label, args, hash, n, levels) in variants {
        let s = Scratch::new(label);
        populate_big(&s.tree().join("big"), n);
        let img = s.mkfs(args, "64M");
        // e2fsck -D builds indexes with the superblock's default hash.
        let out = debugfs_w(&img, &format!("ssv def_hash_version {hash}"));
        assert!(!String::from_utf8_lossy(&out).contains("rror"), "{out:?}");
        e2fsck_d(&img);
        assert_eq!(htree_levels(&img, "big"), Some(levels), "{label}: index levels");
        let fs = open(&img);
        let dir = resolve(&fs, "big");
        let want = ls_p(&img, "big");
        assert_eq!(want.len(), n + 2);
        for (ino, name) in &want {
            assert_eq!(fs.lookup(dir, name).unwrap(), *ino, "{label}: lookup {name:?}");
        }
        for i in [n, n + 1, n * 2] {
            assert!(matches!(fs.lookup(dir, &odd_name(i)), Err(Error::NotFound)), "{label}");
        }
        let mut got: Vec<(u32, Vec<u8>)> = read_all(&fs, dir).into_iter().map(|e| (e.ino, e.name)).collect();
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

fn debugfs_w(img: &Path, cmd: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .output()
        .expect("run debugfs -w");
    [out.stdout, out.stderr].concat()
}

/// Whether privileged fixtures (kernel loop mounts) are possible; when not,
/// says why, and fails instead when FSVC_REQUIRE_PRIVILEGED=1.
fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let why = format!("{test}: skipped, kernel loop mounts need root");
    if std::env::var_os("FSVC_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
        panic!("{why} (FSVC_REQUIRE_PRIVILEGED=1)");
    }
    eprintln!("{why}");
    false
}

/// A kernel loop mount of an image, unmounted (and its loop device freed)
/// on drop.
struct KernelMount(PathBuf);

impl KernelMount {
    fn new(img: &Path, at: &Path, opts: &str) -> KernelMount {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "ext4", "-o"])
            .arg(format!("loop,{opts}"))
            .arg(img)
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount {img:?}");
        KernelMount(at.to_path_buf())
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
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
    assert!(htree_levels(&img, "big").is_some(), "the directory is indexed");
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
