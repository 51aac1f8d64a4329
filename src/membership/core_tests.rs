//! Unit tests of the membership core, with time passed in by hand.

use crate::membership::node_state::{GroupIntent, GroupState, NodeState};
use crate::resources::intent::Intent;
use crate::resources::placement::Phase;
use std::time::Duration;

use super::auth::{Auth, AuthAlgorithm};
use super::core::{Action, Input, Member, Membership, Params, Setup};
use super::state::{Event, LinkState, PeerState, PingTarget};
use super::wire::{Codec, DropReason};
use crate::types::{Incarnation, LinkId, NodeId, Timestamp};

const MS: fn(u64) -> Timestamp = Timestamp::from_millis;

pub(super) fn params() -> Params {
    Params {
        keepalive: Duration::from_millis(200),
        warntime: Duration::from_millis(600),
        deadtime: Duration::from_millis(1000),
        initdead: Duration::from_millis(3000),
        ping_interval: Duration::from_millis(500),
        ping_deadtime: Duration::from_millis(2000),
    }
}

fn codec() -> Codec {
    let auth = Auth::new(AuthAlgorithm::HmacSha256, b"test key".to_vec()).expect("key");
    Codec::new("test".into(), auth)
}

fn node(nodes: usize, local: u16, incarnation: u64, links: usize, pings: usize) -> Membership {
    let members = (0..nodes)
        .map(|i| Member {
            name: format!("node{}", i + 1),
            votes: 1,
        })
        .collect();
    let setup = Setup {
        params: params(),
        members,
        local: NodeId(local),
        incarnation: Incarnation(incarnation),
        links,
        ping_targets: pings,
        witness: None,
        config_digest: None,
        protocol: crate::membership::protocol::Announcement::of_build(),
    };
    Membership::new(setup, codec(), Timestamp::ZERO)
}

/// The heartbeats a node sends at `now`, by link.
fn heartbeats(m: &mut Membership, now: Timestamp) -> Vec<(LinkId, Vec<u8>)> {
    m.handle(Input::Tick, now)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { link, bytes } => Some((link, bytes)),
            _ => None,
        })
        .collect()
}

fn deliver(to: &mut Membership, packets: &[(LinkId, Vec<u8>)], now: Timestamp) -> Vec<Event> {
    let mut events = Vec::new();
    for (link, bytes) in packets {
        let input = Input::Datagram {
            link: *link,
            bytes: bytes.as_slice(),
        };
        events.extend(to.handle(input, now).into_iter().filter_map(event));
    }
    events
}

fn event(a: Action) -> Option<Event> {
    match a {
        Action::Event(e) => Some(e),
        _ => None,
    }
}

fn tick(m: &mut Membership, now: Timestamp) -> Vec<Event> {
    m.handle(Input::Tick, now)
        .into_iter()
        .filter_map(event)
        .collect()
}

fn state(m: &Membership, id: u16) -> PeerState {
    m.view(NodeId(id)).expect("node").state
}

#[test]
fn peer_states_change_at_exactly_the_configured_timings() {
    let mut a = node(2, 0, 1, 1, 0);
    let mut b = node(2, 1, 1, 1, 0);
    let hb = heartbeats(&mut b, MS(0));
    let events = deliver(&mut a, &hb, MS(0));
    assert!(events.contains(&Event::Peer {
        node: NodeId(1),
        from: PeerState::Init,
        to: PeerState::Up
    }));
    tick(&mut a, MS(599));
    assert_eq!(state(&a, 1), PeerState::Up);
    let events = tick(&mut a, MS(600));
    assert_eq!(state(&a, 1), PeerState::Late);
    assert!(events.contains(&Event::Peer {
        node: NodeId(1),
        from: PeerState::Up,
        to: PeerState::Late
    }));
    assert!(tick(&mut a, MS(700)).is_empty(), "Late is reported once");
    tick(&mut a, MS(999));
    assert_eq!(state(&a, 1), PeerState::Late);
    let events = tick(&mut a, MS(1000));
    assert_eq!(state(&a, 1), PeerState::Dead);
    assert!(events.contains(&Event::Peer {
        node: NodeId(1),
        from: PeerState::Late,
        to: PeerState::Dead
    }));
    assert!(events.contains(&Event::Quorum { quorate: false }));
}

#[test]
fn a_late_peer_that_speaks_again_is_up() {
    let mut a = node(2, 0, 1, 1, 0);
    let mut b = node(2, 1, 1, 1, 0);
    deliver(&mut a, &heartbeats(&mut b, MS(0)), MS(0));
    tick(&mut a, MS(700));
    assert_eq!(state(&a, 1), PeerState::Late);
    let events = deliver(&mut a, &heartbeats(&mut b, MS(700)), MS(700));
    assert_eq!(state(&a, 1), PeerState::Up);
    assert!(events.contains(&Event::Peer {
        node: NodeId(1),
        from: PeerState::Late,
        to: PeerState::Up
    }));
}

