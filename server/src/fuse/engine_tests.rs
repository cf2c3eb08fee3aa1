//! The adapter over the real engine: an image made by `mkfs.ext4 -d`, opened
//! with `Fs::open` over a `UnixFdChannel`, mounted through FUSE by the test,
//! and compared with the kernel's own ext4 reading the same image through a
//! read-only loop mount. (The full helper-and-server path is the e2e tests'.)

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::tests::TestMount;
use super::ServeOptions;
use fsvc_ext4::io::testutil::{is_root, pattern, skip, TempDir};
use fsvc_ext4::io::{AccessGate, UnixFdChannel};
use fsvc_ext4::{Fs, OpenOptions as FsOptions};

fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr)));
    }
    Ok(o.stdout)
}

/// A source tree with every file type, xattrs, an ACL, hard links, a
/// sparse file, long and short symlinks and a directory of 300 entries.
fn make_tree(root: &Path) -> Result<(), String> {
    let w = |p: &str, d: &[u8]| std::fs::write(root.join(p), d).map_err(|e| format!("{p}: {e}"));
    std::fs::create_dir_all(root.join("dir/deeper")).map_err(|e| e.to_string())?;
    w("empty", b"")?;
    w("small", b"hello\n")?;
    w("big", &pattern(3 << 20, 5))?;
    w("dir/deeper/file", b"deep")?;
    let sparse = std::fs::File::create(root.join("sparse")).map_err(|e| e.to_string())?;
    sparse.set_len(64 << 20).map_err(|e| e.to_string())?;
    std::os::unix::fs::FileExt::write_at(&sparse, b"middle", 32 << 20)
        .map_err(|e| e.to_string())?;
    std::fs::hard_link(root.join("small"), root.join("dir/small-link"))
        .map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink("small", root.join("short-link")).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink("x".repeat(200), root.join("long-link"))
        .map_err(|e| e.to_string())?;
    for i in 0..300 {
        w(&format!("dir/entry-{i:03}"), format!("{i}").as_bytes())?;
    }
    run(Command::new("mkfifo").arg(root.join("fifo")))?;
    run(Command::new("mknod")
        .arg(root.join("null"))
        .args(["c", "1", "3"]))?;
    run(Command::new("mknod")
        .arg(root.join("blk"))
        .args(["b", "7", "300"]))?;
    run(Command::new("setfattr")
        .args(["-n", "user.color", "-v", "blue"])
        .arg(root.join("small")))?;
    run(Command::new("setfattr")
        .args(["-n", "user.long", "-v", &"v".repeat(900)])
        .arg(root.join("big")))?;
    run(Command::new("setfacl")
        .args(["-m", "u:1234:r-x"])
        .arg(root.join("dir")))?;
    run(Command::new("chown")
        .args(["1234:5678"])
        .arg(root.join("small")))?;
    run(Command::new("chmod").args(["4751"]).arg(root.join("big")))?;
    Ok(())
}

/// `ls -lR` of `root` with full timestamps, and every xattr in hex.
fn describe(root: &Path) -> String {
    let ls = run(Command::new("ls")
        .args(["-lRn", "--time-style=+%s.%N"])
        .current_dir(root)
        .arg("."))
    .unwrap();
    let attrs = run(Command::new("getfattr")
        .args(["-R", "-h", "-d", "-m", "-", "-e", "hex"])
        .current_dir(root)
        .arg("."))
    .unwrap();
    // getfattr -R walks in readdir order, which may differ (the kernel
    // returns hash order even for one-block directories): sort per file.
    let attrs = String::from_utf8_lossy(&attrs).into_owned();
    let mut blocks: Vec<&str> = attrs.split("\n\n").map(str::trim).collect();
    blocks.sort_unstable();
    format!("{}\n{}", String::from_utf8_lossy(&ls), blocks.join("\n\n"))
}

