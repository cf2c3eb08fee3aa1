//! fsvc-server: the unprivileged ext2/3/4 server.
//!
//! Started by systemd socket activation or spawned by the helper
//! (`service::activation`), it runs DESIGN.md's steps in their fixed order:
//! handshake, request the source, files done, build the IO channel, enter
//! the sandbox, open the filesystem, ask for the mount, start FUSE, say
//! goodbye, serve until the kernel connection ends.
//!
//! Invariants: the image is not read before the sandbox is in place (the
//! IO channel is built with `sandbox::gate()`, so this is enforced, not
//! just ordered); every failure before the goodbye is reported to the
//! helper as a Goodbye with a non-zero errno-like status and one line a
//! person can act on, then the process exits 1; nothing the helper or the
//! image sends can panic this code.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::Arc;

use fsvc_ext4::io::unixfd::UnixFdChannel;
use fsvc_ext4::io::IoChannel;
use fsvc_ext4::journal::{self, Recovery};
use fsvc_ext4::{orphan, Fs};
use fsvc_protocol::Access;
use fsvc_server::fuse::{engine_errno, FuseServer, ServeOptions};
use fsvc_server::logging::{self, FdLogger, Style};
use fsvc_server::mode::{self, MountMode, READ_ONLY_FALLBACK};
use fsvc_server::sandbox::{self, SandboxConfig};
use fsvc_server::service::activation::{self, ActivationError, Mode};
use fsvc_server::service::{Service, DEFAULT_TIMEOUT};
use log::LevelFilter;
use nix::errno::Errno;

/// The unprivileged ids the sandbox drops to when the server still runs as
/// root (the helper's spawn and systemd's DynamicUser normally did it).
const NOBODY: u32 = 65534;

/// The goodbye's reason on a mount with nothing to tell (the helper prints
/// any other reason that comes with success).
const MOUNTED: &str = "mounted";

/// A failure to report in the Goodbye.
#[derive(Debug)]
struct Failure {
    /// errno-like status for the helper.
    status: i32,
    /// One line for a person.
    reason: String,
}

impl Failure {
    fn new(errno: Errno, reason: impl Into<String>) -> Failure {
        Failure {
            status: errno as i32,
            reason: reason.into(),
        }
    }
}

