//! The directory entry format shared by linear directory blocks, htree
//! leaves and inline directories: the entry chain, its validation, the
//! 64 KiB `rec_len` encoding and the metadata_csum leaf tail.
//!
//! A directory block is a chain of variable-length entries
//! `{inode u32, rec_len u16, name_len u8, file_type u8, name}` (without the
//! `filetype` feature `name_len` is a 16-bit field and there is no type byte).
//! Every entry is validated before use: `rec_len` at least 12, a multiple of
//! 4, large enough for the name, and inside the region; the name 1..=255 bytes
//! without `/` or NUL; the inode number within the filesystem. Entries with
//! inode 0 are unused space. With `metadata_csum` each leaf block ends with a
//! 12-byte fake entry (the tail) holding the crc32c of the rest of the block,
//! seeded from the directory inode's number and generation.
//!
//! Invariant: parsing is pure (bytes in, entries out) and bounded: every
//! step advances by at least [`DIRENT_MIN_REC_LEN`] bytes.

use super::bytes::{get_le16, get_le32};
use super::csum::crc32c;
use super::error::{Error, Result};
use super::num::InodeNo;
use super::types::FileKind;

/// Size of the fixed part of a dirent (inode, rec_len, name_len, type).
pub const DIRENT_HEADER: usize = 8;
/// Smallest valid `rec_len` (header plus a 1-byte name, rounded to 4).
pub const DIRENT_MIN_REC_LEN: usize = 12;
/// Longest name.
pub const NAME_MAX: usize = 255;
/// Size of the metadata_csum leaf tail (a fake dirent).
pub const DIRENT_TAIL_SIZE: usize = 12;
/// The tail's `file_type` byte.
pub const DIRENT_TAIL_FT: u8 = 0xde;
/// Largest block size; a `rec_len` field cannot hold it directly.
const MAX_BLOCK_SIZE: usize = 65536;

/// `file_type` byte values (with the `filetype` feature).
pub mod ft {
    /// Unknown: ask the inode.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHRDEV: u8 = 3;
    /// Block device.
    pub const BLKDEV: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;
}

/// The kind a `file_type` byte names, `None` for unknown values.
pub fn kind_from_ft(t: u8) -> Option<FileKind> {
    Some(match t {
        ft::REG => FileKind::File,
        ft::DIR => FileKind::Dir,
        ft::CHRDEV => FileKind::CharDev,
        ft::BLKDEV => FileKind::BlockDev,
        ft::FIFO => FileKind::Fifo,
        ft::SOCK => FileKind::Socket,
        ft::SYMLINK => FileKind::Symlink,
        _ => return None,
    })
}

/// The `file_type` byte for an inode of `kind`.
pub fn ft_of_kind(kind: FileKind) -> u8 {
    match kind {
        FileKind::File => ft::REG,
        FileKind::Dir => ft::DIR,
        FileKind::CharDev => ft::CHRDEV,
        FileKind::BlockDev => ft::BLKDEV,
        FileKind::Fifo => ft::FIFO,
        FileKind::Socket => ft::SOCK,
        FileKind::Symlink => ft::SYMLINK,
    }
}

/// Decodes an on-disk `rec_len` for a region of a block of `block_size`
/// bytes: 64 KiB blocks store 65536 as 0 or 65535 and borrow the two low
/// bits for bits 16..17.
pub fn rec_len_from_disk(raw: u16, block_size: usize) -> usize {
    if block_size < MAX_BLOCK_SIZE {
        return usize::from(raw);
    }
    if raw == 0 || raw == u16::MAX {
        return MAX_BLOCK_SIZE;
    }
    usize::from(raw & 0xfffc) | (usize::from(raw & 3) << 16)
}

/// The space an entry with a `name_len`-byte name needs.
pub fn rec_len_for(name_len: usize) -> usize {
    (DIRENT_HEADER + name_len + 3) & !3
}

/// How to parse a dirent region.
#[derive(Debug, Clone, Copy)]
pub struct DirentFormat {
    /// The fs has the `filetype` feature (8-bit name_len plus a type byte).
    pub filetype: bool,
    /// Block size, for the 64 KiB rec_len encoding.
    pub block_size: usize,
    /// Highest valid inode number (`s_inodes_count`).
    pub max_ino: u32,
}

