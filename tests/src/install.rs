//! The Makefile's install, as the tests run it: `make install DESTDIR=...
//! PREFIX=/usr` (what a distribution's package build does), the layout the
//! README promises, and a [`MountNs`] in which the DESTDIR's files sit at
//! their real paths.
//!
//! The install builds with its own target directory
//! (`target/install-test`): the Makefile fixes the server's and the
//! policy's paths into the helper at build time, and doing that in
//! `target/debug` would change the `fsvc-mount` every other test runs.
//! The directory is kept between runs, so only the first build is slow.
//!
//! Invariant: nothing here writes outside the given DESTDIR and that
//! target directory; the host's /sbin, /usr/libexec, /etc and /run are
//! only ever covered inside a private namespace.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::namespace::MountNs;
use crate::util::{bin_dir, output_bounded};

/// The install prefix the tests use (a distribution's).
pub const PREFIX: &str = "/usr";
/// How long one `make` may take (the first one builds the release binaries).
pub const MAKE_LIMIT: Duration = Duration::from_secs(1800);

/// What an installed path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// A regular file with this mode.
    File(u32),
    /// A symlink with this target.
    Link(&'static str),
}

/// Every path `make install PREFIX=/usr` makes, relative to DESTDIR, as
/// the README's Install section lists them (SETUID=0: the helper 0755).
pub const LAYOUT: &[(&str, Installed)] = &[
    ("sbin/mount.service", Installed::File(0o755)),
    ("sbin/umount.fuse.fsvc", Installed::Link("mount.service")),
    ("sbin/fsck.service.ext4", Installed::Link("e2fsck")),
    ("sbin/fsck.service.ext3", Installed::Link("e2fsck")),
    ("sbin/fsck.service.ext2", Installed::Link("e2fsck")),
    ("usr/libexec/fsvc/fsvc-server", Installed::File(0o755)),
    ("usr/libexec/fsvc/fsvc-mountd", Installed::File(0o755)),
    ("usr/lib/systemd/system/fsvc.socket", Installed::File(0o644)),
    (
        "usr/lib/systemd/system/fsvc@.service",
        Installed::File(0o644),
    ),
    (
        "usr/lib/systemd/system/fsvc-mountd.socket",
        Installed::File(0o644),
    ),
    (
        "usr/lib/systemd/system/fsvc-mountd@.service",
        Installed::File(0o644),
    ),
    ("usr/share/man/man8/fsvc-mount.8", Installed::File(0o644)),
    (
        "usr/share/man/man8/mount.service.8",
        Installed::Link("fsvc-mount.8"),
    ),
    ("usr/share/man/man8/fsvc-server.8", Installed::File(0o644)),
    (
        "usr/share/bash-completion/completions/fsvc-mount",
        Installed::File(0o644),
    ),
    (
        "usr/share/zsh/site-functions/_fsvc-mount",
        Installed::File(0o644),
    ),
    (
        "usr/share/fish/vendor_completions.d/fsvc-mount.fish",
        Installed::File(0o644),
    ),
    ("etc/fsvc/policy.toml.example", Installed::File(0o644)),
];

/// Where the installed server is, as the units and the helper name it.
pub const SERVER: &str = "/usr/libexec/fsvc/fsvc-server";

/// The workspace (where the Makefile is).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The install's own cargo target directory.
pub fn target_dir() -> PathBuf {
    bin_dir()
        .parent()
        .map(|t| t.join("install-test"))
        .unwrap_or_else(|| workspace().join("target/install-test"))
}

/// Runs `make GOAL DESTDIR=destdir PREFIX=/usr SETUID=...` in the
/// workspace; a failure is an error with make's output.
pub fn make(goal: &str, destdir: &Path, setuid: bool) -> Result<Output> {
    // One make at a time: each writes the generated pages into the same
    // build directory before copying them.
    static MAKE: Mutex<()> = Mutex::new(());
    let _one = MAKE.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(workspace())
        .arg(goal)
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("PREFIX={PREFIX}"))
        .arg(format!("SETUID={}", u8::from(setuid)))
        .arg(format!("CARGO_TARGET_DIR={}", target_dir().display()))
        // The outer build fetched every crate; a test never goes online.
        .env("CARGO_NET_OFFLINE", "true");
    if let Some(cargo) = std::env::var_os("CARGO") {
        c.arg(format!("CARGO={}", cargo.to_string_lossy()));
    }
    let out = output_bounded(&mut c, MAKE_LIMIT)?;
    if !out.status.success() {
        bail!(
            "make {goal} DESTDIR={} failed ({}):\n{}\n{}",
            destdir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// One `make install SETUID=1` shared by a test binary's tests, into
/// `target/install-test/pkg` (made afresh once per process).
pub fn shared_install() -> Result<&'static Path> {
    static PKG: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let r = PKG.get_or_init(|| {
        let pkg = target_dir().join("pkg");
        let _ = std::fs::remove_dir_all(&pkg);
        make("install", &pkg, true)
            .map(|_| pkg)
            .map_err(|e| format!("{e:#}"))
    });
    match r {
        Ok(p) => Ok(p.as_path()),
        Err(e) => bail!("the shared install failed: {e}"),
    }
}

/// A namespace in which `destdir`'s install is in place: its `sbin` over
/// the host's (through `/sbin`'s real directory, `/usr/sbin` on a
/// merged-/usr system), its `usr/libexec` over `/usr/libexec`, `etc` (a
/// test's fstab and policy, uppermost) and its `etc` over `/etc`, and an
/// empty `/run` (for `/run/fsvc`, whose sockets the units make).
pub fn installed_ns(destdir: &Path, etc: &Path) -> Result<MountNs> {
    let ns = MountNs::new()?;
    let sbin = std::fs::canonicalize("/sbin").context("/sbin")?;
    ns.overlay(&[&destdir.join("sbin")], &sbin)?;
    ns.overlay(&[&destdir.join("usr/libexec")], Path::new("/usr/libexec"))?;
    ns.overlay(&[etc, &destdir.join("etc")], Path::new("/etc"))?;
    ns.tmpfs(Path::new("/run"))?;
    Ok(ns)
}
