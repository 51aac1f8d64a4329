//! Client writes, reads and flushes on the primary; the peer's mirrored
//! writes on the secondary.

use crate::replication::activity_log::{Admit, Extent};
use crate::replication::core::{
    AckKind, Action, AppFlush, AppWrite, Buf, MetaWrite, Msg, PeerStage, PeerWrite, Protocol,
    Replica, ReqId, Stage, Unstable,
};
use crate::replication::metadata::AL_EXTENT;
use crate::replication::states::{Connection, DiskState, Replication, Role};

impl Replica {
    /// The peer's disk takes mirrored writes now.
    fn peer_takes_writes(&self) -> bool {
        self.connection == Connection::Connected
            && self.replication != Replication::Off
            && matches!(
                self.peer_disk,
                DiskState::UpToDate | DiskState::Inconsistent | DiskState::Outdated
            )
    }

    fn in_range(&self, offset: u64, len: u32) -> bool {
        offset
            .checked_add(u64::from(len))
            .is_some_and(|e| e <= self.s.size)
    }

    pub(super) fn app_write(
        &mut self,
        req: ReqId,
        offset: u64,
        len: u32,
        fua: bool,
        out: &mut Vec<Action>,
    ) {
        let usable = self.has_disk() || self.peer_takes_writes();
        if self.role != Role::Primary || !usable || !self.in_range(offset, len) {
            out.push(Action::Complete { req, ok: false });
            return;
        }
        let extents = if self.has_disk() && len > 0 {
            let a = offset / u64::from(AL_EXTENT);
            let b = (offset + u64::from(len) - 1) / u64::from(AL_EXTENT);
            (a..=b).map(Extent).collect()
        } else {
            Vec::new()
        };
        self.app.insert(
            req,
            AppWrite {
                offset,
                len,
                fua,
                al_todo: extents,
                al_admitted: Vec::new(),
                al_token: None,
                free: false,
                al_ready: false,
                started: false,
                local: Stage::Pending,
                peer: PeerStage::NotSent,
                bitmap_epoch: None,
                answered: false,
            },
        );
        // The conflict queue is entered now, in arrival order; the write
        // runs once it is free there and its extents are logged.
        let free = self.conflicts.push(Buf::App(req), offset, len);
        if let Some(w) = self.app.get_mut(&req) {
            w.free = free;
        }
        self.al_admit(req, out);
    }

    /// Admits the write's extents into the activity log; queues it once
    /// all are in the log on disk.
    fn al_admit(&mut self, req: ReqId, out: &mut Vec<Action>) {
        if self.log_marks_pending() {
            // Retried (`al_retry`) once the recovered marks are on disk.
            return;
        }
        let Some(w) = self.app.get_mut(&req) else {
            return;
        };
        // All of the write's extents at once, or none yet (retried when a
        // write ends): extents in the log first, so that making room for
        // one never evicts another the write needs.
        if !self.al.room_for(&w.al_todo) {
            return;
        }
        let al = &self.al;
        w.al_todo.sort_by_key(|e| !al.contains(*e));
        while let Some(e) = w.al_todo.first().copied() {
            match self.al.begin(e) {
                Admit::Go => {}
                Admit::Log(txn) => {
                    self.next_token += 1;
                    let token = self.next_token;
                    w.al_token = Some(token);
                    self.counters.al_writes += 1;
                    // The transaction may drop an extent whose writes are
                    // complete but maybe only in the disk's volatile cache:
                    // they are flushed first (DRBD's PREFLUSH), or a power
                    // cut could lose them with no log naming their extent.
                    self.next_token += 1;
                    let flush = self.next_token;
                    self.al_flushes.insert(flush, (token, txn));
                    self.al_pending.insert(e, token);
                    out.push(Action::Flush { token: flush });
                }
                Admit::Wait => return,
            }
            w.al_todo.remove(0);
            w.al_admitted.push(e);
        }
        if w.al_token.is_none() {
            // An extent already in the log in memory may still be on its
            // way to the disk (another write's transaction): wait for it.
            let pending = w
                .al_admitted
                .iter()
                .find_map(|e| self.al_pending.get(e).copied());
            w.al_token = pending;
        }
        if w.al_token.is_none() && !w.al_ready {
            w.al_ready = true;
            if w.free {
                self.start_op(Buf::App(req), out);
            }
        }
    }

