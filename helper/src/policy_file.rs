//! The user-mount policy file (`/etc/fsvc/policy.toml`): its format and the
//! decisions made from it. Pure: the facts (who asks, what the source and
//! mountpoint turned out to be) are gathered by the helper's `policy`
//! module from fds it already holds, and judged here, so every rule is
//! table-tested.
//!
//! Invariants:
//! - no file means root only (rule `no-policy`); a file that does not parse
//!   refuses every user mount (fail closed), naming the error;
//! - unknown keys are errors (a misspelt rule must not silently allow);
//! - every refusal is a [`Denial`] that names its rule, as written in the
//!   file (`users.max_mounts`) or, for the rules DESIGN.md fixes for every
//!   user mount, by a fixed name (`mountpoint-owner`, ...).
//!
//! ```toml
//! [users]
//! allow = true                        # non-root users may mount (default false)
//! devices = ["/dev/sd*", "/dev/mmcblk*"]  # block devices, glob on the kernel's name
//! removable_only = true               # only devices the kernel marks removable
//! image_dirs = ["/home", "/srv/img"]  # image files under these directories
//! allow_other = false                 # users may not ask for allow_other
//! max_mounts = 4                      # fsvc mounts per user at once
//! detached = false                    # users may ask for detached mount fds
//!
//! [unmount]
//! timeout_secs = 60                   # wait this long for a server to finish
//! ```

use std::path::Path;

use serde::Deserialize;

/// The build-time path of the policy file (`FSVC_POLICY_PATH`), else
/// `/etc/fsvc/policy.toml`.
pub const DEFAULT_POLICY_PATH: &str = match option_env!("FSVC_POLICY_PATH") {
    Some(p) => p,
    None => "/etc/fsvc/policy.toml",
};

/// Largest policy file read, in bytes (it is a handful of lines).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Default and bounds of `[unmount] timeout_secs`.
pub const DEFAULT_UNMOUNT_TIMEOUT_SECS: u64 = 60;
const MAX_UNMOUNT_TIMEOUT_SECS: u64 = 3600;
/// Default `[users] max_mounts`.
pub const DEFAULT_MAX_MOUNTS: u32 = 8;

/// The parsed file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// What non-root users may do.
    #[serde(default)]
    pub users: Users,
    /// Unmount behaviour.
    #[serde(default)]
    pub unmount: Unmount,
}

/// The `[users]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Non-root users may mount at all.
    #[serde(default)]
    pub allow: bool,
    /// Glob patterns (`*`, `?`) a block device's path must match.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Only devices the kernel marks removable.
    #[serde(default)]
    pub removable_only: bool,
    /// Directories an image file must lie under.
    #[serde(default)]
    pub image_dirs: Vec<String>,
    /// Users may ask for `allow_other`.
    #[serde(default)]
    pub allow_other: bool,
    /// Most fsvc mounts one user may have at once.
    #[serde(default = "default_max_mounts")]
    pub max_mounts: u32,
    /// Users may ask for detached mounts (`fsvc-mount --detached`): a mount
    /// fd attached nowhere, which `max_mounts` cannot count (it is in no
    /// mount table until the user attaches it, maybe in a namespace of
    /// their own).
    #[serde(default)]
    pub detached: bool,
}

fn default_max_mounts() -> u32 {
    DEFAULT_MAX_MOUNTS
}

impl Default for Users {
    fn default() -> Users {
        Users {
            allow: false,
            devices: Vec::new(),
            removable_only: false,
            image_dirs: Vec::new(),
            allow_other: false,
            max_mounts: DEFAULT_MAX_MOUNTS,
            detached: false,
        }
    }
}

/// The `[unmount]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Unmount {
    /// Seconds to wait for a server to finish after the unmount.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_UNMOUNT_TIMEOUT_SECS
}

impl Default for Unmount {
    fn default() -> Unmount {
        Unmount {
            timeout_secs: DEFAULT_UNMOUNT_TIMEOUT_SECS,
        }
    }
}

