//! The introspection files in dbus/ are what the daemon serves. Run with
//! DUET_BLESS=1 to rewrite them after changing an interface.

use std::path::PathBuf;

const HEADER: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
"#;

fn file_text(xml: &str) -> String {
    format!("{HEADER}<node>\n{xml}</node>\n")
}

#[test]
fn dbus_introspection_files_match_the_code() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dbus");
    let bless = std::env::var_os("DUET_BLESS").is_some();
    for (name, xml) in duet::bus::server::introspection() {
        assert!(
            xml.contains(&format!("<interface name=\"{name}\">")),
            "{xml}"
        );
        let path = dir.join(format!("{name}.xml"));
        let want = file_text(&xml);
        if bless {
            std::fs::write(&path, &want).expect("write introspection file");
            continue;
        }
        let have = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with DUET_BLESS=1)", path.display()));
        assert_eq!(
            have,
            want,
            "{} is out of date: run with DUET_BLESS=1",
            path.display()
        );
    }
}
