//! The superblock fields a mounted filesystem changes: state, mount count
//! and times, free counts, the orphan list head, feature bits set on first
//! use, bytes written, and the error record. [`SuperFields::decode`] reads
//! them from the raw superblock; [`SuperFields::encode`] writes them back
//! into the raw superblock and sets its checksum (metadata_csum). Every
//! other byte of the superblock is left as it is: the geometry never
//! changes while mounted.
//!
//! Decisions (as the kernel's ext4 does, `ext4_setup_super`,
//! `ext4_commit_super`, `save_error_info`): times are stored as 32 bits
//! plus an 8-bit high part (`*_hi`), clamped to 0..2^40; the error record
//! keeps the first error once set and overwrites the last error each time;
//! function names are cut to 32 bytes and NUL-padded.

use crate::bytes::{
    array, le16, le32, le64, put_bytes, put_le16, put_le32, put_le64, put_u8, u8_at,
};
use crate::csum::crc32c;
use crate::error::{Error, Result};
use crate::superblock::{
    Superblock, SUPERBLOCK_SIZE, S_CHECKSUM, S_ERRORS, S_FEATURE_COMPAT, S_FEATURE_INCOMPAT,
    S_FEATURE_RO_COMPAT, S_FREE_BLOCKS_COUNT_HI, S_FREE_BLOCKS_COUNT_LO, S_FREE_INODES_COUNT,
    S_LAST_ORPHAN, S_STATE,
};

const S_MTIME: usize = 0x2C;
const S_WTIME: usize = 0x30;
const S_MNT_COUNT: usize = 0x34;
const S_MAX_MNT_COUNT: usize = 0x36;
const S_DEF_RESUID: usize = 0x50;
const S_DEF_RESGID: usize = 0x52;
const S_KBYTES_WRITTEN: usize = 0x178;
const S_ERROR_COUNT: usize = 0x194;
const S_FIRST_ERROR_TIME: usize = 0x198;
const S_FIRST_ERROR_INO: usize = 0x19C;
const S_FIRST_ERROR_BLOCK: usize = 0x1A0;
const S_FIRST_ERROR_FUNC: usize = 0x1A8;
const S_FIRST_ERROR_LINE: usize = 0x1C8;
const S_LAST_ERROR_TIME: usize = 0x1CC;
const S_LAST_ERROR_INO: usize = 0x1D0;
const S_LAST_ERROR_LINE: usize = 0x1D4;
const S_LAST_ERROR_BLOCK: usize = 0x1D8;
const S_LAST_ERROR_FUNC: usize = 0x1E0;
const S_WTIME_HI: usize = 0x274;
const S_MTIME_HI: usize = 0x275;
const S_FIRST_ERROR_TIME_HI: usize = 0x278;
const S_LAST_ERROR_TIME_HI: usize = 0x279;
const S_FIRST_ERROR_ERRCODE: usize = 0x27A;
const S_LAST_ERROR_ERRCODE: usize = 0x27B;
/// Length of the error function name fields.
pub const ERROR_FUNC_LEN: usize = 32;
/// Largest time the 40-bit superblock time fields hold.
const MAX_TSTAMP: i64 = (1 << 40) - 1;

/// `s_errors`: what to do when an error is detected.
pub mod errors {
    /// Carry on.
    pub const CONTINUE: u16 = 1;
    /// Turn read-only.
    pub const REMOUNT_RO: u16 = 2;
    /// Stop (the kernel panics).
    pub const PANIC: u16 = 3;
}

/// The kernel's `EXT4_ERR_*` codes kept in `s_{first,last}_error_errcode`.
pub mod errcode {
    /// An I/O error.
    pub const EIO: u8 = 1;
    /// A checksum mismatch (EFSBADCRC).
    pub const EFSBADCRC: u8 = 3;
    /// Corruption (EFSCORRUPTED).
    pub const EFSCORRUPTED: u8 = 4;
}

