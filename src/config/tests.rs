//! Whole-file tests: text in, `Config` or placed errors out.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::membership::auth::AuthAlgorithm;
use crate::types::NodeId;

const BASE: &str = r#"[cluster]
name = "web"
key-file = "duet.key"

[timings]
keepalive = "200ms"
warntime = "600ms"
deadtime = "1s"
initdead = "10s"

[[link]]
name = "crossover"
interface = "eth1"
mode = "ucast"

[[link]]
name = "public"
interface = "eth0"
mode = "ucast"

[[node]]
name = "node1"
address = { crossover = "203.0.113.1", public = "198.51.100.1" }

[[node]]
name = "node2"
address = { crossover = "203.0.113.2", public = "198.51.100.2" }
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

/// 1-based number of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

#[test]
fn the_two_node_example_is_the_lab() {
    let loaded = load(&example("two-node.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.cluster.name, "lab");
    assert_eq!(c.cluster.auth, AuthAlgorithm::HmacSha256);
    assert!(!c.cluster.auto_failback);
    assert_eq!(c.cluster.key_file, example("duet.key"));
    assert_eq!(c.timings, Timings::default());
    let links: Vec<_> = c
        .links
        .iter()
        .map(|l| (l.name.as_str(), l.interface.as_str(), l.mode, l.port))
        .collect();
    assert_eq!(
        links,
        [
            ("crossover", "eth1", LinkMode::Unicast, 694),
            ("public", "eth0", LinkMode::Unicast, 694)
        ]
    );
    let ip = |s: &str| s.parse::<IpAddr>().ok();
    assert_eq!(c.nodes.len(), 2);
    assert_eq!(c.nodes[0].name, "node1");
    assert_eq!(
        c.nodes[0].addresses,
        [ip("203.0.113.1"), ip("198.51.100.1")]
    );
    assert_eq!(c.nodes[1].name, "node2");
    assert_eq!(
        c.nodes[1].addresses,
        [ip("203.0.113.2"), ip("198.51.100.2")]
    );
    assert_eq!(c.ping.nodes, [ip("198.51.100.254").unwrap()]);
    assert_eq!(c.ping.interval, Duration::from_secs(1));
    assert_eq!(c.ping.deadtime, Duration::from_secs(5));
    assert_eq!(c.replicas.len(), 1);
    let r0 = &c.replicas[0];
    assert_eq!(r0.name, "r0");
    assert_eq!(r0.device, Path::new("/dev/duet/r0"));
    assert_eq!(r0.nbd_socket, Path::new("/run/duet/nbd/r0.sock"));
    assert_eq!(
        r0.disks,
        [
            Some(PathBuf::from("/dev/sdb")),
            Some(PathBuf::from("/dev/sdb"))
        ]
    );
}

#[test]
fn the_three_node_example_broadcasts_on_the_crossover() {
    let loaded = load(&example("three-node.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.links[0].mode, LinkMode::Broadcast);
    assert_eq!(c.links[1].mode, LinkMode::Unicast);
    assert_eq!(c.nodes[2].name, "node3");
    assert_eq!(c.nodes[2].addresses[1], "198.51.100.3".parse().ok());
    assert_eq!(c.nodes.iter().map(|n| n.votes).sum::<u32>(), 3);
    // node3 is the tie-breaker: no copy of the data.
    let r0 = c
        .replica("r0")
        .unwrap_or_else(|| panic!("no r0 in {:?}", c.replicas));
    assert_eq!(r0.disk(NodeId(0)), Some(Path::new("/dev/sdb")));
    assert_eq!(r0.disk(NodeId(1)), Some(Path::new("/dev/sdb")));
    assert_eq!(r0.disk(NodeId(2)), None);
}

#[test]
fn base_is_valid_and_defaults_apply() {
    let loaded = parse(BASE, path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty());
    assert_eq!(loaded.config.links[0].port, DEFAULT_PORT);
    assert_eq!(loaded.config.nodes[0].votes, 1);
    assert!(loaded.config.ping.nodes.is_empty());
    assert_eq!(loaded.config.path, path());
}

struct Case {
    what: &'static str,
    /// (from, to) applied to BASE.
    edit: (&'static str, &'static str),
    /// Text on the line the error must point at.
    line_with: &'static str,
    key: &'static str,
    message_contains: &'static str,
}

#[test]
fn each_broken_config_is_placed_at_its_line_and_key() {
    let cases = [
        Case {
            what: "unknown key",
            edit: (
                "initdead = \"10s\"\n",
                "initdead = \"10s\"\ncolour = \"red\"\n",
            ),
            line_with: "colour",
            key: "timings.colour",
            message_contains: "unknown field `colour`",
        },
        Case {
            what: "bad duration",
            edit: ("warntime = \"600ms\"", "warntime = \"600\""),
            line_with: "warntime",
            key: "timings.warntime",
            message_contains: "has no unit",
        },
        Case {
            what: "deadtime not above keepalive",
            edit: ("deadtime = \"1s\"", "deadtime = \"200ms\""),
            line_with: "deadtime",
            key: "timings.deadtime",
            message_contains: "deadtime (200ms) must be longer than warntime (600ms)",
        },
        Case {
            what: "missing address on a ucast link",
            edit: (
                "{ crossover = \"203.0.113.2\", public = \"198.51.100.2\" }",
                "{ crossover = \"203.0.113.2\" }",
            ),
            line_with: "{ crossover = \"203.0.113.2\" }",
            key: "node[1].address.public",
            message_contains: "no address on ucast link \"public\"",
        },
        Case {
            what: "duplicate node",
            edit: ("name = \"node2\"", "name = \"node1\""),
            line_with: "\"node1\"\naddress = { crossover = \"203.0.113.2\"",
            key: "node[1].name",
            message_contains: "duplicate node name \"node1\" (also node[0])",
        },
        Case {
            what: "bad mode",
            edit: (
                "interface = \"eth0\"\nmode = \"ucast\"",
                "interface = \"eth0\"\nmode = \"anycast\"",
            ),
            line_with: "anycast",
            key: "link[1].mode",
            message_contains: "unknown variant `anycast`",
        },
        Case {
            what: "mcast without group",
            edit: (
                "interface = \"eth0\"\nmode = \"ucast\"",
                "interface = \"eth0\"\nmode = \"mcast\"",
            ),
            // Not written: placed at the link's header.
            line_with: "[[link]]\nname = \"public\"",
            key: "link[1].group",
            message_contains: "mcast links need a group",
        },
        Case {
            what: "syntax error",
            edit: ("interface = \"eth1\"", "interface = \"eth1"),
            line_with: "interface = \"eth1",
            // Not valid TOML, so the key is the table the error is in.
            key: "link[0]",
            message_contains: "syntax error: invalid basic string",
        },
    ];
    for case in cases {
        let text = BASE.replacen(case.edit.0, case.edit.1, 1);
        assert_ne!(text, BASE, "{}: the edit did not apply", case.what);
        let errors = errors_of(&text);
        let expected_line = if case.line_with.contains('\n') {
            // The needle spans lines: the error is on its first line.
            let at = text
                .find(case.line_with)
                .unwrap_or_else(|| panic!("{}: needle", case.what));
            text[..at].matches('\n').count() + 1
        } else {
            line_of(&text, case.line_with)
        };
        let first = &errors[0];
        assert_eq!(errors.len(), 1, "{}: {errors:#?}", case.what);
        assert_eq!(
            (first.line, first.key.as_str()),
            (expected_line, case.key),
            "{}: {first}",
            case.what
        );
        assert!(
            first.message.contains(case.message_contains),
            "{}: {first}",
            case.what
        );
        assert_eq!(first.file, path());
        assert!(
            first
                .to_string()
                .starts_with(&format!("/etc/duet/duet.toml:{expected_line}:")),
            "{}: {first}",
            case.what
        );
    }
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let text = BASE.replacen("key-file", "keyfile", 1);
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (3, 1, "cluster.keyfile")
    );
    let hint = e.hint.as_deref().unwrap_or_default();
    for valid in [
        "`name`",
        "`key-file`",
        "`auth`",
        "`allow-insecure-crc`",
        "`auto-failback`",
    ] {
        assert!(hint.contains(valid), "{hint}");
    }
    assert!(e.to_string().contains(" (valid: "), "{e}");
}

#[test]
fn a_bare_number_duration_gets_the_unit_hint() {
    let text = BASE.replacen("keepalive = \"200ms\"", "keepalive = \"200\"", 1);
    let e = &errors_of(&text)[0];
    assert_eq!(
        e.to_string(),
        "/etc/duet/duet.toml:6:1: timings.keepalive: \"200\" has no unit \
         (valid: durations need a unit, e.g. \"200ms\" or \"2s\")"
    );
}

#[test]
fn all_validation_errors_come_together_in_file_order() {
    let text = BASE
        .replacen("name = \"web\"", "name = \"web site\"", 1)
        .replacen("deadtime = \"1s\"", "deadtime = \"500ms\"", 1)
        .replacen(
            "mode = \"ucast\"",
            "mode = \"bcast\"\ngroup = \"239.1.1.1\"",
            1,
        )
        .replacen("public = \"198.51.100.2\"", "public = \"198.51.100.1\"", 1)
        + "\n[ping]\nnodes = [\"gateway\"]\ninterval = \"5s\"\n";
    let errors = errors_of(&text);
    let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (line_of(&text, "web site"), "cluster.name"),
            (line_of(&text, "deadtime = \"500ms\""), "timings.deadtime"),
            (line_of(&text, "group ="), "link[0].group"),
            (
                line_of(&text, "crossover = \"203.0.113.2\""),
                "node[1].address.public"
            ),
            // Not written: placed at the [ping] header.
            (line_of(&text, "[ping]"), "ping.deadtime"),
            (line_of(&text, "gateway"), "ping.nodes[0]"),
        ],
        "{}",
        ConfigErrors {
            errors: errors.clone()
        }
    );
    let shown = ConfigErrors { errors }.to_string();
    assert_eq!(shown.lines().count(), 6);
    assert!(
        shown.contains("deadtime (500ms) must be longer than warntime (600ms)"),
        "{shown}"
    );
    assert!(
        shown.contains("deadtime (5s) must be longer than interval (5s)"),
        "{shown}"
    );
    assert!(shown.contains("also node[0]'s"), "{shown}");
}

#[test]
fn structural_rules_are_enforced() {
    let check = |text: &str, key: &str, message: &str| {
        let errors = errors_of(text);
        assert!(
            errors
                .iter()
                .any(|e| e.key == key && e.message.contains(message)),
            "wanted {key}: {message}, got:\n{}",
            ConfigErrors { errors }
        );
    };
    check(
        &BASE.replacen("key-file = \"duet.key\"", "key-file = \"\"", 1),
        "cluster.key-file",
        "required",
    );
    check(
        &BASE.replacen(
            "key-file = \"duet.key\"",
            "key-file = \"k\"\nauth = \"crc\"",
            1,
        ),
        "cluster.auth",
        "authenticates nothing",
    );
    check(
        &BASE.replacen("keepalive = \"200ms\"", "keepalive = \"5ms\"", 1),
        "timings.keepalive",
        "too short",
    );
    check(
        &BASE.replacen("initdead = \"10s\"", "initdead = \"500ms\"", 1),
        "timings.initdead",
        "shorter than deadtime",
    );
    check(
        &BASE.replacen(
            "public = \"198.51.100.1\"",
            "public = \"198.51.100.1\", backup = \"10.0.0.1\"",
            1,
        ),
        "node[0].address.backup",
        "no link is named \"backup\"",
    );
    check(
        &BASE.replacen(
            "mode = \"ucast\"",
            "mode = \"ucast\"\ngroup = \"239.1.1.1\"",
            1,
        ),
        "link[0].group",
        "only for mode = \"mcast\"",
    );
    check(
        &BASE.replacen(
            "mode = \"ucast\"",
            "mode = \"mcast\"\ngroup = \"10.1.1.1\"",
            1,
        ),
        "link[0].group",
        "not a multicast address",
    );
    check(
        &BASE
            .replacen("mode = \"ucast\"", "mode = \"bcast\"", 1)
            .replacen("203.0.113.1", "2001:db8::1", 1),
        "node[0].address.crossover",
        "IPv6",
    );
    check(
        &BASE.replacen("name = \"public\"", "name = \"crossover\"", 1),
        "link[1].name",
        "duplicate link name",
    );
    check(
        &BASE.replacen("name = \"node2\"", "name = \"node_2\"", 1),
        "node[1].name",
        "invalid node name",
    );
    check(
        &BASE
            .replacen("name = \"node1\"", "name = \"node1\"\nvotes = 0", 1)
            .replacen("name = \"node2\"", "name = \"node2\"\nvotes = 0", 1),
        "node",
        "no votes",
    );
    let no_nodes = &BASE[..BASE.find("[[node]]").unwrap_or(BASE.len())];
    check(no_nodes, "node", "no nodes");
    check(
        "[cluster]\nname = \"x\"\nkey-file = \"k\"\n",
        "link",
        "no links",
    );
    check("", "cluster", "missing [cluster] section");
}

#[test]
fn mcast_links_take_group_and_ttl() {
    let text = BASE.replacen(
        "mode = \"ucast\"",
        "mode = \"mcast\"\ngroup = \"239.255.6.94\"\nttl = 2\nport = 700",
        1,
    );
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.config.links[0].mode,
        LinkMode::Multicast {
            group: IpAddr::from([239, 255, 6, 94]),
            ttl: 2
        }
    );
    assert_eq!(loaded.config.links[0].port, 700);
}

