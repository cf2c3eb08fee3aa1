//! The ACL work other operations need, on top of [`crate::xattr_write`]:
//! an access ACL following a chmod ([`chmod_acl`], `posix_acl_chmod`,
//! which FUSE with POSIX ACLs leaves to the server) and a directory's
//! default ACL applied to a new child ([`InheritedAcl`],
//! `posix_acl_create`: the mode masked by the ACL and the umask not
//! applied when there is one). The ACL formats and mode rules themselves
//! are pure functions in [`crate::acl`].

use crate::acl::{self, AclEntry};
use crate::error::Result;
use crate::inode::{Inode, S_IFDIR, S_IFLNK, S_IFMT};
use crate::tx::Tx;
use crate::xattr::index;
use crate::xattr_write::{read_value, set_entry, XattrFlags};

/// The access ACL of `inode` following a chmod to its current mode
/// (`posix_acl_chmod`, which `ext4_setattr` calls): rewritten inside `tx`
/// when there is one (symlinks have none). The caller writes the inode.
pub fn chmod_acl(tx: &mut Tx<'_>, inode: &mut Inode) -> Result<()> {
    if inode.mode & S_IFMT == S_IFLNK {
        return Ok(());
    }
    let Some(mut entries) = read_acl(tx, inode, index::POSIX_ACL_ACCESS)? else {
        return Ok(());
    };
    acl::chmod(&mut entries, inode.mode);
    let v = acl::encode_disk(&entries);
    set_entry(
        tx,
        inode,
        index::POSIX_ACL_ACCESS,
        b"",
        Some(&v),
        XattrFlags::default(),
    )?;
    Ok(())
}

/// The ACL of type `idx` stored on `inode`, read through `tx`.
fn read_acl(tx: &Tx<'_>, inode: &Inode, idx: u8) -> Result<Option<Vec<AclEntry>>> {
    let ino = inode.ino;
    match read_value(tx, inode, idx, b"")? {
        Some(v) => acl::parse_disk(&v, &|| format!("ACL of inode {ino}")),
        None => Ok(None),
    }
}

/// What a new inode gets from its directory's default ACL
/// (`posix_acl_create`). Made with [`InheritedAcl::from_dir`] before the
/// new inode is built (its mode is [`InheritedAcl::mode`]), applied with
/// [`InheritedAcl::apply`] once it exists in the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritedAcl {
    /// The new inode's mode (type and permission bits): masked by the
    /// default ACL when the directory has one, else by the umask.
    pub mode: u16,
    /// The access ACL to store (on-disk format), if any.
    access: Option<Vec<u8>>,
    /// The default ACL to store (new directories), if any.
    default: Option<Vec<u8>>,
}

impl InheritedAcl {
    /// For a child of `dir` created with `mode` (type included) and the
    /// caller's `umask`: with a default ACL on `dir`, the mode is masked
    /// by it and the umask is not applied; without one, `mode & !umask`.
    /// Symlinks get neither (their mode stays as given).
    pub fn from_dir(tx: &Tx<'_>, dir: &Inode, mode: u16, umask: u16) -> Result<InheritedAcl> {
        if mode & S_IFMT == S_IFLNK {
            return Ok(InheritedAcl {
                mode,
                access: None,
                default: None,
            });
        }
        let Some(default) = read_acl(tx, dir, index::POSIX_ACL_DEFAULT)? else {
            return Ok(InheritedAcl {
                mode: mode & !(umask & 0o777),
                access: None,
                default: None,
            });
        };
        let mut access = default.clone();
        let (mode, more) = acl::create_masq(&mut access, mode);
        Ok(InheritedAcl {
            mode,
            access: more.then(|| acl::encode_disk(&access)),
            default: (mode & S_IFMT == S_IFDIR).then(|| acl::encode_disk(&default)),
        })
    }

    /// Blocks [`InheritedAcl::apply`] may allocate (for `check_space`).
    pub fn max_blocks(&self) -> u64 {
        u64::from(self.access.is_some() || self.default.is_some())
    }

    /// Stores the ACLs on `inode` (new, in `tx`, mode already
    /// [`InheritedAcl::mode`]); the caller writes the inode afterwards.
    pub fn apply(&self, tx: &mut Tx<'_>, inode: &mut Inode) -> Result<()> {
        for (idx, v) in [
            (index::POSIX_ACL_ACCESS, &self.access),
            (index::POSIX_ACL_DEFAULT, &self.default),
        ] {
            if let Some(v) = v {
                set_entry(tx, inode, idx, b"", Some(v), XattrFlags::default())?;
            }
        }
        Ok(())
    }
}
