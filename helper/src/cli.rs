//! The command line, defined once with clap: parsed here, and turned into
//! the fsvc-mount(8) man page and shell completions by `fsvc-docgen`.
//!
//! Two argv forms share one binary:
//! - **mount**, as mount(8) runs a helper: `mount.service SOURCE DIR
//!   [-sfnv] [-N NS] [-o OPTS] [-t service.ext4]`, flags anywhere, also
//!   typed by people as `fsvc-mount SOURCE DIR -o ro`;
//! - **unmount**: `fsvc-mount -u DIR [-l] [-v]` typed by people, and the
//!   argv umount(8) gives a umount helper (`umount.fuse.fsvc DIR [-nlfvr]
//!   [-t TYPE] [-N NS]`), chosen by the program name.
//!
//! Parsing is pure (no IO) and table-tested. Errors are one line; usage
//! errors exit 1, as mount(8) expects of its helpers (clap's own code, 2,
//! means "system error" to mount(8)).

use clap::{ArgAction, CommandFactory, Parser};
use fsvc_protocol::FsType;

/// mount(8): incorrect invocation or permissions.
pub const EXIT_USAGE: u8 = 1;
/// mount(8): system error (out of memory, cannot fork, ...).
pub const EXIT_SYSTEM: u8 = 2;
/// mount(8): mount (or unmount) failure.
pub const EXIT_MOUNT_FAILURE: u8 = 32;

/// Program names (argv\[0\] basenames) that select the unmount form.
pub const UMOUNT_HELPER_PREFIX: &str = "umount.";
/// The program name (argv\[0\] basename) of the mount service: the same
/// binary, started by systemd (`fsvc-mountd.socket`).
pub const MOUNTD_NAME: &str = "fsvc-mountd";

const AFTER_HELP: &str = "\
Exit status (as mount(8) expects): 0 mounted (or unmounted), 1 usage error or
permission denied (a denial names the policy rule), 32 mount or unmount failure.

Installed as /sbin/mount.service, mount(8) uses it for the service.ext4,
service.ext3 and service.ext2 types (also in /etc/fstab), and umount(8) uses
/sbin/umount.fuse.fsvc for the mounts it made. See fsvc-mount(8).";

/// The mount form (also the man page's synopsis).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "fsvc-mount",
    version,
    about = "Mount ext2/ext3/ext4 through a sandboxed userspace server",
    long_about = "Mount an ext2, ext3 or ext4 filesystem (a block device or an image file) \
through FUSE, with the filesystem parsed by fsvc-server, an unprivileged, Landlock- and \
seccomp-sandboxed process, instead of the kernel. fsvc-mount opens the source and /dev/fuse, \
makes the mount and hands both to the server; it never reads the filesystem itself.\n\n\
`fsvc-mount -u DIR` unmounts and waits until the server has written everything and released \
the device.",
    after_help = AFTER_HELP
)]
pub struct MountCli {
    /// The device or image file to mount (with -u: the mountpoint).
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,
    /// The directory to mount on.
    #[arg(value_name = "DIR")]
    pub dir: Option<String>,
    /// Mount options, comma-separated (repeatable): VFS flags (ro, rw, nosuid, nodev,
    /// noexec, noatime, ...), mount(8) words (defaults, user, noauto, ...) and
    /// filesystem options (norecovery, errors=, cache_size=, allow_other, ...).
    #[arg(short = 'o', long = "options", value_name = "OPTS", action = ArgAction::Append)]
    pub options: Vec<String>,
    /// Filesystem type: service.ext4 (default), service.ext3, service.ext2, or ext4, ext3, ext2.
    #[arg(short = 't', long = "types", value_name = "TYPE")]
    pub fs_type: Option<String>,
    /// Verbose: say what is done (the server logs more too).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Fake: check the arguments, mountpoint and source, mount nothing.
    #[arg(short = 'f', long = "fake")]
    pub fake: bool,
    /// Do not write /etc/mtab (accepted for mount(8); there is none).
    #[arg(short = 'n', long = "no-mtab")]
    pub no_mtab: bool,
    /// Sloppy (accepted for mount(8)); unknown filesystem options are still refused.
    #[arg(short = 's', long = "sloppy")]
    pub sloppy: bool,
    /// Mount namespace to mount in (from mount(8) -N): not supported, refused.
    #[arg(short = 'N', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
    /// Unmount DIR (given as the only argument) and wait for the server to finish.
    #[arg(short = 'u', long = "unmount")]
    pub unmount: bool,
    /// Detached mount: attach it nowhere and pass its fd (SCM_RIGHTS) to the
    /// SOCK_SEQPACKET socket listening at SOCKET; only SOURCE is given. The
    /// mount lives until its fd and every namespace it was attached in are gone.
    #[arg(long = "detached", value_name = "SOCKET", conflicts_with = "unmount")]
    pub detached: Option<String>,
    /// With --detached: idmap the mount into the user namespace FILE (e.g.
    /// /proc/PID/ns/user, opened as the caller), which the caller must own.
    #[arg(long = "userns", value_name = "FILE", requires = "detached")]
    pub userns: Option<String>,
    /// With -u: lazy unmount (detach now; the server finishes when the last file closes).
    #[arg(short = 'l', long = "lazy", requires = "unmount")]
    pub lazy: bool,
}

