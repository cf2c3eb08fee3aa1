//! Issue 10, "user mounts with policy", for real: users made by the test
//! run a setuid-root copy of the helper under the real policy file.
//!
//! - a user mounts an image they own on a directory they own when the
//!   policy allows it, with `nosuid,nodev` forced, and unmounts it with
//!   `fsvc-mount -u` and with `fusermount3 -u`; another user can do
//!   neither to it;
//! - each rule refuses when broken, with exit 1 and its name;
//! - the per-user limit holds when two mounts race;
//! - an unmount cannot be steered at another user's server by changing
//!   what the mount's source path names.
//!
//! Every test holds the [`SystemLock`] (the policy file and the users are
//! machine-wide), and every guard puts back what it changed.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fsvc_tests::fixtures::{FsKind, Mkfs};
use fsvc_tests::mount::{alive, find_server, unmount_all};
use fsvc_tests::privilege::require_tools;
use fsvc_tests::require_privileged;
use fsvc_tests::system::{LoopDev, SystemLock};
use fsvc_tests::users::{LentNode, PolicyFile, SetuidHelper, TestUser};
use fsvc_tests::util::{check_utab_record, mounts_at, poll_until, utab_at, TempDir};

/// What the image's one file says.
const HELLO: &str = "hello from a user mount\n";
/// mount(8)'s "usage or permission" exit code, which every denial uses.
const EXIT_DENIED: i32 = 1;

fn ready(test: &str) -> bool {
    require_privileged(test) && require_tools(test, &["useradd", "userdel", "fusermount3"])
}

/// A small ext4 image holding `hello`, owned by `user` (mode 0644).
fn image_of(user: &TestUser<'_>, dir: &Path, name: &str, scratch: &TempDir) -> PathBuf {
    let tree = scratch.subdir(&format!("tree-{name}")).expect("tree");
    std::fs::write(tree.join("hello"), HELLO).expect("hello");
    let img = dir.join(name);
    Mkfs::new(FsKind::Ext4)
        .size_mib(16)
        .build(Some(&tree), &img)
        .expect("mkfs");
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    user.own(&img).expect("chown image");
    img
}

/// A policy letting users mount images from `dirs`, plus `extra` lines in
/// `[users]`, and the `[unmount]` table.
fn policy(dirs: &[&Path], extra: &str, unmount_secs: u64) -> String {
    let dirs: Vec<String> = dirs
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect();
    format!(
        "[users]\nallow = true\nimage_dirs = [{}]\n{extra}\n[unmount]\ntimeout_secs = {unmount_secs}\n",
        dirs.join(", ")
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mount_as(
    user: &TestUser<'_>,
    helper: &SetuidHelper,
    source: &Path,
    dir: &Path,
    opts: &str,
) -> Output {
    let (s, d) = (source.to_str().expect("utf8"), dir.to_str().expect("utf8"));
    user.run(&helper.helper(), &[s, d, "-o", opts], &[])
        .expect("run the helper")
}

fn unmount_as(user: &TestUser<'_>, program: &Path, flag: &str, dir: &Path) -> Output {
    user.run(program, &[flag, dir.to_str().expect("utf8")], &[])
        .expect("run the unmount")
}

/// The refusal came from `rule`, as a person sees it, with exit 1.
fn assert_denied(out: &Output, rule: &str, case: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(EXIT_DENIED),
        "{case}: exit status; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("refused by policy rule {rule}:")),
        "{case}: the denial names {rule}: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{case}: one line: {stderr}");
}

/// Unmounts whatever a failing test left at its mountpoints.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.0 {
            unmount_all(d);
        }
    }
}

fn fusermount3() -> PathBuf {
    fsvc_tests::util::which("fusermount3").expect("fusermount3 on PATH")
}

/// What every test here starts from, made under the system lock: the
/// policy file in the test's charge (none yet), two users with a home each
/// in a scratch directory, and the setuid helper. Fields drop in order:
/// the scratch directory, then the helper, the users, the policy.
struct World<'a> {
    scratch: TempDir,
    home_a: PathBuf,
    home_b: PathBuf,
    helper: SetuidHelper,
    a: TestUser<'a>,
    b: TestUser<'a>,
    pol: PolicyFile<'a>,
}

