//! Real FUSE mounts made by `fsvc-mount` for a scripted fake server: the
//! mount has the right type, source, flags and FUSE options, the server gets
//! a working `/dev/fuse` fd, and a server that fails after the mount leaves
//! nothing mounted. Needs root and /dev/fuse.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use common::*;
use fsvc_protocol::{Access, HelperMsg, MountRequest, ServerMsg};

fn require_fuse(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    let msg = format!("{test}: skipped: /dev/fuse is missing");
    if std::env::var("FSVC_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{msg}, and FSVC_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("{msg}");
    false
}

/// (per-mount options, fstype, source, super options) of `mnt`.
fn mountinfo(mnt: &Path) -> Option<(String, String, String, String)> {
    let want = mnt.to_str()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = text.lines().find(|l| l.split(' ').nth(4) == Some(want))?;
    let (head, tail) = line.split_once(" - ")?;
    let opts = head.split(' ').nth(5)?.to_string();
    let mut t = tail.split(' ');
    Some((opts, t.next()?.into(), t.next()?.into(), t.next()?.into()))
}

/// Plays a server up to the mount; returns the `/dev/fuse` fd it got.
fn up_to_mount(s: &OwnedFd, img: String, read_only: bool) -> Option<OwnedFd> {
    let _ = handshake(s);
    send(
        s,
        &ServerMsg::FileRequest {
            path: img,
            access: Access::ReadOnly,
        },
    );
    let (reply, fds) = recv(s);
    assert!(
        matches!(reply, HelperMsg::FileReply(Ok(_))) && fds.len() == 1,
        "{reply:?}"
    );
    send(s, &ServerMsg::FilesDone);
    send(
        s,
        &ServerMsg::MountRequest(MountRequest {
            fs_name: "ignored".into(),
            subtype: "ext4".into(),
            read_only,
            default_permissions: true,
            allow_other: true,
        }),
    );
    match recv(s) {
        (HelperMsg::MountReply(Ok(())), mut fds) if fds.len() == 1 => fds.pop(),
        other => panic!("expected MountReply(Ok) with one fd: {other:?}"),
    }
}

#[test]
fn mount_is_made_with_flags_and_fuse_fd() {
    if !require_fuse("mount_is_made_with_flags_and_fuse_fd") {
        return;
    }
    let f = Fixture::new("mount");
    let img = f.img_str();
    let mnt = f.mnt.clone();
    let (out, got) = f.run(&["-o", "nosuid,nodev,noexec,noatime", "-v"], move |s| {
        let fuse = up_to_mount(&s, img, true)?;
        // Observed while the helper still waits for our goodbye.
        let seen = mountinfo(&mnt);
        send(
            &s,
            &ServerMsg::Goodbye {
                status: 0,
                reason: String::new(),
            },
        );
        Some((fuse, seen))
    });
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("mounted"), "-v says so: {out:?}");
    let (fuse, seen) = got.flatten().expect("server got the fuse fd");
    let (opts, fstype, source, sopts) = seen.expect("mounted while serving");
    assert_eq!(fstype, "fuse.fsvc.ext4");
    assert_eq!(source, f.img_str());
    for o in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(opts.split(',').any(|x| x == o), "{o} in {opts}");
    }
    for o in [
        "ro",
        "user_id=0",
        "group_id=0",
        "default_permissions",
        "allow_other",
    ] {
        assert!(sopts.split(',').any(|x| x == o), "{o} in {sopts}");
    }
    // The mount outlives the helper (the server serves it).
    assert!(is_mounted(&f.mnt));
    // The fd is a FUSE connection: /dev/fuse's char device.
    let st = nix::sys::stat::fstat(fuse.as_fd()).expect("fstat");
    let dev = nix::sys::stat::stat("/dev/fuse").expect("stat");
    assert_eq!(st.st_rdev, dev.st_rdev);
    nix::mount::umount2(&f.mnt, nix::mount::MntFlags::MNT_DETACH).expect("detach our mount");
    assert!(!is_mounted(&f.mnt));
}

#[test]
fn failure_after_mount_undoes_it() {
    if !require_fuse("failure_after_mount_undoes_it") {
        return;
    }
    // (case, what the server does after MountReply, expected words)
    let hang_up = |s: OwnedFd| drop(s);
    let fail = |s: OwnedFd| {
        send(
            &s,
            &ServerMsg::Goodbye {
                status: libc::EIO,
                reason: "cannot serve: fake".into(),
            },
        );
        let _ = wait_closed(&s);
    };
    let garbage = |s: OwnedFd| {
        send(&s, &ServerMsg::FilesDone);
        let _ = wait_closed(&s);
    };
    type After = Box<dyn FnOnce(OwnedFd) + Send>;
    let cases: Vec<(&str, After, &str)> = vec![
        ("hang-up", Box::new(hang_up), "exited after mounting"),
        ("goodbye error", Box::new(fail), "cannot serve: fake"),
        ("out of order", Box::new(garbage), "unexpected FilesDone"),
    ];
    for (case, after, want) in cases {
        let f = Fixture::new("undo");
        let img = f.img_str();
        let mnt = f.mnt.clone();
        let (out, was) = f.run(&[], move |s| {
            let fuse = up_to_mount(&s, img, false);
            let was = is_mounted(&mnt);
            after(s);
            drop(fuse);
            was
        });
        assert_eq!(was, Some(true), "{case}: the mount existed");
        out.assert_mount_failure(want);
        assert!(
            out.stderr.contains("the mount was undone"),
            "{case}: {out:?}"
        );
        assert!(!is_mounted(&f.mnt), "{case}: nothing stays mounted");
    }
}
