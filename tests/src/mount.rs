//! RAII guards for the three ways a test reads an image: the kernel's ext4
//! (the oracle), fsvc (`fsvc-mount`, spawn mode unless told otherwise) and
//! fuse2fs (the stand-in used to validate the harness itself).
//!
//! Invariants:
//! - A guard that exists is mounted; dropping it unmounts (lazily if busy)
//!   and, for fsvc, waits (bounded) for the server to exit, killing it as a
//!   last resort so a failing test leaves no process behind.
//! - Every helper run is bounded in time and keeps the server log, so a
//!   failure message can show what the server said.

use crate::util::{self, bin, mounts_at, poll_until, read_lossy, wait_bounded, TempDir};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long a helper run may take before it counts as a hang.
pub const HELPER_LIMIT: Duration = Duration::from_secs(120);
/// How long the server may take to exit after the unmount.
pub const SERVER_EXIT_LIMIT: Duration = Duration::from_secs(20);

fn umount(dir: &Path, lazy: bool) -> bool {
    let mut c = Command::new("umount");
    if lazy {
        c.arg("-l");
    }
    c.arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts every mount at `dir` (stacked ones too), lazily when busy.
pub fn unmount_all(dir: &Path) {
    for _ in 0..8 {
        if mounts_at(dir).map(|m| m.is_empty()).unwrap_or(true) {
            return;
        }
        if !umount(dir, false) {
            umount(dir, true);
        }
    }
}

/// The kernel's own ext4 mount of an image (loop device, autocleared).
#[derive(Debug)]
pub struct KernelMount {
    dir: PathBuf,
    active: bool,
}

impl KernelMount {
    fn mount(image: &Path, dir: &Path, opts: &str) -> Result<KernelMount> {
        util::run(
            Command::new("mount")
                .args(["-t", "ext4", "-o", opts])
                .arg(image)
                .arg(dir),
        )?;
        Ok(KernelMount {
            dir: dir.to_path_buf(),
            active: true,
        })
    }

    /// Read-only, without journal replay: the oracle's view.
    pub fn ro(image: &Path, dir: &Path) -> Result<KernelMount> {
        Self::mount(image, dir, "ro,noload,loop")
    }

    /// Read-write, for making fixtures with the kernel.
    pub fn rw(image: &Path, dir: &Path) -> Result<KernelMount> {
        Self::mount(image, dir, "loop")
    }

    /// With the given `-o` options (`loop` is not added).
    pub fn with_options(source: &Path, dir: &Path, opts: &str) -> Result<KernelMount> {
        Self::mount(source, dir, opts)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Unmounts now, reporting failure.
    pub fn unmount(mut self) -> Result<()> {
        self.active = false;
        util::run(Command::new("umount").arg(&self.dir))?;
        Ok(())
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        if self.active {
            unmount_all(&self.dir);
        }
    }
}

/// Walks the kernel's read-only view of `image` (mounted at a fresh subdir of
/// `scratch`, unmounted before returning).
pub fn kernel_records(image: &Path, scratch: &TempDir) -> Result<Vec<crate::oracle::Record>> {
    let dir = scratch.subdir(&format!("kernel-{}", std::process::id()))?;
    let m = KernelMount::ro(image, &dir)?;
    let recs = crate::oracle::walk(m.path())?;
    m.unmount()?;
    Ok(recs)
}

/// How to run `fsvc-mount`.
#[derive(Debug, Clone)]
pub struct FsvcOptions {
    /// `-o` value.
    pub options: String,
    /// `-t` value, if any.
    pub fs_type: Option<String>,
    /// `FSVC_SOCKET_DIR`; `None` means a fresh empty dir, which forces spawn mode.
    pub socket_dir: Option<PathBuf>,
    /// `FSVC_TIMEOUT_SECS`.
    pub timeout_secs: Option<u32>,
}

impl Default for FsvcOptions {
    fn default() -> Self {
        FsvcOptions {
            options: "ro".to_string(),
            fs_type: None,
            socket_dir: None,
            timeout_secs: None,
        }
    }
}

/// What one `fsvc-mount` run did.
#[derive(Debug)]
pub struct HelperRun {
    /// Exit status.
    pub status: ExitStatus,
    /// stdout.
    pub stdout: String,
    /// stderr (the one-line reason on failure).
    pub stderr: String,
    /// The server log (`FSVC_LOG`) as it was after the helper exited.
    pub log: String,
    /// Path of the server log.
    pub log_path: PathBuf,
}

impl HelperRun {
    /// Exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Everything useful for a failure message.
    pub fn diagnostics(&self) -> String {
        format!(
            "fsvc-mount exit: {}\n--- helper stdout ---\n{}\n--- helper stderr ---\n{}\n--- server log ({}) ---\n{}",
            self.status,
            self.stdout,
            self.stderr,
            self.log_path.display(),
            read_lossy(&self.log_path)
        )
    }
}

/// Runs `fsvc-mount SOURCE DIR -o OPTS [-t TYPE]` to completion (bounded by
/// [`HELPER_LIMIT`]; a hang is an error). The server log goes to a file in
/// `scratch`.
pub fn run_helper(
    source: &Path,
    dir: &Path,
    opts: &FsvcOptions,
    scratch: &TempDir,
) -> Result<HelperRun> {
    run_helper_limited(source, dir, opts, scratch, HELPER_LIMIT)
}

/// [`run_helper`] with an explicit time limit.
pub fn run_helper_limited(
    source: &Path,
    dir: &Path,
    opts: &FsvcOptions,
    scratch: &TempDir,
    limit: Duration,
) -> Result<HelperRun> {
    let mut cmd = helper_command(source, dir, opts, scratch)?;
    let log_path = log_path_of(&cmd);
    let out_path = scratch.join(format!("helper-out-{}", unique()));
    let err_path = scratch.join(format!("helper-err-{}", unique()));
    cmd.stdout(fs::File::create(&out_path)?)
        .stderr(fs::File::create(&err_path)?)
        .stdin(Stdio::null());
    let mut child = cmd.spawn().context("spawn fsvc-mount")?;
    let status = wait_bounded(&mut child, limit, "fsvc-mount").map_err(|e| {
        anyhow::anyhow!(
            "{e}\n--- helper stderr ---\n{}\n--- server log ---\n{}",
            read_lossy(&err_path),
            read_lossy(&log_path)
        )
    })?;
    Ok(HelperRun {
        status,
        stdout: read_lossy(&out_path),
        stderr: read_lossy(&err_path),
        log: read_lossy(&log_path),
        log_path,
    })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn log_path_of(cmd: &Command) -> PathBuf {
    cmd.get_envs()
        .find(|(k, _)| *k == "FSVC_LOG")
        .and_then(|(_, v)| v.map(PathBuf::from))
        .unwrap_or_default()
}

/// The `fsvc-mount` command line for `opts` (not started), with `FSVC_LOG`
/// pointing at a fresh file in `scratch`.
pub fn helper_command(
    source: &Path,
    dir: &Path,
    opts: &FsvcOptions,
    scratch: &TempDir,
) -> Result<Command> {
    let n = unique();
    let log = scratch.join(format!("server-{n}.log"));
    fs::File::create(&log)?;
    let socket_dir = match &opts.socket_dir {
        Some(d) => d.clone(),
        None => scratch.subdir(&format!("no-sockets-{n}"))?,
    };
    let mut c = Command::new(bin("fsvc-mount"));
    c.arg(source).arg(dir);
    if !opts.options.is_empty() {
        c.arg("-o").arg(&opts.options);
    }
    if let Some(t) = &opts.fs_type {
        c.arg("-t").arg(t);
    }
    c.env("FSVC_LOG", &log).env("FSVC_SOCKET_DIR", socket_dir);
    if let Some(t) = opts.timeout_secs {
        c.env("FSVC_TIMEOUT_SECS", t.to_string());
    }
    Ok(c)
}

/// Finds the process serving `image`: an `fsvc-server` with an fd open on it.
pub fn find_server(image: &Path) -> Option<i32> {
    let want = fs::canonicalize(image).ok()?;
    servers_of(&want).into_iter().next()
}

/// Every `fsvc-server` process (by `comm`: argv\[0\] is its process
/// title) holding an fd on `image` (canonical path).
pub fn servers_of(image: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() != "fsvc-server" {
            continue;
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == image))
        {
            pids.push(pid);
        }
    }
    pids
}

/// True while `/proc/PID` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A live fsvc mount.
#[derive(Debug)]
pub struct FsvcMount {
    dir: PathBuf,
    image: PathBuf,
    server: Option<i32>,
    run: HelperRun,
    active: bool,
}

impl FsvcMount {
    /// Mounts `image` on `dir`; fails (with the helper's output and the
    /// server log) unless the helper exits 0 and the mount is there.
    pub fn mount(
        image: &Path,
        dir: &Path,
        opts: &FsvcOptions,
        scratch: &TempDir,
    ) -> Result<FsvcMount> {
        let run = run_helper(image, dir, opts, scratch)?;
        Self::adopt(image, dir, run)
    }

    /// Wraps the outcome of a helper run that should have mounted.
    pub fn adopt(image: &Path, dir: &Path, run: HelperRun) -> Result<FsvcMount> {
        let mounted = !mounts_at(dir)?.is_empty();
        let server = find_server(image);
        let m = FsvcMount {
            dir: dir.to_path_buf(),
            image: image.to_path_buf(),
            server,
            run,
            active: mounted,
        };
        if !m.run.status.success() || !mounted {
            bail!(
                "fsvc mount of {} on {} failed (mounted: {mounted}):\n{}",
                image.display(),
                dir.display(),
                m.run.diagnostics()
            );
        }
        Ok(m)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The server's pid, when it was found.
    pub fn server_pid(&self) -> Option<i32> {
        self.server
    }

    /// The helper run that made this mount.
    pub fn helper_run(&self) -> &HelperRun {
        &self.run
    }

    /// Helper output and the current server log, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "image: {}\nserver pid: {:?}\n{}",
            self.image.display(),
            self.server,
            self.run.diagnostics()
        )
    }

    /// Stops guarding the mount: the test unmounts it its own way (and
    /// checks the server's end itself). Returns the server's pid.
    pub fn disarm(mut self) -> Option<i32> {
        self.active = false;
        self.server.take()
    }

    /// Unmounts with plain `umount DIR` and waits (bounded) for the server to
    /// exit; an error says which step failed.
    pub fn unmount(mut self) -> Result<()> {
        self.active = false;
        let out = Command::new("umount").arg(&self.dir).output()?;
        if !out.status.success() {
            let d = self.diagnostics();
            unmount_all(&self.dir);
            bail!(
                "umount {} failed: {}\n{d}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Some(pid) = self.server {
            if !poll_until(SERVER_EXIT_LIMIT, || !alive(pid)) {
                let d = self.diagnostics();
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                bail!("server {pid} still running {SERVER_EXIT_LIMIT:?} after umount\n{d}");
            }
        }
        Ok(())
    }
}

impl Drop for FsvcMount {
    fn drop(&mut self) {
        if self.active {
            unmount_all(&self.dir);
        }
        if let Some(pid) = self.server {
            if !poll_until(Duration::from_secs(10), || !alive(pid)) {
                eprintln!("warning: killing fsvc-server {pid} that outlived its mount");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// A fuse2fs mount (`fuse2fs IMAGE DIR -o ro,fakeroot`), the stand-in.
#[derive(Debug)]
pub struct Fuse2fsMount {
    dir: PathBuf,
}

impl Fuse2fsMount {
    /// Mounts read-only.
    pub fn ro(image: &Path, dir: &Path) -> Result<Fuse2fsMount> {
        let args: Vec<OsString> = vec![image.into(), dir.into(), "-o".into(), "ro,fakeroot".into()];
        util::run(Command::new("fuse2fs").args(&args))?;
        if !poll_until(Duration::from_secs(30), || {
            mounts_at(dir).is_ok_and(|m| !m.is_empty())
        }) {
            bail!("fuse2fs did not mount {}", dir.display());
        }
        Ok(Fuse2fsMount {
            dir: dir.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Fuse2fsMount {
    fn drop(&mut self) {
        unmount_all(&self.dir);
    }
}
