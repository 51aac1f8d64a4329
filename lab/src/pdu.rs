//! The lab's power switch (a PDU): the fence device of lab clusters.
//!
//! A thread of the lab process serves a unix socket in the lab folder,
//! bound into every node at `/run/duet-lab/pdu.sock`. A node's duetd
//! fences a peer through `/usr/local/sbin/lab-fence NODE` (installed by
//! `Lab::with_pdu`), which asks the PDU with curl:
//!
//! ```text
//! POST /off/node2 HTTP/1.0   -> 200 "node2 off" once node2's power is cut
//! GET /status/node2 HTTP/1.0 -> 200 "node2 on" or "node2 off"
//! ```
//!
//! Unknown nodes get 404, anything else 400, a power cut that did not
//! finish in time 500. "Off" is the lab's crash (SIGKILL to the
//! container's init), done through the node's shared power switch, so
//! the lab knows the node is down and a later `boot` works. Requests are
//! served one at a time, as a PDU's single controller would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::node::{Outlet, Power};

/// Where the PDU's folder is bound in every node.
pub const NODE_DIR: &str = "/run/duet-lab";
/// The fence agent the lab installs in every node.
pub const FENCE_AGENT: &str = "/usr/local/sbin/lab-fence";

/// The `[fencing]` section for a lab node's config.
pub const FENCING: &str = "\n[fencing]\ncommand = \"/usr/local/sbin/lab-fence\"\n\
    timeout = \"20s\"\nretry-delay = \"1s\"\n";

/// duetd's fence contract (docs/groups.md, "Fencing"): `args... NODE`,
/// exit 0 once NODE is off. curl's --fail-with-body puts the PDU's answer
/// in what duetd logs when the fence fails.
pub const FENCE_SCRIPT: &str = r#"#!/bin/bash
# The lab's fence agent: powers the node named last off through the lab's
# PDU (the duet-lab process) and exits 0 only once it is off.
node="${!#}"
[ -n "$node" ] || { echo "usage: lab-fence [ARGS...] NODE" >&2; exit 2; }
exec curl --silent --show-error --fail-with-body --max-time 15 \
    --unix-socket /run/duet-lab/pdu.sock -X POST "http://pdu/off/$node"
"#;

/// One request the PDU served.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    pub node: String,
    /// "off" or "status".
    pub action: String,
    /// Whether the answer was a success (for "off": the node is off).
    pub ok: bool,
    /// Whether the node was running when an "off" came.
    pub was_on: bool,
}

pub struct Pdu {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<Event>>>,
    thread: Option<JoinHandle<()>>,
}

/// Between looks at the stop flag while no request comes.
const IDLE: Duration = Duration::from_millis(20);
/// A client that does not send its request in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

impl Pdu {
    /// Serves `dir/pdu.sock` for `outlets` (node name to its power).
    pub fn start(dir: &Path, outlets: BTreeMap<String, Outlet>) -> Pdu {
        std::fs::create_dir_all(dir).expect("pdu dir");
        let socket = dir.join("pdu.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("bind {}: {e}", socket.display()));
        // duetd runs as root without CAP_DAC_OVERRIDE: the owner's bits.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .expect("chmod pdu socket");
        listener
            .set_nonblocking(true)
            .expect("nonblocking pdu socket");
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, events) = (stop.clone(), events.clone());
            std::thread::spawn(move || serve(&listener, &outlets, &stop, &events))
        };
        Pdu {
            socket,
            stop,
            events,
            thread: Some(thread),
        }
    }

    /// The socket, as the host sees it.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every request served so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Pdu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn serve(
    listener: &UnixListener,
    outlets: &BTreeMap<String, Outlet>,
    stop: &AtomicBool,
    events: &Mutex<Vec<Event>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(event) = answer(stream, outlets) {
                    events
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(event);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(IDLE),
            Err(e) => {
                eprintln!("lab pdu: accept: {e}");
                std::thread::sleep(IDLE);
            }
        }
    }
}

/// What a request asks, from its request line.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Off(String),
    Status(String),
}

