//! End-to-end test support. (To be written.)
pub mod bench;
