//! The end-to-end check most tests share: read an image through the kernel
//! (the oracle) and through an fsvc mount, and require identical trees; then
//! unmount and require the server to be gone.
//!
//! Also the fixture self-checks: the kernel's view must contain what the
//! varied tree promises (nanosecond and post-2038 times, every file type,
//! ACLs), so a comparison can never pass on a fixture that lacks them.

use crate::fixtures::{T_NSEC, T_POST_2038, T_PRE_1970};
use crate::mount::{kernel_records, FsvcMount, FsvcOptions};
use crate::oracle::{self, find, Compare, Kind, Record};
use crate::util::TempDir;
use anyhow::{ensure, Context, Result};
use std::path::Path;

/// Checks that the kernel's read of a varied-tree image shows what the tree
/// promises. `ns_times` is false for images whose inodes cannot hold
/// nanoseconds (128-byte inodes).
pub fn check_varied_fixture(recs: &[Record], ns_times: bool) -> Result<()> {
    let get = |p: &str| find(recs, p).with_context(|| format!("fixture lacks {p}"));
    for (p, k) in [
        ("special/fifo", Kind::Fifo),
        ("special/socket", Kind::Socket),
        ("special/null-like", Kind::Char),
        ("special/block", Kind::Block),
        ("links/slow", Kind::Symlink),
        ("d1/d2/d3/d4/d5/d6/d7/leaf.txt", Kind::File),
    ] {
        ensure!(get(p)?.kind == k, "{p} is not a {k:?}");
    }
    ensure!(
        get("special/big-dev")?.rdev == (300, 70_000),
        "big-dev rdev"
    );
    ensure!(get("hard/a")?.nlink == 3, "hard/a nlink");
    ensure!(get("perm/uid-32bit")?.uid == 4_000_000_000, "32-bit uid");
    ensure!(get("perm/setuid")?.mode & 0o7777 == 0o4755, "setuid mode");
    let acl = get("xattr/acl-dir")?;
    for name in ["system.posix_acl_access", "system.posix_acl_default"] {
        ensure!(
            acl.xattrs.contains_key(name.as_bytes()),
            "acl-dir lacks {name}: {:?}",
            acl.xattrs
                .keys()
                .map(|k| k.escape_ascii().to_string())
                .collect::<Vec<_>>()
        );
    }
    ensure!(
        get("xattr/small")?
            .xattrs
            .contains_key(b"trusted.t".as_slice()),
        "trusted xattr"
    );
    ensure!(
        get("times/pre-1970")?.mtime.0 == T_PRE_1970.0,
        "pre-1970 mtime"
    );
    if ns_times {
        ensure!(get("times/nsec")?.mtime == T_NSEC, "ns mtime on disk");
        ensure!(
            get("times/post-2038")?.mtime == T_POST_2038,
            "post-2038 mtime"
        );
    }
    Ok(())
}

/// Mounts `image` through fsvc with `opts`, walks it, and panics (with the
/// server log) unless it equals `expected` under `cmp`. Then unmounts with
/// plain `umount` and requires the server process to exit.
pub fn fsvc_matches(
    image: &Path,
    expected: &[Record],
    opts: &FsvcOptions,
    cmp: Compare,
    scratch: &TempDir,
) -> Result<()> {
    let dir = scratch.subdir(&format!("fsvc-mnt-{}", expected.len()))?;
    let m = FsvcMount::mount(image, &dir, opts, scratch)?;
    let actual = oracle::walk(m.path()).map_err(|e| {
        anyhow::anyhow!("walking the fsvc mount failed: {e:#}\n{}", m.diagnostics())
    })?;
    oracle::assert_same(expected, &actual, cmp, &m.diagnostics());
    ensure!(
        m.server_pid().is_some(),
        "no fsvc-server process holds {}:\n{}",
        image.display(),
        m.diagnostics()
    );
    m.unmount()
}

/// Kernel walk, then [`fsvc_matches`] with the default (spawn-mode, `-o ro`)
/// options and exact comparison. Returns the kernel records.
pub fn kernel_vs_fsvc(image: &Path, scratch: &TempDir) -> Result<Vec<Record>> {
    let expected = kernel_records(image, scratch)?;
    fsvc_matches(
        image,
        &expected,
        &FsvcOptions::default(),
        Compare::EXACT,
        scratch,
    )?;
    Ok(expected)
}
