//! Heartbeat's ha.cf: one directive a line, `name value...`, read the way
//! Heartbeat 2.1/3.0 read it (heartbeat/config.c and the HBcomm plugins)
//! so that a file Heartbeat ran with imports: `#` starts a comment
//! anywhere on a line, names are lowercase and matched exactly, values
//! of list directives (`node`, `bcast`, `ping`...) are split on spaces,
//! tabs and commas, and a directive given twice keeps its last value.
//! Beyond Heartbeat, a line ending in `\` continues on the next.
//!
//! Every directive Heartbeat knows is either carried over into [`HaCf`]
//! or explained by a [`Note`]; a name Heartbeat does not know is an error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::{ImportError, Note};

/// What an ha.cf says, as far as duet can use it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HaCf {
    /// Node names as written, with the line each was named on; `node a b`
    /// names two.
    pub nodes: Vec<(String, usize)>,
    pub keepalive: Option<Duration>,
    pub warntime: Option<Duration>,
    pub deadtime: Option<Duration>,
    pub initdead: Option<Duration>,
    pub udpport: Option<u16>,
    /// The heartbeat links in file order.
    pub links: Vec<HbLink>,
    /// `ping`/`ping6` hosts and the members of every `ping_group`, in
    /// order, each once.
    pub ping: Vec<IpAddr>,
    pub deadping: Option<Duration>,
    /// `legacy` is `true` (with a note).
    pub auto_failback: Option<bool>,
    /// `respawn USER .../ipfail` was seen: it becomes duet's ping-node
    /// policy rather than a process.
    pub ipfail: bool,
    pub stonith: Vec<Stonith>,
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HbLink {
    /// `bcast eth1 eth2` (or its old name `udp`) gives one per interface.
    Bcast { interface: String, line: usize },
    /// `mcast IFACE GROUP PORT TTL LOOP`, or `mcast6` with an IPv6 group.
    Mcast {
        interface: String,
        group: IpAddr,
        port: u16,
        ttl: u8,
        line: usize,
    },
    /// `ucast IFACE PEER`, or `ucast6` with an IPv6 peer.
    Ucast {
        interface: String,
        peer: IpAddr,
        line: usize,
    },
}

/// A `stonith TYPE CONFIGFILE` line (`host: None`, `params` is the
/// config file) or a `stonith_host HOST TYPE PARAMS...` line (`host:
/// None` for `*`, any host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stonith {
    pub host: Option<String>,
    pub device_type: String,
    pub params: Vec<String>,
    /// `stonith TYPE FILE`: `params` is the one file holding them.
    pub from_file: bool,
    pub line: usize,
}

pub fn parse(text: &str, file: &str) -> Result<HaCf, Vec<ImportError>> {
    let mut parser = Parser::new(file);
    for directive in directives(text) {
        parser.directive(&directive);
    }
    parser.finish()
}

/// Directives carried over, or mapped to an error, by a function of
/// their own.
const HANDLED: &[&str] = &[
    "node",
    "keepalive",
    "warntime",
    "deadtime",
    "initdead",
    "deadping",
    "udpport",
    "bcast",
    "udp",
    "mcast",
    "mcast6",
    "ucast",
    "ucast6",
    "ping",
    "ping6",
    "ping_group",
    "auto_failback",
    "nice_failback",
    "autojoin",
    "respawn",
    "failfast",
    "crm",
    "pacemaker",
    "stonith",
    "stonith_host",
    "cluster",
];

const LOGGING: &str = "duet logs to the journal (`journalctl -u duetd`)";
const NOT_UDP: &str =
    "duet runs its links over UDP only (bcast, mcast, ucast); add a second network link instead";
const WIRE: &str = "duet's packets have a format of their own, with no such setting";
const PACEMAKER_ONLY: &str = "it only applies to a Pacemaker (crm) cluster";
const SCHEDULING: &str =
    "duetd's scheduling is set in its systemd unit (CPUSchedulingPolicy=, CPUSchedulingPriority=)";