/// Every regular file's bytes and every symlink's target, by relative path.
fn contents(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    for name in entries {
        let r = rel.join(&name);
        let p = root.join(&r);
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            contents(root, &r, out);
        } else if md.file_type().is_symlink() {
            out.push((
                r,
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            ));
        } else if md.is_file() {
            out.push((r, std::fs::read(&p).unwrap()));
        }
        out.push((
            rel.join(&name).join("#ino"),
            md.ino().to_le_bytes().to_vec(),
        ));
    }
}

/// `lseek(SEEK_DATA)` and `lseek(SEEK_HOLE)` of `path` from each offset:
/// the offset found or the errno.
fn seeks(path: &Path, offsets: &[i64]) -> Vec<(i64, i32, Result<i64, i32>)> {
    let f = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    for &off in offsets {
        for whence in [nix::unistd::Whence::SeekData, nix::unistd::Whence::SeekHole] {
            let r = nix::unistd::lseek(&f, off, whence).map_err(|e| e as i32);
            out.push((off, whence as i32, r));
        }
    }
    out
}

struct LoopMount(TempDir);

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount(&self.0 .0);
    }
}

#[test]
fn engine_image_reads_like_the_kernel() {
    if !is_root() {
        skip("mkfs -d with devices and loop mounts need root");
        return;
    }
    let work = TempDir::new_in("/var/tmp", "engine").unwrap();
    let tree = work.0.join("tree");
    std::fs::create_dir(&tree).unwrap();
    if let Err(e) = make_tree(&tree) {
        skip(&format!("cannot build the source tree: {e}"));
        return;
    }
    for (label, mkfs_args) in [
        ("ext4", vec!["-t", "ext4", "-b", "4096"]),
        ("ext4-1k", vec!["-t", "ext4", "-b", "1024"]),
        ("ext2", vec!["-t", "ext2"]),
    ] {
        let img = work.0.join(format!("{label}.img"));
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "root_owner=0:0"])
            .args(&mkfs_args)
            .arg("-d")
            .arg(&tree)
            .arg(&img)
            .arg("128M"))
        .unwrap();

        let kdir = TempDir::new("kernel").unwrap();
        run(Command::new("mount")
            .args(["-o", "ro,loop"])
            .arg(&img)
            .arg(&kdir.0))
        .unwrap();
        let kernel = LoopMount(kdir);

        let fd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&img)
            .unwrap();
        let io = Arc::new(UnixFdChannel::new(fd.into(), true, AccessGate::open()).unwrap());
        let fs = Fs::open(
            io,
            &FsOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{label}: Fs::open: {e}"));
        let Some(m) = TestMount::new(Arc::new(fs), true, &ServeOptions::default()) else {
            return;
        };

        let want = describe(&kernel.0 .0);
        let got = describe(&m.dir.0);
        if want != got {
            let dump = std::env::temp_dir().join(format!("iofuse-{label}-{}", std::process::id()));
            let _ = std::fs::write(dump.with_extension("kernel"), &want);
            let _ = std::fs::write(dump.with_extension("fsvc"), &got);
            panic!(
                "{label}: trees differ; see {}.{{kernel,fsvc}}",
                dump.display()
            );
        }
        const M: i64 = 1 << 20;
        let offsets = [
            0,
            1,
            4095,
            4096,
            32 * M - 1,
            32 * M,
            32 * M + 6,
            32 * M + 4096,
            48 * M,
            64 * M - 1,
            64 * M,
            100 * M,
        ];
        for f in ["sparse", "big", "small", "empty"] {
            assert_eq!(
                seeks(&kernel.0 .0.join(f), &offsets),
                seeks(&m.dir.0.join(f), &offsets),
                "{label}: SEEK_DATA/SEEK_HOLE of {f}"
            );
        }
        let (mut kc, mut fc) = (Vec::new(), Vec::new());
        contents(&kernel.0 .0, Path::new(""), &mut kc);
        contents(&m.dir.0, Path::new(""), &mut fc);
        assert_eq!(kc.len(), fc.len(), "{label}");
        for ((kp, kd), (fp, fd)) in kc.iter().zip(&fc) {
            assert_eq!(kp, fp, "{label}");
            assert!(kd == fd, "{label}: {} differs", kp.display());
        }
        m.finish();
    }
}
