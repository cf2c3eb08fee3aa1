//! Editing directory entry regions in place: the write half of `dirent`.
//! Pure functions on the bytes of one region (a directory block without
//! its metadata_csum tail, or an inline area); the callers in `dir_tx`
//! find the blocks, get write access through the transaction and set the
//! tail checksum afterwards ([`set_leaf_tail`]).
//!
//! Entries never move, so a reader's byte position stays valid across
//! changes (docs/design-notes.md, "Directory positions"):
//! - an insert takes an unused record big enough, or splits the slack off
//!   the end of a used one (the kernel's `ext4_find_dest_de` and
//!   `ext4_insert_dentry`): the new entry starts where the slack started;
//! - a removal merges the record into the previous one of its region
//!   (`ext4_generic_delete_entry`), or, for the first record, marks it
//!   unused (inode 0). The removed name's bytes are zeroed so that no
//!   trace of it stays readable in the block.
//!
//! Invariants: every function works only on a region that parsed
//! ([`crate::dirent::parse_region`] checks every record first) and leaves
//! a region that parses: the chain of `rec_len`s still covers the region
//! exactly, every record is at least [`DIRENT_MIN_REC_LEN`] long and a
//! multiple of 4.

use crate::bytes::{put_le16, put_le32};
use crate::csum::crc32c;
use crate::dirent::{
    parse_region, rec_len_for, DirentFormat, RawDirent, DIRENT_HEADER, DIRENT_MIN_REC_LEN,
    DIRENT_TAIL_FT, DIRENT_TAIL_SIZE, NAME_MAX,
};
use crate::error::{Error, Result};
use crate::num::InodeNo;

/// Largest block size; its full-block `rec_len` is stored as 0xffff.
const MAX_BLOCK_SIZE: usize = 65536;
/// How a full 64 KiB record is stored (`EXT4_MAX_REC_LEN`).
const MAX_REC_LEN_ON_DISK: u16 = 0xffff;

/// Encodes a record length as the kernel's `ext4_rec_len_to_disk` does:
/// as is below 64 KiB; 64 KiB blocks borrow the two low bits for bits
/// 16..17, and a record spanning a whole 64 KiB block is 0xffff.
pub fn rec_len_to_disk(len: usize, block_size: usize) -> u16 {
    if block_size < MAX_BLOCK_SIZE || len < MAX_BLOCK_SIZE {
        return len as u16;
    }
    if len == MAX_BLOCK_SIZE {
        return MAX_REC_LEN_ON_DISK;
    }
    ((len & 0xfffc) | ((len >> 16) & 3)) as u16
}

/// One entry to write: inode, name, file-type byte (ignored without the
/// `filetype` feature).
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// The inode it names.
    pub ino: InodeNo,
    /// The name (1..=255 bytes, no '/' or NUL: checked by the caller).
    pub name: &'a [u8],
    /// `dirent::ft` value.
    pub file_type: u8,
}

/// Writes a record header and name at `off` with record length `rec_len`.
fn write_record(
    region: &mut [u8],
    fmt: DirentFormat,
    off: usize,
    rec_len: usize,
    e: &NewEntry<'_>,
) -> Option<()> {
    put_le32(region, off, e.ino.0)?;
    put_le16(region, off + 4, rec_len_to_disk(rec_len, fmt.block_size))?;
    if fmt.filetype {
        *region.get_mut(off + 6)? = e.name.len() as u8;
        *region.get_mut(off + 7)? = e.file_type;
    } else {
        put_le16(region, off + 6, e.name.len() as u16)?;
    }
    region
        .get_mut(off + DIRENT_HEADER..off + DIRENT_HEADER + e.name.len())?
        .copy_from_slice(e.name);
    Some(())
}

/// One record of a region, without borrowing it.
#[derive(Debug, Clone, Copy)]
struct Rec {
    offset: usize,
    rec_len: usize,
    name_len: usize,
    in_use: bool,
}

impl Rec {
    fn of(d: &RawDirent<'_>) -> Rec {
        Rec {
            offset: d.offset,
            rec_len: d.rec_len,
            name_len: d.name.len(),
            in_use: d.in_use(),
        }
    }

    /// The space the record needs for what it holds (0 for an unused
    /// record: all of it is free).
    fn used_len(&self) -> usize {
        if self.in_use {
            rec_len_for(self.name_len)
        } else {
            0
        }
    }
}

