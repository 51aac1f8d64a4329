//! From what the classic files say to duet's config (docs/config.md): one
//! TOML text, the key to write beside it, and the notes. Pure: the host's
//! routes (for an address without prefix or interface, found as IPaddr's
//! findif finds them) and the administrator's hints come in as values.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::authkeys::{AuthKeys, AuthMethod};
use super::drbdconf::{DrbdConf, DrbdHost, DrbdResource, MetaDisk};
use super::hacf::{HaCf, HbLink};
use super::haresources::{Group, Resource};
use super::{ImportError, Note};
use crate::config::duration;

/// The four files, parsed, with their names for messages.
pub struct Classic<'a> {
    pub ha_cf: &'a HaCf,
    pub ha_cf_name: &'a str,
    pub authkeys: Option<&'a AuthKeys>,
    pub authkeys_name: &'a str,
    pub groups: &'a [Group],
    pub haresources_name: &'a str,
    pub drbd: Option<&'a DrbdConf>,
    pub drbd_name: &'a str,
}

/// What the host and the administrator add.
pub struct Options<'a> {
    pub cluster_name: &'a str,
    /// As written into the config (relative: beside the config file).
    pub key_file: &'a str,
    /// Connected routes of this host: where an address without prefix or
    /// interface belongs.
    pub routes: &'a [Route],
    /// Node addresses the files do not give (`--node-address NODE=IP`).
    pub addresses: &'a [(String, IpAddr)],
    /// The scripts in /etc/ha.d/resource.d and /etc/init.d of this host:
    /// where a resource's script is (Heartbeat looks in that order).
    pub resource_d: &'a [String],
    pub init_d: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub network: IpAddr,
    pub prefix: u8,
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// authkeys' key, as duet's key file holds it.
    Imported(Vec<u8>),
    /// None to import (crc, or no authkeys): make a new one.
    Generate,
}

#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    pub key: Key,
    /// Replica key files (DRBD's shared-secret): name beside the config,
    /// content.
    pub replica_keys: Vec<(String, Vec<u8>)>,
    pub notes: Vec<Note>,
}

pub fn convert(c: &Classic, o: &Options) -> Result<Imported, Vec<ImportError>> {
    let mut b = Builder {
        c,
        o,
        out: String::new(),
        notes: Vec::new(),
        errors: Vec::new(),
        replica_keys: Vec::new(),
    };
    let key = b.cluster();
    b.timings();
    b.check_hints();
    let mut links = b.links();
    b.fill_from_hints(&mut links);
    b.nodes(&links);
    b.ping();
    b.fencing();
    let replicas = b.replicas(&links);
    b.groups(&replicas);
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    // Every file's notes, in file order, then the conversion's.
    let mut notes = c.ha_cf.notes.clone();
    notes.extend(c.authkeys.iter().flat_map(|a| a.notes.clone()));
    notes.extend(c.drbd.iter().flat_map(|d| d.notes.clone()));
    notes.extend(b.notes);
    let mut toml = header(&notes);
    toml.push_str(&b.out);
    Ok(Imported {
        toml,
        key,
        replica_keys: b.replica_keys,
        notes,
    })
}

/// The notes as a comment block at the top of the config.
fn header(notes: &[Note]) -> String {
    let mut s = String::from(
        "# Imported by `duetctl import heartbeat` from the classic Heartbeat and\n\
         # DRBD files. docs/config.md explains every key; docs/migrating.md the\n\
         # differences.\n",
    );
    if !notes.is_empty() {
        s.push_str("#\n# Carried over differently, or not at all:\n");
        for n in notes {
            s.push_str(&format!("# - {}\n", commented(&n.to_string())));
        }
    }
    s
}

