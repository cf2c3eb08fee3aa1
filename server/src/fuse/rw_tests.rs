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
