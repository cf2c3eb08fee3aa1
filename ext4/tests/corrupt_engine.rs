//! Engine corruption tests: images made by mkfs.ext4 (ext2, ext3, ext4 with
//! and without metadata_csum, 1 KiB and 4 KiB blocks, inline_data, an htree
//! directory, xattr blocks, a depth-2 extent tree) are damaged in memory —
//! targeted flips, structural traps (loops), and seeded random flips and
//! sector overwrites — then opened over an in-memory channel and walked
//! completely inside a watchdog.
//!
//! What must hold: no panic, no hang (the watchdog fails the test), no
//! readdir whose cookies never advance; targeted damage is reported as
//! `Corrupt`/`Checksum` for the damaged object (where the format lets the
//! engine tell), and undamaged files elsewhere read back exactly.
//!
//! `FSVC_CORRUPT_TRIALS=N` sets the random trials per image (default 340:
//! about 2000 flips over the six images).

mod corrupt_support;

use std::sync::Arc;
use std::time::Duration;

use corrupt_support::*;
use fsvc_ext4::io::mem::MemChannel;

/// A walk of these small images takes well under a second; a minute means a hang.
const LIMIT: Duration = Duration::from_secs(60);

/// Files that no targeted case touches and that must read back exactly.
const CONTROL: &[&str] = &["/c/c0", "/a/f3"];

/// Opens a damaged copy of `fx` (damaged by `damage`) and walks it.
fn run_case(fx: &'static Fixture, case: &str, damage: impl FnOnce(&mut Vec<u8>)) -> Outcome {
    let mut img = fx.image.as_ref().clone();
    damage(&mut img);
    let what = format!("{}: {case}", fx.name);
    let out = guarded(&what, LIMIT, move || {
        open_and_walk(Arc::new(MemChannel::read_only(img)), &fx.files)
    });
    eprintln!(
        "{what}: open={:?} kinds={:?} good={} mismatched={:?}",
        out.open_err,
        out.kinds(),
        out.good.len(),
        out.mismatched
    );
    assert!(
        out.cookie_loops.is_empty(),
        "{what}: readdir cookies loop in {:?}",
        out.cookie_loops
    );
    out
}

/// The damaged object must be reported as corrupt; control files stay good.
fn expect_detected(fx: &Fixture, case: &str, out: &Outcome, path: &str) {
    assert!(
        out.detected_at(path),
        "{}: {case}: no Corrupt/Checksum error for {path}: {:?} {:?}",
        fx.name,
        out.open_err,
        out.errors
    );
    if out.open_err.is_none() {
        for c in CONTROL {
            assert!(
                out.good.contains(*c),
                "{}: {case}: undamaged {c} not readable: {:?}",
                fx.name,
                out.errors
            );
        }
    }
}

