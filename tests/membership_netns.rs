//! Real duetd processes in network namespaces: membership over real UDP
//! sockets, real D-Bus, real interface events. Needs root.

mod netns;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use netns::{Lab, config, link_of, state_of, wait_until};

const KEEPALIVE: Duration = Duration::from_millis(200);
const DEADTIME: Duration = Duration::from_secs(1);
const INITDEAD: Duration = Duration::from_secs(4);
/// Polls run every 20 ms and duetctl takes a few ms itself.
const POLL_MARGIN: Duration = Duration::from_millis(100);

fn two_nodes() -> Lab {
    let mut lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    lab.start("node1");
    lab.start("node2");
    lab
}

/// Waits until `observer` sees `peer` up on every link and is quorate.
fn wait_all_up(lab: &Lab, observer: &str, peer: &str) {
    let what = format!("{observer} to see {peer} up on both links, quorate");
    lab.wait_status(observer, INITDEAD, &what, |s| {
        state_of(s, peer).as_deref() == Some("up")
            && link_of(s, peer, "crossover").as_deref() == Some("up")
            && link_of(s, peer, "public").as_deref() == Some("up")
            && s["quorate"] == true
    });
}

fn incarnation(lab: &Lab, observer: &str, peer: &str) -> u64 {
    let s = lab.status(observer).expect("status");
    netns::node_of(&s, peer).expect("node")["incarnation"]
        .as_u64()
        .expect("incarnation")
}

#[test]
fn lab_two_nodes_see_each_other_and_a_crash_within_deadtime() {
    let mut lab = two_nodes();
    wait_all_up(&lab, "node1", "node2");
    wait_all_up(&lab, "node2", "node1");
    let first = incarnation(&lab, "node1", "node2");

    // From the moment SIGKILL is sent to the first poll that shows dead.
    let killed = Instant::now();
    lab.kill("node2");
    let (s, _) = lab.wait_status("node1", DEADTIME * 3, "node1 to see node2 dead", |s| {
        state_of(s, "node2").as_deref() == Some("dead")
    });
    let detect = killed.elapsed();
    println!(
        "crash detected in {} ms (deadtime {} ms, keepalive {} ms)",
        detect.as_millis(),
        DEADTIME.as_millis(),
        KEEPALIVE.as_millis()
    );
    assert!(
        detect <= DEADTIME + KEEPALIVE + POLL_MARGIN,
        "detection took {detect:?}, more than deadtime + keepalive + {POLL_MARGIN:?}"
    );
    assert_eq!(link_of(&s, "node2", "crossover").as_deref(), Some("down"));
    // One of two votes is no majority. Waited for rather than read from the
    // same snapshot: duetctl reads the cluster object and the node objects
    // in separate calls, so one status can pair the new "dead" with the old
    // Quorate (seen here); the next poll must show it.
    lab.wait_status("node1", KEEPALIVE, "node1 to lose quorum", |s| {
        s["quorate"] == false
    });

    lab.start("node2");
    wait_all_up(&lab, "node1", "node2");
    let second = incarnation(&lab, "node1", "node2");
    assert!(second > first, "restart not seen as a new incarnation");
    assert!(lab.log("node1").contains("node2 restarted"));
}

