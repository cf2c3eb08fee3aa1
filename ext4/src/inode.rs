//! On-disk inodes: parsing, checksum and the fields the engine serves.
//!
//! [`Inode::parse`] is pure (raw bytes in, validated [`Inode`] out);
//! `Fs::inode` (the kernel's iget, here) locates the inode in its group's
//! table and calls it. After a
//! successful parse: the file type is one of the seven kinds, the extra
//! inode size fits the on-disk inode and is 4-byte aligned, the checksum
//! matched (metadata_csum), and every extended field read lies inside the
//! extra area.

use super::bytes::{le16, le32, put_le16, put_le32};
use super::csum::crc32c;
use super::error::{Error, Result};
use super::fs::Fs;
use super::group::GroupDesc;
use super::num::{GroupNo, InodeNo, Pblk};
use super::superblock::{compat, incompat, ro_compat, Superblock, GOOD_OLD_INODE_SIZE};
use super::types::{FileKind, Stat, Timestamp};

// Field offsets (kernel Documentation/filesystems/ext4/inodes.rst).
const I_MODE: usize = 0x0;
const I_UID: usize = 0x2;
const I_SIZE_LO: usize = 0x4;
const I_ATIME: usize = 0x8;
const I_CTIME: usize = 0xC;
const I_MTIME: usize = 0x10;
const I_DTIME: usize = 0x14;
const I_GID: usize = 0x18;
const I_LINKS_COUNT: usize = 0x1A;
const I_BLOCKS_LO: usize = 0x1C;
const I_FLAGS: usize = 0x20;
/// `l_i_version` (osd1 on Linux): the low half of the change counter.
const I_VERSION_LO: usize = 0x24;
/// Offset of `i_block` (extent root, block map, fast symlink or inline data).
pub const I_BLOCK: usize = 0x28;
/// Size of `i_block`.
pub const I_BLOCK_LEN: usize = 60;
const I_GENERATION: usize = 0x64;
const I_FILE_ACL_LO: usize = 0x68;
const I_SIZE_HIGH: usize = 0x6C;
const I_BLOCKS_HIGH: usize = 0x74;
const I_FILE_ACL_HIGH: usize = 0x76;
const I_UID_HIGH: usize = 0x78;
const I_GID_HIGH: usize = 0x7A;
const I_CHECKSUM_LO: usize = 0x7C;
const I_EXTRA_ISIZE: usize = 0x80;
const I_CHECKSUM_HI: usize = 0x82;
const I_CTIME_EXTRA: usize = 0x84;
const I_MTIME_EXTRA: usize = 0x88;
const I_ATIME_EXTRA: usize = 0x8C;
const I_CRTIME: usize = 0x90;
const I_CRTIME_EXTRA: usize = 0x94;
/// `i_version_hi`: the high half of the change counter (extra fields).
const I_VERSION_HI: usize = 0x98;

/// Mode: file type mask and types.
pub const S_IFMT: u16 = 0o170000;
/// Socket.
pub const S_IFSOCK: u16 = 0o140000;
/// Symbolic link.
pub const S_IFLNK: u16 = 0o120000;
/// Regular file.
pub const S_IFREG: u16 = 0o100000;
/// Block device.
pub const S_IFBLK: u16 = 0o060000;
/// Directory.
pub const S_IFDIR: u16 = 0o040000;
/// Character device.
pub const S_IFCHR: u16 = 0o020000;
/// FIFO.
pub const S_IFIFO: u16 = 0o010000;
/// Set-user-id bit.
pub const S_ISUID: u16 = 0o4000;
/// Set-group-id bit.
pub const S_ISGID: u16 = 0o2000;
/// Group execute bit.
pub const S_IXGRP: u16 = 0o0010;

/// Inode flags (`i_flags`).
pub mod flags {
    /// Secure deletion.
    pub const SECRM: u32 = 0x1;
    /// Immutable.
    pub const IMMUTABLE: u32 = 0x10;
    /// Append only.
    pub const APPEND: u32 = 0x20;
    /// Encrypted inode.
    pub const ENCRYPT: u32 = 0x800;
    /// Hashed directory index.
    pub const INDEX: u32 = 0x1000;
    /// `i_blocks` counts filesystem blocks (huge_file).
    pub const HUGE_FILE: u32 = 0x40000;
    /// Inode uses extents.
    pub const EXTENTS: u32 = 0x80000;
    /// fs-verity file.
    pub const VERITY: u32 = 0x100000;
    /// Inode stores a large xattr value.
    pub const EA_INODE: u32 = 0x200000;
    /// Data lives in the inode.
    pub const INLINE_DATA: u32 = 0x1000_0000;
    /// Case-insensitive directory.
    pub const CASEFOLD: u32 = 0x4000_0000;
}

/// The kernel's default `i_extra_isize`: the extended fields through
/// `i_crtime_extra` and `i_version_hi` (`EXT4_GOOD_OLD_INODE_SIZE` +
/// 32 bytes).
const DEFAULT_EXTRA_ISIZE: u16 = 32;

/// Timestamp extra word: low 2 bits extend the seconds, the rest is nanoseconds.
const EPOCH_BITS: u32 = 2;
const EPOCH_MASK: u32 = (1 << EPOCH_BITS) - 1;
const MAX_NSEC: u32 = 999_999_999;

