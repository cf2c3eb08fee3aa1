//! Tests of `Fs::write` and `Fs::truncate` on real mkfs-made images:
//! random writes and truncates against an in-memory model of the file's
//! bytes on every geometry (read back by the engine and by debugfs,
//! e2fsck clean), uninitialized extents written into, append, the size
//! limit, running out of space, set-user-id clearing.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::inode::flags;
use crate::num::InodeNo;
use crate::testfs::{Image, Rng, GEOMETRIES};
use crate::tx::Creds;
use crate::Fs;

const USER: Creds = Creds {
    uid: 1000,
    gid: 1000,
};

/// An image with empty files `a` and `b`.
fn image(args: &[&str], size: &str) -> Option<Image> {
    Image::mkfs_with_files(args, size, &[("a", b""), ("b", b"")])
}

fn file(fs: &Fs, name: &str) -> InodeNo {
    fs.lookup(InodeNo::ROOT, name.as_bytes()).unwrap()
}

/// The whole file through the engine's reader.
fn contents(fs: &Fs, ino: InodeNo) -> Vec<u8> {
    let size = fs.inode(ino).unwrap().size as usize;
    let mut buf = vec![0u8; size];
    assert_eq!(fs.read(ino, 0, &mut buf).unwrap(), size);
    buf
}

/// The file as debugfs dumps it (e2fsprogs' reading of our mapping).
fn debugfs_contents(img: &Image, name: &str) -> Vec<u8> {
    let out = std::env::temp_dir().join(format!(
        "fsvc-wdata-dump-{}-{name}-{}",
        std::process::id(),
        rand_tag()
    ));
    let _ = img.debugfs(&format!("dump /{name} {}", out.display()));
    let bytes = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    bytes
}

fn rand_tag() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Applies a write to the model as the file system must: zeros fill any
/// gap past the old end.
fn model_write(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

#[test]
fn random_writes_and_truncates_match_the_model_on_every_geometry() {
    for &(name, args, size) in GEOMETRIES {
        let Some(img) = image(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let bs = fs.block_size() as u64;
        let ino = file(&fs, "a");
        let mut model: Vec<u8> = Vec::new();
        let mut rng = Rng(0x1234_5678 + bs);
        for step in 0..120 {
            let ctx = format!("{name} step {step}");
            let kind = rng.below(10);
            if kind < 7 {
                // Offsets near block edges, inside, past the end (holes).
                let base = match rng.below(4) {
                    0 => model.len() as u64,
                    1 => rng.below(64) * bs,
                    2 => rng.below(model.len() as u64 + 1),
                    _ => rng.below(400) * bs + rng.below(bs),
                };
                let offset = base.saturating_sub(rng.below(3)) as usize;
                let len = match rng.below(3) {
                    0 => 1 + rng.below(16),
                    1 => 1 + rng.below(3 * bs),
                    _ => bs * (1 + rng.below(20)),
                } as usize;
                let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ step) as u8 | 1).collect();
                let (n, new_size) = fs
                    .write(Creds::ROOT, ino, offset as u64, &data, false)
                    .unwrap_or_else(|e| panic!("{ctx}: write {offset}+{len}: {e}"));
                assert_eq!(n, len, "{ctx}");
                model_write(&mut model, offset, &data);
                assert_eq!(new_size, model.len() as u64, "{ctx}");
            } else if kind < 9 {
                let to = match rng.below(3) {
                    0 => rng.below(model.len() as u64 + 1),
                    1 => model.len() as u64 + rng.below(5 * bs),
                    _ => rng.below(model.len() as u64 / bs + 1) * bs,
                };
                fs.truncate(Creds::ROOT, ino, to)
                    .unwrap_or_else(|e| panic!("{ctx}: truncate {to}: {e}"));
                model.resize(to as usize, 0);
            } else {
                let data = vec![0xA5u8; 1 + rng.below(2 * bs) as usize];
                let (n, sz) = fs.write(Creds::ROOT, ino, 12345, &data, true).unwrap();
                assert_eq!(n, data.len(), "{ctx}: append");
                let at = model.len();
                model_write(&mut model, at, &data);
                assert_eq!(sz, model.len() as u64, "{ctx}: append");
            }
            let got = contents(&fs, ino);
            assert_eq!(got.len(), model.len(), "{ctx}: size");
            if got != model {
                let i = got.iter().zip(&model).position(|(a, b)| a != b).unwrap();
                panic!("{ctx}: contents differ first at byte {i}");
            }
        }
        fs.unmount().unwrap();
        img.fsck_clean();
        assert!(
            debugfs_contents(&img, "a") == model,
            "{name}: debugfs reads other bytes"
        );
        // All of it freed: e2fsck agrees the blocks came back.
        let fs = img.open_rw();
        fs.truncate(Creds::ROOT, ino, 0).unwrap();
        assert_eq!(fs.inode(ino).unwrap().blocks, 0, "{name}");
        fs.unmount().unwrap();
        img.fsck_clean();
    }
}