const CORES: &str = "core dumps are systemd-coredump's (`coredumpctl`)";

/// Every other directive Heartbeat knows, and why duet does without it.
const NO_EQUIVALENT: &[(&str, &str)] = &[
    ("logfacility", LOGGING),
    ("logfile", LOGGING),
    ("debugfile", LOGGING),
    ("use_logd", LOGGING),
    ("debug", LOGGING),
    ("conn_logd_time", LOGGING),
    ("log_badpack", LOGGING),
    ("syslogmsgfmt", LOGGING),
    ("serial", NOT_UDP),
    ("baud", NOT_UDP),
    ("rds", NOT_UDP),
    ("tipc", NOT_UDP),
    ("openais", NOT_UDP),
    (
        "hbaping",
        "Fibre Channel ping nodes have no equivalent: duet pings IP addresses",
    ),
    (
        "hopfudge",
        "it bounds forwarding over serial links; duet forwards no packets",
    ),
    (
        "watchdog",
        "duet uses systemd's watchdog instead (WatchdogSec= in duetd.service)",
    ),
    (
        "apiauth",
        "duet has no Heartbeat client API: duetctl talks to duetd over D-Bus, whose policy says who may",
    ),
    (
        "env",
        "duet starts no helper processes; set Environment= in the unit of the service that needs it",
    ),
    ("use_apphbd", "there is no apphbd: systemd supervises duetd"),
    ("realtime", SCHEDULING),
    ("rtprio", SCHEDULING),
    ("normalpoll", "it chose Heartbeat's own poll loop"),
    ("coredumps", CORES),
    ("coreroot", CORES),
    (
        "hbgenmethod",
        "duet stores no generation number: each start of duetd picks a new incarnation",
    ),
    (
        "uuidfrom",
        "duet knows nodes by their names in its config, not by UUIDs",
    ),
    ("msgfmt", WIRE),
    ("compression", WIRE),
    ("compression_threshold", WIRE),
    ("traditional_compression", WIRE),
    ("max_rexmit_delay", WIRE),
    ("memreserve", "duetd preallocates no memory reserve"),
    (
        "quorum_server",
        "duet's equivalent is a witness node (witness = true in its [[node]], docs/quorum.md)",
    ),
    ("crm_daemon_dir", PACEMAKER_ONLY),
    ("crmd_spawns_pengine", PACEMAKER_ONLY),
    ("record_config_changes", PACEMAKER_ONLY),
    ("record_pengine_inputs", PACEMAKER_ONLY),
    ("enable_config_writes", PACEMAKER_ONLY),
];

fn is_known(name: &str) -> bool {
    HANDLED.contains(&name) || NO_EQUIVALENT.iter().any(|(n, _)| *n == name)
}

/// One directive: its name and the rest of its (logical) line.
#[derive(Debug)]
struct Directive {
    line: usize,
    name: String,
    rest: String,
}

impl Directive {
    /// The rest split on whitespace, for directives Heartbeat reads as a
    /// whole line (commas are part of their values).
    fn words(&self) -> Vec<&str> {
        self.rest
            .split(is_space)
            .filter(|w| !w.is_empty())
            .collect()
    }

    /// The rest split on whitespace and commas, as Heartbeat splits the
    /// values of list directives (`node a,b`).
    fn values(&self) -> Vec<&str> {
        self.rest
            .split(|c| is_space(c) || c == ',')
            .filter(|w| !w.is_empty())
            .collect()
    }
}

/// Heartbeat's whitespace, " \t\n\r\f": exactly ASCII whitespace.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
}

fn directives(text: &str) -> Vec<Directive> {
    super::logical_lines(text)
        .into_iter()
        .filter_map(|(line, body)| {
            let body = body.trim_start_matches(is_space);
            if body.is_empty() {
                return None;
            }
            let end = body.find(is_space).unwrap_or(body.len());
            let (name, rest) = body.split_at(end);
            Some(Directive {
                line,
                name: name.to_string(),
                rest: rest.to_string(),
            })
        })
        .collect()
}