/// The fixed rules' names (DESIGN.md's, for every user mount).
pub const RULE_NO_POLICY: &str = "no-policy";
/// The policy file exists but cannot be used (unreadable, not root's, invalid).
pub const RULE_POLICY_FILE: &str = "policy-file";
/// The caller could not open the source themselves, with the access asked.
pub const RULE_SOURCE_ACCESS: &str = "source-access";
/// The mountpoint is not the caller's.
pub const RULE_MOUNTPOINT_OWNER: &str = "mountpoint-owner";
/// The caller may not write the mountpoint.
pub const RULE_MOUNTPOINT_WRITABLE: &str = "mountpoint-writable";
/// The mountpoint is in someone else's sticky directory.
pub const RULE_STICKY_DIRECTORY: &str = "sticky-directory";
/// Unmounting someone else's mount.
pub const RULE_OWN_MOUNTS_ONLY: &str = "own-mounts-only";
/// An idmapped mount into a user namespace the caller does not own (for
/// every caller, root too: the namespace must be the caller's own).
pub const RULE_USERNS_OWNER: &str = "userns-owner";

/// The user namespace a mount is idmapped into must be the caller's
/// (`owner` from `NS_GET_OWNER_UID`).
pub fn check_userns_owner(caller: u32, owner: u32) -> Result<(), Denial> {
    if owner == caller {
        Ok(())
    } else {
        Err(deny(
            RULE_USERNS_OWNER,
            format!("the user namespace is owned by uid {owner}, not by you (uid {caller})"),
        ))
    }
}

/// A refusal: the rule that refused and what a person can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by policy rule {rule}: {detail}")]
pub struct Denial {
    /// The rule's name (`users.max_mounts`, `mountpoint-owner`, ...).
    pub rule: &'static str,
    /// One line.
    pub detail: String,
}

fn deny(rule: &'static str, detail: impl Into<String>) -> Denial {
    Denial {
        rule,
        detail: detail.into(),
    }
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<Policy, String> {
    let p: Policy = toml::from_str(text).map_err(|e| {
        // toml's Display spans lines (a snippet of the file): one line here.
        let line = e
            .span()
            .and_then(|r| text.get(..r.start))
            .map(|before| before.matches('\n').count() + 1);
        let msg = e.message().replace('\n', " ");
        match line {
            Some(l) => format!("line {l}: {}", msg.trim()),
            None => msg.trim().to_string(),
        }
    })?;
    if p.unmount.timeout_secs == 0 || p.unmount.timeout_secs > MAX_UNMOUNT_TIMEOUT_SECS {
        return Err(format!(
            "unmount.timeout_secs must be from 1 to {MAX_UNMOUNT_TIMEOUT_SECS}"
        ));
    }
    for d in &p.users.image_dirs {
        if !d.starts_with('/') {
            return Err(format!("users.image_dirs: {d:?} is not an absolute path"));
        }
    }
    for d in &p.users.devices {
        if !d.starts_with("/dev/") {
            return Err(format!("users.devices: {d:?} does not start with /dev/"));
        }
    }
    Ok(p)
}

/// What the helper learnt about the source, from the fd it opened as the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFacts {
    /// A block device: its canonical path (`/dev/sdb1`) and removability.
    Block {
        /// The path the kernel reports for the opened device.
        path: String,
        /// `/sys/dev/block/M:m/removable` (or the whole disk's) is 1.
        removable: bool,
    },
    /// A regular file: its canonical path.
    Image {
        /// The path the kernel reports for the opened file.
        path: String,
    },
}

/// What the helper learnt about the pinned mountpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountpointFacts {
    /// The directory's owner.
    pub owner: u32,
    /// The caller may write it (checked as the caller).
    pub writable_by_caller: bool,
    /// The parent directory is sticky.
    pub parent_sticky: bool,
    /// The parent directory's owner.
    pub parent_owner: u32,
}

/// Glob match with `*` (any run, also empty) and `?` (one char), nothing else.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matcher with one backtrack point (the last `*`): linear-ish,
    // never recursive, so a hostile pattern cannot blow the stack.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// Whether `path` lies under directory `dir` (both canonical, absolute).
pub fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        return path.starts_with('/');
    }
    Path::new(path).starts_with(dir) && path != dir
}

impl Policy {
    /// Non-root users may mount at all.
    pub fn check_allowed(&self, path: &str) -> Result<(), Denial> {
        if self.users.allow {
            Ok(())
        } else {
            Err(deny(
                "users.allow",
                format!("{path} does not allow user mounts (set [users] allow = true)"),
            ))
        }
    }

