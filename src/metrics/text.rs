//! The status as Prometheus text format 0.0.4. States are one series per
//! state the thing can be in, 1 for the current one and 0 for the others,
//! so a graph or an alert reads `duet_node_state{state="dead"} == 1`.
//! Names follow Prometheus's conventions: `duet_` first, base units
//! (bytes, seconds), `_total` on counters.

use std::fmt::Write;

use crate::bus::{ClusterStatus, GroupStatus, ReplicaStatus};

const NODE_STATES: &[&str] = &["init", "up", "late", "dead"];
const GROUP_STATES: &[&str] = &[
    "stopped", "starting", "running", "stopping", "moving", "failed",
];
const ROLES: &[&str] = &["primary", "secondary"];
const PEER_ROLES: &[&str] = &["primary", "secondary", "unknown"];
const CONNECTIONS: &[&str] = &["standalone", "connecting", "handshake", "connected"];
const REPLICATIONS: &[&str] = &[
    "off",
    "established",
    "syncsource",
    "synctarget",
    "pausedsync",
    "verifysource",
    "verifytarget",
];
const DISKS: &[&str] = &[
    "diskless",
    "attaching",
    "inconsistent",
    "outdated",
    "consistent",
    "uptodate",
    "failed",
];
const PEER_DISKS: &[&str] = &[
    "dunknown",
    "diskless",
    "inconsistent",
    "outdated",
    "consistent",
    "uptodate",
    "failed",
];

/// The replica counters: (key in Counters, metric, kind, help).
const COUNTERS: &[(&str, &str, &str, &str)] = &[
    (
        "sent",
        "duet_replica_sent_bytes_total",
        "counter",
        "Bytes sent to the peer.",
    ),
    (
        "received",
        "duet_replica_received_bytes_total",
        "counter",
        "Bytes received from the peer.",
    ),
    (
        "written",
        "duet_replica_written_bytes_total",
        "counter",
        "Bytes written to the backing disk.",
    ),
    (
        "read",
        "duet_replica_read_bytes_total",
        "counter",
        "Bytes read from the backing disk.",
    ),
    (
        "resynced",
        "duet_replica_resynced_bytes_total",
        "counter",
        "Bytes resynced.",
    ),
    (
        "al-writes",
        "duet_replica_activity_log_writes_total",
        "counter",
        "Activity-log writes.",
    ),
    (
        "bitmap-writes",
        "duet_replica_bitmap_writes_total",
        "counter",
        "Bitmap writes.",
    ),
    (
        "pending",
        "duet_replica_pending_requests",
        "gauge",
        "Requests sent to the peer, not answered yet.",
    ),
    (
        "unacked",
        "duet_replica_unacked_requests",
        "gauge",
        "The peer's requests not answered yet.",
    ),
    (
        "refused-connections",
        "duet_replica_refused_connections_total",
        "counter",
        "Connections to the replication port refused (strangers, failed handshakes).",
    ),
];

/// One metric family: its HELP and TYPE lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// One series per state, 1 for `current` (added when not among them).
    fn states(&mut self, name: &str, labels: &[(&str, &str)], states: &[&str], current: &str) {
        let mut all: Vec<&str> = states.to_vec();
        if !current.is_empty() && !all.contains(&current) {
            all.push(current);
        }
        for s in all {
            let mut l = labels.to_vec();
            l.push(("state", s));
            self.sample(name, &l, flag(s == current));
        }
    }
}

/// Label values escaped as the text format wants: backslash, quote and
/// newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The whole exposition for one scrape.
pub fn render(s: &ClusterStatus) -> String {
    let mut out = String::new();
    cluster(&mut out, s);
    nodes(&mut out, s);
    groups(&mut out, &s.groups);
    replicas(&mut out, &s.replicas);
    out
}

