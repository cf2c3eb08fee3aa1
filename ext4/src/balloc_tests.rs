//! Tests of the block and inode allocators on real mkfs-made images, with
//! e2fsck as the oracle: allocating and freeing everything leaves a clean
//! filesystem; allocating without referencing leaves exactly the
//! allocated blocks and inodes as e2fsck's bitmap differences; running out
//! is a typed error with nothing half-done; the reserve is kept from
//! unprivileged callers; a freed block is not reused before its commit;
//! damaged bitmaps are refused, never written; random sequences agree
//! with a model.

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::error::{Error, Space};
use crate::group::{BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use crate::inode::{Inode, S_IFDIR, S_IFREG};
use crate::num::{GroupNo, InodeNo, Pblk};
use crate::testfs::{alloc_cases, Image, GEOMETRIES};
use crate::tx::{AllocKind, Creds, Tx};
use crate::Fs;

/// The owner of test allocations (any inode number does).
const OWNER: InodeNo = InodeNo(12);
/// Inodes allocated per transaction where a test allocates all of them.
const INODES_PER_TX: usize = 128;
/// "No goal".
const NO_GOAL: Pblk = Pblk(0);
/// An unprivileged caller.
const USER: Creds = Creds {
    uid: 1000,
    gid: 1000,
};

/// Allocates runs of up to `len` until the allocator says no; returns the
/// runs and the error it ended with.
fn alloc_all(tx: &mut Tx<'_>, len: u32, kind: AllocKind) -> (Vec<(Pblk, u32)>, Error) {
    let mut runs = Vec::new();
    loop {
        match tx.alloc_blocks(NO_GOAL, len, OWNER, kind) {
            Ok(r) => runs.push(r),
            Err(e) => return (runs, e),
        }
    }
}

fn blocks_of(runs: &[(Pblk, u32)]) -> Vec<u64> {
    runs.iter()
        .flat_map(|&(s, n)| s.0..s.0 + u64::from(n))
        .collect()
}

/// Every allocated block is inside the filesystem, outside the system
/// zones, and allocated once.
fn assert_sound(fs: &Fs, runs: &[(Pblk, u32)], what: &str) {
    let mut seen = BTreeSet::new();
    for &(s, n) in runs {
        assert!(n >= 1, "{what}: empty run");
        assert!(
            fs.sb().range_in_fs(s, u64::from(n)),
            "{what}: {s}+{n} outside"
        );
        assert!(
            fs.zones().is_clear(s, u64::from(n)),
            "{what}: {s}+{n} in a zone"
        );
        for b in s.0..s.0 + u64::from(n) {
            assert!(seen.insert(b), "{what}: block {b} handed out twice");
        }
    }
}

#[test]
fn allocating_and_freeing_everything_is_clean() {
    for (name, args, size) in GEOMETRIES {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let free0 = fs.statfs().blocks_free;
        let ifree0 = fs.statfs().files_free;
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let avail = tx.available_blocks(AllocKind::Data);
        let (runs, end) = alloc_all(&mut tx, 300, AllocKind::Data);
        assert!(
            matches!(end, Error::NoSpace(Space::Blocks)),
            "{name}: {end}"
        );
        assert_sound(&fs, &runs, name);
        assert_eq!(blocks_of(&runs).len() as u64, avail, "{name}: all of it");
        tx.commit().unwrap();
        // Every inode initializes its table slot: in transactions of a
        // few table blocks each, as one journal transaction could not
        // carry all the tables of a filesystem.
        let mut inodes = Vec::new();
        let end = 'all: loop {
            let mut tx = fs.begin(Creds::ROOT).unwrap();
            for _ in 0..INODES_PER_TX {
                match tx.alloc_inode(InodeNo::ROOT, S_IFREG | 0o644) {
                    Ok(i) => inodes.push(i),
                    Err(e) => {
                        tx.commit().unwrap();
                        break 'all e;
                    }
                }
            }
            tx.commit().unwrap();
        };
        assert!(
            matches!(end, Error::NoSpace(Space::Inodes)),
            "{name}: {end}"
        );
        assert_eq!(inodes.len() as u64, ifree0, "{name}");
        let distinct: BTreeSet<_> = inodes.iter().collect();
        assert_eq!(distinct.len(), inodes.len(), "{name}: an inode twice");
        assert!(inodes.iter().all(|i| i.0 >= fs.sb().first_ino.0));
        // Counts are exact after the commit: statfs sees them.
        assert_eq!(fs.statfs().blocks_free, free0 - avail, "{name}");
        assert_eq!(fs.statfs().files_free, 0, "{name}");
        // Every uninitialized group was initialized on the way.
        for g in (0..fs.sb().group_count).map(GroupNo) {
            let gd = fs.group(g).unwrap();
            assert_eq!(gd.free_inodes, 0, "{name} group {g}");
            assert_eq!(gd.flags & BG_INODE_UNINIT, 0, "{name} group {g}");
            assert_eq!(gd.itable_unused, 0, "{name} group {g}");
        }
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        for &(s, n) in &runs {
            tx.free_blocks(s, u64::from(n), AllocKind::Data).unwrap();
        }
        for &i in &inodes {
            tx.free_inode(i, S_IFREG).unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(fs.statfs().blocks_free, free0, "{name}");
        assert_eq!(fs.statfs().files_free, ifree0, "{name}");
        fs.unmount().unwrap();
        img.fsck_clean();
    }
}

#[test]
fn unreferenced_allocations_are_exactly_what_e2fsck_finds() {
    for (name, args, size) in GEOMETRIES {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let sb = fs.sb();
        let last = GroupNo(sb.group_count - 1);
        let uninit_before = (0..sb.group_count)
            .filter(|&g| fs.group(GroupNo(g)).unwrap().flags & BG_BLOCK_UNINIT != 0)
            .count();
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut runs = Vec::new();
        // (goal, length): no goal, the middle of the fs, the last group
        // (uninitialized on most geometries), an exact goal reused below.
        let mid = Pblk(sb.blocks_count / 2);
        let last_mid = sb
            .group_first_block(last)
            .saturating_add(u64::from(sb.blocks_per_group / 2))
            .min(Pblk(sb.blocks_count - 100));
        for (goal, len) in [(NO_GOAL, 5), (mid, 17), (last_mid, 40), (mid, 3)] {
            runs.push(tx.alloc_blocks(goal, len, OWNER, AllocKind::Data).unwrap());
        }
        // A goal right after a run continues it (a growing file).
        let (s, n) = runs[2];
        let next = tx
            .alloc_blocks(s.saturating_add(u64::from(n)), 4, OWNER, AllocKind::Data)
            .unwrap();
        assert_eq!(
            next.0,
            s.saturating_add(u64::from(n)),
            "{name}: contiguous growth"
        );
        runs.push(next);
        assert_sound(&fs, &runs, name);
        let mut inodes = vec![
            tx.alloc_inode(InodeNo::ROOT, S_IFREG | 0o600).unwrap(),
            tx.alloc_inode(InodeNo(sb.inodes_count), S_IFREG | 0o600)
                .unwrap(),
        ];
        inodes.push(tx.alloc_inode(inodes[1], S_IFREG).unwrap());
        tx.commit().unwrap();
        fs.unmount().unwrap();
        let r = img.fsck();
        let mut want_b: Vec<i64> = blocks_of(&runs).iter().map(|&b| -(b as i64)).collect();
        let mut got_b = r.bitmap_differences("Block");
        want_b.sort_unstable();
        got_b.sort_unstable();
        assert_eq!(got_b, want_b, "{name}:\n{}", r.output);
        let mut want_i: Vec<i64> = inodes.iter().map(|i| -i64::from(i.0)).collect();
        let mut got_i = r.bitmap_differences("Inode");
        want_i.sort_unstable();
        got_i.sort_unstable();
        assert_eq!(got_i, want_i, "{name}:\n{}", r.output);
        let odd = r.unexpected(&[
            "Block bitmap differences",
            "Inode bitmap differences",
            "Free blocks count wrong",
            "Free inodes count wrong",
        ]);
        assert!(odd.is_empty(), "{name}: {odd:?}\n{}", r.output);
        if uninit_before > 0 {
            // The last group was initialized for the run that went there.
            let fs = img.open_ro();
            assert_eq!(fs.group(last).unwrap().flags & BG_BLOCK_UNINIT, 0, "{name}");
        }
    }
}

#[test]
fn running_out_is_typed_and_leaves_nothing_half_done() {
    let Some(img) = Image::mkfs(&["-b", "1024", "-m", "5"], "8M") else {
        return;
    };
    let fs = img.open_rw();
    let sb = fs.sb();
    let free0 = fs.super_fields().free_blocks;
    let pool = fs.reserved_pool();
    let root_reserve = sb.r_blocks_count;
    assert!(root_reserve > 0 && pool > 0);
    // An unprivileged caller gets all but the root reserve and the pool.
    let mut tx = fs.begin(USER).unwrap();
    assert!(matches!(
        tx.check_space(free0 - pool - root_reserve + 1, 0),
        Err(Error::NoSpace(Space::Blocks))
    ));
    tx.check_space(free0 - pool - root_reserve, 0).unwrap();
    let (user_runs, end) = alloc_all(&mut tx, 1000, AllocKind::Data);
    assert!(matches!(end, Error::NoSpace(Space::Blocks)));
    assert_eq!(
        blocks_of(&user_runs).len() as u64,
        free0 - pool - root_reserve
    );
    // A failed allocation changed nothing.
    let free_before = tx.free_blocks_count();
    assert!(tx.alloc_blocks(NO_GOAL, 1, OWNER, AllocKind::Meta).is_err());
    assert_eq!(tx.free_blocks_count(), free_before);
    tx.commit().unwrap();
    // Root gets the root reserve, then only a must-not-fail metadata
    // allocation dips into the pool.
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let (root_runs, _) = alloc_all(&mut tx, 1000, AllocKind::Data);
    assert_eq!(blocks_of(&root_runs).len() as u64, root_reserve);
    let (pool_runs, end) = alloc_all(&mut tx, 1000, AllocKind::MetaReserved);
    assert!(matches!(end, Error::NoSpace(Space::Blocks)));
    assert_eq!(blocks_of(&pool_runs).len() as u64, pool);
    assert_eq!(tx.free_blocks_count(), 0);
    // Aborting leaves everything as the last commit left it.
    tx.abort();
    assert_eq!(fs.super_fields().free_blocks, pool + root_reserve);
    assert_eq!(fs.statfs().blocks_free, pool + root_reserve);
    // The reserved uid (s_def_resuid) is privileged too: it gets the reserve.
    let mut tx = fs.begin(USER).unwrap();
    assert_eq!(tx.available_blocks(AllocKind::Data), 0);
    tx.sb_fields_mut().def_resuid = 1000;
    assert_eq!(tx.available_blocks(AllocKind::Data), root_reserve);
    drop(tx);
    // Free everything: clean.
    let mut tx = fs.begin(USER).unwrap();
    for &(s, n) in &user_runs {
        tx.free_blocks(s, u64::from(n), AllocKind::Data).unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(fs.super_fields().free_blocks, free0);
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn a_freed_block_waits_for_its_commit_and_its_cached_copy_goes() {
    let Some(img) = Image::mkfs(&["-b", "4096"], "32M") else {
        return;
    };
    let fs = img.open_rw();
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let (b, n) = tx.alloc_blocks(NO_GOAL, 1, OWNER, AllocKind::Meta).unwrap();
    assert_eq!(n, 1);
    tx.new_block(b).unwrap().fill(0x5A);
    tx.commit().unwrap();
    assert!(fs.dev().is_cached(b.0));
    assert!(
        fs.dev().dirty_blocks().contains(&b.0),
        "the new block is dirty"
    );
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    tx.free_blocks(b, 1, AllocKind::Meta).unwrap();
    assert!(
        matches!(tx.modify(b), Err(Error::Internal(_))),
        "changed after free"
    );
    assert!(matches!(
        tx.free_blocks(b, 1, AllocKind::Meta),
        Err(Error::Internal(_))
    ));
    let (again, _) = tx.alloc_blocks(b, 1, OWNER, AllocKind::Meta).unwrap();
    assert_ne!(again, b, "reused before the freeing transaction committed");
    tx.free_blocks(again, 1, AllocKind::Meta).unwrap();
    tx.commit().unwrap();
    assert!(
        !fs.dev().is_cached(b.0),
        "the freed block's copy was dropped"
    );
    assert!(fs.dev().dirty_blocks().iter().all(|&d| d != b.0));
    // After the commit (with a journal: once the journal commit that
    // frees it is durable) it may be handed out again.
    fs.sync().unwrap();
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    assert_eq!(tx.alloc_blocks(b, 1, OWNER, AllocKind::Meta).unwrap().0, b);
    tx.free_blocks(b, 1, AllocKind::Meta).unwrap();
    tx.commit().unwrap();
    fs.unmount().unwrap();
    img.fsck_clean();
    // The block's contents never reached the device: freed while dirty.
    let at = (b.0 * 4096) as usize;
    assert!(img.bytes()[at..at + 4096].iter().all(|&x| x != 0x5A));
}

#[test]
fn a_short_run_at_the_goal_is_taken_when_its_group_is_nearly_full() {
    let Some(img) = Image::mkfs(&["-b", "1024", "-O", "^flex_bg"], "16M") else {
        return;
    };
    let fs = img.open_rw();
    let sb = fs.sb();
    let (first, bpg) = (sb.group_first_block(GroupNo(1)), sb.blocks_per_group);
    let in_group_1 = |b: Pblk| b >= first && b.0 < first.0 + u64::from(bpg);
    // Fill group 1.
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let mut runs = Vec::new();
    loop {
        let (s, n) = tx.alloc_blocks(first, bpg, OWNER, AllocKind::Data).unwrap();
        if !in_group_1(s) {
            tx.free_blocks(s, u64::from(n), AllocKind::Data).unwrap();
            break;
        }
        runs.push((s, n));
    }
    assert_eq!(tx.group(GroupNo(1)).unwrap().free_blocks, 0);
    // Three blocks free in the middle of it, the rest of the group full.
    let hole = first.saturating_add(u64::from(bpg / 2));
    assert!(runs
        .iter()
        .any(|&(s, n)| s <= hole && hole.0 + 3 <= s.0 + u64::from(n)));
    tx.free_blocks(hole, 3, AllocKind::Data).unwrap();
    tx.commit().unwrap();
    // Reusable once the free is journaled.
    fs.sync().unwrap();
    // A file growing from the hole gets the hole, not a longer run
    // elsewhere.
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    assert_eq!(
        tx.alloc_blocks(hole, 8, OWNER, AllocKind::Data).unwrap(),
        (hole, 3)
    );
    tx.abort();
    // Free the rest: clean.
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    for b in blocks_of(&runs) {
        if !(hole.0..hole.0 + 3).contains(&b) {
            tx.free_blocks(Pblk(b), 1, AllocKind::Data).unwrap();
        }
    }
    tx.commit().unwrap();
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn directories_spread_and_files_stay_near_their_parent() {
    let Some(img) = Image::mkfs(&["-b", "1024", "-O", "^flex_bg"], "64M") else {
        return;
    };
    let fs = img.open_rw();
    let ipg = fs.sb().inodes_per_group;
    let group = |i: InodeNo| (i.0 - 1) / ipg;
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let tops: Vec<InodeNo> = (0..8)
        .map(|_| tx.alloc_inode(InodeNo::ROOT, S_IFDIR | 0o755).unwrap())
        .collect();
    let spread: BTreeSet<u32> = tops.iter().map(|&i| group(i)).collect();
    assert!(
        spread.len() >= 4,
        "top-level directories in groups {spread:?}"
    );
    for &d in &tops {
        let f = tx.alloc_inode(d, S_IFREG | 0o644).unwrap();
        assert_eq!(group(f), group(d), "a file next to its directory");
        let sub = tx.alloc_inode(d, S_IFDIR | 0o755).unwrap();
        assert_eq!(group(sub), group(d), "a subdirectory near its parent");
    }
    let dirs: u32 = (0..fs.sb().group_count)
        .map(|g| tx.group(GroupNo(g)).unwrap().used_dirs)
        .sum();
    let dirs_before: u32 = (0..fs.sb().group_count)
        .map(|g| fs.group(GroupNo(g)).unwrap().used_dirs)
        .sum();
    assert_eq!(dirs, dirs_before + 16);
    let generations: BTreeSet<u32> = (0..16).map(|_| tx.next_generation()).collect();
    assert!(generations.len() > 1);
    tx.abort();
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn with_flex_groups_directories_spread_over_them_and_goals_follow() {
    // 16 groups in flex groups of 4.
    let Some(img) = Image::mkfs(&["-b", "1024", "-G", "4"], "128M") else {
        return;
    };
    let fs = img.open_rw();
    let sb = fs.sb();
    assert_eq!((sb.group_count, sb.log_groups_per_flex), (16, 2));
    let flex_of = |i: InodeNo| (i.0 - 1) / sb.inodes_per_group / 4;
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let tops: Vec<InodeNo> = (0..8)
        .map(|_| tx.alloc_inode(InodeNo::ROOT, S_IFDIR | 0o755).unwrap())
        .collect();
    // As the kernel's find_group_orlov: only flex groups with at least
    // the average free inodes and blocks (never flex group 0, which holds
    // the journal and every group's tables), fewest directories first, so
    // the directories are shared out evenly among them.
    let mut per_flex = std::collections::BTreeMap::new();
    for &d in &tops {
        *per_flex.entry(flex_of(d)).or_insert(0u32) += 1;
    }
    assert!(per_flex.len() >= 2, "top-level directories in {per_flex:?}");
    assert!(!per_flex.contains_key(&0), "{per_flex:?}");
    let (lo, hi) = (per_flex.values().min(), per_flex.values().max());
    assert!(hi.unwrap() - lo.unwrap() <= 1, "uneven: {per_flex:?}");
    for &d in &tops {
        let f = tx.alloc_inode(d, S_IFREG | 0o644).unwrap();
        assert_eq!(
            flex_of(f),
            flex_of(d),
            "a file in its directory's flex group"
        );
        // Regular files' data goes one group past the flex group's start
        // (its metadata fills the first), directories' to the start.
        let now = tx.now();
        let gen = tx.next_generation();
        let file = Inode::fresh(sb, f, gen, S_IFREG | 0o644, 0, 0, now);
        let dir = Inode::fresh(sb, d, gen, S_IFDIR | 0o755, 0, 0, now);
        let flex_first = GroupNo(flex_of(d) * 4);
        assert_eq!(tx.inode_goal(&dir), sb.group_first_block(flex_first));
        assert_eq!(
            tx.inode_goal(&file),
            sb.group_first_block(GroupNo(flex_first.0 + 1))
        );
    }
    tx.abort();
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn damaged_bitmaps_are_refused_never_written() {
    let Some(base) = Image::mkfs(&["-b", "1024", "-O", "^flex_bg"], "16M") else {
        return;
    };
    let fs = base.open_ro();
    let gd0 = fs.group(GroupNo(0)).unwrap();
    drop(fs);
    // Both damage group 0, where the owner's allocations go first.
    let cases: Vec<(&str, Image)> = vec![
        // A system block marked free (descriptor and checksums kept in step).
        (
            "inode table block free",
            base.debugfs_write(&format!("freeb {}", gd0.inode_table.0 + 2)),
        ),
        // The bitmap disagrees with its descriptor's count (and checksum).
        ("counts disagree", flip_bit(&base, gd0.block_bitmap, 8191)),
    ];
    let goal = NO_GOAL;
    for (what, img) in cases {
        let before = img.bytes();
        let fs = img.open_rw();
        let journal: Vec<bool> = (0..before.len() as u64 / 1024)
            .map(|b| fs.zones().kind_of(Pblk(b)) == Some(crate::zones::ZoneKind::Journal))
            .collect();
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let r = tx.alloc_blocks(goal, 8, OWNER, AllocKind::Data);
        assert!(
            matches!(r, Err(Error::Corrupt { .. }) | Err(Error::Checksum { .. })),
            "{what}: {r:?}"
        );
        drop(tx);
        // The damaged group is left alone; the others still serve.
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let (b, _) = tx.alloc_blocks(goal, 8, OWNER, AllocKind::Data).unwrap();
        assert!(
            b >= fs.sb().group_first_block(GroupNo(1)),
            "{what}: {b} in group 0"
        );
        drop(tx);
        fs.unmount().unwrap();
        // Nothing but the superblock's mount state (and the journal's
        // superblock, set up for writing) was written.
        let after = img.bytes();
        let sb_range = 1024..2048;
        let changed: Vec<usize> = (0..before.len() / 1024)
            .filter(|&i| !journal[i])
            .filter(|&i| before[i * 1024..(i + 1) * 1024] != after[i * 1024..(i + 1) * 1024])
            .map(|i| i * 1024)
            .filter(|o| !sb_range.contains(o))
            .collect();
        assert!(changed.is_empty(), "{what}: blocks at {changed:?} changed");
    }
}

/// A copy of `img` with bit `bit` of bitmap block `blk` flipped (the
/// bitmap checksum no longer matches either, with metadata_csum).
fn flip_bit(img: &Image, blk: Pblk, bit: u64) -> Image {
    let mut bytes = img.bytes();
    let at = (blk.0 * 1024 + bit / 8) as usize;
    bytes[at] ^= 1 << (bit % 8);
    Image {
        mem: std::sync::Arc::new(crate::io::mem::MemChannel::new(bytes)),
        args: img.args.clone(),
    }
}

/// One step of a random allocation sequence.
#[derive(Debug, Clone)]
enum Op {
    /// Allocate up to `len` blocks, the goal at this fraction of the fs.
    Alloc {
        goal_permille: u64,
        len: u32,
    },
    /// Free part of an owned run (index modulo the runs; the tail from `cut`).
    Free {
        index: usize,
        cut: u32,
    },
    Commit,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u64..1000, 1u32..300).prop_map(|(goal_permille, len)| Op::Alloc { goal_permille, len }),
        3 => (any::<usize>(), any::<u32>()).prop_map(|(index, cut)| Op::Free { index, cut }),
        1 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: alloc_cases(), ..ProptestConfig::default() })]

    /// Random allocations and frees, committed or aborted, against a model
    /// of the blocks owned: every run is sound and disjoint from what is
    /// owned, counts follow the model, and e2fsck finds exactly the owned
    /// blocks in use.
    #[test]
    fn random_alloc_and_free_agree_with_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        let Some(base) = base_image() else { return Ok(()); };
        let img = base.copy();
        let fs = img.open_rw();
        let total = fs.sb().blocks_count;
        let free0 = fs.super_fields().free_blocks;
        // Committed and in-transaction models: runs owned.
        let mut committed: Vec<(Pblk, u32)> = Vec::new();
        let mut owned = committed.clone();
        let mut tx = Some(fs.begin(Creds::ROOT).unwrap());
        for op in ops {
            let t = tx.get_or_insert_with(|| fs.begin(Creds::ROOT).unwrap());
            match op {
                Op::Alloc { goal_permille, len } => {
                    let goal = Pblk(total * goal_permille / 1000);
                    match t.alloc_blocks(goal, len, OWNER, AllocKind::Data) {
                        Ok((s, n)) => {
                            prop_assert!(n >= 1 && n <= len);
                            let new: BTreeSet<u64> = blocks_of(&[(s, n)]).into_iter().collect();
                            let mine: BTreeSet<u64> = blocks_of(&owned).into_iter().collect();
                            prop_assert!(new.is_disjoint(&mine), "{s}+{n} already owned");
                            owned.push((s, n));
                        }
                        Err(Error::NoSpace(_)) => {}
                        Err(e) => prop_assert!(false, "alloc: {e}"),
                    }
                }
                Op::Free { index, cut } => {
                    if owned.is_empty() { continue; }
                    let i = index % owned.len();
                    let (s, n) = owned[i];
                    let keep = cut % n;
                    t.free_blocks(s.saturating_add(u64::from(keep)), u64::from(n - keep), AllocKind::Data).unwrap();
                    if keep == 0 { owned.swap_remove(i); } else { owned[i].1 = keep; }
                }
                Op::Commit => {
                    tx.take().unwrap().commit().unwrap();
                    committed = owned.clone();
                }
                Op::Abort => {
                    tx.take().unwrap().abort();
                    owned = committed.clone();
                }
            }
            let now = match &tx {
                Some(t) => t.free_blocks_count(),
                None => fs.super_fields().free_blocks,
            };
            prop_assert_eq!(now, free0 - blocks_of(&owned).len() as u64);
        }
        if let Some(t) = tx.take() {
            t.commit().unwrap();
        }
        assert_sound(&fs, &owned, "random");
        fs.unmount().unwrap();
        let r = img.fsck();
        let mut want: Vec<i64> = blocks_of(&owned).iter().map(|&b| -(b as i64)).collect();
        let mut got = r.bitmap_differences("Block");
        want.sort_unstable();
        got.sort_unstable();
        prop_assert_eq!(got, want, "{}", r.output);
        let odd = r.unexpected(&["Block bitmap differences", "Free blocks count wrong"]);
        prop_assert!(odd.is_empty(), "{:?}\n{}", odd, r.output);
    }
}

/// The image the random test starts from (made once): 1 KiB blocks, small
/// groups so runs cross group boundaries and reach uninitialized groups.
fn base_image() -> Option<Image> {
    static BASE: std::sync::OnceLock<Option<Image>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| Image::mkfs(&["-b", "1024", "-g", "2048", "-N", "512"], "8M"))
        .clone()
}
