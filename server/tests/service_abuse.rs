//! The server's side of the protocol against a fake helper on a
//! socketpair: the happy path, and every way a broken or hostile helper can
//! misbehave (garbage, oversized packets, messages out of order, wrong fd
//! counts, fds of the wrong kind, silence, closing early). `Service` must
//! return an error, tell the helper why (Goodbye) while the socket works,
//! and never hang or panic.
//!
//! The fake helper queues its packets before the server runs (the socket
//! buffers them), so no threads or timing are involved; the server's
//! messages are collected after its end of the socket is closed.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fsvc_protocol::{
    encode, recv_server_msg, send_helper_msg, send_packet, Access, Caller, FileGrant, FsType,
    HelperMsg, MountInfo, Refusal, ServerMsg, WireError, MAX_MESSAGE_SIZE, PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
};
use fsvc_server::service::{OptionError, Service, ServiceError};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{pipe2, read};
use proptest::prelude::*;

/// Generous: only reached if something is broken (then the test fails
/// instead of hanging).
const LONG: Duration = Duration::from_secs(10);
/// The "helper never answers" knob.
const SHORT: Duration = Duration::from_millis(100);

fn pair() -> (OwnedFd, OwnedFd) {
    fsvc_protocol::seqpacket_pair().expect("socketpair")
}

/// An open, already unlinked regular file (stands in for an image).
fn image(writable: bool) -> OwnedFd {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "plumbing-abuse-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create temp image");
    std::fs::remove_file(&path).expect("unlink temp image");
    if writable {
        return f.into();
    }
    // Reopen read-only through /proc so the access mode is O_RDONLY.
    let ro = File::open(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        f.as_raw_fd()
    }))
    .expect("reopen read-only");
    ro.into()
}

fn dev_null() -> OwnedFd {
    File::open("/dev/null").expect("/dev/null").into()
}

/// A pipe: (read end, write end). The write end is what travels.
fn pipe() -> (OwnedFd, OwnedFd) {
    pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).expect("pipe2")
}

fn write_end_closed(r: &OwnedFd) -> bool {
    matches!(read(r, &mut [0u8; 1]), Ok(0))
}

fn info(uid: u32, options: &str, allow_other_permitted: bool) -> MountInfo {
    MountInfo {
        caller: Caller {
            uid,
            gid: uid,
            groups: vec![],
        },
        fs_type: FsType::Ext4,
        source: "/tmp/plumbing-source.img".to_owned(),
        mountpoint: "/mnt/plumbing".to_owned(),
        fs_options: options.to_owned(),
        read_only: true,
        allow_other_permitted,
        verbose: false,
        idmap: false,
    }
}

fn hello() -> HelperMsg {
    HelperMsg::Hello {
        min_version: PROTOCOL_VERSION_MIN,
        max_version: PROTOCOL_VERSION_MAX,
    }
}

fn ro_grant() -> FileGrant {
    FileGrant {
        read_only: true,
        block_device: false,
        direct: false,
    }
}

/// One packet from the fake helper.
enum Pkt {
    Msg(HelperMsg, Vec<OwnedFd>),
    Raw(Vec<u8>, Vec<OwnedFd>),
}

fn msg(m: HelperMsg) -> Pkt {
    Pkt::Msg(m, vec![])
}

/// The standard opening: Hello and MountInfo.
fn opening(options: &str) -> Vec<Pkt> {
    vec![
        msg(hello()),
        msg(HelperMsg::MountInfo(info(0, options, true))),
    ]
}

/// Queues the helper's packets, runs `server` on the other end (which
/// must drop its socket before returning), and returns its result and
/// everything it sent.
fn run<R>(packets: Vec<Pkt>, server: impl FnOnce(OwnedFd) -> R) -> (R, Vec<ServerMsg>) {
    let (helper, srv) = pair();
    for p in packets {
        match p {
            Pkt::Msg(m, fds) => {
                let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                // Bypass the sender's fd-count check: abuse is the point.
                send_packet(helper.as_fd(), &encode(&m).expect("encode"), &b).expect("queue");
            }
            Pkt::Raw(bytes, fds) => {
                let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                send_packet(helper.as_fd(), &bytes, &b).expect("queue raw");
            }
        }
    }
    let result = server(srv);
    let mut sent = Vec::new();
    loop {
        match recv_server_msg(helper.as_fd(), LONG) {
            Ok(m) => sent.push(m),
            Err(WireError::PeerClosed) => break,
            Err(e) => panic!("collecting the server's messages: {e}"),
        }
    }
    (result, sent)
}

