//! Spare buffers: buffers of finished writes kept for the next ones,
//! bounded in bytes, so that a write at depth finds a buffer already
//! allocated and faulted in (docs/performance.md: a fresh one per
//! write cost page faults and, for the export's, an mlock).

use std::sync::Mutex;

pub struct Spares {
    kept: Mutex<Kept>,
    max_bytes: usize,
    min_len: usize,
    max_len: usize,
}

struct Kept {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl Spares {
    /// Keeps buffers of `min_len` to `max_len` bytes of capacity, up to
    /// `max_bytes` in all; others are freed when given back.
    pub const fn new(max_bytes: usize, min_len: usize, max_len: usize) -> Spares {
        Spares {
            kept: Mutex::new(Kept {
                buffers: Vec::new(),
                bytes: 0,
            }),
            max_bytes,
            min_len,
            max_len,
        }
    }

    /// An empty spare buffer, if one is kept.
    pub fn take(&self) -> Option<Vec<u8>> {
        let mut k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let b = k.buffers.pop()?;
        k.bytes -= b.capacity();
        Some(b)
    }

    /// How many buffers are kept, and their bytes.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> (usize, usize) {
        let k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        (k.buffers.len(), k.bytes)
    }

    /// A buffer done with: kept if it fits the bounds, else freed.
    pub fn give_back(&self, mut b: Vec<u8>) {
        if !(self.min_len..=self.max_len).contains(&b.capacity()) {
            return;
        }
        let mut k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if k.bytes + b.capacity() <= self.max_bytes {
            b.clear();
            k.bytes += b.capacity();
            k.buffers.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_within_the_bounds() {
        let s = Spares::new(8 << 20, 64 << 10, 4 << 20);
        let mut b = Vec::with_capacity(64 << 10);
        b.push(1u8);
        let ptr = b.as_ptr();
        s.give_back(b);
        let again = s.take().expect("kept");
        assert_eq!(again.as_ptr(), ptr, "the spare is used again");
        assert!(again.is_empty(), "given back cleared");
        assert!(s.take().is_none());
        s.give_back(Vec::with_capacity((4 << 20) + 1));
        s.give_back(Vec::with_capacity((64 << 10) - 1));
        assert!(s.take().is_none(), "out of bounds: freed");
        for _ in 0..4 {
            s.give_back(Vec::with_capacity(4 << 20));
        }
        assert_eq!(s.kept(), (2, 8 << 20), "8 MiB in all");
    }
}
