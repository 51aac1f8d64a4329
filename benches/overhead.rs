//! What duetd costs while it only watches, in one run:
//! - membership: CPU of each duetd and heartbeat packets a node sends per
//!   second, with 2, 3 and 8 nodes at keepalive 200 ms (two links each,
//!   as in the lab: crossover by broadcast, public by unicast), against
//!   the 2-node figure (what a peer adds), and against corosync 3 (knet,
//!   the membership under Pacemaker) on the same namespaces and links,
//!   with token 1000 ms (a lost node noticed after about a second, as
//!   deadtime 1 s) and knet pings every 200 ms, signed with SHA-256 as
//!   duet's heartbeats (no encryption on either);
//! - memory: duetd's resident set as Primary of one replica of 1 GiB and
//!   of 100 GiB (sparse files) after the same 64 MiB of writes, against
//!   nbdkit's file plugin serving the same file after the same writes.
//!
//! `cargo bench --bench overhead` (root: namespaces; needs nbdkit and
//! nbdcopy). Prints the tables and merges membership_cpu,
//! membership_packets and rss_100g into target/bench/results.json.

#[path = "../tests/netns/mod.rs"]
mod netns;

mod common;
mod pair;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{cpu_ticks, start_nbdkit, ticks_per_second};
use duet_lab::results::{self, Entry};
use netns::{Lab, config, state_of};

/// How long CPU and packets are counted, once every node sees every other.
const WATCH: Duration = Duration::from_secs(10);
const WRITTEN: u64 = 64 << 20;
const GIB: u64 = 1 << 30;

/// Packets node1 sent on both links so far.
fn tx_packets(lab: &Lab) -> u64 {
    let ns = lab.node("node1").ns.clone();
    ["eth0", "eth1"]
        .iter()
        .map(|dev| {
            let out = Command::new("ip")
                .args(["netns", "exec", &ns, "cat"])
                .arg(format!("/sys/class/net/{dev}/statistics/tx_packets"))
                .output()
                .expect("ip netns exec");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0)
        })
        .sum()
}

/// CPU % of one daemon (the mean over `pids`) and packets/s node1 sends,
/// counted over `WATCH`.
fn watch(lab: &Lab, pids: &[u32]) -> (f64, f64) {
    let cpu0: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let tx0 = tx_packets(lab);
    let t = Instant::now();
    // Counting over a fixed window is the measurement itself, not a wait
    // for a condition.
    std::thread::sleep(WATCH);
    let secs = t.elapsed().as_secs_f64();
    let cpu1: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let tx1 = tx_packets(lab);
    let cpu = (cpu1 - cpu0) as f64 / ticks_per_second() / secs * 100.0 / pids.len() as f64;
    (cpu, (tx1 - tx0) as f64 / secs)
}

/// corosync.conf for `n` nodes on the lab's two links.
fn corosync_conf(n: usize, key: &std::path::Path) -> String {
    let mut c = format!(
        "totem {{\n  version: 2\n  cluster_name: lab\n  transport: knet\n  token: 1000\n  \
         crypto_cipher: none\n  crypto_hash: sha256\n  keyfile: {}\n  \
         interface {{\n    linknumber: 0\n    knet_ping_interval: 200\n    knet_ping_timeout: 1000\n  }}\n  \
         interface {{\n    linknumber: 1\n    knet_ping_interval: 200\n    knet_ping_timeout: 1000\n  }}\n}}\n\
         logging {{\n  to_stderr: yes\n  to_syslog: no\n  to_logfile: no\n  timestamp: on\n}}\n\
         quorum {{\n  provider: corosync_votequorum\n{}}}\nnodelist {{\n",
        key.display(),
        if n == 2 { "  two_node: 1\n" } else { "" }
    );
    for i in 1..=n {
        c.push_str(&format!(
            "  node {{\n    name: node{i}\n    nodeid: {i}\n    ring0_addr: 203.0.113.{i}\n    ring1_addr: 198.51.100.{i}\n  }}\n"
        ));
    }
    c.push_str("}\n");
    c
}