    /// A log transaction is on disk: the writes waiting for it go on.
    pub(super) fn al_logged(&mut self, token: u64, out: &mut Vec<Action>) {
        self.al_pending.retain(|_, t| *t != token);
        let waiting: Vec<ReqId> = self
            .app
            .iter_mut()
            .filter(|(_, w)| w.al_token == Some(token))
            .map(|(r, w)| {
                w.al_token = None;
                *r
            })
            .collect();
        for req in waiting {
            self.al_admit(req, out);
        }
    }

    /// Free of conflicts (and of metadata gates): runs if logged too.
    pub(super) fn app_free(&mut self, req: ReqId, out: &mut Vec<Action>) {
        let Some(w) = self.app.get_mut(&req) else {
            return;
        };
        w.free = true;
        if w.al_ready && !w.started {
            self.app_start(req, out);
        }
    }

    fn app_start(&mut self, req: ReqId, out: &mut Vec<Action>) {
        let mirror = self.peer_takes_writes();
        let disk = self.has_disk();
        if !mirror {
            // The first write alone starts a generation: on disk before
            // the write (`writing_alone`); it waits at the gate till then.
            self.writing_alone(out);
            if !self.gates.is_empty() {
                self.gated.push(Buf::App(req));
                return;
            }
        }
        let Some(w) = self.app.get_mut(&req) else {
            return;
        };
        w.started = true;
        let (offset, len, fua) = (w.offset, w.len, w.fua);
        if disk {
            out.push(Action::Write {
                buf: Buf::App(req),
                offset,
                len,
                fua,
            });
        } else {
            w.local = Stage::Skipped;
        }
        if mirror {
            let seq = self.next_seq;
            self.next_seq += 1;
            w.peer = PeerStage::Sent(seq);
            self.seq_to_req.insert(seq, req);
            self.counters.sent_bytes += u64::from(len);
            self.send(
                Msg::Data {
                    seq,
                    offset,
                    len,
                    fua,
                },
                Some(Buf::App(req)),
                out,
            );
        } else {
            let epoch = self.mark_out_of_sync(offset, u64::from(len), out);
            if let Some(w) = self.app.get_mut(&req) {
                w.bitmap_epoch = epoch;
            }
        }
        if !disk {
            self.finish_op(Buf::App(req), out);
        }
        self.check_app(req, out);
    }

    /// Answers the client when the protocol allows, and forgets the write
    /// when neither disk needs anything more of it.
    pub(super) fn check_app(&mut self, req: ReqId, out: &mut Vec<Action>) {
        let durable = {
            let Some(w) = self.app.get(&req) else { return };
            self.bitmap_durable(w.bitmap_epoch)
        };
        let protocol = self.s.protocol;
        let holding = self.fence_holds();
        let Some(w) = self.app.get_mut(&req) else {
            return;
        };
        if !w.started || w.local == Stage::Pending || !durable {
            return;
        }
        let local_ok = matches!(w.local, Stage::Done(true));
        let peer_done = match w.peer {
            PeerStage::NotSent => Some(false),
            PeerStage::Written(ok, _) => Some(ok),
            PeerStage::Received(_) if protocol != Protocol::C && local_ok => Some(true),
            PeerStage::Sent(_) if protocol == Protocol::A && local_ok => Some(true),
            _ => None,
        };
        if !w.answered {
            let Some(peer_ok) = peer_done else { return };
            // A write only this side has waits while the peer, which lacks
            // it, may still be promoted (fence.rs). A failure is no
            // acknowledgement: it goes at once.
            if holding && w.peer == PeerStage::NotSent && (local_ok || peer_ok) {
                return;
            }
            w.answered = true;
            out.push(Action::Complete {
                req,
                ok: local_ok || peer_ok,
            });
            if local_ok {
                self.counters.written_bytes += u64::from(w.len);
            }
        }
        let settled = matches!(w.peer, PeerStage::NotSent | PeerStage::Written(..));
        if settled {
            let Some(w) = self.app.remove(&req) else {
                return;
            };
            out.push(Action::Release(Buf::App(req)));
            match w.peer {
                // A FUA write is on the peer's media when written.
                PeerStage::Written(true, seq) if !w.fua => {
                    let u = Unstable {
                        offset: w.offset,
                        len: w.len,
                        extents: w.al_admitted,
                        marked: None,
                    };
                    self.unstable.insert(seq, u);
                    self.send_barrier(out);
                }
                _ => {
                    for e in w.al_admitted {
                        self.al.end(e);
                    }
                    self.al_retry(out);
                }
            }
        }
    }

