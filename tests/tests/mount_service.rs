//! Issue 11, the mount service: `fsvc-mountd` (the helper binary under that
//! name) run by `systemd-socket-activate --seqpacket --accept`, as
//! `fsvc-mountd.socket` runs it, answers a `MountImage` request with a
//! detached mount fd. A program standing in for a container runtime
//! (`fsvc-runtime-probe`) asks with a path and with an fd it opened,
//! attaches what it gets in a namespace of its own and reads the tree;
//! the caller's identity is the socket's, and a non-root caller gets a
//! mount only where the policy allows it, every refusal naming its rule.

use std::os::unix::fs::{symlink, PermissionsExt};

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fsvc_tests::check::check_varied_fixture;
use fsvc_tests::fixtures::{
    debugfs, fsck_clean, pseudo_random, varied_image, FsKind, Mkfs, TreeOptions,
};
use fsvc_tests::mount::KernelMount;
use fsvc_tests::mount::{kernel_records, servers_of};
use fsvc_tests::oracle::{self, Compare};
use fsvc_tests::privilege::require_tools;
use fsvc_tests::require_privileged;
use fsvc_tests::runtime_probe::{assert_released, Probe};
use fsvc_tests::system::{image_lock_free, SystemLock};
use fsvc_tests::users::{PolicyFile, TestUser};
use fsvc_tests::util::{bin, mount_table, poll_until, read_lossy, TempDir};

/// What the user image's one file says.
const HELLO: &str = "hello from a delegated mount";
/// The server's log line for a read-write mount it made read-only because
/// the engine cannot write yet (server/src/mode.rs, `ENGINE_WRITES`).
const ENGINE_CANNOT_WRITE: &str = "mode: read-only (the engine cannot write yet)";

/// Whether the probe's mount came up read-write; when it did not, the
/// server must have said that the engine cannot write yet (any other
/// reason fails), and the step is reported as pending.
fn writable(p: &Probe, svc: &Service, step: &str) -> bool {
    if !p.mount_entry().has_option("ro") {
        return true;
    }
    let log = read_lossy(&svc.log);
    assert!(
        log.contains(ENGINE_CANNOT_WRITE),
        "a read-write request came up read-only, and not because the engine cannot write yet\n{}",
        svc.diagnostics()
    );
    eprintln!("NOTE: {step} waits for the write engine (the server says: {ENGINE_CANNOT_WRITE})");
    false
}

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
        let mut p = Probe::ask_service(
            &svc.socket,
            how,
            &img,
            opts,
            "attach",
            &dir,
            None,
            None,
            &svc.log,
        );
        assert_eq!(p.line(), "attached", "{how} {opts}\n{}", svc.diagnostics());
        let m = p.mount_entry();
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
        let mut p = Probe::ask_service(
            &svc.socket,
            how,
            &img,
            "ro",
            "drop",
            &dir,
            ids,
            None,
            &svc.log,
        );
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
            None,
            &svc.log,
        );
        assert_eq!(p.line(), "attached", "{how}\n{}", svc.diagnostics());
        assert_eq!(p.ask("cat hello"), format!("data {HELLO}"));
        let m = p.mount_entry();
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

/// An image whose files are root's except `theirs` (uid 1000, gid 1000).
fn owned_image(scratch: &TempDir) -> PathBuf {
    let tree = scratch.subdir("idmap-tree").expect("tree");
    std::fs::write(tree.join("hello"), format!("{HELLO}\n")).expect("hello");
    std::fs::write(tree.join("theirs"), "1000's\n").expect("theirs");
    std::os::unix::fs::chown(tree.join("theirs"), Some(1000), Some(1000)).expect("chown");
    let img = scratch.join("idmap.ext4");
    Mkfs::new(FsKind::Ext4)
        .size_mib(16)
        .build(Some(&tree), &img)
        .expect("mkfs");
    img
}

