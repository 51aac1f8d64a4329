//! The TOML exactly as written, before any rule is checked.
//!
//! Unknown keys are refused here (serde lists the valid ones), but values
//! that need checking — durations, addresses, required names — are kept as
//! loose types so that `validate` can report all their problems at once
//! instead of serde stopping at the first.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

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
    #[serde(default)]
    pub group: Vec<RawGroup>,
    pub fencing: Option<RawFencing>,
    pub self_fence: Option<RawSelfFence>,
    pub metrics: Option<RawMetrics>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMetrics {
    pub listen: Option<String>,
}

/// `[self-fence]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSelfFence {
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub after: Option<String>,
}

/// `[fencing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFencing {
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub retry_delay: Option<String>,
}

/// `[[group]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawGroup {
    pub name: Option<String>,
    /// Node names, most preferred first; `preferred` is the short form.
    pub nodes: Option<Vec<String>>,
    pub preferred: Option<String>,
    pub auto_failback: Option<bool>,
    pub stickiness: Option<u32>,
    pub monitor_interval: Option<String>,
    pub failure_threshold: Option<u32>,
    #[serde(default)]
    pub resource: Vec<RawResource>,
}

/// `[[group.resource]]`. One table for every kind, the kind being whichever
/// of `replica`, `mount`, `ip`, `unit`, `script` and `ocf` is present: that reads
/// better than a `kind = ` key, and it lets `validate` say which key belongs
/// to which kind instead of serde refusing a key of the wrong one blindly.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawResource {
    pub replica: Option<String>,
    pub mount: Option<String>,
    pub device: Option<String>,
    pub fstype: Option<String>,
    pub options: Option<String>,
    pub fsck: Option<String>,
    pub ip: Option<String>,
    pub interface: Option<String>,
    pub unit: Option<String>,
    pub script: Option<String>,
    pub args: Option<Vec<String>>,
    /// An OCF agent, `provider:type` or `ocf:provider:type`.
    pub ocf: Option<String>,
    /// The OCF agent's parameters, name -> value.
    pub params: Option<BTreeMap<String, String>>,
    /// OCF_RESOURCE_INSTANCE, when the default (GROUP-TYPE) will not do.
    pub instance: Option<String>,
    pub start_timeout: Option<String>,
    pub stop_timeout: Option<String>,
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
    /// Node name -> the TCP address the export is served on there, while
    /// that node is Primary. Empty: no TCP listener (the default).
    #[serde(default)]
    pub nbd_listen: BTreeMap<String, String>,
    pub nbd_tls: Option<RawTlsFiles>,
    /// TLS on the replication link: off unless given.
    pub tls: Option<RawTlsFiles>,
    /// Node name -> replication address of that node.
    #[serde(default)]
    pub address: BTreeMap<String, String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    pub meta_disk: Option<RawMetaDisk>,
    pub on_io_error: Option<String>,
    pub fencing: Option<String>,
    pub key_file: Option<String>,
    pub verify_alg: Option<String>,
    pub after_sb_0pri: Option<String>,
    pub after_sb_1pri: Option<String>,
    pub after_sb_2pri: Option<String>,
    pub timeout: Option<String>,
    pub connect_retry: Option<String>,
    pub resync: Option<RawResync>,
}

/// `[replica.nbd-tls]` or `[replica.tls]`: files on each node, at the
/// same paths.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTlsFiles {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub ca: Option<String>,
}

/// `[replica.resync]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawResync {
    pub rate_min: Option<RawSize>,
    pub rate_max: Option<RawSize>,
    pub fill_target: Option<RawSize>,
}

/// `meta-disk` as written: "internal" or one path for every node (a
/// string), or a path per node (a table, like `disk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawMetaDisk {
    One(String),
    PerNode(BTreeMap<String, String>),
}

impl<'de> Deserialize<'de> for RawMetaDisk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawMetaDiskVisitor)
    }
}

struct RawMetaDiskVisitor;

impl<'de> Visitor<'de> for RawMetaDiskVisitor {
    type Value = RawMetaDisk;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "\"internal\", a path for every node, or a table from node name to path such as { node1 = \"/dev/sdc\" }",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMetaDisk, E> {
        Ok(RawMetaDisk::One(v.to_string()))
    }

    fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<RawMetaDisk, M::Error> {
        let mut paths = BTreeMap::new();
        while let Some((node, path)) = map.next_entry::<String, String>()? {
            paths.insert(node, path);
        }
        Ok(RawMetaDisk::PerNode(paths))
    }
}

/// A size as written: a string such as "4M", or a TOML integer of bytes.
/// The integer is kept signed and wide so that a negative or huge number
/// reaches `validate` and is reported with the others, not by serde alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSize {
    Text(String),
    Bytes(i128),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawSizeVisitor)
    }
}

struct RawSizeVisitor;

impl Visitor<'_> for RawSizeVisitor {
    type Value = RawSize;

    // After serde's "expected": the hint of a wrong-type error (a float, a
    // boolean).
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"4M\", or a whole number of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
        Ok(RawSize::Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
        Ok(RawSize::Bytes(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
        Ok(RawSize::Bytes(i128::from(v)))
    }
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
    #[serde(default)]
    pub wait_for_all: bool,
    #[serde(default)]
    pub unfenced_takeover: bool,
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
    /// A witness: membership only, no data, no resources.
    pub witness: Option<bool>,
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
