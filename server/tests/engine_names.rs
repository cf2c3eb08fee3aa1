//! Integration tests of the engine's namespace half (directories, htree,
//! hashes, inline data, symlinks, xattrs, ACLs) against images made at test
//! time by mkfs.ext4 -d, e2fsck -D and debugfs, with debugfs, the source
//! tree (read through the host kernel) and kernel loop mounts as oracles.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
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
    assert!(
        matches!(st.status.code(), Some(0 | 1)),
        "e2fsck -fyD: {st:?}"
    );
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
    nix::unistd::mkfifo(
        &dir.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
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
        assert_eq!(
            fs.lookup(dir, &e.name).unwrap(),
            e.ino,
            "lookup {:?}",
            e.name
        );
        if e.name != b"." && e.name != b".." {
            let want = kind_of(&src.join(OsStr::from_bytes(&e.name)));
            assert_eq!(e.kind, want, "kind of {:?} (filetype {filetype})", e.name);
        }
    }
    assert!(matches!(fs.lookup(dir, b"absent"), Err(Error::NotFound)));
    assert!(matches!(
        fs.lookup(dir, &[b'a'; 256]),
        Err(Error::NameTooLong)
    ));
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
        let mut got: Vec<(u32, Vec<u8>)> = read_all(&fs, dir)
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

/// `getfattr -d -m - -e hex -h PATH` as name → value.
fn getfattr(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let out = Command::new("getfattr")
        .args(["-d", "-m", "-", "-e", "hex", "--absolute-names", "-h"])
        .arg(path)
        .output()
        .expect("run getfattr");
    let mut m = BTreeMap::new();
    for l in out.stdout.split(|&b| b == b'\n') {
        if l.is_empty() || l.starts_with(b"#") {
            continue;
        }
        let text = String::from_utf8_lossy(l);
        let (name, val) = text.split_once('=').unwrap_or((&text, "0x"));
        let hex = val.trim_start_matches("0x");
        let bytes = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        m.insert(name.as_bytes().to_vec(), bytes);
    }
    m
}

fn setfattr(path: &Path, name: &str, value: &[u8]) {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    let st = Command::new("setfattr")
        .args(["-h", "-n", name, "-v"])
        .arg(format!("0x{hex}"))
        .arg(path)
        .status()
        .expect("run setfattr");
    assert!(st.success(), "setfattr {name} on {path:?}");
}

fn setfacl(path: &Path, args: &[&str]) {
    let st = Command::new("setfacl")
        .args(args)
        .arg(path)
        .status()
        .expect("run setfacl");
    assert!(st.success(), "setfacl {args:?}");
}

/// Our xattrs of `ino` as name → value.
fn our_xattrs(fs: &Fs, ino: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    fs.list_xattrs(ino)
        .unwrap()
        .into_iter()
        .map(|n| {
            let v = fs
                .get_xattr(ino, &n)
                .unwrap_or_else(|e| panic!("get {n:?}: {e}"));
            (n, v)
        })
        .collect()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Files with xattrs in the inode, in a block, big values, other namespaces
/// and ACLs; `big` is a value size that only fits the external block.
fn populate_xattrs(t: &Path, big: usize) -> Vec<&'static str> {
    let root = nix::unistd::geteuid().is_root();
    mkfile(&t.join("small"), b"s");
    setfattr(&t.join("small"), "user.a", b"1");
    setfattr(&t.join("small"), "user.empty", b"");
    mkfile(&t.join("many"), b"m");
    for i in 0..12 {
        setfattr(
            &t.join("many"),
            &format!("user.attr{i:02}"),
            &pattern(40, i),
        );
    }
    mkfile(&t.join("bigval"), b"b");
    setfattr(&t.join("bigval"), "user.big", &pattern(big, 7));
    mkfile(&t.join("ns"), b"n");
    setfattr(&t.join("ns"), "security.test", b"sec");
    if root {
        setfattr(&t.join("ns"), "trusted.t", b"trusted value");
    }
    mkfile(&t.join("acl"), b"a");
    setfacl(&t.join("acl"), &["-m", "u:1000:r,g:100:rw,m::rw"]);
    std::fs::create_dir(t.join("dacl")).unwrap();
    setfacl(&t.join("dacl"), &["-m", "u:1000:rx"]);
    setfacl(&t.join("dacl"), &["-d", "-m", "u:1001:rwx,g:5:r"]);
    vec!["small", "many", "bigval", "ns", "acl", "dacl"]
}

