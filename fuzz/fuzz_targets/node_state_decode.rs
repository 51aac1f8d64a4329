//! Any bytes as a heartbeat's extension records: the decoder must never
//! panic, and a node state it accepts must survive a round trip.

#![no_main]

use duet::membership::node_state::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(state)) = decode(data) {
        assert_eq!(decode(&encode(&state)), Ok(Some(state)));
    }
});
