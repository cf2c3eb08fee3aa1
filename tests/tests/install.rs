//! Issue 10, "install" and "mount(8), fstab and automounters", with the
//! files `make install` puts in a DESTDIR (PREFIX=/usr, as a package
//! build does):
//!
//! - the files land where the README says, `man -l` renders the pages,
//!   `--help` prints the usage, `make uninstall` removes everything;
//! - in a private mount namespace where the DESTDIR's files sit at their
//!   real paths (see `fsvc_tests::install`): the installed units pass
//!   `systemd-analyze verify`, a socket made as `fsvc.socket` says, serving
//!   the installed unit's ExecStart, serves the mount; fstab lines (a
//!   `UUID=`, a `LABEL=`, an image path) mount through `mount -a` and
//!   `mount DIR` and unmount through `umount`; systemd-fstab-generator
//!   makes mount units of them; fstab `user`/`users` lines work for a user
//!   through mount(8), under the policy.
//!
//! Nothing of the host's /sbin, /usr/libexec, /etc or /run changes: the
//! overlays exist only inside the namespace.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fsvc_tests::fixtures::{FsKind, Mkfs};
use fsvc_tests::install::{installed_ns, make, shared_install, Installed, LAYOUT, SERVER};
use fsvc_tests::mount::{alive, find_server, servers_of};
use fsvc_tests::namespace::MountNs;
use fsvc_tests::privilege::require_tools;
use fsvc_tests::require_privileged;
use fsvc_tests::system::{open_excl, LoopDev, SystemLock};
use fsvc_tests::users::TestUser;
use fsvc_tests::util::{check_utab_record, poll_until, ppid, run, TempDir};

/// What each test image's one file says.
const HELLO: &str = "hello from an installed fsvc\n";
/// What fsvc's umount helper says with `-v` once the server has exited.
const HELPER_WAITED: &str = "the server finished and released the source";

