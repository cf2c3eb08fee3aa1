//! fsvc-protocol: the messages the privileged helper (`fsvc-mount`) and the
//! unprivileged server (`fsvc-server`) exchange, and their framing.
//!
//! One message is one `SOCK_SEQPACKET` packet, postcard-encoded, at most
//! [`MAX_MESSAGE_SIZE`] bytes. File descriptors ride as `SCM_RIGHTS` on
//! exactly the messages that carry them ([`HelperMsg::fd_count`]). Both sides
//! treat the peer as hostile: every receive has a timeout, decoding never
//! panics, and any anomaly (truncation, an unexpected fd count, an unknown
//! control message) is an error that closes every fd that came with it.
//!
//! The conversation, in order (see DESIGN.md, "The mount, step by step"):
//!
//! 1. helper → [`HelperMsg::Hello`]; server → [`ServerMsg::Hello`] with the
//!    chosen version (or [`ServerMsg::Goodbye`] when the ranges do not overlap).
//! 2. helper → [`HelperMsg::MountInfo`].
//! 3. server → [`ServerMsg::FileRequest`]; helper → [`HelperMsg::FileReply`]
//!    (one fd when granted). Repeated as needed.
//! 4. server → [`ServerMsg::FilesDone`]; the helper refuses later file requests.
//! 5. server → [`ServerMsg::MountRequest`]; helper → [`HelperMsg::MountReply`]
//!    (the `/dev/fuse` fd when mounted).
//! 6. server → [`ServerMsg::Goodbye`] with its status; the helper exits.
//!
//! The crate's only `unsafe` is `wire::adopt`: one line that turns the fd
//! numbers `recvmsg` just installed into `OwnedFd`s (nix returns raw
//! numbers; no safe std API exists for this).
//!
//! A detached mount (issue 11) reaches its caller as one more message type,
//! [`Delivery`], with the same framing (see [`delegate`]).
//!
//! At any point either side may end the conversation: the server with a
//! `Goodbye` carrying a non-zero status, the helper by closing the socket.

pub mod delegate;
pub mod messages;
pub mod wire;

pub use delegate::*;
pub use messages::*;
pub use wire::*;
