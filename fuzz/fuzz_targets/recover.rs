//! Fuzz target `recover`: the input is a whole filesystem image (at most
//! 4 MiB) whose journal may need recovery. `journal::recover` runs on an
//! in-memory copy (finding the journal inode through the engine, replaying,
//! marking the journal and the superblock recovered); the result is then
//! opened. Errors are fine; a panic, a hang, or a recovery that reports
//! success and leaves a filesystem that still needs recovery is a bug.
//!
//! Seeds: `fuzz/seed.sh` makes small images the kernel left dirty (root
//! needed) in fuzz/corpus/recover/.

#![no_main]

use std::sync::Arc;

use fsvc_ext4::io::mem::MemChannel;
use fsvc_ext4::io::IoChannel;
use fsvc_ext4::journal::{self, Recovery};
use fsvc_ext4::{Fs, OpenOptions};
use libfuzzer_sys::fuzz_target;

const MAX_IMAGE: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_IMAGE {
        return;
    }
    let io: Arc<dyn IoChannel> = Arc::new(MemChannel::new(data.to_vec()));
    let Ok(outcome) = journal::recover(&io) else {
        return;
    };
    let opts = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    match Fs::open(io.clone(), &opts) {
        Err(fsvc_ext4::Error::NeedsRecovery) => {
            panic!("recover said {outcome:?} but the filesystem still needs recovery")
        }
        Ok(fs) => {
            let _ = fs.statfs();
            let _ = fsvc_ext4::orphan::pending(&fs);
        }
        Err(_) => {}
    }
    if let Recovery::Recovered(_) = outcome {
        // Recovering again finds nothing to do.
        assert!(matches!(journal::recover(&io), Ok(Recovery::NotNeeded)));
    }
});
