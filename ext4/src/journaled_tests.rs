//! Tests of journaled writes on real mkfs-made images: the superblock says
//! needs_recovery exactly while mounted read-write; a synced change lives
//! in the log until checkpointed and survives a crash (replayed by our
//! recovery and by e2fsck); a freed block is not reused before the journal
//! commit that frees it, and a freed metadata block gets a revoke record
//! so that replay never writes it over its next owner's data; a
//! transaction too large for the journal is refused whole; and a crash
//! sweep: a workload's write stream cut after every write (a sample on
//! long streams) always replays to one of the states the workload
//! committed, never older than its last sync.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use crate::io::faulty::{AfterCut, FaultyChannel};
use crate::io::mem::MemChannel;
use crate::io::IoChannel;
use crate::journal::{recover, Recovery};
use crate::num::{InodeNo, Pblk};
use crate::superblock::{incompat, SUPERBLOCK_OFFSET};
use crate::testfs::{fsck_bytes, Image};
use crate::tx::{AllocKind, Creds};
use crate::{Fs, OpenOptions};

/// The journaled geometries of `testfs::GEOMETRIES` and a 64bit one with
/// checksum v3 and 64-bit tags.
const JOURNALED: &[(&str, &[&str], &str)] = &[
    ("ext4-1k", &["-b", "1024"], "16M"),
    ("ext4-4k-64bit", &["-b", "4096", "-O", "64bit"], "64M"),
    (
        "ext4-1k-nocsum",
        &["-b", "1024", "-O", "^metadata_csum,uninit_bg"],
        "16M",
    ),
    ("ext3-1k", &["-t", "ext3", "-b", "1024"], "16M"),
];

/// Owner of test allocations.
const OWNER: InodeNo = InodeNo(12);

fn needs_recovery(bytes: &[u8]) -> bool {
    let off = SUPERBLOCK_OFFSET as usize + 0x60;
    let v = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
    v & incompat::RECOVER != 0
}

fn open_rw_on(io: Arc<dyn IoChannel>) -> Fs {
    Fs::open(io, &OpenOptions::default()).expect("open read-write")
}

/// Our recovery on a copy of `bytes`; the recovered bytes.
fn replay_ours(bytes: &[u8]) -> Vec<u8> {
    let mem = Arc::new(MemChannel::new(bytes.to_vec()));
    let io: Arc<dyn IoChannel> = mem.clone();
    recover(&io).expect("our recovery");
    mem.snapshot()
}

/// e2fsck's journal replay alone (`-E journal_only`) on a copy of `bytes`.
fn replay_e2fsck(bytes: &[u8]) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!(
        "fsvc-journal-replay-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("e2fsck")
        .args(["-E", "journal_only", "-y"])
        .arg(&path)
        .output()
        .expect("run e2fsck");
    let back = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.code().unwrap_or(8) < 4,
        "e2fsck -E journal_only: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    back
}

