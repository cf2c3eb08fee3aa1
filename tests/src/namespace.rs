//! A private mount namespace for tests that need installed files at their
//! real paths (`/sbin/mount.service`, `/usr/libexec/fsvc/fsvc-server`,
//! `/etc/fstab`, `/etc/fsvc/policy.toml`, `/run/fsvc/ext4`) without
//! touching the machine's: read-only overlays put a DESTDIR's files over
//! the host's directories, seen only inside the namespace, where mount(8),
//! umount(8) and systemd's tools run as they would on an installed system.
//!
//! The namespace is held by a sleeping process (`unshare --mount
//! --propagation private`); commands enter it with `nsenter`, as root or,
//! through `setpriv`, as a test user.
//!
//! Invariants: nothing mounted inside propagates out (private
//! propagation); the copies of other tests' mounts (FUSE, loop devices,
//! anything under /tmp) are detached as soon as the namespace exists, so
//! it never keeps their filesystems or devices busy; on drop every such
//! mount left inside (this test's) is detached, so its server ends, before
//! the holder is killed, and the namespace then goes away with its last
//! process; every command is bounded in time.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::users::TestUser;
use crate::util::{mount_table_of, output_bounded, poll_until, MountEntry, UtabLine};

/// How long one command inside may take.
pub const NS_RUN_LIMIT: Duration = Duration::from_secs(120);

/// The namespace and its holder.
#[derive(Debug)]
pub struct MountNs {
    holder: Child,
}

fn ns_inode(pid: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

impl MountNs {
    /// Makes the namespace and waits until its holder is inside it.
    pub fn new() -> Result<MountNs> {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sleep", "3600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start unshare")?;
        let ns = MountNs { holder };
        let pid = ns.pid().to_string();
        let ours = ns_inode("self");
        if !poll_until(Duration::from_secs(10), || {
            ns_inode(&pid).is_some_and(|n| Some(&n) != ours.as_ref())
        }) {
            bail!("unshare did not enter a new mount namespace");
        }
        // The new namespace holds a copy of every mount, and a copy keeps
        // its superblock alive: another test's FUSE mount would not end
        // (its server not exit) at its umount, its loop device would stay
        // busy. Detach those copies at once.
        for m in ns.mounts()?.iter().rev().filter(|m| is_borrowed(m)) {
            ns.detach(&m.mountpoint);
        }
        Ok(ns)
    }

    /// `umount -i -l DIR` inside: detach without the umount helper (which
    /// would wait for a server this namespace does not own).
    fn detach(&self, dir: &Path) {
        let mut c = self.command("umount");
        c.args(["-i", "-l"]).arg(dir);
        let _ = output_bounded(&mut c, NS_RUN_LIMIT);
    }

    /// The lines of the namespace's libmount utab (in its own `/run`)
    /// whose target is `dir`.
    pub fn utab_at(&self, dir: &Path) -> Result<Vec<UtabLine>> {
        let utab = format!("/proc/{}/root{}", self.pid(), crate::util::UTAB);
        crate::util::utab_of(Path::new(&utab), dir)
    }

    /// The holder's pid (its `/proc` entry shows the namespace's mounts).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `program` to be run inside, as root (not started).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("--target")
            .arg(self.pid().to_string())
            .args(["--mount", "--"])
            .arg(program);
        c
    }

    /// `program` to be run inside as `user` (real and effective ids, no
    /// supplementary groups, a bare environment), not started.
    pub fn command_as(&self, user: &TestUser<'_>, program: &str) -> Command {
        let mut c = self.command("setpriv");
        c.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .args(["--clear-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/");
        c
    }

    /// Runs a prepared command, bounded.
    pub fn output(&self, cmd: &mut Command) -> Result<Output> {
        output_bounded(cmd, NS_RUN_LIMIT)
    }

    /// Runs `program args` inside as root; a non-zero exit is an error.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S]) -> Result<Output> {
        let mut c = self.command(program);
        c.args(args);
        let out = self.output(&mut c)?;
        if !out.status.success() {
            bail!(
                "{program} {:?} in the namespace failed ({}): {}{}",
                args.iter()
                    .map(|a| a.as_ref().to_owned())
                    .collect::<Vec<_>>(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Lays `layers` (uppermost first) over `dir`, read-only: the layers'
    /// files hide the host's of the same name, the rest shows through.
    pub fn overlay(&self, layers: &[&Path], dir: &Path) -> Result<()> {
        let mut lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
        lower.push(dir.display().to_string());
        if lower.iter().any(|l| l.contains([':', ','])) {
            bail!("overlay layer paths must not contain ':' or ',': {lower:?}");
        }
        self.run(
            "mount",
            &[
                "-t".to_string(),
                "overlay".into(),
                "-o".into(),
                format!("lowerdir={}", lower.join(":")),
                "overlay".into(),
                dir.display().to_string(),
            ],
        )?;
        Ok(())
    }

    /// An empty tmpfs (mode 0755) on `dir`.
    pub fn tmpfs(&self, dir: &Path) -> Result<()> {
        self.run(
            "mount",
            &[
                "-t".to_string(),
                "tmpfs".into(),
                "-o".into(),
                "mode=0755".into(),
                "tmpfs".into(),
                dir.display().to_string(),
            ],
        )?;
        Ok(())
    }

    /// The namespace's mount table.
    pub fn mounts(&self) -> Result<Vec<MountEntry>> {
        mount_table_of(Path::new(&format!("/proc/{}/mountinfo", self.pid())))
    }

    /// Mounts at `dir` exactly, inside.
    pub fn mounts_at(&self, dir: &Path) -> Result<Vec<MountEntry>> {
        Ok(self
            .mounts()?
            .into_iter()
            .filter(|m| m.mountpoint == dir)
            .collect())
    }
}

/// A mount the namespace copied from the host that only other tests use:
/// FUSE mounts, loop-device mounts, anything below /tmp (not /tmp itself,
/// which the tests' scratch directories are in).
pub fn is_borrowed(m: &MountEntry) -> bool {
    let tmp = Path::new("/tmp");
    m.fstype.starts_with("fuse")
        || m.source.starts_with("/dev/loop")
        || (m.mountpoint.starts_with(tmp) && m.mountpoint != tmp)
}

impl Drop for MountNs {
    fn drop(&mut self) {
        // What is left is this test's: its servers live in the namespace
        // and keep it alive while their mounts exist, so detach them (the
        // servers then end) before the holder goes.
        if let Ok(mounts) = self.mounts() {
            for m in mounts.iter().rev().filter(|m| is_borrowed(m)) {
                self.detach(&m.mountpoint);
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
