//! Who is calling and what they may decide.
//!
//! The helper may one day be setuid, so every trust decision is made here
//! from the caller's *real* ids, and the environment is read only for a root
//! caller (test and debugging knobs). For now only root may mount; a
//! non-root caller is refused before anything is opened or spawned.
//!
//! Build-time settings (`option_env!`) are the installer's decisions and are
//! trusted; nothing here takes a path or an id from a non-root environment.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use fsvc_protocol::Caller;
use nix::unistd::{getgid, getgroups, getuid};

/// Default directory of the systemd-activated sockets.
pub const DEFAULT_SOCKET_DIR: &str = "/run/fsvc";
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

/// Refuses callers this version does not serve. The one rule today: root only.
pub fn check_caller(caller: &Caller) -> Result<(), String> {
    if is_root(caller) {
        Ok(())
    } else {
        Err(format!(
            "only root may mount with fsvc for now (you are uid {}); user mounts are not supported yet",
            caller.uid
        ))
    }
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
}

/// Reads the knobs: from `env` only when the caller is root.
pub fn knobs(caller: &Caller, env: impl Fn(&str) -> Option<OsString>) -> Result<Knobs, String> {
    let mut k = Knobs {
        socket_dir: PathBuf::from(DEFAULT_SOCKET_DIR),
        log: PathBuf::from(DEFAULT_LOG),
        timeout: DEFAULT_TIMEOUT,
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
    if let Some(t) = env(ENV_TIMEOUT) {
        let secs = t
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| (1..=MAX_TIMEOUT_SECS).contains(s))
            .ok_or_else(|| {
                format!("{ENV_TIMEOUT} must be a number of seconds from 1 to {MAX_TIMEOUT_SECS}")
            })?;
        k.timeout = Duration::from_secs(secs);
    }
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
    fn only_root_passes() {
        assert!(check_caller(&c(0)).is_ok());
        let e = check_caller(&c(1000)).expect_err("non-root refused");
        assert!(e.contains("only root") && e.contains("1000"), "{e}");
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
