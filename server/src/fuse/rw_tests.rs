//! The adapter over the real engine on a read-write mount: an image made by
//! mkfs in memory (`fsvc_ext4::testfs`), opened read-write, served through
//! a FUSE mount the test makes, changed through the kernel; then the
//! engine's end of mount, `e2fsck -fn`, and the kernel's own ext4 reading
//! the image back (a read-only loop mount).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::tests::TestMount;
use super::ServeOptions;
use crate::mode::MountMode;
use crate::service::MountFlags;
use fsvc_ext4::io::testutil::{is_root, skip, TempDir};
use fsvc_ext4::testfs::Image;
use fsvc_ext4::Fs;

/// A read-write FUSE mount of a real engine filesystem.
pub(crate) struct RwMount {
    pub(crate) image: Image,
    pub(crate) fs: Arc<Fs>,
    pub(crate) mount: TestMount,
}

impl RwMount {
    /// mkfs (`args`, `size`; `-d TREE` among the args to fill it) and mount
    /// read-write with `flags` and a commit interval of `commit`.
    pub(crate) fn new(
        args: &[&str],
        size: &str,
        flags: MountFlags,
        commit: Option<Duration>,
    ) -> Option<RwMount> {
        if !is_root() {
            skip("mounting FUSE needs root");
            return None;
        }
        let image = Image::mkfs(args, size)?;
        let fs = Arc::new(image.open_rw());
        let opts = ServeOptions {
            mode: MountMode::ReadWrite,
            flags,
            commit,
            ..ServeOptions::default()
        };
        let mount = TestMount::new(fs.clone(), false, &opts)?;
        Some(RwMount { image, fs, mount })
    }

    pub(crate) fn path(&self, rel: &str) -> std::path::PathBuf {
        self.mount.path(rel)
    }

    /// Unmounts, runs the engine's end of mount, and checks the image with
    /// `e2fsck -fn`; returns the image for more checks.
    pub(crate) fn finish(self) -> Image {
        self.mount.finish();
        self.fs.unmount().expect("Fs::unmount");
        self.image.fsck_clean();
        self.image
    }
}

/// The kernel's ext4 mounted read-only on a copy of `image`'s bytes.
pub(crate) struct KernelView {
    pub(crate) dir: TempDir,
    _file: TempDir,
}

impl KernelView {
    pub(crate) fn new(image: &Image) -> KernelView {
        let file = TempDir::new("rw-kernel-img").unwrap();
        let img = file.0.join("image");
        std::fs::write(&img, image.bytes()).unwrap();
        let dir = TempDir::new("rw-kernel").unwrap();
        let out = Command::new("mount")
            .args(["-t", "ext4", "-o", "ro,loop,noload"])
            .arg(&img)
            .arg(&dir.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kernel mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        KernelView { dir, _file: file }
    }

    pub(crate) fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.0.join(rel)
    }
}

impl Drop for KernelView {
    fn drop(&mut self) {
        // umount(8) detaches the loop device it set up.
        let _ = Command::new("umount").arg(&self.dir.0).status();
    }
}

fn tree() -> Option<TempDir> {
    let t = TempDir::new("rw-tree").ok()?;
    std::fs::write(t.0.join("hello"), b"hello\n").ok()?;
    std::fs::create_dir(t.0.join("dir")).ok()?;
    std::fs::write(t.0.join("dir/inner"), vec![7u8; 50_000]).ok()?;
    Some(t)
}

fn d_arg(t: &Path) -> String {
    t.display().to_string()
}

#[test]
fn a_read_write_mount_serves_reads_syncs_and_ends_clean() {
    let Some(t) = tree() else { return };
    let d = d_arg(&t.0);
    let Some(m) = RwMount::new(
        &["-t", "ext4", "-d", &d],
        "32M",
        MountFlags::default(),
        Some(Duration::from_millis(100)),
    ) else {
        return;
    };
    // Mounted read-write: the engine marked the filesystem in use.
    assert_eq!(m.fs.super_fields().state & 1, 0, "still marked clean");
    assert_eq!(std::fs::read(m.path("hello")).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::read(m.path("dir/inner")).unwrap(),
        vec![7u8; 50_000]
    );
    let listed = std::fs::read_dir(m.path("dir")).unwrap().count();
    assert_eq!(listed, 1);
    // fsync of a read-write handle reaches the engine's sync.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("hello"))
        .unwrap();
    f.sync_all().unwrap();
    drop(f);
    let image = m.finish();
    // Unmounted: marked clean again, and the kernel reads the same tree.
    let k = KernelView::new(&image);
    assert_eq!(std::fs::read(k.path("hello")).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::read(k.path("dir/inner")).unwrap(),
        vec![7u8; 50_000]
    );
}

