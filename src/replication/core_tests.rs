//! Unit tests of single rules; tests/replication_sim.rs drives two cores
//! through crashes and cuts.

use std::time::Duration;

use super::*;
use crate::replication::metadata::FLAG_CONSISTENT;

const SIZE: u64 = 64 << 20;

fn settings(protocol: Protocol) -> Settings {
    Settings {
        local: NodeId(0),
        peer: NodeId(1),
        local_name: "node1".into(),
        peer_name: "node2".into(),
        protocol,
        policies: Policies::default(),
        detach_on_error: true,
        size: SIZE,
        granularity: 4096,
        timeout: Duration::from_secs(5),
        rate_min: 1 << 20,
        rate_max: 1 << 30,
        fill_target: 4 << 20,
        al_capacity: 16,
    }
}

fn gens(current: u64) -> Generations {
    Generations {
        current: Generation(current),
        ..Generations::default()
    }
}

fn up_to_date(protocol: Protocol) -> Replica {
    let a = Attached {
        generations: gens(7),
        flags: FLAG_CONSISTENT,
        bitmap: DirtyBitmap::new(SIZE, 4096),
        al_extents: Vec::new(),
        al_seq: 0,
    };
    Replica::new(settings(protocol), Some(a), 1)
}

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn peer_state(role: Role, disk: DiskState) -> PeerState {
    PeerState {
        generations: gens(7),
        role,
        disk,
        size: SIZE,
        granularity: 4096,
        dirty_blocks: 0,
        primary_since: 0,
        discard_my_data: false,
        crashed_primary: false,
    }
}

/// Connected to an UpToDate peer with the same generation.
fn connected(protocol: Protocol, peer_role: Role) -> Replica {
    let mut r = up_to_date(protocol);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let msg = Msg::Hello(peer_state(peer_role, DiskState::UpToDate));
    r.on(
        Input::Received {
            msg,
            payload: false,
        },
        t(1),
    );
    assert_eq!(r.replication(), Replication::Established);
    r
}

/// Meta writes done (promotion writes the superblock before any data).
fn settle(r: &mut Replica, actions: Vec<Action>) -> Vec<Action> {
    let mut out = Vec::new();
    for a in actions {
        if let Action::Meta { token, .. } = a {
            out.extend(settle_one(r, token));
        } else {
            out.push(a);
        }
    }
    out
}

fn settle_one(r: &mut Replica, token: u64) -> Vec<Action> {
    let more = r.on(Input::MetaDone { token, ok: true }, t(2));
    settle(r, more)
}

fn completed(actions: &[Action]) -> Option<bool> {
    actions.iter().find_map(|a| match a {
        Action::Complete { ok, .. } => Some(*ok),
        _ => None,
    })
}

fn write(r: &mut Replica) -> Vec<Action> {
    let a = r.on(
        Input::Write {
            req: ReqId(1),
            offset: 8192,
            len: 4096,
            fua: false,
        },
        t(3),
    );
    settle(r, a)
}

fn sent_seq(actions: &[Action]) -> u64 {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send {
                msg: Msg::Data { seq, .. },
                ..
            } => Some(*seq),
            _ => None,
        })
        .expect("the write is mirrored")
}

/// The peer acknowledges write `seq` at `ms`.
fn ack(r: &mut Replica, seq: u64, kind: AckKind, ms: u64) -> Vec<Action> {
    let msg = Msg::Ack {
        seq,
        kind,
        ok: true,
    };
    r.on(
        Input::Received {
            msg,
            payload: false,
        },
        t(ms),
    )
}

fn promoted(protocol: Protocol) -> Replica {
    let mut r = connected(protocol, Role::Secondary);
    let a = r.primary(false, 1, t(2)).expect("promote");
    settle(&mut r, a);
    r
}

#[test]
fn each_protocol_answers_at_its_point() {
    for (protocol, answered_after) in [
        (Protocol::A, "local"),
        (Protocol::B, "received"),
        (Protocol::C, "written"),
    ] {
        let mut r = promoted(protocol);
        let a = write(&mut r);
        let seq = sent_seq(&a);
        let a = r.on(
            Input::Written {
                buf: Buf::App(ReqId(1)),
                ok: true,
            },
            t(4),
        );
        assert_eq!(
            completed(&a).is_some(),
            answered_after == "local",
            "{protocol:?}"
        );
        let a = ack(&mut r, seq, AckKind::Received, 5);
        assert_eq!(
            completed(&a).is_some(),
            answered_after == "received",
            "{protocol:?}"
        );
        let a = ack(&mut r, seq, AckKind::Written, 6);
        assert_eq!(
            completed(&a).is_some(),
            answered_after == "written",
            "{protocol:?}"
        );
        assert_eq!(r.out_of_sync_bytes(), 0);
    }
}