/// The validated records of `region`.
fn records(region: &[u8], fmt: DirentFormat, what: &dyn Fn() -> String) -> Result<Vec<Rec>> {
    Ok(parse_region(region, fmt, what)?
        .iter()
        .map(Rec::of)
        .collect())
}

/// Where an entry with a `name_len`-byte name fits in `region`: the offset
/// of the record to take (unused) or to split (used, with enough slack),
/// the first one that fits, as the kernel chooses.
pub fn find_slot(
    region: &[u8],
    fmt: DirentFormat,
    name_len: usize,
    what: &dyn Fn() -> String,
) -> Result<Option<usize>> {
    let need = rec_len_for(name_len);
    Ok(records(region, fmt, what)?
        .iter()
        .find(|d| d.rec_len - d.used_len() >= need)
        .map(|d| d.offset))
}

/// Inserts `e` into the record at `at` (found by [`find_slot`]); returns
/// the new entry's offset. Splits a used record's slack off its end.
pub fn insert(
    region: &mut [u8],
    fmt: DirentFormat,
    at: usize,
    e: &NewEntry<'_>,
    what: &dyn Fn() -> String,
) -> Result<usize> {
    if e.name.is_empty() || e.name.len() > NAME_MAX {
        return Err(Error::Internal(format!(
            "dirent name of {} bytes",
            e.name.len()
        )));
    }
    let need = rec_len_for(e.name.len());
    let d = *records(region, fmt, what)?
        .iter()
        .find(|d| d.offset == at)
        .ok_or_else(|| Error::Internal(format!("no directory record at {at}")))?;
    let used = d.used_len();
    if d.rec_len - used < need {
        return Err(Error::Internal(format!("record at {at} has no room")));
    }
    let fail = || Error::Internal(format!("directory record at {at} out of bounds"));
    let new_off = if used == 0 {
        clear(region, at, d.rec_len);
        write_record(region, fmt, at, d.rec_len, e).ok_or_else(fail)?;
        at
    } else {
        let new_off = at + used;
        // The old record keeps exactly what it needs; the rest is the new one.
        put_le16(region, at + 4, rec_len_to_disk(used, fmt.block_size)).ok_or_else(fail)?;
        clear(region, new_off, d.rec_len - used);
        write_record(region, fmt, new_off, d.rec_len - used, e).ok_or_else(fail)?;
        new_off
    };
    Ok(new_off)
}

/// Zeroes `len` bytes at `off` (clipped to the region).
fn clear(region: &mut [u8], off: usize, len: usize) {
    let end = off.saturating_add(len).min(region.len());
    if let Some(s) = region.get_mut(off..end) {
        s.fill(0);
    }
}

/// Removes the in-use entry at offset `at`: merged into the previous
/// record, or marked unused when it is the region's first.
pub fn remove(
    region: &mut [u8],
    fmt: DirentFormat,
    at: usize,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let entries = records(region, fmt, what)?;
    let i = entries
        .iter()
        .position(|d| d.offset == at && d.in_use)
        .ok_or_else(|| Error::Internal(format!("no directory entry at {at} to remove")))?;
    let d = entries[i];
    let prev = i.checked_sub(1).map(|p| entries[p]);
    let fail = || Error::Internal(format!("directory record at {at} out of bounds"));
    match prev {
        Some(p) => {
            let merged = p.rec_len + d.rec_len;
            put_le16(
                region,
                p.offset + 4,
                rec_len_to_disk(merged, fmt.block_size),
            )
            .ok_or_else(fail)?;
            clear(region, d.offset, DIRENT_HEADER + d.name_len);
        }
        None => {
            put_le32(region, at, 0).ok_or_else(fail)?;
            clear(region, at + 6, 2 + d.name_len);
        }
    }
    Ok(())
}

/// Points the in-use entry at offset `at` at inode `ino` with file type
/// `file_type` (ignored without the filetype feature); its name and
/// place stay.
pub fn set_entry(
    region: &mut [u8],
    fmt: DirentFormat,
    at: usize,
    ino: InodeNo,
    file_type: u8,
    what: &dyn Fn() -> String,
) -> Result<()> {
    if !records(region, fmt, what)?
        .iter()
        .any(|d| d.offset == at && d.in_use)
    {
        return Err(Error::Internal(format!(
            "no directory entry at {at} to change"
        )));
    }
    let fail = || Error::Internal(format!("directory record at {at} out of bounds"));
    put_le32(region, at, ino.0).ok_or_else(fail)?;
    if fmt.filetype {
        *region.get_mut(at + 7).ok_or_else(fail)? = file_type;
    }
    Ok(())
}

