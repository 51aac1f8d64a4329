//! Buffers for the payloads of the peer's frames (its writes and resync
//! data), used again once written: a large write goes to the disk direct
//! from a disk worker, and a fresh buffer per frame cost page faults and
//! zeroed pages on every megabyte received (docs/performance.md).

use std::sync::Mutex;

/// Bytes of buffers kept at most, across replicas: what a burst of large
/// writes at depth holds in flight. A buffer that finds the spares full
/// is freed.
const KEPT_BYTES: usize = 8 << 20;
/// Larger buffers are freed, not kept.
const KEPT_MAX_LEN: usize = 4 << 20;
/// Smaller ones too: a small payload's allocation is cheap.
const KEPT_MIN_LEN: usize = 64 << 10;

struct Spares {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

static SPARES: Mutex<Spares> = Mutex::new(Spares {
    buffers: Vec::new(),
    bytes: 0,
});

/// An empty buffer with room for `len` bytes.
pub fn take(len: usize) -> Vec<u8> {
    if len >= KEPT_MIN_LEN {
        let mut s = SPARES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = s.buffers.pop() {
            s.bytes -= b.capacity();
            drop(s);
            let mut b = b;
            b.reserve_exact(len);
            return b;
        }
    }
    Vec::with_capacity(len)
}

/// A payload written: its buffer serves a later frame.
pub fn give_back(mut b: Vec<u8>) {
    if !(KEPT_MIN_LEN..=KEPT_MAX_LEN).contains(&b.capacity()) {
        return;
    }
    let mut s = SPARES.lock().unwrap_or_else(|e| e.into_inner());
    if s.bytes + b.capacity() <= KEPT_BYTES {
        b.clear();
        s.bytes += b.capacity();
        s.buffers.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test touches the process-wide spares, so nothing else moves
    /// them meanwhile.
    #[test]
    fn buffers_come_back_within_the_bounds() {
        let b = take(KEPT_MIN_LEN);
        let ptr = b.as_ptr();
        give_back(b);
        let again = take(KEPT_MIN_LEN);
        assert_eq!(again.as_ptr(), ptr, "the spare is used again");
        give_back(again);
        let grown = take(2 * KEPT_MIN_LEN);
        assert!(grown.is_empty() && grown.capacity() >= 2 * KEPT_MIN_LEN);
        give_back(grown);
        give_back(Vec::with_capacity(KEPT_MAX_LEN + 1));
        give_back(Vec::with_capacity(KEPT_MIN_LEN - 1));
        for _ in 0..KEPT_BYTES / KEPT_MAX_LEN + 2 {
            give_back(Vec::with_capacity(KEPT_MAX_LEN));
        }
        let s = SPARES.lock().unwrap_or_else(|e| e.into_inner());
        assert!(s.bytes <= KEPT_BYTES);
        assert_eq!(s.bytes, s.buffers.iter().map(Vec::capacity).sum::<usize>());
        assert!(
            s.buffers
                .iter()
                .all(|b| (KEPT_MIN_LEN..=KEPT_MAX_LEN).contains(&b.capacity()))
        );
    }
}
