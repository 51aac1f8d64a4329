//! The lab's wiring. Every node has its own network namespace:
//! - eth1, the crossover: a veth straight to the peer with two nodes, a port
//!   of bridge br1 with three; 203.0.113.N and 2001:db8:2::N;
//! - eth0, the public side: a port of bridge br0, which the client (the
//!   "browser on a third host", 198.51.100.100) shares; 198.51.100.N and
//!   2001:db8:1::N. The bridge itself answers as the gateway and ping node
//!   198.51.100.254.
//!
//! The bridges live in a hub namespace of their own, so nothing touches the
//! host's network and deleting the namespaces deletes every link.

use crate::cmd::ip;

pub const CLIENT_V4: &str = "198.51.100.100";
pub const GATEWAY_V4: &str = "198.51.100.254";

pub fn crossover_v4(n: usize) -> String {
    format!("203.0.113.{n}")
}

pub fn public_v4(n: usize) -> String {
    format!("198.51.100.{n}")
}

/// The lab's own addresses of node `n` on `ifname` (eth0 public, eth1
/// crossover): v4 and v6.
fn node_addresses(n: usize, ifname: &str) -> [String; 2] {
    if ifname == "eth0" {
        [
            format!("{}/24", public_v4(n)),
            format!("2001:db8:1::{n}/64"),
        ]
    } else {
        [
            format!("{}/24", crossover_v4(n)),
            format!("2001:db8:2::{n}/64"),
        ]
    }
}

/// A powered-off node's interfaces: down, and without addresses, so that
/// nothing in its namespace answers for it (an address it held, a
/// floating one, is gone with its power, as from a real machine's RAM).
pub fn dark(ns: &str) {
    for ifname in ["eth0", "eth1"] {
        crate::cmd::quietly(
            std::process::Command::new("ip").args(["-n", ns, "link", "set", ifname, "down"]),
        );
        crate::cmd::quietly(
            std::process::Command::new("ip").args(["-n", ns, "addr", "flush", "dev", ifname]),
        );
    }
}

/// Interface `ifname` of node `n` up with the lab's addresses (again:
/// IPv6 addresses go when a link goes down).
pub fn light(ns: &str, n: usize, ifname: &str) {
    for a in node_addresses(n, ifname) {
        let mut args = vec!["-n", ns, "addr", "replace", &a, "dev", ifname];
        if a.contains(':') {
            args.push("nodad");
        }
        ip(&args);
    }
    ip(&["-n", ns, "link", "set", ifname, "up"]);
}

/// Creates a namespace with its loopback up.
pub fn netns(name: &str) {
    ip(&["netns", "add", name]);
    ip(&["-n", name, "link", "set", "lo", "up"]);
}

fn addr(ns: &str, ifname: &str, v4: &str, v6: &str) {
    ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifname]);
    // nodad: the address is usable at once, no duplicate detection wait.
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{v6}/64"),
        "dev",
        ifname,
        "nodad",
    ]);
    ip(&["-n", ns, "link", "set", ifname, "up"]);
}

/// A veth from `ns` (named `ifname` there) into bridge `br` of the hub.
fn to_bridge(hub: &str, br: &str, ns: &str, ifname: &str, port: &str) {
    ip(&[
        "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", port, "netns", hub,
    ]);
    ip(&["-n", hub, "link", "set", port, "master", br, "up"]);
}

/// Wires `nodes` (their namespaces, in order node1..nodeN), the hub and
/// the client.
pub fn wire(hub: &str, client: &str, nodes: &[String]) {
    ip(&["-n", hub, "link", "add", "br0", "type", "bridge"]);
    ip(&[
        "-n",
        hub,
        "addr",
        "add",
        &format!("{GATEWAY_V4}/24"),
        "dev",
        "br0",
    ]);
    ip(&[
        "-n",
        hub,
        "addr",
        "add",
        "2001:db8:1::fe/64",
        "dev",
        "br0",
        "nodad",
    ]);
    ip(&["-n", hub, "link", "set", "br0", "up"]);
    to_bridge(hub, "br0", client, "eth0", "client");
    addr(client, "eth0", CLIENT_V4, "2001:db8:1::64");
    for (i, ns) in nodes.iter().enumerate() {
        let n = i + 1;
        to_bridge(hub, "br0", ns, "eth0", &format!("pub{n}"));
        addr(ns, "eth0", &public_v4(n), &format!("2001:db8:1::{n}"));
    }
    if let [a, b] = nodes {
        ip(&[
            "link", "add", "eth1", "netns", a, "type", "veth", "peer", "name", "eth1", "netns", b,
        ]);
    } else {
        ip(&["-n", hub, "link", "add", "br1", "type", "bridge"]);
        ip(&["-n", hub, "link", "set", "br1", "up"]);
        for (i, ns) in nodes.iter().enumerate() {
            to_bridge(hub, "br1", ns, "eth1", &format!("priv{}", i + 1));
        }
    }
    for (i, ns) in nodes.iter().enumerate() {
        let n = i + 1;
        addr(ns, "eth1", &crossover_v4(n), &format!("2001:db8:2::{n}"));
    }
}
