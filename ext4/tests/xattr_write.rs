//! Extended attributes and POSIX ACLs written by the engine, on every
//! write geometry: `e2fsck -fn` clean, and the kernel's ext4 (loop mount
//! read-only) lists exactly the names and values the engine serves
//! (`getfattr -d -m -`) and the ACLs (`getfacl`). A block the kernel
//! shares between inodes (its mbcache) is copied on write with the
//! refcounts right; areas fill to ENOSPC as in the kernel.
//!
//! The kernel parts need root and loop devices; without them they say
//! why and skip, or fail under `FSVC_REQUIRE_PRIVILEGED=1`.

mod core_util;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use core_util::*;
use fsvc_ext4::acl::{encode_xattr, tag, AclEntry, ACL_UNDEFINED_ID};
use fsvc_ext4::attr_write::SetAttr;
use fsvc_ext4::testfs::{Image, GEOMETRIES};
use fsvc_ext4::tx::Creds;
use fsvc_ext4::xattr_write::XattrFlags;
use fsvc_ext4::{Error, Fs, InodeNo, Space, ROOT_INO};

const ROOT: Creds = Creds::ROOT;
const SET: XattrFlags = XattrFlags {
    create: false,
    replace: false,
    kill_sgid: false,
};
const CREATE: XattrFlags = XattrFlags {
    create: true,
    ..SET
};
const REPLACE: XattrFlags = XattrFlags {
    replace: true,
    ..SET
};

fn lookup(fs: &Fs, name: &str) -> InodeNo {
    fs.lookup(ROOT_INO, name.as_bytes()).unwrap()
}

/// An ACL in the xattr format from (tag, perm, id) entries.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let e: Vec<AclEntry> = entries
        .iter()
        .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
        .collect();
    encode_xattr(&e)
}

const U: u32 = ACL_UNDEFINED_ID;

/// Every visible attribute of `ino` as the engine serves it.
fn engine_xattrs(fs: &Fs, ino: InodeNo) -> BTreeMap<String, Vec<u8>> {
    fs.list_xattrs(ino)
        .unwrap()
        .into_iter()
        .map(|n| {
            let v = fs.get_xattr(ino, &n).unwrap();
            (String::from_utf8(n).unwrap(), v)
        })
        .collect()
}

/// Writes `img` to `dir/img`, mounts it read-only through the kernel at
/// `dir/mnt` and checks that every path lists exactly the attributes the
/// engine served; returns the mount (unmounted on drop) for more checks.
fn kernel_agrees(
    img: &Image,
    dir: &Path,
    served: &[(&str, BTreeMap<String, Vec<u8>>)],
    ctx: &str,
) -> (Mount, std::path::PathBuf) {
    let path = dir.join("img");
    std::fs::write(&path, img.bytes()).unwrap();
    let mnt = dir.join("mnt");
    let m = Mount::new(&path, &mnt, "ro,noload");
    for (p, want) in served {
        assert_eq!(&kernel_xattrs(&mnt.join(p)), want, "{ctx}: {p}");
    }
    (m, mnt)
}

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("d")).unwrap();
    std::fs::write(dir.join("f"), b"data").unwrap();
    std::os::unix::fs::symlink("f", dir.join("l")).unwrap();
}

