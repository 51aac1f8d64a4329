//! Raw TOML -> `Config`, checking every rule and collecting every problem,
//! so a user fixes a broken file in one round rather than one error a run.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration;
use super::error::Issue;
use super::locate::KeyPath;
use super::model::{
    Cluster, Config, DEFAULT_PORT, Group, Link, LinkMode, Node, Ping, Replica, Timings,
};
use super::raw::{
    RawCluster, RawConfig, RawLink, RawMode, RawNode, RawPing, RawReplica, RawTimings,
};
use crate::membership::auth::AuthAlgorithm;

mod fencing;
mod group;
mod metrics;
mod replica;
mod witness;

use replica::{Endpoints, LINK_TLS_FILES, Listeners, MetaSeen, Replication};

/// Longest cluster or node name; the wire format carries at most this many
/// bytes (`membership::wire::MAX_NAME`).
const MAX_NAME: usize = 64;
/// Link names are keys of `address = { ... }`; short and bare-key safe.
const MAX_LINK_NAME: usize = 32;
/// IFNAMSIZ minus the terminating NUL.
const MAX_INTERFACE: usize = 15;
/// Below this the kernel's timer slack and scheduling noise are a large
/// share of the interval, and heartbeats turn into load.
const MIN_KEEPALIVE: Duration = Duration::from_millis(10);
const DEFAULT_TTL: u8 = 1;
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PING_DEADTIME: Duration = Duration::from_secs(5);
/// The name is also the NBD export name, a file name under duetd's runtime
/// folder and (escaped) a D-Bus object path element; short keeps those sane.
const MAX_REPLICA_NAME: usize = 32;

pub struct Validated {
    pub config: Config,
    pub warnings: Vec<Issue>,
}

/// `path` is the config file's: relative key files resolve against its folder.
/// OCF agents are looked for under `ocf_root`.
pub fn validate(raw: RawConfig, path: &Path, ocf_root: &Path) -> Result<Validated, Vec<Issue>> {
    let mut check = Check::default();
    let root = KeyPath::root();
    check.witness(&raw, &root);
    let cluster = check.cluster(raw.cluster, &root.key("cluster"), path);
    let timings = check.timings(raw.timings.unwrap_or_default(), &root.key("timings"));
    let links = check.links(&raw.link, &root.key("link"));
    let nodes = check.nodes(&raw.node, &raw.link, &links, &root.key("node"));
    let ping = check.ping(raw.ping.unwrap_or_default(), &root.key("ping"));
    // Without a [cluster] there is already an error, and no Config to use
    // the replicas' key file in.
    let cluster_key = cluster.as_ref().map(|c| c.key_file.clone());
    let replicas = check.replicas(
        &raw.replica,
        &raw.node,
        cluster_key.as_deref().unwrap_or(Path::new("")),
        path,
        &root.key("replica"),
    );
    let groups = check.groups(
        &raw.group,
        &group::Context {
            nodes: &nodes,
            links: &links,
            replicas: &replicas,
            auto_failback: cluster.as_ref().is_some_and(|c| c.auto_failback),
            ocf_root,
        },
        &root.key("group"),
    );
    let fencing = check.fencing(raw.fencing, &root.key("fencing"));
    let deadtime = timings
        .as_ref()
        .map_or(Timings::default().deadtime, |t| t.deadtime);
    let self_fence = check.self_fence(raw.self_fence, deadtime, &root.key("self-fence"));
    let metrics = raw
        .metrics
        .and_then(|m| check.metrics(m, &root.key("metrics")));
    if let Some(c) = &cluster {
        check.heartbeat_room(c, &nodes, &groups, &replicas, &root.key("group"));
        check.takeover_means(c, &nodes, &groups, fencing.is_some(), &root.key("cluster"));
    }
    match (cluster, timings, ping) {
        (Some(cluster), Some(timings), Some(ping)) if check.errors.is_empty() => Ok(Validated {
            config: Config {
                path: path.to_path_buf(),
                cluster,
                timings,
                nodes,
                links: links.into_iter().map(|l| l.link).collect(),
                ping,
                replicas,
                groups,
                fencing,
                self_fence,
                metrics,
            },
            warnings: check.warnings,
        }),
        _ => Err(check.errors),
    }
}

