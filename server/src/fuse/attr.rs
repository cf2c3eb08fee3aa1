//! Translation between the engine's view of an inode and FUSE's: node ids,
//! attributes, file types, device numbers and timestamps.
//!
//! Node ids are ext4 inode numbers, except that the root (ext4 inode 2)
//! must be FUSE's `FUSE_ROOT_ID` (1). So ext4 2 ↔ FUSE 1, and neither
//! ext4 inode 1 (the bad-blocks inode) nor FUSE node 2 ever maps to
//! anything: a directory entry naming inode 1 is corruption, and a request
//! for node 2 is stale (we never hand it out).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use fsvc_ext4::{FileKind, InodeNo, Stat, Timestamp, ROOT_INO};

/// The FUSE node id for ext4 inode `ino`, or `None` if it must not be exposed.
pub(crate) fn fuse_ino(ino: InodeNo) -> Option<INodeNo> {
    match ino {
        InodeNo(0) | InodeNo::BAD_BLOCKS => None,
        ROOT_INO => Some(INodeNo::ROOT),
        n => Some(INodeNo(u64::from(n))),
    }
}

/// The ext4 inode for FUSE node id `node`, or `None` if we never issued it.
pub(crate) fn ext4_ino(node: INodeNo) -> Option<InodeNo> {
    match node.0 {
        1 => Some(ROOT_INO),
        0 | 2 => None,
        n => u32::try_from(n).ok().map(InodeNo),
    }
}

/// The FUSE file type of an engine kind.
pub(crate) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

/// Encodes (major, minor) the way the kernel decodes `fuse_attr.rdev`
/// (`new_decode_dev`): minor's low 8 bits, then 12 bits of major, then
/// minor's upper 12 bits. Parts too wide for that format are truncated, as
/// the kernel's `new_encode_dev` would.
pub(crate) fn encode_rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & 0xfff00) << 12)
}

/// A point in time; out-of-range values saturate at the epoch's side they lie on.
pub(crate) fn system_time(t: Timestamp) -> SystemTime {
    let nsec = Duration::from_nanos(u64::from(t.nsec.min(999_999_999)));
    if t.sec >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(t.sec.unsigned_abs()) + nsec)
            .unwrap_or(UNIX_EPOCH)
    } else {
        // sec is negative and nsec counts forward from it.
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(t.sec.unsigned_abs()))
            .and_then(|base| base.checked_add(nsec))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// The ext4 timestamp of a point in time (the inverse of [`system_time`];
/// times before the epoch count back in whole seconds with a forward
/// nanosecond part, as ext4 stores them).
pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: d.subsec_nanos(),
        },
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => Timestamp {
                    sec: -secs,
                    nsec: 0,
                },
                n => Timestamp {
                    sec: -secs - 1,
                    nsec: 1_000_000_000 - n,
                },
            }
        }
    }
}

/// FUSE attributes of `st` under node id `node`, with `blksize` the fs block size.
pub(crate) fn file_attr(node: INodeNo, st: &Stat, blksize: u32) -> FileAttr {
    let rdev = match st.kind {
        FileKind::CharDev | FileKind::BlockDev => encode_rdev(st.rdev.0, st.rdev.1),
        _ => 0,
    };
    FileAttr {
        ino: node,
        size: st.size,
        blocks: st.blocks,
        atime: system_time(st.atime),
        mtime: system_time(st.mtime),
        ctime: system_time(st.ctime),
        crtime: system_time(st.crtime),
        kind: file_type(st.kind),
        perm: st.perm & 0o7777,
        nlink: st.nlink,
        uid: st.uid,
        gid: st.gid,
        rdev,
        blksize,
        flags: 0,
    }
}

/// Attributes for an entry whose inode could not be read: enough for a
/// directory listing (node id and type), nothing else. Sent with a zero TTL
/// so the kernel asks again (and gets the error) on any real use.
pub(crate) fn placeholder_attr(node: INodeNo, kind: FileKind, blksize: u32) -> FileAttr {
    FileAttr {
        ino: node,
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: file_type(kind),
        perm: 0,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        let table = [
            (2u32, Some(1u64)),
            (1, None),
            (0, None),
            (11, Some(11)),
            (u32::MAX, Some(u32::MAX as u64)),
        ];
        for (ext4, fuse) in table {
            assert_eq!(fuse_ino(InodeNo(ext4)).map(|n| n.0), fuse, "ext4 {ext4}");
            if let Some(f) = fuse {
                assert_eq!(
                    ext4_ino(INodeNo(f)),
                    Some(InodeNo(ext4)),
                    "round trip {ext4}"
                );
            }
        }
        for bad in [0u64, 2, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(ext4_ino(INodeNo(bad)), None, "fuse {bad}");
        }
    }

    #[test]
    fn rdev_matches_the_kernel_encoding() {
        // (major, minor, new_encode_dev value): from the kernel's formula
        // (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12).
        let table = [
            (1u32, 3u32, 0x0103u32), // /dev/null
            (8, 0, 0x0800),          // sda
            (259, 1, 0x10301),       // nvme0n1p1
            (4, 300, 0x2c | (4 << 8) | (0x100 << 12)),
            (0xfff, 0xfffff, 0xffff_ffff),
        ];
        for (maj, min, want) in table {
            let enc = encode_rdev(maj, min);
            assert_eq!(enc, want, "{maj}:{min}");
            // And libc decodes the same pair back (glibc also understands
            // this 32-bit layout in its major()/minor()).
            let dev = u64::from(enc);
            assert_eq!((libc::major(dev), libc::minor(dev)), (maj, min));
        }
    }

    #[test]
    fn timestamps() {
        let t = |sec, nsec| system_time(Timestamp { sec, nsec });
        let d = |st: SystemTime| match st.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i128, d.subsec_nanos()),
            Err(e) => (-(e.duration().as_nanos() as i128), 0),
        };
        assert_eq!(d(t(0, 0)), (0, 0));
        assert_eq!(
            d(t(1_700_000_000, 123_456_789)),
            (1_700_000_000, 123_456_789)
        );
        // Past 2038 (extended epoch bits).
        assert_eq!(d(t(4_000_000_000, 1)), (4_000_000_000, 1));
        // Before 1970: -1 s + 0.5 s = -0.5 s.
        assert_eq!(d(t(-1, 500_000_000)), (-500_000_000, 0));
        assert_eq!(d(t(-2_147_483_648, 0)), (-2_147_483_648_000_000_000, 0));
        // And back: every representable time round-trips.
        for (sec, nsec) in [
            (0i64, 0u32),
            (1_700_000_000, 123_456_789),
            (4_000_000_000, 1),
            (-1, 500_000_000),
            (-1, 0),
            (-2_147_483_648, 999_999_999),
        ] {
            let ts = Timestamp { sec, nsec };
            assert_eq!(timestamp(system_time(ts)), ts, "{sec}.{nsec}");
        }
    }
}
