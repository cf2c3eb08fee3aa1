//! Setting and removing extended attributes (the kernel's
//! `ext4_xattr_set_handle`), POSIX ACLs included; the ACL work other
//! operations need (chmod, inheritance) is in [`crate::acl_write`].
//!
//! Where a value goes, as the kernel decides: the in-inode area first (an
//! entry already there is replaced there; a new one appended); when it
//! does not fit there, the xattr block (entries sorted by index, name
//! length and name, as the kernel keeps them); an entry that moves from one
//! area to the other is removed from the first. Neither has room: ENOSPC
//! ([`Space::Xattrs`]), also for a value larger than a block (measured on
//! the kernel: 5000 bytes on 1 KiB blocks is ENOSPC, not E2BIG; E2BIG is
//! for values past `XATTR_SIZE_MAX`, which the VFS refuses before any
//! filesystem sees them).
//!
//! Each change rebuilds the area it touches from its entry list: entries
//! from the start, values packed from the end in entry order, every
//! entry's hash and (blocks) the header hash and checksum recomputed.
//! Values may thus move inside the area; nothing keeps offsets across
//! transactions (the inline-data code finds `system.data` by name).
//!
//! The xattr block: a block shared by several inodes (`h_refcount` > 1,
//! made by the kernel's mbcache or by debugfs) is never changed in place:
//! the inode gets a copy with its change (refcount 1) and the shared
//! block's refcount drops by one; a block whose last entry goes is freed
//! (or, shared, loses one reference) and `i_file_acl` cleared. New blocks
//! are allocated near the inode ([`crate::tx::AllocKind::Meta`]) after
//! `check_space`, before anything is changed. fsvc never shares blocks
//! itself (no mbcache): identical attribute sets get their own blocks.
//!
//! EA inodes (`ea_inode`, values in their own inodes) are read-only here:
//! changing an area that holds a reference to one, or a value that would
//! need one (larger than a block can hold, past
//! `EXT4_XATTR_MIN_LARGE_EA_SIZE`, or not fitting anywhere else), is
//! refused with [`Error::Unsupported`] before anything changes.
//!
//! Names: `user.`, `trusted.`, `security.`, `gnu.` with a suffix of 1 to
//! 255 bytes, and the two ACL names. Other `system.` names, and unknown
//! prefixes, are EOPNOTSUPP (the kernel has no handler for them); `user.`
//! on anything but regular files and directories is EPERM
//! (`xattr_permission`). Who may set `trusted.` or `security.` is the
//! kernel's check (it has the capabilities).
//!
//! ACLs (FUSE_POSIX_ACL leaves the mode side to the server): the value
//! comes in the xattr format, is validated ([`acl::parse_xattr`]) and
//! stored in ext4's format. Setting an access ACL sets the mode's
//! permission bits from it, and an ACL the mode says entirely is not
//! stored (`posix_acl_update_mode`); [`XattrFlags::kill_sgid`] (FUSE's
//! `FUSE_SETXATTR_ACL_KILL_SGID`) clears setgid with it. A default ACL
//! applies to directories only (EINVAL otherwise; the kernel refuses it
//! with EACCES before the server sees it). An empty ACL removes it, and so
//! does removexattr, which succeeds when there is none (the kernel's
//! `set_acl` takes no XATTR_CREATE/REPLACE: they are ignored for ACLs).
//! Symlinks take no ACLs (EOPNOTSUPP), and no `user.` attributes (EPERM).

use crate::acl;
use crate::bytes::{get_le32, put_bytes, put_le16, put_le32};
use crate::error::{Error, Result, Space};
use crate::flags::{check_may_modify, handle_inode, Change};
use crate::fs::Fs;
use crate::inode::{Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID};
use crate::mount::ErrorAt;
use crate::num::{InodeNo, Pblk};
use crate::superblock::{compat, incompat, GOOD_OLD_INODE_SIZE};
use crate::tx::{AllocKind, Creds, Tx};
use crate::types::Stat;
use crate::xattr::{
    self, index, parse_block, parse_ibody, split_name, XattrEntry, XattrValue, BLOCK_HEADER_SIZE,
    ENTRY_HEADER_SIZE, H_BLOCKS, H_CHECKSUM, H_HASH, H_REFCOUNT, IBODY_HEADER_SIZE, XATTR_MAGIC,
};