fn ready(test: &str, tools: &[&str]) -> bool {
    require_privileged(test)
        && require_tools(
            test,
            &[&["make", "unshare", "nsenter", "setpriv"][..], tools].concat(),
        )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A 16 MiB ext4 image holding `hello`, with the given mkfs settings.
fn image(scratch: &TempDir, name: &str, mkfs: Mkfs) -> PathBuf {
    let tree = scratch.subdir(&format!("tree-{name}")).expect("tree");
    std::fs::write(tree.join("hello"), HELLO).expect("hello");
    let img = scratch.join(name);
    mkfs.size_mib(16).build(Some(&tree), &img).expect("mkfs");
    img
}

fn ext4() -> Mkfs {
    Mkfs::new(FsKind::Ext4)
}

#[test]
fn destdir_install_lands_where_the_readme_says_and_uninstall_removes_it() {
    let name = "destdir_install_lands_where_the_readme_says_and_uninstall_removes_it";
    if !ready(name, &["man"]) {
        return;
    }
    let scratch = TempDir::new("install-layout").expect("scratch");
    let pkg = scratch.join("pkg");
    make("install", &pkg, false).expect("make install");

    for (rel, want) in LAYOUT {
        let p = pkg.join(rel);
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
        match want {
            Installed::File(mode) => {
                assert!(m.is_file(), "{rel} is a file");
                assert_eq!(m.mode() & 0o7777, *mode, "{rel}: mode");
                assert!(m.len() > 0, "{rel} is not empty");
            }
            Installed::Link(target) => {
                assert_eq!(
                    std::fs::read_link(&p).expect("link"),
                    Path::new(target),
                    "{rel}"
                );
            }
        }
    }
    let mut everything = Vec::new();
    walk(&pkg, &pkg, &mut everything);
    let mut listed: Vec<String> = LAYOUT.iter().map(|(r, _)| r.to_string()).collect();
    listed.sort();
    assert_eq!(
        everything, listed,
        "the install makes exactly the listed files"
    );

    // The unit runs the installed server; the socket unit is as shipped.
    let unit =
        std::fs::read_to_string(pkg.join("usr/lib/systemd/system/fsvc@.service")).expect("unit");
    let exec: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(exec, [format!("ExecStart={SERVER}")], "ExecStart filled in");
    let shipped = std::fs::read(fsvc_tests::install::workspace().join("units/fsvc.socket"))
        .expect("units/fsvc.socket");
    assert_eq!(
        std::fs::read(pkg.join("usr/lib/systemd/system/fsvc.socket")).expect("socket"),
        shipped
    );

    // The man pages render; the helper prints its usage and version.
    for page in ["fsvc-mount.8", "mount.service.8", "fsvc-server.8"] {
        let out = run(std::process::Command::new("man")
            .arg("-l")
            .arg(pkg.join("usr/share/man/man8").join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80"))
        .expect("man -l");
        let shown = text(&out.stdout);
        let title = if page == "fsvc-server.8" {
            "fsvc-server"
        } else {
            "fsvc-mount"
        };
        for want in ["NAME", "SYNOPSIS", title] {
            assert!(shown.contains(want), "{page} shows {want}:\n{shown}");
        }
    }
    let helper = pkg.join("sbin/mount.service");
    let out = run(std::process::Command::new(&helper).arg("--help")).expect("--help");
    let usage = text(&out.stdout);
    for want in ["Usage:", "SOURCE", "DIR", "-o", "--unmount", "Exit status"] {
        assert!(usage.contains(want), "--help shows {want}:\n{usage}");
    }
    let out = run(std::process::Command::new(&helper).arg("--version")).expect("--version");
    assert!(
        text(&out.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{out:?}"
    );
    let out =
        run(std::process::Command::new(pkg.join("usr/libexec/fsvc/fsvc-server")).arg("--help"))
            .expect("server --help");
    assert!(text(&out.stdout).contains("fsvc-server"), "{out:?}");

    make("uninstall", &pkg, false).expect("make uninstall");
    let mut left = Vec::new();
    walk(&pkg, &pkg, &mut left);
    assert!(left.is_empty(), "uninstall left {left:?}");
}

/// Every file and symlink under `dir`, relative to `root`, sorted.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(root, &p, out),
            Ok(_) => out.push(
                p.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            ),
            Err(_) => {}
        }
    }
    out.sort();
}

/// The test's /etc layer: `fstab` (and a policy when given).
fn etc_layer(scratch: &TempDir, fstab: &str, policy: Option<&str>) -> PathBuf {
    let etc = scratch.subdir("etc").expect("etc");
    std::fs::write(etc.join("fstab"), fstab).expect("fstab");
    if let Some(p) = policy {
        std::fs::create_dir_all(etc.join("fsvc")).expect("etc/fsvc");
        std::fs::write(etc.join("fsvc/policy.toml"), p).expect("policy");
    }
    etc
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn installed_units_verify_and_socket_activation_serves() {
    let name = "installed_units_verify_and_socket_activation_serves";
    if !ready(name, &["systemd-analyze", "systemd-socket-activate"]) {
        return;
    }
    let pkg = shared_install().expect("install");
    let scratch = TempDir::new("install-units").expect("scratch");
    let etc = etc_layer(&scratch, "", None);
    let ns = installed_ns(pkg, &etc).expect("namespace");
    let units = pkg.join("usr/lib/systemd/system");

    let out = ns
        .run(
            "systemd-analyze",
            &[
                "verify".to_string(),
                units.join("fsvc.socket").display().to_string(),
                units.join("fsvc@.service").display().to_string(),
                units.join("fsvc-mountd.socket").display().to_string(),
                units.join("fsvc-mountd@.service").display().to_string(),
            ],
        )
        .expect("systemd-analyze verify on the installed units");
    let noise = text(&out.stderr);
    assert!(
        !noise.contains("fsvc"),
        "verify says nothing about the units: {noise}"
    );

    // Do what fsvc.socket says: its SOCK_SEQPACKET socket for ext4, one
    // server per connection (Accept=yes) running the service's ExecStart.
    let socket_unit = std::fs::read_to_string(units.join("fsvc.socket")).expect("socket unit");
    let listen = socket_unit
        .lines()
        .filter_map(|l| l.strip_prefix("ListenSequentialPacket="))
        .find(|p| p.ends_with("/ext4"))
        .expect("an ext4 socket");
    assert!(socket_unit.lines().any(|l| l == "Accept=yes"));
    let service = std::fs::read_to_string(units.join("fsvc@.service")).expect("service");
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    ns.run("mkdir", &["-m", "0755", "-p", "/run/fsvc"])
        .expect("the socket directory (DirectoryMode=0755)");
    let mut act = ns.command("systemd-socket-activate");
    act.args(["--seqpacket", "--accept", "-l", listen, exec])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut activator = act.spawn().expect("systemd-socket-activate");
    let sock = format!("/proc/{}/root{listen}", activator.id());
    let listening = poll_until(Duration::from_secs(30), || {
        // The socket is visible through the activator's root, in its namespace.
        std::fs::symlink_metadata(&sock).is_ok()
    });

    let img = image(&scratch, "sock.img", ext4());
    let dir = scratch.subdir("mnt").expect("mnt");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(listening, "the activator listens on {listen}");
        // A plain mount(8) call: no knob points the helper anywhere.
        let out = ns
            .output(
                ns.command("mount")
                    .args(["-t", "service.ext4", "-o", "ro"])
                    .arg(&img)
                    .arg(&dir),
            )
            .expect("mount");
        assert_ok(&out, "mount through the installed helper");
        let server = find_server(&img).expect("a server holds the image");
        assert_eq!(
            ppid(server),
            Some(activator.id() as i32),
            "the server was started by the socket, from the installed ExecStart"
        );
        let exe = std::fs::read_link(format!("/proc/{server}/exe")).expect("exe");
        // (The path as the namespace sees it: there it is the DESTDIR's file.)
        assert_eq!(exe, Path::new(SERVER), "the installed server");
        let cat = ns.run("cat", &[dir.join("hello")]).expect("read");
        assert_eq!(text(&cat.stdout), HELLO);
        assert_recorded(&ns, &dir, &[]);
        let out = ns
            .output(ns.command("umount").arg("-v").arg(&dir))
            .expect("umount");
        assert_ok(&out, "umount through the installed umount helper");
        assert!(
            text(&out.stdout).contains(HELPER_WAITED),
            "umount ran the installed helper: {out:?}"
        );
        assert!(!alive(server), "the server finished before umount returned");
        assert!(ns.utab_at(&dir).expect("utab").is_empty(), "line removed");
    }));
    let _ = activator.kill();
    let _ = activator.wait();
    drop(ns);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// The namespace's utab has fsvc's one line for the mount at `dir` (and