/// A parsed inode. `raw` keeps the whole on-disk inode (inode_size bytes)
/// for modules that read further fields (in-inode xattrs, inline data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Inode number.
    pub ino: InodeNo,
    /// The on-disk bytes (`s_inode_size` long).
    pub raw: Vec<u8>,
    /// Type and permission bits.
    pub mode: u16,
    /// Owner (with the high half).
    pub uid: u32,
    /// Group (with the high half).
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Link count.
    pub links: u16,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    /// `i_flags`.
    pub flags: u32,
    /// Generation.
    pub generation: u32,
    /// External xattr block (0 = none).
    pub file_acl: Pblk,
    /// Extra inode size in use (0 for 128-byte inodes).
    pub extra_isize: u16,
    /// Access time.
    pub atime: Timestamp,
    /// Change time.
    pub ctime: Timestamp,
    /// Modification time.
    pub mtime: Timestamp,
    /// Creation time (zero when the inode has no room for it).
    pub crtime: Timestamp,
    /// Deletion time.
    pub dtime: u32,
    /// Per-inode crc32c seed (fs seed, inode number, generation); 0 without metadata_csum.
    /// Seeds the checksums of extent blocks and directory blocks of this inode.
    pub csum_seed: u32,
}

/// The per-inode checksum seed.
pub fn inode_csum_seed(sb: &Superblock, ino: InodeNo, generation: u32) -> u32 {
    let c = crc32c(sb.csum_seed, &ino.0.to_le_bytes());
    crc32c(c, &generation.to_le_bytes())
}

/// Decodes a 32-bit seconds field and its optional extra word.
pub fn decode_time(sec: u32, extra: Option<u32>) -> Timestamp {
    // The base is signed 32-bit (1901..2038); the epoch bits add multiples of 2^32.
    let base = i64::from(sec as i32);
    match extra {
        None => Timestamp { sec: base, nsec: 0 },
        Some(x) => Timestamp {
            sec: base + (i64::from(x & EPOCH_MASK) << 32),
            nsec: (x >> EPOCH_BITS).min(MAX_NSEC),
        },
    }
}

/// Decodes a device number from `i_block`: the old 16-bit form in word 0,
/// else the new 32-bit form in word 1. Returns (major, minor).
pub fn decode_rdev(i_block: &[u8]) -> (u32, u32) {
    let w0 = le32(i_block, 0);
    if w0 != 0 {
        ((w0 >> 8) & 0xff, w0 & 0xff)
    } else {
        let d = le32(i_block, 4);
        ((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00))
    }
}

/// The kind of a mode, `None` for an invalid type.
pub fn kind_of_mode(mode: u16) -> Option<FileKind> {
    Some(match mode & S_IFMT {
        S_IFREG => FileKind::File,
        S_IFDIR => FileKind::Dir,
        S_IFLNK => FileKind::Symlink,
        S_IFCHR => FileKind::CharDev,
        S_IFBLK => FileKind::BlockDev,
        S_IFIFO => FileKind::Fifo,
        S_IFSOCK => FileKind::Socket,
        _ => return None,
    })
}

/// Whether the raw inode is the all-zero pattern of a never-used inode.
pub fn is_blank(raw: &[u8]) -> bool {
    raw.iter().all(|&b| b == 0)
}

impl Inode {
    /// Parses inode `ino` from its raw bytes (exactly `sb.inode_size`),
    /// verifying its checksum. A never-used (all-zero) or deleted inode is
    /// [`Error::NoSuchInode`].
    pub fn parse(sb: &Superblock, ino: InodeNo, raw: &[u8]) -> Result<Inode> {
        Self::decode(sb, ino, raw, false)
    }

    /// [`Inode::parse`] that also accepts an inode with no links left but
    /// a valid mode: an orphan (unlinked while open, or being deleted),
    /// which the write path still changes and frees.
    pub fn parse_unlinked(sb: &Superblock, ino: InodeNo, raw: &[u8]) -> Result<Inode> {
        Self::decode(sb, ino, raw, true)
    }

