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
        // Fencing has tests of its own (fence_tests.rs); here a Primary
        // apart answers at once, as the rules under test assume.
        fencing: Fencing::None,
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

/// A consistent disk with nothing out of sync, generation 7.
fn consistent() -> Attached {
    Attached {
        generations: gens(7),
        flags: FLAG_CONSISTENT,
        bitmap: DirtyBitmap::new(SIZE, 4096),
        al_extents: Vec::new(),
        al_seq: 0,
    }
}

/// Attached and known UpToDate (as after a connection since its start).
fn up_to_date(protocol: Protocol) -> Replica {
    confirmed(Replica::new(settings(protocol), Some(consistent()), 1))
}

/// As if connected since the restart: the peer's generations were seen.
fn confirmed(mut r: Replica) -> Replica {
    r.unconfirmed = false;
    r
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

/// Metadata writes done, and the flushes before them (promotion writes
/// the superblock before any data; a log transaction waits for a flush).
fn settle(r: &mut Replica, actions: Vec<Action>) -> Vec<Action> {
    let mut out = Vec::new();
    for a in actions {
        match a {
            Action::Meta { token, .. } => out.extend(settle_one(r, token)),
            Action::Flush { token } => {
                let more = r.on(Input::FlushDone { token, ok: true }, t(2));
                out.extend(settle(r, more));
            }
            a => out.push(a),
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
    let a = consistent();
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
    let a = r.on(
        Input::Received {
            msg: last,
            payload: false,
        },
        t(2),
    );
    // The source's own flush first (`start_sync`).
    let mut started = reads(&settle(&mut r, a));
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
    /// The link carries what is sent (cut: sends are lost).
    link: bool,
}

impl Pair {
    /// Both UpToDate in generation 7, connected and established.
    fn connected() -> Pair {
        Pair::connected_with(Fencing::None)
    }

    fn connected_with(fencing: Fencing) -> Pair {
        let s0 = Settings {
            fencing,
            ..settings(Protocol::C)
        };
        let mut s1 = s0.clone();
        std::mem::swap(&mut s1.local, &mut s1.peer);
        std::mem::swap(&mut s1.local_name, &mut s1.peer_name);
        let attached = consistent;
        let mut p = Pair {
            r: [
                Replica::new(s0, Some(attached()), 1),
                Replica::new(s1, Some(attached()), 2),
            ],
            queue: Default::default(),
            ms: 1,
            log: [Vec::new(), Vec::new()],
            link: true,
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
                Action::Send { .. } if !self.link => None,
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
                Action::Drop { reason } if self.link => {
                    panic!("side {n} dropped the link: {reason}")
                }
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

// ---- power cuts: what a volatile disk cache may lose ----

fn superblocks(actions: &[Action]) -> Vec<(u64, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Meta {
                token,
                write: MetaWrite::Superblock { flags, .. },
            } => Some((*token, *flags)),
            _ => None,
        })
        .collect()
}

/// Two superblock writes in flight may land in either order; the older
/// state landing last is what a restart reads (here: a Primary taken for a
/// Secondary, its activity log ignored after a crash). One at a time, the
/// newest state last.
#[test]
fn superblock_writes_go_one_at_a_time_and_the_newest_lands_last() {
    let mut r = connected(Protocol::C, Role::Secondary);
    let first = r.primary(false, 1, t(2)).expect("promote");
    let inflight = superblocks(&first);
    assert_eq!(inflight.len(), 1);
    let demoted = r.secondary(t(3)).expect("demote");
    let promoted = r.primary(false, 2, t(3)).expect("promote again");
    assert!(
        superblocks(&demoted).is_empty() && superblocks(&promoted).is_empty(),
        "a second superblock write while one is in flight"
    );
    let a = r.on(
        Input::MetaDone {
            token: inflight[0].0,
            ok: true,
        },
        t(4),
    );
    let next = superblocks(&a);
    assert_eq!(next.len(), 1, "the queued state follows");
    assert_ne!(next[0].1 & FLAG_PRIMARY, 0, "the newest state: Primary");
}

fn write_at(r: &mut Replica, req: u64, offset: u64, ms: u64) -> Vec<Action> {
    r.on(
        Input::Write {
            req: ReqId(req),
            offset,
            len: 4096,
            fua: false,
        },
        t(ms),
    )
}

fn data_write(actions: &[Action], req: u64) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Write { buf: Buf::App(ReqId(q)), .. } if *q == req))
}

fn flush_tokens(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Flush { token } => Some(*token),
            _ => None,
        })
        .collect()
}

fn log_writes(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Meta {
                    write: MetaWrite::ActivityLog(_),
                    ..
                }
            )
        })
        .count()
}

fn meta_tokens(actions: &[Action], bitmap: bool) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Meta {
                token,
                write: MetaWrite::Bitmap { .. },
            } if bitmap => Some(*token),
            Action::Meta {
                token,
                write: MetaWrite::Superblock { .. },
            } if !bitmap => Some(*token),
            _ => None,
        })
        .collect()
}

