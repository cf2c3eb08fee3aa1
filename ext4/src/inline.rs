//! inline_data: small files, directories and symlinks whose contents live in
//! the inode itself: the 60 bytes of `i_block`, continued in the value of
//! the in-inode xattr `system.data` (index 7, name "data").
//!
//! Inline directories store the parent's inode number in the first 4 bytes
//! of `i_block`, then dirents filling the remaining 56 bytes; the
//! `system.data` value, when non-empty, is a second dirent region. There are
//! no "." and ".." entries on disk: read_dir synthesizes them.
//!
//! Cookies of inline directories address one space: 0 = start ("."),
//! 1 = after ".", 2 = after ".." (i.e. the first real entry), and for real
//! entries the byte position of the next entry where `i_block` spans 4..60
//! and the `system.data` value 60.. . Real positions are ≥ 4, so they never
//! collide with the synthetic ones; cookie 3 resumes like 2.
//!
//! Invariants: a symlink's or directory's inline size must fit in
//! `i_block` plus the value (a regular file may be longer: its tail reads
//! as zeros, as the kernel reads it); regions are parsed with the same checks as block dirents.

use super::bytes::get_le32;
use super::dirent::{parse_region, DirentFormat, RawDirent};
use super::error::{Error, Result};
use super::fs::Fs;
use super::inode::Inode;
use super::num::InodeNo;
use super::types::{DirEntry, FileKind};
use super::xattr::{self, index, XattrValue};

/// Bytes of inline data held in `i_block`.
pub const INLINE_IBLOCK_SIZE: usize = 60;
/// Bytes at the start of an inline directory holding the parent inode.
pub const INLINE_DIR_PARENT_SIZE: usize = 4;
/// Name (under index 7, "system.") of the xattr continuing inline data.
pub const SYSTEM_DATA_NAME: &[u8] = b"data";

/// First cookie of a real entry in an inline directory.
const FIRST_REAL_COOKIE: u64 = INLINE_DIR_PARENT_SIZE as u64;

/// The two pieces of an inode's inline data: `i_block` and the
/// `system.data` value (possibly empty).
fn pieces(fs: &Fs, inode: &Inode) -> Result<(Vec<u8>, Vec<u8>)> {
    let what = || format!("inline data of inode {}", inode.ino);
    let iblock = inode.i_block();
    if iblock.len() != INLINE_IBLOCK_SIZE {
        return Err(Error::corrupt(what(), "inode too small for i_block"));
    }
    let area = inode.inline_xattr_area();
    let entries = xattr::parse_ibody(area, fs.xattr_format(), &|| {
        format!("in-inode xattrs of inode {}", inode.ino)
    })?;
    let mut ext = Vec::new();
    if let Some(e) = entries
        .iter()
        .find(|e| e.index == index::SYSTEM && e.name == SYSTEM_DATA_NAME)
    {
        match e.value {
            XattrValue::Local { start, len } => {
                ext = area
                    .get(start..start + len)
                    .ok_or_else(|| Error::corrupt(what(), "system.data out of bounds"))?
                    .to_vec();
            }
            XattrValue::Inode { .. } => {
                return Err(Error::corrupt(what(), "system.data stored in an EA inode"))
            }
        }
    }
    Ok((iblock.to_vec(), ext))
}

