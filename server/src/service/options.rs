//! Filesystem options (`-o ...` minus the VFS flags the helper applies
//! itself): parsing and validation on the server side.
//!
//! The option string comes from the person who typed the mount command (or
//! from fstab), relayed by the helper. Parsing is pure (no IO) and strict: an
//! unknown option is refused by name, as the kernel refuses "Unknown
//! parameter 'x'", so a typo never silently mounts something other than what
//! was asked. Empty items (`a,,b`) are ignored; a later option overrides an
//! earlier one (`ro,rw` is read-write), as with the kernel.
//!
//! Accepted options and what they mean here ("now" says what the
//! read-only server of today does with it):
//!
//! | option | meaning | now |
//! |---|---|---|
//! | `ro` / `rw` | read-only / read-write (the helper splits them off and says `MountInfo::read_only`) | the mount mode (`crate::mode`) |
//! | `norecovery`, `noload` | do not replay the journal; implies read-only | the mount mode; passed to the engine |
//! | `errors=continue\|remount-ro\|panic` | behaviour on a detected corruption; `panic` ends the server (the mount dies), never the kernel. Default: the superblock's | passed to the engine's open options |
//! | `acl` / `noacl` | expose and enforce POSIX ACLs (default on, as the kernel) | recorded; the FUSE adapter always enables ACLs |
//! | `user_xattr` | compatibility: user xattrs are always on | accepted |
//! | `commit=N` | journal commit interval in seconds (0 = default 5 s); at most [`MAX_COMMIT_SECS`] | passed to the engine's open options |
//! | `cache_size=N[KkMmGgTt]` | bytes of metadata cache (0 = default) | passed to the engine |
//! | `directio` | FUSE direct IO: file data bypasses the page cache | logged as not supported yet |
//! | `allow_other` | let other users in; only when the helper permits it | applied |
//! | `default_permissions` | the kernel checks permissions (always on for fsvc) | accepted |
//! | `sync`/`async`, `dirsync`, `lazytime`/`nolazytime` | write behaviour (the helper also applies them as superblock flags and forwards them here) | recorded in [`MountFlags`] for the adapter (no writes yet) |
//! | `noatime`, `relatime`/`atime`, `strictatime`/`norelatime`, `nodiratime`/`diratime` | when reads update atime (the helper applies them as mount attributes and forwards them: FUSE leaves atime to the server) | recorded in [`MountFlags`] (no writes yet) |
//! | `fakeroot` | (fuse2fs) act as root inside the filesystem: only for a root caller | recorded |
//! | `debug` | verbose server log | applied |
//!
//! VFS flags the helper applies itself and the server has no use for
//! (`nosuid`, `suid`, `nodev`, `dev`, `noexec`, `exec`, `nosymfollow`,
//! `symfollow`, `iversion`, `noiversion`) and
//! mount(8)'s userspace-only options (`defaults`, `auto`, `noauto`,
//! `nofail`, `_netdev`, `user`, `users`, `nouser`, `owner`, `noowner`,
//! `group`, `nogroup`, `loop`, `silent`, `loud`, `x-*`, `comment=*`) are
//! accepted and ignored here, so a helper that
//! forwards one does not break the mount. fuse2fs's `offset=` and
//! `lockfile=` are refused as not supported (rather than unknown).

use fsvc_protocol::MountInfo;

/// `errors=`: the engine's own type, so the option reaches its open
/// options unchanged.
pub use fsvc_ext4::ErrorBehavior;

/// Largest `commit=` accepted, in seconds: the kernel's limit (`INT_MAX / HZ`
/// at HZ=1000).
pub const MAX_COMMIT_SECS: u32 = 2_147_483;

/// Longest option name or value quoted back in an error message.
const MAX_QUOTED: usize = 64;

/// When reading a file updates its atime (FUSE leaves atime to the
/// server: the kernel marks FUSE inodes `S_NOATIME`): the engine's type,
/// which decides and makes the update (`Fs::touch_atime`).
pub use fsvc_ext4::attr_write::AtimeMode;

/// The VFS mount flags that change what the server itself does (the
/// helper applies them to the mount and forwards them as options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    /// `sync`: every change is durable when its request returns.
    pub sync: bool,
    /// `dirsync`: directory changes are durable when their request returns.
    pub dirsync: bool,
    /// `lazytime`: timestamp-only changes may stay in memory (up to a day,
    /// or until the inode is written for another reason).
    pub lazytime: bool,
    /// The atime mode.
    pub atime: AtimeMode,
    /// `nodiratime`: directories' atime is never updated.
    pub nodiratime: bool,
}

