//! Resync and online verify. The source walks the merged bitmap (resync)
//! or the whole device (verify) and keeps a bounded amount in flight: at
//! most `fill_target` bytes, at a rate between `rate_min` (while clients
//! write) and `rate_max` (a token bucket). The target writes (or
//! compares) in arrival order behind the peer's mirrored writes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::replication::core::handshake::Plan;
use crate::replication::core::{Action, Buf, Event, Msg, Replica, SYNC_CHUNK};
use crate::replication::generation::{Generation, Generations, Side, full_sync_base};
use crate::replication::states::{DiskState, Replication, Role};
use crate::types::Timestamp;

#[derive(Debug, Default)]
pub struct SyncState {
    /// Source or verify source: next byte to look at.
    cursor: u64,
    /// Requests in flight (id -> offset, length).
    in_flight: BTreeMap<u64, (u64, u32)>,
    in_flight_bytes: u64,
    /// Target side: received ranges being written or compared.
    incoming: BTreeMap<u64, (u64, u32, u64)>,
    /// Verify target: ranges a source asked for (`Msg::VerifyAsk`), from
    /// the ask until the source's verdict.
    asks: BTreeMap<u64, (u64, u32)>,
    /// Verify source: the Primary peer's digests of asked ranges, waiting
    /// for the local read.
    answers: BTreeMap<u64, u64>,
    total: u64,
    done: u64,
    budget: f64,
    refilled: Option<Timestamp>,
    /// Bytes done at the start of the speed window, and its start.
    window: Option<(Timestamp, u64)>,
    speed: Option<u64>,
    /// Target: the source's generation, once all blocks are in.
    finishing: Option<Generations>,
    finish_token: Option<u64>,
    /// Source: all sent and acknowledged.
    sent_done: bool,
    /// Source: the flush that puts its own copy on stable storage before
    /// the first read (`start_sync`).
    source_flush: Option<u64>,
    differing: u64,
    /// Target: the bitmap flush that puts the merged bitmap on disk, the
    /// ones that put blocks marked since on disk (by request), and the
    /// acknowledgements that wait for them.
    bitmap_epoch: Option<u64>,
    mark_epochs: BTreeMap<u64, u64>,
    held_acks: Vec<(u64, Option<u64>)>,
}

impl SyncState {
    /// The bucket starts from now (no burst for the paused time).
    pub fn refill_from(&mut self, now: Timestamp) {
        if self.refilled.is_some() {
            self.refilled = Some(now);
        }
    }

    pub fn abort(&mut self) {
        *self = SyncState::default();
    }

    pub fn progress(&self, r: &Replication) -> Option<f64> {
        let running = matches!(
            r,
            Replication::SyncSource
                | Replication::SyncTarget
                | Replication::VerifySource
                | Replication::VerifyTarget
        );
        (running && self.total > 0).then(|| (self.done as f64 / self.total as f64).min(1.0))
    }

    pub fn speed(&self, _now: Timestamp) -> Option<u64> {
        self.speed
    }

    /// When the token bucket has room again, if it is what holds the sync.
    pub fn budget_at(&self, now: Timestamp) -> Option<Timestamp> {
        (self.refilled.is_some() && self.budget <= 0.0 && !self.sent_done)
            .then(|| now + Duration::from_millis(10))
    }

    fn record(&mut self, bytes: u64, now: Timestamp) {
        self.done += bytes;
        let (start, base) = *self.window.get_or_insert((now, self.done - bytes));
        let dt = now.since(start);
        if dt >= Duration::from_secs(1) {
            self.speed = Some(((self.done - base) as f64 / dt.as_secs_f64()) as u64);
            self.window = Some((now, self.done));
        }
    }
}