#[test]
fn a_write_the_peer_never_confirmed_is_marked_and_starts_a_generation() {
    let mut r = promoted(Protocol::C);
    let a = write(&mut r);
    sent_seq(&a);
    r.on(
        Input::Written {
            buf: Buf::App(ReqId(1)),
            ok: true,
        },
        t(4),
    );
    let a = r.on(Input::TransportDown, t(5));
    // Answered only once the mark is on disk.
    assert_eq!(completed(&a), None);
    let a = settle(&mut r, a);
    assert_eq!(completed(&a), Some(true));
    assert_eq!(r.out_of_sync_bytes(), 4096);
    assert_eq!(r.generations().bitmap, Generation(7));
    assert_ne!(r.generations().current, Generation(7));
}

#[test]
fn primary_needs_an_up_to_date_disk_or_force() {
    let mut r = Replica::new(
        settings(Protocol::C),
        Some(Attached {
            generations: Generations::fresh(),
            flags: 0,
            bitmap: DirtyBitmap::new(SIZE, 4096),
            al_extents: Vec::new(),
            al_seq: 0,
        }),
        1,
    );
    let err = r.primary(false, 1, t(1)).expect_err("inconsistent");
    assert!(err.contains("Inconsistent"), "{err}");
    assert_eq!(r.role(), Role::Secondary);
    r.primary(true, 1, t(1)).expect("forced");
    assert_eq!((r.role(), r.disk()), (Role::Primary, DiskState::UpToDate));
    // Everything is the peer's to receive.
    assert_eq!(r.out_of_sync_bytes(), SIZE);
}

#[test]
fn never_two_primaries() {
    let mut r = connected(Protocol::C, Role::Primary);
    let err = r.primary(true, 1, t(2)).expect_err("peer is primary");
    assert!(err.contains("never two primaries"), "{err}");
    assert_eq!(r.role(), Role::Secondary);
}

#[test]
fn a_secondary_refuses_client_io() {
    let mut r = connected(Protocol::C, Role::Primary);
    let a = write(&mut r);
    assert_eq!(completed(&a), Some(false));
    assert!(!a.iter().any(|a| matches!(a, Action::Write { .. })));
}

#[test]
fn out_of_range_writes_fail_without_touching_the_disk() {
    let mut r = promoted(Protocol::C);
    let a = r.on(
        Input::Write {
            req: ReqId(9),
            offset: SIZE - 512,
            len: 4096,
            fua: false,
        },
        t(3),
    );
    assert_eq!(completed(&a), Some(false));
    assert!(!a.iter().any(|a| matches!(a, Action::Write { .. })));
}

#[test]
fn a_silent_peer_is_dropped_after_the_timeout() {
    let mut r = connected(Protocol::C, Role::Secondary);
    let a = r.on(Input::Tick, t(1) + Duration::from_secs(6));
    assert!(a.iter().any(|a| matches!(a, Action::Drop { .. })));
    assert_eq!(r.connection(), Connection::Connecting);
}

#[test]
fn split_brain_with_both_discarding_is_left_to_the_administrator() {
    let mut r = up_to_date(Protocol::C);
    // This side wrote apart: its bitmap is based on generation 5.
    r.gens = Generations {
        current: Generation(7),
        bitmap: Generation(5),
        history: [Generation::NONE; 2],
    };
    r.connect(true).expect("connect");
    r.on(Input::TransportUp, t(1));
    let mut p = peer_state(Role::Secondary, DiskState::UpToDate);
    p.generations = Generations {
        current: Generation(8),
        bitmap: Generation(5),
        history: [Generation::NONE; 2],
    };
    p.discard_my_data = true;
    let a = r.on(
        Input::Received {
            msg: Msg::Hello(p),
            payload: false,
        },
        t(1),
    );
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Event(Event::SplitBrain { .. })))
    );
    assert_eq!(r.connection(), Connection::StandAlone);
}

