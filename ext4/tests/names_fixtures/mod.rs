//! Fixtures and oracles shared by the namespace engine tests: scratch
//! trees and images made by mkfs.ext4 -d, debugfs/e2fsck/getfattr wrappers,
//! kernel loop mounts, and byte patching for corruption tests.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fsvc_ext4::io::mem::MemChannel;
use fsvc_ext4::{DirEntry, Error, FileKind, Fs, InodeNo, OpenOptions, ROOT_INO};

/// A scratch directory under /tmp, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("names-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("tree")).unwrap();
        Scratch(p)
    }
    pub fn tree(&self) -> PathBuf {
        self.0.join("tree")
    }
    pub fn img(&self) -> PathBuf {
        self.0.join("img")
    }
    /// mkfs.ext4 -d tree with `args`; returns the image path.
    pub fn mkfs(&self, args: &[&str], size: &str) -> PathBuf {
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

pub fn open_bytes(b: Vec<u8>) -> fsvc_ext4::Result<Fs> {
    Fs::open(
        Arc::new(MemChannel::read_only(b)),
        &OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
}

pub fn open(img: &Path) -> Fs {
    open_bytes(std::fs::read(img).unwrap()).expect("open image")
}

pub fn debugfs(img: &Path, cmd: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .output()
        .expect("run debugfs");
    out.stdout
}

/// `e2fsck -fyD`: rebuilds (and indexes) every directory.
pub fn e2fsck_d(img: &Path) {
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
pub fn ls_p(img: &Path, dir: &str) -> Vec<(InodeNo, Vec<u8>)> {
    let out = debugfs(img, &format!("ls -p {dir}"));
    out.split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"/"))
        .map(|l| {
            let f: Vec<&[u8]> = l.split(|&b| b == b'/').collect();
            let ino = std::str::from_utf8(f[1]).unwrap().parse().unwrap();
            (InodeNo(ino), f[5].to_vec())
        })
        // debugfs also prints the empty entries that cover index blocks.
        .filter(|(ino, _)| ino.0 != 0)
        .collect()
}

pub fn resolve(fs: &Fs, path: &str) -> InodeNo {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs
            .lookup(ino, c.as_bytes())
            .unwrap_or_else(|e| panic!("lookup {c} in {path}: {e}"));
    }
    ino
}

pub fn read_all(fs: &Fs, dir: InodeNo) -> Vec<DirEntry> {
    let mut v = Vec::new();
    fs.read_dir(dir, 0, &mut |e| {
        v.push(e);
        true
    })
    .unwrap();
    v
}

/// Reads a directory `batch` entries per call, resuming from cookies.
pub fn read_batched(fs: &Fs, dir: InodeNo, batch: usize) -> (Vec<DirEntry>, usize) {
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

pub fn kind_of(p: &Path) -> FileKind {
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

pub fn names_of(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

/// A name made of bytes ≥ 0x80 and ASCII, unique per `i`.
pub fn odd_name(i: usize) -> Vec<u8> {
    let mut n = format!("n{i}_").into_bytes();
    n.extend((0..(i % 23)).map(|k| 0x80 + ((i * 7 + k * 13) % 0x7f) as u8));
    n
}

pub fn mkfile(p: &Path, data: &[u8]) {
    std::fs::write(p, data).unwrap();
}

/// The variety of entries the directory tests cover.
pub fn populate_small(dir: &Path) {
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
pub fn check_dir(fs: &Fs, img: &Path, src: &Path, path: &str, filetype: bool) {
    let dir = resolve(fs, path);
    let entries = read_all(fs, dir);
    let mut got: Vec<(InodeNo, Vec<u8>)> =
        entries.iter().map(|e| (e.ino, e.name.clone())).collect();
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

/// Whether debugfs calls `dir` hash-indexed, and how many index levels.
pub fn htree_levels(img: &Path, dir: &str) -> Option<u32> {
    let out = String::from_utf8_lossy(&debugfs(img, &format!("htree_dump {dir}"))).into_owned();
    let l = out.lines().find(|l| l.contains("Indirect levels:"))?;
    l.rsplit(':').next()?.trim().parse().ok()
}

/// A directory of `n` entries with names of varied length and bytes.
pub fn populate_big(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let mut name = odd_name(i);
        if i % 3 == 0 {
            name.extend_from_slice(b"_some_longer_suffix");
        }
        mkfile(&dir.join(OsStr::from_bytes(&name)), b"");
    }
}

pub fn debugfs_w(img: &Path, cmd: &str) -> Vec<u8> {
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
pub fn privileged(test: &str) -> bool {
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
pub struct KernelMount(pub PathBuf);

impl KernelMount {
    pub fn new(img: &Path, at: &Path, opts: &str) -> KernelMount {
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

/// `getfattr -d -m - -e hex -h PATH` as name → value.
pub fn getfattr(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
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

pub fn setfattr(path: &Path, name: &str, value: &[u8]) {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    let st = Command::new("setfattr")
        .args(["-h", "-n", name, "-v"])
        .arg(format!("0x{hex}"))
        .arg(path)
        .status()
        .expect("run setfattr");
    assert!(st.success(), "setfattr {name} on {path:?}");
}

pub fn setfacl(path: &Path, args: &[&str]) {
    let st = Command::new("setfacl")
        .args(args)
        .arg(path)
        .status()
        .expect("run setfacl");
    assert!(st.success(), "setfacl {args:?}");
}

/// Our xattrs of `ino` as name → value.
pub fn our_xattrs(fs: &Fs, ino: InodeNo) -> BTreeMap<Vec<u8>, Vec<u8>> {
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

pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Files with xattrs in the inode, in a block, big values, other namespaces
/// and ACLs; `big` is a value size that only fits the external block.
pub fn populate_xattrs(t: &Path, big: usize) -> Vec<&'static str> {
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

/// `debugfs bmap PATH LBLK`: the physical block.
pub fn bmap(img: &Path, path: &str, lblk: u64) -> usize {
    let out = String::from_utf8_lossy(&debugfs(img, &format!("bmap {path} {lblk}"))).into_owned();
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("bmap {path} {lblk}: {out}"))
}

/// `debugfs imap PATH`: byte offset of the on-disk inode in the image.
pub fn inode_offset(img: &Path, path: &str, block_size: usize) -> usize {
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

pub fn put16(img: &mut [u8], at: usize, v: u16) {
    img[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn is_corrupt<T: std::fmt::Debug>(r: fsvc_ext4::Result<T>) -> bool {
    matches!(r, Err(Error::Corrupt { .. }))
}

pub fn is_checksum<T: std::fmt::Debug>(r: fsvc_ext4::Result<T>) -> bool {
    matches!(r, Err(Error::Checksum { .. }))
}

/// Runs read_dir to the end (bounded: a hang would be a test timeout).
pub fn read_dir_result(fs: &Fs, dir: InodeNo) -> fsvc_ext4::Result<usize> {
    let mut n = 0;
    fs.read_dir(dir, 0, &mut |_| {
        n += 1;
        true
    })?;
    Ok(n)
}
