//! Resource groups with a witness (issue 7): two real duetd holding a
//! script group and a third as the witness, in network namespaces. When
//! node1, running the group, is cut off from node2 and the witness, it
//! loses quorum and stops the group, and node2, which still reaches the
//! witness, gets the vote and starts it; when only the data nodes are cut
//! apart, the group stays on node1. With `[fencing]`, node2 fences node1
//! before it starts. Needs root.

mod netns;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use netns::{Lab, WITNESS_NODES, witness_config};

const INITDEAD: Duration = Duration::from_secs(4);
const DEADTIME: Duration = Duration::from_secs(1);
/// The witness grants nothing for a hold (2 × deadtime) after it starts.
const HOLD: Duration = Duration::from_secs(2);
/// A side seeing the other dead, the vote moving, a stop or start, and
/// polling slack.
const SETTLE: Duration = Duration::from_secs(8);

/// heartbeat's resource.d convention with the lab's folder first. Each
/// start and stop is logged with the namespace it ran in and the time
/// (one clock for all namespaces), so the order across nodes shows;
/// `status` is running while this namespace's marker exists.
const SCRIPT: &str = r#"#!/bin/sh
dir="$1"
me=$(ip netns identify $$)
case "$2" in
start) touch "$dir/up-$me"; echo "$(date +%s.%N) start $me" >> "$dir/log" ;;
stop) [ -e "$dir/hang-stop" ] && sleep 30
    rm -f "$dir/up-$me"; echo "$(date +%s.%N) stop $me" >> "$dir/log" ;;
status) [ -e "$dir/up-$me" ] || exit 3 ;;
*) exit 2 ;;
esac
"#;

/// A fence agent that records whom it was asked to fence and, as a power
/// switch would, says yes once nothing of that node runs any more (here:
/// once node1, which lost quorum, has stopped svc), within 5 s.
const FENCE: &str = r#"#!/bin/sh
echo "$(date +%s.%N) fence $2" >> "$1/log"
i=0
while ls "$1"/up-*-n1 >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -gt 100 ] && exit 1
    sleep 0.05
done
exit 0
"#;

/// A node's self-fence as a forced reboot would do it: everything of the
/// node ends at once (here: its marker goes, and every process in its
/// namespace, duetd included, is killed), logged first.
const SELF_FENCE: &str = r#"#!/bin/sh
me=$(ip netns identify $$)
echo "$(date +%s.%N) self-fence $me" >> "$1/log"
rm -f "$1/up-$me"
ip netns pids "$me" | grep -vx "$$" | xargs -r kill -9
"#;

