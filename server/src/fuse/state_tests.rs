//! The adapter's per-mount state against the fake filesystem of `tests`:
//! the node table's counts as the kernel would see them, file handles
//! (a bad one is EBADF), and the readahead's data generations.

use fuser::{Errno, FileHandle, Generation, INodeNo, OpenFlags};

use super::files::ReadAnswer;
use super::tests::{adapter, code, node, BROKEN, HELLO, LINK, SUB};
use fsvc_ext4::ROOT_INO;

const RO: OpenFlags = OpenFlags(libc::O_RDONLY);

#[test]
fn entries_handed_to_the_kernel_are_counted_until_forgotten() {
    let (_, a) = adapter();
    // Lookups count; a negative or failed lookup hands nothing over.
    a.do_lookup(INodeNo::ROOT, b"hello").unwrap().unwrap();
    a.do_lookup(INodeNo::ROOT, b"hello").unwrap().unwrap();
    assert_eq!(a.do_lookup(INodeNo::ROOT, b"nope").unwrap(), None);
    assert!(a.do_lookup(INodeNo::ROOT, b"broken").is_err());
    assert_eq!(a.nodes.refs(HELLO).lookups, 2);
    assert_eq!(a.nodes.refs(BROKEN).lookups, 0);

    // A plain readdir hands over no entries.
    a.fill_dir(INodeNo::ROOT, 0, false, &mut |_| false).unwrap();
    assert_eq!(a.nodes.refs(LINK).lookups, 0);
    // Readdirplus: every entry taken counts, except "." and "..".
    let mut taken = Vec::new();
    a.fill_dir(INodeNo::ROOT, 0, true, &mut |it| {
        taken.push(it.name.to_vec());
        false
    })
    .unwrap();
    assert!(taken.len() > 3, "{taken:?}");
    assert_eq!(a.nodes.refs(HELLO).lookups, 3);
    assert_eq!(a.nodes.refs(LINK).lookups, 1);
    // Placeholders for unreadable inodes carry a node id too.
    assert_eq!(a.nodes.refs(BROKEN).lookups, 1);
    assert_eq!(
        a.nodes.refs(ROOT_INO).lookups,
        0,
        "'.' and '..' do not count"
    );

    // A page cut short counts only what it took.
    let mut first = None;
    a.fill_dir(node(SUB), 0, true, &mut |it| {
        if first.is_some() {
            return true;
        }
        first = Some(it.name.to_vec());
        false
    })
    .unwrap();
    assert_eq!(first.as_deref(), Some(&b"."[..]));
    assert_eq!(a.nodes.refs(super::tests::LINKED).lookups, 0);

    a.do_forget(node(HELLO), 3);
    assert!(!a.nodes.is_referenced(HELLO));
    // Forgetting what we never issued changes nothing and does not panic.
    a.do_forget(INodeNo(2), 1);
    a.do_forget(INodeNo(u64::MAX), u64::MAX);
    a.do_forget(node(LINK), 10);
    assert!(!a.nodes.is_referenced(LINK));
}

#[test]
fn open_handles_hold_their_inode_until_released() {
    let (_, a) = adapter();
    let f = a.do_open(node(HELLO), RO).unwrap();
    let d = a.do_opendir(node(SUB)).unwrap();
    assert!(a.nodes.is_referenced(HELLO) && a.nodes.is_referenced(SUB));
    a.do_release(node(HELLO), f).unwrap();
    a.do_releasedir(node(SUB), d).unwrap();
    assert!(!a.nodes.is_referenced(HELLO) && !a.nodes.is_referenced(SUB));
}

