//! Sequential readahead of file data, ahead of the kernel's own.
//!
//! The device is read with `O_DIRECT`, so nothing below the server reads
//! ahead, and the kernel's FUSE readahead asks for at most 128 KiB at a
//! time with one or two requests in flight: a cold sequential read becomes
//! a chain of small device round trips. Here each open file read
//! sequentially gets a *stream* (per open, like the kernel's own readahead
//! state: it is keyed by the file handle and dropped at its release): once
//! a read continues the previous one (or starts the file), the worker
//! thread that answered it, after replying, reads the next [`WINDOW`]
//! bytes in one engine read (one device read per contiguous extent run)
//! and keeps them; the kernel's next requests are answered from memory
//! while the following window is read.
//!
//! Invariants (bounded memory, no threads of its own):
//! - at most [`MAX_STREAMS`] streams (least recently used replaced), each
//!   holding at most [`MAX_WINDOWS`] windows of at most [`WINDOW`] bytes,
//!   and at most [`MAX_FILLS`] fills in flight per stream; at most
//!   [`MAX_SPARE`] window buffers kept for reuse (fills and large direct
//!   reads take from them and give back);
//! - fills run on the FUSE worker that triggered them, after its reply;
//! - a window holds exactly what `Backend::read` returned for its range,
//!   and is served only while the file's data generation (`datagen`) is
//!   the one noted before that read: a fill that raced a write is dropped
//!   when it is installed or, at the latest, when it would be served, and
//!   so is the end of file a stream learned (a write may extend the file);
//! - a reader never waits for a fill longer than [`FILL_WAIT`]; after
//!   that it reads the device itself.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::datagen::DataGen;
use super::readbuf::ReadBuf;
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
    /// The file handle whose reads these are.
    fh: u64,
    ino: InodeNo,
    /// The data generation the windows and `eof` belong to.
    gen: u64,
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
    /// Forgets what was learned under an older data generation; returns
    /// the windows to recycle.
    fn renew(&mut self, gen: u64) -> VecDeque<Window> {
        if self.gen == gen {
            return VecDeque::new();
        }
        self.gen = gen;
        self.eof = None;
        std::mem::take(&mut self.windows)
    }

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
    fh: u64,
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
    /// The data generation the window belongs to.
    gen: u64,
    ra: &'a ReadAhead,
}

impl Chunk<'_> {
    /// The data generation of these bytes (for [`ReadAhead::note`]).
    pub(crate) fn gen(&self) -> u64 {
        self.gen
    }
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
    /// Fills dropped because the file's data changed meanwhile.
    pub(crate) stale: u64,
}