/// One error as the superblock records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorInfo {
    /// When (seconds since the epoch).
    pub time: i64,
    /// Inode involved (0 if none).
    pub ino: u32,
    /// Block involved (0 if none).
    pub block: u64,
    /// Function name (the operation), at most 32 bytes.
    pub func: Vec<u8>,
    /// Line (0: fsvc has no meaningful line numbers to give).
    pub line: u32,
    /// `EXT4_ERR_*` code.
    pub errcode: u8,
}

/// The changing part of the superblock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SuperFields {
    /// `s_state` (`STATE_VALID`, `STATE_ERROR`, `STATE_ORPHAN`).
    pub state: u16,
    /// `s_errors` (see [`errors`]).
    pub errors: u16,
    /// Mounts since the last check.
    pub mnt_count: u16,
    /// Mounts allowed before a check (-1 as u16: no limit).
    pub max_mnt_count: u16,
    /// Last mount time.
    pub mtime: i64,
    /// Last write time.
    pub wtime: i64,
    /// Free blocks (clusters with bigalloc).
    pub free_blocks: u64,
    /// Free inodes.
    pub free_inodes: u32,
    /// Head of the orphan inode list (0: empty).
    pub last_orphan: u32,
    /// Compatible features.
    pub feature_compat: u32,
    /// Incompatible features.
    pub feature_incompat: u32,
    /// Read-only-compatible features.
    pub feature_ro_compat: u32,
    /// KiB written over the filesystem's lifetime.
    pub kbytes_written: u64,
    /// Who may use the reserved blocks (besides root).
    pub def_resuid: u16,
    /// Group that may use the reserved blocks.
    pub def_resgid: u16,
    /// Errors recorded since the last check.
    pub error_count: u32,
    /// The first error since the last check.
    pub first_error: Option<ErrorInfo>,
    /// The latest error.
    pub last_error: Option<ErrorInfo>,
}

fn time40(raw: &[u8], lo: usize, hi: usize) -> i64 {
    i64::from(le32(raw, lo)) | (i64::from(u8_at(raw, hi)) << 32)
}

fn put_time40(raw: &mut [u8], lo: usize, hi: usize, t: i64) -> Option<()> {
    let t = t.clamp(0, MAX_TSTAMP);
    put_le32(raw, lo, t as u32)?;
    put_u8(raw, hi, (t >> 32) as u8)
}

/// Field offsets of one error record (first or last).
struct ErrorLayout {
    time: usize,
    time_hi: usize,
    ino: usize,
    block: usize,
    func: usize,
    line: usize,
    errcode: usize,
}

const FIRST: ErrorLayout = ErrorLayout {
    time: S_FIRST_ERROR_TIME,
    time_hi: S_FIRST_ERROR_TIME_HI,
    ino: S_FIRST_ERROR_INO,
    block: S_FIRST_ERROR_BLOCK,
    func: S_FIRST_ERROR_FUNC,
    line: S_FIRST_ERROR_LINE,
    errcode: S_FIRST_ERROR_ERRCODE,
};

const LAST: ErrorLayout = ErrorLayout {
    time: S_LAST_ERROR_TIME,
    time_hi: S_LAST_ERROR_TIME_HI,
    ino: S_LAST_ERROR_INO,
    block: S_LAST_ERROR_BLOCK,
    func: S_LAST_ERROR_FUNC,
    line: S_LAST_ERROR_LINE,
    errcode: S_LAST_ERROR_ERRCODE,
};

impl ErrorLayout {
    fn decode(&self, raw: &[u8]) -> Option<ErrorInfo> {
        let time = time40(raw, self.time, self.time_hi);
        if time == 0 {
            return None;
        }
        let func = array::<ERROR_FUNC_LEN>(raw, self.func).unwrap_or_default();
        Some(ErrorInfo {
            time,
            ino: le32(raw, self.ino),
            block: le64(raw, self.block),
            func: func.iter().copied().take_while(|&b| b != 0).collect(),
            line: le32(raw, self.line),
            errcode: u8_at(raw, self.errcode),
        })
    }

