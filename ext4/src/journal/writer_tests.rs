//! The log writer: what it writes replays (by fsvc's replay in every
//! format, wrapping with checkpoints; by e2fsck on real images), and a
//! cut write stream leaves each transaction all there or not at all.

use std::collections::HashMap;
use std::sync::Arc;

use super::header::JBD2_MAGIC;
use super::recover::open_for_writing;
use super::testlog::{background, pattern, TestLog, FORMATS};
use super::writer::{log_blocks_needed, Committed, LogTransaction, LogWriter};
use crate::io::faulty::{AfterCut, FaultyChannel};
use crate::io::IoChannel;
use crate::num::Pblk;
use crate::super_fields::SuperFields;
use crate::superblock::{incompat, Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::testfs::{fsck_bytes, Image, GEOMETRIES};

const FS_BLOCKS: u64 = 3200;
const MAXLEN: u32 = 1024;

fn read(io: &Arc<dyn IoChannel>, bs: usize, b: u64) -> Vec<u8> {
    let mut v = vec![0u8; bs];
    io.read_at(b * bs as u64, &mut v).unwrap();
    v
}

/// A logged block's contents: a pattern, its first bytes the jbd2 magic
/// for every seventh seed (so escaping is exercised).
fn contents(bs: usize, seed: u64) -> Vec<u8> {
    let mut d = pattern(bs, seed);
    if seed % 7 == 0 {
        d[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
    }
    d
}

/// What a replay of the log must leave in block `b`: the newest live
/// logged copy not revoked by a later-or-same live transaction, else the
/// block's home contents.
fn expected(
    live: &[(Committed, LogTransaction)],
    home: &HashMap<u64, Vec<u8>>,
    b: u64,
    bs: usize,
) -> Vec<u8> {
    let revoked_at = live.iter().rposition(|(_, t)| t.revokes.contains(&Pblk(b)));
    let logged = live.iter().enumerate().rev().find_map(|(i, (_, t))| {
        t.blocks
            .iter()
            .find(|(p, _)| p.0 == b)
            .map(|(_, d)| (i, d.clone()))
    });
    match (logged, revoked_at) {
        (Some((i, d)), r) if r.is_none_or(|r| i > r) => d,
        _ => home
            .get(&b)
            .cloned()
            .unwrap_or_else(|| vec![background(b); bs]),
    }
}

#[test]
fn what_the_writer_commits_replays_in_every_format_across_wraps_and_checkpoints() {
    for &(name, compat, incompat) in FORMATS {
        for bs in [1024usize, 4096] {
            let ctx = format!("{name}/{bs}");
            let mut log = TestLog::new(bs, FS_BLOCKS, MAXLEN, compat, incompat);
            log.finish();
            let io = log.channel();
            let mut w = LogWriter::new(log.open(&io).unwrap()).unwrap();
            let first_tid = w.next_tid();
            let mut live: Vec<(Committed, LogTransaction)> = Vec::new();
            let mut home: HashMap<u64, Vec<u8>> = HashMap::new();
            let mut wraps = 0;
            let mut last_start = 0;
            for t in 0..40u64 {
                // 20..60 blocks among 1..1200, overlapping earlier ones.
                let n = 20 + (t * 13) % 41;
                let tx = LogTransaction {
                    blocks: (0..n)
                        .map(|i| {
                            let b = 1 + (t * 37 + i * 11) % 1200;
                            (Pblk(b), contents(bs, t * 1000 + i))
                        })
                        .collect::<HashMap<_, _>>()
                        .into_iter()
                        .collect(),
                    revokes: (0..t % 4).map(|i| Pblk(1 + (t * 53 + i) % 1200)).collect(),
                    sec: 1_700_000_000 + t,
                    nsec: 0,
                };
                while !w.fits(&tx) {
                    // Checkpoint the oldest: its blocks go home, flushed.
                    let (c, old) = live.remove(0);
                    for (p, d) in &old.blocks {
                        io.write_at(p.0 * bs as u64, d).unwrap();
                        home.insert(p.0, d.clone());
                    }
                    io.flush().unwrap();
                    w.checkpointed(c.tid).unwrap();
                }
                let c = w.commit(&tx).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(
                    u64::from(c.len),
                    log_blocks_needed(w.journal().superblock(), tx.blocks.len(), tx.revokes.len()),
                    "{ctx}"
                );
                if c.start < last_start {
                    wraps += 1;
                }
                last_start = c.start;
                live.push((c, tx));
            }
            assert!(wraps > 0, "{ctx}: the log never wrapped");
            assert!(!live.is_empty() && live[0].0.tid != first_tid, "{ctx}");

            // A crash now: a fresh open replays exactly the live transactions.
            let crashed: Arc<dyn IoChannel> =
                Arc::new(crate::io::MemChannel::new(read_all(&io, bs)));
            let j = log.open(&crashed).unwrap();
            assert!(j.needs_recovery(), "{ctx}");
            assert_eq!(j.superblock().start, live[0].0.start, "{ctx}");
            let r = j
                .replay(&log.targets())
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(r.first_tid, live[0].0.tid, "{ctx}");
            assert_eq!(r.transactions() as usize, live.len(), "{ctx}");
            for b in 1..1200 {
                assert!(
                    read(&crashed, bs, b) == expected(&live, &home, b, bs),
                    "{ctx}: block {b} after replay"
                );
            }

            // Everything checkpointed: the log is empty, nothing to replay.
            let last = live.last().unwrap().0.tid;
            w.checkpointed(last).unwrap();
            assert_eq!(w.used(), 0, "{ctx}");
            let j = log.open(&io).unwrap();
            assert!(!j.needs_recovery(), "{ctx}");
            assert_eq!(j.superblock().sequence, last.wrapping_add(1), "{ctx}");
        }
    }
}

fn read_all(io: &Arc<dyn IoChannel>, bs: usize) -> Vec<u8> {
    let mut v = vec![0u8; bs * FS_BLOCKS as usize];
    io.read_at(0, &mut v).unwrap();
    v
}

#[test]
fn a_cut_write_stream_leaves_a_transaction_whole_or_absent() {
    for &(name, compat, incompat) in FORMATS {
        let bs = 1024;
        let ctx = name;
        let mut log = TestLog::new(bs, FS_BLOCKS, MAXLEN, compat, incompat);
        log.finish();
        let base = log.channel();
        let t1 = LogTransaction {
            blocks: (0..5).map(|i| (Pblk(10 + i), contents(bs, i))).collect(),
            ..LogTransaction::default()
        };
        let t2 = LogTransaction {
            blocks: (0..5)
                .map(|i| (Pblk(12 + i), contents(bs, 70 + i)))
                .collect(),
            revokes: vec![Pblk(10)],
            sec: 5,
            nsec: 6,
        };
        // Writes of T1 (superblock + 1 descriptor + 5 + commit) and of T2
        // (1 revoke + 1 descriptor + 5 + commit).
        let (w1, w2) = (8u64, 8u64);
        for cut in 0..=w1 + w2 {
            let snap = Arc::new(crate::io::MemChannel::new(read_all(&base, bs)));
            let faulty = Arc::new(FaultyChannel::new(snap.clone()));
            faulty.stop_after_writes(cut, AfterCut::Drop);
            let io: Arc<dyn IoChannel> = faulty.clone();
            let mut w = LogWriter::new(log.open(&io).unwrap()).unwrap();
            let c1 = w.commit(&t1).unwrap();
            let c2 = w.commit(&t2).unwrap();
            assert_eq!(
                faulty.writes_done() + faulty.writes_lost(),
                w1 + w2,
                "{ctx}"
            );
            let dev: Arc<dyn IoChannel> = snap;
            let j = log.open(&dev).unwrap();
            let mut live = Vec::new();
            if cut >= w1 {
                live.push((c1, t1.clone()));
            }
            if cut >= w1 + w2 {
                live.push((c2, t2.clone()));
            }
            if j.needs_recovery() {
                let r = j
                    .replay(&log.targets())
                    .unwrap_or_else(|e| panic!("{ctx} cut {cut}: {e}"));
                assert_eq!(r.transactions() as usize, live.len(), "{ctx} cut {cut}");
            } else {
                assert_eq!(cut, 0, "{ctx}: s_start is written first");
            }
            for b in 8..20 {
                assert!(
                    read(&dev, bs, b) == expected(&live, &HashMap::new(), b, bs),
                    "{ctx} cut {cut}: block {b}"
                );
            }
        }
    }
}

/// `s_volume_name`.
const S_VOLUME_NAME: usize = 0x78;

/// The free blocks debugfs finds (e2fsprogs' view of the bitmaps).
fn free_blocks(img: &Image, n: usize) -> Vec<u64> {
    let out = img.debugfs(&format!("ffb {n}"));
    let list = out
        .split("Free blocks found: ")
        .nth(1)
        .unwrap_or_else(|| panic!("debugfs ffb: {out}"));
    let v: Vec<u64> = list
        .split_whitespace()
        .map_while(|w| w.parse().ok())
        .collect();
    assert_eq!(v.len(), n, "debugfs ffb: {out}");
    v
}

#[test]
fn e2fsck_replays_what_the_writer_commits_on_real_images() {
    let (mut v3, mut bit64) = (false, false);
    for &(name, args, size) in GEOMETRIES {
        if args.contains(&"ext2") {
            continue;
        }
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let io: Arc<dyn IoChannel> = img.mem.clone();
        let mut raw = vec![0u8; SUPERBLOCK_SIZE];
        io.read_at(SUPERBLOCK_OFFSET, &mut raw).unwrap();
        let sb = Superblock::parse(&raw, io.size()).unwrap();
        let bs = sb.block_size as usize;
        let free = free_blocks(&img, 3);
        let original: Vec<Vec<u8>> = free.iter().map(|&b| read(&io, bs, b)).collect();
        let mut w = open_for_writing(&io, &sb).unwrap();
        v3 |= w.journal().superblock().csum_v2or3();
        bit64 |= w.journal().superblock().bit64();

        // The superblock as the kernel journals it: needs_recovery set (and
        // here a new label), in its block.
        let sb_blk = sb.superblock_block();
        let off = (SUPERBLOCK_OFFSET % bs as u64) as usize;
        let mut fields = SuperFields::decode(&sb, &raw);
        fields.feature_incompat |= incompat::RECOVER;
        let mut dirty = raw.clone();
        fields.encode(&sb, &mut dirty).unwrap();
        let mut logged_sb = read(&io, bs, sb_blk.0);
        let mut relabelled = dirty.clone();
        relabelled[S_VOLUME_NAME..S_VOLUME_NAME + 16].copy_from_slice(b"fsvc-journal\0\0\0\0");
        fields.encode(&sb, &mut relabelled).unwrap();
        logged_sb[off..off + SUPERBLOCK_SIZE].copy_from_slice(&relabelled);

        let (a, b, c) = (free[0], free[1], free[2]);
        let escaped = contents(bs, 7);
        w.commit(&LogTransaction {
            blocks: vec![(Pblk(a), contents(bs, 1)), (Pblk(b), contents(bs, 2))],
            ..LogTransaction::default()
        })
        .unwrap();
        w.commit(&LogTransaction {
            blocks: vec![
                (Pblk(b), contents(bs, 3)),
                (Pblk(c), escaped.clone()),
                (sb_blk, logged_sb),
            ],
            revokes: vec![Pblk(a)],
            sec: 1_700_000_000,
            nsec: 1,
        })
        .unwrap();
        // The filesystem says its journal needs replaying.
        io.write_at(SUPERBLOCK_OFFSET, &dirty).unwrap();

        let path =
            std::env::temp_dir().join(format!("fsvc-writer-e2fsck-{}-{name}", std::process::id()));
        std::fs::write(&path, img.bytes()).unwrap();
        let out = std::process::Command::new("e2fsck")
            .arg("-fy")
            .arg(&path)
            .output()
            .expect("run e2fsck");
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("recovering journal"),
            "{name}: e2fsck did not replay: {said}"
        );
        // Exit 1: "errors corrected" is what a replay alone reports.
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{name}: e2fsck -fy: {said}"
        );
        let after = fsck_bytes(&bytes);
        assert_eq!(after.code, 0, "{name}: e2fsck -fn after: {}", after.output);
        let block = |n: u64| &bytes[n as usize * bs..(n as usize + 1) * bs];
        assert_eq!(block(a), &original[0][..], "{name}: revoked block replayed");
        assert_eq!(block(b), &contents(bs, 3)[..], "{name}: newest copy");
        assert_eq!(block(c), &escaped[..], "{name}: escaped block");
        let label = &bytes[SUPERBLOCK_OFFSET as usize + S_VOLUME_NAME..][..12];
        assert_eq!(label, b"fsvc-journal", "{name}: the logged superblock");
        let replayed = Superblock::parse(
            &bytes[SUPERBLOCK_OFFSET as usize..][..SUPERBLOCK_SIZE],
            bytes.len() as u64,
        )
        .unwrap();
        assert!(!replayed.has_incompat(incompat::RECOVER), "{name}");
    }
    assert!(v3 && bit64, "the geometries cover csum v3 and 64-bit tags");
}
