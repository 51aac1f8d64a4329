//! Any bytes as a heartbeat's extension records: the decoder of the
//! config digest record (type 6) must never panic, and what it accepts
//! must survive a round trip.

#![no_main]

use duet::membership::config_digest::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(digest)) = decode(data) {
        assert_eq!(decode(&encode(digest)), Ok(Some(digest)));
    }
});
