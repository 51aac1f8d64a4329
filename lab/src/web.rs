//! The classic scenario's group in the lab: the replica, its filesystem,
//! the floating address and apache2 (examples/two-node.toml's group web),
//! and how a client and an observer see it.

use std::io::{Read, Write};
use std::time::Duration;

use crate::Lab;

/// The floating address of the group, on the public side.
pub const ADDRESS: &str = "198.51.100.10";

/// The group of examples/two-node.toml, for a node's config.
pub const GROUP: &str = "\n[[group]]\nname = \"web\"\npreferred = \"node1\"\nauto-failback = false\n\n\
    [[group.resource]]\nreplica = \"r0\"\n\n\
    [[group.resource]]\nmount = \"/mnt/shared\"\ndevice = \"r0\"\nfstype = \"ext4\"\n\n\
    [[group.resource]]\nip = \"198.51.100.10/24\"\ninterface = \"eth0\"\n\n\
    [[group.resource]]\nunit = \"apache2.service\"\n";

/// apache2 is started where duet says, and serves the replica's files.
pub const PREPARE_NODE: &str =
    "systemctl disable --now apache2 && rm -rf /var/www/html && ln -s /mnt/shared /var/www/html";

/// GET http://ADDRESS/ from the client's namespace (a thread moved
/// there), with short timeouts: the body of a 200 reply.
pub fn fetch(lab: &Lab) -> Option<String> {
    let path = format!("/run/netns/{}", lab.client);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).ok()?;
        // SAFETY: setns on a descriptor we own; only this thread moves.
        let rc = unsafe {
            nix::libc::setns(
                std::os::fd::AsRawFd::as_raw_fd(&ns),
                nix::libc::CLONE_NEWNET,
            )
        };
        if rc != 0 {
            return None;
        }
        let addr = format!("{ADDRESS}:80").parse().ok()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).ok()?;
        let (head, body) = reply.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    })
    .join()
    .ok()
    .flatten()
}

/// Which nodes hold the floating address and the mount, asked of each.
pub fn holders(lab: &Lab) -> (Vec<String>, Vec<String>) {
    let mut ip = Vec::new();
    let mut mount = Vec::new();
    for n in lab.node_names() {
        let out = lab.execute(
            &n,
            "ip -4 -o addr show dev eth0; findmnt -n /mnt/shared || true",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains(&format!("{ADDRESS}/24")) {
            ip.push(n.clone());
        }
        if text.contains("/mnt/shared") {
            mount.push(n);
        }
    }
    (ip, mount)
}

/// `observer` sees group web on `node` (running, if it is the observer).
pub fn on(lab: &Lab, observer: &str, node: &str) -> Option<()> {
    let s = lab.status(observer)?;
    let g = &s["groups"][0];
    (g["node"] == node && (observer != node || g["state"] == "running")).then_some(())
}