/// setxattr(2)'s XATTR_CREATE: fail if the attribute exists.
pub const XATTR_CREATE: u32 = 1;
/// setxattr(2)'s XATTR_REPLACE: fail if it does not.
pub const XATTR_REPLACE: u32 = 2;
/// Largest value setxattr(2) takes (the VFS's `XATTR_SIZE_MAX`, 64 KiB;
/// on disk an EA inode could hold more).
pub const VALUE_MAX: usize = 1 << 16;
/// Longest name suffix (`XATTR_NAME_MAX`, the kernel's limit on e_name).
pub const NAME_MAX: usize = 255;
/// Entry hashes: bits a name byte shifts the hash by.
const NAME_HASH_SHIFT: u32 = 5;
/// Entry hashes: bits a value word shifts the hash by.
const VALUE_HASH_SHIFT: u32 = 16;
/// Block hash: bits an entry hash shifts it by.
const BLOCK_HASH_SHIFT: u32 = 16;

/// How a set behaves (setxattr(2) flags and FUSE's ACL flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XattrFlags {
    /// XATTR_CREATE: [`Error::Exists`] if the attribute exists.
    pub create: bool,
    /// XATTR_REPLACE: [`Error::NoXattr`] if it does not.
    pub replace: bool,
    /// Setting an access ACL clears setgid (the caller is not in the
    /// file's group: FUSE_SETXATTR_ACL_KILL_SGID).
    pub kill_sgid: bool,
}

impl XattrFlags {
    /// From setxattr(2)'s flags; unknown bits are [`Error::Invalid`].
    pub fn from_bits(bits: u32) -> Result<XattrFlags> {
        if bits & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
            return Err(Error::Invalid(format!("setxattr flags {bits:#x}")));
        }
        Ok(XattrFlags {
            create: bits & XATTR_CREATE != 0,
            replace: bits & XATTR_REPLACE != 0,
            kill_sgid: false,
        })
    }
}

/// An entry held in memory while an area is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ent {
    index: u8,
    name: Vec<u8>,
    /// The value; `None` for a value in an EA inode (kept only to refuse).
    value: Option<Vec<u8>>,
}

/// Padded size of an entry with a `name_len`-byte name (`EXT4_XATTR_LEN`).
fn entry_len(name_len: usize) -> usize {
    (ENTRY_HEADER_SIZE + name_len + 3) & !3
}

/// Padded size of a value (`EXT4_XATTR_SIZE`).
fn value_len(size: usize) -> usize {
    (size + 3) & !3
}

/// An entry's hash (`ext4_xattr_hash_entry`, name bytes unsigned) over
/// its name and its value zero-padded to whole 32-bit words.
pub fn entry_hash(name: &[u8], value: &[u8]) -> u32 {
    let mut h = 0u32;
    for &b in name {
        h = (h << NAME_HASH_SHIFT) ^ (h >> (32 - NAME_HASH_SHIFT)) ^ u32::from(b);
    }
    for w in value.chunks(4) {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        h = (h << VALUE_HASH_SHIFT) ^ (h >> (32 - VALUE_HASH_SHIFT)) ^ u32::from_le_bytes(word);
    }
    h
}

/// The entries of an area with their values copied out of it.
fn load(entries: Vec<XattrEntry>, area: &[u8], what: &dyn Fn() -> String) -> Result<Vec<Ent>> {
    entries
        .into_iter()
        .map(|e| {
            let value = match e.value {
                XattrValue::Local { start, len } => Some(
                    area.get(start..start + len)
                        .ok_or_else(|| Error::corrupt(what(), "value out of bounds"))?
                        .to_vec(),
                ),
                XattrValue::Inode { .. } => None,
            };
            Ok(Ent {
                index: e.index,
                name: e.name,
                value,
            })
        })
        .collect()
}

