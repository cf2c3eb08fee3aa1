//! When changes become durable: the periodic commit (`commit=`, default 5
//! seconds, as the kernel's ext4), `sync` and `dirsync` mounts, and the
//! write error a background sync found, kept for the next `fsync`.
//!
//! fuser 0.18 has no SYNCFS request, so `sync(1)` never reaches the server:
//! without this thread a change that nobody fsyncs would stay in the
//! engine's write-back cache until unmount. [`Committer`] wakes every
//! interval and, when something changed since the last sync ([`Changes`]),
//! calls the engine's sync (superblock counts, writeback, device flush).
//!
//! Invariants:
//! - every request that changed the filesystem marks [`Changes`] after its
//!   engine call (success or not: a failed operation may still have
//!   recorded an error in the superblock), so a change is made durable at
//!   most one interval after it returned;
//! - an error a background sync gets is not lost: the engine hands a write
//!   error out once (`Fs::sync` takes it), so the committer keeps it and
//!   the next `fsync` reports it (EIO), as the kernel reports a writeback
//!   error to the next fsync;
//! - the thread ends when the session ends ([`Committer::stop`]), before
//!   the server's own end-of-mount work (`Fs::unmount`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::Errno;

use super::backend::Backend;
use super::errno::errno_of;

/// The kernel's default commit interval (`JBD2_DEFAULT_MAX_COMMIT_AGE`).
pub const DEFAULT_COMMIT: Duration = Duration::from_secs(5);

/// What changed since the last sync, and a background sync's error.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pending: AtomicBool,
    error: Mutex<Option<Errno>>,
}

impl Changes {
    /// Something changed (call after the engine call returned).
    pub(crate) fn mark(&self) {
        self.pending.store(true, Ordering::Release);
    }

    /// Whether something changed since the last [`Changes::take`], clearing it.
    pub(crate) fn take(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Keeps the error a background sync got, for the next fsync.
    fn keep_error(&self, e: Errno) {
        let mut g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(e);
    }

    /// The error a background sync got since the last call, if any.
    pub(crate) fn take_error(&self) -> Option<Errno> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// A sync now: clears the pending mark first (a change made while the
    /// sync runs marks it again), and keeps an error for the next fsync.
    /// Returns the engine's verdict.
    pub(crate) fn sync(&self, fs: &dyn Backend) -> fsvc_ext4::Result<()> {
        self.take();
        fs.sync()
    }
}

/// What a [`Committer`] will sync, and how often.
pub(crate) struct CommitPlan {
    pub(crate) fs: Arc<dyn Backend>,
    pub(crate) changes: Arc<Changes>,
    pub(crate) every: Duration,
}

impl std::fmt::Debug for CommitPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitPlan")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// The periodic commit thread of one mount.
#[derive(Debug)]
pub(crate) struct Committer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts syncing `plan.fs` every `plan.every` while `plan.changes`
    /// says something changed.
    pub(crate) fn start(plan: CommitPlan) -> std::io::Result<Committer> {
        let CommitPlan { fs, changes, every } = plan;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fsvc-commit".into())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let (g, _) = cv
                        .wait_timeout(stopped, every)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = g;
                    if *stopped {
                        return;
                    }
                    if !changes.take() {
                        continue;
                    }
                    // Not under the stop lock: a sync may take long, and
                    // `stop` must not wait for more than the one running.
                    drop(stopped);
                    if let Err(e) = fs.sync() {
                        log::error!("periodic commit: {e}");
                        changes.keep_error(errno_of(&e));
                        // Retry at the next interval: the blocks stay dirty.
                        changes.mark();
                    }
                    stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                }
            })?;
        Ok(Committer {
            stop,
            thread: Some(thread),
        })
    }

    /// Ends the thread (after a sync it may be running).
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::tests::fake;
    use std::time::Instant;

    #[test]
    fn syncs_only_after_changes_and_keeps_its_error() {
        let fs = Arc::new(fake());
        let changes = Arc::new(Changes::default());
        let c = Committer::start(CommitPlan {
            fs: fs.clone(),
            changes: changes.clone(),
            every: Duration::from_millis(5),
        })
        .unwrap();
        // Nothing changed: no sync however long we wait for one.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(fs.syncs.load(Ordering::Relaxed), 0);
        changes.mark();
        // The sync comes within some intervals (bounded only by a generous
        // deadline: nothing here depends on how fast the machine is).
        let deadline = Instant::now() + Duration::from_secs(30);
        while fs.syncs.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(fs.syncs.load(Ordering::Relaxed), 1);
        // A failing sync keeps its errno for the next fsync, and retries.
        fs.fail_syncs.store(true, Ordering::Relaxed);
        changes.mark();
        while changes.take_error().is_none() {
            assert!(Instant::now() < deadline, "no background error");
            std::thread::sleep(Duration::from_millis(5));
        }
        fs.fail_syncs.store(false, Ordering::Relaxed);
        let before = fs.syncs.load(Ordering::Relaxed);
        while fs.syncs.load(Ordering::Relaxed) <= before {
            assert!(Instant::now() < deadline, "no retry");
            std::thread::sleep(Duration::from_millis(5));
        }
        c.stop();
        let after = fs.syncs.load(Ordering::Relaxed);
        changes.mark();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            fs.syncs.load(Ordering::Relaxed),
            after,
            "a stopped committer syncs no more"
        );
    }
}
