//! Shared helpers of the engine-core integration tests: scratch
//! directories, the standard source tree, mkfs and debugfs wrappers.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use fsvc_ext4::io::mem::MemChannel;
use fsvc_ext4::{Error, Fs, InodeNo, OpenOptions, Timestamp};

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "core-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Regular files of the standard tree: (path, expected contents).
pub fn standard_files(with_big: bool) -> Vec<(&'static str, Vec<u8>)> {
    let mut sparse = vec![0u8; 3 << 20];
    sparse[1 << 20..(1 << 20) + 10_000].copy_from_slice(&noise(7, 10_000));
    let mut fragmented = vec![0u8; 2 << 20];
    // 12 data islands separated by holes: more extents than the inode root holds.
    for i in 0..12 {
        let at = i * (160 << 10);
        fragmented[at..at + 5000].copy_from_slice(&noise(100 + i as u64, 5000));
    }
    let mut v = vec![
        ("small", b"hello world\n".to_vec()),
        ("empty", Vec::new()),
        ("multi", noise(1, 300_000)),
        ("sparse", sparse),
        ("fragmented", fragmented),
        ("dir/sub/nested", noise(3, 5000)),
        ("owned", b"owned by someone else".to_vec()),
    ];
    if with_big {
        // Checked specially (sparse 5 GiB).
        v.push(("big", Vec::new()));
    }
    v
}

pub const BIG_SIZE: u64 = 5 << 30;
pub const BIG_TAIL: &[u8] = b"the end of a file past 4 GiB\n";

/// Builds the standard source tree under `root`.
pub fn make_tree(root: &Path, with_big: bool) {
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    for (p, data) in standard_files(false) {
        let path = root.join(p);
        if p == "sparse" || p == "fragmented" {
            // Write only the non-zero parts so the file is really sparse.
            let f = std::fs::File::create(&path).unwrap();
            f.set_len(data.len() as u64).unwrap();
            use std::os::unix::fs::FileExt;
            let mut i = 0;
            while i < data.len() {
                let end = (i + 4096).min(data.len());
                if data[i..end].iter().any(|&b| b != 0) {
                    f.write_all_at(&data[i..end], i as u64).unwrap();
                }
                i = end;
            }
        } else {
            std::fs::write(&path, &data).unwrap();
        }
    }
    if with_big {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(root.join("big")).unwrap();
        f.set_len(BIG_SIZE).unwrap();
        f.write_all_at(BIG_TAIL, BIG_SIZE - BIG_TAIL.len() as u64)
            .unwrap();
        f.write_all_at(b"start", 0).unwrap();
    }
    std::os::unix::fs::symlink("small", root.join("fastlink")).unwrap();
    std::os::unix::fs::symlink("x".repeat(200), root.join("slowlink")).unwrap();
    std::fs::set_permissions(root.join("owned"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    let is_root = nix::unistd::geteuid().is_root();
    if is_root {
        // High halves of uid/gid in use.
        std::os::unix::fs::chown(root.join("owned"), Some(70_000), Some(70_001)).unwrap();
        let mk = |name: &str, kind: &str, maj: &str, min: &str| {
            run(Command::new("mknod")
                .arg(root.join(name))
                .args([kind, maj, min]));
        };
        mk("cdev", "c", "300", "70000"); // needs the new 32-bit encoding
        mk("bdev", "b", "8", "1"); // fits the old 16-bit encoding
    }
    run(Command::new("mkfifo").arg(root.join("fifo")));
    let _ = std::os::unix::net::UnixListener::bind(root.join("sock"));
    run(Command::new("touch")
        .args(["-h", "-d", "2031-05-06 07:08:09.123456789"])
        .arg(root.join("small")));
}

/// Makes an image of `size` from `tree` with extra mkfs arguments.
pub fn mkfs(dir: &Path, args: &[&str], tree: &Path, size: &str) -> PathBuf {
    let img = dir.join("img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0"])
        .args(args)
        .arg("-d")
        .arg(tree)
        .arg(&img)
        .arg(size));
    img
}

