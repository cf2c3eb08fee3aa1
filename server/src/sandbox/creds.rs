//! Steps 2-5 of the sandbox: not dumpable, the bounding set, the uid/gid
//! drop, the capability sets, `no_new_privs`.
//!
//! Invariants after [`drop_privileges`] succeeded: real, effective and saved
//! uids are all non-root (the configured ones when the process was root),
//! root's supplementary groups are gone, the effective, permitted,
//! inheritable and ambient capability sets are empty, and `no_new_privs` is
//! set. The bounding set is emptied when the process could still do it
//! (it needs `CAP_SETPCAP`, which the uid change removes — hence it comes
//! first).

use nix::errno::Errno;
use nix::sys::prctl;
use nix::unistd::{getgroups, getresgid, getresuid, setgroups, setresgid, setresuid, Gid, Uid};

use super::{sys, SandboxConfig, SandboxError};

/// What the credential steps did, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CredsOutcome {
    /// The real/effective/saved uid now (all equal).
    pub uid: u32,
    /// The real/effective/saved gid now (all equal).
    pub gid: u32,
    /// The process was root and switched to the configured uid/gid.
    pub dropped_from_root: bool,
    /// Capabilities left in the bounding set (0 when it could be emptied).
    pub bounding_left: u32,
    /// Supplementary groups left (non-zero only when the process was not
    /// root and had groups it cannot shed without `CAP_SETGID`).
    pub groups_left: usize,
}

/// Runs steps 2-5 in order. See the module documentation.
pub(super) fn drop_privileges(cfg: &SandboxConfig) -> Result<CredsOutcome, SandboxError> {
    // Step 2, not dumpable: from here on no process of the same uid can
    // ptrace us or open our /proc files (memory, fds). It comes before the
    // uid change, so that there is no moment at which we run as the target
    // uid while still dumpable (another server of that uid could attach).
    prctl::set_dumpable(false).map_err(SandboxError::Dumpable)?;

    let ids = getresuid().map_err(SandboxError::GetIds)?;
    let root = [ids.real, ids.effective, ids.saved]
        .iter()
        .any(|u| u.is_root());

    // Step 3a, bounding set: dropping an entry needs CAP_SETPCAP, which
    // exists only before the uid change clears the capability sets. With
    // no_new_privs and no execve the bounding set no longer grants anything,
    // so a process that never had CAP_SETPCAP (spawned by the helper, which
    // already dropped privilege) keeps it and the report says so.
    let has_setpcap = caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP)
        .map_err(|e| SandboxError::Caps(e.to_string()))?;
    if has_setpcap {
        sys::drop_bounding_set().map_err(SandboxError::Bounding)?;
    }

    // Step 3b, identity: only when still root. Groups first (needs
    // CAP_SETGID), then gids (still needs CAP_SETGID), then uids last, since
    // the uid change takes away the capabilities the other two need.
    if root {
        if cfg.uid == 0 || cfg.gid == 0 {
            return Err(SandboxError::RootTarget {
                uid: cfg.uid,
                gid: cfg.gid,
            });
        }
        setgroups(&[]).map_err(SandboxError::SetGroups)?;
        let g = Gid::from_raw(cfg.gid);
        setresgid(g, g, g).map_err(SandboxError::SetGid)?;
        let u = Uid::from_raw(cfg.uid);
        setresuid(u, u, u).map_err(SandboxError::SetUid)?;
    }

    // Verify instead of trusting the calls: every id must now be non-root
    // (and the configured one when we changed it), and the way back must be
    // closed.
    let ids = getresuid().map_err(SandboxError::GetIds)?;
    let now_gids = getresgid().map_err(SandboxError::GetIds)?;
    let uids = [ids.real, ids.effective, ids.saved];
    let gid_list = [now_gids.real, now_gids.effective, now_gids.saved];
    if uids.iter().any(|u| u.is_root()) || uids.iter().any(|u| *u != ids.real) {
        return Err(SandboxError::VerifyIds(format!(
            "uids still {}/{}/{}",
            ids.real, ids.effective, ids.saved
        )));
    }
    if root && (ids.real.as_raw() != cfg.uid || gid_list.iter().any(|g| g.as_raw() != cfg.gid)) {
        return Err(SandboxError::VerifyIds(format!(
            "expected {}:{}, have uid {} gids {}/{}/{}",
            cfg.uid, cfg.gid, ids.real, now_gids.real, now_gids.effective, now_gids.saved
        )));
    }
    let zero = Uid::from_raw(0);
    match setresuid(zero, zero, zero) {
        Err(Errno::EPERM) => {}
        Ok(()) => return Err(SandboxError::VerifyIds("setresuid(0) succeeded".into())),
        Err(e) => {
            return Err(SandboxError::VerifyIds(format!(
                "setresuid(0) failed with {e}, expected EPERM"
            )))
        }
    }
    let groups_left = getgroups().map_err(SandboxError::GetIds)?.len();
    if root && groups_left != 0 {
        return Err(SandboxError::VerifyIds(format!(
            "{groups_left} supplementary groups left"
        )));
    }

    // Step 4, capability sets: the uid change already emptied effective
    // and permitted (no KEEPCAPS), but inheritable survives it and a
    // non-root process may have been started with capabilities (ambient,
    // file caps): clear all of them explicitly. Ambient first: it must be a
    // subset of permitted and inheritable, and clearing those would drop it
    // anyway, but an explicit clear does not depend on that rule.
    sys::clear_ambient().map_err(SandboxError::CapsErrno)?;
    sys::clear_capsets().map_err(SandboxError::CapsErrno)?;
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
        caps::CapSet::Ambient,
    ] {
        let left = caps::read(None, set).map_err(|e| SandboxError::Caps(e.to_string()))?;
        if !left.is_empty() {
            return Err(SandboxError::Caps(format!("{set:?} still holds {left:?}")));
        }
    }
    let bounding_left = sys::bounding_set_len().map_err(SandboxError::Bounding)?;

    // Step 5, no_new_privs: nothing executed later (execve is also denied by
    // seccomp) can gain privilege through setuid bits or file capabilities,
    // and it is what lets an unprivileged process install Landlock and
    // seccomp filters.
    prctl::set_no_new_privs().map_err(SandboxError::NoNewPrivs)?;
    if !prctl::get_no_new_privs().map_err(SandboxError::NoNewPrivs)? {
        return Err(SandboxError::NoNewPrivs(Errno::EINVAL));
    }

    Ok(CredsOutcome {
        uid: ids.real.as_raw(),
        gid: now_gids.real.as_raw(),
        dropped_from_root: root,
        bounding_left,
        groups_left,
    })
}
