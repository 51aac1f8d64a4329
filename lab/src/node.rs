//! One lab node: an overlay of the cached rootfs booted with
//! `systemd-nspawn --boot` in the node's network namespace, with a loop
//! device as its /dev/sdb. Commands run inside with `nsenter` into the
//! container's PID 1.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cmd::{output, quietly, succeed, wait_until};

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// A node halts in a few seconds, its duetd handing its groups over first.
const HALT_TIMEOUT: Duration = Duration::from_secs(20);
const SDB_SIZE: &str = "1G";
/// Loop devices a node may attach itself (the export's block device).
/// Loop devices are the host kernel's: one the node attached outlives a
/// crash of the node (detaching it then can hang on the FUSE file it
/// sits on while nbdfuse is still dying), so a node has enough for the
/// failover benchmark's crashes (seven per node).
const SPARE_LOOPS: usize = 8;

/// Whether a node has power, shared between the lab (which boots and
/// crashes it) and the lab's PDU (which powers it off from its own
/// thread when a node fences another), so both always agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Off,
    /// nspawn runs; its container's init is not known yet.
    Booting {
        nspawn: u32,
    },
    On {
        nspawn: u32,
        leader: i32,
    },
    /// Its init was killed; nspawn has not exited yet.
    Dying {
        nspawn: u32,
    },
}

/// How long a power cut may take before the caller gives up: the kernel
/// tears the container's processes down, then nspawn exits.
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's power, as the lab and its PDU reach it: the state and the
/// node's network namespace, whose interfaces go dark with the power.
#[derive(Debug, Clone)]
pub struct Outlet {
    power: Arc<Mutex<Power>>,
    ns: String,
    /// The running container's mount namespace, held open by the lab
    /// (see `hold_mounts`).
    mounts: Arc<Mutex<Option<fs::File>>>,
}

impl Outlet {
    pub(crate) fn new(ns: &str) -> Outlet {
        Outlet {
            power: Arc::new(Mutex::new(Power::Off)),
            ns: ns.to_string(),
            mounts: Arc::new(Mutex::new(None)),
        }
    }

    /// Keeps the mount namespace of the container whose init is `leader`
    /// alive until the power is off. Without it, at a power cut the last
    /// process of the node to exit tears the namespace down, and with it
    /// the filesystem on the node's export: when that process is the
    /// export's nbdfuse, the kernel unmounts before it releases its FUSE
    /// connection (namespaces go before deferred file releases in exit),
    /// so the unmount's writeback waits on a FUSE server that is itself
    /// waiting for the unmount, forever. Held here, the namespace goes
    /// once every process is gone and the connection aborted: the
    /// writeback fails at once, as it would on a machine without power.
    fn hold_mounts(&self, leader: i32) {
        let ns = fs::File::open(format!("/proc/{leader}/ns/mnt")).ok();
        *self.mounts.lock().unwrap_or_else(PoisonError::into_inner) = ns;
    }