/// Lays `ents` out in an area of `area_len` bytes: entries from
/// `entries_start`, then a zero word, values packed downward from the end,
/// their offsets relative to `value_base`. `Ok(None)` when they do not fit;
/// [`Error::Unsupported`] for an EA-inode value.
fn encode_area(
    ents: &[Ent],
    area_len: usize,
    entries_start: usize,
    value_base: usize,
) -> Result<Option<Vec<u8>>> {
    let mut out = vec![0u8; area_len];
    let mut pos = entries_start;
    let mut vend = area_len;
    for e in ents {
        let value = e.value.as_deref().ok_or_else(ea_inode_refusal)?;
        let el = entry_len(e.name.len());
        let vl = value_len(value.len());
        let Some(v_at) = vend.checked_sub(vl) else {
            return Ok(None);
        };
        if pos + el + 4 > v_at {
            return Ok(None);
        }
        let offs = if value.is_empty() {
            0
        } else {
            v_at - value_base
        };
        let (Ok(name_len), Ok(offs), Ok(size)) = (
            u8::try_from(e.name.len()),
            u16::try_from(offs),
            u32::try_from(value.len()),
        ) else {
            return Ok(None);
        };
        let put = |out: &mut [u8]| -> Option<()> {
            out[pos] = name_len;
            out[pos + 1] = e.index;
            put_le16(out, pos + 2, offs)?;
            put_le32(out, pos + 4, 0)?;
            put_le32(out, pos + 8, size)?;
            put_le32(out, pos + 12, entry_hash(&e.name, value))?;
            put_bytes(out, pos + ENTRY_HEADER_SIZE, &e.name)?;
            put_bytes(out, v_at, value)
        };
        put(&mut out).ok_or_else(|| Error::Internal("xattr area layout".into()))?;
        pos += el;
        vend = v_at;
    }
    Ok(Some(out))
}

fn ea_inode_refusal() -> Error {
    Error::Unsupported(
        "extended attribute values stored in EA inodes (ea_inode) cannot be changed by fsvc".into(),
    )
}

/// The in-inode area of `inode`: its byte range in `raw`, `None` when the
/// inode has no room for one entry.
fn ibody_range(inode: &Inode) -> Option<std::ops::Range<usize>> {
    let start = usize::from(GOOD_OLD_INODE_SIZE) + usize::from(inode.extra_isize);
    let end = inode.raw.len();
    (usize::from(GOOD_OLD_INODE_SIZE) < end && start + IBODY_HEADER_SIZE + entry_len(1) + 4 <= end)
        .then_some(start..end)
}

/// The in-inode area for `ents` (magic, or all zeros when empty).
fn encode_ibody(ents: &[Ent], area_len: usize) -> Result<Option<Vec<u8>>> {
    if ents.is_empty() {
        return Ok(Some(vec![0u8; area_len]));
    }
    let Some(mut a) = encode_area(ents, area_len, IBODY_HEADER_SIZE, IBODY_HEADER_SIZE)? else {
        return Ok(None);
    };
    a[..4].copy_from_slice(&XATTR_MAGIC.to_le_bytes());
    Ok(Some(a))
}

/// An xattr block for `ents` (sorted as the kernel keeps them) with
/// refcount 1, the header hash set; the checksum is set at its final
/// block number ([`seal_block`]).
fn encode_block(ents: &[Ent], block_size: usize) -> Result<Option<Vec<u8>>> {
    let Some(mut b) = encode_area(ents, block_size, BLOCK_HEADER_SIZE, 0)? else {
        return Ok(None);
    };
    let put = |b: &mut [u8]| -> Option<()> {
        put_le32(b, 0, XATTR_MAGIC)?;
        put_le32(b, H_REFCOUNT, 1)?;
        put_le32(b, H_BLOCKS, 1)
    };
    put(&mut b).ok_or_else(|| Error::Internal("xattr block header".into()))?;
    let hash = block_hash(ents);
    put_le32(&mut b, H_HASH, hash).ok_or_else(|| Error::Internal("xattr block hash".into()))?;
    Ok(Some(b))
}

