//! The filesystem handle [`Fs`]: opening (superblock, group descriptors,
//! feature checks) and the public read API the FUSE adapter, tests and
//! tools use.
//!
//! CONTRACT (shared by the engine's modules; keep signatures stable):
//!
//! Public (used by `fuse/`, tests, benchmarks):
//! - `Fs::open(io, &OpenOptions) -> Result<Fs>`
//! - `Fs::stat(ino) -> Result<Stat>`
//! - `Fs::read(ino, offset, &mut buf) -> Result<usize>` (0 at/after EOF)
//! - `Fs::lookup(dir, name) -> Result<u32>` (`Error::NotFound` when absent)   [dir.rs]
//! - `Fs::read_dir(dir, cookie, &mut FnMut(DirEntry) -> bool) -> Result<()>` [dir.rs]
//!   Calls the callback for each entry starting at `cookie` (0 = start);
//!   stops when it returns false. `DirEntry::next_cookie` resumes right after
//!   that entry, in O(1) seeking (never a rescan from the start).
//! - `Fs::read_link(ino) -> Result<Vec<u8>>`                                [symlink.rs]
//! - `Fs::list_xattrs(ino) -> Result<Vec<Vec<u8>>>` full names ("user.x")   [xattr.rs]
//! - `Fs::get_xattr(ino, name) -> Result<Vec<u8>>` (`Error::NoXattr`)       [xattr.rs]
//!   `system.posix_acl_access`/`_default` come out in the Linux xattr ACL
//!   format (converted from ext4's on-disk format in acl.rs).
//! - `Fs::statfs() -> StatFs`
//!
//! Crate-internal (core → namespace modules):
//! - `Fs::inode(ino) -> Result<Inode>`: reads, bounds-checks and
//!   checksum-verifies an inode (inode.rs).
//! - `Fs::map_block(&Inode, lblk) -> Result<Option<u64>>`: logical → physical
//!   through extents or indirect maps; `None` for holes and uninitialized
//!   extents; every physical block returned lies inside the filesystem.
//! - `Fs::read_file_block(&Inode, lblk, &mut [u8])`: one block of file data,
//!   zeros for holes.
//! - `Fs::meta_block(pblk) -> Result<Arc<[u8]>>`: a metadata block through the cache.
//! - `Fs::sb()`: the parsed superblock (features, sizes, csum seed).
//! - `Fs::map_extent(&Inode, lblk) -> Result<Mapping>`: like `map_block`,
//!   plus how many following blocks continue the same run.
//! - `Fs::read_inode_data(&Inode, offset, &mut buf) -> Result<usize>`: `read`
//!   for an inode already in hand (directories, slow symlinks).
//! - `Fs::block_size()`, `Fs::dev()` (the block layer, for its counters).
//! - `Fs::group(g)`, `Fs::verify_bitmaps(g)`, `Fs::notes()` (what to log at mount).
//! - Checksums: `csum::crc32c(seed, bytes)` (raw, ext4's `ext4_chksum`),
//!   `csum::crc32c_zeroed`, `Superblock::csum_seed` (fs seed),
//!   `Inode::csum_seed` (fs seed + ino + generation, for extent and
//!   directory blocks), `Superblock::metadata_csum()`.
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

use std::sync::Arc;

use super::bytes::array;
use super::error::{Error, Result};
use super::extent::{self, Mapping};
use super::group::{self, GroupDesc};
use super::indirect;
use super::inode::{flags, Inode};
use super::superblock::{compat, incompat, Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::io::{BlockDevice, IoChannel};

/// Inode number of the root directory.
pub const ROOT_INO: u32 = 2;

/// How to open a filesystem.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Open read-only (the only mode so far).
    pub read_only: bool,
    /// Do not look at the journal (`-o norecovery`/`noload`): a journal that
    /// needs recovery is ignored instead of refusing the mount.
    pub norecovery: bool,
    /// Bytes the metadata cache may hold (0 = the default).
    pub cache_bytes: usize,
}

