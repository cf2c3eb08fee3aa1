//! Where the journal's blocks are: journal block number → device block,
//! as runs of contiguous blocks.
//!
//! Built from the journal inode's extent or indirect map (every block
//! checked to lie inside the filesystem by the engine's mapping), or as one
//! run for a journal laid out contiguously (tests, fuzzing, an external
//! device). Also answers whether a device block belongs to the journal, so
//! that replay never writes into the journal itself.
//!
//! Invariant: runs cover journal blocks `0..len()` without gaps, in order.

use crate::error::{Error, Result};
use crate::num::Pblk;

/// One contiguous piece of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First journal block of the run.
    pub jblock: u32,
    /// Device block of `jblock`.
    pub pblock: Pblk,
    /// Blocks in the run (≥ 1).
    pub len: u32,
}

/// The journal's block map.
#[derive(Debug, Clone, Default)]
pub struct JournalMap {
    runs: Vec<Run>,
    /// The device blocks the runs cover, as sorted, disjoint, non-adjacent
    /// ranges `(start, end)`, for [`JournalMap::contains`].
    covered: Vec<(u64, u64)>,
    len: u32,
}

impl JournalMap {
    /// A journal of `len` blocks stored contiguously from device block `start`.
    pub fn contiguous(start: Pblk, len: u32) -> JournalMap {
        let mut m = JournalMap::default();
        if len > 0 {
            m.runs.push(Run {
                jblock: 0,
                pblock: start,
                len,
            });
            m.len = len;
        }
        m.covered = cover(&m.runs);
        m
    }

    /// A map from runs given in journal-block order without gaps (merging
    /// runs that continue each other).
    pub fn from_runs(runs: impl IntoIterator<Item = Run>) -> Result<JournalMap> {
        let mut m = JournalMap::default();
        for r in runs {
            if r.len == 0 {
                continue;
            }
            if r.jblock != m.len {
                return Err(Error::corrupt(
                    "journal block map",
                    format!(
                        "run at journal block {} leaves a gap at {}",
                        r.jblock, m.len
                    ),
                ));
            }
            r.pblock
                .checked_add(u64::from(r.len))
                .ok_or_else(|| Error::corrupt("journal block map", "run past 2^64"))?;
            m.len = m
                .len
                .checked_add(r.len)
                .ok_or_else(|| Error::corrupt("journal block map", "more than 2^32 blocks"))?;
            match m.runs.last_mut() {
                Some(last) if last.pblock.saturating_add(u64::from(last.len)) == r.pblock => {
                    last.len += r.len
                }
                _ => m.runs.push(r),
            }
        }
        m.covered = cover(&m.runs);
        Ok(m)
    }

    /// Journal blocks mapped.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs, in journal-block order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Device block of journal block `j` and how many blocks continue
    /// contiguously from it (`None` past the end).
    pub fn locate(&self, j: u32) -> Option<(Pblk, u32)> {
        let i = self
            .runs
            .partition_point(|r| r.jblock <= j)
            .checked_sub(1)?;
        let r = self.runs.get(i)?;
        let off = j - r.jblock;
        (off < r.len).then(|| (r.pblock.saturating_add(u64::from(off)), r.len - off))
    }

    /// Whether device block `p` holds a journal block.
    pub fn contains(&self, p: Pblk) -> bool {
        let p = p.0;
        let n = self.covered.partition_point(|&(start, _)| start <= p);
        n.checked_sub(1)
            .and_then(|i| self.covered.get(i))
            .is_some_and(|&(_, end)| p < end)
    }
}

/// The union of the runs' device ranges, sorted and merged (a hostile map
/// may make runs overlap; a real one has one run per extent).
fn cover(runs: &[Run]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| (r.pblock.0, r.pblock.0.saturating_add(u64::from(r.len))))
        .collect();
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(jblock: u32, pblock: u64, len: u32) -> Run {
        Run {
            jblock,
            pblock: Pblk(pblock),
            len,
        }
    }

    #[test]
    fn locate_and_contains() {
        let m = JournalMap::from_runs([run(0, 100, 4), run(4, 104, 2), run(6, 50, 3)]).unwrap();
        assert_eq!(m.len(), 9);
        assert_eq!(m.runs().len(), 2, "contiguous runs merge");
        // (journal block, expected)
        let cases = [
            (0u32, Some((100u64, 6u32))),
            (5, Some((105, 1))),
            (6, Some((50, 3))),
            (8, Some((52, 1))),
            (9, None),
            (u32::MAX, None),
        ];
        for (j, want) in cases {
            assert_eq!(
                m.locate(j),
                want.map(|(p, n)| (Pblk(p), n)),
                "journal block {j}"
            );
        }
        for p in [50u64, 52, 100, 105] {
            assert!(m.contains(Pblk(p)), "{p}");
        }
        for p in [0u64, 49, 53, 99, 106, u64::MAX] {
            assert!(!m.contains(Pblk(p)), "{p}");
        }
    }

    #[test]
    fn gaps_and_overflow_are_refused() {
        assert!(JournalMap::from_runs([run(0, 1, 2), run(3, 9, 1)]).is_err());
        assert!(JournalMap::from_runs([run(0, u64::MAX, 2)]).is_err());
        assert!(JournalMap::from_runs([run(0, 1, u32::MAX), run(u32::MAX, 9, 1)]).is_err());
        let c = JournalMap::contiguous(Pblk(10), 5);
        assert_eq!(c.locate(4), Some((Pblk(14), 1)));
        assert!(c.contains(Pblk(14)) && !c.contains(Pblk(15)));
        assert!(JournalMap::contiguous(Pblk(0), 0).is_empty());
    }

    #[test]
    fn overlapping_runs_are_all_seen() {
        // A hostile map may point two journal ranges at overlapping blocks.
        let m = JournalMap::from_runs([run(0, 100, 50), run(50, 110, 2)]).unwrap();
        assert!(m.contains(Pblk(120)), "inside the first, longer run");
        assert!(m.contains(Pblk(111)));
        assert!(!m.contains(Pblk(150)));
    }
}
