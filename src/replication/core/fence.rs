//! Fencing the peer, DRBD's `fencing resource-only` (docs/replication.md,
//! "Fencing the peer"). A Primary that loses its peer while the peer's
//! disk may be UpToDate asks for that disk to be marked Outdated before it
//! answers another write: the peer's copy lacks what comes next, and must
//! not be promoted in its place by mistake. The question and the answers
//! travel through the membership (the heartbeats, often on another link
//! than the replication): the core only says what it wants
//! (`fence_view`) and is told what came back (`Input::Fence`).
//!
//! The Primary's side: `Idle` -> `Requested` at the loss (answers held) ->
//! `Outdated` when the peer confirms, or answers released while still
//! `Requested` when the membership declares the peer dead or the peer
//! refuses; `Idle` again once connected. The peer's side: `outdate`, an
//! Outdated disk on disk, then the confirmation.

use crate::replication::core::{Action, Event, Fencing, Replica};
use crate::replication::generation::Generation;
use crate::replication::states::{Connection, DiskState, Role};

/// What the membership brought back for this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceInput {
    /// The peer's disk is Outdated, on its disk, for this request.
    PeerOutdated(Generation),
    /// The membership declared the peer dead: nobody can confirm.
    PeerUnreachable,
    /// The peer will not be outdated (it is Primary itself, or its disk
    /// holds writes of its own): both write apart.
    PeerRefused(Generation),
    /// The peer, Primary, asks this node to outdate its disk.
    Outdate(Generation),
}

/// This node's fencing of its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum PeerFence {
    /// Nothing asked: connected, or nothing to fence.
    #[default]
    Idle,
    /// The peer's disk may be UpToDate while this node writes without it
    /// under `generation` (started for the purpose, so that no two
    /// requests share one and no answer to an old one is taken for this
    /// one). Answers wait while `outcome` is `Pending`. The request stays
    /// after the others, so that a peer coming back disconnected still
    /// outdates itself.
    Requested {
        generation: Generation,
        outcome: Outcome,
    },
    /// The peer confirmed (or an earlier run here learnt so: the
    /// superblock's FLAG_PEER_OUTDATED).
    Outdated { generation: Generation },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Pending,
    Unreachable,
    Refused,
}

/// The peer's request as this node took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outdating {
    pub generation: Generation,
    /// The superblock that says so is on disk.
    pub persisted: bool,
}

/// What this node answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its disk is Outdated (or Inconsistent) on disk.
    Outdated,
    /// It will not be outdated.
    Refused,
}

/// What the fencing relay (`crate::replication::fence`) reads of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FenceView {
    /// This node asks its peer to outdate its disk, for this generation.
    pub request: Option<Generation>,
    /// Its answers wait for the outcome.
    pub holding: bool,
    /// The peer's last request and this node's answer, once there is one.
    pub answer: Option<(Generation, Answer)>,
}

/// Fencing, for `duetctl status` and D-Bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStatus {
    None,
    /// Writes are held until the peer is outdated or declared dead.
    Fencing,
    PeerOutdated,
    /// Went on without the peer: the membership declared it dead.
    PeerUnreachable,
    /// Went on without the peer: it refused (a split brain in the making).
    PeerRefused,
}

impl FenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FenceStatus::None => "",
            FenceStatus::Fencing => "fencing",
            FenceStatus::PeerOutdated => "peer-outdated",
            FenceStatus::PeerUnreachable => "peer-unreachable",
            FenceStatus::PeerRefused => "peer-refused",
        }
    }
}

impl Replica {
    pub fn fence_view(&self) -> FenceView {
        let (request, holding) = match self.fence {
            PeerFence::Requested {
                generation,
                outcome,
            } => (Some(generation), outcome == Outcome::Pending),
            _ => (None, false),
        };
        FenceView {
            request,
            holding,
            answer: self.outdate_answer(),
        }
    }

