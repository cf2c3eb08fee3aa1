//! The allocators' in-memory bookkeeping: which groups' bitmaps were
//! verified against their descriptors, which groups were found damaged
//! (never allocated from or freed into again this mount), and the state of
//! the generator that spreads directories and picks inode generations.
//!
//! Invariant: nothing here needs restoring when a transaction aborts:
//! marks are set only for committed contents found consistent, damage only
//! for committed contents found damaged, and the generator only makes
//! hints.

use crate::num::GroupNo;

/// Which bitmap of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BitmapKind {
    /// The block bitmap.
    Block,
    /// The inode bitmap.
    Inode,
}

/// Per-group allocator state.
#[derive(Debug, Clone, Default)]
pub struct AllocState {
    /// The group's committed block bitmap matched its descriptor.
    block_checked: Vec<bool>,
    /// The group's committed inode bitmap matched its descriptor.
    inode_checked: Vec<bool>,
    /// The group's metadata was found damaged: it is left alone.
    damaged: Vec<bool>,
    /// State of the pseudo-random generator (xorshift64; never 0).
    rng: u64,
}

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

    /// The next pseudo-random number.
    pub(crate) fn next_random(&mut self) -> u64 {
        let mut x = self.rng.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Whether group `g` is marked damaged (a group out of range is).
    pub(crate) fn is_damaged(&self, g: GroupNo) -> bool {
        self.damaged.get(g.index()).copied().unwrap_or(true)
    }

    /// Marks group `g` damaged for the rest of the mount.
    pub(crate) fn mark_damaged(&mut self, g: GroupNo) {
        if let Some(d) = self.damaged.get_mut(g.index()) {
            *d = true;
        }
    }

    fn marks(&mut self, kind: BitmapKind) -> &mut Vec<bool> {
        match kind {
            BitmapKind::Block => &mut self.block_checked,
            BitmapKind::Inode => &mut self.inode_checked,
        }
    }

    /// Whether group `g`'s committed bitmap of `kind` was verified.
    pub(crate) fn is_checked(&mut self, g: GroupNo, kind: BitmapKind) -> bool {
        self.marks(kind).get(g.index()).copied().unwrap_or(false)
    }

    /// Records that group `g`'s committed bitmap of `kind` was verified.
    pub(crate) fn set_checked(&mut self, g: GroupNo, kind: BitmapKind) {
        if let Some(m) = self.marks(kind).get_mut(g.index()) {
            *m = true;
        }
    }
}
