//! fsvc-docgen: writes fsvc-mount's man page and shell completions, made
//! from the same clap definition the helper parses its argv with, so the
//! documentation cannot drift from the code. Used by the install step:
//! `fsvc-docgen OUTDIR` writes `OUTDIR/fsvc-mount.8` and
//! `OUTDIR/completions/{fsvc-mount.bash,_fsvc-mount,fsvc-mount.fish}`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap_complete::Shell;

fn run() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| std::io::Error::other("usage: fsvc-docgen OUTDIR"))?;
    std::fs::create_dir_all(out.join("completions"))?;
    let cmd = fsvc_helper::cli::mount_command();
    let man = clap_mangen::Man::new(cmd.clone()).section("8");
    let mut page = Vec::new();
    man.render(&mut page)?;
    std::fs::write(out.join("fsvc-mount.8"), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut c = cmd.clone();
        clap_complete::generate_to(shell, &mut c, "fsvc-mount", out.join("completions"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsvc-docgen: {e}");
            ExitCode::from(1)
        }
    }
}
