//! Issue 10, "safe unmount": fsvc's line in libmount's utab (which makes
//! umount(8) run `/sbin/umount.fuse.fsvc`, docs/design-notes.md "Unmount")
//! stays fsvc's after util-linux 2.38 rewrote the file without its `ID=`
//! field, as every mount(8) and umount(8) that adds or removes a line of
//! its own does: `fsvc-mount -u` removes it, the next fsvc mount at the
//! same place drops it when its mount is gone, umount(8) still runs the
//! helper for it, and every other line is kept byte for byte.
//!
//! The test runs in a private mount namespace with its own `/run/mount`
//! (tmpfs), so that the table holds exactly what the test put there and
//! can be compared whole, and the host's utab is never touched.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fsvc_tests::fixtures::{FsKind, Mkfs};
use fsvc_tests::namespace::MountNs;
use fsvc_tests::require_privileged;
use fsvc_tests::system::{image_lock_free, UmountHelper};
use fsvc_tests::util::{bin, parse_utab, poll_until, read_lossy, TempDir, UtabLine};

/// The option that marks fsvc's lines.
const UHELPER: &str = "uhelper=fuse.fsvc";
/// What the server logs, before it closes the source, when it finished.
const CLEAN_LINE: &str = "unmounted: clean";
/// fsvc's umount helper with `-v`, once the server it waited for exited.
const HELPER_WAITED: &str = "the server finished and released the source";

/// The namespace with its own empty `/run/mount`, and where the test
/// process sees that directory's utab.
struct Table {
    ns: MountNs,
    utab: PathBuf,
}

impl Table {
    fn new() -> Table {
        let ns = MountNs::new().expect("mount namespace");
        ns.tmpfs(Path::new("/run/mount"))
            .expect("tmpfs on /run/mount");
        let utab = PathBuf::from(format!("/proc/{}/root/run/mount/utab", ns.pid()));
        Table { ns, utab }
    }

    fn text(&self) -> String {
        read_lossy(&self.utab)
    }

    /// The table's lines for `dir`.
    fn at(&self, dir: &Path) -> Vec<UtabLine> {
        parse_utab(&self.text())
            .into_iter()
            .filter(|l| l.target == dir)
            .collect()
    }

    /// Runs `program args` inside, as root; a failure fails the test.
    fn run(&self, program: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut c = self.ns.command(&program.display().to_string());
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = self.ns.output(&mut c).expect("run in the namespace");
        assert!(
            out.status.success(),
            "{} {args:?}: {out:?}",
            program.display()
        );
        out
    }

    /// fsvc-mount IMAGE DIR -o ro inside (spawned server, its log at
    /// `log`); returns the new mount's id.
    fn mount(&self, image: &Path, dir: &Path, log: &Path, scratch: &TempDir) -> u64 {
        std::fs::write(log, "").expect("log");
        let stem = log.file_stem().map(|s| s.to_string_lossy().into_owned());
        let no_sockets = scratch
            .subdir(&format!("no-sockets-{}", stem.unwrap_or_default()))
            .expect("dir");
        let (img, mnt) = (image.display().to_string(), dir.display().to_string());
        self.run(
            &bin("fsvc-mount"),
            &[&img, &mnt, "-o", "ro"],
            &[("FSVC_LOG", log), ("FSVC_SOCKET_DIR", &no_sockets)],
        );
        let m = self.ns.mounts_at(dir).expect("mountinfo");
        assert_eq!(m.len(), 1, "one mount at {}: {m:?}", dir.display());
        assert_eq!(m[0].fstype, "fuse.fsvc.ext4");
        let line = self.at(dir);
        assert!(
            matches!(line.as_slice(), [l] if l.id == Some(m[0].id) && l.has_option(UHELPER)),
            "recorded with its id: {line:?}"
        );
        m[0].id
    }

    /// What util-linux 2.38 does to the file whenever mount(8) or
    /// umount(8) edits it for a mount of its own: rewrites every line, and
    /// without `ID=`. Done for real (a tmpfs with an `x-` option, which
    /// libmount records); should the installed util-linux keep `ID=` (2.39
    /// and later), the test takes the ids out itself, as 2.38 would have.
    fn rewrite_as_util_linux(&self, scratch: &TempDir, n: u32) {
        let other = scratch.subdir(&format!("other-{n}")).expect("dir");
        let other = other.display().to_string();
        let mount = Path::new("mount");
        self.run(
            mount,
            &["-t", "tmpfs", "-o", "x-fsvc-test", "tmpfs", &other],
            &[],
        );
        self.run(Path::new("umount"), &[&other], &[]);
        let text = self.text();
        if parse_utab(&text).iter().any(|l| l.id.is_some()) {
            eprintln!("NOTE: this util-linux keeps ID= in utab; removing the ids as 2.38 does");
            let bare: String = text
                .lines()
                .map(|l| {
                    let kept: Vec<&str> = l.split(' ').filter(|f| !f.starts_with("ID=")).collect();
                    format!("{}\n", kept.join(" "))
                })
                .collect();
            std::fs::write(&self.utab, bare).expect("rewrite utab");
        }
    }
}

