//! Whole-file tests: text in, `Config` or placed errors out.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::membership::auth::AuthAlgorithm;
use crate::replication::split_brain::{After0Pri, After1Pri, After2Pri, Policies};
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

# Two nodes and groups: a takeover needs a fence (or a witness).
[fencing]
command = "/usr/local/sbin/fence-node"
"#;

/// BASE's [fencing], which a test of fencing itself takes out.
const FENCING: &str = "\n# Two nodes and groups: a takeover needs a fence (or a witness).\n[fencing]\ncommand = \"/usr/local/sbin/fence-node\"\n";

fn base_without_fencing() -> String {
    assert!(BASE.contains(FENCING));
    BASE.replacen(FENCING, "", 1)
}

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
    // Replication over the crossover addresses, on the port written.
    assert_eq!(
        r0.addresses,
        [socket("203.0.113.1:7789"), socket("203.0.113.2:7789")]
    );
    assert_eq!(r0.peer(NodeId(0)), Some(NodeId(1)));
    assert_eq!(r0.peer(NodeId(1)), Some(NodeId(0)));
    assert_eq!(r0.protocol, Protocol::C);
    assert_eq!(r0.meta_disk, MetaDisk::Internal);
    assert_eq!(r0.policies, Policies::default());
    assert_eq!(r0.key_file, c.cluster.key_file);
    assert_eq!(c.groups, [lab_web(vec![NodeId(0), NodeId(1)])]);
}

fn socket(text: &str) -> Option<SocketAddr> {
    Some(
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} in a test: {e}")),
    )
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
    assert_eq!(r0.address(NodeId(0)), socket("203.0.113.1:7788"));
    assert_eq!(r0.address(NodeId(1)), socket("203.0.113.2:7788"));
    assert_eq!(r0.address(NodeId(2)), None);
    assert_eq!(r0.peer(NodeId(0)), Some(NodeId(1)));
    // The tie-breaker holds no copy, so it has no peer to replicate with.
    assert_eq!(r0.peer(NodeId(2)), None);
    // Nor does the web site run there: it needs r0.
    assert_eq!(c.groups, [lab_web(vec![NodeId(0), NodeId(1)])]);
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
address = { node1 = "203.0.113.1", node2 = "203.0.113.2" }
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
    // Every replication setting left out has its default.
    assert_eq!(
        r.addresses,
        [socket("203.0.113.1:7788"), socket("203.0.113.2:7788")]
    );
    assert_eq!(r.address(NodeId(1)), socket("203.0.113.2:7788"));
    assert_eq!(r.address(NodeId(2)), None);
    assert_eq!(r.peer(NodeId(0)), Some(NodeId(1)));
    assert_eq!(r.peer(NodeId(1)), Some(NodeId(0)));
    assert_eq!(r.peer(NodeId(2)), None);
    assert_eq!(r.protocol, Protocol::C);
    assert_eq!(r.meta_disk, MetaDisk::Internal);
    assert_eq!(r.on_io_error, OnIoError::Detach);
    assert_eq!(r.fencing, ReplicaFencing::ResourceOnly);
    assert_eq!(r.key_file, Path::new("/etc/duet/duet.key"));
    assert_eq!(r.key_file, config.cluster.key_file);
    assert_eq!(r.verify_alg, VerifyAlg::Crc32c);
    assert_eq!(
        r.policies,
        Policies {
            after_sb_0pri: After0Pri::DiscardYoungerPrimary,
            after_sb_1pri: After1Pri::Consensus,
            after_sb_2pri: After2Pri::Disconnect,
        }
    );
    assert_eq!(r.timeout, Duration::from_secs(5));
    assert_eq!(r.connect_retry, Duration::from_secs(1));
    assert_eq!(
        r.resync,
        ResyncRates {
            min: 1 << 20,
            max: 1 << 30,
            fill_target: 4 << 20,
        }
    );
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
            "disk on an unknown node: its address is not asked for",
            (
                "node2 = \"/dev/sdb1\" }\naddress = { node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }",
                "node3 = \"/dev/sdb1\" }\naddress = { node1 = \"203.0.113.1\" }",
            ),
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
                "disk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\" }\naddress = { node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }",
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
            "a misspelt key: the hint lists the replication keys too",
            ("name = \"r0\"", "name = \"r0\"\nprotocl = \"C\""),
            "protocl = ",
            "replica[0].protocl",
            "unknown field `protocl`",
            "`after-sb-0pri`",
        ),
    ];
    for (what, (from, to), line_with, key, message, hint) in cases {
        let replica = REPLICA.replacen(from, to, 1);
        assert_ne!(replica, REPLICA, "{what}: the edit did not apply");
        let text = format!("{BASE}{replica}");
        let want = Want {
            line: line_of(&text, line_with),
            key,
            message,
            hint,
        };
        assert_single(what, &errors_of(&text), &want);
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
        REPLICA.replacen(", node2 = \"/dev/sdb1\"", "", 1).replacen(
            ", node2 = \"203.0.113.2\"",
            "",
            1
        )
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
    assert_eq!(r.addresses, [socket("203.0.113.1:7788"), None]);
    assert_eq!(r.peer(NodeId(0)), None);
}

/// BASE with a third node, for the rules about nodes without a disk.
fn base3() -> String {
    format!(
        "{BASE}\n[[node]]\nname = \"node3\"\n\
         address = {{ crossover = \"203.0.113.3\", public = \"198.51.100.3\" }}\n"
    )
}

/// `text` must fail with exactly one error: at the last line containing
/// `line_with` (the replica under test comes last), at `key`, with
/// `message` and `hint` in it.
fn assert_one_error(what: &str, text: &str, line_with: &str, key: &str, message: &str, hint: &str) {
    let at = text
        .rfind(line_with)
        .unwrap_or_else(|| panic!("{what}: {line_with:?} not in the text"));
    let want = Want {
        line: line_at(text, at),
        key,
        message,
        hint,
    };
    assert_single(what, &errors_of(text), &want);
}

/// The one error a broken config must give.
pub(super) struct Want<'a> {
    pub line: usize,
    pub key: &'a str,
    /// Found in the error's message and in its hint.
    pub message: &'a str,
    pub hint: &'a str,
}

/// `errors` is exactly one error, the one `want` describes.
pub(super) fn assert_single(what: &str, errors: &[ConfigError], want: &Want<'_>) {
    assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
    let e = &errors[0];
    assert_eq!(
        (e.line, e.key.as_str()),
        (want.line, want.key),
        "{what}: {e}"
    );
    assert!(e.message.contains(want.message), "{what}: {e}");
    assert!(
        e.hint.as_deref().unwrap_or_default().contains(want.hint),
        "{what}: {e}"
    );
}

#[test]
fn written_replication_settings_replace_the_defaults() {
    let replica = REPLICA
        .replacen(
            "name = \"r0\"",
            "name = \"r0\"\nport = 7000\nprotocol = \"A\"\nmeta-disk = \"/dev/sdc1\"\n\
             on-io-error = \"pass-on\"\nkey-file = \"keys/r0.key\"\nverify-alg = \"sha256\"\n\
             after-sb-0pri = \"discard-node-node2\"\nafter-sb-1pri = \"violently-as0p\"\n\
             after-sb-2pri = \"violently-as0p\"\ntimeout = \"10m\"\nconnect-retry = \"250ms\"",
            1,
        )
        .replacen("node2 = \"203.0.113.2\"", "node2 = \"2001:db8::2\"", 1)
        + "\n[replica.resync]\nrate-min = \"512K\"\nrate-max = 104857600\nfill-target = \"1536K\"\n";
    let text = format!("{BASE}{replica}");
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let r = &loaded.config.replicas[0];
    assert_eq!(
        r.addresses,
        [socket("203.0.113.1:7000"), socket("[2001:db8::2]:7000")]
    );
    assert_eq!(r.protocol, Protocol::A);
    // One path: the same on both nodes with a disk.
    assert_eq!(
        r.meta_disk,
        MetaDisk::External(vec![Some("/dev/sdc1".into()), Some("/dev/sdc1".into())])
    );
    assert_eq!(r.meta_disk(NodeId(1)), Some(Path::new("/dev/sdc1")));
    assert_eq!(r.on_io_error, OnIoError::PassOn);
    // Relative to the config file's folder, like the cluster's.
    assert_eq!(r.key_file, Path::new("/etc/duet/keys/r0.key"));
    assert_eq!(r.verify_alg, VerifyAlg::Sha256);
    assert_eq!(
        r.policies,
        Policies {
            after_sb_0pri: After0Pri::DiscardNode("node2".into()),
            after_sb_1pri: After1Pri::ViolentlyAs0p,
            after_sb_2pri: After2Pri::ViolentlyAs0p,
        }
    );
    assert_eq!(r.timeout, Duration::from_secs(600));
    assert_eq!(r.connect_retry, Duration::from_millis(250));
    assert_eq!(
        r.resync,
        ResyncRates {
            min: 512 << 10,
            max: 100 << 20,
            fill_target: 1536 << 10,
        }
    );
}