#[derive(Default)]
struct Check {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

/// A link as far as it could be read; `mode` is `None` when it was missing,
/// so node checks that depend on it are skipped rather than guessed.
struct LinkSeen {
    link: Link,
    mode: Option<RawMode>,
}

impl Check {
    /// A two-node cluster without a witness cannot tell a crashed peer
    /// from a cut link: say what that means for its groups.
    fn takeover_means(
        &mut self,
        c: &Cluster,
        nodes: &[Node],
        groups: &[Group],
        fencing: bool,
        key: &KeyPath,
    ) {
        let two_node = nodes.len() == 2 && !nodes.iter().any(|n| n.witness);
        if c.unfenced_takeover && (fencing || !two_node) {
            self.warnings.push(Issue::new(
                key.key("unfenced-takeover"),
                "unfenced-takeover has no effect with [fencing], a witness or three or more nodes",
            ));
            return;
        }
        if !two_node || groups.is_empty() || fencing {
            return;
        }
        let issue = if c.unfenced_takeover {
            Issue::new(
                key.key("unfenced-takeover"),
                "unfenced-takeover: when only the links between the two nodes break, both run the groups \
                 (and both write the replica: a split brain)",
            )
            .hint("a witness node (witness = true) or [fencing]")
        } else {
            Issue::new(
                key.clone(),
                "two nodes without a witness or [fencing]: a node that goes silent may still run its groups, \
                 so the other takes nothing over from it until an administrator runs `duetctl confirm-off`",
            )
            .hint("a witness node (witness = true), [fencing], or unfenced-takeover = true to accept split brains")
        };
        self.warnings.push(issue);
    }

    /// Every node announces each group's state and wish in its heartbeats,
    /// and each replica's fencing notes (record 5): they must fit in one
    /// packet, or peers would drop every heartbeat.
    fn heartbeat_room(
        &mut self,
        c: &Cluster,
        nodes: &[Node],
        groups: &[Group],
        replicas: &[Replica],
        key: &KeyPath,
    ) {
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let replica_names: Vec<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
        let fences = if replicas.is_empty() {
            0
        } else {
            crate::membership::fence_records::worst_case_len(&replica_names)
        };
        // With a witness or three nodes or more, nodes also say whom they
        // see (record 3).
        let seen = if nodes.iter().any(|n| n.witness) || nodes.len() >= 3 {
            13 + 2 * nodes.len()
        } else {
            0
        };
        // The config digest (record 6) rides in every heartbeat; the
        // protocol and echo records (7, 8) are left out of a heartbeat
        // they would make too long (membership::core).
        let digest = crate::membership::config_digest::encode(0).len();
        let ext = crate::membership::node_state::worst_case_len(&names) + seen + fences + digest;
        let node = nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
        let len = crate::membership::wire::heartbeat_len(c.name.len(), node, ext, c.auth.tag_len());
        if (groups.is_empty() && replicas.is_empty()) || len <= crate::membership::wire::MAX_PACKET
        {
            return;
        }
        self.error(
            key.clone(),
            format!(
                "{} groups and {} replicas do not fit in a heartbeat ({len} bytes, at most {})",
                groups.len(),
                replicas.len(),
                crate::membership::wire::MAX_PACKET
            ),
            "fewer groups or replicas, or shorter names (each group takes 2 × its name length + 19 bytes, \
             each replica 2 × its name length + 20)",
        );
    }

    fn error(&mut self, key: KeyPath, message: impl Into<String>, hint: impl Into<String>) {
        self.errors.push(Issue::new(key, message).hint(hint));
    }

