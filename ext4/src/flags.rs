//! Inode flags as users see them (`chattr`/`lsattr`: FS_IOC_GETFLAGS and
//! FS_IOC_SETFLAGS, the kernel's `ext4_fileattr_get/set`), FS_IOC_GETVERSION,
//! and the append-only/immutable rules every changing operation checks
//! ([`check_may_modify`]).
//!
//! A FUSE mount leaves these rules to the server: the kernel does not mark
//! a FUSE inode `S_IMMUTABLE`/`S_APPEND`, so the VFS checks that would
//! refuse a write, an unlink or a chmod of an immutable file never run.
//! Every operation that changes an inode or a directory therefore calls
//! [`check_may_modify`] on what it changes, before its first `modify`.
//!
//! Which bits a caller may change (`ext4_fileattr_set`, `ext4_ioctl_setflags`):
//! bits outside [`FL_USER_VISIBLE`] are refused (EOPNOTSUPP); visible but not
//! modifiable bits are silently kept as they are (chattr writes back what it
//! read); a bit the file type cannot carry (DIRSYNC on a file) is refused.
//! Only the owner or root may change flags; APPEND and IMMUTABLE need
//! CAP_LINUX_IMMUTABLE and JOURNAL_DATA CAP_SYS_RESOURCE. FUSE passes the
//! caller's uid, not its capabilities, so the engine takes uid 0 for them
//! (the kernel has checked the real capability before it sent the ioctl).
//! An immutable inode keeps its other flags until IMMUTABLE is cleared.
//! Changing EXTENTS would convert the block map (the kernel's migrate),
//! which the engine does not do: refused with [`Error::Unsupported`].
//! JOURNAL_DATA changes only with a journal, as in the kernel (without one
//! `ext4_change_inode_journal_flag` leaves the bit alone); fsvc writes data
//! ordered either way.

use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::inode::{flags as fl, Inode, S_IFDIR, S_IFMT, S_IFREG};
use crate::mount::ErrorAt;
use crate::num::InodeNo;
use crate::superblock::compat;
use crate::tx::{Creds, Tx};
use crate::types::Stat;

/// Undelete (`u`).
pub const FL_UNRM: u32 = 0x2;
/// Compress (`c`).
pub const FL_COMPR: u32 = 0x4;
/// Synchronous updates (`S`).
pub const FL_SYNC: u32 = 0x8;
/// No dump (`d`).
pub const FL_NODUMP: u32 = 0x40;
/// No atime updates (`A`).
pub const FL_NOATIME: u32 = 0x80;
/// Compression: dirty.
pub const FL_DIRTY: u32 = 0x100;
/// Compression: compressed clusters.
pub const FL_COMPRBLK: u32 = 0x200;
/// Do not compress.
pub const FL_NOCOMPR: u32 = 0x400;
/// Journal file data (`j`).
pub const FL_JOURNAL_DATA: u32 = 0x4000;
/// No tail merging (`t`).
pub const FL_NOTAIL: u32 = 0x8000;
/// Synchronous directory updates (`D`).
pub const FL_DIRSYNC: u32 = 0x10000;
/// Top of a directory hierarchy (`T`).
pub const FL_TOPDIR: u32 = 0x20000;
/// Formerly EOFBLOCKS: still modifiable, meaningless.
pub const FL_EOFBLOCKS: u32 = 0x40_0000;
/// DAX (`x`).
pub const FL_DAX: u32 = 0x200_0000;
/// Project id inherited (`P`).
pub const FL_PROJINHERIT: u32 = 0x2000_0000;

/// Flags a caller may change (`EXT4_FL_USER_MODIFIABLE`).
pub const FL_USER_MODIFIABLE: u32 = fl::SECRM
    | FL_UNRM
    | FL_COMPR
    | FL_SYNC
    | fl::IMMUTABLE
    | fl::APPEND
    | FL_NODUMP
    | FL_NOATIME
    | FL_JOURNAL_DATA
    | FL_NOTAIL
    | FL_DIRSYNC
    | FL_TOPDIR
    | fl::EXTENTS
    | FL_EOFBLOCKS
    | FL_DAX
    | FL_PROJINHERIT
    | fl::CASEFOLD;

/// Flags a caller sees (`EXT4_FL_USER_VISIBLE`).
pub const FL_USER_VISIBLE: u32 = FL_USER_MODIFIABLE
    | FL_DIRTY
    | FL_COMPRBLK
    | FL_NOCOMPR
    | fl::ENCRYPT
    | fl::INDEX
    | fl::VERITY
    | fl::INLINE_DATA;