/// The changes each geometry gets, checked through the engine.
fn change(fs: &Fs, ctx: &str) {
    let f = lookup(fs, "f");
    let big = vec![b'b'; 600];
    fs.set_xattr(ROOT, f, b"user.small", b"v1", SET).unwrap();
    fs.set_xattr(ROOT, f, b"user.big", &big, SET).unwrap();
    fs.set_xattr(ROOT, f, b"trusted.t", b"tt", SET).unwrap();
    fs.set_xattr(ROOT, f, b"security.s", b"", SET).unwrap();
    assert!(matches!(
        fs.set_xattr(ROOT, f, b"user.small", b"x", CREATE),
        Err(Error::Exists)
    ));
    assert!(matches!(
        fs.set_xattr(ROOT, f, b"user.none", b"x", REPLACE),
        Err(Error::NoXattr)
    ));
    fs.set_xattr(ROOT, f, b"user.small", b"v2", REPLACE)
        .unwrap();
    fs.remove_xattr(ROOT, f, b"trusted.t").unwrap();
    assert!(matches!(
        fs.remove_xattr(ROOT, f, b"trusted.t"),
        Err(Error::NoXattr)
    ));
    // An access ACL with a named user: the mode follows (mask r--).
    let a = acl(&[
        (tag::USER_OBJ, 6, U),
        (tag::USER, 4, 1000),
        (tag::GROUP_OBJ, 4, U),
        (tag::MASK, 4, U),
        (tag::OTHER, 0, U),
    ]);
    let st = fs
        .set_xattr(ROOT, f, b"system.posix_acl_access", &a, SET)
        .unwrap();
    assert_eq!(st.perm, 0o640, "{ctx}");
    // chmod moves the mask, owner and other entries.
    fs.setattr(
        ROOT,
        f,
        &SetAttr {
            mode: Some(0o751),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let want = acl(&[
        (tag::USER_OBJ, 7, U),
        (tag::USER, 4, 1000),
        (tag::GROUP_OBJ, 4, U),
        (tag::MASK, 5, U),
        (tag::OTHER, 1, U),
    ]);
    assert_eq!(
        fs.get_xattr(f, b"system.posix_acl_access").unwrap(),
        want,
        "{ctx}"
    );
    // An ACL the mode says entirely is not stored; the mode takes it.
    let d = lookup(fs, "d");
    let plain = acl(&[
        (tag::USER_OBJ, 7, U),
        (tag::GROUP_OBJ, 0, U),
        (tag::OTHER, 5, U),
    ]);
    let st = fs
        .set_xattr(ROOT, d, b"system.posix_acl_access", &plain, SET)
        .unwrap();
    assert_eq!(st.perm, 0o705, "{ctx}");
    assert_eq!(
        fs.stat(d).unwrap().perm,
        0o705,
        "{ctx}: the mode was written"
    );
    assert!(matches!(
        fs.get_xattr(d, b"system.posix_acl_access"),
        Err(Error::NoXattr)
    ));
    let def = acl(&[
        (tag::USER_OBJ, 7, U),
        (tag::GROUP_OBJ, 5, U),
        (tag::GROUP, 7, 4242),
        (tag::MASK, 7, U),
        (tag::OTHER, 0, U),
    ]);
    fs.set_xattr(ROOT, d, b"system.posix_acl_default", &def, SET)
        .unwrap();
    assert!(matches!(
        fs.set_xattr(ROOT, f, b"system.posix_acl_default", &def, SET),
        Err(Error::Invalid(_))
    ));
    // Malformed ACLs, user.* on a symlink, unknown namespaces.
    assert!(matches!(
        fs.set_xattr(ROOT, f, b"system.posix_acl_access", &a[..10], SET),
        Err(Error::Invalid(_))
    ));
    let l = lookup(fs, "l");
    assert!(matches!(
        fs.set_xattr(ROOT, l, b"user.x", b"1", SET),
        Err(Error::NotPermitted(_))
    ));
    fs.set_xattr(ROOT, l, b"trusted.x", b"1", SET).unwrap();
    assert!(matches!(
        fs.set_xattr(ROOT, l, b"system.posix_acl_access", &a, SET),
        Err(Error::Unsupported(_))
    ));
    // Removing an absent ACL succeeds (the kernel's ext4 does too).
    assert!(matches!(
        fs.remove_xattr(ROOT, l, b"system.posix_acl_default"),
        Err(Error::Unsupported(_))
    ));
    fs.remove_xattr(ROOT, d, b"system.posix_acl_access")
        .unwrap();
    assert!(matches!(
        fs.set_xattr(ROOT, f, b"system.data", b"1", SET),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        fs.set_xattr(ROOT, f, b"user.huge", &vec![0u8; 65537], SET),
        Err(Error::ValueTooBig)
    ));
    let got = engine_xattrs(fs, f);
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "security.s",
            "system.posix_acl_access",
            "user.big",
            "user.small"
        ],
        "{ctx}"
    );
    assert_eq!(got["user.big"], big, "{ctx}");
    assert_eq!(got["user.small"], b"v2", "{ctx}");
}

