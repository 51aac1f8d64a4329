//! The resource groups: `[[group]]` and its `[[group.resource]]` tables,
//! heartbeat's haresources lines in TOML. Part of `validate`, with the same
//! rule: report every problem at once, each with what would be valid.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Component, PathBuf};
use std::time::Duration;

use super::{Check, INTERFACE_HINT, LinkSeen, quoted_list, valid_interface, valid_name};
use crate::config::duration;
use crate::config::error::Issue;
use crate::config::locate::KeyPath;
use crate::config::model::{Fsck, Group, Node, OcfAgent, Replica, Resource, ResourceKind};
use crate::config::raw::{RawGroup, RawResource};
use crate::host::ocf;
use crate::types::NodeId;

/// The name is also (escaped) a D-Bus object path element and a name in
/// the journal; short keeps those sane, as for replicas.
const MAX_GROUP_NAME: usize = 32;
const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(5);
/// Each check is a D-Bus call, a netlink dump or a script run per resource:
/// any more often and monitoring becomes load of its own.
const MIN_MONITOR_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Filesystem type names are short ("ext4", "fuse.sshfs"); anything this
/// long is a value in the wrong key.
const MAX_FSTYPE: usize = 32;
/// UNIT_NAME_MAX in systemd, less the terminating NUL.
const MAX_UNIT_NAME: usize = 255;
/// The unit types systemd can start and stop as a job. A .device appears
/// with its hardware, a .scope is only ever made by its own process, and a
/// .slice started alone runs nothing.
const UNIT_SUFFIXES: [&str; 8] = [
    "service",
    "socket",
    "target",
    "mount",
    "automount",
    "swap",
    "path",
    "timer",
];

const GROUP_NAME_HINT: &str = "1 to 32 characters of A-Z a-z 0-9 _ -, e.g. \"web\"";
const KIND_HINT: &str =
    "one of replica, mount, ip, unit, script or ocf, e.g. unit = \"apache2.service\"";
const MOUNTPOINT_HINT: &str = "an absolute path of the folder to mount on, e.g. \"/mnt/shared\"";
const FSTYPE_HINT: &str = "a filesystem type as mount -t takes it, e.g. \"ext4\" or \"xfs\"";
const OPTIONS_HINT: &str =
    "options separated by commas, without spaces, e.g. \"noatime,nodev\" (default: none)";
const IP_HINT: &str = "an IPv4 or IPv6 address with its prefix length, e.g. \"198.51.100.10/24\" or \"2001:db8::10/64\"";
const UNIT_NAME_HINT: &str =
    "a systemd unit name of letters, digits and : - _ . \\ @, e.g. \"apache2.service\"";
const SCRIPT_HINT: &str = "an absolute path of the script, e.g. \"/etc/ha.d/resource.d/pageme\"";
const OCF_HINT: &str = "provider:type of an OCF resource agent, e.g. \"heartbeat:IPaddr2\" (ocf:heartbeat:IPaddr2 also reads)";
const PARAM_HINT: &str =
    "letters, digits and _, not starting with a digit: the agent reads it as OCF_RESKEY_<name>";
const INSTANCE_HINT: &str =
    "1 to 64 characters of A-Z a-z 0-9 _ - ., unique in the cluster, e.g. \"web-ip\"";
const MAX_INSTANCE: usize = 64;

/// What groups are checked against: the sections validated before them,
/// with placeholders where those have errors of their own (then no Config
/// is returned, so a placeholder never shows).
pub(super) struct Context<'a> {
    pub nodes: &'a [Node],
    /// Indexed like each node's addresses.
    pub links: &'a [LinkSeen],
    pub replicas: &'a [Replica],
    /// The cluster's, the default of each group.
    pub auto_failback: bool,
    /// Where OCF agents are looked for (`OCF_ROOT`, else /usr/lib/ocf).
    pub ocf_root: &'a std::path::Path,
}

/// Names and things only one group or resource may have, with the key
/// path of the first that took each, for "also ..." messages.
#[derive(Default)]
struct Taken {
    names: HashMap<String, usize>,
    replicas: HashMap<String, KeyPath>,
    mountpoints: HashMap<PathBuf, KeyPath>,
    ips: HashMap<IpAddr, KeyPath>,
    units: HashMap<String, KeyPath>,
    /// OCF_RESOURCE_INSTANCE names.
    instances: HashMap<String, KeyPath>,
    /// Each OCF agent's meta-data, read once per validation; None when it
    /// could not be read (a warning said why).
    metadata: HashMap<PathBuf, Option<ocf::Metadata>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Replica,
    Mount,
    Ip,
    Unit,
    Script,
    Ocf,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Replica,
        Kind::Mount,
        Kind::Ip,
        Kind::Unit,
        Kind::Script,
        Kind::Ocf,
    ];

    /// Also the key that makes a resource of this kind.
    fn name(self) -> &'static str {
        match self {
            Kind::Replica => "replica",
            Kind::Mount => "mount",
            Kind::Ip => "ip",
            Kind::Unit => "unit",
            Kind::Script => "script",
            Kind::Ocf => "ocf",
        }
    }

    fn written(self, r: &RawResource) -> bool {
        match self {
            Kind::Replica => r.replica.is_some(),
            Kind::Mount => r.mount.is_some(),
            Kind::Ip => r.ip.is_some(),
            Kind::Unit => r.unit.is_some(),
            Kind::Script => r.script.is_some(),
            Kind::Ocf => r.ocf.is_some(),
        }
    }

    /// Long enough for the usual case of each: a mount may wait for fsck
    /// of a filesystem taken over from a crashed node, and 90s is systemd's
    /// own default for a unit. An OCF agent gets a script's: agents
    /// advertise 20 s for a quick start (IPaddr2) and 60 s for a slow one
    /// (Filesystem).
    fn default_timeout(self) -> Duration {
        Duration::from_secs(match self {
            Kind::Replica => 30,
            Kind::Mount => 60,
            Kind::Ip => 10,
            Kind::Unit => 90,
            Kind::Script => 60,
            Kind::Ocf => 60,
        })
    }
}