/// One validated entry of a dirent region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDirent<'a> {
    /// Offset of the entry in its region.
    pub offset: usize,
    /// Inode number (0 = unused entry).
    pub ino: InodeNo,
    /// Decoded record length.
    pub rec_len: usize,
    /// The name (empty only for unused entries).
    pub name: &'a [u8],
    /// The `file_type` byte (0 without the filetype feature).
    pub file_type: u8,
}

impl RawDirent<'_> {
    /// Whether the entry names an inode (inode 0 marks unused space).
    pub fn in_use(&self) -> bool {
        self.ino.0 != 0
    }
}

/// Iterator over the validated entries of one dirent region (a block, a
/// block minus its csum tail, or an inline area). Yields an error at the
/// first malformed entry and then stops; every step advances by at least
/// [`DIRENT_MIN_REC_LEN`] so a region of n bytes yields at most n/12 items.
#[derive(Debug)]
pub struct Dirents<'a> {
    region: &'a [u8],
    pos: usize,
    fmt: DirentFormat,
    failed: bool,
}

impl<'a> Dirents<'a> {
    /// Walks `region` from its start.
    pub fn new(region: &'a [u8], fmt: DirentFormat) -> Self {
        Dirents {
            region,
            pos: 0,
            fmt,
            failed: false,
        }
    }

    fn parse_one(&self) -> std::result::Result<RawDirent<'a>, String> {
        let off = self.pos;
        let b = self.region;
        let Some(head) = off
            .checked_add(DIRENT_HEADER)
            .and_then(|end| b.get(off..end))
        else {
            return Err(format!("entry at {off} runs past the end of the region"));
        };
        let ino = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let rec_len =
            rec_len_from_disk(u16::from_le_bytes([head[4], head[5]]), self.fmt.block_size);
        let (name_len, file_type) = if self.fmt.filetype {
            (usize::from(head[6]), head[7])
        } else {
            (usize::from(u16::from_le_bytes([head[6], head[7]])), 0)
        };
        if rec_len < DIRENT_MIN_REC_LEN {
            return Err(format!("rec_len {rec_len} at {off} is below the minimum"));
        }
        if rec_len % 4 != 0 {
            return Err(format!("rec_len {rec_len} at {off} is not a multiple of 4"));
        }
        if rec_len > b.len() - off {
            return Err(format!(
                "rec_len {rec_len} at {off} runs past the region end"
            ));
        }
        if name_len > NAME_MAX || rec_len < rec_len_for(name_len) {
            return Err(format!(
                "name_len {name_len} at {off} does not fit rec_len {rec_len}"
            ));
        }
        let name = b
            .get(off + DIRENT_HEADER..off + DIRENT_HEADER + name_len)
            .unwrap_or_default();
        if ino != 0 {
            if ino > self.fmt.max_ino {
                return Err(format!("inode {ino} at {off} is out of range"));
            }
            if name.is_empty() {
                return Err(format!("entry at {off} has an empty name"));
            }
            if name.iter().any(|&c| c == b'/' || c == 0) {
                return Err(format!("name at {off} contains '/' or NUL"));
            }
        }
        Ok(RawDirent {
            offset: off,
            ino: InodeNo(ino),
            rec_len,
            name,
            file_type,
        })
    }
}