/// What only directories may carry (`EXT4_REG_FLMASK`'s complement).
const DIR_ONLY: u32 = FL_DIRSYNC | FL_TOPDIR | fl::CASEFOLD | FL_PROJINHERIT;
/// All that inodes other than files and directories may carry
/// (`EXT4_OTHER_FLMASK`).
const OTHER_FLMASK: u32 = FL_NODUMP | FL_NOATIME;

/// `flags` limited to what an inode of `mode` may carry (the kernel's
/// `ext4_mask_flags`; also what a new inode inherits from its directory).
pub fn mask_flags(mode: u16, flags: u32) -> u32 {
    match mode & S_IFMT {
        S_IFDIR => flags,
        S_IFREG => flags & !DIR_ONLY,
        _ => flags & OTHER_FLMASK,
    }
}

/// A change an operation is about to make to an inode, for
/// [`check_may_modify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Opening for writing (`append`: with O_APPEND); O_TRUNC is `Truncate`.
    OpenWrite {
        /// Opened with O_APPEND.
        append: bool,
    },
    /// Writing data at `offset` of a file of `size` bytes (an append when
    /// `offset >= size`).
    Write {
        /// Where the write starts.
        offset: u64,
        /// The file's size before it.
        size: u64,
    },
    /// Changing the size (truncate, O_TRUNC) or the blocks of a file
    /// (fallocate, punch hole).
    Truncate,
    /// setattr: `owner_mode` for mode, uid or gid, `explicit_times` for
    /// atime/mtime set to given times (not "now").
    SetAttr {
        /// Mode, uid or gid change.
        owner_mode: bool,
        /// atime or mtime set to an explicit time.
        explicit_times: bool,
    },
    /// Setting or removing an extended attribute (ACLs included).
    Xattr,
    /// Making a new hard link to the inode.
    Link,
    /// Removing a name of the inode (unlink, rmdir, rename away, replace).
    Unlink,
    /// Adding an entry to the directory (create, mkdir, link, rename into).
    AddEntry,
    /// Removing an entry from the directory (unlink, rmdir, rename out).
    RemoveEntry,
}

/// The kernel's append-only and immutable rules (VFS `may_delete`,
/// `may_linkat`, `notify_change`, `xattr_permission`, `do_truncate`, open
/// and write of an append-only file; `ext4_setattr`): EPERM when `inode`
/// may not undergo `what`.
pub fn check_may_modify(inode: &Inode, what: Change) -> Result<()> {
    let immutable = inode.has_flag(fl::IMMUTABLE);
    let append = inode.has_flag(fl::APPEND);
    if !immutable && !append {
        return Ok(());
    }
    let refuse = |rule: &str| {
        Err(Error::NotPermitted(format!(
            "inode {} is {}: {rule}",
            inode.ino,
            if immutable {
                "immutable"
            } else {
                "append-only"
            }
        )))
    };
    if immutable {
        return refuse("it cannot be changed (chattr -i first)");
    }
    match what {
        Change::OpenWrite { append: true } | Change::AddEntry => Ok(()),
        Change::Write { offset, size } if offset >= size => Ok(()),
        Change::SetAttr {
            owner_mode: false,
            explicit_times: false,
        } => Ok(()),
        Change::OpenWrite { append: false } | Change::Write { .. } => {
            refuse("it may only be opened and written with O_APPEND")
        }
        Change::Truncate => refuse("its data cannot be truncated or deallocated"),
        Change::SetAttr { .. } => refuse("its mode, owner and times cannot be set"),
        Change::Xattr => refuse("its extended attributes cannot be changed"),
        Change::Link | Change::Unlink => refuse("its names cannot be added or removed"),
        Change::RemoveEntry => refuse("entries cannot be removed from it"),
    }
}

/// Inode `ino` read through `tx` as a name or a file handle reaches it:
/// not a reserved inode (other than the root) and not an EA inode (the
/// same refusals as `Fs::inode`). What a change by handle works on.
pub fn handle_inode(tx: &Tx<'_>, ino: InodeNo) -> Result<Inode> {
    let inode = tx.inode(tx.fs().check_reachable(ino)?)?;
    if inode.has_flag(fl::EA_INODE) {
        return Err(Error::corrupt(
            format!("inode {ino}"),
            "an EA inode (an xattr value) reached by handle",
        ));
    }
    Ok(inode)
}

