//! Fixtures made at test time by the real tools: a varied source tree,
//! `mkfs.ext4 -d` images over a parameter matrix, and kernel-made images
//! (timestamps with nanoseconds and beyond 2038, a 50 000-entry htree
//! directory, a depth-2 extent tree), all through loop mounts.
//!
//! Invariants:
//! - No binary image is ever committed: everything is built here, in a
//!   caller-owned temp dir.
//! - Each builder checks that the property it promises really is on disk
//!   (inline data present, directory indexed, extent depth >= 2, ...) so a
//!   test can never pass vacuously on a fixture that lacks what it tests.

use crate::mount::KernelMount;
use crate::util::{run, run_stdout, TempDir};
use anyhow::{bail, ensure, Context, Result};
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// ext4 inode flag: the directory has an htree index (`EXT4_INDEX_FL`).
pub const EXT4_INDEX_FL: u32 = 0x1000;

/// One MiB.
pub const MIB: u64 = 1024 * 1024;
/// One GiB.
pub const GIB: u64 = 1024 * MIB;

/// Deterministic pseudo-random bytes (xorshift64*), so contents differ per
/// file and per offset without a dependency.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What to put in a varied tree.
#[derive(Debug, Clone)]
pub struct TreeOptions {
    /// Size of the large, fully written file.
    pub large_bytes: u64,
    /// Add `sparse/huge`, a sparse file past 4 GiB (data at 1 GiB and past 4 GiB).
    pub huge_sparse: bool,
    /// Length of the large xattr value (must fit the image's block size:
    /// keep it under block size minus ~100 bytes).
    pub big_xattr_len: usize,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            large_bytes: 3 * MIB + 12345,
            huge_sparse: false,
            big_xattr_len: 1500,
        }
    }
}

/// A timestamp (seconds may be negative, nanoseconds in 0..1e9).
pub type Stamp = (i64, i64);

/// Times to set on an entry through the kernel after `mkfs -d` (which drops
/// nanoseconds and mangles times past 2038 in e2fsprogs 1.47).
#[derive(Debug, Clone)]
pub struct TimeFix {
    /// Path relative to the tree root.
    pub rel: PathBuf,
    /// atime to set.
    pub atime: Stamp,
    /// mtime to set.
    pub mtime: Stamp,
}

/// A built source tree.
#[derive(Debug)]
pub struct Tree {
    /// Root of the tree on the host.
    pub root: PathBuf,
    /// Times to apply with [`apply_times_with_kernel`] after mkfs.
    pub times: Vec<TimeFix>,
}

/// 2001-02-03 04:05:06.123456789 UTC.
pub const T_NSEC: Stamp = (981_173_106, 123_456_789);
/// 1969-07-20 20:17:40.5 UTC (before the epoch).
pub const T_PRE_1970: Stamp = (-14_182_940, 500_000_000);
/// 2100-01-01 00:00:00.999999999 UTC (past 2038).
pub const T_POST_2038: Stamp = (4_102_444_800, 999_999_999);
/// 1901-12-14 (the oldest 32-bit time) + 1 s, 1 ns.
pub const T_OLD: Stamp = (-2_147_483_647, 1);

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).with_context(|| format!("write {}", path.display()))
}

/// Sets an extended attribute on `path` itself (symlinks not followed).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    // setfattr takes hex values with 0x; it does not follow symlinks with -h.
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    run(Command::new("setfattr")
        .arg("-h")
        .arg("-n")
        .arg(name)
        .arg("-v")
        .arg(format!("0x{hex}"))
        .arg(path))?;
    Ok(())
}

fn setfacl(args: &[&str], path: &Path) -> Result<()> {
    run(Command::new("setfacl").args(args).arg(path))?;
    Ok(())
}

fn own(path: &Path, uid: u32, gid: u32, mode: Option<u32>) -> Result<()> {
    lchown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    // chown clears setuid/setgid, so the mode comes after it.
    if let Some(m) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(m))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

