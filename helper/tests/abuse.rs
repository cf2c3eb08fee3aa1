//! A hostile or broken server against the real `fsvc-mount`: every case must
//! end with exit 32, one line a person can act on, nothing mounted, and no
//! hang. Also the checks before any server is reached (usage, non-root,
//! mountpoint), and the file-request policy as seen on the wire.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;

use common::*;
use fsvc_protocol::{
    send_packet, Access, HelperMsg, MountRequest, Refusal, ServerMsg, MAX_MESSAGE_SIZE,
};

fn goodbye(sock: &OwnedFd, status: i32, reason: &str) {
    send(
        sock,
        &ServerMsg::Goodbye {
            status,
            reason: reason.into(),
        },
    );
}

#[test]
fn garbage_bytes_after_hello() {
    if !require_root("garbage_bytes_after_hello") {
        return;
    }
    let f = Fixture::new("garbage");
    let (out, _) = f.run(&[], |s| {
        let _ = recv(&s);
        send_packet(s.as_fd(), b"\xff\xff\xff\xff\xff\xffnot postcard", &[]).expect("send");
        wait_closed(&s)
    });
    out.assert_mount_failure("malformed message");
    assert!(!is_mounted(&f.mnt));
}

#[test]
fn oversized_packet() {
    if !require_root("oversized_packet") {
        return;
    }
    let f = Fixture::new("oversized");
    let (out, closed) = f.run(&[], |s| {
        let _ = handshake(&s);
        send_packet(s.as_fd(), &vec![0u8; MAX_MESSAGE_SIZE * 4], &[]).expect("send");
        wait_closed(&s)
    });
    out.assert_mount_failure("exceeds the protocol limit");
    assert_eq!(closed, Some(true), "the helper hung up");
}

#[test]
fn fd_attached_to_a_server_message() {
    if !require_root("fd_attached_to_a_server_message") {
        return;
    }
    let f = Fixture::new("fdcount");
    let (out, _) = f.run(&[], |s| {
        let _ = recv(&s);
        let bytes = postcard_hello();
        let null = std::fs::File::open("/dev/null").expect("null");
        send_packet(s.as_fd(), &bytes, &[null.as_fd()]).expect("send");
        wait_closed(&s)
    });
    out.assert_mount_failure("file descriptor");
}

/// The encoding of the server's `Hello`, made by the protocol
/// crate's own encoder so only the fd is wrong.
fn postcard_hello() -> Vec<u8> {
    fsvc_protocol::encode(&ServerMsg::Hello {
        version: fsvc_protocol::PROTOCOL_VERSION_MAX,
    })
    .expect("encode")
}

#[test]
fn out_of_order_messages() {
    if !require_root("out_of_order_messages") {
        return;
    }
    let mount_req = || {
        ServerMsg::MountRequest(MountRequest {
            fs_name: "x".into(),
            subtype: "ext4".into(),
            read_only: true,
            default_permissions: true,
            allow_other: false,
        })
    };
    // (case, messages after the handshake, expected words)
    let cases: Vec<(&str, Vec<ServerMsg>, &str)> = vec![
        (
            "mount before files done",
            vec![mount_req()],
            "unexpected MountRequest while serving file requests",
        ),
        (
            "hello twice",
            vec![ServerMsg::Hello {
                version: fsvc_protocol::PROTOCOL_VERSION_MAX,
            }],
            "unexpected Hello",
        ),
        (
            "files done twice",
            vec![ServerMsg::FilesDone, ServerMsg::FilesDone],
            "unexpected FilesDone",
        ),
        (
            "success without mount",
            vec![
                ServerMsg::FilesDone,
                ServerMsg::Goodbye {
                    status: 0,
                    reason: String::new(),
                },
            ],
            "success without a mount",
        ),
    ];
    for (case, msgs, want) in cases {
        let f = Fixture::new("order");
        let (out, _) = f.run(&[], move |s| {
            let _ = handshake(&s);
            for m in &msgs {
                send(&s, m);
            }
            wait_closed(&s)
        });
        assert_eq!(out.code, Some(32), "{case}: {out:?}");
        assert!(out.stderr.contains(want), "{case}: {out:?}");
        assert!(!is_mounted(&f.mnt), "{case}");
    }
    // A version outside what the helper offered.
    let f = Fixture::new("version");
    let (out, _) = f.run(&[], |s| {
        let _ = recv(&s);
        send(&s, &ServerMsg::Hello { version: 99 });
        wait_closed(&s)
    });
    out.assert_mount_failure("protocol version 99");
}

