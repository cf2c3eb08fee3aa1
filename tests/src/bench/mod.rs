//! The benchmark command's engine (`fsvc-bench`): one generated ext4 image,
//! measured in one run on the kernel's ext4, fuse2fs and fsvc.
//!
//! Method: for every repetition, every workload and every system, a fresh
//! mount (FUSE servers keep their own caches, so a cold pass needs a new
//! server) and `drop_caches`, then a cold pass and a warm pass on the same
//! mount. Systems are interleaved inside each repetition so that machine
//! noise spreads over all of them; the median of the repetitions is
//! reported. Peak RSS is the largest VmHWM seen of any FUSE server process.
//!
//! Invariants: a failing or missing system never aborts the run; its cells
//! say why. Results are never used as test assertions (DESIGN.md: timings are
//! not asserted).

pub mod mounts;
pub mod report;
pub mod tree;
pub mod workload;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};

use mounts::{Mount, System, Tools};
use workload::Workload;

/// A pass that takes longer than this is a hang: the FUSE connection is
/// aborted so that the pass fails instead of blocking the run forever.
const PASS_TIMEOUT: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Total size of the large files, MiB.
    pub size_mib: u64,
    /// Number of small files.
    pub files: usize,
    /// Number of directories the small files are spread over.
    pub dirs: usize,
    /// Repetitions of every measurement (the median is reported).
    pub reps: usize,
    /// Working directory (tree, image, mountpoint); removed afterwards unless `keep`.
    pub workdir: PathBuf,
    /// Keep the working directory.
    pub keep: bool,
    /// Where the tools are.
    pub tools: Tools,
}

/// Whether a pass ran on an empty cache or right after another pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Temp {
    /// After a fresh mount and drop_caches.
    Cold,
    /// Second pass on the same mount.
    Warm,
}

impl Temp {
    /// Name in the table and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Temp::Cold => "cold",
            Temp::Warm => "warm",
        }
    }
}

/// The outcome of one (row, system) cell.
#[derive(Debug, Clone)]
pub enum Cell {
    /// Samples (one per repetition).
    Samples(Vec<f64>),
    /// The measurement failed: why.
    Failed(String),
    /// The system is not available here: why.
    Missing(String),
}

impl Cell {
    /// The median of the samples, if any.
    pub fn median(&self) -> Option<f64> {
        match self {
            Cell::Samples(v) if !v.is_empty() => {
                let mut v = v.clone();
                v.sort_by(|a, b| a.total_cmp(b));
                let n = v.len();
                Some(if n % 2 == 1 {
                    v[n / 2]
                } else {
                    (v[n / 2 - 1] + v[n / 2]) / 2.0
                })
            }
            _ => None,
        }
    }
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// The configuration that produced it.
    pub config: Config,
    /// Image size in bytes.
    pub image_bytes: u64,
    /// Block and inode size of the image.
    pub geometry: tree::Geometry,
    /// Rates per (workload, temperature) and system.
    pub rates: BTreeMap<(Workload, Temp), BTreeMap<System, Cell>>,
    /// Peak RSS (KiB) of the FUSE servers.
    pub peak_rss_kib: BTreeMap<System, Cell>,
}

/// Empties the page, dentry and inode caches (after writing back dirty data).
pub fn drop_caches() -> Result<()> {
    nix::unistd::sync();
    fs::write("/proc/sys/vm/drop_caches", "3").context("writing /proc/sys/vm/drop_caches")
}