/// The header hash (`ext4_xattr_rehash`) over the entry hashes.
fn block_hash(ents: &[Ent]) -> u32 {
    let mut h = 0u32;
    for e in ents {
        let eh = entry_hash(&e.name, e.value.as_deref().unwrap_or(&[]));
        if eh == 0 {
            // The kernel's rule: a zero entry hash makes the block unshareable.
            return 0;
        }
        h = (h << BLOCK_HASH_SHIFT) ^ (h >> (32 - BLOCK_HASH_SHIFT)) ^ eh;
    }
    h
}

/// The checksum seed of xattr blocks (`None` without metadata_csum).
fn csum_seed(tx: &Tx<'_>) -> Option<u32> {
    let sb = tx.sb();
    sb.metadata_csum().then_some(sb.csum_seed)
}

/// Sets the checksum of xattr block `b` written at `blk` (metadata_csum).
fn seal_block(seed: Option<u32>, blk: Pblk, b: &mut [u8]) {
    if let Some(seed) = seed {
        let c = xattr::block_csum(b, blk, seed);
        b[H_CHECKSUM..H_CHECKSUM + 4].copy_from_slice(&c.to_le_bytes());
    }
}

/// Where an entry goes in a block: the kernel's sort order.
fn block_order(a: &Ent, b: &Ent) -> std::cmp::Ordering {
    (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name))
}

fn position(ents: &[Ent], idx: u8, name: &[u8]) -> Option<usize> {
    ents.iter().position(|e| e.index == idx && e.name == name)
}

/// The xattr block of an inode as read for a change.
#[derive(Debug)]
struct BlockState {
    blk: Pblk,
    refcount: u32,
}

