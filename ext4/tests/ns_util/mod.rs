//! Oracles of the namespace tests: the whole tree as the engine serves
//! it, as the kernel's ext4 reads it (loop mount `ro,noload`) and as
//! debugfs lists it, compared after every sequence, with e2fsck -fn.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::core_util::{privileged, Mount, Scratch};
use fsvc_ext4::testfs::Image;
use fsvc_ext4::tx::Creds;
use fsvc_ext4::{FileKind, Fs, InodeNo, Stat, ROOT_INO};

/// A caller that is not root.
pub const USER: Creds = Creds {
    uid: 1000,
    gid: 1001,
};

/// File-type bits.
pub const S_IFREG: u16 = 0o100000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFIFO: u16 = 0o010000;
pub const S_IFSOCK: u16 = 0o140000;

/// The kernel's `new_encode_dev`.
pub fn rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// What the oracles compare of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub ino: u32,
    pub kind: FileKind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: (u32, u32),
    /// Regular files and symlinks only (directory sizes are the engine's
    /// and the kernel's alike, but compared through the listing).
    pub size: Option<u64>,
    pub target: Option<Vec<u8>>,
}

/// Every entry of `dir` but "." and "..": name → (inode, kind).
pub fn listing(fs: &Fs, dir: InodeNo) -> BTreeMap<Vec<u8>, (InodeNo, FileKind)> {
    let _g = fs.read_guard().unwrap();
    let mut out = BTreeMap::new();
    fs.read_dir(dir, 0, &mut |e| {
        if e.name != b"." && e.name != b".." {
            assert!(
                out.insert(e.name.clone(), (e.ino, e.kind)).is_none(),
                "{:?} listed twice",
                e.name
            );
        }
        true
    })
    .unwrap();
    out
}

/// `stat` under the reader guard.
pub fn stat(fs: &Fs, ino: InodeNo) -> Stat {
    let _g = fs.read_guard().unwrap();
    fs.stat(ino).unwrap()
}

/// `lookup` under the reader guard.
pub fn lookup(fs: &Fs, dir: InodeNo, name: &[u8]) -> Option<InodeNo> {
    let _g = fs.read_guard().unwrap();
    fs.lookup(dir, name).ok()
}

/// The tree as the engine serves it: path → node.
pub fn engine_tree(fs: &Fs) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk_engine(fs, ROOT_INO, "", &mut out);
    out
}

fn walk_engine(fs: &Fs, dir: InodeNo, prefix: &str, out: &mut BTreeMap<String, Node>) {
    // "..": must name the parent the walk came from.
    for (name, (ino, kind)) in listing(fs, dir) {
        let path = format!("{prefix}/{}", String::from_utf8_lossy(&name));
        let st = stat(fs, ino);
        assert_eq!(st.kind, kind, "{path}: entry type and inode disagree");
        let target = (kind == FileKind::Symlink).then(|| {
            let _g = fs.read_guard().unwrap();
            fs.read_link(ino).unwrap()
        });
        let size = matches!(kind, FileKind::File | FileKind::Symlink).then_some(st.size);
        out.insert(
            path.clone(),
            Node {
                ino: ino.0,
                kind,
                perm: st.perm,
                uid: st.uid,
                gid: st.gid,
                nlink: st.nlink,
                rdev: st.rdev,
                size,
                target,
            },
        );
        if kind == FileKind::Dir {
            assert_eq!(lookup(fs, ino, b".."), Some(dir), "{path}/..");
            walk_engine(fs, ino, &path, out);
        }
    }
}

fn major(d: u64) -> u32 {
    (((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)) as u32
}

fn minor(d: u64) -> u32 {
    (((d >> 12) & 0xffff_ff00) | (d & 0xff)) as u32
}

fn walk_kernel(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    let parent_ino = std::fs::symlink_metadata(dir).unwrap().ino();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_file() {
            FileKind::File
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_char_device() {
            FileKind::CharDev
        } else if ft.is_block_device() {
            FileKind::BlockDev
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else {
            FileKind::Socket
        };
        let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
        let rdev = match kind {
            FileKind::CharDev | FileKind::BlockDev => (major(md.rdev()), minor(md.rdev())),
            _ => (0, 0),
        };
        let target = (kind == FileKind::Symlink).then(|| {
            std::fs::read_link(&p)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        });
        let size = matches!(kind, FileKind::File | FileKind::Symlink).then_some(md.size());
        out.insert(
            rel,
            Node {
                ino: md.ino() as u32,
                kind,
                perm: (md.mode() & 0o7777) as u16,
                uid: md.uid(),
                gid: md.gid(),
                nlink: md.nlink() as u32,
                rdev,
                size,
                target,
            },
        );
        if kind == FileKind::Dir {
            let up = std::fs::symlink_metadata(p.join("..")).unwrap().ino();
            assert_eq!(up, parent_ino, "kernel: {}/..", p.display());
            walk_kernel(root, &p, out);
        }
    }
}

/// The tree as the kernel's ext4 reads `img` (None without root).
pub fn kernel_tree(img: &Image) -> Option<BTreeMap<String, Node>> {
    if !privileged("namespace kernel read-back") {
        return None;
    }
    let s = Scratch::new("ns");
    let path = s.0.join("img");
    std::fs::write(&path, img.bytes()).unwrap();
    let m = Mount::new(&path, &s.0.join("mnt"), "ro,noload");
    let mut out = BTreeMap::new();
    walk_kernel(&m.0, &m.0, &mut out);
    Some(out)
}

/// debugfs' listing of directory `path`: name → inode.
pub fn debugfs_names(img: &Image, path: &str) -> BTreeMap<Vec<u8>, u32> {
    let out = img.debugfs(&format!("ls -l \"{path}\""));
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        let (Some(ino), Some(mode), Some(name)) = (t.first(), t.get(1), t.last()) else {
            continue;
        };
        if ino.parse::<u32>().map_or(true, |i| i == 0) || u16::from_str_radix(mode, 8).is_err() {
            continue;
        }
        if *name != "." && *name != ".." {
            m.insert(name.as_bytes().to_vec(), ino.parse().unwrap());
        }
    }
    m
}

/// After a sequence (the filesystem unmounted): e2fsck -fn clean, the
/// engine's tree equals the kernel's, and debugfs lists every directory
/// with the engine's names and inode numbers. Returns the engine's tree.
pub fn check_image(img: &Image, ctx: &str) -> BTreeMap<String, Node> {
    img.fsck_clean();
    let ro = img.open_ro();
    let tree = engine_tree(&ro);
    let mut dirs = vec![("/".to_string(), ROOT_INO)];
    dirs.extend(
        tree.iter()
            .filter(|(_, n)| n.kind == FileKind::Dir)
            .map(|(p, n)| (p.clone(), InodeNo(n.ino))),
    );
    for (path, ino) in dirs {
        let want: BTreeMap<Vec<u8>, u32> = listing(&ro, ino)
            .into_iter()
            .map(|(n, (i, _))| (n, i.0))
            .collect();
        assert_eq!(debugfs_names(img, &path), want, "{ctx}: debugfs ls {path}");
    }
    if let Some(k) = kernel_tree(img) {
        assert_eq!(tree, k, "{ctx}: engine and kernel trees");
    }
    tree
}
