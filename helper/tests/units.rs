//! The systemd units pass `systemd-analyze verify` and the service rates at
//! most 0.3 in `systemd-analyze security --offline=true`.
//!
//! `verify` insists that ExecStart's binary exists, so the units are checked
//! from a copy whose ExecStart names a binary that exists here (this
//! crate's own); nothing else is changed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Highest exposure the issue accepts.
const MAX_EXPOSURE: f64 = 0.3;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../units")
}

/// The units copied to a temp dir with ExecStart pointed at an existing binary.
fn staged(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/helper-units-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    for unit in ["fsvc.socket", "fsvc@.service"] {
        let text = std::fs::read_to_string(units_dir().join(unit)).expect("unit");
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("ExecStart=") {
                    format!("ExecStart={}\n", env!("CARGO_BIN_EXE_fsvc-mount"))
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(dir.join(unit), text).expect("write unit");
    }
    dir
}

fn have_analyze(test: &str) -> bool {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    let msg = format!("{test}: skipped: systemd-analyze is not installed");
    if std::env::var("FSVC_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{msg}, and FSVC_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("{msg}");
    false
}

#[test]
fn units_verify_cleanly() {
    if !have_analyze("units_verify_cleanly") {
        return;
    }
    let dir = staged("verify");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("fsvc.socket"))
        .arg(dir.join("fsvc@.service"))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {stderr}");
    // Unknown keys and bad values are warnings naming the file, not failures.
    let dir_str = dir.to_str().expect("utf8");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(dir_str) || l.contains("fsvc"))
        .collect();
    assert!(warnings.is_empty(), "verify warnings: {warnings:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn service_exposure_is_low() {
    if !have_analyze("service_exposure_is_low") {
        return;
    }
    let dir = staged("security");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(dir.join("fsvc@.service"))
        .output()
        .expect("run systemd-analyze");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Unknown key"), "{stderr}");
    let level = stdout
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")?
                .1
                .split(' ')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in: {stdout}{stderr}"));
    assert!(
        level <= MAX_EXPOSURE,
        "exposure {level} > {MAX_EXPOSURE}:\n{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn socket_unit_shape() {
    let text = std::fs::read_to_string(units_dir().join("fsvc.socket")).expect("unit");
    let values = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        values("ListenSequentialPacket"),
        ["/run/fsvc/ext2", "/run/fsvc/ext3", "/run/fsvc/ext4"]
    );
    assert_eq!(values("Accept"), ["yes"]);
    assert_eq!(values("SocketMode"), ["0600"]);
    assert_eq!(values("SocketUser"), ["root"]);
    assert_eq!(values("WantedBy"), ["sockets.target"]);
}