/// A point in time as ext4 stores it (seconds since the epoch, possibly
/// negative or past 2038 with the extra epoch bits, and nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01 UTC.
    pub sec: i64,
    /// Nanoseconds, < 1e9.
    pub nsec: u32,
}

/// The type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// What `stat` reports about an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Inode number (ext4's).
    pub ino: u32,
    /// Inode generation (for NFS-style handles).
    pub generation: u32,
    /// File type.
    pub kind: FileKind,
    /// Permission bits incl. setuid/setgid/sticky (mode & 0o7777).
    pub perm: u16,
    /// Owner (32-bit, high half included).
    pub uid: u32,
    /// Group (32-bit, high half included).
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Link count.
    pub nlink: u32,
    /// Allocated space in 512-byte units (huge_file aware).
    pub blocks: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Creation time (large inodes only; zero otherwise).
    pub crtime: Timestamp,
    /// Device number for char/block devices, as (major, minor).
    pub rdev: (u32, u32),
    /// ext4 inode flags (EXT4_*_FL).
    pub flags: u32,
}

/// One directory entry produced by `read_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode the entry points to.
    pub ino: u32,
    /// The name (no NUL, 1..=255 bytes).
    pub name: Vec<u8>,
    /// Type from the entry's file-type byte when the fs has it, else from the inode.
    pub kind: FileKind,
    /// Cookie that resumes right after this entry (never 0).
    pub next_cookie: u64,
}

/// Filesystem-wide figures for statfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFs {
    /// Block size in bytes.
    pub block_size: u32,
    /// Total blocks (minus overhead, as the kernel reports with `minixdf` off).
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Free blocks available to unprivileged users (free minus reserved).
    pub blocks_avail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Longest name.
    pub name_max: u32,
    /// Filesystem id (from the UUID, as the kernel derives it).
    pub fsid: u64,
}

/// An open filesystem. Shared by FUSE worker threads (`Send + Sync`).
#[derive(Debug)]
pub struct Fs {
    dev: BlockDevice,
    sb: Superblock,
    groups: Vec<GroupDesc>,
    opts: OpenOptions,
    notes: Vec<String>,
}