/// mount(8) added none of its own), with `extra` among its options.
fn assert_recorded(ns: &MountNs, dir: &Path, extra: &[&str]) {
    let m = ns.mounts_at(dir).expect("mountinfo");
    check_utab_record(m.first(), &ns.utab_at(dir).expect("utab"), extra).expect("utab record");
}

#[test]
fn fstab_lines_mount_through_mount8_and_the_generator() {
    let name = "fstab_lines_mount_through_mount8_and_the_generator";
    let generator = "/usr/lib/systemd/system-generators/systemd-fstab-generator";
    if !ready(name, &["blkid", "systemd-analyze"]) {
        return;
    }
    if !Path::new(generator).exists()
        && !fsvc_tests::privilege::skip(name, &format!("needs {generator}"))
    {
        return;
    }
    let pkg = shared_install().expect("install");
    let scratch = TempDir::new("install-fstab").expect("scratch");
    let uuid = "6f1a2b3c-4d5e-4f60-8172-93a4b5c6d7e8";
    // Labels are machine-wide once on a loop device: make this one unique.
    let label = format!("fsvc{}", std::process::id() % 100_000_000);
    let by_uuid = LoopDev::attach(&image(&scratch, "uuid.img", ext4().uuid(uuid))).expect("loop");
    let by_label =
        LoopDev::attach(&image(&scratch, "label.img", ext4().label(&label))).expect("loop");
    let file = image(&scratch, "file.img", ext4());
    let (m_uuid, m_label, m_file) = (
        scratch.subdir("m-uuid").expect("dir"),
        scratch.subdir("m-label").expect("dir"),
        scratch.subdir("m-file").expect("dir"),
    );
    let fstab = format!(
        "# fsvc test fstab\n\
         UUID={uuid} {} service.ext4 ro 0 2\n\
         LABEL={label} {} service.ext4 ro,nofail 0 2\n\
         {} {} service.ext4 ro,noauto 0 0\n",
        m_uuid.display(),
        m_label.display(),
        file.display(),
        m_file.display()
    );
    let etc = etc_layer(&scratch, &fstab, None);
    let ns = installed_ns(pkg, &etc).expect("namespace");

    let out = ns.output(ns.command("mount").arg("-a")).expect("mount -a");
    assert_ok(&out, "mount -a");
    for (dir, dev) in [(&m_uuid, by_uuid.path()), (&m_label, by_label.path())] {
        let m = ns.mounts_at(dir).expect("mountinfo");
        assert_eq!(m.len(), 1, "mount -a mounted {}: {m:?}", dir.display());
        assert_eq!(m[0].fstype, "fuse.fsvc.ext4");
        assert_eq!(Path::new(&m[0].source), dev, "mount(8) resolved the tag");
        let cat = ns.run("cat", &[dir.join("hello")]).expect("read");
        assert_eq!(text(&cat.stdout), HELLO);
    }
    assert!(
        ns.mounts_at(&m_file).expect("mountinfo").is_empty(),
        "noauto left alone by mount -a"
    );
    let out = ns
        .output(ns.command("mount").arg(&m_file))
        .expect("mount DIR");
    assert_ok(&out, "mount DIR from fstab");
    let m = ns.mounts_at(&m_file).expect("mountinfo");
    assert_eq!(
        m.first().map(|e| Path::new(&e.source)),
        Some(file.as_path())
    );
    let server = find_server(&file).expect("server");
    for dir in [&m_uuid, &m_label, &m_file] {
        assert_recorded(&ns, dir, &[]);
        let out = ns
            .output(ns.command("umount").arg("-v").arg(dir))
            .expect("umount");
        assert_ok(&out, "umount");
        assert!(
            text(&out.stdout).contains(HELPER_WAITED),
            "umount ran the installed helper: {out:?}"
        );
        assert!(ns.mounts_at(dir).expect("mountinfo").is_empty());
        assert!(ns.utab_at(dir).expect("utab").is_empty(), "line removed");
    }
    assert!(!alive(server), "umount waited for the server");
    for dev in [&by_uuid, &by_label] {
        assert!(open_excl(dev.path()).is_ok(), "released at once");
    }

    // systemd's view of the same fstab (the namespace's /etc/fstab, as at
    // boot): a mount unit per line, the auto ones required by
    // local-fs.target (started at boot), checked by systemd-fsck first
    // where the pass number asks (the installed fsck.service.ext4), verified.
    let gen = scratch.subdir("generator").expect("dir");
    ns.output(
        ns.command(generator)
            .args([&gen, &gen, &gen])
            .env("SYSTEMD_PROC_CMDLINE", ""),
    )
    .map(|out| assert_ok(&out, "systemd-fstab-generator"))
    .expect("systemd-fstab-generator");
    let unit_name = |dir: &Path| {
        let out = run(std::process::Command::new("systemd-escape")
            .args(["--path", "--suffix=mount"])
            .arg(dir))
        .expect("systemd-escape");
        text(&out.stdout).trim().to_string()
    };
    // (mountpoint, What=, Options=, required by local-fs.target, fsck'd)
    let cases = [
        (
            &m_uuid,
            format!("/dev/disk/by-uuid/{uuid}"),
            "ro",
            true,
            true,
        ),
        (
            &m_label,
            format!("/dev/disk/by-label/{label}"),
            "ro,nofail",
            false,
            true,
        ),
        (
            &m_file,
            file.display().to_string(),
            "ro,noauto",
            false,
            false,
        ),
    ];
    for (dir, what, options, required, fsck) in &cases {
        let unit = unit_name(dir);
        let body = std::fs::read_to_string(gen.join(&unit))
            .unwrap_or_else(|e| panic!("{unit} generated: {e}"));
        for want in [
            format!("What={what}"),
            format!("Where={}", dir.display()),
            "Type=service.ext4".to_string(),
            format!("Options={options}"),
        ] {
            assert!(
                body.lines().any(|l| l == want),
                "{unit} has {want}:\n{body}"
            );
        }
        assert_eq!(
            body.lines()
                .any(|l| l.starts_with("Requires=systemd-fsck@")),
            *fsck,
            "{unit}: fsck before the mount:\n{body}"
        );
        let required_by_boot = gen.join("local-fs.target.requires").join(&unit).exists();
        assert_eq!(
            required_by_boot, *required,
            "{unit} required by local-fs.target"
        );
        let out = ns
            .run(
                "systemd-analyze",
                &["verify".to_string(), gen.join(&unit).display().to_string()],
            )
            .expect("verify the generated unit");
        assert!(!text(&out.stderr).contains(&unit), "{}", text(&out.stderr));
    }
    // nofail: wanted, not required.
    assert!(gen
        .join("local-fs.target.wants")
        .join(unit_name(&m_label))
        .exists());

    // What the boot-time unit runs (`mount What Where -t Type -o Options`),
    // with What where udev's by-uuid link points.
    let dev = run(std::process::Command::new("blkid").args(["-U", uuid])).expect("blkid -U");
    let dev = text(&dev.stdout).trim().to_string();
    assert_eq!(Path::new(&dev), by_uuid.path());
    let out = ns
        .output(
            ns.command("mount")
                .arg(&dev)
                .arg(&m_uuid)
                .args(["-t", "service.ext4", "-o", "ro"]),
        )
        .expect("mount as the unit would");
    assert_ok(&out, "the mount unit's command");
    let out = ns
        .output(ns.command("umount").arg(&m_uuid))
        .expect("umount");
    assert_ok(&out, "umount");
}

