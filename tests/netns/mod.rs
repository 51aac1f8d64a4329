//! The process lab for fast integration tests: real duetd processes, each in a network
//! namespace of its own with a private D-Bus system bus, wired by veth pairs
//! (and bridges for three nodes). Addresses: 203.0.113.0/24 on the
//! crossover, 198.51.100.0/24 on the public side, nothing else.
//!
//! `Lab`'s Drop kills every process it started and deletes every namespace
//! and file it made, also when the test panics.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const DUETD: &str = env!("CARGO_BIN_EXE_duetd");
pub const DUETCTL: &str = env!("CARGO_BIN_EXE_duetctl");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A config for `n` nodes (node1..nodeN): crossover link "crossover" on eth1
/// (203.0.113.N) and public link "public" on eth0 (198.51.100.N), with the
/// given modes, short initdead so tests do not wait for nothing.
pub fn config(n: usize, crossover_mode: &str, public_mode: &str, key_file: &str) -> String {
    let mut c = format!(
        "[cluster]\nname = \"lab\"\nkey-file = \"{key_file}\"\n\n\
         [timings]\nkeepalive = \"200ms\"\nwarntime = \"600ms\"\ndeadtime = \"1s\"\ninitdead = \"4s\"\n\n\
         [[link]]\nname = \"crossover\"\ninterface = \"eth1\"\nmode = \"{crossover_mode}\"\n"
    );
    if crossover_mode == "mcast" {
        c.push_str("group = \"239.255.6.94\"\n");
    }
    c.push_str(&format!(
        "\n[[link]]\nname = \"public\"\ninterface = \"eth0\"\nmode = \"{public_mode}\"\nport = 695\n"
    ));
    if public_mode == "mcast" {
        c.push_str("group = \"239.255.6.95\"\n");
    }
    for i in 1..=n {
        c.push_str(&format!(
            "\n[[node]]\nname = \"node{i}\"\naddress = {{ crossover = \"203.0.113.{i}\", public = \"198.51.100.{i}\" }}\n"
        ));
    }
    c
}

pub struct Node {
    pub name: String,
    pub ns: String,
    pub bus: String,
    pub log: PathBuf,
    duetd: Option<Child>,
}

pub struct Lab {
    pub dir: PathBuf,
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    /// The private dbus-daemons, by name.
    buses: Vec<(String, Child)>,
    pub nodes: Vec<Node>,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `f` on a thread inside network namespace `ns` (setns moves only
/// the calling thread).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let netns = std::fs::File::open(&path).expect("netns");
        // SAFETY: setns on a descriptor we own; it changes only this thread.
        let r = unsafe {
            nix::libc::setns(
                std::os::fd::AsRawFd::as_raw_fd(&netns),
                nix::libc::CLONE_NEWNET,
            )
        };
        assert_eq!(r, 0, "setns {path}");
        f()
    })
}

pub fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

