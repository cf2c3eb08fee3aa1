//! Extended attributes: the in-inode area (after `128 + i_extra_isize`), the
//! external block (`i_file_acl`), values stored in EA inodes (`ea_inode`),
//! and `Fs::list_xattrs` / `Fs::get_xattr`.
//!
//! Both areas hold a list of entries `{name_len u8, name_index u8,
//! value_offs u16, value_inum u32, value_size u32, hash u32, name}` (each
//! padded to 4 bytes) ended by four zero bytes; values live at the other end
//! of the area. In-inode value offsets count from the first entry, block
//! offsets from the block start. The block has a 32-byte header (magic,
//! refcount, `h_blocks` = 1, hash, checksum) and, with `metadata_csum`, a
//! crc32c over its block number and contents.
//!
//! Names are stored as (index, suffix); the index stands for a prefix. What
//! is listed and gettable matches the kernel: user, trusted, security, gnu
//! and the two POSIX ACLs (converted to the xattr ACL format by `acl.rs`);
//! `system.data` (inline data) and other `system.` entries, richacl, lustre
//! and encryption contexts are internal and neither listed nor returned.
//!
//! Invariants: every entry and value range is checked against its area
//! before use; the entry walk is bounded by the area size; values are at most
//! [`XATTR_SIZE_MAX`] bytes.

use std::sync::Arc;

use super::acl;
use super::bytes::{get_le16, get_le32};
use super::csum::crc32c;
use super::error::{Error, Result};
use super::fs::Fs;
use super::inode::{flags as iflags, Inode};
use super::num::{InodeNo, Pblk};
use super::superblock::incompat;

/// Magic at the start of the in-inode area and of an xattr block.
pub const XATTR_MAGIC: u32 = 0xEA02_0000;
/// Size of the xattr block header.
pub const BLOCK_HEADER_SIZE: usize = 32;
/// Offset of `h_refcount` in the block header: how many inodes share the block.
pub(crate) const H_REFCOUNT: usize = 4;
/// Offset of `h_blocks` in the block header.
pub(crate) const H_BLOCKS: usize = 8;
/// Offset of `h_hash` in the block header.
pub(crate) const H_HASH: usize = 12;
/// Offset of `h_checksum` in the block header.
pub(crate) const H_CHECKSUM: usize = 16;
/// Size of the in-inode area header (the magic).
pub const IBODY_HEADER_SIZE: usize = 4;
/// Fixed part of an entry.
pub const ENTRY_HEADER_SIZE: usize = 16;
pub use super::limits::XATTR_SIZE_MAX;

/// Name indexes.
pub mod index {
    /// "user."
    pub const USER: u8 = 1;
    /// "system.posix_acl_access"
    pub const POSIX_ACL_ACCESS: u8 = 2;
    /// "system.posix_acl_default"
    pub const POSIX_ACL_DEFAULT: u8 = 3;
    /// "trusted."
    pub const TRUSTED: u8 = 4;
    /// "lustre." (unused)
    pub const LUSTRE: u8 = 5;
    /// "security."
    pub const SECURITY: u8 = 6;
    /// "system." (e.g. system.data for inline data)
    pub const SYSTEM: u8 = 7;
    /// "system.richacl"
    pub const RICHACL: u8 = 8;
    /// encryption context ("c")
    pub const ENCRYPTION: u8 = 9;
    /// "gnu." (Hurd)
    pub const HURD: u8 = 10;
}

/// Prefixes of the indexes visible to users, with the index they stand for.
/// The ACL names are complete names (their stored suffix is empty); longest
/// prefixes first so that parsing a full name picks the ACL entries before
/// a generic "system." prefix would.
const VISIBLE: [(u8, &[u8]); 6] = [
    (index::POSIX_ACL_ACCESS, b"system.posix_acl_access"),
    (index::POSIX_ACL_DEFAULT, b"system.posix_acl_default"),
    (index::SECURITY, b"security."),
    (index::TRUSTED, b"trusted."),
    (index::USER, b"user."),
    (index::HURD, b"gnu."),
];

/// Where an entry's value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrValue {
    /// In the same area, at this byte range of the area.
    Local {
        /// Start offset in the area slice.
        start: usize,
        /// Length.
        len: usize,
    },
    /// In the data of EA inode `ino`, `size` bytes.
    Inode {
        /// The EA inode.
        ino: InodeNo,
        /// Value size.
        size: u32,
    },
}