fn root_uid(bytes: &[u8]) -> u32 {
    let fs = Fs::open(
        Arc::new(MemChannel::new(bytes.to_vec())),
        &OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .expect("open the replayed image");
    fs.inode(InodeNo::ROOT).unwrap().uid
}

/// Sets the root directory's owner in one transaction.
fn set_root_uid(fs: &Fs, uid: u32) {
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let mut root = tx.inode(InodeNo::ROOT).unwrap();
    root.uid = uid;
    tx.write_inode(&root).unwrap();
    tx.commit().unwrap();
}

#[test]
fn needs_recovery_is_set_exactly_while_mounted() {
    for (name, args, size) in JOURNALED {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        assert!(!needs_recovery(&img.bytes()), "{name}: fresh");
        let fs = img.open_rw();
        assert!(fs.is_journaled(), "{name}");
        assert!(needs_recovery(&img.bytes()), "{name}: mounted");
        set_root_uid(&fs, 4242);
        fs.sync().unwrap();
        let st = fs.journal_stats().unwrap();
        assert!(st.commits >= 1 && st.live >= 1, "{name}: {st:?}");
        fs.unmount().unwrap();
        let bytes = img.bytes();
        assert!(!needs_recovery(&bytes), "{name}: unmounted");
        img.fsck_clean();
        assert_eq!(root_uid(&bytes), 4242, "{name}");
        let stat = img.debugfs("stat /");
        assert!(stat.contains("User:  4242"), "{name}: {stat}");
        let dump = img.debugfs("logdump");
        assert!(dump.contains("Journal starts at block 0"), "{name}: {dump}");
    }
}

#[test]
fn ext2_is_not_journaled() {
    let Some(img) = Image::mkfs(&["-t", "ext2"], "8M") else {
        return;
    };
    let fs = img.open_rw();
    assert!(!fs.is_journaled());
    assert!(!needs_recovery(&img.bytes()));
    set_root_uid(&fs, 7);
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn a_synced_change_is_in_the_log_and_survives_a_crash() {
    for (name, args, size) in JOURNALED {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let fs = img.open_rw();
        set_root_uid(&fs, 1001);
        fs.sync().unwrap();
        // A change after the sync, never synced: lost in the crash.
        set_root_uid(&fs, 1002);
        let crashed = img.bytes();
        drop(fs);
        assert!(needs_recovery(&crashed), "{name}");
        let logdump = Image {
            mem: Arc::new(MemChannel::new(crashed.clone())),
            args: vec![],
        }
        .debugfs("logdump");
        assert!(
            logdump.contains("Found expected sequence"),
            "{name}: the log holds a transaction:\n{logdump}"
        );
        let ours = replay_ours(&crashed);
        let theirs = replay_e2fsck(&crashed);
        for (who, bytes) in [("fsvc", &ours), ("e2fsck", &theirs)] {
            let r = fsck_bytes(bytes);
            assert_eq!(r.code, 0, "{name}, replayed by {who}:\n{}", r.output);
            assert_eq!(root_uid(bytes), 1001, "{name}, replayed by {who}");
        }
    }
}

#[test]
fn freed_blocks_wait_for_the_journal_commit() {
    let Some(img) = Image::mkfs(&["-b", "1024"], "16M") else {
        return;
    };
    let fs = img.open_rw();
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let (b, _) = tx.alloc_blocks(Pblk(0), 1, OWNER, AllocKind::Data).unwrap();
    tx.commit().unwrap();
    fs.sync().unwrap();
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    tx.free_blocks(b, 1, AllocKind::Data).unwrap();
    tx.commit().unwrap();
    // Committed, not yet journaled: not handed out, and modify refuses it.
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let (again, _) = tx.alloc_blocks(b, 1, OWNER, AllocKind::Data).unwrap();
    assert_ne!(again, b, "reused before the journal commit");
    assert!(tx.modify(b).is_err());
    tx.abort();
    fs.sync().unwrap();
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let (later, _) = tx.alloc_blocks(b, 1, OWNER, AllocKind::Data).unwrap();
    assert_eq!(later, b, "reusable once the freeing commit is durable");
    tx.free_blocks(later, 1, AllocKind::Data).unwrap();
    tx.commit().unwrap();
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn a_freed_metadata_block_is_revoked_and_never_replayed_over_data() {
    for (name, args, size) in JOURNALED {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let fs = img.open_rw();
        let bs = fs.block_size() as usize;
        // A metadata block, logged.
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let (x, _) = tx.alloc_blocks(Pblk(0), 1, OWNER, AllocKind::Meta).unwrap();
        tx.new_block(x).unwrap().fill(0x4D);
        tx.commit().unwrap();
        fs.sync().unwrap();
        // Freed, the free journaled: a revoke record.
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        tx.free_blocks(x, 1, AllocKind::Meta).unwrap();
        tx.commit().unwrap();
        fs.sync().unwrap();
        let st = fs.journal_stats().unwrap();
        assert!(st.revokes >= 1, "{name}: {st:?}");
        // Reused for file data, written past the log.
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let (y, _) = tx.alloc_blocks(x, 1, OWNER, AllocKind::Data).unwrap();
        assert_eq!(y, x, "{name}");
        tx.commit().unwrap();
        fs.write_data(x, &vec![0xDA; bs]).unwrap();
        fs.sync().unwrap();
        let crashed = img.bytes();
        drop(fs);
        for (who, bytes) in [
            ("fsvc", replay_ours(&crashed)),
            ("e2fsck", replay_e2fsck(&crashed)),
        ] {
            let at = x.0 as usize * bs;
            assert!(
                bytes[at..at + bs].iter().all(|&b| b == 0xDA),
                "{name}: replay by {who} wrote the revoked block over its data"
            );
            // Allocated, owned by nobody: e2fsck's only complaint.
            let r = fsck_bytes(&bytes);
            assert_eq!(
                r.bitmap_differences("Block"),
                vec![-(x.0 as i64)],
                "{name}, {who}:\n{}",
                r.output
            );
        }
    }
}

#[test]
fn a_transaction_too_large_for_the_journal_is_refused_whole() {
    let Some(img) = Image::mkfs(&["-b", "1024", "-J", "size=1"], "16M") else {
        return;
    };
    let fs = img.open_rw();
    let before = fs.dev().dirty_blocks();
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    let mut n = 0;
    let mut b = fs.sb().blocks_count - 1;
    // More free, non-system blocks than one commit can carry (1 MiB log).
    while n < 1100 {
        if fs.zones().is_clear(Pblk(b), 1) {
            tx.new_block(Pblk(b)).unwrap()[0] = 1;
            n += 1;
        }
        b -= 1;
    }
    let err = tx.commit().unwrap_err();
    assert!(err.to_string().contains("journal"), "{err}");
    assert_eq!(fs.dev().dirty_blocks(), before, "nothing installed");
    set_root_uid(&fs, 5);
    fs.unmount().unwrap();
    img.fsck_clean();
}

#[test]
fn many_operations_commit_the_journal_on_their_own() {
    let Some(img) = Image::mkfs(&["-b", "1024", "-J", "size=1"], "16M") else {
        return;
    };
    let fs = img.open_rw();
    let mut runs = Vec::new();
    for _ in 0..600 {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let r = tx.alloc_blocks(Pblk(0), 1, OWNER, AllocKind::Meta).unwrap();
        tx.new_block(r.0).unwrap().fill(0x11);
        tx.commit().unwrap();
        runs.push(r);
    }
    let st = fs.journal_stats().unwrap();
    assert!(st.commits >= 2, "{st:?}");
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    for (s, n) in runs {
        tx.free_blocks(s, u64::from(n), AllocKind::Meta).unwrap();
    }
    tx.commit().unwrap();
    fs.unmount().unwrap();
    img.fsck_clean();
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the crash workload committed: after each step, the blocks
/// allocated and not freed, and the root's uid (the step's number).
#[derive(Debug, Clone)]
struct Committed {
    uid: u32,
    allocated: BTreeSet<u64>,
}

/// Steps of the crash workload.
const STEPS: u32 = 24;

/// The workload: each step allocates a few runs, frees an earlier one
/// every other step and sets the root's uid to the step number, in one
/// transaction; every third step syncs. Returns the states after each
/// step (index 0: before any) and, per sync, (step, the channel's writes
/// done when the sync returned).
fn workload(fs: &Fs, io: &FaultyChannel) -> (Vec<Committed>, Vec<(u32, u64)>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut runs: Vec<(Pblk, u32)> = Vec::new();
    let uid0 = fs.inode(InodeNo::ROOT).unwrap().uid;
    let mut states = vec![Committed {
        uid: uid0,
        allocated: BTreeSet::new(),
    }];
    let mut syncs = Vec::new();
    for step in 1..=STEPS {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        for _ in 0..1 + rng.below(3) {
            let len = 1 + rng.below(8) as u32;
            let kind = if rng.below(2) == 0 {
                AllocKind::Data
            } else {
                AllocKind::Meta
            };
            let r = tx.alloc_blocks(Pblk(0), len, OWNER, kind).unwrap();
            if kind == AllocKind::Meta {
                for b in r.0 .0..r.0 .0 + u64::from(r.1) {
                    tx.new_block(Pblk(b)).unwrap().fill(step as u8);
                }
            }
            runs.push(r);
        }
        if step % 2 == 0 && runs.len() > 1 {
            let i = rng.below(runs.len() as u64 - 1) as usize;
            let (s, n) = runs.remove(i);
            tx.free_blocks(s, u64::from(n), AllocKind::Meta).unwrap();
        }
        let mut root = tx.inode(InodeNo::ROOT).unwrap();
        root.uid = 50_000 + step;
        tx.write_inode(&root).unwrap();
        tx.commit().unwrap();
        states.push(Committed {
            uid: 50_000 + step,
            allocated: runs
                .iter()
                .flat_map(|&(s, n)| s.0..s.0 + u64::from(n))
                .collect(),
        });
        if step % 3 == 0 {
            fs.sync().unwrap();
            syncs.push((step, io.writes_done()));
        }
    }
    (states, syncs)
}

/// The state a replayed image is in, checked: e2fsck finds only the
/// leaked allocations of one committed state, whose uid the root has.
fn check_replayed(name: &str, who: &str, cut: u64, bytes: &[u8], states: &[Committed]) -> u32 {
    let uid = root_uid(bytes);
    let Some(step) = states.iter().position(|s| s.uid == uid) else {
        panic!("{name}, cut {cut}, {who}: root uid {uid} is no committed state");
    };
    let r = fsck_bytes(bytes);
    let want: Vec<i64> = states[step]
        .allocated
        .iter()
        .map(|&b| -(b as i64))
        .collect();
    assert_eq!(
        r.bitmap_differences("Block"),
        want,
        "{name}, cut {cut}, {who}: step {step}\n{}",
        r.output
    );
    let odd = r.unexpected(&["Block bitmap differences", "Free blocks count wrong"]);
    assert!(
        odd.is_empty(),
        "{name}, cut {cut}, {who}: {odd:?}\n{}",
        r.output
    );
    step as u32
}

/// Whether two images hold the same blocks, except the filesystem's
/// superblock and the journal's blocks (its superblock: each replay leaves
/// its own bookkeeping there).
fn same_but_superblocks(a: &[u8], b: &[u8]) -> bool {
    let fs = Fs::open(
        Arc::new(MemChannel::new(a.to_vec())),
        &OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .expect("open the replayed image");
    let bs = fs.block_size() as usize;
    let sb_block = fs.sb().superblock_block();
    a.len() == b.len()
        && (0..a.len() / bs).all(|i| {
            let p = Pblk(i as u64);
            p == sb_block
                || fs.zones().kind_of(p) == Some(crate::zones::ZoneKind::Journal)
                || a[i * bs..(i + 1) * bs] == b[i * bs..(i + 1) * bs]
        })
}

/// Cuts the crash sweep spreads over each geometry's write stream (besides
/// those at every sync): `FSVC_CRASH_CUTS`, default 32; a number past the
/// stream's length cuts after every write (a few minutes).
fn crash_cuts() -> u64 {
    std::env::var("FSVC_CRASH_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

#[test]
fn every_cut_of_the_write_stream_replays_to_a_committed_state() {
    for (name, args, size) in JOURNALED {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let pristine = img.bytes();
        // The whole stream once, uncut.
        let full = Arc::new(FaultyChannel::new(Arc::new(MemChannel::new(
            pristine.clone(),
        ))));
        let fs = open_rw_on(full.clone());
        let (states, syncs) = workload(&fs, &full);
        fs.unmount().unwrap();
        let total = full.writes_done();
        let sample = crash_cuts().min(total);
        let cuts: BTreeSet<u64> = (0..sample)
            .map(|i| i * total / sample.max(1))
            // The last write of each sync, and the first after it.
            .chain(syncs.iter().flat_map(|&(_, w)| [w - 1, w]))
            .filter(|&c| c <= total)
            .collect();
        for &cut in &cuts {
            let mem = Arc::new(MemChannel::new(pristine.clone()));
            let io = Arc::new(FaultyChannel::new(mem.clone()));
            io.stop_after_writes(cut, AfterCut::Drop);
            // A cut inside the mount's own writes fails nothing: they are
            // dropped as a power cut drops them.
            let fs = open_rw_on(io.clone());
            let _ = workload(&fs, &io);
            drop(fs);
            let crashed = mem.snapshot();
            let synced = syncs
                .iter()
                .filter(|&&(_, w)| w <= cut)
                .map(|&(s, _)| s)
                .max()
                .unwrap_or(0);
            let ours = if needs_recovery(&crashed) {
                replay_ours(&crashed)
            } else {
                crashed.clone()
            };
            let step = check_replayed(name, "fsvc", cut, &ours, &states);
            assert!(
                step >= synced,
                "{name}, cut {cut}: replayed step {step}, but step {synced} was synced"
            );
            // e2fsck's replay as a second opinion: the same blocks (but
            // the superblocks, which each side updates its own way), or,
            // if not, a state that passes the same check.
            let theirs = replay_e2fsck(&crashed);
            if !same_but_superblocks(&ours, &theirs) {
                let step2 = check_replayed(name, "e2fsck", cut, &theirs, &states);
                assert_eq!(step, step2, "{name}, cut {cut}: fsvc and e2fsck disagree");
            }
        }
        eprintln!(
            "{name}: {} cuts of a {total}-write stream replayed",
            cuts.len()
        );
    }
}

#[test]
fn recovery_of_an_unmounted_image_has_nothing_to_do() {
    let Some(img) = Image::mkfs(&["-b", "4096"], "32M") else {
        return;
    };
    let fs = img.open_rw();
    set_root_uid(&fs, 9);
    fs.sync().unwrap();
    fs.unmount().unwrap();
    let io: Arc<dyn IoChannel> = img.mem.clone();
    assert_eq!(recover(&io).unwrap(), Recovery::NotNeeded);
}
