//! Fencing the peer (core/fence.rs): a Primary that loses its peer answers
//! no write the peer lacks until the peer's disk is Outdated on its disk
//! (or the membership declares the peer dead, or it refuses), and an
//! Outdated disk is promoted only by force until it syncs.

use super::*;
use crate::membership::fence_records::FenceNote;
use crate::replication::core::{Answer, FenceInput, FenceStatus};
use crate::replication::fence as relay;
use crate::replication::metadata::{FLAG_OUTDATED, FLAG_PEER_OUTDATED};

fn fencing() -> Settings {
    Settings {
        fencing: Fencing::ResourceOnly,
        ..settings(Protocol::C)
    }
}

/// Connected to a peer with this role and an UpToDate disk, fencing on.
fn connected_fencing(peer_role: Role) -> Replica {
    let mut r = Replica::new(fencing(), Some(consistent()), 1);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let msg = Msg::Hello(peer_state(peer_role, DiskState::UpToDate));
    received(&mut r, msg, false, 1);
    assert_eq!(r.replication(), Replication::Established);
    r
}

fn fencing_primary() -> Replica {
    let mut r = connected_fencing(Role::Secondary);
    let a = r.primary(false, 1, t(2)).expect("promote");
    settle(&mut r, a);
    assert_eq!(
        r.fence_view(),
        FenceView::default(),
        "connected: nothing to ask"
    );
    r
}

fn fence(r: &mut Replica, f: FenceInput, ms: u64) -> Vec<Action> {
    let a = r.on(Input::Fence(f), t(ms));
    settle(r, a)
}

fn answered(actions: &[Action]) -> Vec<(u64, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Complete { req, ok } => Some((req.0, *ok)),
            _ => None,
        })
        .collect()
}

/// The Primary lost its peer: the write in flight and a new one are on the
/// disk and marked, and answered only once the peer confirms its disk
/// Outdated for this very request.
#[test]
fn answers_wait_for_the_peers_outdated_disk() {
    let mut r = fencing_primary();
    let a = write(&mut r);
    sent_seq(&a);
    let a = written(&mut r, 1, 4);
    assert!(answered(&a).is_empty(), "protocol C waits for the peer");
    let a = r.on(Input::TransportDown, t(5));
    let a = settle(&mut r, a);
    assert!(answered(&a).is_empty(), "the peer may still be promoted");
    let view = r.fence_view();
    let g = view
        .request
        .expect("asks for the peer's disk to be outdated");
    assert!(view.holding);
    assert_eq!(r.fence_status(), FenceStatus::Fencing);
    // The request names the generation these writes start.
    assert_eq!(g, r.generations().current);
    assert_eq!(r.generations().bitmap, Generation(7));
    assert!(
        log_has(
            &a,
            |e| matches!(e, Event::Fencing { generation } if *generation == g)
        ),
        "{a:?}"
    );

    let a = write_at(&mut r, 2, 1 << 20, 6);
    let a = settle(&mut r, a);
    assert!(data_write(&a, 2), "the write goes on locally");
    let a = written(&mut r, 2, 7);
    let a = settle(&mut r, a);
    assert!(answered(&a).is_empty());
    assert_eq!(r.out_of_sync_bytes(), 2 * 4096, "both marked as now");

    // The answer to another request (an earlier loss) changes nothing.
    let a = fence(&mut r, FenceInput::PeerOutdated(Generation(7)), 8);
    assert!(answered(&a).is_empty());
    let a = fence(&mut r, FenceInput::PeerOutdated(g), 9);
    let mut got = answered(&a);
    got.sort_unstable();
    assert_eq!(got, [(1, true), (2, true)]);
    assert_eq!(r.fence_status(), FenceStatus::PeerOutdated);
    assert_eq!(r.peer_disk(), DiskState::Outdated);
    assert_eq!(r.fence_view().request, None, "asked and answered");
    assert_ne!(r.flags() & FLAG_PEER_OUTDATED, 0);
    // Kept on disk: a restart apart knows it.
    assert!(
        superblocks(&a)
            .iter()
            .any(|(_, f)| f & FLAG_PEER_OUTDATED != 0)
            || r.flags() & FLAG_PEER_OUTDATED != 0
    );

    // From now on writes are answered as they complete.
    let a = write_at(&mut r, 3, 2 << 20, 10);
    settle(&mut r, a);
    let a = written(&mut r, 3, 11);
    let a = settle(&mut r, a);
    assert_eq!(answered(&a), [(3, true)]);
}

