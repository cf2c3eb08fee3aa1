//! End-to-end test support for fsvc: fixtures made by the real tools at test
//! time, a tree oracle that compares what two mounts show, and RAII guards
//! for every mount and temporary directory a test makes.
//!
//! Invariants:
//! - Nothing here leaves state behind: every mount, loop device, background
//!   process and temp dir is owned by a guard whose `Drop` releases it, so a
//!   failing (panicking) test cleans up too.
//! - Every temp path is unique (pid + counter + time), so tests may run in
//!   parallel.
//! - Binaries (`fsvc-mount`, `fsvc-server`) are never built from here: they
//!   are located next to the test executable (see [`util::bin_dir`]).

pub mod bench;
pub mod check;
pub mod damage;
pub mod fake_server;
pub mod fixtures;
pub mod install;
pub mod journal_fixture;
pub mod mount;
pub mod namespace;
pub mod oracle;
pub mod privilege;
pub mod runtime_probe;
pub mod sys;
pub mod system;
pub mod users;
pub mod util;

pub use privilege::require_privileged;
