//! The `fuser::Filesystem` implementation: each FUSE request becomes one or
//! two engine calls, and each engine error one errno.
//!
//! The adapter is stateless: node ids are inode numbers (see `attr`), file
//! handles are unused (0), and directory offsets are the engine's resume
//! cookies, so no table grows with the number of files the kernel has seen
//! and `forget` has nothing to release.
//!
//! Caching: this server is the only writer of the filesystem it serves (the
//! helper opened the device exclusively, MMP guards against other hosts), so
//! nothing changes behind the kernel's back and long TTLs are safe: the
//! kernel keeps attributes, dentries (positive and negative), symlink
//! targets, directory listings and file pages until memory pressure evicts
//! them. The TTL is still finite ([`TTL`]) so that a mistake can never pin a
//! stale view forever.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyXattr, Request,
};

use super::attr::{ext4_ino, file_attr, file_type, fuse_ino, placeholder_attr};
use super::backend::Backend;
use super::errno::ErrorLog;
use super::readahead::ReadAhead;
use fsvc_ext4::{DirEntry, Error, FileKind, InodeNo};

/// Attribute and entry lifetime in the kernel's caches: an hour. Long,
/// because nothing but this server changes the filesystem; finite, so a
/// bug can only ever leave a bounded window of staleness.
pub(crate) const TTL: Duration = Duration::from_secs(3600);
/// TTL of attributes we could not read (placeholders in readdirplus): none,
/// so any real use of the entry asks again and receives the error.
const NO_TTL: Duration = Duration::ZERO;
/// Largest read answered at once (fuser's own request ceiling). The kernel
/// asks for at most `max_pages` pages, far below this; the cap bounds a
/// hostile or buggy request.
const MAX_READ: u32 = 16 << 20;
/// Background requests (readahead, async reads) the kernel may queue. More
/// than the kernel's default 12 so readahead keeps every worker busy.
const MAX_BACKGROUND: u16 = 64;
/// Longest name a directory entry can have.
const NAME_MAX: usize = 255;

/// Capabilities asked of the kernel, each only if the kernel offers it.
const WANTED: &[(InitFlags, &str)] = &[
    // Several reads of one file in flight at once (readahead).
    (InitFlags::FUSE_ASYNC_READ, "async_read"),
    // Requests larger than 32 pages.
    (InitFlags::FUSE_MAX_PAGES, "max_pages"),
    // Lookups and readdirs in one directory in parallel: the engine is Sync.
    (InitFlags::FUSE_PARALLEL_DIROPS, "parallel_dirops"),
    // READDIRPLUS for every page, not FUSE_READDIRPLUS_AUTO: "auto" sends
    // plus only for the first page (about 200 entries in the kernel's 32 KiB
    // buffer) unless a child was looked up since, so `ls -l`, `find -ls`
    // and `du`, which read the whole directory before stat'ing, pay one
    // LOOKUP round trip per entry past the first page. Measured cold on
    // 250-entry directories: du -s 46 -> 23 ms, find -ls 57 -> 33 ms, ls -R
    // unchanged (24 -> 23 ms). Never-plus would list names twice as fast
    // (ls -R 14 ms: the kernel builds no inodes) but makes ls -l, find -ls
    // and du 3-6x slower.
    (InitFlags::FUSE_DO_READDIRPLUS, "readdirplus"),
    // Symlink targets stay in the page cache.
    (InitFlags::FUSE_CACHE_SYMLINKS, "cache_symlinks"),
    // The kernel enforces POSIX ACLs itself from system.posix_acl_*,
    // which the engine serves in the kernel's xattr format. This also
    // turns on default_permissions in the kernel.
    (InitFlags::FUSE_POSIX_ACL, "posix_acl"),
];

/// What a getxattr/listxattr answer is, given the caller's buffer size.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum XattrAnswer {
    /// `size` was 0: the size the value needs.
    Size(u32),
    /// The value, which fits.
    Data(Vec<u8>),
    /// The value does not fit (ERANGE) or cannot be expressed (E2BIG).
    Error(Errno),
}

impl XattrAnswer {
    /// The answer for `value` when the caller offered `size` bytes.
    pub(crate) fn sized(value: Vec<u8>, size: u32) -> XattrAnswer {
        let Ok(len) = u32::try_from(value.len()) else {
            return XattrAnswer::Error(Errno::E2BIG);
        };
        if size == 0 {
            XattrAnswer::Size(len)
        } else if len > size {
            XattrAnswer::Error(Errno::ERANGE)
        } else {
            XattrAnswer::Data(value)
        }
    }