impl MountFlags {
    /// The atime rules for `Fs::touch_atime`.
    pub fn atime_policy(&self) -> fsvc_ext4::attr_write::AtimePolicy {
        fsvc_ext4::attr_write::AtimePolicy {
            mode: self.atime,
            nodiratime: self.nodiratime,
        }
    }
}

/// The parsed filesystem options. `Default` is what an empty string gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsOptions {
    /// `ro` (Some(true)) or `rw` (Some(false)), the last one given.
    pub read_only: Option<bool>,
    /// `norecovery`/`noload`: leave the journal alone (implies read-only).
    pub norecovery: bool,
    /// `errors=`; `None` means the superblock's default.
    pub errors: Option<ErrorBehavior>,
    /// POSIX ACLs on (`acl`, the default) or off (`noacl`).
    pub acl: bool,
    /// `commit=N` seconds; `None` or `Some(0)` means the default.
    pub commit_secs: Option<u32>,
    /// `cache_size=` in bytes; `None` means the default.
    pub cache_bytes: Option<u64>,
    /// `directio`.
    pub directio: bool,
    /// `allow_other` was asked.
    pub allow_other: bool,
    /// `sync`, `dirsync`, `lazytime` and the atime mode.
    pub flags: MountFlags,
    /// `fakeroot`.
    pub fakeroot: bool,
    /// `debug`.
    pub debug: bool,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            read_only: None,
            norecovery: false,
            errors: None,
            acl: true,
            commit_secs: None,
            cache_bytes: None,
            directio: false,
            allow_other: false,
            flags: MountFlags::default(),
            fakeroot: false,
            debug: false,
        }
    }
}

/// Why an option string was refused. Messages follow the kernel's wording
/// where one exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    /// Not an option fsvc knows.
    #[error("Unknown parameter '{0}'")]
    Unknown(String),
    /// An option of a peer (fuse2fs) that fsvc does not implement.
    #[error("parameter '{0}' is not supported by fsvc")]
    Unsupported(String),
    /// A flag was given a value (`ro=1`).
    #[error("parameter '{0}' takes no value")]
    NoValueAllowed(String),
    /// An option that needs a value came without one.
    #[error("parameter '{0}' needs a value")]
    MissingValue(String),
    /// The value does not parse.
    #[error("Invalid value for parameter '{name}': '{value}' (expected {expected})")]
    BadValue {
        /// The option.
        name: String,
        /// The value given.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The option is valid but this caller may not use it.
    #[error("parameter '{name}' is not permitted: {why}")]
    NotPermitted {
        /// The option.
        name: &'static str,
        /// Which rule denied it.
        why: &'static str,
    },
}

/// Quotes user input back safely: bounded length, control characters escaped
/// (the message ends up on a terminal and in the kernel log).
fn quote(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= MAX_QUOTED {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn flag(name: &str, value: Option<&str>) -> Result<(), OptionError> {
    match value {
        None => Ok(()),
        Some(_) => Err(OptionError::NoValueAllowed(quote(name))),
    }
}

fn required<'a>(name: &str, value: Option<&'a str>) -> Result<&'a str, OptionError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OptionError::MissingValue(quote(name))),
    }
}

fn bad(name: &str, value: &str, expected: &'static str) -> OptionError {
    OptionError::BadValue {
        name: quote(name),
        value: quote(value),
        expected,
    }
}

/// Parses a decimal number of at most 20 digits (no sign, no spaces).
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `N[KkMmGgTt]` → bytes, with overflow refused.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        b'T' | b't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n = parse_u64(digits)?;
    n.checked_mul(1u64 << shift)
}

