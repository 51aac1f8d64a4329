//! Any 4 KiB into the superblock decoder: it must never panic, and what it
//! accepts must re-encode to the same block.

#![no_main]

use duet::replication::metadata::{BLOCK, Superblock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut block = [0u8; BLOCK];
    let n = data.len().min(BLOCK);
    block[..n].copy_from_slice(&data[..n]);
    if let Ok(sb) = Superblock::decode(&block) {
        assert_eq!(Superblock::decode(&sb.encode()), Ok(sb));
    }
    let _ = Superblock::decode(data);
});