fn log_has(actions: &[Action], f: impl Fn(&Event) -> bool) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Event(e) if f(e)))
}

/// Held writes after a loss, answered or not yet.
fn fenced_with_a_held_write() -> (Replica, Generation) {
    let mut r = fencing_primary();
    let a = r.on(Input::TransportDown, t(5));
    settle(&mut r, a);
    let g = r.fence_view().request.expect("a request");
    let a = write_at(&mut r, 1, 0, 6);
    settle(&mut r, a);
    let a = written(&mut r, 1, 7);
    let a = settle(&mut r, a);
    assert!(answered(&a).is_empty());
    (r, g)
}

/// The membership declares the peer dead: answers go on, loudly; the
/// request stays (a peer coming back apart still outdates itself), and a
/// later confirmation is still taken.
#[test]
fn a_dead_peer_releases_the_answers_and_the_request_stays() {
    let (mut r, g) = fenced_with_a_held_write();
    let a = fence(&mut r, FenceInput::PeerUnreachable, 8);
    assert_eq!(answered(&a), [(1, true)]);
    assert!(log_has(
        &a,
        |e| matches!(e, Event::FencedWithout { reason } if reason.contains("dead"))
    ));
    assert_eq!(r.fence_status(), FenceStatus::PeerUnreachable);
    let view = r.fence_view();
    assert_eq!((view.request, view.holding), (Some(g), false));
    // Once is enough.
    let a = fence(&mut r, FenceInput::PeerUnreachable, 9);
    assert!(!log_has(&a, |e| matches!(e, Event::FencedWithout { .. })));
    // Writes are answered at once now.
    let a = write_at(&mut r, 2, 1 << 20, 10);
    settle(&mut r, a);
    let a = written(&mut r, 2, 11);
    assert_eq!(answered(&settle(&mut r, a)), [(2, true)]);
    fence(&mut r, FenceInput::PeerOutdated(g), 12);
    assert_eq!(r.fence_status(), FenceStatus::PeerOutdated);
    assert_eq!(r.fence_view().request, None);
}

/// The peer refuses (Primary itself): both write apart, and say so.
#[test]
fn a_refusing_peer_releases_the_answers_too() {
    let (mut r, g) = fenced_with_a_held_write();
    let a = fence(&mut r, FenceInput::PeerRefused(Generation(g.0 ^ 1)), 8);
    assert!(answered(&a).is_empty(), "a refusal of another request");
    let a = fence(&mut r, FenceInput::PeerRefused(g), 9);
    assert_eq!(answered(&a), [(1, true)]);
    assert!(log_has(
        &a,
        |e| matches!(e, Event::FencedWithout { reason } if reason.contains("split brain"))
    ));
    assert_eq!(r.fence_status(), FenceStatus::PeerRefused);
}

/// No request without the policy, or when the peer could not be
/// promoted anyway; a request when promoted without a peer.
#[test]
fn fencing_starts_only_where_the_peer_could_be_promoted() {
    // The policy off: answered once the mark is on disk, as before.
    let mut r = connected(Protocol::C, Role::Secondary);
    let a = r.primary(false, 1, t(2)).expect("promote");
    settle(&mut r, a);
    let a = r.on(Input::TransportDown, t(3));
    settle(&mut r, a);
    assert_eq!(r.fence_view().request, None);
    let a = write_at(&mut r, 1, 0, 4);
    settle(&mut r, a);
    let a = written(&mut r, 1, 5);
    assert_eq!(answered(&settle(&mut r, a)), [(1, true)]);

    // An Outdated or Inconsistent peer cannot be promoted by mistake.
    for disk in [DiskState::Outdated, DiskState::Inconsistent] {
        let mut r = fencing_primary();
        let msg = Msg::Update {
            role: Role::Secondary,
            disk,
        };
        received(&mut r, msg, false, 3);
        let a = r.on(Input::TransportDown, t(4));
        settle(&mut r, a);
        assert_eq!(r.fence_view().request, None, "{disk:?}");
    }

    // A Secondary losing its peer asks nothing.
    let mut r = connected_fencing(Role::Primary);
    r.on(Input::TransportDown, t(3));
    assert_eq!(r.fence_view().request, None);
    // Promoted without a peer (a failover): the peer's disk may be
    // UpToDate, and is to be outdated first.
    let a = r.primary(false, 1, t(4)).expect("promote");
    settle(&mut r, a);
    let view = r.fence_view();
    assert!(view.request.is_some() && view.holding, "{view:?}");
}

