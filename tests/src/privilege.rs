//! The one gate for tests that need root, `/dev/fuse` or a system tool.
//!
//! Invariant: a test that cannot run says why ("SKIP: ...") and returns, unless
//! `FSVC_REQUIRE_PRIVILEGED=1` is set (CI), where a skip would hide a
//! regression and therefore panics instead.

use std::path::Path;

/// Environment variable that turns every skip into a failure.
pub const REQUIRE_ENV: &str = "FSVC_REQUIRE_PRIVILEGED";

/// True when `FSVC_REQUIRE_PRIVILEGED=1`.
pub fn skips_are_failures() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Skips (returns false after printing why) or, under
/// `FSVC_REQUIRE_PRIVILEGED=1`, panics.
pub fn skip(test: &str, why: &str) -> bool {
    if skips_are_failures() {
        panic!("{test}: cannot run: {why} (and {REQUIRE_ENV}=1 forbids skipping)");
    }
    eprintln!("SKIP: {test}: {why}");
    false
}

/// Returns true when the test may proceed: running as root with `/dev/fuse`
/// and loop devices present. Otherwise prints "SKIP: <why>" and returns
/// false, or panics under `FSVC_REQUIRE_PRIVILEGED=1`.
pub fn require_privileged(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        return skip(test, "needs root (mounts, mknod, loop devices)");
    }
    if !Path::new("/dev/fuse").exists() {
        return skip(test, "needs /dev/fuse");
    }
    if !Path::new("/dev/loop-control").exists() {
        return skip(test, "needs loop devices (/dev/loop-control)");
    }
    true
}

/// Returns true when every tool in `tools` is on PATH; otherwise skips (or
/// panics under `FSVC_REQUIRE_PRIVILEGED=1`) naming the missing one.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    for tool in tools {
        if crate::util::which(tool).is_none() {
            return skip(test, &format!("needs the tool `{tool}` on PATH"));
        }
    }
    true
}