#[test]
fn every_spelling_of_every_choice_is_read() {
    type Read = fn(&Replica) -> String;
    let protocol: Read = |r| r.protocol.to_string();
    let on_io_error: Read = |r| r.on_io_error.to_string();
    let verify_alg: Read = |r| r.verify_alg.to_string();
    let fencing: Read = |r| r.fencing.to_string();
    let sb0: Read = |r| format!("{:?}", r.policies.after_sb_0pri);
    let sb1: Read = |r| format!("{:?}", r.policies.after_sb_1pri);
    let sb2: Read = |r| format!("{:?}", r.policies.after_sb_2pri);
    let meta: Read = |r| {
        r.meta_disk(NodeId(1))
            .map_or("internal".into(), |p| p.display().to_string())
    };
    // (line added to the replica, what the model shows)
    let cases: [(&str, Read, &str); 26] = [
        ("protocol = \"A\"", protocol, "A"),
        ("protocol = \"B\"", protocol, "B"),
        ("protocol = \"C\"", protocol, "C"),
        ("meta-disk = \"internal\"", meta, "internal"),
        ("meta-disk = \"/srv/duet/r0.md\"", meta, "/srv/duet/r0.md"),
        (
            "meta-disk = { node1 = \"/dev/sdc\", node2 = \"/dev/sdd\" }",
            meta,
            "/dev/sdd",
        ),
        ("on-io-error = \"detach\"", on_io_error, "detach"),
        ("on-io-error = \"pass-on\"", on_io_error, "pass-on"),
        ("verify-alg = \"crc32c\"", verify_alg, "crc32c"),
        ("verify-alg = \"sha256\"", verify_alg, "sha256"),
        ("fencing = \"resource-only\"", fencing, "resource-only"),
        ("fencing = \"none\"", fencing, "none"),
        ("after-sb-0pri = \"disconnect\"", sb0, "Disconnect"),
        (
            "after-sb-0pri = \"discard-younger-primary\"",
            sb0,
            "DiscardYoungerPrimary",
        ),
        (
            "after-sb-0pri = \"discard-older-primary\"",
            sb0,
            "DiscardOlderPrimary",
        ),
        (
            "after-sb-0pri = \"discard-zero-changes\"",
            sb0,
            "DiscardZeroChanges",
        ),
        (
            "after-sb-0pri = \"discard-least-changes\"",
            sb0,
            "DiscardLeastChanges",
        ),
        (
            "after-sb-0pri = \"discard-node-node1\"",
            sb0,
            "DiscardNode(\"node1\")",
        ),
        ("after-sb-1pri = \"disconnect\"", sb1, "Disconnect"),
        ("after-sb-1pri = \"consensus\"", sb1, "Consensus"),
        (
            "after-sb-1pri = \"discard-secondary\"",
            sb1,
            "DiscardSecondary",
        ),
        ("after-sb-1pri = \"violently-as0p\"", sb1, "ViolentlyAs0p"),
        ("after-sb-2pri = \"disconnect\"", sb2, "Disconnect"),
        ("after-sb-2pri = \"violently-as0p\"", sb2, "ViolentlyAs0p"),
        // Sizes: a bare number is bytes, in a string or as a TOML integer.
        (
            "resync = { rate-min = \"4096\" }",
            |r| r.resync.min.to_string(),
            "4096",
        ),
        (
            "resync = { rate-min = 4096 }",
            |r| r.resync.min.to_string(),
            "4096",
        ),
    ];
    for (line, read, want) in cases {
        let replica = REPLICA.replacen("name = \"r0\"", &format!("name = \"r0\"\n{line}"), 1);
        let text = format!("{BASE}{replica}");
        let config = parse(&text, path())
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .config;
        assert_eq!(read(&config.replicas[0]), want, "{line}");
    }
}

#[test]
fn each_bad_replication_setting_is_placed_at_its_line_and_key() {
    let add = |line: &str| {
        (
            "name = \"r0\"".to_string(),
            format!("name = \"r0\"\n{line}"),
        )
    };
    let resync = |lines: &str| {
        (
            "203.0.113.2\" }\n".to_string(),
            format!("203.0.113.2\" }}\n\n[replica.resync]\n{lines}\n"),
        )
    };
    let edit = |from: &str, to: &str| (from.to_string(), to.to_string());
    // (what, edit of REPLICA, text on the error's line, key, message, hint)
    let cases = [
        (
            "unknown protocol",
            add("protocol = \"D\""),
            "protocol = ",
            "replica[0].protocol",
            "\"D\" is not a protocol",
            "\"A\", \"B\" or \"C\" (default \"C\")",
        ),
        (
            "meta-disk neither internal nor a path",
            add("meta-disk = \"external\""),
            "meta-disk = ",
            "replica[0].meta-disk",
            "\"external\" is not an absolute path",
            "\"internal\" (at the end of the disk), or an absolute path",
        ),
        (
            "meta-disk on the replica's own disk",
            add("meta-disk = \"/dev/sdb1\""),
            "meta-disk = ",
            "replica[0].meta-disk",
            "/dev/sdb1 is replica[0]'s disk on node2: the metadata would overwrite its data",
            "of its own",
        ),
        (
            "meta-disk table naming no node",
            add("meta-disk = { node1 = \"/dev/sdc\", node2 = \"/dev/sdc\", node9 = \"/dev/sdc\" }"),
            "meta-disk = ",
            "replica[0].meta-disk.node9",
            "no node is named \"node9\"",
            "a node with a disk for this replica: \"node1\", \"node2\"",
        ),
        (
            "meta-disk table for a node without a disk",
            add("meta-disk = { node1 = \"/dev/sdc\", node2 = \"/dev/sdc\", node3 = \"/dev/sdc\" }"),
            "meta-disk = ",
            "replica[0].meta-disk.node3",
            "node3 has no disk for this replica, so no use for metadata",
            "\"node1\", \"node2\"",
        ),
        (
            "meta-disk table without a node with a disk",
            add("meta-disk = { node1 = \"/dev/sdc\" }"),
            "meta-disk = ",
            "replica[0].meta-disk.node2",
            "no meta-disk for node2, which has a disk",
            "add node2 = \"PATH\" to this replica's meta-disk table",
        ),
        (
            "meta-disk table mixing internal in",
            add("meta-disk = { node1 = \"internal\", node2 = \"/dev/sdc\" }"),
            "meta-disk = ",
            "replica[0].meta-disk.node1",
            "\"internal\" cannot be mixed with external metadata",
            "meta-disk = \"internal\" for all nodes, or a path for each",
        ),
        (
            "meta-disk table with a relative path",
            add("meta-disk = { node1 = \"sdc\", node2 = \"/dev/sdc\" }"),
            "meta-disk = ",
            "replica[0].meta-disk.node1",
            "\"sdc\" is not an absolute path",
            "of its own",
        ),
        (
            "meta-disk table entry on the node's own disk",
            add("meta-disk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdc\" }"),
            "meta-disk = ",
            "replica[0].meta-disk.node1",
            "/dev/sdb is replica[0]'s disk on node1: the metadata would overwrite its data",
            "of its own",
        ),
        (
            "meta-disk neither a string nor a table: a type error, from serde",
            add("meta-disk = 5"),
            "meta-disk = ",
            "replica[0].meta-disk",
            "invalid type: integer `5`",
            "\"internal\", a path for every node, or a table from node name to path",
        ),
        (
            "unknown on-io-error",
            add("on-io-error = \"panic\""),
            "on-io-error = ",
            "replica[0].on-io-error",
            "\"panic\" is not an on-io-error policy",
            "\"detach\" or \"pass-on\" (default \"detach\")",
        ),
        (
            "unknown fencing: DRBD's resource-and-stonith is not one",
            add("fencing = \"resource-and-stonith\""),
            "fencing = ",
            "replica[0].fencing",
            "\"resource-and-stonith\" is not a fencing policy",
            "\"resource-only\" or \"none\" (default \"resource-only\")",
        ),
        (
            "empty key-file",
            add("key-file = \" \""),
            "key-file = ",
            "replica[0].key-file",
            "an empty key-file names no file",
            "leave key-file out to use the cluster's",
        ),
        (
            "unknown verify-alg",
            add("verify-alg = \"md5\""),
            "verify-alg = ",
            "replica[0].verify-alg",
            "\"md5\" is not a verify algorithm",
            "\"crc32c\" or \"sha256\" (default \"crc32c\")",
        ),
        (
            "unknown after-sb-0pri: the hint names the replica's nodes",
            add("after-sb-0pri = \"discard-everything\""),
            "after-sb-0pri = ",
            "replica[0].after-sb-0pri",
            "\"discard-everything\" is not an after-sb-0pri policy",
            "\"discard-least-changes\", \"discard-node-node1\" or \"discard-node-node2\" \
             (default \"discard-younger-primary\")",
        ),
        (
            "discard-node with an unknown node",
            add("after-sb-0pri = \"discard-node-node9\""),
            "after-sb-0pri = ",
            "replica[0].after-sb-0pri",
            "\"discard-node-node9\": no node is named \"node9\"",
            "\"discard-node-node1\" or \"discard-node-node2\"",
        ),
        (
            "discard-node with a node without a disk",
            add("after-sb-0pri = \"discard-node-node3\""),
            "after-sb-0pri = ",
            "replica[0].after-sb-0pri",
            "\"discard-node-node3\": node3 has no disk for this replica",
            "\"discard-node-node1\" or \"discard-node-node2\"",
        ),
        (
            "a 0pri policy as after-sb-1pri",
            add("after-sb-1pri = \"discard-younger-primary\""),
            "after-sb-1pri = ",
            "replica[0].after-sb-1pri",
            "\"discard-younger-primary\" is not an after-sb-1pri policy",
            "\"disconnect\", \"consensus\", \"discard-secondary\" or \"violently-as0p\" \
             (default \"consensus\")",
        ),
        (
            "a 1pri policy as after-sb-2pri",
            add("after-sb-2pri = \"consensus\""),
            "after-sb-2pri = ",
            "replica[0].after-sb-2pri",
            "\"consensus\" is not an after-sb-2pri policy",
            "\"disconnect\" or \"violently-as0p\" (default \"disconnect\")",
        ),
        (
            "zero timeout",
            add("timeout = \"0s\""),
            "timeout = ",
            "replica[0].timeout",
            "timeout 0ms would drop the peer at once",
            "a duration above 0ms and at most 10m (default 5s)",
        ),
        (
            "timeout over ten minutes",
            add("timeout = \"601s\""),
            "timeout = ",
            "replica[0].timeout",
            "timeout (601s) is longer than 10m",
            "at most 10m",
        ),
        (
            "timeout without a unit",
            add("timeout = \"5\""),
            "timeout = ",
            "replica[0].timeout",
            "\"5\" has no unit",
            "durations need a unit",
        ),
        (
            "zero connect-retry",
            add("connect-retry = \"0ms\""),
            "connect-retry = ",
            "replica[0].connect-retry",
            "connect-retry 0ms would retry without a pause",
            "a duration above 0ms (default 1s)",
        ),
        (
            "port 0",
            add("port = 0"),
            "port = ",
            "replica[0].port",
            "port 0 is not a port",
            "1 to 65535, the same on all nodes (default 7788",
        ),
        (
            "port out of range: a type error, from serde",
            add("port = 70000"),
            "port = ",
            "replica[0].port",
            "invalid value: integer `70000`",
            "a whole number from 0 to 65535",
        ),
        (
            "address that is not an IP address",
            edit("node2 = \"203.0.113.2\"", "node2 = \"node2.lab\""),
            "address = ",
            "replica[0].address.node2",
            "\"node2.lab\" is not an IP address",
            "e.g. \"203.0.113.1\"",
        ),
        (
            "address that is not a host's",
            edit("node2 = \"203.0.113.2\"", "node2 = \"::\""),
            "address = ",
            "replica[0].address.node2",
            ":: is not a host address",
            "IPv4 or IPv6",
        ),
        (
            "address of an unknown node",
            edit(
                "node2 = \"203.0.113.2\"",
                "node2 = \"203.0.113.2\", node9 = \"203.0.113.9\"",
            ),
            "address = ",
            "replica[0].address.node9",
            "no node is named \"node9\"",
            "a node with a disk for this replica: \"node1\", \"node2\"",
        ),
        (
            "address of a node without a disk",
            edit(
                "node2 = \"203.0.113.2\"",
                "node2 = \"203.0.113.2\", node3 = \"203.0.113.3\"",
            ),
            "address = ",
            "replica[0].address.node3",
            "node3 has no disk for this replica",
            "addresses only for the nodes with a disk: \"node1\", \"node2\"",
        ),
        (
            "no address for a node with a disk",
            edit(", node2 = \"203.0.113.2\"", ""),
            "address = ",
            "replica[0].address.node2",
            "no replication address for node2, which has a disk",
            "add node2 = \"IP\" to this replica's address table",
        ),
        (
            "two nodes at one address",
            edit("node2 = \"203.0.113.2\"", "node2 = \"203.0.113.1\""),
            "address = ",
            "replica[0].address.node2",
            "203.0.113.1 is also node1's replication address",
            "an address of this node's own",
        ),
        (
            "three disks",
            edit(
                "node2 = \"/dev/sdb1\" }\naddress = { node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }",
                "node2 = \"/dev/sdb1\", node3 = \"/dev/sdb\" }\n\
                 address = { node1 = \"203.0.113.1\", node2 = \"203.0.113.2\", node3 = \"203.0.113.3\" }",
            ),
            "disk = ",
            "replica[0].disk",
            "3 nodes have a disk, but a replica has exactly two disks for now",
            "disks on two nodes",
        ),
        (
            "a decimal size",
            resync("rate-min = \"1.5M\""),
            "rate-min = ",
            "replica[0].resync.rate-min",
            "\"1.5M\" is not a whole number with an optional suffix",
            "the suffix K, M or G (KiB, MiB, GiB)",
        ),
        (
            "an unknown suffix",
            resync("rate-max = \"1T\""),
            "rate-max = ",
            "replica[0].resync.rate-max",
            "\"1T\" has an unknown suffix",
            "the suffix K, M or G",
        ),
        (
            "a negative integer size",
            resync("rate-min = -1"),
            "rate-min = ",
            "replica[0].resync.rate-min",
            "sizes cannot be negative",
            "e.g. \"4M\"",
        ),
        (
            "an overflowing size",
            resync("fill-target = \"99999999999G\""),
            "fill-target = ",
            "replica[0].resync.fill-target",
            "\"99999999999G\" is too large",
            "e.g. \"4M\"",
        ),
        (
            "a zero size",
            resync("fill-target = \"0\""),
            "fill-target = ",
            "replica[0].resync.fill-target",
            "0 would stall a resync",
            "a size above 0 (default 4M)",
        ),
        (
            "a float size: a type error, from serde",
            resync("rate-min = 1.5"),
            "rate-min = ",
            "replica[0].resync.rate-min",
            "invalid type: floating point `1.5`",
            "a size such as \"4M\", or a whole number of bytes",
        ),
        (
            "rate-min above the default rate-max: at rate-min",
            resync("rate-min = \"2G\""),
            "rate-min = ",
            "replica[0].resync.rate-min",
            "rate-min (2G) is above rate-max (1G)",
            "at most rate-max, 1G",
        ),
        (
            "rate-max below the default rate-min: at rate-max",
            resync("rate-max = \"512K\""),
            "rate-max = ",
            "replica[0].resync.rate-max",
            "rate-min (1M) is above rate-max (512K)",
            "at least rate-min, 1M",
        ),
        (
            "both written, rate-min above rate-max: at rate-min",
            resync("rate-max = \"4M\"\nrate-min = \"8M\""),
            "rate-min = ",
            "replica[0].resync.rate-min",
            "rate-min (8M) is above rate-max (4M)",
            "at most rate-max, 4M",
        ),
        (
            "unknown resync key",
            resync("rate = \"1M\""),
            "rate = ",
            "replica[0].resync.rate",
            "unknown field `rate`",
            "`rate-min`, `rate-max`, `fill-target`",
        ),
    ];
    let base = base3();
    for (what, (from, to), line_with, key, message, hint) in cases {
        let replica = REPLICA.replacen(&from, &to, 1);
        assert_ne!(replica, REPLICA, "{what}: the edit did not apply");
        let text = format!("{base}{replica}");
        assert_one_error(what, &text, line_with, key, message, hint);
    }
}

