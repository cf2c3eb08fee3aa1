//! Tests of the unixfd channel: O_DIRECT files and loop devices, compared
//! byte for byte with plain (buffered) reads of the same bytes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::*;
use crate::io::testutil::{is_root, pattern, skip, TempDir};

/// (offset, len) pairs covering aligned, unaligned, sector-straddling,
/// multi-piece (> MAX_BOUNCE) and end-of-device accesses on a device of `size`.
fn cases(size: u64) -> Vec<(u64, usize)> {
    vec![
        (0, 4096),
        (0, 1),
        (1, 1),
        (511, 2),
        (512, 512),
        (1000, 3000),
        (4095, 4098),
        (8192, 1024),
        (12345, 70_000),
        (3, (MAX_BOUNCE as usize) * 2 + 777),
        (size - 1, 1),
        (size - 4096, 4096),
        (size - 700, 700),
    ]
}

/// Opens `path` with O_DIRECT, or says why it cannot.
fn open_direct(path: &Path, write: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// An image file in a directory whose filesystem accepts O_DIRECT.
fn direct_file(tag: &str, data: &[u8]) -> Option<(TempDir, PathBuf)> {
    let mut why = Vec::new();
    for base in ["/tmp", "/var/tmp"] {
        let Ok(dir) = TempDir::new_in(base, tag) else {
            why.push(format!("{base}: cannot create a directory"));
            continue;
        };
        let path = dir.0.join("img");
        std::fs::write(&path, data).ok()?;
        match open_direct(&path, false) {
            Ok(_) => return Some((dir, path)),
            Err(e) => why.push(format!("{base}: O_DIRECT refused ({e})")),
        }
    }
    skip(&format!(
        "no directory supports O_DIRECT: {}",
        why.join("; ")
    ));
    None
}

fn check_reads(ch: &UnixFdChannel, model: &[u8]) {
    for (off, len) in cases(model.len() as u64) {
        // Read into a buffer at an odd address too, so the bounce path is
        // taken even for sector-aligned offsets and lengths.
        for shift in [0usize, 1] {
            let mut storage = vec![0u8; len + shift];
            let buf = &mut storage[shift..];
            ch.read_at(off, buf)
                .unwrap_or_else(|e| panic!("read {off}+{len}: {e}"));
            let want = &model[off as usize..off as usize + len];
            assert!(buf == want, "read {off}+{len} (shift {shift}) differs");
        }
    }
}

fn check_writes(ch: &UnixFdChannel, model: &mut [u8], reread: &dyn Fn() -> Vec<u8>) {
    for (i, (off, len)) in cases(model.len() as u64).into_iter().enumerate() {
        let data = pattern(len, 1000 + i as u64);
        ch.write_at(off, &data[..])
            .unwrap_or_else(|e| panic!("write {off}+{len}: {e}"));
        model[off as usize..off as usize + len].copy_from_slice(&data);
    }
    ch.flush().unwrap();
    assert!(
        reread() == model,
        "device differs from the model after writes"
    );
    check_reads(ch, model);
}

#[test]
fn direct_file_unaligned_reads_and_writes() {
    // Not a sector multiple: exercises the tail read and the buffered tail write.
    let size = 3 * MAX_BOUNCE as usize + 4096 * 3 + 700;
    let mut model = pattern(size, 7);
    let Some((_dir, path)) = direct_file("direct", &model) else {
        return;
    };
    let ch = UnixFdChannel::new(
        open_direct(&path, true).unwrap().into(),
        false,
        AccessGate::open(),
    )
    .unwrap();
    assert!(ch.is_direct());
    assert!(!ch.is_block_device());
    assert_eq!(ch.size(), size as u64);
    assert_eq!(ch.sector_size(), DIRECT_FILE_SECTOR);
    check_reads(&ch, &model);
    check_writes(&ch, &mut model, &|| std::fs::read(&path).unwrap());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        size as u64,
        "file grew"
    );
    // The fd still has O_DIRECT after the buffered tail write restored it.
    let fl = fcntl(&ch.fd, FcntlArg::F_GETFL).unwrap();
    assert!(OFlag::from_bits_retain(fl).contains(OFlag::O_DIRECT));
}

#[test]
fn buffered_file_reads_and_limits() {
    let dir = TempDir::new("plain").unwrap();
    let path = dir.0.join("img");
    let mut model = pattern(3 << 20, 3);
    std::fs::write(&path, &model).unwrap();
    let fd = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let ch = UnixFdChannel::new(fd.into(), false, AccessGate::open()).unwrap();
    assert!(!ch.is_direct());
    assert_eq!(ch.sector_size(), DEFAULT_SECTOR);
    check_reads(&ch, &model);
    check_writes(&ch, &mut model, &|| std::fs::read(&path).unwrap());

    let size = ch.size();
    let mut b = [0u8; 2];
    for (off, len) in [(size, 1usize), (size - 1, 2), (u64::MAX, 2)] {
        let mut v = vec![0u8; len];
        assert!(matches!(
            ch.read_at(off, &mut v),
            Err(IoError::OutOfRange { .. })
        ));
        assert!(matches!(
            ch.write_at(off, &v),
            Err(IoError::OutOfRange { .. })
        ));
    }
    // The file shrinks behind the channel's back: a short read, not garbage.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size - 1)
        .unwrap();
    assert!(matches!(
        ch.read_at(size - 2, &mut b),
        Err(IoError::ShortRead {
            wanted: 2,
            got: 1,
            ..
        })
    ));
}