#[test]
fn a_paused_sync_sends_nothing_until_resumed() {
    // Connected to a fresh peer: a full sync to send, with no limit on
    // what is in flight (no read completes in this test).
    let mut s = settings(Protocol::C);
    s.fill_target = SIZE;
    let a = Attached {
        generations: gens(7),
        flags: FLAG_CONSISTENT,
        bitmap: DirtyBitmap::new(SIZE, 4096),
        al_extents: Vec::new(),
        al_seq: 0,
    };
    let mut r = Replica::new(s, Some(a), 1);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let mut p = peer_state(Role::Secondary, DiskState::Inconsistent);
    p.generations = Generations::fresh();
    let msg = Msg::Hello(p);
    r.on(
        Input::Received {
            msg,
            payload: false,
        },
        t(1),
    );
    let last = Msg::Bitmap {
        first_word: 0,
        words: Vec::new(),
        last: true,
    };
    let reads = |a: &[Action]| {
        a.iter()
            .filter(|a| matches!(a, Action::Read { .. }))
            .count()
    };
    let mut started = reads(&r.on(
        Input::Received {
            msg: last,
            payload: false,
        },
        t(2),
    ));
    assert_eq!(r.replication(), Replication::SyncSource);
    // The token bucket fills as time passes.
    for ms in 3..20 {
        started += reads(&r.on(Input::Tick, t(ms)));
    }
    assert!(started > 0, "the sync starts reading");
    r.pause_sync().expect("pause");
    assert_eq!(r.replication(), Replication::PausedSync);
    for ms in 20..60 {
        assert_eq!(reads(&r.on(Input::Tick, t(ms))), 0, "paused, yet reading");
    }
    r.resume_sync(t(60)).expect("resume");
    assert_eq!(r.replication(), Replication::SyncSource);
    let resumed: usize = (61..80).map(|ms| reads(&r.on(Input::Tick, t(ms)))).sum();
    assert!(resumed > 0, "resumed, yet not reading");
    assert!(r.resume_sync(t(61)).is_err(), "nothing paused any more");
}

/// Two cores wired to each other: messages arrive in order, and every
/// disk operation succeeds at once (the data itself is the shell's, not
/// modelled here: the states, bitmaps and metadata writes are what is
/// tested).
struct Pair {
    r: [Replica; 2],
    queue: std::collections::VecDeque<(usize, Input)>,
    ms: u64,
    /// Every action each side took, in order.
    log: [Vec<Action>; 2],
}

impl Pair {
    /// Both UpToDate in generation 7, connected and established.
    fn connected() -> Pair {
        let mut s1 = settings(Protocol::C);
        std::mem::swap(&mut s1.local, &mut s1.peer);
        std::mem::swap(&mut s1.local_name, &mut s1.peer_name);
        let attached = || Attached {
            generations: gens(7),
            flags: FLAG_CONSISTENT,
            bitmap: DirtyBitmap::new(SIZE, 4096),
            al_extents: Vec::new(),
            al_seq: 0,
        };
        let mut p = Pair {
            r: [
                Replica::new(settings(Protocol::C), Some(attached()), 1),
                Replica::new(s1, Some(attached()), 2),
            ],
            queue: Default::default(),
            ms: 1,
            log: [Vec::new(), Vec::new()],
        };
        for n in 0..2 {
            p.r[n].connect(false).expect("connect");
            p.feed(n, Input::TransportUp);
        }
        p.settle(|p| (0..2).all(|n| p.r[n].replication() == Replication::Established));
        p
    }

    fn now(&self) -> Timestamp {
        t(self.ms)
    }

    fn feed(&mut self, n: usize, input: Input) {
        let a = self.r[n].on(input, self.now());
        self.apply(n, a);
    }

    /// Carries out what side `n` asked for: sends go to the other side,
    /// disk operations complete.
    fn apply(&mut self, n: usize, actions: Vec<Action>) {
        for a in &actions {
            let next = match a {
                Action::Send { msg, payload } => Some((
                    1 - n,
                    Input::Received {
                        msg: msg.clone(),
                        payload: payload.is_some(),
                    },
                )),
                Action::Read { buf, .. } => Some((
                    n,
                    Input::ReadDone {
                        buf: *buf,
                        ok: true,
                        digest: 0,
                    },
                )),
                Action::Write { buf, .. } => Some((
                    n,
                    Input::Written {
                        buf: *buf,
                        ok: true,
                    },
                )),
                Action::Flush { token } => Some((
                    n,
                    Input::FlushDone {
                        token: *token,
                        ok: true,
                    },
                )),
                Action::Meta { token, .. } => Some((
                    n,
                    Input::MetaDone {
                        token: *token,
                        ok: true,
                    },
                )),
                Action::Drop { reason } => panic!("side {n} dropped the link: {reason}"),
                _ => None,
            };
            self.queue.extend(next);
        }
        self.log[n].extend(actions);
    }

    /// Runs until `done` holds, time passing 1 ms whenever nothing is
    /// left to deliver; panics after 20 simulated seconds.
    fn settle(&mut self, done: impl Fn(&Pair) -> bool) {
        while !done(self) {
            assert!(self.ms < 20_000, "not settled in 20 s of simulated time");
            match self.queue.pop_front() {
                Some((n, input)) => self.feed(n, input),
                None => {
                    self.ms += 1;
                    for n in 0..2 {
                        self.feed(n, Input::Tick);
                    }
                }
            }
        }
    }

    /// Delivers what is queued, without letting time pass.
    fn deliver_all(&mut self) {
        while let Some((n, input)) = self.queue.pop_front() {
            self.feed(n, input);
        }
    }

    fn states(&self, n: usize) -> (Role, Replication, DiskState, DiskState) {
        let r = &self.r[n];
        (r.role(), r.replication(), r.disk(), r.peer_disk())
    }
}