pub fn open(img: &[u8]) -> Result<Fs, Error> {
    Fs::open(
        Arc::new(MemChannel::read_only(img.to_vec())),
        &OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
}

/// What debugfs reports about a path.
#[derive(Debug, Default)]
pub struct DStat {
    pub ino: InodeNo,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u32,
    pub blockcount: u64,
    pub times: Vec<(String, u32, Option<u32>)>,
    pub dev: Option<(u32, u32)>,
    pub flags: u32,
}

pub fn debugfs(img: &Path, cmd: &str) -> String {
    run(Command::new("debugfs").arg("-R").arg(cmd).arg(img))
}

pub fn field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let i = s.find(key)? + key.len();
    s[i..].split_whitespace().next()
}

pub fn hex(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

pub fn debugfs_stat(img: &Path, path: &str) -> DStat {
    let out = debugfs(img, &format!("stat /{path}"));
    let mut d = DStat {
        ino: InodeNo(field(&out, "Inode:").unwrap().parse().unwrap()),
        mode: u16::from_str_radix(field(&out, "Mode:").unwrap(), 8).unwrap(),
        uid: field(&out, "User:").unwrap().parse().unwrap(),
        gid: field(&out, "Group:").unwrap().parse().unwrap(),
        size: field(&out, "Size:").unwrap().parse().unwrap(),
        links: field(&out, "Links:").unwrap().parse().unwrap(),
        blockcount: field(&out, "Blockcount:").unwrap().parse().unwrap(),
        flags: hex(field(&out, "Flags:").unwrap()),
        ..Default::default()
    };
    for line in out.lines() {
        let t = line.trim_start();
        for name in ["ctime", "atime", "mtime", "crtime"] {
            if let Some(rest) = t.strip_prefix(&format!("{name}: ")) {
                let v = rest.split_whitespace().next().unwrap();
                let mut it = v.split(':');
                let sec = hex(it.next().unwrap());
                let extra = it.next().map(hex);
                d.times.push((name.to_string(), sec, extra));
            }
        }
        if let Some(rest) = t.split("major/minor number: ").nth(1) {
            let mm = rest.split_whitespace().next().unwrap();
            let (a, b) = mm.split_once(':').unwrap();
            d.dev = Some((a.parse().unwrap(), b.parse().unwrap()));
        }
    }
    d
}

/// Expected timestamp from debugfs's raw fields (kernel docs' rule: the
/// 32-bit seconds are signed, the extra word's low 2 bits add 2^32 each,
/// the rest are nanoseconds).
pub fn expect_time(sec: u32, extra: Option<u32>) -> Timestamp {
    let e = extra.unwrap_or(0);
    Timestamp {
        sec: i64::from(sec as i32) + (i64::from(e & 3) << 32),
        nsec: e >> 2,
    }
}

/// Reads a whole file through the engine in odd-sized chunks.
pub fn read_all(fs: &Fs, ino: InodeNo, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = fs.read(ino, out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

pub const PATHS: &[&str] = &[
    "small",
    "empty",
    "multi",
    "sparse",
    "fragmented",
    "dir",
    "dir/sub",
    "dir/sub/nested",
    "owned",
    "fastlink",
    "slowlink",
    "fifo",
    "sock",
    "cdev",
    "bdev",
];

/// Whether loop mounts are possible; skips (or fails when required) if not.
pub fn privileged(test: &str) -> bool {
    let ok = nix::unistd::geteuid().is_root() && Path::new("/dev/loop-control").exists();
    if !ok {
        let why = "needs root and /dev/loop-control for kernel loop mounts";
        if std::env::var("FSVC_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("{test}: {why} (FSVC_REQUIRE_PRIVILEGED=1)");
        }
        eprintln!("skipping {test}: {why}");
    }
    ok
}

/// A kernel loop mount, unmounted on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn new(img: &Path, dir: &Path, opts: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", &format!("loop,{opts}")])
            .arg(img)
            .arg(dir));
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every extended attribute of `path` (not following a symlink) as the
/// kernel serves it: `getfattr -h -d -m - -e hex`, values decoded.
pub fn kernel_xattrs(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let out = run(Command::new("getfattr")
        .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(path));
    out.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            let hex = v.trim().trim_start_matches("0x");
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            (k.to_string(), bytes)
        })
        .collect()
}