#[test]
fn a_handle_the_adapter_did_not_issue_is_ebadf() {
    let (_, a) = adapter();
    let f = a.do_open(node(HELLO), RO).unwrap();
    let d = a.do_opendir(node(SUB)).unwrap();
    let ebadf = Some(libc::EBADF);
    let bogus = [FileHandle(0), FileHandle(12345), FileHandle(u64::MAX)];
    for fh in bogus.into_iter().chain([d]) {
        assert_eq!(code(a.do_read(node(HELLO), fh, 0, 10)), ebadf, "read {fh}");
        assert_eq!(code(a.check_file(node(HELLO), fh)), ebadf, "fsync {fh}");
        assert_eq!(code(a.do_release(node(HELLO), fh)), ebadf, "release {fh}");
    }
    for fh in bogus.into_iter().chain([f]) {
        assert_eq!(code(a.check_dir(node(SUB), fh)), ebadf, "readdir {fh}");
        assert_eq!(
            code(a.do_releasedir(node(SUB), fh)),
            ebadf,
            "releasedir {fh}"
        );
    }
    // A real handle presented for another inode.
    assert_eq!(code(a.do_read(node(LINK), f, 0, 10)), ebadf);
    assert_eq!(code(a.check_any(node(HELLO), d)), ebadf);
    assert!(a.check_any(node(HELLO), f).is_ok() && a.check_any(node(SUB), d).is_ok());
    // None of that released anything.
    assert!(a.do_read(node(HELLO), f, 0, 10).is_ok());
    a.do_release(node(HELLO), f).unwrap();
    a.do_releasedir(node(SUB), d).unwrap();
    // Released handles are gone: a second release, or a use, is EBADF.
    assert_eq!(code(a.do_release(node(HELLO), f)), ebadf);
    assert_eq!(code(a.do_read(node(HELLO), f, 0, 10)), ebadf);
    assert_eq!(code(a.do_releasedir(node(SUB), d)), ebadf);
    assert!(
        !a.nodes.is_referenced(HELLO),
        "the failed releases kept nothing"
    );
}

/// Reads through `fh` like the FUSE `read` handler does; true when a
/// readahead window answered.
fn read(a: &super::ops::Adapter, fh: FileHandle, offset: u64) -> Result<bool, Errno> {
    const REQ: u32 = 128 << 10;
    let answer = a.do_read(node(HELLO), fh, offset, REQ)?;
    let hit = matches!(answer, ReadAnswer::Window(_));
    a.read_done(node(HELLO), fh, offset, REQ, answer);
    Ok(hit)
}

#[test]
fn a_write_makes_the_open_files_windows_stale() {
    let (_, a) = adapter();
    let fh = a.do_open(node(HELLO), RO).unwrap();
    assert!(
        !read(&a, fh, 0).unwrap(),
        "the first read goes to the engine"
    );
    assert!(read(&a, fh, 128 << 10).unwrap(), "then the window answers");
    // Another open of the same file has a stream of its own.
    let other = a.do_open(node(HELLO), RO).unwrap();
    assert!(!read(&a, other, 128 << 10).unwrap());
    // A write of the file (the write requests hold this guard).
    drop(a.gens.begin_write(HELLO));
    assert!(!read(&a, fh, 256 << 10).unwrap(), "a stale window answered");
    // Released: the stream is gone with the handle.
    a.do_release(node(HELLO), fh).unwrap();
    a.do_release(node(HELLO), other).unwrap();
    assert_eq!(a.ra.held_bytes(), 0);
}

#[test]
fn the_kernels_forgets_balance_the_counts() {
    let fs = std::sync::Arc::new(super::tests::fake());
    let a = super::ops::Adapter::new(fs, &super::tests::ro_options());
    let nodes = a.nodes.clone();
    let opts = super::ServeOptions::default();
    let Some(m) = super::tests::TestMount::with_adapter(a, true, &opts) else {
        return;
    };
    // Readdirplus pages (500 entries naming one inode), lookups, opens.
    let listed = std::fs::read_dir(m.path("sub")).unwrap().count();
    assert_eq!(listed, super::tests::SUB_ENTRIES);
    std::fs::metadata(m.path("sub/f0007")).unwrap();
    assert_eq!(std::fs::read(m.path("hello")).unwrap().len(), 300_000);
    assert!(nodes.is_referenced(super::tests::LINKED));
    assert!(nodes.is_referenced(HELLO) && nodes.is_referenced(SUB));
    // Make the kernel drop its unused dentries and inodes: it forgets
    // every node it holds (but the root), in FORGET/BATCH_FORGET requests.
    let drop_caches = || std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    drop_caches();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while nodes.len() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop_caches();
    }
    // Everything counted was forgotten (no count too high), and nothing
    // was forgotten that was not counted (no count too low).
    assert_eq!(
        nodes.len(),
        0,
        "inodes still counted after the kernel forgot them"
    );
    assert_eq!(nodes.over_forgotten(), 0);
    m.finish();
}

