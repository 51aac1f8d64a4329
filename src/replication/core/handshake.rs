//! Connecting: both sides send their state, each decides from the
//! generations what to do (both reach the same verdict, mirrored), and a
//! sync starts after the two bitmaps are merged.

use crate::replication::core::{Action, Event, Msg, PeerState, Protocol, Replica};
use crate::replication::generation::{Decision, Generation, Side, decide};
use crate::replication::split_brain::{Resolution, SideFacts, resolve};
use crate::replication::states::{Connection, DiskState, Replication, Role};

/// Bitmap words per message.
const BITMAP_CHUNK: usize = 64 << 10;

/// A sync agreed on, waiting for the peer's bitmap.
#[derive(Debug, Default)]
pub struct Exchange {
    pub plan: Option<Plan>,
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub source: Side,
    pub full: bool,
    /// A split-brain loser takes the shared base generation, so that an
    /// interrupted sync resumes as a bitmap sync.
    pub adopt: Option<Generation>,
}

impl Replica {
    pub(super) fn transport_up(&mut self, out: &mut Vec<Action>) {
        if self.connection != Connection::Connecting {
            out.push(Action::Drop {
                reason: "not expecting a connection".into(),
            });
            return;
        }
        self.connection = Connection::Handshake;
        self.last_recv = self.now;
        let me = self.my_state();
        self.send(Msg::Hello(me), None, out);
        self.state_changed(out);
    }

    pub(super) fn transport_down(&mut self, out: &mut Vec<Action>) {
        if !matches!(
            self.connection,
            Connection::Handshake | Connection::Connected
        ) {
            return;
        }
        // A sync target turns UpToDate on its last block, and the word of
        // it may be lost with the link: fenced as if it had (an
        // Inconsistent peer confirms at once).
        let peer_disk = match self.replication {
            Replication::SyncSource if self.peer_disk == DiskState::Inconsistent => {
                DiskState::UpToDate
            }
            _ => self.peer_disk,
        };
        self.connection = Connection::Connecting;
        self.replication = Replication::Off;
        self.peer_role = None;
        self.peer_disk = if self.peer_known_outdated() {
            DiskState::Outdated
        } else {
            DiskState::DUnknown
        };
        self.peer = None;
        self.handshake.plan = None;
        self.sync.abort();
        self.sync_paused = false;
        // Before the writes in flight are settled: their answers wait too.
        self.start_fencing(peer_disk, out);
        self.peer_lost(out);
        self.state_changed(out);
    }

    /// The peer's state: on connect (`decide`), or as an update.
    pub(super) fn hello(&mut self, p: PeerState, decide_now: bool, out: &mut Vec<Action>) {
        self.peer_role = Some(p.role);
        self.peer_disk = p.disk;
        self.peer = Some(p.clone());
        if !decide_now {
            return;
        }
        if self.syncing() {
            return;
        }
        if self.role == Role::Primary && p.role == Role::Primary {
            return self.refuse("both nodes are Primary".into(), out);
        }
        let peer_has_disk = matches!(
            p.disk,
            DiskState::UpToDate | DiskState::Inconsistent | DiskState::Outdated
        );
        if !self.has_disk() || !peer_has_disk {
            return self.without_a_disk(&p, peer_has_disk, out);
        }
        // Two disks of different sizes cannot mirror each other (a
        // diskless side's size does not matter).
        if p.size != self.s.size || p.granularity != self.s.granularity {
            let why = format!(
                "the peer's device is {} bytes at {} bytes a bit, this one {} at {}: recreate the metadata of the smaller disk",
                p.size, p.granularity, self.s.size, self.s.granularity
            );
            return self.refuse(why, out);
        }
        match decide(&self.gens, &p.generations) {
            Decision::InSync => self.in_sync(&p, out),
            Decision::BitmapSync { source } => self.plan_sync(source, false, None, out),
            Decision::FullSync { source } => self.plan_sync(source, true, None, out),
            Decision::BothFresh => self.established(out),
            Decision::SplitBrain => self.split_brain(&p, out),
            Decision::Unrelated => self.refuse(
                format!(
                    "unrelated data: no generation in common with {} (create fresh metadata on the disk to overwrite)",
                    self.s.peer_name
                ),
                out,
            ),
        }
    }