#[test]
fn lab_a_node_with_the_wrong_key_never_joins() {
    let mut lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    lab.keygen("other.key");
    let wrong = lab.write("wrong.toml", &config(2, "ucast", "ucast", "other.key"));
    lab.start("node1");
    lab.start_with("node2", &wrong, &[]);
    lab.wait_status("node1", INITDEAD, "node1 to answer", |_| true);
    // Every poll over the whole window must show node2 not up.
    let window = Instant::now();
    let mut polls = 0;
    while window.elapsed() < DEADTIME * 3 {
        let s = lab.status("node1").expect("node1 answers");
        assert_ne!(
            state_of(&s, "node2").as_deref(),
            Some("up"),
            "joined with the wrong key: {s}"
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(polls > 10);
    let s = lab.status("node1").expect("status");
    let dropped = s["dropped"]["bad-signature"].as_u64().unwrap_or(0);
    assert!(dropped > 0, "bad signatures not counted: {s}");
    assert!(
        lab.log("node1").contains("bad signature"),
        "no log line says why: {}",
        lab.log("node1")
    );
}

#[test]
fn lab_a_cut_link_is_reported_while_the_peer_stays_up() {
    let lab = two_nodes();
    wait_all_up(&lab, "node1", "node2");
    lab.exec("node2", &["ip", "link", "set", "eth1", "down"]);
    lab.wait_status(
        "node1",
        DEADTIME * 2,
        "node1 to report node2's crossover down",
        |s| link_of(s, "node2", "crossover").as_deref() == Some("down"),
    );
    // The peer stays up over the public link for several deadtimes.
    let watch = Instant::now();
    while watch.elapsed() < DEADTIME * 2 {
        let s = lab.status("node1").expect("status");
        assert_eq!(state_of(&s, "node2").as_deref(), Some("up"), "{s}");
        assert_eq!(link_of(&s, "node2", "public").as_deref(), Some("up"));
        assert_eq!(s["quorate"], true);
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.exec("node2", &["ip", "link", "set", "eth1", "up"]);
    // Back on both links (wait_all_up checks crossover and public).
    wait_all_up(&lab, "node1", "node2");
}

#[test]
fn lab_dbus_tree_properties_and_change_signals() {
    let mut lab = two_nodes();
    wait_all_up(&lab, "node1", "node2");
    let address = format!("--address={}", lab.node("node1").bus);
    let tree = Command::new("busctl")
        .args([&address, "tree", "org.duet.Duet1"])
        .output()
        .expect("busctl");
    let tree = String::from_utf8_lossy(&tree.stdout);
    for path in ["/org/duet/Duet1/node/node1", "/org/duet/Duet1/node/node2"] {
        assert!(tree.contains(path), "busctl tree lacks {path}: {tree}");
    }
    let get = |path: &str, iface: &str, prop: &str| {
        let out = Command::new("busctl")
            .args([
                &address,
                "get-property",
                "org.duet.Duet1",
                path,
                iface,
                prop,
            ])
            .output()
            .expect("busctl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let node2 = "/org/duet/Duet1/node/node2";
    assert_eq!(get(node2, "org.duet.Duet1.Node", "State"), "s \"up\"");
    assert_eq!(
        get("/org/duet/Duet1", "org.duet.Duet1.Cluster", "Quorate"),
        "b true"
    );
    assert_eq!(
        get("/org/duet/Duet1", "org.duet.Duet1.Cluster", "LocalNode"),
        "s \"node1\""
    );

    // A watcher sees the change as a signal, without polling: subscribe
    // (the match rule is in place when this returns), then crash node2.
    let conn = zbus::blocking::connection::Builder::address(lab.node("node1").bus.as_str())
        .and_then(|b| b.build())
        .expect("connect to node1's bus");
    let props = zbus::blocking::fdo::PropertiesProxy::builder(&conn)
        .destination("org.duet.Duet1")
        .and_then(|b| b.path(node2))
        .and_then(|b| b.build())
        .expect("properties proxy");
    let changes = props.receive_properties_changed().expect("subscribe");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for signal in changes {
            let Ok(args) = signal.args() else { continue };
            let state = args
                .changed_properties()
                .get("State")
                .and_then(|v| String::try_from(v.try_clone().ok()?).ok());
            if let Some(state) = state
                && tx.send(state).is_err()
            {
                return;
            }
        }
    });
    lab.kill("node2");
    let deadline = Instant::now() + DEADTIME * 3;
    let mut states = Vec::new();
    while !states.iter().any(|s| s == "dead") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(state) => states.push(state),
            Err(_) => panic!("no PropertiesChanged with State dead; saw {states:?}"),
        }
    }
    assert_eq!(states, ["late", "dead"], "State changes signalled in order");
}

#[test]
fn lab_systemd_readiness_status_and_watchdog() {
    let mut lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let socket_path = lab.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let config = lab.path("duet.toml");
    let notify = socket_path.display().to_string();
    lab.start_with(
        "node1",
        &config,
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "400000")],
    );
    let mut seen = String::new();
    wait_until(
        Duration::from_secs(5),
        "READY=1, STATUS= and WATCHDOG=1",
        || {
            let mut buf = [0u8; 4096];
            if let Ok(n) = socket.recv(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('\n');
            }
            (seen.contains("READY=1")
                && seen.contains("STATUS=1/2 nodes up, NOT quorate")
                && seen.contains("WATCHDOG=1"))
            .then_some(())
        },
    );
    // Readiness comes only once the bus name is taken.
    assert!(lab.status("node1").is_some());
}