    fn decode(sb: &Superblock, ino: InodeNo, raw: &[u8], allow_unlinked: bool) -> Result<Inode> {
        let what = || format!("inode {ino}");
        let isz = usize::from(sb.inode_size);
        let raw = raw
            .get(..isz)
            .ok_or_else(|| Error::corrupt(what(), "truncated"))?;
        if is_blank(raw) {
            return Err(Error::NoSuchInode(ino));
        }
        let good_old = usize::from(GOOD_OLD_INODE_SIZE);
        let extra_isize = if isz > good_old {
            let e = le16(raw, I_EXTRA_ISIZE);
            if good_old + usize::from(e) > isz || e % 4 != 0 {
                return Err(Error::corrupt(
                    what(),
                    format!("extra inode size {e} invalid"),
                ));
            }
            e
        } else {
            0
        };
        let fits = |off: usize, len: usize| -> bool {
            isz > good_old && off + len <= good_old + usize::from(extra_isize)
        };
        let generation = le32(raw, I_GENERATION);
        let csum_seed = if sb.metadata_csum() {
            inode_csum_seed(sb, ino, generation)
        } else {
            0
        };
        if sb.metadata_csum() {
            let hi_fits = fits(I_CHECKSUM_HI, 2);
            let mut c = crc32c(csum_seed, raw.get(..I_CHECKSUM_LO).unwrap_or(&[]));
            c = crc32c(c, &[0, 0]);
            if hi_fits {
                c = crc32c(c, raw.get(I_CHECKSUM_LO + 2..I_CHECKSUM_HI).unwrap_or(&[]));
                c = crc32c(c, &[0, 0]);
                c = crc32c(c, raw.get(I_CHECKSUM_HI + 2..).unwrap_or(&[]));
            } else {
                c = crc32c(c, raw.get(I_CHECKSUM_LO + 2..).unwrap_or(&[]));
            }
            let mut stored = u32::from(le16(raw, I_CHECKSUM_LO));
            if hi_fits {
                stored |= u32::from(le16(raw, I_CHECKSUM_HI)) << 16;
            } else {
                c &= 0xFFFF;
            }
            if c != stored {
                return Err(Error::checksum(what()));
            }
        }

        let mode = le16(raw, I_MODE);
        let links = le16(raw, I_LINKS_COUNT);
        let dtime = le32(raw, I_DTIME);
        if links == 0 && !(allow_unlinked && mode != 0) {
            // Deleted (or an orphan being deleted): not reachable by name.
            return Err(Error::NoSuchInode(ino));
        }
        if kind_of_mode(mode).is_none() {
            return Err(Error::corrupt(
                what(),
                format!("invalid file type in mode {mode:#o}"),
            ));
        }
        let flags = le32(raw, I_FLAGS);
        let limits = sb.limits();
        // ext4_isize: i_size_high counts for regular files, and for the
        // rest only with largedir (ext2 kept the directory ACL there).
        let size_lo = u64::from(le32(raw, I_SIZE_LO));
        let size = if limits.size_high_counts(mode & S_IFMT == S_IFREG) {
            size_lo | (u64::from(le32(raw, I_SIZE_HIGH)) << 32)
        } else {
            size_lo
        };
        // __ext4_iget refuses a size past ext4_get_maxbytes: served, it
        // would make a read of a hole-only file (or a directory walk) as
        // long as the image asks.
        let max = limits.max_file_bytes(flags & flags::EXTENTS != 0);
        if size > max {
            return Err(Error::corrupt(
                what(),
                format!("size {size} past the format's limit of {max} bytes"),
            ));
        }
        let blocks_lo = u64::from(le32(raw, I_BLOCKS_LO));
        let blocks = if sb.has_ro_compat(ro_compat::HUGE_FILE) {
            let b = blocks_lo | (u64::from(le16(raw, I_BLOCKS_HIGH)) << 32);
            if flags & flags::HUGE_FILE != 0 {
                // Counted in filesystem blocks; 48 bits times at most 128 fits.
                b << (sb.log_block_size - 9)
            } else {
                b
            }
        } else {
            blocks_lo
        };
        let file_acl = u64::from(le32(raw, I_FILE_ACL_LO))
            | if sb.is_64bit() {
                u64::from(le16(raw, I_FILE_ACL_HIGH)) << 32
            } else {
                0
            };
        let uid = u32::from(le16(raw, I_UID)) | (u32::from(le16(raw, I_UID_HIGH)) << 16);
        let gid = u32::from(le16(raw, I_GID)) | (u32::from(le16(raw, I_GID_HIGH)) << 16);
        let extra = |off: usize| fits(off, 4).then(|| le32(raw, off));
        let time =
            |sec_off: usize, extra_off: usize| decode_time(le32(raw, sec_off), extra(extra_off));
        let crtime = match extra(I_CRTIME) {
            Some(sec) => decode_time(sec, extra(I_CRTIME_EXTRA)),
            None => Timestamp::default(),
        };
        let inode = Inode {
            ino,
            raw: raw.to_vec(),
            mode,
            uid,
            gid,
            size,
            links,
            blocks,
            flags,
            generation,
            file_acl: Pblk(file_acl),
            extra_isize,
            atime: time(I_ATIME, I_ATIME_EXTRA),
            ctime: time(I_CTIME, I_CTIME_EXTRA),
            mtime: time(I_MTIME, I_MTIME_EXTRA),
            crtime,
            dtime,
            csum_seed,
        };
        inode.check_references(sb)?;
        Ok(inode)
    }

    /// The checks `__ext4_iget` makes on a parsed inode before it hands it
    /// out: flags that contradict the filesystem or the file type, the
    /// external xattr block, and the block references kept in the inode
    /// (the extent root, or the direct pointers of a block map).
    fn check_references(&self, sb: &Superblock) -> Result<()> {
        let what = || format!("inode {}", self.ino);
        if self.has_flag(flags::INDEX) && sb.metadata_csum() && !sb.has_compat(compat::DIR_INDEX) {
            // Read as a linear directory, its index blocks would fail their checksums.
            return Err(Error::corrupt(what(), "htree flag without dir_index"));
        }
        if self.has_flag(flags::CASEFOLD) {
            // casefold filesystems are refused at mount.
            return Err(Error::corrupt(what(), "casefold flag without casefold"));
        }
        let kind = self.kind();
        if kind == FileKind::Symlink && self.has_flag(flags::APPEND | flags::IMMUTABLE) {
            return Err(Error::corrupt(
                what(),
                "immutable or append flag on a symlink",
            ));
        }
        if self.file_acl.0 != 0 && !sb.block_in_fs(self.file_acl) {
            return Err(Error::corrupt(
                what(),
                format!(
                    "extended attribute block {} outside the filesystem",
                    self.file_acl
                ),
            ));
        }
        let mapped = match kind {
            FileKind::File | FileKind::Dir => true,
            FileKind::Symlink => !self.is_fast_symlink(sb),
            _ => false,
        };
        if mapped && !self.has_flag(flags::INLINE_DATA) {
            let w = what();
            if self.has_flag(flags::EXTENTS) {
                super::extent::check_root(sb, self.i_block(), &w)?;
            } else {
                super::indirect::check_direct(sb, self.i_block(), &w)?;
            }
        }
        Ok(())
    }

    /// A symlink whose target lives in `i_block`, as the kernel tells
    /// (`ext4_inode_is_fast_symlink`): with `ea_inode`, by its length;
    /// otherwise by owning no blocks but its xattr block's cluster.
    /// Inline-data symlinks are not fast.
    pub fn is_fast_symlink(&self, sb: &Superblock) -> bool {
        if self.kind() != FileKind::Symlink {
            return false;
        }
        if sb.has_incompat(incompat::EA_INODE) {
            return self.size != 0 && self.size < I_BLOCK_LEN as u64;
        }
        if self.has_flag(flags::INLINE_DATA) {
            return false;
        }
        let cluster_sectors = (u64::from(sb.block_size) * sb.cluster_ratio()) >> 9;
        let ea = if self.file_acl.0 != 0 {
            cluster_sectors
        } else {
            0
        };
        self.blocks.checked_sub(ea) == Some(0)
    }