#[test]
fn xattrs_and_acls_on_every_geometry() {
    let kernel = privileged("xattrs_and_acls_on_every_geometry");
    for &(name, args, size) in GEOMETRIES {
        let s = Scratch::new("wattr-xattr");
        let src = s.0.join("tree");
        tree(&src);
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-d", src.to_str().unwrap()]);
        let Some(img) = Image::mkfs(&a, size) else {
            return;
        };
        let fs = img.open_rw();
        change(&fs, name);
        let served: Vec<_> = ["f", "d", "l"]
            .iter()
            .map(|p| (*p, engine_xattrs(&fs, lookup(&fs, p))))
            .collect();
        fs.unmount().unwrap();
        drop(fs);
        img.fsck_clean();
        if !kernel {
            continue;
        }
        let (_m, mnt) = kernel_agrees(&img, &s.0, &served, name);
        let facl = run(Command::new("getfacl")
            .args(["-n", "--absolute-names"])
            .arg(mnt.join("f")));
        for line in [
            "user::rwx",
            "user:1000:r--",
            "group::r--",
            "mask::r-x",
            "other::--x",
        ] {
            assert!(facl.lines().any(|l| l == line), "{name}: {line} in\n{facl}");
        }
        let dacl = run(Command::new("getfacl")
            .args(["-n", "--absolute-names", "-d"])
            .arg(mnt.join("d")));
        assert!(
            dacl.lines().any(|l| l == "group:4242:rwx"),
            "{name}: {dacl}"
        );
    }
}

#[test]
fn areas_fill_to_enospc() {
    for &(name, args, size) in &GEOMETRIES[..2] {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let root = ROOT_INO;
        let bs = fs.sb().block_size as usize;
        // A value no block can hold: ENOSPC, as the kernel answers.
        assert!(matches!(
            fs.set_xattr(ROOT, root, b"user.toobig", &vec![1u8; bs], SET),
            Err(Error::NoSpace(Space::Xattrs))
        ));
        let mut n = 0;
        loop {
            let key = format!("user.n{n:04}");
            match fs.set_xattr(ROOT, root, key.as_bytes(), &[b'v'; 40], SET) {
                Ok(_) => n += 1,
                Err(Error::NoSpace(Space::Xattrs)) => break,
                Err(e) => panic!("{name}: {e}"),
            }
            assert!(n < 1000, "{name}: never full");
        }
        // 40-byte values, 24-byte entries: the in-inode area takes one,
        // a block (bs - 36) / 64.
        assert_eq!(n, 1 + (bs - 36) / 64, "{name}");
        assert_eq!(fs.list_xattrs(root).unwrap().len(), n, "{name}");
        fs.remove_xattr(ROOT, root, b"user.n0003").unwrap();
        fs.set_xattr(ROOT, root, b"user.again", &[b'w'; 40], SET)
            .unwrap();
        fs.unmount().unwrap();
        drop(fs);
        img.fsck_clean();
        // Removing everything frees the block: e2fsck counts it.
        let fs = img.open_rw();
        for key in fs.list_xattrs(root).unwrap() {
            fs.remove_xattr(ROOT, root, &key).unwrap();
        }
        assert_eq!(fs.inode(root).unwrap().file_acl.0, 0, "{name}");
        fs.unmount().unwrap();
        drop(fs);
        img.fsck_clean();
    }
}

#[test]
fn ea_inode_values_are_refused_clearly() {
    let Some(img) = Image::mkfs(&["-b", "1024", "-O", "ea_inode"], "16M") else {
        return;
    };
    let fs = img.open_rw();
    assert!(matches!(
        fs.set_xattr(ROOT, ROOT_INO, b"user.large", &[1u8; 2000], SET),
        Err(Error::Unsupported(_))
    ));
    fs.set_xattr(ROOT, ROOT_INO, b"user.small", &[1u8; 20], SET)
        .unwrap();
    fs.unmount().unwrap();
    drop(fs);
    img.fsck_clean();
}

/// `h_refcount` of xattr block `blk` as the engine has committed it (with
/// a journal, a synced block may still be in the log only).
fn refcount(fs: &Fs, blk: u64) -> u32 {
    let b = fs.meta_block(fsvc_ext4::Pblk(blk)).unwrap();
    u32::from_le_bytes(b[4..8].try_into().unwrap())
}

