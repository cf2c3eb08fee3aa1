//! Sequential readahead of file data, ahead of the kernel's own.
//!
//! The device is read with `O_DIRECT`, so nothing below the server reads
//! ahead, and the kernel's FUSE readahead asks for at most 128 KiB at a
//! time with one or two requests in flight: a cold sequential read becomes
//! a chain of small device round trips. Here each file read sequentially
//! gets a *stream*: once a read continues the previous one (or starts the
//! file), the worker thread that answered it, after replying, reads the
//! next [`WINDOW`] bytes in one engine read (one device read per
//! contiguous extent run) and keeps them; the kernel's next requests are
//! answered from memory while the following window is read.
//!
//! Invariants (bounded memory, no threads of its own):
//! - at most [`MAX_STREAMS`] streams (least recently used replaced), each
//!   holding at most [`MAX_WINDOWS`] windows of at most [`WINDOW`] bytes,
//!   and at most [`MAX_FILLS`] fills in flight per stream; at most
//!   [`MAX_SPARE`] window buffers kept for reuse (fills and large direct
//!   reads take from them and give back);
//! - fills run on the FUSE worker that triggered them, after its reply;
//! - a window holds exactly what `Backend::read` returned for its range at
//!   the time: valid while the file cannot change. The server does not
//!   write yet; a write path must call [`ReadAhead::forget`] for the file
//!   before its reply;
//! - a reader never waits for a fill longer than [`FILL_WAIT`]; after
//!   that it reads the device itself.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::ops::ReadBuf;
use fsvc_ext4::InodeNo;

/// Bytes one fill reads: large enough that the device streams (a 512 KiB
/// direct read runs at full bandwidth where a 128 KiB one is latency
/// bound), small enough to keep the server's memory modest.
pub(crate) const WINDOW: u64 = 512 << 10;
/// Windows kept per stream (the ones being consumed, and the ones ahead).
pub(crate) const MAX_WINDOWS: usize = 3;
/// Fills in flight per stream: two, so that the device always has the next
/// window queued while one completes (one at a time is latency bound).
pub(crate) const MAX_FILLS: usize = 2;
/// How far ahead of the reader fills go.
const AHEAD: u64 = 2 * WINDOW;
/// Files read sequentially at once that each keep a stream.
pub(crate) const MAX_STREAMS: usize = 4;
/// A read within this distance of a stream's position continues it (the
/// kernel's concurrent readahead requests arrive slightly out of order).
const NEAR: u64 = 2 * WINDOW;
/// Windows wholly this far behind the reader are released (the kernel's
/// requests arrive at most a few 128 KiB pages out of order).
const DROP_BEHIND: u64 = 256 << 10;
/// Spare window buffers kept for reuse: a whole stream's worth (its
/// windows and its fills in flight), so that reading files one after
/// another, and direct reads, reuse the same few buffers. Buffers handed
/// back to the allocator would land in whichever thread's malloc arena
/// freed them and stay resident there: with one arena per FUSE worker, the
/// server's RSS grew to several times what was ever in use at once.
const MAX_SPARE: usize = MAX_WINDOWS + MAX_FILLS;
/// Direct reads at least this large get window-sized, pooled buffers (the
/// kernel's readahead requests are 128 KiB and up; a 4 KiB read of a small
/// file should not cost a 512 KiB buffer).
const POOLED_MIN: usize = 64 << 10;
/// Longest wait for a fill that covers the range asked.
const FILL_WAIT: Duration = Duration::from_secs(2);

/// Prefetched bytes of a file starting at `start`.
#[derive(Debug)]
struct Window {
    start: u64,
    data: Arc<ReadBuf>,
}

impl Window {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.data.len() as u64)
    }
}

#[derive(Debug)]
struct Stream {
    ino: InodeNo,
    /// End of the furthest read seen.
    pos: u64,
    /// Whether the reads so far look sequential (a fill may start).
    sequential: bool,
    /// Sorted by start.
    windows: VecDeque<Window>,
    /// The ranges fills are reading now.
    filling: Vec<(u64, u64)>,
    /// End of file, once a fill came back short.
    eof: Option<u64>,
    last_use: u64,
}

