//! Resource groups with two real duetd processes in network namespaces:
//! placement, claim, failover after a crash, no failback, standby moving
//! the group back in order. The resource is a classic script (start, stop,
//! status) that records which namespace ran what. Needs root.

mod netns;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use netns::{Lab, config};

const INITDEAD: Duration = Duration::from_secs(4);

/// Records each start and stop with the namespace it ran in; `status` is
/// running while this namespace's marker exists.
const SCRIPT: &str = r#"#!/bin/sh
dir="$1"
me=$(ip netns identify $$)
case "$2" in
start) touch "$dir/up-$me"; echo "start $me" >> "$dir/log" ;;
stop) rm -f "$dir/up-$me"; echo "stop $me" >> "$dir/log" ;;
status) [ -e "$dir/up-$me" ] || exit 3 ;;
*) exit 2 ;;
esac
"#;

fn lab() -> Lab {
    let lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let script = lab.dir.join("svc");
    std::fs::write(&script, SCRIPT).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = format!(
        "{}\n[[group]]\nname = \"svc\"\nnodes = [\"node1\", \"node2\"]\nauto-failback = false\n\
         monitor-interval = \"500ms\"\n\n[[group.resource]]\nscript = \"{}\"\nargs = [\"{}\"]\n",
        config(2, "ucast", "ucast", "duet.key"),
        script.display(),
        lab.dir.display()
    );
    lab.write("duet.toml", &text);
    lab
}