#[test]
fn xattrs_and_acls_match_the_source_tree() {
    let variants: [(&str, &[&str], usize); 4] = [
        ("xattr-4k", &["-b", "4096"], 3000),
        ("xattr-1k", &["-b", "1024"], 700),
        (
            "xattr-4k-nocsum",
            &["-b", "4096", "-O", "^metadata_csum"],
            3000,
        ),
        (
            "xattr-ext3-128",
            &["-t", "ext3", "-b", "2048", "-I", "128"],
            1500,
        ),
    ];
    for (label, args, big) in variants {
        let s = Scratch::new(label);
        let files = populate_xattrs(&s.tree(), big);
        let img = s.mkfs(args, "16M");
        let fs = open(&img);
        for f in files {
            let ino = resolve(&fs, f);
            let want = getfattr(&s.tree().join(f));
            assert!(!want.is_empty());
            assert_eq!(our_xattrs(&fs, ino), want, "{label}: xattrs of {f}");
            assert!(matches!(
                fs.get_xattr(ino, b"user.absent"),
                Err(Error::NoXattr)
            ));
            assert!(matches!(
                fs.get_xattr(ino, b"system.data"),
                Err(Error::NoXattr)
            ));
        }
        // The bigger values really went to the external block.
        assert_ne!(
            fs.inode(resolve(&fs, "bigval")).unwrap().file_acl,
            0,
            "{label}"
        );
        // Kernel oracle: the same image through the kernel's ext4.
        if nix::unistd::geteuid().is_root() {
            let m = KernelMount::new(&img, &s.0.join("mnt"), "ro");
            for f in ["small", "many", "bigval", "ns", "acl", "dacl"] {
                let ino = resolve(&fs, f);
                assert_eq!(
                    our_xattrs(&fs, ino),
                    getfattr(&m.0.join(f)),
                    "{label}: kernel {f}"
                );
            }
        }
    }
}

#[test]
fn ea_inode_values() {
    let s = Scratch::new("eainode");
    mkfile(&s.tree().join("f"), b"f");
    // Larger than the 1 KiB block: only an EA inode can hold it.
    let value = pattern(3000, 3);
    setfattr(&s.tree().join("f"), "user.huge", &value);
    setfattr(&s.tree().join("f"), "user.small", b"x");
    let img = s.mkfs(&["-b", "1024", "-O", "ea_inode"], "16M");
    let fs = open(&img);
    let ino = resolve(&fs, "f");
    assert_eq!(fs.get_xattr(ino, b"user.huge").unwrap(), value);
    assert_eq!(our_xattrs(&fs, ino), getfattr(&s.tree().join("f")));
    if nix::unistd::geteuid().is_root() {
        let m = KernelMount::new(&img, &s.0.join("mnt"), "ro");
        assert_eq!(our_xattrs(&fs, ino), getfattr(&m.0.join("f")));
    }
}

#[test]
fn symlinks_fast_slow_and_with_xattr_block() {
    for (label, args) in [
        ("sym-4k", &["-b", "4096"][..]),
        ("sym-ext2", &["-t", "ext2", "-b", "1024"][..]),
    ] {
        let s = Scratch::new(label);
        let t = s.tree();
        let targets: Vec<(String, String)> = vec![
            ("fast".into(), "a/b".into()),
            ("fast59".into(), "t".repeat(59)),
            ("slow60".into(), "u".repeat(60)),
            ("slow".into(), "dir/".repeat(200)),
        ];
        for (n, tg) in &targets {
            std::os::unix::fs::symlink(tg, t.join(n)).unwrap();
        }
        let root = nix::unistd::geteuid().is_root();
        if root {
            // A fast symlink that also owns an xattr block (trusted.* is
            // allowed on symlinks): i_blocks counts the block, yet the target
            // is still in i_block.
            std::os::unix::fs::symlink("xt", t.join("fastx")).unwrap();
            setfattr(&t.join("fastx"), "trusted.pad", &pattern(400, 1));
        }
        let img = s.mkfs(args, "8M");
        let fs = open(&img);
        for (n, tg) in &targets {
            assert_eq!(
                fs.read_link(resolve(&fs, n)).unwrap(),
                tg.as_bytes(),
                "{label}: {n}"
            );
        }
        if root {
            let ino = resolve(&fs, "fastx");
            assert_ne!(fs.inode(ino).unwrap().file_acl, 0);
            assert_eq!(fs.read_link(ino).unwrap(), b"xt");
        }
        assert!(matches!(fs.read_link(ROOT_INO), Err(Error::NotSymlink)));
    }
}

