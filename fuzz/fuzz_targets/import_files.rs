//! Any text as each of the four classic files, into its own parser
//! (`duetctl import heartbeat` reads them one by one): never a panic. The
//! first byte picks the file; drbd.conf's includes expand to the text
//! itself, so include loops and depth are exercised too.

#![no_main]

use duet::import::{authkeys, drbdconf, hacf, haresources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = hacf::parse(text, "ha.cf");
        }
        1 => {
            let _ = haresources::parse(text, "haresources");
        }
        2 => {
            let mode = u32::from(which) << 1;
            let _ = authkeys::parse(text, "authkeys", Some(mode & 0o777));
        }
        _ => {
            let mut include =
                |pattern: &str| Ok(vec![(format!("/etc/drbd.d/{pattern}"), text.to_string())]);
            let _ = drbdconf::parse(text, "drbd.conf", &mut include);
        }
    }
});
