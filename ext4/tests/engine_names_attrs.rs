//! Namespace engine tests, attributes and small objects: xattrs and ACLs
//! (against the source tree and a kernel mount of the image), ea_inode
//! values, fast/slow symlinks, inline_data files, directories and symlinks.

mod names_fixtures;

use fsvc_ext4::{Error, ROOT_INO};
use names_fixtures::*;

#[test]
fn xattrs_and_acls_match_the_source_tree() {
    let variants: [(&str, &[&str], usize); 4] = [
        ("xattr-4k", &["-b", "4096"], 3000),
        ("xattr-1k", &["-b", "1024"], 700),
        (
            "xattr-4k-nocsum",
            &["-b", "4096", "-O", "^metadata_csum"],
            3000,
        ),
        (
            "xattr-ext3-128",
            &["-t", "ext3", "-b", "2048", "-I", "128"],
            1500,
        ),
    ];
    for (label, args, big) in variants {
        let s = Scratch::new(label);
        let files = populate_xattrs(&s.tree(), big);
        let img = s.mkfs(args, "16M");
        let fs = open(&img);
        for f in files {
            let ino = resolve(&fs, f);
            let want = getfattr(&s.tree().join(f));
            assert!(!want.is_empty());
            assert_eq!(our_xattrs(&fs, ino), want, "{label}: xattrs of {f}");
            assert!(matches!(
                fs.get_xattr(ino, b"user.absent"),
                Err(Error::NoXattr)
            ));
            assert!(matches!(
                fs.get_xattr(ino, b"system.data"),
                Err(Error::NoXattr)
            ));
        }
        // The bigger values really went to the external block.
        assert_ne!(
            fs.inode(resolve(&fs, "bigval")).unwrap().file_acl.0,
            0,
            "{label}"
        );
        // Kernel oracle: the same image through the kernel's ext4.
        if nix::unistd::geteuid().is_root() {
            let m = KernelMount::new(&img, &s.0.join("mnt"), "ro");
            for f in ["small", "many", "bigval", "ns", "acl", "dacl"] {
                let ino = resolve(&fs, f);
                assert_eq!(
                    our_xattrs(&fs, ino),
                    getfattr(&m.0.join(f)),
                    "{label}: kernel {f}"
                );
            }
        }
    }
}

#[test]
fn ea_inode_values() {
    let s = Scratch::new("eainode");
    mkfile(&s.tree().join("f"), b"f");
    // Larger than the 1 KiB block: only an EA inode can hold it.
    let value = pattern(3000, 3);
    setfattr(&s.tree().join("f"), "user.huge", &value);
    setfattr(&s.tree().join("f"), "user.small", b"x");
    let img = s.mkfs(&["-b", "1024", "-O", "ea_inode"], "16M");
    let fs = open(&img);
    let ino = resolve(&fs, "f");
    assert_eq!(fs.get_xattr(ino, b"user.huge").unwrap(), value);
    assert_eq!(our_xattrs(&fs, ino), getfattr(&s.tree().join("f")));
    if nix::unistd::geteuid().is_root() {
        let m = KernelMount::new(&img, &s.0.join("mnt"), "ro");
        assert_eq!(our_xattrs(&fs, ino), getfattr(&m.0.join("f")));
    }
}

#[test]
fn symlinks_fast_slow_and_with_xattr_block() {
    for (label, args) in [
        ("sym-4k", &["-b", "4096"][..]),
        ("sym-ext2", &["-t", "ext2", "-b", "1024"][..]),
    ] {
        let s = Scratch::new(label);
        let t = s.tree();
        let targets: Vec<(String, String)> = vec![
            ("fast".into(), "a/b".into()),
            ("fast59".into(), "t".repeat(59)),
            ("slow60".into(), "u".repeat(60)),
            ("slow".into(), "dir/".repeat(200)),
        ];
        for (n, tg) in &targets {
            std::os::unix::fs::symlink(tg, t.join(n)).unwrap();
        }
        let root = nix::unistd::geteuid().is_root();
        if root {
            // A fast symlink that also owns an xattr block (trusted.* is
            // allowed on symlinks): i_blocks counts the block, yet the target
            // is still in i_block.
            std::os::unix::fs::symlink("xt", t.join("fastx")).unwrap();
            setfattr(&t.join("fastx"), "trusted.pad", &pattern(400, 1));
        }
        let img = s.mkfs(args, "8M");
        let fs = open(&img);
        for (n, tg) in &targets {
            assert_eq!(
                fs.read_link(resolve(&fs, n)).unwrap(),
                tg.as_bytes(),
                "{label}: {n}"
            );
        }
        if root {
            let ino = resolve(&fs, "fastx");
            assert_ne!(fs.inode(ino).unwrap().file_acl.0, 0);
            assert_eq!(fs.read_link(ino).unwrap(), b"xt");
        }
        assert!(matches!(fs.read_link(ROOT_INO), Err(Error::NotSymlink)));
    }
}

