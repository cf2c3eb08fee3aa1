//! Tests of the mapping primitives on real mkfs-made images: random
//! map/free sequences against a model on every geometry (every mapping
//! equal to the model, `i_blocks` exact, e2fsck clean), deep extent
//! trees grown and freed back, running out of space, hostile mappings
//! into the system zone.

use std::collections::BTreeMap;

use crate::blockmap::{self, Lookup};
use crate::error::Error;
use crate::extent_remove;
use crate::inode::{flags, Inode};
use crate::num::{InodeNo, Lblk, Pblk};
use crate::testfs::{alloc_cases, Image, Rng, GEOMETRIES};
use crate::tx::{AllocKind, Creds};
use crate::Fs;

/// An image of geometry `args` with empty files `a`, `b` and `c`.
fn image(args: &[&str], size: &str) -> Option<Image> {
    Image::mkfs_with_files(args, size, &[("a", b""), ("b", b""), ("c", b"")])
}

fn file(fs: &Fs, name: &str) -> InodeNo {
    fs.lookup(InodeNo::ROOT, name.as_bytes()).unwrap()
}

/// Model of one file: logical → physical block.
type Model = BTreeMap<u64, u64>;

/// Sets `i_size` to cover the last mapped block (e2fsck wants it so).
fn fit_size(inode: &mut Inode, model: &Model, bs: u64) {
    inode.size = model.keys().next_back().map_or(0, |&l| (l + 1) * bs);
}

/// Every block of the model maps as the model says (through the
/// committed state, `Fs`'s own reader, an independent walk), holes stay
/// holes at the model's edges, `i_blocks` counts data and mapping blocks.
fn check(fs: &Fs, ino: InodeNo, model: &Model, ctx: &str) {
    let inode = fs.inode(ino).unwrap();
    for (&l, &p) in model {
        let got = fs.map_block(&inode, Lblk(l as u32)).unwrap();
        assert_eq!(got, Some(Pblk(p)), "{ctx}: lblk {l}");
        for probe in [l.wrapping_sub(1), l + 1] {
            if probe < u64::from(u32::MAX) && !model.contains_key(&probe) {
                let got = fs.map_block(&inode, Lblk(probe as u32)).unwrap();
                assert_eq!(got, None, "{ctx}: lblk {probe} should be a hole");
            }
        }
    }
    let tx = fs.begin(Creds::ROOT).unwrap();
    let meta = blockmap::mapping_blocks(&tx, &inode).unwrap();
    let sectors = u64::from(fs.block_size() / 512);
    assert_eq!(
        inode.blocks,
        (model.len() as u64 + meta) * sectors,
        "{ctx}: i_blocks ({} data blocks, {meta} mapping blocks)",
        model.len()
    );
    if inode.has_flag(flags::EXTENTS) {
        let st = extent_remove::tree_stats(&tx, &inode).unwrap();
        let mapped: u64 = st.extents.iter().map(|e| u64::from(e.len)).sum();
        assert_eq!(mapped, model.len() as u64, "{ctx}: extents cover the model");
    }
}

/// A random logical range for a file of this mapping kind: spread over
/// the direct, single, double and triple indirect areas for block maps,
/// over a wide sparse range (and near the end of the 32-bit space) for
/// extent trees; never past the format's size limit.
fn pick(rng: &mut Rng, fs: &Fs, extents: bool) -> (u64, u32) {
    let bs = u64::from(fs.block_size());
    let per = bs / 4;
    let max_blocks = fs.sb().limits().max_file_bytes(extents) / bs;
    let n = if rng.below(8) == 0 {
        1 + rng.below(300)
    } else {
        1 + rng.below(12)
    };
    let l = if extents {
        match rng.below(10) {
            0 => max_blocks - 1 - rng.below(600),
            1..=4 => rng.below(64),
            _ => rng.below(1 << 20),
        }
    } else {
        let bands = [
            (0, 12),
            (12, 12 + per),
            (12 + per, 12 + per + per * per),
            (
                12 + per + per * per,
                max_blocks.min(12 + per + per * per * 8),
            ),
        ];
        let (a, b) = bands[rng.below(4) as usize];
        a + rng.below(b - a)
    };
    let n = n.min(max_blocks - 1 - l).max(1);
    (l, n as u32)
}

