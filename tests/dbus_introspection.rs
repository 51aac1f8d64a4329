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

/// The names of `kind` ("property", "method" or "signal") an interface's
/// XML declares.
fn declared<'a>(xml: &'a str, kind: &str) -> Vec<&'a str> {
    let open = format!("<{kind} name=\"");
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// docs/dbus.md, the reference administrators read, names every
/// property and method the daemon serves on duet's interfaces.
#[test]
fn docs_dbus_md_names_every_property_and_method() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dbus.md"))
        .expect("docs/dbus.md");
    let mut missing = Vec::new();
    for (interface, xml) in duet::bus::server::introspection() {
        let names = declared(&xml, "property")
            .into_iter()
            .chain(declared(&xml, "method"));
        for name in names {
            let forms = [
                format!("| {name} |"),
                format!("| {name},"),
                format!(", {name} |"),
                format!(", {name},"),
                format!("{name}("),
            ];
            if !forms.iter().any(|f| docs.contains(f.as_str())) {
                missing.push(format!("{interface}.{name}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in docs/dbus.md: {missing:?}");
}
