//! The adapter from FUSE requests to the engine: each request becomes one
//! or two engine calls, and each engine error one errno. The
//! `fuser::Filesystem` dispatch is in `filesystem`, open files and the read
//! path in `files`; here are the namespace, attribute and xattr answers.
//!
//! State: node ids are inode numbers (see `attr`); the node table
//! (`nodes`) counts the entries the kernel holds, the handle table
//! (`handles`) holds what each open has; directory offsets are the
//! engine's resume cookies.
//!
//! Caching: this server is the only writer of the filesystem it serves (the
//! helper opened the device exclusively, MMP guards against other hosts), so
//! nothing changes behind the kernel's back and long TTLs are safe: the
//! kernel keeps attributes, dentries (positive and negative), symlink
//! targets, directory listings and file pages until memory pressure evicts
//! them. The TTL is still finite ([`TTL`]) so that a mistake can never pin a
//! stale view forever.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fuser::{AccessFlags, Errno, FileAttr, Generation, INodeNo, ReplyXattr};

use super::attr::{ext4_ino, file_attr, fuse_ino, placeholder_attr};
use super::backend::Backend;
use super::commit::Changes;
use super::datagen::DataGen;
use super::errno::ErrorLog;
use super::handles::HandleTable;
use super::nodes::NodeTable;
use super::readahead::ReadAhead;
use super::writes::{FS_IOC_GETVERSION, FS_IOC_SETFLAGS};
use super::ServeOptions;
use crate::mode::MountMode;
use crate::service::MountFlags;
use fsvc_ext4::attr_write::{AtimeMode as EngineAtime, AtimePolicy};
use fsvc_ext4::tx::Creds;
use fsvc_ext4::{DirEntry, Error, FileKind, InodeNo};

