//! Tests of the framing on real `SOCK_SEQPACKET` socketpairs: round trips
//! with and without fds, and every way a hostile peer can send a bad packet.
//! Fds being closed is checked through pipes: the received copy of a write
//! end is the only one left, so the read end sees EOF exactly when it was
//! closed.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::socket::{setsockopt, sockopt};
use nix::unistd::{pipe2, read, write};
use proptest::prelude::*;

use super::*;
use crate::delegate::{Delivery, DetachedMount, ImageSource, MountImage, MOUNT_IMAGE_VERSION};
use crate::messages::{Access, Caller, FileGrant, FsType};

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(10);

fn pair() -> (OwnedFd, OwnedFd) {
    seqpacket_pair().expect("socketpair")
}

/// A pipe whose write end will travel; returns (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).expect("pipe2")
}

/// True when every copy of the pipe's write end is closed.
fn write_end_closed(r: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    matches!(read(r, &mut b), Ok(0))
}

fn mount_info() -> MountInfo {
    MountInfo {
        caller: Caller {
            uid: 1000,
            gid: 100,
            groups: vec![4, 24, 27],
        },
        fs_type: FsType::Ext3,
        source: "/dev/disk/by-label/ünïcode".to_owned(),
        mountpoint: "/mnt/x y".to_owned(),
        fs_options: "errors=remount-ro,commit=5".to_owned(),
        read_only: true,
        allow_other_permitted: false,
        verbose: true,
        idmap: false,
    }
}

fn refusal() -> Refusal {
    Refusal {
        errno: 13,
        message: "permission denied: /dev/sdz".to_owned(),
    }
}

fn grant() -> FileGrant {
    FileGrant {
        read_only: true,
        block_device: false,
        direct: true,
    }
}

fn all_helper_msgs() -> Vec<HelperMsg> {
    vec![
        HelperMsg::Hello {
            min_version: 1,
            max_version: u32::MAX,
        },
        HelperMsg::MountInfo(mount_info()),
        HelperMsg::FileReply(Ok(grant())),
        HelperMsg::FileReply(Err(refusal())),
        HelperMsg::MountReply(Ok(())),
        HelperMsg::MountReply(Err(refusal())),
    ]
}

fn all_server_msgs() -> Vec<ServerMsg> {
    vec![
        ServerMsg::Hello { version: 1 },
        ServerMsg::FileRequest {
            path: "/tmp/image.ext4".to_owned(),
            access: Access::ReadWrite,
        },
        ServerMsg::FileRequest {
            path: "/dev/sda1".to_owned(),
            access: Access::ReadOnly,
        },
        ServerMsg::FilesDone,
        ServerMsg::MountRequest(MountRequest {
            fs_name: "/tmp/image.ext4".to_owned(),
            subtype: "ext4".to_owned(),
            read_only: true,
            default_permissions: true,
            allow_other: false,
        }),
        ServerMsg::Goodbye {
            status: 0,
            reason: "mounted".to_owned(),
        },
        ServerMsg::Goodbye {
            status: 74,
            reason: "x".repeat(MAX_REASON_LEN),
        },
    ]
}

#[test]
fn every_helper_msg_round_trips_with_its_fds() {
    let (a, b) = pair();
    for msg in all_helper_msgs() {
        let (r, w) = pipe();
        let fds: Vec<BorrowedFd<'_>> = (0..msg.fd_count()).map(|_| w.as_fd()).collect();
        send_helper_msg(a.as_fd(), &msg, &fds).expect("send");
        let (got, got_fds) = recv_helper_msg(b.as_fd(), LONG).expect("recv");
        assert_eq!(got, msg);
        assert_eq!(got_fds.len(), msg.fd_count(), "{msg:?}");
        // The received fd is the same pipe: bytes written through it come
        // out of our read end.
        for fd in &got_fds {
            assert_eq!(write(fd, b"z").expect("write through received fd"), 1);
            let mut buf = [0u8; 1];
            assert_eq!(read(&r, &mut buf).expect("read"), 1);
            assert_eq!(&buf, b"z");
        }
    }
}

