//! The `fuser::Filesystem` implementation: the dispatch from each FUSE
//! request to the adapter's answer (`ops`, `files`) and its reply.
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

use std::path::Path;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::attr::{file_type, placeholder_attr, timestamp};
use super::ops::{creds, Adapter, NO_TTL, TTL};
use super::writes::Entry;
use fsvc_ext4::attr_write::{SetAttr, TimeSet};
use fsvc_ext4::FileKind;

/// Background requests (readahead, async reads) the kernel may queue. More
/// than the kernel's default 12 so readahead keeps every worker busy.
const MAX_BACKGROUND: u16 = 64;

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

/// Sends an empty reply or the error.
fn empty(reply: ReplyEmpty, res: Result<(), Errno>) {
    match res {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// Sends an entry reply (a new name) or the error.
fn entry(reply: ReplyEntry, res: Result<Entry, Errno>) {
    match res {
        Ok((attr, gen)) => reply.entry(&TTL, &attr, gen),
        Err(e) => reply.error(e),
    }
}

/// Sends a byte count (WRITE, COPY_FILE_RANGE) or the error.
fn written(reply: ReplyWrite, res: Result<u32, Errno>) {
    match res {
        Ok(n) => reply.written(n),
        Err(e) => reply.error(e),
    }
}

fn set_time(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::SpecificTime(t) => TimeSet::At(timestamp(t)),
        TimeOrNow::Now => TimeSet::Now,
    }
}

impl fuser::Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut got = Vec::new();
        for (flag, name) in WANTED {
            if config.add_capabilities(*flag).is_ok() {
                got.push(*name);
            }
        }
        if self.allow_idmap {
            match config.add_capabilities(InitFlags::FUSE_ALLOW_IDMAP) {
                Ok(()) => got.push("allow_idmap"),
                Err(_) => log::warn!(
                    "this kernel cannot idmap FUSE mounts (no FUSE_ALLOW_IDMAP, Linux 6.12+): the idmap will be refused"
                ),
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

    /// Also serves BATCH_FORGET: fuser's default `batch_forget` calls this
    /// for each node (its `ForgetOne` type is private to fuser 0.18, so the
    /// batch cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.do_forget(ino, nlookup);
    }

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

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.do_open(ino, flags) {
            // Keep the page cache across opens: nobody else changes the data.
            Ok(fh) => reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(ino, fh, offset, size) {
            Ok(answer) => {
                // Before the reply, as the kernel's ext4 updates atime
                // before read(2) returns: a stat right after sees it.
                self.accessed_node(ino);
                reply.data(&answer);
                self.read_done(ino, fh, offset, size, answer);
            }
            Err(e) => reply.error(e),
        }
    }

    /// Frees the handle and, with it, the open's readahead stream.
    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.do_release(ino, fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// Checks the handle only. A close reports nothing more, as with the
    /// kernel's ext4: changes reach the engine when their request returns,
    /// and durability (and any write error) is fsync's.
    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.check_file(ino, fh));
    }

    /// Makes the filesystem's changes durable (the engine syncs as a whole:
    /// a file's data and the metadata that finds it), or reports the first
    /// write error since the last sync.
    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.check_file(ino, fh).and_then(|()| self.do_sync(ino)),
        );
    }

    /// As `fsync`, for a directory handle.
    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.check_dir(ino, fh).and_then(|()| self.do_sync(ino)),
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        empty(reply, self.do_access(ino, mask));
    }

    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        let res = self
            .check_any(ino, fh)
            .and_then(|()| self.do_ioctl(creds(req), ino, cmd, in_data, out_size));
        match res {
            Ok(data) => reply.ioctl(0, &data),
            Err(e) => reply.error(e),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let res = self
            .check_file(ino, fh)
            .and_then(|()| self.do_lseek(ino, offset, whence));
        match res {
            Ok(at) => reply.offset(at),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_opendir(ino) {
            // Let the kernel cache listings and keep them across opens.
            Ok(fh) => reply.opened(
                fh,
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.do_releasedir(ino, fh));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let res = self.check_dir(ino, fh).and_then(|()| {
            self.fill_dir(ino, offset, false, &mut |it| {
                reply.add(
                    it.node,
                    it.next,
                    file_type(it.kind),
                    OsStr::from_bytes(it.name),
                )
            })
        });
        match res {
            Ok(next) => {
                self.dir_page(ino, fh, offset, next);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        if let Err(e) = self.check_dir(ino, fh) {
            reply.error(e);
            return;
        }
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
            Ok(next) => {
                self.dir_page(ino, fh, offset, next);
                reply.ok();
            }
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

    // The requests that change the filesystem (`writes`). Each answers
    // EROFS on a read-only mount before it looks at anything else.

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            // The permission bits; the type never changes.
            mode: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime: ctime.map(timestamp),
            // FUSE sends no supplementary groups; under
            // default_permissions the kernel applied the group rules.
            caller_groups: None,
        };
        match self.do_setattr(creds(req), ino, fh, &set) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.do_mknod(creds(req), parent, name.as_bytes(), mode, umask, rdev),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.do_mkdir(creds(req), parent, name.as_bytes(), mode, umask),
        );
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.do_remove(creds(req), parent, name.as_bytes(), false),
        );
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.do_remove(creds(req), parent, name.as_bytes(), true),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.do_symlink(
                creds(req),
                parent,
                link_name.as_bytes(),
                target.as_os_str().as_bytes(),
            ),
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.do_rename(
                creds(req),
                parent,
                name.as_bytes(),
                newparent,
                newname.as_bytes(),
                flags.bits(),
            ),
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.do_link(creds(req), ino, newparent, newname.as_bytes()),
        );
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        written(reply, self.do_write(creds(req), ino, fh, offset, data));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(creds(req), parent, name.as_bytes(), mode, umask, flags) {
            Ok(((attr, gen), fh)) => {
                reply.created(&TTL, &attr, gen, fh, FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.do_fallocate(creds(req), ino, fh, offset, length, mode),
        );
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        written(
            reply,
            self.do_copy_range(
                creds(req),
                (ino_in, fh_in, offset_in),
                (ino_out, fh_out, offset_out),
                len,
            ),
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.do_setxattr(creds(req), ino, name.as_bytes(), value, flags),
        );
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.do_removexattr(creds(req), ino, name.as_bytes()));
    }
}