fn random_sequences(name: &str, args: &[&str], size: &str) {
    let Some(img) = image(args, size) else {
        return;
    };
    let cases = alloc_cases();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let fs = img.open_rw();
    let bs = u64::from(fs.block_size());
    let files = [file(&fs, "a"), file(&fs, "b")];
    let mut models = [Model::new(), Model::new()];
    // What the sequence reached: the deepest extent tree, the highest
    // block-mapped logical block.
    let (mut deepest, mut highest) = (0u16, 0u64);
    // At least the default number: the depth and reach asserted below need it.
    for step in 0..cases.max(24) * 6 {
        let which = rng.below(2) as usize;
        let ino = files[which];
        let extents = fs.inode(ino).unwrap().has_flag(flags::EXTENTS);
        let ctx = format!("{name} step {step} file {which}");
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut inode = tx.inode(ino).unwrap();
        let mut model = models[which].clone();
        let op = rng.below(10);
        if op < 3 && model.len() < 1500 {
            // A burst of single blocks every other block: one extent each,
            // so the trees split and deepen.
            let (l, _) = pick(&mut rng, &fs, extents);
            for k in 0..60u64 {
                let at = l + 2 * k;
                if at >= fs.sb().limits().max_file_bytes(extents) / bs - 1 {
                    break;
                }
                let runs = blockmap::map_alloc(&mut tx, &mut inode, Lblk(at as u32), 1)
                    .unwrap_or_else(|e| panic!("{ctx}: map {at}: {e}"));
                assert_eq!(runs.len(), 1, "{ctx}");
                let r = runs[0];
                let was = model.insert(at, r.pblk.0);
                assert_eq!(was.is_none(), r.fresh, "{ctx}: lblk {at}");
                assert!(was.is_none_or(|p| p == r.pblk.0), "{ctx}: lblk {at} moved");
            }
        } else if op < 9 && model.len() < 1500 {
            let (l, n) = pick(&mut rng, &fs, extents);
            let runs = blockmap::map_alloc(&mut tx, &mut inode, Lblk(l as u32), n)
                .unwrap_or_else(|e| panic!("{ctx}: map {l}+{n}: {e}"));
            let mut at = l;
            for r in &runs {
                assert_eq!(r.lblk.as_u64(), at, "{ctx}: runs in order, no gap");
                for k in 0..u64::from(r.len) {
                    let was = model.insert(at + k, r.pblk.0 + k);
                    assert_eq!(
                        was.is_some(),
                        !r.fresh,
                        "{ctx}: lblk {} fresh={} but model had {was:?}",
                        at + k,
                        r.fresh
                    );
                    if let Some(old) = was {
                        assert_eq!(old, r.pblk.0 + k, "{ctx}: existing mapping moved");
                    }
                }
                at += u64::from(r.len);
            }
            assert_eq!(at, l + u64::from(n), "{ctx}: the whole range is mapped");
        } else {
            let top = model.keys().next_back().map_or(0, |&k| k + 1);
            let first = if rng.below(4) == 0 {
                0
            } else {
                rng.below(top + 1)
            };
            blockmap::free_from(&mut tx, &mut inode, first)
                .unwrap_or_else(|e| panic!("{ctx}: free from {first}: {e}"));
            model.retain(|&k, _| k < first);
        }
        fit_size(&mut inode, &model, bs);
        tx.write_inode(&inode).unwrap();
        if extents {
            deepest = deepest.max(extent_remove::tree_stats(&tx, &inode).unwrap().depth);
        } else {
            highest = highest.max(model.keys().next_back().copied().unwrap_or(0));
        }
        if rng.below(8) == 0 {
            tx.abort();
        } else {
            tx.commit().unwrap();
            models[which] = model;
        }
        check(&fs, ino, &models[which], &ctx);
    }
    let per = bs / 4;
    if fs.sb().has_incompat(crate::superblock::incompat::EXTENTS) {
        // Leaves of 84 extents (1 KiB) make depth 2 within the model's
        // 1500 blocks; leaves of 340 (4 KiB) only depth 1.
        let want = if bs == 1024 { 2 } else { 1 };
        assert!(
            deepest >= want,
            "{name}: the extent trees reached depth {deepest} only"
        );
    } else {
        assert!(
            highest >= 12 + per + per * per,
            "{name}: the block maps never reached the triple indirect area"
        );
    }
    fs.unmount().unwrap();
    img.fsck_clean();
    // Read back by a fresh mount: the same mappings.
    let fs = img.open_ro();
    for (i, ino) in files.into_iter().enumerate() {
        let inode = fs.inode(ino).unwrap();
        for (&l, &p) in &models[i] {
            assert_eq!(
                fs.map_block(&inode, Lblk(l as u32)).unwrap(),
                Some(Pblk(p)),
                "{name}: after remount, lblk {l}"
            );
        }
    }
}

#[test]
fn random_map_free_sequences_match_the_model_on_every_geometry() {
    for &(name, args, size) in GEOMETRIES {
        random_sequences(name, args, size);
    }
}

