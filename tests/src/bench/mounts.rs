//! Mounting the benchmark image on each system under test: the kernel's
//! ext4 (read-only loop device), fuse2fs (foreground child process) and fsvc
//! (`fsvc-mount`, whose spawned server becomes our child because the
//! benchmark is a child subreaper).
//!
//! Invariants: a [`Mount`] owns its mountpoint's mount, its loop device and
//! its server process; dropping it unmounts, detaches and reaps (best
//! effort), so an error mid-run leaves nothing behind. For FUSE systems the
//! server PID is known, so its peak RSS can be read, and the FUSE connection
//! number is known, so a hung server can be aborted by the watchdog.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a mount may take to appear or a server to exit after unmount.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// A filesystem implementation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    /// The Linux kernel's ext4 on a read-only loop device.
    Kernel,
    /// e2fsprogs' fuse2fs.
    Fuse2fs,
    /// This project.
    Fsvc,
}

impl System {
    /// All systems, in table order.
    pub const ALL: [System; 3] = [System::Kernel, System::Fuse2fs, System::Fsvc];

    /// Column / JSON name.
    pub fn name(self) -> &'static str {
        match self {
            System::Kernel => "kernel",
            System::Fuse2fs => "fuse2fs",
            System::Fsvc => "fsvc",
        }
    }
}

/// Where the tools live.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `fsvc-mount` binary.
    pub fsvc_mount: PathBuf,
    /// `fuse2fs` binary, when found.
    pub fuse2fs: Option<PathBuf>,
    /// Server log for fsvc (passed as `FSVC_LOG`).
    pub fsvc_log: PathBuf,
}

impl Tools {
    /// Why `system` cannot be measured on this machine, or `None` when it can.
    pub fn missing(&self, system: System) -> Option<String> {
        let fuse = Path::new("/dev/fuse").exists();
        match system {
            System::Kernel => None,
            System::Fuse2fs if self.fuse2fs.is_none() => {
                Some("fuse2fs not installed (Debian package fuse2fs)".into())
            }
            System::Fsvc if !self.fsvc_mount.exists() => Some(format!(
                "{} not built (cargo build --release)",
                self.fsvc_mount.display()
            )),
            _ if !fuse => Some("/dev/fuse missing".into()),
            _ => None,
        }
    }
}

/// Finds `name` in `$PATH` (and the sbin directories root's PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One live mount of the image.
#[derive(Debug)]
pub struct Mount {
    system: System,
    dir: PathBuf,
    loopdev: Option<String>,
    /// fuse2fs runs as our direct child.
    child: Option<Child>,
    /// The fsvc server, reparented to us (subreaper).
    server: Option<Pid>,
    /// FUSE connection number (minor of the mount's st_dev).
    fuse_conn: Option<u32>,
    mounted: bool,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `dir` is a mount point right now (per /proc/self/mountinfo).
pub fn is_mount_point(dir: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == want)
}

/// Children of this process whose command name is `comm`.
fn children_named(comm: &str) -> Vec<Pid> {
    let me = std::process::id().to_string();
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(st) = fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |k: &str| {
                st.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            field("PPid:").as_deref() == Some(me.as_str())
                && field("Name:").as_deref() == Some(comm)
        })
        .map(Pid::from_raw)
        .collect()
}

impl Mount {
    /// Mounts `image` on `dir` (an empty directory) with `system`, read-only.
    pub fn new(system: System, image: &Path, dir: &Path, tools: &Tools) -> Result<Mount> {
        if is_mount_point(dir) {
            bail!("{} is already a mount point", dir.display());
        }
        let mut m = Mount {
            system,
            dir: dir.to_path_buf(),
            loopdev: None,
            child: None,
            server: None,
            fuse_conn: None,
            mounted: false,
        };
        match system {
            System::Kernel => {
                let dev = run(Command::new("losetup")
                    .args(["-f", "--show", "-r"])
                    .arg(image))?;
                m.loopdev = Some(dev.clone());
                run(Command::new("mount")
                    .args(["-t", "ext4", "-o", "ro", &dev])
                    .arg(dir))?;
                m.mounted = true;
            }
            System::Fuse2fs => {
                let bin = tools.fuse2fs.as_ref().context("fuse2fs not installed")?;
                let child = Command::new(bin)
                    .arg(image)
                    .arg(dir)
                    .args(["-o", "ro,fakeroot", "-f"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("spawning fuse2fs")?;
                m.child = Some(child);
                m.wait_mounted(SETTLE_TIMEOUT)?;
            }
            System::Fsvc => {
                let before = children_named("fsvc-server");
                run(Command::new(&tools.fsvc_mount)
                    .arg(image)
                    .arg(dir)
                    .args(["-o", "ro"])
                    .env("FSVC_LOG", &tools.fsvc_log))?;
                // The helper exits only once the mount exists (DESIGN.md,
                // step 7), so a missing mount now is a failure, not a delay.
                m.wait_mounted(Duration::from_secs(2))?;
                // The helper has exited; its server was reparented to us.
                let found: Vec<Pid> = children_named("fsvc-server")
                    .into_iter()
                    .filter(|p| !before.contains(p))
                    .collect();
                m.server = found.first().copied();
            }
        }
        if system != System::Kernel {
            let dev = fs::metadata(dir)?.dev();
            m.fuse_conn = Some(nix::sys::stat::minor(dev) as u32);
        }
        Ok(m)
    }

    fn wait_mounted(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if is_mount_point(&self.dir) {
                self.mounted = true;
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!("{} exited before mounting: {st}", self.system.name());
                }
            }
            std::thread::sleep(POLL);
        }
        bail!(
            "{} did not mount within {SETTLE_TIMEOUT:?}",
            self.system.name()
        )
    }

    /// The mountpoint.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// FUSE connection number, for aborting a hung server.
    pub fn fuse_conn(&self) -> Option<u32> {
        self.fuse_conn
    }

    /// Peak resident set (VmHWM, KiB) of the FUSE server process so far.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = match (&self.child, self.server) {
            (Some(c), _) => c.id() as i32,
            (None, Some(p)) => p.as_raw(),
            _ => return None,
        };
        let st = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        st.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Unmounts, waits for the server to exit and detaches the loop device.
    pub fn unmount(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        let mut result = Ok(());
        if self.mounted {
            if let Err(e) = run(Command::new("umount").arg(&self.dir)) {
                // Something still holds it: detach lazily so the run can go on.
                let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
                result = Err(e);
            }
            self.mounted = false;
        }
        if let Some(mut c) = self.child.take() {
            let start = Instant::now();
            loop {
                if c.try_wait()?.is_some() {
                    break;
                }
                if start.elapsed() > SETTLE_TIMEOUT {
                    let _ = c.kill();
                    let _ = c.wait();
                    result = result.and(Err(anyhow::anyhow!("fuse2fs did not exit after umount")));
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        if let Some(pid) = self.server.take() {
            let start = Instant::now();
            loop {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) if start.elapsed() < SETTLE_TIMEOUT => {
                        std::thread::sleep(POLL)
                    }
                    Ok(WaitStatus::StillAlive) => {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        result = result.and(Err(anyhow::anyhow!(
                            "fsvc-server {pid} did not exit after umount"
                        )));
                        break;
                    }
                    _ => break,
                }
            }
        }
        if let Some(dev) = self.loopdev.take() {
            if let Err(e) = run(Command::new("losetup").arg("-d").arg(&dev)) {
                result = result.and(Err(e));
            }
        }
        result
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
