//! Issue 11, the mount service: `fsvc-mountd` (the helper binary under that
//! name) run by `systemd-socket-activate --seqpacket --accept`, as
//! `fsvc-mountd.socket` runs it, answers a `MountImage` request with a
//! detached mount fd. A program standing in for a container runtime
//! (`fsvc-runtime-probe`) asks with a path and with an fd it opened,
//! attaches what it gets in a namespace of its own and reads the tree;
//! the caller's identity is the socket's, and a non-root caller gets a
//! mount only where the policy allows it, every refusal naming its rule.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fsvc_tests::check::check_varied_fixture;
use fsvc_tests::fixtures::{varied_image, FsKind, Mkfs, TreeOptions};
use fsvc_tests::mount::{alive, kernel_records, servers_of};
use fsvc_tests::oracle::{self, Compare};
use fsvc_tests::privilege::require_tools;
use fsvc_tests::require_privileged;
use fsvc_tests::runtime_probe::Probe;
use fsvc_tests::system::{image_lock_free, SystemLock};
use fsvc_tests::users::{PolicyFile, TestUser};
use fsvc_tests::util::{bin, mount_table, mount_table_of, poll_until, read_lossy, TempDir};

/// How long a server may take to finish after its last reference went.
const EXIT_LIMIT: Duration = Duration::from_secs(60);
/// What the user image's one file says.
const HELLO: &str = "hello from a delegated mount";

/// `systemd-socket-activate` serving `fsvc-mountd` on a socket anyone may
/// connect to (as `fsvc-mountd.socket` makes it); killed on drop.
struct Service {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    err: PathBuf,
}

