//! Tests of the transaction handle on real mkfs-made images: abort leaves
//! everything as it was, commit is atomic for readers, system zones are
//! never modifiable as file blocks, inodes round-trip through a Tx.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::Error;
use crate::num::{GroupNo, InodeNo, Pblk};
use crate::testfs::Image;
use crate::tx::{Creds, TxBlocks};
use crate::zones::ZoneKind;
use crate::Fs;

fn image(args: &[&str], size: &str) -> Option<Image> {
    Image::mkfs(args, size)
}

/// A block no file uses and no zone covers (the last of the filesystem).
fn free_block(fs: &Fs) -> Pblk {
    let b = Pblk(fs.sb().blocks_count - 1);
    assert!(fs.zones().is_clear(b, 1));
    b
}

#[test]
fn abort_leaves_cache_groups_and_counters_unchanged() {
    let Some(img) = image(&["-b", "1024"], "8M") else {
        return;
    };
    let fs = img.open_rw();
    let b = free_block(&fs);
    let before = fs.meta_block(b).unwrap();
    let groups_before: Vec<_> = (0..fs.sb().group_count)
        .map(|g| fs.group(GroupNo(g)).unwrap())
        .collect();
    let fields_before = fs.super_fields();
    let dirty_before = fs.dev().dirty_blocks();
    let root_before = fs.inode(InodeNo::ROOT).unwrap();
    {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        tx.modify(b).unwrap().fill(0xAB);
        assert_eq!(tx.get(b).unwrap()[0], 0xAB, "the Tx sees its own change");
        let mut root = tx.inode(InodeNo::ROOT).unwrap();
        root.links += 5;
        tx.write_inode(&root).unwrap();
        assert_eq!(
            tx.inode(InodeNo::ROOT).unwrap().links,
            root_before.links + 5
        );
        tx.sb_fields_mut().last_orphan = 12;
        tx.abort();
    }
    {
        // Dropping without commit is an abort too.
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        tx.new_block(b).unwrap()[0] = 1;
    }
    let after = fs.meta_block(b).unwrap();
    assert!(
        Arc::ptr_eq(&before, &after),
        "the cache still holds the pre-image"
    );
    assert_eq!(fs.dev().dirty_blocks(), dirty_before);
    assert_eq!(fs.inode(InodeNo::ROOT).unwrap(), root_before);
    assert_eq!(fs.super_fields(), fields_before);
    for (g, gd) in groups_before.iter().enumerate() {
        assert_eq!(&fs.group(GroupNo(g as u32)).unwrap(), gd);
    }
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn commit_is_atomic_for_readers() {
    let Some(img) = image(&["-b", "4096"], "32M") else {
        return;
    };
    let fs = Arc::new(img.open_rw());
    let x = free_block(&fs);
    let y = Pblk(x.0 - 1000);
    assert!(fs.zones().is_clear(y, 1));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (fs, stop) = (fs.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let _g = fs.read_guard().unwrap();
                let a = u64::from_le_bytes(fs.meta_block(x).unwrap()[..8].try_into().unwrap());
                let b = u64::from_le_bytes(fs.meta_block(y).unwrap()[..8].try_into().unwrap());
                assert_eq!(a, b, "a reader saw half of a commit");
                seen = seen.max(a);
            }
            seen
        })
    };
    for i in 1..=300u64 {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        tx.modify(x).unwrap()[..8].copy_from_slice(&i.to_le_bytes());
        // Readers are kept out while the Tx is open, so taking a while
        // between the two changes cannot show.
        std::thread::yield_now();
        tx.modify(y).unwrap()[..8].copy_from_slice(&i.to_le_bytes());
        tx.commit().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let seen = reader.join().unwrap();
    assert!(seen <= 300);
    assert_eq!(fs.dev().dirty_blocks(), vec![y.0, x.0]);
    fs.sync().unwrap();
    // Synced into the journal; the checkpoint writes them home.
    fs.writeback().unwrap();
    assert!(fs.dev().dirty_blocks().is_empty());
    let bytes = img.bytes();
    let at = |b: Pblk| {
        let o = (b.0 * 4096) as usize;
        u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap())
    };
    assert_eq!((at(x), at(y)), (300, 300));
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn system_zone_blocks_are_never_file_blocks() {
    let Some(img) = image(&["-b", "1024", "-J", "size=1"], "16M") else {
        return;
    };
    let fs = img.open_rw();
    let gd = fs.group(GroupNo(1)).unwrap();
    let journal = fs
        .zones()
        .zones()
        .iter()
        .find(|z| z.kind == ZoneKind::Journal)
        .copied()
        .expect("the journal is a system zone");
    let sb = fs.sb();
    // (block, what it is)
    let cases: &[(Pblk, &str)] = &[
        (Pblk(0), "boot block"),
        (sb.superblock_block(), "superblock"),
        (sb.superblock_block().saturating_add(1), "group descriptors"),
        (gd.block_bitmap, "block bitmap"),
        (gd.inode_bitmap, "inode bitmap"),
        (gd.inode_table.saturating_add(3), "inode table"),
        (journal.start.saturating_add(journal.len / 2), "journal"),
        (sb.group_first_block(GroupNo(1)), "superblock backup"),
    ];
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    for &(b, what) in cases {
        for new in [false, true] {
            let r = if new { tx.new_block(b) } else { tx.modify(b) };
            assert!(
                matches!(r, Err(Error::Corrupt { .. })),
                "{what} (block {b}) was writable as a file block"
            );
        }
    }
    for b in [Pblk(sb.blocks_count), Pblk(u64::MAX)] {
        assert!(
            matches!(tx.modify(b), Err(Error::Corrupt { .. })),
            "block {b}"
        );
    }
    assert!(!tx.is_modified(gd.block_bitmap));
    drop(tx);
    // Data writes obey the same zones.
    let bs = fs.block_size() as usize;
    assert!(matches!(
        fs.write_data(gd.inode_table, &vec![0u8; bs]),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        fs.write_data(free_block(&fs), &vec![0u8; 2 * bs]),
        Err(Error::Corrupt { .. })
    ));
    fs.write_data(Pblk(free_block(&fs).0 - 1), &vec![7u8; 2 * bs])
        .unwrap();
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn inodes_round_trip_through_a_transaction() {
    for (name, args, size) in crate::testfs::GEOMETRIES {
        let Some(img) = image(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut root = TxBlocks::inode(&tx, InodeNo::ROOT).unwrap();
        let t = crate::types::Timestamp {
            sec: 1_700_000_000,
            nsec: 123_456_789,
        };
        root.mtime = t;
        root.mode = (root.mode & !0o7777) | 0o750;
        TxBlocks::write_inode(&mut tx, &root).unwrap();
        // Readers still see the committed inode until commit.
        tx.commit().unwrap();
        let st = fs.stat(InodeNo::ROOT).unwrap();
        assert_eq!(st.perm, 0o750, "{name}");
        let with_ns = fs.sb().inode_size > 128;
        assert_eq!(st.mtime.sec, t.sec, "{name}");
        assert_eq!(st.mtime.nsec, if with_ns { t.nsec } else { 0 }, "{name}");
        fs.unmount().unwrap();
        img.fsck_clean();
        // e2fsprogs' view of the same inode.
        let st = img.debugfs("stat <2>");
        assert!(st.contains("Mode:  0750"), "{name}: {st}");
        let again = img.open_ro();
        assert_eq!(again.stat(InodeNo::ROOT).unwrap().perm, 0o750, "{name}");
    }
}

#[test]
fn misuse_of_the_locks_is_refused() {
    let Some(img) = image(&["-b", "1024"], "8M") else {
        return;
    };
    let fs = img.open_rw();
    {
        let _r = fs.read_guard().unwrap();
        assert!(matches!(fs.begin(Creds::ROOT), Err(Error::Internal(_))));
        assert!(matches!(fs.sync(), Err(Error::Internal(_))));
    }
    let tx = fs.begin(Creds::ROOT).unwrap();
    assert!(matches!(fs.read_guard(), Err(Error::Internal(_))));
    drop(tx);
    fs.unmount().unwrap();
}