#[test]
fn every_server_msg_round_trips() {
    let (a, b) = pair();
    for msg in all_server_msgs() {
        send_server_msg(a.as_fd(), &msg).expect("send");
        let got = recv_server_msg(b.as_fd(), LONG).expect("recv");
        assert_eq!(got, msg);
    }
}

#[test]
fn deliveries_round_trip_and_count_their_fd() {
    let (a, b) = pair();
    let msgs = [
        Delivery::Mounted(DetachedMount {
            source: "/srv/layer.ext4".to_owned(),
            fs_type: FsType::Ext4,
            read_only: true,
            note: String::new(),
        }),
        Delivery::Refused(refusal()),
    ];
    for msg in msgs {
        let (_r, w) = pipe();
        let fds: Vec<BorrowedFd<'_>> = (0..msg.fd_count()).map(|_| w.as_fd()).collect();
        send_msg(a.as_fd(), &msg, &fds).expect("send");
        let (got, got_fds) = recv_msg::<Delivery>(b.as_fd(), LONG).expect("recv");
        assert_eq!((got, got_fds.len()), (msg.clone(), msg.fd_count()));
    }
    // A Mounted without its fd, or a Refused with one, is refused and the
    // stray fd closed.
    let bare = encode(&Delivery::Mounted(DetachedMount {
        source: "/x".to_owned(),
        fs_type: FsType::Ext2,
        read_only: false,
        note: String::new(),
    }))
    .expect("encode");
    send_packet(a.as_fd(), &bare, &[]).expect("send raw");
    assert!(matches!(
        recv_msg::<Delivery>(b.as_fd(), LONG),
        Err(WireError::FdCount {
            expected: 1,
            got: 0,
            ..
        })
    ));
    let refused = encode(&Delivery::Refused(refusal())).expect("encode");
    let (r, w) = pipe();
    send_packet(a.as_fd(), &refused, &[w.as_fd()]).expect("send raw");
    drop(w);
    assert!(matches!(
        recv_msg::<Delivery>(b.as_fd(), LONG),
        Err(WireError::FdCount {
            expected: 0,
            got: 1,
            ..
        })
    ));
    assert!(write_end_closed(&r), "stray fd was leaked");
}

#[test]
fn mount_image_requests_carry_their_fds() {
    let (a, b) = pair();
    let base = MountImage {
        version: MOUNT_IMAGE_VERSION,
        source: ImageSource::Path("/srv/img".to_owned()),
        fs_type: FsType::Ext4,
        read_only: false,
        options: "noatime".to_owned(),
        user_namespace: false,
    };
    let cases = [
        (base.clone(), 0),
        (
            MountImage {
                source: ImageSource::Fd,
                ..base.clone()
            },
            1,
        ),
        (
            MountImage {
                source: ImageSource::Fd,
                user_namespace: true,
                ..base.clone()
            },
            2,
        ),
        (
            MountImage {
                user_namespace: true,
                ..base.clone()
            },
            1,
        ),
    ];
    for (msg, n) in cases {
        assert_eq!(msg.fd_count(), n, "{msg:?}");
        let (_r, w) = pipe();
        let fds: Vec<BorrowedFd<'_>> = (0..n).map(|_| w.as_fd()).collect();
        send_msg(a.as_fd(), &msg, &fds).expect("send");
        let (got, got_fds) = recv_msg::<MountImage>(b.as_fd(), LONG).expect("recv");
        assert_eq!((got, got_fds.len()), (msg, n));
    }
    // An empty path, or a NUL in the options, is refused.
    for bad in [
        MountImage {
            source: ImageSource::Path(String::new()),
            ..base.clone()
        },
        MountImage {
            options: "ro\0x".to_owned(),
            ..base.clone()
        },
    ] {
        let bytes = postcard::to_stdvec(&bad).expect("encode");
        send_packet(a.as_fd(), &bytes, &[]).expect("send raw");
        assert!(matches!(
            recv_msg::<MountImage>(b.as_fd(), LONG),
            Err(WireError::BadField { .. })
        ));
    }
}