#[test]
fn file_request_policy_on_the_wire() {
    if !require_root("file_request_policy_on_the_wire") {
        return;
    }
    let f = Fixture::new("policy");
    let img = f.img_str();
    let img_ino = std::fs::metadata(&f.img).expect("img").ino();
    let (out, replies) = f.run(&["-o", "ro,nosuid,noatime,norecovery"], move |s| {
        let info = handshake(&s);
        let mut replies = Vec::new();
        for (path, access) in [
            ("/etc/shadow".to_string(), Access::ReadOnly),
            (format!("{img}/../image"), Access::ReadOnly),
            (img.clone(), Access::ReadWrite),
        ] {
            send(&s, &ServerMsg::FileRequest { path, access });
            let (msg, fds) = recv(&s);
            let ino = fds
                .first()
                .map(|fd| nix::sys::stat::fstat(fd.as_fd()).expect("fstat").st_ino);
            replies.push((msg, fds.len(), ino));
        }
        send(&s, &ServerMsg::FilesDone);
        send(
            &s,
            &ServerMsg::FileRequest {
                path: img,
                access: Access::ReadOnly,
            },
        );
        let (late, late_fds) = recv(&s);
        replies.push((late, late_fds.len(), None));
        goodbye(
            &s,
            libc::EUCLEAN,
            "bad superblock magic: fake server gives up",
        );
        (info, replies)
    });
    out.assert_mount_failure("fake server gives up");
    let (info, replies) = replies.expect("server ran");
    assert_eq!(info.source, f.img_str());
    // ro and nosuid are the mount's alone; the atime mode is forwarded too
    // (the server updates atime itself).
    assert_eq!(
        info.fs_options, "noatime,norecovery",
        "VFS flags are split off"
    );
    assert!(info.read_only && info.allow_other_permitted && !info.verbose);
    assert_eq!(info.caller.uid, 0);

    let refused = |i: usize| match &replies[i] {
        (HelperMsg::FileReply(Err(Refusal { errno, message })), 0, None) => {
            (*errno, message.clone())
        }
        other => panic!("reply {i} must be a refusal without fds: {other:?}"),
    };
    let (errno, msg) = refused(0);
    assert_eq!(errno, libc::EACCES);
    assert!(
        msg.contains("server asked for /etc/shadow, only the source"),
        "{msg}"
    );
    let (errno, _) = refused(1);
    assert_eq!(
        errno,
        libc::EACCES,
        "another spelling of the source is another path"
    );
    match &replies[2] {
        (HelperMsg::FileReply(Ok(grant)), 1, Some(ino)) => {
            assert!(!grant.read_only && !grant.block_device);
            assert_eq!(*ino, img_ino, "the fd is the image");
        }
        other => panic!("the source must be granted with one fd: {other:?}"),
    }
    let (errno, msg) = refused(3);
    assert_eq!(errno, libc::EPERM);
    assert!(msg.contains("FilesDone"), "{msg}");
}