#[test]
fn a_replica_without_addresses_is_told_each_one_at_its_header() {
    let replica = REPLICA.replacen(
        "address = { node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }\n",
        "",
        1,
    );
    let text = format!("{BASE}{replica}");
    let errors = errors_of(&text);
    let got: Vec<(usize, &str, &str)> = errors
        .iter()
        .map(|e| (e.line, e.key.as_str(), e.message.as_str()))
        .collect();
    let header = line_of(&text, "[[replica]]");
    assert_eq!(
        got,
        [
            (
                header,
                "replica[0].address.node1",
                "no replication address for node1, which has a disk"
            ),
            (
                header,
                "replica[0].address.node2",
                "no replication address for node2, which has a disk"
            ),
        ]
    );
}

#[test]
fn two_replicas_may_not_listen_on_the_same_address_and_port() {
    let second = |extra: &str, address: &str| {
        REPLICA
            .replacen("name = \"r0\"", &format!("name = \"r1\"{extra}"), 1)
            .replacen(
                "node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\"",
                "node1 = \"/dev/sdc\", node2 = \"/dev/sdc\"",
                1,
            )
            .replacen(
                "address = { node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }",
                address,
                1,
            )
    };
    let crossover = "address = { node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }";
    // A written port on r0's default: once, at r1's port.
    let text = format!("{BASE}{REPLICA}{}", second("\nport = 7788", crossover));
    assert_one_error(
        "a written port",
        &text,
        "port = 7788",
        "replica[1].port",
        "port 7788 is also replica[0]'s on 203.0.113.1",
        "a port no other replica uses on 203.0.113.1",
    );
    // r0 written on r1's default: at r1's header, since r1 wrote no port.
    let first = REPLICA.replacen("name = \"r0\"", "name = \"r0\"\nport = 7789", 1);
    let text = format!("{BASE}{first}{}", second("", crossover));
    assert_one_error(
        "a default port",
        &text,
        "[[replica]]",
        "replica[1].port",
        "port 7789 (the default) is also replica[0]'s on 203.0.113.1",
        "a port no other replica uses",
    );
    // The same port on other addresses is fine, and defaults count up.
    let public = "address = { node1 = \"198.51.100.1\", node2 = \"198.51.100.2\" }";
    let text = format!("{BASE}{REPLICA}{}", second("\nport = 7788", public));
    let config = parse(&text, path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(
        config.replicas[1].address(NodeId(0)),
        socket("198.51.100.1:7788")
    );
    let text = format!("{BASE}{REPLICA}{}", second("", crossover));
    let config = parse(&text, path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(
        config.replicas[1].address(NodeId(1)),
        socket("203.0.113.2:7789")
    );
}

#[test]
fn external_metadata_is_never_a_disk_or_another_replicas_metadata() {
    let second = |meta: &str| {
        REPLICA
            .replacen(
                "name = \"r0\"",
                &format!("name = \"r1\"\nmeta-disk = \"{meta}\""),
                1,
            )
            .replacen(
                "node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\"",
                "node1 = \"/dev/sdc\", node2 = \"/dev/sdc\"",
                1,
            )
            .replacen("\"203.0.113.1\"", "\"198.51.100.1\"", 1)
            .replacen("\"203.0.113.2\"", "\"198.51.100.2\"", 1)
    };
    let first = REPLICA.replacen(
        "name = \"r0\"",
        "name = \"r0\"\nmeta-disk = \"/dev/sdd\"",
        1,
    );
    let text = format!("{BASE}{first}{}", second("/dev/sdd"));
    assert_one_error(
        "shared metadata",
        &text,
        "meta-disk = ",
        "replica[1].meta-disk",
        "/dev/sdd is also replica[0].meta-disk: each replica needs metadata of its own",
        "of its own",
    );
    let text = format!("{BASE}{REPLICA}{}", second("/dev/sdb"));
    assert_one_error(
        "metadata on another replica's disk",
        &text,
        "meta-disk = ",
        "replica[1].meta-disk",
        "/dev/sdb is replica[0]'s disk on node1",
        "of its own",
    );
    let text = format!("{BASE}{REPLICA}{}", second("/dev/duet/r0"));
    assert_one_error(
        "metadata on another replica's device",
        &text,
        "meta-disk = ",
        "replica[1].meta-disk",
        "/dev/duet/r0 is also replica[0].device",
        "of its own",
    );
}

#[test]
fn external_metadata_per_node_is_checked_on_its_own_node() {
    // node1's metadata at the path of node2's disk: two machines, two
    // devices, no clash.
    let replica = REPLICA.replacen(
        "name = \"r0\"",
        "name = \"r0\"\nmeta-disk = { node1 = \"/dev/sdb1\", node2 = \"/dev/sdb\" }",
        1,
    );
    let text = format!("{BASE}{replica}");
    let config = parse(&text, path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let r = &config.replicas[0];
    assert_eq!(r.meta_disk(NodeId(0)), Some(Path::new("/dev/sdb1")));
    assert_eq!(r.meta_disk(NodeId(1)), Some(Path::new("/dev/sdb")));
    assert_eq!(r.meta_disk(NodeId(2)), None);
    // A second replica may not share node2's metadata device, but may use
    // the same path on node1, where the first replica's is elsewhere.
    let first = REPLICA.replacen(
        "name = \"r0\"",
        "name = \"r0\"\nmeta-disk = { node1 = \"/dev/sde\", node2 = \"/dev/sdf\" }",
        1,
    );
    let second = |meta: &str| {
        REPLICA
            .replacen(
                "name = \"r0\"",
                &format!("name = \"r1\"\nmeta-disk = {meta}"),
                1,
            )
            .replacen(
                "node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\"",
                "node1 = \"/dev/sdc\", node2 = \"/dev/sdc\"",
                1,
            )
            .replacen("\"203.0.113.1\"", "\"198.51.100.1\"", 1)
            .replacen("\"203.0.113.2\"", "\"198.51.100.2\"", 1)
    };
    let text = format!(
        "{BASE}{first}{}",
        second("{ node1 = \"/dev/sdd\", node2 = \"/dev/sdf\" }")
    );
    assert_one_error(
        "shared metadata on one node",
        &text,
        "meta-disk = { node1 = \"/dev/sdd\"",
        "replica[1].meta-disk.node2",
        "/dev/sdf is also replica[0].meta-disk.node2: each replica needs metadata of its own",
        "of its own",
    );
    let text = format!(
        "{BASE}{first}{}",
        second("{ node1 = \"/dev/sdf\", node2 = \"/dev/sde\" }")
    );
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.config.replicas[1].meta_disk(NodeId(0)),
        Some(Path::new("/dev/sdf"))
    );
}

#[test]
fn bad_replication_settings_come_together_with_all_other_errors() {
    let replica = REPLICA
        .replacen(
            "name = \"r0\"",
            "name = \"r0\"\nprotocol = \"D\"\ntimeout = \"0s\"",
            1,
        )
        .replacen(", node2 = \"203.0.113.2\"", "", 1)
        + "\n[replica.resync]\nrate-min = \"1.5M\"\n";
    let text = format!(
        "{}{replica}",
        BASE.replacen("deadtime = \"1s\"", "deadtime = \"500ms\"", 1)
    );
    let errors = errors_of(&text);
    let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (line_of(&text, "deadtime = "), "timings.deadtime"),
            (line_of(&text, "protocol = "), "replica[0].protocol"),
            (line_of(&text, "timeout = "), "replica[0].timeout"),
            (
                line_of(&text, "address = { node1 = \"203.0.113.1\" }"),
                "replica[0].address.node2"
            ),
            (line_of(&text, "rate-min = "), "replica[0].resync.rate-min"),
        ],
        "{}",
        ConfigErrors {
            errors: errors.clone()
        }
    );
}

