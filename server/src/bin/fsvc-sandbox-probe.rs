//! fsvc-sandbox-probe: enters the server's sandbox the way the server does
//! and then reports, one `name=value` line per probe, what the process can
//! and cannot do. Used by `server/tests/sandbox.rs`; also handy by hand:
//!
//! ```text
//! fsvc-sandbox-probe run FILE          # every probe; exits 0
//! fsvc-sandbox-probe closed-stderr FILE # like run, with fd 2 closed (kept)
//! fsvc-sandbox-probe threaded FILE     # enter() with a second thread: refused
//! fsvc-sandbox-probe panic FILE        # panics in the sandbox: exit 101
//! fsvc-sandbox-probe kill-ptrace FILE  # a forbidden call: must die by SIGSYS
//! fsvc-sandbox-probe kill-execve FILE
//! fsvc-sandbox-probe kill-fork FILE    # clone without CLONE_THREAD
//! fsvc-sandbox-probe kill-mmap-exec FILE
//! fsvc-sandbox-probe fuse FILE DIR     # root: serve FILE as DIR/hello over
//!                                      # FUSE from inside the sandbox until
//!                                      # DIR is unmounted
//! fsvc-sandbox-probe ext4 IMAGE DIR    # root: the real engine and FUSE
//!                                      # adapter serve IMAGE on DIR
//! ```
//!
//! FILE is a regular file the probe opens before the sandbox and keeps (as
//! the server keeps its image); its first line is printed as `pread=`.
//! Values are `ok`, a number, or the errno name a call failed with.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context, Result};
use fsvc_server::sandbox::{self, SandboxConfig};
use nix::errno::Errno;
use nix::sys::resource::{getrlimit, Resource};
use nix::sys::signal::kill;
use nix::sys::socket::{recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::sys::stat::{fstat, major, minor};
use nix::unistd::{getgroups, getresgid, getresuid, Pid};

/// The uid/gid the probe drops to when run as root (`nobody`/`nogroup`).
const PROBE_ID: u32 = 65534;
/// Threads spawned after the sandbox.
const THREADS: usize = 4;
/// Highest descriptor number scanned for the open-descriptor list.
const FD_SCAN_LIMIT: RawFd = 1024;
/// Major/minor of /dev/null.
const DEV_NULL: (u64, u64) = (1, 3);

mod sys {
    //! Raw calls the probe makes on purpose (several of them forbidden).
    #![allow(unsafe_code)]

    use nix::errno::Errno;

    /// `prctl(PR_GET_SECCOMP)`.
    pub fn seccomp_mode() -> Result<i32, Errno> {
        // SAFETY: integer arguments only.
        Errno::result(unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) })
    }

    /// `prctl(PR_SET_DUMPABLE, 1)`: must be refused.
    pub fn set_dumpable() -> Result<i32, Errno> {
        // SAFETY: integer arguments only.
        Errno::result(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) })
    }

    /// `fcntl(fd, F_GETFD)`: is `fd` open?
    pub fn fd_open(fd: i32) -> bool {
        // SAFETY: F_GETFD passes no memory; unknown numbers give EBADF.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    /// `ioctl(fd, TCGETS)` as isatty does.
    pub fn tcgets(fd: i32) -> Result<i32, Errno> {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: TCGETS writes at most one termios into `t`, which is
        // large enough and outlives the call.
        Errno::result(unsafe { libc::ioctl(fd, libc::TCGETS, t.as_mut_ptr()) })
    }

    /// `clone3(NULL, 0)`: the filter answers ENOSYS before the kernel
    /// looks at the (invalid) arguments.
    pub fn clone3() -> Result<libc::c_long, Errno> {
        // SAFETY: a null args pointer with size 0 is rejected (EINVAL or,
        // under the filter, ENOSYS); nothing is created.
        Errno::result(unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) })
    }

    /// `ptrace(PTRACE_TRACEME)`: forbidden, must kill.
    pub fn ptrace_traceme() -> Result<libc::c_long, Errno> {
        // SAFETY: PTRACE_TRACEME takes no memory.
        Errno::result(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) })
    }

    /// `clone(SIGCHLD)`, a fork: forbidden, must kill. If it ever
    /// succeeded, the child exits at once.
    pub fn fork() -> Result<libc::c_long, Errno> {
        // SAFETY: a fork-style clone with no stack or TLS arguments; the
        // child only calls _exit, which is async-signal-safe.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::SIGCHLD as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if r == 0 {
            // SAFETY: _exit is always safe to call in a forked child.
            unsafe { libc::_exit(0) }
        }
        Errno::result(r)
    }

    /// Takes ownership of a descriptor just received with SCM_RIGHTS.
    pub fn own(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd;
        // SAFETY: the caller passes a descriptor the kernel just installed
        // for us (recvmsg SCM_RIGHTS); nothing else owns it.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
    }

    /// Closes fd 2 (no Rust object owns it; std's `Stderr` only borrows
    /// the number).
    pub fn close_stderr() {
        // SAFETY: closing the standard error number invalidates no owned
        // descriptor; later writes to it fail or go to its replacement.
        unsafe { libc::close(2) };
    }

    /// `mmap(PROT_READ|PROT_EXEC)` anonymous: forbidden, must kill.
    pub fn mmap_exec() -> Result<(), Errno> {
        // SAFETY: a fresh anonymous private mapping chosen by the kernel;
        // it is unmapped again if it is ever created.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        // SAFETY: p is the mapping just created, of that length.
        unsafe { libc::munmap(p, 4096) };
        Ok(())
    }
}

