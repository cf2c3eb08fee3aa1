//! A fault-injecting wrapper around another channel, for tests: reads of
//! chosen byte ranges (or blocks) fail, and the write stream can be cut
//! after N writes, either failing the later writes or silently dropping
//! them (a power cut: the engine believes they happened, the device never
//! saw them). Crash tests replay every prefix of the write stream this way.
//!
//! Invariants: a failed or dropped access never reaches the inner channel;
//! a read that overlaps any failing range fails as a whole.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{IoChannel, IoError};

/// What happens to writes after the cut ([`FaultyChannel::stop_after_writes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCut {
    /// Later writes and flushes fail with [`IoError::Injected`].
    Fail,
    /// Later writes report success but are discarded; flushes succeed.
    Drop,
}

#[derive(Debug, Default)]
struct Faults {
    bad_reads: Vec<Range<u64>>,
    /// Writes still allowed through, and what to do after.
    cut: Option<(u64, AfterCut)>,
}

/// A channel that passes everything to `inner` except the faults it was told to inject.
#[derive(Debug)]
pub struct FaultyChannel {
    inner: Arc<dyn IoChannel>,
    faults: Mutex<Faults>,
    writes_done: AtomicU64,
    writes_lost: AtomicU64,
    reads_failed: AtomicU64,
}

impl FaultyChannel {
    /// A wrapper that injects nothing until told to.
    pub fn new(inner: Arc<dyn IoChannel>) -> FaultyChannel {
        FaultyChannel {
            inner,
            faults: Mutex::new(Faults::default()),
            writes_done: AtomicU64::new(0),
            writes_lost: AtomicU64::new(0),
            reads_failed: AtomicU64::new(0),
        }
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every read overlapping the byte range `bytes` fail.
    pub fn fail_reads(&self, bytes: Range<u64>) {
        if bytes.start < bytes.end {
            self.faults().bad_reads.push(bytes);
        }
    }

    /// Makes every read overlapping blocks `blocks` (of `block_size` bytes) fail.
    pub fn fail_read_blocks(&self, block_size: u32, blocks: Range<u64>) {
        let bs = u64::from(block_size);
        self.fail_reads(blocks.start.saturating_mul(bs)..blocks.end.saturating_mul(bs));
    }

    /// Lets `n` more writes through, then applies `after` to every later one.
    pub fn stop_after_writes(&self, n: u64, after: AfterCut) {
        self.faults().cut = Some((n, after));
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        *self.faults() = Faults::default();
    }

    /// Writes that reached the inner channel.
    pub fn writes_done(&self) -> u64 {
        self.writes_done.load(Ordering::Relaxed)
    }

    /// Writes failed or dropped by the cut.
    pub fn writes_lost(&self) -> u64 {
        self.writes_lost.load(Ordering::Relaxed)
    }

    /// Reads failed on purpose.
    pub fn reads_failed(&self) -> u64 {
        self.reads_failed.load(Ordering::Relaxed)
    }

    /// The wrapped channel.
    pub fn inner(&self) -> &Arc<dyn IoChannel> {
        &self.inner
    }
}

impl IoChannel for FaultyChannel {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let end = offset.saturating_add(buf.len() as u64);
        let hit = self
            .faults()
            .bad_reads
            .iter()
            .any(|r| r.start < end && offset < r.end);
        if hit {
            self.reads_failed.fetch_add(1, Ordering::Relaxed);
            return Err(IoError::Injected { offset });
        }
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        // Decide and count under the lock so concurrent writers cannot both
        // take the last allowed slot.
        let verdict = {
            let mut f = self.faults();
            match &mut f.cut {
                None => None,
                Some((0, after)) => Some(*after),
                Some((n, _)) => {
                    *n -= 1;
                    None
                }
            }
        };
        match verdict {
            None => {
                self.inner.write_at(offset, buf)?;
                self.writes_done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Some(AfterCut::Fail) => {
                self.writes_lost.fetch_add(1, Ordering::Relaxed);
                Err(IoError::Injected { offset })
            }
            Some(AfterCut::Drop) => {
                self.writes_lost.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn flush(&self) -> Result<(), IoError> {
        match self.faults().cut {
            Some((0, AfterCut::Fail)) => Err(IoError::Injected { offset: 0 }),
            Some((0, AfterCut::Drop)) => Ok(()),
            _ => self.inner.flush(),
        }
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }

    fn is_block_device(&self) -> bool {
        self.inner.is_block_device()
    }

    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemChannel;

    fn dev() -> (Arc<MemChannel>, FaultyChannel) {
        let mem = Arc::new(MemChannel::new((0..8192u32).map(|i| i as u8).collect()));
        let f = FaultyChannel::new(mem.clone());
        (mem, f)
    }

    #[test]
    fn reads_fail_only_where_asked() {
        let (_, f) = dev();
        f.fail_read_blocks(1024, 2..3);
        let mut b = [0u8; 1024];
        // (offset, len, should fail)
        let cases = [
            (0u64, 1024usize, false),
            (1024, 1024, false),
            (2047, 1, false),
            (2047, 2, true),
            (2048, 1024, true),
            (3071, 1, true),
            (3072, 1024, false),
            (0, 8192, true),
        ];
        for (off, len, fail) in cases {
            let mut big = vec![0u8; len];
            let r = f.read_at(off, &mut big);
            assert_eq!(r.is_err(), fail, "offset {off} len {len}");
            if let Err(e) = r {
                assert!(matches!(e, IoError::Injected { .. }));
            }
        }
        f.clear_faults();
        f.read_at(2048, &mut b).unwrap();
        assert_eq!(b[0], (2048 % 256) as u8);
        assert_eq!(f.reads_failed(), 4);
    }

    #[test]
    fn write_cut_fail_mode() {
        let (mem, f) = dev();
        f.stop_after_writes(2, AfterCut::Fail);
        f.write_at(0, &[0xAA]).unwrap();
        f.write_at(1, &[0xAA]).unwrap();
        assert!(matches!(
            f.write_at(2, &[0xAA]),
            Err(IoError::Injected { offset: 2 })
        ));
        assert!(f.flush().is_err());
        let snap = mem.snapshot();
        assert_eq!(&snap[..3], &[0xAA, 0xAA, 2]);
        assert_eq!((f.writes_done(), f.writes_lost()), (2, 1));
    }

    #[test]
    fn write_cut_drop_mode_is_silent() {
        let (mem, f) = dev();
        f.stop_after_writes(1, AfterCut::Drop);
        f.write_at(0, &[0x55]).unwrap();
        f.write_at(1, &[0x55]).unwrap();
        f.flush().unwrap();
        assert_eq!(&mem.snapshot()[..2], &[0x55, 1]);
        assert_eq!((f.writes_done(), f.writes_lost()), (1, 1));
    }
}