/// Computes the flags FS_IOC_SETFLAGS with `requested` makes of `inode`'s
/// (see the module docs), or why not. `journaled`: the filesystem has a
/// journal.
pub fn new_flags(inode: &Inode, creds: Creds, requested: u32, journaled: bool) -> Result<u32> {
    let old = inode.flags;
    if requested & !FL_USER_VISIBLE != 0 {
        return Err(Error::Unsupported(format!(
            "inode flags {:#x} cannot be set",
            requested & !FL_USER_VISIBLE
        )));
    }
    let want = requested & FL_USER_MODIFIABLE;
    if mask_flags(inode.mode, want) != want {
        return Err(Error::Unsupported(format!(
            "inode flags {:#x} do not apply to this file type",
            want & !mask_flags(inode.mode, want)
        )));
    }
    let privileged = creds.uid == 0;
    if !privileged && creds.uid != inode.uid {
        return Err(Error::NotPermitted(
            "only the owner may change a file's flags".into(),
        ));
    }
    let changed = (old ^ want) & FL_USER_MODIFIABLE;
    if changed & (fl::APPEND | fl::IMMUTABLE) != 0 && !privileged {
        return Err(Error::NotPermitted(
            "the append-only and immutable flags need CAP_LINUX_IMMUTABLE".into(),
        ));
    }
    if changed & FL_JOURNAL_DATA != 0 && !privileged {
        return Err(Error::NotPermitted(
            "the data journaling flag needs CAP_SYS_RESOURCE".into(),
        ));
    }
    if old & want & fl::IMMUTABLE != 0 && changed != 0 {
        return Err(Error::NotPermitted(format!(
            "inode {} is immutable: clear the immutable flag first",
            inode.ino
        )));
    }
    if changed & fl::EXTENTS != 0 {
        return Err(Error::Unsupported(
            "converting between block maps and extents (chattr +e/-e) is not supported".into(),
        ));
    }
    if changed & fl::CASEFOLD != 0 {
        return Err(Error::Unsupported(
            "the filesystem has no casefold feature".into(),
        ));
    }
    // JOURNAL_DATA follows the request only with a journal.
    let keep_mask = if journaled {
        FL_USER_MODIFIABLE
    } else {
        FL_USER_MODIFIABLE & !FL_JOURNAL_DATA
    };
    Ok((old & !keep_mask) | (want & keep_mask))
}

impl Fs {
    /// FS_IOC_GETFLAGS: the flags of `ino` a caller sees. Take
    /// [`Fs::read_guard`] around it.
    pub fn get_flags(&self, ino: InodeNo) -> Result<u32> {
        Ok(self.inode(ino)?.flags & FL_USER_VISIBLE)
    }

    /// FS_IOC_GETVERSION: the inode's generation number. Take
    /// [`Fs::read_guard`] around it.
    pub fn get_version(&self, ino: InodeNo) -> Result<u32> {
        Ok(self.inode(ino)?.generation)
    }