fn cluster(out: &mut String, s: &ClusterStatus) {
    let gauges = [
        (
            "duet_quorate",
            "Whether this node's partition has quorum.",
            s.quorate,
        ),
        (
            "duet_standby",
            "Whether this node is in standby.",
            s.standby,
        ),
        (
            "duet_maintenance",
            "Whether duet starts and stops nothing here.",
            s.maintenance,
        ),
    ];
    for (name, help, value) in gauges {
        Family::new(out, name, "gauge", help).sample(name, &[], flag(value));
    }
    let name = "duet_heartbeats_dropped_total";
    let mut f = Family::new(out, name, "counter", "Heartbeats dropped, by reason.");
    for (reason, n) in &s.dropped {
        f.sample(name, &[("reason", reason)], *n as f64);
    }
    let name = "duet_ping_node_reachable";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "Whether this node reaches the ping node.",
    );
    for p in &s.ping_nodes {
        f.sample(name, &[("address", &p.address)], flag(p.reachable));
    }
}

fn nodes(out: &mut String, s: &ClusterStatus) {
    let name = "duet_node_state";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "Each node's state as this node sees it.",
    );
    for n in &s.nodes {
        f.states(name, &[("node", &n.name)], NODE_STATES, &n.state);
    }
    let name = "duet_node_ping_reachable";
    let mut f = Family::new(out, name, "gauge", "Ping nodes each node reaches.");
    for n in &s.nodes {
        f.sample(name, &[("node", &n.name)], f64::from(n.ping_reachable));
    }
    let name = "duet_node_votes";
    let mut f = Family::new(out, name, "gauge", "Each node's votes for quorum.");
    for n in &s.nodes {
        f.sample(name, &[("node", &n.name)], f64::from(n.votes));
    }
    let name = "duet_node_config_differs";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "Whether the node announces another config than this node's.",
    );
    for n in &s.nodes {
        f.sample(
            name,
            &[("node", &n.name)],
            flag(s.config_differs.contains(&n.name)),
        );
    }
    let name = "duet_link_up";
    let mut f = Family::new(out, name, "gauge", "Whether each node's link is up.");
    for n in &s.nodes {
        for l in &n.links {
            f.sample(
                name,
                &[("node", &n.name), ("link", &l.name)],
                flag(l.state == "up"),
            );
        }
    }
}

fn groups(out: &mut String, groups: &[GroupStatus]) {
    let name = "duet_group_state";
    let mut f = Family::new(out, name, "gauge", "Each group's state on this node.");
    for g in groups {
        f.states(name, &[("group", &g.name)], GROUP_STATES, &g.state);
    }
    let name = "duet_group_running";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "Whether every resource of the group is up where it runs.",
    );
    for g in groups {
        f.sample(name, &[("group", &g.name)], flag(g.running));
    }
    let name = "duet_group_node";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "The node each group runs on (one series, 1).",
    );
    for g in groups.iter().filter(|g| !g.node.is_empty()) {
        f.sample(name, &[("group", &g.name), ("node", &g.node)], 1.0);
    }
    let name = "duet_group_last_transition_seconds";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "How long the group's last start or stop here took.",
    );
    for g in groups {
        if let Some(d) = g.last_duration {
            let to = g.last_transition.as_str();
            f.sample(name, &[("group", &g.name), ("transition", to)], d);
        }
    }
    let name = "duet_group_resource_failures";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "Failures counted toward the group's threshold, per resource.",
    );
    for g in groups {
        for r in &g.resources {
            f.sample(
                name,
                &[("group", &g.name), ("resource", &r.name)],
                f64::from(r.failures),
            );
        }
    }
}