impl Replica {
    /// Both bitmaps are merged: start.
    pub(super) fn start_sync(&mut self, plan: Plan, out: &mut Vec<Action>) {
        if plan.full {
            self.bitmap.mark(0, self.s.size);
            self.bitmap_blocks_changed(0, self.s.size, false);
        }
        self.sync_paused = false;
        self.sync = SyncState {
            total: self.bitmap.dirty_bytes(),
            refilled: Some(self.now),
            ..SyncState::default()
        };
        let full = plan.full;
        match plan.source {
            Side::Local => {
                self.replication = Replication::SyncSource;
                // What this side sends may be only in its disk's volatile
                // cache (writes from a Primary whose daemon died before
                // their flush, say): on stable storage before the target
                // takes it and both clear their bits, or a power cut here
                // would leave the two different with nothing marked.
                if self.has_disk() {
                    let token = self.token();
                    self.sync.source_flush = Some(token);
                    out.push(Action::Flush { token });
                }
            }
            Side::Peer => {
                self.replication = Replication::SyncTarget;
                self.disk = DiskState::Inconsistent;
                if let Some(base) = plan.adopt {
                    let mine = self.gens.current;
                    self.gens.current = base;
                    self.gens.bitmap = Generation::NONE;
                    self.gens.history = [mine, self.gens.history[0]];
                } else if plan.full {
                    // Kept on disk with the bitmap: a sync broken off
                    // goes on from what is left (`full_sync_base`).
                    let from = self.peer.as_ref().map(|p| p.generations.current);
                    self.gens = Generations::fresh();
                    self.gens.bitmap = full_sync_base(from.unwrap_or(Generation::NONE));
                }
                self.alone = false;
                // Inconsistent is on disk before the first block changes.
                self.write_superblock(true, out);
                // And the merged bitmap before the first block is
                // acknowledged: the source clears its bits then, while the
                // block may be only in this disk's volatile cache. A power
                // cut here must leave the bits on this side.
                self.bitmap_blocks_changed(0, self.s.size, true);
                self.sync.bitmap_epoch = Some(self.bm.epoch + 1);
                self.flush_bitmap(out);
                self.send_update(out);
            }
        }
        out.push(Action::Event(Event::SyncStarted {
            full,
            bytes: self.sync.total,
        }));
        self.state_changed(out);
    }

    fn refill(&mut self) {
        let Some(at) = self.sync.refilled else { return };
        let busy = !self.app.is_empty() || !self.peer_writes.is_empty();
        let rate = if busy {
            self.s.rate_min
        } else {
            self.s.rate_max
        } as f64;
        let dt = self.now.since(at).as_secs_f64();
        // A tenth of a second of burst at most.
        self.sync.budget = (self.sync.budget + rate * dt).min(rate / 10.0 + SYNC_CHUNK as f64);
        self.sync.refilled = Some(self.now);
    }

    /// Issues sync or verify requests while the controller allows.
    pub(super) fn sync_pump(&mut self, out: &mut Vec<Action>) {
        let verifying = self.replication == Replication::VerifySource;
        if !(self.replication == Replication::SyncSource || verifying)
            || self.sync.sent_done
            || self.sync_paused
            || self.sync.source_flush.is_some()
        {
            return;
        }
        self.refill();
        while self.sync.in_flight_bytes < self.s.fill_target && self.sync.budget > 0.0 {
            let next = if verifying {
                (self.sync.cursor < self.s.size).then(|| {
                    let len = SYNC_CHUNK.min(self.s.size - self.sync.cursor);
                    (self.sync.cursor, len)
                })
            } else {
                self.bitmap.next_dirty(self.sync.cursor, SYNC_CHUNK)
            };
            let Some((offset, len)) = next else { break };
            self.sync.cursor = offset + len;
            self.sync.budget -= len as f64;
            self.next_id += 1;
            let id = self.next_id;
            self.sync.in_flight.insert(id, (offset, len as u32));
            self.sync.in_flight_bytes += len;
            if !verifying {
                self.queue_op(Buf::ResyncOut(id), offset, len as u32, out);
            } else if self.verify_asks_peer() {
                let len = len as u32;
                self.send(Msg::VerifyAsk { id, offset, len }, None, out);
            } else {
                self.queue_op(Buf::Verify(id), offset, len as u32, out);
            }
        }
        if self.sync.in_flight.is_empty() {
            self.source_walked(verifying, out);
        }
    }