/// Sets (`value` `Some`) or removes (`None`) the attribute (`idx`, `name`)
/// of `inode` inside `tx`: the in-inode area changes in `inode` (the
/// caller writes it), the xattr block through `tx`. Returns whether
/// anything changed (a set to the same value changes nothing). Name and
/// flag rules are the caller's; `flags.create`/`replace` are honoured here.
pub fn set_entry(
    tx: &mut Tx<'_>,
    inode: &mut Inode,
    idx: u8,
    name: &[u8],
    value: Option<&[u8]>,
    flags: XattrFlags,
) -> Result<bool> {
    let ino = inode.ino;
    let fs = tx.fs();
    let fmt = fs.xattr_format();
    let ib_range = ibody_range(inode);
    let ib_what = || format!("in-inode xattrs of inode {ino}");
    let mut ib = match &ib_range {
        Some(r) => {
            let area = &inode.raw[r.clone()];
            load(parse_ibody(area, fmt, &ib_what)?, area, &ib_what)?
        }
        None => Vec::new(),
    };
    let block = if inode.file_acl.0 != 0 {
        let blk = inode.file_acl;
        let what = || format!("xattr block {blk} of inode {ino}");
        let raw = tx.get(blk)?;
        let ents = parse_block(&raw, blk, csum_seed(tx), fmt, &what)?;
        let bl = load(ents, &raw, &what)?;
        let refcount = get_le32(&raw, H_REFCOUNT).unwrap_or(0);
        Some((BlockState { blk, refcount }, bl))
    } else {
        None
    };
    let (block, mut bl) = match block {
        Some((s, bl)) => (Some(s), bl),
        None => (None, Vec::new()),
    };
    let in_ib = position(&ib, idx, name);
    let in_bl = position(&bl, idx, name);
    let found = in_ib.or(in_bl).is_some();
    if flags.create && found {
        return Err(Error::Exists);
    }
    if flags.replace && !found {
        return Err(Error::NoXattr);
    }
    let bs = tx.sb().block_size as usize;
    let ea_inode = tx.sb().has_incompat(incompat::EA_INODE);
    let (ib_changed, bl_changed) = match value {
        None => {
            if let Some(i) = in_ib {
                ib.remove(i);
                (true, false)
            } else if let Some(i) = in_bl {
                bl.remove(i);
                (false, true)
            } else {
                // Removing what is absent: nothing to do (the callers that
                // must answer ENODATA asked with `replace`).
                return Ok(false);
            }
        }
        Some(v) => {
            let same = |e: &Ent| e.value.as_deref() == Some(v);
            if in_ib.is_some_and(|i| same(&ib[i])) || in_bl.is_some_and(|i| same(&bl[i])) {
                return Ok(false);
            }
            // EXT4_XATTR_MIN_LARGE_EA_SIZE: the kernel puts larger values
            // in an EA inode when it can.
            if ea_inode && value_len(v.len()) > bs - entry_len(3) - BLOCK_HEADER_SIZE - 4 {
                return Err(ea_inode_refusal());
            }
            let new = Ent {
                index: idx,
                name: name.to_vec(),
                value: Some(v.to_vec()),
            };
            let mut ib2 = ib.clone();
            match in_ib {
                Some(i) => ib2[i] = new.clone(),
                None => ib2.push(new.clone()),
            }
            let fits_ib = match &ib_range {
                Some(r) => encode_ibody(&ib2, r.len())?.is_some(),
                None => false,
            };
            if fits_ib {
                ib = ib2;
                if let Some(i) = in_bl {
                    bl.remove(i);
                    (true, true)
                } else {
                    (true, false)
                }
            } else {
                let mut bl2 = bl.clone();
                match in_bl {
                    Some(i) => bl2[i] = new,
                    None => {
                        let at = bl2
                            .iter()
                            .position(|e| block_order(&new, e).is_lt())
                            .unwrap_or(bl2.len());
                        bl2.insert(at, new);
                    }
                }
                if encode_block(&bl2, bs)?.is_none() {
                    if ea_inode {
                        return Err(ea_inode_refusal());
                    }
                    return Err(Error::NoSpace(Space::Xattrs));
                }
                bl = bl2;
                if let Some(i) = in_ib {
                    ib.remove(i);
                    (true, true)
                } else {
                    (false, true)
                }
            }
        }
    };
    // Everything decided and encodable; space before the first change.
    let new_ib = match (&ib_range, ib_changed) {
        (Some(r), true) => Some(
            encode_ibody(&ib, r.len())?
                .ok_or_else(|| Error::Internal("in-inode xattrs stopped fitting".into()))?,
        ),
        _ => None,
    };
    let new_bl = if bl_changed && !bl.is_empty() {
        Some(
            encode_block(&bl, bs)?
                .ok_or_else(|| Error::Internal("xattr block stopped fitting".into()))?,
        )
    } else {
        None
    };
    let needs_new_block = new_bl.is_some() && block.as_ref().is_none_or(|b| b.refcount > 1);
    if needs_new_block {
        tx.check_space(1, 0)?;
    }
    if let (Some(r), Some(a)) = (&ib_range, new_ib) {
        inode.raw[r.clone()].copy_from_slice(&a);
    }
    if bl_changed {
        let sectors = u64::from(tx.sb().block_size) / 512;
        let shared = block.as_ref().is_some_and(|b| b.refcount > 1);
        if let Some(b) = block.as_ref().filter(|_| shared || new_bl.is_none()) {
            release_block(tx, b)?;
        }
        match new_bl {
            Some(mut content) => {
                let blk = if needs_new_block {
                    let goal = tx.inode_goal(inode);
                    let (blk, _) = tx.alloc_blocks(goal, 1, ino, AllocKind::Meta)?;
                    if block.is_none() {
                        inode.blocks = inode.blocks.saturating_add(sectors);
                    }
                    blk
                } else {
                    inode.file_acl
                };
                seal_block(csum_seed(tx), blk, &mut content);
                let dst = if needs_new_block {
                    tx.new_block(blk)?
                } else {
                    tx.modify(blk)?
                };
                dst.copy_from_slice(&content);
                inode.file_acl = blk;
            }
            None => {
                inode.file_acl = Pblk(0);
                inode.blocks = inode.blocks.checked_sub(sectors).ok_or_else(|| {
                    Error::corrupt(
                        format!("inode {ino}"),
                        "i_blocks smaller than its xattr block",
                    )
                })?;
            }
        }
    }
    if value.is_some() && !tx.sb().has_compat(compat::EXT_ATTR) {
        let f = tx.sb_fields_mut();
        f.feature_compat |= compat::EXT_ATTR;
    }
    Ok(true)
}

