//! The replication settings of a `[[replica]]`, modelled on DRBD's resource
//! settings: addresses and port, protocol, metadata, split-brain policies,
//! timeouts, resync rates. Part of `validate`, with the same rule: report
//! every problem at once, each with what would be valid.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Check, beside, node_index, quoted_list};
use crate::config::duration;
use crate::config::error::Issue;
use crate::config::locate::KeyPath;
use crate::config::model::{
    DEFAULT_NBD_PORT, DEFAULT_REPLICA_PORT, MetaDisk, NbdTcp, OnIoError, Protocol, ReplicaFencing,
    ResyncRates, TlsFiles, VerifyAlg,
};
use crate::config::raw::{RawMetaDisk, RawNode, RawReplica, RawResync, RawSize, RawTlsFiles};
use crate::config::size::{self, SIZE_HINT, SizeError};
use crate::replication::split_brain::{After0Pri, After1Pri, After2Pri, Policies};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Under protocol C a write waits for the peer: a peer that hangs without
/// closing the connection stalls the application's writes until it is
/// dropped. Longer than this is a hang, not a timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(1);

/// The after-sb-0pri policies spelt as one word; discard-node-NAME is
/// checked apart, against the replica's nodes.
const AFTER_SB_0PRI: [(&str, After0Pri); 5] = [
    ("disconnect", After0Pri::Disconnect),
    ("discard-younger-primary", After0Pri::DiscardYoungerPrimary),
    ("discard-older-primary", After0Pri::DiscardOlderPrimary),
    ("discard-zero-changes", After0Pri::DiscardZeroChanges),
    ("discard-least-changes", After0Pri::DiscardLeastChanges),
];
const AFTER_SB_1PRI: [(&str, After1Pri); 4] = [
    ("disconnect", After1Pri::Disconnect),
    ("consensus", After1Pri::Consensus),
    ("discard-secondary", After1Pri::DiscardSecondary),
    ("violently-as0p", After1Pri::ViolentlyAs0p),
];
const AFTER_SB_2PRI: [(&str, After2Pri); 2] = [
    ("disconnect", After2Pri::Disconnect),
    ("violently-as0p", After2Pri::ViolentlyAs0p),
];

const PORT_HINT: &str =
    "1 to 65535, the same on all nodes (default 7788 + the replica's index in the file)";
const REPLICATION_ADDRESS_HINT: &str =
    "the node's IPv4 or IPv6 address for replication, e.g. \"203.0.113.1\"";
const META_DISK_HINT: &str = "\"internal\" (at the end of the disk), or an absolute path of a \
     device or file of its own for the metadata, e.g. \"/dev/sdc1\" (the same on every node) or \
     { node1 = \"/dev/sdc1\", node2 = \"/dev/sdd1\" }";
const KEY_FILE_HINT: &str = "a path to the replication key, e.g. \"repl.key\" (create it with \
     `duetctl keygen`), or leave key-file out to use the cluster's";

const NBD_LISTEN_HINT: &str = "the node's IP address and a TCP port for NBD clients, e.g. \
     \"198.51.100.1:10809\" or \"[2001:db8::1]:10809\" (port 10809 when left out)";
/// What each file of `[replica.nbd-tls]` is: cert, key, ca.
const NBD_TLS_FILES: [&str; 3] = [
    "the server's certificate (PEM), e.g. \"nbd/server-cert.pem\"",
    "the server's private key (PEM, mode 0600, owned by root), e.g. \"nbd/server-key.pem\"",
    "the CA certificate (PEM) that signs the clients' certificates, e.g. \"nbd/ca-cert.pem\"",
];

/// What each file of `[replica.tls]` is: cert, key, ca.
pub(super) const LINK_TLS_FILES: [&str; 3] = [
    "this node's certificate (PEM), naming the node (subjectAltName DNS:NODE), e.g. \"tls/node-cert.pem\"",
    "this node's private key (PEM, mode 0600, owned by root), e.g. \"tls/node-key.pem\"",
    "the CA certificate (PEM) that signs both nodes' certificates, e.g. \"tls/ca-cert.pem\"",
];

const NBD_TLS_HINT: &str = "a [replica.nbd-tls] table with cert, key and ca (PEM files): \
     clients then need a certificate signed by that CA";

/// Who listens where: each replication address and port taken so far, so
/// that no two replication links are bound to the same socket.
#[derive(Default)]
pub(super) struct Endpoints(HashMap<SocketAddr, Endpoint>);

