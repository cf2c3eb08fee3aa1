//! The numbers the engine juggles, each its own type so that one cannot be
//! passed where another is meant: inode numbers ([`InodeNo`]), logical
//! block numbers within a file ([`Lblk`]), physical block numbers on the
//! device ([`Pblk`]) and block group numbers ([`GroupNo`]).
//!
//! Invariants: the wrappers are transparent (`.0` is the on-disk value,
//! nothing is cached beside it); arithmetic on them is checked or
//! saturating, never wrapping or panicking, because their values come from
//! untrusted images. `Display` prints the bare number, so messages read
//! "inode 12", "block 8193".
//!
//! The IO layer ([`crate::io`]) addresses device blocks as plain `u64`; the
//! engine converts at that boundary (`Fs::meta_block`). The FUSE adapter
//! converts FUSE node ids to [`InodeNo`] at its own boundary.

use std::fmt;

/// An inode number: 1-based, 0 means "no inode" on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InodeNo(pub u32);

impl InodeNo {
    /// The bad-blocks inode (never reachable by name).
    pub const BAD_BLOCKS: InodeNo = InodeNo(1);
    /// The root directory.
    pub const ROOT: InodeNo = InodeNo(2);

    /// The on-disk value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The group holding this inode and its index inside the group, for
    /// `inodes_per_group` inodes per group (`None` for inode 0 or a zero
    /// group size).
    pub fn group_index(self, inodes_per_group: u32) -> Option<(GroupNo, u32)> {
        let idx0 = self.0.checked_sub(1)?;
        let g = idx0.checked_div(inodes_per_group)?;
        Some((GroupNo(g), idx0 % inodes_per_group))
    }
}

/// A logical block number inside a file (ext4's logical blocks are 32-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lblk(pub u32);

impl Lblk {
    /// The logical block holding byte `offset` with `2^log_block_size`-byte
    /// blocks, `None` past the 32-bit logical space.
    pub fn of_offset(offset: u64, log_block_size: u32) -> Option<Lblk> {
        u32::try_from(offset.checked_shr(log_block_size)?)
            .ok()
            .map(Lblk)
    }

    /// `self + n`, `None` past the 32-bit logical space.
    pub fn checked_add(self, n: u64) -> Option<Lblk> {
        u64::from(self.0)
            .checked_add(n)
            .and_then(|v| u32::try_from(v).ok())
            .map(Lblk)
    }

    /// As a 64-bit count of blocks from the file's start.
    pub fn as_u64(self) -> u64 {
        u64::from(self.0)
    }
}

/// A physical block number on the device (48 bits in ext4, held in 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pblk(pub u64);

impl Pblk {
    /// `self + n`, `None` on overflow.
    pub fn checked_add(self, n: u64) -> Option<Pblk> {
        self.0.checked_add(n).map(Pblk)
    }

    /// `self + n`, saturating at `u64::MAX`.
    pub fn saturating_add(self, n: u64) -> Pblk {
        Pblk(self.0.saturating_add(n))
    }
}

/// A block group number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupNo(pub u32);

impl GroupNo {
    /// The on-disk value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Index into a per-group table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

macro_rules! plain_number {
    ($($t:ident: $inner:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl From<$t> for $inner {
            fn from(v: $t) -> $inner {
                v.0
            }
        }
        impl From<$t> for u64 {
            fn from(v: $t) -> u64 {
                #[allow(clippy::useless_conversion)]
                u64::from(v.0)
            }
        }
    )*};
}

plain_number!(InodeNo: u32, Lblk: u32, GroupNo: u32);

impl fmt::Display for Pblk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Pblk> for u64 {
    fn from(v: Pblk) -> u64 {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_and_arithmetic() {
        assert_eq!(InodeNo(12).to_string(), "12");
        assert_eq!(u64::from(InodeNo(12)), 12);
        assert_eq!(Pblk(8193).to_string(), "8193");
        // (inode, inodes per group) -> (group, index)
        let cases = [
            (1, 8, Some((0, 0))),
            (8, 8, Some((0, 7))),
            (9, 8, Some((1, 0))),
        ];
        for (ino, ipg, want) in cases {
            let got = InodeNo(ino).group_index(ipg).map(|(g, i)| (g.0, i));
            assert_eq!(got, want, "inode {ino}");
        }
        assert_eq!(InodeNo(0).group_index(8), None);
        assert_eq!(InodeNo(5).group_index(0), None);
        assert_eq!(Lblk::of_offset(4096 * 7 + 1, 12), Some(Lblk(7)));
        assert_eq!(Lblk::of_offset(u64::MAX, 10), None);
        assert_eq!(Lblk(u32::MAX).checked_add(1), None);
        assert_eq!(Lblk(5).checked_add(3), Some(Lblk(8)));
        assert_eq!(Pblk(u64::MAX).checked_add(1), None);
        assert_eq!(Pblk(u64::MAX).saturating_add(1), Pblk(u64::MAX));
    }
}
