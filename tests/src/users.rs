//! Fixtures for user mounts (issue 10): throwaway users, the real policy
//! file, a setuid-root copy of the helper, and running a program as one of
//! those users.
//!
//! The helper reads its policy from a path fixed at build time
//! (`fsvc_helper::policy_file::DEFAULT_POLICY_PATH`, `/etc/fsvc/policy.toml`
//! for the test build), so the tests write the real file. Invariants:
//! - every guard takes nothing but a [`SystemLock`] reference, so they exist
//!   only while the lock is held: no two tests (or test binaries) change the
//!   policy or the users at once;
//! - every guard undoes exactly what it did: a user made is deleted, a
//!   policy file that was there before comes back byte for byte, one that
//!   was not is removed (with `/etc/fsvc` when it was made here), a chowned
//!   device node gets its owner back;
//! - a program run as a user gets a bounded time (a hang is a failure).

use anyhow::{bail, Context, Result};
use std::marker::PhantomData;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::system::SystemLock;
use crate::util::{bin, output_bounded, run, TempDir};

/// Where the test build of the helper reads its policy.
pub const POLICY_PATH: &str = fsvc_helper::policy_file::DEFAULT_POLICY_PATH;
/// How long a program run as a user may take.
pub const USER_RUN_LIMIT: Duration = Duration::from_secs(120);

static USERS: AtomicU64 = AtomicU64::new(0);

/// A user (and its own group) made with useradd, deleted on drop.
#[derive(Debug)]
pub struct TestUser<'a> {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// gid of its own group.
    pub gid: u32,
    _lock: PhantomData<&'a SystemLock>,
}

impl<'a> TestUser<'a> {
    /// `useradd --no-create-home --user-group`: no home, no password, no
    /// shell; only the ids matter.
    pub fn create(_lock: &'a SystemLock) -> Result<TestUser<'a>> {
        let n = USERS.fetch_add(1, Ordering::Relaxed);
        let name = format!("fsvct{}x{n}", std::process::id());
        run(Command::new("useradd")
            .args([
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name))?;
        let id = |flag: &str| -> Result<u32> {
            let out = run(Command::new("id").arg(flag).arg(&name))?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        let user = TestUser {
            uid: id("-u")?,
            gid: id("-g")?,
            name,
            _lock: PhantomData,
        };
        if user.uid == 0 || user.gid == 0 {
            bail!("useradd made {} with uid/gid 0", user.name);
        }
        Ok(user)
    }

    /// Gives `path` to this user (owner and group).
    pub fn own(&self, path: &Path) -> Result<()> {
        chown(path, Some(self.uid), Some(self.gid))
            .with_context(|| format!("chown {} to {}", path.display(), self.name))
    }

    /// A directory `parent/name` owned by this user, mode 0755.
    pub fn dir(&self, parent: &Path, name: &str) -> Result<PathBuf> {
        let p = parent.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        self.own(&p)?;
        Ok(p)
    }

    /// Runs `program args` as this user (real and effective ids, no
    /// supplementary groups, the given environment on top of a bare one),
    /// from `/`, bounded by [`USER_RUN_LIMIT`].
    pub fn run<S: AsRef<std::ffi::OsStr>>(
        &self,
        program: &Path,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Result<Output> {
        let mut c = Command::new(program);
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().copied())
            .current_dir("/")
            .uid(self.uid)
            .gid(self.gid);
        output_bounded(&mut c, USER_RUN_LIMIT)
            .with_context(|| format!("run {} as {}", program.display(), self.name))
    }
}

impl Drop for TestUser<'_> {
    fn drop(&mut self) {
        let ok = Command::new("userdel")
            .arg(&self.name)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: userdel {} failed", self.name);
        }
    }
}

/// The policy file as a test wants it; what was there before returns on drop.
#[derive(Debug)]
pub struct PolicyFile<'a> {
    saved: Option<Vec<u8>>,
    made_dir: bool,
    _lock: PhantomData<&'a SystemLock>,
}

