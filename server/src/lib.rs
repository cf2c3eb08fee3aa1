//! fsvc-server library: the ext2/3/4 engine, the IO channel it reads
//! through, the sandbox the server enters before touching the image, the
//! server's side of the helper protocol, and the FUSE adapter.
//!
//! Dependency rule: `ext4` depends on `io` only; it never imports `fuse`,
//! `service` or `sandbox`, so it can be used by tests, fuzzers and offline
//! tools. `fuse` is the only module that knows errno.

pub mod fuse;
pub mod logging;
pub mod sandbox;
pub mod service;
