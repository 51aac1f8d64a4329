//! Large writes of the peer's data (its mirrored writes, resync data) go
//! to the backing disk direct (O_DIRECT), as all of DRBD's writes do.
//!
//! Why: through the page cache, each costs the CPU a copy into the cache,
//! the cache's bookkeeping and the writeback later, and a Secondary never
//! reads them back from that cache (a Primary that is SyncTarget reads
//! what it has synced from the disk). A full resync went 20-50% faster
//! in four of six runs here (docs/performance.md). The Primary's own
//! writes stay in its cache: its clients read them back from there
//! (sequential reads after writes halved when they went direct too).
//! Small writes stay in the cache as well: a 4 KiB write that waits for
//! the device costs more than its copy.
//!
//! The kernel keeps the two coherent: a direct write first writes back
//! and then drops whatever the cache holds of its range, so buffered
//! reads after it see its data. That holds if no folio it must drop is
//! dirtied meanwhile: overlapping writes never run at once (the
//! replication core orders them), and only the part of a write between
//! 64 KiB boundaries goes direct (`middle`), so no folio of duet's (at
//! most 64 KiB, aligned: `pagecache`) straddles its edge. Another
//! program reading the backing disk through readahead could build larger
//! folios; nothing but duet should touch a replica's backing disk.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use nix::fcntl::OFlag;

use crate::host::pagecache;

/// Alignment of a direct write's buffer: a page, which covers devices of
/// 512-byte and of 4 KiB logical blocks.
pub const ALIGN: usize = 4096;

/// Alignment of a direct write's offset and length: the largest folio
/// duet's own I/O puts in the cache (`pagecache::PIECE`). So no folio
/// straddles a direct write's edge: the kernel drops the cached range of
/// a direct write after it, and a folio it could not drop (dirtied
/// meanwhile by a write next to the range, which the core lets run at
/// the same time) would keep old data of the range for later reads.
const EDGE: u64 = pagecache::PIECE;

/// The smallest part of a write that goes direct.
pub const MIN: usize = 128 << 10;

/// Which bytes of a write of `len` bytes at `offset` go direct: those
/// between the first and the last `EDGE` boundary in it, if at least
/// `MIN`; the bytes before and after go through the cache.
pub fn middle(offset: u64, len: usize) -> Option<Range<usize>> {
    let end = offset.checked_add(len as u64)?;
    let first = offset.checked_next_multiple_of(EDGE)?;
    let last = end - end % EDGE;
    let n = last.checked_sub(first)? as usize;
    (n >= MIN).then(|| {
        let start = (first - offset) as usize;
        start..start + n
    })
}

/// A second, direct descriptor of the file behind `file` (the same inode,
/// whatever its path now names).
pub fn reopen(file: &File) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(OFlag::O_DIRECT.bits())
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// The largest aligned copy a thread keeps for unaligned buffers (a disk
/// thread, or whichever thread the core runs a write on); larger writes
/// are copied and written in pieces this big.
const BOUNCE_MAX: usize = 1 << 20;

/// Writes all of `data` at `offset` through `direct` (a descriptor from
/// `reopen`; offset and length aligned, as `middle` gives them). A
/// buffer that is not aligned (a Vec's seldom is: the allocator aligns
/// to 16 bytes) is copied into an aligned one of this thread's first,
/// piece by piece.
pub fn write_all_at(direct: &File, data: &[u8], offset: u64) -> io::Result<()> {
    if (data.as_ptr() as usize).is_multiple_of(ALIGN) {
        return direct.write_all_at(data, offset);
    }
    BOUNCE.with(|b| {
        let mut b = b.borrow_mut();
        let mut at = offset;
        for piece in data.chunks(BOUNCE_MAX) {
            let buf = b.take(piece.len());
            buf.copy_from_slice(piece);
            direct.write_all_at(buf, at)?;
            at += piece.len() as u64;
        }
        Ok(())
    })
}

thread_local! {
    static BOUNCE: RefCell<Bounce> = const { RefCell::new(Bounce { ptr: None, cap: 0 }) };
}

/// An aligned buffer that grows to the largest write it took.
struct Bounce {
    ptr: Option<std::ptr::NonNull<u8>>,
    cap: usize,
}