/// The peer's side: asked while disconnected, its disk goes Outdated on
/// disk, and only then is the confirmation there to announce.
#[test]
fn the_outdated_disk_is_on_disk_before_it_is_confirmed() {
    let mut r = connected_fencing(Role::Primary);
    let g = Generation(9);
    // Connected: the Primary's writes arrive here; nothing to answer.
    let a = r.on(Input::Fence(FenceInput::Outdate(g)), t(2));
    assert!(superblocks(&a).is_empty());
    assert_eq!(
        (r.disk(), r.fence_view().answer),
        (DiskState::UpToDate, None)
    );
    r.on(Input::TransportDown, t(3));
    let a = r.on(Input::Fence(FenceInput::Outdate(g)), t(4));
    assert_eq!(r.disk(), DiskState::Outdated);
    assert!(log_has(&a, |e| matches!(e, Event::OutdatedByPeer { .. })));
    let sb = superblocks(&a);
    assert_eq!(sb.len(), 1, "{a:?}");
    assert_eq!(sb[0].1, FLAG_CONSISTENT | FLAG_OUTDATED);
    assert_eq!(r.fence_view().answer, None, "not before it is on disk");
    r.on(
        Input::MetaDone {
            token: sb[0].0,
            ok: true,
        },
        t(5),
    );
    assert_eq!(r.fence_view().answer, Some((g, Answer::Outdated)));
    // Asked again: nothing more to do.
    let a = r.on(Input::Fence(FenceInput::Outdate(g)), t(6));
    assert!(superblocks(&a).is_empty());
    assert_eq!(r.fence_view().answer, Some((g, Answer::Outdated)));
    // Not promoted without force; the reason names the peer.
    let err = r.primary(false, 1, t(7)).expect_err("outdated");
    assert!(err.contains("Outdated") && err.contains("node2"), "{err}");
    assert_eq!(r.role(), Role::Secondary);
    // Forced, it is the good copy (and then refuses to be outdated).
    let a = r.primary(true, 1, t(8)).expect("forced");
    settle(&mut r, a);
    assert_eq!((r.role(), r.disk()), (Role::Primary, DiskState::UpToDate));
    assert_eq!(r.fence_view().answer, Some((g, Answer::Refused)));
}

/// An Inconsistent disk (a sync target cut off) is unpromotable already:
/// it confirms at once, and stays Inconsistent.
#[test]
fn an_inconsistent_disk_confirms_at_once() {
    let a = Attached {
        flags: 0,
        ..consistent()
    };
    let mut r = Replica::new(fencing(), Some(a), 1);
    let g = Generation(9);
    let a = r.on(Input::Fence(FenceInput::Outdate(g)), t(1));
    assert!(superblocks(&a).is_empty());
    assert_eq!(r.disk(), DiskState::Inconsistent);
    assert_eq!(r.fence_view().answer, Some((g, Answer::Outdated)));
}

