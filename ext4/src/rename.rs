//! rename(2) and renameat2(2) as the kernel's `ext4_rename` and
//! `ext4_cross_rename` make them: `Fs::rename`.
//!
//! - A plain rename adds the new name (or points an existing one at the
//!   source, in place, as `ext4_setent`), then removes the old name (or,
//!   with [`rename_flags::WHITEOUT`], points it at a new whiteout: a
//!   character device 0:0 with no permission bits).
//! - A replaced inode loses a link (a replaced directory, which must be
//!   empty, all of them) and goes on the orphan list when none is left:
//!   the caller evicts it as after an unlink ([`Renamed::replaced`]).
//! - A directory moving to another parent gets its ".." rewritten; the old
//!   parent loses a link and the new one gains one (unless the move
//!   replaced a directory there, whose link it takes over).
//! - [`rename_flags::EXCHANGE`] swaps the two entries' inodes in place;
//!   parents' link counts change only when a directory and a non-directory
//!   trade parents.
//! - Every check comes before the first change: the names, the flags, the
//!   types (ENOTDIR, EISDIR), an empty replaced directory (ENOTEMPTY), a
//!   directory never moved under itself (EINVAL, found by walking ".."
//!   from the destination up to the root inside the transaction, so no
//!   other rename can interleave), the new parent's link limit (EMLINK),
//!   room for the new name, a free inode for a whiteout.
//!
//! Locks: both directories, the source and the replaced inode, in one
//! `write_many` (stripe order, i.e. inode-number order modulo the
//! stripes), taken after a lookup and checked again under the locks.
//! Times: both directories get mtime and ctime, the moved, replaced and
//! exchanged inodes ctime.

use crate::dir_edit::NewEntry;
use crate::dir_tx::Found;
use crate::dirent::{ft, ft_of_kind};
use crate::error::{Error, Result};
use crate::flags::{check_may_modify, Change};
use crate::fs::Fs;
use crate::inode::{Inode, S_IFCHR};
use crate::mount::ErrorAt;
use crate::namei::{
    check_name, dec_dir_count, dir_link_max, encode_rdev, inc_dir_count, touch, tx_dir, Unlinked,
};
use crate::num::InodeNo;
use crate::tx::{Creds, Tx};
use crate::types::FileKind;

/// `renameat2` flags.
pub mod rename_flags {
    /// Fail with EEXIST if the new name exists.
    pub const NOREPLACE: u32 = 1;
    /// Swap the two names (both must exist).
    pub const EXCHANGE: u32 = 2;
    /// Leave a whiteout (a 0:0 character device) at the old name.
    pub const WHITEOUT: u32 = 4;
}

/// How often the two names are looked up again when they changed before
/// their locks were taken.
const LOCK_RETRIES: u32 = 16;

/// What `rename` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renamed {
    /// The inode the new name pointed to before, if it was replaced (not
    /// exchanged); `orphaned` says it lost its last link and must be
    /// evicted once nothing holds it.
    pub replaced: Option<Unlinked>,
}

/// The two directories of a rename: the same inode once, or two.
struct Dirs {
    old: Inode,
    new: Option<Inode>,
}

impl Dirs {
    fn new_dir(&mut self) -> &mut Inode {
        match &mut self.new {
            Some(n) => n,
            None => &mut self.old,
        }
    }

    fn cross(&self) -> bool {
        self.new.is_some()
    }
}

