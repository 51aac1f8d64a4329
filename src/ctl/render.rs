//! The human view of `duetctl status`.

use std::fmt::Write;

use crate::bus::{ClusterStatus, GroupStatus, ReplicaStatus};

/// Nothing while every node heard speaks the same; during a rolling
/// upgrade, what each speaks; and loudly, a node with no version in common.
fn protocol_lines(s: &ClusterStatus) -> Vec<String> {
    let heard: Vec<_> = s.nodes.iter().filter(|n| !n.protocol.is_empty()).collect();
    let mixed = heard.windows(2).any(|w| w[0].protocol != w[1].protocol);
    let mut lines = Vec::new();
    if mixed {
        let each: Vec<String> = heard
            .iter()
            .map(|n| match n.software.as_str() {
                "" => format!("{} {}", n.name, n.protocol),
                v => format!("{} {} (duet {v})", n.name, n.protocol),
            })
            .collect();
        lines.push(format!(
            "protocols: {} (mixed: an upgrade in progress)",
            each.join(", ")
        ));
    }
    for n in s.nodes.iter().filter(|n| n.incompatible) {
        lines.push(format!(
            "INCOMPATIBLE: {} speaks protocol {}, no version in common with this node: its replicas do not connect",
            n.name, n.protocol
        ));
    }
    lines
}

pub fn status_table(s: &ClusterStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cluster {}: {}", s.cluster, s.summary());
    let _ = writeln!(out, "{:<20} {:<6} {:<5} LINKS", "NODE", "STATE", "PING");
    for n in &s.nodes {
        let name = if n.local {
            format!("{} (local)", n.name)
        } else {
            n.name.clone()
        };
        let links: Vec<String> = n
            .links
            .iter()
            .map(|l| format!("{}:{}", l.name, l.state))
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {:<6} {:<5} {}",
            name,
            n.state,
            n.ping_reachable,
            links.join(" ")
        );
    }
    if let Some(line) = witness_line(s) {
        let _ = writeln!(out, "{line}");
    }
    for line in protocol_lines(s) {
        let _ = writeln!(out, "{line}");
    }
    for r in &s.replicas {
        let _ = writeln!(out, "{}", replica_line(r));
    }
    for g in &s.groups {
        let _ = writeln!(out, "{}", group_line(g));
    }
    if !s.config_differs.is_empty() {
        let _ = writeln!(
            out,
            "CONFIG DIFFERS: {} run(s) another config than this node: make the files the same on every node",
            s.config_differs.join(", ")
        );
    }
    if s.standby {
        let _ = writeln!(out, "this node is in standby (`duetctl online` to undo)");
    }
    if s.maintenance {
        let _ = writeln!(out, "maintenance mode: duet starts and stops nothing here");
    }
    if !s.ping_nodes.is_empty() {
        let pings: Vec<String> = s
            .ping_nodes
            .iter()
            .map(|p| {
                let state = if p.reachable {
                    "reachable"
                } else {
                    "UNREACHABLE"
                };
                format!("{} {state}", p.address)
            })
            .collect();
        let _ = writeln!(out, "ping nodes: {}", pings.join(", "));
    }
    if !s.dropped.is_empty() {
        let drops: Vec<String> = s.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "dropped heartbeats: {}", drops.join(", "));
    }
    out
}

/// The witness in one line, when the cluster has one: whom it votes for
/// and whether this node counts that vote (docs/quorum.md), e.g.
/// "witness node3: vote counted here (votes for node1, node2)".
pub fn witness_line(s: &ClusterStatus) -> Option<String> {
    if s.witness.is_empty() {
        return None;
    }
    let w = &s.witness;
    let votes = if s.witness_votes_for.is_empty() {
        "votes for nobody now".to_string()
    } else {
        format!("votes for {}", s.witness_votes_for.join(", "))
    };
    if s.local_node == *w {
        return Some(format!("witness {w} (this node): {votes}"));
    }
    if s.witness_vote {
        return Some(format!("witness {w}: vote counted here ({votes})"));
    }
    let heard = s
        .nodes
        .iter()
        .any(|n| n.name == *w && (n.state == "up" || n.state == "late"));
    Some(if heard {
        format!("witness {w}: {votes}, not counted here")
    } else {
        format!("witness {w}: not heard, its vote is not counted here")
    })
}

