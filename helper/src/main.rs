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

mod args;
mod conn;
mod mount;
mod options;
mod policy;
mod server;
mod session;
mod source;
mod sys;

use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;

use fsvc_protocol::MountInfo;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

/// mount(8): incorrect invocation or permissions.
const EXIT_USAGE: u8 = 1;
/// mount(8): mount failure.
const EXIT_MOUNT_FAILURE: u8 = 32;

/// A failure with its exit code and the line to print.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_MOUNT_FAILURE,
        message: message.into(),
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
    let args = args::parse(std::env::args().skip(1)).map_err(|e| usage(e.0))?;
    let caller = policy::caller().map_err(failed)?;
    policy::check_caller(&caller).map_err(usage)?;
    let knobs = policy::knobs(&caller, |k| std::env::var_os(k)).map_err(usage)?;

    let dir = pin_mountpoint(&args.mountpoint)?;
    let opts = options::split(&args.options).map_err(|e| usage(e.0))?;
    if let Err(e) = std::fs::metadata(&args.source) {
        return Err(failed(format!("cannot open {}: {e}", args.source)));
    }
    if args.fake {
        if args.verbose {
            println!(
                "fsvc-mount: would mount {} on {} ({})",
                args.source,
                args.mountpoint,
                args.fs_type.name()
            );
        }
        return Ok(());
    }

    let reached = match server::connect_socket(&knobs.socket_dir, args.fs_type).map_err(failed)? {
        Some(r) => r,
        None => server::spawn(&knobs.log).map_err(failed)?,
    };
    let info = MountInfo {
        allow_other_permitted: policy::is_root(&caller),
        caller,
        fs_type: args.fs_type,
        source: args.source.clone(),
        mountpoint: args.mountpoint.clone(),
        fs_options: opts.fs_options.clone(),
        read_only: opts.read_only,
        verbose: args.verbose,
    };
    let route = reached.route;
    let conn = conn::Conn::new(reached.sock, knobs.timeout).map_err(failed)?;
    let ctx = session::Context {
        dir: dir.as_fd(),
        options: &opts,
    };
    let result = session::run(&conn, &info, &ctx);
    // Closing our end tells a failed server to stop.
    drop(conn);
    match result {
        Ok(note) => {
            // mount(8)'s words for a write-protected source, say.
            if let Some(note) = note {
                eprintln!("fsvc-mount: warning: {note}");
            }
            if args.verbose {
                let how = match &route {
                    server::Route::Socket(p) => format!("via {p}"),
                    server::Route::Spawned(pid) => format!("server pid {pid}"),
                };
                println!(
                    "fsvc-mount: mounted {} on {} ({}, {how})",
                    args.source,
                    args.mountpoint,
                    args.fs_type.name()
                );
            }
            Ok(())
        }
        Err(e) => {
            let mut message = e.0;
            if let server::Route::Spawned(pid) = route {
                if let Some(end) = server::reap_failed(pid) {
                    message.push_str(&format!(" [{end}]"));
                }
            }
            Err(failed(message))
        }
    }
}
