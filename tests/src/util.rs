//! Small shared utilities: unique temp dirs, running tools with readable
//! errors, locating the fsvc binaries, bounded waits and mount-table queries.
//!
//! Invariant: every wait here is bounded; a hang becomes an error, never a
//! stuck test.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Environment variable overriding where `fsvc-mount`/`fsvc-server` live.
pub const BIN_DIR_ENV: &str = "FSVC_BIN_DIR";

/// A directory under /tmp removed (recursively) on drop, unless something is
/// still mounted under it: then it is left alone, because deleting through a
/// live mount could change a filesystem that is not ours to change.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    /// Makes `/tmp/fsvc-e2e-<tag>-<pid>-<n>-<nanos>`.
    pub fn new(tag: &str) -> Result<TempDir> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = PathBuf::from(format!(
            "/tmp/fsvc-e2e-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(rel)`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Makes a subdirectory and returns its path.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        match mounts_under(&self.path) {
            Ok(m) if m.is_empty() => {
                let _ = std::fs::remove_dir_all(&self.path);
            }
            Ok(m) => eprintln!(
                "warning: leaving {} in place, still mounted under it: {m:?}",
                self.path.display()
            ),
            Err(e) => eprintln!("warning: cannot read mountinfo: {e}"),
        }
    }
}

/// Finds `tool` on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs a command to completion; a non-zero exit is an error carrying the
/// command line, status, stdout and stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Runs a command line given as words, see [`run`].
pub fn run_args<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Output> {
    run(Command::new(program).args(args))
}

/// Runs a command and returns its stdout as (lossy) text.
pub fn run_stdout<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    Ok(String::from_utf8_lossy(&run_args(program, args)?.stdout).into_owned())
}

/// The directory holding `fsvc-mount` and `fsvc-server`: `$FSVC_BIN_DIR`, or
/// `target/<profile>/` found from the test executable
/// (`target/<profile>/deps/<test>`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    dir
}

/// Path to an fsvc binary; panics with a clear instruction when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not found: run `cargo build --workspace` first (or set {BIN_DIR_ENV})",
        p.display()
    );
    p
}