/// One group in one line: where it runs, this node's state, each
/// resource started (+) or not (-) here, and the last transition.
pub fn group_line(g: &GroupStatus) -> String {
    let node = if g.node.is_empty() {
        "-"
    } else {
        g.node.as_str()
    };
    let resources: Vec<String> = g
        .resources
        .iter()
        .map(|r| {
            let mark = if r.state == "started" { '+' } else { '-' };
            let failed = if r.failures > 0 {
                format!(" ({} failures)", r.failures)
            } else {
                String::new()
            };
            format!("{mark}{}{failed}", r.name)
        })
        .collect();
    let mut line = format!(
        "group {} on {node}: {} here [{}]",
        g.name,
        g.state,
        resources.join(", ")
    );
    if g.wanted == "stopped" {
        line.push_str(" STOPPED by an administrator");
    }
    if !g.moved_to.is_empty() {
        let _ = write!(line, " moved to {}", g.moved_to);
    }
    if !g.waiting.is_empty() {
        let _ = write!(line, "; WAITING: {}", g.waiting);
    }
    if !g.last_transition.is_empty() {
        let took = g
            .last_duration
            .map(|d| format!(", {d:.2} s"))
            .unwrap_or_default();
        let _ = write!(
            line,
            "; last: {} ({}{took})",
            g.last_transition, g.last_reason
        );
    }
    line
}