/// One validated entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XattrEntry {
    /// Name index.
    pub index: u8,
    /// Name suffix.
    pub name: Vec<u8>,
    /// Value location.
    pub value: XattrValue,
}

impl XattrEntry {
    /// The full visible name, `None` for internal indexes.
    pub fn full_name(&self) -> Option<Vec<u8>> {
        let (_, prefix) = VISIBLE.iter().find(|(i, _)| *i == self.index)?;
        let mut n = prefix.to_vec();
        n.extend_from_slice(&self.name);
        Some(n)
    }
}

/// Splits a full name into (index, suffix) for visible names.
pub fn split_name(full: &[u8]) -> Option<(u8, &[u8])> {
    VISIBLE
        .iter()
        .find(|(_, p)| full.starts_with(p))
        .map(|(i, p)| (*i, &full[p.len()..]))
}

/// Parameters for entry checks.
#[derive(Debug, Clone, Copy)]
pub struct XattrFormat {
    /// The fs has `ea_inode`.
    pub ea_inode: bool,
    /// Highest valid inode number.
    pub max_ino: u32,
    /// First inode a name may reach besides the root (`s_first_ino`): an
    /// EA inode is an ordinary inode, never a reserved one.
    pub first_ino: u32,
}

/// Walks the entries of an area. `entries_start` is where the first entry
/// is in `area`; `value_base` is what value offsets are relative to.
fn parse_entries(
    area: &[u8],
    entries_start: usize,
    value_base: usize,
    fmt: XattrFormat,
    what: &dyn Fn() -> String,
) -> Result<Vec<XattrEntry>> {
    let bad = |d: String| Error::corrupt(what(), d);
    let mut out = Vec::new();
    let mut pos = entries_start;
    let mut raw = Vec::new();
    // Every entry is ≥ 16 bytes, so the walk ends within area.len()/16 steps.
    loop {
        let first = get_le32(area, pos)
            .ok_or_else(|| bad(format!("xattr entry at {pos} past the area")))?;
        if first == 0 {
            break;
        }
        let hdr = area
            .get(pos..pos + ENTRY_HEADER_SIZE)
            .ok_or_else(|| bad(format!("xattr entry at {pos} past the area")))?;
        let name_len = usize::from(hdr[0]);
        let size = (ENTRY_HEADER_SIZE + name_len + 3) & !3;
        let next = pos + size;
        // Room for the next entry's first word (the terminator at least).
        if next + 4 > area.len() {
            return Err(bad(format!("xattr entry at {pos} runs past the area")));
        }
        let name = area
            .get(pos + ENTRY_HEADER_SIZE..pos + ENTRY_HEADER_SIZE + name_len)
            .ok_or_else(|| bad(format!("xattr name at {pos} past the area")))?;
        if name.contains(&0) {
            // The kernel's check_xattrs: "bad e_name length".
            return Err(bad(format!("xattr name at {pos} holds a NUL")));
        }
        raw.push((
            hdr[1],
            name.to_vec(),
            get_le16(hdr, 2),
            get_le32(hdr, 4),
            get_le32(hdr, 8),
        ));
        pos = next;
    }
    // Values must lie after the terminator and inside the area.
    let entries_end = pos + 4;
    for (index, name, offs, inum, size) in raw {
        let (offs, inum, size) = (
            usize::from(offs.unwrap_or(0)),
            inum.unwrap_or(0),
            size.unwrap_or(0),
        );
        if size > XATTR_SIZE_MAX {
            return Err(bad(format!("xattr value of {size} bytes")));
        }
        let value = if inum != 0 {
            if !fmt.ea_inode {
                return Err(bad("EA inode value without the ea_inode feature".into()));
            }
            if inum < fmt.first_ino || inum > fmt.max_ino {
                return Err(bad(format!("invalid EA inode {inum}")));
            }
            if size == 0 {
                return Err(bad(format!("EA inode {inum} holds an empty value")));
            }
            XattrValue::Inode {
                ino: InodeNo(inum),
                size,
            }
        } else if size == 0 {
            XattrValue::Local { start: 0, len: 0 }
        } else {
            let start = value_base + offs;
            let len = size as usize;
            let padded = (len + 3) & !3;
            if start < entries_end || start.checked_add(padded).is_none_or(|e| e > area.len()) {
                return Err(bad(format!("xattr value at {start}+{len} out of bounds")));
            }
            XattrValue::Local { start, len }
        };
        out.push(XattrEntry { index, name, value });
    }
    Ok(out)
}