#[test]
fn shared_blocks_are_copied_on_write() {
    if !privileged("shared_blocks_are_copied_on_write") {
        return;
    }
    for &(name, args, size) in &[GEOMETRIES[0], GEOMETRIES[3], GEOMETRIES[5]] {
        let s = Scratch::new("wattr-shared");
        let path = s.0.join("img");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .args(args)
            .arg(&path)
            .arg(size));
        // The kernel shares one block between files with the same
        // attributes (mbcache): a, b and c get one block, refcount 3.
        {
            let mnt = s.0.join("mnt");
            let _m = Mount::new(&path, &mnt, "rw");
            for f in ["a", "b", "c"] {
                let p = mnt.join(f);
                std::fs::write(&p, f).unwrap();
                run(Command::new("setfattr")
                    .args(["-n", "user.shared", "-v"])
                    .arg("z".repeat(700))
                    .arg(&p));
            }
            // The kernel's own layout of both areas, for the engine to edit.
            let k = mnt.join("k");
            std::fs::write(&k, b"k").unwrap();
            for (n, v) in [
                ("user.a", "1".repeat(10)),
                ("user.b", "2".repeat(20)),
                ("user.c", "3".repeat(500)),
            ] {
                run(Command::new("setfattr")
                    .args(["-n", n, "-v"])
                    .arg(v)
                    .arg(&k));
            }
        }
        let img = Image {
            mem: std::sync::Arc::new(fsvc_ext4::io::mem::MemChannel::new(
                std::fs::read(&path).unwrap(),
            )),
            args: vec![name.into()],
        };
        let fs = img.open_rw();
        let ino = |f: &str| lookup(&fs, f);
        let shared = fs.inode(ino("a")).unwrap().file_acl.0;
        assert_ne!(shared, 0, "{name}: the value lives in a block");
        for f in ["b", "c"] {
            assert_eq!(fs.inode(ino(f)).unwrap().file_acl.0, shared, "{name}: {f}");
        }
        assert_eq!(refcount(&fs, shared), 3, "{name}");
        // a changes its block: a copy for a, the shared one loses a reference.
        fs.set_xattr(ROOT, ino("a"), b"user.more", &[b'm'; 200], SET)
            .unwrap();
        let a_blk = fs.inode(ino("a")).unwrap().file_acl.0;
        assert_ne!(a_blk, shared, "{name}");
        // b drops its only attribute: no block for b, one reference less.
        fs.remove_xattr(ROOT, ino("b"), b"user.shared").unwrap();
        assert_eq!(fs.inode(ino("b")).unwrap().file_acl.0, 0, "{name}");
        assert_eq!(refcount(&fs, shared), 1, "{name}");
        assert_eq!(refcount(&fs, a_blk), 1, "{name}");
        // Edits of the kernel's layout: one removed, one replaced, one added.
        let k = ino("k");
        fs.remove_xattr(ROOT, k, b"user.a").unwrap();
        fs.set_xattr(ROOT, k, b"user.b", b"replaced", REPLACE)
            .unwrap();
        fs.set_xattr(ROOT, k, b"user.d", &[b'4'; 300], CREATE)
            .unwrap();
        // c, now alone on the block, changes it in place.
        fs.set_xattr(ROOT, ino("c"), b"user.shared", b"short", SET)
            .unwrap();
        let c_blk = fs.inode(ino("c")).unwrap().file_acl.0;
        let served: Vec<_> = ["a", "b", "c", "k"]
            .iter()
            .map(|f| (*f, engine_xattrs(&fs, ino(f))))
            .collect();
        fs.unmount().unwrap();
        drop(fs);
        img.fsck_clean();
        // "short" fits in the inode: c's block went away (freed, not leaked).
        assert!(c_blk == 0 || c_blk == shared, "{name}");
        let _m = kernel_agrees(&img, &s.0, &served, name);
        assert_eq!(served[0].1.len(), 2, "{name}");
        assert!(served[1].1.is_empty(), "{name}");
        assert_eq!(served[2].1["user.shared"], b"short", "{name}");
        let k: Vec<&str> = served[3].1.keys().map(String::as_str).collect();
        assert_eq!(k, ["user.b", "user.c", "user.d"], "{name}");
        assert_eq!(served[3].1["user.b"], b"replaced", "{name}");
    }
}