/// `lsattr -d` of `path`: the flags column.
fn lsattr(path: &Path) -> String {
    let out = Command::new("lsattr").arg("-d").arg(path).output().unwrap();
    assert!(out.status.success(), "lsattr {}: {out:?}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn attribute_changes_through_the_kernel_read_back_in_the_kernels_ext4() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(t) = tree() else { return };
    let d = d_arg(&t.0);
    let geometries: [&[&str]; 3] = [
        &["-t", "ext4", "-d", &d],
        &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum", "-d", &d],
        &["-t", "ext2", "-I", "128", "-d", &d],
    ];
    for args in geometries {
        let Some(m) = RwMount::new(args, "32M", MountFlags::default(), None) else {
            return;
        };
        let hello = m.path("hello");
        std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o4751)).unwrap();
        std::os::unix::fs::chown(&hello, Some(1234), Some(5678)).unwrap();
        // chown cleared setuid, as the kernel's ext4 does.
        let md = std::fs::metadata(&hello).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o751, 1234, 5678),
            "{args:?}"
        );
        // utimensat with explicit times (nanoseconds where the inode keeps them).
        let times = [
            nix::sys::time::TimeSpec::new(1_000_000_000, 111),
            nix::sys::time::TimeSpec::new(1_500_000_000, 222_333_444),
        ];
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &m.path("dir"),
            &times[0],
            &times[1],
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        let dmd = std::fs::metadata(m.path("dir")).unwrap();
        assert_eq!(dmd.mtime(), 1_500_000_000, "{args:?}");
        // chattr +d (nodump) and lsattr through the ioctls.
        let out = Command::new("chattr")
            .arg("+d")
            .arg(&hello)
            .output()
            .unwrap();
        assert!(out.status.success(), "chattr {args:?}: {out:?}");
        assert!(lsattr(&hello).contains('d'), "{args:?}: {}", lsattr(&hello));
        let want_mtime_ns = dmd.mtime_nsec();
        let image = m.finish();
        let k = KernelView::new(&image);
        let kmd = std::fs::metadata(k.path("hello")).unwrap();
        assert_eq!(
            (kmd.mode() & 0o7777, kmd.uid(), kmd.gid()),
            (0o751, 1234, 5678),
            "{args:?}"
        );
        assert!(lsattr(&k.path("hello")).contains('d'), "{args:?}");
        let kd = std::fs::metadata(k.path("dir")).unwrap();
        assert_eq!(
            (kd.mtime(), kd.mtime_nsec(), kd.atime()),
            (1_500_000_000, want_mtime_ns, 1_000_000_000),
            "{args:?}"
        );
    }
}

#[test]
fn a_read_that_reaches_the_server_updates_atime_before_it_returns() {
    use std::os::unix::fs::MetadataExt;
    let Some(t) = tree() else { return };
    let d = d_arg(&t.0);
    let flags = MountFlags {
        atime: crate::service::AtimeMode::Strict,
        ..MountFlags::default()
    };
    let Some(m) = RwMount::new(&["-t", "ext4", "-d", &d], "32M", flags, None) else {
        return;
    };
    let before = std::fs::metadata(m.path("dir/inner")).unwrap().atime();
    // Make the atime old first, so that any atime mode must update it.
    let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
    let omit = nix::sys::time::TimeSpec::UTIME_OMIT;
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &m.path("dir/inner"),
        &old,
        &omit,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(m.path("dir/inner")).unwrap().atime(),
        1_000_000_000
    );
    // A first read reaches the server (nothing is in the page cache).
    assert_eq!(std::fs::read(m.path("dir/inner")).unwrap().len(), 50_000);
    // The kernel was told: a fresh stat shows the new atime.
    let after = std::fs::metadata(m.path("dir/inner")).unwrap().atime();
    assert!(
        after >= before,
        "atime {after} after the read, {before} before"
    );
    let image = m.finish();
    let k = KernelView::new(&image);
    assert_eq!(
        std::fs::metadata(k.path("dir/inner")).unwrap().atime(),
        after
    );
}

/// `getfattr -d -m - -e hex` of `path` (every attribute, ACLs included).
fn getfattr(path: &Path) -> String {
    let out = Command::new("getfattr")
        .args(["-h", "-d", "-m", "-", "-e", "hex"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "getfattr {}: {out:?}", path.display());
    // The first line names the file, which differs between the mounts.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn xattrs_and_acls_set_through_the_kernel_read_back_in_the_kernels_ext4() {
    let Some(t) = tree() else { return };
    let d = d_arg(&t.0);
    let geometries: [&[&str]; 2] = [
        &["-t", "ext4", "-d", &d],
        &["-t", "ext4", "-b", "1024", "-I", "128", "-d", &d],
    ];
    for args in geometries {
        let Some(m) = RwMount::new(args, "32M", MountFlags::default(), None) else {
            return;
        };
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?} {args:?}: {out:?}");
        };
        let hello = m.path("hello");
        run(Command::new("setfattr")
            .args(["-n", "user.small", "-v", "1"])
            .arg(&hello));
        // Past the in-inode area: the xattr block (these small images
        // have 1 KiB blocks, as mke2fs makes filesystems under 512 MiB).
        let big = "v".repeat(700);
        run(Command::new("setfattr")
            .args(["-n", "user.big", "-v", &big])
            .arg(&hello));
        run(Command::new("setfattr")
            .args(["-n", "user.gone", "-v", "x"])
            .arg(&hello));
        run(Command::new("setfattr")
            .args(["-x", "user.gone"])
            .arg(&hello));
        run(Command::new("setfacl")
            .args(["-m", "u:1234:rw-"])
            .arg(&hello));
        run(Command::new("setfacl")
            .args(["-d", "-m", "g:77:r-x"])
            .arg(m.path("dir")));
        let served = (getfattr(&hello), getfattr(&m.path("dir")));
        assert!(
            served.0.contains("user.big") && !served.0.contains("user.gone"),
            "{served:?}"
        );
        let image = m.finish();
        let k = KernelView::new(&image);
        assert_eq!(getfattr(&k.path("hello")), served.0, "{args:?}");
        assert_eq!(getfattr(&k.path("dir")), served.1, "{args:?}");
    }
}