fn received(r: &mut Replica, msg: Msg, payload: bool, ms: u64) -> Vec<Action> {
    r.on(Input::Received { msg, payload }, t(ms))
}

/// After a crash as Primary, the logged extents are marked in the bitmap.
/// Those marks go to disk before a log transaction can forget the extents
/// (before, they were only in memory: a second crash lost them). And a
/// write made alone on such a block starts a generation like any (before,
/// an already set bit meant no new generation: a peer that had moved on
/// synced over the write, a split brain unseen).
#[test]
fn a_crashed_primarys_marks_reach_the_disk_before_the_log_moves_on() {
    let a = Attached {
        flags: FLAG_CONSISTENT | FLAG_PRIMARY,
        al_extents: vec![Extent(0)],
        al_seq: 3,
        ..consistent()
    };
    let mut r = confirmed(Replica::new(settings(Protocol::C), Some(a), 1));
    assert_eq!(r.out_of_sync_bytes(), u64::from(AL_EXTENT));
    // Promoted alone: the superblock, and the recovered marks.
    let a = r.primary(false, 1, t(2)).expect("promote");
    let marks = meta_tokens(&a, true);
    assert!(!marks.is_empty(), "the recovered marks are not written");
    for token in meta_tokens(&a, false) {
        r.on(Input::MetaDone { token, ok: true }, t(2));
    }
    // A write to a new extent: its transaction would drop extent 0.
    let a = write_at(&mut r, 2, 9 * u64::from(AL_EXTENT), 3);
    assert!(flush_tokens(&a).is_empty() && log_writes(&a) == 0);
    let mut after = Vec::new();
    for token in marks {
        after.extend(r.on(Input::MetaDone { token, ok: true }, t(4)));
    }
    assert!(data_write(&settle(&mut r, after), 2));
    // A write into the marked extent, made alone.
    let a = write_at(&mut r, 1, 4096, 5);
    assert!(data_write(&settle(&mut r, a), 1));
    assert_ne!(r.generations().current, Generation(7), "no new generation");
    assert_eq!(r.generations().bitmap, Generation(7));

    // Back as a sync target instead: the superblock says Inconsistent at
    // once, and Primary still, until the marks are on disk (before, it
    // said Secondary: a power cut then left neither the marks nor a log
    // to replay).
    let a = Attached {
        flags: FLAG_CONSISTENT | FLAG_PRIMARY,
        al_extents: vec![Extent(0)],
        al_seq: 3,
        ..consistent()
    };
    let mut r = Replica::new(settings(Protocol::C), Some(a), 1);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let mut p = peer_state(Role::Primary, DiskState::UpToDate);
    p.generations = Generations {
        current: Generation(8),
        bitmap: Generation(7),
        history: [Generation::NONE; 2],
    };
    received(&mut r, Msg::Hello(p), false, 1);
    let last = Msg::Bitmap {
        first_word: 0,
        words: Vec::new(),
        last: true,
    };
    let a = received(&mut r, last, false, 2);
    assert_eq!(r.replication(), Replication::SyncTarget);
    let flags = superblocks(&a);
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].1, FLAG_PRIMARY, "Inconsistent, and Primary still");
}

fn written(r: &mut Replica, req: u64, ms: u64) -> Vec<Action> {
    r.on(
        Input::Written {
            buf: Buf::App(ReqId(req)),
            ok: true,
        },
        t(ms),
    )
}

/// A write over two extents takes both or neither: holding one while
/// waiting for the other, two such writes could wait for each other
/// forever in a full log (before: a partial hold, a deadlock).
#[test]
fn writes_over_two_extents_cannot_deadlock_the_activity_log() {
    let mut s = settings(Protocol::C);
    s.al_capacity = 2;
    let mut r = confirmed(Replica::new(s, Some(consistent()), 1));
    let a = r.primary(false, 1, t(2)).expect("promote");
    settle(&mut r, a);
    let extent = u64::from(AL_EXTENT);
    // One slot busy with a write in extent 5.
    let a = write_at(&mut r, 1, 5 * extent, 3);
    assert!(data_write(&settle(&mut r, a), 1));
    // Over extents 0 and 1, its transaction (if any) not yet on disk.
    let w2 = write_at(&mut r, 2, extent - 2048, 4);
    // Extent 5 is let go (written alone: on disk once marked).
    let a = written(&mut r, 1, 5);
    let mut all = settle(&mut r, a);
    assert_eq!(completed(&all), Some(true));
    // Over extents 2 and 3.
    let w3 = write_at(&mut r, 3, 3 * extent - 2048, 6);
    all.extend(settle(&mut r, w2));
    all.extend(settle(&mut r, w3));
    assert!(data_write(&all, 2), "the log deadlocked");
    let a = written(&mut r, 2, 7);
    let a = settle(&mut r, a);
    assert!(data_write(&a, 3), "the log deadlocked");
}

