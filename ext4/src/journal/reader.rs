//! Reading the log: one journal block at a time by journal block number,
//! through a window of up to [`WINDOW_BYTES`] read in one device access
//! wherever the journal is contiguous on the device (recovery is one long
//! sequential read, and with `O_DIRECT` there is no kernel readahead).
//!
//! Invariant: a window never extends past the journal, past the run it
//! starts in, or past the log area's end, so every byte it holds belongs to
//! the journal block it is returned for.

use std::sync::Arc;

use super::map::JournalMap;
use crate::error::{Error, Result};
use crate::io::IoChannel;

/// Largest single read of the log.
pub const WINDOW_BYTES: usize = 256 << 10;

/// A windowed reader of journal blocks.
#[derive(Debug)]
pub struct LogReader<'j> {
    io: &'j Arc<dyn IoChannel>,
    map: &'j JournalMap,
    block_size: usize,
    /// Journal blocks `win_start..win_start + win_len` are in `window`.
    window: Vec<u8>,
    win_start: u32,
    win_len: u32,
    /// Reads stop here (one past the last block of the log area).
    end: u32,
}

impl<'j> LogReader<'j> {
    /// A reader of journal blocks `..end` of the journal mapped by `map`.
    pub fn new(
        io: &'j Arc<dyn IoChannel>,
        map: &'j JournalMap,
        block_size: u32,
        end: u32,
    ) -> LogReader<'j> {
        LogReader {
            io,
            map,
            block_size: block_size as usize,
            window: Vec::new(),
            win_start: 0,
            win_len: 0,
            end: end.min(map.len()),
        }
    }

    /// Journal block `j`.
    pub fn block(&mut self, j: u32) -> Result<&[u8]> {
        if !(j >= self.win_start && j - self.win_start < self.win_len) {
            self.fill(j)?;
        }
        let off = (j - self.win_start) as usize * self.block_size;
        self.window
            .get(off..off + self.block_size)
            .ok_or_else(|| Error::Invalid(format!("journal block {j} outside the read window")))
    }

    fn fill(&mut self, j: u32) -> Result<()> {
        self.win_len = 0;
        if j >= self.end {
            return Err(Error::corrupt(
                "journal",
                format!("block {j} past the end of the log ({})", self.end),
            ));
        }
        let (pblock, run) = self
            .map
            .locate(j)
            .ok_or_else(|| Error::corrupt("journal", format!("block {j} is not mapped")))?;
        let per_window = (WINDOW_BYTES / self.block_size).max(1) as u32;
        let n = run.min(per_window).min(self.end - j);
        let bytes = n as usize * self.block_size;
        let offset = pblock
            .0
            .checked_mul(self.block_size as u64)
            .ok_or_else(|| Error::corrupt("journal", format!("block {j} maps past 2^64 bytes")))?;
        self.window.resize(bytes, 0);
        let buf = self.window.get_mut(..bytes).unwrap_or(&mut []);
        self.io.read_at(offset, buf)?;
        self.win_start = j;
        self.win_len = n;
        Ok(())
    }
}