/// A Primary, or a disk holding writes of its own, is not outdated: both
/// write apart, and the log says so on both sides.
#[test]
fn a_primary_refuses_to_be_outdated() {
    let mut r = fencing_primary();
    let a = r.on(Input::TransportDown, t(5));
    settle(&mut r, a);
    let g = Generation(0x99);
    let a = fence(&mut r, FenceInput::Outdate(g), 6);
    assert!(log_has(
        &a,
        |e| matches!(e, Event::OutdateRefused { reason } if reason.contains("Primary itself"))
    ));
    assert_eq!(r.disk(), DiskState::UpToDate);
    assert_eq!(r.fence_view().answer, Some((g, Answer::Refused)));
    // Said once.
    let a = fence(&mut r, FenceInput::Outdate(g), 7);
    assert!(!log_has(&a, |e| matches!(e, Event::OutdateRefused { .. })));
}

/// What attaching reads: Consistent + Outdated is Outdated; the peer's
/// Outdated disk is remembered, so a promotion apart asks nothing; older
/// metadata without the flags reads as before.
#[test]
fn attaching_reads_the_flags_back() {
    let outdated = Attached {
        flags: FLAG_CONSISTENT | FLAG_OUTDATED,
        ..consistent()
    };
    let mut r = Replica::new(fencing(), Some(outdated), 1);
    assert_eq!(r.disk(), DiskState::Outdated);
    assert_eq!(r.flags(), FLAG_CONSISTENT | FLAG_OUTDATED);
    assert!(r.primary(false, 1, t(1)).is_err());

    let peer_outdated = Attached {
        flags: FLAG_CONSISTENT | FLAG_PEER_OUTDATED | FLAG_PRIMARY,
        ..consistent()
    };
    let mut r = Replica::new(fencing(), Some(peer_outdated), 1);
    assert_eq!(r.disk(), DiskState::UpToDate);
    assert_eq!(r.peer_disk(), DiskState::Outdated);
    assert_eq!(r.fence_status(), FenceStatus::PeerOutdated);
    assert_ne!(r.flags() & FLAG_PEER_OUTDATED, 0);
    let a = r.primary(false, 1, t(1)).expect("UpToDate");
    settle(&mut r, a);
    assert_eq!(r.fence_view().request, None, "the peer is known outdated");
    let a = write_at(&mut r, 1, 0, 2);
    settle(&mut r, a);
    let a = written(&mut r, 1, 3);
    assert_eq!(answered(&settle(&mut r, a)), [(1, true)]);

    // Without the flags: Consistent, nothing known of the peer (it may
    // have been promoted and written since this node went away).
    let r = Replica::new(fencing(), Some(consistent()), 1);
    assert_eq!(
        (r.disk(), r.peer_disk()),
        (DiskState::Consistent, DiskState::DUnknown)
    );
}

/// A node that restarts without word that its peer is Outdated cannot
/// know whether the peer was promoted and wrote meanwhile (the simulation
/// found the group promoting such a copy after the peer, Primary alone,
/// lost its power: the peer's acknowledged writes were gone). It is
/// Consistent, refuses a promotion until the peers compare generations,
/// and --force takes it as the good copy.
#[test]
fn a_restarted_copy_is_consistent_until_it_meets_its_peer() {
    let mut r = Replica::new(fencing(), Some(consistent()), 1);
    assert_eq!(r.disk(), DiskState::Consistent);
    let why = r.primary(false, 1, t(1)).expect_err("promoted unseen data");
    assert!(
        why.contains("Consistent") && why.contains("--force"),
        "{why}"
    );
    assert_eq!(r.role(), Role::Secondary);

    // Connected: the same generations, UpToDate, and it may be Primary.
    let mut met = connected_fencing(Role::Secondary);
    assert_eq!(met.disk(), DiskState::UpToDate);
    met.primary(false, 1, t(2))
        .expect("promote after meeting the peer");

    // Forced: the administrator says the peer is lost for good.
    let a = r.primary(true, 1, t(3)).expect("forced");
    settle(&mut r, a);
    assert_eq!((r.role(), r.disk()), (Role::Primary, DiskState::UpToDate));
    // Not a full sync: the generations decide when the peer comes back.
    assert_eq!(r.out_of_sync_bytes(), 0);
}