impl<'a> PolicyFile<'a> {
    /// Takes charge of [`POLICY_PATH`] (saving what is there), with no
    /// policy in place until [`PolicyFile::set`].
    pub fn take(_lock: &'a SystemLock) -> Result<PolicyFile<'a>> {
        let path = Path::new(POLICY_PATH);
        let saved = match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => bail!("read {POLICY_PATH}: {e}"),
        };
        let dir = path.parent().context("policy path has a directory")?;
        let made_dir = !dir.exists();
        std::fs::create_dir_all(dir)?;
        let p = PolicyFile {
            saved,
            made_dir,
            _lock: PhantomData,
        };
        p.remove()?;
        Ok(p)
    }

    /// Writes `text` as the policy (root's, 0644, as an installer would).
    pub fn set(&self, text: &str) -> Result<()> {
        std::fs::write(POLICY_PATH, text)?;
        chown(POLICY_PATH, Some(0), Some(0))?;
        std::fs::set_permissions(POLICY_PATH, std::fs::Permissions::from_mode(0o644))?;
        Ok(())
    }

    /// No policy file at all.
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_file(POLICY_PATH) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => bail!("remove {POLICY_PATH}: {e}"),
        }
    }
}

impl Drop for PolicyFile<'_> {
    fn drop(&mut self) {
        let _ = self.remove();
        match &self.saved {
            Some(b) => {
                if let Err(e) = std::fs::write(POLICY_PATH, b) {
                    eprintln!("warning: cannot restore {POLICY_PATH}: {e}");
                }
            }
            None if self.made_dir => {
                if let Some(dir) = Path::new(POLICY_PATH).parent() {
                    let _ = std::fs::remove_dir(dir);
                }
            }
            None => {}
        }
    }
}

/// A setuid-root copy of the built helper with the server beside it (where
/// the helper looks for it), in its own temp dir: what `make install
/// SETUID=1` makes, without touching /sbin.
#[derive(Debug)]
pub struct SetuidHelper {
    dir: TempDir,
}

impl SetuidHelper {
    /// Copies `fsvc-mount` (mode 4755, root) and `fsvc-server` (0755).
    pub fn install() -> Result<SetuidHelper> {
        let dir = TempDir::new("setuid")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        for (name, mode) in [("fsvc-mount", 0o4755), ("fsvc-server", 0o755)] {
            let to = dir.join(name);
            std::fs::copy(bin(name), &to).with_context(|| format!("copy {name}"))?;
            chown(&to, Some(0), Some(0))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
        }
        let m = std::fs::metadata(dir.join("fsvc-mount"))?;
        if m.mode() & 0o4000 == 0 || m.uid() != 0 {
            bail!("the helper copy is not setuid root");
        }
        Ok(SetuidHelper { dir })
    }

    /// The setuid helper.
    pub fn helper(&self) -> PathBuf {
        self.dir.join("fsvc-mount")
    }
}

/// A device node lent to a user (as udev or logind would for a seat's
/// removable disk); its owner and group come back on drop.
#[derive(Debug)]
pub struct LentNode<'a> {
    path: PathBuf,
    uid: u32,
    gid: u32,
    _user: PhantomData<&'a TestUser<'a>>,
}

impl<'a> LentNode<'a> {
    /// Chowns `path` to `user`.
    pub fn lend(path: &Path, user: &'a TestUser<'a>) -> Result<LentNode<'a>> {
        let m = std::fs::metadata(path)?;
        user.own(path)?;
        Ok(LentNode {
            path: path.to_path_buf(),
            uid: m.uid(),
            gid: m.gid(),
            _user: PhantomData,
        })
    }
}

impl Drop for LentNode<'_> {
    fn drop(&mut self) {
        let _ = chown(&self.path, Some(self.uid), Some(self.gid));
    }
}