/// Drops the inode's reference to its xattr block: a shared block's
/// refcount goes down by one, an exclusive one is freed.
fn release_block(tx: &mut Tx<'_>, b: &BlockState) -> Result<()> {
    if b.refcount <= 1 {
        return tx.free_blocks(b.blk, 1, AllocKind::Meta);
    }
    let seed = csum_seed(tx);
    let raw = tx.modify(b.blk)?;
    put_le32(raw, H_REFCOUNT, b.refcount - 1)
        .ok_or_else(|| Error::Internal("xattr block header".into()))?;
    seal_block(seed, b.blk, raw);
    Ok(())
}

/// A checked attribute name: its index and suffix.
fn resolve_name(full: &[u8]) -> Result<(u8, &[u8])> {
    let shown = || String::from_utf8_lossy(full).into_owned();
    let (idx, suffix) = split_name(full).ok_or_else(|| {
        Error::Unsupported(format!("extended attribute namespace of {:?}", shown()))
    })?;
    let is_acl = matches!(idx, index::POSIX_ACL_ACCESS | index::POSIX_ACL_DEFAULT);
    if is_acl && !suffix.is_empty() {
        return Err(Error::Unsupported(format!(
            "extended attribute {:?}",
            shown()
        )));
    }
    if !is_acl && suffix.is_empty() {
        return Err(Error::Invalid(format!(
            "extended attribute name {:?} has no suffix",
            shown()
        )));
    }
    if suffix.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    Ok((idx, suffix))
}

/// The rules an attribute change checks on the inode itself.
fn check_target(inode: &Inode, idx: u8) -> Result<()> {
    let t = inode.mode & S_IFMT;
    if idx == index::USER && t != S_IFREG && t != S_IFDIR {
        return Err(Error::NotPermitted(
            "user.* attributes exist only on regular files and directories".into(),
        ));
    }
    check_may_modify(inode, Change::Xattr)
}