    fn send(self, reply: ReplyXattr) {
        match self {
            XattrAnswer::Size(n) => reply.size(n),
            XattrAnswer::Data(v) => reply.data(&v),
            XattrAnswer::Error(e) => reply.error(e),
        }
    }
}

/// One directory entry ready for a readdir or readdirplus reply.
#[derive(Debug)]
pub(crate) struct DirItem<'a> {
    /// Node id of the entry.
    pub(crate) node: INodeNo,
    /// Offset that resumes after it.
    pub(crate) next: u64,
    /// Type from the entry.
    pub(crate) kind: FileKind,
    /// Name.
    pub(crate) name: &'a [u8],
    /// For readdirplus: attributes, generation and their TTL.
    pub(crate) plus: Option<(FileAttr, Generation, Duration)>,
}

/// Alignment of read buffers: a page, so that file data read at
/// page-aligned file offsets (what the kernel asks for) lands in the buffer
/// straight from an `O_DIRECT` device, without the channel bouncing it.
const READ_ALIGN: usize = 4096;

/// A read reply's buffer, starting at a [`READ_ALIGN`]-aligned address.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl ReadBuf {
    pub(crate) fn new(len: usize) -> ReadBuf {
        let storage = vec![0u8; len + READ_ALIGN];
        let start = (READ_ALIGN - storage.as_ptr() as usize % READ_ALIGN) % READ_ALIGN;
        ReadBuf {
            storage,
            start,
            len,
        }
    }

    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    /// Bytes the buffer can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.storage.len() - self.start
    }

    /// Reuses the buffer for `len` bytes (at most its capacity). The old
    /// contents stay until overwritten: callers fill it before reading.
    pub(crate) fn reset(&mut self, len: usize) {
        self.len = len.min(self.capacity());
    }

    /// Keeps the first `len` bytes (no-op when already shorter).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

