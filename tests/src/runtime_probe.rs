//! The runtime stand-in of the detached-mount tests (issue 11): starts
//! `fsvc-runtime-probe` (src/bin/fsvc-runtime-probe.rs, which documents its
//! command line and output) asking the helper or the mount service, and
//! talks to it line by line. The probe bounds its own waits, so reading its
//! output cannot hang a test for long; dropping a [`Probe`] kills it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::mount::{alive, servers_of};
use crate::system::image_lock_free;
use crate::util::{bin, mount_table_of, poll_until, read_lossy, MountEntry, TempDir};

/// How long a server may take to finish after its last reference went.
pub const EXIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// After the last reference to a detached mount went: every server in
/// `servers` has exited, the image's lock is free and no server holds it.
pub fn assert_released(image: &Path, servers: &[i32], context: &str) {
    assert!(
        poll_until(EXIT_LIMIT, || servers.iter().all(|p| !alive(*p))),
        "the server still runs after its last reference went\n{context}"
    );
    assert!(
        poll_until(EXIT_LIMIT, || image_lock_free(image).unwrap_or(false)),
        "the image is still locked after the server exited\n{context}"
    );
    let canon = std::fs::canonicalize(image).expect("canonical");
    assert!(servers_of(&canon).is_empty(), "no server holds the image");
}

/// A number for this process's scratch names.
fn next() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running probe and what it said so far.
#[derive(Debug)]
pub struct Probe {
    child: Child,
    out: BufReader<ChildStdout>,
    /// The directory the probe attaches the mount on (in its namespace).
    pub dir: PathBuf,
    /// The server's log.
    pub log: PathBuf,
}

impl Probe {
    /// Starts the probe: it runs `fsvc-mount --detached SOCK -o OPTS
    /// SOURCE` (spawn mode, the server logging to a file in `scratch`).
    pub fn start(scratch: &TempDir, source: &Path, opts: &str, mode: &str) -> Probe {
        let n = next();
        let sock = scratch.join(format!("rt-{n}.sock"));
        let dir = scratch.subdir(&format!("mnt-{n}")).expect("mnt");
        let log = scratch.join(format!("server-{n}.log"));
        let no_sockets = scratch.subdir(&format!("no-sockets-{n}")).expect("dir");
        let mut c = Command::new(bin("fsvc-runtime-probe"));
        c.arg(&dir)
            .arg(mode)
            .arg("helper")
            .arg(&sock)
            .arg("--")
            .arg(bin("fsvc-mount"))
            .arg("--detached")
            .arg(&sock)
            .args(["-o", opts])
            .arg(source)
            .env("FSVC_LOG", &log)
            .env("FSVC_SOCKET_DIR", &no_sockets);
        Probe::spawn(c, dir, log)
    }

    /// Starts the probe on `dir` asking the mount service at `service`
    /// (`how` is `path` or `fd`) for `source`; `user` runs it as that
    /// user (ids only, no groups); `userns` (`own` or a namespace file)
    /// asks for an idmapped mount. `log` is the service's server log.
    #[allow(clippy::too_many_arguments)]
    pub fn ask_service(
        service: &Path,
        how: &str,
        source: &Path,
        opts: &str,
        mode: &str,
        dir: &Path,
        user: Option<(u32, u32)>,
        userns: Option<&str>,
        log: &Path,
    ) -> Probe {
        let mut c = match user {
            None => Command::new(bin("fsvc-runtime-probe")),
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--"])
                    .arg(bin("fsvc-runtime-probe"));
                c
            }
        };
        c.arg(dir)
            .arg(mode)
            .arg("service")
            .arg(service)
            .arg(how)
            .arg(source)
            .arg(opts)
            .args(userns);
        Probe::spawn(c, dir.to_path_buf(), log.to_path_buf())
    }

    fn spawn(mut c: Command, dir: PathBuf, log: PathBuf) -> Probe {
        c.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = c.spawn().expect("start the probe");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        Probe {
            child,
            out,
            dir,
            log,
        }
    }

    /// Sends one command and returns the probe's answer.
    pub fn ask(&mut self, command: &str) -> String {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{command}").expect("send a command");
        stdin.flush().expect("flush");
        self.line()
    }

    /// The probe's next line (it bounds its own waits).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).expect("read probe output");
        l.trim_end().to_string()
    }

    /// The one mount on [`Probe::dir`] in the probe's namespace.
    pub fn mount_entry(&self) -> MountEntry {
        let ns = mount_table_of(Path::new(&format!("/proc/{}/mountinfo", self.pid())))
            .expect("the probe's mountinfo");
        let here: Vec<_> = ns
            .into_iter()
            .filter(|m| m.mountpoint == self.dir)
            .collect();
        assert_eq!(
            here.len(),
            1,
            "one mount on the probe's directory: {here:?}"
        );
        here.into_iter().next().expect("one")
    }

    /// The probe's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the attached tree is seen from the host: through the probe's
    /// root, which resolves paths in its mount namespace.
    pub fn attached_root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid()))
            .join(self.dir.strip_prefix("/").expect("absolute"))
    }

    /// Ends the probe (stdin closed) and waits for it.
    pub fn finish(mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        self.child.wait().expect("wait for the probe")
    }

    /// The server log, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!("--- server log ---\n{}", read_lossy(&self.log))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