impl Stream {
    /// Where the data held or being read ahead ends.
    fn ahead_end(&self) -> u64 {
        let held = self.windows.iter().map(Window::end).max().unwrap_or(0);
        let filling = self.filling.iter().map(|&(_, e)| e).max().unwrap_or(0);
        held.max(filling)
    }
}

/// A fill the caller must run (after replying) with [`ReadAhead::fill`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fill {
    ino: InodeNo,
    start: u64,
    len: u64,
}

/// Bytes of a window answering a read. When it is the last holder of the
/// window's buffer (the stream released the window meanwhile), dropping it
/// returns the buffer to the spares.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    data: Option<Arc<ReadBuf>>,
    from: usize,
    to: usize,
    ra: &'a ReadAhead,
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            if Arc::strong_count(&data) == 1 {
                recycle(&mut self.ra.lock().spare, data);
            }
        }
    }
}

impl std::ops::Deref for Chunk<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data
            .as_deref()
            .and_then(|d| d.get(self.from..self.to))
            .unwrap_or(&[])
    }
}

/// Counters for tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RaStats {
    /// Reads answered from a window.
    pub(crate) hits: u64,
    /// Fills run.
    pub(crate) fills: u64,
    /// Buffers allocated (not taken from the spares).
    pub(crate) allocs: u64,
}

#[derive(Debug, Default)]
struct State {
    streams: Vec<Stream>,
    spare: Vec<ReadBuf>,
    tick: u64,
    stats: RaStats,
}

/// Keeps `data` as a spare buffer if nothing else holds it and the spares
/// are not full.
fn recycle(spare: &mut Vec<ReadBuf>, data: Arc<ReadBuf>) {
    if let Ok(buf) = Arc::try_unwrap(data) {
        keep_spare(spare, buf);
    }
}

/// Keeps `buf` as a spare if it is window-sized and the spares are not
/// full; otherwise it goes back to the allocator.
fn keep_spare(spare: &mut Vec<ReadBuf>, buf: ReadBuf) {
    if spare.len() < MAX_SPARE && buf.capacity() >= WINDOW as usize {
        spare.push(buf);
    }
}

/// The readahead streams of one mount.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    state: Mutex<State>,
    filled: Condvar,
}