/// `fsvc-server --help` / `--version`: the only arguments a person passes
/// (see fsvc-server(8)); anything else is the activation's business.
fn print_info() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    let (Some(arg), None) = (args.next(), args.next()) else {
        return None;
    };
    match arg.to_str()? {
        "--version" | "-V" => println!("fsvc-server {}", env!("CARGO_PKG_VERSION")),
        "--help" | "-h" => println!(
            "fsvc-server: the sandboxed ext2/3/4 server of fsvc (see fsvc-server(8)).\n\
             It is started by fsvc-mount (spawned) or by systemd socket activation\n\
             (fsvc.socket), never by hand. Options: --help, --version."
        ),
        _ => return None,
    }
    Some(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    if let Some(code) = print_info() {
        return code;
    }
    let act = match activation::activate() {
        Ok(a) => a,
        Err(e @ ActivationError::Usage) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("fsvc-server: {e}");
            return ExitCode::from(1);
        }
    };
    let logger = match (act.mode, act.log) {
        (Mode::Spawned, Some(fd)) => FdLogger::to_fd(fd),
        (Mode::Spawned, None) => FdLogger::to_stderr(Style::Plain),
        (Mode::Systemd, _) => FdLogger::to_stderr(Style::Journal),
    };
    let log_fd = match logger.install(LevelFilter::Info) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("fsvc-server: cannot install the logger: {e}");
            return ExitCode::from(1);
        }
    };
    log::debug!("started ({:?})", act.mode);

    let mut svc = match Service::accept(act.sock, DEFAULT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            // accept() already told the helper.
            log::error!("handshake failed: {e}");
            return ExitCode::from(1);
        }
    };
    let (server, fs, note) = match mount(&mut svc, log_fd) {
        Ok(mounted) => mounted,
        Err(f) => {
            log::error!("{}", f.reason);
            if let Err(e) = svc.goodbye(f.status, &f.reason) {
                log::debug!("could not tell the helper: {e}");
            }
            return ExitCode::from(1);
        }
    };
    // The kernel handshake is done: tell the helper (and so mount(8)) only
    // now, so that its success means the mount answers requests.
    if let Err(e) = svc.goodbye(0, &note) {
        // The mount exists and works; the helper may have died. Serve anyway
        // (unmounting ends us).
        log::warn!("could not tell the helper the mount succeeded: {e}");
    }
    // The conversation is over: close the socket rather than keep an fd
    // nothing will use again.
    drop(svc);
    log::info!("mounted and serving");
    // The commit interval (`commit=`): the engine's thread, only on
    // read-write mounts, started inside the sandbox and stopped before the
    // end-of-mount work below.
    let committer = match fsvc_ext4::committer::Committer::start(Arc::clone(&fs)) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("no commit thread ({e}): changes not synced wait for the unmount");
            None
        }
    };
    let served = server.run();
    drop(committer);
    // The kernel connection has ended (unmount, or an abort). The engine's
    // end-of-mount work comes first, then its verdict in the log, and only
    // then is the device closed (the last `Fs` reference, dropped when this
    // returns) and the process exits: an unmount that waits for this
    // process (the umount helper) therefore returns after all of it.
    let finished = fs.unmount();
    match (&served, &finished) {
        (Ok(()), Ok(())) => log::info!("unmounted: clean"),
        (_, Err(e)) => log::error!("unmounted, but the filesystem was not closed cleanly: {e}"),
        (Err(e), Ok(())) => log::error!("serving ended with an error: {e}"),
    }
    drop(fs);
    if served.is_ok() && finished.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Everything between the handshake and the goodbye: returns the FUSE
