//! rename and renameat2 (NOREPLACE, EXCHANGE, WHITEOUT) on every test
//! geometry, files and directories, within and across directories: link
//! counts, "..", the orphan of a replaced file; then e2fsck -fn, debugfs
//! and the kernel's read-back agree with the engine.

mod core_util;
mod ns_util;

use fsvc_ext4::rename::rename_flags::{EXCHANGE, NOREPLACE, WHITEOUT};
use fsvc_ext4::testfs::{Image, GEOMETRIES};
use fsvc_ext4::{Error, FileKind, Fs, InodeNo, ROOT_INO};
use ns_util::*;

/// A rename that must fail: (old dir, old name, new dir, new name, flags,
/// expected error).
type Refusal<'a> = (InodeNo, &'a [u8], InodeNo, &'a [u8], u32, &'a str);

fn ino(fs: &Fs, path: &str) -> InodeNo {
    let mut cur = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur = lookup(fs, cur, part.as_bytes()).unwrap_or_else(|| panic!("{path}: no {part}"));
    }
    cur
}

/// A fresh image with directories /d1, /d1/sub and /d2 made by debugfs.
fn image(args: &[&str], size: &str) -> Option<Image> {
    let img = Image::mkfs(args, size)?;
    let img = img.debugfs_write("mkdir /d1");
    let img = img.debugfs_write("mkdir /d2");
    Some(img.debugfs_write("mkdir /d1/sub"))
}

#[test]
fn renames_on_every_geometry() {
    for &(geo, args, size) in GEOMETRIES {
        let Some(img) = image(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let (d1, d2) = (ino(&fs, "d1"), ino(&fs, "d2"));
        for name in ["a", "b", "c", "x"] {
            fs.create(&USER, ROOT_INO, name.as_bytes(), 0o644).unwrap();
        }
        fs.mknod(&USER, d1, b"f", S_IFIFO | 0o600, 0).unwrap();
        let a = ino(&fs, "a");
        let b = ino(&fs, "b");

        // Same directory, then over an existing file (orphaned, evicted).
        let r = fs
            .rename(&USER, ROOT_INO, b"a", ROOT_INO, b"a2", 0)
            .unwrap();
        assert_eq!(r.replaced, None);
        assert_eq!(lookup(&fs, ROOT_INO, b"a"), None);
        assert_eq!(ino(&fs, "a2"), a);
        let r = fs
            .rename(&USER, ROOT_INO, b"a2", ROOT_INO, b"b", 0)
            .unwrap();
        let u = r.replaced.unwrap();
        assert_eq!((u.ino, u.orphaned), (b, true));
        assert_eq!(fs.super_fields().last_orphan, b.0);
        fs.evict(b).unwrap();
        assert_eq!(ino(&fs, "b"), a);
        // Two names of one inode: nothing happens.
        fs.link(&USER, a, d2, b"hard").unwrap();
        assert_eq!(
            fs.rename(&USER, ROOT_INO, b"b", d2, b"hard", 0)
                .unwrap()
                .replaced,
            None
        );
        assert_eq!((ino(&fs, "b"), ino(&fs, "d2/hard")), (a, a));
        fs.unlink(&USER, d2, b"hard").unwrap();

        // Across directories, NOREPLACE, EXCHANGE.
        let c = ino(&fs, "c");
        fs.rename(&USER, ROOT_INO, b"c", d1, b"c", 0).unwrap();
        assert_eq!(ino(&fs, "d1/c"), c);
        let e = fs.rename(&USER, d1, b"c", d1, b"f", NOREPLACE).unwrap_err();
        assert!(matches!(e, Error::Exists), "{geo}: {e:?}");
        let f = ino(&fs, "d1/f");
        fs.rename(&USER, d1, b"c", d1, b"f", EXCHANGE).unwrap();
        assert_eq!((ino(&fs, "d1/c"), ino(&fs, "d1/f")), (f, c));
        let l = listing(&fs, d1);
        let kinds = [l[&b"c".to_vec()].1, l[&b"f".to_vec()].1];
        assert_eq!(
            kinds,
            [FileKind::Fifo, FileKind::File],
            "{geo}: entry types"
        );

        // WHITEOUT: the old name becomes a 0:0 character device.
        let x = ino(&fs, "x");
        fs.rename(&USER, ROOT_INO, b"x", d2, b"x", WHITEOUT)
            .unwrap();
        assert_eq!(ino(&fs, "d2/x"), x);
        let w = stat(&fs, ino(&fs, "x"));
        assert_eq!(
            (w.kind, w.perm, w.rdev, w.nlink),
            (FileKind::CharDev, 0, (0, 0), 1)
        );

        // A directory to another parent: "..", both parents' link counts.
        let sub = ino(&fs, "d1/sub");
        let (l1, l2) = (stat(&fs, d1).nlink, stat(&fs, d2).nlink);
        fs.rename(&USER, d1, b"sub", d2, b"sub", 0).unwrap();
        assert_eq!((stat(&fs, d1).nlink, stat(&fs, d2).nlink), (l1 - 1, l2 + 1));
        assert_eq!(lookup(&fs, sub, b".."), Some(d2));
        // ... never under itself.
        let e = fs
            .rename(&USER, ROOT_INO, b"d2", sub, b"loop", 0)
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{geo}: {e:?}");
        let e = fs
            .rename(&USER, ROOT_INO, b"d2", d2, b"self", 0)
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{geo}: {e:?}");
        // Type rules.
        // (old dir, old name, new dir, new name, flags, expected error)
        let cases: &[Refusal] = &[
            (ROOT_INO, b"b", d2, b"sub", 0, "IsDirectory"),
            (d2, b"sub", ROOT_INO, b"b", 0, "NotDirectory"),
            (ROOT_INO, b"nope", d2, b"n", 0, "NotFound"),
            (ROOT_INO, b"b", d2, b"nope", EXCHANGE, "NotFound"),
            (ROOT_INO, b"b", d2, b"n", EXCHANGE | WHITEOUT, "Invalid"),
            (ROOT_INO, b"b", d2, b"n", 64, "Invalid"),
            (ROOT_INO, b"b", d2, b"..", 0, "Invalid"),
            (ROOT_INO, b"d1", d1, b"d1", 0, "Invalid"),
        ];
        for &(od, on, nd, nn, flags, want) in cases {
            let e = fs.rename(&USER, od, on, nd, nn, flags).unwrap_err();
            assert!(
                format!("{e:?}").starts_with(want),
                "{geo}: {on:?} → {nn:?}: {e:?}"
            );
        }
        // EXCHANGE of a directory and a file across parents.
        let (l2, lr) = (stat(&fs, d2).nlink, stat(&fs, ROOT_INO).nlink);
        fs.rename(&USER, d2, b"sub", ROOT_INO, b"b", EXCHANGE)
            .unwrap();
        assert_eq!((ino(&fs, "b"), ino(&fs, "d2/sub")), (sub, a));
        assert_eq!(
            (stat(&fs, d2).nlink, stat(&fs, ROOT_INO).nlink),
            (l2 - 1, lr + 1)
        );
        assert_eq!(lookup(&fs, sub, b".."), Some(ROOT_INO));
        assert_eq!(fs.super_fields().last_orphan, 0);
        fs.unmount().unwrap();
        let tree = check_image(&img, geo);
        assert_eq!(tree["/b"].kind, FileKind::Dir, "{geo}");
        assert_eq!(tree["/x"].kind, FileKind::CharDev, "{geo}");
        assert_eq!(tree["/d1/c"].kind, FileKind::Fifo, "{geo}");
    }
}