    fn encode(&self, raw: &mut [u8], e: Option<&ErrorInfo>) -> Option<()> {
        let blank = ErrorInfo::default();
        let e = e.unwrap_or(&blank);
        put_time40(raw, self.time, self.time_hi, e.time)?;
        put_le32(raw, self.ino, e.ino)?;
        put_le64(raw, self.block, e.block)?;
        let mut func = [0u8; ERROR_FUNC_LEN];
        let n = e.func.len().min(ERROR_FUNC_LEN);
        func[..n].copy_from_slice(e.func.get(..n).unwrap_or(&[]));
        put_bytes(raw, self.func, &func)?;
        put_le32(raw, self.line, e.line)?;
        put_u8(raw, self.errcode, e.errcode)
    }
}

impl SuperFields {
    /// The fields of the raw superblock `raw` (1024 bytes).
    pub fn decode(sb: &Superblock, raw: &[u8]) -> SuperFields {
        let hi = |off: usize| -> u64 {
            if sb.is_64bit() {
                u64::from(le32(raw, off)) << 32
            } else {
                0
            }
        };
        SuperFields {
            state: le16(raw, S_STATE),
            errors: le16(raw, S_ERRORS),
            mnt_count: le16(raw, S_MNT_COUNT),
            max_mnt_count: le16(raw, S_MAX_MNT_COUNT),
            mtime: time40(raw, S_MTIME, S_MTIME_HI),
            wtime: time40(raw, S_WTIME, S_WTIME_HI),
            free_blocks: u64::from(le32(raw, S_FREE_BLOCKS_COUNT_LO)) | hi(S_FREE_BLOCKS_COUNT_HI),
            free_inodes: le32(raw, S_FREE_INODES_COUNT),
            last_orphan: le32(raw, S_LAST_ORPHAN),
            feature_compat: le32(raw, S_FEATURE_COMPAT),
            feature_incompat: le32(raw, S_FEATURE_INCOMPAT),
            feature_ro_compat: le32(raw, S_FEATURE_RO_COMPAT),
            kbytes_written: le64(raw, S_KBYTES_WRITTEN),
            def_resuid: le16(raw, S_DEF_RESUID),
            def_resgid: le16(raw, S_DEF_RESGID),
            error_count: le32(raw, S_ERROR_COUNT),
            first_error: FIRST.decode(raw),
            last_error: LAST.decode(raw),
        }
    }

    /// Writes the fields into the raw superblock `raw` (1024 bytes) and
    /// sets its checksum when the filesystem has metadata_csum.
    pub fn encode(&self, sb: &Superblock, raw: &mut [u8]) -> Result<()> {
        if raw.len() < SUPERBLOCK_SIZE {
            return Err(Error::Internal("superblock buffer too short".into()));
        }
        if !sb.is_64bit() && self.free_blocks > u64::from(u32::MAX) {
            return Err(Error::Internal(
                "free block count past 32 bits without 64bit".into(),
            ));
        }
        let put = |raw: &mut [u8]| -> Option<()> {
            put_le16(raw, S_STATE, self.state)?;
            put_le16(raw, S_ERRORS, self.errors)?;
            put_le16(raw, S_MNT_COUNT, self.mnt_count)?;
            put_le16(raw, S_MAX_MNT_COUNT, self.max_mnt_count)?;
            put_time40(raw, S_MTIME, S_MTIME_HI, self.mtime)?;
            put_time40(raw, S_WTIME, S_WTIME_HI, self.wtime)?;
            put_le32(raw, S_FREE_BLOCKS_COUNT_LO, self.free_blocks as u32)?;
            if sb.is_64bit() {
                put_le32(raw, S_FREE_BLOCKS_COUNT_HI, (self.free_blocks >> 32) as u32)?;
            }
            put_le32(raw, S_FREE_INODES_COUNT, self.free_inodes)?;
            put_le32(raw, S_LAST_ORPHAN, self.last_orphan)?;
            put_le32(raw, S_FEATURE_COMPAT, self.feature_compat)?;
            put_le32(raw, S_FEATURE_INCOMPAT, self.feature_incompat)?;
            put_le32(raw, S_FEATURE_RO_COMPAT, self.feature_ro_compat)?;
            put_le64(raw, S_KBYTES_WRITTEN, self.kbytes_written)?;
            put_le32(raw, S_ERROR_COUNT, self.error_count)?;
            FIRST.encode(raw, self.first_error.as_ref())?;
            LAST.encode(raw, self.last_error.as_ref())?;
            if sb.metadata_csum() {
                let c = crc32c(!0, raw.get(..S_CHECKSUM)?);
                put_le32(raw, S_CHECKSUM, c)?;
            }
            Some(())
        };
        put(raw).ok_or_else(|| Error::Internal("superblock field past the buffer".into()))
    }

