//! fsvc-runtime-probe: stands in for a container runtime in the detached
//! mount tests (issue 11). It asks for a detached mount, receives the fd
//! and attaches it in a mount namespace of its own, as a runtime would.
//!
//! `fsvc-runtime-probe DIR MODE ASK...`, where ASK is one of
//! - `helper SOCKET -- HELPER [ARGS...]`: listen on the `SOCK_SEQPACKET`
//!   socket SOCKET and run HELPER (`fsvc-mount --detached SOCKET ...
//!   SOURCE`), which connects and passes one `Delivery`;
//! - `service SERVICE path|fd IMAGE OPTS [USERNS]`: connect to the mount
//!   service at SERVICE and send a `MountImage` for IMAGE, as a path or as
//!   an fd opened here (read-only when OPTS has `ro`), OPTS being the `-o`
//!   string (`-` for none); with USERNS (`own`, or a namespace file such as
//!   `/proc/PID/ns/user`) the mount is to be idmapped into that namespace.
//!   `own` is a user namespace made here, held by a child (`fsvc-runtime-probe
//!   userns-child`) with uid and gid maps 0 -> 100000 (65536 ids).
//!
//! MODE:
//! - `attach` (root): `unshare(CLONE_NEWNS)`, make every mount private,
//!   detach the copies of other tests' mounts (so this namespace keeps none
//!   of them busy), `move_mount` the fd onto DIR, close the fd, print
//!   `attached`; then serve commands from stdin until it closes (the test
//!   may also look through `/proc/PID/root/DIR`), then exit, which ends the
//!   namespace;
//! - `attach-user` (any user): the same in a user namespace of our own
//!   (our uid and gid mapped to 0), which is what lets a user attach;
//! - `attach-idmap` (root, with USERNS): as `attach`, but the namespace is
//!   made before asking, so the userns child shares it; commands `ns-stat
//!   REL` and `ns-create REL` run in the child, as uid 0 of its namespace;
//! - `drop`: close the fd without attaching it, print `dropped`, exit.
//!
//! Commands (one per line, paths relative to DIR): `cat REL` prints
//! `data TEXT` (the file's first line), `stat REL` prints `owner UID GID`
//! as seen here; a failure prints `error ...`.
//!
//! Output lines (stdout): `helper-exit N` (helper form), then `attached`,
//! `dropped` or `refused ERRNO MESSAGE`. Every wait is bounded; a failure
//! prints `error: ...` and exits non-zero.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fsvc_protocol::{Delivery, FsType, ImageSource, MountImage, MOUNT_IMAGE_VERSION};
use fsvc_tests::namespace::is_borrowed;
use fsvc_tests::util::mount_table;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{
    accept4, bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::Mode;

/// How long the helper or service may take to deliver.
const DELIVERY_LIMIT: Duration = Duration::from_secs(180);

fn seqpacket() -> Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
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

/// Runs the helper and receives what it passes.
fn ask_helper(args: &[String], out: &mut impl Write) -> Result<(Delivery, Vec<OwnedFd>)> {
    let (Some(sock), Some("--")) = (args.first(), args.get(1).map(String::as_str)) else {
        bail!("usage: ... helper SOCKET -- HELPER [ARGS...]");
    };
    let Some((helper, helper_args)) = args.get(2..).and_then(|a| a.split_first()) else {
        bail!("no helper command given");
    };
    let listener = seqpacket()?;
    bind(listener.as_raw_fd(), &UnixAddr::new(sock.as_str())?).context("bind")?;
    listen(&listener, Backlog::new(1)?).context("listen")?;
    let mut child = Command::new(helper)
        .args(helper_args)
        .spawn()
        .context("start the helper")?;
    let conn = accept_from(&listener, &mut child)?;
    let got =
        fsvc_protocol::recv_msg::<Delivery>(conn.as_fd(), DELIVERY_LIMIT).context("receive")?;
    let status = child.wait()?;
    writeln!(out, "helper-exit {}", status.code().unwrap_or(-1))?;
    Ok(got)
}

/// Asks the mount service (`userns`: the namespace to idmap into).
fn ask_service(args: &[String], userns: Option<&OwnedFd>) -> Result<(Delivery, Vec<OwnedFd>)> {
    let (service, how, image, opts) = match args {
        [s, h, i, o] | [s, h, i, o, _] => (s, h, i, o),
        _ => bail!("usage: ... service SERVICE path|fd IMAGE OPTS [USERNS]"),
    };
    let options = if opts == "-" { "" } else { opts.as_str() };
    let read_only = options.split(',').any(|o| o == "ro");
    let sock = seqpacket()?;
    connect(sock.as_raw_fd(), &UnixAddr::new(service.as_str())?).context("connect")?;
    let mut fds = Vec::new();
    let source = match how.as_str() {
        "path" => ImageSource::Path(image.clone()),
        "fd" => {
            let access = if read_only {
                OFlag::O_RDONLY
            } else {
                OFlag::O_RDWR
            };
            fds.push(
                open(image.as_str(), access | OFlag::O_CLOEXEC, Mode::empty())
                    .context("open the image")?,
            );
            ImageSource::Fd
        }
        other => bail!("unknown source form {other}"),
    };
    let req = MountImage {
        version: MOUNT_IMAGE_VERSION,
        source,
        fs_type: FsType::Ext4,
        read_only,
        options: options.to_string(),
        user_namespace: userns.is_some(),
    };
    let mut borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    borrowed.extend(userns.map(|f| f.as_fd()));
    fsvc_protocol::send_msg(sock.as_fd(), &req, &borrowed).context("send")?;
    drop(fds);
    fsvc_protocol::recv_msg::<Delivery>(sock.as_fd(), DELIVERY_LIMIT).context("receive")
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

/// A user namespace of our own with our ids mapped to 0 (what an
/// unprivileged runtime does before it attaches a mount).
fn own_user_namespace() -> Result<()> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER).context("unshare(CLONE_NEWUSER)")?;
    std::fs::write("/proc/self/setgroups", "deny").context("setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).context("uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).context("gid_map")?;
    Ok(())
}