/// Builds the varied tree under `root` (which must not exist yet). Needs
/// root (mknod, chown, trusted.* xattrs).
pub fn build_varied_tree(root: &Path, opts: &TreeOptions) -> Result<Tree> {
    fs::create_dir(root)?;
    let p = |rel: &str| root.join(rel);
    let mut times = Vec::new();

    // Nested directories, depth 7.
    let deep = p("d1/d2/d3/d4/d5/d6/d7");
    fs::create_dir_all(&deep)?;
    write_file(&deep.join("leaf.txt"), b"at the bottom\n")?;
    fs::create_dir(p("empty-dir"))?;

    // Regular files: empty, small, block-sized, large.
    fs::create_dir(p("files"))?;
    write_file(&p("files/empty"), b"")?;
    write_file(&p("files/small.txt"), b"hello, fsvc\n")?;
    write_file(&p("files/one-block"), &pseudo_random(1, 4096))?;
    write_file(&p("files/odd-size"), &pseudo_random(2, 4097 + 1023))?;
    write_file(
        &p("files/large"),
        &pseudo_random(3, usize::try_from(opts.large_bytes)?),
    )?;
    // Tiny files that inline_data can keep in the inode.
    for i in 0..5u64 {
        write_file(
            &p(&format!("files/tiny{i}")),
            &pseudo_random(10 + i, 10 * i as usize + 1),
        )?;
    }

    // Sparse files: holes at the start, middle and end.
    fs::create_dir(p("sparse"))?;
    {
        let f = File::create(p("sparse/holes"))?;
        f.set_len(5 * MIB + 7)?;
        f.write_all_at(&pseudo_random(20, 5000), MIB + 123)?;
        f.write_all_at(&pseudo_random(21, 4096), 3 * MIB)?;
        f.write_all_at(b"end", 5 * MIB + 4)?;
        let g = File::create(p("sparse/all-hole"))?;
        g.set_len(2 * MIB)?;
    }
    if opts.huge_sparse {
        let f = File::create(p("sparse/huge"))?;
        f.set_len(4 * GIB + 3 * MIB + 17)?;
        f.write_all_at(&pseudo_random(22, 8192), GIB)?;
        f.write_all_at(&pseudo_random(23, 10000), 4 * GIB + MIB)?;
    }

    // Symlinks: fast (< 60 bytes), slow (> 60), dangling, absolute, to a dir.
    fs::create_dir(p("links"))?;
    symlink("../files/small.txt", p("links/fast"))?;
    let long_target = format!("../{}/small.txt", "x".repeat(70));
    symlink(&long_target, p("links/slow-dangling"))?;
    let slow_ok = format!("{}files/small.txt", "./".repeat(40));
    symlink(format!("../{slow_ok}"), p("links/slow"))?;
    symlink("nowhere", p("links/dangling"))?;
    symlink("/etc/passwd", p("links/absolute"))?;
    symlink("../d1/d2", p("links/to-dir"))?;
    symlink("y".repeat(300), p("links/slow-300"))?;

    // Hard links: three names for one inode.
    fs::create_dir(p("hard"))?;
    write_file(&p("hard/a"), b"three names\n")?;
    fs::hard_link(p("hard/a"), p("hard/b"))?;
    fs::hard_link(p("hard/a"), p("d1/hard-c"))?;

    // Special files.
    fs::create_dir(p("special"))?;
    nix::unistd::mkfifo(&p("special/fifo"), Mode::from_bits_truncate(0o640))?;
    mknod(
        &p("special/null-like"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )?;
    mknod(
        &p("special/block"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        makedev(8, 17),
    )?;
    // A device number that needs ext4's "new" (large) rdev encoding.
    mknod(
        &p("special/big-dev"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        makedev(300, 70_000),
    )?;
    {
        let sock = p("special/socket");
        let l = std::os::unix::net::UnixListener::bind(&sock)?;
        drop(l);
    }

    // Odd names.
    fs::create_dir(p("names"))?;
    let odd: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b"new\nline".to_vec(),
        "utf8-\u{e9}\u{e8}-\u{65e5}\u{672c}-\u{1f600}"
            .as_bytes()
            .to_vec(),
        b"bad-\xff\xfe-utf8".to_vec(),
        vec![b'n'; 255],
        b"-leading-dash".to_vec(),
        b"tab\there".to_vec(),
        b"...".to_vec(),
        b" ".to_vec(),
    ];
    for (i, name) in odd.iter().enumerate() {
        write_file(
            &p("names").join(OsStr::from_bytes(name)),
            format!("odd {i}\n").as_bytes(),
        )?;
    }
    fs::create_dir(p("names").join(OsStr::from_bytes(&[b'D'; 255])))?;

    // Owners and modes.
    fs::create_dir(p("perm"))?;
    let owners: &[(&str, u32, u32, u32)] = &[
        ("root-0600", 0, 0, 0o600),
        ("user-1000", 1000, 1000, 0o644),
        ("nobody", 65534, 65534, 0o444),
        ("mixed", 12345, 54321, 0o640),
        ("uid-32bit", 4_000_000_000, 3_000_000_001, 0o604),
        ("setuid", 0, 0, 0o4755),
        ("setgid", 1000, 50, 0o2750),
        ("no-perms", 1001, 1001, 0o000),
        ("all-bits", 0, 0, 0o7777),
    ];
    for (name, uid, gid, mode) in owners {
        let f = p("perm").join(name);
        write_file(&f, name.as_bytes())?;
        own(&f, *uid, *gid, Some(*mode))?;
    }
    fs::create_dir(p("perm/sticky"))?;
    own(&p("perm/sticky"), 0, 0, Some(0o1777))?;
    fs::create_dir(p("perm/setgid-dir"))?;
    own(&p("perm/setgid-dir"), 1000, 100, Some(0o2775))?;
    symlink("owned-link-target", p("perm/owned-link"))?;
    own(&p("perm/owned-link"), 777, 888, None)?;

    // Extended attributes and ACLs.
    fs::create_dir(p("xattr"))?;
    let xf = p("xattr/small");
    write_file(&xf, b"xattrs\n")?;
    set_xattr(&xf, "user.small", b"v")?;
    set_xattr(&xf, "user.empty", b"")?;
    set_xattr(&xf, "user.binary", &[0, 1, 2, 255, 0])?;
    set_xattr(&xf, "trusted.t", b"trusted value")?;
    set_xattr(&xf, "security.s", b"security value")?;
    let xb = p("xattr/big");
    write_file(&xb, b"big xattr\n")?;
    set_xattr(&xb, "user.big", &pseudo_random(30, opts.big_xattr_len))?;
    set_xattr(&p("xattr"), "user.on-dir", b"dir value")?;
    set_xattr(&p("links/fast"), "trusted.on-link", b"link value")?;
    let acl = p("xattr/acl-file");
    write_file(&acl, b"acl\n")?;
    setfacl(&["-m", "u:1000:rw-,g:44:r--,m::rw-"], &acl)?;
    let acl_dir = p("xattr/acl-dir");
    fs::create_dir(&acl_dir)?;
    setfacl(&["-m", "u:1001:rwx"], &acl_dir)?;
    setfacl(
        &["-d", "-m", "u::rwx,g::r-x,o::---,u:1002:r-x,m::r-x"],
        &acl_dir,
    )?;

    // Timestamps (applied again through the kernel after mkfs).
    fs::create_dir(p("times"))?;
    for (name, t) in [
        ("nsec", T_NSEC),
        ("pre-1970", T_PRE_1970),
        ("post-2038", T_POST_2038),
        ("oldest", T_OLD),
    ] {
        write_file(&p("times").join(name), name.as_bytes())?;
        times.push(TimeFix {
            rel: PathBuf::from("times").join(name),
            atime: (t.0 - 1, t.1),
            mtime: t,
        });
    }
    times.push(TimeFix {
        rel: "links/fast".into(),
        atime: T_NSEC,
        mtime: (T_NSEC.0 + 1, 1),
    });
    times.push(TimeFix {
        rel: "d1/d2".into(),
        atime: T_NSEC,
        mtime: (T_NSEC.0 + 2, 999_999_999),
    });
    times.push(TimeFix {
        rel: "special/fifo".into(),
        atime: T_NSEC,
        mtime: T_POST_2038,
    });
    for t in &times {
        set_times(&root.join(&t.rel), t)?;
    }
    Ok(Tree {
        root: root.to_path_buf(),
        times,
    })
}

fn timespec(s: Stamp) -> TimeSpec {
    TimeSpec::new(s.0, s.1)
}

fn set_times(path: &Path, t: &TimeFix) -> Result<()> {
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &timespec(t.atime),
        &timespec(t.mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("utimensat {}", path.display()))
}

/// Filesystem types mkfs knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext2.
    Ext2,
    /// ext3.
    Ext3,
    /// ext4.
    Ext4,
}

impl FsKind {
    /// The `-t` name.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
        }
    }
}

