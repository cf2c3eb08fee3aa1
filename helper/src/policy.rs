//! Who is calling and what they may decide.
//!
//! The helper may be installed setuid root, so every trust decision is made
//! here from the caller's *real* ids, and the environment is read only for a
//! root caller (test and debugging knobs). Root may mount anything it can
//! open. A non-root caller only where the policy file
//! (`fsvc_helper::policy_file`) allows user mounts; this module gathers the
//! facts the file's rules judge, from fds the helper already holds (the
//! pinned mountpoint, the opened source), never by resolving a path again.
//!
//! Build-time settings (`option_env!`) are the installer's decisions and are
//! trusted; nothing here takes a path or an id from a non-root environment.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use fsvc_helper::policy_file::{self, Denial, MountpointFacts, Policy, SourceFacts};
use fsvc_protocol::Caller;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, major, minor, Mode, SFlag};
use nix::unistd::{
    faccessat, getgid, getgroups, getuid, setfsgid, setfsuid, AccessFlags, Gid, Uid,
};

/// Default directory of the systemd-activated sockets.
pub const DEFAULT_SOCKET_DIR: &str = RUN_DIR;
/// Default per-receive timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default uid/gid of a spawned server (`nobody`/`nogroup`).
pub const DEFAULT_SERVER_ID: u32 = 65534;
/// Default log of a spawned server.
pub const DEFAULT_LOG: &str = "/dev/kmsg";
/// Largest accepted `FSVC_TIMEOUT_SECS`.
const MAX_TIMEOUT_SECS: u64 = 3600;

/// Environment knob: socket directory (root only).
pub const ENV_SOCKET_DIR: &str = "FSVC_SOCKET_DIR";
/// Environment knob: log file for a spawned server (root only).
pub const ENV_LOG: &str = "FSVC_LOG";
/// Environment knob: per-receive timeout in seconds (root only).
pub const ENV_TIMEOUT: &str = "FSVC_TIMEOUT_SECS";
/// Environment knob: how long an unmount waits for the server (root only).
pub const ENV_UNMOUNT_TIMEOUT: &str = "FSVC_UNMOUNT_TIMEOUT_SECS";

/// The calling user, from the real ids.
pub fn caller() -> Result<Caller, String> {
    let groups = getgroups()
        .map_err(|e| format!("cannot read the caller's groups: {e}"))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Ok(Caller {
        uid: getuid().as_raw(),
        gid: getgid().as_raw(),
        groups,
    })
}

/// Whether the caller is root (real uid 0).
pub fn is_root(caller: &Caller) -> bool {
    caller.uid == 0
}

/// A non-root caller's mount: the policy that allowed it so far, and who.
#[derive(Debug, Clone)]
pub struct UserMount {
    /// The parsed policy file.
    pub policy: Policy,
    /// The caller.
    pub caller: Caller,
}

/// Where the policy file is (fixed at build time; never from the environment).
pub fn policy_path() -> &'static str {
    policy_file::DEFAULT_POLICY_PATH
}

/// Reads the policy file: `Ok(None)` when there is none.
pub fn load_policy() -> Result<Option<Policy>, String> {
    use std::io::Read;
    let path = policy_path();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the policy {path}: {e}")),
    };
    // Judged from the file opened: a policy someone else could have
    // written decides nothing.
    let st = fstat(&file).map_err(|e| format!("cannot stat the policy {path}: {e}"))?;
    if !trusted(&st) {
        return Err(format!(
            "the policy {path} must be owned by root and writable by root only"
        ));
    }
    let mut text = Vec::new();
    let limit = u64::try_from(policy_file::MAX_POLICY_BYTES).unwrap_or(u64::MAX);
    file.take(limit + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read the policy {path}: {e}"))?;
    if text.len() > policy_file::MAX_POLICY_BYTES {
        return Err(format!("the policy {path} is too large"));
    }
    let text = String::from_utf8(text).map_err(|_| format!("the policy {path} is not UTF-8"))?;
    policy_file::parse(&text)
        .map(Some)
        .map_err(|e| format!("the policy {path} is invalid: {e}"))
}

/// Root passes (`Ok(None)`); a non-root caller passes only when the policy
/// file exists, parses and allows user mounts. Decided before anything is
/// opened or spawned.
pub fn check_caller(caller: &Caller) -> Result<Option<UserMount>, String> {
    if is_root(caller) {
        return Ok(None);
    }
    let policy = match load_policy() {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(Denial {
                rule: policy_file::RULE_NO_POLICY,
                detail: format!(
                    "only root may mount: there is no {} allowing user mounts (you are uid {})",
                    policy_path(),
                    caller.uid
                ),
            }
            .to_string())
        }
        Err(e) => {
            return Err(Denial {
                rule: policy_file::RULE_POLICY_FILE,
                detail: e,
            }
            .to_string())
        }
    };
    policy
        .check_allowed(policy_path())
        .map_err(|d| d.to_string())?;
    Ok(Some(UserMount {
        policy,
        caller: caller.clone(),
    }))
}