/// Parses the in-inode area (`Inode::inline_xattr_area`). No magic means no
/// in-inode attributes.
pub fn parse_ibody(
    area: &[u8],
    fmt: XattrFormat,
    what: &dyn Fn() -> String,
) -> Result<Vec<XattrEntry>> {
    if get_le32(area, 0) != Some(XATTR_MAGIC) {
        return Ok(Vec::new());
    }
    parse_entries(area, IBODY_HEADER_SIZE, IBODY_HEADER_SIZE, fmt, what)
}

/// The metadata_csum checksum of xattr block `block` at `blocknr`: crc32c
/// seeded with the filesystem's seed over the block number (64-bit) and
/// the block with `h_checksum` taken as zero. The writer stores it, the
/// reader compares it. `block` is at least a header long.
pub fn block_csum(block: &[u8], blocknr: Pblk, seed: u32) -> u32 {
    let mut c = crc32c(seed, &blocknr.0.to_le_bytes());
    c = crc32c(c, block.get(..H_CHECKSUM).unwrap_or(&[]));
    c = crc32c(c, &[0; 4]);
    crc32c(c, block.get(H_CHECKSUM + 4..).unwrap_or(&[]))
}

/// Checks an xattr block's header and checksum (with `csum_seed` =
/// `Some(fs seed)` under metadata_csum) and parses its entries.
pub fn parse_block(
    block: &[u8],
    blocknr: Pblk,
    csum_seed: Option<u32>,
    fmt: XattrFormat,
    what: &dyn Fn() -> String,
) -> Result<Vec<XattrEntry>> {
    let bad = |d: &str| Error::corrupt(what(), d.to_string());
    if block.len() < BLOCK_HEADER_SIZE + 4 {
        return Err(bad("xattr block too small"));
    }
    if get_le32(block, 0) != Some(XATTR_MAGIC) {
        return Err(bad("bad xattr block magic"));
    }
    if get_le32(block, H_BLOCKS) != Some(1) {
        return Err(bad("xattr block h_blocks is not 1"));
    }
    if let Some(seed) = csum_seed {
        if Some(block_csum(block, blocknr, seed)) != get_le32(block, H_CHECKSUM) {
            return Err(Error::checksum(what()));
        }
    }
    parse_entries(block, BLOCK_HEADER_SIZE, 0, fmt, what)
}

/// Offset of `i_atime` in the raw inode: an EA inode keeps its value's
/// crc32c there.
const EA_INODE_HASH_OFFSET: usize = 0x8;

/// Where a parsed entry's local value bytes are.
#[derive(Debug)]
enum Area {
    Ibody,
    Block(Arc<[u8]>),
}

impl Fs {
    /// Entry-check parameters for this filesystem.
    pub(crate) fn xattr_format(&self) -> XattrFormat {
        XattrFormat {
            ea_inode: self.sb().has_incompat(incompat::EA_INODE),
            max_ino: self.sb().inodes_count,
            first_ino: self.sb().first_ino.0,
        }
    }

    /// All entries of an inode: in-inode ones first, then the block's.
    fn xattr_entries(&self, inode: &Inode) -> Result<Vec<(XattrEntry, Area)>> {
        let ino = inode.ino;
        let mut out: Vec<(XattrEntry, Area)> =
            parse_ibody(inode.inline_xattr_area(), self.xattr_format(), &|| {
                format!("in-inode xattrs of inode {ino}")
            })?
            .into_iter()
            .map(|e| (e, Area::Ibody))
            .collect();
        if inode.file_acl.0 != 0 {
            let what = || format!("xattr block {} of inode {ino}", inode.file_acl);
            if !self.sb().block_in_fs(inode.file_acl) {
                return Err(Error::corrupt(what(), "block outside the filesystem"));
            }
            let block = self.meta_block(inode.file_acl)?;
            let seed = self.sb().metadata_csum().then_some(self.sb().csum_seed);
            let entries = parse_block(&block, inode.file_acl, seed, self.xattr_format(), &what)?;
            out.extend(entries.into_iter().map(|e| (e, Area::Block(block.clone()))));
        }
        Ok(out)
    }

