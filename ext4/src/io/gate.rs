//! The access gate: a condition the unixfd channel checks before every
//! access to the device.
//!
//! The engine crate knows nothing of the sandbox; the server builds a gate
//! from its sandbox (`fsvc_server::sandbox::gate()`, open only once the
//! sandbox has been fully entered) and hands it to
//! [`UnixFdChannel::new`](super::UnixFdChannel::new). Tests and offline tools
//! that read a trusted image pass [`AccessGate::open`].
//!
//! Invariant: while [`AccessGate::is_open`] is false the channel issues no
//! read or write syscall on the device ([`IoError::NotSandboxed`](super::IoError::NotSandboxed)).
//! A gate is only ever consulted, never opened, by the channel: whoever
//! built it decides when it opens.

use std::fmt;
use std::sync::Arc;

/// The condition under which a channel may touch its device.
#[derive(Clone)]
pub struct AccessGate {
    /// `None`: always open.
    cond: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl AccessGate {
    /// A gate that is always open: the channel never refuses for this reason.
    pub fn open() -> AccessGate {
        AccessGate { cond: None }
    }

    /// A gate that is open exactly when `cond` returns true. `cond` is called
    /// before every device access, so it must be cheap (an atomic load).
    pub fn until(cond: impl Fn() -> bool + Send + Sync + 'static) -> AccessGate {
        AccessGate {
            cond: Some(Arc::new(cond)),
        }
    }

    /// Whether the channel may touch the device now.
    pub fn is_open(&self) -> bool {
        self.cond.as_ref().is_none_or(|cond| cond())
    }
}

impl fmt::Debug for AccessGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cond {
            None => f.write_str("AccessGate(always open)"),
            Some(_) => write!(f, "AccessGate(conditional, open now: {})", self.is_open()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn open_and_conditional_gates() {
        assert!(AccessGate::open().is_open());
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let gate = AccessGate::until(move || f.load(Ordering::SeqCst));
        let copy = gate.clone();
        assert!(!gate.is_open() && !copy.is_open());
        flag.store(true, Ordering::SeqCst);
        assert!(
            gate.is_open() && copy.is_open(),
            "clones share the condition"
        );
    }
}