    /// The file type (validated at parse).
    pub fn kind(&self) -> FileKind {
        kind_of_mode(self.mode).unwrap_or(FileKind::File)
    }

    /// Whether a flag (`flags::*`) is set.
    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// The 60 bytes of `i_block`.
    pub fn i_block(&self) -> &[u8] {
        self.raw.get(I_BLOCK..I_BLOCK + I_BLOCK_LEN).unwrap_or(&[])
    }

    /// The in-inode extended attribute area: everything after the extra
    /// fields (starts with the 4-byte xattr magic when present). Empty for
    /// 128-byte inodes.
    pub fn inline_xattr_area(&self) -> &[u8] {
        let start = usize::from(GOOD_OLD_INODE_SIZE) + usize::from(self.extra_isize);
        if self.raw.len() <= usize::from(GOOD_OLD_INODE_SIZE) {
            return &[];
        }
        self.raw.get(start..).unwrap_or(&[])
    }

    /// `st_blocks` as the kernel reports it: inline-data regular files
    /// count their bytes in sectors on top of what they allocate, so that
    /// tools do not take a non-empty file for an entirely sparse one
    /// (directories and symlinks do not).
    pub fn stat_blocks(&self) -> u64 {
        if self.has_flag(flags::INLINE_DATA) && self.kind() == FileKind::File {
            self.blocks.saturating_add(self.size.div_ceil(512))
        } else {
            self.blocks
        }
    }

    /// What `stat` reports.
    pub fn stat(&self) -> Stat {
        let kind = self.kind();
        let rdev = match kind {
            FileKind::CharDev | FileKind::BlockDev => decode_rdev(self.i_block()),
            _ => (0, 0),
        };
        Stat {
            ino: self.ino,
            generation: self.generation,
            kind,
            perm: self.mode & 0o7777,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            nlink: u32::from(self.links),
            blocks: self.stat_blocks(),
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.crtime,
            rdev,
            flags: self.flags,
        }
    }
}

/// Encodes a timestamp as ext4 stores it: the low 32 bits of the seconds
/// (read back as signed) and, with an extra word, the epoch bits that
/// extend them and the nanoseconds. Seconds outside what the fields hold
/// are clamped (1901..2038 without the extra word, to 2446 with it), as
/// the kernel clamps them.
pub fn encode_time(t: Timestamp, with_extra: bool) -> (u32, Option<u32>) {
    let min = i64::from(i32::MIN);
    let max = if with_extra {
        i64::from(i32::MAX) + (i64::from(EPOCH_MASK) << 32)
    } else {
        i64::from(i32::MAX)
    };
    let sec = t.sec.clamp(min, max);
    let lo = sec as u32;
    if !with_extra {
        return (lo, None);
    }
    let epoch = ((sec - i64::from(lo as i32)) >> 32) as u32 & EPOCH_MASK;
    (lo, Some((t.nsec.min(MAX_NSEC) << EPOCH_BITS) | epoch))
}

impl Inode {
    /// A new in-memory inode `ino` (not yet written): `mode`, owner
    /// `uid`/`gid`, every time `now`, one link (the caller sets the real
    /// count), the generation given, the extra fields sized as the
    /// superblock wants (`s_want_extra_isize`, at least what the kernel
    /// uses for its timestamps). Flags, size and `i_block` are the caller's.
    pub fn fresh(
        sb: &Superblock,
        ino: InodeNo,
        generation: u32,
        mode: u16,
        uid: u32,
        gid: u32,
        now: Timestamp,
    ) -> Inode {
        let isz = usize::from(sb.inode_size);
        let good_old = usize::from(GOOD_OLD_INODE_SIZE);
        let extra_isize = if isz > good_old {
            // The kernel's default: room for the extended fields up to crtime
            // and i_version_hi (32 bytes), or what the superblock asks.
            let want = sb
                .want_extra_isize
                .max(sb.min_extra_isize)
                .max(DEFAULT_EXTRA_ISIZE);
            want.min((isz - good_old) as u16) & !3
        } else {
            0
        };
        let csum_seed = if sb.metadata_csum() {
            inode_csum_seed(sb, ino, generation)
        } else {
            0
        };
        Inode {
            ino,
            raw: vec![0u8; isz],
            mode,
            uid,
            gid,
            size: 0,
            links: 1,
            blocks: 0,
            flags: 0,
            generation,
            file_acl: Pblk(0),
            extra_isize,
            atime: now,
            ctime: now,
            mtime: now,
            crtime: if extra_isize > 0 {
                now
            } else {
                Timestamp::default()
            },
            dtime: 0,
            csum_seed,
        }
    }

    /// The 60 bytes of `i_block`, to change (extent root, block map,
    /// symlink target, inline data, device number).
    pub fn i_block_mut(&mut self) -> &mut [u8] {
        self.raw
            .get_mut(I_BLOCK..I_BLOCK + I_BLOCK_LEN)
            .unwrap_or(&mut [])
    }

