//! Tests of the readahead: streams, windows, buffers, and data
//! generations against writes.

use std::sync::{Barrier, RwLock};

use super::*;
use fsvc_ext4::io::testutil::pattern;
use fsvc_ext4::{DirEntry, Error, InodeNo, Result, Stat, StatFs};

/// The readahead of a mount with its own data generations.
fn ra() -> ReadAhead {
    ReadAhead::new(Arc::default())
}

/// The file handle the tests read `ino` through.
fn fh(ino: u32) -> u64 {
    1000 + u64::from(ino)
}

impl ReadAhead {
    /// The bytes if a window holds them.
    fn hit(&self, ino: u32, offset: u64, size: u32) -> Option<Vec<u8>> {
        match self.lookup(fh(ino), InodeNo(ino), offset, size) {
            Lookup::Hit(c) => Some(c.to_vec()),
            Lookup::Miss { .. } => None,
        }
    }
}

const REQ: u32 = 128 << 10;
const MIB: u64 = 1 << 20;

/// Files of pattern data, counting every read. Their data can be
/// replaced (a "write"), and a read can be held between copying the data
/// and returning it (to race it against a write).
#[derive(Debug, Default)]
struct Files {
    files: RwLock<Vec<(u32, Vec<u8>)>>,
    reads: Mutex<Vec<(u32, u64, usize)>>,
    fail: bool,
    /// When set, each read waits on the barrier twice after copying:
    /// once to say it has copied, once to be let go.
    hold: Option<Arc<Barrier>>,
}