/// `ok` or the errno name.
fn outcome<T>(r: Result<T, Errno>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e:?}"),
    }
}

/// `ok` or the errno name of an `io::Error`.
fn io_outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => match e.raw_os_error() {
            Some(code) => format!("{:?}", Errno::from_raw(code)),
            None => format!("error({e})"),
        },
    }
}

fn line(name: &str, value: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    // The probe's output is its result; a failed write must not be silent.
    writeln!(out, "{name}={value}").expect("stdout");
    out.flush().expect("stdout");
}

mod fuse {
    //! The `fuse` mode: the server's real shape in miniature. Before the
    //! sandbox, `/dev/fuse` is opened and mounted, then parked in the socket
    //! pair; after the sandbox it is received back (as the server receives
    //! it from the helper) and served by a multi-threaded fuser session
    //! whose reads pread the kept file.

    use std::ffi::OsStr;
    use std::fs::{File, OpenOptions};
    use std::io::IoSlice;
    use std::os::fd::{AsRawFd, RawFd};
    use std::time::{Duration, UNIX_EPOCH};

    use anyhow::{bail, Context, Result};
    use fsvc_server::sandbox::{self, SandboxConfig};
    use fuser::{
        Config, Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner,
        OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request, SessionACL,
    };
    use nix::mount::{mount, MsFlags};
    use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

    use super::{line, Kept};

    /// FUSE worker threads, as the server runs them.
    const WORKERS: usize = 4;
    const ROOT: INodeNo = INodeNo(1);
    const HELLO: INodeNo = INodeNo(2);
    const NAME: &str = "hello";
    const TTL: Duration = Duration::from_secs(1);

    struct ProbeFs {
        file: File,
        size: u64,
    }

    impl ProbeFs {
        fn attr(&self, ino: INodeNo) -> FileAttr {
            let dir = ino == ROOT;
            FileAttr {
                ino,
                size: if dir { 0 } else { self.size },
                blocks: 0,
                atime: UNIX_EPOCH,
                mtime: UNIX_EPOCH,
                ctime: UNIX_EPOCH,
                crtime: UNIX_EPOCH,
                kind: if dir {
                    FileType::Directory
                } else {
                    FileType::RegularFile
                },
                perm: if dir { 0o755 } else { 0o644 },
                nlink: if dir { 2 } else { 1 },
                uid: 0,
                gid: 0,
                rdev: 0,
                blksize: 4096,
                flags: 0,
            }
        }
    }

