//! Attribute changes: setattr (the kernel's `ext4_setattr` with the VFS's
//! `setattr_copy` and `notify_change` rules) and the atime update reads
//! make (`touch_atime` with relatime, strictatime, noatime).
//!
//! What the filesystem decides, and what it leaves to the kernel: fsvc
//! always mounts with `default_permissions`, so the kernel has already
//! checked who may chmod, chown, chgrp or set times (owner, CAP_CHOWN,
//! CAP_FOWNER, membership of the new group) with the caller's full
//! credentials, which FUSE does not pass on (the server learns the uid and
//! gid only). The engine does not repeat those checks, and does what the
//! kernel leaves to the inode's filesystem:
//! - setuid is cleared on every owner or group change of a non-directory
//!   (by anyone, root too), setgid too when the file is group-executable
//!   (`setattr_should_drop_sgid`); without group-exec setgid is a locking
//!   mark and stays, unless [`SetAttr::caller_groups`] shows the caller is
//!   not in the file's group;
//! - chmod clears setgid when the caller is neither root nor in the file's
//!   (new) group. Only [`SetAttr::caller_groups`] can tell (a FUSE request
//!   carries no supplementary groups; `None`: the kernel already applied
//!   the rule, which it does under `default_permissions`);
//! - a chmod rewrites the access ACL to match (`posix_acl_chmod`: FUSE with
//!   POSIX ACLs leaves it to the server);
//! - ctime is set on every setattr (to the explicit ctime when given, else
//!   the operation's time), and `i_version` counts the change;
//! - an immutable inode refuses every setattr; an append-only one refuses
//!   mode, owner, explicit times and size ([`crate::flags::check_may_modify`]).
//!
//! Times are stored with nanoseconds and the epoch bits where the inode has
//! the extra fields (1901 to 2446), seconds only (1901 to 2038) otherwise,
//! clamped as the kernel clamps them; [`Fs::setattr`] returns what was
//! stored. Size changes belong to truncate (file data): until it exists a
//! size in [`SetAttr`] is refused with [`Error::Unsupported`] before
//! anything changes.

use crate::acl_write::chmod_acl;
use crate::error::{Error, Result};
use crate::flags::{check_may_modify, handle_inode, Change, FL_NOATIME};
use crate::fs::Fs;
use crate::inode::{Inode, S_IFDIR, S_IFMT, S_ISGID, S_ISUID, S_IXGRP};
use crate::mount::ErrorAt;
use crate::num::InodeNo;
use crate::tx::Creds;
use crate::types::{FileKind, Stat, Timestamp};

/// Permission bits a mode change sets (type bits excluded).
const PERM_MASK: u16 = 0o7777;
/// relatime updates an atime not newer than mtime and ctime, or older than this.
const RELATIME_MAX_AGE_SECS: i64 = 24 * 60 * 60;

/// A time setattr gives: the operation's own time (UTIME_NOW) or an
/// explicit one. UTIME_OMIT is `None` in [`SetAttr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    /// The time of the operation.
    Now,
    /// This time.
    At(Timestamp),
}

/// What a setattr changes (`None`: left alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (mode & 0o7777; the file type is kept).
    pub mode: Option<u16>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate; refused until file data writes exist).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
    /// An explicit change time (FUSE's FATTR_CTIME); the operation's time otherwise.
    pub ctime: Option<Timestamp>,
    /// The caller's supplementary groups, when known: then the engine
    /// applies the kernel's "caller not in the file's group" setgid rules
    /// itself. `None` (FUSE): the kernel already did.
    pub caller_groups: Option<Vec<u32>>,
}

impl SetAttr {
    /// The append-only/immutable check this change needs.
    fn change(&self) -> Change {
        Change::SetAttr {
            owner_mode: self.mode.is_some() || self.uid.is_some() || self.gid.is_some(),
            explicit_times: matches!(self.atime, Some(TimeSet::At(_)))
                || matches!(self.mtime, Some(TimeSet::At(_))),
        }
    }
}

/// The kernel's `in_group_or_capable` with what the engine knows: root,
/// or `gid` is the caller's fsgid or one of `groups`; with `groups`
/// unknown, true (the kernel decided).
fn in_group_or_root(creds: Creds, groups: Option<&[u32]>, gid: u32) -> bool {
    match groups {
        None => true,
        Some(g) => creds.uid == 0 || creds.gid == gid || g.contains(&gid),
    }
}

/// Applies `ch` to `inode` as setattr does (see the module docs), `now`
/// being the operation's time. Pure: no check of flags or permissions.
pub fn apply_setattr(inode: &mut Inode, ch: &SetAttr, creds: Creds, now: Timestamp) {
    let groups = ch.caller_groups.as_deref();
    let is_dir = inode.mode & S_IFMT == S_IFDIR;
    if ch.uid.is_some() || ch.gid.is_some() {
        // chown_common's ATTR_KILL_SUID / setattr_should_drop_sgid, judged
        // on the inode before the change.
        if !is_dir {
            let mut kill = S_ISUID;
            if inode.mode & S_IXGRP != 0 || !in_group_or_root(creds, groups, inode.gid) {
                kill |= S_ISGID;
            }
            inode.mode &= !kill;
        }
        if let Some(uid) = ch.uid {
            inode.uid = uid;
        }
        if let Some(gid) = ch.gid {
            inode.gid = gid;
        }
    }
    if let Some(mode) = ch.mode {
        let mut perm = mode & PERM_MASK;
        if !in_group_or_root(creds, groups, inode.gid) {
            perm &= !S_ISGID;
        }
        inode.mode = (inode.mode & S_IFMT) | perm;
        if ch.uid.is_some() || ch.gid.is_some() {
            // A mode given with the owner change (the FUSE kernel sends the
            // killed mode along) must not bring the bits back.
            if !is_dir {
                inode.mode &= !S_ISUID;
                if inode.mode & S_IXGRP != 0 {
                    inode.mode &= !S_ISGID;
                }
            }
        }
    }
    let pick = |t: TimeSet| match t {
        TimeSet::Now => now,
        TimeSet::At(t) => t,
    };
    if let Some(t) = ch.atime {
        inode.atime = pick(t);
    }
    if let Some(t) = ch.mtime {
        inode.mtime = pick(t);
    }
    inode.ctime = ch.ctime.unwrap_or(now);
    inode.bump_version();
}