/// An adapter over the fake on a read-write mount with `flags`.
fn rw_adapter(
    flags: crate::service::MountFlags,
) -> (std::sync::Arc<super::tests::FakeFs>, super::ops::Adapter) {
    let fs = std::sync::Arc::new(super::tests::fake());
    let opts = super::ServeOptions {
        mode: crate::mode::MountMode::ReadWrite,
        flags,
        ..super::ServeOptions::default()
    };
    (fs.clone(), super::ops::Adapter::new(fs, &opts))
}

#[test]
fn an_unlinked_inode_is_evicted_when_its_last_reference_goes() {
    use super::tests::{NULL, ROOT_CREDS};
    use std::sync::atomic::Ordering;
    let (fs, a) = rw_adapter(Default::default());
    let evicted = || fs.evicted.lock().unwrap().clone();
    // Two lookups and a handle; unlinked while held.
    a.do_lookup(INodeNo::ROOT, b"hello").unwrap().unwrap();
    a.do_lookup(INodeNo::ROOT, b"hello").unwrap().unwrap();
    let fh = a
        .do_open(node(HELLO), OpenFlags(libc::O_RDWR | libc::O_APPEND))
        .unwrap();
    a.do_remove(ROOT_CREDS, INodeNo::ROOT, b"hello", false)
        .unwrap();
    a.do_forget(node(HELLO), 2);
    assert!(evicted().is_empty(), "the open handle still holds it");
    a.do_release(node(HELLO), fh).unwrap();
    assert_eq!(evicted(), [HELLO], "freed at the last release");
    // Looked up and opened again later (a reused number): not an orphan.
    let fh = a.do_open(node(HELLO), RO).unwrap();
    a.do_release(node(HELLO), fh).unwrap();
    assert_eq!(evicted(), [HELLO]);
    // Unlinked while nothing holds it: freed by the unlink itself.
    a.do_remove(ROOT_CREDS, INodeNo::ROOT, b"null", false)
        .unwrap();
    assert_eq!(evicted(), [HELLO, NULL]);
    // A name whose inode keeps other links: nothing to free.
    a.do_lookup(node(SUB), b"f0001").unwrap().unwrap();
    a.do_remove(ROOT_CREDS, node(SUB), b"f0001", false).unwrap();
    a.do_forget(node(super::tests::LINKED), 1);
    assert_eq!(evicted(), [HELLO, NULL]);
    // Never unlinked: forgetting it frees nothing.
    let d = a.do_opendir(node(SUB)).unwrap();
    a.do_releasedir(node(SUB), d).unwrap();
    assert_eq!(evicted(), [HELLO, NULL]);
    assert!(a.changes.take(), "the changes wait for the commit");
    assert_eq!(fs.syncs.load(Ordering::Relaxed), 0, "no sync mount");
}

#[test]
fn sync_and_dirsync_mounts_sync_after_their_changes() {
    use super::ops::Change;
    use std::sync::atomic::Ordering;
    let flags = |sync, dirsync| crate::service::MountFlags {
        sync,
        dirsync,
        ..Default::default()
    };
    // (sync, dirsync, change, synced now)
    let table = [
        (false, false, Change::Namespace, false),
        (false, false, Change::Inode, false),
        (true, false, Change::Namespace, true),
        (true, false, Change::Inode, true),
        (false, true, Change::Namespace, true),
        (false, true, Change::Inode, false),
    ];
    for (sync, dirsync, what, now) in table {
        let (fs, a) = rw_adapter(flags(sync, dirsync));
        a.changed(what).unwrap();
        let synced = fs.syncs.load(Ordering::Relaxed);
        assert_eq!(
            synced,
            u64::from(now),
            "sync={sync} dirsync={dirsync} {what:?}"
        );
        // Synced now: nothing left for the periodic commit.
        assert_eq!(
            a.changes.take(),
            !now,
            "sync={sync} dirsync={dirsync} {what:?}"
        );
    }
    // A failing sync is the request's error.
    let (fs, a) = rw_adapter(flags(true, false));
    fs.fail_syncs.store(true, Ordering::Relaxed);
    assert_eq!(code(a.changed(Change::Inode)), Some(libc::EIO));
}

