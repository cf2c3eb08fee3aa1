//! copy_file_range served in the engine (ext4 has no reflink: the kernel
//! copies through the page cache, `splice`): the bytes are read from the
//! source and written to the destination in chunks, each chunk its own
//! transaction, so a copy stopped by an error or by space running out
//! reports what it copied, as the kernel does.
//!
//! Rules (`generic_copy_file_checks`): both files regular (`IsDirectory`
//! for a directory, `Invalid` otherwise); a copy within one file whose
//! ranges overlap is `Invalid`; the length is cut at the source's end (a
//! copy from at or past it copies nothing); the destination's size limit
//! cuts it too (`FileTooBig` when nothing fits).

use crate::error::{Error, Result};
use crate::file_write::check_regular;
use crate::flags::{check_may_modify, Change};
use crate::fs::Fs;
use crate::num::InodeNo;
use crate::tx::Creds;

/// Bytes copied per transaction.
const CHUNK: u64 = 1 << 20;

impl Fs {
    /// Copies up to `len` bytes of regular file `src` from `src_off` into
    /// regular file `dst` at `dst_off`; returns the bytes copied (fewer at
    /// the source's end, the destination's limit or when space ran out).
    pub fn copy_file_range(
        &self,
        creds: Creds,
        src: InodeNo,
        src_off: u64,
        dst: InodeNo,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        let _locks = self.inode_locks().write_many(&[src, dst]);
        let src_size = {
            let _g = self.read_guard()?;
            let s = self.inode(src)?;
            check_regular(&s)?;
            let d = self.inode(dst)?;
            check_regular(&d)?;
            check_may_modify(
                &d,
                Change::Write {
                    offset: dst_off,
                    size: d.size,
                },
            )?;
            s.size
        };
        let len = len.min(src_size.saturating_sub(src_off));
        if len == 0 {
            return Ok(0);
        }
        if src == dst && src_off < dst_off.saturating_add(len) && dst_off < src_off + len {
            return Err(Error::Invalid(
                "copy_file_range within one file with overlapping ranges".into(),
            ));
        }
        let mut done = 0u64;
        let mut buf = vec![0u8; CHUNK.min(len) as usize];
        while done < len {
            let n = (len - done).min(CHUNK) as usize;
            let got = {
                let _g = self.read_guard()?;
                let s = self.inode(src)?;
                self.read_inode_data(&s, src_off + done, &mut buf[..n])?
            };
            if got == 0 {
                break;
            }
            match self.write_locked(creds, dst, dst_off + done, &buf[..got], false) {
                Ok((w, _)) => {
                    done += w as u64;
                    if w < got {
                        break;
                    }
                }
                Err(e) if done > 0 && matches!(e, Error::NoSpace(_) | Error::FileTooBig) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::num::InodeNo;
    use crate::testfs::{Image, GEOMETRIES};
    use crate::tx::Creds;

    #[test]
    fn copies_match_the_source_on_every_geometry() {
        for &(name, args, size) in GEOMETRIES {
            let src: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
            let files: &[(&str, &[u8])] = &[("src", &src), ("dst", b"old contents")];
            let img = Image::mkfs_with_files(args, size, files);
            let Some(img) = img else { return };
            let fs = img.open_rw();
            let s = fs.lookup(InodeNo::ROOT, b"src").unwrap();
            let t = fs.lookup(InodeNo::ROOT, b"dst").unwrap();
            // (src offset, dst offset, length asked, copied)
            let cases: &[(u64, u64, u64, u64)] = &[
                (0, 0, 100, 100),
                (7, 5000, 2_500_000, 2_500_000),
                (2_999_990, 10, 100, 10),
                (3_000_000, 0, 100, 0),
                (1, 9_000_000, 1 << 40, 2_999_999),
            ];
            let mut model = b"old contents".to_vec();
            for &(so, to, len, want) in cases {
                let n = fs.copy_file_range(Creds::ROOT, s, so, t, to, len).unwrap();
                assert_eq!(n, want, "{name}: copy {so} -> {to} ({len})");
                let part = &src[so as usize..(so + n) as usize];
                if n > 0 {
                    if model.len() < (to + n) as usize {
                        model.resize((to + n) as usize, 0);
                    }
                    model[to as usize..(to + n) as usize].copy_from_slice(part);
                }
            }
            let mut got = vec![0u8; model.len()];
            fs.read(t, 0, &mut got).unwrap();
            assert!(got == model, "{name}: destination differs");
            let e = fs
                .copy_file_range(Creds::ROOT, s, 0, s, 10, 100)
                .unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{name}: {e}");
            let e = fs
                .copy_file_range(Creds::ROOT, s, 0, InodeNo::ROOT, 0, 10)
                .unwrap_err();
            assert!(matches!(e, Error::IsDirectory), "{name}: {e}");
            // Within one file, ranges apart.
            assert_eq!(
                fs.copy_file_range(Creds::ROOT, s, 0, s, 10_000, 100)
                    .unwrap(),
                100
            );
            fs.unmount().unwrap();
            img.fsck_clean();
        }
    }
}