impl Fs {
    /// setxattr(2) by `creds` on `ino`: `name` in full (`user.x`,
    /// `system.posix_acl_access`), `value` as the caller gives it (ACLs in
    /// the xattr format). Sets ctime and counts a change in `i_version`;
    /// returns the attributes (the mode changes with an access ACL).
    pub fn set_xattr(
        &self,
        creds: Creds,
        ino: InodeNo,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<Stat> {
        let (idx, suffix) = resolve_name(name)?;
        if value.len() > VALUE_MAX {
            return Err(Error::ValueTooBig);
        }
        self.change_xattr(creds, ino, idx, suffix, Some(value), flags)
    }

    /// removexattr(2) by `creds` on `ino` ([`Error::NoXattr`] when absent,
    /// but removing an absent ACL succeeds, as on the kernel's ext4).
    pub fn remove_xattr(&self, creds: Creds, ino: InodeNo, name: &[u8]) -> Result<Stat> {
        let (idx, suffix) = resolve_name(name)?;
        let flags = XattrFlags {
            replace: true,
            ..XattrFlags::default()
        };
        self.change_xattr(creds, ino, idx, suffix, None, flags)
    }

    fn change_xattr(
        &self,
        creds: Creds,
        ino: InodeNo,
        idx: u8,
        suffix: &[u8],
        value: Option<&[u8]>,
        flags: XattrFlags,
    ) -> Result<Stat> {
        self.change(creds, &[ino], ErrorAt::inode("xattr_set", ino), |tx| {
            let mut inode = handle_inode(tx, ino)?;
            let before = inode.clone();
            check_target(&inode, idx)?;
            let is_acl = matches!(idx, index::POSIX_ACL_ACCESS | index::POSIX_ACL_DEFAULT);
            let mut flags = flags;
            let stored = if is_acl {
                if inode.mode & S_IFMT == S_IFLNK {
                    return Err(Error::Unsupported("POSIX ACLs on a symbolic link".into()));
                }
                // The VFS's set_acl takes no create/replace flags, and
                // removing an absent ACL succeeds (as on the kernel's ext4).
                flags.create = false;
                flags.replace = false;
                match value {
                    Some(v) => acl_value(&mut inode, idx, v, flags)?,
                    None => None,
                }
            } else {
                value.map(<[u8]>::to_vec)
            };
            let changed = set_entry(tx, &mut inode, idx, suffix, stored.as_deref(), flags)?;
            if !changed && inode == before {
                // The same value again: nothing changes, ctime included
                // (the kernel's ext4_xattr_value_same).
                return Ok(inode.stat());
            }
            inode.ctime = tx.now();
            inode.bump_version();
            tx.write_inode(&inode)?;
            Ok(tx.inode(ino)?.stat())
        })
    }
}

/// The on-disk value to store for an ACL given in the xattr format
/// (`None`: remove it), with the mode changes an access ACL makes.
fn acl_value(inode: &mut Inode, idx: u8, v: &[u8], flags: XattrFlags) -> Result<Option<Vec<u8>>> {
    if v.is_empty() {
        return Ok(None);
    }
    let Some(entries) = acl::parse_xattr(v)? else {
        return Ok(None);
    };
    if idx == index::POSIX_ACL_DEFAULT {
        if inode.mode & S_IFMT != S_IFDIR {
            return Err(Error::Invalid("a default ACL on a non-directory".into()));
        }
        return Ok(Some(acl::encode_disk(&entries)));
    }
    let (mode, more) = acl::equiv_mode(&entries, inode.mode);
    inode.mode = mode;
    if flags.kill_sgid {
        inode.mode &= !S_ISGID;
    }
    Ok(more.then(|| acl::encode_disk(&entries)))
}

/// The value of attribute (`idx`, `name`) of `inode` as `tx` sees it
/// (`None` when absent), for code inside a transaction (`Fs::get_xattr`
/// reads the committed state). A value in an EA inode is refused.
pub fn read_value(tx: &Tx<'_>, inode: &Inode, idx: u8, name: &[u8]) -> Result<Option<Vec<u8>>> {
    let ino = inode.ino;
    let fmt = tx.fs().xattr_format();
    let what = || format!("xattrs of inode {ino}");
    let pick = |ents: Vec<Ent>| -> Result<Option<Vec<u8>>> {
        match ents.into_iter().find(|e| e.index == idx && e.name == name) {
            Some(e) => e.value.map(Some).ok_or_else(ea_inode_refusal),
            None => Ok(None),
        }
    };
    if let Some(r) = ibody_range(inode) {
        let area = &inode.raw[r];
        if let Some(v) = pick(load(parse_ibody(area, fmt, &what)?, area, &what)?)? {
            return Ok(Some(v));
        }
    }
    if inode.file_acl.0 != 0 {
        let raw = tx.get(inode.file_acl)?;
        let ents = parse_block(&raw, inode.file_acl, csum_seed(tx), fmt, &what)?;
        return pick(load(ents, &raw, &what)?);
    }
    Ok(None)
}

#[cfg(test)]
#[path = "xattr_write_tests.rs"]
mod tests;