fn put_u16(img: &mut [u8], at: usize, v: u16) {
    img[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn get_u16(img: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([img[at], img[at + 1]])
}

#[test]
fn undamaged_images_read_completely() {
    if !tools_or_skip() {
        return;
    }
    for fx in fixtures() {
        let out = run_case(fx, "undamaged", |_| {});
        assert_eq!(out.open_err, None, "{}", fx.name);
        assert!(out.errors.is_empty(), "{}: {:?}", fx.name, out.details);
        assert!(
            out.mismatched.is_empty(),
            "{}: {:?}",
            fx.name,
            out.mismatched
        );
        assert_eq!(out.good.len(), fx.files.len(), "{}: files read", fx.name);
    }
}

#[test]
fn fixtures_have_the_structures_under_test() {
    if !tools_or_skip() {
        return;
    }
    let fx = fixtures();
    let depth2 = fx
        .iter()
        .filter(|f| f.inodes["/sparse"].extent_depth >= Some(2))
        .count();
    if std::env::var_os("FSVC_CORRUPT_ONLY").is_none() {
        assert!(depth2 >= 2, "no depth-2 extent tree made");
    }
    assert!(
        fx.iter().all(|f| f.inodes["/b/b1"].xattr_block.is_some()),
        "xattr block missing"
    );
    // The checksum fix-up must reproduce an undamaged superblock's.
    for f in fx.iter().filter(|f| f.csum) {
        let mut img = f.image.as_ref().clone();
        fix_sb_csum(&mut img);
        assert!(
            img == *f.image,
            "{}: fix_sb_csum disagrees with mkfs",
            f.name
        );
    }
    // The 1 KiB htree directory needs a second index level.
    for f in fx.iter().filter(|f| f.block_size == 1024) {
        let root = f.phys("/h", 0).expect("htree root block");
        let levels = f.image[f.block_range(root)][0x1E];
        assert_eq!(levels, 1, "{}: htree levels", f.name);
    }
}

#[test]
fn superblock_damage_refuses_open() {
    if !tools_or_skip() {
        return;
    }
    let sb = SB_OFFSET;
    // (name, field offset, value, must refuse). The checksum is rewritten so
    // the engine's own sanity checks are what is tested.
    let traps: &[(&str, usize, u32, bool)] = &[
        ("blocks_per_group = 0", 0x20, 0, true),
        ("inodes_per_group = 0", 0x28, 0, true),
        ("log_block_size = 30", 0x18, 30, true),
        ("first_data_block huge", 0x14, 0xFFFF_FFF0, true),
        ("inodes_count = 0", 0x00, 0, true),
        ("blocks_count past the device", 0x04, 0x7FFF_FFFF, false),
        ("log_groups_per_flex = 250 (u8)", 0x174, 250, false),
    ];
    for fx in fixtures() {
        let out = run_case(fx, "bad magic", |img| img[sb + 0x38] ^= 0xFF);
        assert_eq!(out.open_err, Some("NotExt"), "{}: bad magic", fx.name);
        if fx.csum {
            let out = run_case(fx, "volume name flipped", |img| img[sb + 0x78] ^= 1);
            assert_eq!(out.open_err, Some("Checksum"), "{}: sb checksum", fx.name);
        }
        for &(name, at, v, refuse) in traps {
            let out = run_case(fx, name, |img| {
                if at == 0x174 {
                    img[sb + at] = v as u8;
                } else {
                    put_u32(img, sb + at, v);
                }
                fix_sb_csum(img);
            });
            if refuse {
                assert!(out.open_err.is_some(), "{}: {name} was accepted", fx.name);
            }
        }
        let out = run_case(fx, "inode_size = 7", |img| {
            put_u16(img, sb + 0x58, 7);
            fix_sb_csum(img);
        });
        assert!(out.open_err.is_some(), "{}: inode_size 7 accepted", fx.name);
    }
}

#[test]
fn group_descriptor_damage_is_detected() {
    if !tools_or_skip() {
        return;
    }
    for fx in fixtures() {
        let gd = fx.gd0();
        // Inode table of group 0 (holds the root) moved out of the device.
        let out = run_case(fx, "gd0 inode table out of range", |img| {
            put_u32(img, gd + 0x08, 0xFFFF_FF00)
        });
        assert!(
            out.detected(),
            "{}: gd0 inode table: {:?} {:?}",
            fx.name,
            out.open_err,
            out.errors
        );
        if fx.csum {
            let out = run_case(fx, "gd0 free count flipped", |img| img[gd + 0x0E] ^= 0x10);
            assert!(
                out.detected(),
                "{}: gd0 checksum: {:?}",
                fx.name,
                out.errors
            );
        }
    }
}

#[test]
fn inode_damage_is_local() {
    if !tools_or_skip() {
        return;
    }
    for fx in fixtures() {
        let f1 = fx.inodes["/a/f1"].offset;
        if fx.csum {
            let out = run_case(fx, "inode f1 size flipped", |img| img[f1 + 0x04] ^= 0x01);
            expect_detected(fx, "inode f1 checksum", &out, "/a/f1");
        } else if fx.extents {
            let out = run_case(fx, "inode f1 extent magic", |img| {
                put_u16(img, f1 + 0x28, 0)
            });
            expect_detected(fx, "inode f1 extent magic", &out, "/a/f1");
        } else {
            // i_block[12]: the single-indirect block, moved out of the device.
            let out = run_case(fx, "inode f1 IND out of range", |img| {
                put_u32(img, f1 + 0x28 + 48, 0xFFFF_FF00)
            });
            expect_detected(fx, "inode f1 indirect pointer", &out, "/a/f1");
        }
    }
}

#[test]
fn directory_block_damage_is_detected() {
    if !tools_or_skip() {
        return;
    }
    for fx in fixtures() {
        let Some(b) = fx.phys("/b", 0) else {
            eprintln!("{}: /b is inline, no directory block to damage", fx.name);
            continue;
        };
        let at = fx.block_range(b).start;
        // The first entry's rec_len = 0: a naive parser loops on it forever.
        let out = run_case(fx, "dirent rec_len 0", |img| put_u16(img, at + 4, 0));
        expect_detected(fx, "dirent rec_len 0", &out, "/b");
        let out = run_case(fx, "dirent rec_len past block", |img| {
            put_u16(img, at + 4, 0xFFFC)
        });
        expect_detected(fx, "dirent rec_len past block", &out, "/b");
        let out = run_case(fx, "dirent name_len past rec_len", |img| img[at + 6] = 0xFF);
        expect_detected(fx, "dirent name_len", &out, "/b");
    }
}

#[test]
fn htree_damage_is_detected() {
    if !tools_or_skip() {
        return;
    }
    for fx in fixtures() {
        let root = fx.phys("/h", 0).expect("htree root");
        let at = fx.block_range(root).start;
        let out = run_case(fx, "dx root indirect_levels 9", |img| img[at + 0x1E] = 9);
        expect_detected(fx, "dx root levels", &out, "/h");
        let levels = fx.image[at + 0x1E];
        let out = if levels >= 1 {
            // dx root entry 0 → an internal node; point that node's first
            // entry back at the root (logical block 0): a loop.
            let node_l =
                u32::from_le_bytes(fx.image[at + 0x24..at + 0x28].try_into().unwrap()) as u64;
            let node = fx.phys("/h", node_l).expect("dx node block");
            let nat = fx.block_range(node).start;
            run_case(fx, "dx node points to root", |img| {
                put_u32(img, nat + 0x0C, 0)
            })
        } else {
            // Single level: a root entry pointing at the root itself.
            run_case(fx, "dx root entry points to root", |img| {
                put_u32(img, at + 0x2C, 0)
            })
        };
        if fx.csum || levels >= 1 {
            expect_detected(fx, "dx loop", &out, "/h");
        }
        let count = get_u16(&fx.image, at + 0x22);
        let out = run_case(fx, "dx root count > limit", |img| {
            put_u16(img, at + 0x22, count.saturating_add(2000))
        });
        expect_detected(fx, "dx count", &out, "/h");
    }
}

#[test]
fn extent_tree_damage_is_detected() {
    if !tools_or_skip() {
        return;
    }
    for fx in fixtures().iter().filter(|f| f.extents) {
        let info = &fx.inodes["/sparse"];
        let Some(depth) = info.extent_depth.filter(|&d| d >= 1) else {
            eprintln!("{}: /sparse has no extent blocks", fx.name);
            continue;
        };
        let (_, etb) = info
            .map_blocks
            .iter()
            .find(|(l, _)| l.starts_with("ETB"))
            .expect("ETB block")
            .clone();
        let at = fx.block_range(etb).start;
        let node_depth = get_u16(&fx.image, at + 6);
        let out = if node_depth >= 1 {
            // An index entry pointing at its own block: a loop.
            run_case(fx, "extent index points to itself", |img| {
                put_u32(img, at + 12 + 4, etb as u32);
                put_u16(img, at + 12 + 8, (etb >> 32) as u16);
            })
        } else {
            // A leaf claiming to be an index node: depth must decrease by one per level.
            run_case(fx, "extent leaf claims depth", |img| {
                put_u16(img, at + 6, depth)
            })
        };
        expect_detected(fx, "extent loop", &out, "/sparse");
        let out = run_case(fx, "extent block magic", |img| put_u16(img, at, 0x1234));
        expect_detected(fx, "extent magic", &out, "/sparse");
        let out = run_case(fx, "extent entries > max", |img| {
            put_u16(img, at + 2, 0xFFFF)
        });
        expect_detected(fx, "extent entries", &out, "/sparse");
    }
}

#[test]
fn xattr_damage_is_detected() {
    if !tools_or_skip() {
        return;
    }
    for fx in fixtures() {
        let b = fx.inodes["/b/b1"].xattr_block.expect("xattr block");
        let at = fx.block_range(b).start;
        // First entry after the 32-byte header: e_value_offs at +2, e_value_size at +8.
        let out = run_case(fx, "xattr value offset out of range", |img| {
            put_u16(img, at + 32 + 2, 0xFFF0)
        });
        expect_detected(fx, "xattr value offset", &out, "/b/b1");
        let out = run_case(fx, "xattr value size huge", |img| {
            put_u32(img, at + 32 + 8, 0x7FFF_FFFF)
        });
        expect_detected(fx, "xattr value size", &out, "/b/b1");
        let out = run_case(fx, "xattr block magic", |img| put_u32(img, at, 0));
        expect_detected(fx, "xattr magic", &out, "/b/b1");
        // In-inode xattrs of /a/f2 (after i_extra_isize): first entry's value offset.
        let ino = fx.inodes["/a/f2"].offset;
        let extra = get_u16(&fx.image, ino + 0x80) as usize;
        if fx.image.get(ino + 0x80 + extra..ino + 0x84 + extra)
            == Some(&[0x00, 0x00, 0x02, 0xEA][..])
        {
            let e = ino + 0x80 + extra + 4;
            let out = run_case(fx, "in-inode xattr value offset", |img| {
                put_u16(img, e + 2, 0xFFF0)
            });
            if !fx.csum {
                expect_detected(fx, "in-inode xattr offset", &out, "/a/f2");
            } else {
                assert!(out.detected_at("/a/f2"), "{}: inode checksum", fx.name);
            }
        }
    }
}

/// Seeded random damage confined to metadata blocks: single-byte flips and
/// whole-sector overwrites. Only no-panic/no-hang is asserted; the error
/// kinds seen are printed.
#[test]
fn random_metadata_damage_never_panics_or_hangs() {
    if !tools_or_skip() {
        return;
    }
    let trials: u64 = std::env::var("FSVC_CORRUPT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(340);
    for (i, fx) in fixtures().iter().enumerate() {
        let mut rng = TrialRng(0x5eed_0000 + i as u64 * 7919);
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        for t in 0..trials {
            let blk = fx.meta_blocks[rng.below(fx.meta_blocks.len() as u64) as usize];
            let start = fx.block_range(blk).start as u64;
            let (at, bytes) = if t % 10 == 9 {
                let sector = start + rng.below(fx.block_size as u64 / 512) * 512;
                (
                    sector,
                    (0..512).map(|_| rng.next() as u8).collect::<Vec<u8>>(),
                )
            } else {
                let at = start + rng.below(fx.block_size as u64);
                let old = fx.image[at as usize];
                (at, vec![old ^ (1 + rng.below(255)) as u8])
            };
            let what = format!(
                "{}: random trial {t} (block {blk}, byte {at}, {} bytes)",
                fx.name,
                bytes.len()
            );
            let io = Arc::new(Patched {
                base: fx.image.clone(),
                at,
                bytes,
            });
            let out = guarded(&what, LIMIT, move || open_and_walk(io, &fx.files));
            assert!(
                out.cookie_loops.is_empty(),
                "{what}: readdir cookies loop in {:?}",
                out.cookie_loops
            );
            for k in out.kinds() {
                *kinds.entry(k).or_default() += 1;
            }
        }
        eprintln!(
            "{}: {trials} random trials, error kinds: {kinds:?}",
            fx.name
        );
    }
}
