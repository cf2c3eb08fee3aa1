//! [`Journal`]: an opened jbd2 journal (its block map, validated
//! superblock and log area) on an IO channel, independent of ext4 (the ext4
//! side that finds the journal inode is [`super::recover`]).
//!
//! The journal superblock is written only through
//! [`Journal::write_superblock`], which encodes over the block as it was
//! read (unknown bytes kept) and sets the checksum the features require.

use std::sync::Arc;

use super::descriptor::TagFormat;
use super::map::JournalMap;
use super::superblock::{JournalSuperblock, LogArea};
use crate::error::{Error, Result};
use crate::io::IoChannel;

/// An opened journal.
#[derive(Debug)]
pub struct Journal {
    pub(super) io: Arc<dyn IoChannel>,
    pub(super) map: JournalMap,
    pub(super) block_size: u32,
    pub(super) sb: JournalSuperblock,
    /// Journal block 0 as last read or written.
    sb_block: Vec<u8>,
    pub(super) area: LogArea,
}

impl Journal {
    /// Opens the journal mapped by `map` on `io`: reads journal block 0,
    /// decodes and validates the superblock for `block_size`-byte blocks
    /// and a journal of `total_blocks` blocks (the journal inode's size; the
    /// map must cover at least the superblock's `s_maxlen`).
    pub fn open(
        io: Arc<dyn IoChannel>,
        map: JournalMap,
        block_size: u32,
        total_blocks: u64,
    ) -> Result<Journal> {
        let sb_block = read_journal_block(&io, &map, block_size, 0)?;
        let sb = JournalSuperblock::decode(&sb_block)
            .ok_or_else(|| Error::corrupt("journal superblock", "block shorter than 1024 bytes"))?;
        let area = sb.validate(&sb_block, block_size, total_blocks)?;
        if map.len() < sb.maxlen {
            return Err(Error::corrupt(
                "journal",
                format!(
                    "{} blocks mapped of the superblock's {}",
                    map.len(),
                    sb.maxlen
                ),
            ));
        }
        Ok(Journal {
            io,
            map,
            block_size,
            sb,
            sb_block,
            area,
        })
    }

    /// The superblock as last read or written.
    pub fn superblock(&self) -> &JournalSuperblock {
        &self.sb
    }

    /// The log area.
    pub fn area(&self) -> LogArea {
        self.area
    }

    /// The block map.
    pub fn map(&self) -> &JournalMap {
        &self.map
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The channel the journal lives on.
    pub fn io(&self) -> &Arc<dyn IoChannel> {
        &self.io
    }

    /// The descriptor tag layout.
    pub fn tag_format(&self) -> TagFormat {
        self.sb.tag_format()
    }

    /// The v2/v3 checksum seed (0 without).
    pub fn csum_seed(&self) -> u32 {
        self.sb.csum_seed()
    }

    /// Whether the log holds transactions to replay (`s_start` ≠ 0).
    pub fn needs_recovery(&self) -> bool {
        self.sb.start != 0
    }

    /// Reads journal block `j`.
    pub fn read_block(&self, j: u32) -> Result<Vec<u8>> {
        read_journal_block(&self.io, &self.map, self.block_size, j)
    }

    /// Writes journal block `j` (one whole block).
    pub fn write_block(&self, j: u32, data: &[u8]) -> Result<()> {
        if data.len() != self.block_size as usize {
            return Err(Error::Invalid(format!(
                "journal block write of {} bytes, block size {}",
                data.len(),
                self.block_size
            )));
        }
        let offset = journal_offset(&self.map, self.block_size, j)?;
        Ok(self.io.write_at(offset, data)?)
    }

    /// Writes `sb` as the journal superblock (over the block as read, with
    /// the checksum its features need). Not flushed.
    pub fn write_superblock(&mut self, sb: JournalSuperblock) -> Result<()> {
        let mut block = self.sb_block.clone();
        sb.encode_into(&mut block);
        if sb.csum_v2or3() {
            JournalSuperblock::set_checksum(&mut block);
        }
        self.write_block(0, &block)?;
        self.sb = JournalSuperblock::decode(&block).unwrap_or(sb);
        self.sb_block = block;
        Ok(())
    }

    /// Sets the feature words of the in-memory superblock (written by the
    /// next superblock write), as `jbd2_journal_set_features` and
    /// `_clear_features` do; enabling v2/v3 checksums sets the checksum type.
    pub fn set_features(&mut self, compat: u32, incompat: u32) {
        self.sb.feature_compat = compat;
        self.sb.feature_incompat = incompat;
        if self.sb.csum_v2or3() {
            self.sb.checksum_type = super::superblock::checksum_type::CRC32C;
        }
    }

    /// Marks the log empty after recovery, as jbd2 leaves it
    /// (`jbd2_mark_journal_empty` after `journal_reset`): `s_start` 0, the
    /// next transaction `next_tid`, the head `head` (where the replayed
    /// log ended), and any recorded abort error cleared (ext4 has moved it
    /// to the filesystem's state by then). Not flushed.
    pub fn mark_empty(&mut self, next_tid: u32, head: u32) -> Result<()> {
        let mut sb = self.sb.clone();
        sb.start = 0;
        sb.sequence = next_tid;
        sb.head = head;
        sb.errno = 0;
        self.write_superblock(sb)
    }
}

/// Byte offset of journal block `j` on the device.
fn journal_offset(map: &JournalMap, block_size: u32, j: u32) -> Result<u64> {
    let (p, _) = map
        .locate(j)
        .ok_or_else(|| Error::corrupt("journal", format!("block {j} is not mapped")))?;
    p.0.checked_mul(u64::from(block_size))
        .ok_or_else(|| Error::corrupt("journal", format!("block {j} maps past 2^64 bytes")))
}

fn read_journal_block(
    io: &Arc<dyn IoChannel>,
    map: &JournalMap,
    block_size: u32,
    j: u32,
) -> Result<Vec<u8>> {
    let offset = journal_offset(map, block_size, j)?;
    let mut b = vec![0u8; block_size as usize];
    io.read_at(offset, &mut b)?;
    Ok(b)
}
