//! A set of block ranges (disjoint half-open intervals), for the blocks a
//! transaction freed (never reused before it commits) and allocated.
//!
//! Invariant: the stored ranges are non-empty, disjoint and not adjacent
//! (neighbours are merged on insert).

use std::collections::BTreeMap;

/// Disjoint block ranges keyed by their start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> length
    map: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// Adds `[start, start + len)`, merging with overlapping and adjacent ranges.
    pub fn insert(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut lo = start;
        let mut hi = start.saturating_add(len);
        // A range starting before `lo` that reaches it.
        if let Some((&s, &l)) = self.map.range(..=lo).next_back() {
            if s.saturating_add(l) >= lo {
                lo = s;
                hi = hi.max(s.saturating_add(l));
            }
        }
        // Ranges starting inside [lo, hi] are swallowed.
        let inside: Vec<(u64, u64)> = self.map.range(lo..=hi).map(|(&s, &l)| (s, l)).collect();
        for (s, l) in inside {
            hi = hi.max(s.saturating_add(l));
            self.map.remove(&s);
        }
        self.map.insert(lo, hi - lo);
    }

    /// The first stored range intersecting `[start, start + len)`.
    pub fn first_overlap(&self, start: u64, len: u64) -> Option<(u64, u64)> {
        let end = start.saturating_add(len);
        if let Some((&s, &l)) = self.map.range(..=start).next_back() {
            if s.saturating_add(l) > start {
                return Some((s, l));
            }
        }
        self.map.range(start..end).next().map(|(&s, &l)| (s, l))
    }

    /// Whether `blk` is in the set.
    pub fn contains(&self, blk: u64) -> bool {
        self.first_overlap(blk, 1).is_some()
    }

    /// The ranges in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &l)| (s, l))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Blocks in the set.
    pub fn total(&self) -> u64 {
        self.map.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_merge_and_lookups_find() {
        let mut s = RangeSet::new();
        s.insert(10, 5); // 10..15
        s.insert(20, 5); // 20..25
        s.insert(15, 2); // adjacent: 10..17
        s.insert(0, 0); // empty: ignored
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(10, 7), (20, 5)]);
        s.insert(16, 6); // bridges: 10..25
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(10, 15)]);
        s.insert(3, 2);
        // (start, len, first overlap)
        let cases: &[(u64, u64, Option<u64>)] = &[
            (0, 3, None),
            (0, 4, Some(3)),
            (5, 5, None),
            (5, 6, Some(10)),
            (24, 1, Some(10)),
            (25, 10, None),
        ];
        for &(st, len, want) in cases {
            assert_eq!(s.first_overlap(st, len).map(|r| r.0), want, "{st}+{len}");
        }
        assert!(s.contains(4) && !s.contains(5));
        assert_eq!(s.total(), 17);
    }
}