    /// The state now (also after a thread panicked holding it: the state
    /// itself is always whole).
    pub fn state(&self) -> Power {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Power> {
        self.power.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, power: Power) {
        *self.lock() = power;
        if power == Power::Off {
            let held = self
                .mounts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            drop(held);
        }
    }

    /// Cuts the power: SIGKILL to the container's init takes every process
    /// of the node down at once, and its network interfaces go dark, as a
    /// machine's do when the power goes. Returns once the node is off
    /// (nspawn's zombie is left for the Node owning it to reap), or false
    /// if that did not happen in time. A node still booting is cut once
    /// its init is known; one off already is off.
    pub fn cut(&self) -> bool {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let nspawn = loop {
            let mut power = self.lock();
            match *power {
                Power::Off => return true,
                Power::On { nspawn, leader } => {
                    *power = Power::Dying { nspawn };
                    let _ = kill(Pid::from_raw(leader), Signal::SIGKILL);
                    break nspawn;
                }
                Power::Booting { .. } | Power::Dying { .. } => {}
            }
            drop(power);
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let deadline = Instant::now() + POWER_OFF_TIMEOUT;
        while !exited(nspawn) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        crate::net::dark(&self.ns);
        self.set(Power::Off);
        true
    }
}

/// Whether process `pid` (a child of this process) has exited: gone, or
/// a zombie waiting to be reaped.
fn exited(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

pub struct Node {
    pub name: String,
    pub ns: String,
    dir: PathBuf,
    nspawn: Option<Child>,
    outlet: Outlet,
    /// Interfaces whose cable `set_link` pulled: they stay down at boot.
    unplugged: Mutex<BTreeSet<String>>,
    /// `--bind=` arguments for nspawn beside the disks (the PDU's socket).
    binds: Vec<String>,
    loopdev: Option<String>,
    /// nbdfuse serving sdb.img through nbdkit's error filter.
    disk_server: Option<Child>,
    /// Free loop devices bound in for the node's own use (the export).
    spare_loops: Vec<String>,
    mounted: bool,
    /// Its own cgroups (lab/src/cgroup.rs).
    cgroup: crate::cgroup::NodeCgroup,
}

impl Node {
    /// Prepares the overlay and the disk; does not boot.
    pub fn prepare(name: &str, ns: &str, lab_dir: &Path, rootfs: &Path) -> Node {
        let dir = lab_dir.join(name);
        for sub in ["upper", "work", "root"] {
            fs::create_dir_all(dir.join(sub)).expect("node dirs");
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            rootfs.display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        succeed(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(dir.join("root")),
        );
        let (disk_server, disk) = serve_disk(&dir);
        // The disk's loop device is reserved like the spares: a host-side
        // `losetup --find` could take a spare another lab reserved.
        let mut spare_loops = crate::loops::reserve(lab_dir, SPARE_LOOPS + 1);
        let loopdev = spare_loops.remove(0);
        succeed(
            Command::new("losetup")
                .args(["--direct-io=on", &loopdev])
                .arg(&disk),
        );
        Node {
            name: name.to_string(),
            ns: ns.to_string(),
            dir,
            nspawn: None,
            outlet: Outlet::new(ns),
            unplugged: Mutex::new(BTreeSet::new()),
            binds: Vec::new(),
            loopdev: Some(loopdev),
            disk_server: Some(disk_server),
            spare_loops,
            mounted: true,
            cgroup: crate::cgroup::NodeCgroup::new(&format!(
                "{}-{name}",
                lab_dir.file_name().unwrap_or_default().to_string_lossy()
            )),
        }
    }

    /// Makes every read and write of the node's /dev/sdb fail with EIO
    /// (`true`), or work again (`false`), as a dying disk would.
    pub fn set_disk_failing(&self, failing: bool) {
        let trigger = self.dir.join("sdb.fail");
        if failing {
            fs::write(&trigger, b"").expect("arm the disk error");
        } else {
            let _ = fs::remove_file(&trigger);
        }
    }

    /// The node's root as seen from the host (the merged overlay).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Writes a file into the node's filesystem (before or after boot).
    pub fn write_file(&self, path: &str, content: &[u8], mode: u32) {
        let target = self.root().join(path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).expect("dirs in node");
        }
        fs::write(&target, content).unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).expect("chmod in node");
    }

    pub fn is_running(&self) -> bool {
        self.leader().is_some()
    }

    /// The container's init while the node runs.
    pub fn leader(&self) -> Option<i32> {
        match self.outlet.state() {
            Power::On { leader, .. } => Some(leader),
            _ => None,
        }
    }

    /// The node's power, for the PDU.
    pub fn outlet(&self) -> Outlet {
        self.outlet.clone()
    }

    /// The node's number in the lab's addresses (node2: 2).
    fn number(&self) -> usize {
        self.name.trim_start_matches("node").parse().unwrap_or(0)
    }

    /// Plugs or pulls the cable of `ifname`. A node without power keeps
    /// its interfaces down; the plug counts from its next boot.
    pub fn set_link(&self, ifname: &str, up: bool) {
        {
            let mut unplugged = self
                .unplugged
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if up {
                unplugged.remove(ifname);
            } else {
                unplugged.insert(ifname.to_string());
            }
        }
        if !up {
            crate::cmd::ip(&["-n", &self.ns, "link", "set", ifname, "down"]);
        } else if self.outlet.state() != Power::Off {
            crate::net::light(&self.ns, self.number(), ifname);
        }
    }

    /// Binds `host` into the container at `inside` from the next boot on.
    pub fn add_bind(&mut self, host: &Path, inside: &str) {
        self.binds
            .push(format!("--bind={}:{inside}", host.display()));
    }

    /// Boots the container and waits until systemd has finished starting
    /// (running, or degraded if some unit failed: the test looks at that).
    pub fn boot(&mut self) {
        if let Err(e) = self.try_boot() {
            panic!("{e}");
        }
    }

    /// As `boot`, but a node that does not come up (or is powered off by
    /// the PDU while booting) is an error, not a panic.
    pub fn try_boot(&mut self) -> Result<(), String> {
        // Powered off by the PDU: nspawn has exited (or is about to) and
        // waits to be reaped.
        if matches!(self.outlet.state(), Power::Dying { .. }) {
            self.crash();
        }
        if self.outlet.state() == Power::Off {
            self.reap(POWER_OFF_TIMEOUT);
        }
        assert!(self.nspawn.is_none(), "{} is already booted", self.name);
        // A machine boots with no loop device set up; a container's are
        // the host kernel's and outlive it. Detached here, or each crash
        // of a node exporting its replica leaks one (its nbdfuse died
        // under it) until the node has none left.
        for dev in &self.spare_loops {
            crate::loops::detach(dev);
        }
        let unplugged = self
            .unplugged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for ifname in ["eth0", "eth1"] {
            if !unplugged.contains(ifname) {
                crate::net::light(&self.ns, self.number(), ifname);
            }
        }
        let console = fs::File::create(self.dir.join("console.log")).expect("console log");
        self.cgroup.next_boot();
        let cgroups = self.cgroup.dirs().len();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "{}shift {cgroups}; exec systemd-nspawn \"$@\"",
                self.cgroup.enter_script(1)
            ))
            .arg("sh")
            .args(self.cgroup.dirs())
            .arg("-D")
            .arg(self.root())
            .args(["--boot", "--register=no", "--keep-unit", "--console=pipe"])
            .arg(format!("--machine={}", self.name))
            .arg(format!("--hostname={}", self.name))
            .arg(format!("--network-namespace-path=/run/netns/{}", self.ns))
            // The node's own namespace: its duetd puts floating addresses
            // on its interfaces, which nspawn allows only with this.
            .arg("--capability=CAP_NET_ADMIN")
            .arg("--bind=/dev/fuse")
            .arg("--bind=/dev/loop-control");
        if let Some(dev) = &self.loopdev {
            cmd.arg(format!("--bind={dev}:/dev/sdb"))
                .arg(format!("--property=DeviceAllow={dev} rwm"));
        }
        for dev in &self.spare_loops {
            cmd.arg(format!("--bind={dev}"));
        }
        cmd.args(&self.binds);
        cmd.stdin(Stdio::null())
            .stdout(console.try_clone().expect("log"))
            .stderr(console);
        let child = cmd
            .spawn()
            .expect("systemd-nspawn (package systemd-container)");
        let nspawn = child.id();
        self.nspawn = Some(child);
        self.outlet.set(Power::Booting { nspawn });
        let Some(leader) = poll_until(BOOT_TIMEOUT, || container_init(nspawn)) else {
            self.crash();
            return Err(format!(
                "{} did not start its init within {BOOT_TIMEOUT:?}",
                self.name
            ));
        };
        {
            let mut power = self.outlet.lock();
            if *power != (Power::Booting { nspawn }) {
                return Err(format!("{} was powered off while booting", self.name));
            }
            *power = Power::On { nspawn, leader };
        }
        self.outlet.hold_mounts(leader);
        let booted = poll_until(BOOT_TIMEOUT, || {
            let out = self.try_exec(&["systemctl", "is-system-running"])?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            matches!(state.as_str(), "running" | "degraded").then_some(())
        });
        match booted {
            Some(()) => Ok(()),
            None if !self.is_running() => {
                Err(format!("{} was powered off while booting", self.name))
            }
            None => Err(format!(
                "{} did not finish booting within {BOOT_TIMEOUT:?}",
                self.name
            )),
        }
    }