/// What [`ReadAhead::lookup`] found.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// A window holds the range.
    Hit(Chunk<'a>),
    /// The caller reads the range itself; `gen` is the file's data
    /// generation before that read, for [`ReadAhead::note`].
    Miss {
        /// The generation noted before the caller's read.
        gen: u64,
    },
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
#[derive(Debug)]
pub(crate) struct ReadAhead {
    state: Mutex<State>,
    filled: Condvar,
    gens: Arc<DataGen>,
}

impl ReadAhead {
    /// Readahead whose windows are valid while `gens` says the data did
    /// not change.
    pub(crate) fn new(gens: Arc<DataGen>) -> ReadAhead {
        ReadAhead {
            state: Mutex::default(),
            filled: Condvar::new(),
            gens,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes of `[offset, offset + size)` of `ino`, read through file
    /// handle `fh`, if a window holds all of them (or all up to the end of
    /// file) and they are as current as the file's data. Waits (bounded)
    /// when a fill in flight covers the range.
    pub(crate) fn lookup(&self, fh: u64, ino: InodeNo, offset: u64, size: u32) -> Lookup<'_> {
        let end = offset.saturating_add(u64::from(size));
        let deadline = Instant::now() + FILL_WAIT;
        let mut st = self.lock();
        loop {
            // Read under the lock, before the caller's own read on a miss.
            let gen = self.gens.current(ino);
            let miss = Lookup::Miss { gen };
            let st_ref = &mut *st;
            let Some(s) = st_ref
                .streams
                .iter_mut()
                .find(|s| s.fh == fh && s.ino == ino)
            else {
                return miss;
            };
            for w in s.renew(gen) {
                recycle(&mut st_ref.spare, w.data);
            }
            let want_end = s.eof.map_or(end, |e| end.min(e));
            if let Some(w) = s
                .windows
                .iter()
                .find(|w| w.start <= offset && offset < w.end() && want_end <= w.end())
            {
                let (Ok(from), Ok(to)) = (
                    usize::try_from(offset - w.start),
                    usize::try_from(want_end - w.start),
                ) else {
                    return miss;
                };
                let chunk = Chunk {
                    data: Some(w.data.clone()),
                    from,
                    to,
                    gen,
                    ra: self,
                };
                st_ref.stats.hits += 1;
                return Lookup::Hit(chunk);
            }
            let pending = s.filling.iter().any(|&(a, b)| a <= offset && offset < b);
            let now = Instant::now();
            if !pending || now >= deadline {
                return miss;
            }
            st = self
                .filled
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Records that `[offset, offset + len)` of `ino` was answered,
    /// through handle `fh`, to a read of `asked` bytes (fewer means the
    /// file ends there) with data of generation `gen` (from
    /// [`Lookup::Miss`], or the window's for a hit), and returns the fill
    /// to run next, if the stream wants one.
    pub(crate) fn note(
        &self,
        fh: u64,
        ino: InodeNo,
        offset: u64,
        len: u64,
        asked: u64,
        gen: u64,
    ) -> Option<Fill> {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.tick += 1;
        let tick = st.tick;
        let end = offset.saturating_add(len);
        let cur = self.gens.current(ino);
        let idx = match st.streams.iter().position(|s| s.fh == fh && s.ino == ino) {
            Some(i) => i,
            None => {
                let fresh = Stream {
                    fh,
                    ino,
                    gen: cur,
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
        let mut passed: Vec<Window> = s.renew(cur).into();
        let near = offset <= s.pos.saturating_add(NEAR) && end.saturating_add(NEAR) >= s.pos;
        if !near {
            // A jump: start over from here, no fill until it continues.
            passed.extend(s.windows.drain(..));
            s.sequential = offset == 0;
            s.pos = end;
            s.eof = None;
        } else if end > s.pos || offset == s.pos {
            s.sequential = true;
        }
        s.pos = s.pos.max(end);
        // A short answer read before a write that has happened since says
        // nothing about where the file ends now.
        if len < asked && gen == cur {
            s.eof = Some(end);
        }
        // Release what the reader has passed.
        let keep_from = s.pos.saturating_sub(DROP_BEHIND);
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
            fh,
            ino,
            start,
            len: WINDOW,
        })
    }

    /// Runs `fill`: reads the window through `fs` and installs it. A read
    /// error installs nothing (the reader's own read reports it), nor does
    /// a read that a write may have overtaken (the data generation moved
    /// while it ran).
    pub(crate) fn fill(&self, fs: &dyn Backend, fill: Fill) {
        let mut buf = self.take_buf(fill.len as usize);
        let gen = self.gens.current(fill.ino);
        let got = fs.read(fill.ino, fill.start, buf.as_mut());
        let mut guard = self.lock();
        let st = &mut *guard;
        st.stats.fills += 1;
        let cur = self.gens.current(fill.ino);
        let mut dropped = VecDeque::new();
        if let Some(s) = st
            .streams
            .iter_mut()
            .find(|s| s.fh == fill.fh && s.ino == fill.ino)
        {
            let range = (fill.start, fill.start.saturating_add(fill.len));
            if let Some(i) = s.filling.iter().position(|&r| r == range) {
                s.filling.swap_remove(i);
                dropped = s.renew(cur);
                if gen != cur {
                    st.stats.stale += 1;
                } else if let Ok(n) = got {
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
                            dropped.extend(s.windows.pop_front());
                        }
                    }
                }
            }
        }
        for w in dropped {
            recycle(&mut st.spare, w.data);
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

    /// Drops the stream of file handle `fh` (it was released). A fill in
    /// flight for it finds its stream gone and installs nothing.
    pub(crate) fn release(&self, fh: u64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(i) = st.streams.iter().position(|s| s.fh == fh) {
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
#[path = "readahead_tests.rs"]
mod tests;