    /// The source is one the policy lets users mount.
    pub fn check_source(&self, src: &SourceFacts) -> Result<(), Denial> {
        match src {
            SourceFacts::Block { path, removable } => {
                if !self.users.devices.iter().any(|p| glob_match(p, path)) {
                    return Err(deny(
                        "users.devices",
                        format!("{path} matches none of the devices users may mount"),
                    ));
                }
                if self.users.removable_only && !removable {
                    return Err(deny(
                        "users.removable_only",
                        format!("{path} is not a removable device"),
                    ));
                }
                Ok(())
            }
            SourceFacts::Image { path } => {
                if self.users.image_dirs.iter().any(|d| is_under(path, d)) {
                    Ok(())
                } else {
                    Err(deny(
                        "users.image_dirs",
                        format!("{path} is not under a directory users may mount images from"),
                    ))
                }
            }
        }
    }

    /// `allow_other` was asked: the policy must allow it.
    pub fn check_allow_other(&self) -> Result<(), Denial> {
        if self.users.allow_other {
            Ok(())
        } else {
            Err(deny(
                "users.allow_other",
                "users may not mount with allow_other",
            ))
        }
    }

    /// A detached mount was asked: the policy must allow it.
    pub fn check_detached(&self) -> Result<(), Denial> {
        if self.users.detached {
            Ok(())
        } else {
            Err(deny(
                "users.detached",
                "users may not ask for detached mounts (set [users] detached = true)",
            ))
        }
    }

    /// The caller has `current` fsvc mounts; one more must fit.
    pub fn check_limit(&self, current: usize) -> Result<(), Denial> {
        let max = usize::try_from(self.users.max_mounts).unwrap_or(usize::MAX);
        if current < max {
            Ok(())
        } else {
            Err(deny(
                "users.max_mounts",
                format!("you have {current} fsvc mount(s), the limit is {max}"),
            ))
        }
    }
}

