//! The slice of the engine the adapter uses, as a trait, so the adapter's
//! logic (directory paging, xattr sizing, node-id mapping) is tested against
//! a small fake as well as against the real [`Fs`].
//!
//! The implementation for [`Fs`] is where the engine's locking contract is
//! kept for the adapter (docs/design-notes.md, "Write path"): every call
//! that looks at metadata holds the change lock shared
//! ([`Fs::read_guard`]), so it never sees half of a commit, and a data
//! read holds its inode's lock shared first (inode locks come before the
//! change lock), so no write, truncate or mapping change of that file runs
//! under it. The adapter itself never holds an engine lock across calls.

use fsvc_ext4::attr_write::{AtimePolicy, SetAttr};
use fsvc_ext4::flags::FL_USER_VISIBLE;
use fsvc_ext4::inode::flags;
use fsvc_ext4::tx::Creds;
use fsvc_ext4::xattr_write::XattrFlags;
use fsvc_ext4::{DirEntry, Error, FileKind, Fs, InodeNo, Lblk, Result, Stat, StatFs};

/// Most extent runs one `SEEK_DATA`/`SEEK_HOLE` walks before it gives the
/// always-correct conservative answer (data here, the hole at the end of
/// file): a hostile or pathological mapping cannot make one request long.
const MAX_SEEK_RUNS: u32 = 1 << 16;

