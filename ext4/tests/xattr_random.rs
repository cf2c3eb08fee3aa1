//! Random sequences of xattr sets and removes (values from empty to larger
//! than a block, XATTR_CREATE/REPLACE, several files and directories)
//! against an in-memory model: after every operation the engine serves
//! exactly the model, every refusal is the one the model predicts (ENOSPC
//! only when the value cannot fit beside what is there), and at the end
//! `e2fsck -fn` is clean and the kernel's ext4 lists the same attributes.
//!
//! `FSVC_XATTR_CASES` sequences per geometry (default 3), `FSVC_XATTR_OPS`
//! operations each (default 300), seeded deterministically; a failure
//! names its geometry, seed and step.

mod core_util;

use std::collections::BTreeMap;

use core_util::*;
use fsvc_ext4::testfs::{Image, GEOMETRIES};
use fsvc_ext4::tx::Creds;
use fsvc_ext4::xattr_write::XattrFlags;
use fsvc_ext4::{Error, Fs, InodeNo, Space, ROOT_INO};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic and enough for choosing operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Model = BTreeMap<String, Vec<u8>>;

/// Bytes an entry takes in an area (entry header, name, padded value),
/// without the name's prefix.
fn cost(name: &str, value: &[u8]) -> usize {
    let suffix = name.split_once('.').map_or(0, |(_, s)| s.len());
    ((16 + suffix + 3) & !3) + ((value.len() + 3) & !3)
}

const NAMES: &[&str] = &[
    "user.a",
    "user.bb",
    "user.longer_name_here",
    "trusted.t",
    "security.s",
    "user.x1",
    "user.x2",
    "user.x3",
];

fn run_sequence(fs: &Fs, files: &[InodeNo], models: &mut [Model], seed: u64, ops: u64, ctx: &str) {
    let mut rng = Rng(seed | 1);
    let bs = fs.sb().block_size as usize;
    let sizes = [0, 1, 3, 17, 60, 100, 300, 700, bs / 2, bs - 60, bs + 1];
    for step in 0..ops {
        let which = rng.below(files.len() as u64) as usize;
        let ino = files[which];
        let model = &mut models[which];
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        let ctx = format!("{ctx} seed {seed} step {step} inode {ino} {name}");
        if rng.below(4) == 0 {
            let r = fs.remove_xattr(Creds::ROOT, ino, name.as_bytes());
            match (r, model.remove(name)) {
                (Ok(_), Some(_)) | (Err(Error::NoXattr), None) => {}
                (r, m) => panic!("{ctx}: remove gave {r:?}, model had {m:?}"),
            }
        } else {
            let len = sizes[rng.below(sizes.len() as u64) as usize];
            let fill = rng.below(256) as u8;
            let value = vec![fill; len];
            let flags = match rng.below(4) {
                0 => XattrFlags {
                    create: true,
                    ..XattrFlags::default()
                },
                1 => XattrFlags {
                    replace: true,
                    ..XattrFlags::default()
                },
                _ => XattrFlags::default(),
            };
            let exists = model.contains_key(name);
            let r = fs.set_xattr(Creds::ROOT, ino, name.as_bytes(), &value, flags);
            match r {
                Ok(_) => {
                    assert!(
                        !(flags.create && exists),
                        "{ctx}: create over an existing one"
                    );
                    assert!(!flags.replace || exists, "{ctx}: replace of a missing one");
                    model.insert(name.to_string(), value);
                }
                Err(Error::Exists) => assert!(flags.create && exists, "{ctx}: EEXIST"),
                Err(Error::NoXattr) => assert!(flags.replace && !exists, "{ctx}: ENODATA"),
                Err(Error::NoSpace(Space::Xattrs)) => {
                    // Only when the attributes with the new value cannot
                    // share one block and the in-inode area.
                    let others: usize = model
                        .iter()
                        .filter(|(k, _)| k.as_str() != name)
                        .map(|(k, v)| cost(k, v))
                        .sum();
                    assert!(
                        others + cost(name, &value) + 36 > bs,
                        "{ctx}: ENOSPC with {others} bytes of others and {len} new in {bs}"
                    );
                }
                Err(e) => panic!("{ctx}: {e}"),
            }
        }
        let got: Model = fs
            .list_xattrs(ino)
            .unwrap()
            .into_iter()
            .map(|n| {
                let v = fs.get_xattr(ino, &n).unwrap();
                (String::from_utf8(n).unwrap(), v)
            })
            .collect();
        assert_eq!(&got, model, "{ctx}");
    }
}

#[test]
fn random_xattr_sequences_match_a_model() {
    let kernel = privileged("random_xattr_sequences_match_a_model");
    let cases = env("FSVC_XATTR_CASES", 3);
    let ops = env("FSVC_XATTR_OPS", 300);
    for &(name, args, size) in &[GEOMETRIES[0], GEOMETRIES[2], GEOMETRIES[3], GEOMETRIES[5]] {
        for case in 0..cases {
            let s = Scratch::new("wattr-random");
            let src = s.0.join("tree");
            for d in ["d1", "d2"] {
                std::fs::create_dir_all(src.join(d)).unwrap();
            }
            for f in ["f1", "f2", "d1/f3"] {
                std::fs::write(src.join(f), f).unwrap();
            }
            let mut a: Vec<&str> = args.to_vec();
            a.extend(["-d", src.to_str().unwrap()]);
            let Some(img) = Image::mkfs(&a, size) else {
                return;
            };
            let paths = ["f1", "f2", "d1", "d2", "d1/f3"];
            let fs = img.open_rw();
            let files: Vec<InodeNo> = paths
                .iter()
                .map(|p| {
                    p.split('/')
                        .fold(ROOT_INO, |dir, n| fs.lookup(dir, n.as_bytes()).unwrap())
                })
                .collect();
            let mut models = vec![Model::new(); files.len()];
            let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(case + 1);
            run_sequence(&fs, &files, &mut models, seed, ops, name);
            fs.unmount().unwrap();
            drop(fs);
            img.fsck_clean();
            if !kernel {
                continue;
            }
            let path = s.0.join("img");
            std::fs::write(&path, img.bytes()).unwrap();
            let mnt = s.0.join("mnt");
            let _m = Mount::new(&path, &mnt, "ro,noload");
            for (p, model) in paths.iter().zip(&models) {
                let served = kernel_xattrs(&mnt.join(p));
                let listed: Vec<&str> = served.keys().map(String::as_str).collect();
                let want: Vec<&str> = model.keys().map(String::as_str).collect();
                assert_eq!(listed, want, "{name} case {case}: {p}");
            }
        }
    }
}