fn goodbye_of(sent: &[ServerMsg]) -> (i32, String) {
    match sent.last() {
        Some(ServerMsg::Goodbye { status, reason }) => (*status, reason.clone()),
        other => panic!("no goodbye at the end: {other:?} in {sent:?}"),
    }
}

fn accept(sock: OwnedFd) -> Result<Service, ServiceError> {
    Service::accept(sock, LONG)
}

#[test]
fn happy_path_walks_the_whole_conversation() {
    let mut packets = opening("errors=remount-ro,debug");
    packets.push(Pkt::Msg(
        HelperMsg::FileReply(Ok(ro_grant())),
        vec![image(false)],
    ));
    packets.push(Pkt::Msg(HelperMsg::MountReply(Ok(())), vec![dev_null()]));
    let (res, sent) = run(packets, |sock| -> Result<(), ServiceError> {
        let mut svc = accept(sock)?;
        assert_eq!(svc.version(), PROTOCOL_VERSION_MAX);
        assert!(svc.options().debug);
        let (_fd, grant) = svc.request_file(Access::ReadOnly)?.expect("granted");
        assert_eq!(grant, ro_grant());
        svc.files_done()?;
        let req = svc.mount_request(true);
        let _fuse = svc.request_mount(&req)?.expect("mounted");
        svc.goodbye(0, "mounted")?;
        // A second goodbye is a no-op.
        svc.goodbye(5, "ignored")?;
        Ok(())
    });
    res.expect("conversation");
    let want = vec![
        ServerMsg::Hello {
            version: PROTOCOL_VERSION_MAX,
        },
        ServerMsg::FileRequest {
            path: "/tmp/plumbing-source.img".to_owned(),
            access: Access::ReadOnly,
        },
        ServerMsg::FilesDone,
        ServerMsg::MountRequest(fsvc_protocol::MountRequest {
            fs_name: "/tmp/plumbing-source.img".to_owned(),
            subtype: "ext4".to_owned(),
            read_only: true,
            default_permissions: true,
            allow_other: true,
        }),
        ServerMsg::Goodbye {
            status: 0,
            reason: "mounted".to_owned(),
        },
    ];
    assert_eq!(sent, want);
}

#[test]
fn a_bad_opening_is_refused_with_a_goodbye() {
    // (name, packets, expected status, a phrase of the reason)
    let big = vec![7u8; MAX_MESSAGE_SIZE + 100];
    let cases: Vec<(&str, Vec<Pkt>, Errno, &str)> = vec![
        (
            "garbage",
            vec![Pkt::Raw(vec![0xde, 0xad, 0xbe, 0xef], vec![])],
            Errno::EPROTO,
            "malformed",
        ),
        (
            "oversized",
            vec![Pkt::Raw(big, vec![])],
            Errno::EPROTO,
            "exceeds the protocol limit",
        ),
        (
            "MountInfo before Hello",
            vec![msg(HelperMsg::MountInfo(info(0, "", true)))],
            Errno::EPROTO,
            "expected Hello from the helper, got MountInfo",
        ),
        (
            "Hello twice",
            vec![msg(hello()), msg(hello())],
            Errno::EPROTO,
            "expected MountInfo from the helper, got Hello",
        ),
        (
            "no common version",
            vec![msg(HelperMsg::Hello {
                min_version: PROTOCOL_VERSION_MAX + 1,
                max_version: PROTOCOL_VERSION_MAX + 8,
            })],
            Errno::EPROTONOSUPPORT,
            "versions 3..=10",
        ),
        (
            "inverted version range",
            vec![msg(HelperMsg::Hello {
                min_version: 1,
                max_version: 0,
            })],
            Errno::EPROTONOSUPPORT,
            "versions 1..=0",
        ),
        (
            "fd on Hello",
            vec![Pkt::Msg(hello(), vec![dev_null()])],
            Errno::EPROTO,
            "Hello must carry 0 file descriptor(s), but 1 came",
        ),
        (
            "unknown option",
            opening("ro,bogus"),
            Errno::EINVAL,
            "Unknown parameter 'bogus'",
        ),
        (
            "bad option value",
            opening("errors=explode"),
            Errno::EINVAL,
            "'errors': 'explode'",
        ),
        (
            "allow_other not permitted",
            vec![
                msg(hello()),
                msg(HelperMsg::MountInfo(info(1000, "allow_other", false))),
            ],
            Errno::EPERM,
            "allow_other",
        ),
        (
            "fakeroot for a user",
            vec![
                msg(hello()),
                msg(HelperMsg::MountInfo(info(1000, "fakeroot", true))),
            ],
            Errno::EPERM,
            "only root",
        ),
    ];
    for (name, packets, status, phrase) in cases {
        let (res, sent) = run(packets, accept);
        let err = res.expect_err(name);
        assert_eq!(err.status(), status as i32, "{name}: {err}");
        let (st, reason) = goodbye_of(&sent);
        assert_eq!(st, status as i32, "{name}");
        assert!(
            reason.contains(phrase),
            "{name}: reason {reason:?} lacks {phrase:?}"
        );
    }
}