    /// Full names of the visible extended attributes of `ino`.
    pub fn list_xattrs(&self, ino: InodeNo) -> Result<Vec<Vec<u8>>> {
        let inode = self.inode(ino)?;
        Ok(self
            .xattr_entries(&inode)?
            .iter()
            .filter_map(|(e, _)| e.full_name())
            .collect())
    }

    /// The value of extended attribute `name` of `ino` (`Error::NoXattr`
    /// when absent or not a visible name). POSIX ACLs come out in the Linux
    /// xattr ACL format.
    pub fn get_xattr(&self, ino: InodeNo, name: &[u8]) -> Result<Vec<u8>> {
        let (idx, suffix) = split_name(name).ok_or(Error::NoXattr)?;
        let inode = self.inode(ino)?;
        let entries = self.xattr_entries(&inode)?;
        let (entry, area) = entries
            .iter()
            .find(|(e, _)| e.index == idx && e.name == suffix)
            .ok_or(Error::NoXattr)?;
        let what = || format!("xattr {} of inode {ino}", String::from_utf8_lossy(name));
        let value = match (entry.value, area) {
            (XattrValue::Local { start, len }, Area::Ibody) => inode
                .inline_xattr_area()
                .get(start..start + len)
                .ok_or_else(|| Error::corrupt(what(), "value out of bounds"))?
                .to_vec(),
            (XattrValue::Local { start, len }, Area::Block(b)) => b
                .get(start..start + len)
                .ok_or_else(|| Error::corrupt(what(), "value out of bounds"))?
                .to_vec(),
            (XattrValue::Inode { ino: ea, size }, _) => {
                self.ea_inode_value(&inode, ea, size, &what)?
            }
        };
        if idx == index::POSIX_ACL_ACCESS || idx == index::POSIX_ACL_DEFAULT {
            return acl::disk_to_xattr(&value, &what)?.ok_or(Error::NoXattr);
        }
        Ok(value)
    }

    /// Reads a value stored in EA inode `ea` and checks it against the
    /// inode's flag, size and stored hash.
    fn ea_inode_value(
        &self,
        owner: &Inode,
        ea: InodeNo,
        size: u32,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>> {
        // As the kernel's ext4_xattr_inode_iget and check_igot_inode: not
        // the owner itself, an inode a name could reach, flagged EA_INODE,
        // and without attributes of its own (no chain of EA inodes).
        if ea == owner.ino {
            return Err(Error::corrupt(what(), "the EA inode is its owner"));
        }
        let inode = self.special_inode(self.check_reachable(ea)?)?;
        if !inode.has_flag(iflags::EA_INODE) {
            return Err(Error::corrupt(
                what(),
                format!("inode {ea} is not an EA inode"),
            ));
        }
        if inode.file_acl.0 != 0 || get_le32(inode.inline_xattr_area(), 0) == Some(XATTR_MAGIC) {
            return Err(Error::corrupt(
                what(),
                format!("EA inode {ea} has extended attributes"),
            ));
        }
        if inode.size != u64::from(size) {
            return Err(Error::corrupt(
                what(),
                format!(
                    "EA inode {ea} holds {} bytes, entry says {size}",
                    inode.size
                ),
            ));
        }
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_inode_data(&inode, done as u64, &mut buf[done..])?;
            if n == 0 {
                return Err(Error::corrupt(what(), format!("EA inode {ea} ends early")));
            }
            done += n;
        }
        // The value's crc32c, seeded like metadata checksums (the kernel
        // computes this seed whenever ea_inode is on).
        let sb = self.sb();
        let seed = if sb.metadata_csum() {
            sb.csum_seed
        } else {
            crc32c(!0, &sb.uuid)
        };
        if Some(crc32c(seed, &buf)) != get_le32(&inode.raw, EA_INODE_HASH_OFFSET) {
            return Err(Error::checksum(what()));
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FMT: XattrFormat = XattrFormat {
        ea_inode: false,
        max_ino: 100,
        first_ino: 11,
    };

    fn what() -> String {
        "x".into()
    }

    /// An in-inode area with one entry "user.ab" = "hello".
    fn ibody() -> Vec<u8> {
        let mut a = vec![0u8; 96];
        a[..4].copy_from_slice(&XATTR_MAGIC.to_le_bytes());
        let e = 4;
        a[e] = 2; // name_len
        a[e + 1] = index::USER;
        a[e + 2..e + 4].copy_from_slice(&80u16.to_le_bytes()); // offs from first entry
        a[e + 8..e + 12].copy_from_slice(&5u32.to_le_bytes());
        a[e + 16..e + 18].copy_from_slice(b"ab");
        a[84..89].copy_from_slice(b"hello");
        a
    }

    #[test]
    fn parses_ibody() {
        let a = ibody();
        let v = parse_ibody(&a, FMT, &what).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].full_name().unwrap(), b"user.ab");
        let XattrValue::Local { start, len } = v[0].value else {
            panic!()
        };
        assert_eq!(&a[start..start + len], b"hello");
    }