/// The svc group of `lab()` with a fence command that always succeeds:
/// the tests kill the node they fence themselves, as a PDU would.
fn fenced_lab() -> Lab {
    let lab = lab();
    let fence = lab.dir.join("fence");
    std::fs::write(&fence, FENCE).expect("fence script");
    std::fs::set_permissions(&fence, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = std::fs::read_to_string(lab.path("duet.toml")).expect("config");
    let text = format!(
        "{text}\n[fencing]\ncommand = \"{}\"\nargs = [\"{}\"]\ntimeout = \"5s\"\nretry-delay = \"300ms\"\n",
        fence.display(),
        lab.dir.display()
    );
    lab.write("duet.toml", &text);
    lab
}

/// node2 sees node1 dead and, for two seconds, does not start svc but
/// says it waits for an administrator's confirm-off.
fn waits_for_confirm_off(lab: &Lab) {
    lab.wait_status(
        "node2",
        Duration::from_secs(5),
        "node2 to wait for node1",
        |s| {
            netns::state_of(s, "node1").as_deref() == Some("dead")
                && group(s)["waiting"]
                    .as_str()
                    .is_some_and(|w| w.contains("confirm-off node1"))
        },
    );
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        let s = lab.status("node2").expect("node2 status");
        assert_eq!(
            group(&s)["state"],
            "stopped",
            "node2 took svc over unfenced: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!up_on(&lab.dir, &lab.node("node2").ns));
    let said = lab.log("node2");
    assert!(said.contains("went silent and may still run it"), "{said}");
}

fn group(s: &serde_json::Value) -> &serde_json::Value {
    &s["groups"][0]
}

fn runs_on(lab: &Lab, observer: &str, node: &str, within: Duration) {
    let what = format!("{observer} to see svc running on {node}");
    lab.wait_status(observer, within, &what, |s| group(s)["node"] == node);
}

fn log(lab: &Lab) -> Vec<String> {
    std::fs::read_to_string(lab.dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn ns(lab: &Lab, node: &str) -> String {
    lab.node(node).ns.clone()
}

fn up_on(dir: &Path, ns: &str) -> bool {
    dir.join(format!("up-{ns}")).exists()
}

#[test]
fn lab_a_group_fails_over_on_a_crash_stays_and_moves_back_on_standby() {
    let mut lab = lab();
    lab.start("node1");
    lab.start("node2");
    let (ns1, ns2) = (ns(&lab, "node1"), ns(&lab, "node2"));

    // node1 comes first in the group's nodes: it claims, then starts.
    let (s, _) = lab.wait_status("node1", INITDEAD * 2, "svc running on node1", |s| {
        group(s)["state"] == "running"
    });
    assert_eq!(group(&s)["node"], "node1");
    runs_on(&lab, "node2", "node1", Duration::from_secs(2));
    assert!(up_on(&lab.dir, &ns1) && !up_on(&lab.dir, &ns2));
    assert_eq!(log(&lab), vec![format!("start {ns1}")]);

    // No witness, no fencing: confirm-off is refused for a live node.
    let out = lab.duetctl("node2", &["confirm-off", "node1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node1 is up"), "{err}");

    // Both links cut: each side sees the other dead. node1 keeps svc,
    // node2 takes nothing over and says why.
    for dev in ["eth0", "eth1"] {
        lab.exec("node2", &["ip", "link", "set", dev, "down"]);
    }
    waits_for_confirm_off(&lab);
    assert!(up_on(&lab.dir, &ns1));
    let s = lab.status("node1").expect("node1 status");
    assert_eq!(group(&s)["state"], "running", "the holder keeps it: {s}");
    for dev in ["eth0", "eth1"] {
        lab.exec("node2", &["ip", "link", "set", dev, "up"]);
    }
    lab.wait_status(
        "node2",
        Duration::from_secs(5),
        "node2 to hear node1 again",
        |s| netns::state_of(s, "node1").as_deref() == Some("up") && group(s)["waiting"] == "",
    );

    // A crash looks the same from node2: it waits until an administrator
    // confirms node1 is off, then takes over.
    lab.kill("node1");
    waits_for_confirm_off(&lab);
    let confirmed = Instant::now();
    let out = lab.duetctl("node2", &["confirm-off", "node1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.wait_status("node2", Duration::from_secs(5), "node2 to run svc", |s| {
        group(s)["state"] == "running"
    });
    println!(
        "takeover: {:.2} s from confirm-off to svc running on node2",
        confirmed.elapsed().as_secs_f64()
    );
    assert!(up_on(&lab.dir, &ns2));
    let said = lab.log("node2");
    assert!(
        said.contains(&format!(
            "group svc: running on node2 (taking over from node1, dead): script {}",
            lab.dir.join("svc").display()
        )),
        "{said}"
    );

    // node1 returns: it stops the copy its killed daemon left up, and
    // without auto-failback svc stays on node2. Watched for longer than
    // node1's claim would take.
    lab.start("node1");
    runs_on(&lab, "node1", "node2", INITDEAD * 2);
    lab.wait_status(
        "node1",
        Duration::from_secs(5),
        "node1 to stop what its killed daemon left up",
        |s| group(s)["state"] == "stopped",
    );
    assert!(!up_on(&lab.dir, &ns1) && up_on(&lab.dir, &ns2));
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        let s = lab.status("node1").expect("node1 status");
        assert_eq!(group(&s)["state"], "stopped", "node1 started svc: {s}");
        assert_eq!(group(&s)["node"], "node2");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Standby on node2: it stops svc, then node1 starts it.
    let out = lab.duetctl("node2", &["standby", "node2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.wait_status(
        "node1",
        Duration::from_secs(5),
        "node1 to run svc again",
        |s| group(s)["state"] == "running",
    );
    let log = log(&lab);
    let n = log.len();
    assert!(n >= 3, "{log:?}");
    assert_eq!(
        log[n - 2..].to_vec(),
        vec![format!("stop {ns2}"), format!("start {ns1}")],
        "the old node stops before the new one starts: {log:?}"
    );
    let s = lab.status("node2").expect("node2 status");
    assert_eq!(s["standby"], true);
    assert_eq!(group(&s)["state"], "stopped");

    // Refused: standby names another node than the one duetctl runs on.
    let out = lab.duetctl("node2", &["standby", "node1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run `duetctl standby node1` on node1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `node` with its own state directory (where duetd keeps the
/// administrators' wishes, as under systemd's StateDirectory=).
fn start_with_state(lab: &mut Lab, node: &str) {
    let dir = lab.dir.join(format!("state-{node}"));
    std::fs::create_dir_all(&dir).expect("state dir");
    let config = lab.path("duet.toml");
    let dir = dir.display().to_string();
    lab.start_with(node, &config, &[("STATE_DIRECTORY", &dir)]);
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lab_move_stop_and_start_hold_on_every_node_and_across_restarts() {
    let mut lab = fenced_lab();
    start_with_state(&mut lab, "node1");
    start_with_state(&mut lab, "node2");
    let (ns1, ns2) = (ns(&lab, "node1"), ns(&lab, "node2"));
    lab.wait_status("node2", INITDEAD * 2, "svc running on node1", |s| {
        group(s)["node"] == "node1" && group(s)["running"] == true
    });

    // Asked on node1, carried out on both: node1 stops, then node2 starts.
    let said = ok(lab.duetctl("node1", &["move", "svc", "node2", "--timeout", "10"]));
    assert_eq!(said.trim(), "svc: running on node2");
    let log = log(&lab);
    assert_eq!(
        log[log.len() - 2..].to_vec(),
        vec![format!("stop {ns1}"), format!("start {ns2}")],
        "{log:?}"
    );
    let s = lab.status("node2").expect("node2 status");
    assert_eq!(group(&s)["moved_to"], "node2", "{s}");

    // Refused with the reason, nothing changed.
    let out = lab.duetctl("node1", &["move", "svc", "node9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no node named node9"), "{err}");

    // Stop, asked on the node that does not run it.
    let said = ok(lab.duetctl("node1", &["stop", "svc", "--timeout", "10"]));
    assert_eq!(said.trim(), "svc: stopped everywhere");
    assert!(!up_on(&lab.dir, &ns1) && !up_on(&lab.dir, &ns2));
    lab.wait_status(
        "node2",
        Duration::from_secs(3),
        "node2 to hear the stop",
        |s| group(s)["wanted"] == "stopped",
    );

    // Both nodes restart at once: no peer is left to tell them, the saved
    // wish keeps svc stopped. Watched past the claim a start would need.
    lab.kill("node1");
    lab.kill("node2");
    start_with_state(&mut lab, "node1");
    start_with_state(&mut lab, "node2");
    lab.wait_status("node1", INITDEAD * 2, "node1 to see node2", |s| {
        netns::state_of(s, "node2").as_deref() == Some("up")
    });
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        for node in ["node1", "node2"] {
            let s = lab.status(node).expect("status");
            assert_eq!(group(&s)["wanted"], "stopped", "{node}: {s}");
            assert_eq!(group(&s)["node"], "", "{node} runs svc: {s}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Start: where the move put it.
    let said = ok(lab.duetctl("node1", &["start", "svc", "--timeout", "10"]));
    assert_eq!(said.trim(), "svc: running on node2");

    // node2 dies: node1 takes over and the move is spent, so svc stays on
    // node1 when node2 returns (auto-failback off).
    lab.kill("node2");
    lab.wait_status(
        "node1",
        Duration::from_secs(5),
        "node1 to take svc over",
        |s| group(s)["state"] == "running" && group(s)["moved_to"] == "",
    );
    start_with_state(&mut lab, "node2");
    lab.wait_status("node2", INITDEAD * 2, "node2 to see svc on node1", |s| {
        group(s)["node"] == "node1" && group(s)["moved_to"] == ""
    });
}

/// Logs each call with the node it fences; fails while `fence-rc` holds 1.
const FENCE: &str = r#"#!/bin/sh
dir="$1"
echo "fence $2" >> "$dir/log"
[ "$(cat "$dir/fence-rc" 2>/dev/null)" = 1 ] && { echo "the PDU does not answer" >&2; exit 1; }
exit 0
"#;

#[test]
fn lab_a_takeover_waits_for_the_dead_node_to_be_fenced() {
    let mut lab = fenced_lab();
    lab.start("node1");
    lab.start("node2");
    let ns2 = ns(&lab, "node2");
    lab.wait_status("node2", INITDEAD * 2, "svc running on node1", |s| {
        group(s)["node"] == "node1" && group(s)["running"] == true
    });

    // The fence fails: node2 must not start svc, and keeps trying.
    std::fs::write(lab.dir.join("fence-rc"), "1").expect("fence-rc");
    lab.kill("node1");
    let fenced = |lab: &Lab| log(lab).iter().filter(|l| *l == "fence node1").count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fenced(&lab) < 3 {
        assert!(
            Instant::now() < deadline,
            "fence tried {} times",
            fenced(&lab)
        );
        let s = lab.status("node2").expect("node2 status");
        assert_eq!(
            group(&s)["state"],
            "stopped",
            "started over an unfenced node: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!up_on(&lab.dir, &ns2));
    assert!(lab.log("node2").contains("the PDU does not answer"));

    // The fence works: the takeover goes on, after it.
    std::fs::write(lab.dir.join("fence-rc"), "0").expect("fence-rc");
    lab.wait_status("node2", Duration::from_secs(5), "node2 to run svc", |s| {
        group(s)["state"] == "running"
    });
    let log = log(&lab);
    let started = log.iter().rposition(|l| *l == format!("start {ns2}"));
    let last_fence = log.iter().rposition(|l| l == "fence node1");
    assert!(started > last_fence, "{log:?}");
}

/// Two nodes and a ping node: a survivor that reaches no ping node has
/// lost the network, not its peer, and takes nothing over until it
/// reaches one again.
#[test]
fn lab_a_survivor_cut_off_from_the_ping_nodes_takes_nothing_over() {
    let lab = fenced_lab();
    let text = std::fs::read_to_string(lab.path("duet.toml")).expect("config");
    let text = text.replacen(
        "\n[[group]]",
        "\n[ping]\nnodes = [\"198.51.100.200\"]\ninterval = \"200ms\"\ndeadtime = \"1s\"\n\n[[group]]",
        1,
    );
    lab.write("duet.toml", &text);
    let mut lab = lab;
    // The ping node's address lives on node1's side of the public link.
    let gateway = ["addr", "add", "198.51.100.200/24", "dev", "eth0"];
    lab.exec("node1", &[&["ip"][..], &gateway].concat());
    lab.start("node1");
    lab.start("node2");
    let ns2 = ns(&lab, "node2");
    lab.wait_status(
        "node2",
        INITDEAD * 2,
        "svc on node1, the ping node reached",
        |s| {
            group(s)["node"] == "node1"
                && group(s)["running"] == true
                && s["ping_nodes"][0]["reachable"] == true
        },
    );

    // The gateway goes, then node1: node2 is alone and off the network.
    let gone = ["addr", "del", "198.51.100.200/24", "dev", "eth0"];
    lab.exec("node1", &[&["ip"][..], &gone].concat());
    lab.wait_status(
        "node2",
        Duration::from_secs(5),
        "node2 to lose the ping node",
        |s| s["ping_nodes"][0]["reachable"] == false,
    );
    lab.kill("node1");
    lab.wait_status(
        "node2",
        Duration::from_secs(5),
        "node2 to see node1 dead",
        |s| netns::state_of(s, "node1").as_deref() == Some("dead"),
    );
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        let s = lab.status("node2").expect("node2 status");
        assert_eq!(
            group(&s)["state"],
            "stopped",
            "took over off the network: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!up_on(&lab.dir, &ns2));

    // The network is back: node2 takes over.
    lab.exec("node1", &[&["ip"][..], &gateway].concat());
    lab.wait_status(
        "node2",
        Duration::from_secs(5),
        "node2 to take svc over",
        |s| group(s)["state"] == "running",
    );
}

/// wait-for-all: a node started alone runs nothing, however long it
/// waits; once both were up together the survivor of a crash goes on.
#[test]
fn lab_wait_for_all_runs_nothing_until_every_node_was_seen() {
    // With fencing, a node started alone would fence its peer and run svc:
    // wait-for-all is what stops it.
    let lab = fenced_lab();
    let text = std::fs::read_to_string(lab.path("duet.toml")).expect("config");
    let text = text.replacen("[cluster]\n", "[cluster]\nwait-for-all = true\n", 1);
    lab.write("duet.toml", &text);
    let mut lab = lab;
    lab.start("node1");
    lab.wait_status("node1", INITDEAD * 2, "node1 to declare node2 dead", |s| {
        netns::state_of(s, "node2").as_deref() == Some("dead")
    });
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        let s = lab.status("node1").expect("node1 status");
        assert_eq!(group(&s)["state"], "stopped", "ran alone: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(log(&lab).iter().all(|l| !l.starts_with("start")));

    lab.start("node2");
    lab.wait_status("node2", INITDEAD * 2, "svc running on node1", |s| {
        group(s)["node"] == "node1" && group(s)["running"] == true
    });
    // Seen together once: node1 keeps running alone after node2 dies.
    lab.kill("node2");
    lab.wait_status(
        "node1",
        Duration::from_secs(5),
        "node1 to see node2 dead",
        |s| netns::state_of(s, "node2").as_deref() == Some("dead"),
    );
    let s = lab.status("node1").expect("node1 status");
    assert_eq!(group(&s)["state"], "running", "{s}");
}

/// Two resources of one script: `fast`, and `slow`, whose start takes
/// two seconds (a service that is slow to come up).
const TWO_STEP: &str = r#"#!/bin/sh
dir="$1"
name="$2"
me=$(ip netns identify $$)
case "$3" in
start) [ "$name" = slow ] && sleep 2; touch "$dir/up-$name-$me"; echo "start $name $me" >> "$dir/log" ;;
stop) rm -f "$dir/up-$name-$me"; echo "stop $name $me" >> "$dir/log" ;;
status) [ -e "$dir/up-$name-$me" ] || exit 3 ;;
*) exit 2 ;;
esac
"#;

#[test]
fn lab_duetd_killed_mid_takeover_finishes_it_after_its_restart() {
    let mut lab = fenced_lab();
    let script = lab.dir.join("two-step");
    std::fs::write(&script, TWO_STEP).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let fence = lab.dir.join("fence");
    let text = format!(
        "{}\n[[group]]\nname = \"svc\"\nnodes = [\"node1\", \"node2\"]\nauto-failback = false\n\
         monitor-interval = \"500ms\"\n\n\
         [[group.resource]]\nscript = \"{s}\"\nargs = [\"{d}\", \"fast\"]\n\n\
         [[group.resource]]\nscript = \"{s}\"\nargs = [\"{d}\", \"slow\"]\n\n\
         [fencing]\ncommand = \"{f}\"\nargs = [\"{d}\"]\ntimeout = \"5s\"\nretry-delay = \"300ms\"\n",
        config(2, "ucast", "ucast", "duet.key"),
        s = script.display(),
        d = lab.dir.display(),
        f = fence.display(),
    );
    lab.write("duet.toml", &text);
    let dir = lab.dir.clone();
    let up = |name: &str, ns: &str| dir.join(format!("up-{name}-{ns}")).exists();
    lab.start("node1");
    lab.start("node2");
    let (ns1, ns2) = (ns(&lab, "node1"), ns(&lab, "node2"));
    lab.wait_status("node2", INITDEAD * 3, "svc running on node1", |s| {
        group(s)["node"] == "node1" && group(s)["running"] == true
    });

    // node1 crashes; node2 fences it and takes over: `fast` is up, `slow`
    // on its way, when node2's daemon is SIGKILLed too.
    lab.kill("node1");
    let deadline = Instant::now() + Duration::from_secs(10);
    let under_way = |ns: &str| up("fast", ns) && !up("slow", ns);
    while !under_way(&ns2) {
        assert!(
            Instant::now() < deadline,
            "no takeover under way: {:?}",
            log(&lab)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.kill("node2");

    // Restarted, node2 finishes the takeover; node1, back, stops what
    // its killed daemon left up: svc whole on node2, nowhere else.
    lab.start("node2");
    lab.wait_status("node2", INITDEAD * 3, "node2 to run svc whole", |s| {
        group(s)["state"] == "running" && group(s)["node"] == "node2"
    });
    lab.start("node1");
    lab.wait_status("node1", INITDEAD * 3, "node1 to stop its leftovers", |s| {
        group(s)["node"] == "node2" && group(s)["state"] == "stopped"
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while up("fast", &ns1) || up("slow", &ns1) {
        assert!(
            Instant::now() < deadline,
            "node1 kept its leftovers: {:?}",
            log(&lab)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(up("fast", &ns2) && up("slow", &ns2), "{:?}", log(&lab));
}

/// `duetctl events --json` on `node`, each line parsed.
fn events(lab: &mut Lab, node: &str) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let lines = lab.duetctl_lines(node, &["events", "--json"]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            let v =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    rx
}

/// Lines from `rx` until one for which `last` holds (included).
fn lines_until(
    rx: &std::sync::mpsc::Receiver<serde_json::Value>,
    within: Duration,
    what: &str,
    last: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    netns::recv_until(rx, within, what, last)
}

fn is(v: &serde_json::Value, object: &str, name: &str, key: &str, value: &str) -> bool {
    v["object"] == object && v["name"] == name && v["values"][key] == value
}

#[test]
fn lab_events_record_a_failover_in_order_with_timings() {
    let mut lab = fenced_lab();
    lab.start("node1");
    lab.start("node2");
    lab.wait_status("node2", INITDEAD * 2, "svc running on node1", |s| {
        group(s)["node"] == "node1" && group(s)["running"] == true
    });
    let rx = events(&mut lab, "node2");
    // The state first, as it is: ends with `exists -`.
    let now = lines_until(&rx, Duration::from_secs(10), "exists -", |v| {
        v["object"] == "-"
    });
    assert!(now.iter().all(|v| v["event"] == "exists"), "{now:#?}");
    let find = |kind: &str, name: &str| {
        now.iter()
            .find(|v| v["object"] == kind && v["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {now:#?}"))
    };
    assert_eq!(find("node", "node1")["values"]["state"], "up");
    assert_eq!(find("group", "svc")["values"]["node"], "node1");
    assert_eq!(find("cluster", "lab")["values"]["quorate"], true);

    // node1 crashes: node2 sees it late, then dead, fences it and starts
    // svc; the stream has it in that order.
    lab.kill("node1");
    let changes = lines_until(&rx, Duration::from_secs(20), "svc running on node2", |v| {
        v["object"] == "group" && v["name"] == "svc" && v["values"]["state"] == "running"
    });
    for v in &changes {
        println!("{v}");
    }
    let at = |what: &str, ok: &dyn Fn(&serde_json::Value) -> bool| {
        changes
            .iter()
            .position(ok)
            .unwrap_or_else(|| panic!("no {what} in {changes:#?}"))
    };
    let dead = at("node1 dead", &|v| is(v, "node", "node1", "state", "dead"));
    let starting = at("svc starting", &|v| {
        is(v, "group", "svc", "state", "starting")
    });
    let running = changes.len() - 1;
    assert!(dead < starting && starting < running, "{changes:#?}");
    assert!(changes.iter().all(|v| v["event"] == "change"));
    let times: Vec<u64> = changes
        .iter()
        .map(|v| v["time_us"].as_u64().expect("time_us"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Each change says what it replaced, and how long that held.
    assert_eq!(
        changes[dead]["was"]["state"]["value"], "late",
        "{changes:#?}"
    );
    let start_took = changes[running]["was"]["state"]["held_s"]
        .as_f64()
        .expect("how long svc was starting");
    let secs = |from: usize, to: usize| (times[to] - times[from]) as f64 / 1e6;
    assert!(
        (start_took - secs(starting, running)).abs() < 0.01,
        "{changes:#?}"
    );
    println!(
        "events: node1 dead -> svc starting {:.3} s -> running {:.3} s",
        secs(dead, starting),
        secs(starting, running)
    );
}

#[test]
fn lab_status_watch_draws_each_change_and_nothing_while_none_comes() {
    let mut lab = fenced_lab();
    lab.start("node1");
    lab.start("node2");
    lab.wait_status("node2", INITDEAD * 2, "svc running on node1", |s| {
        group(s)["node"] == "node1" && group(s)["running"] == true
    });
    let rx = lab.watch("node2");
    netns::recv_until(&rx, Duration::from_secs(10), "svc on node1", |v| {
        v.contains("group svc on node1")
    });
    // Quiet: no change, no view (drawn on signals, not on a timer).
    let drain_until = Instant::now() + Duration::from_millis(500);
    while rx
        .recv_timeout(drain_until.saturating_duration_since(Instant::now()))
        .is_ok()
    {}
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "a view was drawn with nothing changed"
    );
    lab.kill("node1");
    let views = netns::recv_until(&rx, Duration::from_secs(20), "svc running on node2", |v| {
        v.contains("group svc on node2: running here")
    });
    for v in &views {
        println!("{v}");
    }
    let last = views.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("node1") && last.contains(" dead "), "{last}");
    assert!(last.lines().all(|l| l.chars().count() <= 80), "{last}");
}
