//! Namespace operations (create, mknod, symlink, link, unlink, evict) on
//! every test geometry: after each sequence e2fsck -fn is clean, debugfs
//! lists exactly the engine's entries (names, inode numbers, modes), and
//! the kernel's ext4 reads the same names, types, modes, owners, link
//! counts, device numbers and symlink targets.

mod core_util;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use core_util::{privileged, Mount, Scratch};
use fsvc_ext4::namei::Unlinked;
use fsvc_ext4::testfs::{Image, GEOMETRIES};
use fsvc_ext4::tx::Creds;
use fsvc_ext4::{Error, FileKind, Fs, InodeNo, Stat, ROOT_INO};

const S_IFREG: u16 = 0o100000;
const S_IFCHR: u16 = 0o020000;
const S_IFBLK: u16 = 0o060000;
const S_IFIFO: u16 = 0o010000;
const S_IFSOCK: u16 = 0o140000;

const USER: Creds = Creds {
    uid: 1000,
    gid: 1001,
};

/// The kernel's `new_encode_dev`.
fn rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Every entry of `dir` but "." and "..": name → (inode, kind).
fn listing(fs: &Fs, dir: InodeNo) -> BTreeMap<Vec<u8>, (InodeNo, FileKind)> {
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

fn stat(fs: &Fs, ino: InodeNo) -> Stat {
    let _g = fs.read_guard().unwrap();
    fs.stat(ino).unwrap()
}

/// debugfs `ls -l` of the root: name → (inode, mode).
fn debugfs_listing(img: &Image) -> BTreeMap<Vec<u8>, (u32, u16)> {
    let out = img.debugfs("ls -l /");
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        let (Some(ino), Some(mode), Some(name)) = (t.first(), t.get(1), t.last()) else {
            continue;
        };
        let (Ok(ino), Ok(mode)) = (ino.parse::<u32>(), u16::from_str_radix(mode, 8)) else {
            continue;
        };
        if *name != "." && *name != ".." {
            m.insert(name.as_bytes().to_vec(), (ino, mode));
        }
    }
    m
}

/// Checks the image three ways after a sequence: e2fsck, debugfs, and
/// (with root) the kernel.
fn check(img: &Image, geo: &str, expect: &BTreeMap<Vec<u8>, Stat>, targets: &[(&str, &[u8])]) {
    img.fsck_clean();
    let ro = img.open_ro();
    let engine = listing(&ro, ROOT_INO);
    let want: BTreeMap<Vec<u8>, InodeNo> = expect.iter().map(|(n, s)| (n.clone(), s.ino)).collect();
    let got: BTreeMap<Vec<u8>, InodeNo> = engine.iter().map(|(n, e)| (n.clone(), e.0)).collect();
    let lost_found = b"lost+found".to_vec();
    let got_no_lf: BTreeMap<_, _> = got.into_iter().filter(|(n, _)| *n != lost_found).collect();
    assert_eq!(got_no_lf, want, "{geo}: engine listing");
    for (name, st) in expect {
        let now = stat(&ro, st.ino);
        assert_eq!(
            (now.kind, now.perm, now.uid, now.gid, now.nlink, now.rdev),
            (st.kind, st.perm, st.uid, st.gid, st.nlink, st.rdev),
            "{geo}: {name:?}"
        );
    }
    let dbg = debugfs_listing(img);
    for (name, st) in expect {
        let (ino, mode) = dbg
            .get(name)
            .unwrap_or_else(|| panic!("{geo}: debugfs lacks {name:?}"));
        assert_eq!(InodeNo(*ino), st.ino, "{geo}: debugfs inode of {name:?}");
        assert_eq!(mode & 0o7777, st.perm, "{geo}: debugfs mode of {name:?}");
    }
    assert_eq!(
        dbg.len(),
        expect.len() + 1,
        "{geo}: debugfs entries {dbg:?}"
    );
    if !privileged("namespace kernel read-back") {
        return;
    }
    let s = Scratch::new("ns");
    let path = s.0.join("img");
    std::fs::write(&path, img.bytes()).unwrap();
    let mnt = s.0.join("mnt");
    let m = Mount::new(&path, &mnt, "ro,noload");
    kernel_compare(&m.0, geo, expect, targets);
}

