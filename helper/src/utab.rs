//! Recording fsvc mounts in libmount's userspace mount table,
//! `/run/mount/utab`, so that umount(8) runs `/sbin/umount.fuse.fsvc`.
//!
//! Why (docs/design-notes.md, "Unmount"): umount(8) of util-linux 2.38,
//! run by root, takes a shortcut when utab has no line for the target: it
//! asks statfs for the type, gets plain `fuse` (FUSE_SUPER_MAGIC), finds no
//! `/sbin/umount.fuse` and calls umount(2) itself, so it returns while the
//! server is still flushing. With a line for the target it reads
//! mountinfo instead, where the line's `uhelper=fuse.fsvc` (libmount's
//! "unmount helper" option) names `/sbin/umount.fuse.fsvc`; after the
//! helper succeeds umount(8) removes the line itself.
//!
//! The file is libmount's, so it is edited the way libmount edits it:
//! under an exclusive `flock` of `/run/mount/utab.lock` (libmount's
//! "simple lock" for utab), read whole, written to a temporary file in
//! `/run/mount` (mode 0644, the old file's owner) that is renamed over
//! `utab`, with signals blocked meanwhile. A line is
//! `ID=<mount id> SRC=<source> TARGET=<dir> ROOT=/ OPTS=<options>`, every
//! value escaped as mountinfo is (`\040` for a space). util-linux 2.38
//! skips `ID=` (it matches a line to mountinfo by target, source and
//! root); 2.39 and later match by `ID=`. And 2.38 drops `ID=` from every
//! line when it rewrites the file (any mount(8) or umount(8) that adds or
//! removes a line of its own), so a line of ours may have lost its id.
//!
//! A line is fsvc's when its options hold `uhelper=fuse.fsvc`. It stands
//! for the fsvc mount at its `TARGET=` with its `ID=`, or, without `ID=`,
//! for the fsvc mount at its `TARGET=` with its `SRC=` (libmount 2.38's
//! own match; two live fsvc mounts cannot share a source, which each holds
//! exclusively).
//!
//! Invariants: every line not removed is kept byte for byte; the lines
//! removed are the one being replaced or forgotten, fsvc's own lines
//! at the same target whose mount is gone from this mount namespace's
//! mountinfo (an id-less line also when the only mount it could stand for
//! is the one just made, which gets its own line, or the one just
//! unmounted), and any line carrying the mount id of a mount just made
//! (that id now names our mount, so the line is stale). `/run/mount` must
//! be root's and not writable by others (the helper may be setuid); a
//! non-regular `utab` is refused.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::mountinfo::{escape, unescape, MountEntry};
use crate::{policy, sys};

/// libmount's directory for utab.
pub const UTAB_DIR: &str = "/run/mount";
/// The table's name in [`UTAB_DIR`].
const UTAB: &str = "utab";
/// libmount's lock for it (`<utab>.lock`, locked with `flock`).
const UTAB_LOCK: &str = "utab.lock";
/// The option word that marks a line as fsvc's; umount(8) runs
/// `/sbin/umount.<value>` for `uhelper=<value>`.
const UHELPER_OPTION: &str = "uhelper=fuse.fsvc";
/// Mode of utab and of its lock (libmount's: 0644).
const TABLE_MODE: u32 = 0o644;

/// Userspace options a mount(8) caller may pass that libmount would keep
/// in utab for the mount (`user[=NAME]`, `_netdev`): fsvc's line carries
/// them, since mount(8) finds the mount already recorded and writes none.
/// A bare `user` becomes `user=<login>` for a non-root caller, as libmount
/// records it (`login`; umount(8) compares it with its caller's name).
pub fn kept_options(options: &str, login: Option<&str>) -> Vec<String> {
    options
        .split(',')
        .filter(|w| *w == "user" || w.starts_with("user=") || *w == "_netdev")
        .map(|w| match (w, login) {
            ("user", Some(name)) => format!("user={name}"),
            (w, _) => w.to_string(),
        })
        .collect()
}

