//! Unit tests of the setattr and atime rules (pure functions).

use super::*;
use crate::inode::{S_IFDIR, S_IFREG};
use crate::superblock::synth;

fn ts(sec: i64, nsec: u32) -> Timestamp {
    Timestamp { sec, nsec }
}

fn inode(mode: u16) -> Inode {
    let sb = synth::parsed();
    let mut i = Inode::fresh(&sb, InodeNo(12), 1, mode, 1000, 100, ts(5, 0));
    i.atime = ts(10, 0);
    i.mtime = ts(20, 0);
    i.ctime = ts(30, 0);
    i
}

const USER: Creds = Creds {
    uid: 1000,
    gid: 100,
};
const OTHER_GROUP: Creds = Creds {
    uid: 1000,
    gid: 555,
};

#[test]
fn setid_bits_on_chmod_and_chown() {
    let chown = |uid| SetAttr {
        uid: Some(uid),
        ..SetAttr::default()
    };
    let chmod = |m, groups: Option<Vec<u32>>| SetAttr {
        mode: Some(m),
        caller_groups: groups,
        ..SetAttr::default()
    };
    // (inode mode, change, caller, resulting mode)
    let cases: Vec<(u16, SetAttr, Creds, u16)> = vec![
        // chown of a non-directory: setuid always, setgid with group-exec.
        (S_IFREG | 0o6755, chown(1000), USER, S_IFREG | 0o0755),
        (S_IFREG | 0o6755, chown(1000), Creds::ROOT, S_IFREG | 0o0755),
        (S_IFREG | 0o6745, chown(1000), USER, S_IFREG | 0o2745),
        (
            S_IFREG | 0o6745,
            SetAttr {
                caller_groups: Some(vec![]),
                ..chown(1000)
            },
            OTHER_GROUP,
            S_IFREG | 0o0745,
        ),
        // Directories keep both.
        (S_IFDIR | 0o6755, chown(1), Creds::ROOT, S_IFDIR | 0o6755),
        // chmod: the type stays, setgid is kept unless the caller is known
        // to be outside the group.
        (
            S_IFREG | 0o644,
            chmod(0o172755, None),
            USER,
            S_IFREG | 0o2755,
        ),
        (
            S_IFREG | 0o644,
            chmod(0o2755, Some(vec![])),
            OTHER_GROUP,
            S_IFREG | 0o0755,
        ),
        (
            S_IFREG | 0o644,
            chmod(0o2755, Some(vec![100])),
            OTHER_GROUP,
            S_IFREG | 0o2755,
        ),
        (
            S_IFREG | 0o644,
            chmod(0o2755, Some(vec![])),
            USER,
            S_IFREG | 0o2755,
        ),
        (
            S_IFREG | 0o644,
            chmod(0o2755, Some(vec![])),
            Creds { uid: 0, gid: 9 },
            S_IFREG | 0o2755,
        ),
        // A mode sent along with a chown cannot bring setuid back.
        (
            S_IFREG | 0o4755,
            SetAttr {
                mode: Some(0o4755),
                ..chown(1000)
            },
            USER,
            S_IFREG | 0o0755,
        ),
    ];
    for (i, (mode, ch, creds, want)) in cases.into_iter().enumerate() {
        let mut ino = inode(mode);
        apply_setattr(&mut ino, &ch, creds, ts(99, 1));
        assert_eq!(ino.mode, want, "case {i}: {:o} -> {:o}", ino.mode, want);
    }
}

#[test]
fn times_ctime_and_version() {
    let now = ts(1000, 7);
    // (change, atime, mtime, ctime)
    let cases: &[(SetAttr, Timestamp, Timestamp, Timestamp)] = &[
        (SetAttr::default(), ts(10, 0), ts(20, 0), now),
        (
            SetAttr {
                atime: Some(TimeSet::Now),
                mtime: Some(TimeSet::Now),
                ..SetAttr::default()
            },
            now,
            now,
            now,
        ),
        (
            SetAttr {
                atime: Some(TimeSet::At(ts(-5, 1))),
                ..SetAttr::default()
            },
            ts(-5, 1),
            ts(20, 0),
            now,
        ),
        (
            SetAttr {
                mtime: Some(TimeSet::At(ts(1 << 33, 999_999_999))),
                ctime: Some(ts(3, 3)),
                ..SetAttr::default()
            },
            ts(10, 0),
            ts(1 << 33, 999_999_999),
            ts(3, 3),
        ),
    ];
    for (i, (ch, a, m, c)) in cases.iter().enumerate() {
        let mut ino = inode(S_IFREG | 0o644);
        let v = ino.version();
        apply_setattr(&mut ino, ch, USER, now);
        assert_eq!((ino.atime, ino.mtime, ino.ctime), (*a, *m, *c), "case {i}");
        assert_eq!(
            ino.version(),
            v + 1,
            "case {i}: i_version counts the change"
        );
        assert_eq!((ino.uid, ino.gid, ino.mode), (1000, 100, S_IFREG | 0o644));
    }
}