impl<'a> World<'a> {
    fn new(lock: &'a SystemLock, tag: &str) -> World<'a> {
        let pol = PolicyFile::take(lock).expect("policy file");
        let a = TestUser::create(lock).expect("user a");
        let b = TestUser::create(lock).expect("user b");
        let helper = SetuidHelper::install().expect("setuid helper");
        let scratch = TempDir::new(tag).expect("scratch");
        let home_a = a.dir(scratch.path(), "home-a").expect("home a");
        let home_b = b.dir(scratch.path(), "home-b").expect("home b");
        World {
            scratch,
            home_a,
            home_b,
            helper,
            a,
            b,
            pol,
        }
    }
}

#[test]
fn user_mounts_own_image_and_only_they_unmount_it() {
    let name = "user_mounts_own_image_and_only_they_unmount_it";
    if !ready(name) {
        return;
    }
    let lock = SystemLock::take().expect("system lock");
    let w = World::new(&lock, "users-own");
    let (pol, a, b, helper, scratch) = (&w.pol, &w.a, &w.b, &w.helper, &w.scratch);
    let home = &w.home_a;
    let img = image_of(a, home, "stick.img", scratch);
    let mnt = a.dir(home, "mnt").expect("mnt");
    let _cleanup = Cleanup(vec![mnt.clone()]);
    pol.set(&policy(&[home], "", 60)).expect("policy");

    // Asking for suid and dev changes nothing: a user mount never has them.
    // The knobs in the environment are a root caller's only: the log file
    // named here must stay untouched.
    let log = home.join("server.log");
    let out = a
        .run(
            &helper.helper(),
            &[
                img.to_str().expect("utf8"),
                mnt.to_str().expect("utf8"),
                "-o",
                "ro,suid,dev",
            ],
            &[("FSVC_LOG", log.to_str().expect("utf8"))],
        )
        .expect("mount");
    assert!(out.status.success(), "user mount: {out:?}");
    let entry = mounts_at(&mnt).expect("mountinfo").remove(0);
    assert_eq!(entry.fstype, "fuse.fsvc.ext4");
    assert_eq!(Path::new(&entry.source), img);
    for opt in ["nosuid", "nodev", "ro"] {
        assert!(entry.has_option(opt), "{opt} forced: {entry:?}");
    }
    assert!(
        entry.has_super_option(&format!("user_id={}", a.uid)),
        "mounted for the user: {entry:?}"
    );
    assert!(!log.exists(), "a user's FSVC_LOG was not obeyed");
    assert_recorded(&mnt);

    let hello = mnt.join("hello");
    let cat = |u: &TestUser<'_>| u.run(Path::new("/bin/cat"), &[&hello], &[]).expect("cat");
    let read = cat(a);
    assert!(read.status.success(), "the user reads the mount: {read:?}");
    assert_eq!(text(&read.stdout), HELLO);
    assert!(
        !cat(b).status.success(),
        "without allow_other nobody else sees the files"
    );
    let server = find_server(&img).expect("the server of the user mount");

    // Another user can unmount it neither way.
    let out = unmount_as(b, &helper.helper(), "-u", &mnt);
    assert_denied(&out, "own-mounts-only", "fsvc-mount -u by another user");
    let out = unmount_as(b, &fusermount3(), "-u", &mnt);
    assert!(
        !out.status.success(),
        "fusermount3 -u by another user: {out:?}"
    );
    assert!(
        !mounts_at(&mnt).expect("mountinfo").is_empty(),
        "still mounted"
    );
    assert!(cat(a).status.success(), "still served");

    // The user unmounts it: when fsvc-mount -u returns the server is done.
    let out = unmount_as(a, &helper.helper(), "-u", &mnt);
    assert!(out.status.success(), "fsvc-mount -u by its user: {out:?}");
    assert!(mounts_at(&mnt).expect("mountinfo").is_empty(), "unmounted");
    assert!(!alive(server), "the server finished before -u returned");
    assert!(
        utab_at(&mnt).expect("utab").is_empty(),
        "its utab line went"
    );

    // And with fusermount3 -u, which does not wait: the server ends on its own.
    let out = mount_as(a, helper, &img, &mnt, "ro");
    assert!(out.status.success(), "second user mount: {out:?}");
    let server = find_server(&img).expect("the second server");
    let out = unmount_as(a, &fusermount3(), "-u", &mnt);
    assert!(out.status.success(), "fusermount3 -u by its user: {out:?}");
    assert!(mounts_at(&mnt).expect("mountinfo").is_empty(), "unmounted");
    assert!(
        poll_until(Duration::from_secs(20), || !alive(server)),
        "the server exits after fusermount3 -u"
    );
    // fusermount3 leaves the utab line (as it leaves libmount's); the next
    // mount there replaces it, and its unmount leaves nothing.
    assert_eq!(utab_at(&mnt).expect("utab").len(), 1, "the stale line");
    let out = mount_as(a, helper, &img, &mnt, "ro");
    assert!(out.status.success(), "third user mount: {out:?}");
    assert_recorded(&mnt);
    let out = unmount_as(a, &helper.helper(), "-u", &mnt);
    assert!(out.status.success(), "fsvc-mount -u by its user: {out:?}");
    assert!(utab_at(&mnt).expect("utab").is_empty(), "no line left");
}

/// The user mount at `dir` has its one line in libmount's utab.
fn assert_recorded(dir: &Path) {
    let m = mounts_at(dir).expect("mountinfo");
    check_utab_record(m.first(), &utab_at(dir).expect("utab"), &[]).expect("utab record");
}

/// How the policy file stands for one case.
enum PolicyState {
    /// Written with this text, root's.
    Text(String),
    /// Written with this text, but owned by the user.
    UsersOwn(String),
    /// No file.
    Absent,
}

#[test]
fn each_rule_refuses_naming_itself() {
    let name = "each_rule_refuses_naming_itself";
    if !ready(name) {
        return;
    }
    let lock = SystemLock::take().expect("system lock");
    let w = World::new(&lock, "users-rules");
    let (pol, a, helper, scratch) = (&w.pol, &w.a, &w.helper, &w.scratch);
    let home = &w.home_a;
    let img = image_of(a, home, "a.img", scratch);
    // Someone else's image, in a directory the policy allows.
    let root_img = home.join("root.img");
    std::fs::copy(&img, &root_img).expect("copy");
    std::os::unix::fs::chown(&root_img, Some(0), Some(0)).expect("chown");
    std::fs::set_permissions(&root_img, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The user's own image, outside every allowed directory.
    let elsewhere = a.dir(scratch.path(), "elsewhere").expect("elsewhere");
    let outside_img = image_of(a, &elsewhere, "out.img", scratch);

    let mnt = a.dir(home, "mnt").expect("mnt");
    let mnt2 = a.dir(home, "mnt2").expect("mnt2");
    let roots_mnt = scratch.subdir("home-a/roots").expect("root's dir");
    let readonly_mnt = a.dir(home, "readonly").expect("dir");
    std::fs::set_permissions(&readonly_mnt, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let sticky = scratch.subdir("sticky").expect("sticky");
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let sticky_mnt = a.dir(&sticky, "m").expect("dir in sticky");
    let _cleanup = Cleanup(vec![mnt.clone(), mnt2.clone()]);

    // A block device: a loop device over a copy of the user's image.
    let dev_img = scratch.join("dev.img");
    std::fs::copy(&img, &dev_img).expect("copy");
    let dev = LoopDev::attach(&dev_img).expect("loop device");
    let base = policy(&[home], "", 60);

    struct Case<'a> {
        what: &'a str,
        policy: PolicyState,
        source: &'a Path,
        dir: &'a Path,
        opts: &'a str,
        rule: &'a str,
    }
    let cases = [
        Case {
            what: "source not readable by the user",
            policy: PolicyState::Text(base.clone()),
            source: &root_img,
            dir: &mnt,
            opts: "ro",
            rule: "source-access",
        },
        Case {
            what: "a device the user may not open",
            policy: PolicyState::Text(policy(&[home], "devices = [\"/dev/loop*\"]", 60)),
            source: dev.path(),
            dir: &mnt,
            opts: "ro",
            rule: "source-access",
        },
        Case {
            what: "mountpoint owned by someone else",
            policy: PolicyState::Text(base.clone()),
            source: &img,
            dir: &roots_mnt,
            opts: "ro",
            rule: "mountpoint-owner",
        },
        Case {
            what: "mountpoint the user may not write",
            policy: PolicyState::Text(base.clone()),
            source: &img,
            dir: &readonly_mnt,
            opts: "ro",
            rule: "mountpoint-writable",
        },
        Case {
            what: "mountpoint in root's sticky directory",
            policy: PolicyState::Text(base.clone()),
            source: &img,
            dir: &sticky_mnt,
            opts: "ro",
            rule: "sticky-directory",
        },
        Case {
            what: "allow_other not allowed",
            policy: PolicyState::Text(base.clone()),
            source: &img,
            dir: &mnt,
            opts: "ro,allow_other",
            rule: "users.allow_other",
        },
        Case {
            what: "image outside the allowed directories",
            policy: PolicyState::Text(base.clone()),
            source: &outside_img,
            dir: &mnt,
            opts: "ro",
            rule: "users.image_dirs",
        },
        Case {
            what: "user mounts not allowed",
            policy: PolicyState::Text(base.replace("allow = true", "allow = false")),
            source: &img,
            dir: &mnt,
            opts: "ro",
            rule: "users.allow",
        },
        Case {
            what: "policy absent",
            policy: PolicyState::Absent,
            source: &img,
            dir: &mnt,
            opts: "ro",
            rule: "no-policy",
        },
        Case {
            what: "policy not valid",
            policy: PolicyState::Text("[users]\nallow = yes\n".into()),
            source: &img,
            dir: &mnt,
            opts: "ro",
            rule: "policy-file",
        },
        Case {
            what: "policy writable by a user",
            policy: PolicyState::UsersOwn(base.clone()),
            source: &img,
            dir: &mnt,
            opts: "ro",
            rule: "policy-file",
        },
    ];
    for c in &cases {
        match &c.policy {
            PolicyState::Text(t) => pol.set(t).expect("policy"),
            PolicyState::UsersOwn(t) => {
                pol.set(t).expect("policy");
                a.own(Path::new(fsvc_tests::users::POLICY_PATH))
                    .expect("chown policy");
            }
            PolicyState::Absent => pol.remove().expect("no policy"),
        }
        let out = mount_as(a, helper, c.source, c.dir, c.opts);
        assert_denied(&out, c.rule, c.what);
        assert!(
            mounts_at(c.dir).expect("mountinfo").is_empty(),
            "{}: nothing mounted",
            c.what
        );
    }

    // The device rules, with the device lent to the user (as logind does
    // for a seat's removable disk).
    let lent = LentNode::lend(dev.path(), a).expect("lend the loop device");
    let device_cases = [
        ("devices = [\"/dev/sd*\"]", Some("users.devices")),
        (
            "devices = [\"/dev/loop*\"]\nremovable_only = true",
            Some("users.removable_only"),
        ),
        ("devices = [\"/dev/loop*\"]", None),
    ];
    for (rules, want) in device_cases {
        pol.set(&policy(&[home], rules, 60)).expect("policy");
        let out = mount_as(a, helper, dev.path(), &mnt, "ro");
        match want {
            Some(rule) => assert_denied(&out, rule, rules),
            None => {
                assert!(out.status.success(), "{rules}: {out:?}");
                let entry = mounts_at(&mnt).expect("mountinfo").remove(0);
                assert_eq!(Path::new(&entry.source), dev.path());
                assert!(entry.has_option("nosuid") && entry.has_option("nodev"));
                let out = unmount_as(a, &helper.helper(), "-u", &mnt);
                assert!(out.status.success(), "unmount the device: {out:?}");
                assert!(
                    fsvc_tests::system::open_excl(dev.path()).is_ok(),
                    "the device is free once -u returned"
                );
            }
        }
    }
    drop(lent);

    // The limit: one mount allowed, the second refused.
    pol.set(&policy(&[home], "max_mounts = 1", 60))
        .expect("policy");
    let out = mount_as(a, helper, &img, &mnt, "ro");
    assert!(out.status.success(), "first mount under the limit: {out:?}");
    let out = mount_as(a, helper, &img, &mnt2, "ro");
    assert_denied(&out, "users.max_mounts", "second mount over the limit");
    assert!(mounts_at(&mnt2).expect("mountinfo").is_empty());
    let out = unmount_as(a, &helper.helper(), "-u", &mnt);
    assert!(out.status.success(), "unmount: {out:?}");
}

/// Two mounts started together under `max_mounts = 1`: the lock makes the
/// count and the mount one step, so exactly one of them mounts.
#[test]
fn the_limit_holds_when_mounts_race() {
    let name = "the_limit_holds_when_mounts_race";
    if !ready(name) {
        return;
    }
    let lock = SystemLock::take().expect("system lock");
    let w = World::new(&lock, "users-race");
    let (pol, a, helper, scratch) = (&w.pol, &w.a, &w.helper, &w.scratch);
    let home = &w.home_a;
    let imgs = [
        image_of(a, home, "one.img", scratch),
        image_of(a, home, "two.img", scratch),
    ];
    let dirs = [
        a.dir(home, "m1").expect("m1"),
        a.dir(home, "m2").expect("m2"),
    ];
    let _cleanup = Cleanup(dirs.to_vec());
    pol.set(&policy(&[home], "max_mounts = 1", 60))
        .expect("policy");

    let outs: Vec<Output> = std::thread::scope(|s| {
        let runs: Vec<_> = imgs
            .iter()
            .zip(&dirs)
            .map(|(img, dir)| s.spawn(|| mount_as(a, helper, img, dir, "ro")))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("thread"))
            .collect()
    });
    let mounted: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| !mounts_at(d).expect("mountinfo").is_empty())
        .collect();
    assert_eq!(mounted.len(), 1, "exactly one mount: {outs:?}");
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "{outs:?}");
    let refused = outs
        .iter()
        .find(|o| !o.status.success())
        .expect("one refused");
    assert_denied(refused, "users.max_mounts", "the racing second mount");
    let out = unmount_as(a, &helper.helper(), "-u", mounted[0]);
    assert!(out.status.success(), "unmount: {out:?}");
}

