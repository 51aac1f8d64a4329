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

    // A crash: node2 takes over once node1 is dead (deadtime 1 s).
    let crashed = Instant::now();
    lab.kill("node1");
    lab.wait_status("node2", Duration::from_secs(5), "node2 to run svc", |s| {
        group(s)["state"] == "running"
    });
    let took = crashed.elapsed();
    println!(
        "failover: {:.2} s from the crash to svc running on node2",
        took.as_secs_f64()
    );
    assert!(up_on(&lab.dir, &ns2));

    // node1 returns: without auto-failback, svc stays on node2. Watched
    // for longer than node1's claim would take.
    lab.start("node1");
    runs_on(&lab, "node1", "node2", INITDEAD * 2);
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
