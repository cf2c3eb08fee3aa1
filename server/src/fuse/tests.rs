//! Adapter tests: its logic against a small in-memory fake filesystem, and
//! the real FUSE glue by mounting that fake through the kernel (root and
//! /dev/fuse needed; skipped with a reason otherwise).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fuser::{Errno, INodeNo, OpenFlags};

use super::backend::Backend;
use super::ops::{Adapter, XattrAnswer};
use super::{FuseServer, ServeOptions};
use crate::mode::{MountMode, ReadOnlyReason};
use fsvc_ext4::io::testutil::{is_root, pattern, skip, TempDir};
use fsvc_ext4::{DirEntry, Error, FileKind, InodeNo, Result, Stat, StatFs, Timestamp, ROOT_INO};

const EUCLEAN: i32 = libc::EUCLEAN;

#[derive(Debug, Default, Clone)]
struct FakeInode {
    /// `None`: reading the inode fails as corrupt.
    stat: Option<Stat>,
    data: Vec<u8>,
    entries: Vec<(Vec<u8>, InodeNo, FileKind)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// An in-memory filesystem with the engine's contract, counting directory work.
#[derive(Debug, Default)]
pub(crate) struct FakeFs {
    inodes: HashMap<InodeNo, FakeInode>,
    pub(crate) read_dir_calls: AtomicU64,
    pub(crate) entries_emitted: AtomicU64,
    /// Successful syncs.
    pub(crate) syncs: AtomicU64,
    /// Make every sync fail (an IO error), as a failing device would.
    pub(crate) fail_syncs: AtomicBool,
    /// The inodes the adapter asked to evict, in order.
    pub(crate) evicted: Mutex<Vec<InodeNo>>,
    /// The inode number the next create-style call hands out (0: 100).
    pub(crate) next_ino: AtomicU64,
    /// The changes asked for, as text, in order (the fake changes nothing).
    pub(crate) changes: Mutex<Vec<String>>,
}

fn stat(ino: InodeNo, kind: FileKind, perm: u16, size: u64, nlink: u32) -> Stat {
    Stat {
        ino,
        generation: ino.0 * 7,
        kind,
        perm,
        uid: 1000,
        gid: 100,
        size,
        nlink,
        blocks: size.div_ceil(4096) * 8,
        atime: Timestamp {
            sec: 1_600_000_000,
            nsec: 1,
        },
        mtime: Timestamp {
            sec: 1_700_000_000,
            nsec: 123_456_789,
        },
        ctime: Timestamp {
            sec: -1,
            nsec: 500_000_000,
        },
        crtime: Timestamp::default(),
        rdev: if kind == FileKind::CharDev {
            (1, 3)
        } else {
            (0, 0)
        },
        flags: 0,
    }
}

pub(crate) const HELLO: InodeNo = InodeNo(12);
pub(crate) const SUB: InodeNo = InodeNo(13);
pub(crate) const LINK: InodeNo = InodeNo(14);
pub(crate) const NULL: InodeNo = InodeNo(15);
pub(crate) const FIFO: InodeNo = InodeNo(16);
pub(crate) const BROKEN: InodeNo = InodeNo(17);
pub(crate) const GHOST: InodeNo = InodeNo(18);
pub(crate) const LINKED: InodeNo = InodeNo(19);
pub(crate) const SUB_ENTRIES: usize = 500;

pub(crate) fn hello_data() -> Vec<u8> {
    pattern(300_000, 42)
}

pub(crate) fn fake() -> FakeFs {
    let mut fs = FakeFs::default();
    let mut put = |ino: InodeNo, node: FakeInode| fs.inodes.insert(ino, node);
    let dir = |ino, entries: Vec<(&str, InodeNo, FileKind)>, parent| FakeInode {
        stat: Some(stat(ino, FileKind::Dir, 0o755, 4096, 2)),
        entries: [(".", ino, FileKind::Dir), ("..", parent, FileKind::Dir)]
            .into_iter()
            .chain(entries)
            .map(|(n, i, k)| (n.as_bytes().to_vec(), i, k))
            .collect(),
        ..Default::default()
    };
    put(
        ROOT_INO,
        dir(
            ROOT_INO,
            vec![
                ("hello", HELLO, FileKind::File),
                ("sub", SUB, FileKind::Dir),
                ("link", LINK, FileKind::Symlink),
                ("null", NULL, FileKind::CharDev),
                ("fifo", FIFO, FileKind::Fifo),
                ("hidden", InodeNo::BAD_BLOCKS, FileKind::File),
                ("broken", BROKEN, FileKind::File),
                ("ghost", GHOST, FileKind::File),
            ],
            ROOT_INO,
        ),
    );
    put(
        HELLO,
        FakeInode {
            stat: Some(Stat {
                // immutable | extents, plus EA_INODE (not user-visible).
                flags: 0x0028_0010,
                ..stat(HELLO, FileKind::File, 0o640, 300_000, 1)
            }),
            data: hello_data(),
            xattrs: vec![
                (b"user.a".to_vec(), b"b".to_vec()),
                (b"user.big".to_vec(), vec![b'x'; 1000]),
            ],
            ..Default::default()
        },
    );
    let names: Vec<String> = (0..SUB_ENTRIES).map(|i| format!("f{i:04}")).collect();
    put(
        SUB,
        dir(
            SUB,
            names
                .iter()
                .map(|n| (n.as_str(), LINKED, FileKind::File))
                .collect(),
            ROOT_INO,
        ),
    );
    put(
        LINK,
        FakeInode {
            stat: Some(stat(LINK, FileKind::Symlink, 0o777, 5, 1)),
            data: b"hello".to_vec(),
            ..Default::default()
        },
    );
    put(
        NULL,
        FakeInode {
            stat: Some(stat(NULL, FileKind::CharDev, 0o666, 0, 1)),
            ..Default::default()
        },
    );
    put(
        FIFO,
        FakeInode {
            stat: Some(stat(FIFO, FileKind::Fifo, 0o600, 0, 1)),
            ..Default::default()
        },
    );
    put(BROKEN, FakeInode::default());
    put(
        LINKED,
        FakeInode {
            stat: Some(stat(LINKED, FileKind::File, 0o644, 0, SUB_ENTRIES as u32)),
            ..Default::default()
        },
    );
    fs
}

impl FakeFs {
    fn node(&self, ino: InodeNo) -> Result<&FakeInode> {
        self.inodes.get(&ino).ok_or(Error::NoSuchInode(ino))
    }
    fn kind(&self, ino: InodeNo) -> Result<FileKind> {
        Ok(Backend::stat(self, ino)?.kind)
    }
}

impl Backend for FakeFs {
    fn stat(&self, ino: InodeNo) -> Result<Stat> {
        self.node(ino)?
            .stat
            .clone()
            .ok_or_else(|| Error::corrupt(format!("inode {ino}"), "fake damage"))
    }
    fn lookup(&self, dir: InodeNo, name: &[u8]) -> Result<InodeNo> {
        if self.kind(dir)? != FileKind::Dir {
            return Err(Error::NotDirectory);
        }
        let d = self.node(dir)?;
        d.entries
            .iter()
            .find(|e| e.0 == name)
            .map(|e| e.1)
            .ok_or(Error::NotFound)
    }
    fn read(&self, ino: InodeNo, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if self.kind(ino)? == FileKind::Dir {
            return Err(Error::IsDirectory);
        }
        let data = &self.node(ino)?.data;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
    fn read_dir(
        &self,
        dir: InodeNo,
        cookie: u64,
        f: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<()> {
        if self.kind(dir)? != FileKind::Dir {
            return Err(Error::NotDirectory);
        }
        self.read_dir_calls.fetch_add(1, Ordering::Relaxed);
        let d = self.node(dir)?;
        for (i, (name, ino, kind)) in d.entries.iter().enumerate().skip(cookie as usize) {
            self.entries_emitted.fetch_add(1, Ordering::Relaxed);
            let go_on = f(DirEntry {
                ino: *ino,
                name: name.clone(),
                kind: *kind,
                next_cookie: i as u64 + 1,
            });
            if !go_on {
                break;
            }
        }
        Ok(())
    }
    fn read_link(&self, ino: InodeNo) -> Result<Vec<u8>> {
        if self.kind(ino)? != FileKind::Symlink {
            return Err(Error::NotSymlink);
        }
        Ok(self.node(ino)?.data.clone())
    }
    fn list_xattrs(&self, ino: InodeNo) -> Result<Vec<Vec<u8>>> {
        Ok(self.node(ino)?.xattrs.iter().map(|x| x.0.clone()).collect())
    }
    fn get_xattr(&self, ino: InodeNo, name: &[u8]) -> Result<Vec<u8>> {
        let n = self.node(ino)?;
        n.xattrs
            .iter()
            .find(|x| x.0 == name)
            .map(|x| x.1.clone())
            .ok_or(Error::NoXattr)
    }
    fn seek(&self, ino: InodeNo, offset: u64, hole: bool) -> Result<Option<u64>> {
        let size = self.node(ino)?.data.len() as u64;
        Ok((offset < size).then_some(if hole { size } else { offset }))
    }
    fn sync(&self) -> Result<()> {
        if self.fail_syncs.load(Ordering::Relaxed) {
            return Err(Error::Io(fsvc_ext4::io::IoError::Injected { offset: 0 }));
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn mknod(
        &self,
        creds: fsvc_ext4::tx::Creds,
        parent: InodeNo,
        name: &[u8],
        mode: u32,
        _umask: u32,
        _rdev: u32,
    ) -> Result<Stat> {
        self.node(parent)?;
        let ino = match self.next_ino.load(Ordering::Relaxed) {
            0 => InodeNo(100),
            n => InodeNo(n as u32),
        };
        self.changes.lock().unwrap().push(format!(
            "mknod {} {mode:o} by {}",
            String::from_utf8_lossy(name),
            creds.uid
        ));
        Ok(stat(ino, FileKind::File, (mode & 0o7777) as u16, 0, 1))
    }
    fn write(
        &self,
        _creds: fsvc_ext4::tx::Creds,
        ino: InodeNo,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> Result<usize> {
        self.changes.lock().unwrap().push(format!(
            "write {ino} {offset}+{} append={append}",
            data.len()
        ));
        Ok(data.len())
    }
    fn unlink(
        &self,
        _creds: fsvc_ext4::tx::Creds,
        parent: InodeNo,
        name: &[u8],
    ) -> Result<Option<InodeNo>> {
        let ino = Backend::lookup(self, parent, name)?;
        self.changes
            .lock()
            .unwrap()
            .push(format!("unlink {}", String::from_utf8_lossy(name)));
        // The fake's files all have one link, but for LINKED.
        Ok((ino != LINKED).then_some(ino))
    }
    fn evict(&self, ino: InodeNo) -> Result<()> {
        self.evicted.lock().unwrap().push(ino);
        Ok(())
    }
    fn statfs(&self) -> StatFs {
        StatFs {
            block_size: 4096,
            blocks: 1000,
            blocks_free: 600,
            blocks_avail: 550,
            files: 256,
            files_free: 200,
            name_max: 255,
            fsid: 0x1234,
        }
    }
}

/// The mode of the adapters under test: read-only, as asked.
pub(crate) const RO_MODE: MountMode = MountMode::ReadOnly(ReadOnlyReason::Requested);

/// The caller of the adapter calls in these tests.
pub(crate) const ROOT_CREDS: fsvc_ext4::tx::Creds = fsvc_ext4::tx::Creds::ROOT;

/// Serve options of a read-only mount.
pub(crate) fn ro_options() -> ServeOptions {
    ServeOptions {
        mode: RO_MODE,
        ..ServeOptions::default()
    }
}

pub(crate) fn adapter() -> (Arc<FakeFs>, Adapter) {
    let fs = Arc::new(fake());
    (fs.clone(), Adapter::new(fs, &ro_options()))
}

pub(crate) fn node(ino: InodeNo) -> INodeNo {
    super::attr::fuse_ino(ino).unwrap()
}

#[test]
fn readdir_pages_resume_from_cookies_without_rescanning() {
    let (fs, a) = adapter();
    for per_page in [1usize, 7, 100, 10_000] {
        fs.read_dir_calls.store(0, Ordering::Relaxed);
        fs.entries_emitted.store(0, Ordering::Relaxed);
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let mut page = Vec::new();
            a.fill_dir(node(SUB), offset, false, &mut |it| {
                if page.len() == per_page {
                    return true; // full
                }
                page.push((it.name.to_vec(), it.next));
                false
            })
            .unwrap();
            let Some(last) = page.last() else { break };
            offset = last.1;
            names.extend(page.into_iter().map(|p| p.0));
        }
        let mut want: Vec<Vec<u8>> = vec![b".".to_vec(), b"..".to_vec()];
        want.extend((0..SUB_ENTRIES).map(|i| format!("f{i:04}").into_bytes()));
        assert_eq!(names, want, "page size {per_page}");
        // Each call emits what it returns plus at most the one that did not fit.
        let calls = fs.read_dir_calls.load(Ordering::Relaxed);
        let emitted = fs.entries_emitted.load(Ordering::Relaxed);
        assert!(
            emitted <= want.len() as u64 + calls,
            "{emitted} emitted in {calls} calls"
        );
    }
}

#[test]
fn readdir_hides_reserved_inodes_and_marks_broken_entries() {
    let (_, a) = adapter();
    let mut items = Vec::new();
    a.fill_dir(INodeNo::ROOT, 0, true, &mut |it| {
        let (attr, _, ttl) = it.plus.unwrap();
        items.push((
            String::from_utf8(it.name.to_vec()).unwrap(),
            it.node.0,
            attr,
            ttl,
        ));
        false
    })
    .unwrap();
    let names: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
    assert_eq!(
        names,
        [".", "..", "hello", "sub", "link", "null", "fifo", "broken", "ghost"]
    );
    // "." and ".." of the root are node 1, never ext4's 2.
    assert_eq!((items[0].1, items[1].1), (1, 1));
    let get = |n: &str| items.iter().find(|i| i.0 == n).unwrap();
    assert_eq!(get("hello").2.size, 300_000);
    assert_eq!(get("hello").3, super::ops::TTL);
    for bad in ["broken", "ghost"] {
        assert_eq!(
            get(bad).3,
            std::time::Duration::ZERO,
            "{bad} must not be cached"
        );
    }
}

pub(crate) fn code<T>(r: std::result::Result<T, Errno>) -> Option<i32> {
    r.err().map(Errno::code)
}

#[test]
fn lookup_and_getattr_errors() {
    let (_, a) = adapter();
    assert_eq!(a.do_lookup(INodeNo::ROOT, b"nope").unwrap(), None);
    assert_eq!(code(a.do_lookup(INodeNo::ROOT, b"hidden")), Some(EUCLEAN));
    assert_eq!(code(a.do_lookup(INodeNo::ROOT, b"broken")), Some(EUCLEAN));
    assert_eq!(code(a.do_lookup(INodeNo::ROOT, b"ghost")), Some(EUCLEAN));
    assert_eq!(
        code(a.do_lookup(INodeNo::ROOT, &[b'a'; 256])),
        Some(libc::ENAMETOOLONG)
    );
    assert_eq!(code(a.do_lookup(node(HELLO), b"x")), Some(libc::ENOTDIR));
    let (attr, gen) = a.do_lookup(INodeNo::ROOT, b"hello").unwrap().unwrap();
    assert_eq!(
        (attr.ino.0, gen.0),
        (u64::from(HELLO), u64::from(HELLO.0 * 7))
    );
    assert_eq!(a.do_getattr(INodeNo::ROOT).unwrap().ino, INodeNo::ROOT);
    // Node 2 is never issued (ext4's 2 is FUSE's 1); node 1000 does not exist.
    assert_eq!(code(a.do_getattr(INodeNo(2))), Some(libc::ESTALE));
    assert_eq!(code(a.do_getattr(INodeNo(1000))), Some(libc::ESTALE));
    assert_eq!(code(a.do_getattr(node(BROKEN))), Some(EUCLEAN));
    let ro = OpenFlags(libc::O_RDONLY);
    let sub = a.do_open(node(SUB), ro).unwrap();
    assert_eq!(code(a.do_read(node(SUB), sub, 0, 10)), Some(libc::EISDIR));
    let fh = a.do_open(node(HELLO), ro).unwrap();
    let r = a.do_read(node(HELLO), fh, 299_990, 100).unwrap();
    assert_eq!(&*r, &hello_data()[299_990..]);
    assert_eq!(
        r.as_ptr() as usize % 4096,
        0,
        "read buffers are page-aligned"
    );
    assert!(a.do_read(node(HELLO), fh, 400_000, 100).unwrap().is_empty());
}

#[test]
fn xattr_sizes() {
    let (_, a) = adapter();
    let table = [
        (0u32, XattrAnswer::Size(1)),
        (1, XattrAnswer::Data(b"b".to_vec())),
        (64, XattrAnswer::Data(b"b".to_vec())),
    ];
    for (size, want) in table {
        assert_eq!(
            a.do_getxattr(node(HELLO), b"user.a", size),
            want,
            "size {size}"
        );
    }
    assert_eq!(
        a.do_getxattr(node(HELLO), b"user.big", 999),
        XattrAnswer::Error(Errno::ERANGE)
    );
    assert_eq!(
        a.do_getxattr(node(HELLO), b"user.c", 10),
        XattrAnswer::Error(Errno::NO_XATTR)
    );
    let list = b"user.a\0user.big\0".to_vec();
    assert_eq!(
        a.do_listxattr(node(HELLO), 0),
        XattrAnswer::Size(list.len() as u32)
    );
    assert_eq!(
        a.do_listxattr(node(HELLO), 15),
        XattrAnswer::Error(Errno::ERANGE)
    );
    assert_eq!(a.do_listxattr(node(HELLO), 16), XattrAnswer::Data(list));
    assert_eq!(a.do_listxattr(node(SUB), 0), XattrAnswer::Size(0));
}

#[test]
fn write_opens_are_refused() {
    let (_, a) = adapter();
    let table = [
        (libc::O_RDONLY, None),
        (libc::O_RDONLY | libc::O_NOATIME, None),
        (libc::O_WRONLY, Some(libc::EROFS)),
        (libc::O_RDWR, Some(libc::EROFS)),
        (libc::O_RDONLY | libc::O_TRUNC, Some(libc::EROFS)),
    ];
    for (flags, want) in table {
        let res = a.do_open(node(HELLO), OpenFlags(flags));
        assert_eq!(res.err().map(Errno::code), want, "{flags:#x}");
    }
    // Only the two read-only opens hold the inode; the refused ones left
    // nothing behind.
    assert_eq!(a.nodes.refs(HELLO).opens, 2);
}

#[test]
fn access_checks_existence_and_refuses_writes() {
    let (_, a) = adapter();
    use fuser::AccessFlags as A;
    let table = [
        (HELLO, A::F_OK, None),
        (HELLO, A::R_OK | A::X_OK, None),
        (HELLO, A::W_OK, Some(libc::EROFS)),
        (BROKEN, A::F_OK, Some(EUCLEAN)),
        (GHOST, A::R_OK, Some(libc::ESTALE)),
    ];
    for (ino, mask, want) in table {
        assert_eq!(code(a.do_access(node(ino), mask)), want, "{ino} {mask:?}");
    }
}

#[test]
fn ioctl_answers_the_flag_and_version_commands_only() {
    const GETFLAGS: u32 = 0x8008_6601;
    let (_, a) = adapter();
    // Visible flags pass, internal ones (EXT4_EXTENTS_FL is visible,
    // EXT4_EA_INODE_FL 0x200000 is not) are masked.
    type Case = (InodeNo, u32, u32, std::result::Result<Vec<u8>, i32>);
    let mut fsx = vec![0u8; 28];
    fsx[0] = 0x8; // FS_XFLAG_IMMUTABLE, the twin of EXT4_IMMUTABLE_FL
    let table: [Case; 9] = [
        (
            HELLO,
            GETFLAGS,
            4,
            Ok(0x0008_0010u32.to_ne_bytes().to_vec()),
        ),
        (
            HELLO,
            GETFLAGS,
            8,
            Ok(0x0008_0010u32.to_ne_bytes().to_vec()),
        ),
        (
            HELLO,
            GETFLAGS,
            2,
            Ok(0x0008_0010u32.to_ne_bytes()[..2].to_vec()),
        ),
        // FS_IOC_GETVERSION: the generation, as an int.
        (HELLO, 0x8008_7601, 8, Ok(84u32.to_ne_bytes().to_vec())),
        // FS_IOC_SETFLAGS: a change, refused on this read-only mount.
        (HELLO, 0x4008_6602, 8, Err(libc::EROFS)),
        (HELLO, 0x4008_6603, 8, Err(libc::ENOTTY)),
        // FS_IOC_FSGETXATTR: the xflags twins of the inode flags.
        (HELLO, 0x801C_581F, 28, Ok(fsx)),
        (HELLO, 0x401C_5820, 28, Err(libc::EROFS)),
        (BROKEN, GETFLAGS, 4, Err(EUCLEAN)),
    ];
    for (ino, cmd, out, want) in table {
        let got = a
            .do_ioctl(ROOT_CREDS, node(ino), cmd, &[], out)
            .map_err(Errno::code);
        assert_eq!(got, want, "{ino} {cmd:#x} {out}");
    }
}

/// A FUSE mount made by the test itself, served on a background thread.
pub(crate) struct TestMount {
    pub(crate) dir: TempDir,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestMount {
    /// Mounts `fs` (mount(2) with `fd=`, as the helper's fallback does) and serves it.
    pub(crate) fn new(
        fs: Arc<dyn Backend>,
        vfs_read_only: bool,
        opts: &ServeOptions,
    ) -> Option<TestMount> {
        TestMount::with_adapter(Adapter::new(fs, opts), vfs_read_only, opts)
    }

    /// Mounts and serves `adapter` (whose shared state the caller may keep).
    pub(crate) fn with_adapter(
        adapter: Adapter,
        vfs_read_only: bool,
        opts: &ServeOptions,
    ) -> Option<TestMount> {
        if !is_root() {
            skip("mounting FUSE needs root");
            return None;
        }
        let fuse: OwnedFd = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
        {
            Ok(f) => f.into(),
            Err(e) => {
                skip(&format!("cannot open /dev/fuse: {e}"));
                return None;
            }
        };
        let dir = TempDir::new("mnt").ok()?;
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other",
            fuse.as_raw_fd()
        );
        let mut flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
        if vfs_read_only {
            flags |= nix::mount::MsFlags::MS_RDONLY;
        }
        if let Err(e) = nix::mount::mount(
            Some("fsvc-test"),
            &dir.0,
            Some("fuse.fsvc-test"),
            flags,
            Some(data.as_str()),
        ) {
            skip(&format!("mount(2) of fuse failed: {e}"));
            return None;
        }
        let mut m = TestMount { dir, thread: None };
        let server = FuseServer::from_adapter(adapter, fuse, opts).expect("FUSE INIT");
        m.thread = Some(std::thread::spawn(move || server.run()));
        Some(m)
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.0.join(rel)
    }

    /// Unmounts and checks that the server loop ended cleanly.
    pub(crate) fn finish(mut self) {
        nix::mount::umount(&self.dir.0).expect("umount");
        let res = self
            .thread
            .take()
            .unwrap()
            .join()
            .expect("server thread panicked");
        res.expect("server loop failed");
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = nix::mount::umount2(&self.dir.0, nix::mount::MntFlags::MNT_DETACH);
            let _ = t.join();
        }
    }
}

fn os_err(p: &Path) -> Option<i32> {
    std::fs::symlink_metadata(p)
        .err()
        .and_then(|e| e.raw_os_error())
}

fn getfattr(args: &[&str], p: &Path) -> (bool, Vec<u8>) {
    let o = Command::new("getfattr")
        .args(args)
        .arg(p)
        .output()
        .expect("run getfattr");
    (o.status.success(), o.stdout)
}

#[test]
fn mounted_fake_reads_through_the_kernel() {
    let fs = Arc::new(fake());
    // The VFS mount is read-write so that write opens reach the adapter.
    let Some(m) = TestMount::new(fs.clone(), false, &ServeOptions::default()) else {
        return;
    };
    let mut names: Vec<OsString> = std::fs::read_dir(&m.dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let want: Vec<OsString> = ["broken", "fifo", "ghost", "hello", "link", "null", "sub"]
        .iter()
        .map(OsString::from)
        .collect();
    assert_eq!(names, want);

    let root = std::fs::metadata(&m.dir.0).unwrap();
    assert_eq!(root.ino(), 1);
    let h = std::fs::metadata(m.path("hello")).unwrap();
    assert_eq!(
        (
            h.ino(),
            h.len(),
            h.mode() & 0o7777,
            h.nlink(),
            h.uid(),
            h.gid()
        ),
        (u64::from(HELLO), 300_000, 0o640, 1, 1000, 100)
    );
    assert_eq!((h.mtime(), h.mtime_nsec()), (1_700_000_000, 123_456_789));
    assert_eq!((h.ctime(), h.ctime_nsec()), (-1, 500_000_000));
    assert_eq!(
        (h.blksize(), h.blocks()),
        (4096, 300_000u64.div_ceil(4096) * 8)
    );
    assert!(std::fs::read(m.path("hello")).unwrap() == hello_data());
    assert_eq!(
        std::fs::read_link(m.path("link")).unwrap(),
        PathBuf::from("hello")
    );
    let null = std::fs::symlink_metadata(m.path("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert!(std::fs::symlink_metadata(m.path("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    for (name, errno) in [
        ("broken", EUCLEAN),
        ("ghost", EUCLEAN),
        ("hidden", EUCLEAN),
        ("missing", libc::ENOENT),
        ("hello/x", libc::ENOTDIR),
    ] {
        assert_eq!(os_err(&m.path(name)), Some(errno), "{name}");
    }
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("hello"));
    assert_eq!(w.err().and_then(|e| e.raw_os_error()), Some(libc::EROFS));

    // xattrs through getfattr: size query then value, list, missing name.
    let (ok, v) = getfattr(&["--only-values", "-n", "user.a"], &m.path("hello"));
    assert!(ok && v == b"b", "{:?}", String::from_utf8_lossy(&v));
    let (ok, v) = getfattr(&["--only-values", "-n", "user.big"], &m.path("hello"));
    assert!(ok && v == vec![b'x'; 1000]);
    let (ok, v) = getfattr(&["--absolute-names", "-d", "-m", "-"], &m.path("hello"));
    let listing = String::from_utf8_lossy(&v);
    assert!(
        ok && listing.contains("user.a=\"b\"") && listing.contains("user.big="),
        "{listing}"
    );
    assert!(!getfattr(&["-n", "user.none"], &m.path("hello")).0);

    // lsattr goes through FS_IOC_GETFLAGS: immutable and extents.
    let out = Command::new("lsattr").arg(m.path("hello")).output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        let field = text.split_whitespace().next().unwrap_or("");
        assert!(
            out.status.success() && field.contains('i') && field.contains('e'),
            "lsattr: {text:?} {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // fsync and close (flush) of a read-only file succeed; fsync (of a
    // file or a directory) reaches the engine's sync.
    let syncs = fs.syncs.load(Ordering::Relaxed);
    let f = std::fs::File::open(m.path("hello")).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::File::open(m.path("sub"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert_eq!(fs.syncs.load(Ordering::Relaxed), syncs + 2);

    // A 500-entry directory lists once, in pages, never rescanned.
    fs.read_dir_calls.store(0, Ordering::Relaxed);
    fs.entries_emitted.store(0, Ordering::Relaxed);
    let sub: Vec<Vec<u8>> = std::fs::read_dir(m.path("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_vec())
        .collect();
    assert_eq!(sub.len(), SUB_ENTRIES);
    let calls = fs.read_dir_calls.load(Ordering::Relaxed);
    let emitted = fs.entries_emitted.load(Ordering::Relaxed);
    assert!(calls > 1, "a 500-entry directory should take several pages");
    assert!(
        emitted <= SUB_ENTRIES as u64 + 2 + calls,
        "{emitted} emitted in {calls} calls"
    );
    let linked = std::fs::metadata(m.path("sub/f0499")).unwrap();
    assert_eq!(
        (linked.ino(), linked.nlink()),
        (u64::from(LINKED), SUB_ENTRIES as u64)
    );

    let st = nix::sys::statvfs::statvfs(&m.dir.0).unwrap();
    assert_eq!(
        (
            st.block_size(),
            st.blocks(),
            st.blocks_free(),
            st.blocks_available()
        ),
        (4096, 1000, 600, 550)
    );
    assert_eq!(
        (st.files(), st.files_free(), st.name_max()),
        (256, 200, 255)
    );
    m.finish();
}
