//! The duet lab: two or three real nodes on one machine. Each node is a
//! Debian container booted by `systemd-nspawn --boot` (systemd as PID 1,
//! the system bus, journald) in a network namespace of its own, with a
//! crossover link, a public bridge shared with a client namespace, and a
//! loop device as /dev/sdb. duetd runs in each as the project's own unit.
//!
//! The vocabulary follows the NixOS test driver: `succeed`, `fail`,
//! `wait_for_unit`, `wait_until`, `crash`, `boot`. Everything the lab makes
//! is removed by `Drop`, also when a test panics; then every node's journal
//! is printed first. docs/lab.md says more.

pub mod bench;
pub mod campaign;
pub mod cgroup;
pub mod cleanup;
pub mod cmd;
pub mod collector;
pub mod loops;
pub mod net;
pub mod node;
pub mod pdu;
pub mod replica;
pub mod results;
pub mod rootfs;
pub mod status;
pub mod web;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use cmd::wait_until;
pub use node::Node;

/// Every name the lab gives (namespaces, directories) starts with this and
/// the owning process id, so leftovers of a dead run are recognisable.
pub const PREFIX: &str = "duetlab";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The duet binaries to install into the nodes.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub duetd: PathBuf,
    pub duetctl: PathBuf,
}

impl Binaries {
    /// duetd and duetctl next to the running program (target/release when
    /// run as `duet-lab`).
    pub fn beside_current_exe() -> Binaries {
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe.parent().expect("exe dir").to_path_buf();
        Binaries {
            duetd: dir.join("duetd"),
            duetctl: dir.join("duetctl"),
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("project root")
        .to_path_buf()
}

/// The cluster config the lab writes into every node: the lab's addresses,
/// LAN timings with a short initdead, the bridge as ping node.
pub fn cluster_config(nodes: usize) -> String {
    cluster_config_with(nodes, false)
}

/// As `cluster_config`; with `witness`, node3 is the cluster's witness
/// (docs/quorum.md): it votes and holds nothing.
pub fn cluster_config_with(nodes: usize, witness: bool) -> String {
    let crossover = if nodes == 2 { "ucast" } else { "bcast" };
    let mut c = format!(
        "[cluster]\nname = \"lab\"\nkey-file = \"duet.key\"\n\n\
         [timings]\nkeepalive = \"200ms\"\nwarntime = \"600ms\"\ndeadtime = \"1s\"\ninitdead = \"5s\"\n\n\
         [[link]]\nname = \"crossover\"\ninterface = \"eth1\"\nmode = \"{crossover}\"\n\n\
         [[link]]\nname = \"public\"\ninterface = \"eth0\"\nmode = \"ucast\"\n\n\
         [ping]\nnodes = [\"{}\"]\ninterval = \"500ms\"\ndeadtime = \"2s\"\n",
        net::GATEWAY_V4
    );
    for n in 1..=nodes {
        c.push_str(&format!(
            "\n[[node]]\nname = \"node{n}\"\naddress = {{ crossover = \"{}\", public = \"{}\" }}\n",
            net::crossover_v4(n),
            net::public_v4(n)
        ));
        if witness && n == 3 {
            c.push_str("witness = true\n");
        }
    }
    // The replicated disk lives on node1 and node2, which replicate over the
    // crossover; a third node only votes.
    c.push_str(&format!(
        "\n[[replica]]\nname = \"r0\"\ndisk = {{ node1 = \"/dev/sdb\", node2 = \"/dev/sdb\" }}\n\
         address = {{ node1 = \"{}\", node2 = \"{}\" }}\n",
        net::crossover_v4(1),
        net::crossover_v4(2)
    ));
    c
}

pub struct Lab {
    pub dir: PathBuf,
    prefix: String,
    nodes: Vec<Node>,
    namespaces: Vec<String>,
    pub client: String,
    hub: String,
    pdu: Option<pdu::Pdu>,
    /// node3 is the witness.
    witness: bool,
}

impl Lab {
    /// Builds (or reuses) the rootfs, wires `n` nodes and installs duet
    /// into each, with the same key and config. Nothing is booted yet, so a
    /// test may change a node's files first; then `boot_all`.
    pub fn new(n: usize, bins: &Binaries) -> Lab {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the lab needs root (namespaces, loop devices, nspawn): run it through `make test`"
        );
        assert!((2..=3).contains(&n), "the lab has 2 or 3 nodes");
        cleanup::remove_leftovers();
        let rootfs = rootfs::ensure();
        let id = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&id);
        fs::create_dir_all(&dir).expect("lab dir");
        let mut lab = Lab {
            dir,
            hub: format!("{id}-hub"),
            client: format!("{id}-client"),
            prefix: id,
            nodes: Vec::new(),
            namespaces: Vec::new(),
            pdu: None,
            witness: false,
        };
        for ns in [lab.hub.clone(), lab.client.clone()] {
            lab.add_netns(&ns);
        }
        let names: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
        let mut node_ns = Vec::new();
        for name in &names {
            let ns = format!("{}-{name}", lab.prefix);
            lab.add_netns(&ns);
            node_ns.push(ns.clone());
            let node = Node::prepare(name, &ns, &lab.dir, &rootfs);
            lab.nodes.push(node);
        }
        net::wire(&lab.hub, &lab.client, &node_ns);
        lab.install(bins, &cluster_config(n));
        lab
    }

