//! Buffers for the payloads of the peer's frames (its writes and resync
//! data), used again once written: a large write goes to the disk direct
//! from a disk worker, and a fresh buffer per frame cost page faults and
//! zeroed pages on every megabyte received (docs/performance.md).

use crate::host::spares::Spares;

/// Smaller payloads get a fresh buffer: their allocation is cheap.
const KEPT_MIN_LEN: usize = 64 << 10;

/// What a burst of large writes at depth holds in flight (8 MiB, across
/// replicas), in buffers of up to 4 MiB.
static SPARES: Spares = Spares::new(8 << 20, KEPT_MIN_LEN, 4 << 20);

/// An empty buffer with room for `len` bytes.
pub fn take(len: usize) -> Vec<u8> {
    let spare = (len >= KEPT_MIN_LEN).then(|| SPARES.take()).flatten();
    let Some(mut b) = spare else {
        return Vec::with_capacity(len);
    };
    b.reserve_exact(len);
    b
}

/// A payload written: its buffer serves a later frame.
pub fn give_back(b: Vec<u8>) {
    SPARES.give_back(b);
}
