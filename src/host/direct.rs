//! Large writes of the peer's data (its mirrored writes, resync data) go
//! to the backing disk direct (O_DIRECT), as all of DRBD's writes do.
//!
//! Why: through the page cache, each costs the CPU a copy into the cache,
//! the cache's bookkeeping and the writeback later, and the node that
//! receives them (a Secondary, a SyncTarget) never reads them back from
//! that cache. A full resync went 40% faster (docs/performance.md). The
//! Primary's own writes stay in its cache: its clients read them back
//! from there (sequential reads after writes halved when they went
//! direct too). Small writes stay in the cache as well: a 4 KiB write
//! that waits for the device costs more than its copy.
//!
//! The kernel keeps the two coherent: a direct write first writes back
//! and then drops whatever the cache holds of its range, so buffered
//! reads after it see its data. Overlapping writes never run at once
//! (the replication core orders them).

use std::alloc::{Layout, alloc, dealloc};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use nix::fcntl::OFlag;

/// Alignment of a direct write's offset, length and buffer: a page, which
/// covers devices of 512-byte and of 4 KiB logical blocks.
pub const ALIGN: usize = 4096;

/// The smallest write that goes direct.
pub const MIN: usize = 128 << 10;

/// Whether a write of `len` bytes at `offset` may go direct.
pub fn eligible(offset: u64, len: usize) -> bool {
    len >= MIN && offset.is_multiple_of(ALIGN as u64) && len.is_multiple_of(ALIGN)
}

/// A second, direct descriptor of the file behind `file` (the same inode,
/// whatever its path now names).
pub fn reopen(file: &File) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(OFlag::O_DIRECT.bits())
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// The largest aligned copy a thread keeps for unaligned buffers; larger
/// writes are copied and written in pieces this big.
const BOUNCE_MAX: usize = 4 << 20;

/// Writes all of `data` at `offset` through `direct` (a descriptor from
/// `reopen`; `eligible` must hold). A buffer that is not aligned (a
/// Vec's never is: the allocator aligns to 16 bytes) is copied into an
/// aligned one of this thread's first, piece by piece.
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
            // SAFETY: the layout's size is not zero (`eligible` wants at
            // least MIN bytes, and `layout` at least ALIGN).
            let p = unsafe { alloc(layout) };
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
    fn eligible_wants_large_aligned_writes() {
        assert!(eligible(0, MIN));
        assert!(eligible(1 << 20, 1 << 20));
        assert!(!eligible(0, MIN - ALIGN));
        assert!(!eligible(512, MIN));
        assert!(!eligible(0, MIN + 512));
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
