//! Unit-test helpers shared by the block-mapping modules (`extent`,
//! `indirect`): a block reader over a fixed set of synthetic blocks, and a
//! shorthand for expected mappings.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::{Error, Result};
use super::num::{Lblk, Pblk};
use super::types::Mapping;

/// A block reader serving `blocks`; reading any other block is an error,
/// so a test also proves the walk touched only the blocks it should.
pub fn reader(blocks: HashMap<u64, Vec<u8>>) -> impl Fn(Pblk) -> Result<Arc<[u8]>> {
    move |b| {
        blocks
            .get(&b.0)
            .map(|v| Arc::from(v.as_slice()))
            .ok_or_else(|| Error::corrupt("test", format!("unexpected read of {b}")))
    }
}

/// The mapping `pblk` (None = hole) for `len` blocks.
pub fn m(pblk: Option<u64>, len: u64) -> Mapping {
    Mapping {
        pblk: pblk.map(Pblk),
        len,
    }
}

/// A logical block number written as a plain integer in a test table.
pub fn lb(l: u64) -> Lblk {
    Lblk(u32::try_from(l).expect("test lblk fits 32 bits"))
}
