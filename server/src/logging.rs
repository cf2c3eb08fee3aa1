//! The server's logger: one record per `write(2)`, on stderr (systemd: the
//! journal) or on the log fd the helper passed (the kernel log by default).
//!
//! Invariants:
//! - each record is written with a single `write` call and contains no
//!   newline except the final one, because `/dev/kmsg` takes exactly one
//!   record per write and a pipe keeps writes up to `PIPE_BUF` whole;
//! - records are at most [`MAX_RECORD`] bytes (the kernel log's line limit),
//!   cut on a character boundary;
//! - the destination gets a syslog priority prefix (`<3>`, `<6>`, ...) when
//!   it understands one (`/dev/kmsg`, and the journal's stderr stream), and
//!   the spawned server's lines name it: `fsvc-server[pid]: `;
//! - once the mount is known ([`set_mount_label`]), every record names it
//!   (`/dev/sdb1 on /mnt: ...`), so a log shared by several servers (the
//!   kernel log) says which mount each line is about;
//! - logging never fails the caller: a write error is dropped (there is
//!   nowhere else to report it), and the logger needs no syscall beyond
//!   `write` once installed, so it keeps working inside the seccomp sandbox.

use std::fmt::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::errno::Errno;
use nix::sys::stat::{fstat, major, minor, SFlag};

/// Longest record written, in bytes, newline included. `/dev/kmsg` refuses
/// longer writes (its limit is a little under 1 KiB).
pub const MAX_RECORD: usize = 960;

/// `/dev/kmsg` is character device 1:11.
const KMSG_MAJOR: u64 = 1;
const KMSG_MINOR: u64 = 11;

/// How records are shaped for their destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `/dev/kmsg`: `<prio>fsvc-server[pid]: message`.
    Kmsg,
    /// systemd's stderr stream (parses the `<prio>` prefix and knows the
    /// unit's name and pid): `<prio>message`.
    Journal,
    /// A file, pipe or terminal: `fsvc-server[pid]: LEVEL: message`.
    Plain,
}

/// Where records go.
#[derive(Debug)]
enum Sink {
    Stderr,
    Fd(OwnedFd),
}

/// The installed logger.
#[derive(Debug)]
pub struct FdLogger {
    sink: Sink,
    style: Style,
    pid: u32,
}

/// Syslog priority of a log level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Builds one record: prefix, the message with newlines and other control
/// characters flattened, the length cap, a final newline.
pub fn format_record(style: Style, pid: u32, level: Level, message: &str) -> Vec<u8> {
    let mut line = String::new();
    // Writing into a String cannot fail.
    let _ = match style {
        Style::Kmsg => write!(line, "<{}>fsvc-server[{pid}]: ", priority(level)),
        Style::Journal => write!(line, "<{}>", priority(level)),
        Style::Plain => write!(line, "fsvc-server[{pid}]: {level}: "),
    };
    for c in message.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if line.len() + c.len_utf8() > MAX_RECORD - 1 {
            break;
        }
        line.push(c);
    }
    line.push('\n');
    line.into_bytes()
}

/// Whether `fd` is the kernel log device.
fn is_kmsg(fd: BorrowedFd<'_>) -> bool {
    match fstat(fd) {
        Ok(st) => {
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
                && major(st.st_rdev) == KMSG_MAJOR
                && minor(st.st_rdev) == KMSG_MINOR
        }
        Err(_) => false,
    }
}

impl FdLogger {
    /// A logger on the helper's log fd (style picked from what it is).
    pub fn to_fd(fd: OwnedFd) -> FdLogger {
        let style = if is_kmsg(fd.as_fd()) {
            Style::Kmsg
        } else {
            Style::Plain
        };
        FdLogger {
            sink: Sink::Fd(fd),
            style,
            pid: std::process::id(),
        }
    }

    /// A logger on stderr with the given style.
    pub fn to_stderr(style: Style) -> FdLogger {
        FdLogger {
            sink: Sink::Stderr,
            style,
            pid: std::process::id(),
        }
    }

    /// The fd number records go to (for the sandbox's keep list).
    pub fn raw_fd(&self) -> RawFd {
        match &self.sink {
            Sink::Stderr => std::io::stderr().as_raw_fd(),
            Sink::Fd(fd) => fd.as_raw_fd(),
        }
    }

    /// The record style in use.
    pub fn style(&self) -> Style {
        self.style
    }

    /// Writes one record in one `write` call; EINTR is retried, anything
    /// else (full pipe, rate limit, closed log) dropped.
    fn write_record(&self, bytes: &[u8]) {
        loop {
            let res = match &self.sink {
                Sink::Stderr => nix::unistd::write(std::io::stderr(), bytes),
                Sink::Fd(fd) => nix::unistd::write(fd, bytes),
            };
            match res {
                Err(Errno::EINTR) => continue,
                _ => return,
            }
        }
    }