/// One replica in one line, in DRBD's words, with a progress bar, speed
/// and ETA while a sync or verify runs.
pub fn replica_line(r: &ReplicaStatus) -> String {
    let device = if r.attached { r.device.as_str() } else { "-" };
    let mut line = format!(
        "replica {} {}/{} {} {} {}/{} protocol {} device {} clients {}",
        r.name,
        r.role,
        r.peer_role,
        r.connection,
        r.replication,
        r.disk,
        r.peer_disk,
        r.protocol,
        device,
        r.clients
    );
    if r.out_of_sync_bytes > 0 {
        line.push_str(&format!(" out-of-sync {}", bytes(r.out_of_sync_bytes)));
    }
    match r.fencing.as_str() {
        "" => {}
        "fencing" => line.push_str(" fencing the peer: writes held"),
        f => line.push_str(&format!(" {f}")),
    }
    if let Some(p) = r.sync_progress {
        let filled = (p.clamp(0.0, 1.0) * 20.0).round() as usize;
        line.push_str(&format!(
            "\n  [{}{}] {:5.1}%",
            "#".repeat(filled),
            ".".repeat(20 - filled),
            p * 100.0
        ));
        if let Some(speed) = r.sync_speed {
            line.push_str(&format!(" {}/s", bytes(speed)));
        }
        if let Some(eta) = r.sync_eta {
            line.push_str(&format!(" eta {}:{:02}", eta / 60, eta % 60));
        }
    }
    line
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{LinkStatus, NodeStatus};

    #[test]
    fn protocols_show_only_while_mixed_and_incompatible_loudly() {
        let node = |name: &str, protocol: &str, software: &str| NodeStatus {
            name: name.into(),
            protocol: protocol.into(),
            software: software.into(),
            ..Default::default()
        };
        let mut s = ClusterStatus {
            nodes: vec![node("node1", "1-2", "0.1.0"), node("node2", "1-2", "0.1.0")],
            ..Default::default()
        };
        assert!(protocol_lines(&s).is_empty());
        s.nodes[1] = node("node2", "1", "");
        assert_eq!(
            protocol_lines(&s),
            ["protocols: node1 1-2 (duet 0.1.0), node2 1 (mixed: an upgrade in progress)"]
        );
        s.nodes[1].protocol = "3".into();
        s.nodes[1].incompatible = true;
        let lines = protocol_lines(&s);
        assert!(
            lines[1].starts_with("INCOMPATIBLE: node2 speaks protocol 3"),
            "{lines:?}"
        );
    }

    #[test]
    fn table_shows_each_node_and_link() {
        let link = |name: &str, state: &str| LinkStatus {
            name: name.into(),
            state: state.into(),
            rtt_us: None,
        };
        let s = ClusterStatus {
            cluster: "lab".into(),
            quorate: false,
            local_node: "node1".into(),
            nodes: vec![
                NodeStatus {
                    name: "node1".into(),
                    state: "up".into(),
                    local: true,
                    links: vec![link("crossover", "up")],
                    ..Default::default()
                },
                NodeStatus {
                    name: "node2".into(),
                    state: "dead".into(),
                    links: vec![link("crossover", "down")],
                    ..Default::default()
                },
            ],
            ping_nodes: vec![crate::bus::PingStatus {
                address: "198.51.100.254".into(),
                reachable: false,
            }],
            dropped: [("bad-signature".to_string(), 3)].into(),
            replicas: vec![crate::bus::ReplicaStatus {
                name: "r0".into(),
                role: "primary".into(),
                peer_role: "secondary".into(),
                connection: "connected".into(),
                replication: "syncsource".into(),
                disk: "uptodate".into(),
                peer_disk: "inconsistent".into(),
                out_of_sync_bytes: 3 << 20,
                sync_progress: Some(0.25),
                sync_speed: Some(1 << 20),
                sync_eta: Some(3),
                protocol: "C".into(),
                backing_disk: "/dev/sdb".into(),
                device: "/dev/duet/r0".into(),
                attached: true,
                clients: 1,
                nbd_socket: "/run/duet/nbd/r0.sock".into(),
                ..Default::default()
            }],
            groups: vec![crate::bus::GroupStatus {
                name: "web".into(),
                node: "node1".into(),
                state: "running".into(),
                resources: vec![
                    crate::bus::ResourceStatus {
                        name: "replica r0".into(),
                        state: "started".into(),
                        failures: 0,
                    },
                    crate::bus::ResourceStatus {
                        name: "unit apache2.service".into(),
                        state: "started".into(),
                        failures: 1,
                    },
                ],
                last_transition: "running".into(),
                last_reason: "all resources started".into(),
                last_duration: Some(1.4),
                running: true,
                wanted: "started".into(),
                moved_to: "node1".into(),
                waiting: String::new(),
                ..Default::default()
            }],
            standby: true,
            maintenance: false,
            ..Default::default()
        };
        let t = status_table(&s);
        assert!(t.contains("cluster lab: 1/2 nodes up, NOT quorate"), "{t}");
        assert!(t.contains("node1 (local)"));
        assert!(t.contains("ping nodes: 198.51.100.254 UNREACHABLE"), "{t}");
        assert!(t.contains("dropped heartbeats: bad-signature 3"), "{t}");
        assert!(
            t.contains(
                "replica r0 primary/secondary connected syncsource uptodate/inconsistent protocol C device /dev/duet/r0 clients 1 out-of-sync 3.0 MiB"
            ),
            "{t}"
        );
        assert!(
            t.contains("  [#####...............]  25.0% 1.0 MiB/s eta 0:03"),
            "{t}"
        );
        assert!(
            t.contains(
                "group web on node1: running here [+replica r0, +unit apache2.service (1 failures)] moved to node1; last: running (all resources started, 1.40 s)"
            ),
            "{t}"
        );
        assert!(t.contains("this node is in standby"), "{t}");
        assert!(!t.contains("witness"), "no witness configured: {t}");
        assert!(
            t.lines().any(|l| l.starts_with("node2")
                && l.contains("dead")
                && l.contains("crossover:down"))
        );
    }

    #[test]
    fn the_witness_line_says_whom_it_votes_for_and_whether_it_counts_here() {
        let node = |name: &str, state: &str| NodeStatus {
            name: name.into(),
            state: state.into(),
            ..Default::default()
        };
        let mut s = ClusterStatus {
            local_node: "node2".into(),
            nodes: vec![
                node("node1", "dead"),
                node("node2", "up"),
                node("node3", "up"),
            ],
            witness: "node3".into(),
            witness_vote: true,
            witness_votes_for: vec!["node2".into()],
            partition: vec!["node2".into()],
            ..Default::default()
        };
        let line = |s: &ClusterStatus| witness_line(s).unwrap_or_default();
        assert_eq!(
            line(&s),
            "witness node3: vote counted here (votes for node2)"
        );
        assert!(status_table(&s).contains("\nwitness node3: vote counted here"));
        s.witness_vote = false;
        s.witness_votes_for = vec!["node1".into()];
        assert_eq!(line(&s), "witness node3: votes for node1, not counted here");
        s.witness_votes_for.clear();
        assert_eq!(
            line(&s),
            "witness node3: votes for nobody now, not counted here"
        );
        s.nodes[2].state = "dead".into();
        assert_eq!(
            line(&s),
            "witness node3: not heard, its vote is not counted here"
        );
        s.local_node = "node3".into();
        s.witness_votes_for = vec!["node1".into(), "node2".into()];
        assert_eq!(
            line(&s),
            "witness node3 (this node): votes for node1, node2"
        );
    }
}