impl Fs {
    /// Renames `old_name` in `old_dir` to `new_name` in `new_dir`, with
    /// `renameat2` `flags` ([`rename_flags`]). See the module docs.
    pub fn rename(
        &self,
        creds: &Creds,
        old_dir: InodeNo,
        old_name: &[u8],
        new_dir: InodeNo,
        new_name: &[u8],
        flags: u32,
    ) -> Result<Renamed> {
        use rename_flags::*;
        check_name(old_name)?;
        check_name(new_name)?;
        for n in [old_name, new_name] {
            if n == b"." || n == b".." {
                return Err(Error::Invalid("rename of \".\" or \"..\"".into()));
            }
        }
        if flags & !(NOREPLACE | EXCHANGE | WHITEOUT) != 0
            || (flags & EXCHANGE != 0 && flags & (NOREPLACE | WHITEOUT) != 0)
        {
            return Err(Error::Invalid(format!("rename flags {flags:#x}")));
        }
        let (_locks, src_ino) = self.lock_rename(old_dir, old_name, new_dir, new_name)?;
        let at = ErrorAt {
            func: "rename",
            ino: src_ino,
            ..ErrorAt::default()
        };
        self.in_tx(creds, at, |tx| {
            let old = tx_dir(tx, old_dir)?;
            tx.check_dir_editable(&old)?;
            let new = if new_dir == old_dir {
                None
            } else {
                let n = tx_dir(tx, new_dir)?;
                tx.check_dir_editable(&n)?;
                Some(n)
            };
            let mut dirs = Dirs { old, new };
            let src = tx.dir_find(&dirs.old, old_name)?.ok_or(Error::NotFound)?;
            let tgt = tx.dir_find(dirs.new_dir(), new_name)?;
            if flags & NOREPLACE != 0 && tgt.is_some() {
                return Err(Error::Exists);
            }
            if tgt.is_some_and(|t| t.ino == src.ino) {
                // Two names of one inode: rename(2) does nothing.
                return Ok(Renamed { replaced: None });
            }
            // The VFS's may_delete/may_create rules, left to us under FUSE.
            check_may_modify(&dirs.old, Change::RemoveEntry)?;
            check_may_modify(dirs.new_dir(), Change::AddEntry)?;
            check_may_modify(&tx.inode(src.ino)?, Change::Unlink)?;
            if let Some(t) = tgt {
                check_may_modify(dirs.new_dir(), Change::RemoveEntry)?;
                check_may_modify(&tx.inode(t.ino)?, Change::Unlink)?;
                if flags & EXCHANGE != 0 {
                    check_may_modify(&dirs.old, Change::AddEntry)?;
                }
            }
            if flags & EXCHANGE != 0 {
                let tgt = tgt.ok_or(Error::NotFound)?;
                exchange(tx, &mut dirs, &src, &tgt)?;
                return Ok(Renamed { replaced: None });
            }
            let replaced = replace(tx, &mut dirs, &src, tgt, new_name, flags & WHITEOUT != 0)?;
            Ok(Renamed { replaced })
        })
    }

    /// Locks both directories, the source and the replaced inode (if the
    /// new name exists), retrying when either name changed meanwhile.
    fn lock_rename(
        &self,
        old_dir: InodeNo,
        old_name: &[u8],
        new_dir: InodeNo,
        new_name: &[u8],
    ) -> Result<(crate::locks::InodeWriteGuard<'_>, InodeNo)> {
        let look = || -> Result<(InodeNo, Option<InodeNo>)> {
            let _g = self.read_guard()?;
            let s = self.lookup(old_dir, old_name)?;
            let t = match self.lookup(new_dir, new_name) {
                Ok(t) => Some(t),
                Err(Error::NotFound) => None,
                Err(e) => return Err(e),
            };
            Ok((s, t))
        };
        for _ in 0..LOCK_RETRIES {
            let (s, t) = look()?;
            let mut inos = vec![old_dir, new_dir, s];
            inos.extend(t);
            let guard = self.inode_locks().write_many(&inos);
            if look()? == (s, t) {
                return Ok((guard, s));
            }
        }
        Err(Error::Internal("rename: the names kept changing".into()))
    }
}

/// Refuses to move directory `moving` into `dest` or below it: walks ".."
/// from `dest` up to the root (each step a distinct directory, so at most
/// as many steps as the filesystem has inodes).
fn check_not_under(tx: &Tx<'_>, moving: InodeNo, dest: InodeNo) -> Result<()> {
    let mut cur = dest;
    for _ in 0..=tx.sb().inodes_count {
        if cur == moving {
            return Err(Error::Invalid(
                "a directory cannot be moved under itself".into(),
            ));
        }
        if cur == InodeNo::ROOT {
            return Ok(());
        }
        let d = tx.inode(cur)?;
        let parent = tx.dir_parent(&d)?;
        if parent == cur {
            return Err(Error::corrupt(
                format!("directory {cur}"),
                "'..' names the directory itself",
            ));
        }
        cur = parent;
    }
    Err(Error::corrupt(
        format!("directory {dest}"),
        "its '..' chain never reaches the root",
    ))
}

