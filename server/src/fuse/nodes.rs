//! The node table: which inodes the kernel holds, and how often.
//!
//! The kernel counts, per node id, the replies that handed it an entry
//! (LOOKUP, the create-style replies CREATE/MKNOD/MKDIR/SYMLINK/LINK, and
//! every READDIRPLUS entry except `.` and `..`, which it ignores) and hands
//! the count back with FORGET/BATCH_FORGET when it drops the inode. Until
//! then it may send any request for that node id, so the inode number must
//! keep naming the same inode: it must not be freed and handed out again.
//! Open handles (files and directories) hold their inode as well: an
//! unlinked file stays readable and writable until its last release.
//!
//! Invariants:
//! - a lookup is counted *before* the reply that hands the entry over is
//!   sent (a FORGET can only follow the reply), so the count is never below
//!   what the kernel holds; a FORGET for more than was counted (a kernel
//!   or accounting bug) clamps at zero and is logged, never a panic;
//! - a node with neither lookups nor open handles has no entry, so the
//!   table holds only what the kernel holds (its inode cache bounds that);
//! - the root is always referenced (the kernel holds it from mount to
//!   unmount).
//!
//! # For the write engine: freeing inodes
//!
//! An inode whose link count drops to 0 (unlink, rmdir, rename over it) is
//! normally still held: the kernel looked it up to unlink it. Its blocks
//! and its number must not be freed while [`NodeTable::is_referenced`]
//! says so; the engine keeps it on the orphan list instead. The adapter
//! learns when the last reference goes (the `bool` that
//! [`NodeTable::forget`] and [`NodeTable::closed`] return) and then asks
//! the engine to release the inode if it is an orphan (the engine's
//! evict call, kernel style: the final `iput` frees an unlinked inode).
//! [`NodeTable::remember_new`] refuses an inode number the kernel still
//! holds, so an engine bug that reused one can never give the kernel one
//! node id for two inodes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use fsvc_ext4::{InodeNo, ROOT_INO};

/// Shards of the table (a power of two): lookups of different inodes by
/// different FUSE workers rarely wait on each other.
const SHARDS: usize = 16;

/// What holds one inode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeRefs {
    /// Entries handed to the kernel and not yet forgotten.
    pub(crate) lookups: u64,
    /// Open file and directory handles.
    pub(crate) opens: u64,
}

impl NodeRefs {
    fn is_empty(self) -> bool {
        self.lookups == 0 && self.opens == 0
    }
}

/// An inode number that the engine handed out for a new inode while the
/// kernel still holds it under its old identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StillHeld(pub(crate) NodeRefs);

/// The references the kernel and the open handles hold, per ext4 inode.
#[derive(Debug)]
pub(crate) struct NodeTable {
    shards: [Mutex<HashMap<InodeNo, NodeRefs>>; SHARDS],
    /// Lookups the kernel forgot beyond what was counted: nonzero means a
    /// reply handed over an entry without counting it (a bug that could
    /// free an inode the kernel holds).
    over_forgotten: AtomicU64,
    /// Inodes whose last link went while something held them: the engine
    /// frees each once when its last reference goes.
    orphans: Mutex<HashSet<InodeNo>>,
}

impl Default for NodeTable {
    fn default() -> NodeTable {
        NodeTable {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            over_forgotten: AtomicU64::new(0),
            orphans: Mutex::default(),
        }
    }
}