/// The unmount helper waits for (and at its deadline kills) the server of
/// the mount. It must find that server by the mount itself, not by what
/// the mount's source path names now: a user could point that path at
/// another user's image and have the other user's server killed.
#[test]
fn unmount_cannot_be_steered_at_another_users_server() {
    let name = "unmount_cannot_be_steered_at_another_users_server";
    if !ready(name) {
        return;
    }
    let lock = SystemLock::take().expect("system lock");
    let w = World::new(&lock, "users-steer");
    let (pol, a, b, helper, scratch) = (&w.pol, &w.a, &w.b, &w.helper, &w.scratch);
    let (home_a, home_b) = (&w.home_a, &w.home_b);
    let img_a = image_of(a, home_a, "a.img", scratch);
    let img_b = image_of(b, home_b, "b.img", scratch);
    let (mnt_a, mnt_b) = (
        a.dir(home_a, "mnt").expect("mnt a"),
        b.dir(home_b, "mnt").expect("mnt b"),
    );
    let _cleanup = Cleanup(vec![mnt_a.clone(), mnt_b.clone()]);
    // A short deadline: a wrong server would be killed within the test.
    pol.set(&policy(&[home_a, home_b], "", 2)).expect("policy");

    let link = home_a.join("link.img");
    symlink(&img_a, &link).expect("symlink");
    std::os::unix::fs::lchown(&link, Some(a.uid), Some(a.gid)).expect("lchown");
    let out = mount_as(a, helper, &link, &mnt_a, "ro");
    assert!(out.status.success(), "a mounts through the link: {out:?}");
    let out = mount_as(b, helper, &img_b, &mnt_b, "ro");
    assert!(out.status.success(), "b mounts: {out:?}");
    let server_a = find_server(&img_a).expect("a's server");
    let server_b = find_server(&img_b).expect("b's server");

    // a re-points the path its mount was made from at b's image.
    let tmp = home_a.join("link.new");
    symlink(&img_b, &tmp).expect("symlink");
    std::fs::rename(&tmp, &link).expect("swap the link");

    let out = unmount_as(a, &helper.helper(), "-u", &mnt_a);
    assert!(out.status.success(), "a's unmount: {out:?}");
    assert!(!alive(server_a), "a's own server was the one waited for");
    assert!(alive(server_b), "b's server was left alone");
    let read = b
        .run(Path::new("/bin/cat"), &[mnt_b.join("hello")], &[])
        .expect("cat");
    assert_eq!(
        text(&read.stdout),
        HELLO,
        "b's mount still serves: {read:?}"
    );
    let out = unmount_as(b, &helper.helper(), "-u", &mnt_b);
    assert!(out.status.success(), "b's unmount: {out:?}");
}
