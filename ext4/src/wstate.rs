//! What the write side of `Fs` keeps beside the read side: the mode
//! (read-only, read-write, turned read-only by an error, stopped), the
//! `errors=` behaviour, the system zones, the lock table, and, under the
//! change lock, the state only transactions change ([`WriteState`]).
//!
//! Invariants: `WriteState` is changed only by a transaction's commit (or
//! by the engine's own transactions: mount, sync, unmount, error records),
//! always under the change lock held exclusively; its free counts equal
//! the sums of the group descriptors' counts at every commit.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use crate::locks::{ChangeLock, InodeLocks};
use crate::super_fields::{errors, SuperFields};
pub use crate::types::ErrorBehavior;
use crate::zones::SystemZones;

/// How the filesystem is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Opened read-only: nothing is ever written.
    ReadOnly = 0,
    /// Read-write.
    ReadWrite = 1,
    /// Read-write until an error with `errors=remount-ro`: every later
    /// change is refused (EROFS); what was committed before is still
    /// written home at sync and unmount.
    ErrorsReadOnly = 2,
    /// Stopped by an error with `errors=panic`: nothing more is served or
    /// written.
    Stopped = 3,
    /// Unmounted: the superblock says clean; nothing more is written.
    Unmounted = 4,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::ReadWrite,
            2 => Mode::ErrorsReadOnly,
            3 => Mode::Stopped,
            4 => Mode::Unmounted,
            _ => Mode::ReadOnly,
        }
    }
}

impl ErrorBehavior {
    /// The behaviour `s_errors` asks for (continue when unset or unknown,
    /// as the kernel defaults).
    pub fn from_superblock(s_errors: u16) -> ErrorBehavior {
        match s_errors {
            errors::REMOUNT_RO => ErrorBehavior::RemountRo,
            errors::PANIC => ErrorBehavior::Panic,
            _ => ErrorBehavior::Continue,
        }
    }
}

/// The state only transactions change (behind the change lock).
#[derive(Debug)]
pub struct WriteState {
    /// The superblock's changing fields, as last committed (free counts
    /// exact).
    pub(crate) sbf: SuperFields,
    /// `s_state` when mounted, written back at unmount (plus the error bit
    /// if an error was recorded meanwhile), as the kernel's `s_mount_state`.
    pub(crate) mount_state: u16,
    /// Bytes written to the device when the filesystem was opened, for
    /// `s_kbytes_written`.
    pub(crate) kbytes_at_open: u64,
    /// Allocator hints and verification marks (never restored on abort:
    /// they stay true whatever a transaction does).
    pub(crate) alloc: crate::alloc_state::AllocState,
    /// The running journal transaction (`None` without a journal, before
    /// it is opened and after it is closed at unmount).
    pub(crate) journal: Option<crate::journaled::Running>,
}

/// The write side of `Fs`.
#[derive(Debug)]
pub(crate) struct WriteSide {
    pub(crate) mode: AtomicU8,
    pub(crate) errors: ErrorBehavior,
    pub(crate) zones: SystemZones,
    pub(crate) change: ChangeLock<WriteState>,
    pub(crate) inode_locks: InodeLocks,
    /// The journal lock: the log writer and what the log holds (see
    /// `journaled.rs`; taken before the change lock, never while holding it).
    pub(crate) journal: crate::journaled::JournalLock,
    /// Set while `fail` records an error (its commit must not start a
    /// journal commit of its own).
    pub(crate) failing: std::sync::atomic::AtomicBool,
    /// A copy of the committed superblock fields (a leaf lock), for
    /// readers that must not take the change lock.
    published: Mutex<SuperFields>,
}

impl WriteSide {
    pub(crate) fn new(state: WriteState, errors: ErrorBehavior, zones: SystemZones) -> WriteSide {
        WriteSide {
            mode: AtomicU8::new(Mode::ReadOnly as u8),
            errors,
            zones,
            published: Mutex::new(state.sbf.clone()),
            change: ChangeLock::new(state),
            inode_locks: InodeLocks::default(),
            journal: Default::default(),
            failing: Default::default(),
        }
    }

    /// The committed superblock fields.
    pub(crate) fn published(&self) -> SuperFields {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes `f` as the committed superblock fields (commit only).
    pub(crate) fn publish(&self, f: &SuperFields) {
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = f.clone();
    }

    pub(crate) fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }

    pub(crate) fn set_mode(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }
}
