//! Directories as a transaction sees and changes them: finding an entry,
//! planning and making an insert, removing an entry, the emptiness test
//! of rmdir and rename, pointing an entry or ".." elsewhere. The namespace operations (`namei`,
//! `rename`) are built from these; every read goes through the `Tx`
//! (never `Fs`'s readers), so an operation sees its own earlier changes.
//!
//! Invariants:
//! - A walk over the directory's blocks is bounded as the readers' is
//!   (`dir`): a hole costs one step however long, and a directory mapping
//!   more blocks than the filesystem has is corrupt.
//! - Every leaf is checksum-verified before use and gets its tail
//!   checksum set after every change ([`dir_edit::set_leaf_tail`]).
//! - Planning ([`Tx::dir_plan_insert`]) changes nothing: an operation plans
//!   every step that can fail for want of room before its first change.
//!
//! Scope: linear directories, and inserts into an indexed (htree)
//! directory's leaf while it has room; removal from any block directory.
//! Inline directories are not changed yet ([`Error::Unsupported`]).

use std::sync::Arc;

use crate::data::map_via;
use crate::dir::DirGeometry;
use crate::dir_edit::{self, NewEntry};
use crate::dirent::{verify_leaf, DIRENT_TAIL_SIZE};
use crate::error::{Error, Result};
use crate::htree;
use crate::inode::{flags as iflags, Inode};
use crate::num::{InodeNo, Lblk, Pblk};
use crate::tx::Tx;

/// Offset of ".." in a dx root (after the 12-byte ".").
const DX_DOTDOT_OFFSET: usize = 12;

/// Where an entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Its directory block (logical).
    pub lblk: Lblk,
    /// That block's physical number.
    pub pblk: Pblk,
    /// Its offset in the block.
    pub offset: usize,
    /// The inode it names.
    pub ino: InodeNo,
    /// Its file-type byte.
    pub file_type: u8,
}

/// Where a new entry will go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Into the record at `offset` of this block.
    Block {
        /// Physical block.
        pblk: Pblk,
        /// Record to take or split.
        offset: usize,
    },
    /// No block has room: the directory must grow by a block.
    Grow,
}

/// Called by `dir_walk` with each mapped block (logical, physical,
/// contents); returns whether to go on.
type BlockVisitor<'a> = dyn FnMut(Lblk, Pblk, &Arc<[u8]>) -> Result<bool> + 'a;

/// One step of a directory walk.
enum Run {
    Hole(u64),
    Block(Pblk, Arc<[u8]>),
}

