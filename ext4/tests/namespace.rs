//! Namespace operations (create, mknod, symlink, link, unlink, evict) on
//! every test geometry: after each sequence e2fsck -fn is clean, debugfs
//! lists exactly the engine's entries (names, inode numbers, modes), and
//! the kernel's ext4 reads the same names, types, modes, owners, link
//! counts, device numbers and symlink targets.

mod core_util;
mod ns_util;

use std::collections::BTreeMap;

use fsvc_ext4::namei::Unlinked;
use fsvc_ext4::testfs::{Image, GEOMETRIES};
use fsvc_ext4::{Error, FileKind, Fs, Stat, ROOT_INO};
use ns_util::*;

/// The oracles, and the root holding exactly `expect` (plus lost+found)
/// with the engine's inode numbers, types, modes, owners and link counts.
fn check(img: &Image, geo: &str, expect: &BTreeMap<Vec<u8>, Stat>, targets: &[(&str, &[u8])]) {
    let tree = check_image(img, geo);
    let top: BTreeMap<String, &Node> = tree
        .iter()
        .filter(|(p, _)| p.matches('/').count() == 1 && *p != "/lost+found")
        .map(|(p, n)| (p[1..].to_string(), n))
        .collect();
    assert_eq!(
        top.keys()
            .map(|k| k.as_bytes().to_vec())
            .collect::<Vec<_>>(),
        expect.keys().cloned().collect::<Vec<_>>(),
        "{geo}: names"
    );
    for (name, st) in expect {
        let n = top[&String::from_utf8_lossy(name).to_string()];
        assert_eq!(
            (n.ino, n.kind, n.perm, n.uid, n.gid, n.nlink, n.rdev),
            (st.ino.0, st.kind, st.perm, st.uid, st.gid, st.nlink, st.rdev),
            "{geo}: {name:?}"
        );
    }
    for (name, target) in targets {
        assert_eq!(top[*name].target.as_deref(), Some(*target), "{geo}: {name}");
    }
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

#[test]
fn rmdir_refusals_change_nothing() {
    let Some(img) = Image::mkfs(&["-b", "1024"], "8M") else {
        return;
    };
    let img = img.debugfs_write("mkdir /full");
    let img = img.debugfs_write("mkdir /full/inner");
    let fs = img.open_rw();
    let full = lookup(&fs, ROOT_INO, b"full").unwrap();
    fs.create(&USER, ROOT_INO, b"file", 0o600).unwrap();
    // (directory, name, expected error)
    let cases: &[(fsvc_ext4::InodeNo, &[u8], &str)] = &[
        (ROOT_INO, b"full", "NotEmpty"),
        (ROOT_INO, b"file", "NotDirectory"),
        (ROOT_INO, b"none", "NotFound"),
        (full, b".", "Invalid"),
        (full, b"..", "NotEmpty"),
    ];
    for &(dir, name, want) in cases {
        let e = fs.rmdir(&USER, dir, name).unwrap_err();
        assert!(format!("{e:?}").starts_with(want), "{name:?}: {e:?}");
    }
    fs.unmount().unwrap();
    let tree = check_image(&img, "rmdir refusals");
    assert_eq!(tree["/full"].nlink, 3);
}

#[test]
fn append_only_and_immutable_are_enforced() {
    let Some(img) = Image::mkfs(&["-b", "1024"], "8M") else {
        return;
    };
    let img = img
        .debugfs_write("mkdir /ro")
        .debugfs_write("mkdir /app")
        .debugfs_write("write /dev/null /app/old")
        .debugfs_write("write /dev/null /frozen")
        .debugfs_write("sif /ro flags 0x80010")
        .debugfs_write("sif /app flags 0x80020")
        .debugfs_write("sif /frozen flags 0x80010");
    let fs = img.open_rw();
    let ro = lookup(&fs, ROOT_INO, b"ro").unwrap();
    let app = lookup(&fs, ROOT_INO, b"app").unwrap();
    let frozen = lookup(&fs, ROOT_INO, b"frozen").unwrap();
    type Op<'a> = Box<dyn Fn(&Fs) -> Result<(), Error> + 'a>;
    let refused: Vec<(&str, Op)> = vec![
        (
            "create in an immutable dir",
            Box::new(|fs| fs.create(&USER, ro, b"x", 0o600).map(drop)),
        ),
        (
            "unlink from an append-only dir",
            Box::new(|fs| fs.unlink(&USER, app, b"old").map(drop)),
        ),
        (
            "unlink an immutable file",
            Box::new(|fs| fs.unlink(&USER, ROOT_INO, b"frozen").map(drop)),
        ),
        (
            "link an immutable file",
            Box::new(|fs| fs.link(&USER, frozen, ROOT_INO, b"f2").map(drop)),
        ),
        (
            "rename an immutable file",
            Box::new(|fs| {
                fs.rename(&USER, ROOT_INO, b"frozen", ROOT_INO, b"f3", 0)
                    .map(drop)
            }),
        ),
        (
            "rename out of an append-only dir",
            Box::new(|fs| fs.rename(&USER, app, b"old", ROOT_INO, b"o", 0).map(drop)),
        ),
    ];
    for (what, op) in refused {
        let e = op(&fs).unwrap_err();
        assert!(matches!(e, Error::NotPermitted(_)), "{what}: {e:?}");
    }
    // Adding to an append-only directory is allowed.
    fs.create(&USER, app, b"new", 0o600).unwrap();
    fs.unmount().unwrap();
    let tree = check_image(&img, "append-only and immutable");
    assert!(tree.contains_key("/app/new") && tree.contains_key("/frozen"));
}