    fn cluster(&mut self, raw: Option<RawCluster>, key: &KeyPath, path: &Path) -> Option<Cluster> {
        let Some(raw) = raw else {
            self.error(
                key.clone(),
                "missing [cluster] section",
                "a [cluster] table with at least name and key-file",
            );
            return None;
        };
        let name = match raw.name {
            None => {
                self.error(key.key("name"), "missing", CLUSTER_NAME_HINT);
                String::new()
            }
            Some(name) => {
                if !valid_name(&name, MAX_NAME, |c| {
                    c.is_ascii_alphanumeric() || "._-".contains(c)
                }) {
                    self.error(
                        key.key("name"),
                        format!("invalid cluster name {name:?}"),
                        CLUSTER_NAME_HINT,
                    );
                }
                name
            }
        };
        let key_file = match raw.key_file.as_deref().map(str::trim) {
            None | Some("") => {
                self.error(
                    key.key("key-file"),
                    "a key file is required",
                    "a path to the cluster key, e.g. \"duet.key\" (create it with `duetctl keygen`)",
                );
                Default::default()
            }
            Some(file) => beside(path, file),
        };
        if raw.auth == AuthAlgorithm::Crc && !raw.allow_insecure_crc {
            self.error(
                key.key("auth"),
                "auth = \"crc\" authenticates nothing: anyone on the links can forge heartbeats",
                "hmac-sha256 (or hmac-sha1, hmac-md5); keep crc only with allow-insecure-crc = true",
            );
        }
        Some(Cluster {
            name,
            key_file,
            auth: raw.auth,
            auto_failback: raw.auto_failback,
            wait_for_all: raw.wait_for_all,
            unfenced_takeover: raw.unfenced_takeover,
        })
    }

    fn duration(
        &mut self,
        key: KeyPath,
        text: Option<&str>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(text) = text else {
            return Some(default);
        };
        match duration::parse(text) {
            Ok(d) => Some(d),
            Err(e) => {
                let hint = e.hint();
                self.error(key, e.to_string(), hint);
                None
            }
        }
    }

    fn timings(&mut self, raw: RawTimings, key: &KeyPath) -> Option<Timings> {
        let default = Timings::default();
        let keepalive = self.duration(
            key.key("keepalive"),
            raw.keepalive.as_deref(),
            default.keepalive,
        );
        let warntime = self.duration(
            key.key("warntime"),
            raw.warntime.as_deref(),
            default.warntime,
        );
        let deadtime = self.duration(
            key.key("deadtime"),
            raw.deadtime.as_deref(),
            default.deadtime,
        );
        let initdead = self.duration(
            key.key("initdead"),
            raw.initdead.as_deref(),
            default.initdead,
        );
        let fmt = duration::format;
        if let Some(k) = keepalive
            && k < MIN_KEEPALIVE
        {
            self.error(
                key.key("keepalive"),
                format!("keepalive ({}) is too short", fmt(k)),
                format!("{} or longer", fmt(MIN_KEEPALIVE)),
            );
        }
        let chain = [
            ("keepalive", keepalive),
            ("warntime", warntime),
            ("deadtime", deadtime),
        ];
        for pair in chain.windows(2) {
            if let [(shorter, Some(a)), (longer, Some(b))] = pair
                && b <= a
            {
                self.error(
                    key.key(longer),
                    format!(
                        "{longer} ({}) must be longer than {shorter} ({})",
                        fmt(*b),
                        fmt(*a)
                    ),
                    format!("a duration longer than {}", fmt(*a)),
                );
            }
        }
        if let (Some(d), Some(i)) = (deadtime, initdead)
            && i < d
        {
            self.error(
                key.key("initdead"),
                format!(
                    "initdead ({}) must not be shorter than deadtime ({})",
                    fmt(i),
                    fmt(d)
                ),
                format!("{} or longer", fmt(d)),
            );
        }
        if let (Some(k), Some(d)) = (keepalive, deadtime)
            && d < k * 3
            && d > k
        {
            self.warnings.push(
                Issue::new(
                    key.key("deadtime"),
                    format!(
                        "deadtime ({}) is less than 3 x keepalive ({}): two lost heartbeats in a row declare a node dead",
                        fmt(d),
                        fmt(k)
                    ),
                )
                .hint(format!("{} or longer", fmt(k * 3))),
            );
        }
        Some(Timings {
            keepalive: keepalive?,
            warntime: warntime?,
            deadtime: deadtime?,
            initdead: initdead?,
        })
    }