#[test]
fn a_peer_never_heard_is_dead_at_initdead() {
    let mut a = node(2, 0, 1, 1, 0);
    tick(&mut a, MS(2999));
    assert_eq!(state(&a, 1), PeerState::Init);
    let events = tick(&mut a, MS(3000));
    assert_eq!(state(&a, 1), PeerState::Dead);
    assert!(events.contains(&Event::Peer {
        node: NodeId(1),
        from: PeerState::Init,
        to: PeerState::Dead
    }));
}

#[test]
fn next_wakeup_names_the_next_threshold() {
    let mut a = node(2, 0, 1, 1, 0);
    let mut b = node(2, 1, 1, 1, 0);
    deliver(&mut a, &heartbeats(&mut b, MS(0)), MS(0));
    // Heartbeat due at keepalive.
    assert_eq!(a.next_wakeup(), MS(200));
    tick(&mut a, MS(590));
    assert_eq!(a.next_wakeup(), MS(600), "warntime of the peer");
    tick(&mut a, MS(600));
    assert_eq!(a.next_wakeup(), MS(790), "next heartbeat");
    tick(&mut a, MS(990));
    assert_eq!(a.next_wakeup(), MS(1000), "deadtime of the peer");
}

#[test]
fn heartbeats_go_out_every_keepalive_on_every_link() {
    let mut a = node(2, 0, 1, 2, 0);
    let sent = heartbeats(&mut a, MS(0));
    assert_eq!(
        sent.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [LinkId(0), LinkId(1)]
    );
    assert!(heartbeats(&mut a, MS(199)).is_empty());
    assert_eq!(heartbeats(&mut a, MS(200)).len(), 2);
    a.handle(
        Input::LocalLink {
            link: LinkId(1),
            up: false,
        },
        MS(250),
    );
    // Even on a link whose interface looks down: the flag may lag.
    let sent = heartbeats(&mut a, MS(400));
    assert_eq!(
        sent.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [LinkId(0), LinkId(1)]
    );
}

#[test]
fn a_cut_link_is_reported_while_the_peer_stays_up() {
    let mut a = node(2, 0, 1, 2, 0);
    let mut b = node(2, 1, 1, 2, 0);
    deliver(&mut a, &heartbeats(&mut b, MS(0)), MS(0));
    assert_eq!(a.view(NodeId(1)).expect("view").links, [LinkState::Up; 2]);
    let mut t = 0;
    let mut events = Vec::new();
    while t < 2000 {
        t += 200;
        let only_link0: Vec<_> = heartbeats(&mut b, MS(t))
            .into_iter()
            .filter(|(l, _)| *l == LinkId(0))
            .collect();
        events.extend(deliver(&mut a, &only_link0, MS(t)));
        events.extend(tick(&mut a, MS(t)));
    }
    let view = a.view(NodeId(1)).expect("view");
    assert_eq!(view.state, PeerState::Up);
    assert_eq!(view.links, [LinkState::Up, LinkState::Down]);
    assert!(events.contains(&Event::PeerLink {
        node: NodeId(1),
        link: LinkId(1),
        from: LinkState::Up,
        to: LinkState::Down
    }));
    assert!(!events.iter().any(|e| matches!(e, Event::Peer { .. })));
}

#[test]
fn our_own_link_going_down_marks_every_peer_link_down_at_once() {
    let mut a = node(3, 0, 1, 2, 0);
    let mut b = node(3, 1, 1, 2, 0);
    deliver(&mut a, &heartbeats(&mut b, MS(0)), MS(0));
    let events: Vec<_> = a
        .handle(
            Input::LocalLink {
                link: LinkId(0),
                up: false,
            },
            MS(10),
        )
        .into_iter()
        .filter_map(event)
        .collect();
    assert!(events.contains(&Event::PeerLink {
        node: NodeId(1),
        link: LinkId(0),
        from: LinkState::Up,
        to: LinkState::Down
    }));
    assert_eq!(a.view(NodeId(0)).expect("self").links[0], LinkState::Down);
}