impl Lab {
    /// An empty lab: a temp dir and a unique prefix for namespaces.
    pub fn new() -> Lab {
        assert!(
            nix::unistd::geteuid().is_root(),
            "lab tests need root (network namespaces, veth): run them with `make test` as root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("duet-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("lab temp dir");
        Lab {
            dir,
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            buses: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// `n` nodes with a key and `config` written; eth1 and eth0 wired as a
    /// direct veth pair for two nodes, through bridges for more.
    pub fn nodes(n: usize, config: &str) -> Lab {
        let names: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Lab::named(&names, config)
    }

    /// As `nodes`, with these node names (the k-th gets the addresses .k).
    pub fn named(names: &[&str], config: &str) -> Lab {
        let n = names.len();
        let mut lab = Lab::new();
        lab.keygen("duet.key");
        lab.write("duet.toml", config);
        for (k, name) in names.iter().enumerate() {
            let (i, name) = (k + 1, name.to_string());
            let ns = lab.netns(&format!("n{i}"));
            let bus = lab.bus(&name);
            let log = lab.dir.join(format!("{name}.log"));
            lab.nodes.push(Node {
                name,
                ns,
                bus,
                log,
                duetd: None,
            });
        }
        if n == 2 {
            lab.wire_pair();
        } else {
            lab.wire_bridges();
        }
        lab
    }

    fn wire_pair(&mut self) {
        let (a, b) = (self.nodes[0].ns.clone(), self.nodes[1].ns.clone());
        for (ifname, net) in [("eth1", "203.0.113"), ("eth0", "198.51.100")] {
            ip(&[
                "link", "add", ifname, "netns", &a, "type", "veth", "peer", "name", ifname,
                "netns", &b,
            ]);
            for (i, ns) in [&a, &b].into_iter().enumerate() {
                let addr = format!("{net}.{}/24", i + 1);
                ip(&["-n", ns, "addr", "add", &addr, "dev", ifname]);
                ip(&["-n", ns, "link", "set", ifname, "up"]);
            }
        }
    }

    fn wire_bridges(&mut self) {
        let hub = self.netns("hub");
        for br in ["br1", "br0"] {
            ip(&["-n", &hub, "link", "add", br, "type", "bridge"]);
            ip(&["-n", &hub, "link", "set", br, "up"]);
        }
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.ns.clone()).collect();
        for (i, ns) in nodes.iter().enumerate() {
            let k = i + 1;
            for (ifname, br, net) in [("eth1", "br1", "203.0.113"), ("eth0", "br0", "198.51.100")] {
                let port = format!("{br}p{k}");
                ip(&[
                    "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", &port,
                    "netns", &hub,
                ]);
                ip(&["-n", &hub, "link", "set", &port, "master", br, "up"]);
                let addr = format!("{net}.{k}/24");
                ip(&["-n", ns, "addr", "add", &addr, "dev", ifname]);
                ip(&["-n", ns, "link", "set", ifname, "up"]);
            }
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, text).expect("write lab file");
        p
    }

    pub fn keygen(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let out = Command::new(DUETCTL)
            .arg("keygen")
            .arg(&p)
            .output()
            .expect("duetctl keygen");
        assert!(out.status.success(), "keygen failed: {out:?}");
        p
    }

    /// A network namespace with its loopback up.
    pub fn netns(&mut self, short: &str) -> String {
        let name = format!("{}-{short}", self.prefix);
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A private dbus-daemon playing the node's system bus, open to all
    /// (the tests run as root); returns its address once it listens.
    pub fn bus(&mut self, name: &str) -> String {
        self.start_bus(
            name,
            r#"<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>"#,
        )
    }

    /// A bus with the defaults of a real system bus (method calls denied
    /// unless a policy file allows them) plus the policy file `include`.
    pub fn system_bus(&mut self, name: &str, include: &Path) -> String {
        self.system_bus_with(name, &[include])
    }

    /// `system_bus` with several policy files.
    pub fn system_bus_with(&mut self, name: &str, includes: &[&Path]) -> String {
        let includes: String = includes
            .iter()
            .map(|p| format!("<include>{}</include>", p.display()))
            .collect();
        let policy = format!(
            r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  {includes}"#
        );
        self.start_bus(name, &policy)
    }

    fn start_bus(&mut self, name: &str, policy: &str) -> String {
        let socket = self.path(&format!("{name}.bus"));
        let conf = self.write(
            &format!("{name}-bus.conf"),
            &format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"#,
                socket.display()
            ),
        );
        self.spawn_bus(name, &conf, &socket);
        format!("unix:path={}", socket.display())
    }

    fn spawn_bus(&mut self, name: &str, conf: &Path, socket: &Path) {
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path(&format!("{name}-bus.log"))).expect("bus log"))
            .spawn()
            .expect("dbus-daemon (scripts/install-deps.sh installs it)");
        self.buses.push((name.to_string(), child));
        wait_until(Duration::from_secs(5), "the private bus to listen", || {
            socket.exists().then_some(())
        });
    }

    /// Stops bus `name`'s dbus-daemon and starts a new one on the same
    /// address, as `systemctl restart dbus` would: every client is cut off.
    pub fn restart_bus(&mut self, name: &str) {
        let at = self
            .buses
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no bus {name} in the lab"));
        let (_, mut old) = self.buses.remove(at);
        let _ = old.kill();
        let _ = old.wait();
        let socket = self.path(&format!("{name}.bus"));
        let _ = fs::remove_file(&socket);
        let conf = self.path(&format!("{name}-bus.conf"));
        self.spawn_bus(name, &conf, &socket);
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the lab"))
    }