    /// The cursor reached the end with nothing in flight.
    fn source_walked(&mut self, verifying: bool, out: &mut Vec<Action>) {
        if verifying {
            // Not at the end: the rate controller holds the next request
            // back. A verify never goes round again (a range that could
            // not be compared counts as differing), or it would start
            // over every time the budget ran out, and never end.
            if self.sync.cursor < self.s.size {
                return;
            }
        } else if self.bitmap.next_dirty(0, SYNC_CHUNK).is_some() {
            // Blocks behind the cursor (a failed request), or ahead of it
            // and held back by the rate: the walk goes round again.
            self.sync.cursor = 0;
            return;
        }
        self.sync.sent_done = true;
        if verifying {
            self.send(Msg::VerifyDone, None, out);
            let oos = self.bitmap.dirty_bytes();
            self.replication = Replication::Established;
            out.push(Action::Event(Event::VerifyFinished {
                out_of_sync_bytes: oos,
            }));
            self.state_changed(out);
        } else {
            // The target takes this generation with the last block: from
            // here a write this side makes alone must start a new one (as
            // DRBD clears the bitmap base when its resync is done). Else, if
            // the link drops before the target's answer, both would hold
            // the same generation with different data, and a later write
            // on the target would sync over this side's, a split brain
            // unseen.
            self.joined(out);
            let generations = self.gens;
            self.send(Msg::SyncDone { generations }, None, out);
        }
    }

    pub(super) fn resync_read_start(&mut self, id: u64, out: &mut Vec<Action>) {
        match self.sync.in_flight.get(&id) {
            Some(&(offset, len)) => out.push(Action::Read {
                buf: Buf::ResyncOut(id),
                offset,
                len,
            }),
            None => self.finish_op(Buf::ResyncOut(id), out),
        }
    }

    pub(super) fn resync_read_done(&mut self, id: u64, ok: bool, out: &mut Vec<Action>) {
        let range = self.sync.in_flight.get(&id).copied();
        if let (Some((offset, len)), true) = (range, ok) {
            // Sent before the conflict queue lets a client write to these
            // blocks go: the peer must get the two in this order.
            self.counters.sent_bytes += u64::from(len);
            self.send(
                Msg::ResyncData { id, offset, len },
                Some(Buf::ResyncOut(id)),
                out,
            );
        }
        out.push(Action::Release(Buf::ResyncOut(id)));
        self.finish_op(Buf::ResyncOut(id), out);
        if range.is_some() && !ok {
            self.disk_failed(out);
        }
    }

    pub(super) fn resync_ack(&mut self, id: u64, ok: bool, _out: &mut Vec<Action>) {
        let Some((offset, len)) = self.sync.in_flight.remove(&id) else {
            return;
        };
        self.sync.in_flight_bytes -= u64::from(len);
        if ok {
            self.bitmap.clear(offset, u64::from(len));
            self.bitmap_blocks_changed(offset, u64::from(len), false);
            self.counters.resynced_bytes += u64::from(len);
            let now = self.now;
            self.sync.record(u64::from(len), now);
        }
    }

    pub(super) fn resync_data(&mut self, id: u64, offset: u64, len: u32, out: &mut Vec<Action>) {
        let fits = offset
            .checked_add(u64::from(len))
            .is_some_and(|e| e <= self.s.size);
        if self.replication != Replication::SyncTarget || !fits || !self.has_disk() {
            out.push(Action::Release(Buf::ResyncIn(id)));
            return self.send(Msg::ResyncAck { id, ok: false }, None, out);
        }
        self.counters.received_bytes += u64::from(len);
        self.sync.incoming.insert(id, (offset, len, 0));
        // Blocks the source marked after the bitmaps were exchanged are not
        // in this side's bitmap: marked now, on disk before the
        // acknowledgement (which clears them there).
        let before = self.bitmap.dirty_blocks();
        self.bitmap.mark(offset, u64::from(len));
        if self.bitmap.dirty_blocks() != before {
            self.bitmap_blocks_changed(offset, u64::from(len), true);
            self.sync.mark_epochs.insert(id, self.bm.epoch + 1);
            self.flush_bitmap(out);
        }
        self.queue_op(Buf::ResyncIn(id), offset, len, out);
    }

