//! `duetctl events`: every state change as it happens, one line each, from
//! the PropertiesChanged signals duetd emits on its objects (any D-Bus
//! client can subscribe to the same). First the current state, one
//! `exists` line per object and `exists -` after them (as `drbdsetup
//! events2 --now` does), then a `change` line per signal, each value with
//! the one it replaced and how long that one held.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json, json};
use zbus::blocking::{Connection, MessageIterator};
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::bus::client::{self, ClientError};
use crate::bus::server::{BUS_NAME, ROOT_PATH};

/// Properties that move with every write or every second: graphed (the
/// metrics), not events. `Status` repeats the others as one string;
/// `Name` and the object lists say what the line already does.
const QUIET: &[&str] = &[
    "Counters",
    "SyncProgress",
    "SyncSpeed",
    "SyncEta",
    "OutOfSync",
    "DroppedPackets",
    "LastSeen",
    "Status",
    "Name",
    "Nodes",
    "Replicas",
    "Groups",
];

/// What a line is about: "cluster", "node", "replica" or "group", and its
/// name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Object {
    pub kind: &'static str,
    pub name: String,
}

/// One line of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Microseconds since the epoch.
    pub at: u64,
    /// "exists" or "change".
    pub event: &'static str,
    pub object: Object,
    /// New values by property (snake_case, as in `status --json`).
    pub values: BTreeMap<String, Json>,
    /// For a change: each property's previous value and how long it held,
    /// in seconds (`None` when it was set before the stream began).
    pub was: BTreeMap<String, (Json, Option<f64>)>,
}

/// The last value of every property seen, and since when: the pure part,
/// fed with values and times.
#[derive(Default)]
pub struct Tracker {
    last: HashMap<(Object, String), (Json, Option<u64>)>,
}

impl Tracker {
    /// An object as it is now; its values count from the stream's start.
    pub fn exists(&mut self, at: u64, object: Object, props: Vec<(String, Json)>) -> Line {
        let mut values = BTreeMap::new();
        for (name, value) in props {
            if QUIET.contains(&name.as_str()) {
                continue;
            }
            let key = snake(&name);
            self.last
                .insert((object.clone(), key.clone()), (value.clone(), None));
            values.insert(key, value);
        }
        Line {
            at,
            event: "exists",
            object,
            values,
            was: BTreeMap::new(),
        }
    }

    /// Changed properties of an object; `None` when nothing an event
    /// covers changed (a counter, say, or a value repeated).
    pub fn change(&mut self, at: u64, object: Object, props: Vec<(String, Json)>) -> Option<Line> {
        let mut values = BTreeMap::new();
        let mut was = BTreeMap::new();
        for (name, value) in props {
            if QUIET.contains(&name.as_str()) {
                continue;
            }
            let key = snake(&name);
            let before = self
                .last
                .insert((object.clone(), key.clone()), (value.clone(), Some(at)));
            match before {
                Some((old, _)) if old == value => continue,
                Some((old, since)) => {
                    let held = since.map(|t| at.saturating_sub(t) as f64 / 1e6);
                    was.insert(key.clone(), (old, held));
                }
                None => {}
            }
            values.insert(key, value);
        }
        (!values.is_empty()).then_some(Line {
            at,
            event: "change",
            object,
            values,
            was,
        })
    }
}

/// CamelCase D-Bus property names as `status --json` writes them.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A D-Bus value as JSON: structures as arrays, dictionaries as objects.
pub fn to_json(v: &Value<'_>) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::U8(n) => json!(n),
        Value::I16(n) => json!(n),
        Value::U16(n) => json!(n),
        Value::I32(n) => json!(n),
        Value::U32(n) => json!(n),
        Value::I64(n) => json!(n),
        Value::U64(n) => json!(n),
        Value::F64(n) => json!(n),
        Value::Str(s) => json!(s.as_str()),
        Value::ObjectPath(p) => json!(p.as_str()),
        Value::Signature(s) => json!(s.to_string()),
        Value::Value(inner) => to_json(inner),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Structure(s) => Json::Array(s.fields().iter().map(to_json).collect()),
        Value::Dict(d) => {
            let mut map = Map::new();
            for (k, v) in d.iter() {
                let key = match to_json(k) {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, to_json(v));
            }
            Json::Object(map)
        }
        Value::Fd(_) => Json::Null,
    }
}

