//! setattr, inode flags and atime through the engine on every write
//! geometry, checked by `e2fsck -fn`, by debugfs (the raw fields) and by the
//! Linux kernel's ext4 (loop mount read-only: modes, owners, nanosecond
//! times as a program sees them).
//!
//! The kernel read-back needs root and loop devices; without them it says
//! why and skips, or fails under `FSVC_REQUIRE_PRIVILEGED=1`.

mod core_util;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use core_util::*;
use fsvc_ext4::attr_write::{AtimeMode, AtimePolicy, SetAttr, TimeSet};
use fsvc_ext4::flags::{FL_NOATIME, FL_NODUMP};
use fsvc_ext4::inode::flags as fl;
use fsvc_ext4::testfs::{Image, GEOMETRIES};
use fsvc_ext4::tx::Creds;
use fsvc_ext4::{Error, Fs, InodeNo, Timestamp, ROOT_INO};

const USER: Creds = Creds {
    uid: 1000,
    gid: 1000,
};

fn ts(sec: i64, nsec: u32) -> Timestamp {
    Timestamp { sec, nsec }
}

/// A time before 1970 and one past 2038 (year 2242), with nanoseconds.
const PAST: Timestamp = Timestamp {
    sec: -1_000_000_000,
    nsec: 5,
};
const FUTURE: Timestamp = Timestamp {
    sec: (1 << 33) + 12_345,
    nsec: 123_456_789,
};

/// What a timestamp reads back as from an inode with (`extra`) or
/// without the extra fields: seconds only (clamped to 32 bits) without.
fn stored(t: Timestamp, extra: bool) -> Timestamp {
    if extra {
        t
    } else {
        ts(t.sec.clamp(i64::from(i32::MIN), i64::from(i32::MAX)), 0)
    }
}

/// The source tree: a plain file, a setuid+setgid executable, a setgid
/// directory, a setgid file without group-exec (a locking mark).
fn tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &str, m: u32| {
        std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    std::fs::create_dir_all(dir.join("d")).unwrap();
    std::fs::write(dir.join("f"), b"hello\n").unwrap();
    std::fs::write(dir.join("x"), b"#!/bin/sh\n").unwrap();
    std::fs::write(dir.join("lock"), b"").unwrap();
    set("x", 0o6755);
    set("d", 0o2775);
    set("lock", 0o2644);
}

fn lookup(fs: &Fs, name: &str) -> InodeNo {
    fs.lookup(ROOT_INO, name.as_bytes()).unwrap()
}

