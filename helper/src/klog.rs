//! The helper's kernel-log lines (`/dev/kmsg`), for outcomes a person must
//! hear about even when the helper's stderr went nowhere (umount(8) run by
//! systemd or udisks): a server that died or had to be killed, an unclean
//! unmount. One record per write, `<prio>fsvc-mount: ...`; failures to log
//! are ignored (there is nowhere else to report them).

use std::io::Write;

/// Kernel log priorities (syslog levels).
const ERR: u8 = 3;
const WARNING: u8 = 4;
const INFO: u8 = 6;
/// `/dev/kmsg` refuses longer records.
const MAX_RECORD: usize = 960;

fn write(prio: u8, msg: &str) {
    let mut line = format!("<{prio}>fsvc-mount[{}]: ", std::process::id());
    for c in msg.chars() {
        if line.len() + c.len_utf8() >= MAX_RECORD {
            break;
        }
        line.push(if c.is_control() { ' ' } else { c });
    }
    line.push('\n');
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = f.write_all(line.as_bytes());
    }
}

/// An error: data may be lost or the device was not released cleanly.
pub fn error(msg: &str) {
    write(ERR, msg);
}

/// A warning: something went wrong before us (a dead server).
pub fn warn(msg: &str) {
    write(WARNING, msg);
}

/// Information worth a line in the kernel log.
pub fn info(msg: &str) {
    write(INFO, msg);
}
