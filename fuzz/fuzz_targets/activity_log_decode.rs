//! Any block as an activity-log transaction (docs/metadata.md), the
//! checksum made right first so the fuzzer gets past it: never a panic,
//! and what the decoder accepts encodes back to the same block. Recovery
//! over a log of such blocks never panics either.

#![no_main]

use duet::replication::activity_log::{Transaction, recover};
use libfuzzer_sys::fuzz_target;

const BLOCK: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut block = [0u8; BLOCK];
    let n = data.len().min(BLOCK);
    block[..n].copy_from_slice(&data[..n]);
    block[..8].copy_from_slice(b"DUETALOG");
    let crc = crc32c::crc32c(&block[..BLOCK - 4]);
    block[BLOCK - 4..].copy_from_slice(&crc.to_le_bytes());
    if let Some(t) = Transaction::decode(&block) {
        assert_eq!(Transaction::decode(&t.encode()), Some(t));
    }
    let _ = Transaction::decode(data);
    let _ = recover(data.chunks(BLOCK).chain([&block[..]]));
});