#[test]
fn writes_into_uninitialized_extents_convert_them() {
    let Some(base) = image(&["-b", "1024"], "16M") else {
        return;
    };
    // debugfs's fallocate makes uninitialized extents, as fallocate(2) does.
    let img = base.debugfs_write("fallocate /a 0 199");
    let fs = img.open_rw();
    let ino = file(&fs, "a");
    let bs = fs.block_size() as usize;
    let before = fs.inode(ino).unwrap().blocks;
    assert!(before >= 200 * 2, "debugfs allocated the range");
    let mut model = vec![0u8; 150 * bs];
    fs.truncate(Creds::ROOT, ino, model.len() as u64).unwrap();
    for (off, len) in [
        (0usize, 10usize),
        (5000, 3000),
        (100 * bs, bs),
        (149 * bs + 7, 100),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        fs.write(Creds::ROOT, ino, off as u64, &data, false)
            .unwrap();
        model_write(&mut model, off, &data);
        assert_eq!(contents(&fs, ino), model, "after writing {off}+{len}");
    }
    // Converted in place: no data block more or less (the splits may
    // have needed a tree block).
    let after = fs.inode(ino).unwrap();
    let tx = fs.begin(Creds::ROOT).unwrap();
    let tree = crate::blockmap::mapping_blocks(&tx, &after).unwrap();
    drop(tx);
    assert_eq!(after.blocks - tree * 2, before);
    fs.unmount().unwrap();
    img.fsck_clean();
    assert!(debugfs_contents(&img, "a") == model);
}