/// Runs `f` with the filesystem ids of `caller` (so opens and lookups are
/// checked as the caller, with their supplementary groups, which a setuid
/// program keeps), then restores ours. The helper is single-threaded, and
/// fsuid is per thread anyway.
pub fn as_caller<T>(caller: &Caller, f: impl FnOnce() -> T) -> T {
    let old_gid = setfsgid(Gid::from_raw(caller.gid));
    let old_uid = setfsuid(Uid::from_raw(caller.uid));
    let out = f();
    setfsuid(old_uid);
    setfsgid(old_gid);
    out
}

/// The facts the mountpoint rules judge, from the pinned `O_PATH` fd:
/// owner, writability by the caller (real ids: `faccessat` without
/// `AT_EACCESS`), and the parent (reached through `..` of the pinned fd).
pub fn mountpoint_facts(dir: BorrowedFd<'_>) -> Result<MountpointFacts, String> {
    let st = fstat(dir).map_err(|e| format!("cannot stat the mountpoint: {e}"))?;
    let writable = faccessat(
        dir,
        "",
        AccessFlags::W_OK | AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .is_ok();
    let parent: OwnedFd = openat(
        dir,
        "..",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open the mountpoint's parent: {e}"))?;
    let pst =
        fstat(parent.as_fd()).map_err(|e| format!("cannot stat the mountpoint's parent: {e}"))?;
    Ok(MountpointFacts {
        owner: st.st_uid,
        writable_by_caller: writable,
        parent_sticky: pst.st_mode & libc::S_ISVTX != 0,
        parent_owner: pst.st_uid,
    })
}

/// The facts the source rules judge, from the opened source fd: the path
/// the kernel reports for it (so a symlink or a swapped path cannot lie),
/// and for block devices whether the kernel marks them removable.
pub fn source_facts(fd: BorrowedFd<'_>) -> Result<SourceFacts, String> {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("cannot tell which file the source is: {e}"))?
        .to_string_lossy()
        .into_owned();
    let st = fstat(fd).map_err(|e| format!("cannot stat the source: {e}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFBLK {
        let sys = format!("/sys/dev/block/{}:{}", major(st.st_rdev), minor(st.st_rdev));
        // A partition has no `removable` of its own: its disk's (the parent
        // directory in sysfs) says.
        let removable = ["removable", "../removable"]
            .iter()
            .any(|f| std::fs::read_to_string(format!("{sys}/{f}")).is_ok_and(|v| v.trim() == "1"));
        Ok(SourceFacts::Block { path, removable })
    } else {
        Ok(SourceFacts::Image { path })
    }
}

/// The runtime directory: the systemd sockets (`fsvc.socket` makes it) and
/// the user-mount lock.
pub const RUN_DIR: &str = "/run/fsvc";
/// The lock that serializes user mounts, so that counting a user's mounts
/// and adding one cannot race another helper doing the same.
pub const USER_MOUNT_LOCK: &str = "user-mounts.lock";

/// Whether a directory or file may steer a privileged decision: owned by
/// root and writable by nobody else. A socket or lock in a directory a user
/// could write would let them stand in for the server (and be handed the
/// source fd of every later mount).
pub fn trusted(st: &nix::sys::stat::FileStat) -> bool {
    st.st_uid == 0 && st.st_mode & (libc::S_IWGRP | libc::S_IWOTH) == 0
}

/// Opens [`RUN_DIR`] per [`root_dir`].
fn run_dir() -> Result<OwnedFd, String> {
    root_dir(RUN_DIR)
}

/// Opens the directory `path`, making it (root's, 0755) when missing;
/// refuses one that is not [`trusted`] (or is a symlink). A setuid helper
/// creates files with the caller's gid, hence the chown.
pub fn root_dir(path: &str) -> Result<OwnedFd, String> {
    let created = nix::unistd::mkdir(path, Mode::from_bits_truncate(0o755)).is_ok();
    let dir = open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {path}: {e}"))?;
    if created {
        nix::unistd::fchown(&dir, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
            .map_err(|e| format!("cannot give {path} to root: {e}"))?;
    }
    let st = fstat(&dir).map_err(|e| format!("cannot stat {path}: {e}"))?;
    if !trusted(&st) {
        return Err(format!(
            "refusing {path}: it must be root's and writable by root only (owner uid {}, mode {:o})",
            st.st_uid,
            st.st_mode & 0o7777
        ));
    }
    Ok(dir)
}

/// Takes [`USER_MOUNT_LOCK`] in [`RUN_DIR`] (held until the returned fd is
/// dropped).
pub fn lock_user_mounts() -> Result<OwnedFd, String> {
    let dir = run_dir()?;
    let fd = openat(
        &dir,
        USER_MOUNT_LOCK,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| format!("cannot open {RUN_DIR}/{USER_MOUNT_LOCK}: {e}"))?;
    nix::unistd::fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
        .map_err(|e| format!("cannot give {RUN_DIR}/{USER_MOUNT_LOCK} to root: {e}"))?;
    crate::sys::flock(fd.as_fd(), libc::LOCK_EX)
        .map_err(|e| format!("cannot lock {RUN_DIR}/{USER_MOUNT_LOCK}: {e}"))?;
    Ok(fd)
}

/// How many fsvc mounts `uid` has now (every mount namespace's view is
/// ours: the helper counts what this namespace shows).
pub fn count_user_mounts(uid: u32) -> Result<usize, String> {
    let info = crate::mountinfo::read_mountinfo()?;
    Ok(info
        .iter()
        .filter(|m| m.is_fsvc() && m.user_id() == Some(uid))
        .count())
}

/// Settings that come from the environment (root) or defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    /// Where the systemd sockets live.
    pub socket_dir: PathBuf,
    /// Log file of a spawned server.
    pub log: PathBuf,
    /// Per-receive timeout.
    pub timeout: Duration,
    /// How long an unmount waits for the server (`None`: the policy's).
    pub unmount_timeout: Option<Duration>,
}

/// Reads the knobs: from `env` only when the caller is root.
pub fn knobs(caller: &Caller, env: impl Fn(&str) -> Option<OsString>) -> Result<Knobs, String> {
    let mut k = Knobs {
        socket_dir: PathBuf::from(DEFAULT_SOCKET_DIR),
        log: PathBuf::from(DEFAULT_LOG),
        timeout: DEFAULT_TIMEOUT,
        unmount_timeout: None,
    };
    if !is_root(caller) {
        return Ok(k);
    }
    if let Some(dir) = env(ENV_SOCKET_DIR).filter(|v| !v.is_empty()) {
        k.socket_dir = PathBuf::from(dir);
    }
    if let Some(log) = env(ENV_LOG).filter(|v| !v.is_empty()) {
        k.log = PathBuf::from(log);
    }
    let secs = |name: &str| -> Result<Option<Duration>, String> {
        let Some(t) = env(name) else { return Ok(None) };
        t.to_str()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| (1..=MAX_TIMEOUT_SECS).contains(s))
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or_else(|| {
                format!("{name} must be a number of seconds from 1 to {MAX_TIMEOUT_SECS}")
            })
    };
    if let Some(t) = secs(ENV_TIMEOUT)? {
        k.timeout = t;
    }
    k.unmount_timeout = secs(ENV_UNMOUNT_TIMEOUT)?;
    Ok(k)
}

/// The uid and gid a spawned server runs as (build-time overridable).
pub fn server_ids() -> Result<(u32, u32), String> {
    let parse = |name: &str, v: Option<&str>| -> Result<u32, String> {
        match v {
            None => Ok(DEFAULT_SERVER_ID),
            Some(s) => match s.parse::<u32>() {
                Ok(0) | Err(_) => Err(format!(
                    "built with an invalid {name}={s} (must be a non-zero id)"
                )),
                Ok(id) => Ok(id),
            },
        }
    };
    Ok((
        parse("FSVC_SERVER_UID", option_env!("FSVC_SERVER_UID"))?,
        parse("FSVC_SERVER_GID", option_env!("FSVC_SERVER_GID"))?,
    ))
}

/// The server binary: fixed at build time, else `fsvc-server` beside this
/// executable. Never from the environment.
pub fn server_path() -> Result<PathBuf, String> {
    if let Some(p) = option_env!("FSVC_SERVER_PATH") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| format!("cannot find my own executable to locate fsvc-server: {e}"))?;
    let dir = exe.parent().ok_or_else(|| {
        format!(
            "cannot locate fsvc-server: {} has no directory",
            exe.display()
        )
    })?;
    Ok(dir.join("fsvc-server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(uid: u32) -> Caller {
        Caller {
            uid,
            gid: uid,
            groups: vec![],
        }
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn root_needs_no_policy() {
        assert!(matches!(check_caller(&c(0)), Ok(None)));
    }

    #[test]
    fn knobs_only_for_root() {
        let env = env_of(&[
            (ENV_SOCKET_DIR, "/tmp/s"),
            (ENV_LOG, "/tmp/l"),
            (ENV_TIMEOUT, "2"),
        ]);
        let root = knobs(&c(0), &env).expect("valid");
        assert_eq!(root.socket_dir, PathBuf::from("/tmp/s"));
        assert_eq!(root.log, PathBuf::from("/tmp/l"));
        assert_eq!(root.timeout, Duration::from_secs(2));
        let user = knobs(&c(1000), &env).expect("valid");
        assert_eq!(user.socket_dir, PathBuf::from(DEFAULT_SOCKET_DIR));
        assert_eq!(user.log, PathBuf::from(DEFAULT_LOG));
        assert_eq!(user.timeout, DEFAULT_TIMEOUT);
        for bad in [
            &[(ENV_TIMEOUT, "0")][..],
            &[(ENV_TIMEOUT, "x")],
            &[(ENV_TIMEOUT, "99999")],
        ] {
            let bad: &'static [(&str, &str)] = Box::leak(bad.to_vec().into_boxed_slice());
            assert!(knobs(&c(0), env_of(bad)).is_err(), "{bad:?}");
        }
    }
}