impl Files {
    fn new(files: &[(u32, usize)]) -> Files {
        Files {
            files: RwLock::new(
                files
                    .iter()
                    .map(|&(ino, len)| (ino, pattern(len, u64::from(ino))))
                    .collect(),
            ),
            ..Default::default()
        }
    }
    fn data(&self, ino: u32) -> Vec<u8> {
        let files = self.files.read().unwrap();
        files.iter().find(|f| f.0 == ino).unwrap().1.clone()
    }
    /// Replaces the data of `ino` (what a write does, between its two
    /// generation bumps).
    fn set(&self, ino: u32, data: Vec<u8>) {
        let mut files = self.files.write().unwrap();
        files.iter_mut().find(|f| f.0 == ino).unwrap().1 = data;
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
        let n = {
            let files = self.files.read().unwrap();
            let data = &files.iter().find(|f| f.0 == ino.0).unwrap().1;
            let from = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - from);
            buf[..n].copy_from_slice(&data[from..from + n]);
            n
        };
        if let Some(b) = &self.hold {
            b.wait();
            b.wait();
        }
        self.reads.lock().unwrap().push((ino.0, offset, n));
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
fn request(ra: &ReadAhead, fs: &dyn Backend, ino: u32, offset: u64, size: u32) -> Vec<u8> {
    let (out, gen) = match ra.lookup(fh(ino), InodeNo(ino), offset, size) {
        Lookup::Hit(chunk) => (chunk.to_vec(), chunk.gen()),
        Lookup::Miss { gen } => {
            let mut buf = vec![0u8; size as usize];
            let n = fs.read(InodeNo(ino), offset, &mut buf).unwrap_or(0);
            buf.truncate(n);
            (buf, gen)
        }
    };
    let asked = u64::from(size);
    if let Some(f) = ra.note(fh(ino), InodeNo(ino), offset, out.len() as u64, asked, gen) {
        ra.fill(fs, f);
    }
    out
}

fn expect(fs: &Files, ino: u32, offset: u64, got: &[u8]) {
    let data = fs.data(ino);
    let from = (offset as usize).min(data.len());
    let want = &data[from..(from + got.len()).min(data.len())];
    assert!(got == want, "ino {ino} at {offset}: wrong bytes");
}

#[test]
fn a_sequential_read_is_served_from_windows_reading_each_byte_once() {
    let size = 8 * MIB as usize + 12345;
    let fs = Files::new(&[(5, size)]);
    let ra = ra();
    let mut off = 0u64;
    let mut most_held = 0;
    loop {
        let got = request(&ra, &fs, 5, off, REQ);
        expect(&fs, 5, off, &got);
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
    ra.release(fh(5));
    assert_eq!(ra.held_bytes(), 0);
}

#[test]
fn files_read_one_after_another_reuse_the_same_buffers() {
    let files: Vec<(u32, usize)> = (20..24).map(|i| (i, 4 * MIB as usize)).collect();
    let fs = Files::new(&files);
    let ra = ra();
    let mut allocs = Vec::new();
    for &(ino, size) in &files {
        let mut off = 0u64;
        while off < size as u64 {
            // What the adapter does on a miss: a pooled buffer, given back.
            let (got, gen) = match ra.lookup(fh(ino), InodeNo(ino), off, REQ) {
                Lookup::Hit(chunk) => (chunk.to_vec(), chunk.gen()),
                Lookup::Miss { gen } => {
                    let mut buf = ra.take_buf(REQ as usize);
                    let n = fs.read(InodeNo(ino), off, buf.as_mut()).unwrap();
                    buf.truncate(n);
                    let v = buf.to_vec();
                    ra.give_back(buf);
                    (v, gen)
                }
            };
            expect(&fs, ino, off, &got);
            let asked = u64::from(REQ);
            let ino_no = InodeNo(ino);
            if let Some(f) = ra.note(fh(ino), ino_no, off, got.len() as u64, asked, gen) {
                ra.fill(&fs, f);
            }
            off += got.len() as u64;
        }
        ra.release(fh(ino));
        allocs.push(ra.stats().allocs);
        assert!(ra.lock().spare.len() <= MAX_SPARE);
    }
    // The first file allocates a stream's worth; the next ones none.
    assert!(allocs[0] as usize <= MAX_SPARE, "{allocs:?}");
    assert!(allocs.iter().all(|&a| a == allocs[0]), "{allocs:?}");
}

#[test]
fn small_direct_reads_get_small_unpooled_buffers() {
    let ra = ra();
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
    let ra = ra();
    // Far-apart offsets, never 0: no stream turns sequential.
    for i in 0..50u64 {
        let off = ((i * 7919) % 60 + 1) * MIB + (i % 3) * 4096;
        let got = request(&ra, &fs, 7, off, REQ);
        expect(&fs, 7, off, &got);
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
    let ra = ra();
    let bound = MAX_STREAMS * MAX_WINDOWS * WINDOW as usize;
    // Interleave sequential reads of twice as many files as streams.
    for step in 0..(3 * MIB / u64::from(REQ)) {
        for &(ino, _) in &files {
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
    let ra = ra();
    assert_eq!(request(&ra, &fs, 3, 0, REQ).len(), REQ as usize);
    // The fill came back short: it knows the end of the file and
    // answers the last partial page from memory.
    let tail = ra.hit(3, 256 << 10, REQ);
    assert_eq!(tail.as_deref().map(<[u8]>::len), Some(size - (256 << 10)));
    expect(&fs, 3, 256 << 10, tail.as_deref().unwrap());
    let mut off = u64::from(REQ);
    while off < size as u64 {
        off += request(&ra, &fs, 3, off, REQ).len() as u64;
    }
    assert!(request(&ra, &fs, 3, off, REQ).is_empty());
    assert_eq!(ra.stats().fills, 1);
    assert_eq!(fs.bytes_read(), size as u64);
}

#[test]
fn a_failed_fill_installs_nothing() {
    let mut fs = Files::new(&[(4, 4 * MIB as usize)]);
    let ra = ra();
    let f = ra
        .note(fh(4), InodeNo(4), 0, u64::from(REQ), u64::from(REQ), 0)
        .unwrap();
    fs.fail = true;
    ra.fill(&fs, f);
    assert_eq!(ra.held_bytes(), 0);
    assert!(ra.hit(4, u64::from(REQ), REQ).is_none());
    fs.fail = false;
    let got = request(&ra, &fs, 4, u64::from(REQ), REQ);
    expect(&fs, 4, u64::from(REQ), &got);
}

#[test]
fn a_reader_of_a_range_being_filled_gets_the_fill() {
    let fs = Arc::new(Files::new(&[(9, 4 * MIB as usize)]));
    let ra = Arc::new(ra());
    let f = ra
        .note(fh(9), InodeNo(9), 0, u64::from(REQ), u64::from(REQ), 0)
        .unwrap();
    let reader = {
        let ra = ra.clone();
        std::thread::spawn(move || ra.hit(9, u64::from(REQ), REQ))
    };
    ra.fill(&*fs, f);
    let got = reader
        .join()
        .unwrap()
        .expect("the fill answers the waiting reader");
    expect(&fs, 9, u64::from(REQ), &got);
    assert_eq!(fs.bytes_read(), WINDOW);
}

/// A readahead over `fs` whose generations the test bumps as writes.
fn ra_with(gens: &Arc<DataGen>) -> ReadAhead {
    ReadAhead::new(gens.clone())
}

#[test]
fn a_fill_overtaken_by_a_write_is_dropped_when_installed() {
    let hold = Arc::new(Barrier::new(2));
    let fs = Arc::new(Files {
        hold: Some(hold.clone()),
        ..Files::new(&[(4, 4 * MIB as usize)])
    });
    let gens = Arc::new(DataGen::default());
    let ra = Arc::new(ra_with(&gens));
    let f = ra
        .note(
            fh(4),
            InodeNo(4),
            0,
            u64::from(REQ),
            u64::from(REQ),
            gens.current(InodeNo(4)),
        )
        .unwrap();
    let filler = {
        let (ra, fs) = (ra.clone(), fs.clone());
        std::thread::spawn(move || ra.fill(&*fs, f))
    };
    // The fill has copied the old data and not yet installed it.
    hold.wait();
    {
        let _write = gens.begin_write(InodeNo(4));
        fs.set(4, vec![0xee; 4 * MIB as usize]);
    }
    hold.wait();
    filler.join().unwrap();
    assert_eq!(ra.stats().stale, 1);
    assert_eq!(ra.held_bytes(), 0, "nothing from before the write is kept");
    assert!(ra.hit(4, u64::from(REQ), REQ).is_none());
}

#[test]
fn a_fill_that_read_during_a_write_is_never_served_after_it() {
    let fs = Files::new(&[(5, 4 * MIB as usize)]);
    let gens = Arc::new(DataGen::default());
    let ra = ra_with(&gens);
    let f = ra
        .note(
            fh(5),
            InodeNo(5),
            0,
            u64::from(REQ),
            u64::from(REQ),
            gens.current(InodeNo(5)),
        )
        .unwrap();
    // The write has begun (its first bump) but its data is not on the
    // device yet: the fill reads the old data and installs it.
    let write = gens.begin_write(InodeNo(5));
    ra.fill(&fs, f);
    assert!(ra.held_bytes() > 0);
    fs.set(5, vec![0xaa; 4 * MIB as usize]);
    drop(write);
    // Once the write has returned, the window is stale.
    assert!(ra.hit(5, u64::from(REQ), REQ).is_none());
    assert_eq!(ra.held_bytes(), 0);
    let got = request(&ra, &fs, 5, u64::from(REQ), REQ);
    assert!(got.iter().all(|&b| b == 0xaa), "old data served");
}

#[test]
fn the_end_of_file_learned_before_a_write_is_forgotten() {
    let size = 300 << 10;
    let fs = Files::new(&[(6, size)]);
    let gens = Arc::new(DataGen::default());
    let ra = ra_with(&gens);
    assert_eq!(request(&ra, &fs, 6, 0, REQ).len(), REQ as usize);
    // The fill came back short: the stream knows where the file ends.
    assert!(ra.hit(6, 256 << 10, REQ).is_some());
    // A write extends the file.
    {
        let _write = gens.begin_write(InodeNo(6));
        fs.set(6, pattern(MIB as usize, 99));
    }
    // A short answer at the old end would lose the new data.
    assert!(ra.hit(6, 256 << 10, REQ).is_none());
    let got = request(&ra, &fs, 6, 256 << 10, REQ);
    assert_eq!(got.len(), REQ as usize);
    expect(&fs, 6, 256 << 10, &got);
}

#[test]
fn sequential_readers_never_see_data_older_than_the_last_finished_write() {
    const VERSIONS: u8 = 60;
    let len = 2 * MIB as usize;
    let fs = Arc::new(Files::new(&[(7, len)]));
    fs.set(7, vec![0; len]);
    let gens = Arc::new(DataGen::default());
    let ra = Arc::new(ra_with(&gens));
    let finished = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let writer = {
        let (fs, gens, finished) = (fs.clone(), gens.clone(), finished.clone());
        std::thread::spawn(move || {
            for v in 1..=VERSIONS {
                {
                    let _write = gens.begin_write(InodeNo(7));
                    fs.set(7, vec![v; len]);
                }
                finished.store(v, std::sync::atomic::Ordering::SeqCst);
                std::thread::yield_now();
            }
        })
    };
    let mut checked = 0u64;
    while finished.load(std::sync::atomic::Ordering::SeqCst) < VERSIONS {
        let mut off = 0u64;
        while off < len as u64 {
            let floor = finished.load(std::sync::atomic::Ordering::SeqCst);
            let got = request(&ra, &*fs, 7, off, REQ);
            assert!(!got.is_empty());
            let oldest = got.iter().copied().min().unwrap_or(0);
            assert!(
                oldest >= floor,
                "read at {off} served version {oldest} after version {floor} was written"
            );
            checked += 1;
            off += got.len() as u64;
        }
    }
    writer.join().unwrap();
    let st = ra.stats();
    assert!(checked > 0 && st.fills > 0, "{checked} reads, {st:?}");
}
