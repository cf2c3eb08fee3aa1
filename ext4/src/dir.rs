//! Directories as the kernel's namei.c serves them: `Fs::lookup` and
//! `Fs::read_dir` over linear, hashed (htree) and inline directories. The
//! entry format itself is in `dirent`, the index in `htree`.
//!
//! read_dir cookies: for block directories the cookie is the byte position
//! of the next entry (`block index × block size + offset in block`); 0 is
//! the start. Resuming maps a cookie to its block in O(1) and re-parses only
//! that block (which it must read and checksum anyway), so a cookie that
//! does not fall on an entry boundary resumes at the next boundary, never
//! from the start of the directory. This is exact because the filesystem is
//! read-only: a writer that compacts or splits blocks (htree) would need
//! hash-based cookies, as the kernel uses for indexed directories. Inline
//! directories use cookies 1 (after "."), 2 (after ".."), then the byte
//! position in the inline address space (see `inline.rs`), which is ≥ 4.
//!
//! Invariants: every walk over directory blocks is bounded by the
//! directory's structure, not its size field alone: a hole costs one step
//! however long, and a directory mapping more blocks than the filesystem
//! has is corruption; every block is checksum-verified (leaf tail or dx
//! tail) before its entries are used.

use std::sync::Arc;

use super::dirent::{
    kind_from_ft, parse_region, verify_leaf, DirentFormat, Dirents, RawDirent, NAME_MAX,
};
use super::error::{Error, Result};
use super::fs::Fs;
use super::htree;
use super::inode::{flags as iflags, Inode};
use super::num::{InodeNo, Lblk};
use super::superblock::Superblock;
use super::types::{DirEntry, FileKind};

/// Called by `walk_blocks` with each mapped block's number and contents;
/// returns whether to go on.
type BlockVisitor<'a> = dyn FnMut(Lblk, &Arc<[u8]>) -> Result<bool> + 'a;

/// One step of a walk over a directory's blocks.
enum DirRun {
    /// A hole of this many blocks (at least 1): skipped in one step.
    Hole(u64),
    /// A mapped block.
    Block(Arc<[u8]>),
}

/// What the directory walkers (these readers and the write side in
/// `dir_tx`) need to know about one directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirGeometry {
    pub(crate) fmt: DirentFormat,
    pub(crate) block_size: usize,
    /// Blocks the directory spans (its logical blocks fit 32 bits).
    pub(crate) nblocks: u32,
    pub(crate) csum: bool,
    pub(crate) indexed: bool,
}

impl DirGeometry {
    /// The geometry of directory `inode` on the filesystem of `sb`.
    pub(crate) fn of(sb: &Superblock, inode: &Inode) -> Result<DirGeometry> {
        let block_size = sb.block_size as usize;
        let Ok(nblocks) = u32::try_from(inode.size.div_ceil(block_size as u64)) else {
            return Err(Error::corrupt(
                format!("directory {}", inode.ino),
                format!("size {} is beyond any directory", inode.size),
            ));
        };
        Ok(DirGeometry {
            fmt: DirentFormat {
                filetype: sb.has_incompat(super::superblock::incompat::FILETYPE),
                block_size,
                max_ino: sb.inodes_count,
            },
            block_size,
            nblocks,
            csum: sb.metadata_csum(),
            indexed: inode.has_flag(iflags::INDEX)
                && sb.has_compat(super::superblock::compat::DIR_INDEX),
        })
    }

    /// The index checks' parameters for directory `inode`.
    pub(crate) fn dx_params(&self, sb: &Superblock, inode: &Inode) -> htree::DxParams {
        htree::DxParams {
            block_size: self.block_size,
            csum: self.csum,
            inode_seed: inode.csum_seed,
            largedir: sb.has_incompat(super::superblock::incompat::LARGEDIR),
            seed: sb.hash_seed,
            unsigned_chars: sb.flags & super::superblock::FLAGS_UNSIGNED_HASH != 0,
            nblocks: u64::from(self.nblocks),
        }
    }
}

impl Fs {
    /// Whether dirents carry a file-type byte.
    pub(crate) fn has_filetype(&self) -> bool {
        self.sb()
            .has_incompat(super::superblock::incompat::FILETYPE)
    }