    pub fn fence_status(&self) -> FenceStatus {
        match self.fence {
            PeerFence::Idle => FenceStatus::None,
            PeerFence::Requested { outcome, .. } => match outcome {
                Outcome::Pending => FenceStatus::Fencing,
                Outcome::Unreachable => FenceStatus::PeerUnreachable,
                Outcome::Refused => FenceStatus::PeerRefused,
            },
            PeerFence::Outdated { .. } => FenceStatus::PeerOutdated,
        }
    }

    /// Answers wait: the peer may still be promoted with what it has.
    pub(super) fn fence_holds(&self) -> bool {
        matches!(
            self.fence,
            PeerFence::Requested {
                outcome: Outcome::Pending,
                ..
            }
        )
    }

    /// The peer is known to lack this node's newer writes.
    pub(super) fn peer_known_outdated(&self) -> bool {
        matches!(self.fence, PeerFence::Outdated { .. })
    }

    /// This Primary writes without its peer from now on (the connection
    /// went, or it was promoted without one): if the peer's disk may be
    /// UpToDate (`peer_disk` as last known), it is to be outdated first.
    pub(super) fn start_fencing(&mut self, peer_disk: DiskState, out: &mut Vec<Action>) {
        let can_be_promoted = !matches!(
            peer_disk,
            DiskState::Outdated | DiskState::Inconsistent | DiskState::Diskless | DiskState::Failed
        );
        if self.s.fencing != Fencing::ResourceOnly
            || self.role != Role::Primary
            || !self.has_disk()
            || self.connected_now()
            || self.fence != PeerFence::Idle
            || !can_be_promoted
        {
            return;
        }
        // The writes to come start a generation of their own; starting it
        // now names this request uniquely (a confirmation of an earlier
        // one, still in the peer's heartbeats, never matches) and is what
        // the first such write would do anyway.
        self.writing_alone(out);
        let generation = self.gens.current;
        self.fence = PeerFence::Requested {
            generation,
            outcome: Outcome::Pending,
        };
        out.push(Action::Event(Event::Fencing { generation }));
        self.state_changed(out);
    }

    fn connected_now(&self) -> bool {
        matches!(
            self.connection,
            Connection::Handshake | Connection::Connected
        )
    }

    pub(super) fn fence_input(&mut self, input: FenceInput, out: &mut Vec<Action>) {
        match input {
            FenceInput::PeerOutdated(g) => self.peer_outdated(g, out),
            FenceInput::PeerUnreachable => self.fence_outcome(None, Outcome::Unreachable, out),
            FenceInput::PeerRefused(g) => self.fence_outcome(Some(g), Outcome::Refused, out),
            FenceInput::Outdate(g) => self.outdate(g, out),
        }
    }

    fn peer_outdated(&mut self, g: Generation, out: &mut Vec<Action>) {
        let PeerFence::Requested { generation, .. } = self.fence else {
            return;
        };
        if generation != g {
            return;
        }
        self.fence = PeerFence::Outdated { generation };
        if !self.connected_now() {
            self.peer_disk = DiskState::Outdated;
        }
        // Remembered across a restart: promoted again while still apart,
        // this node need not ask again.
        self.write_superblock(false, out);
        out.push(Action::Event(Event::PeerOutdated { generation }));
        self.release_held(out);
        self.state_changed(out);
    }

    /// Goes on without a confirmation (for request `g`, or any).
    fn fence_outcome(&mut self, g: Option<Generation>, why: Outcome, out: &mut Vec<Action>) {
        let PeerFence::Requested {
            generation,
            outcome: Outcome::Pending,
        } = self.fence
        else {
            return;
        };
        if g.is_some_and(|g| g != generation) {
            return;
        }
        self.fence = PeerFence::Requested {
            generation,
            outcome: why,
        };
        let peer = &self.s.peer_name;
        let reason = match why {
            Outcome::Unreachable => format!(
                "{peer} is dead as far as the membership knows: writing without outdating its disk \
                 (it stays UpToDate there; the groups promote it only with fencing or quorum)"
            ),
            _ => format!(
                "{peer} refuses to outdate its disk (it is Primary, or wrote alone): both write apart, \
                 a split brain their reunion will report"
            ),
        };
        out.push(Action::Event(Event::FencedWithout { reason }));
        self.release_held(out);
        self.state_changed(out);
    }

