//! Raw system calls nix does not wrap: the new mount API (`fsopen`,
//! `fsconfig`, `fsmount`, `move_mount`), `flock` without an unlocking guard,
//! the block device's read-only flag (`BLKROGET`), and the fork-to-exec
//! path of the spawned server.
//!
//! This is the helper's only `unsafe` module. Invariants:
//! - every wrapper turns a negative return into `io::Error::last_os_error()`
//!   and a returned fd into an `OwnedFd` at once;
//! - the child side of [`spawn_server`] runs only async-signal-safe libc
//!   calls on memory prepared before `fork` (no allocation, no locks), so it
//!   is correct even if the helper ever grows threads.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

// Linux uapi <linux/mount.h>; libc does not export these for every target.
/// `fsopen` flag: the context fd is close-on-exec.
pub const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
/// `fsmount` flag: the mount fd is close-on-exec.
pub const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
/// `fsconfig` command: set a flag parameter.
pub const FSCONFIG_SET_FLAG: libc::c_uint = 0;
/// `fsconfig` command: set a string parameter.
pub const FSCONFIG_SET_STRING: libc::c_uint = 1;
/// `fsconfig` command: create the superblock.
pub const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
/// `move_mount`: the source is the fd itself.
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
/// `move_mount`: the target is the fd itself.
pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
/// Mount attribute: read-only.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// Mount attribute: ignore set-user/group-id bits.
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// Mount attribute: no device files.
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
/// Mount attribute: no execution.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// Mask of the atime mode (one value, not bits).
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
/// Atime mode: relatime (the default, zero).
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
/// Atime mode: noatime.
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
/// Atime mode: strictatime.
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
/// Mount attribute: no directory atime updates.
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
/// Mount attribute: do not follow symlinks.
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(check(ret)?).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fsopen(fs_name, flags)`: a filesystem context fd.
pub fn fsopen(fs_name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: fs_name is a valid NUL-terminated string for the call's duration.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, fs_name.as_ptr(), flags) })
}

/// `fsconfig(fd, FSCONFIG_SET_STRING, key, value, 0)`.
pub fn fsconfig_string(fd: BorrowedFd<'_>, key: &CStr, value: &CStr) -> io::Result<()> {
    // SAFETY: key and value are valid NUL-terminated strings; fd is open.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// `fsconfig(fd, FSCONFIG_SET_FLAG, key, NULL, 0)`.
pub fn fsconfig_flag(fd: BorrowedFd<'_>, key: &CStr) -> io::Result<()> {
    // SAFETY: key is a valid NUL-terminated string; a NULL value is what SET_FLAG wants.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
    .map(drop)
}

/// `fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0)`.
pub fn fsconfig_create(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: the command takes no pointers; NULLs are what it wants.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })
    .map(drop)
}

/// `fsmount(fd, flags, attr_flags)`: a detached mount fd.
pub fn fsmount(fd: BorrowedFd<'_>, flags: libc::c_uint, attrs: u64) -> io::Result<OwnedFd> {
    // The syscall takes attr_flags as unsigned int; every MOUNT_ATTR_* fits.
    let attrs =
        libc::c_uint::try_from(attrs).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fd.as_raw_fd(), flags, attrs) })
}

/// `move_mount(from, "", to, "", F_EMPTY_PATH|T_EMPTY_PATH)`: attach the
/// detached mount `from` on top of the directory `to` refers to.
pub fn move_mount_fds(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let empty = c"";
    // SAFETY: both paths are the same valid empty string; both fds are open.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// `flock(fd, op)`. No guard: the lock belongs to the open file
/// description, which the server inherits through fd passing.
pub fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> io::Result<()> {
    // SAFETY: fd is open; flock has no memory arguments.
    check(unsafe { libc::flock(fd.as_raw_fd(), op) }.into()).map(drop)
}

/// `BLKROGET` (`_IO(0x12, 94)`, <linux/fs.h>): a block device's read-only flag.
const BLKROGET: libc::c_ulong = 0x125e;

/// Whether the block device open on `fd` is read-only (`blockdev
/// --getro`). Opening a read-only block device `O_RDWR` succeeds; only
/// writes fail, so the flag must be asked.
pub fn block_read_only(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut ro: libc::c_int = 0;
    // SAFETY: fd is open; BLKROGET writes one int through the pointer,
    // which points at a live local of that type.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), BLKROGET as _, &mut ro as *mut libc::c_int) }.into(),
    )?;
    Ok(ro != 0)
}