#[test]
fn default_acls_are_inherited() {
    use fsvc_ext4::acl_write::InheritedAcl;
    use fsvc_ext4::flags::handle_inode;
    let s = Scratch::new("wattr-inherit");
    let src = s.0.join("tree");
    tree(&src);
    std::fs::create_dir_all(src.join("d/sub")).unwrap();
    let Some(img) = Image::mkfs(&["-b", "1024", "-d", src.to_str().unwrap()], "16M") else {
        return;
    };
    let fs = img.open_rw();
    let d = lookup(&fs, "d");
    let def = acl(&[
        (tag::USER_OBJ, 7, U),
        (tag::USER, 6, 1000),
        (tag::GROUP_OBJ, 5, U),
        (tag::MASK, 7, U),
        (tag::OTHER, 1, U),
    ]);
    fs.set_xattr(ROOT, d, b"system.posix_acl_default", &def, SET)
        .unwrap();
    let sub = fs.lookup(d, b"sub").unwrap();
    let root_dir = fs.inode(ROOT_INO).unwrap();
    {
        let mut tx = fs.begin(ROOT).unwrap();
        let dir = handle_inode(&tx, d).unwrap();
        // No default ACL: the umask applies.
        let plain = InheritedAcl::from_dir(&tx, &root_dir, 0o100666, 0o022).unwrap();
        assert_eq!((plain.mode, plain.max_blocks()), (0o100644, 0));
        // With one: the umask does not, the ACL masks the mode.
        let file = InheritedAcl::from_dir(&tx, &dir, 0o100666, 0o077).unwrap();
        assert_eq!((file.mode, file.max_blocks()), (0o100660, 1));
        let link = InheritedAcl::from_dir(&tx, &dir, 0o120777, 0o022).unwrap();
        assert_eq!((link.mode, link.max_blocks()), (0o120777, 0));
        let child = InheritedAcl::from_dir(&tx, &dir, 0o040777, 0o022).unwrap();
        assert_eq!(child.mode, 0o040771);
        let mut inode = handle_inode(&tx, sub).unwrap();
        inode.mode = child.mode;
        child.apply(&mut tx, &mut inode).unwrap();
        tx.write_inode(&inode).unwrap();
        tx.commit().unwrap();
    }
    let access = fs.get_xattr(sub, b"system.posix_acl_access").unwrap();
    assert_eq!(
        access,
        acl(&[
            (tag::USER_OBJ, 7, U),
            (tag::USER, 6, 1000),
            (tag::GROUP_OBJ, 5, U),
            (tag::MASK, 7, U),
            (tag::OTHER, 1, U),
        ])
    );
    assert_eq!(fs.get_xattr(sub, b"system.posix_acl_default").unwrap(), def);
    fs.unmount().unwrap();
    drop(fs);
    img.fsck_clean();
}

/// Inline-data files keep their data (`system.data`) beside the new
/// attributes, and 128-byte inodes, which have no in-inode area, put
/// everything in the block.
#[test]
fn inline_data_and_small_inodes() {
    let kernel = privileged("inline_data_and_small_inodes");
    let cases: &[(&str, &[&str])] = &[
        ("inline", &["-b", "1024", "-O", "inline_data"]),
        ("128-byte inodes", &["-b", "1024", "-I", "128"]),
    ];
    for &(name, args) in cases {
        let s = Scratch::new("wattr-inline");
        let src = s.0.join("tree");
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("f"), b"tiny inline contents").unwrap();
        std::fs::write(src.join("d/x"), b"x").unwrap();
        let mut a = args.to_vec();
        a.extend(["-d", src.to_str().unwrap()]);
        let Some(img) = Image::mkfs(&a, "16M") else {
            return;
        };
        let fs = img.open_rw();
        for p in ["f", "d"] {
            let ino = lookup(&fs, p);
            for i in 0..6 {
                let key = format!("user.k{i}");
                fs.set_xattr(ROOT, ino, key.as_bytes(), &[b'0' + i as u8; 30], SET)
                    .unwrap();
            }
            fs.remove_xattr(ROOT, ino, b"user.k2").unwrap();
        }
        let f = lookup(&fs, "f");
        let mut buf = vec![0u8; 64];
        let n = fs.read(f, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"tiny inline contents", "{name}");
        assert_eq!(fs.list_xattrs(f).unwrap().len(), 5, "{name}");
        let served: Vec<_> = ["f", "d"]
            .iter()
            .map(|p| (*p, engine_xattrs(&fs, lookup(&fs, p))))
            .collect();
        fs.unmount().unwrap();
        drop(fs);
        img.fsck_clean();
        if !kernel {
            continue;
        }
        let (_m, mnt) = kernel_agrees(&img, &s.0, &served, name);
        assert_eq!(
            std::fs::read(mnt.join("f")).unwrap(),
            b"tiny inline contents",
            "{name}"
        );
        assert_eq!(std::fs::read(mnt.join("d/x")).unwrap(), b"x", "{name}");
    }
}