struct Endpoint {
    /// `replica[N]`.
    replica: KeyPath,
    node: String,
}

/// An external metadata path as validated, for the clash checks: where
/// it was written, and the node (index) it is on.
pub(super) struct MetaSeen {
    key: KeyPath,
    node: usize,
    path: PathBuf,
}

/// Every `nbd-listen` address, kept until all replicas are read: then each
/// is checked against the replication links and the other replicas'.
#[derive(Default)]
pub(super) struct Listeners(Vec<Listener>);

struct Listener {
    /// `replica[N].nbd-listen.NODE`.
    key: KeyPath,
    /// `replica[N]`.
    replica: KeyPath,
    node: String,
    at: SocketAddr,
}

/// Whether two TCP listeners on one node would want the same port: the
/// same address, or one of them on every address (0.0.0.0 or ::).
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The settings of `model::Replica` that are checked here, beyond the disks,
/// addresses and metadata.
pub(super) struct Replication {
    pub protocol: Protocol,
    pub on_io_error: OnIoError,
    pub fencing: ReplicaFencing,
    pub key_file: PathBuf,
    pub verify_alg: VerifyAlg,
    pub policies: Policies,
    pub timeout: Duration,
    pub connect_retry: Duration,
    pub resync: ResyncRates,
}

impl Check {
    /// The replication port as written, else 7788 + the replica's index.
    /// `key` is the replica's.
    pub(super) fn replica_port(
        &mut self,
        written: Option<u16>,
        index: usize,
        key: &KeyPath,
    ) -> u16 {
        // Over 57747 replicas leave no default: absurd, but input all the
        // same, and no reason to panic.
        let default = u16::try_from(index)
            .ok()
            .and_then(|i| DEFAULT_REPLICA_PORT.checked_add(i));
        let port = match (written, default) {
            (Some(port), _) => port,
            (None, Some(port)) => port,
            (None, None) => {
                self.error(
                    key.key("port"),
                    format!("no default port is left for replica[{index}]"),
                    PORT_HINT,
                );
                return 0;
            }
        };
        if port == 0 {
            self.error(key.key("port"), "port 0 is not a port", PORT_HINT);
        }
        port
    }

    /// Each node's replication address with `port`, indexed like `nodes`.
    /// Every node with a disk needs one; a node without a disk has no use
    /// for one, so an address there is a mistake (a misspelt name, say).
    /// `disk_nodes` are the nodes with a disk, `key` the replica's.
    pub(super) fn replica_addresses(
        &mut self,
        r: &RawReplica,
        nodes: &[RawNode],
        disk_nodes: &[&str],
        port: u16,
        key: &KeyPath,
        endpoints: &mut Endpoints,
    ) -> Vec<Option<SocketAddr>> {
        let mut addresses = vec![None; nodes.len()];
        // One port clash is enough to say: the other node's address would
        // only repeat it.
        let mut port_clash = false;
        for (node, text) in &r.address {
            let akey = key.key("address").key(node);
            let Some(n) = node_index(nodes, node) else {
                self.error(
                    akey,
                    format!("no node is named {node:?}"),
                    format!(
                        "a node with a disk for this replica: {}",
                        quoted_list(disk_nodes, "no disks")
                    ),
                );
                continue;
            };
            if !disk_nodes.contains(&node.as_str()) {
                self.error(
                    akey,
                    format!("{node} has no disk for this replica, so no use for an address"),
                    format!(
                        "addresses only for the nodes with a disk: {}",
                        quoted_list(disk_nodes, "no disks")
                    ),
                );
                continue;
            }
            let Some(ip) = self.replication_ip(&akey, text) else {
                continue;
            };
            let at = SocketAddr::new(ip, port);
            addresses[n] = Some(at);
            if port == 0 {
                // Already an error; every clash on it would repeat that.
                continue;
            }
            match endpoints.0.get(&at) {
                // Two nodes cannot be one host.
                Some(other) if other.replica == *key => self.error(
                    akey,
                    format!("{ip} is also {}'s replication address", other.node),
                    "an address of this node's own",
                ),
                Some(other) if !port_clash => {
                    port_clash = true;
                    let whose = if r.port.is_none() {
                        " (the default)"
                    } else {
                        ""
                    };
                    self.error(
                        key.key("port"),
                        format!("port {port}{whose} is also {}'s on {ip}", other.replica),
                        format!("a port no other replica uses on {ip}"),
                    );
                }
                Some(_) => {}
                None => {
                    endpoints.0.insert(
                        at,
                        Endpoint {
                            replica: key.clone(),
                            node: node.clone(),
                        },
                    );
                }
            }
        }
        for node in disk_nodes {
            if !r.address.contains_key(*node) {
                self.error(
                    key.key("address").key(node),
                    format!("no replication address for {node}, which has a disk"),
                    format!("add {node} = \"IP\" to this replica's address table"),
                );
            }
        }
        addresses
    }