    fn links(&mut self, raw: &[RawLink], key: &KeyPath) -> Vec<LinkSeen> {
        if raw.is_empty() {
            self.error(
                key.clone(),
                "no links: nodes need at least one [[link]] to exchange heartbeats",
                "a [[link]] table with name, interface and mode",
            );
        }
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut seen = Vec::with_capacity(raw.len());
        for (i, link) in raw.iter().enumerate() {
            let key = key.index(i);
            let name = link.name.clone().unwrap_or_default();
            match &link.name {
                None => self.error(key.key("name"), "missing", LINK_NAME_HINT),
                Some(name) => {
                    if !valid_name(name, MAX_LINK_NAME, |c| {
                        c.is_ascii_alphanumeric() || "_-".contains(c)
                    }) {
                        self.error(
                            key.key("name"),
                            format!("invalid link name {name:?}"),
                            LINK_NAME_HINT,
                        );
                    } else if let Some(j) = first.get(name.as_str()) {
                        self.error(
                            key.key("name"),
                            format!("duplicate link name {name:?} (also link[{j}])"),
                            "a name no other link has",
                        );
                    } else {
                        first.insert(name, i);
                    }
                }
            }
            let interface = link.interface.clone().unwrap_or_default();
            match &link.interface {
                None => self.error(key.key("interface"), "missing", INTERFACE_HINT),
                Some(iface) => {
                    if !valid_interface(iface) {
                        self.error(
                            key.key("interface"),
                            format!("invalid interface name {iface:?}"),
                            INTERFACE_HINT,
                        );
                    }
                }
            }
            if link.mode.is_none() {
                self.error(key.key("mode"), "missing", "ucast, bcast or mcast");
            }
            let port = link.port.unwrap_or(DEFAULT_PORT);
            if port == 0 {
                self.error(
                    key.key("port"),
                    "port 0 is not a port",
                    "1 to 65535 (default 694)",
                );
            }
            let mode = self.link_mode(link, &key);
            seen.push(LinkSeen {
                link: Link {
                    name,
                    interface,
                    mode,
                    port,
                },
                mode: link.mode,
            });
        }
        seen
    }

    fn link_mode(&mut self, link: &RawLink, key: &KeyPath) -> LinkMode {
        if link.mode != Some(RawMode::Mcast) {
            if link.group.is_some() {
                self.error(
                    key.key("group"),
                    "group is only for mode = \"mcast\"",
                    "remove it, or set mode = \"mcast\"",
                );
            }
            if link.ttl.is_some() {
                self.error(
                    key.key("ttl"),
                    "ttl is only for mode = \"mcast\"",
                    "remove it, or set mode = \"mcast\"",
                );
            }
            return if link.mode == Some(RawMode::Bcast) {
                LinkMode::Broadcast
            } else {
                LinkMode::Unicast
            };
        }
        let ttl = link.ttl.unwrap_or(DEFAULT_TTL);
        if ttl == 0 {
            self.error(
                key.key("ttl"),
                "ttl 0 never leaves this host",
                "1 to 255 (default 1)",
            );
        }
        let group = match link.group.as_deref() {
            None => {
                self.error(
                    key.key("group"),
                    "missing: mcast links need a group",
                    GROUP_HINT,
                );
                None
            }
            Some(text) => match text.parse::<IpAddr>() {
                Ok(ip) if ip.is_multicast() => Some(ip),
                Ok(_) => {
                    self.error(
                        key.key("group"),
                        format!("{text} is not a multicast address"),
                        GROUP_HINT,
                    );
                    None
                }
                Err(_) => {
                    self.error(
                        key.key("group"),
                        format!("{text:?} is not an IP address"),
                        GROUP_HINT,
                    );
                    None
                }
            },
        };
        // A placeholder group only matters when there are errors, and then
        // no Config is returned.
        LinkMode::Multicast {
            group: group.unwrap_or(IpAddr::from([239, 255, 6, 94])),
            ttl,
        }
    }