impl NodeTable {
    fn shard(&self, ino: InodeNo) -> MutexGuard<'_, HashMap<InodeNo, NodeRefs>> {
        // Consecutive inode numbers (a directory's files) land in
        // different shards.
        let m = &self.shards[ino.0 as usize % SHARDS];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one entry for `ino` handed to the kernel (a lookup or a
    /// readdirplus entry). Call before sending the reply.
    pub(crate) fn remember(&self, ino: InodeNo) {
        let mut s = self.shard(ino);
        let r = s.entry(ino).or_default();
        r.lookups = r.lookups.saturating_add(1);
    }

    /// Counts the entry of a newly made inode (create, mknod, mkdir,
    /// symlink). Refused when the kernel still holds that number: the
    /// engine must never hand out an inode number the kernel knows (see
    /// the module documentation); the caller answers with an error.
    pub(crate) fn remember_new(&self, ino: InodeNo) -> Result<(), StillHeld> {
        let mut s = self.shard(ino);
        if ino == ROOT_INO {
            return Err(StillHeld(s.get(&ino).copied().unwrap_or_default()));
        }
        let r = s.entry(ino).or_default();
        if !r.is_empty() {
            return Err(StillHeld(*r));
        }
        r.lookups = 1;
        Ok(())
    }

    /// The kernel forgot `n` lookups of `ino`. Returns true when nothing
    /// holds the inode any more (the moment an unlinked inode may be freed).
    pub(crate) fn forget(&self, ino: InodeNo, n: u64) -> bool {
        let mut s = self.shard(ino);
        let held = s.get(&ino).map_or(0, |r| r.lookups);
        if n > held {
            self.over_forgotten.fetch_add(n - held, Ordering::Relaxed);
            log::warn!("the kernel forgot {n} lookups of inode {ino}, which has {held}");
        }
        let Some(r) = s.get_mut(&ino) else {
            return false;
        };
        r.lookups = r.lookups.saturating_sub(n);
        Self::drop_if_unreferenced(&mut s, ino)
    }

    /// A handle on `ino` was opened.
    pub(crate) fn opened(&self, ino: InodeNo) {
        let mut s = self.shard(ino);
        let r = s.entry(ino).or_default();
        r.opens = r.opens.saturating_add(1);
    }

    /// A handle on `ino` was released. Returns true when nothing holds the
    /// inode any more.
    pub(crate) fn closed(&self, ino: InodeNo) -> bool {
        let mut s = self.shard(ino);
        let Some(r) = s.get_mut(&ino) else {
            log::debug!("release of a handle on inode {ino}, which has none");
            return false;
        };
        r.opens = r.opens.saturating_sub(1);
        Self::drop_if_unreferenced(&mut s, ino)
    }

    fn drop_if_unreferenced(s: &mut HashMap<InodeNo, NodeRefs>, ino: InodeNo) -> bool {
        if ino == ROOT_INO || !s.get(&ino).is_some_and(|r| r.is_empty()) {
            return false;
        }
        s.remove(&ino);
        true
    }

    fn orphan_set(&self) -> MutexGuard<'_, HashSet<InodeNo>> {
        self.orphans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine says `ino` lost its last link (unlink, rmdir, a rename
    /// over it). Returns true when nothing holds it now: the caller frees
    /// it at once. Otherwise it is remembered, and [`NodeTable::take_orphan`]
    /// says so when its last reference goes. Exactly one of the two ever
    /// answers true for one orphaning, however they race: the set is the
    /// token.
    pub(crate) fn orphaned(&self, ino: InodeNo) -> bool {
        self.orphan_set().insert(ino);
        // Marked first, then checked: a last FORGET between the two finds
        // the mark and frees it; one after finds the reference gone.
        !self.is_referenced(ino) && self.take_orphan(ino)
    }

    /// After the last reference to `ino` went: whether it was an orphan to
    /// free (and no longer is one to this table).
    pub(crate) fn take_orphan(&self, ino: InodeNo) -> bool {
        self.orphan_set().remove(&ino)
    }

    /// Whether the kernel or an open handle still holds `ino`: while it
    /// does, the inode must be neither freed nor its number reused.
    pub(crate) fn is_referenced(&self, ino: InodeNo) -> bool {
        ino == ROOT_INO || self.shard(ino).get(&ino).is_some_and(|r| !r.is_empty())
    }

    /// What holds `ino` now.
    #[cfg(test)]
    pub(crate) fn refs(&self, ino: InodeNo) -> NodeRefs {
        self.shard(ino).get(&ino).copied().unwrap_or_default()
    }

    /// Lookups forgotten beyond what was counted, since the mount.
    #[cfg(test)]
    pub(crate) fn over_forgotten(&self) -> u64 {
        self.over_forgotten.load(Ordering::Relaxed)
    }

    /// Inodes with an entry.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(lookups: u64, opens: u64) -> NodeRefs {
        NodeRefs { lookups, opens }
    }

    /// One step of a scenario and what holds the inode afterwards.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Lookup,
        Forget(u64),
        Open,
        Close,
    }