fn replicas(out: &mut String, replicas: &[ReplicaStatus]) {
    type Pick = fn(&ReplicaStatus) -> &str;
    let states: [(&str, &str, &[&str], Pick); 6] = [
        ("duet_replica_role", "This node's role.", ROLES, |r| &r.role),
        (
            "duet_replica_peer_role",
            "The peer's role.",
            PEER_ROLES,
            |r| &r.peer_role,
        ),
        (
            "duet_replica_connection",
            "The link to the peer.",
            CONNECTIONS,
            |r| &r.connection,
        ),
        (
            "duet_replica_replication",
            "What the link does.",
            REPLICATIONS,
            |r| &r.replication,
        ),
        ("duet_replica_disk", "This node's disk.", DISKS, |r| &r.disk),
        (
            "duet_replica_peer_disk",
            "The peer's disk.",
            PEER_DISKS,
            |r| &r.peer_disk,
        ),
    ];
    for (name, help, all, pick) in states {
        let mut f = Family::new(out, name, "gauge", help);
        for r in replicas {
            f.states(name, &[("replica", &r.name)], all, pick(r));
        }
    }
    type Value = fn(&ReplicaStatus) -> Option<f64>;
    let gauges: [(&str, &str, Value); 6] = [
        (
            "duet_replica_out_of_sync_bytes",
            "Bytes marked out of sync.",
            |r| Some(r.out_of_sync_bytes as f64),
        ),
        (
            "duet_replica_sync_progress_ratio",
            "Fraction done of the sync or verify running.",
            |r| r.sync_progress,
        ),
        (
            "duet_replica_sync_speed_bytes_per_second",
            "Speed of the sync running.",
            |r| r.sync_speed.map(|v| v as f64),
        ),
        (
            "duet_replica_sync_eta_seconds",
            "Time left of the sync running.",
            |r| r.sync_eta.map(|v| v as f64),
        ),
        (
            "duet_replica_nbd_clients",
            "NBD clients connected to the export.",
            |r| Some(f64::from(r.clients)),
        ),
        (
            "duet_replica_attached",
            "Whether the block device is attached here.",
            |r| Some(flag(r.attached)),
        ),
    ];
    for (name, help, value) in gauges {
        let mut f = Family::new(out, name, "gauge", help);
        for r in replicas {
            if let Some(v) = value(r) {
                f.sample(name, &[("replica", &r.name)], v);
            }
        }
    }
    for (key, name, kind, help) in COUNTERS {
        let mut f = Family::new(out, name, kind, help);
        for r in replicas {
            f.sample(
                name,
                &[("replica", &r.name)],
                r.counters.get(*key).copied().unwrap_or(0) as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{LinkStatus, NodeStatus};

    #[test]
    fn states_are_one_series_each_and_labels_are_escaped() {
        let s = ClusterStatus {
            quorate: true,
            nodes: vec![NodeStatus {
                name: "node1".into(),
                state: "late".into(),
                links: vec![LinkStatus {
                    name: "cross\"over".into(),
                    state: "up".into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&s);
        assert!(text.contains("duet_quorate 1\n"), "{text}");
        assert!(text.contains("duet_node_state{node=\"node1\",state=\"late\"} 1\n"));
        assert!(text.contains("duet_node_state{node=\"node1\",state=\"up\"} 0\n"));
        assert!(
            text.contains("duet_link_up{node=\"node1\",link=\"cross\\\"over\"} 1\n"),
            "{text}"
        );
        // Every family announced once, before its samples.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut names: Vec<&str> = types.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn an_unlisted_state_still_shows() {
        let s = ClusterStatus {
            groups: vec![GroupStatus {
                name: "web".into(),
                state: "blocked".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&s);
        assert!(
            text.contains("duet_group_state{group=\"web\",state=\"blocked\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("duet_group_state{group=\"web\",state=\"running\"} 0\n"));
    }

    #[test]
    fn every_metric_is_in_docs_metrics_md() {
        let s = ClusterStatus {
            dropped: [("bad-signature".to_string(), 1)].into(),
            ping_nodes: vec![crate::bus::PingStatus::default()],
            nodes: vec![NodeStatus::default()],
            groups: vec![GroupStatus {
                last_duration: Some(1.0),
                ..Default::default()
            }],
            replicas: vec![ReplicaStatus::default()],
            ..Default::default()
        };
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
            .expect("docs/metrics.md");
        for line in render(&s).lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap_or_default();
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not in docs/metrics.md"
            );
        }
    }

    #[test]
    fn numbers_print_plainly() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1e20), "100000000000000000000");
    }
}
