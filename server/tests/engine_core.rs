//! Integration tests of the engine core against images made by mkfs.ext4.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fsvc_server::ext4::{Fs, OpenOptions};
use fsvc_server::io::mem::MemChannel;

fn mkfs(dir: &Path, args: &[&str], tree: &Path, size: &str) -> Vec<u8> {
    let img = dir.join("img");
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(tree)
        .args(args)
        .arg(&img)
        .arg(size)
        .status()
        .expect("mkfs.ext4");
    assert!(st.success());
    std::fs::read(&img).unwrap()
}

#[test]
fn smoke_open() {
    let d = std::env::temp_dir().join(format!("core-smoke-{}", std::process::id()));
    let tree = d.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a"), b"hello world").unwrap();
    let img = mkfs(&d, &[], &tree, "8M");
    let fs = Fs::open(Arc::new(MemChannel::read_only(img)), &OpenOptions::default()).unwrap();
    let st = fs.stat(2).unwrap();
    println!("{st:?} {:?}", fs.statfs());
    let _ = std::fs::remove_dir_all(&d);
}