fn kernel_compare(
    root: &Path,
    geo: &str,
    expect: &BTreeMap<Vec<u8>, Stat>,
    targets: &[(&str, &[u8])],
) {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| {
            use std::os::unix::ffi::OsStrExt;
            e.unwrap().file_name().as_bytes().to_vec()
        })
        .filter(|n| n != b"lost+found")
        .collect();
    names.sort();
    assert_eq!(
        names,
        expect.keys().cloned().collect::<Vec<_>>(),
        "{geo}: kernel listing"
    );
    for (name, st) in expect {
        let p = root.join(String::from_utf8_lossy(name).as_ref());
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(md.ino(), u64::from(st.ino.0), "{geo}: {name:?} ino");
        assert_eq!(
            md.mode() & 0o7777,
            u32::from(st.perm),
            "{geo}: {name:?} mode"
        );
        assert_eq!(
            (md.uid(), md.gid()),
            (st.uid, st.gid),
            "{geo}: {name:?} owner"
        );
        assert_eq!(md.nlink(), u64::from(st.nlink), "{geo}: {name:?} nlink");
        let ft = md.file_type();
        let kind = match st.kind {
            FileKind::File => ft.is_file(),
            FileKind::Dir => ft.is_dir(),
            FileKind::Symlink => ft.is_symlink(),
            FileKind::CharDev => ft.is_char_device(),
            FileKind::BlockDev => ft.is_block_device(),
            FileKind::Fifo => ft.is_fifo(),
            FileKind::Socket => ft.is_socket(),
        };
        assert!(kind, "{geo}: {name:?} is {ft:?}, expected {:?}", st.kind);
        if matches!(st.kind, FileKind::CharDev | FileKind::BlockDev) {
            let r = md.rdev();
            let (maj, min) = (libc_major(r), libc_minor(r));
            assert_eq!((maj, min), st.rdev, "{geo}: {name:?} rdev");
        }
    }
    for (name, target) in targets {
        let t = std::fs::read_link(root.join(name)).unwrap();
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(t.as_os_str().as_bytes(), *target, "{geo}: {name} target");
    }
}

