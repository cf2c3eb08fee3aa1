//! Tests of `Fs::fallocate` on real mkfs-made images: random sequences of
//! writes and every fallocate mode against a model of the file's bytes on
//! every geometry (block maps: what the kernel refuses is refused), read
//! back by the engine and debugfs, e2fsck clean; the kernel's argument
//! rules.

use super::mode::*;
use crate::error::Error;
use crate::inode::flags;
use crate::num::InodeNo;
use crate::testfs::{Image, Rng, GEOMETRIES};
use crate::tx::Creds;
use crate::Fs;

fn image(args: &[&str], size: &str) -> Option<Image> {
    Image::mkfs_with_files(args, size, &[("f", b"")])
}

fn contents(fs: &Fs, ino: InodeNo) -> Vec<u8> {
    let size = fs.inode(ino).unwrap().size as usize;
    let mut buf = vec![0u8; size];
    assert_eq!(fs.read(ino, 0, &mut buf).unwrap(), size);
    buf
}

/// The model's view of one fallocate call (after the engine accepted it).
fn model_apply(model: &mut Vec<u8>, m: u32, off: usize, len: usize) {
    let end = off + len;
    if m & PUNCH_HOLE != 0 {
        let e = end.min(model.len());
        if off < e {
            model[off..e].fill(0);
        }
    } else if m & COLLAPSE_RANGE != 0 {
        model.drain(off..end);
    } else if m & INSERT_RANGE != 0 {
        model.splice(off..off, std::iter::repeat_n(0u8, len));
    } else {
        if m & KEEP_SIZE == 0 && model.len() < end {
            model.resize(end, 0);
        }
        if m & ZERO_RANGE != 0 {
            let e = end.min(model.len());
            if off < e {
                model[off..e].fill(0);
            }
        }
    }
}