#[test]
fn idmapped_into_the_callers_user_namespace_only() {
    if !ready("idmapped_into_the_callers_user_namespace_only") {
        return;
    }
    let lock = SystemLock::take().expect("system lock");
    let scratch = TempDir::new("mountd-idmap").expect("scratch");
    let img = owned_image(&scratch);
    let svc = Service::start(&scratch);
    // The probe, as root, asking for `img` idmapped into `userns`.
    let idmapped = |how: &str, opts: &str, name: &str, userns: &str| {
        let dir = scratch.subdir(name).expect("dir");
        Probe::ask_service(
            &svc.socket,
            how,
            &img,
            opts,
            "attach-idmap",
            &dir,
            None,
            Some(userns),
            &svc.log,
        )
    };

    // Root's own user namespace with maps 0 -> 100000 (65536 ids).
    let mut p = idmapped("path", "ro", "mnt-idmap", "own");
    assert_eq!(p.line(), "attached", "{}", svc.diagnostics());
    let m = p.mount_entry();
    assert!(m.has_option("idmapped"), "an idmapped mount: {m:?}");
    // Inside the namespace the image's owners are what the image says ...
    assert_eq!(p.ask("ns-stat hello"), "owner 0 0");
    assert_eq!(p.ask("ns-stat theirs"), "owner 1000 1000");
    // ... and seen from outside, shifted by the map.
    assert_eq!(p.ask("stat hello"), "owner 100000 100000");
    assert_eq!(p.ask("stat theirs"), "owner 101000 101000");
    let canon = std::fs::canonicalize(&img).expect("canonical");
    let servers = servers_of(&canon);
    assert!(p.finish().success());
    assert_released(&img, &servers, &svc.diagnostics());

    // A namespace someone else owns is refused, naming the rule.
    let user = TestUser::create(&lock).expect("user");
    let mut holder = Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .args([
            "--clear-groups",
            "--",
            "unshare",
            "--user",
            "--",
            "sleep",
            "600",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("a user's namespace");
    let ns = format!("/proc/{}/ns/user", holder.id());
    let ours = std::fs::read_link("/proc/self/ns/user").expect("our userns");
    assert!(
        poll_until(Duration::from_secs(30), || std::fs::read_link(&ns)
            .is_ok_and(|n| n != ours)),
        "the holder entered its namespace"
    );
    let mut p = idmapped("path", "ro", "mnt-theirs", &ns);
    let said = p.line();
    assert!(
        said.starts_with(&format!("refused {} ", libc::EPERM))
            && said.contains("refused by policy rule userns-owner")
            && said.contains(&format!("uid {}", user.uid)),
        "{said}\n{}",
        svc.diagnostics()
    );
    assert!(p.finish().success());
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(image_lock_free(&img).expect("flock"), "nothing was mounted");

    // Read-write: a file made as the namespace's uid 0 is uid 0 on disk.
    let mut p = idmapped("fd", "-", "mnt-idmap-rw", "own");
    assert_eq!(p.line(), "attached", "{}", svc.diagnostics());
    let servers = servers_of(&canon);
    if writable(&p, &svc, "creating a file through the idmapped mount") {
        assert_eq!(p.ask("ns-create made"), "owner 0 0");
        assert_eq!(p.ask("stat made"), "owner 100000 100000");
        assert!(p.finish().success());
        assert_released(&img, &servers, &svc.diagnostics());
        fsck_clean(&img).expect("e2fsck -fn after the idmapped mount");
        let st = debugfs(&img, "stat /made").expect("debugfs");
        assert!(
            st.contains("User:     0") && st.contains("Group:     0"),
            "the file is root's on disk: {st}"
        );
    } else {
        assert_eq!(p.ask("ns-create made"), format!("error {}", libc::EROFS));
        assert!(p.finish().success());
        assert_released(&img, &servers, &svc.diagnostics());
    }
}

#[test]
fn read_write_through_a_delegated_mount() {
    if !ready("read_write_through_a_delegated_mount") {
        return;
    }
    let scratch = TempDir::new("mountd-rw").expect("scratch");
    let img = varied_image(
        &scratch,
        &Mkfs::new(FsKind::Ext4).size_mib(64),
        &TreeOptions::default(),
    )
    .expect("image");
    let mut expected = kernel_records(&img, &scratch).expect("kernel records");
    let svc = Service::start(&scratch);
    let dir = scratch.subdir("mnt-rw").expect("dir");
    let mut p = Probe::ask_service(
        &svc.socket,
        "fd",
        &img,
        "-",
        "attach",
        &dir,
        None,
        None,
        &svc.log,
    );
    assert_eq!(p.line(), "attached", "{}", svc.diagnostics());
    let canon = std::fs::canonicalize(&img).expect("canonical");
    let servers = servers_of(&canon);
    let root = p.attached_root();
    let mut written = Vec::new();
    if writable(
        &p,
        &svc,
        "the read-write workload through a delegated mount",
    ) {
        // A workload: a directory of files of several sizes, fsync'd.
        std::fs::create_dir(root.join("work")).expect("mkdir");
        for (i, len) in [0usize, 1, 4095, 4096, 65_537, 3 << 20]
            .into_iter()
            .enumerate()
        {
            let name = format!("work/f{i}");
            let data = pseudo_random(i as u64 + 7, len);
            let mut f = std::fs::File::create(root.join(&name)).expect("create");
            std::io::Write::write_all(&mut f, &data).expect("write");
            f.sync_all().expect("fsync");
            let sum: [u8; 32] = sha2::Sha256::digest(&data).into();
            assert_eq!(
                oracle::sha256_file(&root.join(&name)).expect("read through fsvc"),
                sum,
                "{name} reads back through the mount"
            );
            written.push((name, sum));
        }
    }
    assert!(p.finish().success());
    assert_released(&img, &servers, &svc.diagnostics());
    fsck_clean(&img).expect("e2fsck -fn after the last reference went");
    // The kernel reads what was written, and everything else as before.
    let kdir = scratch.subdir("kernel-after").expect("dir");
    let k = KernelMount::ro(&img, &kdir).expect("kernel mount");
    for (name, sum) in &written {
        assert_eq!(
            &oracle::sha256_file(&k.path().join(name)).expect("read back"),
            sum,
            "{name} reads back through the kernel"
        );
    }
    let mut actual = oracle::walk(k.path()).expect("walk");
    k.unmount().expect("kernel umount");
    actual.retain(|r| !r.path.starts_with(b"work"));
    expected.retain(|r| !r.path.starts_with(b"work"));
    // The root directory changed (a new entry) when something was written.
    if !written.is_empty() {
        actual.retain(|r| !r.path.is_empty());
        expected.retain(|r| !r.path.is_empty());
    }
    oracle::assert_same(&expected, &actual, Compare::EXACT, "kernel read-back");
}