    /// Writes wait for a barrier, none runs, and the link is up.
    pub(super) fn barrier_due(&self) -> bool {
        self.barrier.is_none()
            && self.connection == Connection::Connected
            && self.unstable.values().any(|u| u.marked.is_none())
    }

    /// Asks the peer to flush what it wrote, unless such a flush runs or
    /// the last one went less than `BARRIER_GAP` ago (a tick sends it).
    pub(super) fn send_barrier(&mut self, out: &mut Vec<Action>) {
        let spaced = self
            .barrier_at
            .is_none_or(|at| self.now >= at + super::BARRIER_GAP);
        if !self.barrier_due() || !spaced {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.barrier = Some(seq);
        self.barrier_at = Some(self.now);
        self.send(Msg::Flush { seq }, None, out);
    }

    /// The peer flushed (or failed to flush) everything it wrote before
    /// `seq`: those writes are durable there (or must be resynced).
    fn peer_flushed(&mut self, seq: u64, ok: bool, out: &mut Vec<Action>) {
        if self.barrier == Some(seq) {
            self.barrier = None;
        }
        let covered: Vec<u64> = self
            .unstable
            .range(..seq)
            .filter(|(_, u)| u.marked.is_none())
            .map(|(s, _)| *s)
            .collect();
        for s in covered {
            if !ok {
                self.mark_unstable(s, out);
            } else if let Some(u) = self.unstable.remove(&s) {
                for e in u.extents {
                    self.al.end(e);
                }
            }
        }
        self.release_marked(out);
        self.send_barrier(out);
    }

    /// The peer may have lost the write: it is resynced from here.
    fn mark_unstable(&mut self, seq: u64, out: &mut Vec<Action>) {
        let Some((o, l)) = self
            .unstable
            .get(&seq)
            .map(|u| (u.offset, u64::from(u.len)))
        else {
            return;
        };
        let epoch = self.mark_out_of_sync(o, l, out);
        if let Some(u) = self.unstable.get_mut(&seq) {
            u.marked = Some(epoch);
        }
    }

    /// Marked writes whose marks are on disk let go of their extents.
    fn release_marked(&mut self, out: &mut Vec<Action>) {
        let done: Vec<u64> = self
            .unstable
            .iter()
            .filter(|(_, u)| {
                u.marked
                    .is_some_and(|e| !self.has_disk() || self.bitmap_durable(e))
            })
            .map(|(s, _)| *s)
            .collect();
        for s in done {
            if let Some(u) = self.unstable.remove(&s) {
                for e in u.extents {
                    self.al.end(e);
                }
            }
        }
        self.al_retry(out);
    }

    /// Writes that found every log slot busy try again.
    fn al_retry(&mut self, out: &mut Vec<Action>) {
        let blocked: Vec<ReqId> = self
            .app
            .iter()
            .filter(|(_, w)| !w.al_todo.is_empty() && w.al_token.is_none())
            .map(|(r, _)| *r)
            .collect();
        for req in blocked {
            self.al_admit(req, out);
        }
    }

    /// Bitmap marks became durable: writes waiting for them answer.
    pub(super) fn bitmap_durable_now(&mut self, out: &mut Vec<Action>) {
        let reqs: Vec<ReqId> = self.app.keys().copied().collect();
        for req in reqs {
            self.check_app(req, out);
        }
        // Writes that waited for a crashed Primary's marks (`al_admit`).
        self.al_retry(out);
        self.release_marked(out);
        self.release_resync_acks(out);
        let seqs: Vec<u64> = self.peer_writes.keys().copied().collect();
        for seq in seqs {
            self.peer_write_ack(seq, out);
        }
    }

    pub(super) fn app_read(&mut self, req: ReqId, offset: u64, len: u32, out: &mut Vec<Action>) {
        if self.role != Role::Primary || !self.in_range(offset, len) {
            out.push(Action::Complete { req, ok: false });
            return;
        }
        self.reads.insert(req, (offset, len));
        if self.disk == DiskState::UpToDate {
            out.push(Action::Read {
                buf: Buf::App(req),
                offset,
                len,
            });
        } else {
            self.read_through_peer(req, out);
        }
    }

    fn read_through_peer(&mut self, req: ReqId, out: &mut Vec<Action>) {
        let Some((offset, len)) = self.reads.get(&req).copied() else {
            return;
        };
        if self.connection == Connection::Connected && self.peer_disk == DiskState::UpToDate {
            self.send(
                Msg::ReadRequest {
                    id: req.0,
                    offset,
                    len,
                },
                None,
                out,
            );
        } else {
            self.reads.remove(&req);
            out.push(Action::Complete { req, ok: false });
        }
    }

    pub(super) fn read_reply(&mut self, id: u64, ok: bool, out: &mut Vec<Action>) {
        let req = ReqId(id);
        if let Some((_, len)) = self.reads.remove(&req) {
            self.counters.received_bytes += if ok { u64::from(len) } else { 0 };
            out.push(Action::Complete { req, ok });
        }
    }

    pub(super) fn peer_read(&mut self, id: u64, offset: u64, len: u32, out: &mut Vec<Action>) {
        let upto = self.peer_writes.last_key_value().map(|(seq, _)| *seq);
        self.peer_read_after(id, offset, len, upto, out);
    }

    /// A peer read, once its writes up to `upto` (those that came before
    /// it) are written.
    fn peer_read_after(
        &mut self,
        id: u64,
        offset: u64,
        len: u32,
        upto: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        if self.disk != DiskState::UpToDate || !self.in_range(offset, len) {
            self.send(Msg::ReadReply { id, ok: false }, None, out);
            return;
        }
        // The peer's earlier writes to these blocks land first: they may
        // run on another thread than the read, and under protocol A or B
        // the peer's client may read back what it wrote before it is
        // written here. Later ones do not hold it back (a stream of them
        // to a hot block would, without end).
        if upto.is_some_and(|upto| self.peer_write_pending(offset, len, upto)) {
            self.peer_reads_waiting.push((id, offset, len, upto));
            return;
        }
        out.push(Action::Read {
            buf: Buf::PeerRead(id),
            offset,
            len,
        });
    }

    pub(super) fn app_flush(&mut self, req: ReqId, out: &mut Vec<Action>) {
        if self.role != Role::Primary {
            out.push(Action::Complete { req, ok: false });
            return;
        }
        let mut f = AppFlush {
            local: Stage::Skipped,
            peer: None,
            peer_ok: false,
        };
        if self.has_disk() {
            let token = self.token();
            self.flush_tokens.insert(token, req);
            f.local = Stage::Pending;
            out.push(Action::Flush { token });
        }
        if self.peer_takes_writes() {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.seq_to_req.insert(seq, req);
            f.peer = Some(seq);
            self.send(Msg::Flush { seq }, None, out);
        }
        self.flushes.insert(req, f);
        self.check_flush(req, out);
    }

    fn check_flush(&mut self, req: ReqId, out: &mut Vec<Action>) {
        let Some(f) = self.flushes.get(&req) else {
            return;
        };
        let peer_pending = f.peer.is_some() && self.s.protocol != Protocol::A;
        if f.local == Stage::Pending || peer_pending {
            return;
        }
        // Flushed on a disk that holds the data: here, or (diskless or
        // failed here) on the peer.
        let ok = matches!(f.local, Stage::Done(true)) || f.peer_ok;
        if let Some(seq) = f.peer {
            self.seq_to_req.remove(&seq);
        }
        self.flushes.remove(&req);
        out.push(Action::Complete { req, ok });
    }

    pub(super) fn flush_done(&mut self, token: u64, ok: bool, out: &mut Vec<Action>) {
        if !ok {
            self.disk_failed(out);
        }
        if let Some((meta, txn)) = self.al_flushes.remove(&token) {
            if ok && self.has_disk() {
                out.push(Action::Meta {
                    token: meta,
                    write: MetaWrite::ActivityLog(txn),
                });
            } else {
                // No disk to log on: the writes go on without it.
                self.al_logged(meta, out);
            }
            return;
        }
        if self.bitmap_preflushed(token, out)
            || self.source_flush_done(token, out)
            || self.alone_flushed(token, out)
        {
            return;
        }
        if self.demote_flush == Some(token) {
            self.demote_flush = None;
            if ok {
                self.write_superblock(false, out);
            }
            return;
        }
        if let Some(req) = self.flush_tokens.remove(&token) {
            if let Some(f) = self.flushes.get_mut(&req) {
                f.local = Stage::Done(ok);
            }
            self.check_flush(req, out);
            return;
        }
        let seq = self
            .peer_flushes
            .iter()
            .find(|(_, t)| **t == Some(token))
            .map(|(s, _)| *s);
        if let Some(seq) = seq {
            self.peer_flushes.remove(&seq);
            self.send(
                Msg::Ack {
                    seq,
                    kind: AckKind::Flushed,
                    ok,
                },
                None,
                out,
            );
        }
        self.sync_flush_done(token, ok, out);
    }

    pub(super) fn ack(&mut self, seq: u64, kind: AckKind, ok: bool, out: &mut Vec<Action>) {
        if kind == AckKind::Flushed {
            self.peer_flushed(seq, ok, out);
        }
        let Some(req) = self.seq_to_req.get(&seq).copied() else {
            return;
        };
        if kind == AckKind::Flushed {
            if let Some(f) = self.flushes.get_mut(&req) {
                f.peer = None;
                f.peer_ok = ok;
            }
            self.seq_to_req.remove(&seq);
            return self.check_flush(req, out);
        }
        let Some(w) = self.app.get_mut(&req) else {
            return;
        };
        match kind {
            AckKind::Received => {
                if matches!(w.peer, PeerStage::Sent(_)) {
                    w.peer = PeerStage::Received(seq);
                }
            }
            _ => {
                w.peer = PeerStage::Written(ok, seq);
                self.seq_to_req.remove(&seq);
                if !ok {
                    let (o, l) = (w.offset, u64::from(w.len));
                    let epoch = self.mark_out_of_sync(o, l, out);
                    if let Some(w) = self.app.get_mut(&req) {
                        w.bitmap_epoch = w.bitmap_epoch.max(epoch);
                    }
                }
            }
        }
        self.check_app(req, out);
    }

    /// The connection is gone: what the peer did not confirm (as written,
    /// and flushed) is marked.
    pub(super) fn peer_lost(&mut self, out: &mut Vec<Action>) {
        self.seq_to_req.clear();
        self.barrier = None;
        let unstable: Vec<u64> = self
            .unstable
            .iter()
            .filter(|(_, u)| u.marked.is_none())
            .map(|(s, _)| *s)
            .collect();
        for seq in unstable {
            self.mark_unstable(seq, out);
        }
        self.release_marked(out);
        // Written there but not flushed (unless FUA) is not confirmed either:
        // the peer may have lost power.
        let pending: Vec<(ReqId, u64, u64)> = self
            .app
            .iter()
            .filter(|(_, w)| match w.peer {
                PeerStage::Sent(_) | PeerStage::Received(_) => true,
                PeerStage::Written(ok, _) => ok && !w.fua,
                PeerStage::NotSent => false,
            })
            .map(|(r, w)| (*r, w.offset, u64::from(w.len)))
            .collect();
        for (req, o, l) in pending {
            let epoch = self.mark_out_of_sync(o, l, out);
            if let Some(w) = self.app.get_mut(&req) {
                w.peer = PeerStage::NotSent;
                w.bitmap_epoch = w.bitmap_epoch.max(epoch);
            }
            self.check_app(req, out);
        }
        let flushes: Vec<ReqId> = self.flushes.keys().copied().collect();
        for req in flushes {
            if let Some(f) = self.flushes.get_mut(&req) {
                f.peer = None;
            }
            self.check_flush(req, out);
        }
        let reads: Vec<ReqId> = self
            .reads
            .keys()
            .copied()
            .filter(|_| self.disk != DiskState::UpToDate)
            .collect();
        for req in reads {
            self.reads.remove(&req);
            out.push(Action::Complete { req, ok: false });
        }
        // The peer's writes still running here finish, unacknowledged;
        // its reads were failed there.
        self.peer_flushes.clear();
        self.peer_reads_waiting.clear();
    }

    pub(super) fn peer_data(
        &mut self,
        seq: u64,
        offset: u64,
        len: u32,
        fua: bool,
        payload: bool,
        out: &mut Vec<Action>,
    ) {
        self.counters.received_bytes += u64::from(len);
        if self.s.protocol == Protocol::B {
            self.send(
                Msg::Ack {
                    seq,
                    kind: AckKind::Received,
                    ok: true,
                },
                None,
                out,
            );
        }
        if !payload || !self.has_disk() || !self.in_range(offset, len) {
            out.push(Action::Release(Buf::Peer(seq)));
            return self.nack(seq, AckKind::Written, out);
        }
        self.peer_writes.insert(
            seq,
            PeerWrite {
                offset,
                len,
                fua,
                only_copy: !matches!(
                    self.peer_disk,
                    DiskState::UpToDate | DiskState::Inconsistent | DiskState::Outdated
                ),
                bitmap_epoch: None,
                written: None,
            },
        );
        self.queue_op(Buf::Peer(seq), offset, len, out);
    }

    pub(super) fn peer_start(&mut self, seq: u64, out: &mut Vec<Action>) {
        let Some(w) = self.peer_writes.get(&seq).copied() else {
            return;
        };
        if !self.has_disk() {
            self.peer_writes.remove(&seq);
            self.finish_op(Buf::Peer(seq), out);
            out.push(Action::Release(Buf::Peer(seq)));
            self.nack(seq, AckKind::Written, out);
            return self.peer_reads_ready(out);
        }
        // The peer writes while its own disk is gone: only this copy has
        // it. Judged when it arrived: a write queued here until after the
        // link dropped is on the sender's disk too (which marks it), and
        // marking it here as well would start a generation of this side's
        // own, a split brain at the reunion.
        if w.only_copy {
            let epoch = self.mark_out_of_sync(w.offset, u64::from(w.len), out);
            if let Some(pw) = self.peer_writes.get_mut(&seq) {
                pw.bitmap_epoch = epoch;
            }
        }
        out.push(Action::Write {
            buf: Buf::Peer(seq),
            offset: w.offset,
            len: w.len,
            fua: w.fua,
        });
    }

    /// Whether a write of the peer's up to seq `upto` to any of these
    /// blocks is still to be written here.
    fn peer_write_pending(&self, offset: u64, len: u32, upto: u64) -> bool {
        let end = offset + u64::from(len);
        self.peer_writes.range(..=upto).any(|(_, w)| {
            w.written.is_none() && w.offset < end && offset < w.offset + u64::from(w.len)
        })
    }

    /// The peer's reads no pending write of its holds back any more.
    fn peer_reads_ready(&mut self, out: &mut Vec<Action>) {
        if self.peer_reads_waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.peer_reads_waiting);
        for (id, offset, len, upto) in waiting {
            self.peer_read_after(id, offset, len, upto, out);
        }
    }

