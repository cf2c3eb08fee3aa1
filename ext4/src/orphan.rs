//! Orphans: inodes whose last link went while they were open, or that were
//! being truncated, when the filesystem stopped. The kernel frees them at
//! the next mount (`ext4_orphan_cleanup`), on a read-only mount too when
//! the device is writable. Freeing them (truncating, releasing blocks and
//! the inode) needs the write engine; until then this module only finds
//! them, so the mount can say that cleanup is pending.
//!
//! Two places hold them: the superblock's `s_last_orphan` chain (each
//! orphan's `i_dtime` names the next one) and, with the `orphan_file`
//! feature, the orphan file (blocks of little-endian inode numbers, each
//! block ending in an 8-byte tail with [`ORPHAN_BLOCK_MAGIC`]).
//!
//! Invariants: the chain walk stops after [`MAX_CHAIN`] inodes (a hostile
//! chain may loop) and the orphan file is read for at most
//! [`MAX_ORPHAN_FILE_BLOCKS`] blocks.

use std::fmt;

use crate::bytes::le32;
use crate::error::{Error, Result};
use crate::num::{InodeNo, Lblk};
use crate::superblock::{compat, ro_compat};
use crate::Fs;

/// `ob_magic` of an orphan file block tail.
pub const ORPHAN_BLOCK_MAGIC: u32 = 0x0B10_CA04;
/// Bytes of an orphan file block tail (`ob_magic`, `ob_checksum`).
const ORPHAN_TAIL_SIZE: usize = 8;
/// Most chain entries followed.
pub const MAX_CHAIN: u32 = 1 << 16;
/// Most orphan file blocks read (the kernel makes the file 1 MiB at most
/// by default, 256 blocks of 4 KiB).
pub const MAX_ORPHAN_FILE_BLOCKS: u64 = 1 << 16;

/// The orphans found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orphans {
    /// `s_last_orphan` (0: the chain is empty).
    pub chain_head: InodeNo,
    /// Inodes on the chain (counted up to [`MAX_CHAIN`] or a broken link).
    pub chain_len: u32,
    /// Inode numbers in the orphan file.
    pub file_entries: u64,
    /// The `orphan_present` feature flag is set.
    pub present_flag: bool,
}

impl Orphans {
    /// Whether nothing waits for cleanup.
    pub fn is_empty(&self) -> bool {
        self.chain_head == InodeNo(0) && self.file_entries == 0
    }
}

impl fmt::Display for Orphans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "orphan cleanup pending: {} inode(s) on the orphan list (head {}), {} in the \
             orphan file; fsvc cannot free them yet (this needs its write engine): their \
             space stays allocated until e2fsck or a kernel mount frees it",
            self.chain_len, self.chain_head, self.file_entries
        )
    }
}

/// Finds the orphans of `fs`.
pub fn pending(fs: &Fs) -> Result<Orphans> {
    let sb = fs.sb();
    let mut out = Orphans {
        chain_head: sb.last_orphan,
        present_flag: sb.has_ro_compat(ro_compat::ORPHAN_PRESENT),
        ..Orphans::default()
    };
    let mut ino = sb.last_orphan;
    while ino != InodeNo(0) && out.chain_len < MAX_CHAIN {
        out.chain_len += 1;
        match fs.inode(ino) {
            Ok(inode) => ino = InodeNo(inode.dtime),
            Err(_) => break,
        }
    }
    if sb.has_compat(compat::ORPHAN_FILE) && sb.orphan_file_inum != InodeNo(0) {
        out.file_entries = orphan_file_entries(fs, sb.orphan_file_inum)?;
    }
    Ok(out)
}

/// Inode numbers recorded in the orphan file `ino`.
fn orphan_file_entries(fs: &Fs, ino: InodeNo) -> Result<u64> {
    // A reserved inode (never reached by name).
    let inode = fs.special_inode(ino)?;
    let bs = fs.block_size() as usize;
    let blocks = (inode.size / bs as u64).min(MAX_ORPHAN_FILE_BLOCKS) as u32;
    let tail = bs.saturating_sub(ORPHAN_TAIL_SIZE);
    let mut buf = vec![0u8; bs];
    let mut n = 0u64;
    for lblk in 0..blocks {
        fs.read_file_block(&inode, Lblk(lblk), &mut buf)?;
        if le32(&buf, tail) != ORPHAN_BLOCK_MAGIC {
            return Err(Error::corrupt(
                format!("orphan file (inode {ino})"),
                format!("block {lblk} has a bad magic"),
            ));
        }
        n += buf
            .get(..tail)
            .unwrap_or(&[])
            .chunks_exact(4)
            .filter(|e| e.iter().any(|&b| b != 0))
            .count() as u64;
    }
    Ok(n)
}