impl Service {
    fn start(scratch: &TempDir) -> Service {
        let dir = scratch.subdir("service").expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // The helper binary under the service's name (it chooses its form by
        // argv[0]); the server is found beside the real file.
        let mountd = dir.join("fsvc-mountd");
        symlink(bin("fsvc-mount"), &mountd).expect("symlink");
        let socket = dir.join("mountd");
        let log = scratch.join("service-servers.log");
        let no_sockets = scratch.subdir("no-sockets").expect("dir");
        let err = scratch.join("activator.err");
        let child = Command::new("systemd-socket-activate")
            .args(["--seqpacket", "--accept", "-l"])
            .arg(&socket)
            .arg("-E")
            .arg(format!("FSVC_LOG={}", log.display()))
            .arg("-E")
            .arg(format!("FSVC_SOCKET_DIR={}", no_sockets.display()))
            .arg(&mountd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("start systemd-socket-activate");
        let s = Service {
            child,
            socket,
            log,
            err,
        };
        assert!(
            poll_until(Duration::from_secs(30), || s.socket.exists()),
            "the activator never made {}: {}",
            s.socket.display(),
            read_lossy(&s.err)
        );
        std::fs::set_permissions(&s.socket, std::fs::Permissions::from_mode(0o666))
            .expect("chmod socket");
        s
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- activator ---\n{}\n--- servers ---\n{}",
            read_lossy(&self.err),
            read_lossy(&self.log)
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready(test: &str) -> bool {
    require_privileged(test)
        && require_tools(test, &["systemd-socket-activate", "setpriv", "useradd"])
}

/// Every server of `image` has exited and the image's lock is free.
fn assert_released(image: &Path, servers: &[i32], context: &str) {
    assert!(
        poll_until(EXIT_LIMIT, || servers.iter().all(|p| !alive(*p))),
        "the server still runs after its last reference went\n{context}"
    );
    assert!(
        poll_until(EXIT_LIMIT, || image_lock_free(image).unwrap_or(false)),
        "the image is still locked after the server exited\n{context}"
    );
}

/// The mount the probe attached, from its mountinfo.
fn probe_mount(p: &Probe) -> fsvc_tests::util::MountEntry {
    let ns = mount_table_of(Path::new(&format!("/proc/{}/mountinfo", p.pid()))).expect("mountinfo");
    let here: Vec<_> = ns.into_iter().filter(|m| m.mountpoint == p.dir).collect();
    assert_eq!(here.len(), 1, "one mount on the probe's directory");
    here.into_iter().next().expect("one")
}

#[test]
fn the_service_mounts_a_path_and_an_fd_for_root() {
    if !ready("the_service_mounts_a_path_and_an_fd_for_root") {
        return;
    }
    let scratch = TempDir::new("mountd").expect("scratch");
    let img = varied_image(
        &scratch,
        &Mkfs::new(FsKind::Ext4).size_mib(64),
        &TreeOptions::default(),
    )
    .expect("image");
    let expected = kernel_records(&img, &scratch).expect("kernel records");
    check_varied_fixture(&expected, true).expect("fixture");
    let svc = Service::start(&scratch);
    let canon = std::fs::canonicalize(&img).expect("canonical");

    for (how, opts) in [("path", "ro"), ("fd", "ro"), ("fd", "-")] {
        let dir = scratch.subdir(&format!("mnt-{how}-{opts}")).expect("dir");
        let mut p =
            Probe::ask_service(&svc.socket, how, &img, opts, "attach", &dir, None, &svc.log);
        assert_eq!(p.line(), "attached", "{how} {opts}\n{}", svc.diagnostics());
        let m = probe_mount(&p);
        assert_eq!(m.fstype, "fuse.fsvc.ext4");
        assert_eq!(Path::new(&m.source), canon, "{how}: the file's own name");
        if opts == "ro" {
            assert!(m.has_option("ro"), "{m:?}");
        }
        let seen = oracle::walk(&p.attached_root()).expect("walk");
        oracle::assert_same(&expected, &seen, Compare::EXACT, &svc.diagnostics());
        assert!(
            mount_table()
                .expect("mountinfo")
                .iter()
                .all(|e| e.source != m.source),
            "the host never sees it"
        );
        let servers = servers_of(&canon);
        assert_eq!(servers.len(), 1, "{how}: one server");
        assert!(p.finish().success());
        assert_released(&img, &servers, &svc.diagnostics());
    }
}

/// A user's image (mode 0644, theirs) in a directory of theirs.
fn user_image(user: &TestUser<'_>, dir: &Path, scratch: &TempDir) -> PathBuf {
    let tree = scratch.subdir("user-tree").expect("tree");
    std::fs::write(tree.join("hello"), format!("{HELLO}\n")).expect("hello");
    let img = dir.join("user.ext4");
    Mkfs::new(FsKind::Ext4)
        .size_mib(16)
        .build(Some(&tree), &img)
        .expect("mkfs");
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    user.own(&img).expect("chown");
    img
}

#[test]
fn users_get_detached_mounts_only_where_the_policy_allows() {
    if !ready("users_get_detached_mounts_only_where_the_policy_allows") {
        return;
    }
    let lock = SystemLock::take().expect("system lock");
    let policy = PolicyFile::take(&lock).expect("policy");
    let user = TestUser::create(&lock).expect("user");
    let scratch = TempDir::new("mountd-user").expect("scratch");
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let home = user.dir(scratch.path(), "home").expect("home");
    let img = user_image(&user, &home, &scratch);
    let svc = Service::start(&scratch);
    let ids = Some((user.uid, user.gid));
    let images = |extra: &str| {
        format!(
            "[users]\nallow = true\nimage_dirs = [{:?}]\n{extra}\n",
            home.display().to_string()
        )
    };

    // Each refusal names its rule, and nothing is mounted.
    let other_dir = scratch.subdir("elsewhere").expect("dir");
    let cases: Vec<(String, &str, &str)> = vec![
        (String::new(), "path", "no-policy"),
        ("[users]\nallow = false\n".into(), "path", "users.allow"),
        (images(""), "path", "users.detached"),
        (
            format!(
                "[users]\nallow = true\ndetached = true\nimage_dirs = [{:?}]\n",
                other_dir.display().to_string()
            ),
            "fd",
            "users.image_dirs",
        ),
    ];
    for (i, (text, how, rule)) in cases.iter().enumerate() {
        if text.is_empty() {
            policy.remove().expect("no policy");
        } else {
            policy.set(text).expect("policy");
        }
        let dir = user.dir(scratch.path(), &format!("mnt-{i}")).expect("dir");
        let mut p = Probe::ask_service(&svc.socket, how, &img, "ro", "drop", &dir, ids, &svc.log);
        let said = p.line();
        assert!(
            said.starts_with(&format!("refused {} ", libc::EPERM))
                && said.contains(&format!("refused by policy rule {rule}")),
            "case {i} ({rule}): {said}\n{}",
            svc.diagnostics()
        );
        assert!(p.finish().success());
        assert!(image_lock_free(&img).expect("flock"), "case {i}: released");
    }

    // Allowed: the user attaches it in namespaces of their own and reads it.
    policy.set(&images("detached = true")).expect("policy");
    for how in ["path", "fd"] {
        let dir = user
            .dir(scratch.path(), &format!("mnt-ok-{how}"))
            .expect("dir");
        let mut p = Probe::ask_service(
            &svc.socket,
            how,
            &img,
            "ro",
            "attach-user",
            &dir,
            ids,
            &svc.log,
        );
        assert_eq!(p.line(), "attached", "{how}\n{}", svc.diagnostics());
        assert_eq!(p.ask("cat hello"), format!("data {HELLO}"));
        let m = probe_mount(&p);
        assert!(
            m.has_option("nosuid") && m.has_option("nodev"),
            "a user's mount is nosuid,nodev: {m:?}"
        );
        assert!(
            m.has_super_option(&format!("user_id={}", user.uid)),
            "made for the caller the socket named: {m:?}"
        );
        let canon = std::fs::canonicalize(&img).expect("canonical");
        let servers = servers_of(&canon);
        assert!(p.finish().success());
        assert_released(&img, &servers, &svc.diagnostics());
    }
    drop(policy);
}
