//! The membership core across builds: protocol announcements (record 7),
//! round trips from echoes (record 8), and the lost and late counts.

use std::time::Duration;

use super::auth::{Auth, AuthAlgorithm};
use super::core::{Action, Input, Member, Membership, Setup};
use super::protocol::{Announcement, ProtocolRange};
use super::state::Event;
use super::wire::Codec;
use crate::types::{Incarnation, LinkId, NodeId, Timestamp};

const MS: fn(u64) -> Timestamp = Timestamp::from_millis;

fn node(local: u16, speaks: ProtocolRange) -> Membership {
    let setup = Setup {
        params: super::core_tests::params(),
        members: (1..=2)
            .map(|i| Member {
                name: format!("node{i}"),
                votes: 1,
            })
            .collect(),
        local: NodeId(local),
        incarnation: Incarnation(1),
        links: 1,
        ping_targets: 0,
        witness: None,
        config_digest: None,
        protocol: Announcement {
            range: speaks,
            software: format!("test-{speaks}"),
        },
    };
    let auth = Auth::new(AuthAlgorithm::HmacSha256, b"test key".to_vec()).expect("key");
    Membership::new(setup, Codec::new("test".into(), auth), Timestamp::ZERO)
}

/// A node and what it sent and has not been delivered yet.
struct Node {
    core: Membership,
    outbox: Vec<Vec<u8>>,
    events: Vec<Event>,
}

impl Node {
    fn new(local: u16, speaks: ProtocolRange) -> Node {
        Node {
            core: node(local, speaks),
            outbox: Vec::new(),
            events: Vec::new(),
        }
    }

    fn step(&mut self, input: Input<'_>, now: Timestamp) {
        for a in self.core.handle(input, now) {
            match a {
                Action::Send { bytes, .. } => self.outbox.push(bytes),
                Action::Event(e) => self.events.push(e),
                Action::Ping { .. } => {}
            }
        }
    }

    fn tick(&mut self, now: Timestamp) {
        self.step(Input::Tick, now);
    }

    /// Hands over everything `from` sent, at `now`; the events it caused.
    fn take(&mut self, from: &mut Node, now: Timestamp) -> Vec<Event> {
        self.events.clear();
        for bytes in std::mem::take(&mut from.outbox) {
            let input = Input::Datagram {
                link: LinkId(0),
                bytes: &bytes,
            };
            self.step(input, now);
        }
        std::mem::take(&mut self.events)
    }

    fn view(&self, id: u16) -> super::core::NodeView {
        self.core.view(NodeId(id)).expect("view")
    }
}

fn protocol_events(events: &[Event]) -> Vec<(Announcement, Option<u16>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Protocol {
                announced, common, ..
            } => Some((announced.clone(), *common)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_announces_what_it_speaks_and_a_first_build_announces_nothing() {
    let mut new = Node::new(0, ProtocolRange::BUILD);
    let mut old = Node::new(1, ProtocolRange::FIRST);
    new.tick(MS(0));
    old.tick(MS(0));
    let first = Announcement {
        range: ProtocolRange::FIRST,
        software: String::new(),
    };
    assert_eq!(
        protocol_events(&new.take(&mut old, MS(1))),
        vec![(first.clone(), Some(1))]
    );
    assert_eq!(new.view(1).protocol, Some(first));
    let built = Announcement {
        range: ProtocolRange::BUILD,
        software: format!("test-{}", ProtocolRange::BUILD),
    };
    assert_eq!(
        protocol_events(&old.take(&mut new, MS(1))),
        vec![(built, Some(1))]
    );
    // Said once, not at every heartbeat.
    old.tick(MS(200));
    assert!(protocol_events(&new.take(&mut old, MS(201))).is_empty());
}

#[test]
fn a_first_build_sends_exactly_what_it_always_sent() {
    let mut old = Node::new(1, ProtocolRange::FIRST);
    let mut new = Node::new(0, ProtocolRange::BUILD);
    new.tick(MS(0));
    old.tick(MS(0));
    old.take(&mut new, MS(1));
    old.outbox.clear();
    old.tick(MS(200));
    // No extension records at all: the 2-byte extension length before
    // the 32-byte tag is 0.
    let p = &old.outbox[0];
    assert_eq!(&p[p.len() - 34..p.len() - 32], &[0, 0]);
}

#[test]
fn no_version_in_common_is_reported_and_the_node_still_counts_alive() {
    let mut new = Node::new(0, ProtocolRange { min: 2, max: 3 });
    let mut old = Node::new(1, ProtocolRange::FIRST);
    old.tick(MS(0));
    let events = new.take(&mut old, MS(1));
    assert_eq!(protocol_events(&events)[0].1, None);
    assert!(new.view(1).state.is_alive());
}

/// a (this build) and b (speaking `b_speaks`): a's heartbeat takes 3 ms
/// to b; b's next, 200 ms after its first, takes 4 ms back, so a's round
/// trip is 7 ms where b echoes.
fn round_trip(b_speaks: ProtocolRange) -> (Node, Node) {
    let mut a = Node::new(0, ProtocolRange::BUILD);
    let mut b = Node::new(1, b_speaks);
    b.tick(MS(0));
    b.outbox.clear();
    a.tick(MS(50));
    b.take(&mut a, MS(53));
    b.tick(MS(200));
    a.take(&mut b, MS(204));
    (a, b)
}

#[test]
fn echoes_give_the_round_trip_less_the_time_the_peer_held_it() {
    let (a, b) = round_trip(ProtocolRange::BUILD);
    assert_eq!(a.view(1).rtt, vec![Some(Duration::from_millis(7))]);
    // b heard nothing echoed yet.
    assert_eq!(b.view(0).rtt, vec![None]);
    // A first build echoes nothing: no round trip, no error.
    let (c, _) = round_trip(ProtocolRange::FIRST);
    assert_eq!(c.view(1).rtt, vec![None]);
}

#[test]
fn gaps_in_the_sequence_count_as_lost_and_each_late_spell_once() {
    let mut a = Node::new(0, ProtocolRange::BUILD);
    let mut b = Node::new(1, ProtocolRange::BUILD);
    b.tick(MS(0));
    a.take(&mut b, MS(0));
    // Three heartbeats of b never arrive.
    for t in [200, 400, 600] {
        b.tick(MS(t));
    }
    b.outbox.clear();
    a.tick(MS(700));
    b.tick(MS(800));
    a.take(&mut b, MS(800));
    let view = a.view(1);
    assert_eq!((view.lost, view.late), (3, 1));
}

#[test]
fn a_heartbeat_arriving_late_is_not_lost_after_all() {
    let mut a = Node::new(0, ProtocolRange::BUILD);
    let mut b = Node::new(1, ProtocolRange::BUILD);
    b.tick(MS(0));
    a.take(&mut b, MS(0));
    b.tick(MS(200));
    let late = b.outbox.pop().expect("heartbeat 2");
    b.tick(MS(400));
    a.take(&mut b, MS(400));
    assert_eq!(a.view(1).lost, 1);
    a.step(
        Input::Datagram {
            link: LinkId(0),
            bytes: &late,
        },
        MS(401),
    );
    assert_eq!(a.view(1).lost, 0);
}

#[test]
fn a_round_trip_goes_with_its_link() {
    let (mut a, _) = round_trip(ProtocolRange::BUILD);
    assert!(a.view(1).rtt[0].is_some());
    // Nothing from b for deadtime: the link is down, its round trip gone.
    a.tick(MS(1300));
    assert_eq!(a.view(1).rtt, vec![None]);
}
