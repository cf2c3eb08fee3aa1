//! Splitting `-o` options three ways: VFS flags the helper applies itself as
//! mount attributes (or superblock flags), mount(8)-only words that mean
//! nothing to a filesystem (dropped), and filesystem options that go to the
//! server verbatim, which refuses unknown ones by name.
//!
//! The VFS flags that change what the server itself must do are applied
//! *and* forwarded ([`FORWARDED`]): the atime mode (FUSE leaves atime
//! updates to the server) and `sync`/`dirsync`/`lazytime` (durability is
//! the server's: the kernel's flags do not reach a FUSE server). They go in
//! the order given, so the server's "later wins" agrees with ours.
//!
//! Pure: no IO. Later words win over earlier ones, as with mount(8).

use crate::sys::{
    MOUNT_ATTR_ATIME_MASK, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME,
};

/// Superblock flags (not per-mount attributes) the helper sets through
/// `fsconfig(FSCONFIG_SET_FLAG)` or the `mount(2)` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SbFlags {
    /// `sync`: synchronous writes.
    pub sync: bool,
    /// `dirsync`: synchronous directory changes.
    pub dirsync: bool,
    /// `lazytime`: timestamps kept in memory.
    pub lazytime: bool,
}

/// The result of splitting an option string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitOptions {
    /// `MOUNT_ATTR_*` bits to set on the mount.
    pub mount_attrs: u64,
    /// Superblock flags.
    pub sb_flags: SbFlags,
    /// `ro` was asked (last of `ro`/`rw` wins).
    pub read_only: bool,
    /// Options for the server, comma-separated, in the order given.
    pub fs_options: String,
}

/// An option the helper refuses itself (not a filesystem option).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(pub String);

/// Words mount(8) and fstab use that mean nothing to the filesystem.
fn is_mount8_only(word: &str) -> bool {
    matches!(
        word,
        "defaults"
            | "auto"
            | "noauto"
            | "nofail"
            | "_netdev"
            | "user"
            | "users"
            | "nouser"
            | "owner"
            | "noowner"
            | "group"
            | "nogroup"
            | "loop"
            | "silent"
            | "loud"
    ) || word.starts_with("x-")
        || word.starts_with("comment=")
        || word.starts_with("user=")
        || word.starts_with("helper=")
}

/// VFS flags the server must know as well as the mount (see the module
/// documentation).
pub const FORWARDED: &[&str] = &[
    "sync",
    "async",
    "dirsync",
    "lazytime",
    "nolazytime",
    "noatime",
    "atime",
    "relatime",
    "norelatime",
    "strictatime",
    "nodiratime",
    "diratime",
];