struct Parser<'a> {
    file: &'a str,
    cf: HaCf,
    errors: Vec<ImportError>,
    /// The line a single-valued setting was last given on, to note that
    /// a later one replaces it.
    set_on: HashMap<&'static str, usize>,
    /// The first bcast or ucast link: a udpport after it came too late
    /// for Heartbeat.
    first_udp_link: Option<usize>,
    ipfail_line: Option<usize>,
}

impl<'a> Parser<'a> {
    fn new(file: &'a str) -> Parser<'a> {
        Parser {
            file,
            cf: HaCf::default(),
            errors: Vec::new(),
            set_on: HashMap::new(),
            first_udp_link: None,
            ipfail_line: None,
        }
    }

    fn finish(mut self) -> Result<HaCf, Vec<ImportError>> {
        if let Some(line) = self.ipfail_line
            && self.cf.ping.is_empty()
        {
            self.note(
                line,
                "ipfail without ping nodes: it had nothing to compare, and duet gets no ping nodes either",
            );
        }
        if self.errors.is_empty() {
            Ok(self.cf)
        } else {
            Err(self.errors)
        }
    }

    fn note(&mut self, line: usize, message: impl Into<String>) {
        self.cf.notes.push(Note::new(self.file, line, message));
    }

    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ImportError::new(self.file, line, message));
    }

    fn directive(&mut self, d: &Directive) {
        match d.name.as_str() {
            "node" => self.nodes(d),
            "keepalive" => self.time(d, "keepalive"),
            "warntime" => self.time(d, "warntime"),
            "deadtime" => self.time(d, "deadtime"),
            "initdead" => self.time(d, "initdead"),
            "deadping" => self.time(d, "deadping"),
            "udpport" => self.udpport(d),
            "bcast" | "udp" => self.bcast(d),
            "mcast" | "mcast6" => self.link(d, mcast),
            "ucast" | "ucast6" => self.link(d, ucast),
            "ping" | "ping6" => self.ping(d),
            "ping_group" => self.ping_group(d),
            "auto_failback" => self.auto_failback(d),
            "nice_failback" => self.nice_failback(d),
            "autojoin" => self.autojoin(d),
            "respawn" | "failfast" => self.respawn(d),
            "crm" | "pacemaker" => self.crm(d),
            "stonith" => self.stonith(d),
            "stonith_host" => self.stonith_host(d),
            "cluster" => self.cluster(d),
            name => match NO_EQUIVALENT.iter().find(|(n, _)| *n == name) {
                Some((_, why)) => self.note(d.line, format!("`{name}` is not carried over: {why}")),
                None => self.unknown(d),
            },
        }
    }

    /// The values of a list directive; none is a no-op in Heartbeat.
    fn values<'d>(&mut self, d: &'d Directive) -> Vec<&'d str> {
        let values = d.values();
        if values.is_empty() {
            self.note(
                d.line,
                format!("`{}` without a value: ignored, as Heartbeat does", d.name),
            );
        }
        values
    }

    /// Notes that a setting replaces an earlier one (Heartbeat keeps the last).
    fn set(&mut self, key: &'static str, line: usize) {
        if let Some(before) = self.set_on.insert(key, line) {
            self.note(
                line,
                format!("`{key}` is given again (also on line {before}): the last value counts, as in Heartbeat"),
            );
        }
    }

    fn nodes(&mut self, d: &Directive) {
        for name in self.values(d) {
            match self.cf.nodes.iter().find(|(n, _)| n == name) {
                Some((_, first)) => {
                    let first = *first;
                    self.note(
                        d.line,
                        format!("node {name} is named again (first on line {first}): counted once"),
                    );
                }
                None => self.cf.nodes.push((name.to_string(), d.line)),
            }
        }
    }

    fn time(&mut self, d: &Directive, key: &'static str) {
        for value in self.values(d) {
            match heartbeat_time(value) {
                Ok(t) => {
                    *self.time_slot(key) = Some(t);
                    self.set(key, d.line);
                }
                Err(why) => self.error(d.line, format!("{key} {value}: {why}")),
            }
        }
    }

    fn time_slot(&mut self, key: &str) -> &mut Option<Duration> {
        match key {
            "keepalive" => &mut self.cf.keepalive,
            "warntime" => &mut self.cf.warntime,
            "deadtime" => &mut self.cf.deadtime,
            "initdead" => &mut self.cf.initdead,
            _ => &mut self.cf.deadping,
        }
    }

    fn udpport(&mut self, d: &Directive) {
        for value in self.values(d) {
            let Some(port) = value.parse::<u16>().ok().filter(|p| *p > 0) else {
                self.error(d.line, format!("udpport {value}: a UDP port is 1 to 65535"));
                continue;
            };
            self.cf.udpport = Some(port);
            self.set("udpport", d.line);
            if let Some(link) = self.first_udp_link {
                self.note(
                    d.line,
                    format!(
                        "udpport comes after the link on line {link}: Heartbeat fixed a link's port when it read \
                         the first link of its kind, so that one ran on the default port (694); duet uses {port} \
                         on every bcast and ucast link, so check that all nodes agree"
                    ),
                );
            }
        }
    }

    fn bcast(&mut self, d: &Directive) {
        if d.name == "udp" {
            self.note(
                d.line,
                "`udp` is Heartbeat's old name for `bcast`, read as such",
            );
        }
        for interface in self.values(d) {
            self.cf.links.push(HbLink::Bcast {
                interface: interface.to_string(),
                line: d.line,
            });
            self.first_udp_link.get_or_insert(d.line);
        }
    }

    /// mcast, mcast6, ucast and ucast6, which Heartbeat reads as a whole
    /// line and ignores when empty.
    fn link(&mut self, d: &Directive, read: fn(&Directive) -> Result<LinkLine, String>) {
        if d.words().is_empty() {
            self.note(
                d.line,
                format!("`{}` without a value: ignored, as Heartbeat does", d.name),
            );
            return;
        }
        match read(d) {
            Ok(parsed) => {
                if matches!(parsed.link, HbLink::Ucast { .. }) {
                    self.first_udp_link.get_or_insert(d.line);
                }
                self.cf.links.push(parsed.link);
                for n in parsed.notes {
                    self.note(d.line, n);
                }
            }
            Err(why) => self.error(d.line, why),
        }
    }

    fn ping(&mut self, d: &Directive) {
        for host in self.values(d) {
            match address(host, &format!("{} host", d.name)) {
                Ok(ip) => self.add_ping(ip),
                Err(why) => self.error(d.line, why),
            }
        }
    }

    fn add_ping(&mut self, ip: IpAddr) {
        if !self.cf.ping.contains(&ip) {
            self.cf.ping.push(ip);
        }
    }

    fn ping_group(&mut self, d: &Directive) {
        let words = d.words();
        let [name, hosts @ ..] = words.as_slice() else {
            self.error(
                d.line,
                "ping_group needs a name and addresses: `ping_group NAME IP...`",
            );
            return;
        };
        if hosts.is_empty() {
            self.error(
                d.line,
                format!("ping_group {name} has no addresses: `ping_group NAME IP...`"),
            );
            return;
        }
        for host in hosts {
            match address(host, &format!("ping_group {name} member")) {
                Ok(ip) => self.add_ping(ip),
                Err(why) => self.error(d.line, why),
            }
        }
        self.note(
            d.line,
            format!(
                "duet has no ping groups: the members of {name} become ping nodes of their own \
                 (a node keeps its groups while it reaches any ping node)"
            ),
        );
    }

    fn auto_failback(&mut self, d: &Directive) {
        for value in self.values(d) {
            let on = match heartbeat_bool(value) {
                Some(on) => on,
                None if value.eq_ignore_ascii_case("legacy") => {
                    self.note(
                        d.line,
                        "auto_failback legacy: groups moved back to their preferred node (legacy only differed \
                         while some nodes ran a Heartbeat without auto_failback); imported as auto-failback = true",
                    );
                    true
                }
                None => {
                    self.error(d.line, format!("auto_failback {value}: on, off or legacy"));
                    continue;
                }
            };
            self.cf.auto_failback = Some(on);
            self.set("auto_failback", d.line);
        }
    }

    /// The old name, read as Heartbeat does: on is `auto_failback off`,
    /// off is `auto_failback legacy`.
    fn nice_failback(&mut self, d: &Directive) {
        for value in self.values(d) {
            let Some(nice) = heartbeat_bool(value) else {
                self.error(d.line, format!("nice_failback {value}: on or off"));
                continue;
            };
            let meaning = if nice {
                "on means auto_failback off"
            } else {
                "off means auto_failback legacy: groups move back to their preferred node"
            };
            self.note(
                d.line,
                format!("nice_failback is Heartbeat's old name: {meaning}; imported as auto-failback = {}", !nice),
            );
            self.cf.auto_failback = Some(!nice);
            self.set("auto_failback", d.line);
        }
    }

    fn autojoin(&mut self, d: &Directive) {
        for value in self.values(d) {
            let message = match value.to_ascii_lowercase().as_str() {
                "none" => {
                    "autojoin none: duet's nodes are always those listed in its config, as here"
                        .to_string()
                }
                "other" | "any" => format!(
                    "autojoin {value} has no equivalent: duet's nodes are those listed in its config, \
                     and only those (list every node that joined)"
                ),
                _ => {
                    self.error(d.line, format!("autojoin {value}: none, other or any"));
                    continue;
                }
            };
            self.note(d.line, message);
        }
    }

    fn respawn(&mut self, d: &Directive) {
        let words = d.words();
        let [_user, program, ..] = words.as_slice() else {
            self.error(
                d.line,
                format!(
                    "{} needs a user and a program: `{} hacluster /usr/lib/heartbeat/ipfail`",
                    d.name, d.name
                ),
            );
            return;
        };
        if program.rsplit('/').next() == Some("ipfail") {
            self.cf.ipfail = true;
            self.ipfail_line.get_or_insert(d.line);
            self.note(
                d.line,
                "ipfail becomes the ping-node policy of duet: a node that cannot reach any ping node runs no group",
            );
            return;
        }
        // dopd answers DRBD's fence-peer handler over Heartbeat's own
        // API: nothing to run without Heartbeat. duet's replicas fence
        // their peer themselves (resource-level fencing).
        if program.rsplit('/').next() == Some("dopd") {
            self.note(
                d.line,
                "dopd is not carried over: duet's replicas mark an unreachable peer Outdated themselves, as DRBD's resource-only fencing with dopd did (docs/replication.md)",
            );
            return;
        }
        let restart = if d.name == "failfast" {
            " with FailureAction=reboot, as failfast rebooted"
        } else {
            ""
        };
        self.note(
            d.line,
            format!("{program} is not carried over: duet runs no helper processes; run it from a systemd unit of its own{restart}"),
        );
    }

    fn crm(&mut self, d: &Directive) {
        for value in self.values(d) {
            match heartbeat_bool(value) {
                Some(false) => {}
                Some(true) => self.crm_error(d, value),
                None if ["respawn", "minimal", "manual", "valgrind"]
                    .iter()
                    .any(|v| value.eq_ignore_ascii_case(v)) =>
                {
                    self.crm_error(d, value)
                }
                None => self.error(d.line, format!("{} {value}: on, off or respawn", d.name)),
            }
        }
    }

    fn crm_error(&mut self, d: &Directive, value: &str) {
        self.error(
            d.line,
            format!(
                "{} {value}: this is a CRM/Pacemaker cluster, whose resources live in the CIB, not in haresources; \
                 export them with Pacemaker's tools (`crm configure show`, `pcs config`) and describe duet's groups \
                 by hand",
                d.name
            ),
        );
    }

    fn stonith(&mut self, d: &Directive) {
        let rest = d.rest.trim_matches(is_space);
        let (device_type, file) = rest.split_once(is_space).unwrap_or((rest, ""));
        let file = file.trim_matches(is_space);
        if device_type.is_empty() || file.is_empty() {
            self.error(
                d.line,
                "stonith needs a device type and its config file: `stonith TYPE FILE`",
            );
            return;
        }
        self.cf.stonith.push(Stonith {
            host: None,
            device_type: device_type.to_string(),
            params: vec![file.to_string()],
            from_file: true,
            line: d.line,
        });
    }

    fn stonith_host(&mut self, d: &Directive) {
        let words = d.words();
        let [host, device_type, params @ ..] = words.as_slice() else {
            self.error(
                d.line,
                "stonith_host needs a host (or *) and a device type: `stonith_host HOST TYPE PARAMS...`",
            );
            return;
        };
        self.cf.stonith.push(Stonith {
            host: (*host != "*").then(|| host.to_string()),
            device_type: device_type.to_string(),
            params: params.iter().map(|p| p.to_string()).collect(),
            from_file: false,
            line: d.line,
        });
    }

    fn cluster(&mut self, d: &Directive) {
        for name in self.values(d) {
            self.note(
                d.line,
                format!("cluster {name}: Heartbeat only reported the name; give it as [cluster] name if wanted"),
            );
        }
    }

    fn unknown(&mut self, d: &Directive) {
        let name = &d.name;
        let hint = if let Some((head, _)) = name.split_once('=')
            && is_known(head)
        {
            format!("ha.cf separates a directive from its value with spaces: `{head} ...`")
        } else if is_known(&name.to_ascii_lowercase().replace('-', "_")) {
            let fixed = name.to_ascii_lowercase().replace('-', "_");
            format!(
                "did you mean `{fixed}`? Heartbeat's directives are lowercase, with underscores"
            )
        } else {
            "Heartbeat does not know it either".to_string()
        };
        self.error(d.line, format!("unknown directive `{name}`: {hint}"));
    }
}

