//! The kernel's mount table as the helper reads it
//! (`/proc/self/mountinfo`, the fields used here), the mount id of an fd,
//! and the octal escapes (`\040` for a space) that mountinfo, fstab and
//! libmount's utab share.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The FUSE subtype prefix of every fsvc mount (`fuse.fsvc.ext4`).
pub const FSVC_TYPE_PREFIX: &str = "fuse.fsvc.";

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount id.
    pub id: u64,
    /// The superblock's device number (`major:minor`); for FUSE, the
    /// connection's.
    pub dev: (u32, u32),
    /// Where it is mounted.
    pub mountpoint: String,
    /// Filesystem type (`fuse.fsvc.ext4`).
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Superblock options (`user_id=...`).
    pub super_options: String,
}

impl MountEntry {
    /// Made by fsvc.
    pub fn is_fsvc(&self) -> bool {
        self.fstype.starts_with(FSVC_TYPE_PREFIX)
    }

    /// The FUSE `user_id=` (who mounted it).
    pub fn user_id(&self) -> Option<u32> {
        self.super_options
            .split(',')
            .find_map(|o| o.strip_prefix("user_id="))
            .and_then(|v| v.parse().ok())
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (major, minor) = l.get(2)?.split_once(':')?;
            Some(MountEntry {
                id: l.first()?.parse().ok()?,
                dev: (major.parse().ok()?, minor.parse().ok()?),
                mountpoint: unescape(l.get(4)?),
                fstype: unescape(r.first()?),
                source: unescape(r.get(1)?),
                super_options: unescape(r.get(2).copied().unwrap_or("")),
            })
        })
        .collect()
}

/// Reads this process's mount table.
pub fn read_mountinfo() -> Result<Vec<MountEntry>, String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))
}

/// Escapes as mountinfo and libmount do (`mangle`): space, tab, newline
/// and backslash become `\\ooo`, so a field never holds a separator.
pub fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The mount id of the mount `fd` is on (`mnt_id:` in its fdinfo).
pub fn mount_id(fd: BorrowedFd<'_>) -> Result<u64, String> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|e| format!("cannot read fdinfo: {e}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no mnt_id in fdinfo".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
95 22 0:52 / /tmp/my\\040mnt rw,nosuid,nodev,relatime shared:50 - fuse.fsvc.ext4 /home/u/a\\040b.img ro,user_id=1000,group_id=1000,default_permissions
96 22 0:53 / /mnt rw - fuse.sshfs host: rw,user_id=0,group_id=0
garbage line
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].id, 95);
        assert_eq!(m[1].dev, (0, 52));
        assert_eq!(m[0].dev, (8, 1));
        assert_eq!(m[1].mountpoint, "/tmp/my mnt");
        assert_eq!(m[1].source, "/home/u/a b.img");
        assert!(m[1].is_fsvc() && !m[2].is_fsvc() && !m[0].is_fsvc());
        assert_eq!(m[1].user_id(), Some(1000));
        assert_eq!(m[2].user_id(), Some(0));
        assert_eq!(m[0].user_id(), None);
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn escapes_round_trip() {
        let cases = [
            ("/plain/path", "/plain/path"),
            ("/my mnt", "/my\\040mnt"),
            ("a\tb\nc", "a\\011b\\012c"),
            ("back\\slash", "back\\134slash"),
            ("/ünï code", "/ünï\\040code"),
        ];
        for (raw, escaped) in cases {
            assert_eq!(escape(raw), escaped, "{raw:?}");
            assert_eq!(unescape(escaped), raw, "{escaped:?}");
        }
    }
}
