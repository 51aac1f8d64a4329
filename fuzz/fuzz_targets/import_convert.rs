//! A whole classic setup into `duetctl import heartbeat`'s conversion:
//! the input is ha.cf, haresources, authkeys and drbd.conf cut apart by
//! lines of `%%`. Never a panic, and whatever the files say (quotes,
//! backslashes, control characters in names and arguments) the config it
//! writes is TOML that reads back: a converter that pasted text into the
//! file unescaped would write a broken, or a different, config.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use duet::import::convert::{Classic, Options, Route, convert};
use duet::import::{authkeys, drbdconf, hacf, haresources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split("\n%%\n");
    let (ha_cf, haresources, keys, drbd) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
    );
    let (Ok(ha), Ok(groups)) = (
        hacf::parse(ha_cf, "ha.cf"),
        haresources::parse(haresources, "haresources"),
    ) else {
        return;
    };
    let keys = authkeys::parse(keys, "authkeys", Some(0o600)).ok();
    let drbd = match drbd {
        Some(t) => match drbdconf::parse(t, "drbd.conf", &mut |_| Ok(Vec::new())) {
            Ok(d) => Some(d),
            Err(_) => return,
        },
        None => None,
    };
    let classic = Classic {
        ha_cf: &ha,
        ha_cf_name: "ha.cf",
        authkeys: keys.as_ref(),
        authkeys_name: "authkeys",
        groups: &groups,
        haresources_name: "haresources",
        drbd: drbd.as_ref(),
        drbd_name: "drbd.conf",
    };
    let routes = [Route {
        network: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)),
        prefix: 24,
        interface: "eth0".into(),
    }];
    let scripts = ["apache2".to_string(), "nfs-kernel-server".to_string()];
    let options = Options {
        cluster_name: "fuzz",
        key_file: "duet.key",
        routes: &routes,
        addresses: &[],
        resource_d: &scripts,
        init_d: &scripts,
    };
    if let Ok(imported) = convert(&classic, &options) {
        if let Err(e) = imported.toml.parse::<toml::Table>() {
            panic!("the imported config is not TOML: {e}\n{}", imported.toml);
        }
    }
});
