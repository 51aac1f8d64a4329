//! Any bytes as a heartbeat's extension records: the decoder of the
//! fencing record (type 5) must never panic, and what it accepts must
//! survive a round trip.

#![no_main]

use duet::membership::fence_records::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(record)) = decode(data) {
        assert_eq!(decode(&encode(&record)), Ok(Some(record)));
    }
});