/// A mount to record.
#[derive(Debug)]
pub struct Record<'a> {
    /// Its mount id (mountinfo's first field).
    pub id: u64,
    /// The source exactly as mountinfo shows it.
    pub source: &'a str,
    /// The mountpoint exactly as mountinfo shows it.
    pub target: &'a str,
    /// Userspace options to keep besides `uhelper=` ([`kept_options`]).
    pub options: &'a [String],
}

impl Record<'_> {
    /// The utab line, without its newline.
    fn line(&self) -> String {
        let mut opts: Vec<&str> = self.options.iter().map(String::as_str).collect();
        opts.push(UHELPER_OPTION);
        format!(
            "ID={} SRC={} TARGET={} ROOT=/ OPTS={}",
            self.id,
            escape(self.source),
            escape(self.target),
            escape(&opts.join(","))
        )
    }
}

/// The fields of a utab line this module judges; unknown ones are ignored
/// (libmount skips them too).
#[derive(Debug, Default, PartialEq, Eq)]
struct Line {
    id: Option<u64>,
    src: Option<String>,
    target: Option<String>,
    opts: Option<String>,
}

impl Line {
    fn parse(raw: &[u8]) -> Line {
        let text = String::from_utf8_lossy(raw);
        let mut line = Line::default();
        for field in text.split(' ').filter(|f| !f.is_empty()) {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            // The first of each wins, as in libmount's parser.
            match key {
                "ID" if line.id.is_none() => line.id = value.parse().ok(),
                "SRC" if line.src.is_none() => line.src = Some(unescape(value)),
                "TARGET" if line.target.is_none() => line.target = Some(unescape(value)),
                "OPTS" if line.opts.is_none() => line.opts = Some(unescape(value)),
                _ => {}
            }
        }
        line
    }

    /// Written by fsvc: its `uhelper=` (with or without the `ID=` that
    /// util-linux 2.38 drops when it rewrites the file).
    fn is_fsvc(&self) -> bool {
        self.opts
            .as_deref()
            .is_some_and(|o| o.split(',').any(|w| w == UHELPER_OPTION))
    }
}

/// What an edit does besides keeping the other lines.
struct Edit<'a> {
    /// The line to append (a new mount).
    add: Option<String>,
    /// Drop every line with this mount id (the mount made or unmounted).
    id: Option<u64>,
    /// Drop fsvc's lines at this target whose mount is gone.
    target: &'a str,
    /// Whether the fsvc mount an fsvc line at [`Edit::target`] stands for
    /// is mounted there now ([`live_in`]).
    live: &'a dyn Fn(&Line) -> bool,
}

/// Applies `edit` to utab's text; returns the new text and how many lines
/// were dropped, or `None` when nothing changes.
fn apply(old: &[u8], edit: &Edit<'_>) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(old.len() + 256);
    let mut dropped = 0;
    let body = old.strip_suffix(b"\n").unwrap_or(old);
    for raw in body.split(|&b| b == b'\n').filter(|_| !old.is_empty()) {
        let line = Line::parse(raw);
        let same_id = edit.id.is_some() && line.id == edit.id;
        let stale_here =
            line.is_fsvc() && line.target.as_deref() == Some(edit.target) && !(edit.live)(&line);
        if same_id || stale_here {
            dropped += 1;
            continue;
        }
        out.extend_from_slice(raw);
        out.push(b'\n');
    }
    if let Some(add) = &edit.add {
        out.extend_from_slice(add.as_bytes());
        out.push(b'\n');
    } else if dropped == 0 {
        return None;
    }
    Some((out, dropped))
}

/// Whether `mounts` (mountinfo) shows the fsvc mount an fsvc line stands
/// for (see the module doc): at its target, with its id, or, for a line
/// without one, with its source and an id other than `made` (the mount
/// just made or unmounted, whose line this edit writes or removes).
fn live_in(mounts: &[MountEntry], made: Option<u64>) -> impl Fn(&Line) -> bool + '_ {
    move |line| {
        mounts.iter().any(|m| {
            m.is_fsvc()
                && line.target.as_deref() == Some(m.mountpoint.as_str())
                && match line.id {
                    Some(id) => m.id == id,
                    None => Some(m.id) != made && line.src.as_deref() == Some(m.source.as_str()),
                }
        })
    }
}

