//! The namespace operations of the kernel's namei.c: `Fs::create`,
//! `mknod`, `symlink`, `link`, `unlink`, and `evict` (the final release
//! of an unlinked inode). Each is one transaction: it takes its inode
//! locks (the directory, and the inode it links or unlinks) in one
//! `write_many`, begins, checks everything that can fail (name, type,
//! link count, room in the directory, free space) before its first
//! change, makes the change through the `Tx` and commits. A corruption,
//! checksum or IO error found on the way aborts the transaction and is
//! recorded with `Fs::fail`.
//!
//! Times, as the kernel sets them: a new inode gets the operation's time
//! in atime, mtime, ctime and crtime; the directory whose entries change
//! gets mtime and ctime; an inode whose link count changes gets ctime.
//!
//! Unlinking an inode's last name puts it on the orphan list (it may
//! still be open: the FUSE adapter knows, the engine does not); the
//! adapter calls [`Fs::evict`] once nothing holds it, which frees it
//! (docs/design-notes.md, "FUSE adapter", freeing inodes).
//!
//! Scope of this step: directories are changed in the blocks they have
//! (no growth by a block yet), inodes freed by `evict` must own no blocks
//! yet (no truncate yet): both are refused with [`Error::Unsupported`]
//! before anything changes.

use crate::dir_edit::NewEntry;
use crate::dir_tx::Found;
use crate::dirent::{ft_of_kind, NAME_MAX};
use crate::error::{Error, Result};
use crate::flags::{check_may_modify, Change};
use crate::fs::Fs;
use crate::inode::{kind_of_mode, Inode, S_IFBLK, S_IFCHR, S_IFIFO, S_IFMT, S_IFREG, S_IFSOCK};
use crate::inode::{I_BLOCK_LEN, S_IFLNK};
use crate::limits::LINK_MAX;
use crate::locks::InodeWriteGuard;
use crate::mount::ErrorAt;
use crate::num::InodeNo;
use crate::superblock::{compat, ro_compat};
use crate::tx::{Creds, Tx};
use crate::types::{FileKind, Stat};

/// How often a name is looked up again when it changed between the
/// lookup and taking its inode's lock (another operation renamed or
/// replaced it meanwhile).
const LOCK_RETRIES: u32 = 16;

/// Permission bits of a mode.
const PERM_MASK: u16 = 0o7777;

/// What `unlink` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlinked {
    /// The inode the name pointed to.
    pub ino: InodeNo,
    /// Its last link went: it is on the orphan list, and the caller must
    /// call [`Fs::evict`] once nothing holds it any more.
    pub orphaned: bool,
}

/// Checks a name for a new entry: 1..=255 bytes, no '/' or NUL, not "."
/// or ".." (which always exist).
pub(crate) fn check_new_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if name == b"." || name == b".." {
        return Err(Error::Exists);
    }
    Ok(())
}

/// Checks a name an operation looks up: 1..=255 bytes, no '/' or NUL.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::Invalid(format!(
            "{:?} is not a valid file name",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// Encodes a device number (the kernel's `new_encode_dev` form, as FUSE