    pub(super) fn resync_write_start(&mut self, id: u64, out: &mut Vec<Action>) {
        match self.sync.incoming.get(&id) {
            Some(&(offset, len, _)) if self.has_disk() => out.push(Action::Write {
                buf: Buf::ResyncIn(id),
                offset,
                len,
                fua: false,
            }),
            _ => {
                self.finish_op(Buf::ResyncIn(id), out);
                out.push(Action::Release(Buf::ResyncIn(id)));
                self.send(Msg::ResyncAck { id, ok: false }, None, out);
            }
        }
    }

    pub(super) fn resync_written(&mut self, id: u64, ok: bool, out: &mut Vec<Action>) {
        self.finish_op(Buf::ResyncIn(id), out);
        out.push(Action::Release(Buf::ResyncIn(id)));
        let Some((offset, len, _)) = self.sync.incoming.remove(&id) else {
            return;
        };
        if !ok {
            self.disk_failed(out);
        } else if self.replication == Replication::SyncTarget {
            self.bitmap.clear(offset, u64::from(len));
            self.bitmap_blocks_changed(offset, u64::from(len), false);
            self.bm.synced_unflushed = true;
            self.counters.resynced_bytes += u64::from(len);
            let now = self.now;
            self.sync.record(u64::from(len), now);
        }
        let epoch = self.sync.mark_epochs.remove(&id);
        if ok && !self.resync_marks_durable(epoch) {
            self.sync.held_acks.push((id, epoch));
        } else {
            self.send(Msg::ResyncAck { id, ok }, None, out);
        }
        self.target_maybe_finished(out);
    }

    /// The bits that say a synced block may still differ are on this
    /// side's disk: the merged bitmap, and `epoch`'s marks.
    fn resync_marks_durable(&self, epoch: Option<u64>) -> bool {
        self.bitmap_durable(self.sync.bitmap_epoch) && self.bitmap_durable(epoch)
    }

    /// Bitmap blocks reached the disk: the synced blocks waiting for them
    /// are acknowledged.
    pub(super) fn release_resync_acks(&mut self, out: &mut Vec<Action>) {
        let held = std::mem::take(&mut self.sync.held_acks);
        for (id, epoch) in held {
            if self.resync_marks_durable(epoch) {
                self.send(Msg::ResyncAck { id, ok: true }, None, out);
            } else {
                self.sync.held_acks.push((id, epoch));
            }
        }
    }

    /// The disk failed: held acknowledgements go out as failures (the
    /// source keeps those blocks marked).
    pub(super) fn fail_resync_acks(&mut self, out: &mut Vec<Action>) {
        for (id, _) in std::mem::take(&mut self.sync.held_acks) {
            self.send(Msg::ResyncAck { id, ok: false }, None, out);
        }
    }

    /// Target: the source sent everything.
    pub(super) fn sync_done(&mut self, generations: Generations, out: &mut Vec<Action>) {
        if self.replication != Replication::SyncTarget {
            return;
        }
        self.sync.finishing = Some(generations);
        self.target_maybe_finished(out);
    }

    fn target_maybe_finished(&mut self, out: &mut Vec<Action>) {
        if self.sync.finishing.is_none()
            || !self.sync.incoming.is_empty()
            || self.sync.finish_token.is_some()
        {
            return;
        }
        if self.bitmap.dirty_blocks() > 0 {
            // Something did not arrive whole: stay Inconsistent, resync
            // again on the next connect.
            return self.drop_transport("sync ended with blocks missing", out);
        }
        // The data is on stable storage before the disk says UpToDate.
        let token = self.token();
        self.sync.finish_token = Some(token);
        out.push(Action::Flush { token });
    }