/// Kernel limit on the reserved pool of clusters (`ext4_calculate_resv_clusters`).
const RESV_CLUSTERS_MAX: u64 = 4096;
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
        let mut fs = Fs {
            dev,
            sb,
            groups: Vec::new(),
            opts: opts.clone(),
            notes,
        };
        fs.groups = fs.load_groups()?;
        let bad: Vec<u32> = fs
            .groups
            .iter()
            .filter(|g| !g.csum_ok)
            .map(|g| g.group)
            .collect();
        if !bad.is_empty() {
            fs.notes.push(format!(
                "group descriptor checksum mismatch in groups {bad:?}: their inodes are refused"
            ));
        }
        Ok(fs)
    }

    /// Reads, checks and parses every group descriptor (each GDT block once).
    fn load_groups(&self) -> Result<Vec<GroupDesc>> {
        let sb = &self.sb;
        let n = sb.group_count;
        let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
        let mut cur: Option<(u64, Arc<[u8]>)> = None;
        let ds = usize::from(sb.desc_size);
        for g in 0..n {
            let (blk, off) = group::gdt_location(sb, g)?;
            let block = match &cur {
                Some((b, data)) if *b == blk => data.clone(),
                _ => {
                    let data = self.dev.read_meta(blk)?;
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

    /// Group descriptor `g`.
    pub fn group(&self, g: u32) -> Result<&GroupDesc> {
        self.groups
            .get(g as usize)
            .ok_or_else(|| Error::Invalid(format!("group {g} out of range")))
    }

    /// A metadata block through the cache; the block must lie inside the filesystem.
    pub fn meta_block(&self, pblk: u64) -> Result<Arc<[u8]>> {
        if pblk >= self.sb.blocks_count {
            return Err(Error::corrupt(
                "metadata reference",
                format!(
                    "block {pblk} beyond the filesystem ({} blocks)",
                    self.sb.blocks_count
                ),
            ));
        }
        Ok(self.dev.read_meta(pblk)?)
    }

    /// [`Fs::meta_block`] that, on a miss, also reads the blocks of `span`
    /// around `pblk` the cache does not hold yet (one device read; see
    /// `BlockDevice::read_meta_ahead`). `span` is clipped to the filesystem.
    pub(crate) fn meta_block_ahead(
        &self,
        pblk: u64,
        span: std::ops::Range<u64>,
    ) -> Result<Arc<[u8]>> {
        if pblk >= self.sb.blocks_count {
            return self.meta_block(pblk);
        }
        let span = span.start..span.end.min(self.sb.blocks_count);
        Ok(self.dev.read_meta_ahead(pblk, span)?)
    }

    /// Inode `ino` as a name or a file handle reaches it (the kernel's
    /// `EXT4_IGET_NORMAL`): read, bounds-checked and checksum-verified by
    /// [`Fs::special_inode`], and refused as corrupt when it is one no name
    /// may lead to: a reserved inode other than the root (`ino <
    /// s_first_ino`), a quota or orphan-file inode, or an EA inode (which
    /// only holds an xattr value).
    pub fn inode(&self, ino: u32) -> Result<Inode> {
        let inode = self.special_inode(self.check_reachable(ino)?)?;
        if inode.has_flag(flags::EA_INODE) {
            return Err(Error::corrupt(
                format!("inode {ino}"),
                "an EA inode (an xattr value) reached by name",
            ));
        }
        Ok(inode)
    }

    /// `ino` if a directory entry, a file handle or an xattr entry may name
    /// it (the kernel's "illegal inode #" rule in `__ext4_iget`).
    pub(crate) fn check_reachable(&self, ino: u32) -> Result<u32> {
        let sb = &self.sb;
        if ino == 0 || ino > sb.inodes_count {
            return Err(Error::NoSuchInode(u64::from(ino)));
        }
        if (ino < sb.first_ino && ino != ROOT_INO)
            || ino == sb.orphan_file_inum
            || sb.quota_inums.contains(&ino)
        {
            return Err(Error::corrupt(
                format!("inode {ino}"),
                "a reserved inode reached by name",
            ));
        }
        Ok(ino)
    }

    /// Reads, bounds-checks and checksum-verifies inode `ino`, reserved
    /// ones included (the kernel's `EXT4_IGET_SPECIAL`: the journal, the
    /// resize inode).
    pub fn special_inode(&self, ino: u32) -> Result<Inode> {
        let sb = &self.sb;
        if ino == 0 || ino > sb.inodes_count {
            return Err(Error::NoSuchInode(u64::from(ino)));
        }
        let idx0 = ino - 1;
        let g = idx0 / sb.inodes_per_group;
        let index = idx0 % sb.inodes_per_group;
        let gd = self.group(g)?;
        if !gd.csum_ok {
            return Err(Error::checksum(format!("group descriptor {g}")));
        }
        if gd.inode_uninit(sb)
            || (sb.has_group_csum() && index >= sb.inodes_per_group - gd.itable_unused)
        {
            return Err(Error::NoSuchInode(u64::from(ino)));
        }
        let isz = u64::from(sb.inode_size);
        let byte = u64::from(index) * isz;
        let blk = gd.inode_table + byte / u64::from(sb.block_size);
        let off = (byte % u64::from(sb.block_size)) as usize;
        // Inodes are looked at in bursts (a listing, a tree walk): a miss
        // reads ahead within the used part of this group's table.
        let used = if sb.has_group_csum() {
            sb.inodes_per_group.saturating_sub(gd.itable_unused)
        } else {
            sb.inodes_per_group
        };
        let table_blocks = (u64::from(used) * isz).div_ceil(u64::from(sb.block_size));
        let span = gd.inode_table..gd.inode_table.saturating_add(table_blocks);
        let block = self.meta_block_ahead(blk, span)?;
        let raw = block
            .get(off..off + usize::from(sb.inode_size))
            .ok_or_else(|| Error::corrupt(format!("inode {ino}"), "outside its table block"))?;
        Inode::parse(sb, ino, raw)
    }

    /// `stat` of inode `ino`.
    pub fn stat(&self, ino: u32) -> Result<Stat> {
        Ok(self.inode(ino)?.stat())
    }

    /// Logical → physical mapping of one block with the length of the run.
    pub fn map_extent(&self, inode: &Inode, lblk: u64) -> Result<Mapping> {
        let what = format!("inode {}", inode.ino);
        let read = |b: u64| self.meta_block(b);
        if inode.has_flag(flags::INLINE_DATA) {
            return Err(Error::Invalid(format!("{what} keeps its data inline")));
        }
        if inode.has_flag(flags::EXTENTS) {
            extent::map(
                &self.sb,
                inode.i_block(),
                inode.csum_seed,
                lblk,
                &read,
                &what,
            )
        } else {
            indirect::map(&self.sb, inode.i_block(), lblk, &read, &what)
        }
    }

    /// Logical → physical; `None` for holes and uninitialized extents.
    pub fn map_block(&self, inode: &Inode, lblk: u64) -> Result<Option<u64>> {
        Ok(self.map_extent(inode, lblk)?.pblk)
    }

    /// One block of file data into `buf` (at most one block long), zeros for holes.
    pub fn read_file_block(&self, inode: &Inode, lblk: u64, buf: &mut [u8]) -> Result<()> {
        let bs = self.sb.block_size as usize;
        if buf.len() > bs {
            return Err(Error::Invalid(format!(
                "buffer of {} bytes > block",
                buf.len()
            )));
        }
        match self.map_block(inode, lblk)? {
            None => buf.fill(0),
            Some(p) if buf.len() == bs => self.dev.read_blocks(p, buf)?,
            Some(p) => {
                let mut tmp = vec![0u8; bs];
                self.dev.read_blocks(p, &mut tmp)?;
                let n = buf.len();
                buf.copy_from_slice(tmp.get(..n).unwrap_or(&[]));
            }
        }
        Ok(())
    }

    /// Reads file data of `ino` at `offset` into `buf`; returns the bytes
    /// read (0 at or after the end of the file).
    pub fn read(&self, ino: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let inode = self.inode(ino)?;
        self.read_inode_data(&inode, offset, buf)
    }

    /// [`Fs::read`] for an inode already in hand.
    pub fn read_inode_data(&self, inode: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if inode.has_flag(flags::ENCRYPT) {
            return Err(Error::Unsupported(format!(
                "inode {} is encrypted",
                inode.ino
            )));
        }
        if inode.has_flag(flags::INLINE_DATA) {
            return super::inline::read_inline(self, inode, offset, buf);
        }
        if offset >= inode.size {
            return Ok(0);
        }
        let want = (inode.size - offset).min(buf.len() as u64) as usize;
        let buf = buf.get_mut(..want).unwrap_or(&mut []);
        if inode.is_fast_symlink(&self.sb) {
            let src = inode.i_block().get(offset as usize..).unwrap_or(&[]);
            let n = src.len().min(buf.len());
            buf.get_mut(..n)
                .unwrap_or(&mut [])
                .copy_from_slice(src.get(..n).unwrap_or(&[]));
            buf.get_mut(n..).unwrap_or(&mut []).fill(0);
            return Ok(want);
        }
        let bs = u64::from(self.sb.block_size);
        let mut done = 0usize;
        let mut tmp: Vec<u8> = Vec::new();
        // Each pass consumes at least one byte, and a mapping at least one
        // block, so the loop is bounded by the buffer size.
        while done < want {
            let pos = offset + done as u64;
            let lblk = pos / bs;
            let in_blk = (pos % bs) as usize;
            let m = self.map_extent(inode, lblk)?;
            let run_bytes = m.len.saturating_mul(bs).saturating_sub(in_blk as u64);
            let n = run_bytes.min((want - done) as u64) as usize;
            let dst = buf.get_mut(done..done + n).unwrap_or(&mut []);
            match m.pblk {
                None => dst.fill(0),
                Some(p) => {
                    // Whole run in one device read, through a bounce buffer
                    // only when the range is not block-aligned.
                    let nblocks = (in_blk as u64 + n as u64).div_ceil(bs);
                    if in_blk == 0 && n as u64 == nblocks * bs {
                        self.dev.read_blocks(p, dst)?;
                    } else {
                        tmp.resize((nblocks * bs) as usize, 0);
                        self.dev.read_blocks(p, &mut tmp)?;
                        dst.copy_from_slice(tmp.get(in_blk..in_blk + n).unwrap_or(&[]));
                    }
                }
            }
            done += n;
        }
        Ok(want)
    }

    /// Filesystem figures, as the kernel's `ext4_statfs` reports them.
    pub fn statfs(&self) -> StatFs {
        let sb = &self.sb;
        let ratio = sb.cluster_ratio();
        let free_clusters: u64 = self.groups.iter().map(|g| u64::from(g.free_blocks)).sum();
        let free_inodes: u64 = self.groups.iter().map(|g| u64::from(g.free_inodes)).sum();
        let bfree = free_clusters.saturating_mul(ratio);
        let overhead = self.overhead_blocks();
        let resv = if sb.has_incompat(incompat::EXTENTS) {
            ((sb.blocks_count >> sb.log_cluster_ratio) / 50).min(RESV_CLUSTERS_MAX) * ratio
        } else {
            0
        };
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
        let meta = sb.has_incompat(incompat::META_BG);
        let dpb = sb.descs_per_block();
        let gdb_count = u64::from(sb.group_count.div_ceil(dpb));
        for g in 0..sb.group_count {
            let has_super = sb.group_has_super(g);
            // Superblock copy, descriptor blocks and (in the classic GDT
            // layout) the reserved GDT blocks count where a backup is.
            let base = if !meta || g / dpb < sb.first_meta_bg {
                if has_super {
                    let gdb = if meta {
                        u64::from(sb.first_meta_bg)
                    } else {
                        gdb_count
                    };
                    1 + gdb + u64::from(sb.reserved_gdt_blocks)
                } else {
                    0
                }
            } else {
                let r = g % dpb;
                u64::from(has_super) + u64::from(r == 0 || r == 1 || r == dpb - 1)
            };
            total += base + u64::from(sb.itable_blocks_per_group) + 2;
        }
        if sb.has_compat(compat::HAS_JOURNAL) && sb.journal_inum != 0 {
            if let Ok(j) = self.special_inode(sb.journal_inum) {
                total += j.size / u64::from(sb.block_size);
            }
        }
        total
    }

    /// Reads group `g`'s block and inode bitmaps and verifies their
    /// checksums (metadata_csum). Uninitialized bitmaps are skipped.
    pub fn verify_bitmaps(&self, g: u32) -> Result<()> {
        let sb = &self.sb;
        let gd = self.group(g)?;
        if !gd.csum_ok {
            return Err(Error::checksum(format!("group descriptor {g}")));
        }
        if !sb.metadata_csum() {
            return Ok(());
        }
        let (block_full, inode_full) = group::bitmap_csum_full(sb);
        if !gd.block_uninit(sb) {
            let data = self.meta_block(gd.block_bitmap)?;
            let c = group::bitmap_checksum(
                sb,
                &data,
                group::bitmap_bytes(sb.clusters_per_group),
                block_full,
            );
            if c != gd.block_bitmap_csum {
                return Err(Error::checksum(format!("block bitmap of group {g}")));
            }
        }
        if !gd.inode_uninit(sb) {
            let data = self.meta_block(gd.inode_bitmap)?;
            let c = group::bitmap_checksum(
                sb,
                &data,
                group::bitmap_bytes(sb.inodes_per_group),
                inode_full,
            );
            if c != gd.inode_bitmap_csum {
                return Err(Error::checksum(format!("inode bitmap of group {g}")));
            }
        }
        Ok(())
    }
}
