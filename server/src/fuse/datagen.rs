//! Per-inode data generations: how the readahead knows that what it read
//! may be older than a write.
//!
//! Every change to a file's data (write, truncate, fallocate, the
//! destination of copy_file_range) holds a [`WriteGuard`] from
//! [`DataGen::begin_write`] around the engine call: the generation of the
//! inode is bumped when the guard is made, before any of the write's data
//! can reach the device, and again when it is dropped, after the engine
//! returned. A reader of file data that wants to keep what it read (a
//! readahead fill) notes [`DataGen::current`] *before* its device read and
//! may use the data only while the generation is still that value.
//!
//! Why two bumps: a fill whose device read overlaps a write may read the
//! old data after the first bump; it then holds a generation that the
//! second bump makes stale, so its window is never served once the write
//! has returned. A fill that read entirely after the write returned holds
//! the current generation and the new data.
//!
//! Generations live in a fixed table of stripes keyed by inode number, so
//! memory does not grow with the files written; two inodes sharing a
//! stripe only make each other's windows look stale (a needless re-read,
//! never a stale answer).

use std::sync::atomic::{AtomicU64, Ordering};

use fsvc_ext4::InodeNo;

/// Stripes in the table (a power of two).
const STRIPES: usize = 1024;

/// The data generations of one mount.
#[derive(Debug)]
pub(crate) struct DataGen {
    stripes: Box<[AtomicU64]>,
}

impl Default for DataGen {
    fn default() -> DataGen {
        DataGen {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Held across one change of a file's data; see the module documentation.
#[derive(Debug)]
#[must_use = "the generation must stay bumped until the write has returned"]
pub(crate) struct WriteGuard<'a> {
    gens: &'a DataGen,
    ino: InodeNo,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.gens.bump(self.ino);
    }
}

impl DataGen {
    fn stripe(&self, ino: InodeNo) -> &AtomicU64 {
        // Fibonacci hashing spreads neighbouring inode numbers.
        let h = (u64::from(ino.0).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        &self.stripes[h % STRIPES]
    }

    fn bump(&self, ino: InodeNo) {
        // SeqCst: the bump must be ordered before the write's device IO
        // and the reader's load before its own, as seen by every thread.
        self.stripe(ino).fetch_add(1, Ordering::SeqCst);
    }

    /// The generation of `ino`'s data now.
    pub(crate) fn current(&self, ino: InodeNo) -> u64 {
        self.stripe(ino).load(Ordering::SeqCst)
    }

    /// Marks the start of a change to `ino`'s data; the guard marks its end.
    pub(crate) fn begin_write(&self, ino: InodeNo) -> WriteGuard<'_> {
        self.bump(ino);
        WriteGuard { gens: self, ino }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_changes_the_generation_at_its_start_and_its_end() {
        let g = DataGen::default();
        let before = g.current(InodeNo(12));
        let other = g.current(InodeNo(13));
        let guard = g.begin_write(InodeNo(12));
        let during = g.current(InodeNo(12));
        assert_ne!(during, before, "bumped before the data is written");
        drop(guard);
        let after = g.current(InodeNo(12));
        assert_ne!(after, during, "bumped again once the write returned");
        assert_ne!(after, before);
        // Another inode is unaffected unless it shares the stripe.
        if !std::ptr::eq(g.stripe(InodeNo(12)), g.stripe(InodeNo(13))) {
            assert_eq!(g.current(InodeNo(13)), other);
        }
    }

    #[test]
    fn neighbouring_inodes_use_different_stripes() {
        let g = DataGen::default();
        let mut used = std::collections::HashSet::new();
        for ino in 1000..1256u32 {
            used.insert(g.stripe(InodeNo(ino)) as *const AtomicU64);
        }
        assert!(used.len() > 200, "{} stripes for 256 inodes", used.len());
    }
}
