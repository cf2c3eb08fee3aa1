//! Tests of opening read-write, sync and unmount (superblock state, counts,
//! e2fsck after unmount), the refusals, and the error policy.

use std::sync::Arc;

use crate::error::Error;
use crate::io::faulty::{AfterCut, FaultyChannel};
use crate::io::mem::MemChannel;
use crate::mount::ErrorAt;
use crate::num::{InodeNo, Pblk};
use crate::superblock::{Superblock, STATE_ERROR, STATE_VALID, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::testfs::{fsck_bytes, Image, GEOMETRIES};
use crate::tx::Creds;
use crate::wstate::{ErrorBehavior, Mode};
use crate::{Fs, OpenOptions};

/// The superblock as the device holds it now.
fn disk_sb(bytes: &[u8]) -> Superblock {
    let at = SUPERBLOCK_OFFSET as usize;
    Superblock::parse(&bytes[at..at + SUPERBLOCK_SIZE], bytes.len() as u64).unwrap()
}

fn disk_fields(bytes: &[u8]) -> crate::super_fields::SuperFields {
    let sb = disk_sb(bytes);
    crate::super_fields::SuperFields::decode(&sb, &sb.raw)
}

#[test]
fn mounting_marks_the_superblock_and_unmount_makes_it_clean() {
    for (name, args, size) in GEOMETRIES {
        let Some(img) = Image::mkfs(args, size) else {
            return;
        };
        let before = disk_fields(&img.bytes());
        assert_ne!(before.state & STATE_VALID, 0, "{name}: mkfs left it clean");
        let fs = img.open_rw();
        assert_eq!(fs.mode(), Mode::ReadWrite);
        // Mounted: written at once, not clean, one more mount.
        let mounted = disk_fields(&img.bytes());
        assert_eq!(mounted.state & STATE_VALID, 0, "{name}");
        assert_eq!(mounted.mnt_count, before.mnt_count + 1, "{name}");
        assert!(mounted.mtime >= before.mtime.max(1), "{name}");
        fs.sync().unwrap();
        fs.unmount().unwrap();
        assert_eq!(fs.mode(), Mode::Unmounted);
        let after = disk_fields(&img.bytes());
        assert_eq!(after.state, before.state, "{name}: clean again");
        assert_eq!(after.mnt_count, before.mnt_count + 1, "{name}");
        assert_eq!(after.free_blocks, before.free_blocks, "{name}");
        assert_eq!(after.free_inodes, before.free_inodes, "{name}");
        assert!(after.wtime >= mounted.mtime, "{name}");
        assert!(after.kbytes_written > before.kbytes_written, "{name}");
        img.fsck_clean();
        // Later calls change nothing; changes are refused.
        let snap = img.bytes();
        fs.unmount().unwrap();
        assert!(matches!(fs.begin(Creds::ROOT), Err(Error::ReadOnly)));
        assert!(img.bytes() == snap, "{name}: a second unmount wrote");
    }
}

#[test]
fn a_read_only_open_writes_nothing() {
    let Some(img) = Image::mkfs(&["-b", "1024"], "8M") else {
        return;
    };
    let before = img.bytes();
    let fs = img.open_ro();
    assert!(fs.is_read_only());
    assert!(matches!(fs.begin(Creds::ROOT), Err(Error::ReadOnly)));
    assert!(matches!(
        fs.write_data(Pblk(fs.sb().blocks_count - 1), &[0u8; 1024]),
        Err(Error::ReadOnly)
    ));
    fs.sync().unwrap();
    fs.unmount().unwrap();
    assert!(
        img.bytes() == before,
        "a read-only mount wrote to the image"
    );
}

/// Rewrites the superblock of `bytes` through `edit` (checksum fixed).
fn edit_sb(bytes: &mut [u8], edit: impl FnOnce(&mut crate::super_fields::SuperFields)) {
    let sb = disk_sb(bytes);
    let mut f = crate::super_fields::SuperFields::decode(&sb, &sb.raw);
    edit(&mut f);
    let at = SUPERBLOCK_OFFSET as usize;
    f.encode(&sb, &mut bytes[at..at + SUPERBLOCK_SIZE]).unwrap();
}

#[test]
fn read_write_is_refused_with_a_reason() {
    let Some(img) = Image::mkfs(&["-b", "1024"], "8M") else {
        return;
    };
    let base = img.bytes();
    type Setup = fn(&mut Vec<u8>) -> Arc<MemChannel>;
    // (setup, words the refusal must contain)
    let cases: &[(Setup, &str)] = &[
        (
            |b| {
                edit_sb(b, |f| f.state |= STATE_ERROR);
                Arc::new(MemChannel::new(b.clone()))
            },
            "e2fsck",
        ),
        (
            |b| {
                edit_sb(b, |f| f.feature_ro_compat |= 0x0100_0000);
                Arc::new(MemChannel::new(b.clone()))
            },
            "unknown read-only-compatible features 0x1000000",
        ),
        (
            |b| {
                edit_sb(b, |f| {
                    f.feature_ro_compat |= crate::superblock::ro_compat::QUOTA
                });
                Arc::new(MemChannel::new(b.clone()))
            },
            "quota",
        ),
        (|b| Arc::new(MemChannel::read_only(b.clone())), "read-only"),
    ];
    for (setup, want) in cases {
        let mut bytes = base.clone();
        let mem = setup(&mut bytes);
        let rw = OpenOptions::default();
        match Fs::open(mem.clone(), &rw) {
            Err(Error::RwRefused(why)) => {
                assert!(why.contains(want), "{why:?} lacks {want:?}");
                assert!(why.contains("read-only") || why.contains("e2fsck"), "{why}");
            }
            other => panic!("{want}: not refused: {other:?}"),
        }
        assert!(mem.snapshot() == bytes, "{want}: the refusal wrote");
        // Read-only still works.
        let ro = OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        };
        Fs::open(mem, &ro).unwrap();
    }
}