/// `pidfd_open(pid, 0)`: a handle that keeps naming this process, and
/// becomes readable when it exits, whatever happens to the pid.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: the pidfd is open; a NULL siginfo is what the call wants.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Everything the spawned child needs, prepared before `fork` so that the
/// child allocates nothing.
#[derive(Debug)]
pub struct SpawnPlan {
    /// Absolute path of the server binary.
    pub path: CString,
    /// argv strings (kept alive for the pointer array).
    pub argv: Vec<CString>,
    /// The environment (`NAME=value`), fixed by the helper, never inherited.
    pub envp: Vec<CString>,
    /// The server's end of the socket; becomes fd 3.
    pub sock: OwnedFd,
    /// The log fd; becomes fd 4 and fd 2.
    pub log: OwnedFd,
    /// `/dev/null`; becomes fds 0 and 1.
    pub null: OwnedFd,
    /// uid to run as (never 0).
    pub uid: libc::uid_t,
    /// gid to run as (never 0).
    pub gid: libc::gid_t,
}

/// The fd number the server finds its socket on.
pub const SERVER_SOCKET_FD: RawFd = 3;
/// The fd number the server finds its log on.
pub const SERVER_LOG_FD: RawFd = 4;
/// Lowest fd used for the pre-fork copies, above every fd the child sets up.
const HIGH_FD: RawFd = 10;

/// Exit codes of the child when a step before `execve` fails (logged too).
mod child_exit {
    pub const SETUP: i32 = 120;
    pub const IDS: i32 = 121;
    pub const CAPS: i32 = 122;
    pub const NNP: i32 = 123;
    pub const EXEC: i32 = 127;
}

/// Duplicates `fd` to a close-on-exec fd at or above [`HIGH_FD`], so that
/// the child's `dup2` onto 0..=4 can never clobber a source fd.
fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl F_DUPFD_CLOEXEC on an open fd, no memory arguments.
    owned(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH_FD) }.into())
}

/// Forks and execs the server as [`SpawnPlan`] says; returns its pid.
///
/// The child, in this order (each step before the one that needs it):
/// `setsid` (no terminal signals), fds 0..=4 set and every other fd closed
/// (so nothing of the helper leaks), signals back to default, `chdir("/")`
/// (pins nothing), `setgroups([])` then gid then uid (groups and gid need
/// privilege, so they go first), a check that every capability is gone,
/// `no_new_privs`, and `execve` with the helper's own fixed environment.
pub fn spawn_server(plan: &SpawnPlan) -> io::Result<libc::pid_t> {
    if plan.uid == 0 || plan.gid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the server must not run as uid or gid 0",
        ));
    }
    let sock = dup_high(&plan.sock)?;
    let log = dup_high(&plan.log)?;
    let null = dup_high(&plan.null)?;
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let (uid, gid) = (plan.uid, plan.gid);
    let (sock_fd, log_fd, null_fd) = (sock.as_raw_fd(), log.as_raw_fd(), null.as_raw_fd());
    let path = plan.path.as_ptr();

    // SAFETY: fork has no memory arguments. In the child we only call
    // async-signal-safe functions on data prepared above, then exec or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; every pointer refers to memory alive in this
        // copy of the address space, and the child never returns.
        unsafe { child(path, &argv, &envp, sock_fd, log_fd, null_fd, uid, gid) }
    }
    drop((sock, log, null));
    Ok(pid)
}

/// Writes a static message to fd 2 (the log) and exits the child.
///
/// # Safety
/// Only called in the forked child.
unsafe fn die(msg: &CStr, code: i32) -> ! {
    let bytes = msg.to_bytes();
    // SAFETY: bytes is a live static buffer; write and _exit are async-signal-safe.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(code)
    }
}

