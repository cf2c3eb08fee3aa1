//! A randomized test of the inode allocator on real mkfs-made images:
//! random allocations (files and directories, under the root, an owned
//! directory or any inode) and frees, committed or aborted, against a
//! model of the inodes owned. Every inode handed out is free in the model
//! and at least `s_first_ino`; the free and directory counts follow the
//! model in the transaction and after commit; e2fsck finds exactly the
//! owned inodes marked in use and nothing else wrong.

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::error::{Error, Space};
use crate::inode::{S_IFDIR, S_IFREG};
use crate::num::{GroupNo, InodeNo};
use crate::testfs::{alloc_cases, Image};
use crate::tx::{Creds, Tx};

/// One step of a random inode allocation sequence.
#[derive(Debug, Clone)]
enum Op {
    /// Allocate a directory (`dir`) or a file under a parent chosen by
    /// `parent`: 0 the root, odd an owned directory, even any inode number.
    Alloc {
        dir: bool,
        parent: u32,
    },
    /// Free an owned inode (index modulo the owned ones).
    Free {
        index: usize,
    },
    Commit,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 0u32..1000).prop_map(|(dir, parent)| Op::Alloc { dir, parent }),
        3 => any::<usize>().prop_map(|index| Op::Free { index }),
        1 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

/// The images the random test starts from (made once each): few inodes
/// per group so groups fill up, uninitialized groups are reached and the
/// allocator runs out; with flex groups and metadata_csum, and without.
fn base_images() -> &'static [Image] {
    static BASE: std::sync::OnceLock<Vec<Image>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        [
            (&["-b", "1024", "-g", "2048", "-N", "64"][..], "8M"),
            (
                &[
                    "-b",
                    "4096",
                    "-O",
                    "^flex_bg,^metadata_csum",
                    "-g",
                    "1024",
                    "-N",
                    "64",
                ][..],
                "16M",
            ),
        ]
        .iter()
        .filter_map(|(args, size)| Image::mkfs(args, size))
        .collect()
    })
}

/// Directories counted by the descriptors, as `tx` sees them.
fn dirs_in(tx: &Tx<'_>) -> u64 {
    (0..tx.sb().group_count)
        .map(|g| u64::from(tx.group(GroupNo(g)).unwrap().used_dirs))
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: alloc_cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_inode_alloc_and_free_agree_with_a_model(
        geometry in 0usize..2,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let Some(base) = base_images().get(geometry) else { return Ok(()); };
        let img = base.copy();
        let fs = img.open_rw();
        let sb = fs.sb();
        let ifree0 = u64::from(fs.super_fields().free_inodes);
        let dirs0 = dirs_in(&fs.begin(Creds::ROOT).unwrap());
        // Committed and in-transaction models: (inode, is a directory).
        let mut committed: Vec<(InodeNo, bool)> = Vec::new();
        let mut owned = committed.clone();
        let mut tx = None;
        for op in ops {
            let t = tx.get_or_insert_with(|| fs.begin(Creds::ROOT).unwrap());
            match op {
                Op::Alloc { dir, parent } => {
                    let dirs: Vec<InodeNo> =
                        owned.iter().filter(|o| o.1).map(|o| o.0).collect();
                    let parent = match parent {
                        0 => InodeNo::ROOT,
                        p if p % 2 == 1 && !dirs.is_empty() => dirs[p as usize % dirs.len()],
                        p => InodeNo(1 + p * 7919 % sb.inodes_count),
                    };
                    let mode = if dir { S_IFDIR | 0o755 } else { S_IFREG | 0o644 };
                    match t.alloc_inode(parent, mode) {
                        Ok(ino) => {
                            prop_assert!(ino >= sb.first_ino && ino.0 <= sb.inodes_count, "{ino}");
                            prop_assert!(owned.iter().all(|o| o.0 != ino), "{ino} handed out twice");
                            // The slot is initialized (inside `itable_unused`) and zeroed.
                            let (blk, off) = t.inode_slot(ino).unwrap();
                            let isz = usize::from(sb.inode_size);
                            prop_assert!(t.get(blk).unwrap()[off..off + isz].iter().all(|&b| b == 0), "{} not zeroed", ino);
                            owned.push((ino, dir));
                        }
                        Err(Error::NoSpace(Space::Inodes)) => {
                            prop_assert_eq!(t.free_inodes_count(), 0, "ran out with inodes free");
                        }
                        Err(e) => prop_assert!(false, "alloc_inode: {e}"),
                    }
                }
                Op::Free { index } => {
                    if owned.is_empty() {
                        continue;
                    }
                    let (ino, dir) = owned.swap_remove(index % owned.len());
                    let mode = if dir { S_IFDIR } else { S_IFREG };
                    t.free_inode(ino, mode).unwrap();
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
            let want_dirs = dirs0 + owned.iter().filter(|o| o.1).count() as u64;
            let t = tx.get_or_insert_with(|| fs.begin(Creds::ROOT).unwrap());
            prop_assert_eq!(t.free_inodes_count(), ifree0 - owned.len() as u64);
            prop_assert_eq!(dirs_in(t), want_dirs);
        }
        if let Some(t) = tx.take() {
            t.commit().unwrap();
        }
        prop_assert_eq!(u64::from(fs.super_fields().free_inodes), ifree0 - owned.len() as u64);
        prop_assert_eq!(fs.statfs().files_free, ifree0 - owned.len() as u64);
        fs.unmount().unwrap();
        let r = img.fsck();
        let mut want: Vec<i64> = owned.iter().map(|o| -i64::from(o.0 .0)).collect();
        let mut got = r.bitmap_differences("Inode");
        want.sort_unstable();
        got.sort_unstable();
        prop_assert_eq!(got, want, "{}", r.output);
        let distinct: BTreeSet<_> = owned.iter().map(|o| o.0).collect();
        prop_assert_eq!(distinct.len(), owned.len());
        let odd = r.unexpected(&[
            "Inode bitmap differences",
            "Free inodes count wrong",
            "Directories count wrong",
        ]);
        prop_assert!(odd.is_empty(), "{:?}\n{}", odd, r.output);
    }
}