#[test]
fn random_fallocate_sequences_match_the_model_on_every_geometry() {
    for &(name, args, size) in GEOMETRIES {
        let Some(img) = image(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let ino = fs.lookup(InodeNo::ROOT, b"f").unwrap();
        let extents = fs.inode(ino).unwrap().has_flag(flags::EXTENTS);
        let bs = u64::from(fs.block_size());
        let mut rng = Rng(0xFA11 + bs + u64::from(extents));
        let mut model: Vec<u8> = Vec::new();
        let modes = [
            0,
            KEEP_SIZE,
            PUNCH_HOLE | KEEP_SIZE,
            ZERO_RANGE,
            ZERO_RANGE | KEEP_SIZE,
            COLLAPSE_RANGE,
            INSERT_RANGE,
        ];
        let mut done = [0u32; 7];
        for step in 0..150u64 {
            let ctx = format!("{name} step {step}");
            let size_now = model.len() as u64;
            if rng.below(3) == 0 || size_now == 0 {
                let off = rng.below(size_now + 3 * bs);
                let data: Vec<u8> = (0..1 + rng.below(4 * bs))
                    .map(|i| (i ^ step) as u8 | 1)
                    .collect();
                fs.write(Creds::ROOT, ino, off, &data, false).unwrap();
                if model.len() < off as usize + data.len() {
                    model.resize(off as usize + data.len(), 0);
                }
                model[off as usize..off as usize + data.len()].copy_from_slice(&data);
            } else {
                let k = rng.below(modes.len() as u64) as usize;
                let m = modes[k];
                let aligned = m & (COLLAPSE_RANGE | INSERT_RANGE) != 0;
                let (off, len) = if aligned {
                    let blocks = (size_now / bs).max(1);
                    (rng.below(blocks) * bs, (1 + rng.below(8)) * bs)
                } else {
                    (rng.below(size_now + 2 * bs), 1 + rng.below(40 * bs))
                };
                let r = fs.fallocate(Creds::ROOT, ino, m, off, len);
                let refused_kind = m & PUNCH_HOLE == 0 && !extents;
                let bad_range = m & COLLAPSE_RANGE != 0 && off + len >= size_now
                    || m & INSERT_RANGE != 0 && off >= size_now;
                match r {
                    Ok(()) => {
                        assert!(!refused_kind && !bad_range, "{ctx}: mode {m:#x} accepted");
                        model_apply(&mut model, m, off as usize, len as usize);
                        done[k] += 1;
                    }
                    Err(Error::Unsupported(_)) if refused_kind => {}
                    Err(Error::Invalid(_)) if bad_range => {}
                    Err(e) => panic!("{ctx}: mode {m:#x} {off}+{len}: {e}"),
                }
            }
            let got = contents(&fs, ino);
            assert_eq!(got.len(), model.len(), "{ctx}: size");
            if got != model {
                let i = got.iter().zip(&model).position(|(a, b)| a != b).unwrap();
                panic!("{ctx}: contents differ first at byte {i}");
            }
        }
        if extents {
            assert!(
                done.iter().all(|&n| n > 0),
                "{name}: every mode ran: {done:?}"
            );
        } else {
            assert!(done[2] > 0, "{name}: punched holes: {done:?}");
        }
        fs.unmount().unwrap();
        img.fsck_clean();
        let out =
            std::env::temp_dir().join(format!("fsvc-wdata-fdump-{}-{name}", std::process::id()));
        img.debugfs(&format!("dump /f {}", out.display()));
        let dumped = std::fs::read(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        assert!(dumped == model, "{name}: debugfs reads other bytes");
    }
}

#[test]
fn argument_rules_follow_the_kernel() {
    let Some(img) = image(&["-b", "4096"], "32M") else {
        return;
    };
    let fs = img.open_rw();
    let ino = fs.lookup(InodeNo::ROOT, b"f").unwrap();
    fs.write(Creds::ROOT, ino, 0, &[1u8; 40960], false).unwrap();
    // (mode, offset, length, what the kernel answers)
    type Want = fn(&Error) -> bool;
    let unsupported: Want = |e| matches!(e, Error::Unsupported(_));
    let invalid: Want = |e| matches!(e, Error::Invalid(_));
    let too_big: Want = |e| matches!(e, Error::FileTooBig);
    let max = fs.sb().limits().max_file_bytes(true);
    let cases: &[(u32, u64, u64, Want)] = &[
        (PUNCH_HOLE, 0, 4096, unsupported),
        (PUNCH_HOLE | ZERO_RANGE | KEEP_SIZE, 0, 4096, unsupported),
        (0x40, 0, 4096, unsupported),
        (NO_HIDE_STALE, 0, 4096, unsupported),
        (COLLAPSE_RANGE | KEEP_SIZE, 0, 4096, invalid),
        (COLLAPSE_RANGE, 100, 4096, invalid),
        (COLLAPSE_RANGE, 0, 40960, invalid),
        (INSERT_RANGE, 0, 4095, invalid),
        (INSERT_RANGE, 40960, 4096, invalid),
        (0, 0, 0, invalid),
        (0, max, 1, too_big),
        (KEEP_SIZE, max - 4096, 8192, too_big),
    ];
    for &(m, off, len, want) in cases {
        let e = fs.fallocate(Creds::ROOT, ino, m, off, len).unwrap_err();
        assert!(want(&e), "mode {m:#x} {off}+{len}: {e}");
    }
    assert_eq!(fs.inode(ino).unwrap().size, 40960, "nothing changed");
    // Preallocation past the end with KEEP_SIZE keeps the size, and a
    // truncate to the same size frees the blocks past it.
    let blocks = fs.inode(ino).unwrap().blocks;
    fs.fallocate(Creds::ROOT, ino, KEEP_SIZE, 40960, 1 << 20)
        .unwrap();
    let st = fs.inode(ino).unwrap();
    assert_eq!(st.size, 40960);
    assert_eq!(st.blocks, blocks + (1 << 20) / 512);
    fs.truncate(Creds::ROOT, ino, 40960).unwrap();
    assert_eq!(fs.inode(ino).unwrap().blocks, blocks);
    // A preallocation bigger than the free space changes nothing.
    let free = fs.statfs().blocks_free;
    let e = fs
        .fallocate(Creds::ROOT, ino, 0, 0, (free + 10) * 4096)
        .unwrap_err();
    assert!(matches!(e, Error::NoSpace(_)), "{e}");
    assert_eq!(fs.inode(ino).unwrap().size, 40960);
    assert_eq!(fs.statfs().blocks_free, free);
    fs.unmount().unwrap();
    img.fsck_clean();
}