impl Tx<'_> {
    /// Refuses directories this code does not change yet.
    pub(crate) fn check_dir_editable(&self, dir: &Inode) -> Result<()> {
        if dir.has_flag(iflags::INLINE_DATA) {
            return Err(Error::Unsupported(format!(
                "changing inline directories (directory {})",
                dir.ino
            )));
        }
        Ok(())
    }

    /// Block `lblk` of directory `dir` as this transaction sees it.
    fn dir_run(&self, dir: &Inode, lblk: Lblk) -> Result<Run> {
        let m = map_via(self.sb(), dir, lblk, &|b| self.get(b))?;
        match m.pblk {
            None => Ok(Run::Hole(m.len.max(1))),
            Some(p) => Ok(Run::Block(p, self.get(p)?)),
        }
    }

    /// Calls `f` with each mapped block of `dir` (logical, physical,
    /// contents) until it returns false.
    fn dir_walk(&self, dir: &Inode, g: &DirGeometry, f: &mut BlockVisitor<'_>) -> Result<()> {
        let mut lblk = 0u64;
        let mut mapped = 0u64;
        while lblk < u64::from(g.nblocks) {
            let at = Lblk(u32::try_from(lblk).unwrap_or(u32::MAX));
            match self.dir_run(dir, at)? {
                Run::Hole(len) => lblk = lblk.saturating_add(len),
                Run::Block(p, b) => {
                    mapped += 1;
                    if mapped > self.sb().blocks_count {
                        return Err(Error::corrupt(
                            format!("directory {}", dir.ino),
                            "maps more blocks than the filesystem has",
                        ));
                    }
                    if !f(at, p, &b)? {
                        return Ok(());
                    }
                    lblk += 1;
                }
            }
        }
        Ok(())
    }

    /// The leaf of an indexed directory that holds (or would hold) `name`.
    fn dx_leaf(&self, dir: &Inode, g: &DirGeometry, name: &[u8]) -> Result<Lblk> {
        let what = || format!("htree of directory {}", dir.ino);
        let p = g.dx_params(self.sb(), dir);
        let mut read = |lblk: Lblk| -> Result<Arc<[u8]>> {
            match self.dir_run(dir, lblk)? {
                Run::Block(_, b) => Ok(b),
                Run::Hole(_) => Err(Error::corrupt(what(), format!("hole at block {lblk}"))),
            }
        };
        let mut leaf = None;
        htree::lookup(
            name,
            &p,
            &mut read,
            &mut |l| {
                leaf = Some(l);
                // Any value stops the walk at the first leaf.
                Ok(Some(InodeNo(0)))
            },
            &what,
        )?;
        leaf.ok_or_else(|| Error::corrupt(what(), "no leaf for a name"))
    }

    /// A leaf block of `dir` with its physical number: the region holding
    /// entries is `&block[..region_len]`.
    fn dir_leaf(&self, dir: &Inode, g: &DirGeometry, lblk: Lblk) -> Result<(Pblk, Arc<[u8]>)> {
        let what = || format!("directory {} block {lblk}", dir.ino);
        match self.dir_run(dir, lblk)? {
            Run::Block(p, b) => {
                if g.csum {
                    verify_leaf(&b, dir.csum_seed, &what)?;
                }
                Ok((p, b))
            }
            Run::Hole(_) => Err(Error::corrupt(what(), "a hole where a leaf should be")),
        }
    }

    /// Length of the entry region of a leaf block.
    fn region_len(g: &DirGeometry) -> usize {
        if g.csum {
            g.block_size - DIRENT_TAIL_SIZE
        } else {
            g.block_size
        }
    }

    /// Finds `name` in directory `dir` (a block directory).
    pub(crate) fn dir_find(&self, dir: &Inode, name: &[u8]) -> Result<Option<Found>> {
        let g = DirGeometry::of(self.sb(), dir)?;
        let dots = name == b"." || name == b"..";
        let fs = self.fs();
        let matches = |lblk: Lblk, pblk: Pblk, b: &Arc<[u8]>| -> Result<Option<Found>> {
            Ok(fs
                .block_entries(dir, &g, lblk, b)?
                .into_iter()
                .find(|e| e.in_use() && e.name == name)
                .map(|e| Found {
                    lblk,
                    pblk,
                    offset: e.offset,
                    ino: e.ino,
                    file_type: e.file_type,
                }))
        };
        if g.indexed && !dots {
            let lblk = self.dx_leaf(dir, &g, name)?;
            let (pblk, b) = self.dir_leaf(dir, &g, lblk)?;
            // A name whose hash collides across leaves may sit in the next
            // one; the kernel only continues there for equal hashes, which
            // an insert never creates here (it only adds to a leaf with room).
            return matches(lblk, pblk, &b);
        }
        let mut found = None;
        self.dir_walk(dir, &g, &mut |lblk, pblk, b| {
            found = matches(lblk, pblk, b)?;
            // "." and ".." live in block 0.
            Ok(found.is_none() && !dots)
        })?;
        Ok(found)
    }

    /// Where an entry with a `name`-long name would go (changes nothing).
    pub(crate) fn dir_plan_insert(&self, dir: &Inode, name: &[u8]) -> Result<Slot> {
        self.check_dir_editable(dir)?;
        let g = DirGeometry::of(self.sb(), dir)?;
        let rl = Self::region_len(&g);
        if g.indexed {
            let lblk = self.dx_leaf(dir, &g, name)?;
            let (pblk, b) = self.dir_leaf(dir, &g, lblk)?;
            let what = || format!("directory {} block {lblk}", dir.ino);
            return match dir_edit::find_slot(&b[..rl], g.fmt, name.len(), &what)? {
                Some(offset) => Ok(Slot::Block { pblk, offset }),
                None => Err(Error::Unsupported(format!(
                    "splitting a full htree leaf (directory {})",
                    dir.ino
                ))),
            };
        }
        let mut slot = Slot::Grow;
        self.dir_walk(dir, &g, &mut |lblk, pblk, b| {
            let what = || format!("directory {} block {lblk}", dir.ino);
            if g.csum {
                verify_leaf(b, dir.csum_seed, &what)?;
            }
            if let Some(offset) = dir_edit::find_slot(&b[..rl], g.fmt, name.len(), &what)? {
                slot = Slot::Block { pblk, offset };
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(slot)
    }

    /// Makes the insert `dir_plan_insert` planned.
    pub(crate) fn dir_insert(
        &mut self,
        dir: &mut Inode,
        slot: Slot,
        e: &NewEntry<'_>,
    ) -> Result<()> {
        let Slot::Block { pblk, offset } = slot else {
            return Err(Error::Unsupported(format!(
                "growing a directory by a block (directory {})",
                dir.ino
            )));
        };
        let dir = &*dir;
        let g = DirGeometry::of(self.sb(), dir)?;
        let rl = Self::region_len(&g);
        let what = || format!("directory {} block {pblk}", dir.ino);
        let b = self.modify(pblk)?;
        dir_edit::insert(&mut b[..rl], g.fmt, offset, e, &what)?;
        if g.csum {
            dir_edit::set_leaf_tail(b, dir.csum_seed)?;
        }
        Ok(())
    }

    /// Removes the entry `f` found by [`Tx::dir_find`].
    pub(crate) fn dir_remove(&mut self, dir: &Inode, f: &Found) -> Result<()> {
        self.check_dir_editable(dir)?;
        let g = DirGeometry::of(self.sb(), dir)?;
        let what = || format!("directory {} block {}", dir.ino, f.lblk);
        // Block 0 of an indexed directory holds "." and ".." only, and its
        // ".." record hides the index: nothing there is ever removed.
        if g.indexed && f.lblk == Lblk(0) {
            return Err(Error::corrupt(what(), "entry to remove in the dx root"));
        }
        let rl = Self::region_len(&g);
        let b = self.modify(f.pblk)?;
        dir_edit::remove(&mut b[..rl], g.fmt, f.offset, &what)?;
        if g.csum {
            dir_edit::set_leaf_tail(b, dir.csum_seed)?;
        }
        Ok(())
    }

    /// Whether directory `dir` holds nothing but "." and ".." (rmdir,
    /// rename over a directory).
    pub(crate) fn dir_is_empty(&self, dir: &Inode) -> Result<bool> {
        if dir.has_flag(iflags::INLINE_DATA) {
            return Err(Error::Unsupported(format!(
                "changing inline directories (directory {})",
                dir.ino
            )));
        }
        let g = DirGeometry::of(self.sb(), dir)?;
        let fs = self.fs();
        let mut empty = true;
        self.dir_walk(dir, &g, &mut |lblk, _, b| {
            let entries = fs.block_entries(dir, &g, lblk, b)?;
            empty = entries
                .iter()
                .all(|e| !e.in_use() || (lblk == Lblk(0) && (e.name == b"." || e.name == b"..")));
            Ok(empty)
        })?;
        Ok(empty)
    }

    /// Points ".." of directory `dir` at `parent` (a directory moved by
    /// rename).
    pub(crate) fn dir_set_dotdot(&mut self, dir: &Inode, parent: InodeNo) -> Result<()> {
        self.check_dir_editable(dir)?;
        let g = DirGeometry::of(self.sb(), dir)?;
        let what = || format!("directory {} block 0", dir.ino);
        let pblk = match self.dir_run(dir, Lblk(0))? {
            Run::Block(p, b) => {
                // Checks the block (leaf checksum, or the dx root) first.
                self.fs().block_entries(dir, &g, Lblk(0), &b)?;
                p
            }
            Run::Hole(_) => return Err(Error::corrupt(what(), "block 0 is a hole")),
        };
        let rl = Self::region_len(&g);
        let dx = g.dx_params(self.sb(), dir);
        let b = self.modify(pblk)?;
        if g.indexed {
            // The dx root's layout was checked above: ".." is the 12-byte
            // record at offset 12 whose rec_len hides the index. The
            // index checksum covers the block from its start, dots included.
            b[DX_DOTDOT_OFFSET..DX_DOTDOT_OFFSET + 4].copy_from_slice(&parent.0.to_le_bytes());
            if g.csum {
                htree::set_dx_tail(b, htree::DxKind::Root, &dx)?;
            }
            return Ok(());
        }
        dir_edit::set_dotdot(&mut b[..rl], g.fmt, parent, &what)?;
        if g.csum {
            dir_edit::set_leaf_tail(b, dir.csum_seed)?;
        }
        Ok(())
    }

    /// Points the entry `f` at inode `ino` of type `file_type`, in place
    /// (rename over an existing name, exchange, whiteout: the kernel's
    /// `ext4_setent`).
    pub(crate) fn dir_set_entry(
        &mut self,
        dir: &Inode,
        f: &Found,
        ino: InodeNo,
        file_type: u8,
    ) -> Result<()> {
        self.check_dir_editable(dir)?;
        let g = DirGeometry::of(self.sb(), dir)?;
        let what = || format!("directory {} block {}", dir.ino, f.lblk);
        if g.indexed && f.lblk == Lblk(0) {
            return Err(Error::corrupt(what(), "entry to change in the dx root"));
        }
        let rl = Self::region_len(&g);
        let b = self.modify(f.pblk)?;
        dir_edit::set_entry(&mut b[..rl], g.fmt, f.offset, ino, file_type, &what)?;
        if g.csum {
            dir_edit::set_leaf_tail(b, dir.csum_seed)?;
        }
        Ok(())
    }

    /// The parent of directory `dir` (its ".." entry).
    pub(crate) fn dir_parent(&self, dir: &Inode) -> Result<InodeNo> {
        if dir.has_flag(iflags::INLINE_DATA) {
            // Only the inode's own bytes are read: no block, no cache.
            return self.fs().lookup_inline(dir, b"..");
        }
        self.dir_find(dir, b"..")?
            .map(|f| f.ino)
            .ok_or_else(|| Error::corrupt(format!("directory {}", dir.ino), "no '..' entry"))
    }
}