    /// Records `e` as the latest error (and the first, if none is kept),
    /// counts it and marks the filesystem as having errors.
    pub fn record_error(&mut self, e: ErrorInfo) {
        self.state |= crate::superblock::STATE_ERROR;
        self.error_count = self.error_count.saturating_add(1);
        if self.first_error.is_none() {
            self.first_error = Some(e.clone());
        }
        self.last_error = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superblock::synth;

    #[test]
    fn encode_round_trips_and_keeps_the_rest() {
        let sb = synth::parsed();
        let mut raw = synth::good();
        let before = raw.clone();
        let mut f = SuperFields::decode(&sb, &raw);
        f.state = 0;
        f.mnt_count = 7;
        f.mtime = (1 << 32) + 5; // needs the high byte
        f.wtime = -3; // clamped to 0
        f.free_blocks = 1234;
        f.free_inodes = 99;
        f.last_orphan = 12;
        f.kbytes_written = 1 << 40;
        f.record_error(ErrorInfo {
            time: 100,
            ino: 12,
            block: 5000,
            func: b"a_function_name_longer_than_thirty_two_bytes".to_vec(),
            line: 0,
            errcode: errcode::EFSCORRUPTED,
        });
        f.record_error(ErrorInfo {
            time: 200,
            func: b"later".to_vec(),
            errcode: errcode::EIO,
            ..ErrorInfo::default()
        });
        f.encode(&sb, &mut raw).unwrap();
        // Still a valid superblock (the checksum was set).
        let again = Superblock::parse(&raw, 8192 * 1024).unwrap();
        assert_eq!(again.state, crate::superblock::STATE_ERROR);
        let g = SuperFields::decode(&again, &raw);
        let mut want = f.clone();
        want.wtime = 0;
        want.first_error
            .as_mut()
            .unwrap()
            .func
            .truncate(ERROR_FUNC_LEN);
        assert_eq!(g, want);
        assert_eq!(g.error_count, 2);
        assert_eq!(g.first_error.as_ref().unwrap().time, 100);
        assert_eq!(g.last_error.as_ref().unwrap().func, b"later");
        // Only the fields above changed.
        let changed: Vec<usize> = (0..S_CHECKSUM).filter(|&i| raw[i] != before[i]).collect();
        let owned = [
            S_STATE..S_STATE + 2,
            S_MNT_COUNT..S_MNT_COUNT + 2,
            S_MTIME..S_MTIME + 4,
            S_MTIME_HI..S_MTIME_HI + 1,
            S_FREE_BLOCKS_COUNT_LO..S_FREE_BLOCKS_COUNT_LO + 4,
            S_FREE_INODES_COUNT..S_FREE_INODES_COUNT + 4,
            S_LAST_ORPHAN..S_LAST_ORPHAN + 4,
            S_KBYTES_WRITTEN..S_KBYTES_WRITTEN + 8,
            S_ERROR_COUNT..S_LAST_ERROR_FUNC + ERROR_FUNC_LEN,
            S_FIRST_ERROR_TIME_HI..S_LAST_ERROR_ERRCODE + 1,
        ];
        for i in changed {
            assert!(owned.iter().any(|r| r.contains(&i)), "byte {i:#x} changed");
        }
    }
}