/// Makes `region` one unused record spanning all of it (a fresh leaf).
pub fn init_empty(region: &mut [u8], fmt: DirentFormat) -> Result<()> {
    region.fill(0);
    if region.len() < DIRENT_MIN_REC_LEN {
        return Err(Error::Internal("directory region too small".into()));
    }
    put_le16(region, 4, rec_len_to_disk(region.len(), fmt.block_size))
        .ok_or_else(|| Error::Internal("directory region too small".into()))
}

/// Makes `region` the first block of a new directory: "." naming `me`
/// (12 bytes), then ".." naming `parent` spanning the rest.
pub fn init_dots(
    region: &mut [u8],
    fmt: DirentFormat,
    me: InodeNo,
    parent: InodeNo,
    dir_ft: u8,
) -> Result<()> {
    region.fill(0);
    let dot = rec_len_for(1);
    let rest = region
        .len()
        .checked_sub(dot)
        .filter(|&r| r >= rec_len_for(2))
        .ok_or_else(|| Error::Internal("directory block too small".into()))?;
    let e = |ino, name| NewEntry {
        ino,
        name,
        file_type: dir_ft,
    };
    write_record(region, fmt, 0, dot, &e(me, b"."))
        .and_then(|()| write_record(region, fmt, dot, rest, &e(parent, b"..")))
        .ok_or_else(|| Error::Internal("directory block too small".into()))
}

/// Points the ".." entry (the second record of the first block) at
/// `parent`.
pub fn set_dotdot(
    region: &mut [u8],
    fmt: DirentFormat,
    parent: InodeNo,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let entries = parse_region(region, fmt, what)?;
    let dd = entries
        .get(1)
        .filter(|d| d.name == b"..")
        .ok_or_else(|| Error::corrupt(what(), "no '..' entry in the first block"))?;
    put_le32(region, dd.offset, parent.0)
        .ok_or_else(|| Error::Internal("'..' entry out of bounds".into()))
}

/// Writes the metadata_csum leaf tail (a fake entry of 12 bytes with the
/// crc32c of everything before it, seeded with the directory's seed).
pub fn set_leaf_tail(block: &mut [u8], inode_seed: u32) -> Result<()> {
    let bad = || Error::Internal("directory block too small for its tail".into());
    let body = block.len().checked_sub(DIRENT_TAIL_SIZE).ok_or_else(bad)?;
    let t = block.get_mut(body..).ok_or_else(bad)?;
    t.fill(0);
    t[4..6].copy_from_slice(&(DIRENT_TAIL_SIZE as u16).to_le_bytes());
    t[7] = DIRENT_TAIL_FT;
    let c = crc32c(inode_seed, &block[..body]);
    let n = block.len();
    block[n - 4..].copy_from_slice(&c.to_le_bytes());
    Ok(())
}