/// The argv umount(8) gives a umount helper (`/sbin/umount.fuse.fsvc`).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "umount.fuse.fsvc",
    version,
    about = "umount(8) helper for fsvc mounts: unmount, then wait for the server"
)]
pub struct UmountCli {
    /// The mountpoint.
    #[arg(value_name = "DIR")]
    pub dir: String,
    /// Do not write /etc/mtab (accepted).
    #[arg(short = 'n')]
    pub no_mtab: bool,
    /// Lazy unmount.
    #[arg(short = 'l')]
    pub lazy: bool,
    /// Force: abort the FUSE connection first.
    #[arg(short = 'f')]
    pub force: bool,
    /// Verbose.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Remount read-only if the unmount fails (not supported: refused).
    #[arg(short = 'r')]
    pub read_only: bool,
    /// The mount's type (fuse.fsvc.ext4 ...), informational.
    #[arg(short = 't', value_name = "TYPE")]
    pub fs_type: Option<String>,
    /// Mount namespace (not supported: refused).
    #[arg(short = 'N', value_name = "NS")]
    pub namespace: Option<String>,
}

/// Where a mount goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// On this directory (as given).
    Dir(String),
    /// Nowhere: the mount fd is passed to the socket at this path (`--detached`).
    Detached(String),
}

/// What a mount command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The source (device or image file) as given.
    pub source: String,
    /// Where the mount goes.
    pub target: Target,
    /// The filesystem type (`-t`, default ext4).
    pub fs_type: FsType,
    /// The raw option string (several `-o` are joined with commas).
    pub options: String,
    /// `-v`.
    pub verbose: bool,
    /// `-f`: check what can be checked without a server, mount nothing.
    pub fake: bool,
    /// `--userns FILE`: idmap the detached mount into this user namespace.
    pub userns: Option<String>,
}

/// What an unmount command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmountArgs {
    /// The mountpoint as given.
    pub mountpoint: String,
    /// `-l`: detach now, do not wait for open files.
    pub lazy: bool,
    /// `-f`: abort the FUSE connection (MNT_FORCE).
    pub force: bool,
    /// `-v`.
    pub verbose: bool,
}

/// The parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Mount.
    Mount(Args),
    /// Unmount.
    Unmount(UnmountArgs),
    /// `--help`/`--version`: print this on stdout and exit 0.
    Print(String),
    /// Serve one mount service connection (argv\[0\] is [`MOUNTD_NAME`]).
    Serve,
}

/// A usage error: one line, exit code 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The one-line usage summary printed with usage errors.
pub const USAGE: &str =
    "usage: fsvc-mount SOURCE DIR [-o OPTIONS] [-t service.ext4|service.ext3|service.ext2] [-n] [-v] [-s] [-f] | fsvc-mount --detached SOCKET SOURCE [-o OPTIONS] [-t TYPE] | fsvc-mount -u DIR [-l]";

