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
        };
        let t = status_table(&s);
        assert!(t.contains("cluster lab: 1/2 nodes up, NOT quorate"), "{t}");
        assert!(t.contains("node1 (local)"));
        assert!(
            t.lines().any(|l| l.starts_with("node2")
                && l.contains("dead")
                && l.contains("crossover:down"))
        );
    }
}