/// Reconnected with nothing to sync (its Primary wrote nothing it lacks),
/// an Outdated disk is UpToDate again, on disk, and tells its peer.
#[test]
fn an_outdated_disk_in_sync_is_up_to_date_at_once() {
    let outdated = Attached {
        flags: FLAG_CONSISTENT | FLAG_OUTDATED,
        ..consistent()
    };
    let mut r = Replica::new(fencing(), Some(outdated), 1);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let msg = Msg::Hello(peer_state(Role::Primary, DiskState::UpToDate));
    let a = received(&mut r, msg, false, 1);
    assert_eq!(r.disk(), DiskState::UpToDate);
    assert_eq!(r.replication(), Replication::Established);
    assert!(superblocks(&a).iter().any(|(_, f)| *f == FLAG_CONSISTENT));
    assert!(a.iter().any(|a| matches!(
        a,
        Action::Send {
            msg: Msg::Update {
                disk: DiskState::UpToDate,
                ..
            },
            ..
        }
    )));
}

/// Whole: two cores and the relay's rules over a simulated membership
/// (heartbeats still flow when only the replication link is cut).
struct Cluster {
    p: Pair,
    /// What each node announced last round (heard by the other).
    notes: [Vec<FenceNote>; 2],
}

impl Cluster {
    fn primary_and_secondary() -> Cluster {
        let mut p = Pair::connected_with(Fencing::ResourceOnly);
        let a = p.r[0].primary(false, 1, p.now()).expect("promote");
        p.apply(0, a);
        p.settle(|p| p.r[1].peer_role() == Some(Role::Primary));
        Cluster {
            p,
            notes: Default::default(),
        }
    }

    /// Only the replication link: both sides see it go.
    fn cut(&mut self) {
        self.p.link = false;
        self.p
            .queue
            .retain(|(_, i)| !matches!(i, Input::Received { .. }));
        for n in 0..2 {
            self.p.feed(n, Input::TransportDown);
        }
        self.p.deliver_all();
    }

    /// One round of heartbeats: each node's relay feeds its core from what
    /// the other announced, then announces.
    fn relay(&mut self, alive: [bool; 2]) {
        let mut next: [Vec<FenceNote>; 2] = Default::default();
        for n in 0..2 {
            let heard = relay::about(&self.notes[1 - n], "r0");
            for input in relay::inputs(&self.p.r[n].fence_view(), &heard, alive[1 - n]) {
                self.p.feed(n, Input::Fence(input));
                self.p.deliver_all();
            }
            next[n] = relay::notes("r0", &self.p.r[n].fence_view(), &heard);
        }
        self.notes = next;
    }

    fn answered(&self, req: u64) -> Option<bool> {
        self.p.log[0].iter().find_map(|a| match a {
            Action::Complete { req: r, ok } if r.0 == req => Some(*ok),
            _ => None,
        })
    }
}

/// A cut replication link: the Primary's write is answered only after the
/// relay brought the peer's confirmation; the peer's Outdated disk is not
/// promoted; reconnected, it syncs and is UpToDate; both forget it.
#[test]
fn the_relay_outdates_the_peer_and_the_reunion_syncs_it() {
    let mut c = Cluster::primary_and_secondary();
    c.cut();
    let a = c.p.r[0].on(
        Input::Write {
            req: ReqId(1),
            offset: 0,
            len: 4096,
            fua: false,
        },
        c.p.now(),
    );
    c.p.apply(0, a);
    c.p.deliver_all();
    assert_eq!(c.answered(1), None, "held before any heartbeat");
    let mut rounds = 0;
    while c.answered(1).is_none() {
        rounds += 1;
        assert!(rounds <= 4, "not answered after {rounds} rounds");
        c.relay([true, true]);
    }
    assert_eq!(c.answered(1), Some(true));
    assert_eq!(c.p.r[1].disk(), DiskState::Outdated);
    assert_eq!(c.p.r[0].peer_disk(), DiskState::Outdated);
    assert!(c.p.r[1].primary(false, 1, c.p.now()).is_err());
    // The confirmation goes once the request does.
    c.relay([true, true]);
    c.relay([true, true]);
    assert_eq!(c.notes, [vec![], vec![]]);

    c.p.link = true;
    for n in 0..2 {
        c.p.feed(n, Input::TransportUp);
    }
    c.p.settle(|p| {
        (0..2).all(|n| {
            p.r[n].replication() == Replication::Established && p.r[n].disk() == DiskState::UpToDate
        })
    });
    assert!(
        c.p.log[1]
            .iter()
            .any(|a| matches!(a, Action::Event(Event::SyncStarted { .. }))),
        "the Outdated disk synced"
    );
    assert_eq!(c.p.r[0].fence_status(), FenceStatus::None);
    assert_eq!(c.p.r[0].flags() & FLAG_PEER_OUTDATED, 0);
    assert_eq!(c.p.r[1].fence_view(), FenceView::default());
    assert_eq!(c.p.r[0].out_of_sync_bytes(), 0);
}