impl FsOptions {
    /// Parses a comma-separated option string.
    pub fn parse(s: &str) -> Result<FsOptions, OptionError> {
        let mut o = FsOptions::default();
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item, None),
            };
            match name {
                "ro" => {
                    flag(name, value)?;
                    o.read_only = Some(true);
                }
                "rw" => {
                    flag(name, value)?;
                    o.read_only = Some(false);
                }
                "norecovery" | "noload" => {
                    flag(name, value)?;
                    o.norecovery = true;
                }
                "errors" => {
                    let v = required(name, value)?;
                    o.errors = Some(match v {
                        "continue" => ErrorBehavior::Continue,
                        "remount-ro" => ErrorBehavior::RemountRo,
                        "panic" => ErrorBehavior::Panic,
                        _ => return Err(bad(name, v, "continue, remount-ro or panic")),
                    });
                }
                "acl" => {
                    flag(name, value)?;
                    o.acl = true;
                }
                "noacl" => {
                    flag(name, value)?;
                    o.acl = false;
                }
                "user_xattr" | "default_permissions" => flag(name, value)?,
                "commit" => {
                    let v = required(name, value)?;
                    let n = parse_u64(v)
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|&n| n <= MAX_COMMIT_SECS)
                        .ok_or_else(|| bad(name, v, "seconds, 0 to 2147483"))?;
                    o.commit_secs = Some(n);
                }
                "cache_size" => {
                    let v = required(name, value)?;
                    let n = parse_size(v)
                        .filter(|&n| usize::try_from(n).is_ok())
                        .ok_or_else(|| bad(name, v, "a size such as 64M (suffix K, M, G or T)"))?;
                    o.cache_bytes = Some(n);
                }
                "directio" => {
                    flag(name, value)?;
                    o.directio = true;
                }
                "allow_other" => {
                    flag(name, value)?;
                    o.allow_other = true;
                }
                "sync" | "async" => {
                    flag(name, value)?;
                    o.flags.sync = name == "sync";
                }
                "dirsync" => {
                    flag(name, value)?;
                    o.flags.dirsync = true;
                }
                "lazytime" | "nolazytime" => {
                    flag(name, value)?;
                    o.flags.lazytime = name == "lazytime";
                }
                "noatime" => {
                    flag(name, value)?;
                    o.flags.atime = AtimeMode::NoAtime;
                }
                "relatime" | "atime" => {
                    flag(name, value)?;
                    o.flags.atime = AtimeMode::Relatime;
                }
                "strictatime" | "norelatime" => {
                    flag(name, value)?;
                    o.flags.atime = AtimeMode::Strict;
                }
                "nodiratime" | "diratime" => {
                    flag(name, value)?;
                    o.flags.nodiratime = name == "nodiratime";
                }
                "fakeroot" => {
                    flag(name, value)?;
                    o.fakeroot = true;
                }
                "debug" => {
                    flag(name, value)?;
                    o.debug = true;
                }
                // VFS flags: the helper turns them into mount attributes.
                "nosuid" | "suid" | "nodev" | "dev" | "noexec" | "exec" | "nosymfollow"
                | "symfollow" | "iversion" | "noiversion" => flag(name, value)?,
                // mount(8)'s own options, meaningless to a filesystem.
                "defaults" | "auto" | "noauto" | "nofail" | "_netdev" | "user" | "users"
                | "nouser" | "owner" | "noowner" | "group" | "nogroup" | "loop" | "silent"
                | "loud" => flag(name, value)?,
                "comment" => {}
                _ if name.starts_with("x-") => {}
                "offset" | "lockfile" => return Err(OptionError::Unsupported(quote(name))),
                _ => return Err(OptionError::Unknown(quote(name))),
            }
        }
        Ok(o)
    }

    /// Checks the options against what the helper says this caller may do.
    pub fn check_policy(&self, info: &MountInfo) -> Result<(), OptionError> {
        if self.allow_other && !info.allow_other_permitted {
            return Err(OptionError::NotPermitted {
                name: "allow_other",
                why: "the mount policy does not allow it for this user",
            });
        }
        // fakeroot lets every access through as if made by root: harmless
        // for root, privilege escalation for anyone else.
        if self.fakeroot && info.caller.uid != 0 {
            return Err(OptionError::NotPermitted {
                name: "fakeroot",
                why: "only root may use it",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fsvc_protocol::{Caller, FsType};

    use super::*;

    #[test]
    fn accepted_options() {
        type Check = fn(&FsOptions) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |o| *o == FsOptions::default()),
            (",,", |o| *o == FsOptions::default()),
            ("ro", |o| o.read_only == Some(true)),
            ("rw", |o| o.read_only == Some(false)),
            ("ro,rw", |o| o.read_only == Some(false)),
            ("norecovery", |o| o.norecovery),
            ("noload", |o| o.norecovery),
            ("errors=continue", |o| {
                o.errors == Some(ErrorBehavior::Continue)
            }),
            ("errors=remount-ro", |o| {
                o.errors == Some(ErrorBehavior::RemountRo)
            }),
            ("errors=panic", |o| o.errors == Some(ErrorBehavior::Panic)),
            ("noacl", |o| !o.acl),
            ("noacl,acl", |o| o.acl),
            ("user_xattr,default_permissions", |o| {
                *o == FsOptions::default()
            }),
            ("commit=0", |o| o.commit_secs == Some(0)),
            ("commit=30", |o| o.commit_secs == Some(30)),
            ("commit=2147483", |o| o.commit_secs == Some(MAX_COMMIT_SECS)),
            ("cache_size=4096", |o| o.cache_bytes == Some(4096)),
            ("cache_size=64k", |o| o.cache_bytes == Some(64 << 10)),
            ("cache_size=64M", |o| o.cache_bytes == Some(64 << 20)),
            ("cache_size=2G", |o| o.cache_bytes == Some(2 << 30)),
            ("cache_size=1T", |o| o.cache_bytes == Some(1 << 40)),
            (
                "directio,allow_other,sync,dirsync,lazytime,fakeroot,debug",
                |o| {
                    o.directio
                        && o.allow_other
                        && o.flags.sync
                        && o.flags.dirsync
                        && o.flags.lazytime
                        && o.fakeroot
                        && o.debug
                },
            ),
            ("sync,async,lazytime,nolazytime", |o| {
                o.flags == MountFlags::default()
            }),
            ("noatime", |o| o.flags.atime == AtimeMode::NoAtime),
            ("noatime,relatime", |o| o.flags.atime == AtimeMode::Relatime),
            ("atime,strictatime", |o| o.flags.atime == AtimeMode::Strict),
            ("norelatime", |o| o.flags.atime == AtimeMode::Strict),
            ("nodiratime", |o| o.flags.nodiratime),
            ("nodiratime,diratime", |o| !o.flags.nodiratime),
            (
                "nosuid,nodev,noexec,relatime,defaults,nofail,x-systemd.automount,comment=x=y",
                |o| *o == FsOptions::default(),
            ),
        ];
        for (s, check) in cases {
            let o = FsOptions::parse(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"));
            assert!(check(&o), "{s:?} gave {o:?}");
        }
    }

    #[test]
    fn refused_options_say_why() {
        let cases: &[(&str, &str)] = &[
            ("bogus", "Unknown parameter 'bogus'"),
            ("ro,frobnicate=3", "Unknown parameter 'frobnicate'"),
            ("RO", "Unknown parameter 'RO'"),
            (" ro", "Unknown parameter ' ro'"),
            ("ro=1", "parameter 'ro' takes no value"),
            ("acl=", "parameter 'acl' takes no value"),
            ("errors", "parameter 'errors' needs a value"),
            ("errors=", "parameter 'errors' needs a value"),
            ("errors=explode", "Invalid value for parameter 'errors': 'explode' (expected continue, remount-ro or panic)"),
            ("commit=-1", "Invalid value for parameter 'commit': '-1' (expected seconds, 0 to 2147483)"),
            ("commit=2147484", "Invalid value for parameter 'commit': '2147484' (expected seconds, 0 to 2147483)"),
            ("commit=99999999999999999999999", "Invalid value for parameter 'commit': '99999999999999999999999' (expected seconds, 0 to 2147483)"),
            ("cache_size=16E", "Invalid value for parameter 'cache_size': '16E' (expected a size such as 64M (suffix K, M, G or T))"),
            ("cache_size=17179869184G", "Invalid value for parameter 'cache_size': '17179869184G' (expected a size such as 64M (suffix K, M, G or T))"),
            ("cache_size=M", "Invalid value for parameter 'cache_size': 'M' (expected a size such as 64M (suffix K, M, G or T))"),
            ("offset=1048576", "parameter 'offset' is not supported by fsvc"),
            ("bad\u{1b}[2Jname", "Unknown parameter 'bad\\u{1b}[2Jname'"),
        ];
        for (s, want) in cases {
            let err = FsOptions::parse(s).expect_err(s);
            assert_eq!(err.to_string(), *want, "for {s:?}");
        }
        let long = "y".repeat(4000);
        let msg = FsOptions::parse(&long).expect_err("long").to_string();
        assert!(msg.len() < 100, "unbounded echo: {} bytes", msg.len());
    }

    fn info(uid: u32, permitted: bool) -> MountInfo {
        MountInfo {
            caller: Caller {
                uid,
                gid: uid,
                groups: vec![],
            },
            fs_type: FsType::Ext4,
            source: "/img".into(),
            mountpoint: "/mnt".into(),
            fs_options: String::new(),
            read_only: false,
            allow_other_permitted: permitted,
            verbose: false,
            idmap: false,
        }
    }

    #[test]
    fn policy() {
        let ao = FsOptions::parse("allow_other").expect("parse");
        assert!(ao.check_policy(&info(0, true)).is_ok());
        assert!(ao.check_policy(&info(1000, true)).is_ok());
        assert!(matches!(
            ao.check_policy(&info(1000, false)),
            Err(OptionError::NotPermitted {
                name: "allow_other",
                ..
            })
        ));
        let fr = FsOptions::parse("fakeroot").expect("parse");
        assert!(fr.check_policy(&info(0, true)).is_ok());
        assert!(matches!(
            fr.check_policy(&info(1000, true)),
            Err(OptionError::NotPermitted {
                name: "fakeroot",
                ..
            })
        ));
        assert!(FsOptions::default()
            .check_policy(&info(1000, false))
            .is_ok());
    }
}
