//! The classic scenario's group in the lab: the replica, its filesystem,
//! the floating address and apache2 (examples/two-node.toml's group web),
//! and how a client and an observer see it.

use std::io::{Read, Write};
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::collector::Collector;
use crate::{Lab, replica, wait_until};

/// The floating address of the group, on the public side.
pub const ADDRESS: &str = "198.51.100.10";

/// The page on the replicated filesystem, as the client reads it.
pub const PAGE: &str = "served by duet";

/// The group of examples/two-node.toml, for a node's config.
pub const GROUP: &str = "\n[[group]]\nname = \"web\"\npreferred = \"node1\"\nauto-failback = false\n\n\
    [[group.resource]]\nreplica = \"r0\"\n\n\
    [[group.resource]]\nmount = \"/mnt/shared\"\ndevice = \"r0\"\nfstype = \"ext4\"\n\n\
    [[group.resource]]\nip = \"198.51.100.10/24\"\ninterface = \"eth0\"\n\n\
    [[group.resource]]\nunit = \"apache2.service\"\n";

/// apache2 is started where duet says, and serves the replica's files.
pub const PREPARE_NODE: &str =
    "systemctl disable --now apache2 && rm -rf /var/www/html && ln -s /mnt/shared /var/www/html";

/// Booted nodes to group web running on node1 with `PAGE` on r0, the way
/// an administrator gets there: apache2 handed to duet, the data made by
/// hand (replica, first sync, filesystem), then the group on both nodes.
/// Returns once the client reads the page and node2's copy is in sync.
pub fn start(lab: &Lab) {
    start_with(lab, GROUP);
}

/// As `start`, with this `[[group]]` text for web (GROUP with changes).
pub fn start_with(lab: &Lab, group: &str) {
    for n in ["node1", "node2"] {
        lab.wait_for_unit(n, "duetd.service", Duration::from_secs(30));
        lab.succeed(n, PREPARE_NODE);
    }
    replica::replicated(lab);
    replica::filesystem_with_page(lab);
    lab.succeed("node1", replica::STOP_MOUNT);
    lab.succeed(
        "node1",
        "rm /run/systemd/system/mnt-shared.mount && systemctl daemon-reload",
    );
    lab.succeed("node1", "duetctl secondary r0");
    replica::wait(lab, "node2", "node2 UpToDate", replica::in_sync);

    let config = lab.group_config(group);
    for n in ["node1", "node2"] {
        lab.node(n)
            .write_file("/etc/duet/duet.toml", config.as_bytes(), 0o644);
        lab.succeed(n, "systemctl restart duetd");
    }
    wait_until(Duration::from_secs(60), "web running on node1", || {
        on(lab, "node1", "node1")
    });
    wait_until(
        Duration::from_secs(10),
        "the page from the floating IP",
        || good_page(lab),
    );
    assert_eq!(holders(lab), (vec!["node1".into()], vec!["node1".into()]));
    // The restarts raced: node1 may have become Primary before the link
    // was back. The scenarios start from a replicated disk.
    replica::wait(lab, "node2", "node2 UpToDate under web", replica::in_sync);
}

/// GET http://ADDRESS/ from the client's namespace (a thread moved
/// there), with short timeouts: the body of a 200 reply.
pub fn fetch(lab: &Lab) -> Option<String> {
    let path = client_ns(lab);
    std::thread::spawn(move || {
        enter_netns(&path)?;
        get()
    })
    .join()
    .ok()
    .flatten()
}

/// `PAGE` from the floating address, for `wait_until`.
pub fn good_page(lab: &Lab) -> Option<()> {
    fetch(lab).filter(|p| p.trim() == PAGE).map(|_| ())
}

fn client_ns(lab: &Lab) -> String {
    format!("/run/netns/{}", lab.client)
}

/// Moves the calling thread (only it) into the network namespace.
fn enter_netns(path: &str) -> Option<()> {
    let ns = std::fs::File::open(path).ok()?;
    // SAFETY: setns on a descriptor we own; only this thread moves.
    let rc = unsafe {
        nix::libc::setns(
            std::os::fd::AsRawFd::as_raw_fd(&ns),
            nix::libc::CLONE_NEWNET,
        )
    };
    (rc == 0).then_some(())
}

/// One GET of the page, in the calling thread's namespace.
fn get() -> Option<String> {
    let addr = format!("{ADDRESS}:80").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Which running nodes hold the floating address and the mount, asked of
/// each.
pub fn holders(lab: &Lab) -> (Vec<String>, Vec<String>) {
    let mut ip = Vec::new();
    let mut mount = Vec::new();
    for n in lab.node_names() {
        if !lab.node(&n).is_running() {
            continue;
        }
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

/// Watches web move to `to` (after a standby, say) until the address and
/// the mount are there and `to` runs it, asserting at every look that
/// neither is on two nodes at once. Returns how many looks it took.
pub fn watch_move(lab: &Lab, to: &str, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut looks = 0;
    loop {
        let (ip, mount) = holders(lab);
        looks += 1;
        assert!(
            ip.len() <= 1 && mount.len() <= 1,
            "on both nodes: ip {ip:?}, mount {mount:?}"
        );
        if ip == [to] && mount == [to] && on(lab, to, to).is_some() {
            return looks;
        }
        assert!(
            Instant::now() < deadline,
            "web never came to {to}: ip {ip:?}, mount {mount:?}"
        );
    }
}

/// One request of a `Load`: when it ended (from the load's start) and
/// whether it got `PAGE`.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub at: Duration,
    pub good: bool,
}

/// A client that GETs the page from the floating address over and over,
/// from the client namespace, until dropped (also when a test fails).
pub struct Load(Collector<Reply>);

impl Load {
    /// Pause between requests: a steady stream, without a busy loop that
    /// would starve the nodes of the machine's two cores.
    const PACE: Duration = Duration::from_millis(20);

    pub fn start(lab: &Lab) -> Load {
        let path = client_ns(lab);
        Load(Collector::start(move |stop, replies| {
            if enter_netns(&path).is_none() {
                return;
            }
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let good = get().is_some_and(|p| p.trim() == PAGE);
                let reply = Reply {
                    at: started.elapsed(),
                    good,
                };
                replies
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(reply);
                std::thread::sleep(Self::PACE);
            }
        }))
    }

    /// Every reply so far.
    pub fn replies(&self) -> Vec<Reply> {
        self.0.items()
    }

    /// How many of the latest replies in a row were good.
    pub fn good_in_a_row(&self) -> usize {
        self.replies().iter().rev().take_while(|r| r.good).count()
    }

    /// Stops the client and returns every reply.
    pub fn finish(self) -> Vec<Reply> {
        self.0.finish()
    }
}

/// The longest time between two good replies in a row (or from the start
/// to the first good one).
pub fn longest_gap(replies: &[Reply]) -> Duration {
    let mut last = Duration::ZERO;
    let mut gap = Duration::ZERO;
    for r in replies.iter().filter(|r| r.good) {
        gap = gap.max(r.at - last);
        last = r.at;
    }
    gap
}