/// Fragments a file (every other block) until the tree is `depth` deep,
/// checks it, then truncates in steps back to nothing.
#[test]
fn deep_extent_trees_grow_and_shrink_back() {
    let Some(img) = image(&["-b", "1024"], "32M") else {
        return;
    };
    let fs = img.open_rw();
    let ino = file(&fs, "a");
    let bs = u64::from(fs.block_size());
    let mut model = Model::new();
    // Root 4 entries, leaves 84: depth 2 past 4 × 84 extents.
    let mut l = 0u64;
    let mut depth = 0;
    while depth < 2 || model.len() < 700 {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut inode = tx.inode(ino).unwrap();
        for _ in 0..50 {
            let runs = blockmap::map_alloc(&mut tx, &mut inode, Lblk(l as u32), 1).unwrap();
            assert_eq!(runs.len(), 1);
            model.insert(l, runs[0].pblk.0);
            l += 2;
        }
        fit_size(&mut inode, &model, bs);
        tx.write_inode(&inode).unwrap();
        depth = extent_remove::tree_stats(&tx, &inode).unwrap().depth;
        tx.commit().unwrap();
    }
    check(&fs, ino, &model, "grown");
    // Fill some holes: neighbours merge on both sides.
    {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut inode = tx.inode(ino).unwrap();
        let before = extent_remove::tree_stats(&tx, &inode)
            .unwrap()
            .extents
            .len();
        let runs = blockmap::map_alloc(&mut tx, &mut inode, Lblk(1), 1).unwrap();
        model.insert(1, runs[0].pblk.0);
        let after = extent_remove::tree_stats(&tx, &inode)
            .unwrap()
            .extents
            .len();
        // Block 1 lies between extents at 0 and 2; it merges with one at
        // most (the allocator puts it wherever it finds room).
        assert!(
            after <= before,
            "{after} extents after filling a hole, {before} before"
        );
        tx.write_inode(&inode).unwrap();
        tx.commit().unwrap();
    }
    img.fsck_clean_after(&fs);
    check(&fs, ino, &model, "hole filled");
    for cut in [l * 3 / 4, l / 2, l / 5, 3, 0] {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut inode = tx.inode(ino).unwrap();
        blockmap::free_from(&mut tx, &mut inode, cut).unwrap();
        model.retain(|&k, _| k < cut);
        fit_size(&mut inode, &model, bs);
        tx.write_inode(&inode).unwrap();
        let st = extent_remove::tree_stats(&tx, &inode).unwrap();
        if model.len() <= 4 {
            assert_eq!(
                st.depth, 0,
                "cut at {cut}: the tree shrinks back into the root"
            );
            assert_eq!(st.blocks, 0);
        }
        tx.commit().unwrap();
        check(&fs, ino, &model, &format!("cut at {cut}"));
        img.fsck_clean_after(&fs);
    }
    assert_eq!(fs.inode(ino).unwrap().blocks, 0);
    fs.unmount().unwrap();
    img.fsck_clean();
}