    fn nodes(
        &mut self,
        raw: &[RawNode],
        raw_links: &[RawLink],
        links: &[LinkSeen],
        key: &KeyPath,
    ) -> Vec<Node> {
        if raw.is_empty() {
            self.error(
                key.clone(),
                "no nodes: the cluster needs at least one [[node]]",
                "a [[node]] table per cluster member, with name and address",
            );
        } else if raw.len() == 1 {
            self.warnings.push(
                Issue::new(
                    key.index(0),
                    "a single-node cluster has no node to fail over to",
                )
                .hint("two or more [[node]] tables"),
            );
        }
        let link_names: Vec<&str> = raw_links.iter().filter_map(|l| l.name.as_deref()).collect();
        let mut first_name: HashMap<&str, usize> = HashMap::new();
        // (link index, address) -> first node using it.
        let mut first_address: HashMap<(usize, IpAddr), usize> = HashMap::new();
        let mut total_votes: u64 = 0;
        let mut nodes = Vec::with_capacity(raw.len());
        for (i, node) in raw.iter().enumerate() {
            let key = key.index(i);
            match &node.name {
                None => self.error(key.key("name"), "missing", NODE_NAME_HINT),
                Some(name) => {
                    if !valid_name(name, MAX_NAME, |c| {
                        c.is_ascii_alphanumeric() || "-.".contains(c)
                    }) {
                        self.error(
                            key.key("name"),
                            format!("invalid node name {name:?}"),
                            NODE_NAME_HINT,
                        );
                    } else if let Some(j) = first_name.get(name.as_str()) {
                        self.error(
                            key.key("name"),
                            format!("duplicate node name {name:?} (also node[{j}])"),
                            "a name no other node has, usually its hostname",
                        );
                    } else {
                        first_name.insert(name, i);
                    }
                }
            }
            let votes = node.votes.unwrap_or(1);
            total_votes += u64::from(votes);

            let mut addresses: Vec<Option<IpAddr>> = vec![None; links.len()];
            for (link_name, text) in &node.address {
                let akey = key.key("address").key(link_name);
                let Some(l) = links
                    .iter()
                    .position(|l| l.link.name == *link_name && !link_name.is_empty())
                else {
                    self.error(
                        akey,
                        format!("no link is named {link_name:?}"),
                        format!("a link name: {}", quoted_list(&link_names, "no links")),
                    );
                    continue;
                };
                let Some(ip) = self.node_address(&akey, text, &links[l]) else {
                    continue;
                };
                if let Some(&j) = first_address.get(&(l, ip)) {
                    self.error(
                        akey,
                        format!("address {ip} on link {link_name:?} is also node[{j}]'s"),
                        "an address no other node has on this link",
                    );
                    continue;
                }
                first_address.insert((l, ip), i);
                addresses[l] = Some(ip);
            }
            for seen in links {
                if seen.mode == Some(RawMode::Ucast) && !node.address.contains_key(&seen.link.name)
                {
                    self.error(
                        key.key("address").key(&seen.link.name),
                        format!(
                            "no address on ucast link {:?}: peers would not know where to send",
                            seen.link.name
                        ),
                        format!(
                            "add {} = \"IP\" to this node's address table",
                            seen.link.name
                        ),
                    );
                }
            }
            nodes.push(Node {
                name: node.name.clone().unwrap_or_default(),
                votes,
                witness: node.witness == Some(true),
                addresses,
            });
        }
        if !raw.is_empty() && total_votes == 0 {
            self.error(
                key.clone(),
                "the nodes have no votes between them, so quorum is never reached",
                "votes >= 1 on at least one node",
            );
        }
        nodes
    }

    fn node_address(&mut self, key: &KeyPath, text: &str, link: &LinkSeen) -> Option<IpAddr> {
        let Ok(ip) = text.parse::<IpAddr>() else {
            self.error(
                key.clone(),
                format!("{text:?} is not an IP address"),
                ADDRESS_HINT,
            );
            return None;
        };
        if ip.is_unspecified() || ip.is_multicast() {
            self.error(
                key.clone(),
                format!("{ip} is not a host address"),
                ADDRESS_HINT,
            );
            return None;
        }
        match (link.mode, link.link.mode) {
            (Some(RawMode::Bcast), _) if !ip.is_ipv4() => {
                self.error(
                    key.clone(),
                    format!("{ip} is IPv6, and IPv6 has no broadcast"),
                    "an IPv4 address, or use mode = \"mcast\" on this link",
                );
                None
            }
            (Some(RawMode::Mcast), LinkMode::Multicast { group, .. })
                if group.is_ipv4() != ip.is_ipv4() =>
            {
                self.error(
                    key.clone(),
                    format!("{ip} is not of the same IP version as the link's group {group}"),
                    "an address of the group's IP version",
                );
                None
            }
            _ => Some(ip),
        }
    }