#[test]
fn an_fd_on_an_out_of_order_message_is_closed() {
    let (r, w) = pipe();
    let packets = vec![
        msg(hello()),
        Pkt::Msg(HelperMsg::MountReply(Ok(())), vec![w]),
    ];
    let (res, sent) = run(packets, accept);
    assert!(matches!(
        res,
        Err(ServiceError::Unexpected {
            expected: "MountInfo",
            ..
        })
    ));
    assert_eq!(goodbye_of(&sent).0, Errno::EPROTO as i32);
    assert!(
        write_end_closed(&r),
        "the fd that came with the wrong message leaked"
    );
}

#[test]
fn silence_times_out_and_says_so() {
    let (res, sent) = run(vec![], |sock| Service::accept(sock, SHORT));
    let err = res.expect_err("silence accepted");
    assert!(
        matches!(
            err,
            ServiceError::Wire {
                source: WireError::Timeout(_),
                ..
            }
        ),
        "{err}"
    );
    let (status, reason) = goodbye_of(&sent);
    assert_eq!(status, Errno::ETIMEDOUT as i32);
    assert!(reason.contains("hello"), "{reason}");

    // Silent after the opening: the file request times out.
    let (res, sent) = run(opening(""), |sock| {
        let mut svc = Service::accept(sock, SHORT)?;
        svc.request_file(Access::ReadOnly).map(|_| ())
    });
    assert!(matches!(
        res,
        Err(ServiceError::Wire {
            source: WireError::Timeout(_),
            ..
        })
    ));
    assert_eq!(goodbye_of(&sent).0, Errno::ETIMEDOUT as i32);
}