/// Splits a comma-separated option string.
pub fn split(options: &str) -> Result<SplitOptions, OptionError> {
    let mut out = SplitOptions::default();
    let mut atime = MOUNT_ATTR_RELATIME;
    let mut fs: Vec<&str> = Vec::new();
    for word in options.split(',').filter(|w| !w.is_empty()) {
        let (set, clear) = match word {
            "ro" => {
                out.read_only = true;
                (MOUNT_ATTR_RDONLY, 0)
            }
            "rw" => {
                out.read_only = false;
                (0, MOUNT_ATTR_RDONLY)
            }
            "nosuid" => (MOUNT_ATTR_NOSUID, 0),
            "suid" => (0, MOUNT_ATTR_NOSUID),
            "nodev" => (MOUNT_ATTR_NODEV, 0),
            "dev" => (0, MOUNT_ATTR_NODEV),
            "noexec" => (MOUNT_ATTR_NOEXEC, 0),
            "exec" => (0, MOUNT_ATTR_NOEXEC),
            "nosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
            "symfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
            "nodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
            "diratime" => (0, MOUNT_ATTR_NODIRATIME),
            // The atime mode is one value in a mask, not independent bits.
            "noatime" => {
                atime = MOUNT_ATTR_NOATIME;
                (0, 0)
            }
            "relatime" | "atime" => {
                atime = MOUNT_ATTR_RELATIME;
                (0, 0)
            }
            "strictatime" | "norelatime" => {
                atime = MOUNT_ATTR_STRICTATIME;
                (0, 0)
            }
            "sync" => {
                out.sb_flags.sync = true;
                (0, 0)
            }
            "async" => {
                out.sb_flags.sync = false;
                (0, 0)
            }
            "dirsync" => {
                out.sb_flags.dirsync = true;
                (0, 0)
            }
            "lazytime" => {
                out.sb_flags.lazytime = true;
                (0, 0)
            }
            "nolazytime" => {
                out.sb_flags.lazytime = false;
                (0, 0)
            }
            "remount" | "bind" | "rbind" | "move" => {
                return Err(OptionError(format!(
                    "'{word}' is not supported by fsvc-mount (unmount and mount again)"
                )))
            }
            w if is_mount8_only(w) => (0, 0),
            w => {
                fs.push(w);
                (0, 0)
            }
        };
        out.mount_attrs = (out.mount_attrs | set) & !clear;
        if FORWARDED.contains(&word) {
            fs.push(word);
        }
    }
    out.mount_attrs = (out.mount_attrs & !MOUNT_ATTR_ATIME_MASK) | atime;
    out.fs_options = fs.join(",");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_table() {
        let cases: &[(&str, u64, bool, &str)] = &[
            ("", MOUNT_ATTR_RELATIME, false, ""),
            ("defaults", 0, false, ""),
            ("ro", MOUNT_ATTR_RDONLY, true, ""),
            ("ro,rw", 0, false, ""),
            ("rw,ro", MOUNT_ATTR_RDONLY, true, ""),
            ("nosuid,nodev,noexec", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, false, ""),
            ("nosuid,suid", 0, false, ""),
            ("noatime", MOUNT_ATTR_NOATIME, false, "noatime"),
            ("noatime,relatime", MOUNT_ATTR_RELATIME, false, "noatime,relatime"),
            ("strictatime,nodiratime", MOUNT_ATTR_STRICTATIME | MOUNT_ATTR_NODIRATIME, false, "strictatime,nodiratime"),
            ("norelatime", MOUNT_ATTR_STRICTATIME, false, "norelatime"),
            ("ro,sync,commit=5,lazytime", MOUNT_ATTR_RDONLY | MOUNT_ATTR_RELATIME, true, "sync,commit=5,lazytime"),
            ("noauto,nofail,_netdev,user,users,nouser,owner,group,x-systemd.automount,comment=x,user=bob", 0, false, ""),
            ("ro,norecovery,errors=remount-ro,commit=5", MOUNT_ATTR_RDONLY, true, "norecovery,errors=remount-ro,commit=5"),
            ("bogus,noexec", MOUNT_ATTR_NOEXEC, false, "bogus"),
        ];
        for (opts, attrs, ro, fs) in cases {
            let s = split(opts).unwrap_or_else(|e| panic!("{opts}: {e}"));
            assert_eq!(s.mount_attrs, *attrs, "{opts}");
            assert_eq!(s.read_only, *ro, "{opts}");
            assert_eq!(s.fs_options, *fs, "{opts}");
        }
    }

    #[test]
    fn sb_flags_and_refusals() {
        let s = split("sync,dirsync,lazytime").expect("valid");
        assert_eq!(
            s.sb_flags,
            SbFlags {
                sync: true,
                dirsync: true,
                lazytime: true
            }
        );
        let s = split("sync,async,lazytime,nolazytime").expect("valid");
        assert_eq!(s.sb_flags, SbFlags::default());
        for bad in ["remount", "ro,bind", "move"] {
            let e = split(bad).expect_err(bad);
            assert!(e.0.contains("not supported"), "{e}");
        }
    }
}
