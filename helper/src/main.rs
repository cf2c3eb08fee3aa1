//! fsvc-mount (installed as `/sbin/mount.service`): the privileged mount
//! helper. It acquires what the unprivileged server may not (the source,
//! `/dev/fuse`, the mount itself) and hands it over; it never parses the
//! filesystem. See DESIGN.md, "The mount, step by step".
//!
//! Order, and why: parse argv (nothing touched yet); refuse callers the
//! policy does not serve (before anything is opened); pin the mountpoint
//! (first resource, so later steps cannot be redirected); split options;
//! reach a server; converse. Exit codes are mount(8)'s: 0 mounted, 1 usage
//! or permission, 32 mount failure; every failure prints one line.
//!
//! `--detached SOCKET` (issue 11) makes the mount attached nowhere and
//! passes its fd to the caller's socket (`deliver`); there is no mountpoint
//! to pin or check, no utab line, and for a non-root caller the policy must
//! allow it (rule `users.detached`).
//!
//! The same binary unmounts (`fsvc-mount -u DIR`, or installed as the
//! umount(8) helper `/sbin/umount.fuse.fsvc`): see `unmount`.

mod conn;
mod deliver;
mod klog;
mod mount;
mod mountd;
mod mountinfo;
mod options;
mod policy;
mod server;
mod session;
mod source;
mod sys;
mod unmount;
mod utab;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::ExitCode;

use fsvc_helper::cli::{self, Args, Command, Target, EXIT_MOUNT_FAILURE, EXIT_USAGE};
use fsvc_helper::policy_file::{self, Denial};
use fsvc_protocol::{Delivery, DetachedMount, MountInfo, Refusal};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

/// A failure with its exit code and the line to print.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
    /// For a program that asked over a socket (`--detached`, the mount
    /// service): EPERM for usage and permission, EIO for other failures,
    /// unless a step knows better.
    errno: i32,
}