    /// The kind of the entry's target: from the file-type byte when it is
    /// meaningful, else from the inode's mode. An unreadable inode is
    /// reported as a regular file: listing the directory still works and the
    /// damaged inode answers its own error when it is looked at.
    pub(crate) fn entry_kind(&self, ino: InodeNo, file_type: u8) -> FileKind {
        if self.has_filetype() {
            if let Some(k) = kind_from_ft(file_type) {
                return k;
            }
        }
        self.inode(ino).map(|i| i.kind()).unwrap_or(FileKind::File)
    }

    fn dir_geometry(&self, inode: &Inode) -> Result<DirGeometry> {
        DirGeometry::of(self.sb(), inode)
    }

    /// Directory block `lblk` (through the metadata cache), `None` for a hole.
    fn dir_block(&self, inode: &Inode, lblk: Lblk) -> Result<Option<Arc<[u8]>>> {
        Ok(match self.dir_run(inode, lblk)? {
            DirRun::Hole(_) => None,
            DirRun::Block(b) => Some(b),
        })
    }

    /// Walks the blocks `first..end` of a block directory, calling `f` with
    /// each mapped block's number and contents until it returns false.
    ///
    /// Bounded by the directory's real structure, never by its size field
    /// alone: a hole costs one step however long it is (the kernel's
    /// readdir skips holes by their mapped length too), and a directory
    /// mapping more blocks than the filesystem holds (which only blocks
    /// shared between its extents or pointers can do) is corrupt.
    fn walk_blocks(
        &self,
        inode: &Inode,
        first: u32,
        end: u32,
        f: &mut BlockVisitor<'_>,
    ) -> Result<()> {
        let mut lblk = u64::from(first);
        let mut mapped = 0u64;
        while lblk < u64::from(end) {
            // Below `end`, so it fits 32 bits.
            let at = Lblk(u32::try_from(lblk).unwrap_or(u32::MAX));
            match self.dir_run(inode, at)? {
                DirRun::Hole(len) => lblk = lblk.saturating_add(len),
                DirRun::Block(b) => {
                    mapped += 1;
                    if mapped > self.sb().blocks_count {
                        return Err(Error::corrupt(
                            format!("directory {}", inode.ino),
                            "maps more blocks than the filesystem has",
                        ));
                    }
                    if !f(at, &b)? {
                        return Ok(());
                    }
                    lblk += 1;
                }
            }
        }
        Ok(())
    }

    /// Directory block `lblk` (through the metadata cache), or the length
    /// of the hole there.
    fn dir_run(&self, inode: &Inode, lblk: Lblk) -> Result<DirRun> {
        let m = self.map_extent(inode, lblk)?;
        match m.pblk {
            None => Ok(DirRun::Hole(m.len.max(1))),
            Some(p) => {
                // A miss reads ahead along this contiguous run of the directory.
                let b = self.meta_block_ahead(p, p..p.saturating_add(m.len))?;
                if b.len() != self.sb().block_size as usize {
                    return Err(Error::corrupt(
                        format!("directory {}", inode.ino),
                        "block of the wrong size",
                    ));
                }
                Ok(DirRun::Block(b))
            }
        }
    }

    fn dx_params(&self, inode: &Inode, g: &DirGeometry) -> htree::DxParams {
        g.dx_params(self.sb(), inode)
    }