/// A second write to an extent whose transaction is still being written
/// waits for it too: the extent is in the log in memory, not yet on disk
/// (before, it started at once, unlogged).
#[test]
fn a_write_waits_for_its_extent_to_be_logged_on_disk() {
    let mut r = promoted(Protocol::C);
    let first = write_at(&mut r, 1, 0, 3);
    let second = write_at(&mut r, 2, 8192, 3);
    assert!(
        !data_write(&second, 2),
        "started before its extent is logged"
    );
    let a = settle(&mut r, first);
    assert!(data_write(&a, 1) && data_write(&a, 2));
}

/// A log transaction may drop an extent whose writes completed but may be
/// only in the disk's volatile cache: the disk is flushed before the
/// transaction is written, or a power cut could lose those writes with no
/// log naming their extent (before, the transaction was written at once).
#[test]
fn a_log_transaction_waits_for_a_flush_of_the_data_before_it() {
    let mut r = promoted(Protocol::C);
    let a = write_at(&mut r, 1, 0, 3);
    assert_eq!(log_writes(&a), 0, "the transaction before the flush");
    assert!(!data_write(&a, 1));
    let flush = flush_tokens(&a);
    assert_eq!(flush.len(), 1);
    let a = r.on(
        Input::FlushDone {
            token: flush[0],
            ok: true,
        },
        t(4),
    );
    assert_eq!(log_writes(&a), 1);
    let a = settle(&mut r, a);
    assert!(data_write(&a, 1));
}

fn flush_to_peer(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::Send {
            msg: Msg::Flush { seq },
            ..
        } => Some(*seq),
        _ => None,
    })
}

/// Protocol C answers once the peer wrote the block, maybe only into its
/// disk's volatile cache. Until a flush there covers it, the primary keeps
/// it: if the connection goes first (the peer may have lost power), the
/// block is marked for the resync. Before, it was forgotten once answered,
/// and a Secondary's power cut left a block that no bitmap named.
#[test]
fn a_write_the_peer_has_not_flushed_is_marked_when_the_link_drops() {
    let mut r = promoted(Protocol::C);
    let a = write(&mut r);
    let seq = sent_seq(&a);
    written(&mut r, 1, 4);
    let a = ack(&mut r, seq, AckKind::Written, 5);
    assert_eq!(completed(&a), Some(true));
    // The primary asks the peer to flush it.
    let barrier = flush_to_peer(&a).expect("a flush is sent to the peer");
    assert!(barrier > seq);
    // Stepping down now would leave no activity log covering it.
    assert!(r.secondary(t(5)).is_err());
    let a = r.on(Input::TransportDown, t(6));
    settle(&mut r, a);
    assert_eq!(r.out_of_sync_bytes(), 4096);
    assert_ne!(r.generations().current, Generation(7));

    // Flushed by the peer first: nothing to mark.
    let mut r = promoted(Protocol::C);
    let a = write(&mut r);
    let seq = sent_seq(&a);
    written(&mut r, 1, 4);
    let a = ack(&mut r, seq, AckKind::Written, 5);
    let barrier = flush_to_peer(&a).expect("a flush is sent to the peer");
    ack(&mut r, barrier, AckKind::Flushed, 6);
    r.secondary(t(6)).expect("nothing unflushed on the peer");
    let a = r.on(Input::TransportDown, t(7));
    settle(&mut r, a);
    assert_eq!(r.out_of_sync_bytes(), 0);
}

/// Barriers go at most one per `BARRIER_GAP`: a write written on the
/// peer right after one waits for the next tick, which sends it. One per
/// burst made the peer write back every write as it came.
#[test]
fn barriers_are_spaced_and_a_tick_sends_the_one_that_waited() {
    let mut r = promoted(Protocol::C);
    let a = write(&mut r);
    let first = sent_seq(&a);
    written(&mut r, 1, 4);
    let a = ack(&mut r, first, AckKind::Written, 5);
    let barrier = flush_to_peer(&a).expect("the first barrier goes at once");
    ack(&mut r, barrier, AckKind::Flushed, 6);
    let a = write_at(&mut r, 2, 16384, 6);
    let a = settle(&mut r, a);
    let second = sent_seq(&a);
    written(&mut r, 2, 6);
    let a = ack(&mut r, second, AckKind::Written, 7);
    assert_eq!(completed(&a), Some(true), "answered without waiting");
    assert_eq!(flush_to_peer(&a), None, "2 ms after the last barrier");
    assert!(r.awaits_peer_flush());
    let due = r.next_wakeup().expect("a tick is asked for");
    assert!(due <= t(10), "the barrier waits at most the gap: {due:?}");
    let a = r.on(Input::Tick, t(10));
    let barrier = flush_to_peer(&a).expect("the tick sends the barrier");
    assert!(barrier > second);
    ack(&mut r, barrier, AckKind::Flushed, 11);
    assert!(!r.awaits_peer_flush());
}

