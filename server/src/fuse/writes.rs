//! The requests that change the filesystem: each checks that the mount
//! takes changes (EROFS), its handle (EBADF) and its names (ENAMETOOLONG),
//! makes one engine call with the caller's [`Creds`], and then accounts
//! for what the kernel now holds and for durability.
//!
//! Invariants:
//! - a new inode handed to the kernel (CREATE, MKNOD, MKDIR, SYMLINK) is
//!   counted with [`NodeTable::remember_new`] before the reply; a number
//!   the kernel still holds is refused there (EIO, logged), so one node id
//!   never names two inodes; LINK hands over one more entry of an inode
//!   the kernel may already hold (`remember`);
//! - every change of a file's data (WRITE, truncating SETATTR, FALLOCATE,
//!   COPY_FILE_RANGE's destination) holds the inode's data-generation
//!   guard around the engine call, so no readahead window older than the
//!   change is served after it;
//! - after a successful change, [`Adapter::changed`] marks it for the
//!   periodic commit and syncs at once on `sync`/`dirsync` mounts. (An
//!   engine error that is the filesystem's was recorded and written home
//!   by the engine itself.)
//!
//! [`NodeTable::remember_new`]: super::nodes::NodeTable::remember_new

use fuser::{Errno, FileAttr, FileHandle, Generation, INodeNo, OpenFlags};

use super::attr::{file_attr, fuse_ino};
use super::ops::{lossy, Adapter, Change, NAME_MAX};
use fsvc_ext4::attr_write::SetAttr;
use fsvc_ext4::tx::Creds;
use fsvc_ext4::{InodeNo, Stat};

/// `FS_IOC_SETFLAGS` (`_IOW('f', 2, long)`): `chattr`. The kernel's FUSE
/// sends it with a 4-byte (`int`) argument.
pub(crate) const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
/// `FS_IOC_GETVERSION` (`_IOR('v', 1, long)`): the inode's generation,
/// answered as an `int`, as ext4 does.
pub(crate) const FS_IOC_GETVERSION: u32 = 0x8008_7601;

/// The entry reply of a create-style request.
pub(crate) type Entry = (FileAttr, Generation);

fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}

impl Adapter {
    /// The attributes and generation of `st` for a reply.
    fn entry_of(&self, st: &Stat) -> Result<Entry, Errno> {
        let node = fuse_ino(st.ino).ok_or(Errno::EIO)?;
        Ok((
            file_attr(node, st, self.blksize),
            Generation(u64::from(st.generation)),
        ))
    }

    /// Counts a new inode the engine made and builds its entry reply.
    fn new_entry(&self, st: &Stat, what: &str) -> Result<Entry, Errno> {
        if let Err(held) = self.nodes.remember_new(st.ino) {
            log::error!(
                "{what}: the engine handed out inode {}, which the kernel still holds \
                 ({held:?}); refusing to give one node id to two inodes",
                st.ino
            );
            return Err(Errno::EIO);
        }
        self.entry_of(st)
    }

    /// The common tail of create-style requests: the engine call's result,
    /// counted as a new inode, the change accounted.
    fn made(
        &self,
        res: fsvc_ext4::Result<Stat>,
        what: impl Fn() -> String,
    ) -> Result<(Stat, Entry), Errno> {
        let st = res.map_err(|e| self.err(&e, &what))?;
        let entry = self.new_entry(&st, &what())?;
        self.changed(Change::Namespace)?;
        Ok((st, entry))
    }