/// A note's text as one comment line. Notes quote the classic files, and
/// a line break or control character from them would end the comment
/// (the rest read as config) or make the file unreadable: those are
/// written as escapes.
fn commented(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A link as the config will have it, with each node's address on it.
struct Link {
    name: String,
    interface: String,
    /// Every node needs an address on it.
    ucast: bool,
    addresses: BTreeMap<String, IpAddr>,
}

/// A replica as the groups refer to it.
struct ReplicaRef {
    name: String,
    device: Option<String>,
}

impl ReplicaRef {
    /// The device, or the paths udev gives every DRBD resource.
    fn names_device(&self, path: &str) -> bool {
        let by_res = format!("/dev/drbd/by-res/{}", self.name);
        self.device.as_deref() == Some(path) || path == by_res || path == format!("{by_res}/0")
    }
}

struct Builder<'a> {
    c: &'a Classic<'a>,
    o: &'a Options<'a>,
    out: String,
    notes: Vec<Note>,
    errors: Vec<ImportError>,
    replica_keys: Vec<(String, Vec<u8>)>,
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn inline(map: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{} = {}", key(k), q(v)))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

/// A bare key where TOML allows it (node names have dots: quoted).
fn key(k: &str) -> String {
    if k.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        q(k)
    }
}

impl Builder<'_> {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn note(&mut self, file: &str, line: usize, message: impl Into<String>) {
        self.notes.push(Note::new(file, line, message));
    }

    fn error(&mut self, file: &str, line: usize, message: impl Into<String>) {
        self.errors.push(ImportError::new(file, line, message));
    }

    fn node_names(&self) -> Vec<String> {
        self.c.ha_cf.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    fn cluster(&mut self) -> Key {
        let ha = self.c.ha_cf;
        self.line("[cluster]");
        self.line(&format!("name = {}", q(self.o.cluster_name)));
        self.line(&format!("key-file = {}", q(self.o.key_file)));
        let key = match self.c.authkeys {
            Some(a) => match a.method {
                AuthMethod::Sha1 => {
                    self.line("auth = \"hmac-sha1\"");
                    Key::Imported(a.key.clone().into_bytes())
                }
                AuthMethod::Md5 => {
                    self.line("auth = \"hmac-md5\"");
                    Key::Imported(a.key.clone().into_bytes())
                }
                AuthMethod::Crc => {
                    // crc authenticates nothing, and duet does not talk to
                    // Heartbeat on the wire: a new key does the job.
                    Key::Generate
                }
            },
            None => Key::Generate,
        };
        match ha.auto_failback {
            Some(on) => self.line(&format!("auto-failback = {on}")),
            None => {
                // Heartbeat's default is "legacy": fail back.
                self.line("auto-failback = true");
                self.note(
                    self.c.ha_cf_name,
                    0,
                    "no auto_failback: Heartbeat's default (legacy) fails back, so auto-failback = true",
                );
            }
        }
        self.takeover_without_stonith();
        self.line("");
        key
    }

    /// Heartbeat without stonith took the resources of a silent peer over
    /// after deadtime; duet's two-node default waits for a fence. Keeping
    /// the old behaviour keeps failover working after the migration, and
    /// the note and check-config's warning say what it costs.
    fn takeover_without_stonith(&mut self) {
        let ha = self.c.ha_cf;
        if !ha.stonith.is_empty() || ha.nodes.len() != 2 || self.c.groups.is_empty() {
            return;
        }
        self.line("unfenced-takeover = true");
        self.note(
            self.c.ha_cf_name,
            0,
            "no stonith: Heartbeat took a silent peer's resources over without fencing it, and so does this config (unfenced-takeover = true); \
             when only the links between the two nodes break, both then run the groups and both write the replicas (a split brain). \
             Add [fencing] or a witness node (docs/quorum.md) and remove unfenced-takeover",
        );
    }

    fn timings(&mut self) {
        let ha = self.c.ha_cf;
        // Heartbeat's own defaults fill the gaps, so the four keep
        // duet's order (keepalive < warntime < deadtime <= initdead).
        let keepalive = ha.keepalive.unwrap_or(Duration::from_secs(2));
        let deadtime = ha
            .deadtime
            .unwrap_or(Duration::from_secs(30).max(keepalive * 3));
        let warntime = ha.warntime.unwrap_or((keepalive + deadtime) / 2);
        let initdead = ha.initdead.unwrap_or(deadtime * 2).max(deadtime);
        if !(keepalive < warntime && warntime < deadtime) {
            let said = |d: Duration, given: bool| {
                let how = if given { "" } else { " (not in the file)" };
                format!("{}{how}", duration::format(d))
            };
            self.error(
                self.c.ha_cf_name,
                0,
                format!(
                    "keepalive {}, warntime {}, deadtime {}: duet needs keepalive < warntime < deadtime (a peer is late before it is dead, and a heartbeat comes before either); fix these lines",
                    said(keepalive, ha.keepalive.is_some()),
                    said(warntime, ha.warntime.is_some()),
                    said(deadtime, ha.deadtime.is_some()),
                ),
            );
        }
        if ha.initdead.is_some_and(|i| i < deadtime) {
            self.note(
                self.c.ha_cf_name,
                0,
                format!(
                    "initdead is shorter than deadtime: set to deadtime, {}",
                    duration::format(deadtime)
                ),
            );
        }
        self.line("[timings]");
        for (name, d) in [
            ("keepalive", keepalive),
            ("warntime", warntime),
            ("deadtime", deadtime),
            ("initdead", initdead),
        ] {
            self.line(&format!("{name} = {}", q(&duration::format(d))));
        }
        self.line("");
        if deadtime >= Duration::from_secs(5) {
            self.note(
                self.c.ha_cf_name,
                0,
                format!(
                    "deadtime {} kept as it was: duet's heartbeats are cheap, and deadtime = \"1s\" with keepalive = \"200ms\" fails over within about a second (docs/config.md)",
                    duration::format(deadtime)
                ),
            );
        }
    }

    fn links(&mut self) -> Vec<Link> {
        let ha = self.c.ha_cf;
        let port = ha.udpport.unwrap_or(694);
        let mut links: Vec<Link> = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for l in &ha.links {
            let (iface, mode, extra, peer, port) = match l {
                HbLink::Bcast { interface, .. } => (interface, "bcast", String::new(), None, port),
                HbLink::Mcast {
                    interface,
                    group,
                    port,
                    ttl,
                    ..
                } => (
                    interface,
                    "mcast",
                    format!("group = {}\nttl = {ttl}\n", q(&group.to_string())),
                    None,
                    *port,
                ),
                HbLink::Ucast {
                    interface, peer, ..
                } => (interface, "ucast", String::new(), Some(*peer), port),
            };
            let id = match l {
                HbLink::Mcast { group, port, .. } => format!("{mode}:{iface}:{group}:{port}"),
                _ => format!("{mode}:{iface}"),
            };
            let index = match seen.get(&id) {
                Some(&i) => i,
                None => {
                    let name = link_name(iface, &links);
                    self.line("[[link]]");
                    self.line(&format!("name = {}", q(&name)));
                    self.line(&format!("interface = {}", q(iface)));
                    self.line(&format!("mode = \"{mode}\""));
                    self.line(&format!("port = {port}"));
                    self.out.push_str(&extra);
                    self.line("");
                    links.push(Link {
                        name,
                        interface: iface.clone(),
                        ucast: mode == "ucast",
                        addresses: BTreeMap::new(),
                    });
                    seen.insert(id, links.len() - 1);
                    links.len() - 1
                }
            };
            if let Some(ip) = peer {
                self.place_ucast_address(&mut links[index], ip, l);
            }
        }
        if links.is_empty() {
            self.error(
                self.c.ha_cf_name,
                0,
                "no bcast, mcast or ucast line: duet needs at least one network link for its heartbeats",
            );
        }
        links
    }

    /// A ucast line names a peer's address: whose, the DRBD addresses and
    /// the administrator's hints say.
    fn place_ucast_address(&mut self, link: &mut Link, ip: IpAddr, l: &HbLink) {
        let line = match l {
            HbLink::Ucast { line, .. } => *line,
            _ => 0,
        };
        match self.owner_of(ip) {
            Some(node) => {
                link.addresses.insert(node, ip);
            }
            None => self.error(
                self.c.ha_cf_name,
                line,
                format!(
                    "ucast address {ip}: which node has it is not in the files; say it with --node-address NODE={ip}"
                ),
            ),
        }
    }

    /// `--node-address` hints name nodes of ha.cf (in full or short).
    fn check_hints(&mut self) {
        for (n, ip) in self.o.addresses {
            if self.node_named(n).is_none() {
                self.error(
                    "--node-address",
                    0,
                    format!(
                        "{n}={ip}: {n} is not a node of ha.cf ({})",
                        self.node_names().join(", ")
                    ),
                );
            }
        }
    }

    /// A node without an address on a ucast link gets its hinted address
    /// when that is in the subnet of the link's others (/24, /64).
    fn fill_from_hints(&self, links: &mut [Link]) {
        for l in links.iter_mut().filter(|l| l.ucast) {
            for (n, ip) in self.o.addresses {
                let Some(node) = self.node_named(n) else {
                    continue;
                };
                let near = l.addresses.values().any(|a| same_subnet(*a, *ip));
                if near && !l.addresses.contains_key(&node) {
                    l.addresses.insert(node, *ip);
                }
            }
        }
    }

    fn owner_of(&self, ip: IpAddr) -> Option<String> {
        if let Some((n, _)) = self.o.addresses.iter().find(|(_, a)| *a == ip) {
            return self.node_named(n);
        }
        let drbd = self.c.drbd?;
        drbd.resources
            .iter()
            .flat_map(|r| &r.hosts)
            .find(|h| h.address.is_some_and(|a| a.ip() == ip))
            .and_then(|h| h.name.clone())
            .and_then(|h| self.node_named(&h))
    }

    /// The ha.cf node a name means: the same, or the same short name.
    fn node_named(&self, name: &str) -> Option<String> {
        let short = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_lowercase();
        let names = self.node_names();
        names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .or_else(|| names.iter().find(|n| short(n) == short(name)))
            .cloned()
    }

    fn nodes(&mut self, links: &[Link]) {
        let ha = self.c.ha_cf;
        if ha.nodes.is_empty() {
            self.error(
                self.c.ha_cf_name,
                0,
                "no node line: name every node of the cluster (node NAME)",
            );
        }
        for l in links.iter().filter(|l| l.ucast) {
            for (name, line) in &ha.nodes {
                if !l.addresses.contains_key(name) {
                    self.error(
                        self.c.ha_cf_name,
                        *line,
                        format!(
                            "{name} has no address on the ucast link {}: add `ucast {} ADDRESS` for it (Heartbeat skips its own address, duet needs every node's), or --node-address {name}=ADDRESS",
                            l.name, l.interface
                        ),
                    );
                }
            }
        }
        for (name, _) in &ha.nodes {
            let addresses: BTreeMap<String, String> = links
                .iter()
                .filter_map(|l| {
                    l.addresses
                        .get(name)
                        .map(|a| (l.name.clone(), a.to_string()))
                })
                .collect();
            self.line("[[node]]");
            self.line(&format!("name = {}", q(name)));
            if !addresses.is_empty() {
                self.line(&format!("address = {}", inline(&addresses)));
            }
            self.line("");
        }
    }

    fn ping(&mut self) {
        let ha = self.c.ha_cf;
        if ha.ping.is_empty() {
            if ha.deadping.is_some() {
                self.note(
                    self.c.ha_cf_name,
                    0,
                    "deadping without ping nodes does nothing, in Heartbeat as here: not carried over",
                );
            }
            return;
        }
        let list: Vec<String> = ha.ping.iter().map(|a| q(&a.to_string())).collect();
        self.line("[ping]");
        self.line(&format!("nodes = [{}]", list.join(", ")));
        if let Some(d) = ha.deadping {
            self.line(&format!("deadtime = {}", q(&duration::format(d))));
        }
        self.line("");
        if !ha.ipfail {
            self.note(
                self.c.ha_cf_name,
                0,
                "ping nodes without ipfail: duet always acts on them as ipfail did (a node that reaches none runs no group; docs/quorum.md)",
            );
        }
    }

    fn fencing(&mut self) {
        let ha = self.c.ha_cf;
        let Some(s) = ha.stonith.first() else {
            return;
        };
        // One [fencing] command fences every node: per-node devices
        // (stonith_host node1 ... / stonith_host node2 ...) need a script
        // that picks the device by the name it is given.
        if let Some(other) = ha
            .stonith
            .iter()
            .find(|o| o.params != s.params || o.device_type != s.device_type)
        {
            self.error(
                self.c.ha_cf_name,
                other.line,
                "stonith lines with different devices: duet runs one [fencing] command with the node's name; write a script that picks the device by that name and name it in [fencing]",
            );
            return;
        }
        // stonith_host's first field is the node the device is reached
        // from: run from any other node, the line's device would reset
        // the wrong machine or none.
        if let Some(from) = &s.host {
            self.error(
                self.c.ha_cf_name,
                s.line,
                format!(
                    "stonith_host {from} ...: this device is reached from {from} only, but duet runs one [fencing] command on whichever node fences; use `stonith_host *` for a device every node reaches, or write a script that picks the device by the node's name it is given and name it in [fencing]"
                ),
            );
            return;
        }
        // cluster-glue's stonith(8) runs any of Heartbeat's STONITH
        // plugins: `stonith -t TYPE -p "PARAMS" -T reset NODE`.
        let mut args = vec![q("-t"), q(&s.device_type)];
        if s.from_file {
            args.extend([q("-F"), q(&s.params[0])]);
        } else {
            args.extend([q("-p"), q(&s.params.join(" "))]);
        }
        args.extend([q("-T"), q("reset")]);
        self.line("[fencing]");
        self.line("command = \"/usr/sbin/stonith\"");
        self.line(&format!("args = [{}]", args.join(", ")));
        self.line("");
        self.note(
            self.c.ha_cf_name,
            s.line,
            "stonith becomes [fencing] through cluster-glue's stonith command (install it on every node); duet appends the node's name",
        );
    }

    fn replicas(&mut self, links: &[Link]) -> Vec<ReplicaRef> {
        let Some(drbd) = self.c.drbd else {
            return Vec::new();
        };
        drbd.resources
            .iter()
            .filter_map(|r| self.replica(r, links))
            .collect()
    }

    /// The node an `on HOST` section names, or whose address a `floating`
    /// section has (DRBD picks the section by the host's own addresses):
    /// from --node-address or the ucast lines of ha.cf.
    fn host_node(&mut self, r: &DrbdResource, h: &DrbdHost, links: &[Link]) -> Option<String> {
        let found = match (&h.name, h.address) {
            (Some(name), _) => self.node_named(name),
            (None, Some(a)) => self
                .o
                .addresses
                .iter()
                .filter(|(_, ip)| *ip == a.ip())
                .find_map(|(n, _)| self.node_named(n))
                .or_else(|| {
                    links.iter().find_map(|l| {
                        l.addresses
                            .iter()
                            .find(|(_, ip)| **ip == a.ip())
                            .map(|(n, _)| n.clone())
                    })
                }),
            (None, None) => None,
        };
        if found.is_none() {
            let message = match (&h.name, h.address) {
                (Some(name), _) => format!(
                    "resource {}: host {name} is not a node of ha.cf ({})",
                    r.name,
                    self.node_names().join(", ")
                ),
                (None, a) => format!(
                    "resource {}: floating {}: no node is known to have this address; give it with --node-address NODE={}",
                    r.name,
                    a.map_or("?".to_string(), |a| a.to_string()),
                    a.map_or("IP".to_string(), |a| a.ip().to_string()),
                ),
            };
            self.errors.push(ImportError::new(&r.file, h.line, message));
        }
        found
    }

    fn replica(&mut self, r: &DrbdResource, links: &[Link]) -> Option<ReplicaRef> {
        let file = r.file.as_str();
        let hosts: Vec<(&DrbdHost, String)> = r
            .hosts
            .iter()
            .filter_map(|h| self.host_node(r, h, links).map(|n| (h, n)))
            .collect();
        if let Some(twice) = hosts
            .iter()
            .enumerate()
            .find(|(i, (_, n))| hosts[..*i].iter().any(|(_, m)| m == n))
        {
            self.error(
                file,
                twice.1.0.line,
                format!("resource {}: {} has two host sections", r.name, twice.1.1),
            );
            return None;
        }
        if hosts.len() != 2 {
            self.error(
                file,
                r.line,
                format!(
                    "resource {}: duet replicates between two nodes, this names {}",
                    r.name,
                    hosts.len()
                ),
            );
            return None;
        }
        let mut disk = BTreeMap::new();
        let mut address = BTreeMap::new();
        let mut ports = Vec::new();
        for (h, node) in &hosts {
            match &h.disk {
                Some(d) => {
                    disk.insert(node.clone(), d.clone());
                }
                None => self.error(
                    file,
                    h.line,
                    format!("resource {}: {node} has no disk", r.name),
                ),
            }
            match h.address {
                Some(a) => {
                    address.insert(node.clone(), a.ip().to_string());
                    ports.push(a.port());
                }
                None => self.error(
                    file,
                    h.line,
                    format!("resource {}: {node} has no address", r.name),
                ),
            }
        }
        let device = common(hosts.iter().map(|(h, _)| h.device.clone()));
        if device.is_none() {
            self.note(
                &r.file,
                r.line,
                format!(
                    "resource {}: the hosts name different devices; duet's is /dev/duet/{} on both",
                    r.name, r.name
                ),
            );
        }
        self.line("[[replica]]");
        self.line(&format!("name = {}", q(&r.name)));
        if let Some(Some(d)) = &device {
            self.line(&format!("device = {}", q(d)));
        }
        self.line(&format!("disk = {}", inline(&disk)));
        self.line(&format!("address = {}", inline(&address)));
        if let Some(Some(p)) = common(ports.iter().map(|p| Some(*p))) {
            self.line(&format!("port = {p}"));
        } else {
            self.error(
                file,
                r.line,
                format!(
                    "resource {}: the hosts use different ports; duet's replication link has one",
                    r.name
                ),
            );
        }
        if let Some(p) = r.protocol {
            self.line(&format!("protocol = \"{}\"", p.to_ascii_uppercase()));
        }
        self.meta_disk(r, &hosts);
        self.policies(r);
        self.replica_key(r);
        self.resync(r);
        self.line("");
        Some(ReplicaRef {
            name: r.name.clone(),
            device: device.flatten(),
        })
    }

    fn meta_disk(&mut self, r: &DrbdResource, hosts: &[(&DrbdHost, String)]) {
        let mut external = BTreeMap::new();
        for (h, node) in hosts {
            match &h.meta_disk {
                None | Some(MetaDisk::Internal) => {}
                Some(MetaDisk::External { path, index }) => {
                    if let Some(i) = index {
                        self.error(
                            &r.file,
                            h.line,
                            format!(
                                "resource {}: meta-disk {path} [{i}]: an indexed metadata device holds several resources; duet keeps one replica's metadata per device or file: give it its own",
                                r.name
                            ),
                        );
                    }
                    external.insert(node.clone(), path.clone());
                }
            }
        }
        if let Some((h, node)) = hosts
            .iter()
            .find(|(_, n)| !external.is_empty() && !external.contains_key(n))
        {
            self.error(
                &r.file,
                h.line,
                format!(
                    "resource {}: {node} keeps its metadata internal and the other node on a meta-disk of its own: duet's two copies must be the same size, so both internal or both external (give {node} a meta-disk too)",
                    r.name
                ),
            );
        } else if !external.is_empty() {
            self.line(&format!("meta-disk = {}", inline(&external)));
        }
        let room = if external.is_empty() {
            " Internal metadata: duet's takes more room at the end of the disk than DRBD's (docs/metadata.md), so shrink the filesystem first (by what `duetctl create-md` says the device loses, e.g. with resize2fs) or use an external meta-disk."
        } else {
            ""
        };
        self.note(
            &r.file,
            r.line,
            format!(
                "resource {}: duet's metadata format is its own: run `duetctl create-md {}` on both nodes before the first start, then `duetctl primary {} --force` on the node with the good data (a full sync follows).{room}",
                r.name, r.name, r.name
            ),
        );
    }

    fn policies(&mut self, r: &DrbdResource) {
        let supported: [(&str, &Option<String>, &[&str]); 3] = [
            (
                "after-sb-0pri",
                &r.after_sb_0pri,
                &[
                    "disconnect",
                    "discard-younger-primary",
                    "discard-older-primary",
                    "discard-zero-changes",
                    "discard-least-changes",
                ],
            ),
            (
                "after-sb-1pri",
                &r.after_sb_1pri,
                &[
                    "disconnect",
                    "consensus",
                    "discard-secondary",
                    "violently-as0p",
                ],
            ),
            (
                "after-sb-2pri",
                &r.after_sb_2pri,
                &["disconnect", "violently-as0p"],
            ),
        ];
        for (name, value, known) in supported {
            // DRBD's default for all three is disconnect; duet's defaults
            // discard data on their own, so a policy drbd.conf does not
            // give stays DRBD's.
            let Some(v) = value else {
                self.line(&format!("{name} = \"disconnect\""));
                continue;
            };
            if known.contains(&v.as_str()) {
                self.line(&format!("{name} = {}", q(v)));
            } else if name == "after-sb-0pri" && v.starts_with("discard-node-") {
                let node = v.trim_start_matches("discard-node-");
                match self.node_named(node) {
                    Some(n) => self.line(&format!("{name} = {}", q(&format!("discard-node-{n}")))),
                    None => self.error(
                        &r.file,
                        r.line,
                        format!("resource {}: {name} {v}: {node} is not a node", r.name),
                    ),
                }
            } else {
                self.line(&format!("{name} = \"disconnect\""));
                self.note(
                    &r.file,
                    r.line,
                    format!("resource {}: {name} {v} has no equivalent in duet: disconnect (an administrator decides)", r.name),
                );
            }
        }
        match r.on_io_error.as_deref() {
            None | Some("detach") => {}
            Some("pass_on") | Some("pass-on") => self.line("on-io-error = \"pass-on\""),
            Some(other) => self.note(
                &r.file,
                r.line,
                format!(
                    "resource {}: on-io-error {other}: duet detaches (its default)",
                    r.name
                ),
            ),
        }
        match r.verify_alg.as_deref() {
            None => {}
            Some(a @ ("crc32c" | "sha256")) => self.line(&format!("verify-alg = \"{a}\"")),
            Some(other) => self.note(
                &r.file,
                r.line,
                format!("resource {}: verify-alg {other}: duet verifies with crc32c (default) or sha256", r.name),
            ),
        }
        if let Some(c) = &r.csums_alg {
            self.note(
                &r.file,
                r.line,
                format!("resource {}: csums-alg {c}: duet resyncs what its bitmap marks, without checksums", r.name),
            );
        }
    }

    fn replica_key(&mut self, r: &DrbdResource) {
        let Some(secret) = &r.shared_secret else {
            return;
        };
        // Not NAME.key: a resource named like the cluster key would take it.
        let name = format!("{}-link.key", r.name);
        self.line(&format!("key-file = {}", q(&name)));
        self.replica_keys.push((name, secret.clone().into_bytes()));
        if let Some(alg) = &r.cram_hmac_alg {
            self.note(
                &r.file,
                r.line,
                format!("resource {}: shared-secret kept as the link's key file; cram-hmac-alg {alg} replaced by duet's own link authentication", r.name),
            );
        }
    }

    fn resync(&mut self, r: &DrbdResource) {
        let mut rate = |name: &str, s: &Option<String>, unit: u64| -> Option<u64> {
            let v = s.as_deref()?;
            match drbd_size(v, unit) {
                Some(0) => {
                    self.notes.push(Note::new(
                        &r.file,
                        r.line,
                        format!(
                            "resource {}: {name} 0 (off in DRBD) left to duet's default",
                            r.name
                        ),
                    ));
                    None
                }
                Some(bytes) => Some(bytes),
                None => {
                    self.errors.push(ImportError::new(
                        &r.file,
                        r.line,
                        format!("resource {}: {name} {v} is not a size", r.name),
                    ));
                    None
                }
            }
        };
        // DRBD: rates in KiB/s and c-fill-target in sectors without a unit.
        let max = rate("c-max-rate", &r.c_max_rate, 1024).or(rate("rate", &r.rate, 1024));
        let min = rate("c-min-rate", &r.c_min_rate, 1024);
        let fill = rate("c-fill-target", &r.c_fill_target, 512);
        // duet's rate-min (default 1M) may not exceed rate-max.
        let min = match (min, max) {
            (Some(lo), Some(hi)) => Some(lo.min(hi)),
            (None, Some(hi)) if hi < 1 << 20 => Some(hi),
            (lo, _) => lo,
        };
        if max.is_none() && min.is_none() && fill.is_none() {
            return;
        }
        self.line("");
        self.line("[replica.resync]");
        for (k, v) in [("rate-max", max), ("rate-min", min), ("fill-target", fill)] {
            if let Some(v) = v {
                self.line(&format!("{k} = {}", q(&size_text(v))));
            }
        }
        if r.rate.is_some() && r.c_max_rate.is_none() {
            self.note(
                &r.file,
                r.line,
                format!("resource {}: the fixed resync rate becomes rate-max of duet's dynamic controller, which yields to application writes", r.name),
            );
        }
    }

    fn groups(&mut self, replicas: &[ReplicaRef]) {
        let mut names: Vec<String> = Vec::new();
        for (i, g) in self.c.groups.iter().enumerate() {
            let name = group_name(g, i, &names);
            names.push(name.clone());
            let Some(preferred) = self.node_named(&g.preferred) else {
                self.error(
                    self.c.haresources_name,
                    g.line,
                    format!(
                        "{} is not a node of ha.cf ({})",
                        g.preferred,
                        self.node_names().join(", ")
                    ),
                );
                continue;
            };
            self.line("[[group]]");
            self.line(&format!("name = {}", q(&name)));
            self.line(&format!("preferred = {}", q(&preferred)));
            self.line("");
            for r in &g.resources {
                self.resource(g, r, replicas);
            }
        }
    }

    fn resource(&mut self, g: &Group, r: &Resource, replicas: &[ReplicaRef]) {
        let file = self.c.haresources_name;
        let body = match r {
            Resource::Replica { name } => match (name, replicas) {
                (Some(n), _) if replicas.iter().any(|x| &x.name == n) => {
                    format!("replica = {}", q(n))
                }
                (None, [only]) => {
                    self.note(
                        file,
                        g.line,
                        format!(
                            "drbddisk without a resource means all of them: {}",
                            only.name
                        ),
                    );
                    format!("replica = {}", q(&only.name))
                }
                (n, _) => {
                    let what = n.clone().unwrap_or_else(|| "all".into());
                    self.error(
                        file,
                        g.line,
                        format!("drbddisk::{what}: no such single resource in drbd.conf"),
                    );
                    return;
                }
            },
            Resource::Filesystem {
                device,
                mountpoint,
                fstype,
                options,
            } => {
                let dev = match replicas.iter().find(|x| x.names_device(device)) {
                    Some(x) => x.name.clone(),
                    None if device.starts_with("/dev/drbd") => {
                        self.error(
                            file,
                            g.line,
                            format!(
                                "Filesystem on {device}: no resource of drbd.conf has that device"
                            ),
                        );
                        return;
                    }
                    None => match filesystem_source(device) {
                        Ok(path) => path,
                        Err(why) => {
                            self.error(file, g.line, format!("Filesystem on {device}: {why}"));
                            return;
                        }
                    },
                };
                let mut s = format!(
                    "mount = {}\ndevice = {}\nfstype = {}",
                    q(mountpoint),
                    q(&dev),
                    q(fstype)
                );
                if let Some(o) = options {
                    s.push_str(&format!("\noptions = {}", q(o)));
                }
                s
            }
            Resource::Ip {
                address,
                prefix,
                interface,
                broadcast,
            } => {
                // IPaddr's eth0:0 is an alias label of eth0; duet adds the
                // address to eth0 itself (`ip addr` shows it there).
                let interface = interface.as_ref().map(|i| match i.split_once(':') {
                    Some((base, _)) => {
                        self.note(
                            file,
                            g.line,
                            format!(
                                "{address} on {i}: the alias label goes, the address goes on {base}"
                            ),
                        );
                        base.to_string()
                    }
                    None => i.clone(),
                });
                let Some((prefix, interface)) = self.place_ip(g, *address, *prefix, interface)
                else {
                    return;
                };
                if broadcast.is_some() {
                    self.note(
                        file,
                        g.line,
                        format!("{address}: the broadcast address is derived from the prefix"),
                    );
                }
                format!(
                    "ip = {}\ninterface = {}",
                    q(&format!("{address}/{prefix}")),
                    q(&interface)
                )
            }
            Resource::Unit { name } if self.o.resource_d.contains(name) => {
                // Heartbeat looks in resource.d before init.d.
                format!(
                    "script = {}\nargs = []",
                    q(&format!("/etc/ha.d/resource.d/{name}"))
                )
            }
            Resource::Unit { name } if UNIT_TYPES.iter().any(|t| name.ends_with(t)) => {
                format!("unit = {}", q(name))
            }
            Resource::Unit { name } => format!("unit = {}", q(&format!("{name}.service"))),
            Resource::Script { name, args } => {
                let list: Vec<String> = args.iter().map(|a| q(a)).collect();
                let dir = if !self.o.resource_d.contains(name) && self.o.init_d.contains(name) {
                    "/etc/init.d"
                } else {
                    "/etc/ha.d/resource.d"
                };
                if !self.o.resource_d.contains(name) && !self.o.init_d.contains(name) {
                    self.note(file, g.line, format!("{name}: not in /etc/ha.d/resource.d or /etc/init.d on this host: install it on every node"));
                }
                format!(
                    "script = {}\nargs = [{}]",
                    q(&format!("{dir}/{name}")),
                    list.join(", ")
                )
            }
        };
        self.line("[[group.resource]]");
        self.line(&body);
        self.line("");
    }

    /// The prefix and interface of a floating address: as written, or the
    /// connected route it falls in, as IPaddr's findif finds them.
    fn place_ip(
        &mut self,
        g: &Group,
        address: IpAddr,
        prefix: Option<u8>,
        interface: Option<String>,
    ) -> Option<(u8, String)> {
        if let (Some(p), Some(i)) = (prefix, interface.clone()) {
            return Some((p, i));
        }
        let route = self
            .o
            .routes
            .iter()
            .filter(|r| contains(r, address))
            .max_by_key(|r| r.prefix);
        match route {
            Some(r) => {
                let p = prefix.unwrap_or(r.prefix);
                let i = interface.unwrap_or_else(|| r.interface.clone());
                self.note(
                    self.c.haresources_name,
                    g.line,
                    format!(
                        "{address}: /{p} on {i}, from this host's route {}/{} (as IPaddr's findif)",
                        r.network, r.prefix
                    ),
                );
                Some((p, i))
            }
            None => {
                self.error(
                    self.c.haresources_name,
                    g.line,
                    format!("{address}: no route of this host contains it, so its prefix and interface are unknown: write IPaddr::{address}/PREFIX/INTERFACE"),
                );
                None
            }
        }
    }
}

