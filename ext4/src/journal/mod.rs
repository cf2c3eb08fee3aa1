//! The jbd2 journal of ext3/ext4: its on-disk structures and recovery
//! (replay at mount).
//!
//! # Layouts (decode and encode)
//!
//! Each journal structure has one layout, a list of big-endian field
//! descriptors ([`be`]), used both to decode it and to encode it; decoding
//! is total and separate from validation, and encoding a decoded value over
//! the bytes it came from changes nothing. The writer of journaled
//! transactions builds its blocks with the same types:
//!
//! | structure | type | checksum helpers |
//! |---|---|---|
//! | block header | [`header::BlockHeader`] (+ [`header::escape`]/[`header::unescape`]) | |
//! | superblock v1/v2 | [`superblock::JournalSuperblock`] | `checksum_of`, `set_checksum` |
//! | descriptor block and tags (32/64-bit, classic/tag3, csum v2/v3) | [`descriptor::DescriptorBlock`], [`descriptor::BlockTag`], [`descriptor::TagFormat`] | [`csum::block_tag_checksum`], [`csum::set_tail`] |
//! | revoke block (32/64-bit records) | [`revoke::RevokeBlock`] | [`csum::set_tail`] |
//! | commit block (v1 crc32_be, v2/v3 crc32c) | [`commit::CommitBlock`] | [`commit::set_csum`], [`csum::crc32_be`] |
//!
//! # Writing
//!
//! [`writer`]: [`writer::encode_transaction`] lays out one transaction
//! (revoke blocks, descriptors with their logged blocks, commit block) with
//! the layouts above; [`LogWriter`] writes transactions at the log's head
//! with jbd2's flushes, keeps the tail in the superblock and frees log space
//! as the caller reports checkpoints. [`recover::open_for_writing`] opens a
//! filesystem's journal for it. Not yet called by the write engine.
//!
//! # Recovery
//!
//! [`recover`] (in [`recover`](mod@recover)) is the entry point for a
//! filesystem: it finds the internal journal ([`recover::open_internal`]),
//! replays it ([`Journal::replay`], the kernel's three passes in
//! [`replay`]) and marks the journal and the filesystem recovered. The
//! server runs it before `Fs::open` unless `norecovery`. [`Journal`]
//! itself knows nothing of ext4 beyond the [`replay::Targets`] it may write.
//!
//! Invariants: every value read from the journal is checked before use;
//! every walk is bounded by the log's size; replay writes only inside the
//! filesystem, never into the journal, and only after every target of the
//! transactions to replay has been checked.

pub mod be;
pub mod commit;
pub mod csum;
pub mod descriptor;
pub mod handle;
pub mod header;
pub mod map;
pub mod reader;
pub mod recover;
pub mod replay;
pub mod revoke;
pub mod superblock;
pub mod tid;
pub mod writer;

#[cfg(test)]
mod layout_tests;
#[cfg(test)]
mod replay_tests;
#[cfg(test)]
pub(crate) mod testlog;
#[cfg(test)]
mod writer_tests;

pub use handle::Journal;
pub use map::JournalMap;
pub use recover::{recover, Recovery, RecoveryReport};
pub use replay::{LogEnd, Replay, Targets};
pub use writer::{LogTransaction, LogWriter};