#[test]
fn inline_data_files_dirs_and_symlinks() {
    let s = Scratch::new("inline");
    let t = s.tree();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("tiny", b"hello inline".to_vec()),
        ("sixty", pattern(60, 1)),
        ("spill", pattern(100, 2)),
        ("empty", Vec::new()),
        ("blocky", pattern(5000, 3)),
    ];
    for (n, d) in &files {
        mkfile(&t.join(n), d);
    }
    std::fs::create_dir(t.join("idir")).unwrap();
    for n in ["a", "bb", "ccc"] {
        mkfile(&t.join("idir").join(n), b"");
    }
    std::fs::create_dir(t.join("iempty")).unwrap();
    std::os::unix::fs::symlink("v".repeat(80), t.join("ilink")).unwrap();
    std::os::unix::fs::symlink("short", t.join("flink")).unwrap();
    let img = s.mkfs(&["-b", "4096", "-I", "256", "-O", "inline_data"], "8M");
    let root = nix::unistd::geteuid().is_root();
    let mut dirs = vec!["idir", "iempty"];
    if root {
        // An inline directory that spills from i_block into system.data:
        // libext2fs converts such a directory to blocks, the kernel does not.
        let m = KernelMount::new(&img, &s.0.join("mnt"), "rw");
        std::fs::create_dir(m.0.join("idir2")).unwrap();
        std::fs::create_dir(t.join("idir2")).unwrap();
        for i in 0..5 {
            mkfile(&m.0.join("idir2").join(format!("name-{i:05}")), b"");
            mkfile(&t.join("idir2").join(format!("name-{i:05}")), b"");
        }
        dirs.push("idir2");
    } else {
        privileged("inline_data_files_dirs_and_symlinks (spilled inline directory)");
    }
    let fs = open(&img);
    const INLINE: u32 = 0x1000_0000;
    for (n, d) in &files {
        let inode = fs.inode(resolve(&fs, n)).unwrap();
        if *n != "blocky" && *n != "empty" {
            assert_ne!(inode.flags & INLINE, 0, "{n} is inline");
        }
        if inode.flags & INLINE == 0 {
            continue;
        }
        let mut buf = vec![0u8; d.len() + 10];
        let got = inline::read_inline(&fs, &inode, 0, &mut buf).unwrap();
        assert_eq!(&buf[..got], &d[..], "{n}");
        // Odd-sized reads at every offset stitch together the same bytes.
        for off in 0..=d.len() {
            let mut b = [0u8; 7];
            let k = inline::read_inline(&fs, &inode, off as u64, &mut b).unwrap();
            assert_eq!(&b[..k], &d[off..(off + 7).min(d.len())], "{n} at {off}");
        }
    }
    for d in &dirs {
        let d = *d;
        let ino = resolve(&fs, d);
        assert_ne!(fs.inode(ino).unwrap().flags & INLINE, 0, "{d} is inline");
        check_dir(&fs, &img, &t.join(d), d, true);
        assert_eq!(fs.lookup(ino, b"..").unwrap(), ROOT_INO);
        assert_eq!(fs.lookup(ino, b".").unwrap(), ino);
    }
    assert_eq!(
        fs.read_link(resolve(&fs, "ilink")).unwrap(),
        "v".repeat(80).as_bytes()
    );
    assert_eq!(fs.read_link(resolve(&fs, "flink")).unwrap(), b"short");
    // system.data is internal: never listed (the kernel does not list it).
    let spill = resolve(&fs, "spill");
    assert!(!fs
        .list_xattrs(spill)
        .unwrap()
        .iter()
        .any(|n| n.starts_with(b"system.")));
    if root {
        let m = KernelMount::new(&img, &s.0.join("mnt"), "ro");
        assert_eq!(our_xattrs(&fs, spill), getfattr(&m.0.join("spill")));
        for d in &dirs {
            assert_eq!(names_of(&m.0.join(d)), names_of(&t.join(d)));
        }
    }
}

/// `debugfs bmap PATH LBLK`: the physical block.
fn bmap(img: &Path, path: &str, lblk: u64) -> usize {
    let out = String::from_utf8_lossy(&debugfs(img, &format!("bmap {path} {lblk}"))).into_owned();
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("bmap {path} {lblk}: {out}"))
}

/// `debugfs imap PATH`: byte offset of the on-disk inode in the image.
fn inode_offset(img: &Path, path: &str, block_size: usize) -> usize {
    let out = String::from_utf8_lossy(&debugfs(img, &format!("imap {path}"))).into_owned();
    let l = out
        .lines()
        .find(|l| l.contains("located at block"))
        .unwrap();
    let (b, o) = l.split_once(", offset ").unwrap();
    let blk: usize = b.rsplit(' ').next().unwrap().parse().unwrap();
    let off = usize::from_str_radix(o.trim().trim_start_matches("0x"), 16).unwrap();
    blk * block_size + off
}

fn put16(img: &mut [u8], at: usize, v: u16) {
    img[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn is_corrupt<T: std::fmt::Debug>(r: fsvc_server::ext4::Result<T>) -> bool {
    matches!(r, Err(Error::Corrupt { .. }))
}

fn is_checksum<T: std::fmt::Debug>(r: fsvc_server::ext4::Result<T>) -> bool {
    matches!(r, Err(Error::Checksum { .. }))
}

/// Runs read_dir to the end (bounded: a hang would be a test timeout).
fn read_dir_result(fs: &Fs, dir: u32) -> fsvc_server::ext4::Result<usize> {
    let mut n = 0;
    fs.read_dir(dir, 0, &mut |_| {
        n += 1;
        true
    })?;
    Ok(n)
}

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
    let acl_blk = fs0.inode(bigval).unwrap().file_acl as usize * BS;
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
    let blk = fs0.inode(bigval).unwrap().file_acl as usize * BS;
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