const TLS_TABLE: &str = "\n[replica.nbd-tls]\ncert = \"nbd/server-cert.pem\"\n\
    key = \"/etc/duet/nbd/server-key.pem\"\nca = \"nbd/ca-cert.pem\"\n";

/// REPLICA served over TCP on both nodes, with TLS.
fn tcp_replica() -> String {
    REPLICA.replacen(
        "name = \"r0\"",
        "name = \"r0\"\nnbd-listen = { node1 = \"198.51.100.1:10809\", node2 = \"198.51.100.2\" }",
        1,
    ) + TLS_TABLE
}

#[test]
fn the_tcp_listener_is_off_by_default_and_per_node_when_written() {
    let plain = parse(&format!("{BASE}{REPLICA}"), path()).unwrap_or_else(|e| panic!("{e}"));
    let r = &plain.config.replicas[0];
    assert_eq!(r.nbd_tcp, None);
    assert_eq!(r.nbd_listen(NodeId(0)), None);

    let text = format!("{BASE}{}", tcp_replica());
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let r = &loaded.config.replicas[0];
    let tls = TlsFiles {
        // Relative to the config file's folder, like the key files.
        cert: "/etc/duet/nbd/server-cert.pem".into(),
        key: "/etc/duet/nbd/server-key.pem".into(),
        ca: "/etc/duet/nbd/ca-cert.pem".into(),
    };
    assert_eq!(
        r.nbd_tcp,
        Some(NbdTcp {
            // Port 10809, NBD's, when left out.
            listen: vec![socket("198.51.100.1:10809"), socket("198.51.100.2:10809")],
            tls: tls.clone(),
        })
    );
    assert_eq!(
        r.nbd_listen(NodeId(1)),
        Some((
            "198.51.100.2:10809"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            &tls
        ))
    );
    // One node only, on every address, IPv6.
    let one = tcp_replica().replacen(
        "{ node1 = \"198.51.100.1:10809\", node2 = \"198.51.100.2\" }",
        "{ node2 = \"[::]:10900\" }",
        1,
    );
    let loaded = parse(&format!("{BASE}{one}"), path()).unwrap_or_else(|e| panic!("{e}"));
    let r = &loaded.config.replicas[0];
    assert_eq!(r.nbd_listen(NodeId(0)), None);
    assert_eq!(
        r.nbd_listen(NodeId(1)).map(|(at, _)| at),
        socket("[::]:10900")
    );
}

#[test]
fn each_broken_tcp_listener_is_placed_at_its_line_and_key() {
    let listen = "nbd-listen = { node1 = \"198.51.100.1:10809\", node2 = \"198.51.100.2\" }";
    // (what, edit of tcp_replica(), text on the error's line, key, message, hint)
    let cases = [
        (
            "a listener without TLS",
            (TLS_TABLE, ""),
            "nbd-listen = ",
            "replica[0].nbd-listen",
            "a TCP listener without TLS",
            "[replica.nbd-tls] table with cert, key and ca",
        ),
        (
            "no key",
            ("key = \"/etc/duet/nbd/server-key.pem\"\n", ""),
            "[replica.nbd-tls]",
            "replica[0].nbd-tls.key",
            "missing",
            "mode 0600",
        ),
        (
            "an empty ca",
            ("ca = \"nbd/ca-cert.pem\"", "ca = \" \""),
            "ca = ",
            "replica[0].nbd-tls.ca",
            "an empty ca names no file",
            "signs the clients' certificates",
        ),
        (
            "an unknown TLS key",
            ("ca = ", "crl = \"x\"\nca = "),
            "crl = ",
            "replica[0].nbd-tls.crl",
            "unknown field `crl`",
            "`cert`, `key`",
        ),
        (
            "an unknown node",
            (listen, "nbd-listen = { node9 = \"198.51.100.1\" }"),
            "nbd-listen = ",
            "replica[0].nbd-listen.node9",
            "no node is named \"node9\"",
            "\"node1\", \"node2\"",
        ),
        (
            "not an address",
            (listen, "nbd-listen = { node1 = \"node1:10809\" }"),
            "nbd-listen = ",
            "replica[0].nbd-listen.node1",
            "\"node1:10809\" is not an IP address with an optional port",
            "198.51.100.1:10809",
        ),
        (
            "multicast",
            (listen, "nbd-listen = { node1 = \"239.1.1.1:10809\" }"),
            "nbd-listen = ",
            "replica[0].nbd-listen.node1",
            "239.1.1.1 is a multicast address",
            "TCP port",
        ),
        (
            "port 0",
            (listen, "nbd-listen = { node1 = \"198.51.100.1:0\" }"),
            "nbd-listen = ",
            "replica[0].nbd-listen.node1",
            "port 0 is not a port",
            "TCP port",
        ),
        (
            "the replication port",
            (listen, "nbd-listen = { node2 = \"0.0.0.0:7788\" }"),
            "nbd-listen = ",
            "replica[0].nbd-listen.node2",
            "0.0.0.0:7788 would take 203.0.113.2:7788, replica[0]'s replication address on node2",
            "a port of its own",
        ),
    ];
    for (what, (from, to), line_with, key, message, hint) in cases {
        let replica = tcp_replica().replacen(from, to, 1);
        assert_ne!(replica, tcp_replica(), "{what}: the edit did not apply");
        let text = format!("{BASE}{replica}");
        assert_one_error(what, &text, line_with, key, message, hint);
    }
}

const LINK_TLS_TABLE: &str = "\n[replica.tls]\ncert = \"tls/node-cert.pem\"\n\
    key = \"/etc/duet/tls/node-key.pem\"\nca = \"tls/ca-cert.pem\"\n";

#[test]
fn link_tls_is_off_by_default_and_its_files_resolve_like_the_keys() {
    let plain = parse(&format!("{BASE}{REPLICA}"), path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.config.replicas[0].tls, None);
    let text = format!("{BASE}{REPLICA}{LINK_TLS_TABLE}");
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.config.replicas[0].tls,
        Some(TlsFiles {
            cert: "/etc/duet/tls/node-cert.pem".into(),
            key: "/etc/duet/tls/node-key.pem".into(),
            ca: "/etc/duet/tls/ca-cert.pem".into(),
        })
    );
    let cases = [
        (
            "no cert",
            ("cert = \"tls/node-cert.pem\"\n", ""),
            "[replica.tls]",
            "replica[0].tls.cert",
            "missing",
            "subjectAltName DNS:NODE",
        ),
        (
            "an empty key",
            ("key = \"/etc/duet/tls/node-key.pem\"", "key = \"\""),
            "key = \"\"",
            "replica[0].tls.key",
            "an empty key names no file",
            "mode 0600",
        ),
        (
            "an unknown field",
            ("ca = ", "verify = \"none\"\nca = "),
            "verify = ",
            "replica[0].tls.verify",
            "unknown field `verify`",
            "`cert`, `key`",
        ),
    ];
    for (what, (from, to), line_with, key, message, hint) in cases {
        let table = LINK_TLS_TABLE.replacen(from, to, 1);
        assert_ne!(table, LINK_TLS_TABLE, "{what}: the edit did not apply");
        let text = format!("{BASE}{REPLICA}{table}");
        assert_one_error(what, &text, line_with, key, message, hint);
    }
}