    /// The on-disk bytes of this inode: `raw` with every field this struct
    /// models written back, and the checksum set (metadata_csum). The
    /// inverse of [`Inode::parse`]. `blocks` (512-byte units) is stored as
    /// the kernel stores it: 32 bits, else 48 with huge_file, else in
    /// filesystem blocks with the inode's HUGE_FILE flag; a count that does
    /// not fit is [`Error::FileTooBig`].
    pub fn encode(&self, sb: &Superblock) -> Result<Vec<u8>> {
        let isz = usize::from(sb.inode_size);
        let good_old = usize::from(GOOD_OLD_INODE_SIZE);
        if self.raw.len() != isz {
            return Err(Error::Internal(format!(
                "inode {}: {} raw bytes for {isz}-byte inodes",
                self.ino,
                self.raw.len()
            )));
        }
        if isz > good_old && good_old + usize::from(self.extra_isize) > isz {
            return Err(Error::Internal(format!(
                "inode {}: extra size {} too large",
                self.ino, self.extra_isize
            )));
        }
        let mut flags = self.flags & !flags::HUGE_FILE;
        let (blocks_lo, blocks_hi) = if self.blocks <= u64::from(u32::MAX) {
            (self.blocks as u32, 0u16)
        } else if !sb.has_ro_compat(ro_compat::HUGE_FILE) {
            return Err(Error::FileTooBig);
        } else if self.blocks < 1 << 48 {
            (self.blocks as u32, (self.blocks >> 32) as u16)
        } else {
            let fs_blocks = self.blocks >> (sb.log_block_size - 9);
            if fs_blocks >= 1 << 48 {
                return Err(Error::FileTooBig);
            }
            flags |= flags::HUGE_FILE;
            (fs_blocks as u32, (fs_blocks >> 32) as u16)
        };
        let extra_end = good_old + usize::from(self.extra_isize);
        let fits = |off: usize, len: usize| isz > good_old && off + len <= extra_end;
        let mut r = self.raw.clone();
        let put = |r: &mut [u8]| -> Option<()> {
            put_le16(r, I_MODE, self.mode)?;
            put_le16(r, I_UID, self.uid as u16)?;
            put_le16(r, I_UID_HIGH, (self.uid >> 16) as u16)?;
            put_le16(r, I_GID, self.gid as u16)?;
            put_le16(r, I_GID_HIGH, (self.gid >> 16) as u16)?;
            put_le32(r, I_SIZE_LO, self.size as u32)?;
            put_le32(r, I_SIZE_HIGH, (self.size >> 32) as u32)?;
            put_le16(r, I_LINKS_COUNT, self.links)?;
            put_le32(r, I_BLOCKS_LO, blocks_lo)?;
            put_le16(r, I_BLOCKS_HIGH, blocks_hi)?;
            put_le32(r, I_FLAGS, flags)?;
            put_le32(r, I_GENERATION, self.generation)?;
            put_le32(r, I_FILE_ACL_LO, self.file_acl.0 as u32)?;
            put_le16(r, I_FILE_ACL_HIGH, (self.file_acl.0 >> 32) as u16)?;
            put_le32(r, I_DTIME, self.dtime)?;
            for (t, sec_off, extra_off) in [
                (self.atime, I_ATIME, I_ATIME_EXTRA),
                (self.ctime, I_CTIME, I_CTIME_EXTRA),
                (self.mtime, I_MTIME, I_MTIME_EXTRA),
            ] {
                let (lo, extra) = encode_time(t, fits(extra_off, 4));
                put_le32(r, sec_off, lo)?;
                if let Some(x) = extra {
                    put_le32(r, extra_off, x)?;
                }
            }
            if fits(I_CRTIME, 4) {
                let (lo, extra) = encode_time(self.crtime, fits(I_CRTIME_EXTRA, 4));
                put_le32(r, I_CRTIME, lo)?;
                if let Some(x) = extra {
                    put_le32(r, I_CRTIME_EXTRA, x)?;
                }
            }
            if isz > good_old {
                put_le16(r, I_EXTRA_ISIZE, self.extra_isize)?;
            }
            Some(())
        };
        put(&mut r).ok_or_else(|| Error::Internal(format!("inode {}: encode", self.ino)))?;
        if sb.metadata_csum() {
            let seed = inode_csum_seed(sb, self.ino, self.generation);
            let hi_fits = fits(I_CHECKSUM_HI, 2);
            let mut zeroed = r.clone();
            zeroed[I_CHECKSUM_LO..I_CHECKSUM_LO + 2].fill(0);
            if hi_fits {
                zeroed[I_CHECKSUM_HI..I_CHECKSUM_HI + 2].fill(0);
            }
            let c = crc32c(seed, &zeroed);
            let put = |r: &mut [u8]| -> Option<()> {
                put_le16(r, I_CHECKSUM_LO, c as u16)?;
                if hi_fits {
                    put_le16(r, I_CHECKSUM_HI, (c >> 16) as u16)?;
                }
                Some(())
            };
            put(&mut r).ok_or_else(|| Error::Internal(format!("inode {}: checksum", self.ino)))?;
        }
        Ok(r)
    }
}

impl Inode {
    /// `i_version`, the change counter (NFS change attribute): the low
    /// half in `l_i_version`, the high half in `i_version_hi` when the
    /// extra fields reach it.
    pub fn version(&self) -> u64 {
        let lo = u64::from(le32(&self.raw, I_VERSION_LO));
        let hi = if self.extra_fits(I_VERSION_HI, 4) {
            u64::from(le32(&self.raw, I_VERSION_HI))
        } else {
            0
        };
        lo | (hi << 32)
    }

    /// Counts one change in `i_version` (as the kernel's
    /// `inode_inc_iversion`; the high half only where the inode has it).
    pub fn bump_version(&mut self) {
        let v = self.version().wrapping_add(1);
        let hi_fits = self.extra_fits(I_VERSION_HI, 4);
        // The raw buffer is `s_inode_size` long (checked at parse).
        let _ = put_le32(&mut self.raw, I_VERSION_LO, v as u32);
        if hi_fits {
            let _ = put_le32(&mut self.raw, I_VERSION_HI, (v >> 32) as u32);
        }
    }

    /// Whether `len` bytes at `off` lie inside this inode's extra fields.
    fn extra_fits(&self, off: usize, len: usize) -> bool {
        let good_old = usize::from(GOOD_OLD_INODE_SIZE);
        self.raw.len() > good_old && off + len <= good_old + usize::from(self.extra_isize)
    }
}