/// Parses the fs type given to `-t`: `service.extN`, `extN`, or
/// `fuse.extN`/`fuseblk.extN`/`fuse.fsvc.extN` (how tools spell a FUSE subtype).
pub fn parse_fs_type(t: &str) -> Result<FsType, UsageError> {
    let name = t
        .strip_prefix("service.")
        .or_else(|| t.strip_prefix("fuse.fsvc."))
        .or_else(|| t.strip_prefix("fuse."))
        .or_else(|| t.strip_prefix("fuseblk."))
        .unwrap_or(t);
    FsType::from_name(name).ok_or_else(|| {
        UsageError(format!(
            "unsupported filesystem type '{t}' (use service.ext4, service.ext3 or service.ext2)"
        ))
    })
}

/// Whether `argv0` names the umount helper form.
pub fn is_umount_helper(argv0: &str) -> bool {
    argv0
        .rsplit('/')
        .next()
        .is_some_and(|base| base.starts_with(UMOUNT_HELPER_PREFIX))
}

/// Turns clap's error into ours: help and version are printed, not errors;
/// the rest becomes one line (clap's first line, without its "error: ").
fn from_clap(e: clap::Error) -> Result<Command, UsageError> {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Ok(Command::Print(e.to_string())),
        _ => {
            // clap's text: "error: ...", maybe detail lines, then a blank
            // line and "Usage: ...". Keep what comes before the usage, on
            // one line (ours follows).
            let text = e.to_string();
            let what: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            let what = what.join(" ");
            let what = what.trim_start_matches("error: ");
            Err(UsageError(format!("{what}; {USAGE}")))
        }
    }
}

fn namespace_refused(ns: &str) -> UsageError {
    UsageError(format!(
        "-N {ns}: mounting in another mount namespace is not supported"
    ))
}

/// Parses argv *including* the program name.
pub fn parse<I, S>(argv: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
    let argv0 = argv.first().cloned().unwrap_or_default();
    if argv0.rsplit('/').next() == Some(MOUNTD_NAME) {
        return match argv.len() {
            1 => Ok(Command::Serve),
            _ => Err(UsageError(format!(
                "{MOUNTD_NAME} takes no arguments: systemd starts it for each connection of fsvc-mountd.socket"
            ))),
        };
    }
    if is_umount_helper(&argv0) {
        let c = match UmountCli::try_parse_from(&argv) {
            Ok(c) => c,
            Err(e) => return from_clap(e),
        };
        if let Some(ns) = c.namespace {
            return Err(namespace_refused(&ns));
        }
        if c.read_only {
            return Err(UsageError(
                "-r (remount read-only when busy) is not supported for fsvc mounts".into(),
            ));
        }
        if let Some(t) = &c.fs_type {
            parse_fs_type(t)?;
        }
        return Ok(Command::Unmount(UnmountArgs {
            mountpoint: nonempty(c.dir)?,
            lazy: c.lazy,
            force: c.force,
            verbose: c.verbose,
        }));
    }
    let c = match MountCli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => return from_clap(e),
    };
    if let Some(ns) = &c.namespace {
        return Err(namespace_refused(ns));
    }
    let fs_type = c.fs_type.as_deref().map(parse_fs_type).transpose()?;
    if c.unmount {
        return match (c.source, c.dir) {
            (Some(dir), None) => Ok(Command::Unmount(UnmountArgs {
                mountpoint: nonempty(dir)?,
                lazy: c.lazy,
                force: false,
                verbose: c.verbose,
            })),
            _ => Err(UsageError(format!(
                "-u takes exactly one argument, the mountpoint; {USAGE}"
            ))),
        };
    }
    let (source, target) = match (c.source, c.dir, c.detached) {
        (Some(s), None, Some(sock)) => (nonempty(s)?, Target::Detached(nonempty(sock)?)),
        (_, _, Some(_)) => {
            return Err(UsageError(format!(
                "--detached takes SOURCE only (no DIR); {USAGE}"
            )))
        }
        (Some(s), Some(d), None) => (nonempty(s)?, Target::Dir(nonempty(d)?)),
        _ => return Err(UsageError(format!("SOURCE and DIR are required; {USAGE}"))),
    };
    let options: Vec<String> = c.options.into_iter().filter(|o| !o.is_empty()).collect();
    Ok(Command::Mount(Args {
        source,
        target,
        fs_type: fs_type.unwrap_or(FsType::Ext4),
        options: options.join(","),
        verbose: c.verbose,
        fake: c.fake,
        userns: c.userns,
    }))
}