/// The peer's acknowledgement may come before the local write completes:
/// the link dropping in between must mark the write all the same.
#[test]
fn a_write_the_peer_wrote_before_this_disk_did_is_marked_too() {
    let mut r = promoted(Protocol::C);
    let a = write(&mut r);
    let seq = sent_seq(&a);
    ack(&mut r, seq, AckKind::Written, 4);
    let a = r.on(Input::TransportDown, t(5));
    let mut a = settle(&mut r, a);
    let done = written(&mut r, 1, 6);
    a.extend(settle(&mut r, done));
    assert_eq!(completed(&a), Some(true));
    assert_eq!(r.out_of_sync_bytes(), 4096);
}

/// A Secondary connected to a Primary that is ahead: a bitmap sync target.
fn sync_target() -> Replica {
    let mut r = up_to_date(Protocol::C);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let mut p = peer_state(Role::Primary, DiskState::UpToDate);
    p.generations = Generations {
        current: Generation(8),
        bitmap: Generation(7),
        history: [Generation::NONE; 2],
    };
    r.on(
        Input::Received {
            msg: Msg::Hello(p),
            payload: false,
        },
        t(1),
    );
    r
}

fn resync_acked(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::Send {
                msg: Msg::ResyncAck { ok: true, .. },
                ..
            }
        )
    })
}

/// The bitmap writes among `actions` done, the flushes they wait for
/// first; what follows.
fn bitmap_done(r: &mut Replica, actions: &[Action], ms: u64) -> Vec<Action> {
    let mut out = Vec::new();
    for token in flush_tokens(actions) {
        let more = r.on(Input::FlushDone { token, ok: true }, t(ms));
        out.extend(bitmap_done(r, &more, ms));
        out.extend(more);
    }
    for token in meta_tokens(actions, true) {
        out.extend(r.on(Input::MetaDone { token, ok: true }, t(ms)));
    }
    out
}

fn resync_data(r: &mut Replica, id: u64, offset: u64, ms: u64) -> Vec<Action> {
    let msg = Msg::ResyncData {
        id,
        offset,
        len: 4096,
    };
    received(r, msg, true, ms)
}

fn resync_written(r: &mut Replica, id: u64, ms: u64) -> Vec<Action> {
    let buf = Buf::ResyncIn(id);
    r.on(Input::Written { buf, ok: true }, t(ms))
}

/// A sync target given the source's bitmap (the first 64 blocks), its
/// Inconsistent superblock written; and what the bitmap brought.
fn sync_target_started() -> (Replica, Vec<Action>) {
    let mut r = sync_target();
    let last = Msg::Bitmap {
        first_word: 0,
        words: vec![u64::MAX],
        last: true,
    };
    let start = received(&mut r, last, false, 2);
    assert_eq!(r.replication(), Replication::SyncTarget);
    for token in meta_tokens(&start, false) {
        r.on(Input::MetaDone { token, ok: true }, t(2));
    }
    (r, start)
}

/// The sync source clears a block's bit once the target acknowledges it,
/// while the block may be only in the target's volatile cache. The target
/// must hold the bit on its disk by then: the merged bitmap (before, only
/// written a second later), or the bit of a block the source marked after
/// the bitmaps were exchanged (before, never).
#[test]
fn a_sync_target_acknowledges_a_block_only_with_its_bit_on_disk() {
    // Inconsistent is on disk; the merged bitmap not yet.
    let (mut r, start) = sync_target_started();
    let a = resync_data(&mut r, 1, 0, 3);
    assert!(a.iter().any(|a| matches!(a, Action::Write { .. })));
    let a = resync_written(&mut r, 1, 4);
    assert!(!resync_acked(&a), "acknowledged before its bit is on disk");
    let a = bitmap_done(&mut r, &start, 5);
    assert!(resync_acked(&a));

    // Block 64 was not in the source's bitmap when it was sent.
    let a = resync_data(&mut r, 2, 64 * 4096, 6);
    let marks = a.clone();
    assert!(a.iter().any(|a| matches!(a, Action::Write { .. })));
    let a = resync_written(&mut r, 2, 7);
    assert!(!resync_acked(&a), "acknowledged before its bit is on disk");
    let a = bitmap_done(&mut r, &marks, 8);
    assert!(resync_acked(&a));

    // The bits cleared for the synced blocks go to disk (lazily) only
    // after those blocks are flushed (before, at once: a power cut could
    // keep the cleared bits and lose the blocks).
    let a = r.on(Input::Tick, t(2000));
    assert!(!flush_tokens(&a).is_empty());
    assert!(
        meta_tokens(&a, true).is_empty(),
        "cleared bits written before the blocks they clear are flushed"
    );
}

