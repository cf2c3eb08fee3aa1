//! fsvc-server library: the sandbox the server enters before touching the
//! image, the server's side of the helper protocol, and the FUSE adapter
//! over the engine (the `fsvc-ext4` crate, which also holds the IO
//! channel).
//!
//! Dependency rule: the engine crate knows none of these modules; the
//! sandbox reaches the IO channel only as the gate it hands it
//! ([`sandbox::gate`]). `fuse` is the only module that knows errno.

pub mod fuse;
pub mod logging;
pub mod mode;
pub mod sandbox;
pub mod service;