#[test]
fn size_limit_short_write_and_efbig() {
    for &(name, args, size) in GEOMETRIES {
        let Some(img) = image(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let ino = file(&fs, "a");
        let extents = fs.inode(ino).unwrap().has_flag(flags::EXTENTS);
        let max = fs.sb().limits().max_file_bytes(extents);
        let e = fs.write(Creds::ROOT, ino, max, b"x", false).unwrap_err();
        assert!(matches!(e, Error::FileTooBig), "{name}: {e}");
        // Crossing the limit: cut there.
        let (n, sz) = fs
            .write(Creds::ROOT, ino, max - 10, &[7u8; 100], false)
            .unwrap();
        assert_eq!((n, sz), (10, max), "{name}");
        let mut buf = [0u8; 16];
        assert_eq!(fs.read(ino, max - 10, &mut buf).unwrap(), 10);
        assert_eq!(&buf[..10], &[7u8; 10], "{name}");
        let e = fs.truncate(Creds::ROOT, ino, max + 1).unwrap_err();
        assert!(matches!(e, Error::FileTooBig), "{name}: {e}");
        // A file past 4 GiB, sparse.
        let four_g = 1u64 << 32;
        fs.truncate(Creds::ROOT, ino, 0).unwrap();
        fs.write(Creds::ROOT, ino, four_g + 3, b"past 4 GiB", false)
            .unwrap();
        assert_eq!(fs.inode(ino).unwrap().size, four_g + 13, "{name}");
        let mut buf = [0u8; 10];
        fs.read(ino, four_g + 3, &mut buf).unwrap();
        assert_eq!(&buf, b"past 4 GiB", "{name}");
        fs.unmount().unwrap();
        img.fsck_clean();
    }
}

#[test]
fn out_of_space_writes_stop_short_then_fail_without_change() {
    for &(name, args, size) in GEOMETRIES {
        let Some(img) = image(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let ino = file(&fs, "a");
        let chunk = vec![0x5Au8; 1 << 20];
        let mut total = 0u64;
        let mut short = false;
        loop {
            match fs.write(USER, ino, total, &chunk, false) {
                Ok((n, sz)) => {
                    total += n as u64;
                    assert_eq!(sz, total, "{name}");
                    short |= n < chunk.len();
                }
                Err(Error::NoSpace(_)) => break,
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert!(short, "{name}: the last write before ENOSPC was short");
        let before = fs.inode(ino).unwrap();
        let e = fs.write(USER, ino, total, b"more", false).unwrap_err();
        assert!(matches!(e, Error::NoSpace(_)), "{name}: {e}");
        assert_eq!(fs.inode(ino).unwrap(), before, "{name}: nothing changed");
        // Root still has its reserve.
        fs.write(Creds::ROOT, ino, total, b"root", false).unwrap();
        fs.unmount().unwrap();
        img.fsck_clean();
    }
}

#[test]
fn non_root_writes_clear_setuid_and_setgid() {
    let Some(img) = image(&["-b", "4096"], "32M") else {
        return;
    };
    let fs = img.open_rw();
    let ino = file(&fs, "a");
    // (mode before, writer, mode after): set-group-id stays without group
    // execute (mandatory locking), root keeps both.
    let cases = [
        (0o106755u16, USER, 0o100755u16),
        (0o104644, USER, 0o100644),
        (0o102644, USER, 0o102644),
        (0o106755, Creds::ROOT, 0o106755),
    ];
    for (before, who, after) in cases {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut inode = tx.inode(ino).unwrap();
        inode.mode = before;
        tx.write_inode(&inode).unwrap();
        tx.commit().unwrap();
        let t0 = fs.inode(ino).unwrap().mtime;
        fs.write(who, ino, 0, b"data", false).unwrap();
        let st = fs.inode(ino).unwrap();
        assert_eq!(st.mode, after, "{before:o} written by {who:?}");
        assert!((st.mtime.sec, st.mtime.nsec) >= (t0.sec, t0.nsec) && st.ctime == st.mtime);
        fs.truncate(Creds::ROOT, ino, 0).unwrap();
    }
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn append_only_and_immutable_files_refuse_what_the_kernel_refuses() {
    use crate::fallocate::mode::{KEEP_SIZE, PUNCH_HOLE};
    let Some(img) = image(&["-b", "4096"], "32M") else {
        return;
    };
    let fs = img.open_rw();
    let ino = file(&fs, "a");
    fs.write(Creds::ROOT, ino, 0, &[1u8; 10000], false).unwrap();
    let set_flags = |f: u32| {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut inode = tx.inode(ino).unwrap();
        inode.flags = (inode.flags & !(flags::APPEND | flags::IMMUTABLE)) | f;
        tx.write_inode(&inode).unwrap();
        tx.commit().unwrap();
    };
    let denied = |r: crate::Result<()>, what: &str| {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::NotPermitted(_)), "{what}: {e}");
    };
    set_flags(flags::APPEND);
    denied(
        fs.write(Creds::ROOT, ino, 5, b"x", false).map(drop),
        "overwrite",
    );
    assert_eq!(
        fs.write(Creds::ROOT, ino, 5, b"xy", true).unwrap(),
        (2, 10002)
    );
    denied(fs.truncate(Creds::ROOT, ino, 10), "truncate");
    denied(
        fs.fallocate(Creds::ROOT, ino, PUNCH_HOLE | KEEP_SIZE, 0, 4096),
        "punch",
    );
    fs.fallocate(Creds::ROOT, ino, KEEP_SIZE, 0, 1 << 20)
        .unwrap();
    set_flags(flags::IMMUTABLE);
    denied(
        fs.write(Creds::ROOT, ino, 20000, b"x", true).map(drop),
        "append",
    );
    denied(
        fs.fallocate(Creds::ROOT, ino, KEEP_SIZE, 0, 4096),
        "prealloc",
    );
    denied(fs.truncate(Creds::ROOT, ino, 0), "truncate");
    set_flags(0);
    fs.truncate(Creds::ROOT, ino, 0).unwrap();
    // Reserved inodes (the journal) are never written through a handle.
    let journal = fs.sb().journal_inum;
    let e = fs.write(Creds::ROOT, journal, 0, b"x", false).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    fs.unmount().unwrap();
    img.fsck_clean();
}
