//! Fuzz target `image`: the input is a whole filesystem image (at most
//! 1 MiB). It is opened read-only over an in-memory channel and everything
//! reachable is walked with bounds (depth, entries, bytes read). Errors are
//! fine; a panic, a hang (libFuzzer's -timeout) or an out-of-bounds access
//! is an engine bug.
//!
//! Seeds: `fuzz/seed.sh` makes small images with `mkfs.ext4 -d` (one per
//! feature set) in fuzz/corpus/image/; without them the fuzzer never gets
//! past the superblock checks.

#![no_main]

use std::collections::HashSet;
use std::sync::Arc;

use fsvc_ext4::{FileKind, Fs, OpenOptions, ROOT_INO};
use fsvc_ext4::io::mem::MemChannel;
use libfuzzer_sys::fuzz_target;

const MAX_IMAGE: usize = 1 << 20;
const MAX_DEPTH: usize = 8;
const MAX_ENTRIES: usize = 4096;
const MAX_FILE_BYTES: u64 = 256 << 10;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_IMAGE {
        return;
    }
    let io = Arc::new(MemChannel::read_only(data.to_vec()));
    let opts = OpenOptions { read_only: true, ..OpenOptions::default() };
    let Ok(fs) = Fs::open(io, &opts) else { return };
    let _ = fs.statfs();
    let mut seen = HashSet::new();
    let mut queue = vec![(ROOT_INO, 0usize)];
    let mut entries = 0usize;
    let mut buf = vec![0u8; 16 << 10];
    while let Some((dir, depth)) = queue.pop() {
        if depth > MAX_DEPTH || !seen.insert(dir) {
            continue;
        }
        let mut list = Vec::new();
        let mut cookie = 0u64;
        let mut cookies = HashSet::new();
        for _ in 0..64 {
            let mut batch = Vec::new();
            if fs
                .read_dir(dir, cookie, &mut |e| {
                    batch.push(e);
                    batch.len() < 64
                })
                .is_err()
            {
                break;
            }
            let Some(last) = batch.last() else { break };
            // A cookie that comes back would make a FUSE readdir endless.
            assert!(cookies.insert(last.next_cookie), "readdir cookie repeated");
            cookie = last.next_cookie;
            list.extend(batch);
            if list.len() > MAX_ENTRIES {
                break;
            }
        }
        for e in list {
            entries += 1;
            if entries > MAX_ENTRIES {
                return;
            }
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let _ = fs.lookup(dir, &e.name);
            let Ok(st) = fs.stat(e.ino) else { continue };
            if let Ok(names) = fs.list_xattrs(e.ino) {
                for n in names.iter().take(16) {
                    let _ = fs.get_xattr(e.ino, n);
                }
            }
            match st.kind {
                FileKind::Dir => queue.push((e.ino, depth + 1)),
                FileKind::Symlink => {
                    let _ = fs.read_link(e.ino);
                }
                FileKind::File => {
                    let mut off = 0u64;
                    while off < st.size.min(MAX_FILE_BYTES) {
                        match fs.read(e.ino, off, &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => off += n as u64,
                        }
                    }
                }
                _ => {}
            }
        }
    }
});