#[test]
fn a_helper_that_hangs_up_ends_the_conversation() {
    // Closed before saying anything.
    let (helper, srv) = pair();
    drop(helper);
    let err = Service::accept(srv, LONG).expect_err("accepted a closed socket");
    assert!(
        matches!(
            err,
            ServiceError::Wire {
                source: WireError::PeerClosed,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.status(), Errno::EPIPE as i32);

    // Closed after the opening: the file request fails, later calls too.
    let (helper, srv) = pair();
    for m in [hello(), HelperMsg::MountInfo(info(0, "", true))] {
        send_helper_msg(helper.as_fd(), &m, &[]).expect("send");
    }
    let mut svc = Service::accept(srv, LONG).expect("opening");
    assert_eq!(
        recv_server_msg(helper.as_fd(), LONG).expect("hello"),
        ServerMsg::Hello {
            version: PROTOCOL_VERSION_MAX
        }
    );
    drop(helper);
    let err = svc.request_file(Access::ReadOnly).expect_err("closed peer");
    assert!(
        matches!(
            err,
            ServiceError::Wire {
                source: WireError::PeerClosed,
                ..
            }
        ),
        "{err}"
    );
    assert!(svc.has_ended());
    assert!(matches!(svc.files_done(), Err(ServiceError::Ended)));
    svc.goodbye(1, "nobody listens")
        .expect("goodbye after the end is a no-op");
}

/// Runs the opening, one file request answered by `reply`, and returns the
/// request's result and what the server sent.
fn file_request(
    access: Access,
    reply: Pkt,
) -> (
    Result<Result<FileGrant, Refusal>, ServiceError>,
    Vec<ServerMsg>,
) {
    let mut packets = opening("");
    packets.push(reply);
    run(packets, |sock| {
        let mut svc = accept(sock)?;
        let res = svc.request_file(access)?.map(|(_fd, g)| g);
        if res.is_ok() {
            // The conversation stays usable after a good grant.
            svc.files_done()?;
        }
        Ok(res)
    })
}

#[test]
fn bad_file_replies_are_protocol_errors() {
    let rw = FileGrant {
        read_only: false,
        ..ro_grant()
    };
    let blk = FileGrant {
        block_device: true,
        ..ro_grant()
    };
    let cases: Vec<(&str, Access, Pkt, &str)> = vec![
        (
            "no fd",
            Access::ReadOnly,
            msg(HelperMsg::FileReply(Ok(ro_grant()))),
            "must carry 1",
        ),
        (
            "two fds",
            Access::ReadOnly,
            Pkt::Msg(
                HelperMsg::FileReply(Ok(ro_grant())),
                vec![image(false), image(false)],
            ),
            "must carry 1",
        ),
        (
            "fd on a refusal",
            Access::ReadOnly,
            Pkt::Msg(
                HelperMsg::FileReply(Err(Refusal {
                    errno: 13,
                    message: "no".into(),
                })),
                vec![image(false)],
            ),
            "must carry 0",
        ),
        (
            "a pipe",
            Access::ReadOnly,
            Pkt::Msg(HelperMsg::FileReply(Ok(ro_grant())), vec![pipe().1]),
            "neither a block device nor a regular file",
        ),
        (
            "a char device",
            Access::ReadOnly,
            Pkt::Msg(HelperMsg::FileReply(Ok(ro_grant())), vec![dev_null()]),
            "neither a block device",
        ),
        (
            "claims block device",
            Access::ReadOnly,
            Pkt::Msg(HelperMsg::FileReply(Ok(blk)), vec![image(false)]),
            "block_device=true",
        ),
        (
            "claims rw, is ro",
            Access::ReadWrite,
            Pkt::Msg(HelperMsg::FileReply(Ok(rw)), vec![image(false)]),
            "not opened read-write",
        ),
        (
            "mount reply instead",
            Access::ReadOnly,
            Pkt::Msg(HelperMsg::MountReply(Ok(())), vec![dev_null()]),
            "expected FileReply",
        ),
        (
            "garbage",
            Access::ReadOnly,
            Pkt::Raw(vec![3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], vec![]),
            "malformed",
        ),
    ];
    for (name, access, reply, phrase) in cases {
        let (res, sent) = file_request(access, reply);
        let err = res.expect_err(name);
        assert!(err.to_string().contains(phrase), "{name}: {err}");
        let (status, reason) = goodbye_of(&sent);
        assert_eq!(status, Errno::EPROTO as i32, "{name}");
        assert!(reason.contains(phrase), "{name}: {reason}");
        assert!(
            !sent.contains(&ServerMsg::FilesDone),
            "{name}: carried on after the error"
        );
    }
}

#[test]
fn good_file_replies_and_refusals() {
    let rw = FileGrant {
        read_only: false,
        ..ro_grant()
    };
    let (res, sent) = file_request(
        Access::ReadWrite,
        Pkt::Msg(HelperMsg::FileReply(Ok(rw.clone())), vec![image(true)]),
    );
    assert_eq!(res.expect("no error").expect("granted"), rw);
    assert_eq!(sent.last(), Some(&ServerMsg::FilesDone));

    let refusal = Refusal {
        errno: Errno::EROFS as i32,
        message: "read-only device".into(),
    };
    let (res, sent) = file_request(
        Access::ReadWrite,
        msg(HelperMsg::FileReply(Err(refusal.clone()))),
    );
    assert_eq!(res.expect("no error"), Err(refusal));
    // A refusal is an answer, not a protocol error: no goodbye from Service.
    assert!(
        !sent.iter().any(|m| matches!(m, ServerMsg::Goodbye { .. })),
        "{sent:?}"
    );
}

#[test]
fn bad_mount_replies_are_protocol_errors() {
    let cases: Vec<(&str, Pkt, &str)> = vec![
        ("no fd", msg(HelperMsg::MountReply(Ok(()))), "must carry 1"),
        (
            "a regular file",
            Pkt::Msg(HelperMsg::MountReply(Ok(())), vec![image(false)]),
            "not a character device",
        ),
        (
            "a file reply",
            Pkt::Msg(HelperMsg::FileReply(Ok(ro_grant())), vec![image(false)]),
            "expected MountReply",
        ),
        ("hello", msg(hello()), "expected MountReply"),
    ];
    for (name, reply, phrase) in cases {
        let mut packets = opening("");
        packets.push(Pkt::Msg(
            HelperMsg::FileReply(Ok(ro_grant())),
            vec![image(false)],
        ));
        packets.push(reply);
        let (res, sent) = run(packets, |sock| -> Result<(), ServiceError> {
            let mut svc = accept(sock)?;
            let _src = svc.request_file(Access::ReadOnly)?.expect("granted");
            svc.files_done()?;
            let req = svc.mount_request(true);
            svc.request_mount(&req)?
                .map(|_| ())
                .map_err(|r| panic!("refused: {r:?}"))
        });
        let err = res.expect_err(name);
        assert!(err.to_string().contains(phrase), "{name}: {err}");
        let (status, reason) = goodbye_of(&sent);
        assert_eq!(status, Errno::EPROTO as i32, "{name}");
        assert!(reason.contains(phrase), "{name}: {reason}");
    }
}

#[test]
fn our_own_misuse_is_refused_locally() {
    let (res, sent) = run(opening(""), |sock| -> Result<(), ServiceError> {
        let mut svc = accept(sock)?;
        let req = svc.mount_request(true);
        assert!(matches!(
            svc.request_mount(&req),
            Err(ServiceError::OutOfOrder("request_mount"))
        ));
        svc.files_done()?;
        assert!(matches!(
            svc.request_file(Access::ReadOnly),
            Err(ServiceError::OutOfOrder("request_file"))
        ));
        assert!(matches!(
            svc.files_done(),
            Err(ServiceError::OutOfOrder("files_done"))
        ));
        Ok(())
    });
    res.expect("misuse handled");
    // Nothing but Hello and FilesDone went out.
    assert_eq!(
        sent,
        vec![
            ServerMsg::Hello {
                version: PROTOCOL_VERSION_MAX
            },
            ServerMsg::FilesDone
        ]
    );

    // allow_other is never requested when the helper did not permit it.
    let packets = vec![msg(hello()), msg(HelperMsg::MountInfo(info(0, "", false)))];
    let (res, sent) = run(packets, |sock| -> Result<(), ServiceError> {
        let mut svc = accept(sock)?;
        svc.files_done()?;
        let mut req = svc.mount_request(true);
        assert!(!req.allow_other);
        req.allow_other = true;
        let err = svc.request_mount(&req).expect_err("allow_other sent");
        assert!(matches!(
            err,
            ServiceError::Options(OptionError::NotPermitted { .. })
        ));
        Ok(())
    });
    res.expect("handled");
    assert!(!sent.iter().any(|m| matches!(m, ServerMsg::MountRequest(_))));
}

#[test]
fn allow_other_follows_policy() {
    // (caller uid, options, permitted, expected allow_other)
    let cases = [
        (0, "", true, true),
        (0, "", false, false),
        (1000, "", true, false),
        (1000, "allow_other", true, true),
    ];
    for (uid, options, permitted, want) in cases {
        let packets = vec![
            msg(hello()),
            msg(HelperMsg::MountInfo(info(uid, options, permitted))),
        ];
        let (res, _) = run(packets, |sock| accept(sock).map(|s| s.mount_request(true)));
        let req = res.expect("accepted");
        assert_eq!(
            req.allow_other, want,
            "uid {uid} {options:?} permitted {permitted}"
        );
        assert!(req.default_permissions);
        assert_eq!(req.subtype, "ext4");
    }
}

#[test]
fn long_reasons_are_clamped_not_fatal() {
    let (res, sent) = run(opening(""), |sock| -> Result<(), ServiceError> {
        let mut svc = accept(sock)?;
        svc.goodbye(5, &"why ".repeat(10_000))
    });
    res.expect("goodbye with a long reason");
    let (status, reason) = goodbye_of(&sent);
    assert_eq!(status, 5);
    assert!(reason.len() <= fsvc_protocol::MAX_REASON_LEN);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_packets_never_panic_or_hang(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..256), 0..4),
    ) {
        let pkts = packets.into_iter().map(|b| Pkt::Raw(b, vec![])).collect();
        let (res, sent) = run(pkts, |sock| -> Result<(), ServiceError> {
            let mut svc = Service::accept(sock, SHORT)?;
            let _ = svc.request_file(Access::ReadOnly)?;
            Ok(())
        });
        // Random bytes never make a conversation succeed, and every
        // failure is reported with a non-zero goodbye.
        prop_assert!(res.is_err());
        let failed_with_goodbye =
            matches!(sent.last(), Some(ServerMsg::Goodbye { status, .. }) if *status != 0);
        prop_assert!(failed_with_goodbye, "{:?}", sent);
    }
}