/// The keys only one kind takes: (key, written, that kind).
fn kind_keys(r: &RawResource) -> [(&'static str, bool, Kind); 8] {
    [
        ("device", r.device.is_some(), Kind::Mount),
        ("fstype", r.fstype.is_some(), Kind::Mount),
        ("options", r.options.is_some(), Kind::Mount),
        ("fsck", r.fsck.is_some(), Kind::Mount),
        ("interface", r.interface.is_some(), Kind::Ip),
        ("args", r.args.is_some(), Kind::Script),
        ("params", r.params.is_some(), Kind::Ocf),
        ("instance", r.instance.is_some(), Kind::Ocf),
    ]
}

/// The group being checked, as far as its resources need it.
struct GroupSeen<'r> {
    /// Known nodes only, most preferred first.
    nodes: &'r [NodeId],
    /// (index, replica name) of the group's replica resources, for the
    /// order of the mounts on their devices.
    replicas: Vec<(usize, &'r str)>,
    /// `group[N].resource`.
    key: KeyPath,
    /// The group's name ("" when it has none: an error of its own).
    name: &'r str,
    monitor_interval: Duration,
    /// (index, agent type) of the group's OCF resources, for their
    /// default instance names.
    ocf_kinds: Vec<(usize, String)>,
}

impl Check {
    pub(super) fn groups(&mut self, raw: &[RawGroup], cx: &Context, key: &KeyPath) -> Vec<Group> {
        let mut taken = Taken::default();
        let mut groups = Vec::with_capacity(raw.len());
        for (i, g) in raw.iter().enumerate() {
            let key = key.index(i);
            let name = self.group_name(g.name.as_deref(), i, &key, &mut taken);
            let nodes = self.group_nodes(g, cx.nodes, &key);
            let monitor_interval = self.monitor_interval(g.monitor_interval.as_deref(), &key);
            let failure_threshold = g.failure_threshold.unwrap_or(DEFAULT_FAILURE_THRESHOLD);
            if failure_threshold == 0 {
                self.error(
                    key.key("failure-threshold"),
                    "failure-threshold must be at least 1",
                    format!(
                        "1 (move to the next node at the first failure) or more \
                         (default {DEFAULT_FAILURE_THRESHOLD})"
                    ),
                );
            }
            if g.resource.is_empty() {
                let whose = if name.is_empty() {
                    "this group".to_string()
                } else {
                    format!("group {name}")
                };
                self.warnings.push(
                    Issue::new(
                        key.clone(),
                        format!("{whose} has no resources: it starts nothing"),
                    )
                    .hint("[[group.resource]] tables below this [[group]]"),
                );
            }
            let seen = GroupSeen {
                nodes: &nodes,
                replicas: g
                    .resource
                    .iter()
                    .enumerate()
                    .filter_map(|(j, r)| Some((j, r.replica.as_deref()?)))
                    .collect(),
                key: key.key("resource"),
                name: &name,
                monitor_interval,
                ocf_kinds: g
                    .resource
                    .iter()
                    .enumerate()
                    .filter_map(|(j, r)| {
                        let agent = ocf::parse_name(r.ocf.as_deref()?).ok()?;
                        Some((j, agent.kind))
                    })
                    .collect(),
            };
            let resources = g
                .resource
                .iter()
                .enumerate()
                .filter_map(|(j, r)| self.resource(r, j, &seen, cx, &mut taken))
                .collect();
            let auto_failback = g.auto_failback.unwrap_or(cx.auto_failback);
            let stickiness = g.stickiness.unwrap_or(0);
            if g.stickiness.is_some() && !auto_failback {
                self.warnings.push(
                    Issue::new(
                        key.key("stickiness"),
                        format!("group {name}: stickiness has no effect with auto-failback off"),
                    )
                    .hint(
                        "auto-failback = true on the group, or no stickiness: it never fails back",
                    ),
                );
            }
            groups.push(Group {
                name,
                nodes,
                auto_failback,
                stickiness,
                monitor_interval,
                failure_threshold,
                resources,
            });
        }
        groups
    }

    fn group_name(
        &mut self,
        written: Option<&str>,
        index: usize,
        key: &KeyPath,
        taken: &mut Taken,
    ) -> String {
        let Some(name) = written else {
            self.error(key.key("name"), "missing", GROUP_NAME_HINT);
            return String::new();
        };
        if !valid_name(name, MAX_GROUP_NAME, |c| {
            c.is_ascii_alphanumeric() || "_-".contains(c)
        }) {
            self.error(
                key.key("name"),
                format!("invalid group name {name:?}"),
                GROUP_NAME_HINT,
            );
        } else if let Some(j) = taken.names.get(name) {
            self.error(
                key.key("name"),
                format!("duplicate group name {name:?} (also group[{j}])"),
                "a name no other group has",
            );
        } else {
            taken.names.insert(name.to_string(), index);
        }
        name.to_string()
    }

    /// Where the group may run, most preferred first: `nodes` as written,
    /// or `preferred` and then every other node in file order. Only the
    /// nodes that exist: an unknown name has its own error.
    fn group_nodes(&mut self, g: &RawGroup, nodes: &[Node], key: &KeyPath) -> Vec<NodeId> {
        let names: Vec<&str> = nodes
            .iter()
            .map(|n| n.name.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        let known = |name: &str| {
            nodes
                .iter()
                .position(|n| n.name == name && !name.is_empty())
                .and_then(|i| u16::try_from(i).ok())
                .map(NodeId)
        };
        let unknown = |name: &str| {
            (
                format!("no node is named {name:?}"),
                format!("a node name: {}", quoted_list(&names, "no nodes")),
            )
        };
        if g.nodes.is_some() && g.preferred.is_some() {
            self.error(
                key.key("preferred"),
                "nodes and preferred both say where the group runs",
                "one of them: nodes = [...] in an order of your own, or preferred = NODE \
                 for that node first and then the others in file order",
            );
        }
        match (&g.nodes, &g.preferred) {
            (None, None) => {
                self.error(
                    key.key("nodes"),
                    "missing: a group needs nodes or preferred, to know where it runs",
                    nodes_hint(&names),
                );
                Vec::new()
            }
            (Some(list), _) => {
                if list.is_empty() {
                    self.error(
                        key.key("nodes"),
                        "no nodes: the group could run nowhere",
                        nodes_hint(&names),
                    );
                }
                let mut ids: Vec<NodeId> = Vec::with_capacity(list.len());
                for (k, name) in list.iter().enumerate() {
                    let nkey = key.key("nodes").index(k);
                    let Some(id) = known(name) else {
                        let (message, hint) = unknown(name);
                        self.error(nkey, message, hint);
                        continue;
                    };
                    if let Some(first) = list.iter().position(|n| n == name)
                        && first < k
                    {
                        self.error(
                            nkey,
                            format!("{name} is listed twice (also nodes[{first}])"),
                            "each node once, most preferred first",
                        );
                        continue;
                    }
                    ids.push(id);
                }
                ids
            }
            (None, Some(preferred)) => {
                let Some(first) = known(preferred) else {
                    let (message, hint) = unknown(preferred);
                    self.error(key.key("preferred"), message, hint);
                    return Vec::new();
                };
                // The witness runs nothing (docs/quorum.md).
                let others = names
                    .iter()
                    .filter_map(|n| known(n))
                    .filter(|&id| id != first && !nodes[usize::from(id.0)].witness);
                let mut ids = vec![first];
                for id in others {
                    // A duplicate node name has its own error; listed once.
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                ids
            }
        }
    }

    fn monitor_interval(&mut self, written: Option<&str>, key: &KeyPath) -> Duration {
        let key = key.key("monitor-interval");
        let interval = self.duration(key.clone(), written, DEFAULT_MONITOR_INTERVAL);
        let fmt = duration::format;
        if let Some(i) = interval
            && i < MIN_MONITOR_INTERVAL
        {
            self.error(
                key,
                format!("monitor-interval ({}) is too short", fmt(i)),
                format!(
                    "{} or longer (default {})",
                    fmt(MIN_MONITOR_INTERVAL),
                    fmt(DEFAULT_MONITOR_INTERVAL)
                ),
            );
        }
        interval.unwrap_or(DEFAULT_MONITOR_INTERVAL)
    }

    /// The `j`th resource of the group; `None` when its kind cannot be
    /// told (then there are errors).
    fn resource(
        &mut self,
        r: &RawResource,
        j: usize,
        group: &GroupSeen,
        cx: &Context,
        taken: &mut Taken,
    ) -> Option<Resource> {
        let key = group.key.index(j);
        let kind = self.resource_kind(r, &key);
        // Read even without a kind: their errors are errors all the same.
        let start_timeout =
            self.resource_timeout(&key, "start-timeout", r.start_timeout.as_deref(), kind);
        let stop_timeout =
            self.resource_timeout(&key, "stop-timeout", r.stop_timeout.as_deref(), kind);
        let kind = kind?;
        for (name, written, owner) in kind_keys(r) {
            if written && owner != kind {
                self.error(
                    key.key(name),
                    format!("{name} is only for {} resources", owner.name()),
                    format!("remove it from this {} resource", kind.name()),
                );
            }
        }
        let kind = match kind {
            Kind::Replica => {
                let name = r.replica.as_deref().unwrap_or_default();
                self.replica_resource(name, group, cx, &key, taken)
            }
            Kind::Mount => self.mount_resource(r, j, group, cx, &key, taken),
            Kind::Ip => self.ip_resource(r, cx, &key, taken),
            Kind::Unit => {
                let unit = r.unit.as_deref().unwrap_or_default();
                self.unit_resource(unit, &key, taken)
            }
            Kind::Script => {
                let script = r.script.as_deref().unwrap_or_default();
                let path = self.absolute_path(&key.key("script"), script, SCRIPT_HINT);
                ResourceKind::Script {
                    path: path.unwrap_or_default(),
                    args: r.args.clone().unwrap_or_default(),
                }
            }
            Kind::Ocf => self.ocf_resource(r, j, group, cx, &key, taken),
        };
        Some(Resource {
            kind,
            start_timeout,
            stop_timeout,
        })
    }

    /// The one kind key written; `key` is the resource's.
    fn resource_kind(&mut self, r: &RawResource, key: &KeyPath) -> Option<Kind> {
        let written: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.written(r)).collect();
        match written.as_slice() {
            [] => {
                self.error(
                    key.clone(),
                    "a resource needs a kind: replica, mount, ip, unit, script or ocf",
                    KIND_HINT,
                );
                None
            }
            [one] => Some(*one),
            [first, others @ ..] => {
                for other in others {
                    self.error(
                        key.key(other.name()),
                        format!(
                            "{} and {} in one resource: a resource is of one kind",
                            first.name(),
                            other.name()
                        ),
                        "one [[group.resource]] table each, in start order",
                    );
                }
                None
            }
        }
    }

    /// Never 0: a step that may take no time at all fails every time.
    /// `kind` gives the default; without one (an error of its own) the
    /// value is only checked.
    fn resource_timeout(
        &mut self,
        key: &KeyPath,
        name: &str,
        written: Option<&str>,
        kind: Option<Kind>,
    ) -> Duration {
        let key = key.key(name);
        let default = kind.map_or(Duration::ZERO, Kind::default_timeout);
        let timeout = self.duration(key.clone(), written, default);
        if written.is_some() && timeout == Some(Duration::ZERO) {
            let hint = match kind {
                Some(kind) => format!(
                    "a duration above 0ms (default {} for a {} resource)",
                    duration::format(default),
                    kind.name()
                ),
                None => "a duration above 0ms".to_string(),
            };
            self.error(key, format!("{name} 0ms would fail every time"), hint);
        }
        timeout.unwrap_or(default)
    }

    /// `key` is the resource's.
    fn replica_resource(
        &mut self,
        name: &str,
        group: &GroupSeen,
        cx: &Context,
        key: &KeyPath,
        taken: &mut Taken,
    ) -> ResourceKind {
        let rkey = key.key("replica");
        match cx
            .replicas
            .iter()
            .find(|x| x.name == name && !name.is_empty())
        {
            None => {
                let names: Vec<&str> = cx.replicas.iter().map(|x| x.name.as_str()).collect();
                self.error(
                    rkey.clone(),
                    format!("no replica is named {name:?}"),
                    format!(
                        "a replica's name: {}",
                        quoted_list(&names, "no [[replica]] tables")
                    ),
                );
            }
            Some(replica) => {
                // Promoting needs the disk: on a node without one the group
                // would fail to start every time it moved there.
                let (with, without): (Vec<NodeId>, Vec<NodeId>) = group
                    .nodes
                    .iter()
                    .partition(|id| replica.disk(**id).is_some());
                if !without.is_empty() {
                    let names = |ids: &[NodeId]| -> Vec<String> {
                        ids.iter()
                            .filter_map(|id| cx.nodes.get(usize::from(id.0)))
                            .map(|n| n.name.clone())
                            .collect()
                    };
                    // The group's own order where it has nodes with a disk;
                    // else every node with one.
                    let mut suggested = names(&with);
                    if suggested.is_empty() {
                        suggested = cx
                            .nodes
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| replica.disks.get(*i).is_some_and(Option::is_some))
                            .map(|(_, n)| n.name.clone())
                            .collect();
                    }
                    let quoted: Vec<String> = suggested.iter().map(|n| format!("{n:?}")).collect();
                    self.error(
                        rkey.clone(),
                        format!(
                            "replica {name} has no disk on {}, where this group may run",
                            and_list(&names(&without))
                        ),
                        format!(
                            "only nodes with a disk for {name} in the group: nodes = [{}]",
                            quoted.join(", ")
                        ),
                    );
                }
            }
        }
        if !name.is_empty() {
            if let Some(other) = taken.replicas.get(name) {
                self.error(
                    rkey,
                    format!("replica {name} is also started by {other}"),
                    "each replica in one group only, the one that uses its data",
                );
            } else {
                taken.replicas.insert(name.to_string(), key.clone());
            }
        }
        ResourceKind::Replica {
            replica: name.to_string(),
        }
    }

    /// The `j`th resource of `group`, a mount; `key` is the resource's.
    fn mount_resource(
        &mut self,
        r: &RawResource,
        j: usize,
        group: &GroupSeen,
        cx: &Context,
        key: &KeyPath,
        taken: &mut Taken,
    ) -> ResourceKind {
        let mountpoint = self.mountpoint(r.mount.as_deref().unwrap_or_default(), key, taken);
        let device = self.mount_device(r.device.as_deref(), j, group, cx, key);
        let fstype = match r.fstype.as_deref() {
            None => {
                self.error(key.key("fstype"), "missing", FSTYPE_HINT);
                String::new()
            }
            Some(t) => {
                if !valid_name(t, MAX_FSTYPE, |c| {
                    c.is_ascii_alphanumeric() || "._-".contains(c)
                }) {
                    self.error(
                        key.key("fstype"),
                        format!("{t:?} is not a filesystem type"),
                        FSTYPE_HINT,
                    );
                }
                t.to_string()
            }
        };
        let options = r.options.clone().unwrap_or_default();
        if options.contains(|c: char| c.is_whitespace() || c.is_control()) {
            self.error(
                key.key("options"),
                format!("{options:?}: mount options have no spaces"),
                OPTIONS_HINT,
            );
        }
        let fsck = self.choice(
            key.key("fsck"),
            r.fsck.as_deref(),
            "an fsck setting",
            &Fsck::ALL.map(|f| (f.name(), f)),
            Fsck::default(),
        );
        ResourceKind::Mount {
            device: device.unwrap_or_default(),
            mountpoint: mountpoint.unwrap_or_default(),
            fstype,
            options,
            fsck,
        }
    }

    /// Normalized ("/mnt/shared/" is "/mnt/shared"): systemd names a mount
    /// unit after the path and refuses one that is not.
    fn mountpoint(&mut self, text: &str, key: &KeyPath, taken: &mut Taken) -> Option<PathBuf> {
        let mkey = key.key("mount");
        let path = self.absolute_path(&mkey, text, MOUNTPOINT_HINT)?;
        if path.components().any(|c| c == Component::ParentDir) {
            self.error(
                mkey,
                format!("{text:?} goes up a folder with \"..\""),
                MOUNTPOINT_HINT,
            );
            return None;
        }
        let path: PathBuf = path.components().collect();
        if let Some(other) = taken.mountpoints.get(&path) {
            self.error(
                mkey,
                format!("{} is also mounted by {other}", path.display()),
                "a mountpoint no other resource uses",
            );
        } else {
            taken.mountpoints.insert(path.clone(), key.clone());
        }
        Some(path)
    }

    /// A replica's name stands for its device. A replica's device, by name
    /// or by path, only exists once the replica is primary, so its replica
    /// resource must come first in the same group.
    fn mount_device(
        &mut self,
        written: Option<&str>,
        j: usize,
        group: &GroupSeen,
        cx: &Context,
        key: &KeyPath,
    ) -> Option<PathBuf> {
        let dkey = key.key("device");
        let names: Vec<&str> = cx.replicas.iter().map(|x| x.name.as_str()).collect();
        let hint = if names.is_empty() {
            "an absolute path of a device, e.g. \"/dev/sdc1\"".to_string()
        } else {
            format!(
                "a replica's name ({}) or an absolute path of a device, e.g. \"/dev/sdc1\"",
                quoted_list(&names, "")
            )
        };
        let Some(text) = written else {
            self.error(dkey, "missing", hint);
            return None;
        };
        let (device, replica) = if text.starts_with('/') {
            let device = self.absolute_path(&dkey, text, &hint)?;
            if let Some((replica, node)) = backing_disk(cx, group.nodes, &device) {
                self.error(
                    dkey,
                    format!(
                        "{} is replica {}'s disk on {node}: mounting it bypasses replication",
                        device.display(),
                        replica.name
                    ),
                    format!(
                        "{:?}, the replica's name, mounts its device ({})",
                        replica.name,
                        replica.device.display()
                    ),
                );
                return None;
            }
            let replica = cx.replicas.iter().find(|x| x.device == device);
            (device, replica)
        } else {
            let Some(replica) = cx.replicas.iter().find(|x| x.name == text) else {
                self.error(dkey, format!("no replica is named {text:?}"), hint);
                return None;
            };
            (replica.device.clone(), Some(replica))
        };
        if let Some(replica) = replica {
            let name = replica.name.as_str();
            let started = group
                .replicas
                .iter()
                .find(|(_, r)| *r == name)
                .map(|(i, _)| *i);
            let order = format!("a [[group.resource]] with replica = {name:?} above this mount");
            match started {
                Some(i) if i < j => {}
                Some(i) => self.error(
                    dkey,
                    format!(
                        "mounts replica {name}'s device before {} starts the replica",
                        group.key.index(i)
                    ),
                    order,
                ),
                None => self.error(
                    dkey,
                    format!("mounts replica {name}'s device, but this group does not start {name}"),
                    order,
                ),
            }
        }
        Some(device)
    }

    /// `key` is the resource's.
    fn ip_resource(
        &mut self,
        r: &RawResource,
        cx: &Context,
        key: &KeyPath,
        taken: &mut Taken,
    ) -> ResourceKind {
        let ikey = key.key("ip");
        let text = r.ip.as_deref().unwrap_or_default();
        let parsed = self.floating_ip(&ikey, text);
        if let Some((ip, _)) = parsed {
            if let Some((node, link)) = node_with(cx, ip) {
                self.error(
                    ikey.clone(),
                    format!("{ip} is {node}'s own address on link {link}"),
                    "an address no node has: the floating one moves between nodes",
                );
            } else if let Some(other) = taken.ips.get(&ip) {
                self.error(
                    ikey,
                    format!("{ip} is also set by {other}"),
                    "an address no other resource sets",
                );
            } else {
                taken.ips.insert(ip, key.clone());
            }
        }
        let interface = match r.interface.as_deref() {
            None => {
                self.error(key.key("interface"), "missing", INTERFACE_HINT);
                String::new()
            }
            Some(iface) => {
                if !valid_interface(iface) {
                    self.error(
                        key.key("interface"),
                        format!("invalid interface name {iface:?}"),
                        INTERFACE_HINT,
                    );
                }
                iface.to_string()
            }
        };
        let (address, prefix) = parsed.unwrap_or((IpAddr::from(Ipv4Addr::UNSPECIFIED), 0));
        ResourceKind::Ip {
            address,
            prefix,
            interface,
        }
    }

    /// "ADDRESS/PREFIX". The prefix is required, not defaulted to a host
    /// route: it decides which hosts are reached directly, and a /32 where
    /// the network is a /24 reaches none of them without a route.
    fn floating_ip(&mut self, key: &KeyPath, text: &str) -> Option<(IpAddr, u8)> {
        let Some((address, prefix)) = text.split_once('/') else {
            if let Ok(ip) = text.parse::<IpAddr>() {
                let example = if ip.is_ipv4() { 24 } else { 64 };
                self.error(
                    key.clone(),
                    format!("{text:?} has no prefix length"),
                    format!(
                        "the address with the prefix length of its network, e.g. \"{ip}/{example}\""
                    ),
                );
            } else {
                self.error(
                    key.clone(),
                    format!("{text:?} is not an IP address with a prefix length"),
                    IP_HINT,
                );
            }
            return None;
        };
        let Ok(ip) = address.parse::<IpAddr>() else {
            self.error(
                key.clone(),
                format!("{address:?} is not an IP address"),
                IP_HINT,
            );
            return None;
        };
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let Some(prefix) = prefix.parse::<u8>().ok().filter(|p| (1..=max).contains(p)) else {
            let version = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            self.error(
                key.clone(),
                format!("/{prefix} is not a prefix length of an {version} address"),
                format!(
                    "1 to {max}, e.g. \"{ip}/{}\"",
                    if ip.is_ipv4() { 24 } else { 64 }
                ),
            );
            return None;
        };
        let not_a_host = ip.is_unspecified()
            || ip.is_multicast()
            || ip.is_loopback()
            || ip == IpAddr::from(Ipv4Addr::BROADCAST);
        if not_a_host {
            self.error(key.clone(), format!("{ip} is not a host address"), IP_HINT);
            return None;
        }
        // /31 and /32 have no network or broadcast address of their own
        // (RFC 3021).
        if let IpAddr::V4(v4) = ip
            && prefix <= 30
        {
            let host_bits = u32::MAX >> prefix;
            let host = u32::from(v4) & host_bits;
            let network = Ipv4Addr::from(u32::from(v4) & !host_bits);
            let which = if host == 0 {
                Some("network")
            } else if host == host_bits {
                Some("broadcast")
            } else {
                None
            };
            if let Some(which) = which {
                let first = Ipv4Addr::from(u32::from(network) + 1);
                self.error(
                    key.clone(),
                    format!("{ip} is the {which} address of {network}/{prefix}"),
                    format!("a host address in it, e.g. \"{first}/{prefix}\""),
                );
                return None;
            }
        }
        Some((ip, prefix))
    }

    /// `key` is the resource's.
    fn unit_resource(&mut self, unit: &str, key: &KeyPath, taken: &mut Taken) -> ResourceKind {
        let ukey = key.key("unit");
        let suffixes = UNIT_SUFFIXES
            .iter()
            .map(|s| format!(".{s}"))
            .collect::<Vec<_>>()
            .join(", ");
        // systemd's own rule for unit names; '\' is its escape ("\x2d").
        let bad_char = |c: char| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
        let (stem, suffix) = unit.rsplit_once('.').unwrap_or((unit, ""));
        let problem = if unit.len() > MAX_UNIT_NAME
            || unit.contains(bad_char)
            || unit.starts_with('.')
            || unit.ends_with('.')
            || unit.is_empty()
        {
            Some((
                format!("{unit:?} is not a unit name"),
                UNIT_NAME_HINT.to_string(),
            ))
        } else if ["device", "scope", "slice"].contains(&suffix) {
            Some((
                format!("{unit:?} is a .{suffix} unit, which a resource cannot start and stop"),
                format!("a unit ending in {suffixes}"),
            ))
        } else if !UNIT_SUFFIXES.contains(&suffix) {
            Some((
                format!("{unit:?} has no unit type"),
                format!("\"{unit}.service\", or the name with another type: {suffixes}"),
            ))
        } else if stem.ends_with('@') {
            Some((
                format!("{unit:?} is a template: it needs an instance"),
                format!("\"{stem}INSTANCE.{suffix}\", e.g. \"{stem}1.{suffix}\""),
            ))
        } else {
            None
        };
        if let Some((message, hint)) = problem {
            self.error(ukey, message, hint);
        } else if let Some(other) = taken.units.get(unit) {
            self.error(
                ukey,
                format!("{unit} is also started by {other}"),
                "a unit no other resource starts",
            );
        } else {
            taken.units.insert(unit.to_string(), key.clone());
        }
        ResourceKind::Unit {
            unit: unit.to_string(),
        }
    }

    /// The `j`th resource of `group`, an OCF agent; `key` is the
    /// resource's. What can be known from the file alone is an error when
    /// wrong. Whether the agent is installed is a warning: the file is the
    /// same on every node and is often checked on a machine that runs no
    /// resources (an admin's laptop, a CI job); the node that lacks it fails
    /// the start, and the group moves on. When the agent is here, its
    /// meta-data is the reference for the parameters: a name it does not
    /// declare (a typo the agent would silently ignore) and a required one
    /// left out are errors.
    fn ocf_resource(
        &mut self,
        r: &RawResource,
        j: usize,
        group: &GroupSeen,
        cx: &Context,
        key: &KeyPath,
        taken: &mut Taken,
    ) -> ResourceKind {
        let okey = key.key("ocf");
        let text = r.ocf.as_deref().unwrap_or_default();
        let params = r.params.clone().unwrap_or_default();
        let agent = match ocf::parse_name(text) {
            Ok(agent) => Some(agent),
            Err(e) => {
                let hint = match &e {
                    ocf::NameError::NoProvider(t) => {
                        format!("the provider first, e.g. \"heartbeat:{t}\"")
                    }
                    ocf::NameError::Class { class } => format!(
                        "ocf:PROVIDER:TYPE or PROVIDER:TYPE; a {class} resource is \
                         unit = \"NAME.service\" (systemd) or script = \"/etc/init.d/NAME\" (lsb)"
                    ),
                    _ => OCF_HINT.to_string(),
                };
                self.error(okey.clone(), e.to_string(), hint);
                None
            }
        };
        let pkey = key.key("params");
        for (name, value) in &params {
            if !ocf::valid_param_name(name) {
                self.error(
                    pkey.key(name),
                    format!("{name:?} is not a parameter name"),
                    PARAM_HINT,
                );
            } else if name.starts_with(ocf::META_PREFIX) {
                self.error(
                    pkey.key(name),
                    format!("{name} is a cluster meta attribute, which duet sets itself"),
                    "leave it out: CRM_meta_timeout is the operation's start-timeout or \
                     stop-timeout, CRM_meta_interval the group's monitor-interval",
                );
            }
            if value.contains('\0') {
                self.error(
                    pkey.key(name),
                    format!("the value of {name} has a NUL character"),
                    "a value without \\u0000: it is passed in the environment",
                );
            }
        }
        let instance = self.ocf_instance(r, j, group, key, taken);
        let Some(agent) = agent else {
            return ResourceKind::Ocf(OcfAgent {
                agent: ocf::AgentName {
                    provider: String::new(),
                    kind: String::new(),
                },
                instance,
                params,
                root: cx.ocf_root.to_path_buf(),
                monitor_interval: group.monitor_interval,
            });
        };
        if let Some(metadata) = self.ocf_metadata(&agent, cx.ocf_root, &okey, taken) {
            self.ocf_params(&agent, &metadata, &params, key);
        }
        ResourceKind::Ocf(OcfAgent {
            agent,
            instance,
            params,
            root: cx.ocf_root.to_path_buf(),
            monitor_interval: group.monitor_interval,
        })
    }

    /// OCF_RESOURCE_INSTANCE: `instance` as written, else GROUP-TYPE, and
    /// GROUP-TYPE-2, -3 ... for the group's later agents of the same type,
    /// so adding or moving resources of other types changes no name (an
    /// agent's state file is named after it).
    fn ocf_instance(
        &mut self,
        r: &RawResource,
        j: usize,
        group: &GroupSeen,
        key: &KeyPath,
        taken: &mut Taken,
    ) -> String {
        let ikey = key.key("instance");
        let instance = match r.instance.as_deref() {
            Some(written) => {
                if !valid_name(written, MAX_INSTANCE, |c| {
                    c.is_ascii_alphanumeric() || "_-.".contains(c)
                }) || written.starts_with('.')
                {
                    self.error(
                        ikey.clone(),
                        format!("invalid instance name {written:?}"),
                        INSTANCE_HINT,
                    );
                    return written.to_string();
                }
                written.to_string()
            }
            None => {
                let Some(kind) = group
                    .ocf_kinds
                    .iter()
                    .find(|(i, _)| *i == j)
                    .map(|(_, k)| k.as_str())
                else {
                    // The agent's name has an error of its own.
                    return String::new();
                };
                let nth = group
                    .ocf_kinds
                    .iter()
                    .filter(|(i, k)| *i <= j && k == kind)
                    .count();
                match nth {
                    0 | 1 => format!("{}-{kind}", group.name),
                    n => format!("{}-{kind}-{n}", group.name),
                }
            }
        };
        if instance.is_empty() || group.name.is_empty() && r.instance.is_none() {
            return instance;
        }
        if let Some(other) = taken.instances.get(&instance) {
            self.error(
                ikey,
                format!("instance {instance} is also {other}'s"),
                format!("instance = \"NAME\", a name of its own: {INSTANCE_HINT}"),
            );
        } else {
            taken.instances.insert(instance.clone(), key.clone());
        }
        instance
    }

    /// The agent's meta-data, read once per agent; a warning (at `okey`)
    /// and None when the agent is not here or does not answer.
    fn ocf_metadata(
        &mut self,
        agent: &ocf::AgentName,
        root: &std::path::Path,
        okey: &KeyPath,
        taken: &mut Taken,
    ) -> Option<ocf::Metadata> {
        let path = agent.path(root);
        if let Some(seen) = taken.metadata.get(&path) {
            return seen.clone();
        }
        let read = if !path.is_file() {
            let package = if agent.provider == "heartbeat" {
                "resource-agents, which has the heartbeat agents,"
            } else {
                "the package that has it"
            };
            Err((
                format!(
                    "{agent} is not installed on this machine (no {}): a node without it \
                     cannot start this group; its parameters are not checked",
                    path.display()
                ),
                format!(
                    "install {package} on every node that may run the group \
                     ({} sets another OCF root than {})",
                    ocf::ROOT_ENV,
                    ocf::DEFAULT_ROOT
                ),
            ))
        } else {
            ocf::read_metadata(root, agent).map_err(|e| {
                (
                    format!(
                        "cannot read the meta-data of {agent} ({}): {e}; its parameters \
                         are not checked",
                        path.display()
                    ),
                    format!("`{} meta-data` prints an XML document", path.display()),
                )
            })
        };
        let metadata = match read {
            Ok(m) => Some(m),
            Err((message, hint)) => {
                self.warnings
                    .push(Issue::new(okey.clone(), message).hint(hint));
                None
            }
        };
        taken.metadata.insert(path, metadata.clone());
        metadata
    }

    /// `params` against what the agent declares; `key` is the resource's.
    fn ocf_params(
        &mut self,
        agent: &ocf::AgentName,
        metadata: &ocf::Metadata,
        params: &std::collections::BTreeMap<String, String>,
        key: &KeyPath,
    ) {
        let declared: Vec<&str> = metadata
            .parameters
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        for name in params.keys() {
            // A bad name or a meta attribute has its error already.
            if declared.contains(&name.as_str())
                || !ocf::valid_param_name(name)
                || name.starts_with(ocf::META_PREFIX)
            {
                continue;
            }
            let all = quoted_list(&declared, "none: it takes no parameters");
            let hint = match closest(name, &declared) {
                Some(near) => format!("{near:?}? The parameters of {agent}: {all}"),
                None => format!("the parameters of {agent}: {all}"),
            };
            self.error(
                key.key("params").key(name),
                format!("{agent} has no parameter {name:?}"),
                hint,
            );
        }
        for p in metadata.parameters.iter().filter(|p| p.required) {
            if !params.contains_key(&p.name) {
                let at = if params.is_empty() {
                    key.clone()
                } else {
                    key.key("params")
                };
                self.error(
                    at,
                    format!("{agent} needs parameter {:?}", p.name),
                    format!(
                        "params = {{ {} = \"...\" }}: its meta-data marks it required",
                        p.name
                    ),
                );
            }
        }
    }
}

/// `nodes = [...]` or `preferred = ...` with the first node names.
fn nodes_hint(names: &[&str]) -> String {
    match names {
        [] => "nodes = [NODE, ...], most preferred first, or preferred = NODE".to_string(),
        [one] => format!("nodes = [{one:?}] or preferred = {one:?}"),
        [first, second, ..] => format!(
            "nodes = [{first:?}, {second:?}] (most preferred first) or preferred = {first:?}"
        ),
    }
}

/// The replica whose backing disk `path` is on one of `nodes`, and that
/// node's name.
fn backing_disk<'c>(
    cx: &Context<'c>,
    nodes: &[NodeId],
    path: &std::path::Path,
) -> Option<(&'c Replica, &'c str)> {
    cx.replicas.iter().find_map(|replica| {
        let id = nodes.iter().find(|id| replica.disk(**id) == Some(path))?;
        let node = cx.nodes.get(usize::from(id.0))?;
        Some((replica, node.name.as_str()))
    })
}

/// The node (and link) that has `ip` as its own address, if any.
fn node_with<'c>(cx: &Context<'c>, ip: IpAddr) -> Option<(&'c str, &'c str)> {
    cx.nodes.iter().find_map(|node| {
        let l = node.addresses.iter().position(|a| *a == Some(ip))?;
        let link = cx.links.get(l)?;
        Some((node.name.as_str(), link.link.name.as_str()))
    })
}

/// "a", "a and b", "a, b and c".
fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The declared name nearest to a misspelt `name`, when it is near enough
/// to be what was meant (at most two letters off).
fn closest<'a>(name: &str, declared: &[&'a str]) -> Option<&'a str> {
    declared
        .iter()
        .map(|d| (edit_distance(name, d), *d))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, d)| d)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