/// Where an inode lives (see [`locate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeLoc {
    /// Its group's descriptor.
    pub gd: GroupDesc,
    /// Its index in the group.
    pub index: u32,
    /// The inode table block holding it.
    pub blk: Pblk,
    /// Its byte offset in that block.
    pub off: usize,
}

/// Where inode `ino` lives, its group's descriptor given by `group`:
/// refused for 0 or a number past the filesystem and for a slot never
/// initialized (INODE_UNINIT, past `itable_unused`) with
/// [`Error::NoSuchInode`], for a descriptor that failed its checksum with
/// [`Error::Checksum`].
pub fn locate(
    sb: &Superblock,
    ino: InodeNo,
    group: impl FnOnce(GroupNo) -> Result<GroupDesc>,
) -> Result<InodeLoc> {
    if ino.0 > sb.inodes_count {
        return Err(Error::NoSuchInode(ino));
    }
    let Some((g, index)) = ino.group_index(sb.inodes_per_group) else {
        return Err(Error::NoSuchInode(ino));
    };
    let gd = group(g)?;
    if !gd.csum_ok {
        return Err(Error::checksum(format!("group descriptor {g}")));
    }
    if gd.inode_uninit(sb)
        || (sb.has_group_csum() && index >= sb.inodes_per_group.saturating_sub(gd.itable_unused))
    {
        return Err(Error::NoSuchInode(ino));
    }
    let (blk, off) = table_slot(sb, &gd, index);
    Ok(InodeLoc {
        gd,
        index,
        blk,
        off,
    })
}

/// The table block and byte offset of the inode at `index` in the group
/// described by `gd`.
pub fn table_slot(sb: &Superblock, gd: &GroupDesc, index: u32) -> (Pblk, usize) {
    let byte = u64::from(index) * u64::from(sb.inode_size);
    let bs = u64::from(sb.block_size);
    (
        gd.inode_table.saturating_add(byte / bs),
        (byte % bs) as usize,
    )
}

impl Fs {
    /// Inode `ino` as a name or a file handle reaches it (the kernel's
    /// `EXT4_IGET_NORMAL`): read, bounds-checked and checksum-verified by
    /// [`Fs::special_inode`], and refused as corrupt when it is one no name
    /// may lead to: a reserved inode other than the root (`ino <
    /// s_first_ino`), a quota or orphan-file inode, or an EA inode (which
    /// only holds an xattr value).
    pub fn inode(&self, ino: InodeNo) -> Result<Inode> {
        let inode = self.special_inode(self.check_reachable(ino)?)?;
        if inode.has_flag(flags::EA_INODE) {
            return Err(Error::corrupt(
                format!("inode {ino}"),
                "an EA inode (an xattr value) reached by name",
            ));
        }
        Ok(inode)
    }

    /// `ino` if a directory entry, a file handle or an xattr entry may name
    /// it (the kernel's "illegal inode #" rule in `__ext4_iget`).
    pub(crate) fn check_reachable(&self, ino: InodeNo) -> Result<InodeNo> {
        let sb = self.sb();
        if ino.0 == 0 || ino.0 > sb.inodes_count {
            return Err(Error::NoSuchInode(ino));
        }
        if (ino < sb.first_ino && ino != InodeNo::ROOT)
            || ino == sb.orphan_file_inum
            || sb.quota_inums.contains(&ino)
        {
            return Err(Error::corrupt(
                format!("inode {ino}"),
                "a reserved inode reached by name",
            ));
        }
        Ok(ino)
    }

    /// Reads, bounds-checks and checksum-verifies inode `ino`, reserved
    /// ones included (the kernel's `EXT4_IGET_SPECIAL`: the journal, the
    /// resize inode).
    pub fn special_inode(&self, ino: InodeNo) -> Result<Inode> {
        let sb = self.sb();
        let InodeLoc { gd, blk, off, .. } = locate(sb, ino, |g| self.group(g))?;
        let isz = u64::from(sb.inode_size);
        // Inodes are looked at in bursts (a listing, a tree walk): a miss
        // reads ahead within the used part of this group's table.
        let used = if sb.has_group_csum() {
            sb.inodes_per_group.saturating_sub(gd.itable_unused)
        } else {
            sb.inodes_per_group
        };
        let table_blocks = (u64::from(used) * isz).div_ceil(u64::from(sb.block_size));
        let span = gd.inode_table..gd.inode_table.saturating_add(table_blocks);
        let block = self.meta_block_ahead(blk, span)?;
        let raw = block
            .get(off..off + usize::from(sb.inode_size))
            .ok_or_else(|| Error::corrupt(format!("inode {ino}"), "outside its table block"))?;
        Inode::parse(sb, ino, raw)
    }

    /// `stat` of inode `ino`.
    pub fn stat(&self, ino: InodeNo) -> Result<Stat> {
        Ok(self.inode(ino)?.stat())
    }
}