fn parse(line: &str) -> Option<Request> {
    let mut words = line.split_whitespace();
    let method = words.next()?;
    let path = words.next()?;
    let (verb, node) = path.strip_prefix('/')?.split_once('/')?;
    if node.is_empty() || node.contains('/') {
        return None;
    }
    match (method, verb) {
        ("POST", "off") => Some(Request::Off(node.to_string())),
        ("GET", "status") => Some(Request::Status(node.to_string())),
        _ => None,
    }
}

/// Serves one connection; the event, if it was a request.
fn answer(stream: UnixStream, outlets: &BTreeMap<String, Outlet>) -> Option<Event> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    // The headers (curl's Host, User-Agent, ...) are not needed.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let mut stream = reader.into_inner();
    let request = parse(&line);
    let (code, body, event) = match request {
        None => (
            400,
            "want POST /off/NODE or GET /status/NODE".to_string(),
            None,
        ),
        Some(Request::Off(node) | Request::Status(node)) if !outlets.contains_key(&node) => {
            (404, format!("no node {node} on this PDU"), None)
        }
        Some(Request::Status(node)) => {
            let on = outlets[&node].state() != Power::Off;
            let state = if on { "on" } else { "off" };
            let event = Event {
                at: Instant::now(),
                node: node.clone(),
                action: "status".into(),
                ok: true,
                was_on: on,
            };
            (200, format!("{node} {state}"), Some(event))
        }
        Some(Request::Off(node)) => {
            let outlet = &outlets[&node];
            let was_on = outlet.state() != Power::Off;
            let ok = outlet.cut();
            let event = Event {
                at: Instant::now(),
                node: node.clone(),
                action: "off".into(),
                ok,
                was_on,
            };
            if ok {
                (200, format!("{node} off"), Some(event))
            } else {
                (
                    500,
                    format!("{node} did not power off in time"),
                    Some(event),
                )
            }
        }
    };
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let reply = format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}\n",
        body.len() + 1
    );
    // The asking node may be gone (powered off itself meanwhile).
    let _ = stream.write_all(reply.as_bytes());
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_from_the_request_line() {
        assert_eq!(
            parse("POST /off/node2 HTTP/1.1\r\n"),
            Some(Request::Off("node2".into()))
        );
        assert_eq!(
            parse("GET /status/node1 HTTP/1.0"),
            Some(Request::Status("node1".into()))
        );
        assert_eq!(parse("GET /off/node2 HTTP/1.1"), None);
        assert_eq!(parse("POST /off/ HTTP/1.1"), None);
        assert_eq!(parse("POST /off/a/b HTTP/1.1"), None);
        assert_eq!(parse(""), None);
    }

    /// The whole path with a switch that has no container behind it: a
    /// node already off is answered off at once; unknown nodes are 404.
    #[test]
    fn a_node_that_is_off_is_reported_off() {
        let dir = std::env::temp_dir().join(format!("duet-pdu-test-{}", std::process::id()));
        let outlet = Outlet::new("no-such-namespace");
        let pdu = Pdu::start(&dir, BTreeMap::from([("node2".to_string(), outlet)]));
        let ask = |request: &str| {
            let mut s = UnixStream::connect(pdu.socket()).expect("connect");
            s.write_all(request.as_bytes()).expect("send");
            let mut reply = String::new();
            std::io::Read::read_to_string(&mut s, &mut reply).expect("reply");
            reply
        };
        let off = ask("POST /off/node2 HTTP/1.0\r\nHost: pdu\r\n\r\n");
        assert!(off.starts_with("HTTP/1.0 200"), "{off}");
        assert!(off.ends_with("node2 off\n"), "{off}");
        let status = ask("GET /status/node2 HTTP/1.0\r\n\r\n");
        assert!(status.ends_with("node2 off\n"), "{status}");
        let unknown = ask("POST /off/node9 HTTP/1.0\r\n\r\n");
        assert!(unknown.starts_with("HTTP/1.0 404"), "{unknown}");
        let events = pdu.events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].ok && !events[0].was_on);
        drop(pdu);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