/// server past its kernel handshake, the filesystem (for the unmount
/// work) and the goodbye's note for the person mounting ([`MOUNTED`], or
/// why the mount is read-only when they did not ask for it), or the failure
/// to report in the goodbye.
fn mount(svc: &mut Service, log_fd: RawFd) -> Result<(FuseServer, Arc<Fs>, String), Failure> {
    let info = svc.mount_info().clone();
    // From here on every log line names the mount.
    logging::set_mount_label(&format!("{} on {}", info.source, info.mountpoint));
    let opts = svc.options().clone();
    logging::set_verbose(info.verbose || opts.debug, opts.debug);
    log::info!(
        "mounting as {} for uid {}",
        info.fs_type.name(),
        info.caller.uid
    );
    let proto = |e: fsvc_server::service::ServiceError| Failure {
        status: e.status(),
        reason: e.to_string(),
    };
    let refused = |refusal: fsvc_protocol::Refusal| Failure {
        status: refusal.errno,
        reason: format!("cannot open {}: {}", info.source, refusal.message),
    };

    // Step 3: the source. Read-write unless nothing may ever be written
    // (see `mode`: even -o ro may need the journal replayed); read-only
    // when the helper says the source cannot be opened for writing.
    let wanted = mode::wanted_access(&opts);
    let (dev, grant, denied) = match svc.request_file(wanted).map_err(proto)? {
        Ok((dev, grant)) => (dev, grant, None),
        Err(r) if wanted == Access::ReadWrite && READ_ONLY_FALLBACK.contains(&r.errno) => {
            log::info!("{}; asking read-only", r.message);
            match svc.request_file(Access::ReadOnly).map_err(proto)? {
                Ok((dev, grant)) => (dev, grant, Some(r.errno)),
                Err(r) => return Err(refused(r)),
            }
        }
        Err(r) => return Err(refused(r)),
    };
    log::debug!(
        "source granted: read-only {}, block device {}, O_DIRECT {}",
        grant.read_only,
        grant.block_device,
        grant.direct
    );
    // No more files: said now, so that the helper refuses any later request
    // even if this process is subverted once it parses the image.
    svc.files_done().map_err(proto)?;
    let mode = MountMode::decide(info.read_only, &opts, grant.read_only, denied);
    log::info!("mode: {mode}; {:?}", opts.flags);

    // The IO channel is built before the sandbox because it learns the
    // device's size and logical sector size by ioctls and fcntl that the
    // seccomp filter will not allow later. It reads no byte of the image,
    // and with the sandbox's gate it cannot until the sandbox is entered.
    let dev_fd = dev.as_raw_fd();
    // Writable whenever the source was granted read-write: the journal is
    // replayed on a read-only mount too (the engine itself writes only on
    // a read-write mount).
    let channel = UnixFdChannel::new(dev, grant.read_only, sandbox::gate())
        .map_err(|e| Failure::new(Errno::EIO, format!("cannot use {}: {e}", info.source)))?;

    // Step 4: the sandbox, before the first byte of the image is read (the
    // engine is the attack surface) and before any thread exists (Landlock
    // and seccomp apply to the calling thread; threads inherit them). It
    // keeps only the helper socket (for the mount request and goodbye), the
    // device, and the log (and fd 2, where a panic message would go).
    let mut keep_fds = vec![svc.socket().as_raw_fd(), dev_fd, log_fd, 2];
    keep_fds.sort_unstable();
    keep_fds.dedup();
    let report = sandbox::enter(&SandboxConfig {
        keep_fds,
        uid: NOBODY,
        gid: NOBODY,
    })
    .map_err(|e| Failure::new(Errno::EPERM, format!("cannot enter the sandbox: {e}")))?;
    log::info!("{report}");

    // Step 5: the filesystem, now that a hostile image can only hurt this
    // sandboxed process. First the journal: replayed straight through the
    // channel before anything is cached (`journal::recover`), unless
    // norecovery, in which case `Fs::open` ignores it. A dirty journal on
    // a read-only channel is refused here (the kernel's rule).
    let channel: Arc<dyn IoChannel> = Arc::new(channel);
    if !opts.norecovery {
        match journal::recover(&channel) {
            Ok(Recovery::NotNeeded) => {}
            Ok(Recovery::Recovered(r)) => log::info!("{r}"),
            Err(e) => {
                return Err(Failure {
                    status: engine_errno(&e),
                    reason: format!("cannot mount {}: {e}", info.source),
                })
            }
        }
    }
    let open = mode.open_options(&opts);
    let fs = Fs::open(channel, &open).map_err(|e| Failure {
        status: engine_errno(&e),
        reason: format!("cannot mount {}: {e}", info.source),
    })?;
    // Orphans need the write engine to be freed: say that they wait.
    match orphan::pending(&fs) {
        Ok(o) if !o.is_empty() => log::warn!("{o}"),
        Ok(_) => {}
        Err(e) => log::warn!("cannot read the orphan list: {e}"),
    }
    let fs = Arc::new(fs);

    // Step 6: the mount. Only now, so that nothing is mounted for an image
    // the engine refused.
    let req = svc.mount_request(mode.is_read_only());
    let fuse_fd: OwnedFd = match svc.request_mount(&req).map_err(proto)? {
        Ok(fd) => fd,
        Err(refusal) => {
            return Err(Failure {
                status: refusal.errno,
                reason: format!("mount failed: {}", refusal.message),
            })
        }
    };

    // Step 7: the kernel's FUSE handshake (the goodbye follows in main).
    let serve_opts = ServeOptions {
        threads: 0,
        mode,
        flags: opts.flags,
        allow_other: req.allow_other,
        allow_idmap: info.idmap,
        commit: open.commit_interval,
    };
    let server = FuseServer::new(Arc::clone(&fs), fuse_fd, &serve_opts)
        .map_err(|e| Failure::new(Errno::EIO, format!("cannot start serving the mount: {e}")))?;
    let note = mode
        .fallback_note(&info.source)
        .unwrap_or_else(|| MOUNTED.to_owned());
    Ok((server, fs, note))
}
