//! File writes checked by the Linux kernel's own ext4 (loop mounts; root
//! only): on every write geometry the engine writes, overwrites, extends
//! and truncates files (sparse ones, one past 4 GiB, one the kernel
//! preallocated with unwritten extents); then e2fsck -fn is clean and the
//! kernel reads exactly the bytes, sizes and block counts the engine
//! reports.
//!
//! Without root or loop devices these tests print why and skip, unless
//! `FSVC_REQUIRE_PRIVILEGED=1`, which turns the skip into a failure.

mod core_util;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;

use core_util::*;
use fsvc_ext4::testfs::{Image, GEOMETRIES};
use fsvc_ext4::tx::Creds;
use fsvc_ext4::{Fs, InodeNo};

/// Writes the model applies to its copy of a file as the filesystem must.
fn apply(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

/// The workload: per file, a list of (offset, length, seed) writes and
/// truncates (`None` length: truncate to the offset).
/// One file's operations: (offset, `Some(length)` to write, `None` to
/// truncate to the offset).
type Ops = Vec<(u64, Option<usize>)>;

fn workload(bs: u64) -> Vec<(&'static str, Ops)> {
    vec![
        (
            "seq",
            (0..40).map(|i| (i * 7000, Some(7000))).collect::<Vec<_>>(),
        ),
        (
            "sparse",
            vec![
                (5, Some(10)),
                (100 * bs + 3, Some(2 * bs as usize)),
                (3000 * bs, Some(1)),
                (70_000 * bs, Some(bs as usize)),
                (2000 * bs + 1, None),
                (2500 * bs, Some(5)),
            ],
        ),
        (
            "shrink",
            vec![
                (0, Some(300 * bs as usize)),
                (150 * bs + 77, None),
                (10 * bs, Some(3)),
                (400 * bs, None),
                (20 * bs + 1, None),
            ],
        ),
    ]
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    noise(seed, len)
}

/// Runs the workload on `fs`, returns the models.
fn run_workload(fs: &Fs, bs: u64) -> BTreeMap<&'static str, Vec<u8>> {
    let mut models = BTreeMap::new();
    for (name, ops) in workload(bs) {
        let ino = fs.lookup(InodeNo::ROOT, name.as_bytes()).unwrap();
        let mut model = read_all(fs, ino, 1 << 20);
        for (i, (off, len)) in ops.into_iter().enumerate() {
            match len {
                Some(n) => {
                    let data = pattern(off ^ i as u64, n);
                    let (w, _) = fs.write(Creds::ROOT, ino, off, &data, false).unwrap();
                    assert_eq!(w, n, "{name} op {i}");
                    apply(&mut model, off as usize, &data);
                }
                None => {
                    fs.truncate(Creds::ROOT, ino, off).unwrap();
                    model.resize(off as usize, 0);
                }
            }
        }
        assert_eq!(
            read_all(fs, ino, 1 << 20),
            model,
            "{name}: engine read-back"
        );
        models.insert(name, model);
    }
    models
}

/// Mounts `bytes` read-only through the kernel and compares every file of
/// `models` (bytes, size, and `st_blocks` with the engine's).
fn kernel_compare(bytes: &[u8], models: &BTreeMap<&'static str, Vec<u8>>, ctx: &str) {
    let s = Scratch::new("wk");
    let img = s.0.join("img");
    std::fs::write(&img, bytes).unwrap();
    let fs = open(bytes).unwrap();
    let mnt = Mount::new(&img, &s.0.join("mnt"), "ro,noload");
    for (name, model) in models {
        let p = mnt.0.join(name);
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.size(), model.len() as u64, "{ctx} {name}: size");
        let ino = InodeNo(m.ino() as u32);
        assert_eq!(
            fs.stat(ino).unwrap().blocks,
            m.blocks(),
            "{ctx} {name}: st_blocks"
        );
        let got = std::fs::read(&p).unwrap();
        if got != *model {
            let i = got.iter().zip(model).position(|(a, b)| a != b);
            panic!("{ctx} {name}: the kernel reads other bytes (first difference at {i:?})");
        }
    }
    drop(mnt);
}

