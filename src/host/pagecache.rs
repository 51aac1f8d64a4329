//! How a backing disk (file or block device) goes through the page cache:
//! writes in pieces of at most `PIECE` bytes, aligned to it, and reads
//! without readahead, so that the cache holds the disk in small folios.
//!
//! Why: Linux keeps a file's cache in folios as large as the write or
//! the readahead that filled them (ext4 since 6.16: up to 2 MiB), and ext4
//! walks every block of a folio on each write into it. Replicas take
//! small random writes all day, and a 4 KiB write into a 2 MiB folio cost
//! several times one into a 64 KiB folio (docs/performance.md has the
//! figures). 16 KiB pieces measured faster still for random writes; 64
//! KiB keeps a large write to a few calls. Readahead would build large
//! folios from the reads; the client's own readahead, above the exported
//! device, is the one that counts, as with DRBD, which reads its backing
//! device without any. A resync's or a verify's reads are for the peer
//! or a checksum: they are dropped from the cache once read.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

/// The largest piece written at once, and the alignment of the pieces.
pub const PIECE: u64 = 64 << 10;

/// The pieces of a write of `len` bytes at `offset`: where each goes and
/// which bytes of the buffer it takes.
/// Ends early at the end of the offsets (no file reaches it).
pub fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, Range<usize>)> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = offset.checked_add(done as u64)?;
        let room = (PIECE - at % PIECE) as usize;
        let n = room.min(len - done);
        let piece = (at, done..done + n);
        done += n;
        Some(piece)
    })
}

/// Writes all of `data` at `offset`, piece by piece.
pub fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    for (at, range) in pieces(offset, data.len()) {
        file.write_all_at(&data[range], at)?;
    }
    Ok(())
}

/// Reads through `file` (and every descriptor sharing its open file)
/// fetch what is asked and no more, in the smallest folios.
pub fn no_readahead(file: &File) -> io::Result<()> {
    posix_fadvise(file, 0, 0, PosixFadviseAdvice::POSIX_FADV_RANDOM).map_err(io::Error::from)
}

/// Drops what the cache holds of a range read for someone else (a
/// resync's or a verify's reads), so that it does not crowd out the
/// client's data. Clean pages of the range go, the client's too; dirty
/// ones stay (the kernel starts writing them back). An empty range drops
/// nothing (to fadvise, a length of 0 means up to the end).
pub fn drop_cached(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    posix_fadvise(file, offset, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(offset: u64, len: usize) -> Vec<(u64, Range<usize>)> {
        pieces(offset, len).collect()
    }

    #[test]
    fn a_write_within_one_piece_is_written_whole() {
        assert_eq!(all(4096, 4096), vec![(4096, 0..4096)]);
        assert_eq!(all(0, PIECE as usize), vec![(0, 0..PIECE as usize)]);
        assert!(all(123, 0).is_empty());
    }

    #[test]
    fn a_large_write_is_cut_at_piece_boundaries() {
        let p = PIECE as usize;
        let got = all(PIECE - 512, 2 * p + 1024);
        assert_eq!(
            got,
            vec![
                (PIECE - 512, 0..512),
                (PIECE, 512..512 + p),
                (2 * PIECE, 512 + p..512 + 2 * p),
                (3 * PIECE, 512 + 2 * p..2 * p + 1024),
            ]
        );
    }

    #[test]
    fn pieces_cover_the_buffer_once_in_order() {
        for (offset, len) in [
            (0, 1 << 20),
            (511, 300_000),
            (PIECE * 7 + 1, 1),
            (3, 70_000),
        ] {
            let mut next = 0;
            for (at, r) in pieces(offset, len) {
                assert_eq!(r.start, next);
                assert_eq!(at, offset + r.start as u64);
                assert!(r.len() as u64 <= PIECE && !r.is_empty());
                assert!(
                    at / PIECE == (at + r.len() as u64 - 1) / PIECE,
                    "{at} {r:?}"
                );
                next = r.end;
            }
            assert_eq!(next, len);
        }
    }

    #[test]
    fn the_last_offsets_end_the_pieces() {
        assert_eq!(all(u64::MAX - 10, 100).len(), 1);
    }

    #[test]
    fn a_write_that_fails_says_so() {
        let path = std::env::temp_dir().join(format!("duet-pagecache-ro-{}", std::process::id()));
        std::fs::write(&path, [0u8; 16]).expect("temp file");
        let ro = File::open(&path);
        let _ = std::fs::remove_file(&path);
        let ro = ro.expect("open read-only");
        assert!(write_all_at(&ro, &[1u8; 200_000], 0).is_err());
    }

    #[test]
    fn the_written_bytes_land_where_they_belong() {
        let path = std::env::temp_dir().join(format!("duet-pagecache-{}", std::process::id()));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("temp file");
        // Unlinked at once: gone whatever the test does next.
        let _ = std::fs::remove_file(&path);
        no_readahead(&file).expect("fadvise");
        write_all_at(&file, &data, 1000).expect("write");
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 1000).expect("read");
        assert_eq!(back, data);
        drop_cached(&file, 0, 0).expect("an empty range");
        drop_cached(&file, 0, 1 << 20).expect("fadvise");
        file.read_exact_at(&mut back, 1000).expect("read again");
        assert_eq!(back, data);
    }
}
