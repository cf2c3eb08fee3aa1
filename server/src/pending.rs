//! TEMPORARY stand-ins for APIs other helpers are writing in parallel
//! (`sandbox::enter`, `io::unixfd::UnixFdChannel`, `fuse::FuseServer`).
//! They exist only so that `main.rs` compiles and its order of steps can be
//! reviewed; each one refuses to work. Delete this file when the real
//! modules land on main.
//!
//! Invariant: no shim can let a mount happen. The sandbox shim fails, so
//! `main` stops before the image is opened.
#![allow(dead_code)] // fields are what the real APIs will read

use std::fmt;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;

use fsvc_server::ext4::fs::Fs;
use fsvc_server::io::{IoChannel, IoError};

/// Stand-in for `fsvc_server::sandbox::SandboxConfig`.
#[derive(Debug)]
pub struct SandboxConfig {
    /// Fds to keep open.
    pub keep_fds: Vec<RawFd>,
    /// uid to drop to if still root.
    pub uid: u32,
    /// gid to drop to if still root.
    pub gid: u32,
}

/// Stand-in for `fsvc_server::sandbox::enter`: always fails.
pub fn enter_sandbox(_cfg: &SandboxConfig) -> Result<String, String> {
    Err("this build has no sandbox yet (fsvc_server::sandbox::enter is not implemented)".to_owned())
}

/// Stand-in for `fsvc_server::io::unixfd::UnixFdChannel`: refuses all IO.
#[derive(Debug)]
pub struct UnixFdChannel {
    _fd: OwnedFd,
    read_only: bool,
}

impl UnixFdChannel {
    /// Wraps `fd`.
    pub fn new(fd: OwnedFd, read_only: bool, _require_sandbox: bool) -> Result<Self, IoError> {
        Ok(UnixFdChannel { _fd: fd, read_only })
    }
}

impl IoChannel for UnixFdChannel {
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> Result<(), IoError> {
        Err(IoError::NotSandboxed)
    }
    fn write_at(&self, _offset: u64, _buf: &[u8]) -> Result<(), IoError> {
        Err(IoError::NotSandboxed)
    }
    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        0
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

/// Stand-in for `fsvc_server::fuse::ServeOptions`.
#[derive(Debug)]
pub struct ServeOptions {
    /// Mount is read-only.
    pub read_only: bool,
    /// `directio`.
    pub direct_io: bool,
    /// POSIX ACLs on.
    pub acl: bool,
}

/// Stand-in for `fsvc_server::fuse::FuseServer`: never starts.
#[derive(Debug)]
pub struct FuseServer;

/// Error of the FUSE stand-in.
#[derive(Debug)]
pub struct NotYet;

impl fmt::Display for NotYet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FUSE serving is not implemented in this build")
    }
}

impl FuseServer {
    /// Would do the kernel handshake.
    pub fn new(_fs: Arc<Fs>, _fuse: OwnedFd, _opts: &ServeOptions) -> Result<FuseServer, NotYet> {
        Err(NotYet)
    }

    /// Would serve until unmount.
    pub fn run(self) -> Result<(), NotYet> {
        Err(NotYet)
    }
}