fn empty_files_image(args: &[&str], size: &str, names: &[&str]) -> Option<Image> {
    let s = Scratch::new("wtree");
    for n in names {
        std::fs::write(s.0.join(n), b"").unwrap();
    }
    let d = s.0.to_str().unwrap().to_string();
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["-d", &d]);
    Image::mkfs(&a, size)
}

#[test]
fn kernel_reads_what_the_engine_wrote_on_every_geometry() {
    if !privileged("kernel_reads_what_the_engine_wrote_on_every_geometry") {
        return;
    }
    for &(geo, args, size) in GEOMETRIES {
        let Some(img) = empty_files_image(args, size, &["seq", "sparse", "shrink", "huge"]) else {
            return;
        };
        let fs = img.open_rw();
        let bs = u64::from(fs.block_size());
        let models = run_workload(&fs, bs);
        // A file past 4 GiB: its written parts, with a hole between.
        let huge = fs.lookup(InodeNo::ROOT, b"huge").unwrap();
        let far = (1u64 << 32) + 12345;
        let (head, tail) = (pattern(1, 5000), pattern(2, 9000));
        fs.write(Creds::ROOT, huge, 0, &head, false).unwrap();
        fs.write(Creds::ROOT, huge, far, &tail, false).unwrap();
        fs.unmount().unwrap();
        img.fsck_clean();
        kernel_compare(&img.bytes(), &models, geo);
        let s = Scratch::new("wk-huge");
        let path = s.0.join("img");
        std::fs::write(&path, img.bytes()).unwrap();
        let mnt = Mount::new(&path, &s.0.join("mnt"), "ro,noload");
        let f = std::fs::File::open(mnt.0.join("huge")).unwrap();
        assert_eq!(f.metadata().unwrap().size(), far + 9000, "{geo}: huge size");
        for (at, want) in [
            (0u64, &head[..]),
            (far, &tail[..]),
            (1 << 31, &[0u8; 4096][..]),
        ] {
            let mut buf = vec![0u8; want.len()];
            f.read_exact_at(&mut buf, at).unwrap();
            assert!(
                buf == want,
                "{geo}: huge at {at}: the kernel reads other bytes"
            );
        }
        drop(f);
        drop(mnt);
    }
}

/// The kernel preallocates (unwritten extents) and writes a file; the
/// engine writes into the unwritten part and past it; the kernel reads
/// the result back.
#[test]
fn engine_writes_into_kernel_preallocated_files() {
    if !privileged("engine_writes_into_kernel_preallocated_files") {
        return;
    }
    let s = Scratch::new("wprealloc");
    let img_path = s.0.join("img");
    let tree = s.0.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let img_path2 = mkfs(&s.0, &["-b", "4096"], &tree, "64M");
    std::fs::rename(&img_path2, &img_path).unwrap();
    {
        let mnt = Mount::new(&img_path, &s.0.join("mnt"), "");
        let p = mnt.0.join("pre");
        run(Command::new("fallocate").args(["-l", "8M"]).arg(&p));
        run(Command::new("dd")
            .args([
                "if=/dev/urandom",
                "bs=4096",
                "count=3",
                "seek=5",
                "conv=notrunc",
            ])
            .arg(format!("of={}", p.display()))
            .arg("status=none"));
        run(Command::new("fallocate")
            .args(["-n", "-o", "8M", "-l", "2M"])
            .arg(&p));
        drop(mnt);
    }
    let bytes = std::fs::read(&img_path).unwrap();
    let img = Image {
        mem: std::sync::Arc::new(fsvc_ext4::io::mem::MemChannel::new(bytes)),
        args: vec!["prealloc".into()],
    };
    let fs = img.open_rw();
    let ino = fs.lookup(InodeNo::ROOT, b"pre").unwrap();
    let mut model = read_all(&fs, ino, 1 << 20);
    for (i, (off, len)) in [
        (0u64, 100usize),
        (4096 * 4 + 10, 4096 * 3),
        (4 << 20, 1 << 20),
        ((8 << 20) - 5, 4096),
        ((8 << 20) + 70_000, 10),
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(i as u64 + 99, len);
        fs.write(Creds::ROOT, ino, off, &data, false).unwrap();
        apply(&mut model, off as usize, &data);
    }
    assert_eq!(read_all(&fs, ino, 1 << 20), model);
    fs.unmount().unwrap();
    img.fsck_clean();
    let models = BTreeMap::from([("pre", model)]);
    kernel_compare(&img.bytes(), &models, "prealloc");
}