    #[test]
    fn rejects_out_of_bounds_values() {
        let mut a = ibody();
        a[6..8].copy_from_slice(&90u16.to_le_bytes());
        assert!(parse_ibody(&a, FMT, &what).is_err());
        let mut a = ibody();
        a[6..8].copy_from_slice(&0u16.to_le_bytes()); // overlaps the entries
        assert!(parse_ibody(&a, FMT, &what).is_err());
        let mut a = ibody();
        a[12..16].copy_from_slice(&XATTR_SIZE_MAX.wrapping_add(1).to_le_bytes());
        assert!(parse_ibody(&a, FMT, &what).is_err());
        let mut a = ibody();
        a[8..12].copy_from_slice(&7u32.to_le_bytes()); // ea inode without feature
        assert!(parse_ibody(&a, FMT, &what).is_err());
        let mut a = ibody();
        a[4] = 200; // name past the area
        assert!(parse_ibody(&a, FMT, &what).is_err());
    }

    #[test]
    fn names_and_ea_inode_references_as_the_kernel_checks_them() {
        let ea = XattrFormat {
            ea_inode: true,
            ..FMT
        };
        // (edit of the one-entry area, format, accepted?)
        type Edit = fn(&mut Vec<u8>);
        let cases: &[(Edit, XattrFormat, bool)] = &[
            (|_| {}, FMT, true),
            (|a| a[21] = 0, FMT, false), // a NUL inside the name "ab"
            // Value in EA inode 20 (5 bytes): fine with the feature.
            (|a| a[8..12].copy_from_slice(&20u32.to_le_bytes()), ea, true),
            // A reserved inode, the root, or past the inode count.
            (|a| a[8..12].copy_from_slice(&7u32.to_le_bytes()), ea, false),
            (|a| a[8..12].copy_from_slice(&2u32.to_le_bytes()), ea, false),
            (
                |a| a[8..12].copy_from_slice(&101u32.to_le_bytes()),
                ea,
                false,
            ),
            // An EA inode holding an empty value.
            (
                |a| {
                    a[8..12].copy_from_slice(&20u32.to_le_bytes());
                    a[12..16].fill(0);
                },
                ea,
                false,
            ),
        ];
        for (i, &(edit, fmt, ok)) in cases.iter().enumerate() {
            let mut a = ibody();
            edit(&mut a);
            assert_eq!(parse_ibody(&a, fmt, &what).is_ok(), ok, "case {i}");
        }
    }

    #[test]
    fn no_magic_means_empty() {
        assert!(parse_ibody(&[0; 32], FMT, &what).unwrap().is_empty());
        assert!(parse_ibody(&[], FMT, &what).unwrap().is_empty());
    }

    #[test]
    fn block_header_and_checksum() {
        let mut b = vec![0u8; 1024];
        b[..4].copy_from_slice(&XATTR_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let mut c = crc32c(9, &77u64.to_le_bytes());
        c = crc32c(c, &b);
        b[16..20].copy_from_slice(&c.to_le_bytes());
        assert!(parse_block(&b, Pblk(77), Some(9), FMT, &what)
            .unwrap()
            .is_empty());
        assert!(matches!(
            parse_block(&b, Pblk(78), Some(9), FMT, &what),
            Err(Error::Checksum { .. })
        ));
        b[3] = 0;
        assert!(matches!(
            parse_block(&b, Pblk(77), None, FMT, &what),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn names_split_and_join() {
        assert_eq!(split_name(b"system.posix_acl_access"), Some((2, &b""[..])));
        assert_eq!(split_name(b"user.x"), Some((1, &b"x"[..])));
        assert_eq!(split_name(b"system.data"), None);
        assert_eq!(split_name(b"other.x"), None);
    }
}