/// A `mkfs.ext4` invocation, built up by parameters.
#[derive(Debug, Clone)]
pub struct Mkfs {
    /// Filesystem type (`-t`).
    pub kind: FsKind,
    /// Block size (`-b`).
    pub block_size: Option<u32>,
    /// Inode size (`-I`).
    pub inode_size: Option<u32>,
    /// Feature edits (`-O a,^b`).
    pub features: Vec<String>,
    /// Number of inodes (`-N`).
    pub inodes: Option<u64>,
    /// Image size in MiB.
    pub size_mib: u64,
    /// Journal size in MiB (`-J size=`), when not mkfs's default.
    pub journal_mib: Option<u64>,
    /// Volume label (`-L`).
    pub label: Option<String>,
    /// Filesystem UUID (`-U`).
    pub uuid: Option<String>,
}

impl Mkfs {
    /// A fresh parameter set.
    pub fn new(kind: FsKind) -> Mkfs {
        Mkfs {
            kind,
            // Explicit, so mke2fs.conf's "small" type never changes it.
            block_size: Some(4096),
            inode_size: None,
            features: Vec::new(),
            inodes: None,
            size_mib: 64,
            journal_mib: None,
            label: None,
            uuid: None,
        }
    }
    /// Sets the volume label.
    pub fn label(mut self, l: &str) -> Mkfs {
        self.label = Some(l.to_string());
        self
    }
    /// Sets the filesystem UUID.
    pub fn uuid(mut self, u: &str) -> Mkfs {
        self.uuid = Some(u.to_string());
        self
    }
    /// Sets the block size.
    pub fn block_size(mut self, b: u32) -> Mkfs {
        self.block_size = Some(b);
        self
    }
    /// Sets the inode size.
    pub fn inode_size(mut self, i: u32) -> Mkfs {
        self.inode_size = Some(i);
        self
    }
    /// Adds a feature edit (`64bit`, `^metadata_csum`, ...).
    pub fn feature(mut self, f: &str) -> Mkfs {
        self.features.push(f.to_string());
        self
    }
    /// Sets the inode count.
    pub fn inodes(mut self, n: u64) -> Mkfs {
        self.inodes = Some(n);
        self
    }
    /// Sets the image size in MiB.
    pub fn size_mib(mut self, s: u64) -> Mkfs {
        self.size_mib = s;
        self
    }
    /// Sets the journal size in MiB.
    pub fn journal_mib(mut self, j: u64) -> Mkfs {
        self.journal_mib = Some(j);
        self
    }

