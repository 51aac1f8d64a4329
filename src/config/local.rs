//! Which node of the config this machine is.
//!
//! The same file is on every node, so the local node is found by name:
//! `--node NAME` if given, else this machine's hostname.

use crate::types::NodeId;

use super::model::Config;

#[derive(Debug, thiserror::Error)]
pub enum LocalNodeError {
    #[error("--node {name}: no node of that name in {file}; the nodes are: {nodes}")]
    UnknownNode {
        name: String,
        file: String,
        nodes: String,
    },
    #[error(
        "cannot read this machine's hostname ({reason}); name the local node with --node NAME (one of: {nodes})"
    )]
    Hostname { reason: String, nodes: String },
    #[error(
        "this machine's hostname {hostname:?} matches no node in {file} (nodes: {nodes}); \
         name the local node with --node NAME, or rename the node after the hostname"
    )]
    NoMatch {
        hostname: String,
        file: String,
        nodes: String,
    },
}

/// The local node: `explicit` (from `--node`) if given, else the hostname.
pub fn local_node(config: &Config, explicit: Option<&str>) -> Result<NodeId, LocalNodeError> {
    if let Some(name) = explicit {
        return config
            .node_id(name)
            .ok_or_else(|| LocalNodeError::UnknownNode {
                name: name.to_string(),
                file: config.path.display().to_string(),
                nodes: node_names(config),
            });
    }
    let hostname = nix::unistd::gethostname()
        .map_err(|e| e.to_string())
        .and_then(|h| h.into_string().map_err(|h| format!("{h:?} is not UTF-8")))
        .map_err(|reason| LocalNodeError::Hostname {
            reason,
            nodes: node_names(config),
        })?;
    by_hostname(config, &hostname)
}

/// Matches the full hostname first, then its short form (before the first
/// dot), so both `node1` and `node1.example.com` may name a node.
/// Hostnames are case-insensitive (RFC 4343), so the match is too.
pub fn by_hostname(config: &Config, hostname: &str) -> Result<NodeId, LocalNodeError> {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let find = |wanted: &str| {
        config
            .nodes
            .iter()
            .position(|n| n.name.eq_ignore_ascii_case(wanted))
    };
    find(hostname)
        .or_else(|| find(short))
        .and_then(|i| u16::try_from(i).ok())
        .map(NodeId)
        .ok_or_else(|| LocalNodeError::NoMatch {
            hostname: hostname.to_string(),
            file: config.path.display().to_string(),
            nodes: node_names(config),
        })
}

fn node_names(config: &Config) -> String {
    config
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