/// Attribute and entry lifetime in the kernel's caches: an hour. Long,
/// because nothing but this server changes the filesystem; finite, so a
/// bug can only ever leave a bounded window of staleness.
pub(crate) const TTL: Duration = Duration::from_secs(3600);
/// TTL of attributes we could not read (placeholders in readdirplus): none,
/// so any real use of the entry asks again and receives the error.
pub(crate) const NO_TTL: Duration = Duration::ZERO;
/// Longest name a directory entry can have.
pub(crate) const NAME_MAX: usize = 255;

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

    pub(crate) fn send(self, reply: ReplyXattr) {
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

/// The adapter from FUSE requests to a [`Backend`].
pub(crate) struct Adapter {
    pub(crate) fs: Arc<dyn Backend>,
    pub(crate) mode: MountMode,
    /// `sync`, `dirsync` and the atime mode of the mount.
    pub(crate) flags: MountFlags,
    /// What changed since the last sync (shared with the periodic commit).
    pub(crate) changes: Arc<Changes>,
    /// Tells the kernel what the server changed on its own (set once the
    /// session exists; unset in tests that call the adapter directly).
    pub(crate) notifier: Arc<OnceLock<fuser::Notifier>>,
    /// The filesystem block size, reported as `st_blksize`.
    pub(crate) blksize: u32,
    /// Ask the kernel for `FUSE_ALLOW_IDMAP` at INIT (the helper will
    /// idmap the mount; see `ServeOptions::allow_idmap`).
    pub(crate) allow_idmap: bool,
    errors: ErrorLog,
    /// The inodes the kernel and the open handles hold (shared so that
    /// tests can watch it while the session owns the adapter).
    pub(crate) nodes: Arc<NodeTable>,
    /// Open files and directories.
    pub(crate) handles: HandleTable,
    /// Data generations: a write's mark for the readahead.
    pub(crate) gens: Arc<DataGen>,
    /// Sequential readahead of file data (see `readahead`).
    pub(crate) ra: ReadAhead,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("mode", &self.mode)
            .field("blksize", &self.blksize)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Adapter {
    pub(crate) fn new(fs: Arc<dyn Backend>, opts: &ServeOptions) -> Adapter {
        let blksize = fs.statfs().block_size;
        let gens = Arc::new(DataGen::default());
        Adapter {
            fs,
            mode: opts.mode,
            flags: opts.flags,
            changes: Arc::default(),
            notifier: Arc::default(),
            blksize,
            allow_idmap: opts.allow_idmap,
            errors: ErrorLog::default(),
            nodes: Arc::default(),
            handles: HandleTable::default(),
            ra: ReadAhead::new(gens.clone()),
            gens,
        }
    }

    pub(crate) fn err(&self, e: &Error, context: impl FnOnce() -> String) -> Errno {
        self.errors.errno(e, &context())
    }

    /// The ext4 inode of a node id from the kernel; ESTALE for ids we never issued.
    pub(crate) fn ino(&self, node: INodeNo) -> Result<InodeNo, Errno> {
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

    /// `Ok(None)` is a name that does not exist (a negative entry). An
    /// entry found is counted in the node table: the caller sends it.
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
            Ok(ino) => {
                let found = self.entry_attr(dir, name, ino)?;
                self.nodes.remember(ino);
                Ok(Some(found))
            }
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
    /// With `plus`, every entry taken but `.` and `..` is counted in the
    /// node table (the kernel counts them as lookups; the caller sends the
    /// page). Returns the offset after the last entry taken (`offset` when
    /// none was).
    pub(crate) fn fill_dir(
        &self,
        node: INodeNo,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(DirItem<'_>) -> bool,
    ) -> Result<u64, Errno> {
        let dir = self.ino(node)?;
        let mut taken = 0usize;
        let mut next = offset;
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
                next = e.next_cookie;
                if plus && e.name != b"." && e.name != b".." {
                    self.nodes.remember(e.ino);
                }
            }
            !full
        });
        match res {
            Ok(()) => Ok(next),
            Err(e) => {
                let errno = self.err(&e, || format!("readdir inode {dir} at {offset}"));
                if taken > 0 {
                    Ok(next)
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
}

/// `FS_IOC_GETFLAGS` (`_IOR('f', 1, long)`): the inode flags `lsattr`
/// shows. The kernel's FUSE asks it with a 4-byte (`int`) result.
const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
/// `FS_IOC_FSGETXATTR` (`_IOR('X', 31, struct fsxattr)`): the kernel's
/// FUSE asks it to learn the old flags before every flag change
/// (`vfs_fileattr_set`), and `xfs_io -c lsattr` asks it.
const FS_IOC_FSGETXATTR: u32 = 0x801C_581F;
/// `FS_IOC_FSSETXATTR` (`_IOW('X', 32, struct fsxattr)`).
const FS_IOC_FSSETXATTR: u32 = 0x401C_5820;
/// `sizeof(struct fsxattr)`: xflags, extsize, nextents, projid,
/// cowextsize (u32 each), 8 bytes of padding.
const FSXATTR_SIZE: usize = 28;
/// Offset of `fsx_projid` in `struct fsxattr`.
const FSXATTR_PROJID: usize = 12;

/// The inode flags that have an `FS_XFLAG_*` twin, and the twin, as the
/// kernel's `ext4_iflags_to_xflags` pairs them.
const XFLAGS: [(u32, u32); 7] = [
    (fsvc_ext4::flags::FL_SYNC, 0x20),         // FS_XFLAG_SYNC
    (fsvc_ext4::inode::flags::IMMUTABLE, 0x8), // FS_XFLAG_IMMUTABLE
    (fsvc_ext4::inode::flags::APPEND, 0x10),   // FS_XFLAG_APPEND
    (fsvc_ext4::flags::FL_NODUMP, 0x80),       // FS_XFLAG_NODUMP
    (fsvc_ext4::flags::FL_NOATIME, 0x40),      // FS_XFLAG_NOATIME
    (fsvc_ext4::flags::FL_PROJINHERIT, 0x200), // FS_XFLAG_PROJINHERIT
    (fsvc_ext4::flags::FL_DAX, 0x8000),        // FS_XFLAG_DAX
];

/// The `fsx_xflags` of inode flags `flags`.
fn xflags_of(flags: u32) -> u32 {
    XFLAGS
        .iter()
        .filter(|(f, _)| flags & f != 0)
        .fold(0, |x, (_, xf)| x | xf)
}

/// Inode flags `flags` with their xflag twins replaced by `xflags`'s.
fn flags_with_xflags(flags: u32, xflags: u32) -> u32 {
    XFLAGS.iter().fold(
        flags,
        |f, &(fl, xf)| {
            if xflags & xf != 0 {
                f | fl
            } else {
                f & !fl
            }
        },
    )
}

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
        if mask.contains(AccessFlags::W_OK) {
            self.check_writable()?;
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

    /// The answer to an ioctl: `FS_IOC_GETFLAGS` (lsattr) and
    /// `FS_IOC_GETVERSION` are served from the inode, `FS_IOC_SETFLAGS`
    /// (chattr) by the engine; every other command is not one of ours
    /// (ENOTTY, as the kernel answers an unknown ioctl).
    pub(crate) fn do_ioctl(
        &self,
        creds: Creds,
        node: INodeNo,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
    ) -> Result<Vec<u8>, Errno> {
        let ino = self.ino(node)?;
        let value = match cmd {
            FS_IOC_SETFLAGS => {
                self.do_setflags(creds, ino, in_data)?;
                return Ok(Vec::new());
            }
            FS_IOC_FSGETXATTR => {
                let flags = self
                    .fs
                    .get_flags(ino)
                    .map_err(|e| self.err(&e, || format!("fsgetxattr inode {ino}")))?;
                let mut out = vec![0u8; FSXATTR_SIZE];
                out[..4].copy_from_slice(&xflags_of(flags).to_ne_bytes());
                out.truncate(out_size as usize);
                return Ok(out);
            }
            FS_IOC_FSSETXATTR => {
                self.do_fssetxattr(creds, ino, in_data)?;
                return Ok(Vec::new());
            }
            FS_IOC_GETFLAGS => self.fs.get_flags(ino),
            FS_IOC_GETVERSION => self.fs.get_version(ino),
            _ => return Err(Errno::ENOTTY),
        };
        let value = value.map_err(|e| self.err(&e, || format!("ioctl {cmd:#x} inode {ino}")))?;
        let bytes = value.to_ne_bytes();
        let n = bytes.len().min(out_size as usize);
        Ok(bytes.get(..n).unwrap_or(&[]).to_vec())
    }
}

impl Adapter {
    /// `FS_IOC_FSSETXATTR`: the xflags replace their inode-flag twins (the
    /// other flags stay); a project id is refused (EOPNOTSUPP: fsvc
    /// refuses the project feature read-write), other fields are ignored,
    /// as ext4 ignores them.
    fn do_fssetxattr(&self, creds: Creds, ino: InodeNo, arg: &[u8]) -> Result<(), Errno> {
        self.check_writable()?;
        let word = |at: usize| -> Result<u32, Errno> {
            let b: [u8; 4] = arg
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Errno::EINVAL)?;
            Ok(u32::from_ne_bytes(b))
        };
        let (xflags, projid) = (word(0)?, word(FSXATTR_PROJID)?);
        if projid != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let old = self
            .fs
            .get_flags(ino)
            .map_err(|e| self.err(&e, || format!("fssetxattr inode {ino}")))?;
        self.do_setflags(creds, ino, &flags_with_xflags(old, xflags).to_ne_bytes())
    }

    /// FSYNC/FSYNCDIR on `node` (handle already checked): the engine's
    /// sync, whose errors go through the one errno table (a write error
    /// kept since a writeback is EIO), or the error a background commit
    /// met since the last fsync.
    pub(crate) fn do_sync(&self, node: INodeNo) -> Result<(), Errno> {
        let res = self
            .changes
            .sync(&*self.fs)
            .map_err(|e| self.err(&e, || format!("fsync of node {node}")));
        match self.changes.take_error() {
            Some(kept) => Err(kept),
            None => res,
        }
    }

    /// Whether this mount takes changes. The mode is read-write only when
    /// the engine can write (`mode::ENGINE_WRITES`); until then every
    /// request that would change something answers EROFS here.
    pub(crate) fn writable(&self) -> bool {
        !self.mode.is_read_only()
    }

    /// EROFS unless the mount takes changes: the first check of every
    /// request that changes the filesystem.
    pub(crate) fn check_writable(&self) -> Result<(), Errno> {
        if self.writable() {
            Ok(())
        } else {
            Err(Errno::EROFS)
        }
    }

    /// After an engine call that changed (or tried to change) the
    /// filesystem: marks it for the periodic commit, and makes it durable
    /// now on a `sync` mount, or a `dirsync` mount for a directory change
    /// (`what`), as the kernel does before such a request returns. The
    /// sync's error is the request's.
    pub(crate) fn changed(&self, what: Change) -> Result<(), Errno> {
        self.changes.mark();
        let now = self.flags.sync || (self.flags.dirsync && what == Change::Namespace);
        if !now {
            return Ok(());
        }
        self.changes
            .sync(&*self.fs)
            .map_err(|e| self.err(&e, || "sync after a change (sync/dirsync mount)".into()))
    }
}

impl Adapter {
    /// The mount's atime policy, in the engine's terms.
    fn atime_policy(&self) -> AtimePolicy {
        AtimePolicy {
            mode: match self.flags.atime {
                crate::service::AtimeMode::NoAtime => EngineAtime::NoAtime,
                crate::service::AtimeMode::Relatime => EngineAtime::Relatime,
                crate::service::AtimeMode::Strict => EngineAtime::Strict,
            },
            nodiratime: self.flags.nodiratime,
        }
    }

    /// [`Adapter::accessed`] for a node id from the kernel.
    pub(crate) fn accessed_node(&self, node: INodeNo) {
        if let Ok(ino) = self.ino(node) {
            self.accessed(node, ino);
        }
    }

    /// A read or a listing of `node` reached the server (called before the
    /// reply): the atime update the mount's policy asks for. The FUSE
    /// kernel marks its inodes `S_NOATIME` and leaves atime to the server;
    /// reads served from the kernel's page cache never get here, so atime
    /// moves only for reads that reach the server. The kernel drops its
    /// cached atime after every READ and READDIR (`fuse_invalidate_atime`);
    /// when atime changed the attributes are invalidated here as well, so
    /// no cached copy outlives the change whatever the kernel does.
    pub(crate) fn accessed(&self, node: INodeNo, ino: InodeNo) {
        if !self.writable() || self.flags.atime == crate::service::AtimeMode::NoAtime {
            return;
        }
        match self.fs.touch_atime(ino, self.atime_policy()) {
            Ok(false) => {}
            Ok(true) => {
                self.changes.mark();
                self.invalidate_attrs(node);
            }
            Err(e) => {
                // The read itself succeeded: an atime that could not be
                // written is logged (and recorded by the engine if it is
                // the filesystem's fault), not the reader's error.
                self.err(&e, || format!("atime update of inode {ino}"));
            }
        }
    }

    /// Tells the kernel that `node`'s attributes changed behind its back
    /// (its cache would keep them for the TTL otherwise). Only attributes:
    /// a negative offset leaves the page cache alone, and this never waits
    /// for a lock the request being answered could hold.
    pub(crate) fn invalidate_attrs(&self, node: INodeNo) {
        if let Some(n) = self.notifier.get() {
            if let Err(e) = n.inval_inode(node, -1, 0) {
                // ENOENT: the kernel no longer has the inode; nothing to do.
                if e.raw_os_error() != Some(libc::ENOENT) {
                    log::debug!("invalidating node {node}: {e}");
                }
            }
        }
    }
}

/// What kind of change a request made (for `dirsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// A directory's entries (create, mkdir, link, unlink, rename, ...).
    Namespace,
    /// File data or attributes.
    Inode,
}

/// The engine's view of who asks: the request's fsuid and fsgid (the kernel
/// checked permissions already, `default_permissions`; the engine needs the
/// caller for ownership of what it creates and for the reserved blocks).
/// Supplementary groups are not sent by FUSE for most requests; the
/// setgid-directory rule needs only the directory's group.
pub(crate) fn creds(req: &fuser::Request) -> Creds {
    Creds {
        uid: req.uid(),
        gid: req.gid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xflags_pair_with_their_inode_flags() {
        // (inode flags, xflags): every twin, none, and flags without twins.
        let table = [
            (0u32, 0u32),
            (0x8, 0x20),
            (0x10, 0x8),
            (0x20, 0x10),
            (0x40, 0x80),
            (0x80, 0x40),
            (0x2000_0000, 0x200),
            (0x200_0000, 0x8000),
            (0x8_0000 | 0x10, 0x8), // EXTENTS has no twin
        ];
        for (flags, xflags) in table {
            assert_eq!(xflags_of(flags), xflags, "{flags:#x}");
            // Setting the xflags back changes nothing; clearing them keeps
            // only the flags without a twin.
            assert_eq!(flags_with_xflags(flags, xflags), flags, "{flags:#x}");
            assert_eq!(flags_with_xflags(flags, 0), flags & 0x8_0000, "{flags:#x}");
        }
    }
}