/// What the FUSE adapter asks of a filesystem. Mirrors `ext4::Fs`'s public API.
pub(crate) trait Backend: Send + Sync + 'static {
    /// See `Fs::stat`.
    fn stat(&self, ino: InodeNo) -> Result<Stat>;
    /// See `Fs::lookup`.
    fn lookup(&self, dir: InodeNo, name: &[u8]) -> Result<InodeNo>;
    /// See `Fs::read`.
    fn read(&self, ino: InodeNo, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// See `Fs::read_dir`.
    fn read_dir(
        &self,
        dir: InodeNo,
        cookie: u64,
        f: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<()>;
    /// See `Fs::read_link`.
    fn read_link(&self, ino: InodeNo) -> Result<Vec<u8>>;
    /// See `Fs::list_xattrs`.
    fn list_xattrs(&self, ino: InodeNo) -> Result<Vec<Vec<u8>>>;
    /// See `Fs::get_xattr`.
    fn get_xattr(&self, ino: InodeNo, name: &[u8]) -> Result<Vec<u8>>;
    /// See `Fs::statfs`.
    fn statfs(&self) -> StatFs;
    /// `SEEK_DATA` (`hole` false) or `SEEK_HOLE` (`hole` true) from
    /// `offset` in file `ino`: the offset found, or `None` when there is no
    /// data at or after `offset` (ENXIO). Every file has a hole at its end.
    fn seek(&self, ino: InodeNo, offset: u64, hole: bool) -> Result<Option<u64>>;

    // The write side. The defaults are those of a backend that never
    // changes (the read-only test doubles); `Fs` implements every one.

    /// See `Fs::sync`: every completed change durable, or the first write
    /// error since the last sync. Default: nothing to make durable.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// `FS_IOC_GETFLAGS`: the inode flags a caller sees.
    fn get_flags(&self, ino: InodeNo) -> Result<u32> {
        Ok(self.stat(ino)?.flags & FL_USER_VISIBLE)
    }

    /// `FS_IOC_GETVERSION`: the inode's generation.
    fn get_version(&self, ino: InodeNo) -> Result<u32> {
        Ok(self.stat(ino)?.generation)
    }

    /// The atime update a read or a listing of `ino` makes under `policy`;
    /// returns whether atime changed (the kernel's cached attributes are
    /// then stale). Default: atime never changes.
    fn touch_atime(&self, _ino: InodeNo, _policy: AtimePolicy) -> Result<bool> {
        Ok(false)
    }

    /// Frees the orphan `ino` (its last link went and now nothing holds
    /// it: the kernel forgot its last lookup and its last handle was
    /// released), as the kernel's final `iput` does. An inode that has
    /// links again is left alone.
    fn evict(&self, _ino: InodeNo) -> Result<()> {
        Err(Error::ReadOnly)
    }

    // Changes. Each returns what the reply needs; the default (a backend
    // that cannot change: the read-only doubles, or an operation the
    // engine does not have) is `Error::ReadOnly`, EROFS, never reached on
    // a read-write mount of `Fs`, which implements each it supports and
    // answers `Error::Unsupported` (EOPNOTSUPP) for the rest.

    /// Writes `data` at `offset` of file `ino` (at its end when `append`);
    /// returns the bytes written.
    fn write(
        &self,
        _creds: Creds,
        _ino: InodeNo,
        _offset: u64,
        _data: &[u8],
        _append: bool,
    ) -> Result<usize> {
        Err(Error::ReadOnly)
    }

    /// Changes `ino`'s attributes; returns them as they are now.
    fn setattr(&self, _creds: Creds, _ino: InodeNo, _set: &SetAttr) -> Result<Stat> {
        Err(Error::ReadOnly)
    }

    /// Creates `name` in `parent`: a file, device, fifo or socket by
    /// `mode`'s type bits (`rdev` for devices, the kernel's encoding), with
    /// `umask` the caller's (the kernel applied it to `mode` already).
    fn mknod(
        &self,
        _creds: Creds,
        _parent: InodeNo,
        _name: &[u8],
        _mode: u32,
        _umask: u32,
        _rdev: u32,
    ) -> Result<Stat> {
        Err(Error::ReadOnly)
    }

    /// Makes directory `name` in `parent`.
    fn mkdir(
        &self,
        _creds: Creds,
        _parent: InodeNo,
        _name: &[u8],
        _mode: u32,
        _umask: u32,
    ) -> Result<Stat> {
        Err(Error::ReadOnly)
    }

    /// Makes symlink `name` in `parent` pointing to `target`.
    fn symlink(
        &self,
        _creds: Creds,
        _parent: InodeNo,
        _name: &[u8],
        _target: &[u8],
    ) -> Result<Stat> {
        Err(Error::ReadOnly)
    }

    /// A new name `name` in `parent` for `ino`; returns its attributes.
    fn link(&self, _creds: Creds, _ino: InodeNo, _parent: InodeNo, _name: &[u8]) -> Result<Stat> {
        Err(Error::ReadOnly)
    }

    /// Removes the non-directory `name` from `parent`; returns the inode
    /// when that was its last link (an orphan the adapter must evict).
    fn unlink(&self, _creds: Creds, _parent: InodeNo, _name: &[u8]) -> Result<Option<InodeNo>> {
        Err(Error::ReadOnly)
    }

    /// Removes the empty directory `name` from `parent`; returns it (now
    /// an orphan).
    fn rmdir(&self, _creds: Creds, _parent: InodeNo, _name: &[u8]) -> Result<Option<InodeNo>> {
        Err(Error::ReadOnly)
    }

    /// Renames `parent`/`name` to `newparent`/`newname` (`flags`:
    /// `RENAME_NOREPLACE`, `RENAME_EXCHANGE`, `RENAME_WHITEOUT`); returns
    /// the replaced inode when that lost its last link.
    fn rename(
        &self,
        _creds: Creds,
        _parent: InodeNo,
        _name: &[u8],
        _newparent: InodeNo,
        _newname: &[u8],
        _flags: u32,
    ) -> Result<Option<InodeNo>> {
        Err(Error::ReadOnly)
    }

    /// `fallocate(2)` of `len` bytes at `offset` of `ino` with `mode`'s
    /// `FALLOC_FL_*` bits.
    fn fallocate(
        &self,
        _creds: Creds,
        _ino: InodeNo,
        _mode: i32,
        _offset: u64,
        _len: u64,
    ) -> Result<()> {
        Err(Error::ReadOnly)
    }

    /// Copies `len` bytes from `src` at `src_off` to `dst` at `dst_off`;
    /// returns the bytes copied.
    fn copy_range(
        &self,
        _creds: Creds,
        _src: InodeNo,
        _src_off: u64,
        _dst: InodeNo,
        _dst_off: u64,
        _len: u64,
    ) -> Result<usize> {
        Err(Error::ReadOnly)
    }

    /// Sets xattr `name` of `ino` to `value` (`flags`: `XATTR_CREATE`,
    /// `XATTR_REPLACE`).
    fn set_xattr(
        &self,
        _creds: Creds,
        _ino: InodeNo,
        _name: &[u8],
        _value: &[u8],
        _flags: i32,
    ) -> Result<()> {
        Err(Error::ReadOnly)
    }

    /// Removes xattr `name` of `ino`.
    fn remove_xattr(&self, _creds: Creds, _ino: InodeNo, _name: &[u8]) -> Result<()> {
        Err(Error::ReadOnly)
    }

    /// Sets `ino`'s user-visible inode flags (`FS_IOC_SETFLAGS`).
    fn set_flags(&self, _creds: Creds, _ino: InodeNo, _flags: u32) -> Result<()> {
        Err(Error::ReadOnly)
    }
}

// `Fs::x(self, ..)` names the inherent method (inherent methods take
// precedence over trait methods in path resolution).
impl Backend for Fs {
    fn stat(&self, ino: InodeNo) -> Result<Stat> {
        let _g = self.read_guard()?;
        Fs::stat(self, ino)
    }
    fn lookup(&self, dir: InodeNo, name: &[u8]) -> Result<InodeNo> {
        let _g = self.read_guard()?;
        Fs::lookup(self, dir, name)
    }
    fn read(&self, ino: InodeNo, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let _file = self.inode_locks().read(ino);
        let _g = self.read_guard()?;
        Fs::read(self, ino, offset, buf)
    }
    fn read_dir(
        &self,
        dir: InodeNo,
        cookie: u64,
        f: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<()> {
        // The callback only builds the reply (and, for readdirplus, stats
        // the entry: a nested guard on this thread, which is free).
        let _g = self.read_guard()?;
        Fs::read_dir(self, dir, cookie, f)
    }
    fn read_link(&self, ino: InodeNo) -> Result<Vec<u8>> {
        let _g = self.read_guard()?;
        Fs::read_link(self, ino)
    }
    fn list_xattrs(&self, ino: InodeNo) -> Result<Vec<Vec<u8>>> {
        let _g = self.read_guard()?;
        Fs::list_xattrs(self, ino)
    }
    fn get_xattr(&self, ino: InodeNo, name: &[u8]) -> Result<Vec<u8>> {
        let _g = self.read_guard()?;
        Fs::get_xattr(self, ino, name)
    }
    fn statfs(&self) -> StatFs {
        // Counts move only at commit; a stopped filesystem still answers.
        let _g = self.read_guard().ok();
        Fs::statfs(self)
    }
    fn sync(&self) -> Result<()> {
        Fs::sync(self)
    }
    fn get_flags(&self, ino: InodeNo) -> Result<u32> {
        let _g = self.read_guard()?;
        Fs::get_flags(self, ino)
    }
    fn get_version(&self, ino: InodeNo) -> Result<u32> {
        let _g = self.read_guard()?;
        Fs::get_version(self, ino)
    }
    fn touch_atime(&self, ino: InodeNo, policy: AtimePolicy) -> Result<bool> {
        // Takes its own guard and locks: called holding none.
        Fs::touch_atime(self, ino, policy)
    }
    fn setattr(&self, creds: Creds, ino: InodeNo, set: &SetAttr) -> Result<Stat> {
        Fs::setattr(self, creds, ino, set)
    }
    fn set_flags(&self, creds: Creds, ino: InodeNo, flags: u32) -> Result<()> {
        Fs::set_flags(self, creds, ino, flags).map(|_| ())
    }
    fn set_xattr(
        &self,
        creds: Creds,
        ino: InodeNo,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        // setxattr(2)'s XATTR_CREATE/XATTR_REPLACE (FUSE_SETXATTR_EXT is
        // not negotiated, so no ACL kill-sgid bit comes with them).
        let flags = XattrFlags::from_bits(flags as u32)?;
        Fs::set_xattr(self, creds, ino, name, value, flags).map(|_| ())
    }
    fn remove_xattr(&self, creds: Creds, ino: InodeNo, name: &[u8]) -> Result<()> {
        Fs::remove_xattr(self, creds, ino, name).map(|_| ())
    }
    fn seek(&self, ino: InodeNo, offset: u64, hole: bool) -> Result<Option<u64>> {
        let _file = self.inode_locks().read(ino);
        let _g = self.read_guard()?;
        let inode = self.inode(ino)?;
        let size = inode.size;
        if offset >= size {
            return Ok(None);
        }
        // Only mapped regular files have holes worth reporting.
        if inode.kind() != FileKind::File || inode.has_flag(flags::INLINE_DATA) {
            return Ok(Some(if hole { size } else { offset }));
        }
        let bs = u64::from(self.block_size());
        let end = size.div_ceil(bs);
        let mut lblk = offset / bs;
        for _ in 0..MAX_SEEK_RUNS {
            if lblk >= end {
                return Ok(hole.then_some(size));
            }
            // Nothing is mapped past the 32-bit logical space.
            let Ok(l) = u32::try_from(lblk) else {
                return Ok(hole.then_some(size.max(offset)));
            };
            let m = self.map_extent(&inode, Lblk(l))?;
            // Uninitialized extents read as zeros: holes, as the kernel says.
            if m.pblk.is_none() == hole {
                let at = lblk.saturating_mul(bs).max(offset);
                return Ok(Some(at.min(size)));
            }
            lblk = lblk.saturating_add(m.len.max(1));
        }
        Ok(Some(if hole { size } else { offset }))
    }
}