/// Unit names that already say their type.
const UNIT_TYPES: [&str; 6] = [
    ".service", ".socket", ".target", ".mount", ".timer", ".path",
];

/// The one value all give, if they agree.
fn common<T: PartialEq>(mut values: impl Iterator<Item = T>) -> Option<T> {
    let first = values.next()?;
    values.all(|v| v == first).then_some(first)
}

fn same_subnet(a: IpAddr, b: IpAddr) -> bool {
    let prefix = if a.is_ipv4() { 24 } else { 64 };
    contains(
        &Route {
            network: a,
            prefix,
            interface: String::new(),
        },
        b,
    )
}

fn contains(r: &Route, a: IpAddr) -> bool {
    match (r.network, a) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(r.prefix.min(32)))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(r.prefix.min(128)))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// A link name from its interface, unique among `links`.
fn link_name(interface: &str, links: &[Link]) -> String {
    let taken: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    unique_name(interface, &taken)
}

/// A group's name: its last service's, else `groupN`; unique.
fn group_name(g: &Group, index: usize, taken: &[String]) -> String {
    let from_unit = g.resources.iter().rev().find_map(|r| match r {
        Resource::Unit { name } => Some(name.clone()),
        _ => None,
    });
    let base = from_unit.unwrap_or_else(|| format!("group{}", index + 1));
    let taken: Vec<&str> = taken.iter().map(String::as_str).collect();
    unique_name(&base, &taken)
}