    fn replication_ip(&mut self, key: &KeyPath, text: &str) -> Option<IpAddr> {
        match text.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                self.error(
                    key.clone(),
                    format!("{ip} is not a host address"),
                    REPLICATION_ADDRESS_HINT,
                );
                None
            }
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(
                    key.clone(),
                    format!("{text:?} is not an IP address"),
                    REPLICATION_ADDRESS_HINT,
                );
                None
            }
        }
    }

    /// Everything else of the replica's replication settings. `node_names`
    /// are all the nodes, `disk_nodes` those with a disk for this replica;
    /// `cluster_key` is the default key file, `path` the config file's.
    pub(super) fn replication(
        &mut self,
        r: &RawReplica,
        node_names: &[&str],
        disk_nodes: &[&str],
        cluster_key: &Path,
        path: &Path,
        key: &KeyPath,
    ) -> Replication {
        let protocol = self.choice(
            key.key("protocol"),
            r.protocol.as_deref(),
            "a protocol",
            &Protocol::ALL.map(|p| (p.name(), p)),
            Protocol::default(),
        );
        let on_io_error = self.choice(
            key.key("on-io-error"),
            r.on_io_error.as_deref(),
            "an on-io-error policy",
            &OnIoError::ALL.map(|p| (p.name(), p)),
            OnIoError::default(),
        );
        let fencing = self.choice(
            key.key("fencing"),
            r.fencing.as_deref(),
            "a fencing policy",
            &ReplicaFencing::ALL.map(|f| (f.name(), f)),
            ReplicaFencing::default(),
        );
        let key_file = self.replica_key_file(
            key.key("key-file"),
            r.key_file.as_deref(),
            cluster_key,
            path,
        );
        let verify_alg = self.choice(
            key.key("verify-alg"),
            r.verify_alg.as_deref(),
            "a verify algorithm",
            &VerifyAlg::ALL.map(|a| (a.name(), a)),
            VerifyAlg::default(),
        );
        let policies = self.policies(r, node_names, disk_nodes, key);
        let (timeout, connect_retry) = self.replica_timeouts(r, key);
        let resync = self.resync(r.resync.as_ref(), &key.key("resync"));
        Replication {
            protocol,
            on_io_error,
            fencing,
            key_file,
            verify_alg,
            policies,
            timeout,
            connect_retry,
            resync,
        }
    }

    /// The export's TCP listener: `nbd-listen` per node and
    /// `[replica.nbd-tls]`. Off (None) unless some node listens; a
    /// listener without TLS is an error, TLS without a listener a warning.
    /// `disk_nodes` are the nodes with a disk (only they are ever Primary),
    /// `path` the config file's, `key` the replica's.
    pub(super) fn nbd_tcp(
        &mut self,
        r: &RawReplica,
        nodes: &[RawNode],
        disk_nodes: &[&str],
        path: &Path,
        key: &KeyPath,
        listeners: &mut Listeners,
    ) -> Option<NbdTcp> {
        let mut listen = vec![None; nodes.len()];
        for (node, text) in &r.nbd_listen {
            let lkey = key.key("nbd-listen").key(node);
            let Some(n) = node_index(nodes, node) else {
                self.error(
                    lkey,
                    format!("no node is named {node:?}"),
                    format!(
                        "a node with a disk for this replica: {}",
                        quoted_list(disk_nodes, "no disks")
                    ),
                );
                continue;
            };
            if !disk_nodes.contains(&node.as_str()) {
                self.error(
                    lkey,
                    format!(
                        "{node} has no disk for this replica: it is never Primary, so never serves it"
                    ),
                    format!(
                        "nbd-listen only for the nodes with a disk: {}",
                        quoted_list(disk_nodes, "no disks")
                    ),
                );
                continue;
            }
            let Some(at) = self.nbd_listen_address(&lkey, text) else {
                continue;
            };
            listen[n] = Some(at);
            listeners.0.push(Listener {
                key: lkey,
                replica: key.clone(),
                node: node.clone(),
                at,
            });
        }
        let tls_key = key.key("nbd-tls");
        let tls = r
            .nbd_tls
            .as_ref()
            .map(|t| self.tls_files(t, path, &tls_key, NBD_TLS_FILES));
        match (r.nbd_listen.is_empty(), tls) {
            (true, None) => None,
            (true, Some(_)) => {
                self.warnings.push(
                    Issue::new(
                        tls_key,
                        "no node has an nbd-listen address, so nothing is served over TCP",
                    )
                    .hint("nbd-listen = { NODE = \"IP:10809\" }, or leave [replica.nbd-tls] out"),
                );
                None
            }
            (false, None) => {
                self.error(
                    key.key("nbd-listen"),
                    "a TCP listener without TLS would serve the disk to anyone who reaches the port",
                    NBD_TLS_HINT,
                );
                None
            }
            (false, Some(tls)) => Some(NbdTcp { listen, tls: tls? }),
        }
    }

    /// "IP:PORT", or a bare IP for port 10809.
    fn nbd_listen_address(&mut self, key: &KeyPath, text: &str) -> Option<SocketAddr> {
        let at = match (text.parse::<SocketAddr>(), text.parse::<IpAddr>()) {
            (Ok(at), _) => at,
            (_, Ok(ip)) => SocketAddr::new(ip, DEFAULT_NBD_PORT),
            _ => {
                self.error(
                    key.clone(),
                    format!("{text:?} is not an IP address with an optional port"),
                    NBD_LISTEN_HINT,
                );
                return None;
            }
        };
        if at.ip().is_multicast() {
            self.error(
                key.clone(),
                format!("{} is a multicast address", at.ip()),
                NBD_LISTEN_HINT,
            );
            return None;
        }
        if at.port() == 0 {
            self.error(key.clone(), "port 0 is not a port", NBD_LISTEN_HINT);
            return None;
        }
        Some(at)
    }

    /// `[replica.nbd-tls]` or `[replica.tls]`, each file resolved like
    /// the key file; `None` when one is missing (then there are errors).
    /// `key` is the table's, `hints` say what each file is.
    pub(super) fn tls_files(
        &mut self,
        raw: &RawTlsFiles,
        path: &Path,
        key: &KeyPath,
        hints: [&str; 3],
    ) -> Option<TlsFiles> {
        let [cert, tls_key, ca] = hints;
        let files = [
            ("cert", &raw.cert, cert),
            ("key", &raw.key, tls_key),
            ("ca", &raw.ca, ca),
        ];
        let mut found = Vec::with_capacity(files.len());
        for (name, written, hint) in files {
            match written.as_deref().map(str::trim) {
                None => self.error(key.key(name), "missing", hint),
                Some("") => self.error(
                    key.key(name),
                    format!("an empty {name} names no file"),
                    hint,
                ),
                Some(file) => found.push(beside(path, file)),
            }
        }
        let [cert, tls_key, ca] = <[PathBuf; 3]>::try_from(found).ok()?;
        Some(TlsFiles {
            cert,
            key: tls_key,
            ca,
        })
    }

    /// No `nbd-listen` takes a port that a replication link or another
    /// replica's listener already has on the same node.
    pub(super) fn nbd_listen_clashes(&mut self, listeners: &Listeners, endpoints: &Endpoints) {
        for (i, l) in listeners.0.iter().enumerate() {
            let replication = endpoints
                .0
                .iter()
                .filter(|(at, e)| e.node == l.node && overlap(**at, l.at))
                .map(|(at, e)| (e.replica.to_string(), *at))
                .min();
            if let Some((replica, at)) = replication {
                self.error(
                    l.key.clone(),
                    format!(
                        "{} would take {at}, {replica}'s replication address on {}",
                        l.at, l.node
                    ),
                    "a port of its own, e.g. 10809",
                );
            } else if let Some(other) = listeners.0[..i]
                .iter()
                .find(|o| o.node == l.node && overlap(o.at, l.at))
            {
                self.error(
                    l.key.clone(),
                    format!(
                        "{} would take {}, {}'s nbd-listen on {}",
                        l.at, other.at, other.replica, l.node
                    ),
                    "a port no other replica listens on there, e.g. 10810",
                );
            }
        }
    }

    /// One of `choices` by its name as written, else `default`. `what`
    /// names the kind for the message, e.g. "a protocol".
    pub(super) fn choice<T: Clone + PartialEq>(
        &mut self,
        key: KeyPath,
        written: Option<&str>,
        what: &str,
        choices: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(text) = written else {
            return default;
        };
        if let Some(value) = lookup(choices, text) {
            return value;
        }
        let names = choices
            .iter()
            .map(|(name, _)| format!("{name:?}"))
            .collect();
        self.error(
            key,
            format!("{text:?} is not {what}"),
            choices_hint(names, name_of(choices, &default)),
        );
        default
    }

    fn policies(
        &mut self,
        r: &RawReplica,
        node_names: &[&str],
        disk_nodes: &[&str],
        key: &KeyPath,
    ) -> Policies {
        let default = Policies::default();
        Policies {
            after_sb_0pri: self.after_sb_0pri(
                key.key("after-sb-0pri"),
                r.after_sb_0pri.as_deref(),
                node_names,
                disk_nodes,
            ),
            after_sb_1pri: self.choice(
                key.key("after-sb-1pri"),
                r.after_sb_1pri.as_deref(),
                "an after-sb-1pri policy",
                &AFTER_SB_1PRI,
                default.after_sb_1pri,
            ),
            after_sb_2pri: self.choice(
                key.key("after-sb-2pri"),
                r.after_sb_2pri.as_deref(),
                "an after-sb-2pri policy",
                &AFTER_SB_2PRI,
                default.after_sb_2pri,
            ),
        }
    }

    /// discard-node-NAME must name a node with a disk: both nodes compare
    /// NAME with their own name, so any other name never matches and the
    /// policy would quietly disconnect every time.
    fn after_sb_0pri(
        &mut self,
        key: KeyPath,
        written: Option<&str>,
        node_names: &[&str],
        disk_nodes: &[&str],
    ) -> After0Pri {
        let default = Policies::default().after_sb_0pri;
        let Some(text) = written else {
            return default;
        };
        let discard_nodes: Vec<String> = disk_nodes
            .iter()
            .map(|n| format!("\"discard-node-{n}\""))
            .collect();
        let Some(node) = text.strip_prefix("discard-node-") else {
            if let Some(policy) = lookup(&AFTER_SB_0PRI, text) {
                return policy;
            }
            let mut names: Vec<String> = AFTER_SB_0PRI
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect();
            if discard_nodes.is_empty() {
                names.push("\"discard-node-NAME\"".to_string());
            } else {
                names.extend(discard_nodes);
            }
            self.error(
                key,
                format!("{text:?} is not an after-sb-0pri policy"),
                choices_hint(names, name_of(&AFTER_SB_0PRI, &default)),
            );
            return default;
        };
        if disk_nodes.contains(&node) {
            return After0Pri::DiscardNode(node.to_string());
        }
        let why = if node_names.contains(&node) {
            format!("{node} has no disk for this replica")
        } else {
            format!("no node is named {node:?}")
        };
        let hint = if discard_nodes.is_empty() {
            "discard-node- and the name of a node with a disk for this replica".to_string()
        } else {
            either(&discard_nodes)
        };
        self.error(key, format!("{text:?}: {why}"), hint);
        default
    }

    /// `key` is the replica's.
    fn replica_timeouts(&mut self, r: &RawReplica, key: &KeyPath) -> (Duration, Duration) {
        let fmt = duration::format;
        let timeout = self.duration(key.key("timeout"), r.timeout.as_deref(), DEFAULT_TIMEOUT);
        if let Some(t) = timeout
            && (t.is_zero() || t > MAX_TIMEOUT)
        {
            let message = if t.is_zero() {
                "timeout 0ms would drop the peer at once".to_string()
            } else {
                format!(
                    "timeout ({}) is longer than {}: writes waiting on a hung peer would stall that long",
                    fmt(t),
                    fmt(MAX_TIMEOUT)
                )
            };
            self.error(
                key.key("timeout"),
                message,
                format!(
                    "a duration above 0ms and at most {} (default {})",
                    fmt(MAX_TIMEOUT),
                    fmt(DEFAULT_TIMEOUT)
                ),
            );
        }
        let connect_retry = self.duration(
            key.key("connect-retry"),
            r.connect_retry.as_deref(),
            DEFAULT_CONNECT_RETRY,
        );
        if connect_retry == Some(Duration::ZERO) {
            self.error(
                key.key("connect-retry"),
                "connect-retry 0ms would retry without a pause",
                format!(
                    "a duration above 0ms (default {})",
                    fmt(DEFAULT_CONNECT_RETRY)
                ),
            );
        }
        (
            timeout.unwrap_or(DEFAULT_TIMEOUT),
            connect_retry.unwrap_or(DEFAULT_CONNECT_RETRY),
        )
    }

    /// `[replica.resync]`; `key` is that table's.
    fn resync(&mut self, raw: Option<&RawResync>, key: &KeyPath) -> ResyncRates {
        let default = ResyncRates::default();
        let none = RawResync::default();
        let raw = raw.unwrap_or(&none);
        let min = self.size(key.key("rate-min"), raw.rate_min.as_ref(), default.min);
        let max = self.size(key.key("rate-max"), raw.rate_max.as_ref(), default.max);
        let fill_target = self.size(
            key.key("fill-target"),
            raw.fill_target.as_ref(),
            default.fill_target,
        );
        let fmt = size::format;
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            let message = format!("rate-min ({}) is above rate-max ({})", fmt(lo), fmt(hi));
            // At the one that was written; when both were, at rate-min:
            // the floor is the one to lower.
            if raw.rate_min.is_some() {
                self.error(
                    key.key("rate-min"),
                    message,
                    format!("at most rate-max, {}", fmt(hi)),
                );
            } else {
                self.error(
                    key.key("rate-max"),
                    message,
                    format!("at least rate-min, {}", fmt(lo)),
                );
            }
        }
        ResyncRates {
            min: min.unwrap_or(default.min),
            max: max.unwrap_or(default.max),
            fill_target: fill_target.unwrap_or(default.fill_target),
        }
    }

    /// A size in bytes (or bytes per second) as written, else `default`.
    /// 0 is refused: as a rate or as the bytes in flight, it stalls a
    /// resync.
    fn size(&mut self, key: KeyPath, written: Option<&RawSize>, default: u64) -> Option<u64> {
        let Some(written) = written else {
            return Some(default);
        };
        let parsed = match written {
            RawSize::Text(text) => size::parse(text),
            RawSize::Bytes(n) if *n < 0 => Err(SizeError::Negative),
            RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| SizeError::TooLarge(n.to_string())),
        };
        match parsed {
            Ok(0) => {
                self.error(
                    key,
                    "0 would stall a resync",
                    format!("a size above 0 (default {})", size::format(default)),
                );
                None
            }
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.error(key, e.to_string(), SIZE_HINT);
                None
            }
        }
    }

    /// `meta-disk`: "internal", one path for every node with a disk, or a
    /// table from node name to path. `disks` are this replica's, indexed
    /// like `nodes`, and `disk_nodes` the names of the nodes with one; `key`
    /// is the replica's. Each external path goes to `seen` for the clash
    /// checks once all replicas are read.
    pub(super) fn meta_disk(
        &mut self,
        written: Option<&RawMetaDisk>,
        nodes: &[RawNode],
        disks: &[Option<PathBuf>],
        disk_nodes: &[&str],
        key: &KeyPath,
        seen: &mut Vec<MetaSeen>,
    ) -> MetaDisk {
        let mkey = key.key("meta-disk");
        let text = match written {
            None => return MetaDisk::Internal,
            Some(RawMetaDisk::One(text)) if text == "internal" => return MetaDisk::Internal,
            Some(RawMetaDisk::One(text)) => text,
            Some(RawMetaDisk::PerNode(table)) => {
                return self.meta_disk_table(table, nodes, disks.len(), disk_nodes, key, seen);
            }
        };
        // A placeholder on error: then no Config is returned.
        let Some(path) = self.absolute_path(&mkey, text, META_DISK_HINT) else {
            return MetaDisk::Internal;
        };
        let mut paths = vec![None; disks.len()];
        for (n, disk) in disks.iter().enumerate() {
            if disk.is_some() {
                paths[n] = Some(path.clone());
                seen.push(MetaSeen {
                    key: mkey.clone(),
                    node: n,
                    path: path.clone(),
                });
            }
        }
        MetaDisk::External(paths)
    }

    /// `meta-disk = { node = "path", ... }`: like `disk`, an entry for
    /// every node with a disk and for no other.
    fn meta_disk_table(
        &mut self,
        table: &std::collections::BTreeMap<String, String>,
        nodes: &[RawNode],
        node_count: usize,
        disk_nodes: &[&str],
        key: &KeyPath,
        seen: &mut Vec<MetaSeen>,
    ) -> MetaDisk {
        let mut paths = vec![None; node_count];
        let with_disk = || {
            format!(
                "a node with a disk for this replica: {}",
                quoted_list(disk_nodes, "no disks")
            )
        };
        for (node, text) in table {
            let nkey = key.key("meta-disk").key(node);
            let Some(n) = node_index(nodes, node) else {
                self.error(nkey, format!("no node is named {node:?}"), with_disk());
                continue;
            };
            if !disk_nodes.contains(&node.as_str()) {
                self.error(
                    nkey,
                    format!("{node} has no disk for this replica, so no use for metadata"),
                    with_disk(),
                );
                continue;
            }
            if text == "internal" {
                // Internal metadata shrinks the device: the two copies
                // would differ in size and never connect.
                self.error(
                    nkey,
                    "\"internal\" cannot be mixed with external metadata",
                    "meta-disk = \"internal\" for all nodes, or a path for each",
                );
                continue;
            }
            let Some(path) = self.absolute_path(&nkey, text, META_DISK_HINT) else {
                continue;
            };
            paths[n] = Some(path.clone());
            seen.push(MetaSeen {
                key: nkey,
                node: n,
                path,
            });
        }
        for node in disk_nodes {
            if !table.contains_key(*node) {
                self.error(
                    key.key("meta-disk").key(node),
                    format!("no meta-disk for {node}, which has a disk"),
                    format!("add {node} = \"PATH\" to this replica's meta-disk table"),
                );
            }
        }
        MetaDisk::External(paths)
    }

    /// Resolved like the cluster's key file; the cluster's when not set.
    fn replica_key_file(
        &mut self,
        key: KeyPath,
        written: Option<&str>,
        cluster_key: &Path,
        path: &Path,
    ) -> PathBuf {
        match written.map(str::trim) {
            None => cluster_key.to_path_buf(),
            Some("") => {
                self.error(key, "an empty key-file names no file", KEY_FILE_HINT);
                PathBuf::new()
            }
            Some(file) => beside(path, file),
        }
    }

    /// External metadata is written over whatever is at its path, so it is
    /// never a disk (of any replica, on the same node), a device or
    /// socket, or another replica's metadata on the same node. `seen` are
    /// every external path, in file order; a path written once for all
    /// nodes gets one error, not one per node.
    pub(super) fn meta_disk_clashes(
        &mut self,
        seen: &[MetaSeen],
        first_disk: &HashMap<(usize, PathBuf), usize>,
        first_path: &HashMap<PathBuf, KeyPath>,
        nodes: &[RawNode],
    ) {
        let mut first_meta: HashMap<(usize, &Path), &KeyPath> = HashMap::new();
        let mut reported: HashSet<&KeyPath> = HashSet::new();
        for m in seen {
            if reported.contains(&m.key) {
                continue;
            }
            let shown = m.path.display();
            let message = if let Some(j) = first_disk.get(&(m.node, m.path.clone())) {
                let node = nodes
                    .get(m.node)
                    .and_then(|x| x.name.as_deref())
                    .unwrap_or_default();
                format!(
                    "{shown} is replica[{j}]'s disk on {node}: the metadata would overwrite its data"
                )
            } else if let Some(other) = first_path.get(&m.path) {
                format!("{shown} is also {other}")
            } else if let Some(other) = first_meta.get(&(m.node, m.path.as_path())) {
                format!("{shown} is also {other}: each replica needs metadata of its own")
            } else {
                first_meta.insert((m.node, &m.path), &m.key);
                continue;
            };
            self.error(m.key.clone(), message, META_DISK_HINT);
            reported.insert(&m.key);
        }
    }
}

fn lookup<T: Clone>(choices: &[(&str, T)], text: &str) -> Option<T> {
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| value.clone())
}

fn name_of<'c, T: PartialEq>(choices: &[(&'c str, T)], value: &T) -> &'c str {
    choices
        .iter()
        .find(|(_, v)| v == value)
        .map_or("", |(name, _)| name)
}

/// `names` (already quoted) and the default, e.g. `"A", "B" or "C"
/// (default "C")`.
fn choices_hint(names: Vec<String>, default: &str) -> String {
    format!("{} (default {default:?})", either(&names))
}

/// "a", "a or b", "a, b or c".
fn either(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
