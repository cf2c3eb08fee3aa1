//! The commit interval (`commit=SECONDS`, default 5 s): a thread of the
//! engine that commits the journal's running transaction (or, without a
//! journal, writes dirty blocks home and flushes) once its last commit is
//! older than the interval, so that a change not synced is durable after
//! at most about one interval and a quarter, as the kernel's jbd2 thread
//! makes it.
//!
//! Decision: the engine owns the timer (the server only starts it after
//! the mount and stops it before `Fs::unmount`), so every user of the
//! engine gets the same behaviour and the FUSE adapter needs no clock.
//! The thread exists only on read-write mounts and is started after the
//! sandbox is in place (threads inherit it).
//!
//! Invariants: the thread holds an `Arc<Fs>` and is joined when the
//! [`Committer`] is dropped, so it never runs past the unmount; it takes
//! the same locks as `sync` (the journal lock, then the change lock) and no
//! others; an error is recorded by the engine's error policy and stays
//! pending for the next sync, never lost.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fs::Fs;

/// The kernel's default commit interval (`JBD2_DEFAULT_MAX_COMMIT_AGE`).
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// The thread looks this many times per interval whether a commit is due.
const CHECKS_PER_INTERVAL: u32 = 4;
/// Shortest pause between two looks (a tiny `commit=` must not spin).
const MIN_CHECK: Duration = Duration::from_millis(10);

/// The running commit thread (see the module docs); stopped and joined on
/// drop.
#[derive(Debug)]
pub struct Committer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the commit thread for `fs` with its `commit_interval` (or
    /// [`DEFAULT_COMMIT_INTERVAL`]). `None` on a read-only filesystem (there
    /// is nothing to commit) or when the thread cannot be created (then
    /// changes wait for the next sync or unmount; the caller logs it).
    pub fn start(fs: Arc<Fs>) -> std::io::Result<Option<Committer>> {
        if fs.is_read_only() {
            return Ok(None);
        }
        let interval = fs
            .options()
            .commit_interval
            .unwrap_or(DEFAULT_COMMIT_INTERVAL);
        let check = (interval / CHECKS_PER_INTERVAL).max(MIN_CHECK);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fsvc-commit".into())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let (guard, _) = cv
                        .wait_timeout(stopped, check)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if *stopped || fs.is_read_only() {
                        return;
                    }
                    // An error is recorded (fail) and kept for the next sync.
                    let _ = fs.commit_if_due(interval);
                }
            })?;
        Ok(Some(Committer {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::num::InodeNo;
    use crate::testfs::Image;
    use crate::tx::Creds;
    use crate::OpenOptions;
    use std::time::Instant;

    /// Waits (up to a generous deadline; no timing is asserted) until
    /// `done` holds.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done()
    }

    fn set_root_uid(fs: &Fs, uid: u32) {
        let mut tx = fs.begin(Creds::ROOT).unwrap();
        let mut root = tx.inode(InodeNo::ROOT).unwrap();
        root.uid = uid;
        tx.write_inode(&root).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn a_change_not_synced_is_committed_by_the_interval() {
        for args in [&["-b", "1024"][..], &["-t", "ext2"]] {
            let Some(img) = Image::mkfs(args, "8M") else {
                return;
            };
            let opts = OpenOptions {
                commit_interval: Some(Duration::from_millis(100)),
                ..OpenOptions::default()
            };
            let fs = Arc::new(Fs::open(img.mem.clone(), &opts).unwrap());
            let committer = Committer::start(Arc::clone(&fs)).unwrap().unwrap();
            set_root_uid(&fs, 777);
            // Durable without a sync: in the log (journal) or at home.
            let durable = || {
                let bytes = img.bytes();
                let mem = Arc::new(crate::io::mem::MemChannel::new(bytes));
                let io: Arc<dyn crate::io::IoChannel> = mem.clone();
                crate::journal::recover(&io).unwrap();
                let ro = Fs::open(
                    mem,
                    &OpenOptions {
                        read_only: true,
                        ..OpenOptions::default()
                    },
                )
                .unwrap();
                ro.inode(InodeNo::ROOT).unwrap().uid == 777
            };
            assert!(eventually(durable), "{args:?}: never committed");
            drop(committer);
            fs.unmount().unwrap();
            img.fsck_clean();
        }
    }

    #[test]
    fn read_only_mounts_get_no_thread() {
        let Some(img) = Image::mkfs(&["-b", "1024"], "8M") else {
            return;
        };
        let fs = Arc::new(img.open_ro());
        assert!(Committer::start(fs).unwrap().is_none());
    }
}
