//! Block layer over an [`IoChannel`](super::IoChannel). (To be written.)

/// Whole-block access with a bounded metadata cache.
#[derive(Debug)]
pub struct BlockDevice {}