    pub(super) fn peer_write_done(&mut self, seq: u64, ok: bool, out: &mut Vec<Action>) {
        if let Some(w) = self.peer_writes.get_mut(&seq) {
            w.written = Some(ok);
            if ok {
                self.counters.written_bytes += u64::from(w.len);
            }
        }
        self.finish_op(Buf::Peer(seq), out);
        out.push(Action::Release(Buf::Peer(seq)));
        if !ok {
            self.disk_failed(out);
        }
        self.peer_write_ack(seq, out);
        self.peer_reads_ready(out);
    }

    fn peer_write_ack(&mut self, seq: u64, out: &mut Vec<Action>) {
        let Some(w) = self.peer_writes.get(&seq).copied() else {
            return;
        };
        let Some(ok) = w.written else { return };
        if !self.bitmap_durable(w.bitmap_epoch) {
            return;
        }
        self.peer_writes.remove(&seq);
        let kind = AckKind::Written;
        self.send(Msg::Ack { seq, kind, ok }, None, out);
        self.peer_flush_ready(out);
    }

    /// The peer's write or flush failed here.
    fn nack(&mut self, seq: u64, kind: AckKind, out: &mut Vec<Action>) {
        self.send(
            Msg::Ack {
                seq,
                kind,
                ok: false,
            },
            None,
            out,
        );
    }

