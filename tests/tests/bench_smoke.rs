//! Smoke test of the benchmark command: `fsvc-bench --quick` on a tiny image
//! completes and prints every row of its table. It asserts nothing about the
//! figures (DESIGN.md: timings are never asserted) — only that the command
//! works end to end and reports every system, measured or not.

use std::process::Command;

use fsvc_tests::bench::report::row_labels;

/// Skips (or, under `FSVC_REQUIRE_PRIVILEGED=1`, fails) without root.
fn privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("FSVC_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("bench smoke test needs root and FSVC_REQUIRE_PRIVILEGED=1 forbids skipping");
    }
    eprintln!("skipping: the benchmark needs root (loop mounts, drop_caches)");
    false
}

#[test]
fn quick_bench_prints_every_row() {
    if !privileged() {
        return;
    }
    let json = std::env::temp_dir().join(format!("fsvc-bench-smoke-{}.json", std::process::id()));
    // The helper the other end-to-end tests run (FSVC_BIN_DIR when the
    // build directory is out of the server uid's reach).
    let out = Command::new(env!("CARGO_BIN_EXE_fsvc-bench"))
        .args(["--quick", "--size-mib", "8", "--files", "200", "--json"])
        .arg(&json)
        .arg("--fsvc-mount")
        .arg(fsvc_tests::util::bin("fsvc-mount"))
        .output()
        .expect("running fsvc-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fsvc-bench failed:\n{stdout}\n{stderr}"
    );
    let header = stdout
        .lines()
        .find(|l| l.starts_with("| workload"))
        .unwrap_or_else(|| panic!("no table header:\n{stdout}"));
    for col in ["kernel", "fuse2fs", "fsvc", "fsvc/fuse2fs", "fsvc/kernel"] {
        assert!(header.contains(col), "column {col} missing: {header}");
    }
    for label in row_labels() {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {label}")))
            .unwrap_or_else(|| panic!("row {label:?} missing:\n{stdout}"));
        // Five value cells after the label, none of them empty.
        let cells: Vec<&str> = row
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(cells.len(), 6, "row {label:?} malformed: {row}");
    }
    // The kernel is always available to root: its rates must be measured.
    let kernel_seq = stdout
        .lines()
        .find(|l| l.starts_with("| seq_read cold"))
        .and_then(|l| l.split('|').nth(2))
        .map(str::trim)
        .unwrap_or_default();
    assert!(
        kernel_seq.parse::<f64>().is_ok(),
        "kernel seq read not measured: {kernel_seq:?}\n{stdout}\n{stderr}"
    );
    let lines = std::fs::read_to_string(&json).expect("JSON output written");
    let _ = std::fs::remove_file(&json);
    // 1 config line + 7 rows x 3 systems.
    assert_eq!(lines.lines().count(), 1 + 7 * 3, "{lines}");
    assert!(lines
        .lines()
        .all(|l| l.starts_with('{') && l.ends_with('}')));
}