fn executable(lab: &Lab, name: &str, text: &str) -> String {
    let path = lab.write(name, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

/// The witness cluster with group svc (node1 first), and a fence agent
/// when `fencing`.
/// What guards a takeover besides the vote.
#[derive(Clone, Copy, PartialEq)]
enum Guard {
    /// The others' wait (twice the deadtime) alone.
    Wait,
    /// A fence agent.
    Fencing,
    /// A self-fence command on the nodes, for a stop that hangs.
    SelfFence,
}

fn lab(guard: Guard) -> Lab {
    let lab = Lab::named(&WITNESS_NODES, &witness_config());
    let dir = lab.dir.display().to_string();
    let script = executable(&lab, "svc", SCRIPT);
    let mut text = format!(
        "{}\n[[group]]\nname = \"svc\"\nnodes = [\"node1\", \"node2\"]\nauto-failback = false\n\
         monitor-interval = \"500ms\"\n\n[[group.resource]]\nscript = \"{script}\"\nargs = [\"{dir}\"]\n",
        witness_config()
    );
    if guard == Guard::SelfFence {
        let command = executable(&lab, "self-fence", SELF_FENCE);
        text.push_str(&format!(
            "\n[self-fence]\ncommand = \"{command}\"\nargs = [\"{dir}\"]\n"
        ));
    }
    if guard == Guard::Fencing {
        let fence = executable(&lab, "fence", FENCE);
        text.push_str(&format!(
            "\n[fencing]\ncommand = \"{fence}\"\nargs = [\"{dir}\"]\ntimeout = \"5s\"\nretry-delay = \"300ms\"\n"
        ));
    }
    lab.write("duet.toml", &text);
    lab
}

/// One line of the script's or the fence agent's log.
#[derive(Debug, Clone)]
struct Entry {
    at: f64,
    what: String,
    who: String,
}

fn log(lab: &Lab) -> Vec<Entry> {
    std::fs::read_to_string(lab.dir.join("log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let at = words.next()?.parse().ok()?;
            Some(Entry {
                at,
                what: words.next()?.to_string(),
                who: words.next()?.to_string(),
            })
        })
        .collect()
}

fn last(log: &[Entry], what: &str, who: &str) -> Option<Entry> {
    log.iter()
        .rfind(|e| e.what == what && e.who == who)
        .cloned()
}

fn ns(lab: &Lab, node: &str) -> String {
    lab.node(node).ns.clone()
}

fn up_on(lab: &Lab, node: &str) -> bool {
    lab.dir.join(format!("up-{}", ns(lab, node))).exists()
}

/// The script's marker is never on both data nodes at once.
fn never_both(lab: &Lab) {
    assert!(
        !(up_on(lab, "node1") && up_on(lab, "node2")),
        "svc runs on node1 and node2 at once: {:?}",
        log(lab)
    );
}

fn group(s: &serde_json::Value) -> &serde_json::Value {
    &s["groups"][0]
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `duetctl status`'s witness line on `node` (the node named "witness"
/// has a line in the node table too).
/// Waits until `node`'s witness line reads `want`.
fn wait_line(lab: &Lab, node: &str, want: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let line = witness_line(lab, node);
        if line == want {
            return;
        }
        assert!(Instant::now() < deadline, "{node}: {line:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn witness_line(lab: &Lab, node: &str) -> String {
    let out = lab.duetctl(node, &["status"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("witness witness"))
        .unwrap_or_default()
        .to_string()
}

/// All three started; svc running on node1, seen there by node2; both
/// data nodes quorate with the witness's vote for the two of them.
fn started(guard: Guard) -> Lab {
    let mut lab = lab(guard);
    for n in WITNESS_NODES {
        lab.start(n);
    }
    lab.wait_status("node2", INITDEAD * 2, "svc running on node1", |s| {
        group(s)["node"] == "node1" && group(s)["running"] == true
    });
    for n in ["node1", "node2"] {
        let what = format!("{n} to count the witness's vote for both");
        let (s, _) = lab.wait_status(n, INITDEAD + HOLD * 2, &what, |s| {
            s["witness_vote"] == true && names(&s["witness_votes_for"]) == ["node1", "node2"]
        });
        assert_eq!(s["quorate"], true, "{s}");
        assert_eq!(s["witness"], "witness", "{s}");
        assert_eq!(names(&s["partition"]), ["node1", "node2"], "{s}");
        assert_eq!(
            witness_line(&lab, n),
            "witness witness: vote counted here (votes for node1, node2)"
        );
    }
    let (s, _) = lab.wait_status("witness", HOLD, "the witness's status", |s| {
        names(&s["witness_votes_for"]) == ["node1", "node2"]
    });
    assert_eq!(s["witness_vote"], false, "{s}");
    assert_eq!(names(&s["partition"]), Vec::<String>::new(), "{s}");
    assert_eq!(
        witness_line(&lab, "witness"),
        "witness witness (this node): votes for node1, node2"
    );
    assert!(up_on(&lab, "node1") && !up_on(&lab, "node2"));
    lab
}

/// node1 cut off from node2 and the witness: node1 loses quorum and
/// stops svc, node2 gets the vote and starts it, never both at once.
/// Returns when the start on node2 happened (seconds since the cut) and
/// node2's status then.
fn node1_cut_off(lab: &Lab) -> (f64, f64) {
    let cut = Instant::now();
    let cut_at = log_clock();
    lab.cut("node1", "node2");
    lab.cut("node1", "witness");
    loop {
        never_both(lab);
        let s1 = lab.status("node1").expect("node1 answers");
        let s2 = lab.status("node2").expect("node2 answers");
        if group(&s1)["state"] == "stopped"
            && s1["quorate"] == false
            && group(&s2)["state"] == "running"
        {
            break;
        }
        assert!(
            cut.elapsed() < SETTLE,
            "svc did not move to node2 within {SETTLE:?}: node1 {s1}, node2 {s2}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = log(lab);
    let stop1 = last(&log, "stop", &ns(lab, "node1")).expect("node1's stop in the log");
    let start2 = last(&log, "start", &ns(lab, "node2")).expect("node2's start in the log");
    assert!(
        stop1.at < start2.at,
        "node2 started svc before node1 had stopped it: {log:?}"
    );

    let s1 = lab.status("node1").expect("node1");
    assert_eq!(s1["witness_vote"], false, "{s1}");
    assert_eq!(names(&s1["partition"]), ["node1"], "{s1}");
    // node1 declares the witness dead on its own clock, maybe a moment
    // after node2.
    wait_line(
        lab,
        "node1",
        "witness witness: not heard, its vote is not counted here",
    );
    let s2 = lab.status("node2").expect("node2");
    assert_eq!(s2["quorate"], true, "{s2}");
    assert_eq!(names(&s2["partition"]), ["node2"], "{s2}");
    assert_eq!(names(&s2["witness_votes_for"]), ["node2"], "{s2}");
    assert_eq!(
        witness_line(lab, "node2"),
        "witness witness: vote counted here (votes for node2)"
    );

    // And it stays so: node1, alone, never starts svc again.
    let watch = Instant::now();
    while watch.elapsed() < DEADTIME * 3 {
        never_both(lab);
        let s1 = lab.status("node1").expect("node1");
        assert_eq!(group(&s1)["state"], "stopped", "node1 started svc: {s1}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up_on(lab, "node2") && !up_on(lab, "node1"));
    (stop1.at - cut_at, start2.at - cut_at)
}

/// The wall clock, as the scripts' `date +%s.%N` reads it.
fn log_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[test]
fn lab_witness_node1_cut_off_from_both_stops_the_group_and_node2_takes_it() {
    let lab = started(Guard::Wait);
    let (stopped, started) = node1_cut_off(&lab);
    println!(
        "node1 cut off: it stopped svc {stopped:.3} s after the cut, node2 started it \
         {started:.3} s after ({:.0} ms later)",
        (started - stopped) * 1000.0
    );
    assert!(
        !log(&lab).iter().any(|e| e.what == "fence"),
        "no fencing configured"
    );
}

#[test]
fn lab_witness_node1_cut_off_is_fenced_by_node2_before_it_takes_the_group() {
    let lab = started(Guard::Fencing);
    let (stopped, started) = node1_cut_off(&lab);
    let log = log(&lab);
    let fences: Vec<&Entry> = log.iter().filter(|e| e.what == "fence").collect();
    assert_eq!(fences.len(), 1, "one fence of node1: {log:?}");
    assert_eq!(fences[0].who, "node1", "{log:?}");
    let start2 = last(&log, "start", &ns(&lab, "node2")).expect("node2's start");
    assert!(
        fences[0].at < start2.at,
        "node2 started svc before it fenced node1: {log:?}"
    );
    let journal = lab.log("node2");
    assert!(journal.contains("node1"), "{journal}");
    println!(
        "node1 cut off, with fencing: node1 stopped svc {stopped:.2} s after the cut, node2 \
         fenced it and started svc {started:.2} s after"
    );
}

#[test]
fn lab_witness_only_the_data_nodes_cut_apart_the_group_stays_on_node1() {
    data_nodes_cut_apart(false);
}

/// And the group is not even restarted: node1 keeps the vote, yet it
/// sees node2 dead a moment before the witness's vote shrinks to node1
/// alone; it holds on to what it runs meanwhile (docs/quorum.md).
#[test]
fn lab_witness_only_the_data_nodes_cut_apart_the_group_is_never_stopped() {
    data_nodes_cut_apart(true);
}

/// node1 and node2 cut apart, both reaching the witness: the vote goes to
/// node1 (it was with both, a tie goes to the first node), node2 never
/// starts svc, node1 runs it. `never_stopped`: node1 does not even
/// restart it.
fn data_nodes_cut_apart(never_stopped: bool) {
    let lab = started(Guard::Wait);
    let before = log(&lab).len();
    let cut = Instant::now();
    lab.cut("node1", "node2");
    lab.wait_status(
        "node2",
        SETTLE,
        "node2 to see node1 dead and lose quorum",
        |s| netns::state_of(s, "node1").as_deref() == Some("dead") && s["quorate"] == false,
    );
    let settled = cut.elapsed();
    // node1 may see node2 dead a moment after node2 saw it: until then
    // it is still quorate with the witness's vote for both, which the
    // watch below must not take for the state after the split.
    lab.wait_status(
        "node1",
        SETTLE,
        "node1 to see node2 dead and be quorate with the witness's vote for it alone",
        |s| {
            netns::state_of(s, "node2").as_deref() == Some("dead")
                && names(&s["witness_votes_for"]) == ["node1"]
                && s["quorate"] == true
                && s["witness_vote"] == true
                && group(s)["state"] == "running"
        },
    );
    // Several deadtimes past the split: node2 never starts svc, node1
    // keeps it running and stays quorate with the witness's vote.
    let watch = Instant::now();
    let mut looks = 0;
    while watch.elapsed() < DEADTIME * 4 {
        never_both(&lab);
        let s1 = lab.status("node1").expect("node1");
        let s2 = lab.status("node2").expect("node2");
        assert_eq!(group(&s2)["state"], "stopped", "node2 started svc: {s2}");
        assert_eq!(group(&s1)["state"], "running", "node1 let svc go: {s1}");
        assert_eq!(s1["quorate"], true, "{s1}");
        assert_eq!(s2["quorate"], false, "{s2}");
        looks += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let s1 = lab.status("node1").expect("node1");
    assert_eq!(names(&s1["witness_votes_for"]), ["node1"], "{s1}");
    assert_eq!(names(&s1["partition"]), ["node1"], "{s1}");
    assert_eq!(
        witness_line(&lab, "node2"),
        "witness witness: votes for node1, not counted here"
    );
    let since: Vec<Entry> = log(&lab).into_iter().skip(before).collect();
    let ns2 = ns(&lab, "node2");
    assert!(
        !since.iter().any(|e| e.who == ns2),
        "node2 ran svc: {since:?}"
    );
    let restarts = since.iter().filter(|e| e.what == "stop").count();
    if never_stopped {
        assert!(since.is_empty(), "svc stopped on node1: {since:?}");
    }

    lab.heal("node1", "node2");
    lab.wait_status("node2", SETTLE, "node2 quorate again with node1", |s| {
        s["quorate"] == true && names(&s["partition"]) == ["node1", "node2"]
    });
    let s2 = lab.status("node2").expect("node2");
    assert_eq!(group(&s2)["node"], "node1", "{s2}");
    assert!(up_on(&lab, "node1") && !up_on(&lab, "node2"));
    println!(
        "data nodes cut apart: node2 lost quorum {:.2} s after the cut; svc stayed on node1 \
         ({looks} looks over {:.1} s), restarted there {restarts} time(s) at the split",
        settled.as_secs_f64(),
        (DEADTIME * 4).as_secs_f64()
    );
}

/// node1, running svc, is cut off and its stop of svc hangs: it fences
/// itself before node2, after its wait, starts svc.
#[test]
fn lab_witness_a_node_whose_stop_hangs_fences_itself_before_the_takeover() {
    let mut lab = started(Guard::SelfFence);
    std::fs::write(lab.dir.join("hang-stop"), "").expect("hang-stop");
    let cut_at = log_clock();
    lab.cut("node1", "node2");
    lab.cut("node1", "witness");
    lab.wait_status("node2", SETTLE, "node2 to run svc", |s| {
        group(s)["state"] == "running"
    });
    let log = log(&lab);
    let ns1 = ns(&lab, "node1");
    let fenced = last(&log, "self-fence", &ns1).expect("node1's self-fence in the log");
    let start2 = last(&log, "start", &ns(&lab, "node2")).expect("node2's start");
    assert!(
        fenced.at < start2.at,
        "node2 started before node1 fenced itself: {log:?}"
    );
    assert!(
        last(&log, "stop", &ns1).is_none(),
        "the stop was to hang: {log:?}"
    );
    assert!(!up_on(&lab, "node1"));
    println!(
        "node1's stop hung: it fenced itself {:.2} s after the cut, node2 started svc {:.2} s after",
        fenced.at - cut_at,
        start2.at - cut_at
    );
    // node1 is gone as after a reboot: its duetd too.
    lab.kill("node1");
}