    /// The process id of `name`'s duetd while it runs (`ip netns exec`
    /// and `env` exec it in place, so the child is duetd itself).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.node(name).duetd.as_ref().map(Child::id)
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the lab"))
    }

    /// Starts duetd for `name` with the lab's duet.toml.
    pub fn start(&mut self, name: &str) {
        let config = self.path("duet.toml");
        self.start_with(name, &config, &[]);
    }

    /// Starts duetd for `name` with this config and extra environment.
    pub fn start_with(&mut self, name: &str, config: &Path, env: &[(&str, &str)]) {
        let node = self.node_mut(name);
        assert!(node.duetd.is_none(), "{name} is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &node.ns, "env"])
            .arg(format!("DBUS_SYSTEM_BUS_ADDRESS={}", node.bus))
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(DUETD)
            .arg("--config")
            .arg(config)
            .args(["--node", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        node.duetd = Some(cmd.spawn().expect("spawn duetd"));
    }

    /// SIGTERM, as systemd stops duetd: it stops what runs there and lets
    /// go of its replicas' devices (a SIGKILLed Primary leaves its loop
    /// device behind). SIGKILL after 5 s if it has not exited.
    pub fn stop(&mut self, name: &str) {
        let child = self.node_mut(name).duetd.take();
        terminate(child.into_iter().collect());
    }

    /// SIGKILL: the node dies without a word, as in a crash.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.node_mut(name).duetd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's `duetctl status --json`, or None while it does not answer.
    pub fn status(&self, name: &str) -> Option<serde_json::Value> {
        self.try_status(name).ok()
    }

    /// The node's `duetctl status --json`, or what went wrong instead
    /// (duetctl's message, or the output that was not JSON).
    pub fn try_status(&self, name: &str) -> Result<serde_json::Value, String> {
        let out = self.duetctl(name, &["status", "--json"]);
        if !out.status.success() {
            return Err(format!(
                "duetctl status exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "duetctl status --json printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Polls `name`'s status every 20 ms until `ready` holds for it and
    /// returns that status and how long it took; at the deadline, panics
    /// with `what` and the last status seen (or why there was none).
    pub fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut(&serde_json::Value) -> bool,
    ) -> (serde_json::Value, Duration) {
        let start = Instant::now();
        loop {
            let last = match self.try_status(name) {
                Ok(s) if ready(&s) => return (s, start.elapsed()),
                Ok(s) => s.to_string(),
                Err(e) => e,
            };
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; last status of {name}: {last}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn duetctl(&self, name: &str, args: &[&str]) -> Output {
        Command::new(DUETCTL)
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.node(name).bus)
            .output()
            .expect("run duetctl")
    }

    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(&self.node(name).log).unwrap_or_default()
    }

    /// Runs a command inside the node's namespace.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        let ns = &self.node(name).ns;
        run(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    /// Keeps a child process (a monitor, say) to be killed at the end.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// `duetctl ARGS` on the node, running on: each line it prints comes
    /// out of the receiver. The process is the lab's, killed at its end.
    pub fn duetctl_lines(
        &mut self,
        name: &str,
        args: &[&str],
    ) -> std::sync::mpsc::Receiver<String> {
        use std::io::BufRead;
        let mut child = Command::new(DUETCTL)
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.node(name).bus)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("duetctl");
        let out = child.stdout.take().expect("stdout");
        self.adopt(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// `duetctl status --watch` on the node, not on a terminal: each view
    /// it prints (its time line first) comes out of the receiver whole.
    pub fn watch(&mut self, name: &str) -> std::sync::mpsc::Receiver<String> {
        let lines = self.duetctl_lines(name, &["status", "--watch"]);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut view = String::new();
            for line in lines {
                if !line.is_empty() {
                    view.push_str(&line);
                    view.push('\n');
                } else if tx.send(std::mem::take(&mut view)).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

/// Items from `rx` until one for which `last` holds (returned with all
/// before it), at most `within`; panics with `what` and what came.
pub fn recv_until<T: std::fmt::Debug>(
    rx: &std::sync::mpsc::Receiver<T>,
    within: Duration,
    what: &str,
    last: impl Fn(&T) -> bool,
) -> Vec<T> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(item) => {
                let done = last(&item);
                seen.push(item);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("no {what} within {within:?}; got: {seen:#?}"),
        }
    }
}

impl Lab {
    /// Every daemon still running stopped as systemd would, all at once.
    fn stop_all(&mut self) {
        terminate(
            self.nodes
                .iter_mut()
                .filter_map(|n| n.duetd.take())
                .collect(),
        );
    }
}

/// SIGTERM to each, SIGKILL for those not gone after 5 s. A SIGKILLed
/// Primary would leave its export's loop device behind.
fn terminate(mut running: Vec<Child>) {
    for child in &running {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !running.is_empty() && Instant::now() < deadline {
        running.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        std::thread::sleep(Duration::from_millis(10));
    }
    for mut child in running {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_all();
        let buses = self.buses.iter_mut().map(|(_, c)| c);
        for child in self.children.iter_mut().chain(buses) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            // Anything still running in a namespace the lab made was started
            // by the lab (a child duetd forked, say): it goes too.
            kill_all_in(ns);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // A failed test prints what it needs (the node logs) and still
        // removes its files: a lab never outlives its test.
        if std::thread::panicking() {
            for node in &self.nodes {
                if let Ok(log) = fs::read_to_string(&node.log) {
                    eprintln!("--- {} log ---\n{log}", node.name);
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILLs every process left in namespace `ns` and reaps what it can.
fn kill_all_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        // Only our own children can be reaped; others go to init.
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

pub use duet_lab::wait_until;

/// The entry of `node` in a status JSON.
pub fn node_of<'a>(status: &'a serde_json::Value, node: &str) -> Option<&'a serde_json::Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)
}

pub fn state_of(status: &serde_json::Value, node: &str) -> Option<String> {
    node_of(status, node)?["state"].as_str().map(String::from)
}

pub fn link_of(status: &serde_json::Value, node: &str, link: &str) -> Option<String> {
    node_of(status, node)?["links"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == link)?["state"]
        .as_str()
        .map(String::from)
}

/// The witness cluster of docs/quorum.md: node1 and node2 hold the data,
/// the third node, "witness", only votes (`Lab::named` gives the k-th the
/// addresses .k, on both links).
pub const WITNESS_NODES: [&str; 3] = ["node1", "node2", "witness"];

/// The config for `WITNESS_NODES`: the process lab's links and timings.
pub fn witness_config() -> String {
    let mut c = String::from(
        "[cluster]\nname = \"lab\"\nkey-file = \"duet.key\"\n\n\
         [timings]\nkeepalive = \"200ms\"\nwarntime = \"600ms\"\ndeadtime = \"1s\"\ninitdead = \"4s\"\n\n\
         [[link]]\nname = \"crossover\"\ninterface = \"eth1\"\nmode = \"ucast\"\n\n\
         [[link]]\nname = \"public\"\ninterface = \"eth0\"\nmode = \"ucast\"\nport = 695\n",
    );
    for (k, name) in WITNESS_NODES.iter().enumerate() {
        let i = k + 1;
        c.push_str(&format!(
            "\n[[node]]\nname = \"{name}\"\n{}address = {{ crossover = \"203.0.113.{i}\", public = \"198.51.100.{i}\" }}\n",
            if *name == "witness" { "witness = true\n" } else { "" }
        ));
    }
    c
}

/// A MAC address no interface has.
const NOWHERE: &str = "02:00:00:00:0d:ed";

impl Lab {
    /// The number in a node's addresses (its place in the lab, from 1).
    fn host(&self, name: &str) -> usize {
        1 + self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the lab"))
    }

    /// `a` and `b` stop hearing each other on both links while every other
    /// pair still talks: what each sends the other goes to a MAC address
    /// nobody has, which the bridges flood and every port drops. (No
    /// nftables or tc classifiers on the machine, and a blackhole route
    /// does not stop a socket bound to its device.) Needs bridges: three
    /// nodes or more.
    pub fn cut(&self, a: &str, b: &str) {
        for (from, to) in [(a, b), (b, a)] {
            let peer = self.host(to);
            for (dev, net) in [("eth1", "203.0.113"), ("eth0", "198.51.100")] {
                let addr = format!("{net}.{peer}");
                self.exec(
                    from,
                    &[
                        "ip",
                        "neigh",
                        "replace",
                        &addr,
                        "lladdr",
                        NOWHERE,
                        "dev",
                        dev,
                        "nud",
                        "permanent",
                    ],
                );
            }
        }
    }

    /// Undoes `cut(a, b)`: the neighbours are learnt again.
    pub fn heal(&self, a: &str, b: &str) {
        for (from, to) in [(a, b), (b, a)] {
            let peer = self.host(to);
            for (dev, net) in [("eth1", "203.0.113"), ("eth0", "198.51.100")] {
                let addr = format!("{net}.{peer}");
                self.exec(from, &["ip", "neigh", "del", &addr, "dev", dev]);
            }
        }
    }
}