    /// MKNOD (files, devices, fifos, sockets).
    pub(crate) fn do_mknod(
        &self,
        creds: Creds,
        parent: INodeNo,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Entry, Errno> {
        self.check_writable()?;
        let dir = self.ino(parent)?;
        check_name(name)?;
        let res = self.fs.mknod(creds, dir, name, mode, umask, rdev);
        self.made(res, || format!("mknod {:?} in inode {dir}", lossy(name)))
            .map(|(_, e)| e)
    }

    /// CREATE: a new regular file, opened with `flags`.
    pub(crate) fn do_create(
        &self,
        creds: Creds,
        parent: INodeNo,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Entry, FileHandle), Errno> {
        self.check_writable()?;
        let dir = self.ino(parent)?;
        check_name(name)?;
        let mode = (mode & !libc::S_IFMT) | libc::S_IFREG;
        let res = self.fs.mknod(creds, dir, name, mode, umask, 0);
        let (st, entry) = self.made(res, || format!("create {:?} in inode {dir}", lossy(name)))?;
        self.nodes.opened(st.ino);
        Ok((entry, self.handles.open_file(st.ino, OpenFlags(flags))))
    }

    /// MKDIR.
    pub(crate) fn do_mkdir(
        &self,
        creds: Creds,
        parent: INodeNo,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> Result<Entry, Errno> {
        self.check_writable()?;
        let dir = self.ino(parent)?;
        check_name(name)?;
        let res = self.fs.mkdir(creds, dir, name, mode, umask);
        self.made(res, || format!("mkdir {:?} in inode {dir}", lossy(name)))
            .map(|(_, e)| e)
    }

    /// SYMLINK.
    pub(crate) fn do_symlink(
        &self,
        creds: Creds,
        parent: INodeNo,
        name: &[u8],
        target: &[u8],
    ) -> Result<Entry, Errno> {
        self.check_writable()?;
        let dir = self.ino(parent)?;
        check_name(name)?;
        let res = self.fs.symlink(creds, dir, name, target);
        self.made(res, || format!("symlink {:?} in inode {dir}", lossy(name)))
            .map(|(_, e)| e)
    }

    /// LINK: one more name for `node`, one more entry the kernel holds.
    pub(crate) fn do_link(
        &self,
        creds: Creds,
        node: INodeNo,
        newparent: INodeNo,
        newname: &[u8],
    ) -> Result<Entry, Errno> {
        self.check_writable()?;
        let ino = self.ino(node)?;
        let dir = self.ino(newparent)?;
        check_name(newname)?;
        let st = self
            .fs
            .link(creds, ino, dir, newname)
            .map_err(|e| self.err(&e, || format!("link inode {ino} as {:?}", lossy(newname))))?;
        self.nodes.remember(ino);
        self.changed(Change::Namespace)?;
        self.entry_of(&st)
    }

    /// UNLINK and RMDIR. The inode itself stays while the kernel holds it
    /// (it is freed at its last FORGET or RELEASE: `files`).
    pub(crate) fn do_remove(
        &self,
        creds: Creds,
        parent: INodeNo,
        name: &[u8],
        dir_wanted: bool,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let dir = self.ino(parent)?;
        check_name(name)?;
        let res = if dir_wanted {
            self.fs.rmdir(creds, dir, name)
        } else {
            self.fs.unlink(creds, dir, name)
        };
        let orphan = res.map_err(|e| {
            let op = if dir_wanted { "rmdir" } else { "unlink" };
            self.err(&e, || format!("{op} {:?} in inode {dir}", lossy(name)))
        })?;
        self.removed(orphan)
    }

    /// After a change that may have taken an inode's last link: the orphan
    /// is freed now if nothing holds it, else at its last reference.
    fn removed(&self, orphan: Option<InodeNo>) -> Result<(), Errno> {
        if let Some(ino) = orphan {
            if self.nodes.orphaned(ino) {
                self.evict(ino);
            }
        }
        self.changed(Change::Namespace)
    }

    /// RENAME (with renameat2's flags).
    pub(crate) fn do_rename(
        &self,
        creds: Creds,
        parent: INodeNo,
        name: &[u8],
        newparent: INodeNo,
        newname: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let from = self.ino(parent)?;
        let to = self.ino(newparent)?;
        check_name(name)?;
        check_name(newname)?;
        let orphan = self
            .fs
            .rename(creds, from, name, to, newname, flags)
            .map_err(|e| {
                self.err(&e, || {
                    format!(
                        "rename {:?} in inode {from} to {:?} in inode {to}",
                        lossy(name),
                        lossy(newname)
                    )
                })
            })?;
        self.removed(orphan)
    }

    /// WRITE through handle `fh`, which must be open for writing.
    pub(crate) fn do_write(
        &self,
        creds: Creds,
        node: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
    ) -> Result<u32, Errno> {
        self.check_writable()?;
        let ino = self.ino(node)?;
        let file = self.handles.file(fh, ino)?;
        if !file.writable() {
            return Err(Errno::EBADF);
        }
        let append = file.flags.0 & libc::O_APPEND != 0;
        let n = {
            let _data = self.gens.begin_write(ino);
            self.fs
                .write(creds, ino, offset, data, append)
                .map_err(|e| self.err(&e, || format!("write inode {ino} at {offset}")))?
        };
        self.changed(Change::Inode)?;
        // At most the request's length, which fuser bounds far below 4 GiB.
        u32::try_from(n).map_err(|_| Errno::EIO)
    }

    /// SETATTR (chmod, chown, truncate, utimens). `fh` (ftruncate,
    /// futimens) must be a handle on `node` when given.
    pub(crate) fn do_setattr(
        &self,
        creds: Creds,
        node: INodeNo,
        fh: Option<FileHandle>,
        set: &SetAttr,
    ) -> Result<FileAttr, Errno> {
        self.check_writable()?;
        let ino = self.ino(node)?;
        if let Some(fh) = fh {
            self.handles.any(fh, ino)?;
        }
        let st = {
            let _data = set.size.map(|_| self.gens.begin_write(ino));
            self.fs
                .setattr(creds, ino, set)
                .map_err(|e| self.err(&e, || format!("setattr inode {ino}")))?
        };
        self.changed(Change::Inode)?;
        Ok(file_attr(node, &st, self.blksize))
    }

    /// FALLOCATE through handle `fh`.
    pub(crate) fn do_fallocate(
        &self,
        creds: Creds,
        node: INodeNo,
        fh: FileHandle,
        offset: u64,
        len: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let ino = self.ino(node)?;
        self.handles.file(fh, ino)?;
        {
            let _data = self.gens.begin_write(ino);
            self.fs
                .fallocate(creds, ino, mode, offset, len)
                .map_err(|e| self.err(&e, || format!("fallocate inode {ino} at {offset}")))?;
        }
        self.changed(Change::Inode)
    }

    /// COPY_FILE_RANGE between two open files.
    pub(crate) fn do_copy_range(
        &self,
        creds: Creds,
        src: (INodeNo, FileHandle, u64),
        dst: (INodeNo, FileHandle, u64),
        len: u64,
    ) -> Result<u32, Errno> {
        self.check_writable()?;
        let (sino, dino) = (self.ino(src.0)?, self.ino(dst.0)?);
        self.handles.file(src.1, sino)?;
        let out = self.handles.file(dst.1, dino)?;
        if !out.writable() {
            return Err(Errno::EBADF);
        }
        // The reply counts bytes in 32 bits, as the kernel's FUSE does.
        let len = len.min(u64::from(u32::MAX));
        let n = {
            let _data = self.gens.begin_write(dino);
            self.fs
                .copy_range(creds, sino, src.2, dino, dst.2, len)
                .map_err(|e| self.err(&e, || format!("copy_file_range inode {sino} to {dino}")))?
        };
        self.changed(Change::Inode)?;
        u32::try_from(n).map_err(|_| Errno::EIO)
    }

    /// SETXATTR.
    pub(crate) fn do_setxattr(
        &self,
        creds: Creds,
        node: INodeNo,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let ino = self.ino(node)?;
        self.fs
            .set_xattr(creds, ino, name, value, flags)
            .map_err(|e| self.err(&e, || format!("setxattr {:?} of inode {ino}", lossy(name))))?;
        self.changed(Change::Inode)
    }

    /// REMOVEXATTR.
    pub(crate) fn do_removexattr(
        &self,
        creds: Creds,
        node: INodeNo,
        name: &[u8],
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let ino = self.ino(node)?;
        self.fs.remove_xattr(creds, ino, name).map_err(|e| {
            self.err(&e, || {
                format!("removexattr {:?} of inode {ino}", lossy(name))
            })
        })?;
        self.changed(Change::Inode)
    }

    /// `FS_IOC_SETFLAGS` with the caller's `int` argument.
    pub(crate) fn do_setflags(&self, creds: Creds, ino: InodeNo, arg: &[u8]) -> Result<(), Errno> {
        self.check_writable()?;
        let bytes: [u8; 4] = arg
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(Errno::EINVAL)?;
        self.fs
            .set_flags(creds, ino, u32::from_ne_bytes(bytes))
            .map_err(|e| self.err(&e, || format!("setflags inode {ino}")))?;
        self.changed(Change::Inode)
    }
}
