//! The slice of the engine the adapter uses, as a trait, so the adapter's
//! logic (directory paging, xattr sizing, node-id mapping) is tested against
//! a small fake as well as against the real [`Fs`].

use crate::ext4::{DirEntry, Fs, Result, Stat, StatFs};

/// What the FUSE adapter asks of a filesystem. Mirrors `ext4::Fs`'s public API.
pub(crate) trait Backend: Send + Sync + 'static {
    /// See `Fs::stat`.
    fn stat(&self, ino: u32) -> Result<Stat>;
    /// See `Fs::lookup`.
    fn lookup(&self, dir: u32, name: &[u8]) -> Result<u32>;
    /// See `Fs::read`.
    fn read(&self, ino: u32, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// See `Fs::read_dir`.
    fn read_dir(&self, dir: u32, cookie: u64, f: &mut dyn FnMut(DirEntry) -> bool) -> Result<()>;
    /// See `Fs::read_link`.
    fn read_link(&self, ino: u32) -> Result<Vec<u8>>;
    /// See `Fs::list_xattrs`.
    fn list_xattrs(&self, ino: u32) -> Result<Vec<Vec<u8>>>;
    /// See `Fs::get_xattr`.
    fn get_xattr(&self, ino: u32, name: &[u8]) -> Result<Vec<u8>>;
    /// See `Fs::statfs`.
    fn statfs(&self) -> StatFs;
}

// `Fs::x(self, ..)` names the inherent method (inherent methods take
// precedence over trait methods in path resolution).
impl Backend for Fs {
    fn stat(&self, ino: u32) -> Result<Stat> {
        Fs::stat(self, ino)
    }
    fn lookup(&self, dir: u32, name: &[u8]) -> Result<u32> {
        Fs::lookup(self, dir, name)
    }
    fn read(&self, ino: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        Fs::read(self, ino, offset, buf)
    }
    fn read_dir(&self, dir: u32, cookie: u64, f: &mut dyn FnMut(DirEntry) -> bool) -> Result<()> {
        Fs::read_dir(self, dir, cookie, f)
    }
    fn read_link(&self, ino: u32) -> Result<Vec<u8>> {
        Fs::read_link(self, ino)
    }
    fn list_xattrs(&self, ino: u32) -> Result<Vec<Vec<u8>>> {
        Fs::list_xattrs(self, ino)
    }
    fn get_xattr(&self, ino: u32, name: &[u8]) -> Result<Vec<u8>> {
        Fs::get_xattr(self, ino, name)
    }
    fn statfs(&self) -> StatFs {
        Fs::statfs(self)
    }
}