#[test]
fn a_restart_is_a_new_incarnation_and_the_old_one_is_refused() {
    let mut a = node(2, 0, 1, 1, 0);
    let mut b1 = node(2, 1, 100, 1, 0);
    let old = heartbeats(&mut b1, MS(0));
    deliver(&mut a, &old, MS(0));
    let mut b2 = node(2, 1, 200, 1, 0);
    let events = deliver(&mut a, &heartbeats(&mut b2, MS(100)), MS(100));
    assert!(events.contains(&Event::Incarnation {
        node: NodeId(1),
        previous: Some(Incarnation(100)),
        current: Incarnation(200)
    }));
    // A later packet of the old run (or a replay of one) is refused.
    let later_old = heartbeats(&mut b1, MS(200));
    let events = deliver(&mut a, &later_old, MS(200));
    assert_eq!(
        events,
        [Event::Dropped {
            link: LinkId(0),
            reason: DropReason::Replay
        }]
    );
    assert_eq!(
        a.view(NodeId(1)).expect("view").incarnation,
        Some(Incarnation(200))
    );
}

#[test]
fn a_replayed_packet_is_dropped_and_counted() {
    let mut a = node(2, 0, 1, 1, 0);
    let mut b = node(2, 1, 1, 1, 0);
    let hb = heartbeats(&mut b, MS(0));
    deliver(&mut a, &hb, MS(0));
    tick(&mut a, MS(900));
    let events = deliver(&mut a, &hb, MS(900));
    assert!(events.contains(&Event::Dropped {
        link: LinkId(0),
        reason: DropReason::Replay
    }));
    assert_eq!(a.drops().get(&DropReason::Replay), Some(&1));
    // The replay did not refresh the peer: it dies on schedule.
    tick(&mut a, MS(1000));
    assert_eq!(state(&a, 1), PeerState::Dead);
}

#[test]
fn garbage_and_foreign_packets_are_dropped_with_their_reason() {
    let mut a = node(2, 0, 1, 1, 0);
    let events = deliver(&mut a, &[(LinkId(0), b"hello".to_vec())], MS(0));
    assert!(matches!(events[..], [Event::Dropped { .. }]));
    // Same key and cluster, but a node name the config does not know.
    let mut stranger = node(3, 2, 1, 1, 0);
    let events = deliver(&mut a, &heartbeats(&mut stranger, MS(0)), MS(0));
    assert_eq!(
        events,
        [Event::Dropped {
            link: LinkId(0),
            reason: DropReason::UnknownNode
        }]
    );
    // Signed with another key.
    let other_key = Auth::new(AuthAlgorithm::HmacSha256, b"other".to_vec()).expect("key");
    let setup = Setup {
        params: params(),
        members: vec![
            Member {
                name: "node1".into(),
                votes: 1,
            },
            Member {
                name: "node2".into(),
                votes: 1,
            },
        ],
        local: NodeId(1),
        incarnation: Incarnation(1),
        links: 1,
        ping_targets: 0,
        witness: None,
        config_digest: None,
        protocol: crate::membership::protocol::Announcement::of_build(),
    };
    let mut wrong = Membership::new(setup, Codec::new("test".into(), other_key), MS(0));
    let events = deliver(&mut a, &heartbeats(&mut wrong, MS(0)), MS(0));
    assert_eq!(
        events,
        [Event::Dropped {
            link: LinkId(0),
            reason: DropReason::BadSignature
        }]
    );
    assert_eq!(state(&a, 1), PeerState::Init);
}

#[test]
fn our_own_looped_back_broadcast_is_ignored() {
    let mut a = node(2, 0, 1, 1, 0);
    let own = heartbeats(&mut a, MS(0));
    assert!(deliver(&mut a, &own, MS(0)).is_empty());
    let mut twin = node(2, 0, 2, 1, 0);
    let events = deliver(&mut a, &heartbeats(&mut twin, MS(0)), MS(0));
    assert_eq!(
        events,
        [Event::NameConflict {
            link: LinkId(0),
            incarnation: Incarnation(2)
        }]
    );
}

/// Quorum for `n` nodes of one vote each when `alive` of them (ourselves
/// included) are up and hear each other. Two rounds: with three nodes or
/// more, each must also have heard whom the others see.
fn quorate_with(n: usize, alive: usize) -> bool {
    let mut nodes: Vec<_> = (0..alive).map(|i| node(n, i as u16, 1, 1, 0)).collect();
    for round in 0..2 {
        let t = MS(200 * round);
        let sent: Vec<_> = nodes.iter_mut().map(|m| heartbeats(m, t)).collect();
        for (i, m) in nodes.iter_mut().enumerate() {
            for (j, packets) in sent.iter().enumerate() {
                if i != j {
                    deliver(m, packets, t);
                }
            }
        }
    }
    nodes[0].quorate()
}

#[test]
fn quorum_is_a_strict_majority_of_votes() {
    assert!(quorate_with(2, 2));
    assert!(!quorate_with(2, 1));
    assert!(quorate_with(3, 2));
    assert!(!quorate_with(3, 1));
    assert!(quorate_with(5, 3));
    assert!(!quorate_with(5, 2));
    assert!(quorate_with(5, 5));
}

