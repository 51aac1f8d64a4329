//! Any bytes as a heartbeat's extension records: the decoder of the quorum
//! records (types 3 and 4) must never panic, and what it accepts must
//! survive a round trip.

#![no_main]

use duet::membership::quorum_records::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = decode(data) {
        assert_eq!(decode(&encode(&records)), Ok(records));
    }
});