/// `base` in the characters names may have (`A-Z a-z 0-9 _ -`), made
/// unique among `taken` with `-2`, `-3` ...
fn unique_name(base: &str, taken: &[&str]) -> String {
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(28)
        .collect();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name.as_str()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// Bytes with the largest binary suffix that says them exactly.
fn size_text(bytes: u64) -> String {
    for (suffix, unit) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// A DRBD size in bytes: a bare number counts in `unit` bytes (KiB for
/// rates, 512-byte sectors for c-fill-target); `s` is sectors, K, M and G
/// binary.
fn drbd_size(text: &str, unit: u64) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let scale = match suffix.to_ascii_lowercase().as_str() {
        "" => unit,
        "s" => 512,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Heartbeat's Filesystem device forms as a device path: `-LLABEL` and
/// `-UUUID` (mount's own) as udev's links. A network source (NFS's
/// host:/export) is not a block device duet's mount resource takes.
fn filesystem_source(device: &str) -> Result<String, String> {
    let link = |dir: &str, name: &str| {
        if name.is_empty() || name.contains('/') {
            Err(format!("\"{name}\" is not a filesystem {dir}"))
        } else {
            Ok(format!("/dev/disk/by-{dir}/{name}"))
        }
    };
    match device {
        d if d.starts_with("-L") => link("label", &d[2..]),
        d if d.starts_with("-U") => link("uuid", &d[2..]),
        d if d.starts_with('/') => Ok(d.to_string()),
        d if d.contains(':') => Err(
            "a network filesystem is not a mount duet manages: write a systemd mount unit for it and name that unit in the group (unit = \"NAME.mount\")"
                .to_string(),
        ),
        _ => Err("not a device path, -LLABEL or -UUUID".to_string()),
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