impl<'a> Iterator for Dirents<'a> {
    type Item = std::result::Result<RawDirent<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.region.len() {
            return None;
        }
        match self.parse_one() {
            Ok(d) => {
                self.pos += d.rec_len;
                Some(Ok(d))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses all entries of a region, mapping the first failure to
/// `Error::Corrupt` naming `what`.
pub fn parse_region<'a>(
    region: &'a [u8],
    fmt: DirentFormat,
    what: &dyn Fn() -> String,
) -> Result<Vec<RawDirent<'a>>> {
    Dirents::new(region, fmt)
        .map(|r| r.map_err(|detail| Error::corrupt(what(), detail)))
        .collect()
}

/// Whether `block` ends with a well-formed metadata_csum tail.
pub fn has_tail(block: &[u8]) -> bool {
    let Some(t) = block
        .len()
        .checked_sub(DIRENT_TAIL_SIZE)
        .and_then(|s| block.get(s..))
    else {
        return false;
    };
    get_le32(t, 0) == Some(0)
        && get_le16(t, 4) == Some(DIRENT_TAIL_SIZE as u16)
        && t[6] == 0
        && t[7] == DIRENT_TAIL_FT
}

/// Verifies a leaf block's metadata_csum tail with the directory's inode
/// checksum seed; returns the region that holds entries (the block minus
/// the tail).
pub fn verify_leaf<'a>(
    block: &'a [u8],
    inode_seed: u32,
    what: &dyn Fn() -> String,
) -> Result<&'a [u8]> {
    if !has_tail(block) {
        return Err(Error::corrupt(
            what(),
            "no space for the directory leaf checksum",
        ));
    }
    let body = &block[..block.len() - DIRENT_TAIL_SIZE];
    let stored = get_le32(block, block.len() - 4).unwrap_or(0);
    if crc32c(inode_seed, body) != stored {
        return Err(Error::checksum(what()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FMT: DirentFormat = DirentFormat {
        filetype: true,
        block_size: 1024,
        max_ino: 1000,
    };

    fn ent(ino: u32, rec_len: u16, name: &[u8], t: u8) -> Vec<u8> {
        let mut v = ino.to_le_bytes().to_vec();
        v.extend_from_slice(&rec_len.to_le_bytes());
        v.push(name.len() as u8);
        v.push(t);
        v.extend_from_slice(name);
        v.resize(usize::from(rec_len), 0);
        v
    }

    #[test]
    fn parses_a_chain() {
        let mut b = ent(2, 12, b".", 2);
        b.extend(ent(2, 12, b"..", 2));
        b.extend(ent(0, 12, b"", 0));
        b.extend(ent(12, 28, b"hello", 1));
        let v = parse_region(&b, FMT, &|| "t".into()).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3].name, b"hello");
        assert_eq!(v[3].offset, 36);
        assert_eq!(v[2].ino, InodeNo(0));
    }

    #[test]
    fn rejects_malformed_entries() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("rec_len past end", ent(12, 16, b"a", 1)[..12].to_vec()),
            ("rec_len below min", {
                let mut e = ent(12, 12, b"a", 1);
                e[4] = 8;
                e
            }),
            ("unaligned", {
                let mut e = ent(12, 16, b"a", 1);
                e[4] = 14;
                e
            }),
            ("name past rec_len", {
                let mut e = ent(12, 12, b"abcd", 1);
                e[6] = 9;
                e
            }),
            ("ino out of range", ent(5000, 12, b"a", 1)),
            ("empty name", ent(12, 12, b"", 1)),
            ("slash", ent(12, 12, b"a/b", 1)),
            ("truncated header", vec![1, 0, 0]),
        ];
        for (what, b) in cases {
            assert!(parse_region(&b, FMT, &|| "t".into()).is_err(), "{what}");
        }
    }

    #[test]
    fn no_filetype_uses_16bit_name_len() {
        let fmt = DirentFormat {
            filetype: false,
            ..FMT
        };
        let mut e = ent(12, 12, b"ab", 0);
        e[7] = 1; // high byte of name_len: 258 > 255
        assert!(parse_region(&e, fmt, &|| "t".into()).is_err());
        e[7] = 0;
        let v = parse_region(&e, fmt, &|| "t".into()).unwrap();
        assert_eq!(v[0].name, b"ab");
        assert_eq!(v[0].file_type, 0);
    }

    #[test]
    fn rec_len_64k_encoding() {
        assert_eq!(rec_len_from_disk(12, 4096), 12);
        assert_eq!(rec_len_from_disk(0, 65536), 65536);
        assert_eq!(rec_len_from_disk(65535, 65536), 65536);
        assert_eq!(rec_len_from_disk(0xfffc | 1, 65536), 0xfffc | 0x10000);
    }

    #[test]
    fn tail_checksum() {
        let mut b = ent(2, 1012, b".", 2);
        b.extend_from_slice(&[0, 0, 0, 0, 12, 0, 0, DIRENT_TAIL_FT, 0, 0, 0, 0]);
        let n = b.len();
        let c = crc32c(77, &b[..n - 12]);
        b[n - 4..].copy_from_slice(&c.to_le_bytes());
        assert!(verify_leaf(&b, 77, &|| "t".into()).is_ok());
        assert!(matches!(
            verify_leaf(&b, 78, &|| "t".into()),
            Err(Error::Checksum { .. })
        ));
        b[n - 5] = 0; // break the tail marker
        assert!(matches!(
            verify_leaf(&b, 77, &|| "t".into()),
            Err(Error::Corrupt { .. })
        ));
    }
}
