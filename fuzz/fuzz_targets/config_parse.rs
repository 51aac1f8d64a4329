//! Any text as duet.toml into the config loader: never a panic, whatever
//! the text; what it refuses comes back as errors that each name a line
//! of the text.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    if let Err(e) = duet::config::parse(text, Path::new("/fuzz/duet.toml")) {
        assert!(!e.errors.is_empty(), "refused without a reason");
        for err in &e.errors {
            assert!(
                (1..=lines).contains(&err.line),
                "{err:?}: not a line of the text"
            );
        }
    }
});