    fn add_netns(&mut self, ns: &str) {
        net::netns(ns);
        self.namespaces.push(ns.to_string());
    }

    /// duetd, duetctl, the unit, the bus policy, the config and one key.
    fn install(&self, bins: &Binaries, config: &str) {
        let read = |p: &Path| fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let root = project_root();
        let key = self.dir.join("duet.key");
        cmd::succeed(Command::new(&bins.duetctl).arg("keygen").arg(&key));
        for node in &self.nodes {
            node.write_file("/usr/bin/duetd", &read(&bins.duetd), 0o755);
            node.write_file("/usr/bin/duetctl", &read(&bins.duetctl), 0o755);
            let unit = read(&root.join("systemd/duetd.service"));
            node.write_file("/etc/systemd/system/duetd.service", &unit, 0o644);
            let wants = node
                .root()
                .join("etc/systemd/system/multi-user.target.wants");
            fs::create_dir_all(&wants).expect("wants dir");
            let link = wants.join("duetd.service");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink("../duetd.service", &link).expect("enable duetd");
            let catalog = read(&root.join("systemd/duet.catalog"));
            node.write_file("/usr/lib/systemd/catalog/duet.catalog", &catalog, 0o644);
            let policy = read(&root.join("dbus/org.duet.Duet1.conf"));
            node.write_file("/etc/dbus-1/system.d/org.duet.Duet1.conf", &policy, 0o644);
            node.write_file("/etc/duet/duet.toml", config.as_bytes(), 0o644);
            node.write_file("/etc/duet/duet.key", &read(&key), 0o600);
        }
    }

    /// Makes node3 of a three-node lab the witness (`witness = true`),
    /// in the config of every node. Call it before the nodes boot.
    pub fn with_witness(&mut self) {
        assert_eq!(self.nodes.len(), 3, "the witness is node3");
        assert!(
            self.nodes.iter().all(|n| !n.is_running()),
            "with_witness before the nodes boot"
        );
        self.witness = true;
        let config = cluster_config_with(3, true);
        for node in &self.nodes {
            node.write_file("/etc/duet/duet.toml", config.as_bytes(), 0o644);
        }
    }