impl Bounce {
    fn take(&mut self, len: usize) -> &mut [u8] {
        if len > self.cap || self.ptr.is_none() {
            self.free();
            let layout = Self::layout(len);
            // SAFETY: the layout's size is not zero (at least ALIGN).
            // Zeroed: the slice below must be over initialized bytes.
            let p = unsafe { alloc_zeroed(layout) };
            let Some(p) = std::ptr::NonNull::new(p) else {
                std::alloc::handle_alloc_error(layout);
            };
            self.ptr = Some(p);
            self.cap = layout.size();
        }
        let p = self.ptr.map_or(std::ptr::null_mut(), |p| p.as_ptr());
        // SAFETY: `p` points to `cap >= len` bytes this buffer owns, and
        // the borrow of `self` keeps them from being freed or shared.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }

    fn layout(len: usize) -> Layout {
        let size = len.max(ALIGN).next_multiple_of(ALIGN);
        Layout::from_size_align(size, ALIGN)
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(Layout::new::<u8>()))
    }

    fn free(&mut self) {
        if let Some(p) = self.ptr.take() {
            // SAFETY: allocated in `take` with this very layout.
            unsafe { dealloc(p.as_ptr(), Self::layout(self.cap)) };
        }
        self.cap = 0;
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        self.free();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn the_middle_is_what_lies_between_piece_boundaries() {
        let k = 1024usize;
        assert_eq!(middle(0, MIN), Some(0..MIN));
        assert_eq!(middle(1 << 20, 1 << 20), Some(0..1 << 20));
        assert_eq!(middle(0, MIN - 4 * k), None);
        // 4 KiB in: the first 60 KiB and the last 4 KiB through the cache.
        assert_eq!(middle(4096, 256 * k), Some(60 * k..252 * k));
        assert_eq!(
            middle(512, MIN + 64 * k),
            Some(63 * k + 512..MIN + 63 * k + 512)
        );
        assert_eq!(middle(4096, MIN), None, "only 64 KiB between boundaries");
        assert_eq!(middle(u64::MAX - 4096, MIN), None);
    }

    /// A direct write lands whether its buffer is aligned or not, and a
    /// buffered read afterwards sees it, even of a range it had cached.
    #[test]
    fn direct_writes_land_and_the_cache_follows() {
        let path = std::env::temp_dir().join(format!("duet-direct-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("file");
        // Unlinked at once: gone whatever the test does next (the direct
        // descriptor is opened through /proc, which still names it).
        let _ = std::fs::remove_file(&path);
        file.set_len(8 << 20).expect("size");
        let mut cached = vec![0u8; MIN];
        file.read_exact_at(&mut cached, 0)
            .expect("read into the cache");
        let direct = reopen(&file).expect("O_DIRECT");
        let flags = nix::fcntl::fcntl(&direct, nix::fcntl::FcntlArg::F_GETFL).expect("F_GETFL");
        assert!(OFlag::from_bits_truncate(flags).contains(OFlag::O_DIRECT));
        let mut space = vec![0u8; MIN + 1];
        let data = unaligned(&mut space, MIN);
        data.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8);
        write_all_at(&direct, data, 0).expect("unaligned buffer");
        write_all_at(&direct, data, 1 << 20).expect("again, bounce reused");
        let mut back = vec![0u8; MIN];
        for at in [0, 1 << 20] {
            file.read_exact_at(&mut back, at).expect("read");
            assert_eq!(&back[..], &data[..], "at {at}");
        }
        // Larger than one bounce: written in pieces, all of it.
        let mut space = vec![0u8; BOUNCE_MAX + MIN + 1];
        let big = unaligned(&mut space, BOUNCE_MAX + MIN);
        big.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 253) as u8);
        let at = 2 * MIN as u64;
        write_all_at(&direct, big, at).expect("pieces");
        let mut back = vec![0u8; big.len()];
        file.read_exact_at(&mut back, at).expect("read");
        assert!(back[..] == big[..], "every piece landed");
    }

    /// `len` bytes of `space` (one byte longer) that start off a page.
    fn unaligned(space: &mut [u8], len: usize) -> &mut [u8] {
        if (space.as_ptr() as usize).is_multiple_of(ALIGN) {
            &mut space[1..=len]
        } else {
            &mut space[..len]
        }
    }
}
