//! The witness's config rules, each error at its line and key.

use std::path::Path;

use super::{ConfigError, parse};
use crate::types::NodeId;

const BASE: &str = r#"[cluster]
name = "web"
key-file = "duet.key"

[[link]]
name = "crossover"
interface = "eth1"
mode = "ucast"

[[link]]
name = "public"
interface = "eth0"
mode = "bcast"

[[node]]
name = "node1"
address = { crossover = "203.0.113.1", public = "198.51.100.1" }

[[node]]
name = "node2"
address = { crossover = "203.0.113.2", public = "198.51.100.2" }
"#;

const WITNESS: &str = r#"
[[node]]
name = "quorum1"
witness = true
address = { crossover = "203.0.113.3" }
"#;

fn path() -> &'static Path {
    Path::new("/etc/duet/duet.toml")
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    match parse(text, path()) {
        Ok(_) => panic!("expected errors, the config was accepted:\n{text}"),
        Err(e) => e.errors,
    }
}

/// The one error of `text`: on the last line containing `line_with`, at
/// `key`, its message containing `message`.
fn one_error(text: &str, line_with: &str, key: &str, message: &str) {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    let at = text.rfind(line_with).expect("line_with in the text");
    let line = text[..at].lines().count() + usize::from(text[..at].ends_with('\n'));
    assert_eq!((e.line, e.key.as_str()), (line.max(1), key), "{e}");
    assert!(e.message.contains(message), "{e}");
    assert!(e.to_string().starts_with("/etc/duet/duet.toml:"), "{e}");
}

#[test]
fn a_witness_node_is_read_and_kept_out_of_preferred_expansion() {
    let group = "\n[[group]]\nname = \"web\"\npreferred = \"node2\"\n\n[[group.resource]]\nunit = \"apache2.service\"\n";
    let text = format!("{BASE}{WITNESS}{group}");
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.witness(), Some(NodeId(2)));
    assert!(c.nodes[2].witness && !c.nodes[0].witness);
    assert_eq!(c.nodes[2].votes, 1);
    assert_eq!(c.groups[0].nodes, [NodeId(1), NodeId(0)]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // Without one, nothing changes.
    let plain = parse(BASE, path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.config.witness(), None);
}

#[test]
fn at_most_one_witness() {
    let second = "\n[[node]]\nname = \"quorum2\"\nwitness = true\naddress = { crossover = \"203.0.113.4\" }\n";
    let text = format!("{BASE}{WITNESS}{second}");
    one_error(
        &text,
        "witness = true",
        "node[3].witness",
        "a second witness (node[2] is one already)",
    );
}

#[test]
fn the_witness_needs_an_address_and_a_vote() {
    // Only bcast links can leave an address out; on both, none is left.
    let bcast_only = BASE.replace("mode = \"ucast\"", "mode = \"bcast\"");
    let text = format!("{bcast_only}\n[[node]]\nname = \"quorum1\"\nwitness = true\n");
    one_error(
        &text,
        "witness = true",
        "node[2].witness",
        "no address on any link",
    );
    let text = format!(
        "{BASE}{}",
        WITNESS.replace("witness = true", "witness = true\nvotes = 0")
    );
    one_error(
        &text,
        "votes = 0",
        "node[2].votes",
        "without a vote breaks no tie",
    );
}

#[test]
fn a_witness_beside_one_data_node_is_a_warning() {
    let one = BASE
        .split("\n[[node]]\nname = \"node2\"")
        .next()
        .expect("base");
    let text = format!("{one}{WITNESS}");
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].message.contains("no tie to break"));
}

#[test]
fn the_witness_runs_no_group() {
    for (written, key) in [
        ("nodes = [\"node1\", \"quorum1\"]", "group[0].nodes[1]"),
        ("preferred = \"quorum1\"", "group[0].preferred"),
    ] {
        let group = format!(
            "\n[[group]]\nname = \"web\"\n{written}\n\n[[group.resource]]\nunit = \"apache2.service\"\n"
        );
        let text = format!("{BASE}{WITNESS}{group}");
        one_error(
            &text,
            written,
            key,
            "quorum1 is the witness and cannot run a group",
        );
    }
}

#[test]
fn the_witness_holds_no_replica() {
    let replica = |extra: &str| {
        format!(
            "\n[[replica]]\nname = \"r0\"\ndisk = {{ node1 = \"/dev/sdb\", node2 = \"/dev/sdb\"{extra} }}\n\
             address = {{ node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }}\n"
        )
    };
    let text = format!("{BASE}{WITNESS}{}", replica(", quorum1 = \"/dev/sdb\""));
    let errors = errors_of(&text);
    let witness_errors: Vec<_> = errors
        .iter()
        .filter(|e| {
            e.message
                .contains("quorum1 is the witness and holds no copy")
        })
        .collect();
    assert_eq!(witness_errors.len(), 1, "{errors:#?}");
    assert_eq!(witness_errors[0].key, "replica[0].disk.quorum1");
    assert_eq!(witness_errors[0].line, text.lines().count() - 1);
    let valid = parse(&format!("{BASE}{WITNESS}{}", replica("")), path());
    assert!(valid.is_ok(), "{valid:?}");
}