    impl Filesystem for ProbeFs {
        fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            if parent == ROOT && name == NAME {
                reply.entry(&TTL, &self.attr(HELLO), Generation(0));
            } else {
                reply.error(Errno::ENOENT);
            }
        }

        fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
            if ino == ROOT || ino == HELLO {
                reply.attr(&TTL, &self.attr(ino));
            } else {
                reply.error(Errno::ENOENT);
            }
        }

        fn read(
            &self,
            _req: &Request,
            ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            size: u32,
            _flags: OpenFlags,
            _lock: Option<LockOwner>,
            reply: ReplyData,
        ) {
            if ino != HELLO {
                return reply.error(Errno::EISDIR);
            }
            let mut buf = vec![0u8; size as usize];
            let Ok(offset) = i64::try_from(offset) else {
                return reply.error(Errno::EINVAL);
            };
            match nix::sys::uio::pread(&self.file, &mut buf, offset) {
                Ok(n) => reply.data(buf.get(..n).unwrap_or(&[])),
                Err(_) => reply.error(Errno::EIO),
            }
        }

        fn readdir(
            &self,
            _req: &Request,
            ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            mut reply: ReplyDirectory,
        ) {
            if ino != ROOT {
                return reply.error(Errno::ENOTDIR);
            }
            let entries = [
                (ROOT, FileType::Directory, "."),
                (ROOT, FileType::Directory, ".."),
                (HELLO, FileType::RegularFile, NAME),
            ];
            for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                if reply.add(*ino, i as u64 + 1, *kind, name) {
                    break;
                }
            }
            reply.ok();
        }
    }

    fn park(kept: &Kept, dev: &File) -> Result<()> {
        let fds = [dev.as_raw_fd()];
        sendmsg::<()>(
            kept.sock_a.as_raw_fd(),
            &[IoSlice::new(b"F")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .context("parking /dev/fuse")?;
        Ok(())
    }

    fn unpark(kept: &Kept) -> Result<std::os::fd::OwnedFd> {
        unpark_from(&kept.sock_b)
    }

    fn unpark_from(sock: &std::os::fd::OwnedFd) -> Result<std::os::fd::OwnedFd> {
        let mut byte = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .context("receiving /dev/fuse")?;
        let mut got = Vec::new();
        for c in msg.cmsgs().context("cmsgs")? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                got.extend(fds);
            }
        }
        match got.as_slice() {
            [fd] => Ok(super::sys::own(*fd)),
            other => bail!("expected one fd, got {other:?}"),
        }
    }

    /// Opens `/dev/fuse`, mounts it on `dir` (read-only, as root would with
    /// `-o ro`), and parks the descriptor in the socket pair so that it is
    /// received after the sandbox, like the server receives it.
    fn mount_and_park(kept: &Kept, dir: &str) -> Result<()> {
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .context("open /dev/fuse")?;
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions",
            dev.as_raw_fd()
        );
        mount(
            Some("fsvc-sandbox-probe"),
            dir,
            Some("fuse.fsvcprobe"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RDONLY,
            Some(data.as_str()),
        )
        .with_context(|| format!("mount fuse on {dir}"))?;
        park(kept, &dev)
    }

    /// `fuse` mode: a toy filesystem serving the kept file as `hello`.
    pub(super) fn serve(kept: Kept, cfg: &SandboxConfig, dir: &str) -> Result<()> {
        let size = kept.file.metadata()?.len();
        mount_and_park(&kept, dir)?;
        let report = sandbox::enter(cfg).context("entering the sandbox")?;
        line("report", &report);
        let dev = unpark(&kept)?;
        let fs = ProbeFs {
            file: kept.file,
            size,
        };
        let mut config = Config::default();
        config.acl = SessionACL::All;
        config.n_threads = Some(WORKERS);
        config.clone_fd = false;
        let session =
            fuser::Session::from_fd(fs, dev, SessionACL::All, config).context("fuse handshake")?;
        line("serving", "ok");
        session.run().context("fuse session")?;
        line("fuse", "ok");
        Ok(())
    }

    /// `ext4` mode: the server's real engine and FUSE adapter serve the kept
    /// file as an ext4 image, in the server's order (IO channel learned
    /// before the sandbox, first image byte read after it).
    pub(super) fn serve_ext4(kept: Kept, cfg: &SandboxConfig, dir: &str) -> Result<()> {
        use std::sync::Arc;

        use fsvc_ext4::io::{IoChannel, IoError, UnixFdChannel};
        use fsvc_ext4::{Fs, OpenOptions as FsOptions};
        use fsvc_server::fuse::{FuseServer, ServeOptions};

        mount_and_park(&kept, dir)?;
        let Kept {
            file,
            sock_a,
            sock_b,
        } = kept;
        let channel = UnixFdChannel::new(std::os::fd::OwnedFd::from(file), true, sandbox::gate())
            .context("IO channel")?;
        // The gate, seen from the channel: shut before the sandbox, open after.
        let gate_says = |channel: &UnixFdChannel| match channel.read_at(0, &mut [0u8; 16]) {
            Ok(()) => "read".to_string(),
            Err(IoError::NotSandboxed) => "refused".to_string(),
            Err(e) => format!("error: {e}"),
        };
        line("gate_before_sandbox", gate_says(&channel));
        let report = sandbox::enter(cfg).context("entering the sandbox")?;
        line("report", &report);
        line("gate_after_sandbox", gate_says(&channel));
        let dev = unpark_from(&sock_b)?;
        drop((sock_a, sock_b));
        let opts = FsOptions {
            read_only: true,
            ..FsOptions::default()
        };
        let fs = Fs::open(Arc::new(channel), &opts).context("opening the filesystem")?;
        let server = FuseServer::new(Arc::new(fs), dev, &ServeOptions::default())
            .context("fuse handshake")?;
        line("serving", "ok");
        server.run().context("fuse session")?;
        line("fuse", "ok");
        Ok(())
    }
}

