//! The journal fsvc writes, as the Linux kernel's ext4 replays it (loop
//! mounts; root only): the engine runs a workload of transactions, each
//! synced, on a journal small enough to wrap several times; a copy of the
//! image taken right after a sync (a crash: needs_recovery set, the last
//! transactions only in the log) is mounted by the kernel, which replays
//! it. Its verdict: the synced state is there (the root's owner set by the
//! last synced step), a metadata block freed and reused for file data was
//! revoked (the kernel does not write the old metadata over the data), and
//! after its unmount e2fsck -fn finds exactly the blocks the last step left
//! allocated.
//!
//! Without root or loop devices these tests print why and skip, unless
//! `FSVC_REQUIRE_PRIVILEGED=1`, which turns the skip into a failure.

mod core_util;

use std::os::unix::fs::MetadataExt;

use core_util::*;
use fsvc_ext4::testfs::{fsck_bytes, Image};
use fsvc_ext4::tx::{AllocKind, Creds};
use fsvc_ext4::{Fs, InodeNo, Pblk};

/// The owner of the engine's allocations (any inode number does).
const OWNER: InodeNo = InodeNo(12);
/// Steps of the workload.
const STEPS: u32 = 60;
/// Metadata blocks each step allocates and logs.
const PER_STEP: u32 = 30;

/// Journaled geometries, each with the smallest journal mkfs makes (1024
/// blocks: it wraps).
const GEOMETRIES: &[(&str, &[&str], &str)] = &[
    ("ext4-1k", &["-b", "1024", "-J", "size=1"], "16M"),
    (
        "ext4-4k-64bit",
        &["-b", "4096", "-O", "64bit", "-J", "size=4"],
        "64M",
    ),
    (
        "ext4-1k-nocsum",
        &[
            "-b",
            "1024",
            "-O",
            "^metadata_csum,uninit_bg",
            "-J",
            "size=1",
        ],
        "16M",
    ),
    (
        "ext3-1k",
        &["-t", "ext3", "-b", "1024", "-J", "size=1"],
        "16M",
    ),
];

fn set_root_uid(tx: &mut fsvc_ext4::tx::Tx<'_>, uid: u32) {
    let mut root = tx.inode(InodeNo::ROOT).unwrap();
    root.uid = uid;
    tx.write_inode(&root).unwrap();
}

/// A crash copy: the image's bytes after step `step`'s sync, the blocks
/// that step left allocated (owned by nobody), and the reused block with
/// the data it must hold.
struct Crash {
    step: u32,
    bytes: Vec<u8>,
    leaked: Vec<u64>,
    reused: (Pblk, u8),
}

/// Each step frees the previous step's blocks, allocates and fills
/// [`PER_STEP`] metadata blocks and sets the root's owner, in one
/// transaction, then syncs; the first freed block of each step is taken
/// again as file data by a transaction of its own (once its free is
/// journaled), written past the log, and freed again. Copies are taken
/// after the syncs of `crash_at`; at the end everything is freed.
fn workload(fs: &Fs, img: &Image, crash_at: &[u32]) -> Vec<Crash> {
    let bs = fs.block_size() as usize;
    let mut prev: Vec<(Pblk, u32)> = Vec::new();
    let mut crashes = Vec::new();
    let mut reused = (Pblk(0), 0u8);
    for step in 1..=STEPS {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        for &(s, n) in &prev {
            tx.free_blocks(s, u64::from(n), AllocKind::Meta).unwrap();
        }
        let freed_first = prev.first().map(|&(s, _)| s);
        let mut now = Vec::new();
        let mut got = 0;
        while got < PER_STEP {
            let r = tx
                .alloc_blocks(Pblk(0), PER_STEP - got, OWNER, AllocKind::Meta)
                .unwrap();
            for b in r.0 .0..r.0 .0 + u64::from(r.1) {
                tx.new_block(Pblk(b)).unwrap().fill(step as u8);
            }
            got += r.1;
            now.push(r);
        }
        set_root_uid(&mut tx, 50_000 + step);
        tx.commit().unwrap();
        fs.sync().unwrap();
        if let Some(x) = freed_first {
            // The free is journaled: the block may now hold file data.
            let mut tx = fs.begin(Creds::ROOT).unwrap();
            let (y, _) = tx.alloc_blocks(x, 1, OWNER, AllocKind::Data).unwrap();
            tx.commit().unwrap();
            let fill = 0x80 | step as u8;
            fs.write_data(y, &vec![fill; bs]).unwrap();
            let mut tx = fs.begin(Creds::ROOT).unwrap();
            tx.free_blocks(y, 1, AllocKind::Data).unwrap();
            tx.commit().unwrap();
            fs.sync().unwrap();
            reused = (y, fill);
        }
        prev = now;
        if crash_at.contains(&step) {
            crashes.push(Crash {
                step,
                bytes: img.bytes(),
                leaked: prev
                    .iter()
                    .flat_map(|&(s, n)| s.0..s.0 + u64::from(n))
                    .collect(),
                reused,
            });
        }
    }
    // The last step's blocks, freed: the mount itself ends clean.
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    for &(s, n) in &prev {
        tx.free_blocks(s, u64::from(n), AllocKind::Meta).unwrap();
    }
    tx.commit().unwrap();
    crashes
}

#[test]
fn the_kernel_replays_what_fsvc_journals() {
    if !privileged("the_kernel_replays_what_fsvc_journals") {
        return;
    }
    for (name, args, size) in GEOMETRIES {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let crashes = workload(&fs, &img, &[1, 7, STEPS / 2, STEPS]);
        let st = fs.journal_stats().unwrap();
        // The small log was filled and checkpointed more than once.
        assert!(st.checkpoints >= 2, "{name}: {st:?}");
        assert!(st.revokes >= u64::from(STEPS) - 1, "{name}: {st:?}");
        fs.unmount().unwrap();
        img.fsck_clean();
        for c in crashes {
            let what = format!("{name}, crash after step {}", c.step);
            let dir = Scratch::new("journal-kernel");
            let path = dir.0.join("img");
            std::fs::write(&path, &c.bytes).unwrap();
            let logdump = debugfs(&path, "logdump");
            assert!(
                logdump.contains("Found expected sequence"),
                "{what}: the log holds transactions:\n{logdump}"
            );
            {
                let m = Mount::new(&path, &dir.0.join("mnt"), "rw");
                let uid = std::fs::metadata(&m.0).unwrap().uid();
                assert_eq!(uid, 50_000 + c.step, "{what}: the synced owner");
            }
            let bytes = std::fs::read(&path).unwrap();
            let bs = if args.contains(&"4096") { 4096 } else { 1024 };
            let (y, fill) = c.reused;
            if y.0 != 0 {
                let at = y.0 as usize * bs;
                assert!(
                    bytes[at..at + bs].iter().all(|&b| b == fill),
                    "{what}: the kernel replayed a revoked block over file data"
                );
            }
            let r = fsck_bytes(&bytes);
            let want: Vec<i64> = c.leaked.iter().map(|&b| -(b as i64)).collect();
            assert_eq!(r.bitmap_differences("Block"), want, "{what}:\n{}", r.output);
            let odd = r.unexpected(&["Block bitmap differences", "Free blocks count wrong"]);
            assert!(odd.is_empty(), "{what}: {odd:?}\n{}", r.output);
        }
    }
}