/// `text` without its lines for `dir` (what an unmount at `dir` must
/// leave, byte for byte).
fn without(text: &str, dir: &Path) -> String {
    text.lines()
        .filter(|l| {
            parse_utab(l)
                .first()
                .is_none_or(|u| u.target != dir || !u.has_option(UHELPER))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The line of the mount at `dir`, as util-linux 2.38 left it: fsvc's,
/// with its source and target, and no `ID=`.
fn assert_bare(t: &Table, dir: &Path, image: &Path) {
    let lines = t.at(dir);
    assert!(
        matches!(lines.as_slice(), [l] if l.id.is_none() && l.has_option(UHELPER)
            && Path::new(&l.source) == image),
        "the rewritten line, without ID=: {lines:?}\n{}",
        t.text()
    );
}

#[test]
fn lines_util_linux_rewrote_without_id_are_still_fsvcs() {
    if !require_privileged("lines_util_linux_rewrote_without_id_are_still_fsvcs") {
        return;
    }
    // umount(8) in the namespace finds the helper in the host's /sbin.
    let helper = UmountHelper::install().expect("umount helper");
    let scratch = TempDir::new("utab-noid").expect("scratch");
    let img = scratch.join("fs.img");
    Mkfs::new(FsKind::Ext4)
        .size_mib(16)
        .build(None, &img)
        .expect("mkfs");
    let dir = scratch.subdir("mnt").expect("mnt");
    let t = Table::new();
    // Lines of others: libmount's (udisks2's, an x- option) and one this
    // code cannot parse. They must come through every edit unchanged.
    let foreign = "SRC=/dev/sdz1 TARGET=/media/u/stick ROOT=/ OPTS=uhelper=udisks2\n\
                   SRC=/dev/sdz2 TARGET=/srv/data\\040dir ROOT=/ OPTS=x-systemd.automount\n";
    std::fs::write(&t.utab, foreign).expect("seed utab");

    // 1. fsvc-mount -u removes its line after util-linux took the id.
    let log = scratch.join("server-1.log");
    t.mount(&img, &dir, &log, &scratch);
    t.rewrite_as_util_linux(&scratch, 1);
    assert_bare(&t, &dir, &img);
    let before = t.text();
    let mnt = dir.display().to_string();
    t.run(&bin("fsvc-mount"), &["-u", &mnt], &[]);
    assert!(t.ns.mounts_at(&dir).expect("mountinfo").is_empty());
    assert!(
        read_lossy(&log).contains(CLEAN_LINE),
        "{}",
        read_lossy(&log)
    );
    assert_eq!(t.text(), without(&before, &dir), "only fsvc's line went");
    assert!(t.text().contains("udisks2") && t.text().contains("data\\040dir"));

    // 2. A line outliving its mount (fusermount3 -u does not edit utab),
    // without its id: the next fsvc mount there drops it.
    let log = scratch.join("server-2.log");
    t.mount(&img, &dir, &log, &scratch);
    t.rewrite_as_util_linux(&scratch, 2);
    t.run(Path::new("fusermount3"), &["-u", &mnt], &[]);
    assert!(
        poll_until(Duration::from_secs(30), || image_lock_free(&img)
            .unwrap_or(false)),
        "the server finished after fusermount3 -u\n{}",
        read_lossy(&log)
    );
    assert_bare(&t, &dir, &img);
    let before = t.text();
    let log = scratch.join("server-3.log");
    let id = t.mount(&img, &dir, &log, &scratch);
    let after = t.text();
    // The new mount's line is appended (Table::mount checked it).
    let added = after.lines().last().unwrap_or_default();
    assert_eq!(parse_utab(added).first().and_then(|l| l.id), Some(id));
    assert_eq!(
        after,
        format!("{}{added}\n", without(&before, &dir)),
        "the stale line went, the others stayed"
    );

    // 3. umount(8) still runs fsvc's helper for a line without its id
    // (2.38 matches by target and source) and waits for the server.
    t.rewrite_as_util_linux(&scratch, 3);
    assert_bare(&t, &dir, &img);
    let before = t.text();
    let out = t.run(Path::new("umount"), &["-v", &mnt], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(HELPER_WAITED),
        "umount ran /sbin/umount.fuse.fsvc, which waited: {out:?}"
    );
    assert!(
        read_lossy(&log).contains(CLEAN_LINE),
        "{}",
        read_lossy(&log)
    );
    assert!(image_lock_free(&img).expect("probe"), "released at once");
    assert_eq!(t.text(), without(&before, &dir), "only fsvc's line went");
    drop(t);
    drop(helper);
}