fn nonempty(s: String) -> Result<String, UsageError> {
    if s.is_empty() {
        Err(UsageError(
            "SOURCE, DIR and SOCKET must not be empty".to_string(),
        ))
    } else {
        Ok(s)
    }
}

/// The mount form's clap command (for the man page and completions).
pub fn mount_command() -> clap::Command {
    MountCli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(argv: &[&str]) -> Args {
        let mut full = vec!["mount.service"];
        full.extend_from_slice(argv);
        match parse(full.iter().copied()) {
            Ok(Command::Mount(a)) => a,
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    #[test]
    fn mount8_argv_shapes() {
        let cases: &[(&[&str], FsType, &str, bool)] = &[
            (&["/img", "/mnt"], FsType::Ext4, "", false),
            (
                &["/img", "/mnt", "-o", "ro,noatime", "-t", "service.ext3"],
                FsType::Ext3,
                "ro,noatime",
                false,
            ),
            (
                &["/img", "/mnt", "-n", "-v", "-t", "service.ext2"],
                FsType::Ext2,
                "",
                true,
            ),
            (
                &["-t", "ext4", "-o", "ro", "/img", "/mnt"],
                FsType::Ext4,
                "ro",
                false,
            ),
            (&["/img", "/mnt", "-vno", "ro"], FsType::Ext4, "ro", true),
            (
                &["/img", "/mnt", "-oro", "-o", "noexec", "-tservice.ext4"],
                FsType::Ext4,
                "ro,noexec",
                false,
            ),
            (
                &["/img", "/mnt", "--options=ro", "--types", "fuse.ext2"],
                FsType::Ext2,
                "ro",
                false,
            ),
            (
                &["/img", "/mnt", "-t", "fuse.fsvc.ext3"],
                FsType::Ext3,
                "",
                false,
            ),
            (&["-s", "-f", "--", "-img", "/mnt"], FsType::Ext4, "", false),
        ];
        for (argv, ty, opts, verbose) in cases {
            let a = mount(argv);
            assert_eq!(a.fs_type, *ty, "{argv:?}");
            assert_eq!(a.options, *opts, "{argv:?}");
            assert_eq!(a.verbose, *verbose, "{argv:?}");
        }
        let a = mount(&["-s", "-f", "--", "-img", "/mnt"]);
        assert_eq!(a.source, "-img");
        assert_eq!(a.target, Target::Dir("/mnt".into()));
        assert!(a.fake);
        let a = mount(&[
            "--detached",
            "/run/rt.sock",
            "--userns",
            "/proc/7/ns/user",
            "/img",
        ]);
        assert_eq!(a.userns.as_deref(), Some("/proc/7/ns/user"));
        let a = mount(&["--detached", "/run/rt.sock", "-o", "ro", "/img"]);
        assert_eq!(a.userns, None);
        assert_eq!(a.source, "/img");
        assert_eq!(a.target, Target::Detached("/run/rt.sock".into()));
        assert_eq!(a.options, "ro");
    }

    #[test]
    fn unmount_forms() {
        type Case = (&'static [&'static str], &'static str, bool, bool);
        let cases: &[Case] = &[
            (&["fsvc-mount", "-u", "/mnt"], "/mnt", false, false),
            (&["fsvc-mount", "/mnt", "-u", "-l"], "/mnt", true, false),
            (&["/sbin/umount.fuse.fsvc", "/mnt"], "/mnt", false, false),
            (
                &[
                    "umount.fuse.fsvc",
                    "/mnt",
                    "-n",
                    "-l",
                    "-t",
                    "fuse.fsvc.ext4",
                ],
                "/mnt",
                true,
                false,
            ),
            (
                &["umount.fuse.fsvc", "/mnt", "-f", "-v"],
                "/mnt",
                false,
                true,
            ),
        ];
        for (argv, dir, lazy, force) in cases {
            match parse(argv.iter().copied()) {
                Ok(Command::Unmount(u)) => {
                    assert_eq!(u.mountpoint, *dir, "{argv:?}");
                    assert_eq!((u.lazy, u.force), (*lazy, *force), "{argv:?}");
                }
                other => panic!("{argv:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_service_name_selects_the_service() {
        assert_eq!(parse(["/usr/libexec/fsvc/fsvc-mountd"]), Ok(Command::Serve));
        assert!(parse(["fsvc-mountd", "/img"]).is_err());
        assert!(matches!(
            parse(["fsvc-mountd-not", "/img", "/mnt"]),
            Ok(Command::Mount(_))
        ));
    }

    #[test]
    fn help_and_version_print() {
        for argv in [
            &["fsvc-mount", "--help"][..],
            &["fsvc-mount", "-h"],
            &["fsvc-mount", "--version"],
            &["fsvc-mount", "-V"],
            &["umount.fuse.fsvc", "--help"],
        ] {
            match parse(argv.iter().copied()) {
                Ok(Command::Print(text)) => assert!(!text.is_empty(), "{argv:?}"),
                other => panic!("{argv:?}: {other:?}"),
            }
        }
        let Ok(Command::Print(help)) = parse(["fsvc-mount", "--help"]) else {
            panic!("help")
        };
        assert!(help.contains("Usage: fsvc-mount") && help.contains("-o, --options <OPTS>"));
        let Ok(Command::Print(v)) = parse(["fsvc-mount", "--version"]) else {
            panic!("version")
        };
        assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");
    }

    #[test]
    fn usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "required"),
            (&["/img"], "required"),
            (&["/img", "/mnt", "/x"], "unexpected argument '/x'"),
            (&["/img", "/mnt", "-o"], "-o"),
            (
                &["/img", "/mnt", "-t", "service.xfs"],
                "unsupported filesystem type 'service.xfs'",
            ),
            (
                &["/img", "/mnt", "-t", "btrfs"],
                "unsupported filesystem type",
            ),
            (&["/img", "/mnt", "-x"], "unexpected argument '-x'"),
            (
                &["/img", "/mnt", "--bogus"],
                "unexpected argument '--bogus'",
            ),
            (&["/img", "/mnt", "-N", "/proc/1/ns/mnt"], "namespace"),
            (&["", "/mnt"], "must not be empty"),
            (&["-u", "/a", "/b"], "exactly one argument"),
            (&["-u"], "exactly one argument"),
            (&["/img", "/mnt", "-l"], "--unmount"),
            (&["--detached", "/s", "/img", "/mnt"], "SOURCE only"),
            (&["--detached", "/s"], "SOURCE only"),
            (&["--detached", "", "/img"], "must not be empty"),
            (&["-u", "/mnt", "--detached", "/s"], "cannot be used with"),
            (
                &["--userns", "/proc/1/ns/user", "/img", "/mnt"],
                "--detached",
            ),
        ];
        for (argv, want) in cases {
            let mut full = vec!["fsvc-mount"];
            full.extend_from_slice(argv);
            let err = parse(full.iter().copied()).expect_err(&format!("{argv:?} must fail"));
            assert!(err.0.contains(want), "{argv:?}: {err} lacks {want:?}");
            assert!(!err.0.contains('\n'), "one line: {err}");
        }
        for argv in [
            &["umount.fuse.fsvc"][..],
            &["umount.fuse.fsvc", "/mnt", "-r"],
            &["umount.fuse.fsvc", "/mnt", "-N", "/proc/1/ns/mnt"],
        ] {
            let err = parse(argv.iter().copied()).expect_err("umount usage error");
            assert!(!err.0.contains('\n'), "one line: {err}");
        }
    }
}
