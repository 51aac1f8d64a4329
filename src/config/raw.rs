//! The TOML exactly as written, before any rule is checked.
//!
//! Unknown keys are refused here (serde lists the valid ones), but values
//! that need checking — durations, addresses, required names — are kept as
//! loose types so that `validate` can report all their problems at once
//! instead of serde stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::membership::auth::AuthAlgorithm;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    pub cluster: Option<RawCluster>,
    pub timings: Option<RawTimings>,
    #[serde(default)]
    pub link: Vec<RawLink>,
    #[serde(default)]
    pub node: Vec<RawNode>,
    pub ping: Option<RawPing>,
    #[serde(default)]
    pub replica: Vec<RawReplica>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawReplica {
    pub name: Option<String>,
    pub device: Option<String>,
    /// Node name -> backing disk on that node.
    #[serde(default)]
    pub disk: BTreeMap<String, String>,
    pub nbd_socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCluster {
    pub name: Option<String>,
    pub key_file: Option<String>,
    #[serde(default)]
    pub auth: AuthAlgorithm,
    #[serde(default)]
    pub allow_insecure_crc: bool,
    #[serde(default)]
    pub auto_failback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTimings {
    pub keepalive: Option<String>,
    pub warntime: Option<String>,
    pub deadtime: Option<String>,
    pub initdead: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawMode {
    Ucast,
    Bcast,
    Mcast,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLink {
    pub name: Option<String>,
    pub interface: Option<String>,
    pub mode: Option<RawMode>,
    pub port: Option<u16>,
    pub group: Option<String>,
    pub ttl: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNode {
    pub name: Option<String>,
    pub votes: Option<u32>,
    /// Link name -> address. Sorted, not in file order; errors are sorted by
    /// position later, so the order here does not show.
    #[serde(default)]
    pub address: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPing {
    #[serde(default)]
    pub nodes: Vec<String>,
    pub interval: Option<String>,
    pub deadtime: Option<String>,
}
