//! Read reply buffers aligned for `O_DIRECT`.

/// Alignment of read buffers: a page, so that file data read at
/// page-aligned file offsets (what the kernel asks for) lands in the buffer
/// straight from an `O_DIRECT` device, without the channel bouncing it.
const READ_ALIGN: usize = 4096;

/// A read reply's buffer, starting at a [`READ_ALIGN`]-aligned address.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl ReadBuf {
    /// A buffer of `len` bytes.
    pub(crate) fn new(len: usize) -> ReadBuf {
        let storage = vec![0u8; len + READ_ALIGN];
        let start = (READ_ALIGN - storage.as_ptr() as usize % READ_ALIGN) % READ_ALIGN;
        ReadBuf {
            storage,
            start,
            len,
        }
    }

    /// The bytes, to fill.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    /// Bytes the buffer can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.storage.len() - self.start
    }

    /// Reuses the buffer for `len` bytes (at most its capacity). The old
    /// contents stay until overwritten: callers fill it before reading.
    pub(crate) fn reset(&mut self, len: usize) {
        self.len = len.min(self.capacity());
    }

    /// Keeps the first `len` bytes (no-op when already shorter).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}