#[cfg(test)]
#[path = "inode_bounds_tests.rs"]
mod bounds_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superblock::synth;

    #[test]
    fn timestamps_with_epoch_bits() {
        // (seconds field, extra word, expected seconds, expected nsec)
        let cases: &[(u32, Option<u32>, i64, u32)] = &[
            (0, None, 0, 0),
            (0x7fff_ffff, None, 0x7fff_ffff, 0),
            (0x8000_0000, None, -0x8000_0000, 0), // 1901
            (0xffff_ffff, Some(0), -1, 0),
            (0x8000_0000, Some(1), 0x8000_0000, 0), // 2038 onward
            (0, Some(1), 1 << 32, 0),
            (5, Some(2), (2 << 32) + 5, 0),
            (0xffff_ffff, Some(3), (3 << 32) - 1, 0),
            (10, Some(123_456_789 << 2), 10, 123_456_789),
            (
                10,
                Some((999_999_999 << 2) | 1),
                (1 << 32) + 10,
                999_999_999,
            ),
            (10, Some(u32::MAX), (3 << 32) + 10, 999_999_999), // nsec clamped
        ];
        for &(sec, extra, want_sec, want_nsec) in cases {
            let t = decode_time(sec, extra);
            assert_eq!((t.sec, t.nsec), (want_sec, want_nsec), "{sec:#x} {extra:?}");
        }
    }

    #[test]
    fn device_numbers_old_and_new() {
        let mut ib = [0u8; 60];
        ib[0..4].copy_from_slice(&0x0801u32.to_le_bytes());
        assert_eq!(decode_rdev(&ib), (8, 1));
        let mut ib = [0u8; 60];
        // New encoding of 300:70000: minor low 8 bits, major 12 bits, minor high bits.
        let (maj, min) = (300u32, 70_000u32);
        let enc = (min & 0xff) | (maj << 8) | ((min & !0xff) << 12);
        ib[4..8].copy_from_slice(&enc.to_le_bytes());
        assert_eq!(decode_rdev(&ib), (maj, min));
    }

    /// A 256-byte regular-file inode with a valid checksum for `sb`.
    pub(super) fn raw_inode(sb: &Superblock, ino: u32) -> Vec<u8> {
        let mut r = vec![0u8; 256];
        r[I_MODE..I_MODE + 2].copy_from_slice(&(S_IFREG | 0o644).to_le_bytes());
        r[I_LINKS_COUNT..I_LINKS_COUNT + 2].copy_from_slice(&1u16.to_le_bytes());
        r[I_SIZE_LO..I_SIZE_LO + 4].copy_from_slice(&5000u32.to_le_bytes());
        r[I_SIZE_HIGH..I_SIZE_HIGH + 4].copy_from_slice(&1u32.to_le_bytes());
        r[I_UID..I_UID + 2].copy_from_slice(&0x1170u16.to_le_bytes());
        r[I_UID_HIGH..I_UID_HIGH + 2].copy_from_slice(&1u16.to_le_bytes());
        r[I_BLOCKS_LO..I_BLOCKS_LO + 4].copy_from_slice(&16u32.to_le_bytes());
        r[I_GENERATION..I_GENERATION + 4].copy_from_slice(&77u32.to_le_bytes());
        r[I_EXTRA_ISIZE..I_EXTRA_ISIZE + 2].copy_from_slice(&32u16.to_le_bytes());
        r[I_MTIME..I_MTIME + 4].copy_from_slice(&100u32.to_le_bytes());
        r[I_MTIME_EXTRA..I_MTIME_EXTRA + 4].copy_from_slice(&((5u32 << 2) | 1).to_le_bytes());
        r[I_CRTIME..I_CRTIME + 4].copy_from_slice(&42u32.to_le_bytes());
        set_csum(sb, ino, &mut r);
        r
    }

    pub(super) fn set_csum(sb: &Superblock, ino: u32, r: &mut [u8]) {
        r[I_CHECKSUM_LO..I_CHECKSUM_LO + 2].fill(0);
        r[I_CHECKSUM_HI..I_CHECKSUM_HI + 2].fill(0);
        let gen = le32(r, I_GENERATION);
        let c = crc32c(inode_csum_seed(sb, InodeNo(ino), gen), r);
        r[I_CHECKSUM_LO..I_CHECKSUM_LO + 2].copy_from_slice(&(c as u16).to_le_bytes());
        r[I_CHECKSUM_HI..I_CHECKSUM_HI + 2].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
    }

    #[test]
    fn parses_fields_and_verifies_checksum() {
        let sb = synth::parsed();
        let r = raw_inode(&sb, 12);
        let i = Inode::parse(&sb, InodeNo(12), &r).unwrap();
        assert_eq!(i.kind(), FileKind::File);
        assert_eq!(i.size, (1 << 32) + 5000);
        assert_eq!(i.uid, 0x1_1170);
        assert_eq!(i.blocks, 16);
        assert_eq!(
            i.mtime,
            Timestamp {
                sec: (1 << 32) + 100,
                nsec: 5
            }
        );
        assert_eq!(i.crtime.sec, 42);
        assert_eq!(i.stat().perm, 0o644);
        // Same bytes at another inode number: the seed differs.
        assert!(matches!(
            Inode::parse(&sb, InodeNo(13), &r).unwrap_err(),
            Error::Checksum { .. }
        ));
        let mut bad = r.clone();
        bad[200] ^= 1;
        assert!(matches!(
            Inode::parse(&sb, InodeNo(12), &bad).unwrap_err(),
            Error::Checksum { .. }
        ));
    }

    #[test]
    fn structural_checks() {
        let sb = synth::parsed();
        type Edit = fn(&mut Vec<u8>);
        let cases: &[(Edit, &str)] = &[
            (|r| r[I_EXTRA_ISIZE] = 130, "extra inode size"),
            (|r| r[I_EXTRA_ISIZE] = 30, "extra inode size"),
            (|r| r[I_MODE + 1] = 0xF0, "file type"),
            (|r| r[I_SIZE_HIGH + 3] = 0x80, "size"),
        ];
        for (edit, want) in cases {
            let mut r = raw_inode(&sb, 12);
            edit(&mut r);
            set_csum(&sb, 12, &mut r);
            let e = Inode::parse(&sb, InodeNo(12), &r).unwrap_err();
            assert!(e.to_string().contains(want), "{e} vs {want}");
        }
        assert!(matches!(
            Inode::parse(&sb, InodeNo(12), &[0u8; 256]).unwrap_err(),
            Error::NoSuchInode(InodeNo(12))
        ));
        let mut r = raw_inode(&sb, 12);
        r[I_LINKS_COUNT] = 0;
        set_csum(&sb, 12, &mut r);
        assert!(matches!(
            Inode::parse(&sb, InodeNo(12), &r).unwrap_err(),
            Error::NoSuchInode(InodeNo(12))
        ));
        assert!(Inode::parse(&sb, InodeNo(12), &r[..100]).is_err());
    }

    #[test]
    fn encode_is_the_inverse_of_parse() {
        let sb = synth::parsed();
        let raw = raw_inode(&sb, 12);
        let i = Inode::parse(&sb, InodeNo(12), &raw).unwrap();
        assert_eq!(i.encode(&sb).unwrap(), raw, "byte-identical round trip");
        // Every modelled field survives a change and an encode.
        let mut j = i.clone();
        // A regular file: i_size_high counts only for those without
        // largedir, and an extent flag needs a valid (here empty) root.
        j.mode = S_IFREG | 0o1777;
        j.uid = 0x0002_0003;
        j.gid = 0x0004_0005;
        j.size = (7 << 32) + 9;
        j.links = 3;
        j.flags = flags::EXTENTS | flags::APPEND;
        j.generation = 1234;
        j.file_acl = Pblk(99);
        j.dtime = 77;
        j.atime = Timestamp { sec: -5, nsec: 1 };
        j.mtime = Timestamp {
            sec: (3 << 32) + 7,
            nsec: 999_999_999,
        };
        j.ctime = Timestamp {
            sec: 1 << 31,
            nsec: 0,
        };
        j.crtime = Timestamp { sec: 42, nsec: 43 };
        // Extent header: magic 0xf30a, no entries, room for 4, depth 0.
        let root = [0x0a, 0xf3, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0];
        j.i_block_mut()[..12].copy_from_slice(&root);
        let back = Inode::parse(&sb, InodeNo(12), &j.encode(&sb).unwrap()).unwrap();
        let mut want = j.clone();
        want.csum_seed = inode_csum_seed(&sb, InodeNo(12), 1234);
        want.raw = back.raw.clone();
        assert_eq!(back, want);
        assert_eq!(&back.i_block()[..12], &root);
        // Unlinked inodes parse only through parse_unlinked.
        j.links = 0;
        let raw0 = j.encode(&sb).unwrap();
        assert!(matches!(
            Inode::parse(&sb, InodeNo(12), &raw0),
            Err(Error::NoSuchInode(InodeNo(12)))
        ));
        assert_eq!(
            Inode::parse_unlinked(&sb, InodeNo(12), &raw0)
                .unwrap()
                .links,
            0
        );
        assert!(Inode::parse_unlinked(&sb, InodeNo(12), &[0u8; 256]).is_err());
    }

    #[test]
    fn timestamps_clamp_to_what_the_fields_hold() {
        // (seconds, with extra word) -> decoded seconds
        let cases: &[(i64, bool, i64)] = &[
            (5, true, 5),
            (-5, true, -5),
            (1 << 33, true, 1 << 33),
            (i64::MAX, true, i64::from(i32::MAX) + (3 << 32)),
            (i64::MIN, true, i64::from(i32::MIN)),
            (1 << 33, false, i64::from(i32::MAX)),
            (-(1 << 33), false, i64::from(i32::MIN)),
        ];
        for &(sec, extra, want) in cases {
            let (lo, x) = encode_time(Timestamp { sec, nsec: 5 }, extra);
            assert_eq!(decode_time(lo, x).sec, want, "{sec} {extra}");
        }
    }

    #[test]
    fn blocks_encode_as_the_kernel_stores_them() {
        let sb = synth::parsed(); // huge_file on, 1 KiB blocks
        let mut i = Inode::fresh(
            &sb,
            InodeNo(12),
            5,
            S_IFREG | 0o600,
            1,
            2,
            Timestamp::default(),
        );
        // (i_blocks in sectors) -> round trip, and whether HUGE_FILE is set
        let cases: &[(u64, bool)] = &[(8, false), (1 << 40, false), ((1 << 48) + 2, true)];
        for &(blocks, huge) in cases {
            i.blocks = blocks;
            let r = i.encode(&sb).unwrap();
            let back = Inode::parse(&sb, InodeNo(12), &r).unwrap();
            assert_eq!(back.blocks, blocks);
            assert_eq!(back.has_flag(flags::HUGE_FILE), huge);
        }
        i.blocks = u64::MAX;
        assert!(matches!(i.encode(&sb), Err(Error::FileTooBig)));
        let fresh = Inode::parse(
            &sb,
            InodeNo(12),
            &Inode::fresh(
                &sb,
                InodeNo(12),
                5,
                S_IFREG,
                0,
                0,
                Timestamp { sec: 9, nsec: 8 },
            )
            .encode(&sb)
            .unwrap(),
        )
        .unwrap();
        assert_eq!(fresh.extra_isize, 32);
        assert_eq!(fresh.crtime, Timestamp { sec: 9, nsec: 8 });
    }

    #[test]
    fn huge_file_blocks() {
        let sb = synth::parsed(); // huge_file on, 1 KiB blocks
        let mut r = raw_inode(&sb, 12);
        r[I_BLOCKS_HIGH..I_BLOCKS_HIGH + 2].copy_from_slice(&1u16.to_le_bytes());
        set_csum(&sb, 12, &mut r);
        assert_eq!(
            Inode::parse(&sb, InodeNo(12), &r).unwrap().blocks,
            (1 << 32) + 16
        );
        r[I_FLAGS..I_FLAGS + 4].copy_from_slice(&flags::HUGE_FILE.to_le_bytes());
        set_csum(&sb, 12, &mut r);
        // In filesystem blocks: times 2 sectors per 1 KiB block.
        assert_eq!(
            Inode::parse(&sb, InodeNo(12), &r).unwrap().blocks,
            ((1 << 32) + 16) * 2
        );
    }
}