/// Both links cut: no heartbeat either, the peer is declared dead, and
/// the write is answered without it; the peer's disk stays UpToDate.
#[test]
fn the_relay_releases_the_write_when_the_peer_is_dead() {
    let mut c = Cluster::primary_and_secondary();
    c.cut();
    let a = c.p.r[0].on(
        Input::Write {
            req: ReqId(1),
            offset: 0,
            len: 4096,
            fua: false,
        },
        c.p.now(),
    );
    c.p.apply(0, a);
    c.p.deliver_all();
    // Alive a while yet (deadtime not passed): nothing moves.
    c.relay([true, true]);
    c.notes = Default::default();
    c.relay([true, true]);
    c.notes = Default::default();
    assert_eq!(c.answered(1), None);
    c.relay([false, false]);
    assert_eq!(c.answered(1), Some(true));
    assert_eq!(c.p.r[0].fence_status(), FenceStatus::PeerUnreachable);
    assert_eq!(c.p.r[1].disk(), DiskState::UpToDate);
}

/// A sync target turns UpToDate on its last block; if the link goes
/// before the source hears so, the source (Primary) still fences it: it
/// may be promotable (the replication simulation found a Primary writing
/// apart, unfenced, beside a peer that had just finished its sync).
#[test]
fn a_primary_losing_its_sync_target_fences_it() {
    let mut r = Replica::new(fencing(), Some(consistent()), 1);
    r.connect(false).expect("connect");
    r.on(Input::TransportUp, t(1));
    let hello = Msg::Hello(peer_state(Role::Secondary, DiskState::Inconsistent));
    let a = received(&mut r, hello, false, 1);
    settle(&mut r, a);
    let last = Msg::Bitmap {
        first_word: 0,
        words: Vec::new(),
        last: true,
    };
    let a = received(&mut r, last, false, 2);
    settle(&mut r, a);
    assert_eq!(r.replication(), Replication::SyncSource);
    let a = r.primary(false, 1, t(2)).expect("promote");
    settle(&mut r, a);
    let a = r.on(Input::TransportDown, t(3));
    settle(&mut r, a);
    assert!(
        r.fence_view().request.is_some(),
        "writes go on beside a peer that may be UpToDate"
    );
}

/// A Primary that loses its peer starts a generation at once (the fence
/// request names it), but no superblock carries it before the flush of
/// the writes made with the peer: not even the one that records the
/// peer's confirmation, which comes first when the flush is slow.
#[test]
fn the_peers_confirmation_waits_for_the_flush_before_the_generation() {
    let mut r = fencing_primary();
    let a = r.on(Input::TransportDown, t(3));
    let g = r.generations().current;
    let [token] = flush_tokens(&a)[..] else {
        panic!("one flush before the new generation: {a:?}");
    };
    assert!(superblocks(&a).is_empty(), "{a:?}");
    // The confirmation arrives while the flush runs.
    let a = r.on(Input::Fence(FenceInput::PeerOutdated(g)), t(4));
    assert!(
        superblocks(&a).is_empty(),
        "generation before the flush: {a:?}"
    );
    let a = r.on(Input::FlushDone { token, ok: true }, t(5));
    let written = superblocks(&a);
    assert_eq!(written.len(), 1, "{a:?}");
    // Flags as of now: Primary, peer outdated.
    assert_ne!(written[0].1 & FLAG_PEER_OUTDATED, 0, "{a:?}");
}