#[test]
fn flush_fsyncs_only_after_writes() {
    let dir = TempDir::new("flush").unwrap();
    let path = dir.0.join("img");
    std::fs::write(&path, vec![0u8; 8192]).unwrap();
    let fd = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let ch = UnixFdChannel::new(fd.into(), false, AccessGate::open()).unwrap();
    ch.flush().unwrap();
    assert_eq!(ch.fsync_count(), 0);
    ch.write_at(10, b"x").unwrap();
    ch.flush().unwrap();
    ch.flush().unwrap();
    assert_eq!(ch.fsync_count(), 1);
}

#[test]
fn read_only_and_sandbox_refusals() {
    let dir = TempDir::new("refuse").unwrap();
    let path = dir.0.join("img");
    std::fs::write(&path, vec![7u8; 4096]).unwrap();
    // A read-only fd makes the channel read-only even if asked read-write.
    let ch =
        UnixFdChannel::new(File::open(&path).unwrap().into(), false, AccessGate::open()).unwrap();
    assert!(ch.is_read_only());
    assert!(matches!(ch.write_at(0, b"x"), Err(IoError::ReadOnly)));

    // While its gate is closed, a channel reads and writes nothing; it
    // asks the gate on every access, so opening the gate later lets it work.
    let opened = Arc::new(AtomicBool::new(false));
    let flag = opened.clone();
    let gate = AccessGate::until(move || flag.load(Ordering::SeqCst));
    let ch = UnixFdChannel::new(rw_fd(&path), false, gate).unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(ch.read_at(0, &mut b), Err(IoError::NotSandboxed)));
    assert_eq!(b, [0u8; 16], "nothing may be read");
    assert!(matches!(ch.write_at(0, b"x"), Err(IoError::NotSandboxed)));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![7u8; 4096],
        "nothing may be written"
    );
    opened.store(true, Ordering::SeqCst);
    ch.read_at(0, &mut b).unwrap();
    assert_eq!(b, [7u8; 16]);
    ch.write_at(0, b"x").unwrap();
    assert_eq!(std::fs::read(&path).unwrap()[0], b'x');
}

fn rw_fd(path: &Path) -> std::os::fd::OwnedFd {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
        .into()
}

#[test]
fn refuses_other_file_types() {
    let dir = TempDir::new("kind").unwrap();
    let d = File::open(&dir.0).unwrap();
    assert!(UnixFdChannel::new(d.into(), true, AccessGate::open()).is_err());
}

/// A loop device over a file; detached on drop.
struct Loop {
    dev: String,
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn attach_loop(file: &Path, sector: u32) -> Option<Loop> {
    if !is_root() {
        skip("loop devices need root");
        return None;
    }
    let out = Command::new("losetup")
        .args(["-f", "--show", "--direct-io=on", "-b", &sector.to_string()])
        .arg(file)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Loop {
            dev: String::from_utf8_lossy(&o.stdout).trim().to_string(),
        }),
        Ok(o) => {
            skip(&format!(
                "losetup failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
            None
        }
        Err(e) => {
            skip(&format!("cannot run losetup: {e}"));
            None
        }
    }
}

#[test]
fn loop_device_direct_io() {
    for sector in [512u32, 4096] {
        let dir = TempDir::new_in("/var/tmp", "loop").unwrap();
        let backing = dir.0.join("backing");
        let size = 4 << 20;
        let mut model = pattern(size, u64::from(sector));
        std::fs::write(&backing, &model).unwrap();
        let Some(lo) = attach_loop(&backing, sector) else {
            return;
        };
        let ch = UnixFdChannel::new(
            open_direct(Path::new(&lo.dev), true).unwrap().into(),
            false,
            AccessGate::open(),
        )
        .unwrap();
        assert!(ch.is_block_device());
        assert!(ch.is_direct());
        assert_eq!(ch.size(), size as u64);
        assert_eq!(ch.sector_size(), sector);
        check_reads(&ch, &model);
        let dev = lo.dev.clone();
        check_writes(&ch, &mut model, &|| {
            // Read back through the device (buffered, another open file).
            let f = File::open(&dev).unwrap();
            let mut v = vec![0u8; size];
            f.read_exact_at(&mut v, 0).unwrap();
            v
        });
        drop(ch);
        drop(lo);
        assert!(
            std::fs::read(&backing).unwrap() == model,
            "backing file differs"
        );
    }
}
