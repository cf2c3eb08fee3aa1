//! The mount mode: read-write, or read-only and why.
//!
//! Decided once, in the server's mount sequence (`main.rs`), from what the
//! mount asked for and what the helper could open; everything downstream
//! reads it from the one [`MountMode`] value: the access asked of the
//! helper, the engine's open options ([`MountMode::open_options`]), the
//! mount request (the VFS mount is read-only exactly when the mode is), and
//! the FUSE adapter (`ServeOptions::mode`: write opens and `access(W_OK)`
//! answer EROFS on a read-only mount).
//!
//! Access to ask for (DESIGN.md step 3): the server cannot read the
//! superblock before its sandbox, so it cannot know yet whether the journal
//! needs replaying, and the kernel replays a journal even for `-o ro` on a
//! writable device. So the source is asked read-write for every mount but
//! `norecovery`/`noload` (nothing will ever be written then); when the
//! helper refuses read-write with EROFS, EACCES or EPERM (a write-protected
//! device, a read-only image file), the server asks again read-only and the
//! mode records that the device is why.

use std::fmt;

use fsvc_ext4::OpenOptions;
use fsvc_protocol::Access;

use crate::service::FsOptions;

/// Whether the engine can change a filesystem. Until the write core lands
/// a mount that would be read-write is made read-only with a warning the
/// helper prints ([`ReadOnlyReason::EngineCannotWrite`]), never silently.
pub const ENGINE_WRITES: bool = false;

/// Why a mount is read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadOnlyReason {
    /// `-o ro`.
    Requested,
    /// `norecovery`/`noload`: the journal is left alone, so nothing may be
    /// written.
    NoRecovery,
    /// The helper could not open the source read-write (`errno`: EROFS,
    /// EACCES or EPERM): a write-protected device or a read-only image.
    DeviceReadOnly {
        /// What the read-write open failed with.
        errno: i32,
    },
    /// The mount would be read-write but the engine cannot write yet
    /// ([`ENGINE_WRITES`]).
    EngineCannotWrite,
}

/// How the filesystem is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// Changes are taken.
    ReadWrite,
    /// Nothing is changed, for this reason.
    ReadOnly(ReadOnlyReason),
}

/// The errnos with which a read-write open of the source is refused that
/// make the server fall back to read-only (DESIGN.md step 3).
pub const READ_ONLY_FALLBACK: [i32; 3] = [libc::EROFS, libc::EACCES, libc::EPERM];

/// The access to ask the helper for first, for a mount asked with `opts`.
pub fn wanted_access(opts: &FsOptions) -> Access {
    if opts.norecovery {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    }
}

impl MountMode {
    /// The mode of a mount asked read-only or not (`requested_ro`: the
    /// helper's `-o ro`, or a forwarded `ro`) with `opts`, whose source was
    /// granted read-only or not; `denied` is the errno of a refused
    /// read-write open that made the server ask read-only.
    pub fn decide(
        requested_ro: bool,
        opts: &FsOptions,
        granted_ro: bool,
        denied: Option<i32>,
    ) -> MountMode {
        use ReadOnlyReason::*;
        if requested_ro || opts.read_only == Some(true) {
            MountMode::ReadOnly(Requested)
        } else if opts.norecovery {
            MountMode::ReadOnly(NoRecovery)
        } else if granted_ro {
            MountMode::ReadOnly(DeviceReadOnly {
                errno: denied.unwrap_or(libc::EROFS),
            })
        } else if !ENGINE_WRITES {
            MountMode::ReadOnly(EngineCannotWrite)
        } else {
            MountMode::ReadWrite
        }
    }

    /// Whether nothing may be changed.
    pub fn is_read_only(self) -> bool {
        matches!(self, MountMode::ReadOnly(_))
    }

    /// The engine's open options for this mode and `opts`: the one place
    /// they are built.
    pub fn open_options(self, opts: &FsOptions) -> OpenOptions {
        OpenOptions {
            read_only: self.is_read_only(),
            norecovery: opts.norecovery,
            cache_bytes: opts
                .cache_bytes
                .and_then(|b| usize::try_from(b).ok())
                .unwrap_or(0),
            errors: opts.errors,
            // commit=0 means the default, as with the kernel.
            commit_interval: opts
                .commit_secs
                .filter(|&s| s > 0)
                .map(|s| std::time::Duration::from_secs(u64::from(s))),
        }
    }