#[test]
fn garbage_packets_are_refused() {
    let good = encode(&HelperMsg::Hello {
        min_version: 1,
        max_version: 1,
    })
    .expect("encode");
    let mut trailing = good.clone();
    trailing.push(0);
    let info = encode(&HelperMsg::MountInfo(mount_info())).expect("encode");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown variant", vec![200]),
        ("all ones", vec![0xff; 64]),
        ("trailing byte", trailing),
        ("truncated MountInfo", info[..info.len() / 2].to_vec()),
        ("bad utf-8 in source", {
            // MountInfo tag, caller (uid, gid, 0 groups), fs type, then a
            // 2-byte string that is not UTF-8.
            vec![1, 0, 0, 0, 0, 2, 0xff, 0xfe]
        }),
        (
            "huge length prefix",
            vec![1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ),
    ];
    let (a, b) = pair();
    for (name, bytes) in cases {
        send_packet(a.as_fd(), &bytes, &[]).expect("send raw");
        let err = recv_helper_msg(b.as_fd(), LONG).expect_err(name);
        assert!(
            matches!(err, WireError::Decode(_) | WireError::TrailingBytes(_)),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn garbage_with_fds_closes_them() {
    let (a, b) = pair();
    let (r, w) = pipe();
    send_packet(a.as_fd(), &[0xff, 0xff, 0xff], &[w.as_fd()]).expect("send raw");
    drop(w);
    assert!(matches!(
        recv_helper_msg(b.as_fd(), LONG),
        Err(WireError::Decode(_))
    ));
    assert!(write_end_closed(&r), "received fd was leaked");
}

#[test]
fn oversized_packets_are_refused() {
    let (a, b) = pair();
    setsockopt(&a, sockopt::SndBuf, &(1 << 20)).expect("SO_SNDBUF");
    for size in [MAX_MESSAGE_SIZE + 1, 64 * 1024] {
        let (r, w) = pipe();
        send_packet(a.as_fd(), &vec![0u8; size], &[w.as_fd()]).expect("send raw");
        drop(w);
        let err = recv_helper_msg(b.as_fd(), LONG).expect_err("oversize accepted");
        assert!(matches!(err, WireError::TooLarge { .. }), "{size}: {err:?}");
        assert!(write_end_closed(&r), "fd leaked on oversize packet");
    }
    // The sender refuses to build one in the first place.
    let huge = ServerMsg::FileRequest {
        path: "/".repeat(MAX_PATH_LEN + 1),
        access: Access::ReadOnly,
    };
    assert!(matches!(
        send_server_msg(a.as_fd(), &huge),
        Err(WireError::BadField { .. })
    ));
}

#[test]
fn wrong_fd_counts_are_refused_and_fds_closed() {
    // (message, fds attached)
    let cases: Vec<(HelperMsg, usize)> = vec![
        (
            HelperMsg::Hello {
                min_version: 1,
                max_version: 1,
            },
            1,
        ),
        (HelperMsg::MountInfo(mount_info()), 2),
        (HelperMsg::FileReply(Err(refusal())), 1),
        (HelperMsg::FileReply(Ok(grant())), 0),
        (HelperMsg::FileReply(Ok(grant())), 2),
        (HelperMsg::MountReply(Ok(())), 0),
        (HelperMsg::MountReply(Ok(())), MAX_FDS_PER_MESSAGE),
    ];
    let (a, b) = pair();
    for (msg, n) in cases {
        let (r, w) = pipe();
        let fds: Vec<BorrowedFd<'_>> = (0..n).map(|_| w.as_fd()).collect();
        // The checked sender refuses...
        assert!(
            matches!(
                send_helper_msg(a.as_fd(), &msg, &fds),
                Err(WireError::FdCount { .. })
            ),
            "sender accepted {msg:?} with {n} fds"
        );
        // ...and the receiver refuses what a hostile sender sends anyway.
        send_packet(a.as_fd(), &encode(&msg).expect("encode"), &fds).expect("send raw");
        drop(w);
        let err = recv_helper_msg(b.as_fd(), LONG).expect_err("wrong fd count accepted");
        assert!(
            matches!(err, WireError::FdCount { got, .. } if got == n),
            "{msg:?} with {n}: {err:?}"
        );
        assert!(write_end_closed(&r), "fd leaked: {msg:?} with {n} fds");
    }
}

#[test]
fn fds_on_server_msgs_are_refused() {
    let (a, b) = pair();
    let (r, w) = pipe();
    let bytes = encode(&ServerMsg::FilesDone).expect("encode");
    send_packet(a.as_fd(), &bytes, &[w.as_fd()]).expect("send raw");
    drop(w);
    assert!(matches!(
        recv_server_msg(b.as_fd(), LONG),
        Err(WireError::FdCount {
            expected: 0,
            got: 1,
            ..
        })
    ));
    assert!(write_end_closed(&r));
}

#[test]
fn more_fds_than_the_control_buffer_holds_is_truncation_and_all_are_closed() {
    let (a, b) = pair();
    let (r, w) = pipe();
    let n = MAX_FDS_PER_MESSAGE + 3;
    let fds: Vec<BorrowedFd<'_>> = (0..n).map(|_| w.as_fd()).collect();
    let bytes = encode(&HelperMsg::MountReply(Ok(()))).expect("encode");
    send_packet(a.as_fd(), &bytes, &fds).expect("send raw");
    drop(w);
    let err = recv_helper_msg(b.as_fd(), LONG).expect_err("truncated control accepted");
    assert!(
        matches!(err, WireError::ControlTruncated { received } if received == MAX_FDS_PER_MESSAGE),
        "{err:?}"
    );
    // Both the fds that fit (closed by us) and those the kernel cut off
    // (closed by the kernel) are gone.
    assert!(write_end_closed(&r));
}

#[test]
fn a_smaller_control_buffer_truncates_too() {
    let (a, b) = pair();
    let (r, w) = pipe();
    // Room for one fd (CMSG_SPACE rounding may leave room for one more).
    let sent = 4;
    let fds: Vec<BorrowedFd<'_>> = (0..sent).map(|_| w.as_fd()).collect();
    send_packet(a.as_fd(), b"x", &fds).expect("send raw");
    drop(w);
    let err = recv_packet(b.as_fd(), LONG, 1).expect_err("accepted");
    assert!(
        matches!(err, WireError::ControlTruncated { received } if (1..sent).contains(&received)),
        "{err:?}"
    );
    assert!(write_end_closed(&r));
}

#[test]
fn unexpected_control_messages_are_refused() {
    let (a, b) = pair();
    // With SO_PASSCRED the kernel attaches SCM_CREDENTIALS to every packet:
    // a control message that is not SCM_RIGHTS.
    setsockopt(&b, sockopt::PassCred, &true).expect("SO_PASSCRED");
    send_helper_msg(a.as_fd(), &HelperMsg::MountReply(Err(refusal())), &[]).expect("send");
    let err = recv_helper_msg(b.as_fd(), LONG).expect_err("accepted");
    assert!(
        matches!(err, WireError::UnexpectedControl { level, kind }
            if level == nix::libc::SOL_SOCKET && kind == nix::libc::SCM_CREDENTIALS),
        "{err:?}"
    );
    // With fds as well, the credentials leave too little room: an error
    // either way, and the fds are closed.
    let (r, w) = pipe();
    send_helper_msg(a.as_fd(), &HelperMsg::MountReply(Ok(())), &[w.as_fd()]).expect("send");
    drop(w);
    assert!(recv_helper_msg(b.as_fd(), LONG).is_err());
    assert!(write_end_closed(&r));
}

#[test]
fn silence_is_a_timeout() {
    let (_a, b) = pair();
    assert!(matches!(
        recv_helper_msg(b.as_fd(), SHORT),
        Err(WireError::Timeout(d)) if d == SHORT
    ));
    assert!(matches!(
        recv_server_msg(b.as_fd(), Duration::ZERO),
        Err(WireError::Timeout(_))
    ));
}

#[test]
fn a_closed_peer_is_reported_after_its_last_message() {
    let (a, b) = pair();
    send_server_msg(a.as_fd(), &ServerMsg::FilesDone).expect("send");
    drop(a);
    assert_eq!(
        recv_server_msg(b.as_fd(), LONG).expect("queued message"),
        ServerMsg::FilesDone
    );
    assert!(matches!(
        recv_server_msg(b.as_fd(), LONG),
        Err(WireError::PeerClosed)
    ));
    assert!(matches!(
        send_server_msg(b.as_fd(), &ServerMsg::FilesDone),
        Err(WireError::PeerClosed)
    ));
}

#[test]
fn a_last_message_survives_a_reset() {
    // `a` closes with a packet of `b`'s still unread: the kernel resets the
    // connection, but what `a` sent before closing must still arrive.
    let (a, b) = pair();
    send_server_msg(b.as_fd(), &ServerMsg::FilesDone).expect("send to a (never read)");
    let bye = ServerMsg::Goodbye {
        status: 71,
        reason: "protocol error".to_owned(),
    };
    send_server_msg(a.as_fd(), &bye).expect("send goodbye");
    drop(a);
    assert_eq!(recv_server_msg(b.as_fd(), LONG).expect("goodbye"), bye);
    assert!(matches!(
        recv_server_msg(b.as_fd(), LONG),
        Err(WireError::PeerClosed)
    ));
}

#[test]
fn string_limits_are_enforced_on_decode() {
    let mut long_source = mount_info();
    long_source.source = "s".repeat(MAX_PATH_LEN + 1);
    let mut nul_source = mount_info();
    nul_source.source = "/dev/sda\0/../../etc".to_owned();
    let mut empty_mountpoint = mount_info();
    empty_mountpoint.mountpoint = String::new();
    let mut long_options = mount_info();
    long_options.fs_options = "o,".repeat(MAX_OPTIONS_LEN);
    let cases = vec![
        HelperMsg::MountInfo(long_source),
        HelperMsg::MountInfo(nul_source),
        HelperMsg::MountInfo(empty_mountpoint),
        HelperMsg::MountInfo(long_options),
        HelperMsg::FileReply(Err(Refusal {
            errno: 1,
            message: "m".repeat(MAX_REASON_LEN + 1),
        })),
    ];
    let (a, b) = pair();
    for msg in cases {
        // Bypass the sender's checks the way a hostile peer would.
        let bytes = postcard::to_stdvec(&msg).expect("postcard");
        assert!(bytes.len() <= MAX_MESSAGE_SIZE);
        send_packet(a.as_fd(), &bytes, &[]).expect("send raw");
        let err = recv_helper_msg(b.as_fd(), LONG).expect_err("accepted");
        assert!(matches!(err, WireError::BadField { .. }), "{err:?}");
    }
    let bad_subtype = ServerMsg::MountRequest(MountRequest {
        fs_name: "/img".to_owned(),
        subtype: "ext4,allow_other".to_owned(),
        read_only: true,
        default_permissions: true,
        allow_other: false,
    });
    send_packet(
        a.as_fd(),
        &postcard::to_stdvec(&bad_subtype).expect("postcard"),
        &[],
    )
    .expect("send raw");
    assert!(matches!(
        recv_server_msg(b.as_fd(), LONG),
        Err(WireError::BadField {
            field: "MountRequest.subtype",
            ..
        })
    ));
}

#[test]
fn clamp_reason_respects_limit_and_char_boundaries() {
    assert_eq!(clamp_reason("short"), "short");
    let long = "é".repeat(MAX_REASON_LEN); // 2 bytes each
    let clamped = clamp_reason(&long);
    assert!(clamped.len() <= MAX_REASON_LEN);
    assert!(clamped.len() >= MAX_REASON_LEN - 1);
    assert!(clamped.chars().all(|c| c == 'é'));
}

#[test]
fn errors_read_like_sentences() {
    let e = WireError::FdCount {
        message: "FileReply(Ok)",
        expected: 1,
        got: 0,
    };
    assert_eq!(
        e.to_string(),
        "FileReply(Ok) must carry 1 file descriptor(s), but 0 came with it"
    );
    assert!(WireError::Timeout(Duration::from_secs(30))
        .to_string()
        .contains("30s"));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode::<HelperMsg>(&bytes);
        let _ = decode::<ServerMsg>(&bytes);
    }

    #[test]
    fn decoding_mutated_messages_never_panics(
        idx in 0usize..6,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode(&all_helper_msgs()[idx]).expect("encode");
        for (at, val) in flips {
            let len = bytes.len();
            bytes[at % len] = val;
        }
        if let Ok(msg) = decode::<HelperMsg>(&bytes) {
            // Whatever decodes also satisfies the limits.
            prop_assert!(msg.check_limits().is_ok());
        }
    }
}