fn libc_major(d: u64) -> u32 {
    (((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)) as u32
}

fn libc_minor(d: u64) -> u32 {
    (((d >> 12) & 0xffff_ff00) | (d & 0xff)) as u32
}

#[test]
fn nodes_links_and_unlinks_on_every_geometry() {
    for &(geo, args, size) in GEOMETRIES {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let mut expect: BTreeMap<Vec<u8>, Stat> = BTreeMap::new();
        let file = fs.create(&USER, ROOT_INO, b"file", 0o640).unwrap();
        assert_eq!(
            (file.kind, file.perm, file.uid, file.gid, file.nlink, file.size),
            (FileKind::File, 0o640, 1000, 1001, 1, 0),
            "{geo}"
        );
        assert_eq!(file.atime, file.mtime);
        assert_eq!(file.ctime, file.mtime);
        let root_before = stat(&fs, ROOT_INO);
        let nodes: &[(&[u8], u16, u32)] = &[
            (b"fifo", S_IFIFO | 0o600, 0),
            (b"sock", S_IFSOCK | 0o755, 0),
            (b"cdev", S_IFCHR | 0o620, rdev(4, 5)),
            (b"bdev", S_IFBLK | 0o660, rdev(300, 70_000)),
            (b"reg", S_IFREG | 0o4755, 0),
        ];
        for &(name, mode, dev) in nodes {
            let st = fs.mknod(&USER, ROOT_INO, name, mode, dev).unwrap();
            assert_eq!(st.perm, mode & 0o7777, "{geo} {name:?}");
            expect.insert(name.to_vec(), st);
        }
        assert_eq!(expect[&b"cdev".to_vec()].rdev, (4, 5));
        assert_eq!(expect[&b"bdev".to_vec()].rdev, (300, 70_000));
        let target: &[u8] = b"some/where/../else";
        let sl = fs.symlink(&USER, ROOT_INO, b"link", target).unwrap();
        assert_eq!((sl.kind, sl.size, sl.perm), (FileKind::Symlink, 18, 0o777));
        {
            let _g = fs.read_guard().unwrap();
            assert_eq!(fs.read_link(sl.ino).unwrap(), target);
        }
        expect.insert(b"link".to_vec(), sl);
        let root_after = stat(&fs, ROOT_INO);
        let t = |s: &Stat| (s.mtime.sec, s.mtime.nsec);
        assert!(t(&root_after) >= t(&root_before) && root_after.ctime == root_after.mtime);

        // A second name, then errors that change nothing.
        let two = fs.link(&USER, file.ino, ROOT_INO, b"file2").unwrap();
        assert_eq!(two.nlink, 2);
        type Op<'a> = Box<dyn Fn(&Fs) -> Result<(), Error> + 'a>;
        let cases: Vec<(&str, Op, &str)> = vec![
            (
                "create existing",
                Box::new(|fs| fs.create(&USER, ROOT_INO, b"file", 0o600).map(drop)),
                "Exists",
            ),
            (
                "create dot",
                Box::new(|fs| fs.create(&USER, ROOT_INO, b"..", 0o600).map(drop)),
                "Exists",
            ),
            (
                "link a directory",
                Box::new(|fs| fs.link(&USER, ROOT_INO, ROOT_INO, b"r").map(drop)),
                "NotPermitted",
            ),
            (
                "link over a name",
                Box::new(|fs| fs.link(&USER, file.ino, ROOT_INO, b"fifo").map(drop)),
                "Exists",
            ),
            (
                "unlink missing",
                Box::new(|fs| fs.unlink(&USER, ROOT_INO, b"nope").map(drop)),
                "NotFound",
            ),
            (
                "unlink a directory",
                Box::new(|fs| fs.unlink(&USER, ROOT_INO, b"lost+found").map(drop)),
                "IsDirectory",
            ),
            (
                "name too long",
                Box::new(|fs| fs.create(&USER, ROOT_INO, &[b'x'; 256], 0o600).map(drop)),
                "NameTooLong",
            ),
            (
                "create in a file",
                Box::new(|fs| fs.create(&USER, file.ino, b"x", 0o600).map(drop)),
                "NotDirectory",
            ),
            (
                "mknod a directory",
                Box::new(|fs| fs.mknod(&USER, ROOT_INO, b"d", 0o040755, 0).map(drop)),
                "Invalid",
            ),
        ];
        for (what, op, want) in cases {
            let e = op(&fs).unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{geo}: {what}: {e:?}");
        }
        // Many names in the root's first block, every other one removed.
        let mut made = Vec::new();
        for i in 0..30 {
            let name = format!("n{i:02}-{}", "x".repeat(i % 7));
            made.push((
                name.clone(),
                fs.create(&USER, ROOT_INO, name.as_bytes(), 0o600).unwrap(),
            ));
        }
        for (i, (name, st)) in made.into_iter().enumerate() {
            if i % 2 == 0 {
                let u = fs.unlink(&USER, ROOT_INO, name.as_bytes()).unwrap();
                assert_eq!(
                    u,
                    Unlinked {
                        ino: st.ino,
                        orphaned: true
                    }
                );
                assert_eq!(
                    fs.super_fields().last_orphan,
                    st.ino.0,
                    "{geo}: orphan head"
                );
                fs.evict(st.ino).unwrap();
            } else {
                expect.insert(name.into_bytes(), st);
            }
        }
        // The last link of a file held open: orphaned, readable, evicted later.
        let u = fs.unlink(&USER, ROOT_INO, b"file").unwrap();
        assert!(!u.orphaned);
        let u = fs.unlink(&USER, ROOT_INO, b"file2").unwrap();
        assert!(u.orphaned);
        let held = fs.create(&USER, ROOT_INO, b"held", 0o600).unwrap();
        assert!(fs.unlink(&USER, ROOT_INO, b"held").unwrap().orphaned);
        // Two on the orphan chain; the one below the head leaves first.
        assert_eq!(fs.super_fields().last_orphan, held.ino.0);
        {
            let _g = fs.read_guard().unwrap();
            assert_eq!(
                fs.lookup(ROOT_INO, b"held").unwrap_err().to_string(),
                "no such entry"
            );
        }
        fs.evict(file.ino).unwrap();
        assert_eq!(fs.super_fields().last_orphan, held.ino.0);
        fs.evict(held.ino).unwrap();
        assert_eq!(fs.super_fields().last_orphan, 0);
        // Evicting a linked inode does nothing.
        fs.evict(expect[&b"fifo".to_vec()].ino).unwrap();
        fs.unmount().unwrap();
        check(&img, geo, &expect, &[("link", target)]);
    }
}

#[test]
fn setgid_directories_pass_their_group() {
    let Some(img) = Image::mkfs(&["-b", "1024"], "8M") else {
        return;
    };
    // The root made setgid and owned by group 77 (debugfs, as a user would chmod).
    let img = img.debugfs_write("sif / mode 042775");
    let img = img.debugfs_write("sif / gid 77");
    let fs = img.open_rw();
    let f = fs.create(&USER, ROOT_INO, b"f", 0o2755).unwrap();
    assert_eq!((f.gid, f.perm), (77, 0o2755));
    let n = fs.mknod(&USER, ROOT_INO, b"p", S_IFIFO | 0o644, 0).unwrap();
    assert_eq!(n.gid, 77);
    fs.unmount().unwrap();
    img.fsck_clean();
}
