//! Message types of both directions. Pure data: no IO, no fds (those travel
//! beside the encoded bytes, see [`crate::wire`]).
//!
//! Invariant: every variant that carries an fd says so in `fd_count`, and the
//! receiver rejects a packet whose fd count differs.

use serde::{Deserialize, Serialize};

/// Oldest protocol version this build speaks.
pub const PROTOCOL_VERSION_MIN: u32 = 2;
/// Newest protocol version this build speaks.
pub const PROTOCOL_VERSION_MAX: u32 = 2;

/// Largest encoded message, in bytes. Paths are bounded by PATH_MAX (4096)
/// and option strings by the kernel's page-sized mount data, so 16 KiB
/// leaves room for every legitimate message.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024;

/// Largest path (source, mountpoint, file request) accepted in a message.
pub const MAX_PATH_LEN: usize = 4096;

/// Largest option string accepted in a message.
pub const MAX_OPTIONS_LEN: usize = 4096;

/// Largest human-readable reason accepted in a message.
pub const MAX_REASON_LEN: usize = 1024;

/// The filesystem type a mount asks for (`-t service.ext4` and so on).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    /// ext2 (no journal).
    Ext2,
    /// ext3 (journal, no extents).
    Ext3,
    /// ext4.
    Ext4,
}

impl FsType {
    /// The name used in `-t service.<name>`, socket paths and the FUSE subtype.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
        }
    }

    /// Parses "ext2", "ext3" or "ext4".
    pub fn from_name(name: &str) -> Option<FsType> {
        match name {
            "ext2" => Some(FsType::Ext2),
            "ext3" => Some(FsType::Ext3),
            "ext4" => Some(FsType::Ext4),
            _ => None,
        }
    }
}

/// Who asked for the mount, as the helper established it (real ids of the
/// process that ran the helper).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Real uid of the caller.
    pub uid: u32,
    /// Real gid of the caller.
    pub gid: u32,
    /// Supplementary groups of the caller.
    pub groups: Vec<u32>,
}

/// Access the server wants on a file it requests.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open read-only.
    ReadOnly,
    /// Open read-write.
    ReadWrite,
}

/// What the helper tells the server about the mount, after the versions agree.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Who asked.
    pub caller: Caller,
    /// The filesystem type asked for.
    pub fs_type: FsType,
    /// The source as named on the command line (the only path the server may request).
    pub source: String,
    /// The mountpoint as named on the command line (informational; the helper pinned it).
    pub mountpoint: String,
    /// Filesystem options for the server to validate (VFS flags already split off
    /// by the helper), comma-separated as the user wrote them.
    pub fs_options: String,
    /// The mount was asked read-only (`-o ro`).
    pub read_only: bool,
    /// The caller may have `allow_other` (root always; others by policy).
    pub allow_other_permitted: bool,
    /// Verbose logging was asked (`-v`).
    pub verbose: bool,
    /// The helper will idmap the mount into a user namespace (a detached
    /// mount, issue 11): the server opts into `FUSE_ALLOW_IDMAP`. Added in
    /// protocol version 2.
    pub idmap: bool,
}

/// A file the helper opened for the server. The fd travels with the message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    /// The helper opened it read-only (either asked so, or fell back).
    pub read_only: bool,
    /// It is a block device (otherwise a regular file image).
    pub block_device: bool,
    /// The fd was opened with O_DIRECT.
    pub direct: bool,
}

/// Why the helper refused a request. `errno` is for programs, `message` for people.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The errno that best describes the failure (EACCES, EROFS, EBUSY, ...).
    pub errno: i32,
    /// One line a person can act on.
    pub message: String,
}

/// What the server asks the helper to mount.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// Shown as the mount source (`fsname=`); the helper uses its own copy of the source.
    pub fs_name: String,
    /// FUSE subtype (the fs type name).
    pub subtype: String,
    /// Mount read-only.
    pub read_only: bool,
    /// Ask the kernel to check permissions (`default_permissions`).
    pub default_permissions: bool,
    /// Let other users in (`allow_other`); refused unless permitted in [`MountInfo`].
    pub allow_other: bool,
}

/// Messages from the helper to the server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum HelperMsg {
    /// Opening: the versions the helper speaks.
    Hello {
        /// Oldest version spoken.
        min_version: u32,
        /// Newest version spoken.
        max_version: u32,
    },
    /// What to mount and for whom.
    MountInfo(MountInfo),
    /// Answer to [`ServerMsg::FileRequest`]; on `Ok` one fd is attached.
    FileReply(Result<FileGrant, Refusal>),
    /// Answer to [`ServerMsg::MountRequest`]; on `Ok` the `/dev/fuse` fd is attached.
    MountReply(Result<(), Refusal>),
}

impl HelperMsg {
    /// Number of fds that must accompany this message.
    pub fn fd_count(&self) -> usize {
        match self {
            HelperMsg::FileReply(Ok(_)) | HelperMsg::MountReply(Ok(())) => 1,
            _ => 0,
        }
    }
}

/// Messages from the server to the helper.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    /// The version the server chose from the overlap of both ranges.
    Hello {
        /// The chosen version.
        version: u32,
    },
    /// Please open this path with this access.
    FileRequest {
        /// Must equal [`MountInfo::source`].
        path: String,
        /// Access wanted.
        access: Access,
    },
    /// No more file requests will come.
    FilesDone,
    /// Please mount.
    MountRequest(MountRequest),
    /// The end: status 0 means mounted and serving; otherwise the reason says why not.
    /// With status 0 the reason is `"mounted"`, or a note the helper shows the person
    /// mounting (e.g. that a write-protected source was mounted read-only).
    Goodbye {
        /// 0 on success, an errno otherwise.
        status: i32,
        /// One line a person can act on.
        reason: String,
    },
}

impl ServerMsg {
    /// Number of fds that must accompany this message (none travel this way).
    pub fn fd_count(&self) -> usize {
        0
    }
}

/// Picks the newest version in both ranges, if they overlap.
pub fn negotiate(their_min: u32, their_max: u32) -> Option<u32> {
    let lo = their_min.max(PROTOCOL_VERSION_MIN);
    let hi = their_max.min(PROTOCOL_VERSION_MAX);
    (lo <= hi).then_some(hi)
}
