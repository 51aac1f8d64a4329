//! The ocf resource kind's runner against real agents: resource-agents'
//! ocf:heartbeat:Dummy (a state file) and ocf:heartbeat:IPaddr2 (an
//! address, in a network namespace the test makes), and small fake agents
//! in an OCF root of the test's own for what real agents rarely do (fail,
//! hang, leave a daemon holding their output). The IPaddr2 test needs root
//! and resource-agents (scripts/install-deps.sh installs it).

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use duet::config::OcfAgent;
use duet::daemon::agents::{Op, ocf};
use duet::host::ocf::{AgentName, DEFAULT_ROOT};

const WAIT: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(20);

/// A folder of the test's own, removed when dropped (also on a panic).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("duet-ocf-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn agent(root: &Path, name: &str, instance: &str, params: &[(&str, &str)]) -> OcfAgent {
    let (provider, kind) = name.split_once(':').expect("provider:type");
    OcfAgent {
        agent: AgentName {
            provider: provider.to_string(),
            kind: kind.to_string(),
        },
        instance: instance.to_string(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        root: root.to_path_buf(),
        monitor_interval: Duration::from_secs(5),
    }
}

/// resource-agents' root, which must have `kind`.
fn installed(kind: &str) -> PathBuf {
    let root = PathBuf::from(DEFAULT_ROOT);
    let path = root.join("resource.d/heartbeat").join(kind);
    assert!(
        path.is_file(),
        "{} is missing: install resource-agents (scripts/install-deps.sh)",
        path.display()
    );
    root
}