/// Everything opened before the sandbox and kept through it.
struct Kept {
    file: File,
    sock_a: OwnedFd,
    sock_b: OwnedFd,
}

fn setup(path: &str) -> Result<(Kept, SandboxConfig)> {
    let file = File::open(path).with_context(|| format!("open {path}"))?;
    let (sock_a, sock_b) = fsvc_protocol::seqpacket_pair().context("socketpair")?;
    // stdout carries the results and stderr the errors; 0 is left out on
    // purpose so the probe shows it becomes /dev/null.
    let keep_fds = vec![
        1,
        2,
        file.as_raw_fd(),
        sock_a.as_raw_fd(),
        sock_b.as_raw_fd(),
    ];
    let cfg = SandboxConfig {
        keep_fds,
        uid: PROBE_ID,
        gid: PROBE_ID,
    };
    Ok((
        Kept {
            file,
            sock_a,
            sock_b,
        },
        cfg,
    ))
}

fn probe_ids() {
    match getresuid() {
        Ok(u) => line("uid", format!("{},{},{}", u.real, u.effective, u.saved)),
        Err(e) => line("uid", format!("{e:?}")),
    }
    match getresgid() {
        Ok(g) => line("gid", format!("{},{},{}", g.real, g.effective, g.saved)),
        Err(e) => line("gid", format!("{e:?}")),
    }
    line("groups", getgroups().map_or(usize::MAX, |g| g.len()));
    for (name, set) in [
        ("cap_eff", caps::CapSet::Effective),
        ("cap_prm", caps::CapSet::Permitted),
        ("cap_inh", caps::CapSet::Inheritable),
        ("cap_amb", caps::CapSet::Ambient),
    ] {
        match caps::read(None, set) {
            Ok(s) => line(name, s.len()),
            Err(e) => line(name, format!("error({e})")),
        }
    }
    line(
        "no_new_privs",
        nix::sys::prctl::get_no_new_privs().map_or("error".into(), |b| u8::from(b).to_string()),
    );
    line(
        "dumpable",
        nix::sys::prctl::get_dumpable().map_or("error".into(), |b| u8::from(b).to_string()),
    );
    line(
        "seccomp_mode",
        sys::seccomp_mode().map_or_else(|e| format!("{e:?}"), |m| m.to_string()),
    );
    line("set_dumpable", outcome(sys::set_dumpable()));
}