    /// Runs a command inside the node; returns its output whatever it says.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.try_exec(args)
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    /// As `exec`, or None when the node is not running (it may have been
    /// powered off by the PDU at any moment).
    pub fn try_exec(&self, args: &[&str]) -> Option<Output> {
        let leader = self.leader()?;
        Some(output(
            enter(leader)
                .args([
                    "env",
                    "-i",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                ])
                .args(args),
        ))
    }

    /// A crash: SIGKILL to the container's init takes every process of the
    /// node down at once, as pulling the power would.
    pub fn crash(&mut self) {
        if matches!(self.outlet.state(), Power::Booting { .. }) {
            // Its init is not known: nspawn itself goes, and the
            // container with it (its init is nspawn's child here).
            if let Some(child) = self.nspawn.as_mut() {
                let _ = child.kill();
            }
            self.outlet.set(Power::Off);
        }
        if !self.outlet.cut() {
            // nspawn outlived its container's init: it goes by force.
            self.reap(Duration::ZERO);
            crate::net::dark(&self.ns);
            self.outlet.set(Power::Off);
        }
        self.reap(POWER_OFF_TIMEOUT);
    }

    /// A clean shutdown: SIGTERM to nspawn halts the container. Returns
    /// whether it halted within `HALT_TIMEOUT`; if not, the node is
    /// crashed instead, so nothing of it outlives the lab.
    pub fn shutdown(&mut self) -> bool {
        if self.outlet.state() != (Power::Off) && !self.is_running() {
            // Booting or dying: nothing to halt cleanly.
            self.crash();
            return true;
        }
        let Some(child) = self.nspawn.as_mut() else {
            self.outlet.set(Power::Off);
            return true;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        if wait_exit(child, HALT_TIMEOUT) {
            self.nspawn = None;
            crate::net::dark(&self.ns);
            self.outlet.set(Power::Off);
            return true;
        }
        // Killing nspawn alone would leave the container running (its init
        // re-parented to the host's) with its mounts and loop devices, so
        // the lab could not remove them: its init goes, and every process
        // of the node with it.
        eprintln!(
            "lab: {} did not halt within {HALT_TIMEOUT:?}; crashing it",
            self.name
        );
        eprintln!("{}", self.state_report());
        eprintln!("{}", self.stored_journal(40));
        self.crash();
        false
    }

    fn reap(&mut self, timeout: Duration) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        if !wait_exit(&mut child, timeout) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn console_log(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// What a hang leaves behind on the running node, short enough to be
    /// read before its journal: duet's status, systemd's jobs, the mounts
    /// of the replicated filesystem, and each process stuck in the kernel
    /// (state D) with its kernel stack. Empty when it is not running.
    pub fn state_report(&self) -> String {
        self.try_exec(&["sh", "-c", STATE_REPORT])
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` of the journal a node keeps on its disk, read from
    /// the host (so also while the node is down, after a crash say).
    pub fn stored_journal(&self, lines: usize) -> String {
        let dir = self.root().join("var/log/journal");
        let out = crate::cmd::output(Command::new("journalctl").arg("-D").arg(&dir).args([
            "--no-pager",
            "-o",
            "short-monotonic",
            "-n",
            &lines.to_string(),
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the node and removes its overlay and disk.
    pub fn destroy(&mut self) {
        self.shutdown();
        self.cgroup.remove();
        if self.mounted {
            quietly(Command::new("umount").arg(self.root()));
            self.mounted = false;
        }
        if let Some(dev) = self.loopdev.take() {
            crate::loops::detach(&dev);
        }
        for dev in self.spare_loops.drain(..) {
            crate::loops::detach(&dev);
        }
        if let Some(mut server) = self.disk_server.take() {
            quietly(
                Command::new("fusermount3")
                    .arg("-u")
                    .arg(self.dir.join("sdb-fuse")),
            );
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// `Node::state_report`.
const STATE_REPORT: &str = "duetctl status 2>&1; systemctl list-jobs --no-pager 2>&1 | grep -E 'JOB|duet|mnt|apache|halt.target'; findmnt -rn -o TARGET,SOURCE,FSTYPE /mnt/shared; \
    losetup -a 2>/dev/null; \
    for p in /proc/[0-9]*; do \
      grep -q '^State:[[:space:]]*D' $p/status 2>/dev/null || continue; \
      echo \"stuck: ${p#/proc/} $(tr '\\0' ' ' < $p/cmdline)\"; cat $p/stack 2>/dev/null | head -12; \
    done";

/// Polls `probe` every 20 ms until it returns Some, or None after
/// `timeout`.
fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `child` exits within `timeout` (polled).
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The node's second disk: a sparse file served by nbdkit (with its error
/// filter, armed by the file `sdb.fail`) and shown as a plain file by
/// nbdfuse, for a loop device to sit on. Returns nbdfuse and the file.
fn serve_disk(dir: &Path) -> (Child, PathBuf) {
    let image = dir.join("sdb.img");
    succeed(Command::new("truncate").args(["-s", SDB_SIZE]).arg(&image));
    let mountpoint = dir.join("sdb-fuse");
    fs::create_dir_all(&mountpoint).expect("fuse mountpoint");
    let pidfile = dir.join("nbdfuse.pid");
    let child = Command::new("nbdfuse")
        .arg("-P")
        .arg(&pidfile)
        .arg(mountpoint.join("sdb"))
        .args(["--command", "nbdkit", "-s", "--filter=error", "file"])
        .arg(&image)
        .arg("error-rate=100%")
        .arg(format!("error-file={}", dir.join("sdb.fail").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("nbdfuse.log")).expect("nbdfuse log"))
        .spawn()
        .expect("nbdfuse (package libnbd-bin) and nbdkit");
    wait_until(
        Duration::from_secs(10),
        "nbdfuse to serve /dev/sdb's file",
        || pidfile.exists().then_some(()),
    );
    (child, mountpoint.join("sdb"))
}

/// A command that runs inside the container whose init is `leader`: its
/// mount, UTS, IPC, network, PID and cgroup namespaces.
pub fn enter(leader: i32) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args([
        "-t",
        &leader.to_string(),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "-C",
    ]);
    cmd
}

/// The init of a running lab container named `machine`, if any.
pub fn find_running(machine: &str) -> Option<i32> {
    let arg = format!("--machine={machine}");
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let cmdline = fs::read(e.path().join("cmdline")).ok()?;
        let is_lab_node = cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes())
            && cmdline.starts_with(b"systemd-nspawn");
        let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
        if is_lab_node {
            container_init(pid)
        } else {
            None
        }
    })
}

/// The container's PID 1: the child of nspawn whose name is systemd.
fn container_init(nspawn: u32) -> Option<i32> {
    let children = fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "systemd")
        })
}