#[test]
fn write_opens_are_taken_on_a_read_write_mount() {
    let (_, a) = rw_adapter(Default::default());
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR | libc::O_APPEND,
        libc::O_RDONLY | libc::O_TRUNC,
    ] {
        let fh = a.do_open(node(HELLO), OpenFlags(flags)).unwrap();
        assert_eq!(a.handles.file(fh, HELLO).unwrap().flags, OpenFlags(flags));
    }
    assert!(a.do_access(node(HELLO), fuser::AccessFlags::W_OK).is_ok());
}

#[test]
fn created_inodes_are_counted_and_opened() {
    use super::tests::ROOT_CREDS;
    let (fs, a) = rw_adapter(Default::default());
    let ((attr, gen), fh) = a
        .do_create(
            ROOT_CREDS,
            INodeNo::ROOT,
            b"new",
            0o100_644,
            0o022,
            libc::O_RDWR,
        )
        .unwrap();
    assert_eq!(
        (attr.ino, attr.perm, gen),
        (INodeNo(100), 0o644, Generation(700))
    );
    let new = fsvc_ext4::InodeNo(100);
    assert_eq!(
        a.nodes.refs(new),
        super::nodes::NodeRefs {
            lookups: 1,
            opens: 1
        }
    );
    // The handle writes; a write through it bumps the data generation.
    let before = a.gens.current(new);
    assert_eq!(a.do_write(ROOT_CREDS, attr.ino, fh, 7, b"abc").unwrap(), 3);
    assert_ne!(a.gens.current(new), before);
    assert!(a.changes.take(), "the changes wait for the commit");
    // The engine handing out a number the kernel still holds: refused.
    let again = a.do_mknod(ROOT_CREDS, INodeNo::ROOT, b"dup", 0o100_600, 0, 0);
    assert_eq!(code(again), Some(libc::EIO));
    assert_eq!(a.nodes.refs(new).lookups, 1);
    // Names past 255 bytes never reach the engine.
    let long = vec![b'x'; 256];
    assert_eq!(
        code(a.do_mknod(ROOT_CREDS, INodeNo::ROOT, &long, 0o100_600, 0, 0)),
        Some(libc::ENAMETOOLONG)
    );
    assert_eq!(
        fs.changes.lock().unwrap().clone(),
        [
            "mknod new 100644 by 0",
            "write 100 7+3 append=false",
            "mknod dup 100600 by 0"
        ]
    );
}

#[test]
fn writes_need_a_writable_handle_on_a_writable_mount() {
    use super::tests::ROOT_CREDS;
    let (fs, a) = rw_adapter(Default::default());
    let ro = a.do_open(node(HELLO), RO).unwrap();
    let app = a
        .do_open(node(HELLO), OpenFlags(libc::O_WRONLY | libc::O_APPEND))
        .unwrap();
    let d = a.do_opendir(node(SUB)).unwrap();
    let ebadf = Some(libc::EBADF);
    assert_eq!(
        code(a.do_write(ROOT_CREDS, node(HELLO), ro, 0, b"x")),
        ebadf
    );
    assert_eq!(code(a.do_write(ROOT_CREDS, node(HELLO), d, 0, b"x")), ebadf);
    assert_eq!(code(a.do_write(ROOT_CREDS, node(SUB), app, 0, b"x")), ebadf);
    assert_eq!(
        a.do_write(ROOT_CREDS, node(HELLO), app, 5, b"xy").unwrap(),
        2
    );
    assert_eq!(
        fs.changes.lock().unwrap().clone(),
        ["write 12 5+2 append=true"]
    );
    // The same requests on a read-only mount: EROFS before anything else.
    let (_, r) = adapter();
    let fh = r.do_open(node(HELLO), RO).unwrap();
    let erofs = Some(libc::EROFS);
    assert_eq!(
        code(r.do_write(ROOT_CREDS, node(HELLO), fh, 0, b"x")),
        erofs
    );
    assert_eq!(
        code(r.do_remove(ROOT_CREDS, INodeNo::ROOT, b"hello", false)),
        erofs
    );
    assert_eq!(
        code(r.do_mkdir(ROOT_CREDS, INodeNo::ROOT, b"d", 0o755, 0)),
        erofs
    );
    assert_eq!(
        code(r.do_setattr(ROOT_CREDS, node(HELLO), None, &Default::default())),
        erofs
    );
}