/// The child side of [`spawn_server`].
///
/// # Safety
/// Only called in the freshly forked child; pointers must be valid.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    path: *const libc::c_char,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    sock: RawFd,
    log: RawFd,
    null: RawFd,
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> ! {
    // SAFETY: all calls are async-signal-safe syscall wrappers on valid
    // arguments; failures end the child through `die`.
    unsafe {
        libc::setsid();
        let wanted = [
            (null, 0),
            (null, 1),
            (log, 2),
            (sock, SERVER_SOCKET_FD),
            (log, SERVER_LOG_FD),
        ];
        for (from, to) in wanted {
            if libc::dup2(from, to) < 0 {
                die(c"fsvc-mount: spawn: dup2 failed\n", child_exit::SETUP);
            }
        }
        let first = (SERVER_LOG_FD + 1) as libc::c_uint;
        if libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) < 0 {
            // Older kernels: close one by one up to the fd limit.
            let mut rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
                rl.rlim_cur.min(1 << 20) as RawFd
            } else {
                1024
            };
            for fd in (SERVER_LOG_FD + 1)..max {
                libc::close(fd);
            }
        }
        // Dispositions set to "ignore" survive exec (Rust ignores SIGPIPE).
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::umask(0o077);
        if libc::chdir(c"/".as_ptr()) < 0 {
            die(c"fsvc-mount: spawn: chdir / failed\n", child_exit::SETUP);
        }
        // Empty the bounding set while CAP_SETPCAP is still ours (the uid
        // change below takes it away): with it empty, nothing the server
        // ever executes could regain a capability. EINVAL marks the end of
        // the capabilities this kernel knows.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0
                && *libc::__errno_location() != libc::EINVAL
            {
                die(
                    c"fsvc-mount: spawn: cannot drop the capability bounding set\n",
                    child_exit::CAPS,
                );
            }
        }
        if libc::setgroups(0, std::ptr::null()) < 0
            || libc::setresgid(gid, gid, gid) < 0
            || libc::setresuid(uid, uid, uid) < 0
        {
            die(
                c"fsvc-mount: spawn: cannot drop to the server uid/gid\n",
                child_exit::IDS,
            );
        }
        if libc::getuid() != uid || libc::geteuid() != uid || libc::getegid() != gid {
            die(c"fsvc-mount: spawn: ids did not change\n", child_exit::IDS);
        }
        // Changing every uid away from 0 clears the capability sets; check
        // rather than trust it (SECBIT_KEEP_CAPS, odd LSMs).
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) < 0
            || data
                .iter()
                .any(|d| d.effective != 0 || d.permitted != 0 || d.inheritable != 0)
        {
            die(
                c"fsvc-mount: spawn: capabilities survived the uid change\n",
                child_exit::CAPS,
            );
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            die(
                c"fsvc-mount: spawn: cannot set no_new_privs\n",
                child_exit::NNP,
            );
        }
        libc::execve(path, argv.as_ptr(), envp.as_ptr());
        die(
            c"fsvc-mount: spawn: cannot execute the server\n",
            child_exit::EXEC,
        )
    }
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two 32-bit halves.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Whether a child exit status from [`spawn_server`] says its `execve`
/// failed.
pub fn child_exec_failed(code: i32) -> bool {
    code == child_exit::EXEC
}

/// Decodes a child exit status from [`spawn_server`] into words, for the
/// statuses only the pre-exec child uses.
pub fn describe_child_exit(code: i32) -> Option<&'static str> {
    match code {
        child_exit::SETUP => Some("could not set up its fds or working directory"),
        child_exit::IDS => Some("could not drop to the server uid/gid"),
        child_exit::CAPS => Some("kept capabilities after dropping its uid"),
        child_exit::NNP => Some("could not set no_new_privs"),
        child_exit::EXEC => Some("could not execute the server binary"),
        _ => None,
    }
}

/// The fd systemd passes the accepted connection on (`SD_LISTEN_FDS_START`).
pub const ACTIVATION_FD: RawFd = 3;

/// Takes fd [`ACTIVATION_FD`], inherited from systemd, once per process:
/// `None` when it is not open or was taken already. Marked close-on-exec,
/// so no server the service spawns inherits it.
pub fn take_activation_fd() -> Option<OwnedFd> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: F_GETFD only reads the descriptor flags; valid on any number.
    if unsafe { libc::fcntl(ACTIVATION_FD, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fd is open (checked above), was inherited by number so no
    // Rust object owns it, and TAKEN makes this the only OwnedFd made of it.
    let fd = unsafe { OwnedFd::from_raw_fd(ACTIVATION_FD) };
    // SAFETY: F_SETFD on an open fd with plain integer flags.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return None;
    }
    Some(fd)
}

/// `NS_GET_NSTYPE` (`_IO(0xb7, 0x3)`, <linux/nsfs.h>): the namespace's `CLONE_NEW*` type.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
/// `NS_GET_OWNER_UID` (`_IO(0xb7, 0x4)`): the uid that created a user namespace.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// The owner (creator's euid, in the initial namespace's terms) of the
/// user namespace open on `fd`; an error when `fd` is not a user namespace.
pub fn user_namespace_owner(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type; fd is open.
    let kind = check(unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) }.into())?;
    if kind != libc::c_long::from(libc::CLONE_NEWUSER) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which
    // points at a live local of that type; fd is open.
    check(
        unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                NS_GET_OWNER_UID as _,
                &mut uid as *mut libc::uid_t,
            )
        }
        .into(),
    )?;
    Ok(uid)
}

/// Mount attribute: idmap the mount (`mount_attr.userns_fd` names the namespace).
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (<linux/mount.h>, `MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(mnt, "", AT_EMPTY_PATH, {attr_set: MOUNT_ATTR_IDMAP,
/// userns_fd})`: idmaps the detached mount `mnt` into the user namespace
/// `userns` (the kernel allows it only on a mount attached nowhere yet, of
/// a filesystem that supports it).
pub fn idmap_mount(mnt: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let ns =
        u64::try_from(userns.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns,
    };
    let empty = c"";
    // SAFETY: the path is a valid empty string, `attr` a live struct of the
    // size passed; both fds are open.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}