#[test]
fn bigalloc_is_refused_read_write() {
    let Some(img) = Image::mkfs(&["-b", "1024", "-O", "bigalloc", "-C", "4096"], "16M") else {
        return;
    };
    match Fs::open(img.mem.clone(), &OpenOptions::default()) {
        Err(Error::RwRefused(why)) => assert!(why.contains("bigalloc"), "{why}"),
        other => panic!("bigalloc opened read-write: {other:?}"),
    }
}

/// `dumpe2fs -h` of an image.
fn dumpe2fs(bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("fsvc-dumpe2fs-{}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn open_with(mem: Arc<dyn crate::io::IoChannel>, errors: ErrorBehavior) -> Fs {
    let opts = OpenOptions {
        errors: Some(errors),
        ..OpenOptions::default()
    };
    Fs::open(mem, &opts).unwrap()
}

#[test]
fn errors_are_recorded_and_the_policy_applied() {
    let Some(img) = Image::mkfs(&["-b", "1024"], "8M") else {
        return;
    };
    let base = img.bytes();
    let corrupt = Error::corrupt("inode 12", "test damage");
    // (policy, mode after, what begin says after)
    let cases = [
        (ErrorBehavior::Continue, Mode::ReadWrite),
        (ErrorBehavior::RemountRo, Mode::ErrorsReadOnly),
        (ErrorBehavior::Panic, Mode::Stopped),
    ];
    for (policy, mode_after) in cases {
        let mem = Arc::new(MemChannel::new(base.clone()));
        let fs = open_with(mem.clone(), policy);
        // Errors that are not the filesystem's are not recorded.
        fs.fail(&Error::NoSpace(crate::Space::Blocks), ErrorAt::func("x"));
        assert_eq!(fs.super_fields().error_count, 0);
        fs.fail(
            &corrupt,
            ErrorAt {
                func: "test_function",
                ino: InodeNo(12),
                block: Pblk(77),
            },
        );
        assert_eq!(fs.mode(), mode_after, "{policy:?}");
        // Written home at once.
        let f = disk_fields(&mem.snapshot());
        assert_ne!(f.state & STATE_ERROR, 0, "{policy:?}");
        assert_eq!(f.error_count, 1);
        let e = f.first_error.clone().unwrap();
        assert_eq!((e.ino, e.block, e.errcode), (12, 77, 4));
        assert_eq!(e.func, b"test_function");
        assert_eq!(f.last_error, f.first_error);
        match mode_after {
            Mode::ReadWrite => {
                fs.begin(Creds::ROOT).unwrap();
                fs.unmount().unwrap();
            }
            Mode::ErrorsReadOnly => {
                assert!(matches!(fs.begin(Creds::ROOT), Err(Error::ReadOnly)));
                fs.unmount().unwrap();
            }
            _ => {
                assert!(matches!(fs.begin(Creds::ROOT), Err(Error::Stopped)));
                assert!(fs.is_stopped());
                assert!(matches!(fs.unmount(), Err(Error::Stopped)));
            }
        }
        // The error stays recorded: e2fsck sees it and a read-write open is
        // refused. After errors=panic nothing more was written: the
        // journal is replayed first, as after a crash.
        let replayed = Arc::new(MemChannel::new(mem.snapshot()));
        let io: Arc<dyn crate::io::IoChannel> = replayed.clone();
        crate::journal::recover(&io).unwrap();
        let after = replayed.snapshot();
        assert_ne!(disk_fields(&after).state & STATE_ERROR, 0);
        assert!(matches!(
            Fs::open(
                Arc::new(MemChannel::new(after.clone())),
                &OpenOptions::default()
            ),
            Err(Error::RwRefused(_))
        ));
        // e2fsprogs reads the record as written, and finds nothing else wrong.
        let dump = dumpe2fs(&after);
        for want in [
            "FS Error count:           1",
            "First error function:     test_function",
            "First error inode #:      12",
            "First error block #:      77",
            "with errors",
        ] {
            assert!(
                dump.contains(want),
                "{policy:?}: dumpe2fs lacks {want:?}:\n{dump}"
            );
        }
        let r = fsck_bytes(&after);
        assert_eq!(r.code, 0, "{}", r.output);
    }
}

#[test]
fn write_errors_reach_sync_and_unmount() {
    for args in [&["-b", "1024"][..], &["-b", "1024", "-O", "^has_journal"]] {
        write_errors_reach_sync_and_unmount_on(args);
    }
}

fn write_errors_reach_sync_and_unmount_on(args: &[&str]) {
    let Some(img) = Image::mkfs(args, "8M") else {
        return;
    };
    let mem = Arc::new(MemChannel::new(img.bytes()));
    let faulty = Arc::new(FaultyChannel::new(mem.clone()));
    let fs = open_with(faulty.clone(), ErrorBehavior::Continue);
    let b = Pblk(fs.sb().blocks_count - 1);
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    tx.modify(b).unwrap().fill(3);
    tx.commit().unwrap();
    faulty.stop_after_writes(0, AfterCut::Fail);
    assert!(matches!(fs.sync(), Err(Error::Io(_))));
    assert_eq!(
        fs.dev().dirty_blocks().len(),
        2,
        "the block and the superblock stay dirty"
    );
    // Reported once; the device comes back; the next sync writes them.
    faulty.clear_faults();
    fs.sync().unwrap();
    // With a journal the sync committed them to the log; the checkpoint
    // writes them home.
    fs.writeback().unwrap();
    assert!(fs.dev().dirty_blocks().is_empty());
    let at = (b.0 * 1024) as usize;
    assert!(mem.snapshot()[at..at + 1024].iter().all(|&x| x == 3));
    // The failed writeback was recorded as an error (EIO) when it could be.
    fs.unmount().unwrap();
    let f = disk_fields(&mem.snapshot());
    assert_ne!(f.state & STATE_ERROR, 0);
    assert_eq!(f.last_error.unwrap().errcode, 1);
    // An unmount that cannot write says so and does not mark the fs clean.
    let mem = Arc::new(MemChannel::new(img.bytes()));
    let faulty = Arc::new(FaultyChannel::new(mem.clone()));
    let fs = open_with(faulty.clone(), ErrorBehavior::Continue);
    let mut tx = fs.begin(Creds::ROOT).unwrap();
    tx.modify(b).unwrap().fill(4);
    tx.commit().unwrap();
    faulty.stop_after_writes(0, AfterCut::Fail);
    assert!(matches!(fs.unmount(), Err(Error::Io(_))));
    assert_eq!(disk_fields(&mem.snapshot()).state & STATE_VALID, 0);
}