/// Whether a region holds no entry but "." and ".." (those are skipped
/// by name, so the first block of a directory counts as empty too).
pub fn only_dots(region: &[u8], fmt: DirentFormat, what: &dyn Fn() -> String) -> Result<bool> {
    Ok(parse_region(region, fmt, what)?
        .iter()
        .all(|d| !d.in_use() || d.name == b"." || d.name == b".."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirent::{ft, verify_leaf};

    const FMT: DirentFormat = DirentFormat {
        filetype: true,
        block_size: 1024,
        max_ino: 1000,
    };
    fn what() -> String {
        "test".into()
    }

    fn names(region: &[u8], fmt: DirentFormat) -> Vec<(usize, Vec<u8>, u32)> {
        parse_region(region, fmt, &what)
            .unwrap()
            .iter()
            .filter(|d| d.in_use())
            .map(|d| (d.offset, d.name.to_vec(), d.ino.0))
            .collect()
    }

    fn add(region: &mut [u8], fmt: DirentFormat, ino: u32, name: &[u8]) -> Option<usize> {
        let at = find_slot(region, fmt, name.len(), &what).unwrap()?;
        let e = NewEntry {
            ino: InodeNo(ino),
            name,
            file_type: ft::REG,
        };
        Some(insert(region, fmt, at, &e, &what).unwrap())
    }

    #[test]
    fn inserts_split_slack_and_never_move_entries() {
        let mut b = vec![0u8; 1024];
        init_dots(&mut b, FMT, InodeNo(12), InodeNo(2), ft::DIR).unwrap();
        // (name, expected offset): each new entry starts where the slack did.
        let cases: &[(&[u8], usize)] = &[(b"a", 24), (b"hello", 36), (b"x", 52)];
        for (i, &(name, off)) in cases.iter().enumerate() {
            assert_eq!(add(&mut b, FMT, 20 + i as u32, name), Some(off));
        }
        let before = names(&b, FMT);
        assert_eq!(before.len(), 5);
        // Remove the middle one: merged into "a", nothing else moves.
        remove(&mut b, FMT, 36, &what).unwrap();
        let after = names(&b, FMT);
        assert_eq!(
            after,
            before
                .iter()
                .filter(|e| e.0 != 36)
                .cloned()
                .collect::<Vec<_>>()
        );
        assert!(!b.windows(5).any(|w| w == b"hello"), "removed name zeroed");
        // The freed space is found again.
        assert_eq!(add(&mut b, FMT, 40, b"yy"), Some(36));
    }

    #[test]
    fn fills_a_block_exactly_then_refuses() {
        let mut b = vec![0u8; 1024];
        init_empty(&mut b, FMT).unwrap();
        // 12-byte records: 1024 / 12 = 85 of them.
        let mut n = 0;
        while add(&mut b, FMT, 11 + n, b"n").is_some() {
            n += 1;
        }
        assert_eq!(n, 85);
        assert_eq!(names(&b, FMT).len(), 85);
        // Remove the first (marked unused) and one in the middle (merged).
        remove(&mut b, FMT, 0, &what).unwrap();
        remove(&mut b, FMT, 120, &what).unwrap();
        assert_eq!(names(&b, FMT).len(), 83);
        assert_eq!(add(&mut b, FMT, 500, b"a"), Some(0));
        assert_eq!(add(&mut b, FMT, 501, b"b"), Some(120));
        assert_eq!(add(&mut b, FMT, 502, b"c"), None);
    }

    #[test]
    fn without_filetype_name_len_is_16_bits() {
        let fmt = DirentFormat {
            filetype: false,
            ..FMT
        };
        let mut b = vec![0u8; 1024];
        init_empty(&mut b, fmt).unwrap();
        let name = [b'z'; 255];
        assert_eq!(add(&mut b, fmt, 7, &name), Some(0));
        let d = parse_region(&b, fmt, &what).unwrap();
        assert_eq!(d[0].name, &name[..]);
        assert_eq!(d[0].file_type, 0);
        // An unused record is taken whole, as the kernel takes it.
        assert_eq!((d.len(), d[0].rec_len), (1, 1024));
    }

    #[test]
    fn tail_checksum_round_trip() {
        let mut b = vec![0u8; 1024];
        let body = 1024 - DIRENT_TAIL_SIZE;
        init_dots(&mut b[..body], FMT, InodeNo(12), InodeNo(2), ft::DIR).unwrap();
        add(&mut b[..body], FMT, 13, b"file").unwrap();
        set_leaf_tail(&mut b, 0x1234).unwrap();
        let region = verify_leaf(&b, 0x1234, &what).unwrap();
        assert_eq!(names(region, FMT).len(), 3);
        assert!(only_dots(region, FMT, &what).is_ok_and(|e| !e));
        remove(&mut b[..body], FMT, 24, &what).unwrap();
        set_leaf_tail(&mut b, 0x1234).unwrap();
        let region = verify_leaf(&b, 0x1234, &what).unwrap();
        assert!(only_dots(region, FMT, &what).unwrap());
        set_dotdot(&mut b[..body], FMT, InodeNo(99), &what).unwrap();
        assert_eq!(names(&b[..body], FMT)[1], (12, b"..".to_vec(), 99));
    }

    #[test]
    fn rec_len_encoding_round_trips() {
        use crate::dirent::rec_len_from_disk;
        // (length, block size)
        let cases = [
            (12, 1024),
            (1024, 1024),
            (4096, 4096),
            (65532, 65536),
            (65536, 65536),
            (12, 65536),
        ];
        for (len, bs) in cases {
            assert_eq!(rec_len_from_disk(rec_len_to_disk(len, bs), bs), len);
        }
    }
}
