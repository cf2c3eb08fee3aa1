//! Step 8 of the sandbox, installed last: a seccomp-BPF allowlist.
//!
//! Shape: one *allow* filter whose default action is `KillProcess`, plus
//! small *errno* filters (default `Allow`) that turn chosen calls into an
//! error. The kernel runs every filter and takes the most severe verdict
//! (kill > errno > allow), so a call in an errno filter must also be in the
//! allow filter to fail softly instead of killing. The errno filters are
//! installed first because once the allow filter is in place `seccomp(2)`
//! itself is refused.
//!
//! Decisions:
//! - Default `KillProcess` (not `Errno`): a call outside the list means the
//!   server is running code it was never meant to run (an exploit, or a
//!   library path nobody reviewed); dying ends the mount cleanly, and the
//!   kernel logs the syscall number (`dmesg`, audit) for whoever extends the
//!   list. An errno could let an exploit probe the filter.
//! - Soft denials (errno) only for calls that libc or std make on their own
//!   and handle failing: `clone3` (ENOSYS: glibc falls back to `clone`, whose
//!   flags can be inspected), `openat2` (ENOSYS), `open`, `socket`,
//!   `socketpair`, `getcwd`, `readlink(at)` (EPERM; std's panic hook calls
//!   them), unknown `ioctl` requests (ENOTTY, e.g. `isatty`),
//!   unknown `fcntl` commands and `prctl` options (EPERM), `tgkill` to
//!   another process (EPERM).
//! - `openat` and `kill` are left to Landlock when it is in force on this
//!   kernel (it answers EACCES for every path and EPERM for signals leaving
//!   the domain, so the probe can tell Landlock's answer from seccomp's);
//!   `openat` with `O_PATH`, which Landlock does not police, is refused here
//!   always. Without Landlock both are refused here (EPERM).
//! - Argument checks where a register tells enough: `clone` must create a
//!   thread (`CLONE_THREAD|CLONE_VM|CLONE_SIGHAND`, no namespace flags);
//!   `mmap`/`mprotect` never `PROT_EXEC` (no new code); `prlimit64` only
//!   reads our own limits; `newfstatat`/`statx` need `AT_EMPTY_PATH` (the
//!   fd-based form std and glibc use for fstat).
//! - Not restrictable with BPF (it cannot read memory): the path argument of
//!   `newfstatat`/`statx`, so a hostile server could still `stat` a path by
//!   passing `AT_EMPTY_PATH` with a non-empty path (metadata only; Landlock
//!   does not cover stat either); the buffers of read/write calls; which
//!   descriptor a read or write goes to (only the kept ones exist).

use std::collections::BTreeMap;

use seccompiler::{
    apply_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use super::landlock::LandlockOutcome;
use super::SandboxError;

/// Syscall number → rules (empty: unconditional), as seccompiler takes them.
type RuleMap = BTreeMap<i64, Vec<SeccompRule>>;

/// What step 8 installed, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SeccompOutcome {
    /// Syscalls the allow filter lets through (some of them only with
    /// checked arguments, some then turned into an errno by a soft filter).
    pub allowed: usize,
    /// Syscalls that always fail softly with an errno.
    pub soft_denied: usize,
}

/// `ioctl` requests the server may issue on its block device after the
/// sandbox: sector size and size queries, and discard/zero-out for the
/// write path. Everything else answers ENOTTY.
const IOCTL_ALLOWED: [u64; 5] = [
    BLKSSZGET,
    BLKGETSIZE64,
    BLKDISCARD,
    BLKZEROOUT,
    libc::FIONREAD,
];
/// `_IO(0x12, 104)`: logical sector size.
const BLKSSZGET: u64 = 0x1268;
/// `_IOR(0x12, 114, size_t)`: device size in bytes.
const BLKGETSIZE64: u64 = 0x8008_1272;
/// `_IO(0x12, 119)`: discard a byte range.
const BLKDISCARD: u64 = 0x1277;
/// `_IO(0x12, 127)`: zero a byte range.
const BLKZEROOUT: u64 = 0x127f;