/// The changes every geometry gets, with the engine's answers checked;
/// returns whether the inodes have the extra timestamp fields.
fn change(fs: &Fs, ctx: &str) -> bool {
    let extra = fs.sb().inode_size > 128;
    let f = lookup(fs, "f");
    // chown to ids with high halves, then a setuid mode, then times.
    let st = fs
        .setattr(
            Creds::ROOT,
            f,
            &SetAttr {
                uid: Some(70_000),
                gid: Some(70_001),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((st.uid, st.gid), (70_000, 70_001), "{ctx}");
    let st = fs
        .setattr(
            Creds::ROOT,
            f,
            &SetAttr {
                mode: Some(0o4640),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!(st.perm, 0o4640, "{ctx}");
    let st = fs
        .setattr(
            Creds::ROOT,
            f,
            &SetAttr {
                atime: Some(TimeSet::At(PAST)),
                mtime: Some(TimeSet::At(FUTURE)),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!(st.atime, stored(PAST, extra), "{ctx} atime");
    assert_eq!(st.mtime, stored(FUTURE, extra), "{ctx} mtime");
    let now = fsvc_ext4::tx::now();
    assert!(
        (st.ctime.sec - now.sec).abs() < 60,
        "{ctx}: ctime {:?} is the operation's time",
        st.ctime
    );

    // chown of the setuid+setgid group-executable file: both go.
    let x = lookup(fs, "x");
    let st = fs
        .setattr(
            Creds::ROOT,
            x,
            &SetAttr {
                uid: Some(1000),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!(st.perm, 0o0755, "{ctx} x");
    // setgid without group-exec stays; a directory keeps its setgid.
    for (name, perm) in [("lock", 0o2644), ("d", 0o2775)] {
        let ino = lookup(fs, name);
        let st = fs
            .setattr(
                Creds::ROOT,
                ino,
                &SetAttr {
                    gid: Some(1000),
                    ..SetAttr::default()
                },
            )
            .unwrap();
        assert_eq!(st.perm, perm, "{ctx} {name}");
    }

    // Append-only: times "now" are fine, chmod and explicit times are not;
    // only root may set or clear the flag.
    let flags = fs.get_flags(f).unwrap();
    assert!(matches!(
        fs.set_flags(USER, f, flags | fl::APPEND),
        Err(Error::NotPermitted(_))
    ));
    let st = fs
        .set_flags(Creds::ROOT, f, flags | fl::APPEND | FL_NODUMP)
        .unwrap();
    assert_eq!(st.flags & (fl::APPEND | FL_NODUMP), fl::APPEND | FL_NODUMP);
    let refused = [
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
        SetAttr {
            mtime: Some(TimeSet::At(ts(1, 0))),
            ..SetAttr::default()
        },
        SetAttr {
            uid: Some(0),
            ..SetAttr::default()
        },
    ];
    for ch in &refused {
        assert!(
            matches!(fs.setattr(Creds::ROOT, f, ch), Err(Error::NotPermitted(_))),
            "{ctx}: {ch:?} on an append-only file"
        );
    }
    fs.setattr(
        Creds::ROOT,
        f,
        &SetAttr {
            atime: Some(TimeSet::Now),
            ..SetAttr::default()
        },
    )
    .unwrap();
    // Back to the times checked below, through an immutable phase.
    fs.set_flags(Creds::ROOT, f, flags | fl::IMMUTABLE | FL_NODUMP)
        .unwrap();
    assert!(matches!(
        fs.setattr(Creds::ROOT, f, &SetAttr::default()),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        fs.set_flags(Creds::ROOT, f, flags | fl::IMMUTABLE),
        Err(Error::NotPermitted(_))
    ));
    fs.set_flags(Creds::ROOT, f, flags | FL_NODUMP).unwrap();
    fs.setattr(
        Creds::ROOT,
        f,
        &SetAttr {
            atime: Some(TimeSet::At(PAST)),
            ..SetAttr::default()
        },
    )
    .unwrap();
    // GETVERSION is the generation.
    assert_eq!(
        fs.get_version(f).unwrap(),
        fs.inode(f).unwrap().generation,
        "{ctx}"
    );
    extra
}

/// The state `change` leaves, as debugfs reads the raw inode.
fn check_debugfs(img: &Path, extra: bool, ctx: &str) {
    let d = debugfs_stat(img, "f");
    assert_eq!(d.mode & 0o7777, 0o4640, "{ctx}");
    assert_eq!((d.uid, d.gid), (70_000, 70_001), "{ctx}");
    assert_eq!(
        d.flags & (fl::APPEND | fl::IMMUTABLE | FL_NODUMP),
        FL_NODUMP
    );
    for (name, want) in [("atime", PAST), ("mtime", FUTURE)] {
        let (_, sec, x) = d
            .times
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{ctx}: debugfs shows no {name}"));
        assert_eq!(expect_time(*sec, *x), stored(want, extra), "{ctx} {name}");
    }
    assert_eq!(debugfs_stat(img, "x").mode & 0o7777, 0o0755, "{ctx}");
    assert_eq!(debugfs_stat(img, "lock").mode & 0o7777, 0o2644, "{ctx}");
    assert_eq!(debugfs_stat(img, "d").mode & 0o7777, 0o2775, "{ctx}");
}

/// The same state as the kernel's ext4 serves it.
fn check_kernel(img: &Path, dir: &Path, extra: bool, ctx: &str) {
    let _m = Mount::new(img, dir, "ro,noload");
    let m = std::fs::symlink_metadata(dir.join("f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4640, "{ctx}");
    assert_eq!((m.uid(), m.gid()), (70_000, 70_001), "{ctx}");
    let a = stored(PAST, extra);
    let mt = stored(FUTURE, extra);
    assert_eq!(
        (m.atime(), m.atime_nsec()),
        (a.sec, i64::from(a.nsec)),
        "{ctx}"
    );
    assert_eq!(
        (m.mtime(), m.mtime_nsec()),
        (mt.sec, i64::from(mt.nsec)),
        "{ctx}"
    );
    // lsattr through the kernel: nodump set, append-only and immutable gone.
    let lsattr = run(std::process::Command::new("lsattr")
        .arg("-d")
        .arg(dir.join("f")));
    let attrs = lsattr.split_whitespace().next().unwrap_or("");
    assert!(
        attrs.contains('d') && !attrs.contains('a') && !attrs.contains('i'),
        "{ctx}: {lsattr}"
    );
    let x = std::fs::symlink_metadata(dir.join("x")).unwrap();
    assert_eq!((x.mode() & 0o7777, x.uid()), (0o755, 1000), "{ctx}");
    let l = std::fs::symlink_metadata(dir.join("lock")).unwrap();
    assert_eq!((l.mode() & 0o7777, l.gid()), (0o2644, 1000), "{ctx}");
}

#[test]
fn setattr_and_flags_on_every_geometry() {
    let kernel = privileged("setattr_and_flags_on_every_geometry");
    for &(name, args, size) in GEOMETRIES {
        let s = Scratch::new("wattr-setattr");
        let src = s.0.join("tree");
        tree(&src);
        let mut a: Vec<&str> = args.to_vec();
        let src_s = src.to_str().unwrap();
        a.extend(["-d", src_s]);
        let Some(img) = Image::mkfs(&a, size) else {
            return;
        };
        let fs = img.open_rw();
        let extra = change(&fs, name);
        fs.unmount().unwrap();
        drop(fs);
        img.fsck_clean();
        let path = s.0.join("img");
        std::fs::write(&path, img.bytes()).unwrap();
        check_debugfs(&path, extra, name);
        // Opened again, the engine reads what it wrote.
        let fs = img.open_ro();
        let st = fs.stat(lookup(&fs, "f")).unwrap();
        assert_eq!(
            (st.perm, st.mtime),
            (0o4640, stored(FUTURE, extra)),
            "{name}"
        );
        drop(fs);
        if kernel {
            check_kernel(&path, &s.0.join("mnt"), extra, name);
        }
    }
}

#[test]
fn atime_follows_the_policy() {
    let Some(img) = Image::mkfs(&["-b", "4096"], "32M") else {
        return;
    };
    let fs = img.open_rw();
    let root = ROOT_INO;
    let old = ts(1_000_000, 0);
    fs.setattr(
        Creds::ROOT,
        root,
        &SetAttr {
            atime: Some(TimeSet::At(old)),
            mtime: Some(TimeSet::At(ts(10, 0))),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let policy = |mode, nodiratime| AtimePolicy { mode, nodiratime };
    // noatime and nodiratime leave it; relatime updates an atime older
    // than ctime (the setattr just now).
    assert!(!fs
        .touch_atime(root, policy(AtimeMode::NoAtime, false))
        .unwrap());
    assert!(!fs
        .touch_atime(root, policy(AtimeMode::Relatime, true))
        .unwrap());
    assert_eq!(fs.stat(root).unwrap().atime, old);
    assert!(fs
        .touch_atime(root, policy(AtimeMode::Relatime, false))
        .unwrap());
    let after = fs.stat(root).unwrap().atime;
    assert!(after.sec > old.sec);
    // Now newer than mtime and ctime, and fresh: relatime leaves it.
    assert!(!fs
        .touch_atime(root, policy(AtimeMode::Relatime, false))
        .unwrap());
    // chattr +A stops even strictatime.
    let flags = fs.get_flags(root).unwrap();
    fs.set_flags(Creds::ROOT, root, flags | FL_NOATIME).unwrap();
    assert!(!fs
        .touch_atime(root, policy(AtimeMode::Strict, false))
        .unwrap());
    fs.unmount().unwrap();
    drop(fs);
    img.fsck_clean();
    // A read-only filesystem never changes.
    let ro = img.open_ro();
    assert!(!ro
        .touch_atime(root, policy(AtimeMode::Strict, false))
        .unwrap());
}

#[test]
fn read_only_and_missing_inodes_are_refused() {
    let Some(img) = Image::mkfs(&["-b", "1024"], "8M") else {
        return;
    };
    let ro = img.open_ro();
    assert!(matches!(
        ro.setattr(Creds::ROOT, ROOT_INO, &SetAttr::default()),
        Err(Error::ReadOnly)
    ));
    drop(ro);
    let fs = img.open_rw();
    // A free inode, and a size change (truncate is file data's): nothing
    // written.
    assert!(matches!(
        fs.setattr(Creds::ROOT, InodeNo(100), &SetAttr::default()),
        Err(Error::NoSuchInode(_))
    ));
    let before = fs.stat(ROOT_INO).unwrap();
    assert!(matches!(
        fs.setattr(
            Creds::ROOT,
            ROOT_INO,
            &SetAttr {
                size: Some(0),
                mode: Some(0o700),
                ..SetAttr::default()
            }
        ),
        Err(Error::Unsupported(_))
    ));
    assert_eq!(fs.stat(ROOT_INO).unwrap(), before);
    fs.unmount().unwrap();
    drop(fs);
    img.fsck_clean();
}
