//! The write path's locks (docs/design-notes.md, "Write path", locks), in
//! their one order:
//!
//! 1. **Per-inode locks** ([`InodeLocks`]): a striped table of `RwLock`s
//!    keyed by inode number. File data IO and mapping changes hold the
//!    file's lock (shared to read, exclusive to write, truncate, fallocate,
//!    setattr); a directory change holds the directory's exclusively; a
//!    rename holds both directories and the moved and replaced inodes. An
//!    operation takes **all** the inode locks it needs in one call
//!    ([`InodeLocks::write_many`]), which locks their stripes in index
//!    order, each once, so two operations can never deadlock on them.
//! 2. **The change lock** ([`ChangeLock`]): every transaction holds it
//!    exclusively from `Fs::begin` to commit or abort; every reader of
//!    metadata holds it shared while it looks at metadata
//!    ([`crate::Fs::read_guard`]), so a reader never sees half of a commit.
//! 3. Leaves: the cache's shard locks, the group table's lock, the
//!    journal's internal locks. Nothing is acquired while one is held.
//!
//! Order: inode locks → change lock → leaves, never the reverse.
//!
//! Misuse that would deadlock is refused instead (an [`Error::Internal`]),
//! because std's `RwLock` lets a waiting writer block new readers: a thread
//! that holds the change lock shared and asks for it again could otherwise
//! hang forever behind a writer. So this thread's holds are tracked:
//! reading again while reading is a free nested guard; a transaction begun
//! while this thread reads, a reader inside this thread's transaction, or a
//! transaction inside a transaction is an error.

use std::cell::RefCell;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::num::InodeNo;

/// Stripes of the inode lock table: enough that unrelated files rarely
/// share one, few enough to be a small fixed cost per filesystem.
pub const INODE_LOCK_STRIPES: usize = 1024;

/// The striped per-inode lock table.
#[derive(Debug)]
pub struct InodeLocks {
    stripes: Box<[RwLock<()>]>,
}

impl Default for InodeLocks {
    fn default() -> Self {
        InodeLocks {
            stripes: (0..INODE_LOCK_STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }
}

/// A shared hold of one inode's lock.
#[derive(Debug)]
pub struct InodeReadGuard<'a> {
    _g: RwLockReadGuard<'a, ()>,
}

/// Exclusive holds of one or more inodes' locks (released together).
#[derive(Debug)]
pub struct InodeWriteGuard<'a> {
    _g: Vec<RwLockWriteGuard<'a, ()>>,
}

impl InodeLocks {
    /// The stripe an inode's lock lives in. Consecutive inode numbers
    /// (files created together) land in different stripes.
    pub fn stripe_of(ino: InodeNo) -> usize {
        ino.0 as usize % INODE_LOCK_STRIPES
    }

    /// Locks `ino` shared (reading its data or mapping).
    pub fn read(&self, ino: InodeNo) -> InodeReadGuard<'_> {
        let lock = &self.stripes[Self::stripe_of(ino)];
        InodeReadGuard {
            _g: lock.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Locks `ino` exclusively.
    pub fn write(&self, ino: InodeNo) -> InodeWriteGuard<'_> {
        self.write_many(&[ino])
    }

    /// Locks every inode of `inos` exclusively, in stripe order, each
    /// stripe once (two inodes may share a stripe; an inode may be listed
    /// twice, e.g. a rename within one directory).
    pub fn write_many(&self, inos: &[InodeNo]) -> InodeWriteGuard<'_> {
        let mut idx: Vec<usize> = inos.iter().map(|&i| Self::stripe_of(i)).collect();
        idx.sort_unstable();
        idx.dedup();
        InodeWriteGuard {
            _g: idx
                .into_iter()
                .map(|i| self.stripes[i].write().unwrap_or_else(|e| e.into_inner()))
                .collect(),
        }
    }
}

/// What this thread holds of which change lock (keyed by the lock's
/// address): reader depth, or a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    Read(u32),
    Write,
}

thread_local! {
    static HOLDS: RefCell<Vec<(usize, Hold)>> = const { RefCell::new(Vec::new()) };
}

fn hold_of(key: usize) -> Option<Hold> {
    HOLDS.with(|h| h.borrow().iter().find(|(k, _)| *k == key).map(|(_, h)| *h))
}

fn set_hold(key: usize, hold: Option<Hold>) {
    HOLDS.with(|h| {
        let mut h = h.borrow_mut();
        h.retain(|(k, _)| *k != key);
        if let Some(hold) = hold {
            h.push((key, hold));
        }
    });
}

/// The filesystem's change lock: exclusive for a transaction, shared for
/// readers of metadata. `T` is the state only transactions change (the
/// write state of `Fs`).
#[derive(Debug, Default)]
pub struct ChangeLock<T> {
    lock: RwLock<T>,
}

