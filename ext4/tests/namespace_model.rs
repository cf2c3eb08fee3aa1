//! Randomized namespace sequences against an in-memory model (proptest,
//! which shrinks a failure to a minimal sequence): create, mknod,
//! symlink, link, unlink, rename with its flags, evict, over a few
//! directories; every result (success or the error's kind) must be the
//! model's, and after each sequence e2fsck -fn is clean and the engine's
//! tree (names, types, link counts) is the model's. `FSVC_NS_CASES` sets
//! the number of sequences per geometry (default 8).

mod core_util;
mod ns_util;

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use fsvc_ext4::rename::rename_flags::{EXCHANGE, NOREPLACE, WHITEOUT};
use fsvc_ext4::testfs::Image;
use fsvc_ext4::{Error, FileKind, Fs, InodeNo, ROOT_INO};
use ns_util::*;

const NAMES: &[&str] = &["a", "b", "c", "dd", "e-long-name-of-some-length"];
/// Directories made by debugfs before the sequence (index 0 is the root).
const DIRS: &[&str] = &["", "d1", "d2"];

#[derive(Debug, Clone)]
enum Op {
    Create(usize, usize),
    Fifo(usize, usize),
    Symlink(usize, usize),
    Link(usize, usize, usize, usize),
    Unlink(usize, usize),
    Rename(usize, usize, usize, usize, u32),
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DIRS.len();
    let n = 0..NAMES.len();
    let flags = prop_oneof![Just(0), Just(NOREPLACE), Just(EXCHANGE), Just(WHITEOUT)];
    prop_oneof![
        3 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Create(d, n)),
        1 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Fifo(d, n)),
        1 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Symlink(d, n)),
        2 => (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
        3 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
        3 => (d.clone(), n.clone(), d, n, flags).prop_map(|(a, b, c, e, f)| Op::Rename(a, b, c, e, f)),
    ]
}

/// The model: per directory, name → node; per node, kind and links.
#[derive(Debug, Default)]
struct Model {
    dirs: Vec<BTreeMap<&'static str, u32>>,
    nodes: BTreeMap<u32, (FileKind, u32)>,
    next: u32,
}

impl Model {
    fn new() -> Model {
        Model {
            dirs: vec![BTreeMap::new(); DIRS.len()],
            ..Model::default()
        }
    }

    fn add(&mut self, d: usize, n: &'static str, kind: FileKind) -> Result<(), &'static str> {
        if self.dirs[d].contains_key(n) {
            return Err("Exists");
        }
        self.next += 1;
        self.nodes.insert(self.next, (kind, 1));
        self.dirs[d].insert(n, self.next);
        Ok(())
    }

    /// Drops one link of `id`; true when it was the last.
    fn drop_link(&mut self, id: u32) -> bool {
        let e = self.nodes.get_mut(&id).unwrap();
        e.1 -= 1;
        if e.1 == 0 {
            self.nodes.remove(&id);
            return true;
        }
        false
    }

    fn apply(&mut self, op: &Op) -> Result<(), &'static str> {
        match *op {
            Op::Create(d, n) => self.add(d, NAMES[n], FileKind::File),
            Op::Fifo(d, n) => self.add(d, NAMES[n], FileKind::Fifo),
            Op::Symlink(d, n) => self.add(d, NAMES[n], FileKind::Symlink),
            Op::Link(sd, sn, d, n) => {
                let id = *self.dirs[sd].get(NAMES[sn]).ok_or("NotFound")?;
                if self.dirs[d].contains_key(NAMES[n]) {
                    return Err("Exists");
                }
                self.nodes.get_mut(&id).unwrap().1 += 1;
                self.dirs[d].insert(NAMES[n], id);
                Ok(())
            }
            Op::Unlink(d, n) => {
                let id = self.dirs[d].remove(NAMES[n]).ok_or("NotFound")?;
                self.drop_link(id);
                Ok(())
            }
            Op::Rename(od, on, nd, nn, flags) => {
                let src = *self.dirs[od].get(NAMES[on]).ok_or("NotFound")?;
                let tgt = self.dirs[nd].get(NAMES[nn]).copied();
                if flags & NOREPLACE != 0 && tgt.is_some() {
                    return Err("Exists");
                }
                if tgt == Some(src) {
                    return Ok(());
                }
                if flags & EXCHANGE != 0 {
                    let t = tgt.ok_or("NotFound")?;
                    self.dirs[nd].insert(NAMES[nn], src);
                    self.dirs[od].insert(NAMES[on], t);
                    return Ok(());
                }
                self.dirs[od].remove(NAMES[on]);
                if let Some(t) = self.dirs[nd].insert(NAMES[nn], src) {
                    self.drop_link(t);
                }
                if flags & WHITEOUT != 0 {
                    self.add(od, NAMES[on], FileKind::CharDev)?;
                }
                Ok(())
            }
        }
    }
}