/// Adds the line for a mount just made (and drops the stale lines its id
/// and target make, see the module doc).
pub fn record(r: &Record<'_>) -> Result<(), String> {
    let mounts = crate::mountinfo::read_mountinfo()?;
    let live = live_in(&mounts, Some(r.id));
    update(&Edit {
        add: Some(r.line()),
        id: Some(r.id),
        target: r.target,
        live: &live,
    })
    .map(drop)
}

/// Removes the line of the mount `id` (unmounted from `target`), if
/// umount(8) has not already, and fsvc's stale lines at `target`.
/// Returns how many lines went.
pub fn forget(id: Option<u64>, target: &str) -> Result<usize, String> {
    let mounts = crate::mountinfo::read_mountinfo()?;
    let live = live_in(&mounts, id);
    update(&Edit {
        add: None,
        id,
        target,
        live: &live,
    })
}

/// The open table: `utab`'s bytes and its owner (root's when absent).
fn read_table(dir: &OwnedFd) -> Result<(Vec<u8>, u32, u32), String> {
    let fd = match openat(
        dir,
        UTAB,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok((Vec::new(), 0, 0)),
        Err(e) => return Err(format!("cannot open {UTAB_DIR}/{UTAB}: {e}")),
    };
    let st = fstat(&fd).map_err(|e| format!("cannot stat {UTAB_DIR}/{UTAB}: {e}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(format!("{UTAB_DIR}/{UTAB} is not a regular file"));
    }
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {UTAB_DIR}/{UTAB}: {e}"))?;
    Ok((text, st.st_uid, st.st_gid))
}

/// Writes `text` to a new file in `dir` and renames it over utab.
fn replace_table(dir: &OwnedFd, text: &[u8], uid: u32, gid: u32) -> Result<(), String> {
    let tmp = format!("{UTAB}.fsvc-{}", std::process::id());
    let create = || {
        openat(
            dir,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
    };
    // A leftover of a killed helper that had this pid: ours to remove.
    let fd = match create() {
        Err(Errno::EEXIST) => {
            let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            create()
        }
        other => other,
    }
    .map_err(|e| format!("cannot create {UTAB_DIR}/{tmp}: {e}"))?;
    let written = (|| {
        let mut f = std::fs::File::from(fd);
        f.write_all(text).map_err(|e| e.to_string())?;
        fchmod(f.as_fd(), Mode::from_bits_truncate(TABLE_MODE)).map_err(|e| e.to_string())?;
        fchown(
            f.as_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .map_err(|e| e.to_string())?;
        drop(f);
        renameat(dir, tmp.as_str(), dir, UTAB).map_err(|e| e.to_string())
    })();
    if let Err(e) = written {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(format!("cannot write {UTAB_DIR}/{UTAB}: {e}"));
    }
    Ok(())
}

/// Runs one edit under the lock, with signals blocked (as libmount does, so
/// that a Ctrl-C cannot leave the lock's holder half done).
fn update(edit: &Edit<'_>) -> Result<usize, String> {
    let old_mask = SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let result = (|| {
        let dir = policy::root_dir(UTAB_DIR)?;
        let lock = openat(
            &dir,
            UTAB_LOCK,
            OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(TABLE_MODE),
        )
        .map_err(|e| format!("cannot open {UTAB_DIR}/{UTAB_LOCK}: {e}"))?;
        sys::flock(lock.as_fd(), libc::LOCK_EX)
            .map_err(|e| format!("cannot lock {UTAB_DIR}/{UTAB_LOCK}: {e}"))?;
        let (old, uid, gid) = read_table(&dir)?;
        match apply(&old, edit) {
            None => Ok(0),
            Some((new, dropped)) => replace_table(&dir, &new, uid, gid).map(|()| dropped),
        }
        // The lock goes with its fd.
    })();
    let _ = old_mask.thread_set_mask();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &Line) -> bool {
        false
    }

    /// An fsvc mount as mountinfo lists it.
    fn fsvc(id: u64, source: &str, target: &str) -> MountEntry {
        MountEntry {
            id,
            dev: (0, 40),
            mountpoint: target.to_string(),
            fstype: "fuse.fsvc.ext4".to_string(),
            source: source.to_string(),
            super_options: "user_id=0".to_string(),
        }
    }

    #[test]
    fn the_line_libmount_reads() {
        let r = Record {
            id: 412,
            source: "/home/u/my stick.img",
            target: "/home/u/mnt",
            options: &["user=u".to_string()],
        };
        assert_eq!(
            r.line(),
            "ID=412 SRC=/home/u/my\\040stick.img TARGET=/home/u/mnt ROOT=/ OPTS=user=u,uhelper=fuse.fsvc"
        );
        let parsed = Line::parse(r.line().as_bytes());
        assert_eq!(parsed.id, Some(412));
        assert_eq!(parsed.src.as_deref(), Some("/home/u/my stick.img"));
        assert_eq!(parsed.target.as_deref(), Some("/home/u/mnt"));
        assert!(parsed.is_fsvc());
        // libmount's own lines are never fsvc's.
        let theirs = Line::parse(b"SRC=/dev/sdb1 TARGET=/media/x ROOT=/ OPTS=uhelper=udisks2");
        assert!(!theirs.is_fsvc());
        // As util-linux 2.38 rewrites ours: still ours.
        let no_id = Line::parse(b"SRC=/a TARGET=/b ROOT=/ OPTS=user=u,uhelper=fuse.fsvc");
        assert!(no_id.is_fsvc(), "a line that lost its ID= is still fsvc's");
        assert_eq!((no_id.id, no_id.src.as_deref()), (None, Some("/a")));
    }

    #[test]
    fn kept_options_are_the_ones_libmount_keeps() {
        let cases: [(&str, Option<&str>, &[&str]); 6] = [
            ("ro,noatime", None, &[]),
            ("user,ro", None, &["user"]),
            ("user,ro", Some("alice"), &["user=alice"]),
            (
                "rw,user=bob,_netdev,nofail,users",
                Some("alice"),
                &["user=bob", "_netdev"],
            ),
            ("users", Some("alice"), &[]),
            ("", None, &[]),
        ];
        for (opts, login, want) in cases {
            assert_eq!(kept_options(opts, login), want, "{opts:?} {login:?}");
        }
    }

    #[test]
    fn edits_keep_other_lines_byte_for_byte() {
        let other = "SRC=/dev/sdb1 TARGET=/media/u/stick ROOT=/ OPTS=uhelper=udisks2";
        let weird = "# a comment\u{7f}, kept";
        let ours_gone = "ID=50 SRC=/a.img TARGET=/m ROOT=/ OPTS=uhelper=fuse.fsvc";
        let ours_live = "ID=51 SRC=/b.img TARGET=/m ROOT=/ OPTS=uhelper=fuse.fsvc";
        let ours_elsewhere = "ID=52 SRC=/c.img TARGET=/n ROOT=/ OPTS=uhelper=fuse.fsvc";
        let reused_id = "ID=60 SRC=/x TARGET=/y ROOT=/ OPTS=x-foo";
        // Lines of ours that util-linux 2.38 rewrote without their ID=.
        let bare_live = "SRC=/f.img TARGET=/m ROOT=/ OPTS=user=u,uhelper=fuse.fsvc";
        let bare_gone = "SRC=/e.img TARGET=/m ROOT=/ OPTS=uhelper=fuse.fsvc";
        let bare_made = "SRC=/d.img TARGET=/m ROOT=/ OPTS=uhelper=fuse.fsvc";
        let bare_elsewhere = "SRC=/e.img TARGET=/n ROOT=/ OPTS=uhelper=fuse.fsvc";
        let bare_theirs = "SRC=/e.img TARGET=/m ROOT=/ OPTS=uhelper=udisks2";
        let bare_51 = "SRC=/b.img TARGET=/m ROOT=/ OPTS=uhelper=fuse.fsvc";
        let old = [
            other,
            weird,
            ours_gone,
            ours_live,
            ours_elsewhere,
            reused_id,
            bare_live,
            bare_gone,
            bare_made,
            bare_elsewhere,
            bare_theirs,
        ]
        .map(|l| format!("{l}\n"))
        .concat();
        // 60 is the mount just made (of /d.img at /m); 53 serves /f.img at
        // /m, stacked under it.
        let with_new = [
            fsvc(51, "/b.img", "/m"),
            fsvc(52, "/c.img", "/n"),
            fsvc(53, "/f.img", "/m"),
            fsvc(60, "/d.img", "/m"),
        ];
        let after_51 = [fsvc(52, "/c.img", "/n"), fsvc(53, "/f.img", "/m")];
        let new = Record {
            id: 60,
            source: "/d.img",
            target: "/m",
            options: &[],
        };
        let lines = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
        struct Case<'a> {
            what: &'a str,
            old: String,
            edit: Edit<'a>,
            want: Option<(String, usize)>,
        }
        let live_new = live_in(&with_new, Some(60));
        let live_after = live_in(&after_51, Some(51));
        let live_none = live_in(&[], None);
        let cases = [
            Case {
                what: "a new mount at /m: drops /m's dead lines, id-less ones too, and the line with its id",
                old: old.clone(),
                edit: Edit {
                    add: Some(new.line()),
                    id: Some(60),
                    target: "/m",
                    live: &live_new,
                },
                want: Some((
                    lines(&[
                        other,
                        weird,
                        ours_live,
                        ours_elsewhere,
                        bare_live,
                        bare_elsewhere,
                        bare_theirs,
                        &new.line(),
                    ]),
                    4,
                )),
            },
            Case {
                what: "forgetting 51 at /m: its line and /m's dead ones",
                old: old.clone(),
                edit: Edit {
                    add: None,
                    id: Some(51),
                    target: "/m",
                    live: &live_after,
                },
                want: Some((
                    lines(&[
                        other,
                        weird,
                        ours_elsewhere,
                        reused_id,
                        bare_live,
                        bare_elsewhere,
                        bare_theirs,
                    ]),
                    4,
                )),
            },
            Case {
                what: "forgetting 51 after util-linux 2.38 took its ID=: found by target and source",
                old: lines(&[other, bare_51, bare_live, weird]),
                edit: Edit {
                    add: None,
                    id: Some(51),
                    target: "/m",
                    live: &live_after,
                },
                want: Some((lines(&[other, bare_live, weird]), 1)),
            },
            Case {
                what: "a non-fsvc mount at /m (the stale line made umount(8) run us): every fsvc line at /m goes",
                old: old.clone(),
                edit: Edit {
                    add: None,
                    id: None,
                    target: "/m",
                    live: &live_none,
                },
                want: Some((
                    lines(&[
                        other,
                        weird,
                        ours_elsewhere,
                        reused_id,
                        bare_elsewhere,
                        bare_theirs,
                    ]),
                    5,
                )),
            },
            Case {
                what: "umount(8) already removed it: no change",
                old: old.clone(),
                edit: Edit {
                    add: None,
                    id: Some(99),
                    target: "/media/u/stick",
                    live: &never,
                },
                want: None,
            },
        ];
        for c in cases {
            let got = apply(c.old.as_bytes(), &c.edit)
                .map(|(t, n)| (String::from_utf8(t).expect("utf-8"), n));
            assert_eq!(got, c.want, "{}", c.what);
        }
    }

    #[test]
    fn edits_of_empty_and_unterminated_tables() {
        let r = Record {
            id: 7,
            source: "/i",
            target: "/t",
            options: &[],
        };
        let add = |old: &str| {
            let e = Edit {
                add: Some(r.line()),
                id: Some(7),
                target: "/t",
                live: &never,
            };
            apply(old.as_bytes(), &e).map(|(t, _)| String::from_utf8(t).expect("utf-8"))
        };
        assert_eq!(add(""), Some(format!("{}\n", r.line())));
        assert_eq!(
            add("SRC=/a TARGET=/b ROOT=/ OPTS=x-y"),
            Some(format!("SRC=/a TARGET=/b ROOT=/ OPTS=x-y\n{}\n", r.line()))
        );
    }
}