/// The same attribute changes made by the kernel on one copy of an image
/// and by the engine on another: both read back (through the kernel)
/// with the same names, values, modes and allocated blocks.
#[test]
fn same_changes_as_the_kernel() {
    if !privileged("same_changes_as_the_kernel") {
        return;
    }
    for &(name, args, size) in &[GEOMETRIES[0], GEOMETRIES[1], GEOMETRIES[5]] {
        let s = Scratch::new("wattr-same");
        let src = s.0.join("tree");
        tree(&src);
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-d", src.to_str().unwrap()]);
        let Some(img) = Image::mkfs(&a, size) else {
            return;
        };
        let theirs = s.0.join("kernel.img");
        std::fs::write(&theirs, img.bytes()).unwrap();
        let big = "q".repeat(600);
        let named = acl(&[
            (tag::USER_OBJ, 6, U),
            (tag::USER, 4, 1000),
            (tag::GROUP_OBJ, 4, U),
            (tag::MASK, 4, U),
            (tag::OTHER, 4, U),
        ]);
        {
            let mnt = s.0.join("kmnt");
            let _m = Mount::new(&theirs, &mnt, "rw");
            let f = mnt.join("f");
            let set = |n: &str, v: &str| {
                run(Command::new("setfattr").args(["-n", n, "-v", v]).arg(&f));
            };
            set("user.a", "first");
            set("user.big", &big);
            set("user.a", "second value");
            run(Command::new("setfattr").args(["-x", "user.big"]).arg(&f));
            set("trusted.t", &big);
            run(Command::new("setfacl").args(["-m", "u:1000:r"]).arg(&f));
            run(Command::new("chmod").arg("750").arg(&f));
        }
        let fs = img.open_rw();
        let f = lookup(&fs, "f");
        fs.set_xattr(ROOT, f, b"user.a", b"first", SET).unwrap();
        fs.set_xattr(ROOT, f, b"user.big", big.as_bytes(), SET)
            .unwrap();
        fs.set_xattr(ROOT, f, b"user.a", b"second value", SET)
            .unwrap();
        fs.remove_xattr(ROOT, f, b"user.big").unwrap();
        fs.set_xattr(ROOT, f, b"trusted.t", big.as_bytes(), SET)
            .unwrap();
        fs.set_xattr(ROOT, f, b"system.posix_acl_access", &named, SET)
            .unwrap();
        fs.setattr(
            ROOT,
            f,
            &SetAttr {
                mode: Some(0o750),
                ..SetAttr::default()
            },
        )
        .unwrap();
        fs.unmount().unwrap();
        drop(fs);
        img.fsck_clean();
        let ours = s.0.join("engine.img");
        std::fs::write(&ours, img.bytes()).unwrap();
        let view = |path: &Path, tag: &str| {
            use std::os::unix::fs::MetadataExt;
            let mnt = s.0.join(tag);
            let _m = Mount::new(path, &mnt, "ro,noload");
            let m = std::fs::metadata(mnt.join("f")).unwrap();
            (kernel_xattrs(&mnt.join("f")), m.mode(), m.blocks())
        };
        let (kx, kmode, kblocks) = view(&theirs, "k-ro");
        let (ex, emode, eblocks) = view(&ours, "e-ro");
        assert_eq!(ex, kx, "{name}: attributes");
        assert_eq!(emode, kmode, "{name}: mode");
        assert_eq!(
            eblocks, kblocks,
            "{name}: st_blocks (the xattr block counted once)"
        );
    }
}