/// The votes node1's corosync (`pid`) counts, from corosync-quorumtool
/// in its namespaces.
fn corosync_members(pid: u32) -> usize {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-n"])
        .args(["corosync-quorumtool", "-s"])
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Total votes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The same figures for corosync on `n` nodes; `None` when corosync is
/// not installed (scripts/install-deps.sh installs it) or never formed
/// the membership.
fn corosync(n: usize) -> Option<(f64, f64)> {
    let bin = "/usr/sbin/corosync";
    if !std::path::Path::new(bin).exists() {
        return None;
    }
    let mut lab = Lab::nodes(n, &config(n, "ucast", "ucast", "duet.key"));
    let key = lab.dir.join("corosync.key");
    std::fs::write(
        &key,
        (0..256).map(|_| rand::random::<u8>()).collect::<Vec<u8>>(),
    )
    .ok()?;
    let conf = lab.write("corosync.conf", &corosync_conf(n, &key));
    let mut pids = Vec::new();
    for i in 1..=n {
        let ns = lab.node(&format!("node{i}")).ns.clone();
        let log = std::fs::File::create(lab.dir.join(format!("corosync{i}.log"))).ok()?;
        // corosync keeps one pid file and its IPC files at fixed paths: each
        // gets its own /run, /dev/shm and state (a mount namespace), and
        // `exec`s, so the pid is corosync's.
        let script = format!(
            "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /dev/shm && \
             mount -t tmpfs tmpfs /var/lib/corosync && exec {bin} -f -c {}",
            conf.display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "unshare", "-m", "sh", "-c", &script])
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .spawn()
            .ok()?;
        pids.push(child.id());
        lab.adopt(child);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while corosync_members(pids[0]) < n {
        if Instant::now() > deadline {
            eprintln!(
                "corosync with {n} nodes never formed (logs in {})",
                lab.dir.display()
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Some(watch(&lab, &pids))
}

/// CPU % of one duetd (mean over the nodes) and packets/s node1 sends.
fn membership(n: usize) -> (f64, f64) {
    let crossover = if n == 2 { "ucast" } else { "bcast" };
    let mut lab = Lab::nodes(n, &config(n, crossover, "ucast", "duet.key"));
    let names: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
    for name in &names {
        lab.start(name);
    }
    lab.wait_status("node1", Duration::from_secs(30), "every node up", |s| {
        names[1..]
            .iter()
            .all(|p| state_of(s, p).as_deref() == Some("up"))
    });
    let pids: Vec<u32> = names.iter().filter_map(|n| lab.pid(n)).collect();
    watch(&lab, &pids)
}

fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn write_some(uri: &str, lab: &Lab) {
    let source = lab.dir.join("source.bin");
    if !source.exists() {
        std::fs::write(&source, vec![0x5a; WRITTEN as usize]).expect("source");
    }
    let st = Command::new("nbdcopy")
        .arg(&source)
        .arg(uri)
        .status()
        .expect("nbdcopy");
    assert!(st.success(), "nbdcopy to {uri}");
}

/// duetd's and nbdkit's resident MiB, each serving a file of `size`.
fn memory(size: u64) -> (f64, f64) {
    let mut lab = pair::lab(size);
    pair::duetctl_local(&lab, "node1", &["create-md", "r0", "--force"]);
    let cfg = lab.path("node1.toml");
    lab.start_with("node1", &cfg, &[]);
    pair::wait(Duration::from_secs(30), || {
        pair::r0_is(&lab, "node1", "disk", "inconsistent")
    })
    .unwrap_or_else(|| panic!("node1 not up: {:?}", lab.try_status("node1")));
    pair::ctl(&lab, "node1", &["primary", "r0", "--force"]);
    let socket = pair::socket(&lab);
    write_some(&format!("nbd+unix:///r0?socket={}", socket.display()), &lab);
    let duet = rss_kib(lab.pid("node1").expect("duetd runs")) / 1024.0;
    lab.stop("node1");

    let image = lab.dir.join("node1.img");
    let kit_sock = lab.dir.join("nbdkit.sock");
    let mut kit = start_nbdkit(&kit_sock, &image);
    write_some(
        &format!("nbd+unix:///r0?socket={}", kit_sock.display()),
        &lab,
    );
    let peer = rss_kib(kit.id()) / 1024.0;
    let _ = kit.kill();
    let _ = kit.wait();
    (duet, peer)
}

fn main() {
    println!("membership at keepalive 200 ms, two links, {WATCH:?} counted");
    println!(
        "{:<8} {:>16} {:>24} {:>18} {:>24}",
        "nodes",
        "CPU per duetd",
        "packets/s sent by one",
        "CPU per corosync",
        "packets/s sent by one"
    );
    let mut figures = Vec::new();
    let mut peers = Vec::new();
    for n in [2, 3, 8] {
        let (cpu, pps) = membership(n);
        let peer = corosync(n);
        let (pcpu, ppps) = peer.map_or(("-".into(), "-".into()), |(c, p)| {
            (format!("{c:.2}%"), format!("{p:.1}"))
        });
        println!("{n:<8} {cpu:>15.2}% {pps:>24.1} {pcpu:>18} {ppps:>24}");
        figures.push((cpu, pps));
        peers.push(peer);
    }
    println!("\nresident memory after {} MiB of writes", WRITTEN >> 20);
    println!(
        "{:<10} {:>18} {:>22}",
        "replica", "duetd (Primary)", "nbdkit file plugin"
    );
    let mut rss = Vec::new();
    for size in [GIB, 100 * GIB] {
        let (duet, kit) = memory(size);
        println!(
            "{:<10} {duet:>14.1} MiB {kit:>18.1} MiB",
            format!("{} GiB", size / GIB)
        );
        rss.push((duet, kit));
    }
    let two = "the same with 2 nodes".to_string();
    if let Some((cpu, pps)) = peers[2] {
        results::merge(&[
            Entry {
                name: "membership_cpu_corosync",
                value: figures[2].0,
                unit: "% of a core per daemon, 8 nodes",
                peer: "corosync 3 (knet, token 1000 ms)".into(),
                peer_value: cpu,
                higher_is_better: false,
            },
            Entry {
                name: "membership_packets_corosync",
                value: figures[2].1,
                unit: "packets/s sent per node, 8 nodes",
                peer: "corosync 3 (knet, token 1000 ms)".into(),
                peer_value: pps,
                higher_is_better: false,
            },
        ]);
    }
    results::merge(&[
        Entry {
            name: "membership_cpu",
            value: figures[2].0,
            unit: "% of a core per duetd, 8 nodes",
            peer: two.clone(),
            peer_value: figures[0].0,
            higher_is_better: false,
        },
        Entry {
            name: "membership_packets",
            value: figures[2].1,
            unit: "packets/s sent per node, 8 nodes",
            peer: two,
            peer_value: figures[0].1,
            higher_is_better: false,
        },
        Entry {
            name: "rss_100g",
            value: rss[1].0,
            unit: "MiB",
            peer: "nbdkit file plugin".into(),
            peer_value: rss[1].1,
            higher_is_better: false,
        },
    ]);
}