    pub(super) fn peer_flush(&mut self, seq: u64, out: &mut Vec<Action>) {
        self.peer_flushes.insert(seq, None);
        self.peer_flush_ready(out);
    }

    /// A peer flush waits for every peer write that came before it.
    fn peer_flush_ready(&mut self, out: &mut Vec<Action>) {
        let ready: Vec<u64> = self
            .peer_flushes
            .iter()
            .filter(|(seq, t)| t.is_none() && self.peer_writes.range(..**seq).next().is_none())
            .map(|(s, _)| *s)
            .collect();
        for seq in ready {
            if self.has_disk() {
                let token = self.token();
                self.peer_flushes.insert(seq, Some(token));
                out.push(Action::Flush { token });
            } else {
                self.peer_flushes.remove(&seq);
                self.nack(seq, AckKind::Flushed, out);
            }
        }
    }

    pub(super) fn written(&mut self, buf: Buf, ok: bool, out: &mut Vec<Action>) {
        match buf {
            Buf::App(req) => {
                let range = self.app.get_mut(&req).map(|w| {
                    w.local = Stage::Done(ok);
                    (w.offset, w.len)
                });
                self.finish_op(buf, out);
                if let (false, Some((offset, len))) = (ok, range) {
                    // Only the peer has these blocks now: it keeps track.
                    self.send(Msg::OutOfSync { offset, len }, None, out);
                    self.disk_failed(out);
                }
                self.check_app(req, out);
            }
            Buf::Peer(seq) => self.peer_write_done(seq, ok, out),
            Buf::ResyncIn(id) => self.resync_written(id, ok, out),
            _ => {}
        }
    }

    pub(super) fn read_done(&mut self, buf: Buf, ok: bool, digest: u64, out: &mut Vec<Action>) {
        match buf {
            Buf::App(req) => {
                if !ok {
                    self.disk_failed(out);
                    return self.read_through_peer(req, out);
                }
                if let Some((_, len)) = self.reads.remove(&req) {
                    self.counters.read_bytes += u64::from(len);
                    out.push(Action::Complete { req, ok });
                }
            }
            Buf::PeerRead(id) => {
                self.send(Msg::ReadReply { id, ok }, ok.then_some(buf), out);
                out.push(Action::Release(buf));
                if !ok {
                    self.disk_failed(out);
                }
            }
            Buf::ResyncOut(id) => self.resync_read_done(id, ok, out),
            Buf::Verify(id) => self.verify_read_done(id, ok, digest, out),
            _ => {}
        }
    }
}