impl Failure {
    /// What a program that asked over a socket is told.
    fn refusal(&self) -> Refusal {
        Refusal {
            errno: self.errno,
            message: fsvc_protocol::clamp_reason(&self.message),
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
        errno: libc::EPERM,
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_MOUNT_FAILURE,
        message: message.into(),
        errno: libc::EIO,
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("fsvc-mount: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Pins the mountpoint: an `O_PATH` fd on the directory itself (a trailing
/// symlink is refused), used for the mount so the path is never resolved again.
fn pin_mountpoint(dir: &str) -> Result<OwnedFd, Failure> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    open(dir, flags, Mode::empty()).map_err(|e| match e {
        Errno::ENOENT => failed(format!("mount point {dir} does not exist")),
        Errno::ENOTDIR | Errno::ELOOP => failed(format!("mount point {dir} is not a directory")),
        e => failed(format!("cannot open mount point {dir}: {}", e.desc())),
    })
}

fn run() -> Result<(), Failure> {
    // The helper may run setuid root: the caller's umask is theirs, not a
    // say over the modes of what root creates here (the runtime directory).
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    let mut argv = Vec::new();
    for a in std::env::args_os() {
        argv.push(
            a.into_string()
                .map_err(|a| usage(format!("argument {a:?} is not valid UTF-8")))?,
        );
    }
    match cli::parse(argv).map_err(|e| usage(e.0))? {
        Command::Print(text) => {
            print!("{text}");
            Ok(())
        }
        Command::Mount(args) => mount_cmd(&args),
        Command::Serve => mountd::serve(),
        Command::Unmount(u) => {
            let caller = policy::caller().map_err(failed)?;
            let knobs = policy::knobs(&caller, |k| std::env::var_os(k)).map_err(usage)?;
            unmount::run(&u, &caller, &knobs)
        }
    }
}

fn mount_cmd(args: &Args) -> Result<(), Failure> {
    let caller = policy::caller().map_err(failed)?;
    let knobs = policy::knobs(&caller, |k| std::env::var_os(k)).map_err(usage)?;
    // Decided before anything is opened: a caller the policy does not
    // serve learns nothing about the paths it named.
    let user = policy::check_caller(&caller).map_err(usage)?;

    // Opened as the caller, before anything is mounted: a user may name
    // only a namespace file they can open (their own processes').
    let userns = match &args.userns {
        None => None,
        Some(path) => {
            let open_ns = || {
                open(
                    path.as_str(),
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
            };
            let fd = match &user {
                Some(u) => policy::as_caller(&u.caller, open_ns),
                None => open_ns(),
            }
            .map_err(|e| {
                usage(format!(
                    "cannot open the user namespace {path}: {}",
                    e.desc()
                ))
            })?;
            Some(fd)
        }
    };
    let (dir, recipient) = match &args.target {
        // Looked up as the caller: a user may not mount on, or probe, a
        // directory they could not reach themselves.
        Target::Dir(d) => {
            let dir = match &user {
                Some(u) => policy::as_caller(&u.caller, || pin_mountpoint(d))?,
                None => pin_mountpoint(d)?,
            };
            (Some(dir), None)
        }
        // Refused before the socket is touched; connected before anything
        // is mounted, so a wrong path costs no server.
        Target::Detached(sock) => {
            if let Some(u) = &user {
                u.policy
                    .check_detached()
                    .map_err(|d| usage(d.to_string()))?;
            }
            let r = deliver::connect_to(sock, user.as_ref(), knobs.timeout).map_err(failed)?;
            (None, Some(r))
        }
    };
    // What mountinfo, findmnt and ps show: absolute, so a person (and
    // umount) can tell which file it is. No symlink is resolved here; the
    // file actually opened is judged from its fd.
    let shown_source = std::path::absolute(&args.source)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| args.source.clone());
    let job = Job {
        open_path: &args.source,
        shown_source,
        target: &args.target,
        fs_type: args.fs_type,
        options: &args.options,
        verbose: args.verbose,
        fake: args.fake,
        userns: userns.as_ref().map(|fd| fd.as_fd()),
    };
    let result = mount_on(&job, &caller, &knobs, user.as_ref(), dir.as_ref());
    match (result, &recipient) {
        (Ok(None), _) => Ok(()),
        (Ok(Some((mount, info))), Some(r)) => {
            r.send(&Delivery::Mounted(info), Some(&mount))
                .map_err(failed)?;
            if args.verbose {
                println!(
                    "fsvc-mount: passed a detached mount of {} to {} ({})",
                    args.source,
                    r.path(),
                    args.fs_type.name()
                );
            }
            // Our copy closes at exit: the caller's is now the only one.
            Ok(())
        }
        (Ok(Some(_)), None) => Err(failed(
            "internal error: a detached mount without a recipient",
        )),
        (Err(f), Some(r)) => {
            // A program learns why too; the person reads stderr.
            if let Err(e) = r.send(&Delivery::Refused(f.refusal()), None) {
                eprintln!("fsvc-mount: warning: {e}");
            }
            Err(f)
        }
        (Err(f), None) => Err(f),
    }
}

/// One mount to make: from the command line, or from a mount service request.
#[derive(Debug)]
struct Job<'a> {
    /// What is opened for the server (the source as named, or
    /// `/proc/self/fd/N` of a source passed as an fd).
    open_path: &'a str,
    /// The source as mountinfo, ps and the logs show it (absolute).
    shown_source: String,
    /// Where the mount goes.
    target: &'a Target,
    /// The fs type.
    fs_type: fsvc_protocol::FsType,
    /// `-o` as given.
    options: &'a str,
    /// `-v`.
    verbose: bool,
    /// `-f`.
    fake: bool,
    /// Idmap the (detached) mount into this user namespace.
    userns: Option<BorrowedFd<'a>>,
}

/// The mount itself, onto `dir` or detached (`dir` is `None`). Returns the
/// detached mount's fd and what it is, `None` for a mount on a directory
/// (or `-f`).
fn mount_on(
    args: &Job<'_>,
    caller: &fsvc_protocol::Caller,
    knobs: &policy::Knobs,
    user: Option<&policy::UserMount>,
    dir: Option<&OwnedFd>,
) -> Result<Option<(OwnedFd, DetachedMount)>, Failure> {
    // Only into a namespace the caller owns (root included), and only for a
    // detached mount (the kernel idmaps nothing already attached).
    if let Some(ns) = args.userns {
        let owner = sys::user_namespace_owner(ns).map_err(|e| Failure {
            errno: libc::EINVAL,
            ..usage(format!(
                "the user namespace fd is not a user namespace: {e}"
            ))
        })?;
        policy_file::check_userns_owner(caller.uid, owner).map_err(|d| usage(d.to_string()))?;
        if !matches!(args.target, Target::Detached(_)) {
            return Err(usage("an idmapped mount must be detached (--detached)"));
        }
    }
    let opts = options::split(args.options).map_err(|e| usage(e.0))?;
    let wants_allow_other = opts.fs_options.split(',').any(|o| o == "allow_other");
    // Held until exit, so counting this user's mounts and adding one is atomic.
    let mut _user_lock = None;
    if let Some(u) = user {
        if let (Some(dir), Target::Dir(d)) = (dir, &args.target) {
            let facts = policy::mountpoint_facts(dir.as_fd()).map_err(failed)?;
            fsvc_helper::policy_file::check_mountpoint(u.caller.uid, d, &facts)
                .map_err(|d| usage(d.to_string()))?;
        }
        if wants_allow_other {
            u.policy
                .check_allow_other()
                .map_err(|d| usage(d.to_string()))?;
        }
        _user_lock = Some(policy::lock_user_mounts().map_err(failed)?);
        let current = policy::count_user_mounts(u.caller.uid).map_err(failed)?;
        u.policy
            .check_limit(current)
            .map_err(|d| usage(d.to_string()))?;
    }
    let exists = match user {
        Some(u) => policy::as_caller(&u.caller, || std::fs::metadata(args.open_path)),
        None => std::fs::metadata(args.open_path),
    };
    match exists {
        Ok(_) => {}
        // Denied to the caller: a policy refusal, said as one.
        Err(e) if user.is_some() && e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(usage(
                Denial {
                    rule: policy_file::RULE_SOURCE_ACCESS,
                    detail: format!("cannot open {}: {e}", args.shown_source),
                }
                .to_string(),
            ))
        }
        Err(e) => return Err(failed(format!("cannot open {}: {e}", args.shown_source))),
    }
    let target_text = match &args.target {
        Target::Dir(d) => d.clone(),
        Target::Detached(sock) => format!("a detached mount for {sock}"),
    };
    if args.fake {
        if args.verbose {
            println!(
                "fsvc-mount: would mount {} on {target_text} ({})",
                args.shown_source,
                args.fs_type.name()
            );
        }
        return Ok(None);
    }

    let shown_source = args.shown_source.clone();
    let shown_dir = match (dir, &args.target) {
        (Some(dir), Target::Dir(d)) => {
            std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| d.clone())
        }
        _ => DETACHED_LABEL.to_string(),
    };
    let title = format!("fsvc-server: {shown_source} on {shown_dir}");
    let reached = match server::connect_socket(&knobs.socket_dir, args.fs_type).map_err(failed)? {
        Some(r) => r,
        None => server::spawn(&knobs.log, &title).map_err(failed)?,
    };
    let info = MountInfo {
        allow_other_permitted: match user {
            None => true,
            Some(u) => u.policy.users.allow_other,
        },
        caller: caller.clone(),
        fs_type: args.fs_type,
        source: shown_source.clone(),
        mountpoint: shown_dir.clone(),
        fs_options: opts.fs_options.clone(),
        read_only: opts.read_only,
        verbose: args.verbose,
        idmap: args.userns.is_some(),
    };
    let route = reached.route;
    let conn = conn::Conn::new(reached.sock, knobs.timeout).map_err(failed)?;
    let ctx = session::Context {
        dir: dir.map(|d| d.as_fd()),
        options: &opts,
        shown_source: &shown_source,
        open_path: args.open_path,
        user,
    };
    let result = session::run(&conn, &info, &ctx);
    // Closing our end tells a failed server to stop.
    drop(conn);
    match result {
        Ok(served) => {
            // mount(8)'s words for a write-protected source, say.
            if let Some(note) = &served.note {
                eprintln!("fsvc-mount: warning: {note}");
            }
            if let Some(mount) = served.detached {
                // Before anyone else holds the fd: the kernel idmaps only a
                // mount attached nowhere. On failure the fd closes here,
                // which ends the mount and its server.
                if let Some(ns) = args.userns {
                    sys::idmap_mount(mount.as_fd(), ns).map_err(|e| {
                        failed(format!(
                            "cannot idmap the mount into the user namespace: {e} (FUSE needs Linux 6.12 or later)"
                        ))
                    })?;
                }
                let what = DetachedMount {
                    source: shown_source,
                    fs_type: args.fs_type,
                    read_only: served.read_only,
                    note: served
                        .note
                        .map(|n| fsvc_protocol::clamp_reason(&n))
                        .unwrap_or_default(),
                };
                return Ok(Some((mount, what)));
            }
            let login = user.and_then(|u| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u.caller.uid))
                    .ok()
                    .flatten()
                    .map(|p| p.name)
            });
            let kept = utab::kept_options(args.options, login.as_deref());
            record_in_utab(served.mount_id, &shown_source, &shown_dir, &kept);
            if args.verbose {
                let how = match &route {
                    server::Route::Socket(p) => format!("via {p}"),
                    server::Route::Spawned(pid) => format!("server pid {pid}"),
                };
                println!(
                    "fsvc-mount: mounted {} on {target_text} ({}, {how})",
                    shown_source,
                    args.fs_type.name()
                );
            }
            Ok(None)
        }
        Err(e) => {
            let mut message = e.message;
            if let server::Route::Spawned(pid) = route {
                if let Some(end) = server::reap_failed(pid) {
                    message.push_str(&format!(" [{end}]"));
                }
            }
            Err(if e.by_policy {
                usage(message)
            } else {
                failed(message)
            })
        }
    }
}

/// What a detached mount's server is told (and logs, and shows in `ps`)
/// in place of a mountpoint.
const DETACHED_LABEL: &str = "(detached)";

/// Records the mount in libmount's utab (see `utab`). The mount stands
/// whatever happens here; a failure only costs umount(8)'s wait, so it is
/// said (stderr and the kernel log), not fatal.
fn record_in_utab(id: Option<u64>, source: &str, target: &str, options: &[String]) {
    let res = match id {
        Some(id) => utab::record(&utab::Record {
            id,
            source,
            target,
            options,
        }),
        None => Err("the new mount's id is unknown".to_string()),
    };
    if let Err(e) = res {
        let msg = format!(
            "mounted {source} on {target}, but could not record it in {}/utab ({e}): umount(8) may return before the server has finished; unmount with fsvc-mount -u {target}",
            utab::UTAB_DIR
        );
        klog::warn(&msg);
        eprintln!("fsvc-mount: warning: {msg}");
    }
}
