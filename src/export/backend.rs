//! What an export reads and writes. A plain local disk or file now; the
//! replica (which also sends every write to the peer) implements the same
//! trait when replication lands.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::fcntl::{FallocateFlags, fallocate};

pub trait Backend: Send + Sync {
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// With `fua`, the data is on stable storage when this returns.
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()>;
    /// `write_at` of a buffer the caller gives away, answered through
    /// `done`, maybe later and on another thread (a replica's is answered
    /// by whichever thread sees the peer's acknowledgement: handing it
    /// back to the caller's thread would cost a wakeup per write). The
    /// buffer comes back with the answer when the backend is done with
    /// it (a replica sends it to the peer from where it is, without a
    /// copy).
    fn write_then(&self, buf: Vec<u8>, offset: u64, fua: bool, done: WriteDone) {
        let r = self.write_at(&buf, offset, fua);
        done.finish(r, Some(buf));
    }
    /// Everything written before is on stable storage when this returns.
    fn flush(&self) -> io::Result<()>;
    /// The range's contents are no longer needed (reads may return anything).
    fn trim(&self, offset: u64, len: u64) -> io::Result<()>;
    /// The range reads as zeroes; `may_punch` lets it become a hole.
    fn write_zeroes(&self, offset: u64, len: u64, may_punch: bool, fua: bool) -> io::Result<()>;
}

/// What a write that failed in the backend answers (NBD's EIO).
pub fn eio() -> io::Error {
    io::Error::from_raw_os_error(nix::libc::EIO)
}

type Answer = Box<dyn FnOnce(io::Result<()>, Option<Vec<u8>>) + Send>;

/// How a write started with `write_then` is answered: exactly once, with
/// an I/O error if the backend drops it unanswered (a replica going
/// down), so a caller counting its writes in flight never waits forever.
/// It must not block: it may run where the backend holds its own locks.
pub struct WriteDone(Option<Answer>);

impl WriteDone {
    pub fn new(f: impl FnOnce(io::Result<()>, Option<Vec<u8>>) + Send + 'static) -> WriteDone {
        WriteDone(Some(Box::new(f)))
    }

    /// The outcome, and the buffer if nothing else holds it any more.
    pub fn finish(mut self, result: io::Result<()>, buf: Option<Vec<u8>>) {
        if let Some(f) = self.0.take() {
            f(result, buf);
        }
    }
}

impl Drop for WriteDone {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(eio()), None);
        }
    }
}

/// A local file or block device.
pub struct FileBackend {
    file: File,
    size: u64,
    read_only: bool,
}

impl FileBackend {
    pub fn open(path: &Path, read_only: bool) -> io::Result<FileBackend> {
        let mut file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        // Block devices report length 0 in metadata; seeking finds the size.
        let size = file.seek(SeekFrom::End(0))?;
        Ok(FileBackend {
            file,
            size,
            read_only,
        })
    }

    fn fallocate(&self, flags: FallocateFlags, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        fallocate(&self.file, flags, off, len).map_err(io::Error::from)
    }

    /// Zeroes by writing them, for files and devices without ZERO_RANGE.
    fn write_zero_bytes(&self, mut offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeroes = vec![0u8; CHUNK.min(len) as usize];
        let end = offset + len;
        while offset < end {
            let n = CHUNK.min(end - offset) as usize;
            self.file.write_all_at(&zeroes[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }
}

impl Backend for FileBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        self.file.write_all_at(buf, offset)?;
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match self.fallocate(flags, offset, len) {
            // Trim is advisory: where holes cannot be punched, keep the data.
            Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => Ok(()),
            other => other,
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_punch: bool, fua: bool) -> io::Result<()> {
        let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        let zero = FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        let fast = if may_punch { punch } else { zero };
        if self.fallocate(fast, offset, len).is_err() {
            self.write_zero_bytes(offset, len)?;
        }
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, size: u64) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("duet-backend-{name}-{}", std::process::id()));
        let f = File::create(&p).expect("create");
        f.set_len(size).expect("size");
        p
    }

    #[test]
    fn reads_what_was_written_and_zeroes_and_trims() {
        let p = temp("rw", 1 << 20);
        let b = FileBackend::open(&p, false).expect("open");
        assert_eq!(b.size(), 1 << 20);
        b.write_at(&[7u8; 8192], 4096, true).expect("write");
        let mut buf = [0u8; 8192];
        b.read_at(&mut buf, 4096).expect("read");
        assert!(buf.iter().all(|&x| x == 7));
        b.write_zeroes(4096, 4096, false, false).expect("zero");
        b.read_at(&mut buf, 4096).expect("read");
        assert!(buf[..4096].iter().all(|&x| x == 0) && buf[4096..].iter().all(|&x| x == 7));
        b.write_zeroes(8192, 4096, true, true)
            .expect("zero with holes");
        b.read_at(&mut buf, 4096).expect("read");
        assert!(buf.iter().all(|&x| x == 0));
        b.trim(0, 4096).expect("trim");
        b.flush().expect("flush");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn read_only_refuses_writes_at_the_file_level_too() {
        let p = temp("ro", 4096);
        let b = FileBackend::open(&p, true).expect("open");
        assert!(b.read_only());
        assert!(b.write_at(&[1], 0, false).is_err());
        let _ = std::fs::remove_file(&p);
    }
}