/// The adapter from FUSE requests to a [`Backend`].
pub(crate) struct Adapter {
    fs: Arc<dyn Backend>,
    read_only: bool,
    /// The filesystem block size, reported as `st_blksize`.
    blksize: u32,
    errors: ErrorLog,
    /// Sequential readahead of file data (see `readahead`).
    ra: ReadAhead,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("read_only", &self.read_only)
            .field("blksize", &self.blksize)
            .finish_non_exhaustive()
    }
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Adapter {
    pub(crate) fn new(fs: Arc<dyn Backend>, read_only: bool) -> Adapter {
        let blksize = fs.statfs().block_size;
        Adapter {
            fs,
            read_only,
            blksize,
            errors: ErrorLog::default(),
            ra: ReadAhead::default(),
        }
    }

    fn err(&self, e: &Error, context: impl FnOnce() -> String) -> Errno {
        self.errors.errno(e, &context())
    }

    /// The ext4 inode of a node id from the kernel; ESTALE for ids we never issued.
    fn ino(&self, node: INodeNo) -> Result<InodeNo, Errno> {
        ext4_ino(node).ok_or(Errno::ESTALE)
    }

    /// Attributes of the inode a directory entry of `dir` named `name` points to.
    /// Here a missing inode is damage in the directory, not a stale handle.
    fn entry_attr(
        &self,
        dir: InodeNo,
        name: &[u8],
        ino: InodeNo,
    ) -> Result<(FileAttr, Generation), Errno> {
        let Some(node) = fuse_ino(ino) else {
            return Err(self.errors.corrupt(
                &format!("directory inode {dir}"),
                &format!("entry {:?} names reserved inode {ino}", lossy(name)),
            ));
        };
        match self.fs.stat(ino) {
            Ok(st) => Ok((
                file_attr(node, &st, self.blksize),
                Generation(u64::from(st.generation)),
            )),
            Err(Error::NoSuchInode(_)) => Err(self.errors.corrupt(
                &format!("directory inode {dir}"),
                &format!("entry {:?} names unused inode {ino}", lossy(name)),
            )),
            Err(e) => Err(self.err(&e, || format!("inode {ino}, entry {:?}", lossy(name)))),
        }
    }

    /// `Ok(None)` is a name that does not exist (a negative entry).
    pub(crate) fn do_lookup(
        &self,
        parent: INodeNo,
        name: &[u8],
    ) -> Result<Option<(FileAttr, Generation)>, Errno> {
        let dir = self.ino(parent)?;
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        match self.fs.lookup(dir, name) {
            Ok(ino) => self.entry_attr(dir, name, ino).map(Some),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(self.err(&e, || format!("lookup {:?} in inode {dir}", lossy(name)))),
        }
    }

    pub(crate) fn do_getattr(&self, node: INodeNo) -> Result<FileAttr, Errno> {
        let ino = self.ino(node)?;
        let st = self
            .fs
            .stat(ino)
            .map_err(|e| self.err(&e, || format!("getattr inode {ino}")))?;
        Ok(file_attr(node, &st, self.blksize))
    }

    /// Readdirplus attributes of one entry: the inode's, or a placeholder
    /// with no TTL when it cannot be read (the name still lists, as with the
    /// kernel's ext4; using it gives the error). `.` and `..` get the
    /// placeholder too: the kernel ignores attributes sent for them.
    fn plus_attr(
        &self,
        dir: InodeNo,
        node: INodeNo,
        e: &DirEntry,
    ) -> (FileAttr, Generation, Duration) {
        if e.name == b"." || e.name == b".." {
            return (
                placeholder_attr(node, e.kind, self.blksize),
                Generation(0),
                NO_TTL,
            );
        }
        match self.entry_attr(dir, &e.name, e.ino) {
            Ok((attr, gen)) => (attr, gen, TTL),
            Err(_) => (
                placeholder_attr(node, e.kind, self.blksize),
                Generation(0),
                NO_TTL,
            ),
        }
    }

    /// Feeds entries of directory `node` from `offset` to `add`, which
    /// returns true when the reply buffer is full (that entry was not
    /// taken). The engine resumes from the cookie in O(1): one call never
    /// rescans what earlier calls returned. An error after some entries were
    /// taken ends the page early; the next call, resuming there, reports it.
    pub(crate) fn fill_dir(
        &self,
        node: INodeNo,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(DirItem<'_>) -> bool,
    ) -> Result<(), Errno> {
        let dir = self.ino(node)?;
        let mut taken = 0usize;
        let res = self.fs.read_dir(dir, offset, &mut |e: DirEntry| {
            let Some(child) = fuse_ino(e.ino) else {
                self.errors.corrupt(
                    &format!("directory inode {dir}"),
                    &format!("entry {:?} names reserved inode {}", lossy(&e.name), e.ino),
                );
                return true; // never expose it; list the rest
            };
            let extra = plus.then(|| self.plus_attr(dir, child, &e));
            let full = add(DirItem {
                node: child,
                next: e.next_cookie,
                kind: e.kind,
                name: &e.name,
                plus: extra,
            });
            if !full {
                taken += 1;
            }
            !full
        });
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                let errno = self.err(&e, || format!("readdir inode {dir} at {offset}"));
                if taken > 0 {
                    Ok(())
                } else {
                    Err(errno)
                }
            }
        }
    }

    pub(crate) fn do_getxattr(&self, node: INodeNo, name: &[u8], size: u32) -> XattrAnswer {
        let ino = match self.ino(node) {
            Ok(i) => i,
            Err(e) => return XattrAnswer::Error(e),
        };
        match self.fs.get_xattr(ino, name) {
            Ok(v) => XattrAnswer::sized(v, size),
            Err(e) => XattrAnswer::Error(
                self.err(&e, || format!("getxattr {:?} of inode {ino}", lossy(name))),
            ),
        }
    }

    pub(crate) fn do_listxattr(&self, node: INodeNo, size: u32) -> XattrAnswer {
        let ino = match self.ino(node) {
            Ok(i) => i,
            Err(e) => return XattrAnswer::Error(e),
        };
        match self.fs.list_xattrs(ino) {
            Ok(names) => {
                let mut out = Vec::new();
                for n in names {
                    out.extend_from_slice(&n);
                    out.push(0);
                }
                XattrAnswer::sized(out, size)
            }
            Err(e) => XattrAnswer::Error(self.err(&e, || format!("listxattr of inode {ino}"))),
        }
    }

    pub(crate) fn do_read(&self, node: INodeNo, offset: u64, size: u32) -> Result<ReadBuf, Errno> {
        let ino = self.ino(node)?;
        // From the readahead's buffer pool (the caller gives it back after
        // the reply): see `readahead::MAX_SPARE` for why not the allocator.
        let mut buf = self.ra.take_buf(size.min(MAX_READ) as usize);
        let n = match self.fs.read(ino, offset, buf.as_mut()) {
            Ok(n) => n,
            Err(e) => {
                self.ra.give_back(buf);
                return Err(self.err(&e, || format!("read inode {ino} at {offset}")));
            }
        };
        buf.len = n.min(buf.len);
        Ok(buf)
    }

    /// After a read of `asked` bytes at `offset` answered `got`: feed the
    /// readahead stream and run the fill it asks for. Called after the
    /// reply, so the fill's device read overlaps the kernel's next request.
    pub(crate) fn after_read(&self, node: INodeNo, offset: u64, got: usize, asked: u32) {
        let Ok(ino) = self.ino(node) else { return };
        if let Some(fill) = self.ra.note(ino, offset, got as u64, u64::from(asked)) {
            self.ra.fill(&*self.fs, fill);
        }
    }

    /// A read answered from the readahead windows, if they hold it.
    pub(crate) fn read_ahead_hit(
        &self,
        node: INodeNo,
        offset: u64,
        size: u32,
    ) -> Option<super::readahead::Chunk<'_>> {
        let ino = self.ino(node).ok()?;
        self.ra.lookup(ino, offset, size.min(MAX_READ))
    }

    /// Whether an open with `flags` is refused: any write access, or
    /// truncation, on a filesystem this server cannot write.
    pub(crate) fn open_refused(&self, flags: OpenFlags) -> Option<Errno> {
        // The engine has no write path yet, so even a read-write mount
        // cannot honour a write open.
        let writes = flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
        (writes && (self.read_only || !WRITE_SUPPORTED)).then_some(Errno::EROFS)
    }
}