/// A plain rename (or whiteout): `src` becomes `new_name` in the new
/// directory, replacing `tgt` if there is one.
fn replace(
    tx: &mut Tx<'_>,
    dirs: &mut Dirs,
    src: &Found,
    tgt: Option<Found>,
    new_name: &[u8],
    whiteout: bool,
) -> Result<Option<Unlinked>> {
    let mut si = tx.inode(src.ino)?;
    let s_dir = si.kind() == FileKind::Dir;
    let mut ti = tgt.map(|t| tx.inode(t.ino)).transpose()?;
    if let Some(t) = &ti {
        let t_dir = t.kind() == FileKind::Dir;
        if s_dir && !t_dir {
            return Err(Error::NotDirectory);
        }
        if !s_dir && t_dir {
            return Err(Error::IsDirectory);
        }
        if t_dir && !tx.dir_is_empty(t)? {
            return Err(Error::NotEmpty);
        }
    }
    let new_ino = dirs.new_dir().ino;
    if s_dir && dirs.cross() {
        check_not_under(tx, src.ino, new_ino)?;
        if ti.is_none() && dir_link_max(tx, dirs.new_dir()) {
            return Err(Error::TooManyLinks);
        }
    }
    let slot = match tgt {
        None => Some(tx.dir_plan_insert(dirs.new_dir(), new_name)?),
        Some(_) => None,
    };
    if whiteout {
        tx.check_space(0, 1)?;
    }
    // Every check done: change.
    let s_ft = ft_of_kind(si.kind());
    match (tgt, slot) {
        (Some(t), _) => tx.dir_set_entry(dirs.new_dir(), &t, src.ino, s_ft)?,
        (None, Some(slot)) => {
            let e = NewEntry {
                ino: src.ino,
                name: new_name,
                file_type: s_ft,
            };
            tx.dir_insert(dirs.new_dir(), slot, &e)?;
        }
        (None, None) => return Err(Error::Internal("rename without a slot".into())),
    }
    if whiteout {
        // One link (a fresh inode's), no permission bits, device 0:0.
        let mut w = tx.new_inode(&dirs.old, S_IFCHR)?;
        encode_rdev(w.i_block_mut(), 0);
        tx.write_inode(&w)?;
        tx.dir_set_entry(&dirs.old, src, w.ino, ft::CHRDEV)?;
    } else {
        tx.dir_remove(&dirs.old, src)?;
    }
    let replaced = match ti.as_mut() {
        Some(t) => {
            if t.kind() == FileKind::Dir {
                // Empty (checked): its name and its own "." both go.
                t.links = 0;
            } else {
                t.links = t.links.saturating_sub(1);
            }
            touch(tx, t, false);
            let orphaned = t.links == 0;
            if orphaned {
                tx.orphan_add(t);
            }
            tx.write_inode(t)?;
            Some(Unlinked {
                ino: t.ino,
                orphaned,
            })
        }
        None => None,
    };
    touch(tx, &mut si, false);
    if s_dir && dirs.cross() {
        tx.dir_set_dotdot(&si, new_ino)?;
        dec_dir_count(&mut dirs.old);
        if ti.is_none() {
            inc_dir_count(tx, dirs.new_dir());
        }
    } else if s_dir && ti.is_some() {
        // Same parent, a directory replaced: the parent loses its link.
        dec_dir_count(&mut dirs.old);
    }
    tx.write_inode(&si)?;
    finish_dirs(tx, dirs)?;
    Ok(replaced)
}

/// RENAME_EXCHANGE: the two entries trade inodes.
fn exchange(tx: &mut Tx<'_>, dirs: &mut Dirs, src: &Found, tgt: &Found) -> Result<()> {
    let mut si = tx.inode(src.ino)?;
    let mut ti = tx.inode(tgt.ino)?;
    let s_dir = si.kind() == FileKind::Dir;
    let t_dir = ti.kind() == FileKind::Dir;
    let (old_ino, new_ino) = (dirs.old.ino, dirs.new_dir().ino);
    if dirs.cross() {
        if s_dir {
            check_not_under(tx, src.ino, new_ino)?;
        }
        if t_dir {
            check_not_under(tx, tgt.ino, old_ino)?;
        }
        if s_dir && !t_dir && dir_link_max(tx, dirs.new_dir()) {
            return Err(Error::TooManyLinks);
        }
        if t_dir && !s_dir && dir_link_max(tx, &dirs.old) {
            return Err(Error::TooManyLinks);
        }
    }
    tx.dir_set_entry(dirs.new_dir(), tgt, src.ino, ft_of_kind(si.kind()))?;
    tx.dir_set_entry(&dirs.old, src, tgt.ino, ft_of_kind(ti.kind()))?;
    if dirs.cross() {
        if s_dir {
            tx.dir_set_dotdot(&si, new_ino)?;
        }
        if t_dir {
            tx.dir_set_dotdot(&ti, old_ino)?;
        }
        if s_dir != t_dir {
            if s_dir {
                dec_dir_count(&mut dirs.old);
                inc_dir_count(tx, dirs.new_dir());
            } else {
                inc_dir_count(tx, &mut dirs.old);
                dec_dir_count(dirs.new_dir());
            }
        }
    }
    touch(tx, &mut si, false);
    touch(tx, &mut ti, false);
    tx.write_inode(&si)?;
    tx.write_inode(&ti)?;
    finish_dirs(tx, dirs)
}

/// Both directories' mtime and ctime set and written.
fn finish_dirs(tx: &mut Tx<'_>, dirs: &mut Dirs) -> Result<()> {
    touch(tx, &mut dirs.old, true);
    tx.write_inode(&dirs.old)?;
    if let Some(n) = dirs.new.as_mut() {
        touch(tx, n, true);
        tx.write_inode(n)?;
    }
    Ok(())
}