/// A parsed mcast/ucast line and what to tell about it.
struct LinkLine {
    link: HbLink,
    notes: Vec<String>,
}

/// `mcast IFACE GROUP PORT TTL LOOP`; mcast6 alike with an IPv6 group.
fn mcast(d: &Directive) -> Result<LinkLine, String> {
    let name = &d.name;
    let usage =
        format!("`{name} IFACE GROUP PORT TTL LOOP`, e.g. `mcast eth0 239.192.0.1 694 1 0`");
    let words = d.words();
    let [interface, group, port, ttl, looped, extra @ ..] = words.as_slice() else {
        return Err(format!("{name} needs five values: {usage}"));
    };
    let group_ip = address(group, &format!("{name} group"))?;
    if !group_ip.is_multicast() {
        return Err(format!(
            "{name} group {group} is not a multicast address (224.0.0.0/4 or ff00::/8)"
        ));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{name} port {port}: a UDP port is 1 to 65535"))?;
    let ttl = ttl
        .parse::<u8>()
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| format!("{name} ttl {ttl}: 1 to 255 (1 stays on the local network)"))?;
    let mut notes = Vec::new();
    match *looped {
        "0" => {}
        "1" => notes.push(format!(
            "{name} loop 1 is not carried over: duet needs no looped-back packets"
        )),
        other => return Err(format!("{name} loop {other}: 0 or 1 ({usage})")),
    }
    if !extra.is_empty() {
        notes.push(ignored_words(name, extra.len()));
    }
    Ok(LinkLine {
        link: HbLink::Mcast {
            interface: interface.to_string(),
            group: group_ip,
            port,
            ttl,
            line: d.line,
        },
        notes,
    })
}

