//! Any bytes into the replication message decoder (the MAC is checked
//! before it in real use; here the decoder is reached directly): it must
//! never panic, and whatever it accepts must encode back to the same body.

#![no_main]

use duet::replication::wire::{decode_body, encode_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    if let Ok(msg) = decode_body(kind, body) {
        assert_eq!(encode_body(&msg), (kind, body.to_vec()));
    }
});