#[test]
fn write_kills_setid_for_the_unprivileged() {
    // (mode, caller, resulting mode, changed)
    let cases: &[(u16, Creds, u16, bool)] = &[
        (S_IFREG | 0o6755, USER, S_IFREG | 0o0755, true),
        (S_IFREG | 0o6745, USER, S_IFREG | 0o2745, true),
        (S_IFREG | 0o2745, USER, S_IFREG | 0o2745, false),
        (S_IFREG | 0o6755, Creds::ROOT, S_IFREG | 0o6755, false),
        (S_IFREG | 0o0755, USER, S_IFREG | 0o0755, false),
    ];
    for &(mode, creds, want, changed) in cases {
        let mut ino = inode(mode);
        assert_eq!(kill_suid_on_write(&mut ino, creds), changed, "{mode:o}");
        assert_eq!(ino.mode, want, "{mode:o}");
    }
}

#[test]
fn atime_policies() {
    let rel = AtimePolicy::default();
    let strict = AtimePolicy {
        mode: AtimeMode::Strict,
        nodiratime: false,
    };
    let noatime = AtimePolicy {
        mode: AtimeMode::NoAtime,
        nodiratime: false,
    };
    let nodir = AtimePolicy {
        nodiratime: true,
        ..rel
    };
    let day = RELATIME_MAX_AGE_SECS;
    // (policy, mode, flags, atime, mtime, ctime, now, update?)
    type Case = (AtimePolicy, u16, u32, i64, i64, i64, i64, bool);
    let cases: &[Case] = &[
        // relatime: atime older than mtime or ctime, or a day old.
        (rel, S_IFREG, 0, 100, 200, 50, 300, true),
        (rel, S_IFREG, 0, 100, 50, 200, 300, true),
        (rel, S_IFREG, 0, 100, 100, 50, 300, true),
        (rel, S_IFREG, 0, 100, 50, 50, 300, false),
        (rel, S_IFREG, 0, 100, 50, 50, 100 + day - 1, false),
        (rel, S_IFREG, 0, 100, 50, 50, 100 + day, true),
        (strict, S_IFREG, 0, 100, 50, 50, 300, true),
        (strict, S_IFREG, 0, 300, 50, 50, 300, false), // already now
        (noatime, S_IFREG, 0, 100, 200, 200, 300, false),
        (strict, S_IFREG, FL_NOATIME, 100, 200, 200, 300, false),
        (nodir, S_IFDIR, 0, 100, 200, 200, 300, false),
        (nodir, S_IFREG, 0, 100, 200, 200, 300, true),
    ];
    for (i, &(p, mode, flags, a, m, c, now, want)) in cases.iter().enumerate() {
        let mut ino = inode(mode | 0o755);
        ino.flags = flags;
        ino.atime = ts(a, 0);
        ino.mtime = ts(m, 0);
        ino.ctime = ts(c, 0);
        assert_eq!(atime_needs_update(p, &ino, ts(now, 0)), want, "case {i}");
    }
}

#[test]
fn append_only_and_immutable_refuse_setattr() {
    use crate::inode::flags as fl;
    // (flags, change, allowed)
    let now_only = SetAttr {
        atime: Some(TimeSet::Now),
        mtime: Some(TimeSet::Now),
        ..SetAttr::default()
    };
    let explicit = SetAttr {
        mtime: Some(TimeSet::At(ts(1, 0))),
        ..SetAttr::default()
    };
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let cases: &[(u32, &SetAttr, bool)] = &[
        (fl::APPEND, &now_only, true),
        (fl::APPEND, &explicit, false),
        (fl::APPEND, &chmod, false),
        (fl::IMMUTABLE, &now_only, false),
        (0, &explicit, true),
    ];
    for (i, &(flags, ch, ok)) in cases.iter().enumerate() {
        let mut ino = inode(S_IFREG | 0o644);
        ino.flags = flags;
        assert_eq!(check_may_modify(&ino, ch.change()).is_ok(), ok, "case {i}");
    }
}