    /// Installs this logger as the process's `log` backend at `level`.
    /// Returns the fd records go to, for the sandbox's keep list.
    pub fn install(self, level: LevelFilter) -> Result<RawFd, log::SetLoggerError> {
        let raw = self.raw_fd();
        // The logger lives as long as the process.
        log::set_logger(Box::leak(Box::new(self)))?;
        log::set_max_level(level);
        Ok(raw)
    }
}

impl Log for FdLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_enabled(metadata.level(), metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = match MOUNT_LABEL.get() {
            Some(label) => format!("{label}: {}", record.args()),
            None => record.args().to_string(),
        };
        self.write_record(&format_record(
            self.style,
            self.pid,
            record.level(),
            &message,
        ));
    }

    fn flush(&self) {}
}

/// The mount every record names, once known.
static MOUNT_LABEL: OnceLock<String> = OnceLock::new();

/// Names the mount in every later record (`SOURCE on DIR`). The first call
/// wins: a server serves one mount.
pub fn set_mount_label(label: &str) {
    let _ = MOUNT_LABEL.set(label.to_owned());
}

/// Whether libraries' (non-fsvc) debug records pass: fuser logs every
/// request at debug level, which `-v` should not drown the log in.
static LIBRARY_DEBUG: AtomicBool = AtomicBool::new(false);

/// Whether a record of `level` from module `target` is written.
fn level_enabled(level: Level, target: &str) -> bool {
    if level > log::max_level() {
        return false;
    }
    // The library and the binary are both crate `fsvc_server`.
    let ours = target.starts_with("fsvc_");
    ours || level <= Level::Info || LIBRARY_DEBUG.load(Ordering::Relaxed)
}

/// Sets the log detail after installation (`-v` and the `debug` option are
/// only known after the handshake): `verbose` turns on fsvc's own debug
/// records, `library_debug` also those of libraries (fuser's per-request
/// trace).
pub fn set_verbose(verbose: bool, library_debug: bool) {
    LIBRARY_DEBUG.store(library_debug, Ordering::Relaxed);
    log::set_max_level(if verbose || library_debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_shapes() {
        let cases = [
            (
                Style::Kmsg,
                Level::Error,
                "boom",
                "<3>fsvc-server[7]: boom\n",
            ),
            (Style::Kmsg, Level::Info, "a\nb", "<6>fsvc-server[7]: a b\n"),
            (Style::Journal, Level::Warn, "careful", "<4>careful\n"),
            (Style::Journal, Level::Debug, "x\r\ty", "<7>x  y\n"),
            (
                Style::Plain,
                Level::Info,
                "mounted",
                "fsvc-server[7]: INFO: mounted\n",
            ),
        ];
        for (style, level, msg, want) in cases {
            let got = format_record(style, 7, level, msg);
            assert_eq!(String::from_utf8(got).expect("utf8"), want);
        }
    }

    #[test]
    fn library_debug_needs_the_debug_option() {
        set_verbose(true, false);
        assert!(level_enabled(Level::Debug, "fsvc_server::service"));
        assert!(level_enabled(Level::Debug, "fsvc_server"));
        assert!(!level_enabled(Level::Debug, "fuser::request"));
        assert!(level_enabled(Level::Warn, "fuser::request"));
        set_verbose(true, true);
        assert!(level_enabled(Level::Debug, "fuser::request"));
        set_verbose(false, false);
        assert!(!level_enabled(Level::Debug, "fsvc_server::service"));
        assert!(level_enabled(Level::Info, "fsvc_server::service"));
    }

    #[test]
    fn long_records_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(2 * MAX_RECORD);
        let rec = format_record(Style::Kmsg, 1, Level::Info, &msg);
        assert!(rec.len() <= MAX_RECORD);
        assert!(rec.len() >= MAX_RECORD - 2);
        let s = String::from_utf8(rec).expect("valid utf-8 after the cut");
        assert!(s.ends_with("é\n"));
        assert_eq!(s.matches('\n').count(), 1);
    }

    #[test]
    fn one_write_per_record_on_a_pipe() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let logger = FdLogger::to_fd(w);
        assert_eq!(logger.style(), Style::Plain, "a pipe is not kmsg");
        logger.write_record(&format_record(logger.style, 9, Level::Warn, "one"));
        logger.write_record(&format_record(logger.style, 9, Level::Warn, "two"));
        drop(logger);
        let mut buf = [0u8; 256];
        let n = nix::unistd::read(&r, &mut buf).expect("read");
        assert_eq!(
            std::str::from_utf8(&buf[..n]).expect("utf8"),
            "fsvc-server[9]: WARN: one\nfsvc-server[9]: WARN: two\n"
        );
    }

    #[test]
    fn kmsg_is_recognised() {
        match nix::fcntl::open(
            "/dev/kmsg",
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => assert_eq!(FdLogger::to_fd(fd).style(), Style::Kmsg),
            Err(e) => {
                assert!(
                    std::env::var_os("FSVC_REQUIRE_PRIVILEGED").is_none_or(|v| v != "1"),
                    "FSVC_REQUIRE_PRIVILEGED=1 but /dev/kmsg cannot be opened: {e}"
                );
                eprintln!("skipping: cannot open /dev/kmsg: {e}");
            }
        }
    }
}
