//! An inline_data regular file longer than its inline area: mkfs.ext4 -d
//! marks an all-hole sparse file inline_data with no data at all, and the
//! kernel reads every byte past the inline area as zero. The engine must
//! read it the same way (it once called it corrupt), while a symlink whose
//! size exceeds its inline area stays corrupt.

mod names_fixtures;

use names_fixtures::{debugfs, open, resolve, Scratch};

#[test]
fn all_hole_inline_file_reads_as_zeros() {
    let s = Scratch::new("inline-sparse");
    let f = std::fs::File::create(s.tree().join("hole")).unwrap();
    f.set_len(2 << 20).unwrap();
    std::fs::write(s.tree().join("small"), b"hello inline world").unwrap();
    let img = s.mkfs(&["-O", "inline_data", "-b", "4096"], "16M");
    // The fixture must really be an inline_data inode with no blocks.
    let stat = String::from_utf8_lossy(&debugfs(&img, "stat /hole")).to_string();
    assert!(
        stat.contains("Flags: 0x10000000"),
        "not inline_data: {stat}"
    );

    let fs = open(&img);
    let ino = resolve(&fs, "/hole");
    assert_eq!(fs.stat(ino).unwrap().size, 2 << 20);
    let mut total = 0u64;
    let mut buf = vec![0xAAu8; 100_000];
    loop {
        let n = fs.read(ino, total, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            buf[..n].iter().all(|&b| b == 0),
            "non-zero byte near {total}"
        );
        total += n as u64;
    }
    assert_eq!(total, 2 << 20);
    // A read straddling the inline area's end, and one starting inside it.
    let mut small = [0xAAu8; 100];
    assert_eq!(fs.read(ino, 30, &mut small).unwrap(), 100);
    assert!(small.iter().all(|&b| b == 0));

    let ino = resolve(&fs, "/small");
    let mut buf = [0u8; 64];
    let n = fs.read(ino, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello inline world");
}
