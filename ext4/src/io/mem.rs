//! In-memory device, for tests, fuzzing and tools that load an image into memory.

use std::sync::RwLock;

use super::{IoChannel, IoError};

/// A device backed by a byte vector.
#[derive(Debug)]
pub struct MemChannel {
    data: RwLock<Vec<u8>>,
    read_only: bool,
}

impl MemChannel {
    /// A writable device holding `data`.
    pub fn new(data: Vec<u8>) -> MemChannel {
        MemChannel {
            data: RwLock::new(data),
            read_only: false,
        }
    }

    /// A read-only device holding `data`.
    pub fn read_only(data: Vec<u8>) -> MemChannel {
        MemChannel {
            data: RwLock::new(data),
            read_only: true,
        }
    }

    /// A copy of the current contents.
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn range(
        &self,
        offset: u64,
        len: usize,
        size: usize,
    ) -> Result<std::ops::Range<usize>, IoError> {
        let out = IoError::OutOfRange {
            offset,
            len: len as u64,
            size: size as u64,
        };
        let start = usize::try_from(offset).map_err(|_| out)?;
        let end = start.checked_add(len).filter(|&e| e <= size);
        end.map(|end| start..end).ok_or(IoError::OutOfRange {
            offset,
            len: len as u64,
            size: size as u64,
        })
    }
}

impl IoChannel for MemChannel {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        let r = self.range(offset, buf.len(), data.len())?;
        buf.copy_from_slice(&data[r]);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        if self.read_only {
            return Err(IoError::ReadOnly);
        }
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let r = self.range(offset, buf.len(), data.len())?;
        data[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }

    fn size(&self) -> u64 {
        self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    fn sector_size(&self) -> u32 {
        512
    }

    fn is_block_device(&self) -> bool {
        false
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }
}