    /// FS_IOC_SETFLAGS by `creds` on `ino` with `flags` (see the module
    /// docs for the rules). Sets ctime and counts a change in `i_version`;
    /// returns the new attributes.
    pub fn set_flags(&self, creds: Creds, ino: InodeNo, flags: u32) -> Result<Stat> {
        let journaled = self.sb().has_compat(compat::HAS_JOURNAL);
        self.change(creds, &[ino], ErrorAt::inode("set_flags", ino), |tx| {
            let mut inode = handle_inode(tx, ino)?;
            inode.flags = new_flags(&inode, creds, flags, journaled)?;
            inode.ctime = tx.now();
            inode.bump_version();
            tx.write_inode(&inode)?;
            Ok(tx.inode(ino)?.stat())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superblock::synth;
    use crate::types::Timestamp;

    fn inode(mode: u16, flags: u32) -> Inode {
        let sb = synth::parsed();
        let mut i = Inode::fresh(&sb, InodeNo(12), 1, mode, 1000, 1000, Timestamp::default());
        i.flags = flags;
        i
    }

    #[test]
    fn append_only_and_immutable_rules() {
        use Change::*;
        let sa = |owner_mode, explicit_times| SetAttr {
            owner_mode,
            explicit_times,
        };
        // (change, allowed when append-only)
        let cases: &[(Change, bool)] = &[
            (OpenWrite { append: true }, true),
            (OpenWrite { append: false }, false),
            (
                Write {
                    offset: 10,
                    size: 10,
                },
                true,
            ),
            (
                Write {
                    offset: 11,
                    size: 10,
                },
                true,
            ),
            (
                Write {
                    offset: 9,
                    size: 10,
                },
                false,
            ),
            (Truncate, false),
            (sa(false, false), true),
            (sa(true, false), false),
            (sa(false, true), false),
            (Xattr, false),
            (Link, false),
            (Unlink, false),
            (AddEntry, true),
            (RemoveEntry, false),
        ];
        for &(what, append_ok) in cases {
            let plain = inode(S_IFREG | 0o644, 0);
            assert!(check_may_modify(&plain, what).is_ok(), "{what:?}");
            let a = inode(S_IFREG | 0o644, fl::APPEND);
            assert_eq!(check_may_modify(&a, what).is_ok(), append_ok, "{what:?}");
            let i = inode(S_IFREG | 0o644, fl::IMMUTABLE);
            assert!(
                matches!(check_may_modify(&i, what), Err(Error::NotPermitted(_))),
                "{what:?}"
            );
        }
    }

    #[test]
    fn setflags_rules() {
        let root = Creds::ROOT;
        let owner = Creds {
            uid: 1000,
            gid: 1000,
        };
        let other = Creds { uid: 7, gid: 7 };
        let file = S_IFREG | 0o644;
        let dir = S_IFDIR | 0o755;
        let fifo = crate::inode::S_IFIFO | 0o644;
        let ext = fl::EXTENTS;
        // (mode, old flags, caller, requested, journaled, result: Ok(flags) or Err kind)
        type Want = std::result::Result<u32, &'static str>;
        let cases: &[(u16, u32, Creds, u32, bool, Want)] = &[
            (
                file,
                ext,
                owner,
                ext | FL_NODUMP,
                false,
                Ok(ext | FL_NODUMP),
            ),
            (file, ext, other, ext | FL_NODUMP, false, Err("perm")),
            (file, ext, owner, ext | fl::APPEND, false, Err("perm")),
            (
                file,
                ext,
                root,
                ext | fl::APPEND,
                false,
                Ok(ext | fl::APPEND),
            ),
            (file, ext | fl::IMMUTABLE, root, ext, false, Ok(ext)),
            (
                file,
                ext | fl::IMMUTABLE,
                root,
                ext | fl::IMMUTABLE | FL_NODUMP,
                false,
                Err("perm"),
            ),
            (
                file,
                ext | fl::IMMUTABLE,
                root,
                ext | fl::IMMUTABLE,
                false,
                Ok(ext | fl::IMMUTABLE),
            ),
            // Visible but not modifiable: kept as it is, whatever is asked.
            (dir, ext | fl::INDEX, owner, ext, false, Ok(ext | fl::INDEX)),
            (
                file,
                ext | fl::HUGE_FILE,
                owner,
                ext,
                false,
                Ok(ext | fl::HUGE_FILE),
            ),
            // Not visible: refused.
            (
                file,
                ext,
                owner,
                ext | fl::HUGE_FILE,
                false,
                Err("unsupported"),
            ),
            // Directory-only flags.
            (
                file,
                ext,
                owner,
                ext | FL_DIRSYNC,
                false,
                Err("unsupported"),
            ),
            (
                dir,
                ext,
                owner,
                ext | FL_DIRSYNC | FL_TOPDIR,
                false,
                Ok(ext | FL_DIRSYNC | FL_TOPDIR),
            ),
            (fifo, 0, owner, FL_NOATIME, false, Ok(FL_NOATIME)),
            (fifo, 0, owner, FL_SYNC, false, Err("unsupported")),
            // Extents conversion, casefold.
            (file, ext, owner, 0, false, Err("unsupported")),
            (file, 0, owner, ext, false, Err("unsupported")),
            (
                dir,
                ext,
                owner,
                ext | fl::CASEFOLD,
                false,
                Err("unsupported"),
            ),
            // Data journaling: root only; kept off without a journal.
            (file, ext, owner, ext | FL_JOURNAL_DATA, true, Err("perm")),
            (
                file,
                ext,
                root,
                ext | FL_JOURNAL_DATA,
                true,
                Ok(ext | FL_JOURNAL_DATA),
            ),
            (file, ext, root, ext | FL_JOURNAL_DATA, false, Ok(ext)),
        ];
        for (i, &(mode, old, creds, req, journaled, want)) in cases.iter().enumerate() {
            let got = new_flags(&inode(mode, old), creds, req, journaled);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "case {i}"),
                (Err(Error::NotPermitted(_)), Err("perm")) => {}
                (Err(Error::Unsupported(_)), Err("unsupported")) => {}
                (g, w) => panic!("case {i}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn masks_by_file_type() {
        let all = FL_USER_MODIFIABLE;
        assert_eq!(mask_flags(S_IFDIR, all), all);
        assert_eq!(mask_flags(S_IFREG, all) & DIR_ONLY, 0);
        assert_eq!(
            mask_flags(crate::inode::S_IFLNK, all),
            FL_NODUMP | FL_NOATIME
        );
    }
}