/// Clears setuid, and setgid on a group-executable file, as a write or a
/// truncate by an unprivileged caller does (the kernel's
/// `file_remove_privs`: `should_remove_suid`). Returns whether the mode
/// changed (the caller then writes the inode and sets ctime). Root
/// (CAP_FSETID, taken as uid 0) keeps them.
pub fn kill_suid_on_write(inode: &mut Inode, creds: Creds) -> bool {
    if creds.uid == 0 || inode.mode & S_IFMT == S_IFDIR {
        return false;
    }
    let mut kill = inode.mode & S_ISUID;
    if inode.mode & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP {
        kill |= S_ISGID;
    }
    inode.mode &= !kill;
    kill != 0
}

/// When reads update atime (the mount's `noatime`/`relatime`/`strictatime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AtimeMode {
    /// Never.
    NoAtime,
    /// When atime is not newer than mtime or ctime, or a day old (the default).
    #[default]
    Relatime,
    /// On every read.
    Strict,
}

/// The mount's atime policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AtimePolicy {
    /// The mode.
    pub mode: AtimeMode,
    /// `nodiratime`: directories' atime never changes.
    pub nodiratime: bool,
}

fn key(t: Timestamp) -> (i64, u32) {
    (t.sec, t.nsec)
}

/// Whether a read at `now` updates `inode`'s atime under `policy` (the
/// kernel's `atime_needs_update` and `relatime_need_update`): never with
/// noatime, for a directory with nodiratime, or for an inode flagged
/// NOATIME (`chattr +A`); never when atime is already `now`; always with
/// strictatime; with relatime when atime is not newer than mtime or ctime,
/// or at least a day older than `now`.
pub fn atime_needs_update(policy: AtimePolicy, inode: &Inode, now: Timestamp) -> bool {
    if policy.mode == AtimeMode::NoAtime
        || inode.has_flag(FL_NOATIME)
        || (policy.nodiratime && inode.kind() == FileKind::Dir)
        || inode.atime == now
    {
        return false;
    }
    match policy.mode {
        AtimeMode::NoAtime => false,
        AtimeMode::Strict => true,
        AtimeMode::Relatime => {
            key(inode.mtime) >= key(inode.atime)
                || key(inode.ctime) >= key(inode.atime)
                || now.sec.saturating_sub(inode.atime.sec) >= RELATIME_MAX_AGE_SECS
        }
    }
}

impl Fs {
    /// setattr by `creds` on `ino` (chmod, chown, utimensat; see the module
    /// docs for the rules): returns the attributes as stored.
    pub fn setattr(&self, creds: Creds, ino: InodeNo, ch: &SetAttr) -> Result<Stat> {
        self.change(creds, &[ino], ErrorAt::inode("setattr", ino), |tx| {
            let mut inode = handle_inode(tx, ino)?;
            check_may_modify(&inode, ch.change())?;
            if ch.size.is_some() {
                check_may_modify(&inode, Change::Truncate)?;
                return Err(Error::Unsupported(
                    "changing a file's size (truncate) is not supported yet".into(),
                ));
            }
            apply_setattr(&mut inode, ch, creds, tx.now());
            if ch.mode.is_some() {
                // FUSE_POSIX_ACL leaves posix_acl_chmod to the server.
                chmod_acl(tx, &mut inode)?;
            }
            tx.write_inode(&inode)?;
            Ok(tx.inode(ino)?.stat())
        })
    }

    /// The atime update a read of `ino` makes under `policy`: performed
    /// when [`atime_needs_update`] says so, in its own transaction (the
    /// filesystem's, not the reader's). Returns whether atime changed (the
    /// FUSE adapter then tells the kernel). Nothing on a read-only
    /// filesystem. Call it after the read, holding no lock of the engine
    /// (no read guard, no inode lock).
    pub fn touch_atime(&self, ino: InodeNo, policy: AtimePolicy) -> Result<bool> {
        if policy.mode == AtimeMode::NoAtime || self.is_read_only() {
            return Ok(false);
        }
        {
            // Most reads need no update: decide under the readers' guard
            // before taking the inode lock and the change lock.
            let _g = self.read_guard()?;
            let inode = self.inode(ino)?;
            if !atime_needs_update(policy, &inode, crate::tx::now()) {
                return Ok(false);
            }
        }
        let r = self.change(
            Creds::ROOT,
            &[ino],
            ErrorAt::inode("touch_atime", ino),
            |tx| {
                let mut inode = handle_inode(tx, ino)?;
                if !atime_needs_update(policy, &inode, tx.now()) {
                    return Ok(false);
                }
                inode.atime = tx.now();
                tx.write_inode(&inode)?;
                Ok(true)
            },
        );
        match r {
            // Turned read-only meanwhile: a read does not fail for it.
            Err(Error::ReadOnly) => Ok(false),
            r => r,
        }
    }
}

#[cfg(test)]
#[path = "attr_write_tests.rs"]
mod tests;