#[test]
fn busy_image_is_refused_after_the_deadline() {
    if !require_root("busy_image_is_refused_after_the_deadline") {
        return;
    }
    let f = Fixture::new("busy");
    let holder = std::fs::File::open(&f.img).expect("open");
    nix::fcntl::Flock::lock(holder, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map(|lock| {
            let img = f.img_str();
            let (out, reply) = f.run(&[], move |s| {
                let _ = handshake(&s);
                send(
                    &s,
                    &ServerMsg::FileRequest {
                        path: img,
                        access: Access::ReadOnly,
                    },
                );
                let (msg, fds) = recv(&s);
                goodbye(&s, libc::EBUSY, "");
                (msg, fds.len())
            });
            match reply {
                Some((HelperMsg::FileReply(Err(Refusal { errno, message })), 0)) => {
                    assert_eq!(errno, libc::EBUSY);
                    assert!(
                        message.contains("is in use (mounted elsewhere?)"),
                        "{message}"
                    );
                }
                other => panic!("expected EBUSY refusal: {other:?}"),
            }
            out.assert_mount_failure("is in use");
            drop(lock);
        })
        .map_err(|(_, e)| e)
        .expect("lock the image");
}

#[test]
fn server_closes_without_goodbye() {
    if !require_root("server_closes_without_goodbye") {
        return;
    }
    let f = Fixture::new("hangup");
    let (out, _) = f.run(&[], |s| {
        let _ = handshake(&s);
        drop(s);
    });
    out.assert_mount_failure("the server exited without answering (see the kernel log / FSVC_LOG)");
}

#[test]
fn server_never_answers() {
    if !require_root("server_never_answers") {
        return;
    }
    // Accepted but silent.
    let f = Fixture::new("silent");
    let (out, _) = f.run(&[], |s| {
        let _ = recv(&s);
        wait_closed(&s)
    });
    out.assert_mount_failure(&format!("did not answer within {HELPER_TIMEOUT_SECS} s"));
    // Silent after the handshake, while the helper waits for requests.
    let f = Fixture::new("silent2");
    let (out, _) = f.run(&[], |s| {
        let _ = handshake(&s);
        wait_closed(&s)
    });
    out.assert_mount_failure("did not answer");
    // Never even accepted: the connection waits in the backlog.
    let f = Fixture::new("backlog");
    let child = f.helper(&[]).spawn().expect("spawn");
    let out = wait_bounded(child);
    out.assert_mount_failure("did not answer");
}

#[test]
fn refused_before_any_server() {
    if !require_root("refused_before_any_server") {
        return;
    }
    let f = Fixture::new("pre");
    let img = f.img_str();
    let mnt = f.mnt.to_str().expect("utf8").to_string();
    let missing = f.dir.join("nope").to_str().expect("utf8").to_string();
    let link = f.dir.join("link");
    std::os::unix::fs::symlink(&f.mnt, &link).expect("symlink");
    let link = link.to_str().expect("utf8").to_string();
    // (argv after the program, exit code, words)
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec![], 1, "SOURCE and DIR are required"),
        (
            vec![&img, &mnt, "-t", "service.xfs"],
            1,
            "unsupported filesystem type",
        ),
        (vec![&img, &mnt, "-o", "remount"], 1, "not supported"),
        (vec![&img, &missing], 32, "does not exist"),
        (vec![&img, &img], 32, "is not a directory"),
        (vec![&img, &link], 32, "is not a directory"),
        (vec![&missing, &mnt], 32, "cannot open"),
    ];
    for (argv, code, want) in cases {
        let out = wait_bounded(f.helper_argv(&argv).spawn().expect("spawn"));
        assert_eq!(out.code, Some(code), "{argv:?}: {out:?}");
        assert!(out.stderr.contains(want), "{argv:?}: {out:?}");
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{argv:?}: {out:?}"
        );
    }
    assert!(
        accept_within(&f.listener, std::time::Duration::ZERO).is_none(),
        "no server was contacted"
    );
    // -f: everything checked, nothing contacted, success.
    let out = wait_bounded(f.helper(&["-f"]).spawn().expect("spawn"));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(accept_within(&f.listener, std::time::Duration::ZERO).is_none());
}

#[test]
fn non_root_caller_is_refused() {
    if !require_root("non_root_caller_is_refused") {
        return;
    }
    let f = Fixture::new("nonroot");
    let mut cmd = f.helper_for_anyone();
    cmd.uid(65534).gid(65534);
    let out = wait_bounded(cmd.spawn().expect("spawn"));
    assert_eq!(out.code, Some(1), "{out:?}");
    // Without a policy file only root may mount, and the refusal says so.
    if !std::path::Path::new("/etc/fsvc/policy.toml").exists() {
        assert!(
            out.stderr.contains("refused by policy rule no-policy"),
            "{out:?}"
        );
    }
    assert!(
        accept_within(&f.listener, std::time::Duration::ZERO).is_none(),
        "nothing half-done"
    );
}

#[test]
fn server_floods_requests_without_reading() {
    if !require_root("server_floods_requests_without_reading") {
        return;
    }
    let f = Fixture::new("flood");
    let (out, _) = f.run(&[], |s| {
        let _ = handshake(&s);
        // Never read a reply; stop when the helper is gone.
        for _ in 0..10_000 {
            let req = ServerMsg::FileRequest {
                path: "/nope".into(),
                access: Access::ReadOnly,
            };
            if fsvc_protocol::send_server_msg(s.as_fd(), &req).is_err() {
                break;
            }
        }
    });
    out.assert_mount_failure("more than 16 file requests");
    assert!(!is_mounted(&f.mnt));
}