/// A value for the plain line: strings bare unless empty or spaced,
/// lists joined with ',', the fields of a pair with ':'.
fn plain(v: &Json) -> String {
    match v {
        Json::String(s) if s.is_empty() || s.contains(char::is_whitespace) => {
            Json::String(s.clone()).to_string()
        }
        Json::String(s) => s.clone(),
        Json::Array(items) if items.iter().all(|i| !i.is_array()) && !items.is_empty() => {
            // One structure (the group's last transition, say).
            items.iter().map(plain).collect::<Vec<_>>().join(":")
        }
        Json::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        Json::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}:{}", plain(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

impl Line {
    /// `TIME EVENT KIND NAME key=value ... (was OLD for 1.23s)`.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} {} {} {}",
            rfc3339(self.at),
            self.event,
            self.object.kind,
            self.object.name
        );
        for (key, value) in &self.values {
            out.push_str(&format!(" {key}={}", plain(value)));
            if let Some((old, held)) = self.was.get(key) {
                match held {
                    Some(s) => out.push_str(&format!(" (was {} for {s:.2}s)", plain(old))),
                    None => out.push_str(&format!(" (was {})", plain(old))),
                }
            }
        }
        out
    }

    pub fn json(&self) -> String {
        let was: Map<String, Json> = self
            .was
            .iter()
            .map(|(k, (old, held))| (k.clone(), json!({"value": old, "held_s": held})))
            .collect();
        json!({
            "time": rfc3339(self.at),
            "time_us": self.at,
            "event": self.event,
            "object": self.object.kind,
            "name": self.object.name,
            "values": self.values,
            "was": was,
        })
        .to_string()
    }
}

/// UTC, to the microsecond: 2026-12-06T23:58:01.123456Z.
pub fn rfc3339(us: u64) -> String {
    let secs = us / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        us % 1_000_000
    )
}

/// Year, month, day of a day count since 1970-01-01 (the proleptic
/// Gregorian calendar; Howard Hinnant's days_from_civil, inverted).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(super) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What a path is: the cluster, or a node, replica or group by the kind
/// in its path and the Name property.
fn object_of(path: &str, name: Option<&str>) -> Option<Object> {
    if path == ROOT_PATH {
        return Some(Object {
            kind: "cluster",
            name: name.unwrap_or("-").to_string(),
        });
    }
    let rest = path.strip_prefix(ROOT_PATH)?.strip_prefix('/')?;
    let (kind, escaped) = rest.split_once('/')?;
    let kind = ["node", "replica", "group"]
        .into_iter()
        .find(|k| *k == kind)?;
    Some(Object {
        kind,
        name: name.unwrap_or(escaped).to_string(),
    })
}