impl ReadAhead {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes of `[offset, offset + size)` of `ino` if a window holds
    /// all of them (or all up to the end of file). Waits (bounded) when a
    /// fill in flight covers the range.
    pub(crate) fn lookup(&self, ino: InodeNo, offset: u64, size: u32) -> Option<Chunk<'_>> {
        let end = offset.saturating_add(u64::from(size));
        let deadline = Instant::now() + FILL_WAIT;
        let mut st = self.lock();
        loop {
            let s = st.streams.iter().find(|s| s.ino == ino)?;
            let want_end = s.eof.map_or(end, |e| end.min(e));
            if let Some(w) = s
                .windows
                .iter()
                .find(|w| w.start <= offset && offset < w.end() && want_end <= w.end())
            {
                let from = usize::try_from(offset - w.start).ok()?;
                let to = usize::try_from(want_end - w.start).ok()?;
                let chunk = Chunk {
                    data: Some(w.data.clone()),
                    from,
                    to,
                    ra: self,
                };
                st.stats.hits += 1;
                return Some(chunk);
            }
            let pending = s.filling.iter().any(|&(a, b)| a <= offset && offset < b);
            let now = Instant::now();
            if !pending || now >= deadline {
                return None;
            }
            st = self
                .filled
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Records that `[offset, offset + len)` of `ino` was answered to a
    /// read of `asked` bytes (fewer means the file ends there) and returns
    /// the fill to run next, if the stream wants one.
    pub(crate) fn note(&self, ino: InodeNo, offset: u64, len: u64, asked: u64) -> Option<Fill> {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.tick += 1;
        let tick = st.tick;
        let end = offset.saturating_add(len);
        let idx = match st.streams.iter().position(|s| s.ino == ino) {
            Some(i) => i,
            None => {
                let fresh = Stream {
                    ino,
                    pos: end,
                    sequential: offset == 0,
                    windows: VecDeque::new(),
                    filling: Vec::new(),
                    eof: None,
                    last_use: tick,
                };
                if st.streams.len() < MAX_STREAMS {
                    st.streams.push(fresh);
                    st.streams.len() - 1
                } else {
                    // Replace the least recently used stream that has no
                    // fill in flight (its filler will find it gone).
                    let victim = st
                        .streams
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.filling.is_empty())
                        .min_by_key(|(_, s)| s.last_use)
                        .map(|(i, _)| i)?;
                    st.streams[victim] = fresh;
                    victim
                }
            }
        };
        let s = &mut st.streams[idx];
        s.last_use = tick;
        let near = offset <= s.pos.saturating_add(NEAR) && end.saturating_add(NEAR) >= s.pos;
        if !near {
            // A jump: start over from here, no fill until it continues.
            s.windows.clear();
            s.sequential = offset == 0;
            s.pos = end;
            s.eof = None;
        } else if end > s.pos || offset == s.pos {
            s.sequential = true;
        }
        s.pos = s.pos.max(end);
        if len < asked {
            s.eof = Some(end);
        }
        // Release what the reader has passed.
        let keep_from = s.pos.saturating_sub(DROP_BEHIND);
        let mut passed = Vec::new();
        while s.windows.front().is_some_and(|w| w.end() <= keep_from) {
            passed.extend(s.windows.pop_front());
        }
        let start = s.ahead_end().max(s.pos);
        let wanted = s.sequential
            && s.filling.len() < MAX_FILLS
            && start < s.pos.saturating_add(AHEAD)
            && s.eof.is_none_or(|e| start < e);
        if wanted {
            s.filling.push((start, start.saturating_add(WINDOW)));
        }
        for w in passed {
            recycle(&mut st.spare, w.data);
        }
        if !wanted {
            return None;
        }
        Some(Fill {
            ino,
            start,
            len: WINDOW,
        })
    }

    /// Runs `fill`: reads the window through `fs` and installs it. A read
    /// error installs nothing (the reader's own read reports it).
    pub(crate) fn fill(&self, fs: &dyn Backend, fill: Fill) {
        let mut buf = self.take_buf(fill.len as usize);
        let got = fs.read(fill.ino, fill.start, buf.as_mut());
        let mut guard = self.lock();
        let st = &mut *guard;
        st.stats.fills += 1;
        if let Some(s) = st.streams.iter_mut().find(|s| s.ino == fill.ino) {
            let range = (fill.start, fill.start.saturating_add(fill.len));
            if let Some(i) = s.filling.iter().position(|&r| r == range) {
                s.filling.swap_remove(i);
                if let Ok(n) = got {
                    if (n as u64) < fill.len {
                        s.eof = Some(fill.start.saturating_add(n as u64));
                    }
                    if n > 0 {
                        buf.truncate(n);
                        let at = s.windows.partition_point(|w| w.start < fill.start);
                        s.windows.insert(
                            at,
                            Window {
                                start: fill.start,
                                data: Arc::new(buf),
                            },
                        );
                        while s.windows.len() > MAX_WINDOWS {
                            if let Some(w) = s.windows.pop_front() {
                                recycle(&mut st.spare, w.data);
                            }
                        }
                    }
                }
            }
        }
        drop(guard);
        self.filled.notify_all();
    }

    /// A buffer for `len` bytes: a spare when one is big enough, else a new
    /// one; a new one for a large read is at least a window, so that it can
    /// become a spare (small reads get small buffers, not pooled).
    pub(crate) fn take_buf(&self, len: usize) -> ReadBuf {
        let mut st = self.lock();
        if let Some(i) = st.spare.iter().position(|b| b.capacity() >= len) {
            let mut b = st.spare.swap_remove(i);
            drop(st);
            b.reset(len);
            return b;
        }
        st.stats.allocs += 1;
        drop(st);
        let size = if len >= POOLED_MIN {
            len.max(WINDOW as usize)
        } else {
            len
        };
        let mut b = ReadBuf::new(size);
        b.reset(len);
        b
    }