/// The same fallocate calls through the kernel (on a copy) and through
/// the engine: the kernel then reads the same bytes and size from both.
#[test]
fn fallocate_agrees_with_the_kernel() {
    use fsvc_ext4::fallocate::mode::*;
    use nix::fcntl::{fallocate, FallocateFlags};
    if !privileged("fallocate_agrees_with_the_kernel") {
        return;
    }
    for args in [&["-b", "4096"][..], &["-b", "1024"][..]] {
        let Some(img) = empty_files_image(args, "32M", &["f"]) else {
            return;
        };
        let fs = img.open_rw();
        let bs = u64::from(fs.block_size());
        let ino = fs.lookup(InodeNo::ROOT, b"f").unwrap();
        fs.write(Creds::ROOT, ino, 0, &pattern(5, 300 * bs as usize), false)
            .unwrap();
        fs.unmount().unwrap();
        let base = img.bytes();
        let ops: &[(u32, u64, u64)] = &[
            (PUNCH_HOLE | KEEP_SIZE, 3 * bs + 100, 7 * bs),
            (ZERO_RANGE, 20 * bs + 1, 3 * bs + 5),
            (ZERO_RANGE | KEEP_SIZE, 290 * bs, 40 * bs),
            (COLLAPSE_RANGE, 40 * bs, 10 * bs),
            (INSERT_RANGE, 2 * bs, 3 * bs),
            (0, 400 * bs + 7, 5 * bs),
            (KEEP_SIZE, 600 * bs, 8 * bs),
            (PUNCH_HOLE | KEEP_SIZE, 250 * bs, 1 << 30),
        ];
        // The engine.
        let ours = Image {
            mem: std::sync::Arc::new(fsvc_ext4::io::mem::MemChannel::new(base.clone())),
            args: vec!["ours".into()],
        };
        let fs = ours.open_rw();
        for &(m, off, len) in ops {
            fs.fallocate(Creds::ROOT, ino, m, off, len)
                .unwrap_or_else(|e| panic!("{args:?}: mode {m:#x} {off}+{len}: {e}"));
        }
        fs.unmount().unwrap();
        ours.fsck_clean();
        // The kernel, on a copy.
        let s = Scratch::new("wfalloc");
        let theirs = s.0.join("theirs");
        std::fs::write(&theirs, &base).unwrap();
        {
            let mnt = Mount::new(&theirs, &s.0.join("mnt-theirs"), "");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(mnt.0.join("f"))
                .unwrap();
            for &(m, off, len) in ops {
                let flags = FallocateFlags::from_bits_truncate(m as i32);
                fallocate(&f, flags, off as i64, len as i64)
                    .unwrap_or_else(|e| panic!("kernel: mode {m:#x} {off}+{len}: {e}"));
            }
        }
        let want = {
            let mnt = Mount::new(&theirs, &s.0.join("mnt-theirs2"), "ro,noload");
            std::fs::read(mnt.0.join("f")).unwrap()
        };
        let ours_path = s.0.join("ours");
        std::fs::write(&ours_path, ours.bytes()).unwrap();
        let mnt = Mount::new(&ours_path, &s.0.join("mnt-ours"), "ro,noload");
        let got = std::fs::read(mnt.0.join("f")).unwrap();
        assert_eq!(got.len(), want.len(), "{args:?}: size");
        let i = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(i.is_none(), "{args:?}: first difference at {i:?}");
    }
}
