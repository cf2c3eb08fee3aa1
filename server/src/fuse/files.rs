//! Open files and directories, and the read path: OPEN/OPENDIR make a
//! handle (`handles`) that holds its inode in the node table (`nodes`),
//! RELEASE/RELEASEDIR free both, FORGET gives the kernel's lookups back,
//! and READ is answered from the readahead windows or the engine.
//!
//! Every request that carries a file handle checks it first: a handle the
//! adapter did not issue, of the wrong kind or for another inode is EBADF.

use fuser::{Errno, FileHandle, INodeNo, OpenFlags};

use super::handles::OpenFile;
use super::ops::Adapter;
use super::readahead::{Chunk, Lookup};
use super::readbuf::ReadBuf;

/// Largest read answered at once (fuser's own request ceiling). The kernel
/// asks for at most `max_pages` pages, far below this; the cap bounds a
/// hostile or buggy request.
const MAX_READ: u32 = 16 << 20;

/// What a READ is answered with.
#[derive(Debug)]
pub(crate) enum ReadAnswer<'a> {
    /// Bytes of a readahead window.
    Window(Chunk<'a>),
    /// Bytes the engine read now, of data generation `gen` (noted before
    /// the read). The buffer goes back with [`Adapter::read_done`].
    Direct(ReadBuf, u64),
}

impl std::ops::Deref for ReadAnswer<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadAnswer::Window(c) => c,
            ReadAnswer::Direct(b, _) => b,
        }
    }
}

impl Adapter {
    /// OPEN: a handle with the open's state, or EROFS for a write open of
    /// a mount that takes no changes.
    pub(crate) fn do_open(&self, node: INodeNo, flags: OpenFlags) -> Result<FileHandle, Errno> {
        let ino = self.ino(node)?;
        let probe = OpenFile { ino, flags };
        if probe.writable() || probe.truncates() {
            self.check_writable()?;
        }
        self.nodes.opened(ino);
        Ok(self.handles.open_file(ino, flags))
    }

    /// RELEASE: frees the handle, its readahead stream and its hold on the
    /// inode.
    pub(crate) fn do_release(&self, node: INodeNo, fh: FileHandle) -> Result<(), Errno> {
        let ino = self.ino(node)?;
        self.handles.release_file(fh, ino)?;
        self.ra.release(fh.0);
        if self.nodes.closed(ino) {
            self.unreferenced(ino);
        }
        Ok(())
    }

    /// OPENDIR: a handle with a readdir cursor at the start.
    pub(crate) fn do_opendir(&self, node: INodeNo) -> Result<FileHandle, Errno> {
        let ino = self.ino(node)?;
        self.nodes.opened(ino);
        Ok(self.handles.open_dir(ino))
    }

    /// RELEASEDIR.
    pub(crate) fn do_releasedir(&self, node: INodeNo, fh: FileHandle) -> Result<(), Errno> {
        let ino = self.ino(node)?;
        self.handles.release_dir(fh, ino)?;
        if self.nodes.closed(ino) {
            self.unreferenced(ino);
        }
        Ok(())
    }

    /// Checks that `fh` is an open file on `node` (flush, fsync, lseek).
    pub(crate) fn check_file(&self, node: INodeNo, fh: FileHandle) -> Result<(), Errno> {
        let ino = self.ino(node)?;
        self.handles.file(fh, ino).map(|_| ())
    }

    /// Checks that `fh` is an open directory on `node` (fsyncdir).
    pub(crate) fn check_dir(&self, node: INodeNo, fh: FileHandle) -> Result<(), Errno> {
        let ino = self.ino(node)?;
        self.handles.dir(fh, ino).map(|_| ())
    }

    /// Checks that `fh` is an open file or directory on `node` (ioctl,
    /// which `lsattr -d` sends on a directory).
    pub(crate) fn check_any(&self, node: INodeNo, fh: FileHandle) -> Result<(), Errno> {
        let ino = self.ino(node)?;
        self.handles.any(fh, ino)
    }

