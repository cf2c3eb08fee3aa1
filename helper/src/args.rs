//! Command-line parsing: the argv mount(8) gives a helper, and the same
//! argv typed by a person.
//!
//! mount(8) runs `/sbin/mount.service SOURCE DIR [-sfnv] [-N NS] [-o OPTS]
//! [-t service.ext4]`; people may put the flags anywhere. Parsing is pure
//! (no IO) so it is tested table-driven; every error is one line that says
//! what was wrong.

use fsvc_protocol::FsType;

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The source (device or image file) as given.
    pub source: String,
    /// The mountpoint as given.
    pub mountpoint: String,
    /// The filesystem type (`-t`, default ext4).
    pub fs_type: FsType,
    /// The raw option string (`-o`, several `-o` are joined with commas).
    pub options: String,
    /// `-v`: say more.
    pub verbose: bool,
    /// `-f`: fake; check everything that can be checked without a server, mount nothing.
    pub fake: bool,
    /// `-n`: do not write /etc/mtab (always true on modern systems; accepted).
    pub no_mtab: bool,
    /// `-s`: sloppy; accepted for mount(8) compatibility (unknown fs options
    /// are still refused by the server, which alone knows them).
    pub sloppy: bool,
}

/// A usage error: one line, exit code 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The one-line usage summary printed with usage errors.
pub const USAGE: &str =
    "usage: fsvc-mount SOURCE DIR [-o OPTIONS] [-t service.ext4|service.ext3|service.ext2] [-n] [-v] [-s] [-f]";

/// Parses the fs type given to `-t`: `service.extN`, `extN`, or
/// `fuse.extN`/`fuseblk.extN` (how some tools spell a FUSE subtype).
pub fn parse_fs_type(t: &str) -> Result<FsType, UsageError> {
    let name = t
        .strip_prefix("service.")
        .or_else(|| t.strip_prefix("fuse."))
        .or_else(|| t.strip_prefix("fuseblk."))
        .unwrap_or(t);
    FsType::from_name(name).ok_or_else(|| {
        UsageError(format!(
            "unsupported filesystem type '{t}' (use service.ext4, service.ext3 or service.ext2)"
        ))
    })
}

/// Parses argv without the program name.
pub fn parse<I, S>(argv: I) -> Result<Args, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut it = argv.into_iter().map(Into::into);
    let mut positional: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut fs_type = None;
    let (mut verbose, mut fake, mut no_mtab, mut sloppy) = (false, false, false, false);
    let mut only_positional = false;

    while let Some(arg) = it.next() {
        if only_positional || arg == "-" || !arg.starts_with('-') {
            positional.push(arg);
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            // Long forms people type by habit from mount(8).
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            match name {
                "options" | "types" => {
                    let value = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| UsageError(format!("option --{name} needs a value")))?,
                    };
                    if name == "options" {
                        options.push(value);
                    } else {
                        fs_type = Some(parse_fs_type(&value)?);
                    }
                }
                "verbose" => verbose = true,
                "fake" => fake = true,
                "no-mtab" => no_mtab = true,
                "sloppy" => sloppy = true,
                _ => return Err(UsageError(format!("unknown option --{name}; {USAGE}"))),
            }
            continue;
        }
        // A cluster of short flags, the last of which may take a value
        // (`-vo ro`, `-oro`, `-text4`).
        let flags: Vec<char> = arg.chars().skip(1).collect();
        let mut i = 0;
        while let Some(&c) = flags.get(i) {
            i += 1;
            match c {
                'v' => verbose = true,
                'f' => fake = true,
                'n' => no_mtab = true,
                's' => sloppy = true,
                'o' | 't' | 'N' => {
                    let rest: String = flags.get(i..).unwrap_or_default().iter().collect();
                    let value = if rest.is_empty() {
                        it.next()
                            .ok_or_else(|| UsageError(format!("option -{c} needs a value")))?
                    } else {
                        rest
                    };
                    match c {
                        'o' => options.push(value),
                        't' => fs_type = Some(parse_fs_type(&value)?),
                        _ => {
                            return Err(UsageError(format!(
                                "-N {value}: mounting in another mount namespace is not supported"
                            )))
                        }
                    }
                    break;
                }
                'h' => return Err(UsageError(USAGE.to_string())),
                _ => return Err(UsageError(format!("unknown option -{c}; {USAGE}"))),
            }
        }
    }

    let mut positional = positional.into_iter();
    let (source, mountpoint) = match (positional.next(), positional.next(), positional.next()) {
        (Some(s), Some(d), None) => (s, d),
        (_, _, Some(extra)) => {
            return Err(UsageError(format!(
                "unexpected argument '{extra}'; {USAGE}"
            )))
        }
        _ => return Err(UsageError(format!("SOURCE and DIR are required; {USAGE}"))),
    };
    if source.is_empty() || mountpoint.is_empty() {
        return Err(UsageError("SOURCE and DIR must not be empty".to_string()));
    }
    let options: Vec<String> = options.into_iter().filter(|o| !o.is_empty()).collect();
    Ok(Args {
        source,
        mountpoint,
        fs_type: fs_type.unwrap_or(FsType::Ext4),
        options: options.join(","),
        verbose,
        fake,
        no_mtab,
        sloppy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(argv: &[&str]) -> Args {
        parse(argv.iter().copied()).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
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
            (&["-s", "-f", "--", "-img", "/mnt"], FsType::Ext4, "", false),
        ];
        for (argv, ty, opts, verbose) in cases {
            let a = ok(argv);
            assert_eq!(a.fs_type, *ty, "{argv:?}");
            assert_eq!(a.options, *opts, "{argv:?}");
            assert_eq!(a.verbose, *verbose, "{argv:?}");
        }
        let a = ok(&["-s", "-f", "--", "-img", "/mnt"]);
        assert_eq!((a.source.as_str(), a.mountpoint.as_str()), ("-img", "/mnt"));
        assert!(a.fake && a.sloppy);
    }

    #[test]
    fn usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "required"),
            (&["/img"], "required"),
            (&["/img", "/mnt", "/x"], "unexpected argument '/x'"),
            (&["/img", "/mnt", "-o"], "-o needs a value"),
            (
                &["/img", "/mnt", "-t", "service.xfs"],
                "unsupported filesystem type 'service.xfs'",
            ),
            (
                &["/img", "/mnt", "-t", "btrfs"],
                "unsupported filesystem type",
            ),
            (&["/img", "/mnt", "-x"], "unknown option -x"),
            (&["/img", "/mnt", "--bogus"], "unknown option --bogus"),
            (&["/img", "/mnt", "-N", "/proc/1/ns/mnt"], "namespace"),
            (&["", "/mnt"], "must not be empty"),
        ];
        for (argv, want) in cases {
            let err = parse(argv.iter().copied()).expect_err(&format!("{argv:?} must fail"));
            assert!(err.0.contains(want), "{argv:?}: {err} lacks {want:?}");
            assert!(!err.0.contains('\n'), "one line: {err}");
        }
    }
}
