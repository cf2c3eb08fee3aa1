//! Open file and directory handles: the `fh` the kernel passes back with
//! every request on an open file.
//!
//! OPEN and OPENDIR make a handle with the per-open state (the open flags,
//! among them `O_APPEND`; a directory's readdir cursor); RELEASE and
//! RELEASEDIR free it. The readahead stream of an open file is keyed by
//! its handle number (see `readahead`), so it too lives and dies with the
//! open.
//!
//! Invariants:
//! - handle numbers are never reused (a 64-bit counter from 1; 0 is never
//!   a handle), so a stale or forged `fh` cannot reach another open;
//! - a handle is found only under its own kind and its own inode: any other
//!   `fh` the kernel sends is EBADF, never a panic;
//! - the table holds only what is open (the kernel bounds that).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fuser::{Errno, FileHandle, OpenFlags};

use fsvc_ext4::InodeNo;

/// Shards of the table (a power of two).
const SHARDS: usize = 16;

/// Per-open state of a regular file (or any non-directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenFile {
    /// The ext4 inode.
    pub(crate) ino: InodeNo,
    /// The flags of the `open(2)`, as the kernel passed them.
    pub(crate) flags: OpenFlags,
}

impl OpenFile {
    /// Opened for writing (`O_WRONLY` or `O_RDWR`).
    pub(crate) fn writable(&self) -> bool {
        self.flags.0 & libc::O_ACCMODE != libc::O_RDONLY
    }

    /// The open truncates the file (`O_TRUNC`), which is a write even when
    /// the access mode is read-only.
    pub(crate) fn truncates(&self) -> bool {
        self.flags.0 & libc::O_TRUNC != 0
    }
}

/// Where a directory listing on one handle stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirCursor {
    /// The offset (engine cookie) after the last entry this handle returned:
    /// where an uninterrupted listing continues. A READDIR at any other
    /// offset is a `seekdir`/`rewinddir`.
    pub(crate) next: u64,
    /// Pages (READDIR/READDIRPLUS replies) returned so far.
    pub(crate) pages: u64,
}

/// Per-open state of a directory.
#[derive(Debug)]
pub(crate) struct OpenDir {
    /// The ext4 inode.
    pub(crate) ino: InodeNo,
    cursor: Mutex<DirCursor>,
}

impl OpenDir {
    /// The cursor now.
    pub(crate) fn cursor(&self) -> DirCursor {
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a page that was asked at `offset` and ended at `next`.
    /// Returns whether the page continued where the previous one ended.
    pub(crate) fn advance(&self, offset: u64, next: u64) -> bool {
        let mut c = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let continued = offset == c.next;
        c.next = next;
        c.pages = c.pages.saturating_add(1);
        continued
    }
}

#[derive(Debug, Clone)]
enum Handle {
    File(Arc<OpenFile>),
    Dir(Arc<OpenDir>),
}

impl Handle {
    fn ino(&self) -> InodeNo {
        match self {
            Handle::File(f) => f.ino,
            Handle::Dir(d) => d.ino,
        }
    }
}

/// Which kind of handle a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Either,
}

/// The open handles of one mount.
#[derive(Debug)]
pub(crate) struct HandleTable {
    next: AtomicU64,
    shards: [Mutex<HashMap<u64, Handle>>; SHARDS],
}