    /// A short human description for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "-t {} -b {:?} -I {:?} -O {:?} -J {:?} {} MiB",
            self.kind.name(),
            self.block_size,
            self.inode_size,
            self.features,
            self.journal_mib,
            self.size_mib
        )
    }

    /// Runs mkfs, populating from `tree` when given.
    pub fn build(&self, tree: Option<&Path>, image: &Path) -> Result<()> {
        let mut c = Command::new("mkfs.ext4");
        c.args(["-q", "-F", "-t", self.kind.name()]);
        if let Some(b) = self.block_size {
            c.arg("-b").arg(b.to_string());
        }
        if let Some(i) = self.inode_size {
            c.arg("-I").arg(i.to_string());
        }
        if let Some(n) = self.inodes {
            c.arg("-N").arg(n.to_string());
        }
        if !self.features.is_empty() {
            c.arg("-O").arg(self.features.join(","));
        }
        if let Some(j) = self.journal_mib {
            c.arg("-J").arg(format!("size={j}"));
        }
        if let Some(l) = &self.label {
            c.arg("-L").arg(l);
        }
        if let Some(u) = &self.uuid {
            c.arg("-U").arg(u);
        }
        if let Some(t) = tree {
            c.arg("-d").arg(t);
        }
        c.arg(image).arg(format!("{}M", self.size_mib));
        run(&mut c).with_context(|| format!("mkfs {}", self.describe()))?;
        Ok(())
    }
}