/// Calls `f` with each line of stdin (without its newline) until it closes.
fn each_line(mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line)? > 0 {
        f(line.trim_end())?;
        line.clear();
    }
    Ok(())
}

/// Prints one answer line: the reply, or `error ERRNO`.
fn answer(out: &mut impl Write, reply: std::io::Result<String>) -> Result<()> {
    let text = reply.unwrap_or_else(|e| format!("error {}", e.raw_os_error().unwrap_or(0)));
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Serves commands from stdin until it closes.
fn commands(dir: &Path, mut child: Option<&mut UsernsChild>, out: &mut impl Write) -> Result<()> {
    each_line(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let (["ns-stat" | "ns-create", rel], Some(c)) = (words.as_slice(), child.as_mut()) {
            let verb = words[0].trim_start_matches("ns-");
            c.say(&format!("{verb} {}", dir.join(rel).display()))?;
            return answer(out, Ok(c.line()?));
        }
        let reply = match words.as_slice() {
            ["cat", rel] => std::fs::read_to_string(dir.join(rel))
                .map(|t| format!("data {}", t.lines().next().unwrap_or_default())),
            ["stat", rel] => owner_of(&dir.join(rel)),
            _ => Ok(format!("error unknown command {line:?}")),
        };
        answer(out, reply)
    })
}

/// The `own` user namespace: a child that unshares one, maps 0 -> 100000
/// (65536 uids and gids, written here as root), becomes its uid 0 and then
/// runs `stat`/`create` commands.
struct UsernsChild {
    child: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl UsernsChild {
    fn start() -> Result<(UsernsChild, OwnedFd)> {
        let mut child = Command::new("/proc/self/exe")
            .arg("userns-child")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("start the userns child")?;
        let out = std::io::BufReader::new(child.stdout.take().context("stdout")?);
        let mut c = UsernsChild { child, out };
        c.expect("ready")?;
        let pid = c.child.id();
        for map in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{map}"), "0 100000 65536")
                .with_context(|| format!("write {map}"))?;
        }
        let ns = open(
            format!("/proc/{pid}/ns/user").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .context("open the child's user namespace")?;
        c.say("go")?;
        c.expect("set")?;
        Ok((c, ns))
    }

    fn say(&mut self, line: &str) -> Result<()> {
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    fn line(&mut self) -> Result<String> {
        let mut l = String::new();
        self.out.read_line(&mut l)?;
        Ok(l.trim_end().to_string())
    }

    fn expect(&mut self, want: &str) -> Result<()> {
        let got = self.line()?;
        if got != want {
            bail!("the userns child said {got:?}, not {want:?}");
        }
        Ok(())
    }
}

/// The child side of [`UsernsChild`].
fn userns_child() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWUSER).context("unshare(CLONE_NEWUSER)")?;
    let mut out = std::io::stdout();
    let mut line = String::new();
    writeln!(out, "ready")?;
    out.flush()?;
    std::io::stdin().lock().read_line(&mut line)?;
    let root_uid = nix::unistd::Uid::from_raw(0);
    let root_gid = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid).context("setresgid")?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).context("setresuid")?;
    writeln!(out, "set")?;
    out.flush()?;
    each_line(|line| {
        let reply = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["stat", path] => owner_of(Path::new(path)),
            ["create", path] => std::fs::write(path, b"made in the namespace\n")
                .and_then(|()| owner_of(Path::new(path))),
            _ => Ok(format!("error unknown command {line:?}")),
        };
        answer(&mut out, reply)
    })
}

fn owner_of(path: &Path) -> std::io::Result<String> {
    std::fs::symlink_metadata(path).map(|m| format!("owner {} {}", m.uid(), m.gid()))
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("userns-child") {
        return userns_child();
    }
    let (Some(dir), Some(mode), Some(ask)) = (args.get(1), args.get(2), args.get(3)) else {
        bail!("usage: fsvc-runtime-probe DIR attach|attach-user|drop helper|service ...");
    };
    let rest = args.get(4..).unwrap_or_default();
    let mut out = std::io::stdout();
    // Before asking, so that the userns child made below shares it.
    if mode == "attach-idmap" {
        own_namespace()?;
    }
    let mut userns_child = None;
    let userns = match (ask.as_str(), rest.get(4).map(String::as_str)) {
        ("service", Some("own")) => {
            let (c, ns) = UsernsChild::start()?;
            userns_child = Some(c);
            Some(ns)
        }
        ("service", Some(path)) => Some(
            open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .with_context(|| format!("open {path}"))?,
        ),
        _ => None,
    };
    let (msg, mut fds) = match ask.as_str() {
        "helper" => ask_helper(rest, &mut out)?,
        "service" => ask_service(rest, userns.as_ref())?,
        other => bail!("unknown way to ask: {other}"),
    };
    drop(userns);
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
        "attach" | "attach-user" | "attach-idmap" => {
            if mode == "attach-user" {
                own_user_namespace()?;
            }
            if mode != "attach-idmap" {
                own_namespace()?;
            }
            fsvc_tests::sys::move_mount_to(mount_fd.as_fd(), Path::new(dir))
                .context("move_mount")?;
            // Attached: the namespace holds the mount now, not the fd.
            drop(mount_fd);
            writeln!(out, "attached")?;
            out.flush()?;
            commands(Path::new(dir), userns_child.as_mut(), &mut out)?;
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