#[test]
fn fstab_user_lines_follow_the_policy() {
    let name = "fstab_user_lines_follow_the_policy";
    if !ready(name, &["useradd", "userdel"]) {
        return;
    }
    let pkg = shared_install().expect("install");
    let lock = SystemLock::take().expect("system lock");
    // Users first: the namespace's /etc shows the host's passwd as it was.
    let (a, b) = (
        TestUser::create(&lock).expect("user a"),
        TestUser::create(&lock).expect("user b"),
    );
    let scratch = TempDir::new("install-user").expect("scratch");
    let home = a.dir(scratch.path(), "home-a").expect("home");
    let img = image(&scratch, "a.img", ext4());
    let img = {
        let to = home.join("a.img");
        std::fs::rename(&img, &to).expect("move");
        a.own(&to).expect("chown");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        to
    };
    let (m_user, m_users) = (
        a.dir(&home, "m-user").expect("dir"),
        a.dir(&home, "m-users").expect("dir"),
    );
    let fstab = format!(
        "{img} {} service.ext4 user,noauto,ro 0 0\n{img} {} service.ext4 users,noauto,ro 0 0\n",
        m_user.display(),
        m_users.display(),
        img = img.display()
    );
    let policy = format!(
        "[users]\nallow = true\nimage_dirs = [{:?}]\n",
        home.display().to_string()
    );
    let etc = etc_layer(&scratch, &fstab, Some(&policy));
    std::os::unix::fs::chown(etc.join("fsvc/policy.toml"), Some(0), Some(0)).expect("chown");
    let ns = installed_ns(pkg, &etc).expect("namespace");
    let helper = std::fs::metadata(pkg.join("sbin/mount.service")).expect("helper");
    assert_eq!(
        helper.mode() & 0o4000,
        0o4000,
        "SETUID=1 installs it setuid"
    );

    let as_user = |u: &TestUser<'_>, program: &str, dir: &Path| {
        ns.output(ns.command_as(u, program).arg(dir))
            .expect("run in the namespace")
    };
    // `user`: a can mount it (the policy agrees) and unmount it; b cannot
    // unmount it.
    let out = as_user(&a, "mount", &m_user);
    assert_ok(&out, "mount DIR by the user (fstab user)");
    let m = ns.mounts_at(&m_user).expect("mountinfo").remove(0);
    for opt in ["nosuid", "nodev", "noexec", "ro"] {
        assert!(m.has_option(opt), "{opt}: {m:?}");
    }
    assert!(m.has_super_option(&format!("user_id={}", a.uid)), "{m:?}");
    let cat = ns
        .output(ns.command_as(&a, "cat").arg(m_user.join("hello")))
        .expect("cat");
    assert_eq!(text(&cat.stdout), HELLO, "{cat:?}");
    // mount(8) keeps `user=NAME` in utab for a `user` line (umount(8)
    // checks it): fsvc's line carries it, and mount(8) adds none.
    assert_recorded(&ns, &m_user, &[&format!("user={}", a.name)]);
    let server = find_server(&img).expect("server");
    let out = as_user(&b, "umount", &m_user);
    assert!(!out.status.success(), "another user's umount: {out:?}");
    assert_eq!(ns.mounts_at(&m_user).expect("mountinfo").len(), 1);
    let out = as_user(&a, "umount", &m_user);
    assert_ok(&out, "umount by the user");
    assert!(ns.mounts_at(&m_user).expect("mountinfo").is_empty());
    assert!(
        ns.utab_at(&m_user).expect("utab").is_empty(),
        "line removed"
    );
    assert!(!alive(server), "umount waited for the server");

    // The policy still judges: b may mount the `user` line (fstab allows
    // any user), but the mountpoint is a's.
    let out = as_user(&b, "mount", &m_user);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        text(&out.stderr).contains("refused by policy rule mountpoint-owner"),
        "{}",
        text(&out.stderr)
    );
    assert!(ns.mounts_at(&m_user).expect("mountinfo").is_empty());

    // `users`: fstab lets anyone unmount, but umount(8) hands the job to
    // fsvc's helper, which unmounts only its caller's own mounts.
    let out = as_user(&a, "mount", &m_users);
    assert_ok(&out, "mount DIR by the user (fstab users)");
    assert_recorded(&ns, &m_users, &[]);
    let out = as_user(&b, "umount", &m_users);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        text(&out.stderr).contains("refused by policy rule own-mounts-only"),
        "{}",
        text(&out.stderr)
    );
    let out = as_user(&a, "umount", &m_users);
    assert_ok(&out, "umount by the user (fstab users)");
    assert!(servers_of(&img).is_empty(), "no server left");
    drop(ns);
}