#[test]
fn invalidate_remote_makes_the_peer_a_full_sync_target() {
    let mut p = Pair::connected();
    let a = p.r[0].primary(false, 1, p.now()).expect("promote");
    p.apply(0, a);
    p.deliver_all();

    // Refused, changing nothing: the peer is Primary; and not connected.
    let err = p.r[1]
        .invalidate_remote(p.now())
        .expect_err("peer is Primary");
    assert!(err.contains("node1 is Primary"), "{err}");
    let err = up_to_date(Protocol::C)
        .invalidate_remote(t(1))
        .expect_err("standalone");
    assert!(err.contains("needs a connected peer"), "{err}");

    // Asking changes nothing here: the peer invalidates its own disk.
    let asked = p.r[0]
        .invalidate_remote(p.now())
        .expect("invalidate-remote");
    assert_eq!(
        asked,
        [Action::Send {
            msg: Msg::InvalidateRemote,
            payload: None
        }]
    );
    assert_eq!(p.r[0].out_of_sync_bytes(), 0);
    p.apply(0, asked);
    let (n, input) = p.queue.pop_front().expect("the request");
    assert_eq!(n, 1);
    let from = p.log[1].len();
    p.feed(n, input);
    let got = &p.log[1][from..];
    // The peer's disk says Inconsistent on disk, and its bitmap, every bit
    // set, is written now, not a second later.
    assert_eq!(p.r[1].disk(), DiskState::Inconsistent);
    assert_eq!(p.r[1].out_of_sync_bytes(), SIZE);
    assert!(got.iter().any(|a| matches!(
        a,
        Action::Meta {
            write: MetaWrite::Superblock { flags, .. },
            ..
        } if flags & FLAG_CONSISTENT == 0
    )));
    let bitmap_words: usize = got
        .iter()
        .map(|a| match a {
            Action::Meta {
                write: MetaWrite::Bitmap { words, .. },
                ..
            } => {
                assert!(words.iter().all(|w| *w == u64::MAX), "a bit left clear");
                words.len()
            }
            _ => 0,
        })
        .sum();
    assert_eq!(bitmap_words as u64, SIZE / 4096 / 64, "the whole bitmap");

    // The sync runs from the requester: SyncSource here, SyncTarget and
    // Inconsistent there. Another invalidate-remote meanwhile is refused.
    p.settle(|p| {
        p.states(0).1 == Replication::SyncSource && p.states(1).1 == Replication::SyncTarget
    });
    assert_eq!(
        p.states(1),
        (
            Role::Secondary,
            Replication::SyncTarget,
            DiskState::Inconsistent,
            DiskState::UpToDate
        )
    );
    assert_eq!(p.r[0].peer_disk(), DiskState::Inconsistent);
    let err = p.r[0].invalidate_remote(p.now()).expect_err("a sync runs");
    assert!(err.contains("SyncSource runs"), "{err}");
    let err = p.r[1]
        .invalidate_remote(p.now())
        .expect_err("the target's disk");
    assert!(err.contains("Inconsistent"), "{err}");

    // All of it, once: both UpToDate, in one generation, nothing left.
    p.settle(|p| {
        (0..2).all(|n| {
            p.states(n).1 == Replication::Established && p.states(n).2 == DiskState::UpToDate
        })
    });
    assert_eq!(p.r[1].counters().resynced_bytes, SIZE);
    assert_eq!(p.r[0].counters().resynced_bytes, SIZE);
    assert_eq!(p.r[0].out_of_sync_bytes(), 0);
    assert_eq!(p.r[1].out_of_sync_bytes(), 0);
    assert_eq!(p.r[0].generations().current, p.r[1].generations().current);
    assert_eq!(p.r[0].role(), Role::Primary);
}

#[test]
fn a_peer_that_became_primary_meanwhile_declines_invalidate_remote() {
    let mut p = Pair::connected();
    let asked = p.r[0]
        .invalidate_remote(p.now())
        .expect("invalidate-remote");
    p.apply(0, asked);
    // The peer is promoted before the request arrives.
    let a = p.r[1].primary(false, 1, p.now()).expect("promote");
    p.apply(1, a);
    let from = p.log[1].len();
    p.deliver_all();
    let declined = p.log[1][from..].iter().any(|a| {
        matches!(a, Action::Event(Event::Declined { reason })
            if reason.contains("invalidate-remote") && reason.contains("Primary"))
    });
    assert!(declined, "{:?}", &p.log[1][from..]);
    for n in 0..2 {
        assert_eq!(p.states(n).1, Replication::Established);
        assert_eq!(p.states(n).2, DiskState::UpToDate);
        assert_eq!(p.r[n].out_of_sync_bytes(), 0);
    }
    assert_eq!(p.r[0].peer_role(), Some(Role::Primary));
}