/// The same when the sync breaks before the lazy write: the bits cleared
/// for synced blocks still wait for a flush of those blocks (before, the
/// preflush was only made while SyncTarget, and a power cut after a cut
/// link kept the cleared bits and lost the blocks: the cluster
/// simulation's seed 779).
#[test]
fn cleared_bits_wait_for_their_blocks_after_the_sync_broke() {
    let (mut r, start) = sync_target_started();
    resync_data(&mut r, 1, 0, 3);
    resync_written(&mut r, 1, 4);
    bitmap_done(&mut r, &start, 5);
    r.on(Input::TransportDown, t(6));
    assert_ne!(r.replication(), Replication::SyncTarget);
    let a = r.on(Input::Tick, t(2000));
    assert!(!flush_tokens(&a).is_empty(), "{a:?}");
    assert!(
        meta_tokens(&a, true).is_empty(),
        "cleared bits written before the blocks they clear are flushed"
    );
}

/// A Primary that wrote alone before (generation 8, based on 7, block
/// `marked` out of sync) connects to its UpToDate peer, which sends
/// `peer_words` of its bitmap: it becomes SyncSource. With what it did
/// on the way (metadata settled).
fn primary_sync_source(marked: u64, peer_words: Vec<u64>) -> (Replica, Vec<Action>) {
    let mut r = up_to_date(Protocol::C);
    r.gens = Generations {
        current: Generation(8),
        bitmap: Generation(7),
        history: [Generation::NONE; 2],
    };
    r.alone = true;
    r.bitmap.mark(marked, 4096);
    let a = r.primary(false, 1, t(1)).expect("promote");
    settle(&mut r, a);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let hello = Msg::Hello(peer_state(Role::Secondary, DiskState::UpToDate));
    received(&mut r, hello, false, 1);
    let last = Msg::Bitmap {
        first_word: 0,
        words: peer_words,
        last: true,
    };
    let a = received(&mut r, last, false, 2);
    let a = settle(&mut r, a);
    assert_eq!(r.replication(), Replication::SyncSource);
    (r, a)
}

/// The sync source sends its last block and its generation; the target
/// takes that generation. If the link drops before the target's answer,
/// the source's next write made alone must start a new generation (before,
/// it wrote on under the shared one: a write on the target later synced
/// over it, a split brain unseen).
#[test]
fn a_sync_source_writing_alone_after_the_last_block_starts_a_generation() {
    let (mut r, mut a) = primary_sync_source(0, Vec::new());
    for ms in 3..10 {
        a.extend(r.on(Input::Tick, t(ms)));
    }
    let id = a
        .iter()
        .find_map(|a| match a {
            Action::Read {
                buf: Buf::ResyncOut(id),
                ..
            } => Some(*id),
            _ => None,
        })
        .expect("the marked block is read");
    let buf = Buf::ResyncOut(id);
    r.on(
        Input::ReadDone {
            buf,
            ok: true,
            digest: 0,
        },
        t(10),
    );
    let a = received(&mut r, Msg::ResyncAck { id, ok: true }, false, 11);
    let done = a.iter().any(|a| {
        matches!(
            a,
            Action::Send {
                msg: Msg::SyncDone { .. },
                ..
            }
        )
    });
    assert!(done, "the source is done");
    // The link drops before the target's answer; a write made alone.
    r.on(Input::TransportDown, t(12));
    let a = write_at(&mut r, 1, 8192, 13);
    settle(&mut r, a);
    assert_ne!(r.generations().current, Generation(8), "no new generation");
    assert_eq!(r.generations().bitmap, Generation(8));
}

/// Bits a sync source took from its peer's bitmap are on its disk before a
/// write made alone on them is answered (seed 5410 of the cluster simulation:
/// the merged bits stayed in memory, the link dropped before the block
/// was synced, a write alone on it found its bit set and went ahead, and
/// a power cut left neither disk's bitmap naming the block).
#[test]
fn bits_merged_from_the_peer_reach_the_disk_before_a_write_alone_on_them() {
    // The peer's bitmap names block 0.
    let (mut r, _) = primary_sync_source(4096, vec![1]);
    r.on(Input::TransportDown, t(3));

    let mut queue: std::collections::VecDeque<Action> = write_at(&mut r, 1, 0, 4).into();
    let mut marked_on_disk = false;
    let mut steps = 0;
    while let Some(a) = queue.pop_front() {
        steps += 1;
        assert!(steps < 1000, "the write never went");
        match a {
            Action::Meta { token, write } => {
                if let MetaWrite::Bitmap { first_word, words } = &write
                    && *first_word == 0
                    && words.first().is_some_and(|w| w & 1 == 1)
                {
                    marked_on_disk = true;
                }
                queue.extend(r.on(Input::MetaDone { token, ok: true }, t(5)));
            }
            Action::Flush { token } => {
                queue.extend(r.on(Input::FlushDone { token, ok: true }, t(5)));
            }
            Action::Write {
                buf: Buf::App(ReqId(1)),
                ..
            } => {
                queue.extend(r.on(
                    Input::Written {
                        buf: Buf::App(ReqId(1)),
                        ok: true,
                    },
                    t(5),
                ));
            }
            Action::Complete { req: ReqId(1), ok } => {
                assert!(ok);
                assert!(
                    marked_on_disk,
                    "the write was answered before block 0's bit was on disk"
                );
                return;
            }
            _ => {}
        }
    }
    panic!("the write was never answered");
}