    /// One side has no disk: the other's data serves both, but only if it
    /// is not behind what the diskless side last had (a disk that failed
    /// after writes its peer never got).
    fn without_a_disk(&mut self, p: &PeerState, peer_has_disk: bool, out: &mut Vec<Action>) {
        let (with_disk, without) = if peer_has_disk {
            (Side::Peer, Side::Local)
        } else {
            (Side::Local, Side::Peer)
        };
        let diskless_gens = match without {
            Side::Local => self.gens,
            Side::Peer => p.generations,
        };
        let fine = diskless_gens.current.is_none()
            || !(self.has_disk() || peer_has_disk)
            || match decide(&self.gens, &p.generations) {
                Decision::InSync | Decision::BothFresh => true,
                Decision::BitmapSync { source } | Decision::FullSync { source } => {
                    source == with_disk
                }
                Decision::SplitBrain | Decision::Unrelated => false,
            };
        if fine {
            return self.established(out);
        }
        self.refuse(
            "the disk that is left is behind the data of the diskless node (its disk failed after writes the peer never got): an administrator decides (`primary --force` on the node to keep)".into(),
            out,
        )
    }

    /// Same generation; bits set on either side (a crashed primary's hot
    /// extents, an invalidated disk, blocks verify found different) still
    /// get synced.
    fn in_sync(&mut self, p: &PeerState, out: &mut Vec<Action>) {
        let dirty = self.bitmap.dirty_blocks() > 0 || p.dirty_blocks > 0;
        let me_inc = self.disk == DiskState::Inconsistent;
        let peer_inc = p.disk == DiskState::Inconsistent;
        if !dirty && !me_inc && !peer_inc {
            // The same generation and no block marked: the same data. An
            // Outdated disk facing an UpToDate one lacks nothing after all
            // (its Primary wrote nothing it lacks: it crashed before its
            // new generation reached its disk, say).
            if self.disk == DiskState::Outdated && p.disk == DiskState::UpToDate {
                self.disk = DiskState::UpToDate;
                self.write_superblock(false, out);
                self.established(out);
                // The peer decided on the Hello that said Outdated.
                return self.send_update(out);
            }
            return self.established(out);
        }
        // An Outdated disk is behind too: it never leads a sync.
        let me_inc = me_inc || self.disk == DiskState::Outdated;
        let peer_inc = peer_inc || p.disk == DiskState::Outdated;
        let source = match (me_inc, peer_inc) {
            (true, false) => Side::Peer,
            (false, true) => Side::Local,
            (true, true) => return self.established(out),
            (false, false) => match (self.crashed_primary, p.crashed_primary) {
                (true, false) => self.hot_extents_from(Side::Peer),
                (false, true) => self.hot_extents_from(Side::Local),
                _ => match (self.role, p.role) {
                    (Role::Primary, _) => Side::Local,
                    (_, Role::Primary) => Side::Peer,
                    _ if self.s.local < self.s.peer => Side::Local,
                    _ => Side::Peer,
                },
            },
        };
        self.plan_sync(source, false, None, out)
    }

    /// Which copy a crashed Primary's hot extents come from, `survivor`
    /// being the side that did not crash. Under protocol C the survivor
    /// was connected and wrote every write the Primary acknowledged (the
    /// generation is the same: the Primary never wrote alone), while the
    /// crashed Primary's own disk may have lost those its volatile cache
    /// held when the power went: the survivor's copy leads. Under A and B
    /// an acknowledged write may never have reached the survivor: the
    /// crashed Primary's copy leads, as in DRBD.
    fn hot_extents_from(&self, survivor: Side) -> Side {
        match (self.s.protocol, survivor) {
            (Protocol::C, side) => side,
            (_, Side::Local) => Side::Peer,
            (_, Side::Peer) => Side::Local,
        }
    }

    fn split_brain(&mut self, p: &PeerState, out: &mut Vec<Action>) {
        let facts = [
            SideFacts {
                node: self.s.local_name.clone(),
                primary_now: self.role == Role::Primary,
                primary_since: (self.primary_since != 0).then_some(self.primary_since),
                changes: self.bitmap.dirty_blocks(),
            },
            SideFacts {
                node: self.s.peer_name.clone(),
                primary_now: p.role == Role::Primary,
                primary_since: (p.primary_since != 0).then_some(p.primary_since),
                changes: p.dirty_blocks,
            },
        ];
        let verdict = match (self.discard_my_data, p.discard_my_data) {
            (true, false) => Resolution::Discard(Side::Local),
            (false, true) => Resolution::Discard(Side::Peer),
            (true, true) => Resolution::Disconnect,
            (false, false) => resolve(&self.s.policies, &facts),
        };
        let Resolution::Discard(loser) = verdict else {
            out.push(Action::Event(Event::SplitBrain {
                resolved: "not resolved: disconnected; run `duetctl connect R --discard-my-data` on the node whose changes are to be thrown away".into(),
            }));
            return self.refuse("split brain".into(), out);
        };
        let (loser_name, loser_role) = match loser {
            Side::Local => (self.s.local_name.clone(), self.role),
            Side::Peer => (self.s.peer_name.clone(), p.role),
        };
        if loser_role == Role::Primary {
            out.push(Action::Event(Event::SplitBrain {
                resolved: format!("not resolved: {loser_name} would lose its changes but is Primary; demote it first"),
            }));
            return self.refuse("split brain".into(), out);
        }
        out.push(Action::Event(Event::SplitBrain {
            resolved: format!("{loser_name} discards its changes and syncs from its peer"),
        }));
        let source = match loser {
            Side::Local => Side::Peer,
            Side::Peer => Side::Local,
        };
        let shared = !self.gens.bitmap.is_none() && self.gens.bitmap == p.generations.bitmap;
        self.plan_sync(source, !shared, shared.then_some(self.gens.bitmap), out)
    }

