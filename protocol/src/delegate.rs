//! Handing a detached mount to whoever asked for it (issue 11): the
//! message that carries the mount fd (from `fsmount`, attached nowhere) to
//! the caller, sent by `fsvc-mount --detached` and by the mount service.
//!
//! One packet, postcard-encoded like every message of this crate, on an
//! `AF_UNIX` socket the caller provides. [`Delivery::Mounted`] carries
//! exactly one fd (the mount), [`Delivery::Refused`] none; the receiver
//! checks the count as for the helper/server messages
//! ([`crate::wire::recv_msg`]). The fd is the caller's from then on: when
//! they close it without attaching it (`move_mount`), the kernel destroys
//! the mount and its server exits, as at an unmount.

use serde::{Deserialize, Serialize};

use crate::messages::{FsType, Refusal};

/// What a detached mount is: said beside its fd.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DetachedMount {
    /// The source as the mount shows it (mountinfo's source field once attached).
    pub source: String,
    /// The filesystem type.
    pub fs_type: FsType,
    /// The mount is read-only (asked so, or the source could not be written).
    pub read_only: bool,
    /// Why it is read-only when that was not asked for, else empty.
    pub note: String,
}

/// The answer to a request for a detached mount.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Mounted: the mount fd travels with this message.
    Mounted(DetachedMount),
    /// Not mounted: an errno for programs and one line for people.
    Refused(Refusal),
}

impl Delivery {
    /// Number of fds that must accompany this message.
    pub fn fd_count(&self) -> usize {
        match self {
            Delivery::Mounted(_) => 1,
            Delivery::Refused(_) => 0,
        }
    }
}