/// A mirrored write queued on the Secondary (behind an overlapping one)
/// until after the link dropped is on the Primary's disk too, which marks
/// it: it must not start a generation of the Secondary's own (before, it
/// did, and the reunion was a split brain).
#[test]
fn a_mirrored_write_queued_past_a_link_drop_starts_no_generation() {
    let mut r = connected(Protocol::C, Role::Primary);
    let data = |seq: u64| Msg::Data {
        seq,
        offset: 0,
        len: 4096,
        fua: false,
    };
    let a = received(&mut r, data(1), true, 2);
    assert!(a.iter().any(|a| matches!(a, Action::Write { .. })));
    let a = received(&mut r, data(2), true, 2);
    assert!(!a.iter().any(|a| matches!(a, Action::Write { .. })));
    r.on(Input::TransportDown, t(3));
    let a = r.on(
        Input::Written {
            buf: Buf::Peer(1),
            ok: true,
        },
        t(4),
    );
    assert!(a.iter().any(|a| matches!(a, Action::Write { .. })));
    assert_eq!(r.generations().current, Generation(7));
    assert_eq!(r.out_of_sync_bytes(), 0);
}

/// A read the peer asks for waits for its earlier writes to the same
/// blocks: they may run on a disk worker while the read would run on
/// another, and under protocol A or B its client may read back a write
/// before this side wrote it. Reads of other blocks go at once.
#[test]
fn a_peer_read_waits_for_the_peers_earlier_write_to_its_blocks() {
    let mut r = connected(Protocol::A, Role::Primary);
    let data = Msg::Data {
        seq: 1,
        offset: 0,
        len: 1 << 20,
        fua: false,
    };
    let a = received(&mut r, data, true, 2);
    assert!(a.iter().any(|a| matches!(a, Action::Write { .. })));
    let reads = |a: &[Action]| {
        a.iter()
            .filter_map(|a| match a {
                Action::Read {
                    buf: Buf::PeerRead(id),
                    ..
                } => Some(*id),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let read = |id: u64, offset: u64| Msg::ReadRequest {
        id,
        offset,
        len: 4096,
    };
    let a = received(&mut r, read(7, 512 << 10), false, 3);
    assert!(reads(&a).is_empty(), "read before the write landed: {a:?}");
    let a = received(&mut r, read(8, 1 << 20), false, 3);
    assert_eq!(
        reads(&a),
        vec![8],
        "the block right after waits for nothing"
    );
    // A later write to the same blocks, queued behind the first: the read
    // came before it and does not wait for it.
    let later = Msg::Data {
        seq: 2,
        offset: 0,
        len: 1 << 20,
        fua: false,
    };
    received(&mut r, later, true, 3);
    let a = r.on(
        Input::Written {
            buf: Buf::Peer(1),
            ok: true,
        },
        t(4),
    );
    assert_eq!(reads(&a), vec![7], "the read goes once the write landed");
    assert!(
        a.iter().any(|a| matches!(a, Action::Write { .. })),
        "seq 2 runs"
    );
}

/// A read waiting for a write that fails gets a refusal, not a read of
/// the failed disk; one waiting when the link drops gets nothing (the
/// peer failed it already).
#[test]
fn a_waiting_peer_read_is_refused_on_a_failed_write_and_dropped_with_the_link() {
    let data = Msg::Data {
        seq: 1,
        offset: 0,
        len: 1 << 20,
        fua: false,
    };
    let read = Msg::ReadRequest {
        id: 7,
        offset: 0,
        len: 4096,
    };
    let written = |ok: bool| Input::Written {
        buf: Buf::Peer(1),
        ok,
    };
    let is_read = |a: &Action| matches!(a, Action::Read { .. });
    let mut r = connected(Protocol::B, Role::Primary);
    received(&mut r, data.clone(), true, 2);
    received(&mut r, read.clone(), false, 3);
    let a = r.on(written(false), t(4));
    assert!(!a.iter().any(is_read), "{a:?}");
    let refused = a.iter().any(|a| {
        matches!(
            a,
            Action::Send {
                msg: Msg::ReadReply { id: 7, ok: false },
                ..
            }
        )
    });
    assert!(refused, "{a:?}");

    let mut r = connected(Protocol::B, Role::Primary);
    received(&mut r, data, true, 2);
    received(&mut r, read, false, 3);
    r.on(Input::TransportDown, t(4));
    let a = r.on(written(true), t(5));
    assert!(!a.iter().any(is_read), "{a:?}");
}

#[path = "core_fence_tests.rs"]
mod fence;

/// A Primary crashed while connected and comes back with its hot extents
/// marked: under protocol C the survivor wrote every acknowledged write
/// and its copy leads (the crashed one's cache may have lost some in a
/// power cut); under A and B the crashed Primary's copy leads, as in DRBD.
#[test]
fn a_crashed_primarys_hot_extents_come_from_the_survivor_under_protocol_c() {
    for (protocol, want) in [
        (Protocol::C, Replication::SyncSource),
        (Protocol::B, Replication::SyncTarget),
        (Protocol::A, Replication::SyncTarget),
    ] {
        let mut r = up_to_date(protocol);
        r.connect(false).expect("connect");
        r.on(Input::TransportUp, t(1));
        let crashed = PeerState {
            dirty_blocks: 1024,
            crashed_primary: true,
            ..peer_state(Role::Secondary, DiskState::UpToDate)
        };
        let msg = Msg::Hello(crashed);
        let a = r.on(
            Input::Received {
                msg,
                payload: false,
            },
            t(1),
        );
        settle(&mut r, a);
        let marks = Msg::Bitmap {
            first_word: 0,
            words: vec![u64::MAX; 16],
            last: true,
        };
        let a = r.on(
            Input::Received {
                msg: marks,
                payload: false,
            },
            t(2),
        );
        settle(&mut r, a);
        assert_eq!(r.replication(), want, "protocol {protocol:?}");
    }
}

/// A demotion flushes this disk before its superblock stops saying
/// Primary: a power cut in between would otherwise lose writes still in
/// the disk's cache, with no activity log replayed at restart to resync
/// them from the peer (the whole-cluster simulation found the two copies
/// different, same generation, nothing marked).
#[test]
fn a_demotion_says_primary_on_disk_until_its_flush_is_done() {
    let mut r = connected(Protocol::C, Role::Secondary);
    let a = r.primary(false, 1, t(2)).expect("promote");
    settle(&mut r, a);
    let a = r.secondary(t(3)).expect("demote");
    assert_eq!(r.role(), Role::Secondary);
    assert!(
        superblocks(&a).is_empty(),
        "said Secondary before the flush"
    );
    assert_ne!(r.flags() & FLAG_PRIMARY, 0);
    let [token] = flush_tokens(&a)[..] else {
        panic!("no flush of this disk: {a:?}");
    };
    let more = r.on(Input::FlushDone { token, ok: true }, t(4));
    let written = superblocks(&more);
    assert!(
        written.iter().any(|(_, f)| f & FLAG_PRIMARY == 0),
        "{more:?}"
    );
    assert_eq!(r.flags() & FLAG_PRIMARY, 0);
}

/// A flush fails: the disk is detached (Diskless), the metadata settled.
fn fail_disk(r: &mut Replica) {
    let a = r.on(
        Input::FlushDone {
            token: 999,
            ok: false,
        },
        t(2),
    );
    settle(r, a);
    assert_eq!(r.disk(), DiskState::Diskless);
}

/// A node whose disk failed is promoted through its peer without
/// deciding the connection again: its record of the peer's generations
/// may be stale (the peer took this node's generation at the end of a
/// sync), and deciding on it refused the connection as if the peer's
/// disk were behind (the simulation's diskless-Primary wedge, seed 1877).
#[test]
fn a_diskless_promotion_keeps_the_connection() {
    let mut r = connected(Protocol::C, Role::Secondary);
    // After a sync from here: this node moved on to 8; the peer took 8
    // at the sync's end, but its last Hello said 7.
    r.gens = Generations {
        current: Generation(8),
        bitmap: Generation::NONE,
        history: [Generation(7), Generation::NONE],
    };
    fail_disk(&mut r);
    let a = r.primary(false, 1, t(3)).expect("promote through the peer");
    let refused = a
        .iter()
        .any(|a| matches!(a, Action::Event(Event::Refused { .. })));
    assert!(!refused, "{a:?}");
    assert_eq!(
        (r.role(), r.connection()),
        (Role::Primary, Connection::Connected)
    );
}

/// A disk that failed is not trusted when attached again, whatever its
/// metadata says: the failure kept the metadata from saying Inconsistent
/// (a failing disk takes no writes), and writes it answered may never
/// have reached its media (a page cache whose writeback failed: the lab
/// campaign's copies that differed after a resync). It is synced whole,
/// also after a restart (the daemon keeps the record: `distrust_disk`).
#[test]
fn a_disk_that_failed_is_synced_whole_when_attached_again() {
    let mut r = connected(Protocol::C, Role::Primary);
    let failed = r.on(
        Input::FlushDone {
            token: 999,
            ok: false,
        },
        t(2),
    );
    for a in failed {
        if let Action::Meta { token, .. } = a {
            r.on(Input::MetaDone { token, ok: false }, t(2));
        }
    }
    assert_eq!(r.disk(), DiskState::Diskless);
    assert!(r.disk_distrusted());
    // The metadata as it was before the failure: UpToDate, nothing marked.
    r.attach(consistent()).expect("attach");
    assert_eq!(r.disk(), DiskState::Inconsistent);
    assert_eq!(r.bitmap.dirty_bytes(), SIZE);

    let mut restarted = Replica::new(settings(Protocol::C), Some(consistent()), 1);
    restarted.distrust_disk();
    restarted.connect(false).expect("connect");
    restarted.on(Input::TransportUp, t(1));
    let msg = Msg::Hello(peer_state(Role::Primary, DiskState::UpToDate));
    let a = restarted.on(
        Input::Received {
            msg,
            payload: false,
        },
        t(1),
    );
    // Its bitmap for the sync, every block marked.
    let words: Vec<u64> = a
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                msg: Msg::Bitmap { words, .. },
                ..
            } => Some(words.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(words.len() as u64, SIZE / 4096 / 64);
    assert!(words.iter().all(|w| *w == u64::MAX));
    assert_eq!(restarted.disk(), DiskState::Inconsistent);
    assert!(restarted.disk_distrusted());
}

/// What a sync source sends may be only in its disk's volatile cache
/// (writes from a Primary whose daemon died before their flush): it is
/// flushed before the first read, or a power cut of the source after the
/// sync would leave the copies different with no bit set on either side
/// (the cluster simulation's seed 714).
#[test]
fn a_sync_source_flushes_its_disk_before_the_first_read() {
    let mut r = Replica::new(settings(Protocol::C), Some(consistent()), 1);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let mut p = peer_state(Role::Secondary, DiskState::Inconsistent);
    p.generations = Generations::fresh();
    received(&mut r, Msg::Hello(p), false, 1);
    let last = Msg::Bitmap {
        first_word: 0,
        words: Vec::new(),
        last: true,
    };
    let mut a = received(&mut r, last, false, 2);
    for ms in 3..10 {
        a.extend(r.on(Input::Tick, t(ms)));
    }
    assert_eq!(r.replication(), Replication::SyncSource);
    let flush = a.iter().find_map(|a| match a {
        Action::Flush { token } => Some(*token),
        _ => None,
    });
    let reads = |a: &[Action]| a.iter().any(|a| matches!(a, Action::Read { .. }));
    assert!(!reads(&a), "read before the flush: {a:?}");
    let token = flush.expect("a flush at the sync's start");
    let a = r.on(Input::FlushDone { token, ok: true }, t(10));
    assert!(reads(&a), "no read after the flush: {a:?}");
}

/// A Primary that goes on without its peer starts a new generation; the
/// writes it made with the peer are flushed before that generation is on
/// disk, and the first write alone waits for both. Before, the superblock
/// went first: a power cut then left this copy the newer one while its
/// cache lost writes the peer had, and its hot extents overwrote the
/// peer's copy at the reunion (cluster simulation, seed 1382).
#[test]
fn a_new_generation_is_on_disk_only_after_the_writes_made_with_the_peer() {
    let mut r = promoted(Protocol::C);
    r.on(Input::TransportDown, t(3));
    let mut todo: std::collections::VecDeque<Action> = r
        .on(
            Input::Write {
                req: ReqId(2),
                offset: 8192,
                len: 4096,
                fua: false,
            },
            t(4),
        )
        .into();
    // What each completion brought, in order: which one issued the new
    // generation's superblock, and whether the write came before it.
    let mut superblock_after = None;
    let mut sb_done = false;
    while let Some(a) = todo.pop_front() {
        let (input, kind) = match a {
            Action::Flush { token } => (Input::FlushDone { token, ok: true }, "flush"),
            Action::Meta {
                token,
                write: MetaWrite::Superblock { .. },
            } => (Input::MetaDone { token, ok: true }, "superblock"),
            Action::Meta { token, .. } => (Input::MetaDone { token, ok: true }, "meta"),
            Action::Write { .. } => {
                assert!(sb_done, "the write before the new generation is on disk");
                return assert_eq!(superblock_after, Some("flush"));
            }
            _ => continue,
        };
        let more = r.on(input, t(5));
        if superblocks(&more).iter().any(|_| true) && superblock_after.is_none() {
            superblock_after = Some(kind);
        }
        sb_done |= kind == "superblock";
        todo.extend(more);
    }
    panic!("the write never went");
}

/// A diskless Primary (its disk failed) whose link drops with a write in
/// flight answers it (as failed: no copy took it); it never waits for a
/// bitmap that has no disk to go to.
#[test]
fn a_diskless_primary_answers_a_write_its_link_dropped() {
    let mut r = connected(Protocol::C, Role::Secondary);
    fail_disk(&mut r);
    let a = r.primary(false, 1, t(3)).expect("promote through the peer");
    settle(&mut r, a);
    let a = write_at(&mut r, 1, 8192, 4);
    let a = settle(&mut r, a);
    assert!(sent_seq(&a) > 0, "the write goes to the peer: {a:?}");
    let a = r.on(Input::TransportDown, t(5));
    let a = settle(&mut r, a);
    assert_eq!(completed(&a), Some(false), "{a:?}");
}
