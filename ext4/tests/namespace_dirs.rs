//! Directories that grow and shrink on every test geometry: mkdir (link
//! counts, "."/".."), directories grown block by block past their first
//! block, rmdir and evict freeing their blocks, a directory replaced by
//! rename, slow symlinks in a block, the umask; then e2fsck -fn, debugfs
//! and the kernel's read-back agree with the engine.

mod core_util;
mod ns_util;

use fsvc_ext4::testfs::{Image, GEOMETRIES};
use fsvc_ext4::{Error, FileKind, ROOT_INO};
use ns_util::*;

#[test]
fn directories_grow_shrink_and_go_on_every_geometry() {
    for &(geo, args, size) in GEOMETRIES {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let bs = u64::from(fs.block_size());
        let free0 = fs.statfs().blocks_free;
        let links0 = stat(&fs, ROOT_INO).nlink;
        let a = fs.mkdir(&USER, ROOT_INO, b"a", 0o777, 0o022).unwrap();
        assert_eq!(
            (a.kind, a.perm, a.nlink, a.size),
            (FileKind::Dir, 0o755, 2, bs),
            "{geo}"
        );
        assert_eq!(stat(&fs, ROOT_INO).nlink, links0 + 1, "{geo}: parent link");
        let b = fs.mkdir(&USER, a.ino, b"b", 0o700, 0).unwrap();
        assert_eq!(stat(&fs, a.ino).nlink, 3);
        assert_eq!(lookup(&fs, b.ino, b".."), Some(a.ino));
        // Grow "a" past several blocks with long names.
        let n = (bs as usize * 3) / 40;
        for i in 0..n {
            let name = format!("entry-with-a-name-long-enough-{i:04}");
            fs.create(&USER, a.ino, name.as_bytes(), 0o644, 0).unwrap();
        }
        let grown = stat(&fs, a.ino).size;
        assert!(grown >= 3 * bs, "{geo}: directory of {grown} bytes");
        for i in (0..n).step_by(2) {
            let name = format!("entry-with-a-name-long-enough-{i:04}");
            let u = fs.unlink(&USER, a.ino, name.as_bytes()).unwrap();
            assert!(u.orphaned);
            fs.evict(u.ino).unwrap();
        }
        // Slow symlinks (a block), the longest target a block holds.
        let long = vec![b'x'; 100];
        let sl = fs.symlink(&USER, ROOT_INO, b"slow", &long).unwrap();
        assert!(sl.blocks > 0, "{geo}: a slow symlink owns its block");
        let longest = vec![b'y'; bs as usize - 1];
        fs.symlink(&USER, b.ino, b"longest", &longest).unwrap();
        let e = fs
            .symlink(&USER, b.ino, b"too-long", &vec![b'z'; bs as usize])
            .unwrap_err();
        assert!(matches!(e, Error::NameTooLong), "{geo}: {e:?}");
        // rmdir (not empty, then empty) and evict free the blocks.
        let e = fs.rmdir(&USER, a.ino, b"b").unwrap_err();
        assert!(matches!(e, Error::NotEmpty), "{geo}: {e:?}");
        let u = fs.unlink(&USER, b.ino, b"longest").unwrap();
        fs.evict(u.ino).unwrap();
        let u = fs.rmdir(&USER, a.ino, b"b").unwrap();
        assert_eq!((u.ino, u.orphaned), (b.ino, true));
        assert_eq!(stat(&fs, a.ino).nlink, 2, "{geo}: parent lost the link");
        fs.evict(b.ino).unwrap();
        // A directory replaced by rename (empty), evicted.
        fs.mkdir(&USER, ROOT_INO, b"empty", 0o755, 0).unwrap();
        let c = fs.mkdir(&USER, a.ino, b"c", 0o755, 0).unwrap();
        let r = fs
            .rename(&USER, a.ino, b"c", ROOT_INO, b"empty", 0)
            .unwrap();
        let u = r.replaced.unwrap();
        assert!(u.orphaned);
        fs.evict(u.ino).unwrap();
        assert_eq!(lookup(&fs, ROOT_INO, b"empty"), Some(c.ino));
        assert_eq!(lookup(&fs, c.ino, b".."), Some(ROOT_INO));
        assert_eq!(fs.super_fields().last_orphan, 0);
        fs.unmount().unwrap();
        let tree = check_image(&img, geo);
        assert_eq!(tree["/slow"].target.as_deref(), Some(&long[..]));
        assert_eq!(tree["/a"].nlink, 2, "{geo}");
        assert_eq!(tree["/empty"].nlink, 2, "{geo}");
        // Everything freed comes back: remove the rest and compare counts.
        let fs = img.open_rw();
        for i in (1..n).step_by(2) {
            let name = format!("entry-with-a-name-long-enough-{i:04}");
            let u = fs.unlink(&USER, a.ino, name.as_bytes()).unwrap();
            fs.evict(u.ino).unwrap();
        }
        let u = fs.unlink(&USER, ROOT_INO, b"slow").unwrap();
        fs.evict(u.ino).unwrap();
        for name in [&b"a"[..], b"empty"] {
            let u = fs.rmdir(&USER, ROOT_INO, name).unwrap();
            fs.evict(u.ino).unwrap();
        }
        assert_eq!(stat(&fs, ROOT_INO).nlink, links0, "{geo}");
        assert_eq!(fs.statfs().blocks_free, free0, "{geo}: every block back");
        fs.unmount().unwrap();
        check_image(&img, geo);
    }
}