    /// `cluster_key` is the cluster's key file, the replicas' default;
    /// `path` the config file's, for relative key files.
    fn replicas(
        &mut self,
        raw: &[RawReplica],
        nodes: &[RawNode],
        cluster_key: &Path,
        path: &Path,
        key: &KeyPath,
    ) -> Vec<Replica> {
        let node_names: Vec<&str> = nodes.iter().filter_map(|n| n.name.as_deref()).collect();
        let mut first_name: HashMap<&str, usize> = HashMap::new();
        // Devices and sockets share one map: a device at another replica's
        // socket path clobbers it just as surely as two devices would.
        let mut first_path: HashMap<PathBuf, KeyPath> = HashMap::new();
        // (node index, disk) -> first replica using it.
        let mut first_disk: HashMap<(usize, PathBuf), usize> = HashMap::new();
        let mut devices: Vec<(KeyPath, PathBuf)> = Vec::new();
        let mut meta_disks: Vec<MetaSeen> = Vec::new();
        let mut endpoints = Endpoints::default();
        let mut listeners = Listeners::default();
        let mut replicas = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let key = key.index(i);
            let name = r.name.clone().unwrap_or_default();
            let name_ok = match &r.name {
                None => {
                    self.error(key.key("name"), "missing", REPLICA_NAME_HINT);
                    false
                }
                Some(name) => {
                    if !valid_name(name, MAX_REPLICA_NAME, |c| {
                        c.is_ascii_alphanumeric() || "_-".contains(c)
                    }) {
                        self.error(
                            key.key("name"),
                            format!("invalid replica name {name:?}"),
                            REPLICA_NAME_HINT,
                        );
                        false
                    } else if let Some(j) = first_name.get(name.as_str()) {
                        self.error(
                            key.key("name"),
                            format!("duplicate replica name {name:?} (also replica[{j}])"),
                            "a name no other replica has",
                        );
                        false
                    } else {
                        first_name.insert(name, i);
                        true
                    }
                }
            };
            let device = self.replica_path(
                key.key("device"),
                r.device.as_deref(),
                name_ok.then(|| format!("/dev/duet/{name}")),
                &mut first_path,
            );
            if let Some(device) = &device {
                devices.push((key.key("device"), device.clone()));
            }
            let nbd_socket = self.replica_path(
                key.key("nbd-socket"),
                r.nbd_socket.as_deref(),
                name_ok.then(|| format!("/run/duet/nbd/{name}.sock")),
                &mut first_path,
            );

            let mut disks = vec![None; nodes.len()];
            for (node, text) in &r.disk {
                let dkey = key.key("disk").key(node);
                let Some(n) = node_index(nodes, node) else {
                    self.error(
                        dkey,
                        format!("no node is named {node:?}"),
                        format!("a node name: {}", quoted_list(&node_names, "no nodes")),
                    );
                    continue;
                };
                let Some(path) = self.absolute_path(&dkey, text, DISK_HINT) else {
                    continue;
                };
                if let Some(j) = first_disk.get(&(n, path.clone())) {
                    self.error(
                        dkey,
                        format!("{text} on {node} is also replica[{j}]'s disk"),
                        "a disk no other replica uses on this node",
                    );
                    continue;
                }
                first_disk.insert((n, path.clone()), i);
                disks[n] = Some(path);
            }
            // Counted as written: a broken entry already has its own error,
            // and a second one here would only repeat it.
            match r.disk.len() {
                0 => self.error(
                    key.key("disk"),
                    "no node has a disk for this replica",
                    format!("disk = {{ {} }}", disk_example(&node_names)),
                ),
                1 => self.warnings.push(
                    Issue::new(
                        key.key("disk"),
                        "only one node has a disk: no peer to replicate to",
                    )
                    .hint("a disk on a second node too"),
                ),
                _ => {}
            }
            // Nodes named in `disk` that exist, in file order: the ones a
            // replication address, the peer and discard-node-NAME refer to.
            let mut disk_nodes: Vec<&str> = Vec::new();
            for node in &node_names {
                // A duplicate node name has its own error; counted twice
                // here it would also read as a third disk.
                if r.disk.contains_key(*node) && !disk_nodes.contains(node) {
                    disk_nodes.push(node);
                }
            }
            if disk_nodes.len() > 2 {
                self.error(
                    key.key("disk"),
                    format!(
                        "{} nodes have a disk, but a replica has exactly two disks for now",
                        disk_nodes.len()
                    ),
                    "disks on two nodes; the others hold no copy (tie-breakers)",
                );
            }
            let port = self.replica_port(r.port, i, &key);
            let addresses =
                self.replica_addresses(r, nodes, &disk_nodes, port, &key, &mut endpoints);
            let meta_disk = self.meta_disk(
                r.meta_disk.as_ref(),
                nodes,
                &disks,
                &disk_nodes,
                &key,
                &mut meta_disks,
            );
            let Replication {
                protocol,
                on_io_error,
                fencing,
                key_file,
                verify_alg,
                policies,
                timeout,
                connect_retry,
                resync,
            } = self.replication(r, &node_names, &disk_nodes, cluster_key, path, &key);
            let nbd_tcp = self.nbd_tcp(r, nodes, &disk_nodes, path, &key, &mut listeners);
            let tls = r
                .tls
                .as_ref()
                .and_then(|t| self.tls_files(t, path, &key.key("tls"), LINK_TLS_FILES));
            replicas.push(Replica {
                name,
                device: device.unwrap_or_default(),
                disks,
                nbd_socket: nbd_socket.unwrap_or_default(),
                nbd_tcp,
                addresses,
                tls,
                protocol,
                meta_disk,
                on_io_error,
                fencing,
                key_file,
                verify_alg,
                policies,
                timeout,
                connect_retry,
                resync,
            });
        }
        // duetd replaces whatever is at `device` with its own link, and
        // removes it on detach: pointed at a disk, that deletes the disk's
        // device node on the primary.
        for (device_key, device) in devices {
            if let Some((j, node)) = disk_user(&first_disk, &device, nodes) {
                self.error(
                    device_key,
                    format!(
                        "{} is replica[{j}]'s disk on {node}: duetd would replace it with a link",
                        device.display()
                    ),
                    "a path that is not a disk, e.g. under /dev/duet/",
                );
            }
        }
        self.meta_disk_clashes(&meta_disks, &first_disk, &first_path, nodes);
        self.nbd_listen_clashes(&listeners, &endpoints);
        replicas
    }

