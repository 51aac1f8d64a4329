//! The human view of `duetctl status`.

use std::fmt::Write;

use crate::bus::ClusterStatus;

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
    for r in &s.replicas {
        let device = if r.attached { r.device.as_str() } else { "-" };
        let _ = writeln!(
            out,
            "replica {:<12} {:<9} disk {}  device {}  clients {}",
            r.name, r.role, r.disk, device, r.clients
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{LinkStatus, NodeStatus};

    #[test]
    fn table_shows_each_node_and_link() {
        let link = |name: &str, state: &str| LinkStatus {
            name: name.into(),
            state: state.into(),
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
                disk: "/dev/sdb".into(),
                device: "/dev/duet/r0".into(),
                attached: true,
                clients: 1,
                nbd_socket: "/run/duet/nbd/r0.sock".into(),
            }],
        };
        let t = status_table(&s);
        assert!(t.contains("cluster lab: 1/2 nodes up, NOT quorate"), "{t}");
        assert!(t.contains("node1 (local)"));
        assert!(t.contains("ping nodes: 198.51.100.254 UNREACHABLE"), "{t}");
        assert!(t.contains("dropped heartbeats: bad-signature 3"), "{t}");
        assert!(
            t.contains(
                "replica r0           primary   disk /dev/sdb  device /dev/duet/r0  clients 1"
            ),
            "{t}"
        );
        assert!(
            t.lines().any(|l| l.starts_with("node2")
                && l.contains("dead")
                && l.contains("crossover:down"))
        );
    }
}