/// Aborts FUSE connection `conn` if the guard is not dropped within `timeout`.
struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    fn arm(conn: Option<u32>, timeout: Duration) -> Watchdog {
        let Some(conn) = conn else {
            return Watchdog(None);
        };
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                eprintln!("fsvc-bench: pass hung for {timeout:?}: aborting FUSE connection {conn}");
                let _ = fs::write(format!("/sys/fs/fuse/connections/{conn}/abort"), "1");
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// One repetition of one workload on one system: (cold, warm) rates and the
/// server's peak RSS.
fn measure_once(
    system: System,
    w: Workload,
    image: &Path,
    mnt: &Path,
    layout: &tree::Layout,
    tools: &Tools,
) -> Result<(f64, f64, Option<u64>)> {
    let m = Mount::new(system, image, mnt, tools)?;
    drop_caches()?;
    let cold = {
        let _dog = Watchdog::arm(m.fuse_conn(), PASS_TIMEOUT);
        w.pass(m.dir(), layout).context("cold pass")?
    };
    let warm = {
        let _dog = Watchdog::arm(m.fuse_conn(), PASS_TIMEOUT);
        w.pass(m.dir(), layout).context("warm pass")?
    };
    let rss = m.peak_rss_kib();
    m.unmount()?;
    Ok((cold, warm, rss))
}

fn push(cell: &mut Cell, v: f64) {
    if let Cell::Samples(s) = cell {
        s.push(v);
    }
}

/// Builds the image and measures everything. Progress goes to stderr.
pub fn run(config: &Config) -> Result<Results> {
    let work = &config.workdir;
    fs::create_dir_all(work)?;
    let tree_dir = work.join("tree");
    let image = work.join("bench.ext4");
    let mnt = work.join("mnt");
    if tree_dir.exists() {
        fs::remove_dir_all(&tree_dir)?;
    }
    fs::create_dir_all(&mnt)?;

    eprintln!(
        "fsvc-bench: generating {} MiB in large files and {} small files under {}",
        config.size_mib,
        config.files,
        tree_dir.display()
    );
    let layout = tree::generate(&tree_dir, config.size_mib, config.files, config.dirs)?;
    let geometry = tree::make_image(&tree_dir, &image, &layout)?;
    // The tree is no longer needed and would double the disk footprint.
    fs::remove_dir_all(&tree_dir)?;
    let image_bytes = fs::metadata(&image)?.len();

    let mut rates: BTreeMap<(Workload, Temp), BTreeMap<System, Cell>> = BTreeMap::new();
    let mut rss: BTreeMap<System, Cell> = BTreeMap::new();
    for s in System::ALL {
        let init = match config.tools.missing(s) {
            Some(why) => Cell::Missing(why),
            None => Cell::Samples(Vec::new()),
        };
        for w in Workload::ALL {
            for t in [Temp::Cold, Temp::Warm] {
                rates.entry((w, t)).or_default().insert(s, init.clone());
            }
        }
        let rss_init = match (&init, s) {
            (_, System::Kernel) => Cell::Missing("in-kernel".into()),
            _ => init.clone(),
        };
        rss.insert(s, rss_init);
    }

    for rep in 0..config.reps {
        for w in Workload::ALL {
            for s in System::ALL {
                if !matches!(rates[&(w, Temp::Cold)][&s], Cell::Samples(_)) {
                    continue;
                }
                eprintln!(
                    "fsvc-bench: rep {}/{} {} on {}",
                    rep + 1,
                    config.reps,
                    w.name(),
                    s.name()
                );
                match measure_once(s, w, &image, &mnt, &layout, &config.tools) {
                    Ok((cold, warm, peak)) => {
                        push(
                            rates
                                .get_mut(&(w, Temp::Cold))
                                .unwrap()
                                .get_mut(&s)
                                .unwrap(),
                            cold,
                        );
                        push(
                            rates
                                .get_mut(&(w, Temp::Warm))
                                .unwrap()
                                .get_mut(&s)
                                .unwrap(),
                            warm,
                        );
                        if let (Some(kib), Some(cell)) = (peak, rss.get_mut(&s)) {
                            match cell {
                                Cell::Samples(v) if v.is_empty() => v.push(kib as f64),
                                Cell::Samples(v) => v[0] = v[0].max(kib as f64),
                                _ => {}
                            }
                        }
                    }
                    Err(e) => {
                        let why = format!("{e:#}");
                        eprintln!("fsvc-bench: {} on {} failed: {why}", w.name(), s.name());
                        for t in [Temp::Cold, Temp::Warm] {
                            rates
                                .get_mut(&(w, t))
                                .unwrap()
                                .insert(s, Cell::Failed(why.clone()));
                        }
                    }
                }
            }
        }
    }
    for (s, cell) in rss.iter_mut() {
        if matches!(cell, Cell::Samples(v) if v.is_empty()) && *s != System::Kernel {
            *cell = Cell::Failed("server process not found".into());
        }
    }

    if !config.keep {
        let _ = fs::remove_dir_all(work);
    }
    Ok(Results {
        config: config.clone(),
        image_bytes,
        geometry,
        rates,
        peak_rss_kib: rss,
    })
}