    /// The `device` or `nbd-socket` path as written, else `default`. The
    /// default is `None` when the name it is built from is broken: that has
    /// its own error, and clashes of its default would only repeat it.
    /// `None` when there is no usable path (then there are errors).
    fn replica_path(
        &mut self,
        key: KeyPath,
        written: Option<&str>,
        default: Option<String>,
        first: &mut HashMap<PathBuf, KeyPath>,
    ) -> Option<PathBuf> {
        let (path, whose) = match written {
            Some(text) => (
                self.absolute_path(&key, text, "an absolute path of its own")?,
                "",
            ),
            None => (PathBuf::from(default?), " (the default)"),
        };
        if let Some(other) = first.get(&path) {
            self.error(
                key,
                format!("{}{whose} is also {other}", path.display()),
                "a path no other device or socket uses",
            );
        } else {
            first.insert(path.clone(), key);
        }
        Some(path)
    }

    /// `text` as a path, if it is absolute and names a file; `/` and paths
    /// ending in `..` would name a folder, never a disk or socket.
    fn absolute_path(&mut self, key: &KeyPath, text: &str, hint: &str) -> Option<PathBuf> {
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            self.error(
                key.clone(),
                format!("{text:?} is not an absolute path"),
                hint,
            );
            return None;
        }
        if path.file_name().is_none() {
            self.error(key.clone(), format!("{text:?} names no file"), hint);
            return None;
        }
        Some(path)
    }

    fn ping(&mut self, raw: RawPing, key: &KeyPath) -> Option<Ping> {
        let mut nodes = Vec::with_capacity(raw.nodes.len());
        for (i, text) in raw.nodes.iter().enumerate() {
            match text.parse::<IpAddr>() {
                Ok(ip) => nodes.push(ip),
                Err(_) => self.error(
                    key.key("nodes").index(i),
                    format!("{text:?} is not an IP address"),
                    "an IPv4 or IPv6 address of a host that answers ping, e.g. the gateway",
                ),
            }
        }
        let interval = self.duration(
            key.key("interval"),
            raw.interval.as_deref(),
            DEFAULT_PING_INTERVAL,
        );
        let deadtime = self.duration(
            key.key("deadtime"),
            raw.deadtime.as_deref(),
            DEFAULT_PING_DEADTIME,
        );
        let fmt = duration::format;
        if let Some(i) = interval
            && i < MIN_KEEPALIVE
        {
            self.error(
                key.key("interval"),
                format!("interval ({}) is too short", fmt(i)),
                format!("{} or longer", fmt(MIN_KEEPALIVE)),
            );
        }
        if let (Some(i), Some(d)) = (interval, deadtime)
            && d <= i
        {
            self.error(
                key.key("deadtime"),
                format!(
                    "deadtime ({}) must be longer than interval ({})",
                    fmt(d),
                    fmt(i)
                ),
                format!("a duration longer than {}", fmt(i)),
            );
        }
        Some(Ping {
            nodes,
            interval: interval?,
            deadtime: deadtime?,
        })
    }
}