/// `fcntl` commands std, glibc, nix and the server use on existing
/// descriptors. Locks and `F_SETOWN`-style commands answer EPERM.
const FCNTL_ALLOWED: [libc::c_int; 5] = [
    libc::F_GETFD,
    libc::F_SETFD,
    libc::F_GETFL,
    libc::F_SETFL,
    libc::F_DUPFD_CLOEXEC,
];

/// `prctl` options allowed: std names threads (`PR_SET_NAME`); the getters
/// let the server (and the probe) report its own state;
/// `PR_SET_NO_NEW_PRIVS` (which can only be turned on) because seccompiler
/// sets it again before installing each filter, after the EPERM filter.
const PRCTL_ALLOWED: [libc::c_int; 6] = [
    libc::PR_SET_NAME,
    libc::PR_SET_NO_NEW_PRIVS,
    libc::PR_GET_NAME,
    libc::PR_GET_SECCOMP,
    libc::PR_GET_NO_NEW_PRIVS,
    libc::PR_GET_DUMPABLE,
];

/// Flags a `clone` must carry: it may only create a thread of this process.
const CLONE_THREAD_FLAGS: u64 = (libc::CLONE_THREAD | libc::CLONE_VM | libc::CLONE_SIGHAND) as u64;
/// Flags a `clone` must not carry: new namespaces, vfork-like sharing games.
const CLONE_FORBIDDEN_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_VFORK
    | libc::CLONE_PTRACE
    | libc::CLONE_UNTRACED) as u64;

/// Syscalls allowed without looking at arguments.
const PLAIN: &[(i64, &str)] = &[
    // I/O on the kept descriptors: the device, /dev/fuse, the helper socket,
    // the log.
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_pread64, "pread64"),
    (libc::SYS_pwrite64, "pwrite64"),
    (libc::SYS_preadv, "preadv"),
    (libc::SYS_pwritev, "pwritev"),
    (libc::SYS_preadv2, "preadv2"),
    (libc::SYS_pwritev2, "pwritev2"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_fsync, "fsync"),
    (libc::SYS_fdatasync, "fdatasync"),
    (libc::SYS_fallocate, "fallocate"),
    (libc::SYS_fstatfs, "fstatfs"),
    (libc::SYS_close, "close"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_recvmsg, "recvmsg"),
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_shutdown, "shutdown"),
    (libc::SYS_ppoll, "ppoll"),
    // Memory.
    (libc::SYS_munmap, "munmap"),
    (libc::SYS_mremap, "mremap"),
    (libc::SYS_madvise, "madvise"),
    (libc::SYS_brk, "brk"),
    // Threads and synchronisation.
    (libc::SYS_futex, "futex"),
    (libc::SYS_set_robust_list, "set_robust_list"),
    (libc::SYS_rseq, "rseq"),
    (libc::SYS_sched_getaffinity, "sched_getaffinity"),
    (libc::SYS_sched_yield, "sched_yield"),
    (libc::SYS_gettid, "gettid"),
    (libc::SYS_getpid, "getpid"),
    (libc::SYS_exit, "exit"),
    (libc::SYS_exit_group, "exit_group"),
    (libc::SYS_restart_syscall, "restart_syscall"),
    // Signals (handlers, masks, the alternate stack std installs per thread).
    (libc::SYS_rt_sigprocmask, "rt_sigprocmask"),
    (libc::SYS_rt_sigaction, "rt_sigaction"),
    (libc::SYS_rt_sigreturn, "rt_sigreturn"),
    (libc::SYS_sigaltstack, "sigaltstack"),
    (libc::SYS_tgkill, "tgkill"),
    (libc::SYS_kill, "kill"),
    // Time and randomness (HashMap seeds).
    (libc::SYS_getrandom, "getrandom"),
    (libc::SYS_clock_gettime, "clock_gettime"),
    (libc::SYS_clock_getres, "clock_getres"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep"),
    (libc::SYS_nanosleep, "nanosleep"),
    (libc::SYS_gettimeofday, "gettimeofday"),
    // Identity and state queries.
    (libc::SYS_getuid, "getuid"),
    (libc::SYS_geteuid, "geteuid"),
    (libc::SYS_getgid, "getgid"),
    (libc::SYS_getegid, "getegid"),
    (libc::SYS_getresuid, "getresuid"),
    (libc::SYS_getresgid, "getresgid"),
    (libc::SYS_getgroups, "getgroups"),
    (libc::SYS_capget, "capget"),
    // Descriptors: checked by the soft filters below.
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_prctl, "prctl"),
    (libc::SYS_fstat, "fstat"),
    // Soft-denied (always an errno, see SOFT_*): listed so that the errno,
    // not the kill, is the verdict.
    (libc::SYS_clone3, "clone3"),
    (libc::SYS_openat2, "openat2"),
    (libc::SYS_socket, "socket"),
    (libc::SYS_socketpair, "socketpair"),
    (libc::SYS_getcwd, "getcwd"),
    (libc::SYS_readlinkat, "readlinkat"),
    // Path opens: Landlock decides (or the soft filter when it is absent).
    (libc::SYS_openat, "openat"),
];