    /// The source's own flush before its first read; true if it was.
    pub(super) fn source_flush_done(&mut self, token: u64, out: &mut Vec<Action>) -> bool {
        if self.sync.source_flush != Some(token) {
            return false;
        }
        self.sync.source_flush = None;
        // A failed flush detached the disk (`flush_done`), and the sync
        // with it.
        self.sync_pump(out);
        true
    }

    pub(super) fn sync_flush_done(&mut self, token: u64, ok: bool, out: &mut Vec<Action>) {
        if self.sync.finish_token != Some(token) {
            return;
        }
        let Some(source) = self.sync.finishing.take() else {
            return;
        };
        self.sync.finish_token = None;
        if !ok || !self.has_disk() {
            return;
        }
        self.gens.finish_sync_as_target(&source);
        self.disk = DiskState::UpToDate;
        self.distrusted = false;
        // That flush came after every synced block was written.
        self.bm.synced_unflushed = false;
        self.replication = Replication::Established;
        self.crashed_primary = false;
        self.alone = false;
        let bytes = self.sync.done;
        self.sync = SyncState::default();
        self.bitmap_blocks_changed(0, self.s.size, false);
        self.flush_bitmap(out);
        self.write_superblock(false, out);
        self.send_update(out);
        out.push(Action::Event(Event::SyncFinished { bytes }));
        self.state_changed(out);
    }

    /// Source: the target says UpToDate.
    pub(super) fn source_finished(&mut self, out: &mut Vec<Action>) {
        let bytes = self.sync.done;
        self.sync = SyncState::default();
        self.replication = crate::replication::states::Replication::Established;
        self.joined(out);
        self.flush_bitmap(out);
        out.push(Action::Event(Event::SyncFinished { bytes }));
    }

    // ---- verify ----

    pub(super) fn start_verify(&mut self, out: &mut Vec<Action>) {
        self.replication = Replication::VerifySource;
        self.sync = SyncState {
            total: self.s.size,
            refilled: Some(self.now),
            ..SyncState::default()
        };
        self.state_changed(out);
    }

    pub(super) fn verify_read_start(&mut self, id: u64, out: &mut Vec<Action>) {
        let range = if self.replication == Replication::VerifySource {
            self.sync.in_flight.get(&id).copied()
        } else {
            self.sync.incoming.get(&id).map(|&(o, l, _)| (o, l))
        };
        match range {
            Some((offset, len)) => out.push(Action::Read {
                buf: Buf::Verify(id),
                offset,
                len,
            }),
            None => self.finish_op(Buf::Verify(id), out),
        }
    }