/// A file growing in order is one extent per 32768 blocks, and on a
/// block map its data follows its indirect blocks without gaps.
#[test]
fn growing_files_stay_contiguous() {
    for &(name, args, size) in GEOMETRIES {
        let Some(img) = image(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let ino = file(&fs, "c");
        let bs = u64::from(fs.block_size());
        let mut model = Model::new();
        let mut l = 0u64;
        for chunk in [1u32, 3, 8, 20, 200, 300] {
            let mut tx = fs.begin(Creds::ROOT).unwrap();
            let mut inode = tx.inode(ino).unwrap();
            for r in blockmap::map_alloc(&mut tx, &mut inode, Lblk(l as u32), chunk).unwrap() {
                for k in 0..u64::from(r.len) {
                    model.insert(r.lblk.as_u64() + k, r.pblk.0 + k);
                }
            }
            l += u64::from(chunk);
            fit_size(&mut inode, &model, bs);
            tx.write_inode(&inode).unwrap();
            tx.commit().unwrap();
        }
        check(&fs, ino, &model, name);
        let inode = fs.inode(ino).unwrap();
        let pblks: Vec<u64> = model.values().copied().collect();
        let jumps = pblks.windows(2).filter(|w| w[1] != w[0] + 1).count();
        if inode.has_flag(flags::EXTENTS) {
            let tx = fs.begin(Creds::ROOT).unwrap();
            let st = extent_remove::tree_stats(&tx, &inode).unwrap();
            assert_eq!(st.extents.len(), 1 + jumps, "{name}: one extent per run");
            assert!(st.extents.len() <= 2, "{name}: {:?}", st.extents);
        } else {
            // Data jumps over the single and double indirect blocks only
            // (and over a group's metadata if it crosses one).
            assert!(jumps <= 4, "{name}: {jumps} jumps in {pblks:?}");
        }
        fs.unmount().unwrap();
        img.fsck_clean();
    }
}

/// Mapping until the filesystem is full: a short mapping first, then
/// NoSpace with nothing changed; everything frees back.
#[test]
fn running_out_of_space_maps_what_fits_and_changes_nothing_after() {
    for &(name, args, size) in GEOMETRIES {
        let Some(img) = image(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let ino = file(&fs, "a");
        let bs = u64::from(fs.block_size());
        // Not a divisor of any group size: the last mapping is short.
        const CHUNK: u32 = 3001;
        let total = fs.statfs().blocks_free;
        let mut mapped = 0u64;
        let mut l = 0u64;
        let mut short = false;
        loop {
            let mut tx = fs.begin(Creds::ROOT).unwrap();
            let mut inode = tx.inode(ino).unwrap();
            // Sparse so that block maps need indirect blocks as they go.
            match blockmap::map_alloc(&mut tx, &mut inode, Lblk(l as u32), CHUNK) {
                Ok(runs) => {
                    let n: u64 = runs.iter().map(|r| u64::from(r.len)).sum();
                    short |= n < CHUNK as u64;
                    mapped += n;
                    l += n + 7;
                    inode.size = l * bs;
                    tx.write_inode(&inode).unwrap();
                    tx.commit().unwrap();
                }
                Err(Error::NoSpace(_)) => {
                    assert_eq!(tx.available_blocks(AllocKind::Data), 0, "{name}");
                    let again = tx.inode(ino).unwrap();
                    assert_eq!(
                        again,
                        fs.inode(ino).unwrap(),
                        "{name}: NoSpace changed nothing"
                    );
                    break;
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert!(short, "{name}: the last mapping before NoSpace was short");
        assert!(
            mapped * 10 > total * 9,
            "{name}: mapped {mapped} of {total} free blocks"
        );
        img.fsck_clean_after(&fs);
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut inode = tx.inode(ino).unwrap();
        blockmap::free_from(&mut tx, &mut inode, 0).unwrap();
        assert_eq!(inode.blocks, 0, "{name}");
        inode.size = 0;
        tx.write_inode(&inode).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            fs.statfs().blocks_free,
            total,
            "{name}: every block came back"
        );
        fs.unmount().unwrap();
        img.fsck_clean();
    }
}

/// A mapping that points into the inode table is refused for writes
/// (Corrupt), on an extent tree and on a block map.
#[test]
fn mappings_into_the_system_zone_are_refused() {
    for (name, args) in [("ext4", &["-b", "1024"][..]), ("ext2", &["-t", "ext2"][..])] {
        let Some(img) = image(args, "16M") else {
            return;
        };
        let itable = img
            .open_ro()
            .group(crate::GroupNo(0))
            .unwrap()
            .inode_table
            .0
            + 2;
        let req = if name == "ext4" {
            // One extent 0+1 at the inode table: header (magic, 1 entry,
            // max 4, depth 0), then ee_block 0, ee_len 1, ee_start.
            format!(
                "sif /a block[0] 0x1f30a\nsif /a block[1] 4\nsif /a block[3] 0\nsif /a block[4] 1\nsif /a block[5] {itable}"
            )
        } else {
            format!("sif /a block[0] {itable}")
        };
        let mut bad = img.clone();
        for line in req.lines() {
            bad = bad.debugfs_write(line);
        }
        let fs = bad.open_rw();
        let ino = file(&fs, "a");
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut inode = tx.inode(ino).unwrap();
        assert_eq!(
            blockmap::lookup(&tx, &inode, Lblk(0)).unwrap(),
            Lookup::Mapped {
                pblk: Pblk(itable),
                len: 1,
                uninit: false
            },
            "{name}"
        );
        let e = blockmap::map_alloc(&mut tx, &mut inode, Lblk(0), 2).unwrap_err();
        assert!(
            matches!(e, Error::Corrupt { .. }) && e.to_string().contains("system zone"),
            "{name}: {e}"
        );
        // Freeing it is refused too: the allocator never frees a zone block.
        let e = blockmap::free_from(&mut tx, &mut inode, 0).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{name}: {e}");
    }
}

impl Image {
    /// e2fsck -fn after writing everything home (the mount stays).
    fn fsck_clean_after(&self, fs: &Fs) {
        fs.sync().unwrap();
        let r = self.fsck();
        assert_eq!(r.code, 0, "e2fsck -fn while mounted:\n{}", r.output);
    }
}