    fn established(&mut self, out: &mut Vec<Action>) {
        self.connection = Connection::Connected;
        self.unconfirmed = false;
        self.replication = Replication::Established;
        self.discard_my_data = false;
        self.fence_reconnected(out);
        if self.has_disk()
            && self.disk != DiskState::Inconsistent
            && self.peer_disk == DiskState::UpToDate
            && self.bitmap.dirty_blocks() == 0
        {
            self.joined(out);
        }
        self.state_changed(out);
    }

    /// Both disks hold the same data again: the bitmap's base is history.
    pub(super) fn joined(&mut self, out: &mut Vec<Action>) {
        self.alone = false;
        self.crashed_primary = false;
        if !self.gens.bitmap.is_none() {
            self.gens.clear_bitmap();
            self.write_superblock(false, out);
        }
    }

    fn plan_sync(
        &mut self,
        source: Side,
        full: bool,
        adopt: Option<Generation>,
        out: &mut Vec<Action>,
    ) {
        let (src_disk, tgt_role) = match source {
            Side::Local => (self.disk, self.peer_role),
            Side::Peer => (self.peer_disk, Some(self.role)),
        };
        if src_disk != DiskState::UpToDate {
            return self.refuse(
                "neither disk is UpToDate: make the good one Primary with --force".into(),
                out,
            );
        }
        if tgt_role == Some(Role::Primary) {
            return self.refuse(
                "the Primary's disk is behind its peer's: demote it first".into(),
                out,
            );
        }
        self.connection = Connection::Connected;
        self.unconfirmed = false;
        self.discard_my_data = false;
        self.fence_reconnected(out);
        self.handshake.plan = Some(Plan {
            source,
            full,
            adopt,
        });
        self.send_bitmap(out);
    }

    fn send_bitmap(&mut self, out: &mut Vec<Action>) {
        let words = self.bitmap.to_words();
        let chunks: Vec<&[u64]> = words.chunks(BITMAP_CHUNK).collect();
        if chunks.is_empty() {
            self.send(
                Msg::Bitmap {
                    first_word: 0,
                    words: Vec::new(),
                    last: true,
                },
                None,
                out,
            );
        }
        for (i, c) in chunks.iter().enumerate() {
            let msg = Msg::Bitmap {
                first_word: (i * BITMAP_CHUNK) as u64,
                words: c.to_vec(),
                last: i + 1 == chunks.len(),
            };
            self.send(msg, None, out);
        }
    }

    pub(super) fn bitmap_chunk(
        &mut self,
        first_word: u64,
        words: &[u64],
        last: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(plan) = self.handshake.plan else {
            return;
        };
        let before = self.bitmap.dirty_blocks();
        self.bitmap.or_words(first_word, words);
        if self.bitmap.dirty_blocks() != before {
            // The peer's bits are this disk's too: a set bit is taken for
            // one on disk unless its bitmap block waits to be written, and
            // a write made alone later on such a block would rest on a
            // mark a power cut here forgets.
            let g = u64::from(self.s.granularity);
            let offset = first_word.saturating_mul(64).saturating_mul(g);
            let len = (words.len() as u64).saturating_mul(64).saturating_mul(g);
            if offset < self.s.size && len > 0 {
                let len = len.min(self.s.size - offset);
                self.bitmap_blocks_changed(offset, len, false);
            }
        }
        if last {
            self.handshake.plan = None;
            self.start_sync(plan, out);
        }
    }

    pub(super) fn peer_update(&mut self, role: Role, disk: DiskState, out: &mut Vec<Action>) {
        let was = self.peer_disk;
        self.peer_role = Some(role);
        self.peer_disk = disk;
        if let Some(p) = &mut self.peer {
            p.role = role;
            p.disk = disk;
        }
        if self.replication == Replication::SyncSource
            && disk == DiskState::UpToDate
            && was != DiskState::UpToDate
        {
            self.source_finished(out);
        }
        // An Outdated peer found in sync (`in_sync`) is UpToDate again: the
        // pair is whole, as `established` would have found it.
        if self.replication == Replication::Established
            && was == DiskState::Outdated
            && disk == DiskState::UpToDate
            && self.disk == DiskState::UpToDate
            && self.bitmap.dirty_blocks() == 0
        {
            self.joined(out);
        }
        self.state_changed(out);
    }
}