    /// A note for the person mounting when the mount is read-only although
    /// they did not ask for it (a write-protected source, an engine that
    /// cannot write yet): `None` otherwise.
    pub fn fallback_note(self, source: &str) -> Option<String> {
        match self {
            MountMode::ReadOnly(ReadOnlyReason::DeviceReadOnly { errno }) => Some(format!(
                "{source} is write-protected ({}): mounted read-only",
                nix::errno::Errno::from_raw(errno).desc()
            )),
            MountMode::ReadOnly(ReadOnlyReason::EngineCannotWrite) => Some(format!(
                "fsvc cannot write yet: {source} mounted read-only (say -o ro to mean it)"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for MountMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ReadOnlyReason::*;
        match self {
            MountMode::ReadWrite => f.write_str("read-write"),
            MountMode::ReadOnly(Requested) => f.write_str("read-only (asked with -o ro)"),
            MountMode::ReadOnly(NoRecovery) => f.write_str("read-only (norecovery)"),
            MountMode::ReadOnly(DeviceReadOnly { errno }) => write!(
                f,
                "read-only (the source cannot be written: {})",
                nix::errno::Errno::from_raw(*errno)
            ),
            MountMode::ReadOnly(EngineCannotWrite) => {
                f.write_str("read-only (the engine cannot write yet)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReadOnlyReason::*;

    fn opts(s: &str) -> FsOptions {
        FsOptions::parse(s).expect("valid options")
    }

    #[test]
    fn decisions() {
        // (requested ro, options, granted ro, denied, mode)
        // What a mount that may write becomes.
        let rw = if ENGINE_WRITES {
            MountMode::ReadWrite
        } else {
            MountMode::ReadOnly(EngineCannotWrite)
        };
        let table: &[(bool, &str, bool, Option<i32>, MountMode)] = &[
            (false, "", false, None, rw),
            (true, "", false, None, MountMode::ReadOnly(Requested)),
            (false, "ro", false, None, MountMode::ReadOnly(Requested)),
            (false, "ro,rw", false, None, rw),
            (
                false,
                "norecovery",
                true,
                None,
                MountMode::ReadOnly(NoRecovery),
            ),
            (true, "noload", true, None, MountMode::ReadOnly(Requested)),
            (
                false,
                "",
                true,
                Some(libc::EACCES),
                MountMode::ReadOnly(DeviceReadOnly {
                    errno: libc::EACCES,
                }),
            ),
            // -o ro on a write-protected device: what was asked wins.
            (
                true,
                "",
                true,
                Some(libc::EROFS),
                MountMode::ReadOnly(Requested),
            ),
        ];
        for &(ro, o, granted_ro, denied, want) in table {
            let got = MountMode::decide(ro, &opts(o), granted_ro, denied);
            assert_eq!(got, want, "ro={ro} -o {o:?} granted_ro={granted_ro}");
        }
    }

    #[test]
    fn access_asked_first() {
        // Read-write unless nothing can ever be written (norecovery):
        // even -o ro may need the journal replayed, as the kernel does.
        let table = [
            ("", Access::ReadWrite),
            ("ro", Access::ReadWrite),
            ("norecovery", Access::ReadOnly),
            ("ro,noload", Access::ReadOnly),
        ];
        for (o, want) in table {
            assert_eq!(wanted_access(&opts(o)), want, "-o {o}");
        }
    }

    #[test]
    fn open_options_follow_the_mode_and_options() {
        let o = opts("errors=remount-ro,commit=30,cache_size=8M,norecovery");
        let open = MountMode::ReadOnly(NoRecovery).open_options(&o);
        assert!(open.read_only && open.norecovery);
        assert_eq!(open.errors, Some(fsvc_ext4::ErrorBehavior::RemountRo));
        assert_eq!(
            open.commit_interval,
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(open.cache_bytes, 8 << 20);
        let open = MountMode::ReadWrite.open_options(&opts("commit=0"));
        assert!(!open.read_only && !open.norecovery);
        assert_eq!((open.errors, open.commit_interval), (None, None));
    }

    #[test]
    fn only_a_fallback_leaves_a_note() {
        let denied = MountMode::ReadOnly(DeviceReadOnly { errno: libc::EROFS });
        let note = denied.fallback_note("/dev/loop0").expect("a note");
        assert!(
            note.contains("/dev/loop0") && note.contains("read-only"),
            "{note}"
        );
        let engine = MountMode::ReadOnly(EngineCannotWrite);
        let note = engine.fallback_note("/img").expect("a note");
        assert!(
            note.contains("cannot write") && note.contains("-o ro"),
            "{note}"
        );
        for m in [
            MountMode::ReadWrite,
            MountMode::ReadOnly(Requested),
            MountMode::ReadOnly(NoRecovery),
        ] {
            assert_eq!(m.fallback_note("/img"), None, "{m}");
        }
    }
}