/// x86_64-only legacy syscalls the same way.
#[cfg(target_arch = "x86_64")]
const PLAIN_ARCH: &[(i64, &str)] = &[
    (libc::SYS_poll, "poll"),
    (libc::SYS_open, "open"),
    (libc::SYS_readlink, "readlink"),
];
#[cfg(not(target_arch = "x86_64"))]
const PLAIN_ARCH: &[(i64, &str)] = &[];

/// Always ENOSYS: callers fall back to a call the filter can inspect.
const SOFT_ENOSYS: &[i64] = &[libc::SYS_clone3, libc::SYS_openat2];
/// Always EPERM. `getcwd` and `readlink(at)`: std's panic hook asks for the
/// cwd and `/proc/self/exe` while printing a panic and its backtrace (a
/// refusal there is handled; a kill would hide the panic). `readlinkat` is
/// not left to Landlock, which does not restrict reading link targets.
const SOFT_EPERM: &[i64] = &[
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_getcwd,
    libc::SYS_readlinkat,
];
#[cfg(target_arch = "x86_64")]
const SOFT_EPERM_ARCH: &[i64] = &[libc::SYS_open, libc::SYS_readlink];
#[cfg(not(target_arch = "x86_64"))]
const SOFT_EPERM_ARCH: &[i64] = &[];

fn seccomp_err(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Seccomp(e.to_string())
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(seccomp_err)
}

/// A 32-bit comparison: for `int`/`unsigned int` arguments, whose upper
/// register half the kernel ignores.
fn cond32(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(seccomp_err)
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(seccomp_err)
}

