//! Two duetd processes in network namespaces replicating r0 over veth
//! (protocol C, files as disks), node1 Primary after a full sync: what the
//! replication and data-path benchmarks measure through.

// Each bench uses its own part.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::netns::{self, Lab, config};

/// A lab of two nodes with disk files of `size` bytes of data (and room
/// for the metadata) and their configs written; nothing started.
pub fn lab(size: u64) -> Lab {
    let lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    for n in 1..=2 {
        let img = lab.dir.join(format!("node{n}.img"));
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(size + (4 << 20)))
            .expect("disk file");
    }
    write_configs(&lab, "");
    lab
}

/// Both nodes' configs, `extra` (with `{n}` for the node's number)
/// appended to the replica section; takes effect at the next start.
pub fn write_configs(lab: &Lab, extra: &str) {
    for n in 1..=2 {
        let text = replica_config(lab, n) + &extra.replace("{n}", &n.to_string());
        lab.write(&format!("node{n}.toml"), &text);
    }
}

/// node1's export socket.
pub fn socket(lab: &Lab) -> PathBuf {
    lab.dir.join("node1-r0.sock")
}

fn replica_config(lab: &Lab, node: usize) -> String {
    format!(
        "{}\n[[replica]]\nname = \"r0\"\n\
         disk = {{ node1 = \"{d}/node1.img\", node2 = \"{d}/node2.img\" }}\n\
         address = {{ node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }}\n\
         port = 7789\ndevice = \"{d}/node{node}-r0\"\nnbd-socket = \"{d}/node{node}-r0.sock\"\n",
        config(2, "ucast", "ucast", "duet.key"),
        d = lab.dir.display()
    )
}

pub fn duetctl_local(lab: &Lab, node: &str, args: &[&str]) {
    let out = Command::new(netns::DUETCTL)
        .args(args)
        .arg("--config")
        .arg(lab.path(&format!("{node}.toml")))
        .args(["--node", node])
        .output()
        .expect("duetctl");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn ctl(lab: &Lab, node: &str, args: &[&str]) {
    let out = lab.duetctl(node, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn r0_is(lab: &Lab, node: &str, key: &str, want: &str) -> bool {
    lab.status(node)
        .is_some_and(|s| s["replicas"][0][key] == want)
}

/// How long until `ok`; None past the timeout.
pub fn wait(timeout: Duration, ok: impl Fn() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(t.elapsed())
}

/// Fresh metadata on both, daemons up, connected, node1 forced primary:
/// the time of the initial full sync.
pub fn fresh_pair(lab: &mut Lab) -> Duration {
    for n in ["node1", "node2"] {
        lab.stop(n);
        duetctl_local(lab, n, &["create-md", "r0", "--force"]);
    }
    for n in ["node1", "node2"] {
        let cfg = lab.path(&format!("{n}.toml"));
        lab.start_with(n, &cfg, &[]);
    }
    wait(Duration::from_secs(30), || {
        r0_is(lab, "node1", "connection", "connected")
    })
    .unwrap_or_else(|| panic!("not connected: {:?}", lab.try_status("node1")));
    let t = Instant::now();
    ctl(lab, "node1", &["primary", "r0", "--force"]);
    wait(Duration::from_secs(300), || {
        r0_is(lab, "node2", "disk", "uptodate")
    })
    .unwrap_or_else(|| panic!("no full sync: {:?}", lab.try_status("node2")));
    t.elapsed()
}

/// Both daemons stopped as systemd stops them, so the Primary lets go of
/// its device (the lab's Drop SIGKILLs, which leaves the loop device).
pub fn stop_both(lab: &mut Lab) {
    for n in ["node1", "node2"] {
        lab.stop(n);
    }
}
