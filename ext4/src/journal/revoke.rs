//! Revoke blocks and the revoke table.
//!
//! A revoke block (`jbd2_journal_revoke_header_t`: a header and `r_count`,
//! the bytes used including the 16-byte header) lists filesystem blocks,
//! 4 or 8 bytes each (64bit), that transactions up to and including its own
//! must not replay: the block was freed (and maybe reused for data) after
//! it was logged. With v2/v3 checksums the block ends with a checksum tail.
//!
//! The [`RevokeTable`] keeps, per revoked block, the newest transaction
//! that revoked it; a block logged by transaction T is skipped when it was
//! revoked by a transaction ≥ T (`jbd2_journal_test_revoke`). Its size is
//! bounded ([`MAX_REVOKED_BLOCKS`]) so a hostile journal cannot exhaust
//! memory.

use std::collections::HashMap;

use super::be::{Be32, Be64};
use super::csum::TAIL_SIZE;
use super::header::{BlockHeader, HEADER_SIZE};
use super::tid;
use crate::error::{Error, Result};
use crate::num::Pblk;

const R_COUNT: Be32 = Be32(HEADER_SIZE);
/// Size of the revoke header (records start here).
pub const REVOKE_HEADER_SIZE: usize = R_COUNT.end();

/// Most distinct revoked blocks kept. A real journal revokes at most a few
/// records per freed metadata block; 4 Mi entries (about 100 MiB at worst)
/// is far above that and bounds what a hostile journal can make us hold.
pub const MAX_REVOKED_BLOCKS: usize = 1 << 22;

/// A decoded revoke block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeBlock {
    /// Header (`REVOKE`, the transaction ID).
    pub header: BlockHeader,
    /// Revoked filesystem blocks, in order.
    pub records: Vec<Pblk>,
}

/// Bytes per record.
pub fn record_size(bit64: bool) -> usize {
    if bit64 {
        8
    } else {
        4
    }
}

impl RevokeBlock {
    /// Decodes revoke block `b` (a whole journal block). `r_count` larger
    /// than the block less its tail is corruption (the kernel refuses it too).
    pub fn decode(b: &[u8], bit64: bool, tail: bool) -> Result<RevokeBlock> {
        let header = BlockHeader::decode(b)
            .ok_or_else(|| Error::corrupt("journal revoke block", "shorter than its header"))?;
        let count = R_COUNT.get(b) as usize;
        let room = b.len().saturating_sub(if tail { TAIL_SIZE } else { 0 });
        if count > room {
            return Err(Error::corrupt(
                format!("journal revoke block of transaction {}", header.sequence),
                format!("r_count {count} exceeds the {room} usable bytes"),
            ));
        }
        let rl = record_size(bit64);
        let mut records = Vec::new();
        let mut off = REVOKE_HEADER_SIZE;
        while off + rl <= count {
            records.push(Pblk(if bit64 {
                Be64(off).get(b)
            } else {
                u64::from(Be32(off).get(b))
            }));
            off += rl;
        }
        Ok(RevokeBlock { header, records })
    }

    /// Records that fit in one `block_size` revoke block.
    pub fn capacity(block_size: usize, bit64: bool, tail: bool) -> usize {
        let room = block_size.saturating_sub(if tail { TAIL_SIZE } else { 0 });
        room.saturating_sub(REVOKE_HEADER_SIZE) / record_size(bit64)
    }

    /// A fresh `block_size` revoke block (tail left zero: see
    /// [`super::csum::set_tail`]). Refuses more records than fit, and
    /// 32-bit records for blocks past 2^32.
    pub fn encode(&self, block_size: usize, bit64: bool, tail: bool) -> Result<Vec<u8>> {
        if self.records.len() > Self::capacity(block_size, bit64, tail) {
            return Err(Error::Invalid(format!(
                "{} revoke records do not fit in a {block_size}-byte block",
                self.records.len()
            )));
        }
        if !bit64 {
            if let Some(r) = self.records.iter().find(|r| r.0 > u64::from(u32::MAX)) {
                return Err(Error::Invalid(format!(
                    "revoke of block {r} needs 64-bit records"
                )));
            }
        }
        let rl = record_size(bit64);
        let mut b = vec![0u8; block_size];
        self.header.encode(&mut b);
        let count = REVOKE_HEADER_SIZE + self.records.len() * rl;
        R_COUNT.set(&mut b, count as u32);
        for (i, r) in self.records.iter().enumerate() {
            let off = REVOKE_HEADER_SIZE + i * rl;
            if bit64 {
                Be64(off).set(&mut b, r.0);
            } else {
                Be32(off).set(&mut b, r.0 as u32);
            }
        }
        Ok(b)
    }
}

/// Revoked blocks and the newest transaction revoking each.
#[derive(Debug, Default)]
pub struct RevokeTable {
    newest: HashMap<Pblk, u32>,
    records: u64,
}

impl RevokeTable {
    /// An empty table.
    pub fn new() -> RevokeTable {
        RevokeTable::default()
    }

    /// Records that `block` is revoked by transaction `tid`
    /// (`jbd2_journal_set_revoke`).
    pub fn insert(&mut self, block: Pblk, tid: u32) -> Result<()> {
        self.records += 1;
        match self.newest.get_mut(&block) {
            Some(t) => {
                if tid::after(tid, *t) {
                    *t = tid;
                }
            }
            None => {
                if self.newest.len() >= MAX_REVOKED_BLOCKS {
                    return Err(Error::corrupt(
                        "journal revoke records",
                        format!("more than {MAX_REVOKED_BLOCKS} distinct revoked blocks"),
                    ));
                }
                self.newest.insert(block, tid);
            }
        }
        Ok(())
    }

    /// Whether `block` logged by transaction `tid` must not be replayed.
    pub fn is_revoked(&self, block: Pblk, tid: u32) -> bool {
        self.newest
            .get(&block)
            .is_some_and(|&t| !tid::after(tid, t))
    }

    /// Records inserted (duplicates included).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Distinct revoked blocks.
    pub fn len(&self) -> usize {
        self.newest.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
    }
}