/// delivers it) into `i_block` as `ext4_write_inode` does: the old 16-bit
/// form in word 0 when major and minor fit a byte, else the new form in
/// word 1.
pub fn encode_rdev(i_block: &mut [u8], rdev: u32) {
    let major = (rdev & 0xfff00) >> 8;
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    let words: [u32; 3] = if major < 256 && minor < 256 {
        [(major << 8) | minor, 0, 0]
    } else {
        [0, rdev, 0]
    };
    for (i, w) in words.iter().enumerate() {
        if let Some(s) = i_block.get_mut(i * 4..i * 4 + 4) {
            s.copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// The directory `dir` as a transaction sees it, checked to be a live
/// directory (a removed one, with no links, takes no new entries).
pub(crate) fn tx_dir(tx: &Tx<'_>, dir: InodeNo) -> Result<Inode> {
    let d = tx.inode(dir)?;
    if d.kind() != FileKind::Dir {
        return Err(Error::NotDirectory);
    }
    if d.links == 0 {
        return Err(Error::NotFound);
    }
    Ok(d)
}

/// Sets `inode`'s change time (and, for a directory whose entries
/// changed, its modification time) to the operation's.
pub(crate) fn touch(tx: &Tx<'_>, inode: &mut Inode, entries_changed: bool) {
    inode.ctime = tx.now();
    if entries_changed {
        inode.mtime = tx.now();
    }
}

/// Whether `dir` is an indexed directory on a dir_index filesystem (the
/// kernel's `is_dx`).
fn is_dx(tx: &Tx<'_>, dir: &Inode) -> bool {
    dir.has_flag(crate::inode::flags::INDEX) && tx.sb().has_compat(compat::DIR_INDEX)
}

/// Whether directory `dir` has as many subdirectories as it may
/// (`EXT4_DIR_LINK_MAX`): 65000 links, unless dir_nlink lets an indexed
/// directory go past (its count then stays 1).
pub(crate) fn dir_link_max(tx: &Tx<'_>, dir: &Inode) -> bool {
    u32::from(dir.links) >= LINK_MAX
        && !(tx.sb().has_ro_compat(ro_compat::DIR_NLINK) && is_dx(tx, dir))
}

/// A subdirectory added to `dir` (`ext4_inc_count`): one more link, or 1
/// ("many") for an indexed directory past the limit.
pub(crate) fn inc_dir_count(tx: &Tx<'_>, dir: &mut Inode) {
    dir.links = dir.links.saturating_add(1);
    if is_dx(tx, dir) && (u32::from(dir.links) > LINK_MAX || dir.links == 2) {
        dir.links = 1;
    }
}

/// A subdirectory gone from `dir` (`ext4_dec_count`): a directory's
/// count never drops below 2 (and 1, "many", stays).
pub(crate) fn dec_dir_count(dir: &mut Inode) {
    if dir.kind() != FileKind::Dir || dir.links > 2 {
        dir.links -= 1;
    }
}

impl Fs {
    /// Runs `op` as one transaction for `creds`: on success commits; on
    /// an error drops it (nothing changed) and records corruption,
    /// checksum and IO errors with [`Fs::fail`].
    pub(crate) fn in_tx<T>(
        &self,
        creds: &Creds,
        at: ErrorAt,
        op: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let r = (|| {
            let mut tx = self.begin(*creds)?;
            let v = op(&mut tx)?;
            tx.commit()?;
            Ok(v)
        })();
        if let Err(e) = &r {
            self.fail(e, at);
        }
        r
    }

    /// Locks directory `dir` and the inode its entry `name` names (plus
    /// `extra`), in one `write_many`, retrying when the entry changed
    /// between the lookup and the locks. Returns the guard and the inode.
    pub(crate) fn lock_entry(
        &self,
        dir: InodeNo,
        name: &[u8],
        extra: &[InodeNo],
    ) -> Result<(InodeWriteGuard<'_>, InodeNo)> {
        let look = || -> Result<InodeNo> {
            let _g = self.read_guard()?;
            self.lookup(dir, name)
        };
        for _ in 0..LOCK_RETRIES {
            let ino = look()?;
            let mut inos = vec![dir, ino];
            inos.extend_from_slice(extra);
            let guard = self.inode_locks().write_many(&inos);
            // With the directory locked its entries cannot change any more.
            if look()? == ino {
                return Ok((guard, ino));
            }
        }
        Err(Error::Internal(format!(
            "entry {:?} of directory {dir} kept changing",
            String::from_utf8_lossy(name)
        )))
    }

    /// Creates a regular file `name` in `dir` with permission bits `mode`
    /// (a file-type part, if any, must say regular file).
    pub fn create(&self, creds: &Creds, dir: InodeNo, name: &[u8], mode: u16) -> Result<Stat> {
        let t = mode & S_IFMT;
        if t != 0 && t != S_IFREG {
            return Err(Error::Invalid(format!("create with file type {t:o}")));
        }
        self.make_node(
            creds,
            dir,
            name,
            S_IFREG | (mode & PERM_MASK),
            "create",
            |_| Ok(()),
        )
    }

    /// Creates a node `name` in `dir`: `mode` holds the type (regular
    /// file, character or block device, FIFO, socket) and permission
    /// bits; `rdev` is the device number of a device node in the kernel's
    /// `new_encode_dev` form (what FUSE delivers), ignored otherwise.
    pub fn mknod(
        &self,
        creds: &Creds,
        dir: InodeNo,
        name: &[u8],
        mode: u16,
        rdev: u32,
    ) -> Result<Stat> {
        let t = mode & S_IFMT;
        if ![S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK].contains(&t) {
            return Err(Error::Invalid(format!("mknod with file type {t:o}")));
        }
        let device = t == S_IFCHR || t == S_IFBLK;
        self.make_node(creds, dir, name, mode, "mknod", |inode| {
            if device {
                encode_rdev(inode.i_block_mut(), rdev);
            }
            Ok(())
        })
    }

    /// Creates symlink `name` in `dir` pointing at `target`. Targets
    /// shorter than 60 bytes are kept in the inode (a fast symlink, as the
    /// kernel makes them); longer ones need a block (not in this step).
    pub fn symlink(&self, creds: &Creds, dir: InodeNo, name: &[u8], target: &[u8]) -> Result<Stat> {
        let bs = self.block_size() as usize;
        if target.is_empty() || target.contains(&0) {
            return Err(Error::Invalid("symlink target empty or with a NUL".into()));
        }
        // The kernel's limit: the target and its NUL fit a block.
        if target.len() + 1 > bs {
            return Err(Error::NameTooLong);
        }
        if target.len() >= I_BLOCK_LEN {
            return Err(Error::Unsupported(
                "symlinks of 60 bytes or more (a block) in this step".into(),
            ));
        }
        self.make_node(creds, dir, name, S_IFLNK | 0o777, "symlink", |inode| {
            // A fast symlink maps nothing: the target replaces the root.
            inode.flags &= !crate::inode::flags::EXTENTS;
            let ib = inode.i_block_mut();
            ib.fill(0);
            ib[..target.len()].copy_from_slice(target);
            inode.size = target.len() as u64;
            Ok(())
        })
    }

    /// The common part of create, mknod and symlink: a new inode of
    /// `mode`, finished by `init`, linked as `name` in `dir`.
    fn make_node(
        &self,
        creds: &Creds,
        dir: InodeNo,
        name: &[u8],
        mode: u16,
        func: &'static str,
        init: impl FnOnce(&mut Inode) -> Result<()>,
    ) -> Result<Stat> {
        check_new_name(name)?;
        let kind = kind_of_mode(mode)
            .ok_or_else(|| Error::Invalid(format!("file type of mode {mode:o}")))?;
        let _locks = self.inode_locks().write(dir);
        let at = ErrorAt {
            func,
            ino: dir,
            ..ErrorAt::default()
        };
        self.in_tx(creds, at, |tx| {
            let mut d = tx_dir(tx, dir)?;
            tx.check_dir_editable(&d)?;
            check_may_modify(&d, Change::AddEntry)?;
            if tx.dir_find(&d, name)?.is_some() {
                return Err(Error::Exists);
            }
            let slot = tx.dir_plan_insert(&d, name)?;
            tx.check_space(0, 1)?;
            let mut inode = tx.new_inode(&d, mode)?;
            init(&mut inode)?;
            tx.write_inode(&inode)?;
            let e = NewEntry {
                ino: inode.ino,
                name,
                file_type: ft_of_kind(kind),
            };
            tx.dir_insert(&mut d, slot, &e)?;
            touch(tx, &mut d, true);
            tx.write_inode(&d)?;
            Ok(inode.stat())
        })
    }

    /// Links inode `ino` (not a directory) as `name` in `dir`.
    pub fn link(&self, creds: &Creds, ino: InodeNo, dir: InodeNo, name: &[u8]) -> Result<Stat> {
        check_new_name(name)?;
        let _locks = self.inode_locks().write_many(&[dir, ino]);
        let at = ErrorAt {
            func: "link",
            ino,
            ..ErrorAt::default()
        };
        self.in_tx(creds, at, |tx| {
            let mut inode = tx.inode(ino)?;
            if inode.links == 0 {
                // Unlinked (an orphan still open): linkat(2) refuses it.
                return Err(Error::NotFound);
            }
            if inode.kind() == FileKind::Dir {
                return Err(Error::NotPermitted("a hard link to a directory".into()));
            }
            if u32::from(inode.links) >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            check_may_modify(&inode, Change::Link)?;
            let mut d = tx_dir(tx, dir)?;
            tx.check_dir_editable(&d)?;
            check_may_modify(&d, Change::AddEntry)?;
            if tx.dir_find(&d, name)?.is_some() {
                return Err(Error::Exists);
            }
            let slot = tx.dir_plan_insert(&d, name)?;
            let e = NewEntry {
                ino,
                name,
                file_type: ft_of_kind(inode.kind()),
            };
            tx.dir_insert(&mut d, slot, &e)?;
            inode.links += 1;
            touch(tx, &mut inode, false);
            tx.write_inode(&inode)?;
            touch(tx, &mut d, true);
            tx.write_inode(&d)?;
            Ok(inode.stat())
        })
    }

    /// Removes the name `name` (not a directory) from `dir`. When it was
    /// the inode's last link the inode goes on the orphan list and the
    /// caller must [`Fs::evict`] it once nothing holds it.
    pub fn unlink(&self, creds: &Creds, dir: InodeNo, name: &[u8]) -> Result<Unlinked> {
        check_name(name)?;
        if name == b"." || name == b".." {
            return Err(Error::IsDirectory);
        }
        let (_locks, ino) = self.lock_entry(dir, name, &[])?;
        let at = ErrorAt {
            func: "unlink",
            ino,
            ..ErrorAt::default()
        };
        self.in_tx(creds, at, |tx| {
            let mut d = tx_dir(tx, dir)?;
            tx.check_dir_editable(&d)?;
            let found = tx.dir_find(&d, name)?.ok_or(Error::NotFound)?;
            let mut inode = tx.inode(found.ino)?;
            if inode.kind() == FileKind::Dir {
                return Err(Error::IsDirectory);
            }
            check_may_modify(&d, Change::RemoveEntry)?;
            check_may_modify(&inode, Change::Unlink)?;
            let orphaned = drop_link(tx, &mut d, &found, &mut inode)?;
            Ok(Unlinked {
                ino: found.ino,
                orphaned,
            })
        })
    }

    /// Removes the empty directory `name` from `dir`; it goes on the
    /// orphan list like an unlinked file (see [`Fs::unlink`]).
    pub fn rmdir(&self, creds: &Creds, dir: InodeNo, name: &[u8]) -> Result<Unlinked> {
        check_name(name)?;
        match name {
            b"." => return Err(Error::Invalid("rmdir of \".\"".into())),
            b".." => return Err(Error::NotEmpty),
            _ => {}
        }
        let (_locks, ino) = self.lock_entry(dir, name, &[])?;
        let at = ErrorAt {
            func: "rmdir",
            ino,
            ..ErrorAt::default()
        };
        self.in_tx(creds, at, |tx| {
            let mut d = tx_dir(tx, dir)?;
            tx.check_dir_editable(&d)?;
            let found = tx.dir_find(&d, name)?.ok_or(Error::NotFound)?;
            let mut inode = tx.inode(found.ino)?;
            if inode.kind() != FileKind::Dir {
                return Err(Error::NotDirectory);
            }
            check_may_modify(&d, Change::RemoveEntry)?;
            check_may_modify(&inode, Change::Unlink)?;
            if !tx.dir_is_empty(&inode)? {
                return Err(Error::NotEmpty);
            }
            remove_dir_entry(tx, &mut d, &found, &mut inode)?;
            Ok(Unlinked {
                ino: found.ino,
                orphaned: true,
            })
        })
    }

    /// Frees inode `ino` if its last link is gone (an orphan whose last
    /// user let go: the adapter's final forget or release): its blocks,
    /// the inode itself, and its place on the orphan list. An inode that
    /// still has links is left alone (`Ok`): evict may be called for
    /// every inode the kernel forgets.
    pub fn evict(&self, ino: InodeNo) -> Result<()> {
        let _locks = self.inode_locks().write(ino);
        let at = ErrorAt {
            func: "evict",
            ino,
            ..ErrorAt::default()
        };
        self.in_tx(&Creds::ROOT, at, |tx| {
            let mut inode = tx.inode(ino)?;
            if inode.links > 0 {
                return Ok(());
            }
            if inode.blocks != 0 || inode.file_acl.0 != 0 {
                return Err(Error::Unsupported(format!(
                    "freeing inode {ino}, which owns blocks, in this step"
                )));
            }
            tx.orphan_del(&mut inode)?;
            inode.size = 0;
            inode.dtime = u32::try_from(tx.now().sec.max(0)).unwrap_or(u32::MAX);
            tx.write_inode(&inode)?;
            tx.free_inode(ino, inode.mode)
        })
    }
}

/// Removes entry `found` from `d` and one link from `inode` (its ctime
/// and the directory's times set, both written); returns whether that was
/// the last link, in which case `inode` went on the orphan list.
pub(crate) fn drop_link(
    tx: &mut Tx<'_>,
    d: &mut Inode,
    found: &Found,
    inode: &mut Inode,
) -> Result<bool> {
    tx.dir_remove(d, found)?;
    // The kernel warns about and repairs a named inode with no links by
    // treating it as having one.
    inode.links = inode.links.saturating_sub(1);
    touch(tx, inode, false);
    let orphaned = inode.links == 0;
    if orphaned {
        tx.orphan_add(inode);
    }
    tx.write_inode(inode)?;
    touch(tx, d, true);
    tx.write_inode(d)?;
    Ok(orphaned)
}

/// Removes entry `found` (an empty directory `inode`) from `d`: its
/// links cleared, size 0, on the orphan list (`ext4_rmdir`); the parent
/// loses the subdirectory's link. Both written.
pub(crate) fn remove_dir_entry(
    tx: &mut Tx<'_>,
    d: &mut Inode,
    found: &Found,
    inode: &mut Inode,
) -> Result<()> {
    tx.dir_remove(d, found)?;
    orphan_dir(tx, inode)?;
    dec_dir_count(d);
    touch(tx, d, true);
    tx.write_inode(d)
}

/// An empty directory losing its name: links 0, size 0, ctime now, on
/// the orphan list, written.
pub(crate) fn orphan_dir(tx: &mut Tx<'_>, inode: &mut Inode) -> Result<()> {
    inode.links = 0;
    inode.size = 0;
    touch(tx, inode, false);
    tx.orphan_add(inode);
    tx.write_inode(inode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inode::decode_rdev;

    #[test]
    fn device_numbers_in_both_encodings() {
        // (major, minor, old form expected)
        let cases = [
            (8, 1, true),
            (255, 255, true),
            (256, 0, false),
            (1, 300, false),
        ];
        for (maj, min, old) in cases {
            let rdev: u32 = (min & 0xff) | (maj << 8) | ((min & !0xff) << 12);
            let mut ib = [0xffu8; 60];
            encode_rdev(&mut ib, rdev);
            assert_eq!(decode_rdev(&ib), (maj, min), "{maj}:{min}");
            let w0 = u32::from_le_bytes(ib[0..4].try_into().unwrap());
            assert_eq!(w0 != 0, old, "{maj}:{min} old form");
        }
    }

    #[test]
    fn names() {
        // (name, new-entry check, lookup check)
        let long = [b'a'; 256];
        let cases: &[(&[u8], bool, bool)] = &[
            (b"a", true, true),
            (&long[..255], true, true),
            (&long, false, false),
            (b"", false, false),
            (b"a/b", false, false),
            (b"a\0", false, false),
            (b".", false, true),
            (b"..", false, true),
        ];
        for &(n, new_ok, ok) in cases {
            assert_eq!(check_new_name(n).is_ok(), new_ok, "{n:?}");
            assert_eq!(check_name(n).is_ok(), ok, "{n:?}");
        }
        assert!(matches!(check_name(&long), Err(Error::NameTooLong)));
        assert!(matches!(check_new_name(b".."), Err(Error::Exists)));
    }
}