    /// The validated entries of directory block `lblk` (already read), or
    /// none for index blocks. Verifies the leaf checksum, or the dx root/node
    /// checks for index blocks of an indexed directory.
    pub(crate) fn block_entries<'a>(
        &self,
        inode: &Inode,
        g: &DirGeometry,
        lblk: Lblk,
        block: &'a Arc<[u8]>,
    ) -> Result<Vec<RawDirent<'a>>> {
        let what = || format!("directory {} block {lblk}", inode.ino);
        if g.indexed && lblk == Lblk(0) {
            let p = self.dx_params(inode, g);
            htree::parse_root_info(block, &p, &what)?;
            htree::check_block(block.clone(), htree::DxKind::Root, &p, &what)?;
            // "." and ".." (the latter's rec_len hides the index).
            return parse_region(block, g.fmt, &what);
        }
        if g.indexed && htree::is_dx_node(block) {
            let p = self.dx_params(inode, g);
            htree::check_block(block.clone(), htree::DxKind::Node, &p, &what)?;
            return Ok(Vec::new());
        }
        let region = if g.csum {
            verify_leaf(block, inode.csum_seed, &what)?
        } else {
            &block[..]
        };
        parse_region(region, g.fmt, &what)
    }

    /// The directory inode `dir`, checked to be a directory.
    fn dir_inode(&self, dir: InodeNo) -> Result<Inode> {
        let inode = self.inode(dir)?;
        if inode.kind() != FileKind::Dir {
            return Err(Error::NotDirectory);
        }
        Ok(inode)
    }

    /// Looks `name` up in directory `dir`; returns the inode number.
    /// `Error::NotFound` when absent, `Error::NameTooLong` past 255 bytes.
    pub fn lookup(&self, dir: InodeNo, name: &[u8]) -> Result<InodeNo> {
        if name.len() > NAME_MAX {
            return Err(Error::NameTooLong);
        }
        if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
            return Err(Error::NotFound);
        }
        let inode = self.dir_inode(dir)?;
        if inode.has_flag(iflags::INLINE_DATA) {
            return self.lookup_inline(&inode, name);
        }
        let g = self.dir_geometry(&inode)?;
        let dots = name == b"." || name == b"..";
        if g.indexed && !dots {
            return self.lookup_htree(&inode, &g, name);
        }
        // "." and ".." live in block 0 (of indexed directories too).
        let last = if dots { g.nblocks.min(1) } else { g.nblocks };
        let mut found = None;
        self.walk_blocks(&inode, 0, last, &mut |lblk, block| {
            found = self
                .block_entries(&inode, &g, lblk, block)?
                .into_iter()
                .find(|e| e.in_use() && e.name == name)
                .map(|e| e.ino);
            Ok(found.is_none())
        })?;
        found.ok_or(Error::NotFound)
    }

    fn lookup_htree(&self, inode: &Inode, g: &DirGeometry, name: &[u8]) -> Result<InodeNo> {
        let what = || format!("htree of directory {}", inode.ino);
        let p = self.dx_params(inode, g);
        let mut read = |lblk: Lblk| -> Result<Arc<[u8]>> {
            self.dir_block(inode, lblk)?
                .ok_or_else(|| Error::corrupt(what(), format!("hole at block {lblk}")))
        };
        let mut search_leaf = |lblk: Lblk| -> Result<Option<InodeNo>> {
            let block = self
                .dir_block(inode, lblk)?
                .ok_or_else(|| Error::corrupt(what(), format!("hole at block {lblk}")))?;
            let w = || format!("directory {} block {lblk}", inode.ino);
            if htree::is_dx_node(&block) {
                return Err(Error::corrupt(w(), "index block where a leaf was expected"));
            }
            let region = if g.csum {
                verify_leaf(&block, inode.csum_seed, &w)?
            } else {
                &block[..]
            };
            for e in Dirents::new(region, g.fmt) {
                let e = e.map_err(|d| Error::corrupt(w(), d))?;
                if e.in_use() && e.name == name {
                    return Ok(Some(e.ino));
                }
            }
            Ok(None)
        };
        htree::lookup(name, &p, &mut read, &mut search_leaf, &what)?.ok_or(Error::NotFound)
    }

    /// Calls `f` for each entry of directory `dir` from `cookie` on (0 = the
    /// start) until `f` returns false. See the module doc for cookies.
    pub fn read_dir(
        &self,
        dir: InodeNo,
        cookie: u64,
        f: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<()> {
        let inode = self.dir_inode(dir)?;
        if inode.has_flag(iflags::INLINE_DATA) {
            return self.read_dir_inline(&inode, cookie, f);
        }
        let g = self.dir_geometry(&inode)?;
        let bs = g.block_size as u64;
        // A cookie past the last block (or past 32 bits of blocks) is the end.
        let Ok(first) = u32::try_from(cookie / bs) else {
            return Ok(());
        };
        let skip_in_first = (cookie % bs) as usize;
        self.walk_blocks(&inode, first, g.nblocks, &mut |lblk, block| {
            let skip_before = if lblk.0 == first { skip_in_first } else { 0 };
            for e in self.block_entries(&inode, &g, lblk, block)? {
                if e.offset < skip_before || !e.in_use() {
                    continue;
                }
                let entry = DirEntry {
                    ino: e.ino,
                    name: e.name.to_vec(),
                    kind: self.entry_kind(e.ino, e.file_type),
                    next_cookie: lblk.as_u64() * bs + (e.offset + e.rec_len) as u64,
                };
                if !f(entry) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }
}