fn probe_paths() {
    line("open_root", io_outcome(File::open("/")));
    line("open_passwd", io_outcome(File::open("/etc/passwd")));
    line(
        "open_proc_status",
        io_outcome(File::open("/proc/self/status")),
    );
    line("open_dev_null", io_outcome(File::open("/dev/null")));
    let name = format!("/tmp/fsvc-sandbox-probe-{}", std::process::id());
    line(
        "create_tmp",
        io_outcome(OpenOptions::new().write(true).create_new(true).open(&name)),
    );
    line(
        "open_tmpfile",
        io_outcome(
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .open("/tmp"),
        ),
    );
    line(
        "open_o_path",
        io_outcome(
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH)
                .open("/"),
        ),
    );
}

fn probe_net_and_signals(parent: Pid) {
    line(
        "socket_inet",
        outcome(socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )),
    );
    line(
        "socket_unix",
        outcome(socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )),
    );
    line("kill_init", outcome(kill(Pid::from_raw(1), None)));
    line("kill_parent", outcome(kill(parent, None)));
    line("kill_self", outcome(kill(Pid::this(), None)));
    line("clone3", outcome(sys::clone3()));
    line("ioctl_tcgets", outcome(sys::tcgets(1)));
}

fn probe_fds(kept: &Kept) {
    let open: Vec<String> = (0..FD_SCAN_LIMIT)
        .filter(|&fd| sys::fd_open(fd))
        .map(|fd| fd.to_string())
        .collect();
    line("fds", open.join(","));
    let class = |r: nix::Result<nix::sys::stat::FileStat>| match r {
        Ok(st) if (major(st.st_rdev), minor(st.st_rdev)) == DEV_NULL => "devnull".to_string(),
        Ok(st) => format!("other({:o})", st.st_mode),
        Err(e) => format!("{e:?}"),
    };
    line("stdin", class(fstat(std::io::stdin().as_fd())));
    line("stderr", class(fstat(std::io::stderr().as_fd())));
    let mut buf = [0u8; 256];
    line(
        "pread",
        match nix::sys::uio::pread(&kept.file, &mut buf, 0) {
            Ok(n) => String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            Err(e) => format!("{e:?}"),
        },
    );
    for (name, res) in [
        ("rlimit_nofile", Resource::RLIMIT_NOFILE),
        ("rlimit_core", Resource::RLIMIT_CORE),
        ("rlimit_memlock", Resource::RLIMIT_MEMLOCK),
    ] {
        line(
            name,
            getrlimit(res).map_or_else(|e| format!("{e:?}"), |(s, h)| format!("{s},{h}")),
        );
    }
}