#[test]
fn lab_three_nodes_over_broadcast_and_multicast_keep_quorum_by_majority() {
    let mut lab = Lab::nodes(3, &config(3, "bcast", "mcast", "duet.key"));
    for n in ["node1", "node2", "node3"] {
        lab.start(n);
    }
    lab.wait_status(
        "node1",
        INITDEAD,
        "node1 to see all three up on both links",
        |s| {
            let all = ["node2", "node3"].iter().all(|p| {
                state_of(s, p).as_deref() == Some("up")
                    && link_of(s, p, "crossover").as_deref() == Some("up")
                    && link_of(s, p, "public").as_deref() == Some("up")
            });
            all && s["quorate"] == true
        },
    );
    lab.kill("node3");
    lab.wait_status(
        "node1",
        DEADTIME * 3,
        "node1 to see node3 dead, still quorate",
        |s| state_of(s, "node3").as_deref() == Some("dead") && s["quorate"] == true,
    );
    lab.kill("node2");
    lab.wait_status("node1", DEADTIME * 3, "node1 alone to lose quorum", |s| {
        state_of(s, "node2").as_deref() == Some("dead") && s["quorate"] == false
    });
}

#[test]
fn lab_duetctl_says_clearly_when_no_daemon_runs() {
    let lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let out = lab.duetctl("node1", &["status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("duetd is not running"), "{err}");
    let mut nobus = Command::new(netns::DUETCTL);
    nobus
        .args(["status", "--json"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/duet-bus");
    let out = nobus.output().expect("duetctl");
    assert_eq!(out.status.code(), Some(3));
    let mut text = String::new();
    let _ = out.stderr.as_slice().read_to_string(&mut text);
    assert!(text.contains("cannot reach the D-Bus bus"), "{text}");
}

#[test]
fn lab_the_session_bus_serves_too() {
    let mut lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let bus = lab.node("node1").bus.clone();
    let config = lab.path("duet.toml");
    lab.start_with(
        "node1",
        &config,
        &[("DUET_BUS", "session"), ("DBUS_SESSION_BUS_ADDRESS", &bus)],
    );
    let ask = || {
        Command::new(netns::DUETCTL)
            .args(["--bus", "session", "status", "--json"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/duet-bus")
            .output()
            .expect("duetctl")
    };
    let (out, _) = wait_until(Duration::from_secs(5), "duetd on the session bus", || {
        Some(ask()).filter(|o| o.status.success())
    });
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(s["local_node"], "node1");
}

#[test]
fn lab_a_restarted_bus_finds_duetd_serving_again() {
    let mut lab = two_nodes();
    wait_all_up(&lab, "node1", "node2");
    wait_all_up(&lab, "node2", "node1");
    let pid = lab.pid("node1");
    let seen_by_peer = incarnation(&lab, "node2", "node1");

    // dbus-daemon restarted under node1's duetd: every connection is cut.
    lab.restart_bus("node1");
    let (s, took) = lab.wait_status(
        "node1",
        Duration::from_secs(10),
        "duetd back on the bus",
        |s| state_of(s, "node2").as_deref() == Some("up"),
    );
    println!("served again {} ms after the bus restart", took.as_millis());
    assert_eq!(s["local_node"], "node1", "{s}");
    assert!(
        lab.log("node1").contains("serving on D-Bus again"),
        "{}",
        lab.log("node1")
    );
    // The same run, which its peer never lost.
    assert_eq!(lab.pid("node1"), pid);
    assert_eq!(incarnation(&lab, "node2", "node1"), seen_by_peer);
    assert!(
        !lab.log("node2").contains("node1 is dead"),
        "{}",
        lab.log("node2")
    );
}

/// node1 as an attacker beside it would fake it: a heartbeat of node1's
/// run with sequence number 1, signed with `key` (with the cluster's key,
/// what a recording of node1's first packet holds).
fn forged(key: &[u8], incarnation: u64) -> Vec<u8> {
    use duet::membership::auth::{Auth, AuthAlgorithm};
    use duet::membership::wire::{Codec, Heartbeat};
    use duet::types::{Incarnation, LinkId, Seq};
    let auth = Auth::new(AuthAlgorithm::HmacSha256, key.to_vec()).expect("auth");
    Codec::new("lab".into(), auth).encode(&Heartbeat {
        node: "node1".into(),
        incarnation: Incarnation(incarnation),
        link: LinkId(0),
        seq: Seq(1),
        ping_reachable: 0,
        state: None,
        quorum: Default::default(),
        fences: None,
        config: None,
        protocol: None,
        echoes: Vec::new(),
    })
}

#[test]
fn lab_replayed_tampered_and_junk_heartbeats_are_dropped_counted_and_quiet() {
    let lab = two_nodes();
    wait_all_up(&lab, "node1", "node2");
    wait_all_up(&lab, "node2", "node1");
    let run = incarnation(&lab, "node2", "node1");
    let key = duet::membership::auth::load_key_file(&lab.path("duet.key")).expect("key");
    let replayed = forged(&key, run);
    let mut tampered = replayed.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    let wrong_key = forged(b"not the cluster's key", run);
    let junk: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37)).collect();

    // 1000 of each, at full speed, at node2's crossover port from a
    // stranger's address beside node1.
    let ns = lab.node("node1").ns.clone();
    netns::ip(&["-n", &ns, "addr", "add", "203.0.113.99/24", "dev", "eth1"]);
    let t = Instant::now();
    let packets = [replayed, tampered, wrong_key, junk];
    netns::in_netns(&ns, move || {
        let s = std::net::UdpSocket::bind("203.0.113.99:0").expect("bind");
        for _ in 0..1000 {
            for p in &packets {
                let _ = s.send_to(p, "203.0.113.2:694");
            }
        }
    })
    .join()
    .expect("flood");

    // At full speed the kernel drops some at node2's socket (what a
    // real flood does too); what reaches duetd is counted by reason.
    let (s, _) = lab.wait_status("node2", Duration::from_secs(5), "the flood counted", |s| {
        let d = |k: &str| s["dropped"][k].as_u64().unwrap_or(0);
        d("replay") >= 100 && d("bad-signature") >= 200 && d("bad-magic") >= 100
    });
    println!("dropped: {}", s["dropped"]);
    // The cluster kept working: node1 never died for node2, same run.
    wait_all_up(&lab, "node2", "node1");
    assert_eq!(incarnation(&lab, "node2", "node1"), run);
    assert!(
        !lab.log("node2").contains("node1 is dead"),
        "{}",
        lab.log("node2")
    );
    // Three reasons on one link: a line each per 10 s at most.
    let lines = lab.log("node2").matches("dropped heartbeat").count();
    let bound = 3 * (1 + t.elapsed().as_secs() as usize / 10 + 1);
    assert!(
        (3..=bound).contains(&lines),
        "{lines} lines in {:?}",
        t.elapsed()
    );
}

/// libfaketime (package faketime): moves a process's wall clock alone.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// For `DEADTIME * 3`, every poll shows `a` and `b` up for each other.
fn stay_up(lab: &Lab, a: &str, b: &str, when: &str) {
    let until = Instant::now() + DEADTIME * 3;
    while Instant::now() < until {
        for (observer, peer) in [(a, b), (b, a)] {
            let s = lab.status(observer).expect("status");
            let state = state_of(&s, peer);
            assert_eq!(
                state.as_deref(),
                Some("up"),
                "{when}: {observer} sees {peer} {state:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lab_a_wall_clock_stepped_back_and_forth_changes_nothing() {
    let mut lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let clock = lab.write("node1-clock", "+0");
    let state = lab.dir.join("node1-state");
    std::fs::create_dir_all(&state).expect("state dir");
    let (clock, state) = (clock.display().to_string(), state.display().to_string());
    let env = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME_TIMESTAMP_FILE", clock.as_str()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("STATE_DIRECTORY", state.as_str()),
    ];
    let cfg = lab.path("duet.toml");
    lab.start_with("node1", &cfg, &env);
    lab.start("node2");
    wait_all_up(&lab, "node1", "node2");
    wait_all_up(&lab, "node2", "node1");
    let run = incarnation(&lab, "node2", "node1");

    // node1's wall clock a day back, a day ahead, then right: its timers
    // run on the monotonic clock, so neither node sees the other falter.
    for step in ["-1d", "+1d", "+0"] {
        std::fs::write(&clock, step).expect("clock");
        stay_up(&lab, "node1", "node2", &format!("clock {step}"));
    }
    assert_eq!(incarnation(&lab, "node2", "node1"), run);

    // Restarted with its clock a day back, node1 still starts a run its
    // peer takes as newer (the last one is kept in its state directory).
    std::fs::write(&clock, "-1d").expect("clock");
    lab.stop("node1");
    lab.start_with("node1", &cfg, &env);
    lab.wait_status("node2", INITDEAD, "node2 to take node1's new run", |s| {
        let node1 = netns::node_of(s, "node1");
        node1
            .and_then(|n| n["incarnation"].as_u64())
            .is_some_and(|i| i > run)
            && state_of(s, "node1").as_deref() == Some("up")
    });
}

#[test]
fn lab_duetd_does_not_start_on_a_config_others_may_change() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let cfg = lab.path("duet.toml");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.node("node1").ns,
            netns::DUETD,
            "--node",
            "node1",
        ])
        .arg("--config")
        .arg(&cfg)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &lab.node("node1").bus)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("duetd");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("duetd runs on a config anyone may change");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success());
    assert!(
        err.contains("may be changed by group or others (mode 0666)"),
        "{err}"
    );
    assert!(err.contains("chmod go-w"), "{err}");
}

#[test]
fn lab_a_config_that_differs_between_nodes_is_reported_and_layout_is_not() {
    let mut lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let same = lab.path("duet.toml");
    let text = std::fs::read_to_string(&same).expect("config");
    // node2's file: the same settings, another layout and a comment.
    let relaid = lab.write(
        "node2-same.toml",
        &format!(
            "# node2's copy, edited by hand\n{}",
            text.replace(" = ", "   =   ")
        ),
    );
    lab.start("node1");
    lab.start_with("node2", &relaid, &[]);
    wait_all_up(&lab, "node1", "node2");
    let (s, _) = lab.wait_status("node1", Duration::from_secs(5), "node2's digest", |s| {
        s["nodes"][1]["config_digest"]
            .as_str()
            .is_some_and(|d| d.len() == 16)
    });
    assert_eq!(
        s["nodes"][0]["config_digest"], s["nodes"][1]["config_digest"],
        "{s}"
    );
    assert_eq!(s["config_differs"], serde_json::json!([]), "{s}");

    // node2 restarts with another deadtime: both say whose file differs.
    lab.stop("node2");
    let other = lab.write(
        "node2-other.toml",
        &text.replace("deadtime = \"1s\"", "deadtime = \"2s\""),
    );
    lab.start_with("node2", &other, &[]);
    for (observer, peer) in [("node1", "node2"), ("node2", "node1")] {
        lab.wait_status(
            observer,
            Duration::from_secs(10),
            "a config mismatch",
            |s| s["config_differs"] == serde_json::json!([peer]),
        );
    }
    let out = lab.duetctl("node1", &["status"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("CONFIG DIFFERS: node2 run(s) another config than this node"),
        "{shown}"
    );
    let said = lab.log("node1");
    assert_eq!(
        said.matches("node2 runs another config than this node")
            .count(),
        1,
        "{said}"
    );
    // Back to the same file: the mismatch clears, and the log says so.
    lab.stop("node2");
    lab.start_with("node2", &same, &[]);
    lab.wait_status("node1", Duration::from_secs(10), "the mismatch gone", |s| {
        s["config_differs"] == serde_json::json!([])
            && netns::state_of(s, "node2").as_deref() == Some("up")
    });
    assert!(
        lab.log("node1")
            .contains("node2 runs the same config as this node again")
    );
}