/// "Argument `arg` (32-bit) is none of `values`": one rule, ANDed `Ne`s.
fn none_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, SandboxError> {
    let conds = values
        .iter()
        .map(|&v| cond32(arg, SeccompCmpOp::Ne, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![rule(conds)?])
}

/// The allow filter's rules.
fn allow_rules() -> Result<RuleMap, SandboxError> {
    let mut m = RuleMap::new();
    for &(nr, _) in PLAIN.iter().chain(PLAIN_ARCH) {
        m.insert(nr, Vec::new());
    }
    let no_exec = libc::PROT_EXEC as u64;
    // mmap(addr, len, prot, ...), mprotect(addr, len, prot): prot is arg 2.
    for nr in [libc::SYS_mmap, libc::SYS_mprotect] {
        m.insert(
            nr,
            vec![rule(vec![cond32(2, SeccompCmpOp::MaskedEq(no_exec), 0)?])?],
        );
    }
    // clone(flags, ...): a thread of this process, nothing else.
    m.insert(
        libc::SYS_clone,
        vec![rule(vec![
            cond(
                0,
                SeccompCmpOp::MaskedEq(CLONE_THREAD_FLAGS),
                CLONE_THREAD_FLAGS,
            )?,
            cond(0, SeccompCmpOp::MaskedEq(CLONE_FORBIDDEN_FLAGS), 0)?,
        ])?],
    );
    // prlimit64(pid, resource, new, old): our own limits, read only.
    m.insert(
        libc::SYS_prlimit64,
        vec![rule(vec![
            cond32(0, SeccompCmpOp::Eq, 0)?,
            cond(2, SeccompCmpOp::Eq, 0)?,
        ])?],
    );
    // newfstatat(dirfd, path, buf, flags), statx(dirfd, path, flags, ...).
    let empty_path = libc::AT_EMPTY_PATH as u64;
    m.insert(
        libc::SYS_newfstatat,
        vec![rule(vec![cond32(
            3,
            SeccompCmpOp::MaskedEq(empty_path),
            empty_path,
        )?])?],
    );
    m.insert(
        libc::SYS_statx,
        vec![rule(vec![cond32(
            2,
            SeccompCmpOp::MaskedEq(empty_path),
            empty_path,
        )?])?],
    );
    Ok(m)
}

/// The EPERM filter's rules; `landlock` decides who answers `openat`/`kill`.
fn eperm_rules(landlock: &LandlockOutcome, pid: u32) -> Result<RuleMap, SandboxError> {
    let mut m = RuleMap::new();
    for &nr in SOFT_EPERM.iter().chain(SOFT_EPERM_ARCH) {
        m.insert(nr, Vec::new());
    }
    let o_path = libc::O_PATH as u64;
    if landlock.restricts_fs() {
        // openat(dirfd, path, flags, mode): O_PATH opens escape Landlock.
        m.insert(
            libc::SYS_openat,
            vec![rule(vec![cond32(
                2,
                SeccompCmpOp::MaskedEq(o_path),
                o_path,
            )?])?],
        );
    } else {
        m.insert(libc::SYS_openat, Vec::new());
    }
    if !landlock.signal_scope {
        // kill(pid, sig): without the Landlock signal scope only ourselves.
        m.insert(
            libc::SYS_kill,
            vec![rule(vec![cond32(0, SeccompCmpOp::Ne, u64::from(pid))?])?],
        );
    }
    // tgkill(tgid, tid, sig): raise()/abort() target our own thread group.
    m.insert(
        libc::SYS_tgkill,
        vec![rule(vec![cond32(0, SeccompCmpOp::Ne, u64::from(pid))?])?],
    );
    let fcntl: Vec<u64> = FCNTL_ALLOWED.iter().map(|&c| c as u64).collect();
    m.insert(libc::SYS_fcntl, none_of(1, &fcntl)?);
    let prctl: Vec<u64> = PRCTL_ALLOWED.iter().map(|&c| c as u64).collect();
    m.insert(libc::SYS_prctl, none_of(0, &prctl)?);
    Ok(m)
}

/// The ENOTTY filter: ioctl requests outside [`IOCTL_ALLOWED`].
fn enotty_rules() -> Result<RuleMap, SandboxError> {
    let mut m = RuleMap::new();
    m.insert(libc::SYS_ioctl, none_of(1, &IOCTL_ALLOWED)?);
    Ok(m)
}

/// The ENOSYS filter.
fn enosys_rules() -> RuleMap {
    SOFT_ENOSYS.iter().map(|&nr| (nr, Vec::new())).collect()
}

fn compile(
    rules: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SandboxError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch).map_err(seccomp_err)?;
    BpfProgram::try_from(filter).map_err(seccomp_err)
}