impl Fs {
    /// Reads inline file (or symlink) data at `offset` into `buf`; returns the
    /// number of bytes copied (0 at or after EOF).
    pub(crate) fn read_inline(&self, inode: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let (iblock, ext) = pieces(self, inode)?;
        let cap = (iblock.len() + ext.len()) as u64;
        // A regular file may be larger than its inline area: mkfs.ext4 -d marks
        // an all-hole sparse file inline_data, and the kernel reads every byte
        // past the inline area as zero (e2fsck accepts it). A symlink target
        // has no such tail: its bytes must all be there.
        if inode.size > cap && inode.mode & super::inode::S_IFMT == super::inode::S_IFLNK {
            return Err(Error::corrupt(
                format!("inline data of inode {}", inode.ino),
                format!("size {} exceeds the inline capacity {cap}", inode.size),
            ));
        }
        if offset >= inode.size {
            return Ok(0);
        }
        let want = usize::try_from(inode.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let out = &mut buf[..want];
        out.fill(0);
        // Copy the part of [offset, offset + want) that lies inside the inline
        // area; the rest stays zero.
        let inline_len = iblock.len() + ext.len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let mut pos = start;
        let end = inline_len.min(start.saturating_add(want));
        while pos < end {
            let (src, at) = if pos < iblock.len() {
                (&iblock[..], pos)
            } else {
                (&ext[..], pos - iblock.len())
            };
            let take = (src.len() - at).min(end - pos);
            out[pos - start..pos - start + take].copy_from_slice(&src[at..at + take]);
            pos += take;
        }
        Ok(want)
    }

    /// Looks `name` up in an inline directory ("." and ".." included).
    pub(crate) fn lookup_inline(&self, inode: &Inode, name: &[u8]) -> Result<InodeNo> {
        let d = InlineDir::load(self, inode)?;
        match name {
            b"." => return Ok(inode.ino),
            b".." => return Ok(d.parent),
            _ => {}
        }
        d.entries(self, inode.ino)?
            .into_iter()
            .find(|(_, e)| e.in_use() && e.name == name)
            .map(|(_, e)| e.ino)
            .ok_or(Error::NotFound)
    }

    /// read_dir for an inline directory (cookies as in the module doc).
    pub(crate) fn read_dir_inline(
        &self,
        inode: &Inode,
        cookie: u64,
        f: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<()> {
        let d = InlineDir::load(self, inode)?;
        if cookie == 0
            && !f(DirEntry {
                ino: inode.ino,
                name: b".".to_vec(),
                kind: FileKind::Dir,
                next_cookie: 1,
            })
        {
            return Ok(());
        }
        if cookie <= 1
            && !f(DirEntry {
                ino: d.parent,
                name: b"..".to_vec(),
                kind: FileKind::Dir,
                next_cookie: 2,
            })
        {
            return Ok(());
        }
        let start = cookie.max(FIRST_REAL_COOKIE);
        for (base, e) in d.entries(self, inode.ino)? {
            let pos = base + e.offset as u64;
            if pos < start || !e.in_use() {
                continue;
            }
            let entry = DirEntry {
                ino: e.ino,
                name: e.name.to_vec(),
                kind: self.entry_kind(e.ino, e.file_type),
                next_cookie: pos + e.rec_len as u64,
            };
            if !f(entry) {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A parsed inline directory: parent and the entries of both regions with
/// their positions in the cookie space.
struct InlineDir {
    parent: InodeNo,
    iblock: Vec<u8>,
    ext: Vec<u8>,
}

impl InlineDir {
    fn load(fs: &Fs, inode: &Inode) -> Result<InlineDir> {
        let (iblock, ext) = pieces(fs, inode)?;
        let parent = InodeNo(get_le32(&iblock, 0).unwrap_or(0));
        if parent.0 == 0 || parent.0 > fs.sb().inodes_count {
            return Err(Error::corrupt(
                format!("inline directory {}", inode.ino),
                format!("parent inode {parent} out of range"),
            ));
        }
        Ok(InlineDir {
            parent,
            iblock,
            ext,
        })
    }

    /// Both regions' entries, each with its base position in the cookie space.
    fn entries(&self, fs: &Fs, ino: InodeNo) -> Result<Vec<(u64, RawDirent<'_>)>> {
        let fmt = DirentFormat {
            filetype: fs.has_filetype(),
            block_size: fs.sb().block_size as usize,
            max_ino: fs.sb().inodes_count,
        };
        let what = || format!("inline directory {ino}");
        let mut out = Vec::new();
        let r1 = self.iblock.get(INLINE_DIR_PARENT_SIZE..).unwrap_or(&[]);
        for d in parse_region(r1, fmt, &what)? {
            out.push((FIRST_REAL_COOKIE, d));
        }
        for d in parse_region(&self.ext, fmt, &what)? {
            out.push((INLINE_IBLOCK_SIZE as u64, d));
        }
        Ok(out)
    }
}