#[test]
fn a_single_node_cluster_is_quorate() {
    let a = node(1, 0, 1, 1, 0);
    assert!(a.quorate());
}

#[test]
fn ping_nodes_are_pinged_and_time_out() {
    let mut a = node(2, 0, 1, 1, 1);
    let pings = |acts: Vec<Action>| {
        acts.into_iter()
            .filter(|a| matches!(a, Action::Ping { .. }))
            .count()
    };
    assert_eq!(pings(a.handle(Input::Tick, MS(0))), 1);
    assert_eq!(pings(a.handle(Input::Tick, MS(499))), 0);
    assert_eq!(pings(a.handle(Input::Tick, MS(500))), 1);
    let target = PingTarget(0);
    let events: Vec<_> = a
        .handle(Input::PingReply { target }, MS(510))
        .into_iter()
        .filter_map(event)
        .collect();
    assert!(events.contains(&Event::Ping {
        target,
        reachable: true
    }));
    assert_eq!(a.ping_reachable(), 1);
    tick(&mut a, MS(2509));
    assert_eq!(a.ping_target_reachable(target), Some(true));
    let events = tick(&mut a, MS(2510));
    assert!(events.contains(&Event::Ping {
        target,
        reachable: false
    }));
    assert_eq!(a.ping_reachable(), 0);
}

#[test]
fn peers_see_each_others_ping_health() {
    let mut a = node(2, 0, 1, 1, 1);
    let mut b = node(2, 1, 1, 1, 1);
    b.handle(
        Input::PingReply {
            target: PingTarget(0),
        },
        MS(0),
    );
    let events = deliver(&mut a, &heartbeats(&mut b, MS(200)), MS(200));
    assert!(events.contains(&Event::PeerPing {
        node: NodeId(1),
        reachable: 1
    }));
    assert_eq!(a.view(NodeId(1)).expect("view").ping_reachable, 1);
}

fn announced(standby: bool, phase: Phase) -> NodeState {
    NodeState {
        seq: 0,
        standby,
        groups: vec![GroupState {
            name: "web".into(),
            phase,
            eligible: true,
            running: phase == Phase::Active,
            behind: false,
        }],
        intents: Vec::new(),
    }
}

/// Announces `state` at `now`: the heartbeats it sends at once.
fn announce(m: &mut Membership, state: NodeState, now: Timestamp) -> Vec<(LinkId, Vec<u8>)> {
    m.handle(Input::LocalState(state), now)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { link, bytes } => Some((link, bytes)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_local_state_goes_out_at_once_and_peers_keep_the_newest() {
    let mut a = node(2, 0, 1, 2, 0);
    let mut b = node(2, 1, 1, 2, 0);
    heartbeats(&mut b, MS(0));
    // Between keepalives: sent at once, on every link.
    let first = announce(&mut b, announced(false, Phase::Claiming), MS(50));
    assert_eq!(
        first.len(),
        2,
        "on every link, without waiting for keepalive"
    );
    let events = deliver(&mut a, &first, MS(51));
    assert!(events.contains(&Event::PeerState { node: NodeId(1) }));
    let seen = a.view(NodeId(1)).and_then(|v| v.node_state);
    assert_eq!(
        seen.as_ref().map(|s| (s.seq, s.groups[0].phase)),
        Some((1, Phase::Claiming))
    );

    // The same state again is no change; a new one is numbered 2.
    assert!(announce(&mut b, announced(false, Phase::Claiming), MS(60)).is_empty());
    let second = announce(&mut b, announced(false, Phase::Active), MS(70));
    // The newer state arrives on one link, the older copy late on the other.
    deliver(&mut a, &second[..1], MS(71));
    deliver(&mut a, &first[1..], MS(72));
    let seen = a.view(NodeId(1)).and_then(|v| v.node_state);
    assert_eq!(
        seen.map(|s| (s.seq, s.groups[0].phase)),
        Some((2, Phase::Active)),
        "the older one is ignored"
    );

    // A new wish alone (the groups' phases unchanged) is a change too.
    let mut wished = announced(false, Phase::Active);
    wished.intents = vec![GroupIntent {
        name: "web".into(),
        intent: Intent::default().next(NodeId(1), true, None),
    }];
    let third = announce(&mut b, wished, MS(80));
    deliver(&mut a, &third, MS(81));
    let seen = a.view(NodeId(1)).and_then(|v| v.node_state);
    assert_eq!(seen.map(|s| (s.seq, s.intents.len())), Some((3, 1)));

    // A restart forgets what the old incarnation said.
    let mut b2 = node(2, 1, 2, 2, 0);
    deliver(&mut a, &heartbeats(&mut b2, MS(100)), MS(100));
    assert_eq!(a.view(NodeId(1)).and_then(|v| v.node_state), None);
}
