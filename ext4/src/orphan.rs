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
use crate::inode::Inode;
use crate::num::{InodeNo, Lblk};
use crate::superblock::{compat, ro_compat};
use crate::tx::Tx;
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

impl Tx<'_> {
    /// Puts `inode` (its last link gone, still held open) at the head of
    /// the superblock's orphan chain, as the kernel's `ext4_orphan_add`
    /// does without an orphan file: its `i_dtime` names the next orphan.
    /// The caller writes the inode, which must not be on the chain yet
    /// (it had a link until this transaction).
    pub(crate) fn orphan_add(&mut self, inode: &mut Inode) {
        let f = self.sb_fields_mut();
        inode.dtime = f.last_orphan;
        f.last_orphan = inode.ino.0;
    }

    /// Takes `inode` off the orphan chain (`ext4_orphan_del`): the head
    /// moves on, or the previous orphan is relinked past it (and written).
    /// The caller writes `inode`, whose `i_dtime` is cleared. The walk to
    /// the predecessor is bounded by [`MAX_CHAIN`]; a chain that does not
    /// reach `inode` leaves the chain as it is (the inode was not on it).
    pub(crate) fn orphan_del(&mut self, inode: &mut Inode) -> Result<()> {
        let next = inode.dtime;
        let head = self.sb_fields().last_orphan;
        if head == inode.ino.0 {
            self.sb_fields_mut().last_orphan = next;
            inode.dtime = 0;
            return Ok(());
        }
        let mut cur = InodeNo(head);
        for _ in 0..MAX_CHAIN {
            if cur.0 == 0 || cur == inode.ino {
                break;
            }
            let mut prev = self.inode(cur)?;
            if prev.dtime == inode.ino.0 {
                prev.dtime = next;
                self.write_inode(&prev)?;
                break;
            }
            cur = InodeNo(prev.dtime);
        }
        inode.dtime = 0;
        Ok(())
    }
}
