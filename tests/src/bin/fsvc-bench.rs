//! `fsvc-bench`: measures sequential read, stat and readdir, cold and warm,
//! on one generated ext4 image through the kernel's ext4, fuse2fs and fsvc,
//! and prints a table with the ratios (see `fsvc_tests::bench`). Needs root
//! (loop devices, mounts, drop_caches).
//!
//! Usage: `fsvc-bench [--size-mib N] [--files N] [--dirs N] [--reps N]
//! [--quick] [--json FILE] [--workdir DIR] [--keep] [--fsvc-mount PATH]`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use fsvc_tests::bench::{self, mounts, report, Config};

const USAGE: &str = "usage: fsvc-bench [--size-mib N] [--files N] [--dirs N] [--reps N] [--quick] \
[--json FILE] [--workdir DIR] [--keep] [--fsvc-mount PATH]";

fn parse() -> Result<(Config, Option<PathBuf>)> {
    let mut size_mib = 256u64;
    let mut files = 5000usize;
    let mut dirs = 20usize;
    let mut reps = 3usize;
    let mut quick = false;
    let mut json = None;
    let mut workdir = PathBuf::from(format!("/tmp/fsvc-bench-{}", std::process::id()));
    let mut keep = false;
    // fsvc-mount lives next to this binary in target/<profile>/.
    let exe = std::env::current_exe().context("locating fsvc-bench")?;
    let mut fsvc_mount = exe.with_file_name("fsvc-mount");
    let (mut size_set, mut files_set, mut reps_set) = (false, false, false);

    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--size-mib" => (size_mib, size_set) = (val()?.parse()?, true),
            "--files" => (files, files_set) = (val()?.parse()?, true),
            "--dirs" => dirs = val()?.parse()?,
            "--reps" => (reps, reps_set) = (val()?.parse()?, true),
            "--quick" => quick = true,
            "--json" => json = Some(PathBuf::from(val()?)),
            "--workdir" => workdir = PathBuf::from(val()?),
            "--keep" => keep = true,
            "--fsvc-mount" => fsvc_mount = PathBuf::from(val()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    if quick {
        size_mib = if size_set { size_mib } else { 32 };
        files = if files_set { files } else { 1000 };
        reps = if reps_set { reps } else { 1 };
    }
    if reps == 0 || dirs == 0 {
        bail!("--reps and --dirs must be at least 1");
    }
    let tools = mounts::Tools {
        fsvc_mount,
        fuse2fs: mounts::which("fuse2fs"),
        fsvc_log: workdir.join("fsvc-server.log"),
    };
    Ok((
        Config {
            size_mib,
            files,
            dirs,
            reps,
            workdir,
            keep,
            tools,
        },
        json,
    ))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsvc-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let (config, json) = parse()?;
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root (loop devices, mounts, drop_caches)");
    }
    // fsvc-mount exits once mounted and its server is orphaned: as a
    // subreaper we inherit it, so we can read its RSS and reap it.
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    let results = bench::run(&config)?;
    print!("{}", report::table(&results));
    if let Some(path) = json {
        std::fs::write(&path, report::json_lines(&results))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