/// Sets the recorded times on `image` through a read-write kernel mount, so
/// the image holds nanoseconds and post-2038 times as the kernel encodes them.
pub fn apply_times_with_kernel(image: &Path, times: &[TimeFix], scratch: &TempDir) -> Result<()> {
    let dir = scratch.subdir("times-mnt")?;
    let m = KernelMount::rw(image, &dir)?;
    for t in times {
        set_times(&dir.join(&t.rel), t)?;
    }
    m.unmount()
}

/// Runs `e2fsck -fn` and fails with its output unless the image is clean.
pub fn fsck_clean(image: &Path) -> Result<()> {
    let out = Command::new("e2fsck").arg("-fn").arg(image).output()?;
    ensure!(
        out.status.success(),
        "e2fsck -fn {} is not clean ({}):\n{}{}",
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `debugfs -R CMD IMAGE` output (stdout).
pub fn debugfs(image: &Path, cmd: &str) -> Result<String> {
    let out = run(Command::new("debugfs").arg("-R").arg(cmd).arg(image))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The varied tree made into an image: tree + mkfs + kernel-applied times.
/// Checks e2fsck is clean on the result.
pub fn varied_image(scratch: &TempDir, mkfs: &Mkfs, opts: &TreeOptions) -> Result<PathBuf> {
    let mut opts = opts.clone();
    // A large xattr value must fit in one xattr block.
    let block = mkfs.block_size.unwrap_or(1024) as usize;
    opts.big_xattr_len = opts.big_xattr_len.min(block.saturating_sub(256));
    let tree = build_varied_tree(&scratch.join("tree"), &opts)?;
    let image = scratch.join("image.ext");
    mkfs.build(Some(&tree.root), &image)?;
    apply_times_with_kernel(&image, &tree.times, scratch)?;
    fsck_clean(&image)?;
    // The tree is no longer needed: the kernel reads the image as the oracle.
    fs::remove_dir_all(&tree.root)?;
    Ok(image)
}

/// An ext4 image whose `/big` directory holds `n` entries (plus
/// `with-data`) and is htree-indexed. The entries are created through a
/// read-write kernel mount, so the kernel builds (and splits) the index as
/// the directory grows; `mkfs -d` would take minutes on a directory this
/// size (its linear inserts are quadratic). Verified with debugfs: the INDEX
/// flag ([`EXT4_INDEX_FL`]) on `/big`.
pub fn big_dir_image(scratch: &TempDir, n: usize) -> Result<PathBuf> {
    let image = scratch.join("bigdir.ext4");
    let inodes = u64::try_from(n)? + 4096;
    Mkfs::new(FsKind::Ext4)
        .inodes(inodes)
        .size_mib(192)
        .build(None, &image)?;
    let dir = scratch.subdir("bigdir-mnt")?;
    {
        let m = KernelMount::rw(&image, &dir)?;
        let big = dir.join("big");
        fs::create_dir(&big)?;
        for i in 0..n {
            // Varying name lengths exercise the record packing.
            let name = format!("entry-{i:06}-{}", "z".repeat(i % 23));
            File::create(big.join(name))?;
        }
        write_file(&big.join("with-data"), b"data in a big dir\n")?;
        m.unmount()?;
    }
    fsck_clean(&image)?;
    let stat = debugfs(&image, "stat /big")?;
    let flags = stat
        .lines()
        .find_map(|l| l.split("Flags: ").nth(1))
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .context("no Flags in debugfs stat /big")?;
    ensure!(
        flags & EXT4_INDEX_FL != 0,
        "/big is not htree-indexed: flags {flags:#x}"
    );
    Ok(image)
}

/// Depth of the extent tree of `path` in `image`, from `debugfs -R 'ex PATH'`
/// (first column "level/depth").
pub fn extent_depth(image: &Path, path: &str) -> Result<u32> {
    let out = debugfs(image, &format!("ex {path}"))?;
    out.lines()
        .filter_map(|l| {
            // " 0/ 2   1/  1 ..." : level "/" depth, possibly split by spaces.
            let mut words = l.split_whitespace();
            let (_level, rest) = words.next()?.split_once('/')?;
            let depth = if rest.is_empty() { words.next()? } else { rest };
            depth.parse::<u32>().ok()
        })
        .max()
        .with_context(|| format!("no extent lines in debugfs ex {path}:\n{out}"))
}

/// An ext4 image (4 KiB blocks) holding `/deep`, a 16 MiB file with 2048
/// holes punched by the kernel at alternating 4 KiB offsets, so its extent
/// tree has depth >= 2 (verified). Also holds `/plain`, a contiguous file.
pub fn deep_extent_image(scratch: &TempDir) -> Result<PathBuf> {
    let image = scratch.join("deep.ext4");
    Mkfs::new(FsKind::Ext4)
        .block_size(4096)
        .size_mib(64)
        .build(None, &image)?;
    let dir = scratch.subdir("deep-mnt")?;
    {
        let m = KernelMount::rw(&image, &dir)?;
        let data = pseudo_random(40, 16 * MIB as usize);
        write_file(&dir.join("plain"), &data[..MIB as usize])?;
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(dir.join("deep"))?;
        f.write_all(&data)?;
        f.sync_all()?;
        use nix::fcntl::{fallocate, FallocateFlags};
        for i in 0..2048i64 {
            fallocate(
                &f,
                FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                i * 8192,
                4096,
            )
            .context("punch hole")?;
        }
        f.sync_all()?;
        drop(f);
        m.unmount()?;
    }
    fsck_clean(&image)?;
    let depth = extent_depth(&image, "/deep")?;
    if depth < 2 {
        bail!("extent tree of /deep has depth {depth}, wanted >= 2");
    }
    Ok(image)
}

/// True when debugfs shows inline data on `path` in `image`.
pub fn has_inline_data(image: &Path, path: &str) -> Result<bool> {
    Ok(debugfs(image, &format!("stat {path}"))?.contains("Size of inline data"))
}

/// Random bytes that are not any filesystem, `mib` MiB.
pub fn garbage_image(path: &Path, mib: u64) -> Result<()> {
    write_file(path, &pseudo_random(99, usize::try_from(mib * MIB)?))
}

/// `uname -r`, for diagnostics.
pub fn kernel_release() -> String {
    run_stdout("uname", &["-r"])
        .unwrap_or_default()
        .trim()
        .to_string()
}