/// Waits for `child` to exit for at most `limit`; on timeout kills it and
/// returns an error (a hang is a failure, never a stuck test).
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> Result<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not exit within {limit:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` with its stdout and stderr captured, for at most `limit`
/// (a hang is an error). For commands that print a few lines: the output
/// must fit the pipes, since it is read after the exit.
pub fn output_bounded(cmd: &mut Command, limit: Duration) -> Result<Output> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let status = wait_bounded(&mut child, limit, &format!("{cmd:?}"))?;
    Ok(Output {
        status,
        stdout: drain(child.stdout.take()),
        stderr: drain(child.stderr.take()),
    })
}

/// Everything left in a pipe (empty when there is none).
fn drain<R: std::io::Read>(pipe: Option<R>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut v);
    }
    v
}

/// The parent pid of `pid` from `/proc/PID/stat` (the field after the
/// command name, which may itself contain ')' and spaces), if it is alive.
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Polls `cond` every 20 ms for at most `limit`; true when it became true.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Decodes the octal escapes (`\040`, `\012`, `\134`) mountinfo uses.
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = b
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok());
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// One line of /proc/self/mountinfo (the fields tests look at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount id (what libmount's utab records as `ID=`).
    pub id: u64,
    /// Mount point.
    pub mountpoint: PathBuf,
    /// Filesystem type (e.g. `fuse.ext4`, `ext4`).
    pub fstype: String,
    /// Mount source (e.g. the image path).
    pub source: String,
    /// Per-mount options (`ro,nosuid,...`).
    pub options: String,
    /// Superblock options (`ro,user_id=1000,...`).
    pub super_options: String,
}

impl MountEntry {
    /// Whether `opt` is one of the per-mount options.
    pub fn has_option(&self, opt: &str) -> bool {
        self.options.split(',').any(|o| o == opt)
    }

    /// Whether `opt` is one of the superblock options.
    pub fn has_super_option(&self, opt: &str) -> bool {
        self.super_options.split(',').any(|o| o == opt)
    }
}

/// Reads /proc/self/mountinfo.
pub fn mount_table() -> Result<Vec<MountEntry>> {
    mount_table_of(Path::new("/proc/self/mountinfo"))
}

/// Reads a mountinfo file (`/proc/PID/mountinfo`: that process's mount
/// namespace).
pub fn mount_table_of(mountinfo: &Path) -> Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string(mountinfo)
        .with_context(|| format!("read {}", mountinfo.display()))?;
    let mut v = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < sep + 3 || fields.len() < 6 {
            continue;
        }
        let Ok(id) = fields[0].parse() else {
            continue;
        };
        v.push(MountEntry {
            id,
            mountpoint: PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(fields[4]))),
            options: fields[5].to_string(),
            fstype: fields[sep + 1].to_string(),
            source: String::from_utf8_lossy(&unescape_mountinfo(fields[sep + 2])).into_owned(),
            super_options: fields.get(sep + 3).copied().unwrap_or_default().to_string(),
        });
    }
    Ok(v)
}

/// Mounts whose mount point is `dir` exactly.
pub fn mounts_at(dir: &Path) -> Result<Vec<MountEntry>> {
    Ok(mount_table()?
        .into_iter()
        .filter(|m| m.mountpoint == dir)
        .collect())
}

/// Mounts at or below `dir`.
pub fn mounts_under(dir: &Path) -> Result<Vec<MountEntry>> {
    Ok(mount_table()?
        .into_iter()
        .filter(|m| m.mountpoint.starts_with(dir))
        .collect())
}

/// libmount's userspace mount table, where fsvc records its mounts so
/// that umount(8) runs fsvc's umount helper (docs/design-notes.md, "Unmount").
pub const UTAB: &str = "/run/mount/utab";

/// One line of a utab (the fields tests look at).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UtabLine {
    /// `ID=`: the mount id.
    pub id: Option<u64>,
    /// `SRC=`.
    pub source: String,
    /// `TARGET=`.
    pub target: PathBuf,
    /// `OPTS=`.
    pub opts: String,
}

impl UtabLine {
    /// Whether `opt` is one of its options.
    pub fn has_option(&self, opt: &str) -> bool {
        self.opts.split(',').any(|o| o == opt)
    }
}

/// Parses utab text (`KEY=value` fields, values escaped as in mountinfo).
pub fn parse_utab(text: &str) -> Vec<UtabLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut u = UtabLine::default();
            for (k, v) in l.split(' ').filter_map(|f| f.split_once('=')) {
                let raw = unescape_mountinfo(v);
                match k {
                    "ID" => u.id = v.parse().ok(),
                    "SRC" => u.source = String::from_utf8_lossy(&raw).into_owned(),
                    "TARGET" => u.target = PathBuf::from(OsStr::from_bytes(&raw)),
                    "OPTS" => u.opts = String::from_utf8_lossy(&raw).into_owned(),
                    _ => {}
                }
            }
            u
        })
        .collect()
}

/// The lines of [`UTAB`] whose target is `dir` (none when there is no file).
pub fn utab_at(dir: &Path) -> Result<Vec<UtabLine>> {
    utab_of(Path::new(UTAB), dir)
}

/// The lines of the utab file `utab` whose target is `dir` (none when
/// there is no file).
pub fn utab_of(utab: &Path, dir: &Path) -> Result<Vec<UtabLine>> {
    let text = match std::fs::read_to_string(utab) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| utab.display().to_string()),
    };
    Ok(parse_utab(&text)
        .into_iter()
        .filter(|u| u.target == dir)
        .collect())
}

/// Checks that `lines` (a utab's lines for one target) are fsvc's record
/// of `mount`: one line, with its mount id and source, naming fsvc's umount
/// helper (`uhelper=fuse.fsvc`), with `extra` among its options too. The
/// line may have lost its `ID=`: util-linux 2.38 rewrites the file without
/// it whenever mount(8) or umount(8) edits a line of its own, which tests
/// running at the same time do (tests/tests/utab.rs shows fsvc copes).
pub fn check_utab_record(
    mount: Option<&MountEntry>,
    lines: &[UtabLine],
    extra: &[&str],
) -> Result<()> {
    let Some(m) = mount else {
        bail!("nothing mounted (utab: {lines:?})");
    };
    let [line] = lines else {
        bail!(
            "not one utab line for {}: {lines:?}",
            m.mountpoint.display()
        );
    };
    if line.id.is_some_and(|id| id != m.id) || line.source != m.source {
        bail!("the line is not the mount's (id, source): {line:?} vs {m:?}");
    }
    for opt in ["uhelper=fuse.fsvc"].iter().chain(extra) {
        if !line.has_option(opt) {
            bail!("no {opt} in {line:?}");
        }
    }
    Ok(())
}

/// Reads a file, lossily, for diagnostics ("" when unreadable).
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
