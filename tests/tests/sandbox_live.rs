//! Issue 2: while mounted, the server is sandboxed as DESIGN.md step 4 says,
//! seen from outside: /proc/PID/status (no capabilities, no_new_privs,
//! seccomp filter, non-root uid), /proc/PID/fd (only the fds the design
//! names), the server's own Landlock report, and — under strace — that
//! Landlock and seccomp are in place before the first read of the image.

use fsvc_tests::fixtures::{varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{
    helper_command, kernel_records, FsvcMount, FsvcOptions, HelperRun, HELPER_LIMIT,
};
use fsvc_tests::oracle::{self, Compare};
use fsvc_tests::privilege::require_tools;
use fsvc_tests::require_privileged;
use fsvc_tests::util::{mounts_at, poll_until, read_lossy, wait_bounded, TempDir};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn status_fields(pid: i32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn small_image(scratch: &TempDir) -> PathBuf {
    let opts = TreeOptions {
        large_bytes: 1 << 20,
        ..TreeOptions::default()
    };
    varied_image(scratch, &Mkfs::new(FsKind::Ext4), &opts).unwrap()
}

#[test]
fn server_process_is_sandboxed_while_mounted() {
    if !require_privileged("server_process_is_sandboxed_while_mounted") {
        return;
    }
    let scratch = TempDir::new("sandbox").unwrap();
    let image = small_image(&scratch);
    let dir = scratch.subdir("mnt").unwrap();
    let m = FsvcMount::mount(&image, &dir, &FsvcOptions::default(), &scratch).unwrap();
    let diag = m.diagnostics();
    let pid = m
        .server_pid()
        .unwrap_or_else(|| panic!("server not found\n{diag}"));
    // Make the server read something so it is fully up.
    std::fs::read_dir(m.path()).unwrap().for_each(drop);

    let st = status_fields(pid);
    let get = |k: &str| st.get(k).cloned().unwrap_or_default();
    assert_eq!(get("CapEff"), "0000000000000000", "CapEff\n{diag}");
    assert_eq!(get("CapPrm"), "0000000000000000", "CapPrm\n{diag}");
    assert_eq!(get("NoNewPrivs"), "1", "NoNewPrivs\n{diag}");
    assert_eq!(get("Seccomp"), "2", "Seccomp (2 = filter)\n{diag}");
    for key in ["Uid", "Gid"] {
        let ids: Vec<u32> = get(key)
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        assert_eq!(ids.len(), 4, "{key}: {ids:?}");
        assert!(
            ids.iter().all(|&id| id != 0),
            "{key} still root: {ids:?}\n{diag}"
        );
    }
    assert_eq!(get("Groups"), "", "supplementary groups kept\n{diag}");

    // Only the fds the design names: the device (image), /dev/fuse, the log,
    // and at most the helper socket. /dev/null is tolerated on the stdio
    // numbers 0-2 only: it keeps those numbers from being reused by a later
    // open, and reaches nothing.
    let image_c = std::fs::canonicalize(&image).unwrap();
    let log_c = std::fs::canonicalize(&m.helper_run().log_path).unwrap();
    let mut fds = BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(e.path()).unwrap_or_default();
        fds.insert(e.file_name().to_string_lossy().into_owned(), target);
    }
    let count = |p: &Path| fds.values().filter(|t| t.as_path() == p).count();
    assert_eq!(count(&image_c), 1, "device fds: {fds:?}\n{diag}");
    assert_eq!(
        count(Path::new("/dev/fuse")),
        1,
        "/dev/fuse fds: {fds:?}\n{diag}"
    );
    let sockets = fds
        .values()
        .filter(|t| t.to_string_lossy().starts_with("socket:"))
        .count();
    assert!(sockets <= 1, "more than the helper socket: {fds:?}");
    let unexpected: Vec<_> = fds
        .iter()
        .filter(|(n, t)| {
            let s = t.to_string_lossy();
            let stdio_null =
                matches!(n.as_str(), "0" | "1" | "2") && t.as_path() == Path::new("/dev/null");
            !(stdio_null
                || t.as_path() == image_c
                || t.as_path() == Path::new("/dev/fuse")
                || t.as_path() == log_c
                || s.starts_with("socket:"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "fds the design does not name: {unexpected:?}\n{diag}"
    );

    // Landlock: the server reports full enforcement in its log.
    let log = read_lossy(&m.helper_run().log_path);
    assert!(
        log.contains("FullyEnforced"),
        "server log does not report Landlock FullyEnforced:\n{diag}"
    );
    assert!(
        !log.contains("PartiallyEnforced") && !log.contains("NotEnforced"),
        "{diag}"
    );
    m.unmount().unwrap();
}

/// One strace line: the pid and the rest.
fn split_pid(line: &str) -> Option<(i32, &str)> {
    let (pid, rest) = line.split_once(' ')?;
    Some((pid.parse().ok()?, rest.trim_start()))
}

/// Result of analysing an `strace -f -y` log of one helper run.
#[derive(Debug)]
struct SandboxOrder {
    server_pid: i32,
    /// Index (in the server's lines) of the first read of the image.
    first_image_read: Option<usize>,
    landlock_restrict: Option<usize>,
    seccomp_filter: Option<usize>,
    add_rule_calls: usize,
    create_ruleset: Option<String>,
}

fn analyse(log: &str, image: &Path) -> Result<SandboxOrder, String> {
    let img = format!("<{}>", image.display());
    let lines: Vec<(i32, &str)> = log.lines().filter_map(split_pid).collect();
    let exec = lines
        .iter()
        .position(|(_, l)| {
            l.starts_with("execve(") && l.contains("fsvc-server") && l.ends_with("= 0")
        })
        .ok_or("no successful execve of fsvc-server in the strace log")?;
    let server_pid = lines[exec].0;
    // The server and every thread or child it makes after exec.
    let mut pids = BTreeSet::from([server_pid]);
    let mut mine = Vec::new();
    for (pid, l) in &lines[exec + 1..] {
        if !pids.contains(pid) {
            continue;
        }
        if l.starts_with("clone") || l.contains("<... clone") {
            if let Some(child) = l
                .rsplit("= ")
                .next()
                .and_then(|r| r.trim().parse::<i32>().ok())
            {
                pids.insert(child);
            }
        }
        mine.push(*l);
    }
    let is_read = |l: &str| {
        [
            "read(", "pread64(", "readv(", "preadv(", "preadv2(", "mmap(",
        ]
        .iter()
        .any(|s| l.starts_with(s))
            && l.contains(&img)
    };
    let ok = |l: &str| l.trim_end().ends_with("= 0");
    Ok(SandboxOrder {
        server_pid,
        first_image_read: mine.iter().position(|l| is_read(l)),
        landlock_restrict: mine
            .iter()
            .position(|l| l.contains("landlock_restrict_self") && ok(l)),
        seccomp_filter: mine.iter().position(|l| {
            ((l.starts_with("seccomp(") || l.contains("<... seccomp")) && ok(l))
                && (l.contains("SECCOMP_SET_MODE_FILTER") || l.contains("<... seccomp"))
                || (l.starts_with("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER") && ok(l))
        }),
        add_rule_calls: mine
            .iter()
            .filter(|l| l.starts_with("landlock_add_rule("))
            .count(),
        create_ruleset: mine
            .iter()
            .find(|l| {
                l.starts_with("landlock_create_ruleset(")
                    && !l.contains("LANDLOCK_CREATE_RULESET_VERSION")
            })
            .map(|l| l.to_string()),
    })
}

/// Unmounts `dir` (lazily if busy) and kills strace if the test fails midway.
struct StraceGuard {
    dir: PathBuf,
    child: std::process::Child,
}

impl Drop for StraceGuard {
    fn drop(&mut self) {
        if !mounts_at(&self.dir).map(|m| m.is_empty()).unwrap_or(true) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
        if self.child.try_wait().ok().flatten().is_none() {
            // Give strace time to see the server exit after the unmount.
            let _ = wait_bounded(&mut self.child, Duration::from_secs(20), "strace");
        }
    }
}

#[test]
fn sandbox_is_in_place_before_first_image_read() {
    let name = "sandbox_is_in_place_before_first_image_read";
    if !require_privileged(name) || !require_tools(name, &["strace"]) {
        return;
    }
    let scratch = TempDir::new("strace").unwrap();
    let image = std::fs::canonicalize(small_image(&scratch)).unwrap();
    let expected = kernel_records(&image, &scratch).unwrap();
    let dir = scratch.subdir("mnt").unwrap();
    let trace = scratch.join("strace.log");

    let helper = helper_command(&image, &dir, &FsvcOptions::default(), &scratch).unwrap();
    let mut cmd = std::process::Command::new("strace");
    // -q, not -qq: the helper's "+++ exited" line is how the test sees it end.
    cmd.args(["-f", "-y", "-q", "-o"])
        .arg(&trace)
        .arg("-e")
        .arg(
            "trace=execve,clone,clone3,fork,vfork,landlock_create_ruleset,landlock_add_rule,\
         landlock_restrict_self,seccomp,prctl,read,pread64,readv,preadv,preadv2,mmap",
        );
    cmd.arg(helper.get_program()).args(helper.get_args());
    for (k, v) in helper.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let log_path: PathBuf = helper
        .get_envs()
        .find(|(k, _)| *k == "FSVC_LOG")
        .and_then(|(_, v)| v.map(PathBuf::from))
        .unwrap();
    let err_path = scratch.join("helper.err");
    let strace = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start strace");
    // Whatever happens below, nothing stays mounted and strace is reaped.
    let mut guard = StraceGuard {
        dir: dir.clone(),
        child: strace,
    };
    let strace = &mut guard.child;

    // strace only exits once the server does, so wait for the helper's own
    // exit line (the helper is the first pid in the log).
    let mut helper_exit: Option<String> = None;
    let seen = poll_until(HELPER_LIMIT, || {
        let log = read_lossy(&trace);
        let Some(first) = log.lines().next().and_then(split_pid).map(|(p, _)| p) else {
            return false;
        };
        helper_exit = log
            .lines()
            .filter_map(split_pid)
            .find(|(p, l)| {
                *p == first && (l.starts_with("+++ exited") || l.starts_with("+++ killed"))
            })
            .map(|(_, l)| l.to_string());
        helper_exit.is_some() || strace.try_wait().ok().flatten().is_some()
    });
    let diag = || {
        format!(
            "helper stderr:\n{}\nserver log:\n{}",
            read_lossy(&err_path),
            read_lossy(&log_path)
        )
    };
    let run = HelperRun {
        status: std::os::unix::process::ExitStatusExt::from_raw(
            if helper_exit.as_deref() == Some("+++ exited with 0 +++") {
                0
            } else {
                1 << 8
            },
        ),
        stdout: String::new(),
        stderr: read_lossy(&err_path),
        log: read_lossy(&log_path),
        log_path: log_path.clone(),
    };
    assert!(
        seen,
        "helper did not exit within {HELPER_LIMIT:?}\n{}",
        diag()
    );
    let m = FsvcMount::adopt(&image, &dir, run);
    let m = match m {
        Ok(m) => m,
        Err(e) => {
            panic!(
                "{e:#}\nhelper exit: {helper_exit:?}\nstrace log:\n{}",
                read_lossy(&trace)
            );
        }
    };
    // Read through the mount, so reads of the image certainly happen.
    let actual = oracle::walk(m.path()).unwrap();
    oracle::assert_same(&expected, &actual, Compare::EXACT, &m.diagnostics());
    m.unmount().unwrap();
    let st = wait_bounded(strace, Duration::from_secs(60), "strace").unwrap();
    assert!(mounts_at(&dir).unwrap().is_empty());

    let log = read_lossy(&trace);
    let order = analyse(&log, &image).unwrap_or_else(|e| panic!("{e}\n{log}"));
    eprintln!("sandbox order: {order:?}");
    let ctx = format!("{order:?}\nstrace exit {st}\n{}", diag());
    let first_read = order
        .first_image_read
        .unwrap_or_else(|| panic!("server {} never read the image?\n{ctx}", order.server_pid));
    let ll = order
        .landlock_restrict
        .unwrap_or_else(|| panic!("no successful landlock_restrict_self\n{ctx}"));
    let sc = order
        .seccomp_filter
        .unwrap_or_else(|| panic!("no seccomp filter installed\n{ctx}"));
    assert!(
        ll < first_read,
        "Landlock after the first image read\n{ctx}"
    );
    assert!(sc < first_read, "seccomp after the first image read\n{ctx}");
    // Landlock with no rules at all: nothing on the filesystem is reachable.
    assert_eq!(order.add_rule_calls, 0, "Landlock rules were added\n{ctx}");
    let rs = order
        .create_ruleset
        .unwrap_or_else(|| panic!("no landlock_create_ruleset\n{ctx}"));
    for right in [
        "LANDLOCK_ACCESS_FS_READ_FILE",
        "LANDLOCK_ACCESS_FS_EXECUTE",
        "LANDLOCK_ACCESS_FS_WRITE_FILE",
    ] {
        assert!(rs.contains(right), "ruleset does not handle {right}: {rs}");
    }
}

#[test]
fn strace_analysis_detects_wrong_order() {
    // The analysis itself must be able to fail: a read before Landlock.
    let img = Path::new("/x/img");
    let log = "10 execve(\"/b/fsvc-server\", [], []) = 0\n\
               10 pread64(5</x/img>, \"\", 1024, 1024) = 1024\n\
               10 landlock_restrict_self(4, 0) = 0\n\
               10 seccomp(SECCOMP_SET_MODE_FILTER, 0, {len=9}) = 0\n";
    let o = analyse(log, img).unwrap();
    assert_eq!(o.first_image_read, Some(0));
    assert_eq!(o.landlock_restrict, Some(1));
    assert_eq!(o.seccomp_filter, Some(2));
    assert!(o.landlock_restrict > o.first_image_read);
}
