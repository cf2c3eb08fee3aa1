//! The control-message buffer of `recvmsg(2)`, sized and parsed in safe Rust.
//!
//! Layout (the kernel's `struct cmsghdr`, which every Linux libc mirrors):
//! `cmsg_len: size_t, cmsg_level: int, cmsg_type: int`, then the data at the
//! header length rounded up to `sizeof(long)`; each message starts at the
//! previous one's `cmsg_len` rounded up the same way. `recvmsg` writes
//! whole headers and, for `SCM_RIGHTS`, whole fds only (also when it has to
//! truncate), and the buffer is zeroed before every call, so a zero
//! `cmsg_len` marks the end of what the kernel wrote.
//!
//! Invariant: parsing never reads outside the buffer and never loops
//! forever (each step advances by at least the header size).

use std::mem::size_of;
use std::os::fd::RawFd;

use nix::libc;

/// Alignment unit of control messages (`sizeof(long)` on Linux).
const ALIGN: usize = size_of::<usize>();
/// Unaligned header size: `size_t` + two `int`s.
const HDR_LEN: usize = size_of::<usize>() + 2 * size_of::<i32>();
/// Offset of a message's data (`CMSG_LEN(0)`).
const DATA_OFFSET: usize = (HDR_LEN + ALIGN - 1) & !(ALIGN - 1);

/// `CMSG_ALIGN`; `None` when rounding up would overflow (a hostile length).
const fn align(n: usize) -> Option<usize> {
    match n.checked_add(ALIGN - 1) {
        Some(v) => Some(v & !(ALIGN - 1)),
        None => None,
    }
}

/// A zeroed control buffer with room for one `SCM_RIGHTS` message of
/// `n_fds` fds (`CMSG_SPACE(n_fds * sizeof(int))`).
pub(super) fn buffer_for_fds(n_fds: usize) -> Vec<u8> {
    let data = n_fds.saturating_mul(size_of::<RawFd>());
    vec![0u8; DATA_OFFSET + align(data).unwrap_or(data)]
}

/// One control message found in the buffer.
#[derive(Debug)]
pub(super) struct Cmsg<'a> {
    /// `cmsg_level`.
    pub(super) level: i32,
    /// `cmsg_type`.
    pub(super) kind: i32,
    data: &'a [u8],
}

impl Cmsg<'_> {
    /// Whether this carries fds (`SOL_SOCKET`/`SCM_RIGHTS`).
    pub(super) fn is_scm_rights(&self) -> bool {
        self.level == libc::SOL_SOCKET && self.kind == libc::SCM_RIGHTS
    }

    /// The fd numbers of an `SCM_RIGHTS` message (whole ints only).
    pub(super) fn fds(&self) -> Vec<RawFd> {
        self.data
            .chunks_exact(size_of::<RawFd>())
            .filter_map(|c| c.try_into().ok().map(RawFd::from_ne_bytes))
            .collect()
    }
}

fn read_usize(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(size_of::<usize>())?)?;
    Some(usize::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let bytes = buf.get(at..at.checked_add(size_of::<i32>())?)?;
    Some(i32::from_ne_bytes(bytes.try_into().ok()?))
}

/// Every control message in `buf`, in order. A malformed header (length
/// shorter than a header) ends the walk: the kernel never writes one, so
/// nothing real can follow it.
pub(super) fn parse(buf: &[u8]) -> Vec<Cmsg<'_>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while let Some(len) = read_usize(buf, off) {
        if len < HDR_LEN {
            break;
        }
        let (Some(level), Some(kind)) = (
            read_i32(buf, off + size_of::<usize>()),
            read_i32(buf, off + size_of::<usize>() + size_of::<i32>()),
        ) else {
            break;
        };
        let data_start = off.saturating_add(DATA_OFFSET).min(buf.len());
        let data_end = off.saturating_add(len).min(buf.len()).max(data_start);
        out.push(Cmsg {
            level,
            kind,
            data: buf.get(data_start..data_end).unwrap_or(&[]),
        });
        match align(len).and_then(|l| off.checked_add(l)) {
            Some(next) if next > off => off = next,
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize, level: i32, kind: i32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.resize(DATA_OFFSET, 0);
        v
    }

    #[test]
    fn parses_two_messages_and_stops_at_zero() {
        let mut buf = header(DATA_OFFSET + 8, libc::SOL_SOCKET, libc::SCM_RIGHTS);
        buf.extend_from_slice(&7i32.to_ne_bytes());
        buf.extend_from_slice(&9i32.to_ne_bytes());
        buf.resize(align(buf.len()).expect("small"), 0);
        buf.extend(header(DATA_OFFSET + 4, 1, 99));
        buf.extend_from_slice(&[1, 2, 3, 4]);
        buf.resize(buf.len() + 64, 0);
        let msgs = parse(&buf);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].is_scm_rights());
        assert_eq!(msgs[0].fds(), vec![7, 9]);
        assert_eq!((msgs[1].level, msgs[1].kind), (1, 99));
        assert!(!msgs[1].is_scm_rights());
    }

    #[test]
    fn hostile_lengths_stay_in_bounds() {
        for len in [0usize, 1, HDR_LEN - 1, usize::MAX, usize::MAX - 3, 1 << 40] {
            let mut buf = header(len, libc::SOL_SOCKET, libc::SCM_RIGHTS);
            buf.extend_from_slice(&5i32.to_ne_bytes());
            let msgs = parse(&buf);
            assert!(msgs.len() <= 1, "len {len}");
        }
        assert!(parse(&[]).is_empty());
        assert!(parse(&[0xff; 7]).is_empty());
    }

    #[test]
    fn buffer_size_matches_cmsg_space() {
        assert_eq!(
            buffer_for_fds(1).len(),
            nix::sys::socket::cmsg_space::<RawFd>()
        );
        assert_eq!(
            buffer_for_fds(4).len(),
            nix::sys::socket::cmsg_space::<[RawFd; 4]>()
        );
    }
}