    #[test]
    fn counts_follow_lookups_forgets_and_handles() {
        use Op::*;
        // (step, refs after it, whether the step released the inode)
        let script = [
            (Lookup, refs(1, 0), false),
            (Lookup, refs(2, 0), false),
            (Open, refs(2, 1), false),
            (Forget(2), refs(0, 1), false),
            (Lookup, refs(1, 1), false),
            (Close, refs(1, 0), false),
            (Forget(1), refs(0, 0), true),
            // Nothing held: a late forget or release changes nothing.
            (Forget(3), refs(0, 0), false),
            (Close, refs(0, 0), false),
            (Open, refs(0, 1), false),
            (Close, refs(0, 0), true),
            // A forget of more than was counted clamps at zero.
            (Lookup, refs(1, 0), false),
            (Forget(5), refs(0, 0), true),
        ];
        let t = NodeTable::default();
        for (i, (op, want, released)) in script.into_iter().enumerate() {
            let got_released = match op {
                Lookup => {
                    t.remember(InodeNo(12));
                    false
                }
                Forget(n) => t.forget(InodeNo(12), n),
                Open => {
                    t.opened(InodeNo(12));
                    false
                }
                Close => t.closed(InodeNo(12)),
            };
            assert_eq!(t.refs(InodeNo(12)), want, "step {i} {op:?}");
            assert_eq!(got_released, released, "step {i} {op:?}");
            assert_eq!(t.is_referenced(InodeNo(12)), want != refs(0, 0), "step {i}");
            assert_eq!(t.len(), usize::from(want != refs(0, 0)), "step {i}");
        }
        // The two forgets of more than was counted (3, then 5 - 1).
        assert_eq!(t.over_forgotten(), 3 + 4);
    }

    #[test]
    fn a_held_inode_number_is_never_reused() {
        let t = NodeTable::default();
        assert_eq!(t.remember_new(InodeNo(20)), Ok(()));
        // The engine handing out 20 again while the kernel holds it.
        assert_eq!(t.remember_new(InodeNo(20)), Err(StillHeld(refs(1, 0))));
        t.opened(InodeNo(20));
        assert!(!t.forget(InodeNo(20), 1), "the open handle still holds it");
        assert_eq!(t.remember_new(InodeNo(20)), Err(StillHeld(refs(0, 1))));
        assert!(t.closed(InodeNo(20)));
        // Released: the number may name a new inode now.
        assert_eq!(t.remember_new(InodeNo(20)), Ok(()));
        assert_eq!(t.refs(InodeNo(20)), refs(1, 0));
        // The root is never new.
        assert!(t.remember_new(ROOT_INO).is_err());
    }

    #[test]
    fn an_orphan_is_freed_once_by_whoever_lets_go_last() {
        let t = NodeTable::default();
        // Held while unlinked: freed at the last forget, once.
        t.remember(InodeNo(30));
        t.opened(InodeNo(30));
        assert!(!t.orphaned(InodeNo(30)), "still held");
        assert!(!t.forget(InodeNo(30), 1));
        assert!(t.closed(InodeNo(30)));
        assert!(t.take_orphan(InodeNo(30)));
        assert!(!t.take_orphan(InodeNo(30)), "freed twice");
        // Not held at the unlink: the unlink frees it.
        assert!(t.orphaned(InodeNo(31)));
        assert!(!t.take_orphan(InodeNo(31)));
        // An inode never orphaned is not freed when it is forgotten.
        t.remember(InodeNo(32));
        assert!(t.forget(InodeNo(32), 1));
        assert!(!t.take_orphan(InodeNo(32)));
    }

    #[test]
    fn the_root_stays_referenced() {
        let t = NodeTable::default();
        assert!(t.is_referenced(ROOT_INO));
        t.remember(ROOT_INO);
        assert!(!t.forget(ROOT_INO, 1));
        assert!(t.is_referenced(ROOT_INO));
        t.opened(ROOT_INO);
        assert!(!t.closed(ROOT_INO));
        assert!(t.is_referenced(ROOT_INO));
    }

    #[test]
    fn concurrent_lookups_and_forgets_balance() {
        let t = std::sync::Arc::new(NodeTable::default());
        let workers: Vec<_> = (0..4u32)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        let ino = InodeNo(100 + (i * 7 + w) % 64);
                        t.remember(ino);
                        t.remember(ino);
                        t.forget(ino, 2);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(t.len(), 0);
    }
}
