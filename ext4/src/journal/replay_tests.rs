//! Replay of synthetic journals in every format: what is written, what is
//! skipped, where the log ends, and what a damaged or hostile journal gets
//! (an error before any write, or the kernel's partial replay).

use std::sync::Arc;

use super::commit::COMMIT_STRUCT_SIZE;
use super::header::JBD2_MAGIC;
use super::replay::{LogEnd, Targets};
use super::superblock::feature;
use super::testlog::{background, pattern, Placed, TestLog, Tx, FORMATS, JOURNAL_START};
use crate::error::Error;
use crate::io::IoChannel;
use crate::num::Pblk;

/// Device blocks: the journal sits at 2048..3072, tests write below 2048.
const FS_BLOCKS: u64 = 3200;
const MAXLEN: u32 = 1024;

fn each_format(mut f: impl FnMut(&str, TestLog)) {
    for &(name, compat, incompat) in FORMATS {
        for bs in [1024usize, 4096] {
            f(
                &format!("{name}/{bs}"),
                TestLog::new(bs, FS_BLOCKS, MAXLEN, compat, incompat),
            );
        }
    }
}

fn tx(blocks: &[(u64, u64)], time: u64, bs: usize) -> Tx {
    Tx {
        blocks: blocks
            .iter()
            .map(|&(t, seed)| (t, pattern(bs, seed)))
            .collect(),
        time,
        ..Tx::default()
    }
}

/// Replays `log`'s device; returns the channel (to inspect) and the result.
fn replay(log: &mut TestLog) -> (Arc<dyn IoChannel>, crate::Result<super::Replay>) {
    log.finish();
    let io = log.channel();
    let j = log.open(&io).unwrap();
    let r = j.replay(&log.targets());
    (io, r)
}

fn block(io: &Arc<dyn IoChannel>, bs: usize, b: u64) -> Vec<u8> {
    let mut v = vec![0u8; bs];
    io.read_at(b * bs as u64, &mut v).unwrap();
    v
}

/// Asserts that every filesystem block outside the journal holds
/// `expect(b)`: the pattern written, or the background if untouched.
fn assert_fs(io: &Arc<dyn IoChannel>, log: &TestLog, written: &[(u64, u64)], ctx: &str) {
    let bs = log.bs;
    for b in 0..log.fs_blocks {
        if (JOURNAL_START..JOURNAL_START + u64::from(log.sb.maxlen)).contains(&b) {
            continue;
        }
        let got = block(io, bs, b);
        match written.iter().rev().find(|(t, _)| *t == b) {
            Some(&(_, seed)) => assert!(got == pattern(bs, seed), "{ctx}: block {b} not replayed"),
            None => assert!(
                got.iter().all(|&x| x == background(b)),
                "{ctx}: block {b} written"
            ),
        }
    }
}

#[test]
fn replays_every_format_with_later_transactions_winning() {
    each_format(|ctx, mut log| {
        let bs = log.bs;
        log.write(&tx(&[(100, 1), (101, 2), (1500, 3)], 10, bs));
        log.write(&tx(&[(101, 4), (102, 5)], 11, bs));
        // Enough blocks for several descriptor blocks in one transaction.
        let many: Vec<(u64, u64)> = (0..300).map(|i| (200 + i, 1000 + i)).collect();
        log.write(&tx(&many, 12, bs));
        let (io, r) = replay(&mut log);
        let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(
            (r.first_tid, r.end_tid, r.transactions()),
            (7, 10, 3),
            "{ctx}"
        );
        assert_eq!(r.blocks_written, 305, "{ctx}");
        assert_eq!(r.end, Some(LogEnd::NoMagic { block: log.pos }), "{ctx}");
        assert_eq!(r.log_blocks, log.pos - 1, "{ctx}");
        assert!(!r.wrapped, "{ctx}");
        let mut all = vec![(100, 1), (101, 2), (1500, 3), (101, 4), (102, 5)];
        all.extend(many);
        assert_fs(&io, &log, &all, ctx);
    });
}

