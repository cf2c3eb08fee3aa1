//! The allocators' in-memory bookkeeping: which groups' bitmaps were
//! verified against their descriptors, which groups were found damaged
//! (never allocated from again this mount), and the hints that spread
//! directories and keep files together.
//!
//! Invariant: nothing here needs restoring when a transaction aborts:
//! marks are set only for committed contents found consistent, damage only
//! for committed contents found damaged, and hints are only hints.

/// Per-group allocator state.
// The allocators that read these land after the transaction API.
#[allow(dead_code)]
#[derive(Debug, Clone, Default)]
pub struct AllocState {
    /// The group's block bitmap matched its descriptor.
    pub(crate) block_checked: Vec<bool>,
    /// The group's inode bitmap matched its descriptor.
    pub(crate) inode_checked: Vec<bool>,
    /// The group's metadata was found damaged: it is skipped.
    pub(crate) damaged: Vec<bool>,
    /// State of the pseudo-random generator spreading top-level
    /// directories (Orlov).
    pub(crate) rng: u64,
}

#[allow(dead_code)]
impl AllocState {
    /// State for `groups` groups, the generator seeded with `seed`.
    pub(crate) fn new(groups: u32, seed: u64) -> AllocState {
        let n = groups as usize;
        AllocState {
            block_checked: vec![false; n],
            inode_checked: vec![false; n],
            damaged: vec![false; n],
            rng: seed | 1,
        }
    }

    /// The next pseudo-random number (xorshift64).
    pub(crate) fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Whether group `g` is marked damaged.
    pub(crate) fn is_damaged(&self, g: u32) -> bool {
        self.damaged.get(g as usize).copied().unwrap_or(true)
    }
}
