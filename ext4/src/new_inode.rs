//! A fresh inode, set up as the kernel's `__ext4_new_inode` sets one up:
//! the number from the inode allocator (Orlov near the parent), owner
//! from the caller with the set-group-ID directory rule, every time the
//! operation's time, the extra inode size the superblock wants (so that
//! nanosecond times and crtime fit), the flags a child inherits from its
//! directory, an empty extent tree on extent filesystems for directories,
//! regular files and symlinks, a fresh generation and checksum seed.
//!
//! Decisions:
//! - The permission bits arrive as the kernel leaves them: umask applied
//!   and S_ISGID stripped by the VFS (`vfs_prepare_mode`) before FUSE
//!   asks; here only the directory rule adds S_ISGID to new directories
//!   and takes the directory's group.
//! - Inline data: the kernel marks new regular files and directories
//!   "may be inline" in memory only; a file becomes inline at its first
//!   write (wdata's concern). New directories on inline_data filesystems
//!   are made as block directories here (the kernel would make them
//!   inline): e2fsck and the kernel accept both, and inline directory
//!   edits come later (see docs/design-notes.md, "Namespace").

use crate::error::{Error, Result};
use crate::extent::{EXTENT_MAGIC, HEADER_LEN};
use crate::features::incompat;
use crate::flags::{
    mask_flags, FL_COMPR, FL_DAX, FL_DIRSYNC, FL_JOURNAL_DATA, FL_NOATIME, FL_NOCOMPR, FL_NODUMP,
    FL_NOTAIL, FL_PROJINHERIT, FL_SYNC, FL_UNRM,
};
use crate::inode::{flags, Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::tx::Tx;

/// Set-group-ID bit of a mode.
pub const S_ISGID: u16 = 0o2000;

/// Inode flags a child inherits from its directory (the kernel's
/// `EXT4_FL_INHERITED`), before [`mask_flags`] keeps what its type may
/// carry.
const FL_INHERITED: u32 = flags::SECRM
    | FL_UNRM
    | FL_COMPR
    | FL_SYNC
    | FL_NODUMP
    | FL_NOATIME
    | FL_NOCOMPR
    | FL_JOURNAL_DATA
    | FL_NOTAIL
    | FL_DIRSYNC
    | FL_PROJINHERIT
    | flags::CASEFOLD
    | FL_DAX;

/// Entries an extent root in `i_block` holds ((60 - 12) / 12).
const ROOT_EXTENTS: u16 = 4;

/// The flags a new inode of `mode` takes from its directory's `dir_flags`
/// (the kernel's `ext4_mask_flags`).
pub fn inherited_flags(mode: u16, dir_flags: u32) -> u32 {
    mask_flags(mode, dir_flags & FL_INHERITED)
}

/// Writes an empty extent tree root (depth 0, no entries, room for 4)
/// into `i_block`, as `ext4_ext_tree_init`.
pub fn init_extent_root(i_block: &mut [u8]) -> Result<()> {
    let h = i_block
        .get_mut(..HEADER_LEN)
        .ok_or_else(|| Error::Internal("i_block too small for an extent root".into()))?;
    h.fill(0);
    h[0..2].copy_from_slice(&EXTENT_MAGIC.to_le_bytes());
    h[4..6].copy_from_slice(&ROOT_EXTENTS.to_le_bytes());
    Ok(())
}

impl Tx<'_> {
    /// Allocates and sets up a new inode of `mode` (type and permission
    /// bits) for an entry in directory `dir` (see the module docs). Not
    /// written: the caller finishes it (links, size, `i_block`) and calls
    /// `write_inode`.
    pub(crate) fn new_inode(&mut self, dir: &Inode, mode: u16) -> Result<Inode> {
        let ino = self.alloc_inode(dir.ino, mode)?;
        let creds = self.creds();
        let (gid, mode) = if dir.mode & S_ISGID != 0 {
            let keep = if mode & S_IFMT == S_IFDIR { S_ISGID } else { 0 };
            (dir.gid, mode | keep)
        } else {
            (creds.gid, mode)
        };
        let generation = self.next_generation();
        let mut inode = Inode::fresh(self.sb(), ino, generation, mode, creds.uid, gid, self.now());
        inode.flags = inherited_flags(mode, dir.flags);
        let mapped = matches!(mode & S_IFMT, S_IFDIR | S_IFREG | S_IFLNK);
        if mapped && self.sb().has_incompat(incompat::EXTENTS) {
            inode.flags |= flags::EXTENTS;
            init_extent_root(inode.i_block_mut())?;
        }
        Ok(inode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::FL_TOPDIR;
    use crate::inode::{S_IFCHR, S_IFIFO};

    #[test]
    fn flags_inherited_as_the_kernel_masks_them() {
        let dir = FL_SYNC | FL_DIRSYNC | FL_NOATIME | flags::IMMUTABLE | flags::INDEX | FL_TOPDIR;
        // (child mode, flags it takes)
        let cases = [
            (S_IFDIR, FL_SYNC | FL_DIRSYNC | FL_NOATIME),
            (S_IFREG, FL_SYNC | FL_NOATIME),
            (S_IFLNK, FL_NOATIME),
            (S_IFCHR, FL_NOATIME),
            (S_IFIFO, FL_NOATIME),
        ];
        for (mode, want) in cases {
            assert_eq!(inherited_flags(mode | 0o644, dir), want, "{mode:o}");
        }
    }

    #[test]
    fn empty_extent_root() {
        let mut ib = [0xffu8; 60];
        init_extent_root(&mut ib).unwrap();
        assert_eq!(&ib[..12], &[0x0a, 0xf3, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
        assert!(init_extent_root(&mut [0u8; 4]).is_err());
    }
}