    pub(super) fn verify_read_done(
        &mut self,
        id: u64,
        ok: bool,
        digest: u64,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Release(Buf::Verify(id)));
        if !ok {
            self.finish_op(Buf::Verify(id), out);
            return self.disk_failed(out);
        }
        self.verify_compare(id, digest, out);
        // After the request or reply is out, as for a sync read.
        self.finish_op(Buf::Verify(id), out);
    }

    /// A source that is not Primary while its peer is reads after the
    /// peer: its own read of a range could miss a write the Primary made
    /// (and read) before, still on its way here, and report a difference
    /// where there is none. Asked first, the Primary sends its digest
    /// behind the writes it made before reading, and this side's read
    /// waits for them.
    fn verify_asks_peer(&self) -> bool {
        self.peer_role == Some(Role::Primary) && self.role != Role::Primary
    }

    fn verify_compare(&mut self, id: u64, digest: u64, out: &mut Vec<Action>) {
        if self.replication == Replication::VerifySource {
            if let Some(theirs) = self.sync.answers.remove(&id) {
                let equal = theirs == digest;
                self.send(Msg::VerifyReply { id, equal }, None, out);
                return self.verify_reply(id, equal, out);
            }
            if let Some(&(offset, len)) = self.sync.in_flight.get(&id) {
                self.send(
                    Msg::VerifyRequest {
                        id,
                        offset,
                        len,
                        digest,
                    },
                    None,
                    out,
                );
            }
            return;
        }
        let Some((offset, len, theirs)) = self.sync.incoming.remove(&id) else {
            return;
        };
        if self.sync.asks.contains_key(&id) {
            // Asked: the source compares, and says what it found.
            self.sync.record(u64::from(len), self.now);
            let answer = Msg::VerifyRequest {
                id,
                offset,
                len,
                digest,
            };
            return self.send(answer, None, out);
        }
        let equal = theirs == digest;
        if !equal {
            self.verify_mark(offset, len);
        }
        self.sync.record(u64::from(len), self.now);
        self.send(Msg::VerifyReply { id, equal }, None, out);
    }

    fn verify_mark(&mut self, offset: u64, len: u32) {
        self.sync.differing += u64::from(len);
        self.bitmap.mark(offset, u64::from(len));
        self.bitmap_blocks_changed(offset, u64::from(len), false);
    }

    pub(super) fn verify_request(
        &mut self,
        id: u64,
        offset: u64,
        len: u32,
        digest: u64,
        out: &mut Vec<Action>,
    ) {
        if self.replication == Replication::VerifySource {
            // The Primary's answer to an ask: read here, behind its writes.
            if self.sync.in_flight.get(&id) == Some(&(offset, len)) {
                self.sync.answers.insert(id, digest);
                self.queue_op(Buf::Verify(id), offset, len, out);
            }
            return;
        }
        if !self.verify_target(id, offset, len, out) {
            return;
        }
        self.sync.incoming.insert(id, (offset, len, digest));
        self.queue_op(Buf::Verify(id), offset, len, out);
    }

    /// A source asks this side (its Primary peer) to read first.
    pub(super) fn verify_ask(&mut self, id: u64, offset: u64, len: u32, out: &mut Vec<Action>) {
        if !self.verify_target(id, offset, len, out) {
            return;
        }
        self.sync.asks.insert(id, (offset, len));
        self.sync.incoming.insert(id, (offset, len, 0));
        self.queue_op(Buf::Verify(id), offset, len, out);
    }

    /// Whether this side can take part as verify target in a request for
    /// the range (it becomes VerifyTarget at the first); if not, the
    /// source is told the range is not known equal.
    fn verify_target(&mut self, id: u64, offset: u64, len: u32, out: &mut Vec<Action>) -> bool {
        let fits = offset
            .checked_add(u64::from(len))
            .is_some_and(|e| e <= self.s.size);
        if !fits || !self.has_disk() {
            self.send(Msg::VerifyReply { id, equal: false }, None, out);
            return false;
        }
        if self.replication == Replication::Established {
            self.replication = Replication::VerifyTarget;
            self.sync = SyncState {
                total: self.s.size,
                ..SyncState::default()
            };
            self.state_changed(out);
        }
        if self.replication != Replication::VerifyTarget {
            self.send(Msg::VerifyReply { id, equal: false }, None, out);
            return false;
        }
        true
    }

    pub(super) fn verify_reply(&mut self, id: u64, equal: bool, out: &mut Vec<Action>) {
        let Some((offset, len)) = self.sync.in_flight.remove(&id) else {
            // The source's verdict on a range this side was asked for.
            if let Some((offset, len)) = self.sync.asks.remove(&id)
                && !equal
            {
                self.verify_mark(offset, len);
            }
            return;
        };
        self.sync.in_flight_bytes -= u64::from(len);
        if !equal {
            self.verify_mark(offset, len);
        }
        let now = self.now;
        self.sync.record(u64::from(len), now);
        let _ = out;
    }

    pub(super) fn verify_done_peer(&mut self, out: &mut Vec<Action>) {
        if self.replication == Replication::VerifyTarget {
            self.replication = Replication::Established;
            let oos = self.bitmap.dirty_bytes();
            self.sync = SyncState::default();
            out.push(Action::Event(Event::VerifyFinished {
                out_of_sync_bytes: oos,
            }));
            self.state_changed(out);
        }
    }
}