    /// FORGET of `n` lookups of `node`.
    pub(crate) fn do_forget(&self, node: INodeNo, n: u64) {
        // A node id we never issued cannot hold anything.
        if let Ok(ino) = self.ino(node) {
            if self.nodes.forget(ino, n) {
                self.unreferenced(ino);
            }
        }
    }

    /// The last reference to `ino` went (docs/design-notes.md, "Freeing
    /// inodes"): if it is an orphan, the engine frees it now.
    fn unreferenced(&self, ino: fsvc_ext4::InodeNo) {
        if self.nodes.take_orphan(ino) {
            self.evict(ino);
        }
    }

    /// Frees the orphan `ino`. Nothing can answer a FORGET or RELEASE
    /// with an error, so a failure is only logged; the inode then stays on
    /// the orphan list, which the next mount (or e2fsck) cleans up.
    pub(crate) fn evict(&self, ino: fsvc_ext4::InodeNo) {
        match self.fs.evict(ino) {
            Ok(()) => {
                if let Err(e) = self.changed(super::ops::Change::Inode) {
                    log::debug!("sync after freeing inode {ino}: {e:?}");
                }
            }
            Err(e) => {
                let errno = self.err(&e, || format!("freeing unlinked inode {ino}"));
                log::warn!("inode {ino} stays an orphan: {e} ({errno:?})");
            }
        }
    }

    /// Records a READDIR page on `fh` asked at `offset` that ended at
    /// `next` (after [`Adapter::fill_dir`]).
    pub(crate) fn dir_page(&self, node: INodeNo, fh: FileHandle, offset: u64, next: u64) {
        let Ok(ino) = self.ino(node) else { return };
        if let Ok(d) = self.handles.dir(fh, ino) {
            let before = d.cursor();
            if !d.advance(offset, next) {
                log::debug!(
                    "readdir of inode {ino} at {offset}, not where the last page ended ({})",
                    before.next
                );
            }
        }
        self.accessed(node, ino);
    }

    /// READ of `size` bytes at `offset` through handle `fh`: from a
    /// readahead window when one holds the range, else from the engine.
    pub(crate) fn do_read(
        &self,
        node: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
    ) -> Result<ReadAnswer<'_>, Errno> {
        let ino = self.ino(node)?;
        self.handles.file(fh, ino)?;
        let size = size.min(MAX_READ);
        let gen = match self.ra.lookup(fh.0, ino, offset, size) {
            Lookup::Hit(chunk) => return Ok(ReadAnswer::Window(chunk)),
            Lookup::Miss { gen } => gen,
        };
        // From the readahead's buffer pool (given back after the reply):
        // see `readahead::MAX_SPARE` for why not the allocator.
        let mut buf = self.ra.take_buf(size as usize);
        match self.fs.read(ino, offset, buf.as_mut()) {
            Ok(n) => {
                buf.truncate(n);
                Ok(ReadAnswer::Direct(buf, gen))
            }
            Err(e) => {
                self.ra.give_back(buf);
                Err(self.err(&e, || format!("read inode {ino} at {offset}")))
            }
        }
    }

    /// After the reply to a READ of `asked` bytes at `offset`: gives the
    /// buffer back, feeds the readahead stream and runs the fill it asks
    /// for, so that the fill's device read overlaps the kernel's next
    /// request.
    pub(crate) fn read_done(
        &self,
        node: INodeNo,
        fh: FileHandle,
        offset: u64,
        asked: u32,
        answer: ReadAnswer<'_>,
    ) {
        let got = answer.len() as u64;
        let gen = match answer {
            ReadAnswer::Window(chunk) => chunk.gen(),
            ReadAnswer::Direct(buf, gen) => {
                self.ra.give_back(buf);
                gen
            }
        };
        let Ok(ino) = self.ino(node) else { return };
        let asked = u64::from(asked.min(MAX_READ));
        if let Some(fill) = self.ra.note(fh.0, ino, offset, got, asked, gen) {
            self.ra.fill(&*self.fs, fill);
        }
    }
}