/// DESIGN.md's rules for every user mount's mountpoint (not configurable).
pub fn check_mountpoint(uid: u32, dir: &str, m: &MountpointFacts) -> Result<(), Denial> {
    if m.owner != uid {
        return Err(deny(
            RULE_MOUNTPOINT_OWNER,
            format!("{dir} is owned by uid {}, not by you (uid {uid})", m.owner),
        ));
    }
    if !m.writable_by_caller {
        return Err(deny(
            RULE_MOUNTPOINT_WRITABLE,
            format!("you may not write {dir}"),
        ));
    }
    if m.parent_sticky && m.parent_owner != uid {
        return Err(deny(
            RULE_STICKY_DIRECTORY,
            format!(
                "{dir} is in a sticky directory owned by uid {} (make the mountpoint elsewhere, e.g. in your home)",
                m.parent_owner
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("/dev/sd*", "/dev/sdb1", true),
            ("/dev/sd*", "/dev/sd", true),
            ("/dev/sd?1", "/dev/sdb1", true),
            ("/dev/sd?1", "/dev/sdb2", false),
            ("/dev/loop*", "/dev/sdb1", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("/dev/mmcblk*p*", "/dev/mmcblk0p1", true),
            ("/dev/mmcblk*p*", "/dev/mmcblk0", false),
            ("", "", true),
            ("", "x", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
        // A pathological pattern finishes (no exponential backtracking).
        let p = "*a".repeat(50);
        assert!(!glob_match(&p, &"a".repeat(49)));
    }

    #[test]
    fn under() {
        let cases = [
            ("/home/u/img", "/home", true),
            ("/home/u/img", "/home/", true),
            ("/homeX/img", "/home", false),
            ("/home", "/home", false),
            ("/srv/x", "/", true),
        ];
        for (p, d, want) in cases {
            assert_eq!(is_under(p, d), want, "{p} under {d}");
        }
    }

    #[test]
    fn parsing() {
        assert_eq!(parse("").expect("empty is valid"), Policy::default());
        let p = parse(
            "[users]\nallow = true\ndevices = [\"/dev/sd*\"]\nremovable_only = true\n\
             image_dirs = [\"/home\"]\nallow_other = false\nmax_mounts = 2\n\
             [unmount]\ntimeout_secs = 5\n",
        )
        .expect("valid");
        assert!(p.users.allow && p.users.removable_only);
        assert_eq!(p.users.max_mounts, 2);
        assert_eq!(p.unmount.timeout_secs, 5);
        let bad = [
            ("[users]\nalow = true\n", "alow"),
            ("[users]\nallow = \"yes\"\n", "invalid"),
            ("[user]\nallow = true\n", "user"),
            ("[users]\nimage_dirs = [\"home\"]\n", "absolute"),
            ("[users]\ndevices = [\"sd*\"]\n", "/dev/"),
            ("[unmount]\ntimeout_secs = 0\n", "timeout_secs"),
            ("[users\n", ""),
        ];
        for (text, want) in bad {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn rules_name_themselves() {
        let p = parse(
            "[users]\nallow = true\ndevices = [\"/dev/sd*\"]\nremovable_only = true\n\
             image_dirs = [\"/home\"]\nmax_mounts = 1\n",
        )
        .expect("valid");
        let block = |path: &str, removable| SourceFacts::Block {
            path: path.into(),
            removable,
        };
        let image = |path: &str| SourceFacts::Image { path: path.into() };
        let cases: Vec<(Result<(), Denial>, Option<&str>)> = vec![
            (p.check_source(&block("/dev/sdb1", true)), None),
            (
                p.check_source(&block("/dev/sdb1", false)),
                Some("users.removable_only"),
            ),
            (
                p.check_source(&block("/dev/nvme0n1p1", true)),
                Some("users.devices"),
            ),
            (p.check_source(&image("/home/u/x.img")), None),
            (
                p.check_source(&image("/tmp/x.img")),
                Some("users.image_dirs"),
            ),
            (p.check_allow_other(), Some("users.allow_other")),
            (p.check_detached(), Some("users.detached")),
            (
                parse("[users]\nallow = true\ndetached = true\n")
                    .expect("valid")
                    .check_detached(),
                None,
            ),
            (p.check_limit(0), None),
            (p.check_limit(1), Some("users.max_mounts")),
            (p.check_allowed("/etc/fsvc/policy.toml"), None),
            (
                Policy::default().check_allowed("/etc/fsvc/policy.toml"),
                Some("users.allow"),
            ),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            match (got, want) {
                (Ok(()), None) => {}
                (Err(d), Some(rule)) => {
                    assert_eq!(d.rule, rule, "case {i}");
                    assert!(d.to_string().contains(rule), "case {i}: {d}");
                }
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn userns_must_be_the_callers() {
        for (caller, owner, ok) in [
            (1000, 1000, true),
            (0, 0, true),
            (0, 1000, false),
            (1000, 0, false),
        ] {
            let got = check_userns_owner(caller, owner);
            assert_eq!(got.is_ok(), ok, "{caller} {owner}");
            if let Err(d) = got {
                assert_eq!(d.rule, RULE_USERNS_OWNER);
                assert!(d.detail.contains(&owner.to_string()), "{d}");
            }
        }
    }

    #[test]
    fn mountpoint_rules() {
        let ok = MountpointFacts {
            owner: 1000,
            writable_by_caller: true,
            parent_sticky: false,
            parent_owner: 0,
        };
        let cases = [
            (ok.clone(), None),
            (
                MountpointFacts {
                    owner: 0,
                    ..ok.clone()
                },
                Some("mountpoint-owner"),
            ),
            (
                MountpointFacts {
                    writable_by_caller: false,
                    ..ok.clone()
                },
                Some("mountpoint-writable"),
            ),
            (
                MountpointFacts {
                    parent_sticky: true,
                    ..ok.clone()
                },
                Some("sticky-directory"),
            ),
            (
                MountpointFacts {
                    parent_sticky: true,
                    parent_owner: 1000,
                    ..ok.clone()
                },
                None,
            ),
        ];
        for (facts, want) in cases {
            match (check_mountpoint(1000, "/m", &facts), want) {
                (Ok(()), None) => {}
                (Err(d), Some(rule)) => assert_eq!(d.rule, rule),
                (got, want) => panic!("{facts:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
