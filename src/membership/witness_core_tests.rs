//! The membership core with a witness: records 3 and 4 end to end between
//! three cores, time passed in by hand.

use std::time::Duration;

use super::auth::{Auth, AuthAlgorithm};
use super::core::{Action, Input, Member, Membership, Params, Setup};
use super::state::Event;
use super::wire::Codec;
use crate::types::{Incarnation, LinkId, NodeId, Timestamp};

const W: usize = 2;

fn node(local: u16) -> Membership {
    let members = ["node1", "node2", "witness"]
        .iter()
        .map(|n| Member {
            name: n.to_string(),
            votes: 1,
        })
        .collect();
    let setup = Setup {
        params: Params {
            keepalive: Duration::from_millis(200),
            warntime: Duration::from_millis(600),
            deadtime: Duration::from_millis(1000),
            initdead: Duration::from_millis(3000),
            ping_interval: Duration::from_millis(500),
            ping_deadtime: Duration::from_millis(2000),
        },
        members,
        local: NodeId(local),
        incarnation: Incarnation(100 + u64::from(local)),
        links: 1,
        ping_targets: 0,
        witness: Some(NodeId(W as u16)),
        config_digest: None,
        protocol: crate::membership::protocol::Announcement::of_build(),
    };
    let auth = Auth::new(AuthAlgorithm::HmacSha256, b"k".to_vec()).expect("key");
    Membership::new(setup, Codec::new("t".into(), auth), Timestamp::ZERO)
}

/// Runs the three cores in 50 ms steps until `until` ms; `link(a, b)`
/// says whether a's heartbeats reach b. Returns the events per node.
fn run(
    nodes: &mut [Membership],
    from: u64,
    until: u64,
    link: impl Fn(usize, usize) -> bool,
) -> Vec<Vec<Event>> {
    let mut events = vec![Vec::new(); nodes.len()];
    let mut t = from;
    while t <= until {
        let now = Timestamp::from_millis(t);
        let mut sent = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            for a in n.handle(Input::Tick, now) {
                match a {
                    Action::Send { bytes, .. } => sent.push((i, bytes)),
                    Action::Event(e) => events[i].push(e),
                    Action::Ping { .. } => {}
                }
            }
        }
        for (from, bytes) in sent {
            for (to, n) in nodes.iter_mut().enumerate() {
                if to != from && link(from, to) {
                    let input = Input::Datagram {
                        link: LinkId(0),
                        bytes: &bytes,
                    };
                    for a in n.handle(input, now) {
                        if let Action::Event(e) = a {
                            events[to].push(e);
                        }
                    }
                }
            }
        }
        t += 50;
    }
    events
}

#[test]
fn a_split_between_the_data_nodes_leaves_exactly_the_first_quorate() {
    let mut nodes: Vec<Membership> = (0..3).map(node).collect();
    run(&mut nodes, 0, 4000, |_, _| true);
    assert!(nodes[0].quorate() && nodes[1].quorate());
    assert!(nodes[W].quorate(), "the witness grants after its hold");
    let vote = nodes[W].witness_vote().expect("vote");
    assert_eq!(vote.granted, [NodeId(0), NodeId(1)]);
    assert_eq!(nodes[0].partition(), [NodeId(0), NodeId(1)]);

    // node1 and node2 no longer hear each other; both hear the witness.
    let apart = |a: usize, b: usize| a == W || b == W;
    let events = run(&mut nodes, 4050, 6500, apart);
    assert!(nodes[0].quorate(), "node1 keeps the vote");
    assert!(nodes[0].witness_vote_counted());
    assert_eq!(nodes[0].partition(), [NodeId(0)]);
    assert!(!nodes[1].quorate(), "node2 lost quorum");
    assert!(events[1].contains(&Event::Quorum { quorate: false }));
    assert_eq!(
        nodes[W].witness_vote().expect("vote").granted,
        [NodeId(0)],
        "shrunk at once: no withdrawal needed"
    );

    // node1 dies: the vote is withdrawn, then after the hold goes to node2.
    let only_2 = |a: usize, b: usize| a != 0 && b != 0 && (a == W || b == W);
    let events = run(&mut nodes, 6550, 8000, only_2);
    assert!(
        events[W].iter().any(|e| matches!(
            e,
            Event::WitnessVote {
                withdrawn: true,
                ..
            }
        )),
        "{:?}",
        events[W]
    );
    assert!(!nodes[1].quorate(), "not before the hold is over");
    run(&mut nodes, 8050, 10_500, only_2);
    assert!(nodes[1].quorate(), "node2 has the vote after the hold");
    assert_eq!(nodes[W].witness_vote().expect("vote").granted, [NodeId(1)]);

    // Healed: everyone together again, the vote with both.
    run(&mut nodes, 10_550, 13_000, |_, _| true);
    assert!(nodes[0].quorate() && nodes[1].quorate());
    assert_eq!(
        nodes[W].witness_vote().expect("vote").granted,
        [NodeId(0), NodeId(1)]
    );
}

#[test]
fn without_a_witness_heard_a_lone_data_node_is_not_quorate() {
    let mut nodes: Vec<Membership> = (0..3).map(node).collect();
    run(&mut nodes, 0, 4000, |_, _| true);
    // node1 alone: hears nobody.
    run(&mut nodes, 4050, 6000, |a, b| a != 0 && b != 0);
    assert!(!nodes[0].quorate());
    assert!(!nodes[0].witness_vote_counted());
    // node2 and the witness: two of three votes, the vote moved to node2.
    assert!(nodes[1].quorate());
}