/// Runs `op` on the engine; evicts what it orphaned.
fn run(fs: &Fs, dirs: &[InodeNo], op: &Op) -> Result<(), Error> {
    let name = |n: usize| NAMES[n].as_bytes();
    match *op {
        Op::Create(d, n) => fs.create(&USER, dirs[d], name(n), 0o644).map(drop),
        Op::Fifo(d, n) => fs
            .mknod(&USER, dirs[d], name(n), S_IFIFO | 0o600, 0)
            .map(drop),
        Op::Symlink(d, n) => fs.symlink(&USER, dirs[d], name(n), b"../target").map(drop),
        Op::Link(sd, sn, d, n) => {
            let ino = {
                let _g = fs.read_guard()?;
                fs.lookup(dirs[sd], name(sn))?
            };
            fs.link(&USER, ino, dirs[d], name(n)).map(drop)
        }
        Op::Unlink(d, n) => {
            let u = fs.unlink(&USER, dirs[d], name(n))?;
            if u.orphaned {
                fs.evict(u.ino)?;
            }
            Ok(())
        }
        Op::Rename(od, on, nd, nn, flags) => {
            let r = fs.rename(&USER, dirs[od], name(on), dirs[nd], name(nn), flags)?;
            if let Some(u) = r.replaced.filter(|u| u.orphaned) {
                fs.evict(u.ino)?;
            }
            Ok(())
        }
    }
}

fn kind_name(e: &Error) -> String {
    format!("{e:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("")
        .to_string()
}

/// One sequence on a fresh image of `args`.
fn sequence(args: &[&str], ops: &[Op]) -> Result<(), TestCaseError> {
    let Some(img) = Image::mkfs(args, "16M") else {
        return Ok(());
    };
    let img = img.debugfs_write("mkdir /d1").debugfs_write("mkdir /d2");
    let fs = img.open_rw();
    let dirs: Vec<InodeNo> = DIRS
        .iter()
        .map(|d| {
            if d.is_empty() {
                ROOT_INO
            } else {
                lookup(&fs, ROOT_INO, d.as_bytes()).unwrap()
            }
        })
        .collect();
    let mut model = Model::new();
    for (i, op) in ops.iter().enumerate() {
        let want = model.apply(op);
        let got = run(&fs, &dirs, op).map_err(|e| kind_name(&e));
        prop_assert_eq!(got, want.map_err(str::to_string), "step {} {:?}", i, op);
    }
    fs.unmount().unwrap();
    let tree = check_image(&img, &format!("{args:?}"));
    // The model's tree: path → (kind, links).
    let mut want = BTreeMap::new();
    for (d, entries) in model.dirs.iter().enumerate() {
        for (name, id) in entries {
            let path = if DIRS[d].is_empty() {
                format!("/{name}")
            } else {
                format!("/{}/{name}", DIRS[d])
            };
            want.insert(path, model.nodes[id]);
        }
    }
    let got: BTreeMap<String, (FileKind, u32)> = tree
        .iter()
        .filter(|(p, _)| !p.starts_with("/lost+found") && !DIRS.contains(&&p[1..]))
        .map(|(p, n)| (p.clone(), (n.kind, n.nlink)))
        .collect();
    prop_assert_eq!(got, want);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("FSVC_NS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

#[test]
fn random_namespace_sequences_match_the_model() {
    // (geometry) — the oracles are the slow part: a few of the geometries.
    let geometries: &[&[&str]] = &[
        &["-b", "1024"],
        &["-b", "4096", "-O", "^metadata_csum"],
        &["-t", "ext3", "-b", "1024"],
    ];
    for args in geometries {
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(op(), 1..40), |ops| {
                sequence(args, &ops)
            })
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
}
