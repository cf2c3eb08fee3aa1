//! The filesystem handle [`Fs`] and what the kernel keeps in super.c:
//! opening a filesystem (superblock, group descriptors, feature checks) and
//! `statfs`. The rest of `Fs`'s methods live with their concern (see the
//! module map in the crate docs); each module adds its own `impl Fs` block.
//!
//! Invariants: an `Fs` exists only for a superblock that passed
//! [`Superblock::parse`] and a group descriptor table whose every entry
//! points inside the filesystem; after `open` only a transaction's commit
//! replaces descriptors (see `tx.rs`).
//!
//! Decisions (mirroring the kernel's ext4 on a read-only mount):
//! - A group descriptor whose checksum fails does not refuse the mount; that
//!   group is quarantined (its inodes and bitmaps answer `Error::Checksum`).
//!   A descriptor pointing outside the filesystem refuses the mount.
//! - `needs_recovery` refuses the mount unless `norecovery`; MMP is not
//!   taken (read-only); unknown ro_compat features are recorded in `notes`.
//! - `statfs` reports what `ext4_statfs` does: the overhead from
//!   `s_overhead_clusters` or computed per group (superblock and GDT copies,
//!   reserved GDT blocks, bitmaps, inode tables, journal), free counts summed
//!   from the group descriptors, and `bavail` net of the root reserve and of
//!   the kernel's reserved pool (2% of clusters, at most 4096, extent fs only).

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::bytes::array;
use super::error::{Error, Result};
use super::group::{self, GroupDesc};
use super::num::{GroupNo, Pblk};
use super::superblock::{compat, incompat, Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use super::types::{OpenOptions, StatFs};
use super::zones::{self, ZoneCheck};
use crate::io::{BlockDevice, IoChannel};

/// An open filesystem. Shared by FUSE worker threads (`Send + Sync`).
#[derive(Debug)]
pub struct Fs {
    dev: BlockDevice,
    sb: Superblock,
    /// The group descriptors as last committed (a leaf lock: commits
    /// replace the descriptors they changed).
    groups: RwLock<Vec<GroupDesc>>,
    opts: OpenOptions,
    notes: Vec<String>,
    /// The write side (mode, zones, locks, write state): see `mount.rs`.
    pub(crate) w: crate::wstate::WriteSide,
}
/// Longest file name.
const NAME_MAX: u32 = 255;

impl Fs {
    /// Opens the filesystem on `io`: superblock, group descriptors, feature checks.
    pub fn open(io: Arc<dyn IoChannel>, opts: &OpenOptions) -> Result<Fs> {
        let mut raw = vec![0u8; SUPERBLOCK_SIZE];
        if io.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(Error::NotExt(format!(
                "device of {} bytes is too small to hold a superblock",
                io.size()
            )));
        }
        io.read_at(SUPERBLOCK_OFFSET, &mut raw)?;
        let sb = Superblock::parse(&raw, io.size())?;
        let mut notes = Vec::new();
        if sb.has_incompat(incompat::RECOVER) {
            if !opts.norecovery {
                return Err(Error::NeedsRecovery);
            }
            notes.push("journal needs recovery; ignored (norecovery)".to_string());
        }
        if sb.has_incompat(incompat::MMP) {
            notes.push("mmp: read-only mount without multi-mount protection".to_string());
        }
        if sb.unknown_ro_compat != 0 {
            notes.push(format!(
                "unknown ro_compat features {:#x}: read-only",
                sb.unknown_ro_compat
            ));
        }
        let dev = BlockDevice::new(io, sb.block_size, opts.cache_bytes);
        let errors = opts
            .errors
            .unwrap_or(crate::wstate::ErrorBehavior::from_superblock(sb.errors));
        let placeholder = crate::wstate::WriteState {
            sbf: Default::default(),
            mount_state: 0,
            kbytes_at_open: 0,
            alloc: Default::default(),
            journal: None,
        };
        let mut fs = Fs {
            dev,
            sb,
            groups: RwLock::new(Vec::new()),
            opts: opts.clone(),
            notes,
            w: crate::wstate::WriteSide::new(placeholder, errors, Default::default()),
        };
        let groups = fs.load_groups()?;
        let bad: Vec<u32> = groups
            .iter()
            .filter(|g| !g.csum_ok)
            .map(|g| g.group.0)
            .collect();
        if !bad.is_empty() {
            fs.notes.push(format!(
                "group descriptor checksum mismatch in groups {bad:?}: their inodes are refused"
            ));
        }
        // The kernel's overlap check of group metadata, before anything
        // is read through the descriptors.
        let mut check = ZoneCheck::of_groups(&fs.sb, &groups)?;
        let state = fs.initial_write_state(&groups);
        *fs.groups_mut() = groups;
        let journal = fs.protect_journal(&mut check)?;
        let zones = fs.build_zones(journal);
        fs.w = crate::wstate::WriteSide::new(state, errors, zones);
        if !opts.read_only {
            fs.open_rw()?;
        }
        Ok(fs)
    }

    /// The group table, to read.
    fn groups_ref(&self) -> RwLockReadGuard<'_, Vec<GroupDesc>> {
        self.groups.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The group table, to replace descriptors (commit only).
    pub(crate) fn groups_mut(&self) -> RwLockWriteGuard<'_, Vec<GroupDesc>> {
        self.groups.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The write side.
    pub(crate) fn write_side(&self) -> &crate::wstate::WriteSide {
        &self.w
    }

    /// Reads, checks and parses every group descriptor (each GDT block once).
    fn load_groups(&self) -> Result<Vec<GroupDesc>> {
        let sb = &self.sb;
        let n = sb.group_count;
        let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
        let mut cur: Option<(Pblk, Arc<[u8]>)> = None;
        let ds = usize::from(sb.desc_size);
        for g in (0..n).map(GroupNo) {
            let (blk, off) = group::gdt_location(sb, g)?;
            let block = match &cur {
                Some((b, data)) if *b == blk => data.clone(),
                _ => {
                    let data = self.dev.read_meta(blk.0)?;
                    cur = Some((blk, data.clone()));
                    data
                }
            };
            let raw = block
                .get(off..off + ds)
                .ok_or_else(|| Error::corrupt(format!("group descriptor {g}"), "truncated"))?;
            let mut gd = GroupDesc::parse(sb, g, raw)?;
            gd.check(sb, raw)?;
            out.push(gd);
        }
        Ok(out)
    }

    /// The parsed superblock.
    pub fn sb(&self) -> &Superblock {
        &self.sb
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.sb.block_size
    }

    /// The block layer (for its traffic counters).
    pub fn dev(&self) -> &BlockDevice {
        &self.dev
    }

    /// The options the filesystem was opened with.
    pub fn options(&self) -> &OpenOptions {
        &self.opts
    }

    /// Things worth logging about this mount (ignored journal, MMP, bad
    /// group descriptors, unknown ro_compat features).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Group descriptor `g` as last committed.
    pub fn group(&self, g: GroupNo) -> Result<GroupDesc> {
        self.groups_ref()
            .get(g.index())
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("group {g} out of range")))
    }

    /// A metadata block through the cache; the block must lie inside the filesystem.
    pub fn meta_block(&self, pblk: Pblk) -> Result<Arc<[u8]>> {
        if pblk.0 >= self.sb.blocks_count {
            return Err(Error::corrupt(
                "metadata reference",
                format!(
                    "block {pblk} beyond the filesystem ({} blocks)",
                    self.sb.blocks_count
                ),
            ));
        }
        Ok(self.dev.read_meta(pblk.0)?)
    }

    /// [`Fs::meta_block`] that, on a miss, also reads the blocks of `span`
    /// around `pblk` the cache does not hold yet (one device read; see
    /// `BlockDevice::read_meta_ahead`). `span` is clipped to the filesystem.
    pub(crate) fn meta_block_ahead(
        &self,
        pblk: Pblk,
        span: std::ops::Range<Pblk>,
    ) -> Result<Arc<[u8]>> {
        if pblk.0 >= self.sb.blocks_count {
            return self.meta_block(pblk);
        }
        let span = span.start.0..span.end.0.min(self.sb.blocks_count);
        Ok(self.dev.read_meta_ahead(pblk.0, span)?)
    }

    /// Filesystem figures, as the kernel's `ext4_statfs` reports them.
    pub fn statfs(&self) -> StatFs {
        let sb = &self.sb;
        let ratio = sb.cluster_ratio();
        let (free_clusters, free_inodes) = {
            let groups = self.groups_ref();
            (
                groups.iter().map(|g| u64::from(g.free_blocks)).sum::<u64>(),
                groups.iter().map(|g| u64::from(g.free_inodes)).sum::<u64>(),
            )
        };
        let bfree = free_clusters.saturating_mul(ratio);
        let overhead = self.overhead_blocks();
        let resv = self.reserved_pool() * ratio;
        let reserved = sb.r_blocks_count.saturating_add(resv);
        let uuid = sb.uuid;
        let a = u64::from_le_bytes(array::<8>(&uuid, 0).unwrap_or_default());
        let b = u64::from_le_bytes(array::<8>(&uuid, 8).unwrap_or_default());
        StatFs {
            block_size: sb.block_size,
            blocks: sb.blocks_count.saturating_sub(overhead),
            blocks_free: bfree,
            blocks_avail: bfree.saturating_sub(reserved),
            files: u64::from(sb.inodes_count),
            files_free: free_inodes,
            name_max: NAME_MAX,
            fsid: a ^ b,
        }
    }

    /// Blocks used by metadata (what `df` leaves out of the total): the
    /// superblock's recorded overhead, else computed as the kernel does.
    fn overhead_blocks(&self) -> u64 {
        let sb = &self.sb;
        if sb.overhead_clusters != 0 {
            return u64::from(sb.overhead_clusters) * sb.cluster_ratio();
        }
        let mut total = u64::from(sb.first_data_block);
        for g in 0..sb.group_count {
            let base = zones::base_meta_blocks(sb, GroupNo(g));
            total += base + u64::from(sb.itable_blocks_per_group) + 2;
        }
        if sb.has_compat(compat::HAS_JOURNAL) && sb.journal_inum.0 != 0 {
            if let Ok(j) = self.special_inode(sb.journal_inum) {
                total += j.size / u64::from(sb.block_size);
            }
        }
        total
    }
}