/// An OCF root with a `test:NAME` agent running `body` as sh.
fn fake(dir: &TempDir, name: &str, body: &str) {
    let provider = dir.0.join("resource.d/test");
    std::fs::create_dir_all(&provider).expect("provider folder");
    let path = provider.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("agent");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Polls `check` every 20 ms until it holds or WAIT has passed.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie counts as gone: killed, and waiting for a parent that is
    // not the test to reap it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

/// Pids read from a file, killed when dropped, so nothing a failed test
/// started outlives it.
struct Pids(PathBuf);

impl Pids {
    fn read(&self) -> Vec<i32> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Pids {
    fn drop(&mut self) {
        for pid in self.read() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn dummy_starts_is_monitored_and_stops_with_its_state_file() {
    let root = installed("Dummy");
    let dir = TempDir::new("dummy");
    let state = dir.0.join("dummy.state");
    let state_text = state.display().to_string();
    let dummy = agent(
        &root,
        "heartbeat:Dummy",
        "test-Dummy",
        &[("state", &state_text)],
    );
    let rt = rt();
    let run = |op| rt.block_on(ocf::run(&dummy, op, TIMEOUT));
    // Never started: a monitor says so (with the agent's exit reason), a
    // stop has nothing to do.
    let not_running =
        Err("not running (exit 7, OCF_NOT_RUNNING): No process state file found".to_string());
    assert_eq!(run(Op::Monitor), not_running);
    assert_eq!(run(Op::Stop), Ok(()));
    assert_eq!(run(Op::Start), Ok(()));
    assert!(state.exists(), "no state file after the start");
    assert_eq!(run(Op::Monitor), Ok(()));
    // Started twice: still fine (the group core may start again).
    assert_eq!(run(Op::Start), Ok(()));
    assert_eq!(run(Op::Stop), Ok(()));
    assert!(!state.exists(), "the state file outlived the stop");
    assert_eq!(run(Op::Monitor), not_running);
    assert_eq!(run(Op::Stop), Ok(()));
}

#[test]
fn a_missing_agent_says_where_it_was_looked_for() {
    let dir = TempDir::new("missing");
    let nope = agent(&dir.0, "test:Nope", "test-Nope", &[]);
    let err = rt().block_on(ocf::run(&nope, Op::Start, TIMEOUT));
    assert_eq!(
        err,
        Err(format!(
            "ocf:test:Nope is not installed on this node (no {}/resource.d/test/Nope; the \
             heartbeat agents are in the resource-agents package)",
            dir.0.display()
        ))
    );
}

#[test]
fn a_failing_agent_gives_the_code_its_name_and_its_last_words() {
    let dir = TempDir::new("failing");
    fake(
        &dir,
        "Failing",
        "case \"$1\" in\n\
         start) echo 'starting' ; echo \"cannot bind $OCF_RESKEY_port: in use\" >&2; exit 1 ;;\n\
         monitor) echo 'apache is not installed' ; exit 5 ;;\n\
         stop) echo 'ocf-exit-reason:port must be a number' >&2; echo 'more noise' >&2; exit 6 ;;\n\
         esac",
    );
    let failing = agent(&dir.0, "test:Failing", "web-Failing", &[("port", "80")]);
    let rt = rt();
    assert_eq!(
        rt.block_on(ocf::run(&failing, Op::Start, TIMEOUT)),
        Err("failed (exit 1, OCF_ERR_GENERIC): cannot bind 80: in use".to_string())
    );
    // Nothing on stderr: stdout's last words.
    assert_eq!(
        rt.block_on(ocf::run(&failing, Op::Monitor, TIMEOUT)),
        Err(
            "not installed: something it needs is missing on this node (exit 5, \
             OCF_ERR_INSTALLED): apache is not installed"
                .to_string()
        )
    );
    assert_eq!(
        rt.block_on(ocf::run(&failing, Op::Stop, TIMEOUT)),
        Err(
            "not configured: its parameters are wrong (exit 6, OCF_ERR_CONFIGURED): port must \
             be a number"
                .to_string()
        )
    );
}

#[test]
fn the_agent_is_told_its_action_resource_parameters_and_limits() {
    let dir = TempDir::new("env");
    let out = dir.0.join("env");
    fake(
        &dir,
        "Env",
        &format!(
            "{{ echo \"action=$1\"; env | grep '^OCF_' | sort; }} > '{}'\nexit 0",
            out.display()
        ),
    );
    let env = agent(
        &dir.0,
        "test:Env",
        "web-Env",
        &[("ip", "198.51.100.10"), ("cidr_netmask", "24")],
    );
    rt().block_on(ocf::run(&env, Op::Monitor, Duration::from_millis(15_500)))
        .expect("monitor");
    let got = std::fs::read_to_string(&out).expect("the agent's record");
    let root = dir.0.display();
    let want = format!(
        "action=monitor\n\
         OCF_FUNCTIONS_DIR={root}/lib/heartbeat\n\
         OCF_RA_VERSION_MAJOR=1\n\
         OCF_RA_VERSION_MINOR=0\n\
         OCF_RESKEY_CRM_meta_interval=5000\n\
         OCF_RESKEY_CRM_meta_timeout=15500\n\
         OCF_RESKEY_cidr_netmask=24\n\
         OCF_RESKEY_ip=198.51.100.10\n\
         OCF_RESOURCE_INSTANCE=web-Env\n\
         OCF_RESOURCE_PROVIDER=test\n\
         OCF_RESOURCE_TYPE=Env\n\
         OCF_ROOT={root}\n"
    );
    assert_eq!(got, want);
    // A start is no probe and no recurring check: no interval.
    rt().block_on(ocf::run(&env, Op::Start, TIMEOUT))
        .expect("start");
    let got = std::fs::read_to_string(&out).expect("the agent's record");
    assert!(got.starts_with("action=start\n"), "{got}");
    assert!(!got.contains("CRM_meta_interval"), "{got}");
    assert!(got.contains("OCF_RESKEY_CRM_meta_timeout=20000\n"), "{got}");
}

#[test]
fn a_daemon_holding_the_agents_output_does_not_hold_the_operation() {
    let dir = TempDir::new("daemon");
    let pids = Pids(dir.0.join("pids"));
    // Starts a "daemon" that keeps stdout and stderr open, as an agent
    // that forgets to redirect its service's output does.
    fake(
        &dir,
        "Daemon",
        &format!(
            "sleep 60 &\necho $! >> '{}'\necho started\nexit 0",
            pids.0.display()
        ),
    );
    let daemon = agent(&dir.0, "test:Daemon", "t-Daemon", &[]);
    let begun = Instant::now();
    let done = rt().block_on(ocf::run(&daemon, Op::Start, TIMEOUT));
    assert_eq!(done, Ok(()));
    assert!(
        begun.elapsed() < Duration::from_secs(3),
        "the start waited {:?} for the daemon's output",
        begun.elapsed()
    );
    // A successful start leaves what it started running.
    let started = pids.read();
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        alive(started[0]),
        "the daemon was killed after a good start"
    );
}

#[test]
fn an_operation_given_up_kills_the_agent_and_what_it_started() {
    let dir = TempDir::new("hang");
    let pids = Pids(dir.0.join("pids"));
    fake(
        &dir,
        "Hang",
        &format!(
            "sleep 60 &\necho $! >> '{p}'\necho $$ >> '{p}'\nwait",
            p = pids.0.display()
        ),
    );
    let hang = agent(&dir.0, "test:Hang", "t-Hang", &[]);
    let rt = rt();
    let limit = Duration::from_millis(500);
    let outcome =
        rt.block_on(async { tokio::time::timeout(limit, ocf::run(&hang, Op::Start, limit)).await });
    assert!(outcome.is_err(), "the hanging start ended: {outcome:?}");
    let started = pids.read();
    assert_eq!(started.len(), 2, "{started:?}");
    // The runtime reaps the agent; its child is init's to reap.
    for pid in started {
        wait_for(&format!("pid {pid} to be killed"), || !alive(pid));
    }
}

// --- IPaddr2 in a network namespace ---------------------------------

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace with a veth pair eth0 <-> peer0 up and
/// 198.51.100.1/24 on eth0; deleted when dropped (its links with it).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn netns() -> Netns {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a network namespace)"
    );
    let ns = Netns(format!("duet-ocf-{}", std::process::id()));
    let name = ns.0.as_str();
    ip(&["netns", "add", name]);
    ip(&["-n", name, "link", "set", "lo", "up"]);
    ip(&[
        "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
    ]);
    ip(&["-n", name, "addr", "add", "198.51.100.1/24", "dev", "eth0"]);
    for link in ["eth0", "peer0"] {
        ip(&["-n", name, "link", "set", link, "up"]);
    }
    ns
}

/// Runs `f` on a thread of its own inside namespace `ns`; what it spawns
/// (the agent, and `ip` under it) is in the namespace too.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let netns = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns on a descriptor we own; it changes only this thread.
        let r = unsafe {
            nix::libc::setns(
                std::os::fd::AsRawFd::as_raw_fd(&netns),
                nix::libc::CLONE_NEWNET,
            )
        };
        assert_eq!(r, 0, "setns {path}: {}", io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the namespace thread")
}

#[test]
fn ipaddr2_adds_and_removes_an_address_in_a_namespace() {
    let root = installed("IPaddr2");
    let ns = netns();
    let ipaddr2 = agent(
        &root,
        "heartbeat:IPaddr2",
        &format!("duet-test-{}-IPaddr2", std::process::id()),
        &[
            ("ip", "198.51.100.10"),
            ("cidr_netmask", "24"),
            ("nic", "eth0"),
        ],
    );
    let run = |op: Op| {
        let a = ipaddr2.clone();
        in_netns(&ns.0, move || rt().block_on(ocf::run(&a, op, TIMEOUT)))
    };
    let addresses = || ip(&["-n", &ns.0, "-o", "addr", "show", "dev", "eth0"]);
    let not_running = |r: Result<(), String>| r.is_err_and(|e| e.contains("OCF_NOT_RUNNING"));
    let monitor = run(Op::Monitor);
    assert!(not_running(monitor.clone()), "{monitor:?}");
    assert_eq!(run(Op::Start), Ok(()));
    let shown = addresses();
    assert!(shown.contains("inet 198.51.100.10/24 "), "{shown}");
    assert_eq!(run(Op::Monitor), Ok(()));
    assert_eq!(run(Op::Stop), Ok(()));
    let shown = addresses();
    assert!(!shown.contains("198.51.100.10/"), "{shown}");
    assert!(shown.contains("inet 198.51.100.1/24 "), "{shown}");
    let monitor = run(Op::Monitor);
    assert!(not_running(monitor.clone()), "{monitor:?}");
    // Stopped already: a stop succeeds.
    assert_eq!(run(Op::Stop), Ok(()));
}

// --- duetctl --------------------------------------------------------

fn duetctl(args: &[&str], ocf_root: Option<&Path>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_duetctl"));
    cmd.args(args);
    match ocf_root {
        Some(root) => cmd.env("OCF_ROOT", root),
        None => cmd.env_remove("OCF_ROOT"),
    };
    let out = cmd.output().expect("run duetctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The two-node example with a group `mail` of one IPaddr2 resource
/// whose params are `params`, and the line they are on.
fn config_with_ipaddr2(dir: &TempDir, params: &str) -> (PathBuf, usize) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-node.toml");
    let mut text = std::fs::read_to_string(example).expect("the example");
    text.push_str(&format!(
        "\n[[group]]\nname = \"mail\"\npreferred = \"node2\"\n\n\
         [[group.resource]]\nocf = \"ocf:heartbeat:IPaddr2\"\nparams = {{ {params} }}\n"
    ));
    let line = text.lines().count();
    let path = dir.0.join("duet.toml");
    std::fs::write(&path, text).expect("write the config");
    (path, line)
}

#[test]
fn check_config_reads_the_installed_agents_meta_data() {
    let root = installed("IPaddr2");
    let dir = TempDir::new("check");
    let good = "ip = \"198.51.100.20\", cidr_netmask = \"24\", nic = \"eth0\"";
    let (path, _) = config_with_ipaddr2(&dir, good);
    let path_text = path.display().to_string();
    let (code, out, err) = duetctl(&["check-config", &path_text], Some(&root));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("2 group(s)"), "{out}");
    assert!(!err.contains("warning"), "{err}");
    // A misspelt parameter: placed, named, and the right one suggested.
    let typo = "ip = \"198.51.100.20\", cidr_netmsk = \"24\"";
    let (path, line) = config_with_ipaddr2(&dir, typo);
    let (code, out, err) = duetctl(&["check-config", &path_text], Some(&root));
    assert_eq!(code, Some(1), "{out}{err}");
    let want = format!(
        "{}:{line}:34: group[1].resource[0].params.cidr_netmsk: ocf:heartbeat:IPaddr2 has \
         no parameter \"cidr_netmsk\" (valid: \"cidr_netmask\"? The parameters of \
         ocf:heartbeat:IPaddr2: \"ip\"",
        path.display()
    );
    assert!(
        out.contains(&want) || err.contains(&want),
        "{want}\nnot in:\n{out}{err}"
    );
    // Checked where the agent is not installed: a warning, still valid.
    let elsewhere = TempDir::new("check-elsewhere");
    let (code, out, err) = duetctl(&["check-config", &path_text], Some(&elsewhere.0));
    assert_eq!(code, Some(0), "{out}{err}");
    let want = format!(
        "group[1].resource[0].ocf: ocf:heartbeat:IPaddr2 is not installed on this machine \
         (no {}/resource.d/heartbeat/IPaddr2)",
        elsewhere.0.display()
    );
    assert!(err.contains("warning: ") && err.contains(&want), "{err}");
}

#[test]
fn resource_op_runs_an_ocf_agent_by_hand() {
    let root = installed("Dummy");
    let dir = TempDir::new("resource-op");
    let state = format!("state={}", dir.0.join("dummy.state").display());
    let op = |op: &str| {
        duetctl(
            &[
                "resource-op",
                "ocf",
                "heartbeat:Dummy",
                "--param",
                &state,
                op,
            ],
            Some(&root),
        )
    };
    let (code, out, err) = op("start");
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "ocf heartbeat:Dummy: started\n"),
        "{err}"
    );
    assert!(dir.0.join("dummy.state").exists());
    assert_eq!(op("monitor").1, "ocf heartbeat:Dummy: running\n");
    assert_eq!(op("stop").1, "ocf heartbeat:Dummy: stopped\n");
    // A one-off monitor is a probe (interval 0): Dummy finds nothing
    // running without calling it a failure, so it gives no exit reason.
    let (code, _, err) = op("monitor");
    assert_eq!(
        (code, err.as_str()),
        (
            Some(1),
            "duetctl: ocf heartbeat:Dummy: monitor: not running (exit 7, OCF_NOT_RUNNING)\n"
        )
    );
    // Under another root there is no such agent.
    let (code, _, err) = duetctl(
        &["resource-op", "ocf", "heartbeat:Dummy", "start"],
        Some(&dir.0),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("ocf:heartbeat:Dummy is not installed on this node"),
        "{err}"
    );
}