const CLUSTER_NAME_HINT: &str = "1 to 64 characters of A-Z a-z 0-9 . _ -";
const NODE_NAME_HINT: &str =
    "1 to 64 characters of letters, digits, '-' and '.', usually the hostname";
const LINK_NAME_HINT: &str = "1 to 32 characters of A-Z a-z 0-9 _ -";
const INTERFACE_HINT: &str = "a network interface name of 1 to 15 characters, e.g. \"eth1\"";
const GROUP_HINT: &str = "a multicast address, e.g. \"239.255.6.94\" or \"ff12::694\"";
const ADDRESS_HINT: &str = "this node's IPv4 or IPv6 address on the link, e.g. \"203.0.113.1\"";
const REPLICA_NAME_HINT: &str = "1 to 32 characters of A-Z a-z 0-9 _ -, e.g. \"r0\"";
const DISK_HINT: &str =
    "an absolute path of a disk or file on that node, e.g. \"/dev/sdb\" or \"/srv/duet/r0.img\"";

/// A file named in the config at `path`, `file` resolved against its folder.
/// `parent()` of a bare "duet.toml" is "", and "".join(x) is x: relative to
/// the working directory, as the config path itself.
fn beside(path: &Path, file: &str) -> PathBuf {
    path.parent().unwrap_or(Path::new("")).join(file)
}

/// The replica and node whose disk is at `path`, if any. The first replica
/// and node, not whichever the hash map holds first: messages must not
/// change from run to run.
fn disk_user<'n>(
    first_disk: &HashMap<(usize, PathBuf), usize>,
    path: &Path,
    nodes: &'n [RawNode],
) -> Option<(usize, &'n str)> {
    let (j, n) = first_disk
        .iter()
        .filter(|((_, disk), _)| disk == path)
        .map(|((n, _), j)| (*j, *n))
        .min()?;
    let node = nodes.get(n).and_then(|x| x.name.as_deref());
    Some((j, node.unwrap_or_default()))
}

/// What the kernel takes as an interface name: it is a file name under
/// /sys/class/net, so no '/', and no whitespace, which `ip` cannot parse.
fn valid_interface(name: &str) -> bool {
    let bad = |c: char| c == '/' || c.is_whitespace() || c.is_control();
    !name.is_empty() && name.len() <= MAX_INTERFACE && !name.contains(bad)
}

fn valid_name(name: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    !name.is_empty() && name.len() <= max && name.chars().all(allowed)
}

/// `none` says what is missing when `names` is empty, e.g. "no links".
fn quoted_list(names: &[&str], none: &str) -> String {
    if names.is_empty() {
        return format!("({none} are defined)");
    }
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A node's disks for `disk = { ... }`, for the hint when there are none.
fn disk_example(node_names: &[&str]) -> String {
    let mut entries: Vec<String> = node_names
        .iter()
        .take(2)
        .map(|n| format!("{n} = \"/dev/sdb\""))
        .collect();
    if entries.is_empty() {
        entries.push("NODE = \"/dev/sdb\"".to_string());
    }
    entries.join(", ")
}

/// The index of the node named `name` in the raw node list.
fn node_index(nodes: &[RawNode], name: &str) -> Option<usize> {
    nodes.iter().position(|x| x.name.as_deref() == Some(name))
}