    /// Returns a buffer from [`ReadAhead::take_buf`] once its reply is sent.
    pub(crate) fn give_back(&self, buf: ReadBuf) {
        keep_spare(&mut self.lock().spare, buf);
    }

    /// Drops the stream of `ino` (its file was closed, or changed).
    /// A fill in flight for it finds its stream gone and installs nothing.
    pub(crate) fn forget(&self, ino: InodeNo) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(i) = st.streams.iter().position(|s| s.ino == ino) {
            let s = st.streams.swap_remove(i);
            for w in s.windows {
                recycle(&mut st.spare, w.data);
            }
        }
    }

    /// Bytes held in windows now.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        let st = self.lock();
        st.streams
            .iter()
            .flat_map(|s| s.windows.iter())
            .map(|w| w.data.len())
            .sum()
    }

    /// Counters so far.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> RaStats {
        self.lock().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsvc_ext4::io::testutil::pattern;
    use fsvc_ext4::{DirEntry, Error, Result, Stat, StatFs};

    const REQ: u32 = 128 << 10;
    const MIB: u64 = 1 << 20;

    /// Files of pattern data, counting every read.
    #[derive(Debug, Default)]
    struct Files {
        files: Vec<(InodeNo, Vec<u8>)>,
        reads: Mutex<Vec<(InodeNo, u64, usize)>>,
        fail: bool,
    }

    impl Files {
        fn new(files: &[(u32, usize)]) -> Files {
            Files {
                files: files
                    .iter()
                    .map(|&(ino, len)| (InodeNo(ino), pattern(len, u64::from(ino))))
                    .collect(),
                ..Default::default()
            }
        }
        fn data(&self, ino: InodeNo) -> &[u8] {
            &self.files.iter().find(|f| f.0 == ino).unwrap().1
        }
        fn bytes_read(&self) -> u64 {
            self.reads.lock().unwrap().iter().map(|r| r.2 as u64).sum()
        }
    }

    impl Backend for Files {
        fn stat(&self, _: InodeNo) -> Result<Stat> {
            Err(Error::NotFound)
        }
        fn lookup(&self, _: InodeNo, _: &[u8]) -> Result<InodeNo> {
            Err(Error::NotFound)
        }
        fn read(&self, ino: InodeNo, offset: u64, buf: &mut [u8]) -> Result<usize> {
            if self.fail {
                return Err(Error::Invalid("injected".into()));
            }
            let data = self.data(ino);
            let from = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - from);
            buf[..n].copy_from_slice(&data[from..from + n]);
            self.reads.lock().unwrap().push((ino, offset, n));
            Ok(n)
        }
        fn read_dir(&self, _: InodeNo, _: u64, _: &mut dyn FnMut(DirEntry) -> bool) -> Result<()> {
            Err(Error::NotFound)
        }
        fn read_link(&self, _: InodeNo) -> Result<Vec<u8>> {
            Err(Error::NotFound)
        }
        fn list_xattrs(&self, _: InodeNo) -> Result<Vec<Vec<u8>>> {
            Err(Error::NotFound)
        }
        fn get_xattr(&self, _: InodeNo, _: &[u8]) -> Result<Vec<u8>> {
            Err(Error::NotFound)
        }
        fn statfs(&self) -> StatFs {
            StatFs {
                block_size: 4096,
                blocks: 0,
                blocks_free: 0,
                blocks_avail: 0,
                files: 0,
                files_free: 0,
                name_max: 255,
                fsid: 0,
            }
        }
        fn seek(&self, _: InodeNo, _: u64, _: bool) -> Result<Option<u64>> {
            Ok(None)
        }
    }

    /// What the adapter does for one request: answer from a window or
    /// read directly, then note it and run the fill. Returns the bytes.
    fn request(ra: &ReadAhead, fs: &Files, ino: InodeNo, offset: u64, size: u32) -> Vec<u8> {
        let out = match ra.lookup(ino, offset, size) {
            Some(chunk) => chunk.to_vec(),
            None => {
                let mut buf = vec![0u8; size as usize];
                let n = fs.read(ino, offset, &mut buf).unwrap_or(0);
                buf.truncate(n);
                buf
            }
        };
        if let Some(f) = ra.note(ino, offset, out.len() as u64, u64::from(size)) {
            ra.fill(fs, f);
        }
        out
    }

    fn expect(fs: &Files, ino: InodeNo, offset: u64, got: &[u8]) {
        let data = fs.data(ino);
        let from = (offset as usize).min(data.len());
        let want = &data[from..(from + got.len()).min(data.len())];
        assert!(got == want, "ino {ino} at {offset}: wrong bytes");
    }

    #[test]
    fn a_sequential_read_is_served_from_windows_reading_each_byte_once() {
        let size = 8 * MIB as usize + 12345;
        let fs = Files::new(&[(5, size)]);
        let ra = ReadAhead::default();
        let mut off = 0u64;
        let mut most_held = 0;
        loop {
            let got = request(&ra, &fs, InodeNo(5), off, REQ);
            expect(&fs, InodeNo(5), off, &got);
            most_held = most_held.max(ra.held_bytes());
            if got.is_empty() {
                break;
            }
            off += got.len() as u64;
        }
        assert_eq!(off, size as u64);
        let st = ra.stats();
        let requests = (size as u64).div_ceil(u64::from(REQ));
        // Only the first request (and the empty one at the end of file)
        // goes to the device itself.
        assert_eq!(st.hits, requests - 1, "{st:?}");
        // Nothing is read twice, and fills stop at the end of the file.
        assert_eq!(fs.bytes_read(), size as u64);
        assert_eq!(st.fills, (size as u64 - u64::from(REQ)).div_ceil(WINDOW));
        assert!(most_held <= MAX_WINDOWS * WINDOW as usize, "{most_held}");
        ra.forget(InodeNo(5));
        assert_eq!(ra.held_bytes(), 0);
    }

    #[test]
    fn files_read_one_after_another_reuse_the_same_buffers() {
        let files: Vec<(u32, usize)> = (20..24).map(|i| (i, 4 * MIB as usize)).collect();
        let fs = Files::new(&files);
        let ra = ReadAhead::default();
        let mut allocs = Vec::new();
        for &(ino, size) in &files {
            let ino = InodeNo(ino);
            let mut off = 0u64;
            while off < size as u64 {
                // What the adapter does on a miss: a pooled buffer, given back.
                let got = match ra.lookup(ino, off, REQ) {
                    Some(chunk) => chunk.to_vec(),
                    None => {
                        let mut buf = ra.take_buf(REQ as usize);
                        let n = fs.read(ino, off, buf.as_mut()).unwrap();
                        buf.truncate(n);
                        let v = buf.to_vec();
                        ra.give_back(buf);
                        v
                    }
                };
                expect(&fs, ino, off, &got);
                if let Some(f) = ra.note(ino, off, got.len() as u64, u64::from(REQ)) {
                    ra.fill(&fs, f);
                }
                off += got.len() as u64;
            }
            ra.forget(ino);
            allocs.push(ra.stats().allocs);
            assert!(ra.lock().spare.len() <= MAX_SPARE);
        }
        // The first file allocates a stream's worth; the next ones none.
        assert!(allocs[0] as usize <= MAX_SPARE, "{allocs:?}");
        assert!(allocs.iter().all(|&a| a == allocs[0]), "{allocs:?}");
    }

    #[test]
    fn small_direct_reads_get_small_unpooled_buffers() {
        let ra = ReadAhead::default();
        let b = ra.take_buf(4096);
        assert!(b.capacity() < WINDOW as usize);
        ra.give_back(b);
        assert!(ra.lock().spare.is_empty());
        let b = ra.take_buf(REQ as usize);
        assert!(b.capacity() >= WINDOW as usize);
        ra.give_back(b);
        assert_eq!(ra.lock().spare.len(), 1);
        // A small read may borrow the big spare; it comes back.
        let b = ra.take_buf(4096);
        assert_eq!(b.len(), 4096);
        ra.give_back(b);
        let spares = ra.lock().spare.len();
        assert_eq!((spares, ra.stats().allocs), (1, 2));
    }

    #[test]
    fn random_reads_start_no_fills() {
        let fs = Files::new(&[(7, 64 * MIB as usize)]);
        let ra = ReadAhead::default();
        // Far-apart offsets, never 0: no stream turns sequential.
        for i in 0..50u64 {
            let off = ((i * 7919) % 60 + 1) * MIB + (i % 3) * 4096;
            let got = request(&ra, &fs, InodeNo(7), off, REQ);
            expect(&fs, InodeNo(7), off, &got);
        }
        assert_eq!(ra.stats().fills, 0);
        assert_eq!(ra.held_bytes(), 0);
    }

    #[test]
    fn streams_and_memory_stay_bounded() {
        let files: Vec<(u32, usize)> = (10..10 + 2 * MAX_STREAMS as u32)
            .map(|i| (i, 3 * MIB as usize))
            .collect();
        let fs = Files::new(&files);
        let ra = ReadAhead::default();
        let bound = MAX_STREAMS * MAX_WINDOWS * WINDOW as usize;
        // Interleave sequential reads of twice as many files as streams.
        for step in 0..(3 * MIB / u64::from(REQ)) {
            for &(ino, _) in &files {
                let ino = InodeNo(ino);
                let off = step * u64::from(REQ);
                let got = request(&ra, &fs, ino, off, REQ);
                expect(&fs, ino, off, &got);
                assert!(ra.held_bytes() <= bound);
                assert!(ra.lock().streams.len() <= MAX_STREAMS);
                assert!(ra.lock().spare.len() <= MAX_SPARE);
            }
        }
    }

    #[test]
    fn short_files_end_their_stream() {
        let size = 300 << 10;
        let fs = Files::new(&[(3, size)]);
        let ra = ReadAhead::default();
        assert_eq!(request(&ra, &fs, InodeNo(3), 0, REQ).len(), REQ as usize);
        // The fill came back short: it knows the end of the file and
        // answers the last partial page from memory.
        let tail = ra.lookup(InodeNo(3), 256 << 10, REQ).map(|c| c.to_vec());
        assert_eq!(tail.as_deref().map(<[u8]>::len), Some(size - (256 << 10)));
        expect(&fs, InodeNo(3), 256 << 10, tail.as_deref().unwrap());
        let mut off = u64::from(REQ);
        while off < size as u64 {
            off += request(&ra, &fs, InodeNo(3), off, REQ).len() as u64;
        }
        assert!(request(&ra, &fs, InodeNo(3), off, REQ).is_empty());
        assert_eq!(ra.stats().fills, 1);
        assert_eq!(fs.bytes_read(), size as u64);
    }

    #[test]
    fn a_failed_fill_installs_nothing() {
        let mut fs = Files::new(&[(4, 4 * MIB as usize)]);
        let ra = ReadAhead::default();
        let f = ra
            .note(InodeNo(4), 0, u64::from(REQ), u64::from(REQ))
            .unwrap();
        fs.fail = true;
        ra.fill(&fs, f);
        assert_eq!(ra.held_bytes(), 0);
        assert!(ra.lookup(InodeNo(4), u64::from(REQ), REQ).is_none());
        fs.fail = false;
        let got = request(&ra, &fs, InodeNo(4), u64::from(REQ), REQ);
        expect(&fs, InodeNo(4), u64::from(REQ), &got);
    }

    #[test]
    fn a_reader_of_a_range_being_filled_gets_the_fill() {
        let fs = Arc::new(Files::new(&[(9, 4 * MIB as usize)]));
        let ra = Arc::new(ReadAhead::default());
        let f = ra
            .note(InodeNo(9), 0, u64::from(REQ), u64::from(REQ))
            .unwrap();
        let reader = {
            let ra = ra.clone();
            std::thread::spawn(move || {
                ra.lookup(InodeNo(9), u64::from(REQ), REQ)
                    .map(|c| c.to_vec())
            })
        };
        ra.fill(&*fs, f);
        let got = reader
            .join()
            .unwrap()
            .expect("the fill answers the waiting reader");
        expect(&fs, InodeNo(9), u64::from(REQ), &got);
        assert_eq!(fs.bytes_read(), WINDOW);
    }
}