    /// Gives the lab a PDU (the fence device, src `pdu.rs`): its socket is
    /// bound into every node at /run/duet-lab/pdu.sock and the fence agent
    /// `/usr/local/sbin/lab-fence NODE` installed, for a config with
    /// `pdu::FENCING`. Call it before the nodes boot.
    pub fn with_pdu(&mut self) -> &pdu::Pdu {
        assert!(
            self.nodes.iter().all(|n| !n.is_running()),
            "with_pdu before the nodes boot: the socket is bound in at boot"
        );
        if self.pdu.is_none() {
            let dir = self.dir.join("pdu");
            let outlets: BTreeMap<String, node::Outlet> = self
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.outlet()))
                .collect();
            let pdu = pdu::Pdu::start(&dir, outlets);
            for node in &mut self.nodes {
                node.add_bind(&dir, pdu::NODE_DIR);
                node.write_file(pdu::FENCE_AGENT, pdu::FENCE_SCRIPT.as_bytes(), 0o755);
            }
            self.pdu = Some(pdu);
        }
        self.pdu.as_ref().expect("pdu just started")
    }

    /// The nodes' config with `group` (a `[[group]]` text), and fencing
    /// through the PDU when the lab has one: a two-node cluster takes
    /// nothing over from a crashed node without it.
    pub fn group_config(&self, group: &str) -> String {
        let fencing = if self.pdu.is_some() { pdu::FENCING } else { "" };
        let cluster = cluster_config_with(self.nodes.len(), self.witness);
        format!("{cluster}{group}{fencing}")
    }

    /// The lab's PDU, if `with_pdu` gave it one.
    pub fn pdu(&self) -> Option<&pdu::Pdu> {
        self.pdu.as_ref()
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no {name} in the lab"))
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no {name} in the lab"))
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Boots every node that is not running, in order.
    pub fn boot_all(&mut self) {
        for node in &mut self.nodes {
            if !node.is_running() {
                node.boot();
            }
        }
    }

    pub fn boot(&mut self, name: &str) {
        self.node_mut(name).boot();
    }

    /// As `boot`, with a node that does not come up as an error.
    pub fn try_boot(&mut self, name: &str) -> Result<(), String> {
        self.node_mut(name).try_boot()
    }

    /// Kills the node at once (SIGKILL to its init): a power cut.
    pub fn crash(&mut self, name: &str) {
        self.node_mut(name).crash();
    }

    /// Halts the node cleanly (SIGTERM to nspawn, as `poweroff`); false if
    /// it did not halt in time and had to be crashed.
    pub fn shutdown(&mut self, name: &str) -> bool {
        self.node_mut(name).shutdown()
    }

    /// Runs `sh -c script` on the node, whatever it returns.
    pub fn execute(&self, name: &str, script: &str) -> Output {
        self.node(name).exec(&["sh", "-c", script])
    }

    /// As `execute`, or None when the node is not running: with a PDU, a
    /// node may be powered off at any moment.
    pub fn try_execute(&self, name: &str, script: &str) -> Option<Output> {
        self.node(name).try_exec(&["sh", "-c", script])
    }

    /// Runs `script` on the node; panics unless it succeeds. Returns stdout.
    pub fn succeed(&self, name: &str, script: &str) -> String {
        let out = self.execute(name, script);
        cmd::succeeded(&out, &format!("on {name}: `{script}`"))
    }

    /// Runs `script` on the node; panics if it succeeds. Returns stderr.
    pub fn fail(&self, name: &str, script: &str) -> String {
        let out = self.execute(name, script);
        assert!(
            !out.status.success(),
            "on {name}: `{script}` succeeded but should fail"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn wait_for_unit(&self, name: &str, unit: &str, timeout: Duration) {
        wait_until(timeout, &format!("{unit} active on {name}"), || {
            let out = self.execute(name, &format!("systemctl is-active {unit}"));
            out.status.success().then_some(())
        });
    }

    /// `duetctl status --json` run on the node, or None while it fails.
    pub fn status(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.try_execute(name, "duetctl status --json")?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Cuts (or restores) one of the node's links, as unplugging a cable.
    /// The cable stays as set across crashes and boots.
    pub fn set_link(&self, name: &str, ifname: &str, up: bool) {
        self.node(name).set_link(ifname, up);
    }

    /// Partitions the cluster: every node of `island` stops hearing every
    /// node outside it on both links (nftables drops in each node).
    pub fn isolate(&self, island: &[&str]) {
        let all = self.node_names();
        for name in &all {
            let inside = island.contains(&name.as_str());
            let others: Vec<String> = all
                .iter()
                .filter(|o| island.contains(&o.as_str()) != inside)
                .flat_map(|o| {
                    let n: usize = o.trim_start_matches("node").parse().unwrap_or(0);
                    [net::crossover_v4(n), net::public_v4(n)]
                })
                .collect();
            if others.is_empty() {
                continue;
            }
            self.nft_load(name, "partition", &drop_rules(&others.join(", ")));
        }
    }

    /// Cuts every link between `a` and `b` (nftables drops in both), the
    /// other nodes still reaching both; `heal` removes it.
    pub fn cut_between(&self, a: &str, b: &str) {
        for (me, other) in [(a, b), (b, a)] {
            let n: usize = other.trim_start_matches("node").parse().unwrap_or(0);
            let set = format!("{}, {}", net::crossover_v4(n), net::public_v4(n));
            self.nft_load(me, "partition", &drop_rules(&set));
        }
    }

    /// Loads an nftables ruleset (written to a file in the lab folder, so a
    /// failed test leaves it to read) into the node's namespace.
    fn nft_load(&self, name: &str, tag: &str, rules: &str) {
        let file = self.dir.join(format!("{name}-{tag}.nft"));
        fs::write(&file, rules).expect("write nft rules");
        let ns = &self.node(name).ns;
        cmd::succeed(
            Command::new("ip")
                .args(["netns", "exec", ns, "nft", "-f"])
                .arg(&file),
        );
    }

    /// Removes an nftables table from the node's namespace, if there.
    fn nft_drop(&self, ns: &str, table: &str) {
        cmd::quietly(
            Command::new("ip").args(["netns", "exec", ns, "nft", "delete", "table", "inet", table]),
        );
    }

    /// Drops `percent` of the packets arriving at the node, at random (the
    /// kernel here has no netem, so nftables' random numbers do it; delay
    /// cannot be added this way). `percent` 0 removes the loss.
    pub fn lose(&self, name: &str, percent: u8) {
        self.nft_drop(&self.node(name).ns, "duetlab_loss");
        if percent == 0 {
            return;
        }
        let last = percent.min(100) - 1;
        let rules = format!(
            "table inet duetlab_loss {{\n\
             \tchain input {{ type filter hook input priority 0; meta l4proto udp numgen random mod 100 <= {last} drop; }}\n\
             }}\n"
        );
        self.nft_load(name, "loss", &rules);
    }

    /// Makes the node's /dev/sdb fail every I/O with EIO, or work again.
    pub fn set_disk_failing(&self, name: &str, failing: bool) {
        self.node(name).set_disk_failing(failing);
    }

    /// Removes every partition made by `isolate`.
    pub fn heal(&self) {
        for node in &self.nodes {
            self.nft_drop(&node.ns, "duetlab");
        }
    }

    /// The journal of every running node, for a failed test's report.
    pub fn journals(&self) -> String {
        let mut all = String::new();
        for node in &self.nodes {
            all.push_str(&format!("===== journal of {} =====\n", node.name));
            let journal = node.try_exec(&[
                "journalctl",
                "--no-pager",
                "-o",
                "short-monotonic",
                "-n",
                "300",
            ]);
            if let Some(out) = journal {
                all.push_str(&String::from_utf8_lossy(&out.stdout));
            } else {
                all.push_str("(not running; its stored journal, then its console)\n");
                all.push_str(&node.stored_journal(300));
                all.push_str(&node.console_log());
            }
        }
        all
    }

    /// `Node::state_report` of every running node, printed before the
    /// journals.
    pub fn stuck_report(&self) -> String {
        let mut all = String::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            all.push_str(&format!("===== state of {} =====\n", node.name));
            all.push_str(&node.state_report());
        }
        all
    }

    /// Leaves everything running (for `duet-lab up`): nothing is removed
    /// when this Lab is dropped. `duet-lab down` removes it.
    pub fn keep(mut self) {
        self.nodes.clear();
        self.namespaces.clear();
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.stuck_report());
            eprintln!("{}", self.journals());
        }
        // No power cut from a node's fence while the nodes are removed.
        self.pdu = None;
        for node in &mut self.nodes {
            node.destroy();
        }
        for ns in self.namespaces.iter().rev() {
            cmd::quietly(Command::new("ip").args(["netns", "del", ns]));
        }
        if !self.namespaces.is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The partition table of a node: every packet from or to the addresses
/// of `set` (a comma-separated nftables set) dropped.
fn drop_rules(set: &str) -> String {
    format!(
        "table inet duetlab {{\n\
         \tchain input {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
         \tchain output {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
         }}\n"
    )
}

/// How long from `since` until `probe` holds, polling every 50 ms.
pub fn measure(
    timeout: Duration,
    what: &str,
    since: Instant,
    probe: impl FnMut() -> Option<()>,
) -> Duration {
    wait_until(timeout, what, probe);
    since.elapsed()
}