fn props_json(props: &HashMap<String, OwnedValue>) -> Vec<(String, Json)> {
    let mut out: Vec<_> = props.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The stream: subscribes first, then prints the current state, then each
/// change until duetd's bus goes away. Returns the exit code.
pub fn run(bus: crate::bus::BusKind, as_json: bool) -> u8 {
    match stream(bus, as_json) {
        Ok(()) => 0,
        Err(ClientError::NotRunning) => {
            eprintln!("duetctl: {}", ClientError::NotRunning);
            super::cli::exit::NO_DAEMON
        }
        Err(e) => {
            eprintln!("duetctl: {e}");
            super::cli::exit::FAILURE
        }
    }
}

struct Stream {
    tracker: Tracker,
    /// Object path -> what it is, from the last snapshot.
    objects: HashMap<String, Object>,
    as_json: bool,
}

impl Stream {
    fn print(&self, line: &Line) -> bool {
        let text = if self.as_json {
            line.json()
        } else {
            line.text()
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`duetctl events | head`) ends the stream.
        writeln!(out, "{text}").and_then(|_| out.flush()).is_ok()
    }

    /// Every object as it is now, then the `exists -` marker.
    fn snapshot(&mut self, conn: &Connection) -> Result<bool, ClientError> {
        let mut managed = client::managed_objects(conn)?;
        // The object manager lists the objects under it, not its own.
        let cluster = client::get_all(conn, ROOT_PATH, "org.duet.Duet1.Cluster")?;
        if let Ok(root) = OwnedObjectPath::try_from(ROOT_PATH) {
            managed.insert(
                root,
                HashMap::from([("org.duet.Duet1.Cluster".to_string(), cluster)]),
            );
        }
        let at = now_us();
        let mut lines = Vec::new();
        for (path, ifaces) in &managed {
            let Some(props) = ifaces
                .iter()
                .find(|(i, _)| i.starts_with("org.duet.Duet1."))
                .map(|(_, p)| p)
            else {
                continue;
            };
            let name = props
                .get("Name")
                .and_then(|v| String::try_from(v.clone()).ok());
            let Some(object) = object_of(path.as_str(), name.as_deref()) else {
                continue;
            };
            self.objects.insert(path.to_string(), object.clone());
            lines.push(self.tracker.exists(at, object, props_json(props)));
        }
        let rank = |k: &str| {
            ["cluster", "node", "replica", "group"]
                .iter()
                .position(|x| *x == k)
        };
        lines.sort_by(|a, b| {
            (rank(a.object.kind), &a.object.name).cmp(&(rank(b.object.kind), &b.object.name))
        });
        for line in &lines {
            if !self.print(line) {
                return Ok(false);
            }
        }
        let end = Line {
            at,
            event: "exists",
            object: Object {
                kind: "-",
                name: String::new(),
            },
            values: BTreeMap::new(),
            was: BTreeMap::new(),
        };
        Ok(self.print(&end))
    }

    /// A PropertiesChanged signal; false once stdout is gone.
    fn changed(&mut self, msg: &zbus::Message) -> bool {
        let header = msg.header();
        let Some(path) = header.path().map(|p| p.to_string()) else {
            return true;
        };
        let Some(object) = self.objects.get(&path).cloned() else {
            return true;
        };
        let Ok((_iface, changed, _invalidated)) =
            msg.body()
                .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
        else {
            return true;
        };
        match self.tracker.change(now_us(), object, props_json(&changed)) {
            Some(line) => self.print(&line),
            None => true,
        }
    }

    fn daemon(&self, event: &'static str) -> bool {
        self.print(&Line {
            at: now_us(),
            event,
            object: Object {
                kind: "duetd",
                name: BUS_NAME.to_string(),
            },
            values: BTreeMap::new(),
            was: BTreeMap::new(),
        })
    }
}

/// duetd's PropertiesChanged signals and its name's changes of owner, as
/// they come (no other message). The iterator is made before the matches, so no signal falls
/// in between, and drained on a thread of its own: zbus stops reading the
/// connection while the iterator's queue is full, and the caller waits
/// for replies on the same connection (a status read, a snapshot).
pub fn subscribe(
    conn: &Connection,
) -> Result<std::sync::mpsc::Receiver<zbus::Result<zbus::Message>>, ClientError> {
    let messages = MessageIterator::from(conn.clone());
    let dbus = zbus::blocking::fdo::DBusProxy::new(conn).map_err(ClientError::Call)?;
    let rules = [
        format!(
            "type='signal',sender='{BUS_NAME}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path_namespace='{ROOT_PATH}'"
        ),
        format!(
            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{BUS_NAME}'"
        ),
    ];
    for rule in rules {
        let rule = zbus::MatchRule::try_from(rule.as_str()).map_err(ClientError::Call)?;
        dbus.add_match_rule(rule)
            .map_err(|e| ClientError::Call(e.into()))?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for m in messages {
            // Replies to the caller's own calls come here too: signals
            // only (and the error that ends the connection).
            let signal = m
                .as_ref()
                .map_or(true, |m| m.message_type() == MessageType::Signal);
            if signal && tx.send(m).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

fn stream(bus: crate::bus::BusKind, as_json: bool) -> Result<(), ClientError> {
    let conn = client::connect(bus)?;
    let rx = subscribe(&conn)?;
    let mut s = Stream {
        tracker: Tracker::default(),
        objects: HashMap::new(),
        as_json,
    };
    if !s.snapshot(&conn)? {
        return Ok(());
    }
    for msg in rx {
        let msg = msg.map_err(ClientError::Bus)?;
        let header = msg.header();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let going = match member.as_str() {
            "PropertiesChanged" => s.changed(&msg),
            "NameOwnerChanged" => {
                let Ok((_, _, new)) = msg.body().deserialize::<(String, String, String)>() else {
                    continue;
                };
                if new.is_empty() {
                    s.daemon("stopped")
                } else {
                    // A new duetd: its state afresh, as at the start.
                    s.daemon("started") && s.snapshot(&conn)?
                }
            }
            _ => true,
        };
        if !going {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Object {
        Object {
            kind: "node",
            name: name.into(),
        }
    }

    #[test]
    fn dates_are_utc_to_the_microsecond() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day of a century year) 12:34:56.789012.
        assert_eq!(rfc3339(951_827_696_789_012), "2000-02-29T12:34:56.789012Z");
        assert_eq!(
            rfc3339(1_796_428_800_000_000),
            "2026-12-05T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(4_107_542_399_999_999),
            "2100-02-28T23:59:59.999999Z"
        );
    }

    #[test]
    fn a_change_says_what_it_replaced_and_for_how_long() {
        let mut t = Tracker::default();
        let first = t.exists(
            1_000_000,
            node("node1"),
            vec![
                ("State".into(), json!("up")),
                ("LastSeen".into(), json!(5)),
                ("PingReachable".into(), json!(1)),
            ],
        );
        assert_eq!(
            first.text(),
            "1970-01-01T00:00:01.000000Z exists node node1 ping_reachable=1 state=up"
        );
        // Before the stream the value's age is unknown.
        let late = t
            .change(
                2_500_000,
                node("node1"),
                vec![("State".into(), json!("late"))],
            )
            .expect("a line");
        assert_eq!(
            late.text(),
            "1970-01-01T00:00:02.500000Z change node node1 state=late (was up)"
        );
        let dead = t
            .change(
                3_750_000,
                node("node1"),
                vec![("State".into(), json!("dead"))],
            )
            .expect("a line");
        assert_eq!(dead.was["state"], (json!("late"), Some(1.25)));
        assert!(
            dead.text().ends_with("state=dead (was late for 1.25s)"),
            "{}",
            dead.text()
        );
        let j: Json = serde_json::from_str(&dead.json()).expect("json");
        assert_eq!(j["values"]["state"], "dead");
        assert_eq!(j["was"]["state"]["held_s"], 1.25);
        assert_eq!(j["object"], "node");
    }

    #[test]
    fn quiet_and_repeated_values_make_no_line() {
        let mut t = Tracker::default();
        t.exists(0, node("n"), vec![("State".into(), json!("up"))]);
        assert_eq!(
            t.change(1, node("n"), vec![("Counters".into(), json!({"sent": 1}))]),
            None
        );
        assert_eq!(
            t.change(2, node("n"), vec![("State".into(), json!("up"))]),
            None
        );
    }

    #[test]
    fn values_read_plainly() {
        assert_eq!(
            plain(&json!([["crossover", "up"], ["public", "down"]])),
            "crossover:up,public:down"
        );
        assert_eq!(
            plain(&json!(["started", "taking over", 1.5])),
            "started:\"taking over\":1.5"
        );
        assert_eq!(plain(&json!("")), "\"\"");
        assert_eq!(plain(&json!([])), "");
    }

    #[test]
    fn paths_name_their_objects() {
        assert_eq!(
            object_of(ROOT_PATH, Some("lab")),
            Some(Object {
                kind: "cluster",
                name: "lab".into()
            })
        );
        assert_eq!(
            object_of("/org/duet/Duet1/group/web", Some("web")),
            Some(Object {
                kind: "group",
                name: "web".into()
            })
        );
        assert_eq!(object_of("/org/duet/Duet1/other/x", None), None);
        assert_eq!(object_of("/elsewhere", None), None);
    }
}