impl Default for HandleTable {
    fn default() -> HandleTable {
        HandleTable {
            next: AtomicU64::new(1),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

impl HandleTable {
    fn shard(&self, fh: u64) -> MutexGuard<'_, HashMap<u64, Handle>> {
        let m = &self.shards[fh as usize % SHARDS];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, h: Handle) -> FileHandle {
        // Relaxed: the number only has to be unique; the shard lock
        // orders the insertion against later lookups.
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.shard(fh).insert(fh, h);
        FileHandle(fh)
    }

    /// A new handle for a file opened with `flags`.
    pub(crate) fn open_file(&self, ino: InodeNo, flags: OpenFlags) -> FileHandle {
        self.insert(Handle::File(Arc::new(OpenFile { ino, flags })))
    }

    /// A new handle for an opened directory, its cursor at the start.
    pub(crate) fn open_dir(&self, ino: InodeNo) -> FileHandle {
        self.insert(Handle::Dir(Arc::new(OpenDir {
            ino,
            cursor: Mutex::new(DirCursor::default()),
        })))
    }

    fn find(
        &self,
        fh: FileHandle,
        ino: InodeNo,
        kind: Kind,
        remove: bool,
    ) -> Result<Handle, Errno> {
        let mut s = self.shard(fh.0);
        let ok = s.get(&fh.0).is_some_and(|h| {
            h.ino() == ino
                && matches!(
                    (kind, h),
                    (Kind::Either, _) | (Kind::File, Handle::File(_)) | (Kind::Dir, Handle::Dir(_))
                )
        });
        let found = if !ok {
            None
        } else if remove {
            s.remove(&fh.0)
        } else {
            s.get(&fh.0).cloned()
        };
        found.ok_or_else(|| {
            log::debug!("bad file handle {fh} for inode {ino} ({kind:?})");
            Errno::EBADF
        })
    }

    /// The open file `fh`, which must be a file handle on `ino`.
    pub(crate) fn file(&self, fh: FileHandle, ino: InodeNo) -> Result<Arc<OpenFile>, Errno> {
        match self.find(fh, ino, Kind::File, false)? {
            Handle::File(f) => Ok(f),
            Handle::Dir(_) => Err(Errno::EBADF),
        }
    }

    /// The open directory `fh`, which must be a directory handle on `ino`.
    pub(crate) fn dir(&self, fh: FileHandle, ino: InodeNo) -> Result<Arc<OpenDir>, Errno> {
        match self.find(fh, ino, Kind::Dir, false)? {
            Handle::Dir(d) => Ok(d),
            Handle::File(_) => Err(Errno::EBADF),
        }
    }

    /// Checks that `fh` is a handle on `ino`, file or directory.
    pub(crate) fn any(&self, fh: FileHandle, ino: InodeNo) -> Result<(), Errno> {
        self.find(fh, ino, Kind::Either, false).map(|_| ())
    }

    /// Frees the file handle `fh` on `ino` (RELEASE).
    pub(crate) fn release_file(
        &self,
        fh: FileHandle,
        ino: InodeNo,
    ) -> Result<Arc<OpenFile>, Errno> {
        match self.find(fh, ino, Kind::File, true)? {
            Handle::File(f) => Ok(f),
            Handle::Dir(_) => Err(Errno::EBADF),
        }
    }

    /// Frees the directory handle `fh` on `ino` (RELEASEDIR).
    pub(crate) fn release_dir(&self, fh: FileHandle, ino: InodeNo) -> Result<Arc<OpenDir>, Errno> {
        match self.find(fh, ino, Kind::Dir, true)? {
            Handle::Dir(d) => Ok(d),
            Handle::File(_) => Err(Errno::EBADF),
        }
    }

    /// Handles open now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ebadf<T: std::fmt::Debug>(r: Result<T, Errno>) -> bool {
        matches!(r, Err(e) if e.code() == libc::EBADF)
    }

    #[test]
    fn handles_are_found_only_by_their_own_kind_and_inode() {
        let t = HandleTable::default();
        let f = t.open_file(InodeNo(12), OpenFlags(libc::O_WRONLY | libc::O_APPEND));
        let d = t.open_dir(InodeNo(13));
        assert_ne!(f, d);
        assert_ne!(f.0, 0, "0 is never a handle");
        let file = t.file(f, InodeNo(12)).unwrap();
        assert!(file.writable() && file.flags.0 & libc::O_APPEND != 0);
        assert_eq!(t.dir(d, InodeNo(13)).unwrap().ino, InodeNo(13));
        assert!(t.any(f, InodeNo(12)).is_ok() && t.any(d, InodeNo(13)).is_ok());
        // Wrong kind, wrong inode, never issued, 0.
        let bad: [(FileHandle, u32); 6] = [
            (d, 13),
            (f, 13),
            (FileHandle(0), 12),
            (FileHandle(999), 12),
            (FileHandle(u64::MAX), 12),
            (f, 0),
        ];
        for (fh, ino) in bad {
            assert!(ebadf(t.file(fh, InodeNo(ino))), "file {fh} {ino}");
        }
        assert!(ebadf(t.dir(f, InodeNo(12))) && ebadf(t.dir(d, InodeNo(12))));
        assert!(ebadf(t.any(d, InodeNo(12))));
        // Releasing with the wrong kind or inode frees nothing.
        assert!(ebadf(t.release_dir(f, InodeNo(12))) && ebadf(t.release_file(f, InodeNo(99))));
        assert_eq!(t.len(), 2);
        assert_eq!(t.release_file(f, InodeNo(12)).unwrap().ino, InodeNo(12));
        // Released: a second release, or any use, is EBADF.
        assert!(ebadf(t.release_file(f, InodeNo(12))) && ebadf(t.file(f, InodeNo(12))));
        assert_eq!(t.release_dir(d, InodeNo(13)).unwrap().ino, InodeNo(13));
        assert!(ebadf(t.release_dir(d, InodeNo(13))));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn numbers_are_never_reused() {
        let t = HandleTable::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u32 {
            let fh = t.open_file(InodeNo(i + 11), OpenFlags(libc::O_RDONLY));
            assert!(seen.insert(fh), "{fh} reused");
            t.release_file(fh, InodeNo(i + 11)).unwrap();
        }
    }

    #[test]
    fn open_flags() {
        // (flags, writable, truncates)
        let table = [
            (libc::O_RDONLY, false, false),
            (libc::O_RDONLY | libc::O_NOATIME, false, false),
            (libc::O_WRONLY, true, false),
            (libc::O_RDWR | libc::O_APPEND, true, false),
            (libc::O_RDONLY | libc::O_TRUNC, false, true),
        ];
        for (flags, writable, truncates) in table {
            let f = OpenFile {
                ino: InodeNo(12),
                flags: OpenFlags(flags),
            };
            assert_eq!(
                (f.writable(), f.truncates()),
                (writable, truncates),
                "{flags:#x}"
            );
        }
    }

    #[test]
    fn a_dir_cursor_follows_its_pages() {
        let t = HandleTable::default();
        let d = t.dir(t.open_dir(InodeNo(13)), InodeNo(13)).unwrap();
        assert_eq!(d.cursor(), DirCursor::default());
        assert!(d.advance(0, 40));
        assert!(d.advance(40, 90));
        // rewinddir
        assert!(!d.advance(0, 40));
        assert_eq!(d.cursor(), DirCursor { next: 40, pages: 3 });
    }
}
