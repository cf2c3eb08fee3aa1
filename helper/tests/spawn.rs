//! The spawn contract, checked from inside the spawned process: a copy of
//! `fsvc-mount` is put beside a fake `fsvc-server` (a shell script that
//! reports what it got to its log fd and exits). Needs root (the helper
//! serves root only, and dropping to the server uid needs it).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::*;

const FAKE_SERVER: &str = r#"#!/bin/sh
# Report, on the log fd (4), what the helper gave us; the test reads our
# fd table from outside while we wait for its go-ahead.
echo "ready $$" >&4
while [ ! -e GO_FILE ]; do sleep 0.05; done
echo "argv $*" >&4
echo "ids $(id -u) $(id -g) groups=$(id -G)" >&4
echo "env $(env | tr '\n' ' ')" >&4
grep -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs)' /proc/$$/status | tr -d '\t' | sed 's/^/status /' >&4
echo "sid $(cut -d' ' -f6 /proc/$$/stat) pid $$" >&4
echo "cwd $(readlink /proc/$$/cwd)" >&4
echo "done" >&4
"#;

#[test]
fn spawned_server_gets_the_contract() {
    if !require_root("spawned_server_gets_the_contract") {
        return;
    }
    let f = Fixture::new("spawn");
    let bin = f.dir.join("bin");
    std::fs::create_dir(&bin).expect("bin");
    std::fs::set_permissions(&f.dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::copy(HELPER, bin.join("fsvc-mount")).expect("copy helper");
    let script = bin.join("fsvc-server");
    let go = f.dir.join("go");
    std::fs::write(
        &script,
        FAKE_SERVER.replace("GO_FILE", go.to_str().expect("utf8")),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let empty_sockdir = f.dir.join("nosock");
    std::fs::create_dir(&empty_sockdir).expect("dir");
    let log = f.dir.join("server.log");

    let child = Command::new(bin.join("fsvc-mount"))
        .arg(&f.img)
        .arg(&f.mnt)
        .env("FSVC_SOCKET_DIR", &empty_sockdir)
        .env("FSVC_LOG", &log)
        .env("FSVC_TIMEOUT_SECS", "10")
        .env("FSVC_CANARY", "must-not-leak")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    // Wait (bounded) for the fake server to say it is ready, then read its fds.
    let pid = (0..600)
        .find_map(|_| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let pid = text
                .lines()
                .find_map(|l| l.strip_prefix("ready "))
                .map(str::to_string);
            if pid.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            pid
        })
        .unwrap_or_else(|| {
            panic!(
                "the fake server started: {:?}",
                std::fs::read_to_string(&log)
            )
        });
    let fds: BTreeMap<u32, String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?.to_str()?.to_string();
            Some((e.file_name().to_str()?.parse().ok()?, target))
        })
        // The shell's own fd on the script it reads is not the helper's doing.
        .filter(|(_, target)| !target.ends_with("/bin/fsvc-server"))
        .collect();
    std::fs::write(&go, b"").expect("go");
    let out = wait_bounded(child);
    out.assert_mount_failure("the server exited without answering");
    assert!(!is_mounted(&f.mnt));

    let text = std::fs::read_to_string(&log).expect("the server wrote its log");
    assert!(
        text.contains("\ndone\n"),
        "the script ran to the end: {text}"
    );
    assert_eq!(
        fds.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4],
        "{fds:?}"
    );
    assert_eq!(fds[&0], "/dev/null");
    assert_eq!(fds[&1], "/dev/null");
    assert!(fds[&3].starts_with("socket:"), "{text}");
    let log_str = log.to_str().expect("utf8");
    assert_eq!(fds[&2], log_str);
    assert_eq!(fds[&4], log_str);

    let line = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line: {text}"))
            .to_string()
    };
    // argv[0] is the process title, which a #! script does not see; no
    // other argument is passed (the environment says "spawned").
    assert_eq!(line("argv"), "");
    assert_eq!(line("ids"), "65534 65534 groups=65534");
    let env = line("env");
    assert!(
        env.contains("FSVC_SPAWNED=1") && !env.contains("FSVC_CANARY") && !env.contains("PATH="),
        "only the helper's own environment: {env}"
    );
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("status {cap}:")))
            .unwrap_or_else(|| panic!("no {cap}: {text}"));
        assert_eq!(v.trim(), "0000000000000000", "{cap}");
    }
    let nnp = text
        .lines()
        .find_map(|l| l.strip_prefix("status NoNewPrivs:"))
        .expect("nnp");
    assert_eq!(nnp.trim(), "1");
    let sid = line("sid");
    let (sid, pid) = sid.split_once(" pid ").expect("sid line");
    assert_eq!(sid, pid, "the server leads its own session");
    assert_eq!(line("cwd"), "/");
}

#[test]
fn unexecutable_server_is_reported() {
    if !require_root("unexecutable_server_is_reported") {
        return;
    }
    let f = Fixture::new("noexec");
    let bin = f.dir.join("bin");
    std::fs::create_dir(&bin).expect("bin");
    std::fs::set_permissions(&f.dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::copy(HELPER, bin.join("fsvc-mount")).expect("copy helper");
    // Present but not executable by anyone: execve fails in the child.
    std::fs::write(bin.join("fsvc-server"), "#!/bin/sh\n").expect("server");
    std::fs::set_permissions(
        bin.join("fsvc-server"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let empty_sockdir = f.dir.join("nosock");
    std::fs::create_dir(&empty_sockdir).expect("dir");
    let child = Command::new(bin.join("fsvc-mount"))
        .arg(&f.img)
        .arg(&f.mnt)
        .env("FSVC_SOCKET_DIR", &empty_sockdir)
        .env("FSVC_LOG", f.dir.join("server.log"))
        .env("FSVC_TIMEOUT_SECS", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let out = wait_bounded(child);
    out.assert_mount_failure("could not execute the server binary");
    let log = std::fs::read_to_string(f.dir.join("server.log")).expect("log");
    assert!(
        log.contains("cannot execute the server"),
        "the child logged why: {log}"
    );
}