/// `ucast IFACE PEER`; ucast6's peer may carry `%IFACE`.
fn ucast(d: &Directive) -> Result<LinkLine, String> {
    let name = &d.name;
    let words = d.words();
    let [interface, peer, extra @ ..] = words.as_slice() else {
        return Err(format!(
            "{name} needs an interface and the peer's address: `{name} eth1 10.0.0.2`"
        ));
    };
    let peer_ip = match peer.split_once('%') {
        Some((addr, scope)) if *name == "ucast6" && scope == *interface => {
            address(addr, &format!("{name} peer"))?
        }
        Some((_, scope)) if *name == "ucast6" => {
            return Err(format!(
                "{name} peer {peer}: its scope {scope} is not the interface {interface}"
            ));
        }
        _ => address(peer, &format!("{name} peer"))?,
    };
    let notes = if extra.is_empty() {
        Vec::new()
    } else {
        vec![ignored_words(name, extra.len())]
    };
    Ok(LinkLine {
        link: HbLink::Ucast {
            interface: interface.to_string(),
            peer: peer_ip,
            line: d.line,
        },
        notes,
    })
}

fn ignored_words(name: &str, count: usize) -> String {
    format!("{count} more value(s) after the {name} link: ignored, as Heartbeat does")
}

/// An IP address; a host name is refused by name, since duet sends to
/// addresses and resolving now would freeze whatever DNS says today.
fn address(word: &str, what: &str) -> Result<IpAddr, String> {
    word.parse::<IpAddr>().map_err(|_| {
        if looks_like_host_name(word) {
            format!("{what} {word} is a host name: duet needs an address there, so write the address it resolves to")
        } else {
            format!("{what} {word} is not an IP address")
        }
    })
}