#[test]
fn escaped_blocks_get_their_magic_back() {
    each_format(|ctx, mut log| {
        let bs = log.bs;
        let mut data = pattern(bs, 9);
        data[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
        let p = log.write(&Tx {
            blocks: vec![(300, data.clone())],
            time: 1,
            ..Tx::default()
        });
        // In the journal the magic is zeroed, so the walk does not take the
        // block for a header.
        assert_eq!(&log.dev[log.jrange(p.data[0])][..4], &[0, 0, 0, 0], "{ctx}");
        let (io, r) = replay(&mut log);
        r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(block(&io, bs, 300), data, "{ctx}");
    });
}

#[test]
fn the_log_wraps_around_the_end_of_the_journal() {
    each_format(|ctx, mut log| {
        let bs = log.bs;
        log.start_at(MAXLEN - 5, 0xFFFF_FFFE);
        let a: Vec<(u64, u64)> = (0..8).map(|i| (400 + i, i)).collect();
        let b: Vec<(u64, u64)> = (0..8).map(|i| (500 + i, 50 + i)).collect();
        log.write(&tx(&a, 5, bs));
        log.write(&tx(&b, 6, bs));
        assert!(log.pos < MAXLEN - 5, "{ctx}: the test log did not wrap");
        let (io, r) = replay(&mut log);
        let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        // Transaction IDs wrap too.
        assert_eq!((r.first_tid, r.end_tid), (0xFFFF_FFFE, 0), "{ctx}");
        assert!(r.wrapped, "{ctx}");
        assert_eq!(r.blocks_written, 16, "{ctx}");
        let all: Vec<(u64, u64)> = a.into_iter().chain(b).collect();
        assert_fs(&io, &log, &all, ctx);
    });
}

#[test]
fn revoked_blocks_are_not_replayed_from_older_or_the_same_transaction() {
    each_format(|ctx, mut log| {
        let bs = log.bs;
        // T7 logs 600, 601, 602. T8 revokes 600 and logs 601 again and
        // revokes it in the same transaction. T9 logs 600 anew (after the
        // revoke: replayed) and revokes 602 (logged in T7: not replayed).
        log.write(&tx(&[(600, 1), (601, 2), (602, 3)], 1, bs));
        let mut t8 = tx(&[(601, 4)], 2, bs);
        t8.revokes = vec![600, 601];
        log.write(&t8);
        let mut t9 = tx(&[(600, 5)], 3, bs);
        // And a block past 2^32 where records are 64-bit (never logged).
        let far = if log.sb.bit64() { 1 << 40 } else { 3100 };
        t9.revokes = vec![602, far];
        log.write(&t9);
        let (io, r) = replay(&mut log);
        let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(r.revoke_records, 4, "{ctx}");
        assert_eq!(
            r.revoked_skipped, 4,
            "{ctx}: T7's 600, 601 and 602, T8's 601"
        );
        assert_eq!(r.blocks_written, 1, "{ctx}");
        assert_fs(&io, &log, &[(600, 5)], ctx);
    });
}

#[test]
fn an_uncommitted_transaction_is_not_replayed() {
    each_format(|ctx, mut log| {
        let bs = log.bs;
        log.write(&tx(&[(700, 1)], 1, bs));
        let mut cut = tx(&[(701, 2)], 2, bs);
        cut.no_commit = true;
        log.write(&cut);
        let (io, r) = replay(&mut log);
        let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(r.end_tid, 8, "{ctx}");
        assert_fs(&io, &log, &[(700, 1)], ctx);
    });
}

#[test]
fn a_block_of_another_transaction_ends_the_log() {
    each_format(|ctx, mut log| {
        let bs = log.bs;
        log.write(&tx(&[(710, 1)], 1, bs));
        let p = log.write(&tx(&[(711, 2)], 2, bs));
        // T8's commit block claims to belong to T9.
        let c = log.jrange(p.commit.unwrap());
        log.dev[c.start + 8..c.start + 12].copy_from_slice(&9u32.to_be_bytes());
        let (io, r) = replay(&mut log);
        let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(r.end_tid, 8, "{ctx}");
        assert!(
            matches!(r.end, Some(LogEnd::OtherTransaction { found: 9, .. })),
            "{ctx}: {:?}",
            r.end
        );
        assert_fs(&io, &log, &[(710, 1)], ctx);
    });
}

/// Flips a byte of a commit block's checksum-covered area.
fn damage_commit(log: &mut TestLog, p: &Placed) {
    let c = log.jrange(p.commit.unwrap());
    // h_commit_nsec: covered by v2/v3, and the v1 sum is over other blocks,
    // so for v1 damage the stored sum itself.
    if log.sb.csum_v1() {
        log.dev[c.start + 0x10] ^= 0xFF;
    } else {
        log.dev[c.start + 0x3A] ^= 0xFF;
    }
}

fn checksummed(log: &TestLog) -> bool {
    log.sb.csum_v1() || log.sb.csum_v2or3()
}

#[test]
fn a_bad_commit_checksum_refuses_without_writing_or_ends_an_async_log() {
    each_format(|ctx, mut log| {
        if !checksummed(&log) {
            return;
        }
        let bs = log.bs;
        log.write(&tx(&[(800, 1)], 1, bs));
        let p = log.write(&tx(&[(801, 2)], 2, bs));
        damage_commit(&mut log, &p);
        let before = log.dev.clone();
        let (io, r) = replay(&mut log);
        if log.sb.async_commit() {
            let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(r.end_tid, 8, "{ctx}: the bad transaction is dropped");
            assert_eq!(r.end, Some(LogEnd::AsyncCommitChecksum { tid: 8 }), "{ctx}");
            assert_fs(&io, &log, &[(800, 1)], ctx);
        } else {
            let e = r.expect_err(ctx);
            assert!(e.to_string().contains("transaction 8"), "{ctx}: {e}");
            let mut now = vec![0u8; before.len()];
            io.read_at(0, &mut now).unwrap();
            assert!(now == log.dev, "{ctx}: something was written");
        }
    });
}

#[test]
fn an_async_bad_commit_followed_by_another_commit_is_corruption() {
    each_format(|ctx, mut log| {
        if !(checksummed(&log) && log.sb.async_commit()) {
            return;
        }
        let bs = log.bs;
        let p = log.write(&tx(&[(810, 1)], 1, bs));
        log.write(&tx(&[(811, 2)], 2, bs));
        damage_commit(&mut log, &p);
        let (_, r) = replay(&mut log);
        let e = r.expect_err(ctx);
        assert!(e.to_string().contains("transaction 7"), "{ctx}: {e}");
    });
}

#[test]
fn a_commit_block_torn_after_its_header_is_accepted() {
    each_format(|ctx, mut log| {
        if !log.sb.csum_v2or3() {
            return;
        }
        let bs = log.bs;
        log.write(&tx(&[(820, 1)], 1, bs));
        // Recompute T8's commit checksum over its header alone, then put
        // garbage after the header: what a torn write of the block leaves.
        let p = log.write(&tx(&[(821, 2)], 2, bs));
        let c = log.jrange(p.commit.unwrap());
        let seed = log.sb.csum_seed();
        let mut head = log.dev[c.clone()].to_vec();
        head[COMMIT_STRUCT_SIZE..].fill(0);
        super::commit::set_csum(seed, &mut head);
        head[COMMIT_STRUCT_SIZE..].fill(0xEE);
        log.dev[c].copy_from_slice(&head);
        let (io, r) = replay(&mut log);
        let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!((r.end_tid, r.partial_commits), (9, 1), "{ctx}");
        assert_fs(&io, &log, &[(820, 1), (821, 2)], ctx);
    });
}

#[test]
fn a_block_failing_its_tag_checksum_is_skipped_and_recovery_fails() {
    each_format(|ctx, mut log| {
        if !log.sb.csum_v2or3() {
            return;
        }
        let bs = log.bs;
        let p = log.write(&tx(&[(830, 1), (831, 2), (832, 3)], 1, bs));
        let d = log.jrange(p.data[1]);
        log.dev[d.start + 100] ^= 1;
        let (io, r) = replay(&mut log);
        let e = r.expect_err(ctx);
        assert!(matches!(e, Error::Checksum { .. }), "{ctx}: {e}");
        assert!(e.to_string().contains("block 831"), "{ctx}: {e}");
        // The others were replayed (and flushed), as the kernel does.
        assert_fs(&io, &log, &[(830, 1), (832, 3)], ctx);
    });
}

#[test]
fn a_bad_descriptor_checksum_is_stale_data_or_corruption_by_commit_time() {
    each_format(|ctx, log| {
        if !log.sb.csum_v2or3() {
            return;
        }
        let bs = log.bs;
        for (later_time, corrupt) in [(5u64, true), (1, false)] {
            let mut log = TestLog::new(
                bs,
                FS_BLOCKS,
                MAXLEN,
                log.sb.feature_compat,
                log.sb.feature_incompat,
            );
            log.write(&tx(&[(840, 1)], 3, bs));
            let p = log.write(&tx(&[(841, 2)], later_time, bs));
            let d = log.jrange(p.descriptors[0]);
            log.dev[d.start + 20] ^= 1;
            let before = log.dev.clone();
            let (io, r) = replay(&mut log);
            if corrupt {
                let e = r.expect_err(ctx);
                assert!(matches!(e, Error::Checksum { .. }), "{ctx}: {e}");
                let mut now = vec![0u8; before.len()];
                io.read_at(0, &mut now).unwrap();
                assert!(now == log.dev, "{ctx}: something was written");
            } else {
                let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(r.end, Some(LogEnd::Stale { tid: 8 }), "{ctx}");
                assert_fs(&io, &log, &[(840, 1)], ctx);
            }
        }
    });
}

#[test]
fn targets_outside_the_filesystem_or_in_the_journal_refuse_before_any_write() {
    each_format(|ctx, log0| {
        let bs = log0.bs;
        let (c, i) = (log0.sb.feature_compat, log0.sb.feature_incompat);
        let mut bad = vec![0u64, JOURNAL_START, JOURNAL_START + 10];
        if log0.sb.bit64() {
            bad.push(FS_BLOCKS);
            bad.push(u64::MAX);
        }
        for target in bad {
            let mut log = TestLog::new(bs, FS_BLOCKS, MAXLEN, c, i);
            log.write(&tx(&[(900, 1)], 1, bs));
            log.write(&tx(&[(901, 2), (target, 3)], 2, bs));
            let (io, r) = replay(&mut log);
            let e = r.expect_err(&format!("{ctx}: target {target}"));
            assert!(
                e.to_string().contains(&format!("block {target}")),
                "{ctx}: {e}"
            );
            assert_fs(&io, &log, &[], &format!("{ctx}: target {target}"));
            // The same target in a transaction never committed is ignored.
            let mut log = TestLog::new(bs, FS_BLOCKS, MAXLEN, c, i);
            log.write(&tx(&[(900, 1)], 1, bs));
            let mut cut = tx(&[(target, 3)], 2, bs);
            cut.no_commit = true;
            log.write(&cut);
            let (io, r) = replay(&mut log);
            r.unwrap_or_else(|e| panic!("{ctx}: uncommitted target {target}: {e}"));
            assert_fs(&io, &log, &[(900, 1)], ctx);
        }
    });
}

#[test]
fn a_logged_superblock_that_grows_the_filesystem_raises_the_limit() {
    let mut log = TestLog::new(1024, FS_BLOCKS, MAXLEN, 0, feature::incompat::REVOKE);
    // Block 1 plays the superblock: its first 8 bytes are the block count.
    let mut sb = vec![0u8; 1024];
    sb[..8].copy_from_slice(&FS_BLOCKS.to_le_bytes());
    let mut grown = Tx {
        blocks: vec![(1, sb), (1800, pattern(1024, 1))],
        time: 1,
        ..Tx::default()
    };
    log.write(&grown.clone());
    log.finish();
    let count_of = |b: &[u8]| Some(u64::from_le_bytes(b[..8].try_into().unwrap()));
    let limit = 1500;
    let targets = Targets {
        first: Pblk(1),
        limit,
        superblock: Some((Pblk(1), &count_of)),
    };
    let io = log.channel();
    let j = log.open(&io).unwrap();
    let r = j.replay(&targets).unwrap();
    assert_eq!(r.blocks_written, 2);
    // Without the logged superblock, block 1800 is past the end.
    grown.blocks.remove(0);
    let mut log = TestLog::new(1024, FS_BLOCKS, MAXLEN, 0, feature::incompat::REVOKE);
    log.write(&grown);
    log.finish();
    let io = log.channel();
    let j = log.open(&io).unwrap();
    let e = j.replay(&targets).unwrap_err();
    assert!(e.to_string().contains("past the end"), "{e}");
}

#[test]
fn a_log_that_never_ends_is_refused_not_followed_forever() {
    each_format(|ctx, mut log| {
        let bs = log.bs;
        // Every block of the log area a descriptor of the same transaction,
        // each with one tag: the walk would go round forever.
        let one = log.write(&Tx {
            blocks: vec![(1000, pattern(bs, 1))],
            no_commit: true,
            ..Tx::default()
        });
        let desc = log.dev[log.jrange(one.descriptors[0])].to_vec();
        for j in 1..MAXLEN {
            let r = log.jrange(j);
            log.dev[r].copy_from_slice(&desc);
        }
        let before = log.dev.clone();
        let (io, r) = replay(&mut log);
        let e = r.expect_err(ctx);
        assert!(e.to_string().contains("runs on"), "{ctx}: {e}");
        let mut now = vec![0u8; before.len()];
        io.read_at(0, &mut now).unwrap();
        assert!(now == log.dev, "{ctx}: something was written");
    });
}

#[test]
fn a_revoke_count_past_the_block_is_corruption() {
    each_format(|ctx, mut log| {
        let bs = log.bs;
        let mut t = tx(&[(1100, 1)], 1, bs);
        t.revokes = vec![5];
        let p = log.write(&t);
        let r = log.jrange(p.revokes[0]);
        log.dev[r.start + 12..r.start + 16].copy_from_slice(&(bs as u32 + 1).to_be_bytes());
        if log.sb.csum_v2or3() {
            super::csum::set_tail(log.sb.csum_seed(), &mut log.dev[r]);
        }
        let (_, res) = replay(&mut log);
        let e = res.expect_err(ctx);
        assert!(e.to_string().contains("r_count"), "{ctx}: {e}");
    });
}

#[test]
fn a_clean_journal_replays_nothing() {
    let mut log = TestLog::new(4096, FS_BLOCKS, MAXLEN, 0, feature::incompat::REVOKE);
    log.write(&tx(&[(1200, 1)], 1, 4096));
    log.sb.start = 0;
    let (io, r) = replay(&mut log);
    let r = r.unwrap();
    assert_eq!((r.transactions(), r.blocks_written), (0, 0));
    assert_fs(&io, &log, &[], "clean");
}

#[test]
fn mark_empty_leaves_the_superblock_as_jbd2_does() {
    let mut log = TestLog::new(4096, FS_BLOCKS, MAXLEN, 0, feature::incompat::CSUM_V3);
    log.write(&tx(&[(1300, 1)], 1, 4096));
    log.sb.errno = -5;
    let (io, r) = replay(&mut log);
    let r = r.unwrap();
    let mut j = log.open(&io).unwrap();
    assert_eq!(r.head, log.pos, "the head is past the last commit block");
    j.mark_empty(r.end_tid.wrapping_add(1), r.head).unwrap();
    let j = log.open(&io).unwrap();
    let sb = j.superblock();
    assert_eq!(
        (sb.start, sb.sequence, sb.head, sb.errno),
        (0, 9, log.pos, 0)
    );
    assert!(!j.needs_recovery());
}
