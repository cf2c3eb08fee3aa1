//! fsvc-runtime-probe: stands in for a container runtime in the detached
//! mount tests (issue 11). It asks for a detached mount, receives the fd
//! and attaches it in a mount namespace of its own, as a runtime would.
//!
//! `fsvc-runtime-probe SOCKET DIR attach|drop -- HELPER [ARGS...]`:
//! 1. listen on the `SOCK_SEQPACKET` socket SOCKET;
//! 2. run HELPER ARGS (`fsvc-mount --detached SOCKET ... SOURCE`), which
//!    connects and passes one `Delivery`;
//! 3. `attach`: `unshare(CLONE_NEWNS)`, make every mount private, detach
//!    the copies of other tests' mounts (so this namespace keeps none of
//!    them busy), `move_mount` the fd onto DIR, close the fd, print
//!    `attached`, and stay until stdin closes (the test looks at the tree
//!    through `/proc/PID/root/DIR`); then exit, which ends the namespace.
//!    `drop`: close the fd without attaching it, print `dropped`, exit.
//!
//! Output lines (stdout): `helper-exit N`, then `attached`, `dropped` or
//! `refused ERRNO MESSAGE`. Every wait is bounded; a failure prints
//! `error: ...` and exits non-zero.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fsvc_protocol::Delivery;
use fsvc_tests::namespace::is_borrowed;
use fsvc_tests::util::mount_table;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{
    accept4, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};

/// How long the helper may take to connect and deliver.
const DELIVERY_LIMIT: Duration = Duration::from_secs(180);

fn listen_at(path: &Path) -> Result<OwnedFd> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(sock.as_raw_fd(), &UnixAddr::new(path)?).context("bind")?;
    listen(&sock, Backlog::new(1)?).context("listen")?;
    Ok(sock)
}

/// Accepts the helper's connection; gives up when the helper exits
/// without connecting, or at the limit.
fn accept_from(listener: &OwnedFd, helper: &mut Child) -> Result<OwnedFd> {
    let deadline = Instant::now() + DELIVERY_LIMIT;
    loop {
        let mut pfd = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut pfd, PollTimeout::from(200u16))? > 0 {
            return Ok(accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC)
                .map(fsvc_tests::sys::adopt_fd)?);
        }
        if let Some(status) = helper.try_wait()? {
            bail!("the helper exited ({status}) without connecting");
        }
        if Instant::now() > deadline {
            bail!("the helper did not connect within {DELIVERY_LIMIT:?}");
        }
    }
}

/// A mount namespace of our own, private, without the copies of other
/// tests' mounts.
fn own_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("make / private")?;
    for m in mount_table()?.iter().rev().filter(|m| is_borrowed(m)) {
        let _ = umount2(&m.mountpoint, MntFlags::MNT_DETACH);
    }
    Ok(())
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(sock), Some(dir), Some(mode), Some("--")) = (
        args.get(1),
        args.get(2),
        args.get(3),
        args.get(4).map(String::as_str),
    ) else {
        bail!("usage: fsvc-runtime-probe SOCKET DIR attach|drop -- HELPER [ARGS...]");
    };
    let Some((helper, helper_args)) = args.get(5..).and_then(|a| a.split_first()) else {
        bail!("no helper command given");
    };
    let listener = listen_at(Path::new(sock))?;
    let mut child = Command::new(helper)
        .args(helper_args)
        .spawn()
        .context("start the helper")?;
    let conn = accept_from(&listener, &mut child)?;
    let (msg, mut fds) =
        fsvc_protocol::recv_msg::<Delivery>(conn.as_fd(), DELIVERY_LIMIT).context("receive")?;
    let status = child.wait()?;
    let mut out = std::io::stdout();
    writeln!(out, "helper-exit {}", status.code().unwrap_or(-1))?;
    let mount_fd = match msg {
        Delivery::Refused(r) => {
            writeln!(out, "refused {} {}", r.errno, r.message)?;
            return Ok(());
        }
        Delivery::Mounted(_) => fds.pop().context("Mounted without its fd")?,
    };
    match mode.as_str() {
        "drop" => {
            drop(mount_fd);
            writeln!(out, "dropped")?;
        }
        "attach" => {
            own_namespace()?;
            fsvc_tests::sys::move_mount_to(mount_fd.as_fd(), Path::new(dir))
                .context("move_mount")?;
            // Attached: the namespace holds the mount now, not the fd.
            drop(mount_fd);
            writeln!(out, "attached")?;
            out.flush()?;
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line)? > 0 {
                line.clear();
            }
        }
        other => bail!("unknown mode {other}"),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