/// Spawns threads that each pread the kept file and send a packet on one
/// socket end; the main thread receives them on the other.
fn probe_threads(kept: &Kept) -> String {
    let mut expected = [0u8; 16];
    let n = match nix::sys::uio::pread(&kept.file, &mut expected, 0) {
        Ok(n) => n,
        Err(e) => return format!("pread {e:?}"),
    };
    let result = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let file = &kept.file;
                let sock = &kept.sock_a;
                std::thread::Builder::new()
                    .name(format!("probe-{i}"))
                    .spawn_scoped(s, move || -> Result<(), String> {
                        let mut buf = [0u8; 16];
                        let got = nix::sys::uio::pread(file, &mut buf, 0)
                            .map_err(|e| format!("pread {e:?}"))?;
                        if buf[..got] != expected[..n] {
                            return Err("pread content".into());
                        }
                        let msg = [u8::try_from(i).unwrap_or(u8::MAX)];
                        send(sock.as_raw_fd(), &msg, MsgFlags::empty())
                            .map_err(|e| format!("send {e:?}"))?;
                        Ok(())
                    })
            })
            .collect();
        let mut errors = Vec::new();
        for h in handles {
            match h {
                Ok(h) => match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(_) => errors.push("thread panicked".into()),
                },
                Err(e) => errors.push(format!("spawn {e}")),
            }
        }
        errors
    });
    if !result.is_empty() {
        return result.join(";");
    }
    let mut seen = [false; THREADS];
    for _ in 0..THREADS {
        let mut b = [0u8; 4];
        match recv(kept.sock_b.as_raw_fd(), &mut b, MsgFlags::MSG_DONTWAIT) {
            Ok(1) => {
                if let Some(slot) = seen.get_mut(usize::from(b[0])) {
                    *slot = true;
                }
            }
            Ok(n) => return format!("recv {n} bytes"),
            Err(e) => return format!("recv {e:?}"),
        }
    }
    if seen.iter().all(|&s| s) {
        "ok".into()
    } else {
        "missing packets".into()
    }
}

fn forbidden(mode: &str) -> Result<()> {
    let r = match mode {
        "kill-ptrace" => outcome(sys::ptrace_traceme()),
        "kill-execve" => {
            let prog = CString::new("/bin/true")?;
            outcome(nix::unistd::execv(&prog, &[&prog]))
        }
        "kill-fork" => outcome(sys::fork()),
        "kill-mmap-exec" => outcome(sys::mmap_exec()),
        other => bail!("unknown mode {other}"),
    };
    // Reaching this line means the filter let the call through.
    line("survived", r);
    std::process::exit(3);
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, path, dir) = match args.as_slice() {
        [_, mode, path] => (mode.as_str(), path.as_str(), None),
        [_, mode, path, dir] if mode == "fuse" || mode == "ext4" => {
            (mode.as_str(), path.as_str(), Some(dir.as_str()))
        }
        _ => bail!(
            "usage: fsvc-sandbox-probe run|closed-stderr|threaded|panic|kill-ptrace|kill-execve|kill-fork|kill-mmap-exec FILE \
             | fuse FILE DIR | ext4 IMAGE DIR"
        ),
    };
    let parent = nix::unistd::getppid();
    let (kept, cfg) = setup(path)?;
    if let Some(dir) = dir {
        return if mode == "ext4" {
            fuse::serve_ext4(kept, &cfg, dir)
        } else {
            fuse::serve(kept, &cfg, dir)
        };
    }
    if mode == "threaded" {
        // A thread that exists before enter() would escape Landlock and
        // seccomp: enter() must refuse.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        line(
            "enter",
            match sandbox::enter(&cfg) {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("refused({e})"),
            },
        );
        line("entered", sandbox::is_entered());
        drop(tx);
        let _ = t.join();
        return Ok(());
    }
    if mode == "closed-stderr" {
        // A spawned server's 2 is closed by the helper while the server
        // still lists it: the sandbox must fill it, not fail.
        sys::close_stderr();
    }
    line("kept", format!("{:?}", cfg.keep_fds));
    let report = sandbox::enter(&cfg).context("entering the sandbox")?;
    line("report", &report);
    line("entered", sandbox::is_entered());
    if mode == "panic" {
        // A panic inside the sandbox must print and exit as a panic (101),
        // not be turned into SIGSYS by a call the panic hook makes.
        panic!("probe panic inside the sandbox");
    }
    if mode != "run" && mode != "closed-stderr" {
        return forbidden(mode);
    }
    line(
        "enter_again",
        match sandbox::enter(&cfg) {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("refused({e})"),
        },
    );
    probe_ids();
    probe_paths();
    probe_net_and_signals(parent);
    probe_fds(&kept);
    line("threads", probe_threads(&kept));
    line("done", "ok");
    Ok(())
}