fn looks_like_host_name(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_alphabetic())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Heartbeat's booleans (cl_str_to_boolean), any case.
fn heartbeat_bool(value: &str) -> Option<bool> {
    let v = value.to_ascii_lowercase();
    match v.as_str() {
        "true" | "on" | "yes" | "y" | "1" => Some(true),
        "false" | "off" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

const TIME_FORMS: &str =
    "Heartbeat's times are seconds (`2`, `0.5`), milliseconds (`500ms`) or microseconds (`500us`)";

/// Heartbeat's time syntax (cl_get_msec): a number of seconds, or of
/// milliseconds or microseconds with `ms`/`msec` or `us`/`usec` in any
/// case, rounded to the nearest millisecond as Heartbeat rounds it.
/// Heartbeat 2 and 3 know no other unit, so `2s` did not run there either.
fn heartbeat_time(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err("a time cannot be negative".to_string());
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ns: u128 = match unit.to_ascii_lowercase().as_str() {
        "" => 1_000_000_000,
        "ms" | "msec" => 1_000_000,
        "us" | "usec" => 1_000,
        _ => return Err(TIME_FORMS.to_string()),
    };
    let ns = nanoseconds(number, unit_ns).ok_or_else(|| TIME_FORMS.to_string())?;
    let ms = (ns + 500_000) / 1_000_000;
    if ms == 0 {
        return Err("a time must be at least 1ms (Heartbeat refuses 0 too)".to_string());
    }
    u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| "too long".to_string())
}

/// "1.5" units of `unit_ns` in nanoseconds, exactly up to nanoseconds.
fn nanoseconds(number: &str, unit_ns: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let whole = if whole.is_empty() {
        0
    } else {
        u128::from(whole.parse::<u64>().ok()?)
    };
    // Digits past the ninth change nothing at millisecond resolution.
    let digits = fraction.get(..fraction.len().min(9))?;
    let fraction_ns = if digits.is_empty() {
        0
    } else {
        let scale = 10u128.pow(u32::try_from(digits.len()).ok()?);
        digits.parse::<u128>().ok()? * unit_ns / scale
    };
    whole.checked_mul(unit_ns)?.checked_add(fraction_ns)
}

#[cfg(test)]
#[path = "hacf_tests.rs"]
mod tests;