/// A shared hold of the change lock (a metadata reader).
#[derive(Debug)]
pub struct ReadGuard<'a, T> {
    key: usize,
    /// `None` for a nested hold (the outer guard holds the lock).
    guard: Option<RwLockReadGuard<'a, T>>,
}

/// The exclusive hold of a transaction.
#[derive(Debug)]
pub struct WriteGuard<'a, T> {
    key: usize,
    guard: RwLockWriteGuard<'a, T>,
}

impl<T> ChangeLock<T> {
    /// A lock around `state`.
    pub fn new(state: T) -> ChangeLock<T> {
        ChangeLock {
            lock: RwLock::new(state),
        }
    }

    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Takes the lock shared. Nested reads on one thread share the outer
    /// hold; reading inside this thread's own transaction is refused.
    pub fn read(&self) -> Result<ReadGuard<'_, T>> {
        let key = self.key();
        match hold_of(key) {
            Some(Hold::Write) => Err(Error::Internal(
                "a metadata reader inside a transaction (read through the Tx instead)".into(),
            )),
            Some(Hold::Read(n)) => {
                set_hold(key, Some(Hold::Read(n + 1)));
                Ok(ReadGuard { key, guard: None })
            }
            None => {
                let guard = self.lock.read().unwrap_or_else(|e| e.into_inner());
                set_hold(key, Some(Hold::Read(1)));
                Ok(ReadGuard {
                    key,
                    guard: Some(guard),
                })
            }
        }
    }

    /// Takes the lock exclusively (a transaction). Refused while this
    /// thread reads or already runs a transaction on this lock.
    pub fn write(&self) -> Result<WriteGuard<'_, T>> {
        let key = self.key();
        match hold_of(key) {
            Some(Hold::Write) => Err(Error::Internal(
                "a transaction begun inside a transaction".into(),
            )),
            Some(Hold::Read(_)) => Err(Error::Internal(
                "a transaction begun while holding the metadata read guard".into(),
            )),
            None => {
                let guard = self.lock.write().unwrap_or_else(|e| e.into_inner());
                set_hold(key, Some(Hold::Write));
                Ok(WriteGuard { key, guard })
            }
        }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        match hold_of(self.key) {
            Some(Hold::Read(n)) if n > 1 => set_hold(self.key, Some(Hold::Read(n - 1))),
            _ => set_hold(self.key, None),
        }
        // The std guard (if this is the outer hold) drops after this.
        let _ = self.guard.take();
    }
}

impl<T> WriteGuard<'_, T> {
    /// The state under the lock.
    pub fn state(&self) -> &T {
        &self.guard
    }

    /// The state under the lock, to change.
    pub fn state_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        set_hold(self.key, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn stripes_are_taken_in_order_once() {
        let locks = InodeLocks::default();
        // 5 and 5 + STRIPES share a stripe; 12 is listed twice.
        let s = INODE_LOCK_STRIPES as u32;
        let g = locks.write_many(&[12, 5 + s, 5, 12, 3].map(InodeNo));
        assert_eq!(g._g.len(), 3);
        drop(g);
        // Two threads locking the same pair in opposite orders finish.
        let locks = Arc::new(InodeLocks::default());
        let handles: Vec<_> = [[7u32, 900], [900, 7]]
            .map(|p| p.map(InodeNo))
            .into_iter()
            .map(|pair| {
                let locks = locks.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let _g = locks.write_many(&pair);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn misuse_is_refused_not_deadlocked() {
        let lock = ChangeLock::new(());
        let r = lock.read().unwrap();
        // Nested read while a writer waits would hang with a plain RwLock.
        let r2 = lock.read().unwrap();
        assert!(matches!(lock.write(), Err(Error::Internal(_))));
        drop(r2);
        drop(r);
        let w = lock.write().unwrap();
        assert!(matches!(lock.read(), Err(Error::Internal(_))));
        assert!(matches!(lock.write(), Err(Error::Internal(_))));
        drop(w);
        // Another lock on the same thread is independent.
        let other = ChangeLock::new(());
        let _w = lock.write().unwrap();
        let _r = other.read().unwrap();
    }

    #[test]
    fn a_writer_excludes_readers() {
        let lock = Arc::new(ChangeLock::new(0u32));
        let mut w = lock.write().unwrap();
        let seen = Arc::new(AtomicBool::new(false));
        let t = {
            let (lock, seen) = (lock.clone(), seen.clone());
            std::thread::spawn(move || {
                let _r = lock.read().unwrap();
                seen.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !seen.load(Ordering::SeqCst),
            "reader got in during a transaction"
        );
        *w.state_mut() = 1;
        drop(w);
        t.join().unwrap();
        assert!(seen.load(Ordering::SeqCst));
    }
}
