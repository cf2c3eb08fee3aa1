//! Handing a detached mount to whoever asked for it (issue 11): the
//! message that carries the mount fd (from `fsmount`, attached nowhere) to
//! the caller, sent by `fsvc-mount --detached` and by the mount service,
//! and the request a client sends the mount service (`fsvc-mountd`,
//! modelled on systemd-mountfsd's `MountImage`).
//!
//! The service's conversation: the client connects to its
//! `SOCK_SEQPACKET` socket, sends one [`MountImage`] (with the source fd
//! when [`ImageSource::Fd`], then the user-namespace fd when
//! [`MountImage::user_namespace`]), and receives one [`Delivery`]. The
//! client's identity is the socket's (`SO_PEERCRED`), never the message's.
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

/// The version of [`MountImage`] this build speaks; the service refuses
/// any other (EPROTO), so a client built against a different layout gets
/// an error rather than a misread request.
pub const MOUNT_IMAGE_VERSION: u32 = 1;

/// Where the image comes from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An absolute path, opened by the service as the caller.
    Path(String),
    /// The first fd of the message: an image file or block device the
    /// caller opened (read-only or read-write; a read-only fd makes a
    /// read-only mount).
    Fd,
}

/// A request for a detached mount.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MountImage {
    /// Must be [`MOUNT_IMAGE_VERSION`].
    pub version: u32,
    /// The image.
    pub source: ImageSource,
    /// The filesystem type.
    pub fs_type: FsType,
    /// Mount read-only.
    pub read_only: bool,
    /// Mount options as for `fsvc-mount -o` (may be empty).
    pub options: String,
    /// A user-namespace fd follows (the last fd): the mount is idmapped
    /// into that namespace, which the caller must own.
    pub user_namespace: bool,
}

impl MountImage {
    /// Number of fds that must accompany this message.
    pub fn fd_count(&self) -> usize {
        usize::from(self.source == ImageSource::Fd) + usize::from(self.user_namespace)
    }
}

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