#[test]
fn inline_data_files_dirs_and_symlinks() {
    let s = Scratch::new("inline");
    let t = s.tree();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("tiny", b"hello inline".to_vec()),
        ("sixty", pattern(60, 1)),
        ("spill", pattern(100, 2)),
        ("empty", Vec::new()),
        ("blocky", pattern(5000, 3)),
    ];
    for (n, d) in &files {
        mkfile(&t.join(n), d);
    }
    std::fs::create_dir(t.join("idir")).unwrap();
    for n in ["a", "bb", "ccc"] {
        mkfile(&t.join("idir").join(n), b"");
    }
    std::fs::create_dir(t.join("iempty")).unwrap();
    std::os::unix::fs::symlink("v".repeat(80), t.join("ilink")).unwrap();
    std::os::unix::fs::symlink("short", t.join("flink")).unwrap();
    let img = s.mkfs(&["-b", "4096", "-I", "256", "-O", "inline_data"], "8M");
    let root = nix::unistd::geteuid().is_root();
    let mut dirs = vec!["idir", "iempty"];
    if root {
        // An inline directory that spills from i_block into system.data:
        // libext2fs converts such a directory to blocks, the kernel does not.
        let m = KernelMount::new(&img, &s.0.join("mnt"), "rw");
        std::fs::create_dir(m.0.join("idir2")).unwrap();
        std::fs::create_dir(t.join("idir2")).unwrap();
        for i in 0..5 {
            mkfile(&m.0.join("idir2").join(format!("name-{i:05}")), b"");
            mkfile(&t.join("idir2").join(format!("name-{i:05}")), b"");
        }
        dirs.push("idir2");
    } else {
        privileged("inline_data_files_dirs_and_symlinks (spilled inline directory)");
    }
    let fs = open(&img);
    const INLINE: u32 = 0x1000_0000;
    for (n, d) in &files {
        let inode = fs.inode(resolve(&fs, n)).unwrap();
        if *n != "blocky" && *n != "empty" {
            assert_ne!(inode.flags & INLINE, 0, "{n} is inline");
        }
        if inode.flags & INLINE == 0 {
            continue;
        }
        let mut buf = vec![0u8; d.len() + 10];
        let got = fs.read_inode_data(&inode, 0, &mut buf).unwrap();
        assert_eq!(&buf[..got], &d[..], "{n}");
        // Odd-sized reads at every offset stitch together the same bytes.
        for off in 0..=d.len() {
            let mut b = [0u8; 7];
            let k = fs.read_inode_data(&inode, off as u64, &mut b).unwrap();
            assert_eq!(&b[..k], &d[off..(off + 7).min(d.len())], "{n} at {off}");
        }
    }
    for d in &dirs {
        let d = *d;
        let ino = resolve(&fs, d);
        assert_ne!(fs.inode(ino).unwrap().flags & INLINE, 0, "{d} is inline");
        check_dir(&fs, &img, &t.join(d), d, true);
        assert_eq!(fs.lookup(ino, b"..").unwrap(), ROOT_INO);
        assert_eq!(fs.lookup(ino, b".").unwrap(), ino);
    }
    assert_eq!(
        fs.read_link(resolve(&fs, "ilink")).unwrap(),
        "v".repeat(80).as_bytes()
    );
    assert_eq!(fs.read_link(resolve(&fs, "flink")).unwrap(), b"short");
    // system.data is internal: never listed (the kernel does not list it).
    let spill = resolve(&fs, "spill");
    assert!(!fs
        .list_xattrs(spill)
        .unwrap()
        .iter()
        .any(|n| n.starts_with(b"system.")));
    if root {
        let m = KernelMount::new(&img, &s.0.join("mnt"), "ro");
        assert_eq!(our_xattrs(&fs, spill), getfattr(&m.0.join("spill")));
        for d in &dirs {
            assert_eq!(names_of(&m.0.join(d)), names_of(&t.join(d)));
        }
    }
}
