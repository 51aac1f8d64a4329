//! The status as Prometheus text format 0.0.4. States are one series per
//! state the thing can be in, 1 for the current one and 0 for the others,
//! so a graph or an alert reads `duet_node_state{state="dead"} == 1`.
//! Names follow Prometheus's conventions: `duet_` first, base units
//! (bytes, seconds), `_total` on counters.

use std::fmt::Write;

use crate::bus::{ClusterStatus, GroupStatus, NodeStatus, ReplicaStatus};
use crate::export::latency::BOUNDS_US;

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
    let family = (
        "duet_node_ping_reachable",
        "gauge",
        "Ping nodes each node reaches.",
    );
    per_node(out, family, s.nodes.iter(), |n| f64::from(n.ping_reachable));
    let family = ("duet_node_votes", "gauge", "Each node's votes for quorum.");
    per_node(out, family, s.nodes.iter(), |n| f64::from(n.votes));
    let family = (
        "duet_node_config_differs",
        "gauge",
        "Whether the node announces another config than this node's.",
    );
    per_node(out, family, s.nodes.iter(), |n| {
        flag(s.config_differs.contains(&n.name))
    });
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
    heartbeats(out, s);
}

/// Round trips, losses and late spells of each peer's heartbeats, and
/// what each node speaks.
fn heartbeats(out: &mut String, s: &ClusterStatus) {
    let name = "duet_heartbeat_rtt_seconds";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "The last heartbeat round trip to each node over each link (nodes of protocol 2 echo).",
    );
    for n in &s.nodes {
        for l in &n.links {
            if let Some(us) = l.rtt_us {
                let labels = [("node", n.name.as_str()), ("link", l.name.as_str())];
                f.sample(name, &labels, us as f64 / 1e6);
            }
        }
    }
    let peers = || s.nodes.iter().filter(|n| !n.local);
    let family = (
        "duet_heartbeats_lost_total",
        "counter",
        "Each node's heartbeats that never arrived (gaps in its sequence numbers).",
    );
    per_node(out, family, peers(), |n| n.lost_heartbeats as f64);
    let family = (
        "duet_node_late_total",
        "counter",
        "How often each node went late (warntime).",
    );
    per_node(out, family, peers(), |n| n.late_count as f64);
    let name = "duet_node_protocol_info";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "The protocol versions and software each node announced (1).",
    );
    for n in s.nodes.iter().filter(|n| !n.protocol.is_empty()) {
        let labels = [
            ("node", n.name.as_str()),
            ("protocol", n.protocol.as_str()),
            ("software", n.software.as_str()),
        ];
        f.sample(name, &labels, 1.0);
    }
    let family = (
        "duet_node_protocol_incompatible",
        "gauge",
        "Whether the node speaks no protocol version in common with this one.",
    );
    per_node(out, family, peers(), |n| flag(n.incompatible));
}

/// One family (name, kind, help) with a series per node, labelled by its
/// name.
fn per_node<'a>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    nodes: impl Iterator<Item = &'a NodeStatus>,
    value: impl Fn(&NodeStatus) -> f64,
) {
    let mut f = Family::new(out, name, kind, help);
    for n in nodes {
        f.sample(name, &[("node", &n.name)], value(n));
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
    let name = "duet_group_failovers_total";
    let mut f = Family::new(
        out,
        name,
        "counter",
        "Takeovers of the group here from a dead node.",
    );
    for g in groups {
        f.sample(name, &[("group", &g.name)], g.failovers as f64);
    }
    let name = "duet_group_failover_seconds_total";
    let mut f = Family::new(
        out,
        name,
        "counter",
        "Seconds the starts of those takeovers took in all (divide by the count for the mean).",
    );
    for g in groups {
        f.sample(name, &[("group", &g.name)], g.failover_seconds);
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
    let gauges: [(&str, &str, Value); 7] = [
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
        (
            "duet_replica_link_version",
            "The replication protocol version the link up now uses (0: none up).",
            |r| Some(f64::from(r.link_version)),
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
    export_latency(out, replicas);
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

/// One histogram per replica and kind of request; bounds in seconds.
fn export_latency(out: &mut String, replicas: &[ReplicaStatus]) {
    let name = "duet_export_request_duration_seconds";
    let mut f = Family::new(
        out,
        name,
        "histogram",
        "How long the export's NBD requests took to answer, by kind.",
    );
    for r in replicas {
        for h in &r.export_latency {
            let labels = [("replica", r.name.as_str()), ("kind", h.kind.as_str())];
            for (bound, n) in BOUNDS_US.iter().zip(&h.cumulative) {
                let le = number(*bound as f64 / 1e6);
                let mut l = labels.to_vec();
                l.push(("le", &le));
                f.sample(&format!("{name}_bucket"), &l, *n as f64);
            }
            let mut l = labels.to_vec();
            l.push(("le", "+Inf"));
            f.sample(&format!("{name}_bucket"), &l, h.count as f64);
            f.sample(&format!("{name}_sum"), &labels, h.sum_seconds);
            f.sample(&format!("{name}_count"), &labels, h.count as f64);
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
                    rtt_us: None,
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
    fn heartbeats_failovers_and_export_latency_show_as_counted() {
        let latency = crate::export::latency::Latency::default();
        latency.record(
            crate::export::latency::Kind::Write,
            std::time::Duration::from_micros(700),
        );
        let s = ClusterStatus {
            nodes: vec![NodeStatus {
                name: "node2".into(),
                links: vec![LinkStatus {
                    name: "crossover".into(),
                    state: "up".into(),
                    rtt_us: Some(250),
                }],
                lost_heartbeats: 3,
                late_count: 1,
                protocol: "1".into(),
                ..Default::default()
            }],
            groups: vec![GroupStatus {
                name: "web".into(),
                failovers: 2,
                failover_seconds: 3.5,
                ..Default::default()
            }],
            replicas: vec![ReplicaStatus {
                name: "r0".into(),
                link_version: 2,
                export_latency: latency.snapshot(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&s);
        for line in [
            "duet_heartbeat_rtt_seconds{node=\"node2\",link=\"crossover\"} 0.00025\n",
            "duet_heartbeats_lost_total{node=\"node2\"} 3\n",
            "duet_node_late_total{node=\"node2\"} 1\n",
            "duet_node_protocol_info{node=\"node2\",protocol=\"1\",software=\"\"} 1\n",
            "duet_group_failovers_total{group=\"web\"} 2\n",
            "duet_group_failover_seconds_total{group=\"web\"} 3.5\n",
            "duet_replica_link_version{replica=\"r0\"} 2\n",
            "duet_export_request_duration_seconds_bucket{replica=\"r0\",kind=\"write\",le=\"0.0005\"} 0\n",
            "duet_export_request_duration_seconds_bucket{replica=\"r0\",kind=\"write\",le=\"0.001\"} 1\n",
            "duet_export_request_duration_seconds_bucket{replica=\"r0\",kind=\"write\",le=\"+Inf\"} 1\n",
            "duet_export_request_duration_seconds_count{replica=\"r0\",kind=\"write\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
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