/// `FS_IOC_GETFLAGS` (`_IOR('f', 1, long)`): the inode flags `lsattr`
/// shows. The kernel's FUSE asks it with a 4-byte (`int`) result.
const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
/// The inode flags ext4 shows to users (the kernel's
/// `EXT4_FL_USER_VISIBLE`); the rest are internal.
const EXT4_FL_USER_VISIBLE: u32 = 0x705B_DFFF;

impl Adapter {
    /// `access(2)` when the kernel does not check permissions itself (no
    /// `default_permissions`): the node must exist, and writing is refused
    /// on a filesystem this server cannot write. Permission bits are the
    /// kernel's business (it has the attributes).
    pub(crate) fn do_access(&self, node: INodeNo, mask: AccessFlags) -> Result<(), Errno> {
        let ino = self.ino(node)?;
        self.fs
            .stat(ino)
            .map_err(|e| self.err(&e, || format!("access inode {ino}")))?;
        if mask.contains(AccessFlags::W_OK) && (self.read_only || !WRITE_SUPPORTED) {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// `lseek` with `SEEK_DATA`/`SEEK_HOLE` (the kernel handles the other
    /// whences itself and never sends them).
    pub(crate) fn do_lseek(&self, node: INodeNo, offset: i64, whence: i32) -> Result<i64, Errno> {
        let hole = match whence {
            libc::SEEK_DATA => false,
            libc::SEEK_HOLE => true,
            _ => return Err(Errno::EINVAL),
        };
        let ino = self.ino(node)?;
        let Ok(from) = u64::try_from(offset) else {
            return Err(Errno::ENXIO);
        };
        match self.fs.seek(ino, from, hole) {
            Ok(Some(at)) => i64::try_from(at).map_err(|_| Errno::ENXIO),
            Ok(None) => Err(Errno::ENXIO),
            Err(e) => Err(self.err(&e, || format!("lseek inode {ino} at {offset}"))),
        }
    }

    /// The answer to an ioctl: `FS_IOC_GETFLAGS` (lsattr) is served from
    /// the inode, every other command is not one of ours (ENOTTY, as the
    /// kernel answers an unknown ioctl).
    pub(crate) fn do_ioctl(
        &self,
        node: INodeNo,
        cmd: u32,
        out_size: u32,
    ) -> Result<Vec<u8>, Errno> {
        if cmd != FS_IOC_GETFLAGS {
            return Err(Errno::ENOTTY);
        }
        let ino = self.ino(node)?;
        let st = self
            .fs
            .stat(ino)
            .map_err(|e| self.err(&e, || format!("getflags inode {ino}")))?;
        let flags = (st.flags & EXT4_FL_USER_VISIBLE).to_ne_bytes();
        let n = flags.len().min(out_size as usize);
        Ok(flags.get(..n).unwrap_or(&[]).to_vec())
    }
}

/// Whether the engine can write. Until it can, write opens are EROFS even on
/// a mount that is nominally read-write.
const WRITE_SUPPORTED: bool = false;

impl fuser::Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut got = Vec::new();
        for (flag, name) in WANTED {
            if config.add_capabilities(*flag).is_ok() {
                got.push(*name);
            }
        }
        // Readahead as large as the kernel allows: file data is read in
        // big sequential requests.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(MAX_BACKGROUND / 4 * 3);
        log::info!(
            "FUSE ABI {:?}; enabled: {}",
            config.kernel_abi(),
            got.join(", ")
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.do_lookup(parent, name.as_bytes()) {
            Ok(Some((attr, gen))) => reply.entry(&TTL, &attr, gen),
            // Node id 0 is a negative entry the kernel caches for the TTL.
            Ok(None) => {
                let none = placeholder_attr(INodeNo(0), FileKind::File, self.blksize);
                reply.entry(&TTL, &none, Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    // `forget`: nothing to do. The adapter keeps no per-node state (node
    // ids are inode numbers, looked up afresh each time), so the kernel's
    // lookup counts have nothing to release. fuser's default ignores it.
    //
    // `getlk`/`setlk`/`flock`: never sent. INIT does not offer
    // FUSE_POSIX_LOCKS or FUSE_FLOCK_LOCKS, so the kernel keeps locks
    // locally, which is exact for a filesystem only this host serves.

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.do_getattr(ino) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let res = self.ino(ino).and_then(|i| {
            self.fs
                .read_link(i)
                .map_err(|e| self.err(&e, || format!("readlink inode {i}")))
        });
        match res {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_refused(flags) {
            Some(e) => reply.error(e),
            // Keep the page cache across opens: nobody else changes the data.
            None => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        if let Some(chunk) = self.read_ahead_hit(ino, offset, size) {
            let got = chunk.len();
            reply.data(&chunk);
            drop(chunk);
            self.after_read(ino, offset, got, size);
            return;
        }
        match self.do_read(ino, offset, size) {
            Ok(data) => {
                let got = data.len();
                reply.data(&data);
                self.ra.give_back(data);
                self.after_read(ino, offset, got, size);
            }
            Err(e) => reply.error(e),
        }
    }

    /// The file's readahead stream goes with its last close.
    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Ok(i) = self.ino(ino) {
            self.ra.forget(i);
        }
        reply.ok();
    }

    /// Nothing to write back: data is never buffered here (the mount is
    /// read-only until the engine writes), so a close has nothing to report.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// Nothing is ever dirty (see `flush`): already durable.
    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// As `fsync`.
    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.do_access(ino, mask) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        match self.do_ioctl(ino, cmd, out_size) {
            Ok(data) => reply.ioctl(0, &data),
            Err(e) => reply.error(e),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.do_lseek(ino, offset, whence) {
            Ok(at) => reply.offset(at),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Let the kernel cache listings and keep them across opens.
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let res = self.fill_dir(ino, offset, false, &mut |it| {
            reply.add(
                it.node,
                it.next,
                file_type(it.kind),
                OsStr::from_bytes(it.name),
            )
        });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let res = self.fill_dir(ino, offset, true, &mut |it| {
            let (attr, gen, ttl) = it
                .plus
                .unwrap_or_else(|| (placeholder_attr(it.node, it.kind, 0), Generation(0), NO_TTL));
            reply.add(
                it.node,
                it.next,
                OsStr::from_bytes(it.name),
                &ttl,
                &attr,
                gen,
            )
        });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks,
            s.blocks_free,
            s.blocks_avail,
            s.files,
            s.files_free,
            s.block_size,
            s.name_max,
            s.block_size,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.do_getxattr(ino, name.as_bytes(), size).send(reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.do_listxattr(ino, size).send(reply);
    }
}