#[test]
fn warnings_do_not_stop_loading() {
    let one_node = &BASE[..BASE
        .find("[[node]]\nname = \"node2\"")
        .unwrap_or(BASE.len())];
    let text = one_node
        .replacen("keepalive = \"200ms\"", "keepalive = \"300ms\"", 1)
        .replacen("deadtime = \"1s\"", "deadtime = \"800ms\"", 1);
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(usize, &str)> = loaded
        .warnings
        .iter()
        .map(|w| (w.line, w.key.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (line_of(&text, "deadtime"), "timings.deadtime"),
            (line_of(&text, "[[node]]"), "node[0]"),
        ]
    );
    assert!(
        loaded.warnings[0]
            .message
            .contains("less than 3 x keepalive")
    );
}

#[test]
fn a_relative_key_file_is_resolved_against_the_config_folder() {
    let loaded = parse(BASE, Path::new("/etc/duet/duet.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.config.cluster.key_file,
        Path::new("/etc/duet/duet.key")
    );
    let text = BASE.replacen("\"duet.key\"", "\"/srv/keys/web.key\"", 1);
    let loaded = parse(&text, Path::new("/etc/duet/duet.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.config.cluster.key_file,
        Path::new("/srv/keys/web.key")
    );
    let loaded = parse(BASE, Path::new("duet.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.cluster.key_file, Path::new("duet.key"));
}

#[test]
fn an_unreadable_file_is_one_error_naming_it() {
    let missing = Path::new("/nonexistent/duet.toml");
    let errors = load(missing).err().map(|e| e.errors).unwrap_or_default();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("/nonexistent/duet.toml:1:1: cannot read"),
        "{}",
        errors[0]
    );
}

fn base_config() -> Config {
    parse(BASE, path()).unwrap_or_else(|e| panic!("{e}")).config
}

#[test]
fn the_local_node_can_be_named_explicitly() {
    let config = base_config();
    assert_eq!(local_node(&config, Some("node2")).ok(), Some(NodeId(1)));
    let err = local_node(&config, Some("node9"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "--node node9: no node of that name in /etc/duet/duet.toml; the nodes are: node1, node2"
        )
    );
}

#[test]
fn the_local_node_is_found_by_full_or_short_hostname() {
    let config = base_config();
    assert_eq!(by_hostname(&config, "node1").ok(), Some(NodeId(0)));
    assert_eq!(
        by_hostname(&config, "node2.lab.example.com").ok(),
        Some(NodeId(1))
    );
    assert_eq!(by_hostname(&config, "NODE2").ok(), Some(NodeId(1)));
    let err = by_hostname(&config, "db7.example.com")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("\"db7.example.com\""), "{err}");
    assert!(err.contains("node1, node2"), "{err}");
    assert!(err.contains("--node NAME"), "{err}");
}

const REPLICA: &str = r#"
[[replica]]
name = "r0"
disk = { node1 = "/dev/sdb", node2 = "/dev/sdb1" }
"#;

/// 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

#[test]
fn a_replica_gets_its_defaults_and_disks_per_node() {
    let text = format!("{BASE}{REPLICA}");
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = loaded.config;
    let r = config
        .replica("r0")
        .unwrap_or_else(|| panic!("no r0 in {:?}", config.replicas));
    assert_eq!(r.device, Path::new("/dev/duet/r0"));
    assert_eq!(r.nbd_socket, Path::new("/run/duet/nbd/r0.sock"));
    assert_eq!(r.disk(NodeId(0)), Some(Path::new("/dev/sdb")));
    assert_eq!(r.disk(NodeId(1)), Some(Path::new("/dev/sdb1")));
    assert_eq!(r.disk(NodeId(2)), None);
    assert_eq!(config.replica("r1"), None);
    assert!(base_config().replicas.is_empty());
}

#[test]
fn written_replica_paths_replace_the_defaults() {
    let text = format!(
        "{BASE}{}",
        REPLICA.replacen(
            "name = \"r0\"",
            "name = \"r0\"\ndevice = \"/dev/data\"\nnbd-socket = \"/run/r0.nbd\"",
            1
        )
    );
    let config = parse(&text, path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let r = &config.replicas[0];
    assert_eq!(
        (r.device.as_path(), r.nbd_socket.as_path()),
        (Path::new("/dev/data"), Path::new("/run/r0.nbd"))
    );
}

#[test]
fn each_broken_replica_is_placed_at_its_line_and_key() {
    // (what, edit of REPLICA, text on the error's line, key, message, hint)
    let cases = [
        (
            "bad name",
            ("name = \"r0\"", "name = \"r 0\""),
            "name = \"r 0\"",
            "replica[0].name",
            "invalid replica name \"r 0\"",
            "1 to 32 characters",
        ),
        (
            "name too long",
            (
                "name = \"r0\"",
                "name = \"r23456789012345678901234567890123\"",
            ),
            "r2345",
            "replica[0].name",
            "invalid replica name",
            "1 to 32 characters",
        ),
        (
            "missing name: placed at the header",
            ("name = \"r0\"\n", ""),
            "[[replica]]",
            "replica[0].name",
            "missing",
            "e.g. \"r0\"",
        ),
        (
            "disk on an unknown node",
            ("node2 = \"/dev/sdb1\"", "node3 = \"/dev/sdb1\""),
            "disk = ",
            "replica[0].disk.node3",
            "no node is named \"node3\"",
            "a node name: \"node1\", \"node2\"",
        ),
        (
            "relative disk",
            ("node2 = \"/dev/sdb1\"", "node2 = \"sdb1\""),
            "disk = ",
            "replica[0].disk.node2",
            "\"sdb1\" is not an absolute path",
            "\"/dev/sdb\"",
        ),
        (
            "disk that is a folder",
            ("node2 = \"/dev/sdb1\"", "node2 = \"/\""),
            "disk = ",
            "replica[0].disk.node2",
            "\"/\" names no file",
            "absolute path",
        ),
        (
            "no disks at all",
            (
                "disk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\" }",
                "disk = {}",
            ),
            "disk = {}",
            "replica[0].disk",
            "no node has a disk for this replica",
            "disk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdb\" }",
        ),
        (
            "relative device",
            ("name = \"r0\"", "name = \"r0\"\ndevice = \"duet/r0\""),
            "device = ",
            "replica[0].device",
            "\"duet/r0\" is not an absolute path",
            "absolute path",
        ),
        (
            "relative nbd-socket",
            ("name = \"r0\"", "name = \"r0\"\nnbd-socket = \"r0.sock\""),
            "nbd-socket = ",
            "replica[0].nbd-socket",
            "\"r0.sock\" is not an absolute path",
            "absolute path",
        ),
        (
            "socket on the device",
            (
                "name = \"r0\"",
                "name = \"r0\"\ndevice = \"/run/duet/r0\"\nnbd-socket = \"/run/duet/r0\"",
            ),
            "nbd-socket = ",
            "replica[0].nbd-socket",
            "/run/duet/r0 is also replica[0].device",
            "a path no other",
        ),
        (
            "device on a backing disk",
            ("name = \"r0\"", "name = \"r0\"\ndevice = \"/dev/sdb1\""),
            "device = ",
            "replica[0].device",
            "/dev/sdb1 is replica[0]'s disk on node2",
            "not a disk",
        ),
        (
            "replication settings are not there yet",
            ("name = \"r0\"", "name = \"r0\"\nprotocol = \"C\""),
            "protocol = ",
            "replica[0].protocol",
            "unknown field `protocol`",
            "`nbd-socket`",
        ),
    ];
    for (what, (from, to), line_with, key, message, hint) in cases {
        let replica = REPLICA.replacen(from, to, 1);
        assert_ne!(replica, REPLICA, "{what}: the edit did not apply");
        let text = format!("{BASE}{replica}");
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
        let e = &errors[0];
        assert_eq!(
            (e.line, e.key.as_str()),
            (line_of(&text, line_with), key),
            "{what}: {e}"
        );
        assert!(e.message.contains(message), "{what}: {e}");
        assert!(
            e.hint.as_deref().unwrap_or_default().contains(hint),
            "{what}: {e}"
        );
    }
}

#[test]
fn two_replicas_may_not_share_a_name_device_socket_or_disk() {
    // (what, edit of the second replica, text on the error's line, key, message)
    let cases = [
        (
            "same name: its default paths are not reported again",
            (
                "node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\"",
                "node1 = \"/dev/sdc\", node2 = \"/dev/sdc\"",
            ),
            "name = \"r0\"",
            "replica[1].name",
            "duplicate replica name \"r0\" (also replica[0])",
        ),
        (
            "same disk on the same node",
            (
                "name = \"r0\"\ndisk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\" }",
                "name = \"r1\"\ndisk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdc\" }",
            ),
            "disk = ",
            "replica[1].disk.node1",
            "/dev/sdb on node1 is also replica[0]'s disk",
        ),
        (
            "same device",
            (
                "name = \"r0\"\ndisk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\" }",
                "name = \"r1\"\ndevice = \"/dev/duet/r0\"\ndisk = { node1 = \"/dev/sdc\", node2 = \"/dev/sdc\" }",
            ),
            "device = ",
            "replica[1].device",
            "/dev/duet/r0 is also replica[0].device",
        ),
        (
            "same socket",
            (
                "name = \"r0\"\ndisk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\" }",
                "name = \"r1\"\nnbd-socket = \"/run/duet/nbd/r0.sock\"\ndisk = { node1 = \"/dev/sdc\", node2 = \"/dev/sdc\" }",
            ),
            "nbd-socket = ",
            "replica[1].nbd-socket",
            "/run/duet/nbd/r0.sock is also replica[0].nbd-socket",
        ),
        (
            "a default taken by a written path: placed at the header",
            (
                "name = \"r0\"\ndisk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\" }",
                "name = \"r1\"\ndisk = { node1 = \"/dev/sdc\", node2 = \"/dev/sdc\" }",
            ),
            "[[replica]]",
            "replica[1].device",
            "/dev/duet/r1 (the default) is also replica[0].device",
        ),
    ];
    for (what, (from, to), line_with, key, message) in cases {
        let second = REPLICA.replacen(from, to, 1);
        assert_ne!(second, REPLICA, "{what}: the edit did not apply");
        let first = if what.starts_with("a default") {
            REPLICA.replacen(
                "name = \"r0\"",
                "name = \"r0\"\ndevice = \"/dev/duet/r1\"",
                1,
            )
        } else {
            REPLICA.to_string()
        };
        let text = format!("{BASE}{first}{second}");
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
        let e = &errors[0];
        // The error belongs to the second replica: its last such line.
        let at = text
            .rfind(line_with)
            .unwrap_or_else(|| panic!("{what}: {line_with:?} not in the text"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (line_at(&text, at), key),
            "{what}: {e}"
        );
        assert!(e.message.contains(message), "{what}: {e}");
    }
    // The same disk path on different nodes is fine: they are other disks.
    let swapped = REPLICA
        .replacen("name = \"r0\"", "name = \"r1\"", 1)
        .replacen(
            "node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\"",
            "node1 = \"/dev/sdb1\", node2 = \"/dev/sdb\"",
            1,
        );
    let loaded =
        parse(&format!("{BASE}{REPLICA}{swapped}"), path()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = loaded
        .config
        .replicas
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["r0", "r1"]);
}

#[test]
fn a_replica_on_one_node_only_is_a_warning() {
    let text = format!(
        "{BASE}{}",
        REPLICA.replacen(", node2 = \"/dev/sdb1\"", "", 1)
    );
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(usize, &str, &str)> = loaded
        .warnings
        .iter()
        .map(|w| (w.line, w.key.as_str(), w.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [(
            line_of(&text, "disk = "),
            "replica[0].disk",
            "only one node has a disk: no peer to replicate to"
        )]
    );
    let r = &loaded.config.replicas[0];
    assert_eq!(r.disks, [Some(PathBuf::from("/dev/sdb")), None]);
}
