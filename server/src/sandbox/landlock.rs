//! Step 6 of the sandbox: a Landlock domain that handles every filesystem
//! and network right and every scope of the target ABI, with no rules, so
//! no path on any filesystem can be opened, created, removed, executed or
//! truncated, no TCP port bound or connected, no abstract unix socket
//! outside the domain reached and no process outside it signalled.
//!
//! Decisions:
//! - Target ABI is [`TARGET_ABI`] (v7, what this project is tested on).
//!   ABI 8 only adds a restrict-self flag and ABI 9 adds `ResolveUnix`
//!   (connecting to pathname unix sockets), which seccomp already covers by
//!   refusing `socket(2)`. Requesting them on an ABI 7 kernel would only turn
//!   the status into `PartiallyEnforced`.
//! - Best-effort compatibility: an older kernel enforces what it has and the
//!   report says `PartiallyEnforced` with the kernel's ABI.
//! - A kernel with Landlock available that enforces nothing is an error:
//!   the server refuses to continue.
//! - A kernel without Landlock at all (not built in or not enabled at boot)
//!   is accepted, loudly: the report says `landlock=UNAVAILABLE` and the
//!   seccomp filter then refuses `openat` and `kill` itself (see
//!   `seccomp.rs`), so paths stay unreachable. Refusing outright would make
//!   the server unusable on such kernels while seccomp still closes the
//!   same doors, only more coarsely.

use std::fmt;

use ::landlock::{
    Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetStatus, Scope, ABI,
};

use super::SandboxError;

/// The newest Landlock ABI whose rights the ruleset handles.
pub(super) const TARGET_ABI: ABI = ABI::V7;

/// How much of the requested Landlock domain the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockEnforcement {
    /// Every requested right and scope is enforced.
    FullyEnforced,
    /// The kernel's older ABI enforces a subset (best effort).
    PartiallyEnforced,
    /// The kernel has no Landlock at all; only seccomp confines paths.
    Unavailable,
}

/// What step 6 did, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandlockOutcome {
    /// Enforcement level.
    pub enforcement: LandlockEnforcement,
    /// The kernel's Landlock ABI version (0 when unavailable).
    pub kernel_abi: i32,
    /// Whether the signal scope is in force (kernel ABI 6 or newer).
    pub signal_scope: bool,
    /// Whether the abstract unix socket scope is in force (ABI 6 or newer).
    pub abstract_unix_scope: bool,
}

impl LandlockOutcome {
    /// True when Landlock enforces at least the filesystem rights, so the
    /// seccomp filter may leave `openat` to it.
    pub fn restricts_fs(&self) -> bool {
        self.enforcement != LandlockEnforcement::Unavailable
    }
}

impl fmt::Display for LandlockOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.enforcement {
            LandlockEnforcement::Unavailable => write!(
                f,
                "landlock=UNAVAILABLE(kernel lacks Landlock; seccomp alone denies paths)"
            ),
            e => {
                write!(f, "landlock=abi{}:{:?}", self.kernel_abi, e)?;
                let mut scopes = Vec::new();
                if self.abstract_unix_scope {
                    scopes.push("abstract-unix");
                }
                if self.signal_scope {
                    scopes.push("signal");
                }
                if scopes.is_empty() {
                    write!(f, " scopes=none")
                } else {
                    write!(f, " scopes={}", scopes.join(","))
                }
            }
        }
    }
}

/// First ABI with the signal and abstract-unix-socket scopes.
const SCOPES_ABI: i32 = 6;

/// Builds and enforces the rule-less ruleset on the calling thread (and so
/// on every thread it creates later).
pub(super) fn restrict() -> Result<LandlockOutcome, SandboxError> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .and_then(|r| r.handle_access(AccessNet::from_all(TARGET_ABI)))
        .and_then(|r| r.scope(Scope::from_all(TARGET_ABI)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| SandboxError::Landlock(e.to_string()))?;
    let kernel_abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.unwrap_or(effective_abi as i32),
        LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => {
            return Ok(LandlockOutcome {
                enforcement: LandlockEnforcement::Unavailable,
                kernel_abi: 0,
                signal_scope: false,
                abstract_unix_scope: false,
            });
        }
    };
    let enforcement = match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockEnforcement::FullyEnforced,
        RulesetStatus::PartiallyEnforced => LandlockEnforcement::PartiallyEnforced,
        RulesetStatus::NotEnforced => return Err(SandboxError::LandlockNotEnforced { kernel_abi }),
    };
    let scopes = kernel_abi >= SCOPES_ABI;
    Ok(LandlockOutcome {
        enforcement,
        kernel_abi,
        signal_scope: scopes,
        abstract_unix_scope: scopes,
    })
}