/// Compiles every filter first (allocation and errors happen before any is
/// installed), then installs the soft ones and the allow filter last.
pub(super) fn install(landlock: &LandlockOutcome) -> Result<SeccompOutcome, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(seccomp_err)?;
    let pid = std::process::id();
    let allow = allow_rules()?;
    let allowed = allow.len();
    let soft_denied = SOFT_ENOSYS.len() + SOFT_EPERM.len() + SOFT_EPERM_ARCH.len();
    let errno = |e: i32| SeccompAction::Errno(e as u32);
    let programs = [
        compile(
            enosys_rules(),
            SeccompAction::Allow,
            errno(libc::ENOSYS),
            arch,
        )?,
        compile(
            eperm_rules(landlock, pid)?,
            SeccompAction::Allow,
            errno(libc::EPERM),
            arch,
        )?,
        compile(
            enotty_rules()?,
            SeccompAction::Allow,
            errno(libc::ENOTTY),
            arch,
        )?,
        compile(
            allow,
            SeccompAction::KillProcess,
            SeccompAction::Allow,
            arch,
        )?,
    ];
    for program in &programs {
        apply_filter(program).map_err(seccomp_err)?;
    }
    Ok(SeccompOutcome {
        allowed,
        soft_denied,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::sandbox::landlock::LandlockEnforcement;

    fn outcomes() -> [LandlockOutcome; 2] {
        [
            LandlockOutcome {
                enforcement: LandlockEnforcement::FullyEnforced,
                kernel_abi: 7,
                signal_scope: true,
                abstract_unix_scope: true,
            },
            LandlockOutcome {
                enforcement: LandlockEnforcement::Unavailable,
                kernel_abi: 0,
                signal_scope: false,
                abstract_unix_scope: false,
            },
        ]
    }

    #[test]
    fn plain_list_has_no_duplicates() {
        let mut seen = BTreeSet::new();
        for &(nr, name) in PLAIN.iter().chain(PLAIN_ARCH) {
            assert!(seen.insert(nr), "{name} listed twice");
        }
    }

    /// A call an errno filter answers must pass the allow filter, or the
    /// kill would win over the errno.
    #[test]
    fn every_soft_denied_call_is_allowed_by_the_kill_filter() {
        let allow = allow_rules().expect("allow rules");
        for ll in outcomes() {
            let soft = eperm_rules(&ll, 1)
                .expect("eperm rules")
                .into_keys()
                .chain(enotty_rules().expect("enotty").into_keys())
                .chain(enosys_rules().into_keys());
            for nr in soft {
                assert!(
                    allow.contains_key(&nr),
                    "syscall {nr} is soft-denied but not allowed"
                );
            }
        }
    }

    /// Calls the server must never make stay out of the allow filter.
    #[test]
    fn dangerous_calls_are_not_allowed() {
        let allow = allow_rules().expect("allow rules");
        for nr in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_setuid,
            libc::SYS_setresuid,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_seccomp,
            libc::SYS_memfd_create,
            libc::SYS_process_vm_writev,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_io_uring_setup,
            libc::SYS_userfaultfd,
            libc::SYS_landlock_create_ruleset,
        ] {
            assert!(!allow.contains_key(&nr), "syscall {nr} must not be allowed");
        }
    }

    #[test]
    fn every_filter_compiles_for_this_arch() {
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("arch");
        for ll in outcomes() {
            let errno = SeccompAction::Errno(libc::EPERM as u32);
            compile(
                eperm_rules(&ll, 1).expect("eperm"),
                SeccompAction::Allow,
                errno,
                arch,
            )
            .expect("eperm filter");
        }
        compile(
            allow_rules().expect("allow"),
            SeccompAction::KillProcess,
            SeccompAction::Allow,
            arch,
        )
        .expect("allow filter");
        compile(
            enotty_rules().expect("enotty"),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOTTY as u32),
            arch,
        )
        .expect("enotty filter");
    }
}
