//! Any bytes into the heartbeat decoder: it must never panic, and whatever
//! it accepts must re-encode to a packet that decodes to the same thing.

#![no_main]

use duet::membership::auth::{Auth, AuthAlgorithm};
use duet::membership::wire::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for alg in AuthAlgorithm::ALL {
        let Ok(auth) = Auth::new(alg, b"fuzz key".to_vec()) else {
            return;
        };
        let codec = Codec::new("fuzz".into(), auth);
        if let Ok(hb) = codec.decode(data) {
            let again = codec.encode(&hb);
            assert_eq!(codec.decode(&again), Ok(hb));
        }
    }
});