    /// The writes whose answers waited are answered now.
    fn release_held(&mut self, out: &mut Vec<Action>) {
        let reqs: Vec<_> = self.app.keys().copied().collect();
        for req in reqs {
            self.check_app(req, out);
        }
    }

    /// Connected again: the peer sees this node and its writes (or syncs
    /// them) from here, whatever its disk said.
    pub(super) fn fence_reconnected(&mut self, out: &mut Vec<Action>) {
        self.outdating = None;
        if self.fence == PeerFence::Idle {
            return;
        }
        let flagged = self.peer_known_outdated();
        self.fence = PeerFence::Idle;
        if flagged {
            // Else a restart apart would take the peer for outdated.
            self.write_superblock(false, out);
        }
        self.release_held(out);
    }

    /// The shell changed the policy (`duetctl adjust`): with fencing off, a
    /// request still waiting goes, and what it held is answered.
    pub(super) fn fencing_adjusted(&mut self, out: &mut Vec<Action>) {
        if self.s.fencing == Fencing::None && matches!(self.fence, PeerFence::Requested { .. }) {
            self.fence = PeerFence::Idle;
            self.release_held(out);
        }
    }

    /// The peer, Primary and without this node, asks for this disk to be
    /// outdated (DRBD's `drbdadm outdate`, run by its fence-peer handler).
    /// Refused by a node with writes of its own (Primary, or it wrote
    /// alone): outdating it would leave those without an UpToDate copy.
    /// Not answered while still connected: the peer's writes reach this
    /// disk, and one side or the other soon sees the connection gone.
    fn outdate(&mut self, g: Generation, out: &mut Vec<Action>) {
        if self.connected_now() {
            return;
        }
        let peer = self.s.peer_name.clone();
        let refusal = if self.role == Role::Primary {
            Some(format!(
                "{peer} asks to outdate this disk, but this node is Primary itself: \
                 a split brain in the making (both write apart; their reunion will say so)"
            ))
        } else if self.alone {
            Some(format!(
                "{peer} asks to outdate this disk, but it holds writes {peer} lacks: \
                 a split brain (their reunion will say so)"
            ))
        } else {
            None
        };
        let before = self.outdating.filter(|o| o.generation == g);
        if let Some(reason) = refusal {
            if before.is_none() {
                self.outdating = Some(Outdating {
                    generation: g,
                    persisted: false,
                });
                out.push(Action::Event(Event::OutdateRefused { reason }));
                self.state_changed(out);
            }
            return;
        }
        let mut wrote = false;
        if self.disk == DiskState::UpToDate {
            self.disk = DiskState::Outdated;
            self.write_superblock(false, out);
            wrote = true;
            out.push(Action::Event(Event::OutdatedByPeer { generation: g }));
            self.state_changed(out);
        }
        // Outdated or Inconsistent already (or no disk to promote): nothing
        // to write, but a superblock still on its way may be what says so.
        self.outdating = Some(Outdating {
            generation: g,
            persisted: !wrote && before.is_some_and(|o| o.persisted),
        });
        self.outdate_persisted(out);
    }

    /// After a metadata write: the Outdated disk is on disk once no
    /// superblock write is in flight or queued (the last one carries the
    /// newest state).
    pub(super) fn outdate_persisted(&mut self, out: &mut Vec<Action>) {
        let idle =
            self.sb.writing.is_none() && self.sb.next.is_none() && self.alone_flush.is_none();
        let Some(o) = self.outdating.as_mut() else {
            return;
        };
        if o.persisted || !idle {
            return;
        }
        o.persisted = true;
        self.state_changed(out);
    }

    fn outdate_answer(&self) -> Option<(Generation, Answer)> {
        let o = self.outdating?;
        if self.role == Role::Primary || self.alone {
            return Some((o.generation, Answer::Refused));
        }
        (o.persisted && self.disk != DiskState::UpToDate)
            .then_some((o.generation, Answer::Outdated))
    }
}