#[test]
fn tcp_listeners_need_a_disk_and_a_port_of_their_own() {
    // node3 holds no copy: never Primary, never serving.
    let text = format!(
        "{}{}",
        base3(),
        tcp_replica().replacen(
            "node2 = \"198.51.100.2\" }",
            "node2 = \"198.51.100.2\", node3 = \"198.51.100.3\" }",
            1
        )
    );
    assert_one_error(
        "a node without a disk",
        &text,
        "nbd-listen = ",
        "replica[0].nbd-listen.node3",
        "node3 has no disk for this replica",
        "\"node1\", \"node2\"",
    );
    // Two replicas on one port of one node: the second is told.
    let second = tcp_replica()
        .replacen("name = \"r0\"", "name = \"r1\"", 1)
        .replacen(
            "node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\"",
            "node1 = \"/dev/sdc\", node2 = \"/dev/sdc\"",
            1,
        )
        .replacen(
            "{ node1 = \"198.51.100.1:10809\", node2 = \"198.51.100.2\" }",
            "{ node1 = \"198.51.100.1:10810\", node2 = \"0.0.0.0:10809\" }",
            1,
        );
    let text = format!("{BASE}{}{second}", tcp_replica());
    assert_one_error(
        "the same port on node2",
        &text,
        "nbd-listen = ",
        "replica[1].nbd-listen.node2",
        "0.0.0.0:10809 would take 198.51.100.2:10809, replica[0]'s nbd-listen on node2",
        "a port no other replica listens on",
    );
    // The same address and port on two nodes is two hosts: fine.
    let same = tcp_replica().replacen(
        "{ node1 = \"198.51.100.1:10809\", node2 = \"198.51.100.2\" }",
        "{ node1 = \"0.0.0.0:10809\", node2 = \"0.0.0.0:10809\" }",
        1,
    );
    parse(&format!("{BASE}{same}"), path()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn tls_without_a_listener_is_a_warning() {
    let replica = tcp_replica().replacen(
        "nbd-listen = { node1 = \"198.51.100.1:10809\", node2 = \"198.51.100.2\" }\n",
        "",
        1,
    );
    let text = format!("{BASE}{replica}");
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(usize, &str, &str)> = loaded
        .warnings
        .iter()
        .map(|w| (w.line, w.key.as_str(), w.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [(
            line_of(&text, "[replica.nbd-tls]"),
            "replica[0].nbd-tls",
            "no node has an nbd-listen address, so nothing is served over TCP"
        )]
    );
    assert_eq!(loaded.config.replicas[0].nbd_tcp, None);
}

/// The lab's web site: r0 mounted on /mnt/shared, the floating address on
/// the public side, apache; auto-failback off, every other default.
fn lab_web(nodes: Vec<NodeId>) -> Group {
    let secs = Duration::from_secs;
    let resource = |kind, timeout| Resource {
        kind,
        start_timeout: secs(timeout),
        stop_timeout: secs(timeout),
    };
    Group {
        name: "web".into(),
        nodes,
        auto_failback: false,
        stickiness: 0,
        monitor_interval: secs(5),
        failure_threshold: 3,
        resources: vec![
            resource(
                ResourceKind::Replica {
                    replica: "r0".into(),
                },
                30,
            ),
            resource(
                ResourceKind::Mount {
                    device: "/dev/duet/r0".into(),
                    mountpoint: "/mnt/shared".into(),
                    fstype: "ext4".into(),
                    options: String::new(),
                    fsck: Fsck::Auto,
                },
                60,
            ),
            resource(
                ResourceKind::Ip {
                    address: IpAddr::from([198, 51, 100, 10]),
                    prefix: 24,
                    interface: "eth0".into(),
                },
                10,
            ),
            resource(
                ResourceKind::Unit {
                    unit: "apache2.service".into(),
                },
                90,
            ),
        ],
    }
}

/// The lab's group on top of BASE and REPLICA: the replica, a mount of its
/// device, the floating address and the web server.
const GROUP: &str = r#"
[[group]]
name = "web"
preferred = "node1"

[[group.resource]]
replica = "r0"

[[group.resource]]
mount = "/mnt/shared"
device = "r0"
fstype = "ext4"

[[group.resource]]
ip = "198.51.100.10/24"
interface = "eth0"

[[group.resource]]
unit = "apache2.service"
"#;

/// (from, to) pairs, each replacing the first `from`.
type Edits<'a> = &'a [(&'a str, &'a str)];

/// BASE, REPLICA and then `group` with each of `edits` applied once; each
/// must apply, or the test would check the unedited text.
fn edited(what: &str, group: &str, edits: Edits) -> String {
    let mut text = group.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "{what}: {from:?} is not in the group");
        text = text.replacen(from, to, 1);
    }
    format!("{BASE}{REPLICA}{text}")
}

/// `text` must fail with exactly this one error: at the last line
/// containing `line_with`, at `key`, with exactly `message` and `hint`.
fn assert_exact_error(
    what: &str,
    text: &str,
    line_with: &str,
    key: &str,
    message: &str,
    hint: &str,
) {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
    let e = &errors[0];
    let at = text
        .rfind(line_with)
        .unwrap_or_else(|| panic!("{what}: {line_with:?} not in the text"));
    assert_eq!(
        (
            e.line,
            e.key.as_str(),
            e.message.as_str(),
            e.hint.as_deref()
        ),
        (line_at(text, at), key, message, Some(hint)),
        "{what}: {e}"
    );
}

fn resource(kind: ResourceKind, start: u64, stop: u64) -> Resource {
    Resource {
        kind,
        start_timeout: Duration::from_millis(start),
        stop_timeout: Duration::from_millis(stop),
    }
}

#[test]
fn a_group_with_every_key_written_is_read_into_the_model() {
    let group = r#"
[[group]]
name = "web"
nodes = ["node2", "node1"]
auto-failback = true
stickiness = 1
monitor-interval = "2s"
failure-threshold = 1

[[group.resource]]
replica = "r0"
start-timeout = "45s"
stop-timeout = "1m"

[[group.resource]]
mount = "/mnt/shared/"
device = "r0"
fstype = "xfs"
options = "noatime,nodev"
fsck = "never"

[[group.resource]]
mount = "/srv/scratch"
device = "/dev/sdc1"
fstype = "ext4"
fsck = "auto"

[[group.resource]]
ip = "2001:db8::10/64"
interface = "eth0"

[[group.resource]]
ip = "198.51.100.10/24"
interface = "eth0"

[[group.resource]]
unit = "apache2.service"
stop-timeout = "500ms"

[[group.resource]]
script = "/etc/ha.d/resource.d/pageme"
args = ["650-555-1212"]
"#;
    let text = format!("{BASE}{REPLICA}{group}");
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
    let want = Group {
        name: "web".into(),
        nodes: vec![NodeId(1), NodeId(0)],
        auto_failback: true,
        stickiness: 1,
        monitor_interval: Duration::from_secs(2),
        failure_threshold: 1,
        resources: vec![
            resource(
                ResourceKind::Replica {
                    replica: "r0".into(),
                },
                45_000,
                60_000,
            ),
            resource(
                ResourceKind::Mount {
                    // The replica's name stands for its device.
                    device: "/dev/duet/r0".into(),
                    // Normalized: systemd names the mount unit after it.
                    mountpoint: "/mnt/shared".into(),
                    fstype: "xfs".into(),
                    options: "noatime,nodev".into(),
                    fsck: Fsck::Never,
                },
                60_000,
                60_000,
            ),
            resource(
                ResourceKind::Mount {
                    device: "/dev/sdc1".into(),
                    mountpoint: "/srv/scratch".into(),
                    fstype: "ext4".into(),
                    options: String::new(),
                    fsck: Fsck::Auto,
                },
                60_000,
                60_000,
            ),
            resource(
                ResourceKind::Ip {
                    address: ip("2001:db8::10"),
                    prefix: 64,
                    interface: "eth0".into(),
                },
                10_000,
                10_000,
            ),
            resource(
                ResourceKind::Ip {
                    address: ip("198.51.100.10"),
                    prefix: 24,
                    interface: "eth0".into(),
                },
                10_000,
                10_000,
            ),
            resource(
                ResourceKind::Unit {
                    unit: "apache2.service".into(),
                },
                90_000,
                500,
            ),
            resource(
                ResourceKind::Script {
                    path: "/etc/ha.d/resource.d/pageme".into(),
                    args: vec!["650-555-1212".into()],
                },
                60_000,
                60_000,
            ),
        ],
    };
    assert_eq!(loaded.config.groups, [want]);
    let labels: Vec<String> = loaded.config.groups[0]
        .resources
        .iter()
        .map(Resource::label)
        .collect();
    assert_eq!(
        labels,
        [
            "replica r0",
            "mount /mnt/shared",
            "mount /srv/scratch",
            "ip 2001:db8::10/64 on eth0",
            "ip 198.51.100.10/24 on eth0",
            "unit apache2.service",
            "script /etc/ha.d/resource.d/pageme",
        ]
    );
}

#[test]
fn a_group_gets_its_defaults_and_preferred_puts_one_node_first() {
    let text = format!("{BASE}{REPLICA}{GROUP}");
    let config = parse(&text, path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let web = config
        .group("web")
        .unwrap_or_else(|| panic!("no web in {:?}", config.groups));
    assert_eq!(web.nodes, [NodeId(0), NodeId(1)]);
    assert!(!web.auto_failback);
    assert_eq!(web.monitor_interval, Duration::from_secs(5));
    assert_eq!(web.failure_threshold, 3);
    let timeouts: Vec<(u64, u64)> = web
        .resources
        .iter()
        .map(|r| (r.start_timeout.as_secs(), r.stop_timeout.as_secs()))
        .collect();
    assert_eq!(timeouts, [(30, 30), (60, 60), (10, 10), (90, 90)]);
    assert_eq!(config.group("db"), None);
    assert!(base_config().groups.is_empty());

    // The cluster's auto-failback is the default; a group's own wins.
    let on = text.replacen("key-file = ", "auto-failback = true\nkey-file = ", 1);
    let config = parse(&on, path()).unwrap_or_else(|e| panic!("{e}")).config;
    assert!(config.groups[0].auto_failback);
    let off = on.replacen(
        "preferred = \"node1\"",
        "preferred = \"node1\"\nauto-failback = false",
        1,
    );
    let config = parse(&off, path()).unwrap_or_else(|e| panic!("{e}")).config;
    assert!(!config.groups[0].auto_failback);

    // preferred: that node, then every other in file order.
    let unit_only = "\n[[group]]\nname = \"cron\"\npreferred = \"node2\"\n\n\
                     [[group.resource]]\nunit = \"cron.service\"\n";
    let config = parse(&format!("{}{unit_only}", base3()), path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(config.groups[0].nodes, [NodeId(1), NodeId(0), NodeId(2)]);
    // A script's args default to none; its timeouts to 60s.
    let script = "\n[[group]]\nname = \"page\"\nnodes = [\"node1\"]\n\n\
                  [[group.resource]]\nscript = \"/usr/local/bin/page\"\n";
    let config = parse(&format!("{BASE}{script}"), path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(
        config.groups[0].resources,
        [resource(
            ResourceKind::Script {
                path: "/usr/local/bin/page".into(),
                args: Vec::new(),
            },
            60_000,
            60_000
        )]
    );
}

#[test]
fn every_resource_kind_is_told_by_its_key() {
    // (resource table, what the model shows)
    let cases = [
        ("replica = \"r0\"", "replica r0"),
        (
            "mount = \"/srv\"\ndevice = \"/dev/sdc\"\nfstype = \"ext4\"",
            "mount /srv",
        ),
        (
            "ip = \"198.51.100.20/32\"\ninterface = \"eth0\"",
            "ip 198.51.100.20/32 on eth0",
        ),
        ("unit = \"getty@tty1.service\"", "unit getty@tty1.service"),
        ("unit = \"backup.timer\"", "unit backup.timer"),
        ("unit = \"multi-user.target\"", "unit multi-user.target"),
        (
            "unit = \"sys-fs-fuse-connections.mount\"",
            "unit sys-fs-fuse-connections.mount",
        ),
        ("script = \"/etc/init.d/x\"", "script /etc/init.d/x"),
    ];
    for (table, label) in cases {
        let group = format!(
            "\n[[group]]\nname = \"g\"\npreferred = \"node1\"\n\n[[group.resource]]\n{table}\n"
        );
        let text = format!("{BASE}{REPLICA}{group}");
        let config = parse(&text, path())
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .config;
        let labels: Vec<String> = config.groups[0]
            .resources
            .iter()
            .map(Resource::label)
            .collect();
        assert_eq!(labels, [label], "{table}");
    }
}

#[test]
fn each_broken_group_is_placed_at_its_line_and_key_with_what_is_valid() {
    const NODES: &str =
        "nodes = [\"node1\", \"node2\"] (most preferred first) or preferred = \"node1\"";
    const NODE_NAME: &str = "a node name: \"node1\", \"node2\"";
    const GROUP_NAME: &str = "1 to 32 characters of A-Z a-z 0-9 _ -, e.g. \"web\"";
    let preferred = |to: &'static str| ("preferred = \"node1\"", to);
    // (what, edits of GROUP, text on the error's line, key, message, hint)
    let cases: &[(&str, Edits, &str, &str, &str, &str)] = &[
        (
            "bad name",
            &[("name = \"web\"", "name = \"web site\"")],
            "name = ",
            "group[0].name",
            "invalid group name \"web site\"",
            GROUP_NAME,
        ),
        (
            "a dot is not in a name",
            &[("name = \"web\"", "name = \"web.1\"")],
            "name = ",
            "group[0].name",
            "invalid group name \"web.1\"",
            GROUP_NAME,
        ),
        (
            "missing name: at the header",
            &[("name = \"web\"\n", "")],
            "[[group]]",
            "group[0].name",
            "missing",
            GROUP_NAME,
        ),
        (
            "neither nodes nor preferred: at the header",
            &[(("preferred = \"node1\"\n"), "")],
            "[[group]]",
            "group[0].nodes",
            "missing: a group needs nodes or preferred, to know where it runs",
            NODES,
        ),
        (
            "both nodes and preferred",
            &[preferred("preferred = \"node1\"\nnodes = [\"node1\"]")],
            "preferred = ",
            "group[0].preferred",
            "nodes and preferred both say where the group runs",
            "one of them: nodes = [...] in an order of your own, or preferred = NODE for \
             that node first and then the others in file order",
        ),
        (
            "unknown preferred node",
            &[preferred("preferred = \"node9\"")],
            "preferred = ",
            "group[0].preferred",
            "no node is named \"node9\"",
            NODE_NAME,
        ),
        (
            "unknown node in nodes",
            &[preferred("nodes = [\"node1\", \"node9\"]")],
            "nodes = ",
            "group[0].nodes[1]",
            "no node is named \"node9\"",
            NODE_NAME,
        ),
        (
            "a node twice",
            &[preferred("nodes = [\"node1\", \"node2\", \"node1\"]")],
            "nodes = ",
            "group[0].nodes[2]",
            "node1 is listed twice (also nodes[0])",
            "each node once, most preferred first",
        ),
        (
            "no nodes",
            &[preferred("nodes = []")],
            "nodes = ",
            "group[0].nodes",
            "no nodes: the group could run nowhere",
            NODES,
        ),
        (
            "monitor-interval too short",
            &[preferred(
                "preferred = \"node1\"\nmonitor-interval = \"50ms\"",
            )],
            "monitor-interval = ",
            "group[0].monitor-interval",
            "monitor-interval (50ms) is too short",
            "100ms or longer (default 5s)",
        ),
        (
            "monitor-interval without a unit",
            &[preferred("preferred = \"node1\"\nmonitor-interval = \"5\"")],
            "monitor-interval = ",
            "group[0].monitor-interval",
            "\"5\" has no unit",
            "durations need a unit, e.g. \"200ms\" or \"2s\"",
        ),
        (
            "failure-threshold 0",
            &[preferred("preferred = \"node1\"\nfailure-threshold = 0")],
            "failure-threshold = ",
            "group[0].failure-threshold",
            "failure-threshold must be at least 1",
            "1 (move to the next node at the first failure) or more (default 3)",
        ),
        (
            "a resource of no kind: at its header",
            &[("unit = \"apache2.service\"", "stop-timeout = \"10s\"")],
            "[[group.resource]]",
            "group[0].resource[3]",
            "a resource needs a kind: replica, mount, ip, unit, script or ocf",
            "one of replica, mount, ip, unit, script or ocf, e.g. unit = \"apache2.service\"",
        ),
        (
            "a resource of two kinds",
            &[(
                "unit = \"apache2.service\"",
                "unit = \"apache2.service\"\nscript = \"/usr/local/bin/x\"",
            )],
            "script = ",
            "group[0].resource[3].script",
            "unit and script in one resource: a resource is of one kind",
            "one [[group.resource]] table each, in start order",
        ),
        (
            "a key of another kind",
            &[(
                "unit = \"apache2.service\"",
                "unit = \"apache2.service\"\nfstype = \"ext4\"",
            )],
            "fstype = ",
            "group[0].resource[3].fstype",
            "fstype is only for mount resources",
            "remove it from this unit resource",
        ),
        (
            "args on a unit",
            &[(
                "unit = \"apache2.service\"",
                "unit = \"apache2.service\"\nargs = [\"-k\"]",
            )],
            "args = ",
            "group[0].resource[3].args",
            "args is only for script resources",
            "remove it from this unit resource",
        ),
        (
            "unknown replica",
            &[
                ("replica = \"r0\"", "replica = \"r9\""),
                ("device = \"r0\"", "device = \"/dev/sdc\""),
            ],
            "replica = ",
            "group[0].resource[0].replica",
            "no replica is named \"r9\"",
            "a replica's name: \"r0\"",
        ),
        (
            "a mount of the replica's device before the replica",
            &[
                ("replica = \"r0\"\n\n[[group.resource]]\n", ""),
                (
                    "fstype = \"ext4\"\n",
                    "fstype = \"ext4\"\n\n[[group.resource]]\nreplica = \"r0\"\n",
                ),
            ],
            "device = ",
            "group[0].resource[0].device",
            "mounts replica r0's device before group[0].resource[1] starts the replica",
            "a [[group.resource]] with replica = \"r0\" above this mount",
        ),
        (
            "a mount of a replica the group does not start",
            &[("replica = \"r0\"\n\n[[group.resource]]\n", "")],
            "device = ",
            "group[0].resource[0].device",
            "mounts replica r0's device, but this group does not start r0",
            "a [[group.resource]] with replica = \"r0\" above this mount",
        ),
        (
            "the replica's device by its path is the same rule",
            &[
                ("replica = \"r0\"\n\n[[group.resource]]\n", ""),
                ("device = \"r0\"", "device = \"/dev/duet/r0\""),
            ],
            "device = ",
            "group[0].resource[0].device",
            "mounts replica r0's device, but this group does not start r0",
            "a [[group.resource]] with replica = \"r0\" above this mount",
        ),
        (
            "a mount of a replica's backing disk",
            &[("device = \"r0\"", "device = \"/dev/sdb1\"")],
            "device = ",
            "group[0].resource[1].device",
            "/dev/sdb1 is replica r0's disk on node2: mounting it bypasses replication",
            "\"r0\", the replica's name, mounts its device (/dev/duet/r0)",
        ),
        (
            "a mount's device neither a replica nor a path",
            &[("device = \"r0\"", "device = \"sdc1\"")],
            "device = ",
            "group[0].resource[1].device",
            "no replica is named \"sdc1\"",
            "a replica's name (\"r0\") or an absolute path of a device, e.g. \"/dev/sdc1\"",
        ),
        (
            "a mount without a device: at its header",
            &[("device = \"r0\"\n", "")],
            "[[group.resource]]\nmount",
            "group[0].resource[1].device",
            "missing",
            "a replica's name (\"r0\") or an absolute path of a device, e.g. \"/dev/sdc1\"",
        ),
        (
            "a relative mountpoint",
            &[("mount = \"/mnt/shared\"", "mount = \"mnt/shared\"")],
            "mount = ",
            "group[0].resource[1].mount",
            "\"mnt/shared\" is not an absolute path",
            "an absolute path of the folder to mount on, e.g. \"/mnt/shared\"",
        ),
        (
            "a mount on /",
            &[("mount = \"/mnt/shared\"", "mount = \"/\"")],
            "mount = ",
            "group[0].resource[1].mount",
            "\"/\" names no file",
            "an absolute path of the folder to mount on, e.g. \"/mnt/shared\"",
        ),
        (
            "a mountpoint with ..",
            &[("mount = \"/mnt/shared\"", "mount = \"/mnt/../shared\"")],
            "mount = ",
            "group[0].resource[1].mount",
            "\"/mnt/../shared\" goes up a folder with \"..\"",
            "an absolute path of the folder to mount on, e.g. \"/mnt/shared\"",
        ),
        (
            "a mount without fstype: at its header",
            &[("fstype = \"ext4\"\n", "")],
            "[[group.resource]]\nmount",
            "group[0].resource[1].fstype",
            "missing",
            "a filesystem type as mount -t takes it, e.g. \"ext4\" or \"xfs\"",
        ),
        (
            "a bad fstype",
            &[("fstype = \"ext4\"", "fstype = \"ext4,xfs\"")],
            "fstype = ",
            "group[0].resource[1].fstype",
            "\"ext4,xfs\" is not a filesystem type",
            "a filesystem type as mount -t takes it, e.g. \"ext4\" or \"xfs\"",
        ),
        (
            "options with a space",
            &[(
                "fstype = \"ext4\"",
                "fstype = \"ext4\"\noptions = \"noatime, nodev\"",
            )],
            "options = ",
            "group[0].resource[1].options",
            "\"noatime, nodev\": mount options have no spaces",
            "options separated by commas, without spaces, e.g. \"noatime,nodev\" (default: none)",
        ),
        (
            "an unknown fsck",
            &[("fstype = \"ext4\"", "fstype = \"ext4\"\nfsck = \"always\"")],
            "fsck = ",
            "group[0].resource[1].fsck",
            "\"always\" is not an fsck setting",
            "\"auto\" or \"never\" (default \"auto\")",
        ),
        (
            "an address without a prefix",
            &[("ip = \"198.51.100.10/24\"", "ip = \"198.51.100.10\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "\"198.51.100.10\" has no prefix length",
            "the address with the prefix length of its network, e.g. \"198.51.100.10/24\"",
        ),
        (
            "an IPv6 address without a prefix",
            &[("ip = \"198.51.100.10/24\"", "ip = \"2001:db8::10\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "\"2001:db8::10\" has no prefix length",
            "the address with the prefix length of its network, e.g. \"2001:db8::10/64\"",
        ),
        (
            "not an address at all",
            &[("ip = \"198.51.100.10/24\"", "ip = \"www\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "\"www\" is not an IP address with a prefix length",
            "an IPv4 or IPv6 address with its prefix length, e.g. \"198.51.100.10/24\" or \
             \"2001:db8::10/64\"",
        ),
        (
            "not an address before the prefix",
            &[("ip = \"198.51.100.10/24\"", "ip = \"198.51.100/24\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "\"198.51.100\" is not an IP address",
            "an IPv4 or IPv6 address with its prefix length, e.g. \"198.51.100.10/24\" or \
             \"2001:db8::10/64\"",
        ),
        (
            "an IPv4 prefix over 32",
            &[("ip = \"198.51.100.10/24\"", "ip = \"198.51.100.10/33\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "/33 is not a prefix length of an IPv4 address",
            "1 to 32, e.g. \"198.51.100.10/24\"",
        ),
        (
            "a prefix 0",
            &[("ip = \"198.51.100.10/24\"", "ip = \"2001:db8::10/0\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "/0 is not a prefix length of an IPv6 address",
            "1 to 128, e.g. \"2001:db8::10/64\"",
        ),
        (
            "the network's own address",
            &[("ip = \"198.51.100.10/24\"", "ip = \"198.51.100.0/24\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "198.51.100.0 is the network address of 198.51.100.0/24",
            "a host address in it, e.g. \"198.51.100.1/24\"",
        ),
        (
            "the network's broadcast address",
            &[("ip = \"198.51.100.10/24\"", "ip = \"198.51.100.255/24\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "198.51.100.255 is the broadcast address of 198.51.100.0/24",
            "a host address in it, e.g. \"198.51.100.1/24\"",
        ),
        (
            "a multicast address",
            &[("ip = \"198.51.100.10/24\"", "ip = \"239.1.1.1/24\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "239.1.1.1 is not a host address",
            "an IPv4 or IPv6 address with its prefix length, e.g. \"198.51.100.10/24\" or \
             \"2001:db8::10/64\"",
        ),
        (
            "a node's own address",
            &[("ip = \"198.51.100.10/24\"", "ip = \"198.51.100.2/24\"")],
            "ip = ",
            "group[0].resource[2].ip",
            "198.51.100.2 is node2's own address on link public",
            "an address no node has: the floating one moves between nodes",
        ),
        (
            "an address without an interface: at its header",
            &[("interface = \"eth0\"\n", "")],
            "[[group.resource]]\nip",
            "group[0].resource[2].interface",
            "missing",
            "a network interface name of 1 to 15 characters, e.g. \"eth1\"",
        ),
        (
            "an interface name too long",
            &[("interface = \"eth0\"", "interface = \"eth0123456789abc\"")],
            "interface = ",
            "group[0].resource[2].interface",
            "invalid interface name \"eth0123456789abc\"",
            "a network interface name of 1 to 15 characters, e.g. \"eth1\"",
        ),
        (
            "a unit without a type",
            &[("unit = \"apache2.service\"", "unit = \"apache2\"")],
            "unit = ",
            "group[0].resource[3].unit",
            "\"apache2\" has no unit type",
            "\"apache2.service\", or the name with another type: .service, .socket, .target, \
             .mount, .automount, .swap, .path, .timer",
        ),
        (
            "a device unit",
            &[("unit = \"apache2.service\"", "unit = \"dev-sdb.device\"")],
            "unit = ",
            "group[0].resource[3].unit",
            "\"dev-sdb.device\" is a .device unit, which a resource cannot start and stop",
            "a unit ending in .service, .socket, .target, .mount, .automount, .swap, .path, .timer",
        ),
        (
            "a template without an instance",
            &[("unit = \"apache2.service\"", "unit = \"apache2@.service\"")],
            "unit = ",
            "group[0].resource[3].unit",
            "\"apache2@.service\" is a template: it needs an instance",
            "\"apache2@INSTANCE.service\", e.g. \"apache2@1.service\"",
        ),
        (
            "a unit name with a space",
            &[("unit = \"apache2.service\"", "unit = \"apache 2.service\"")],
            "unit = ",
            "group[0].resource[3].unit",
            "\"apache 2.service\" is not a unit name",
            "a systemd unit name of letters, digits and : - _ . \\ @, e.g. \"apache2.service\"",
        ),
        (
            "a relative script",
            &[(
                "unit = \"apache2.service\"",
                "script = \"pageme\"\nargs = [\"1\"]",
            )],
            "script = ",
            "group[0].resource[3].script",
            "\"pageme\" is not an absolute path",
            "an absolute path of the script, e.g. \"/etc/ha.d/resource.d/pageme\"",
        ),
        (
            "a start-timeout of 0",
            &[(
                "unit = \"apache2.service\"",
                "unit = \"apache2.service\"\nstart-timeout = \"0s\"",
            )],
            "start-timeout = ",
            "group[0].resource[3].start-timeout",
            "start-timeout 0ms would fail every time",
            "a duration above 0ms (default 90s for a unit resource)",
        ),
        (
            "a stop-timeout without a unit",
            &[(
                "replica = \"r0\"",
                "replica = \"r0\"\nstop-timeout = \"30\"",
            )],
            "stop-timeout = ",
            "group[0].resource[0].stop-timeout",
            "\"30\" has no unit",
            "durations need a unit, e.g. \"200ms\" or \"2s\"",
        ),
    ];
    for (what, edits, line_with, key, message, hint) in cases {
        let text = edited(what, GROUP, edits);
        assert_exact_error(what, &text, line_with, key, message, hint);
    }
}

#[test]
fn a_group_runs_only_where_its_replica_has_a_disk() {
    // node3 has no copy of r0, and preferred takes every node.
    let text = format!("{}{REPLICA}{GROUP}", base3());
    assert_exact_error(
        "preferred on three nodes",
        &text,
        "replica = ",
        "group[0].resource[0].replica",
        "replica r0 has no disk on node3, where this group may run",
        "only nodes with a disk for r0 in the group: nodes = [\"node1\", \"node2\"]",
    );
    let only3 = GROUP.replacen("preferred = \"node1\"", "nodes = [\"node3\"]", 1);
    let text = format!("{}{REPLICA}{only3}", base3());
    assert_exact_error(
        "only on the tie-breaker",
        &text,
        "replica = ",
        "group[0].resource[0].replica",
        "replica r0 has no disk on node3, where this group may run",
        "only nodes with a disk for r0 in the group: nodes = [\"node1\", \"node2\"]",
    );
    let two = GROUP.replacen("preferred = \"node1\"", "nodes = [\"node2\", \"node1\"]", 1);
    let config = parse(&format!("{}{REPLICA}{two}", base3()), path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(config.groups[0].nodes, [NodeId(1), NodeId(0)]);
}

/// A second group for the rules across groups: its own node order, its
/// own replica, address and unit.
const DB: &str = r#"
[[group]]
name = "db"
nodes = ["node2", "node1"]

[[group.resource]]
replica = "r1"

[[group.resource]]
mount = "/srv/db"
device = "r1"
fstype = "xfs"

[[group.resource]]
ip = "198.51.100.11/24"
interface = "eth0"

[[group.resource]]
unit = "postgresql.service"
"#;

#[test]
fn groups_share_no_name_replica_mountpoint_address_or_unit() {
    let r1 = REPLICA
        .replacen("name = \"r0\"", "name = \"r1\"", 1)
        .replacen(
            "node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\"",
            "node1 = \"/dev/sdc\", node2 = \"/dev/sdc\"",
            1,
        );
    let both = |db: &str| format!("{BASE}{REPLICA}{r1}{GROUP}{db}");
    let config = parse(&both(DB), path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let names: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["web", "db"]);
    // (what, edit of DB, text on the error's line, key, message, hint)
    let cases = [
        (
            "same name",
            ("name = \"db\"", "name = \"web\""),
            "name = \"web\"",
            "group[1].name",
            "duplicate group name \"web\" (also group[0])",
            "a name no other group has",
        ),
        (
            "same replica",
            (
                "replica = \"r1\"",
                "replica = \"r0\"\n\n[[group.resource]]\nreplica = \"r1\"",
            ),
            "replica = \"r0\"",
            "group[1].resource[0].replica",
            "replica r0 is also started by group[0].resource[0]",
            "each replica in one group only, the one that uses its data",
        ),
        (
            "same mountpoint, written another way",
            ("mount = \"/srv/db\"", "mount = \"/mnt//shared/\""),
            "mount = ",
            "group[1].resource[1].mount",
            "/mnt/shared is also mounted by group[0].resource[1]",
            "a mountpoint no other resource uses",
        ),
        (
            "same address, another prefix",
            ("ip = \"198.51.100.11/24\"", "ip = \"198.51.100.10/25\""),
            "ip = ",
            "group[1].resource[2].ip",
            "198.51.100.10 is also set by group[0].resource[2]",
            "an address no other resource sets",
        ),
        (
            "same unit",
            (
                "unit = \"postgresql.service\"",
                "unit = \"apache2.service\"",
            ),
            "unit = ",
            "group[1].resource[3].unit",
            "apache2.service is also started by group[0].resource[3]",
            "a unit no other resource starts",
        ),
    ];
    for (what, (from, to), line_with, key, message, hint) in cases {
        let db = DB.replacen(from, to, 1);
        assert_ne!(db, DB, "{what}: the edit did not apply");
        assert_exact_error(what, &both(&db), line_with, key, message, hint);
    }
    // Within one group too: the second of two identical units.
    let twice = GROUP.to_string() + "\n[[group.resource]]\nunit = \"apache2.service\"\n";
    assert_exact_error(
        "a unit twice in one group",
        &format!("{BASE}{REPLICA}{twice}"),
        "unit = ",
        "group[0].resource[4].unit",
        "apache2.service is also started by group[0].resource[3]",
        "a unit no other resource starts",
    );
}

#[test]
fn errors_in_different_groups_come_together_with_all_others() {
    let r1 = REPLICA
        .replacen("name = \"r0\"", "name = \"r1\"", 1)
        .replacen(
            "node1 = \"/dev/sdb\", node2 = \"/dev/sdb1\"",
            "node1 = \"/dev/sdc\", node2 = \"/dev/sdc\"",
            1,
        );
    let web = GROUP.replacen("unit = \"apache2.service\"", "unit = \"apache2\"", 1);
    let db = DB
        .replacen(
            "nodes = [\"node2\", \"node1\"]",
            "nodes = [\"node2\", \"node4\"]",
            1,
        )
        .replacen("fstype = \"xfs\"", "fstype = \"xfs\"\nfsck = \"maybe\"", 1);
    let text = format!(
        "{}{REPLICA}{r1}{web}{db}",
        BASE.replacen("deadtime = \"1s\"", "deadtime = \"500ms\"", 1)
    );
    let errors = errors_of(&text);
    let got: Vec<(usize, &str, &str)> = errors
        .iter()
        .map(|e| (e.line, e.key.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                line_of(&text, "deadtime = "),
                "timings.deadtime",
                "deadtime (500ms) must be longer than warntime (600ms)"
            ),
            (
                line_of(&text, "unit = \"apache2\""),
                "group[0].resource[3].unit",
                "\"apache2\" has no unit type"
            ),
            (
                line_of(&text, "node4"),
                "group[1].nodes[1]",
                "no node is named \"node4\""
            ),
            (
                line_of(&text, "fsck = "),
                "group[1].resource[1].fsck",
                "\"maybe\" is not an fsck setting"
            ),
        ],
        "{}",
        ConfigErrors {
            errors: errors.clone()
        }
    );
}

#[test]
fn a_group_without_resources_is_a_warning() {
    let text = format!("{BASE}\n[[group]]\nname = \"idle\"\npreferred = \"node2\"\n");
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(usize, &str, &str, Option<&str>)> = loaded
        .warnings
        .iter()
        .map(|w| {
            (
                w.line,
                w.key.as_str(),
                w.message.as_str(),
                w.hint.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(
            line_of(&text, "[[group]]"),
            "group[0]",
            "group idle has no resources: it starts nothing",
            Some("[[group.resource]] tables below this [[group]]")
        )]
    );
    assert_eq!(loaded.config.groups[0].nodes, [NodeId(1), NodeId(0)]);
    assert!(loaded.config.groups[0].resources.is_empty());
}

#[test]
fn serde_errors_in_groups_name_the_key_and_what_is_valid() {
    let text = edited("misspelt", GROUP, &[("fstype = ", "fs-type = ")]);
    let e = &errors_of(&text)[0];
    assert_eq!(
        (e.line, e.key.as_str(), e.message.as_str()),
        (
            line_of(&text, "fs-type"),
            "group[0].resource[1].fs-type",
            "unknown field `fs-type`"
        )
    );
    let hint = e.hint.as_deref().unwrap_or_default();
    for key in [
        "`replica`",
        "`mount`",
        "`fstype`",
        "`interface`",
        "`stop-timeout`",
    ] {
        assert!(hint.contains(key), "{hint}");
    }
    let text = edited(
        "a string",
        GROUP,
        &[("preferred = \"node1\"", "nodes = \"node1\"")],
    );
    let e = &errors_of(&text)[0];
    assert_eq!(
        (e.key.as_str(), e.hint.as_deref()),
        (
            "group[0].nodes",
            Some("an array, e.g. [\"node1\", \"node2\"]")
        ),
        "{e}"
    );
    // A syntax error in the second group's resource names that resource.
    let text = format!(
        "{BASE}{REPLICA}{GROUP}{}",
        DB.replacen("\"xfs\"", "\"xfs", 1)
    );
    let e = &errors_of(&text)[0];
    assert_eq!(
        (e.line, e.key.as_str()),
        (line_of(&text, "\"xfs"), "group[1].resource[1]"),
        "{e}"
    );
}

#[test]
fn groups_that_would_not_fit_in_a_heartbeat_are_refused() {
    let group = |i: usize| {
        format!(
            "\n[[group]]\nname = \"{i:02}{}\"\npreferred = \"node1\"\n\n[[group.resource]]\nunit = \"u{i}.service\"\n",
            "g".repeat(30)
        )
    };
    let eight: String = (0..8).map(group).collect();
    let text = format!("{BASE}{eight}");
    parse(&text, path()).unwrap_or_else(|e| panic!("eight fit: {e}"));
    let forty: String = (0..40).map(group).collect();
    let text = format!("{BASE}{forty}");
    let errors = match parse(&text, path()) {
        Ok(_) => panic!("forty groups of 32-byte names cannot fit"),
        Err(e) => e.to_string(),
    };
    assert!(
        errors.contains("40 groups and 0 replicas do not fit in a heartbeat"),
        "{errors}"
    );
}

/// Each replica's fencing notes (record 5) ride in every heartbeat too:
/// groups that fit alone may not fit beside many replicas.
#[test]
fn replicas_count_toward_the_heartbeat_room_with_the_groups() {
    let group = |i: usize| {
        format!(
            "\n[[group]]\nname = \"{i:02}{}\"\npreferred = \"node1\"\n\n[[group.resource]]\nunit = \"u{i}.service\"\n",
            "g".repeat(30)
        )
    };
    let replica = |i: usize| {
        format!(
            "\n[[replica]]\nname = \"{i:02}{}\"\ndisk = {{ node1 = \"/dev/sd{i}\", node2 = \"/dev/sd{i}\" }}\n\
             address = {{ node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }}\n",
            "r".repeat(30)
        )
    };
    let groups: String = (0..8).map(group).collect();
    let two: String = (0..2).map(replica).collect();
    let text = format!("{BASE}{groups}{two}");
    parse(&text, path()).unwrap_or_else(|e| panic!("eight groups and two replicas fit: {e}"));
    let twelve: String = (0..12).map(replica).collect();
    let text = format!("{BASE}{groups}{twelve}");
    let errors = match parse(&text, path()) {
        Ok(_) => panic!("twelve replicas of 32-byte names beside the groups cannot fit"),
        Err(e) => e.to_string(),
    };
    assert!(
        errors.contains("8 groups and 12 replicas do not fit in a heartbeat"),
        "{errors}"
    );
}

#[test]
fn fencing_is_read_with_its_defaults_and_bad_values_are_placed() {
    let base = base_without_fencing();
    let text = format!(
        "{base}\n[fencing]\ncommand = \"/usr/local/sbin/fence-pdu\"\nargs = [\"--pdu\", \"198.51.100.20\"]\n"
    );
    let config = parse(&text, path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let f = config.fencing.expect("fencing");
    assert_eq!(f.command, PathBuf::from("/usr/local/sbin/fence-pdu"));
    assert_eq!(f.args, ["--pdu", "198.51.100.20"]);
    assert_eq!(
        (f.timeout, f.retry_delay),
        (Duration::from_secs(60), Duration::from_secs(5))
    );
    let plain = parse(&base, path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.config.fencing, None);

    let bad = format!("{base}\n[fencing]\ncommand = \"fence-pdu\"\ntimeout = \"0s\"\n");
    let errors = match parse(&bad, path()) {
        Ok(_) => panic!("a relative command and a zero timeout are errors"),
        Err(e) => e.to_string(),
    };
    assert!(errors.contains("fencing.command"), "{errors}");
    assert!(errors.contains("timeout must be longer than 0"), "{errors}");
    let missing = format!("{base}\n[fencing]\nargs = [\"x\"]\n");
    let errors = match parse(&missing, path()) {
        Ok(_) => panic!("a [fencing] without command is an error"),
        Err(e) => e.to_string(),
    };
    assert!(errors.contains("[fencing] needs a command"), "{errors}");
}

#[test]
fn two_nodes_with_groups_and_no_means_to_fence_are_told_what_that_costs() {
    let unfenced = format!("{}{REPLICA}{GROUP}", base_without_fencing());
    let said = |text: &str| -> Vec<String> {
        let loaded = parse(text, path()).unwrap_or_else(|e| panic!("{e}"));
        loaded
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.key.as_str(), w.message))
            .collect()
    };
    let w = said(&unfenced);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("takes nothing over") && w[0].contains("confirm-off"),
        "{w:?}"
    );
    let trusting = unfenced.replacen("[cluster]\n", "[cluster]\nunfenced-takeover = true\n", 1);
    let loaded = parse(&trusting, path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.cluster.unfenced_takeover);
    let w = said(&trusting);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("cluster.unfenced-takeover") && w[0].contains("split brain"),
        "{w:?}"
    );
    let both = format!("{BASE}{REPLICA}{GROUP}").replacen(
        "[cluster]\n",
        "[cluster]\nunfenced-takeover = true\n",
        1,
    );
    let w = said(&both);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("has no effect"), "{w:?}");
    // Without groups there is nothing to take over, and nothing to say.
    assert!(said(&base_without_fencing()).is_empty());
}

#[test]
fn stickiness_without_auto_failback_is_a_warning() {
    let text = format!("{BASE}{REPLICA}{GROUP}").replacen(
        "preferred = \"node1\"",
        "preferred = \"node1\"\nstickiness = 2",
        1,
    );
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    let said: Vec<&str> = loaded.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        said,
        ["group web: stickiness has no effect with auto-failback off"]
    );
    assert_eq!(loaded.config.groups[0].stickiness, 2);
}

#[test]
fn wait_for_all_is_off_unless_asked() {
    assert!(!base_config().cluster.wait_for_all);
    let text = BASE.replacen("[cluster]\n", "[cluster]\nwait-for-all = true\n", 1);
    let config = parse(&text, path())
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert!(config.cluster.wait_for_all);
}

#[test]
fn self_fence_defaults_to_one_and_a_half_deadtimes_and_warns_when_too_late() {
    let text = format!(
        "{BASE}\n[self-fence]\ncommand = \"/usr/bin/systemctl\"\nargs = [\"reboot\", \"--force\", \"--force\"]\n"
    );
    let loaded = parse(&text, path()).unwrap_or_else(|e| panic!("{e}"));
    let sf = loaded.config.self_fence.expect("self-fence");
    assert_eq!(sf.after, loaded.config.timings.deadtime * 3 / 2);
    assert_eq!(sf.args, ["reboot", "--force", "--force"]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let late = text.replacen("args =", "after = \"60s\"\nargs =", 1);
    let loaded = parse(&late, path()).unwrap_or_else(|e| panic!("{e}"));
    let said: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(said, ["self-fence.after"]);
    let errors = match parse(&format!("{BASE}\n[self-fence]\nafter = \"1s\"\n"), path()) {
        Ok(_) => panic!("a [self-fence] without command is an error"),
        Err(e) => e.to_string(),
    };
    assert!(errors.contains("[self-fence] needs a command"), "{errors}");
    // Not within the deadtime a node holding the witness's vote holds on.
    let early = text.replacen("args =", "after = \"500ms\"\nargs =", 1);
    let errors = match parse(&early, path()) {
        Ok(_) => panic!("after within the deadtime is an error"),
        Err(e) => e.to_string(),
    };
    assert!(
        errors.contains("must be longer than the deadtime"),
        "{errors}"
    );
}

#[test]
fn crc_is_taken_with_the_opt_in_and_only_then() {
    let crc = BASE.replacen(
        "key-file = \"duet.key\"",
        "key-file = \"duet.key\"\nauth = \"crc\"\nallow-insecure-crc = true",
        1,
    );
    let loaded = parse(&crc, path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.config.cluster.auth,
        crate::membership::auth::AuthAlgorithm::Crc
    );
    let refused = crc.replacen("allow-insecure-crc = true", "allow-insecure-crc = false", 1);
    assert_eq!(errors_of(&refused)[0].key, "cluster.auth");
}

#[test]
fn metrics_are_off_by_default_and_on_the_loopback_only() {
    let plain = parse(BASE, path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.config.metrics, None);
    for (table, at) in [
        ("[metrics]\n", "127.0.0.1:9649"),
        ("[metrics]\nlisten = \"::1\"\n", "[::1]:9649"),
        ("[metrics]\nlisten = \"127.0.0.2:9100\"\n", "127.0.0.2:9100"),
    ] {
        let loaded = parse(&format!("{BASE}\n{table}"), path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.config.metrics, socket(at), "{table}");
    }
    let cases = [
        (
            "listen = \"198.51.100.1:9649\"",
            "is not a loopback address",
        ),
        ("listen = \"0.0.0.0\"", "is not a loopback address"),
        ("listen = \"localhost:9649\"", "is not an IP address"),
        ("listen = \"127.0.0.1:0\"", "port 0 is not a port"),
    ];
    for (line, message) in cases {
        let text = format!("{BASE}\n[metrics]\n{line}\n");
        assert_one_error(line, &text, line, "metrics.listen", message, "SSH tunnel");
    }
}
