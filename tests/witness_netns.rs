//! Three real duetd in network namespaces: node1 and node2 hold the data,
//! the third is the witness. Both links between node1 and node2 are cut
//! while both still reach the witness: exactly one keeps quorum (node1: the
//! vote was with both, and a tie goes to the lowest node), then healing
//! makes both quorate again. Needs root.

mod netns;

use std::process::Command;
use std::time::{Duration, Instant};

use netns::{Lab, WITNESS_NODES as NAMES, state_of, witness_config as config};

const DEADTIME: Duration = Duration::from_secs(1);
const INITDEAD: Duration = Duration::from_secs(4);
/// The witness waits twice the deadtime before its first grant.
const HOLD: Duration = Duration::from_secs(2);
/// Seeing the peer dead, the vote settling (moving it would wait a hold)
/// and polling slack.
const SETTLE: Duration = Duration::from_secs(6);

fn quorate(lab: &Lab, node: &str) -> Option<bool> {
    lab.status(node)?["quorate"].as_bool()
}

#[test]
fn lab_witness_keeps_exactly_one_side_quorate_when_the_data_nodes_split() {
    let mut lab = Lab::named(&NAMES, &config());
    for n in NAMES {
        lab.start(n);
    }
    for (observer, peers) in [
        ("node1", ["node2", "witness"]),
        ("node2", ["node1", "witness"]),
    ] {
        let what = format!("{observer} to see {peers:?} up, quorate");
        lab.wait_status(observer, INITDEAD, &what, |s| {
            peers
                .iter()
                .all(|p| state_of(s, p).as_deref() == Some("up"))
                && s["quorate"] == true
        });
    }
    // The witness has granted its vote once its start-up hold is over.
    lab.wait_status("witness", HOLD + INITDEAD, "the witness to vote", |s| {
        s["quorate"] == true && s["replicas"].as_array().is_some_and(|r| r.is_empty())
    });

    lab.cut("node1", "node2");
    let cut_at = Instant::now();
    for (observer, peer) in [("node1", "node2"), ("node2", "node1")] {
        lab.wait_status(
            observer,
            DEADTIME * 3,
            &format!("{observer} to see {peer} dead"),
            |s| state_of(s, peer).as_deref() == Some("dead"),
        );
    }
    lab.wait_status("node2", SETTLE, "node2 to lose quorum", |s| {
        s["quorate"] == false
    });
    println!(
        "split settled {} ms after the cut",
        cut_at.elapsed().as_millis()
    );
    // Every poll for several deadtimes: node1 alone is quorate, both
    // still hear the witness, and they do not hear each other.
    let watch = Instant::now();
    let mut polls = 0;
    while watch.elapsed() < DEADTIME * 4 {
        let s1 = lab.status("node1").expect("node1 answers");
        let s2 = lab.status("node2").expect("node2 answers");
        assert_eq!(s1["quorate"], true, "node1: {s1}");
        assert_eq!(s2["quorate"], false, "node2: {s2}");
        assert_eq!(state_of(&s1, "witness").as_deref(), Some("up"), "{s1}");
        assert_eq!(state_of(&s2, "witness").as_deref(), Some("up"), "{s2}");
        assert_eq!(state_of(&s1, "node2").as_deref(), Some("dead"), "{s1}");
        polls += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(polls > 10);
    let log = lab.log("witness");
    assert!(log.contains("witness vote goes to node1"), "{log}");

    lab.heal("node1", "node2");
    for (observer, peer) in [("node1", "node2"), ("node2", "node1")] {
        lab.wait_status(
            observer,
            SETTLE,
            &format!("{observer} to see {peer} up again, quorate"),
            |s| state_of(s, peer).as_deref() == Some("up") && s["quorate"] == true,
        );
    }
    assert_eq!(quorate(&lab, "node1"), Some(true));
}

#[test]
fn lab_duetd_witness_refuses_a_node_that_is_not_the_witness() {
    let lab = Lab::new();
    lab.keygen("duet.key");
    let config = lab.write("duet.toml", &config());
    let out = Command::new(netns::DUETD)
        .arg("--config")
        .arg(&config)
        .args(["--node", "node1", "--witness"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/duet-bus")
        .output()
        .expect("run duetd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node node1 is not the witness"),
        "duetd said: {err}"
    );
}
