//! What an administrator asks (`duetctl primary r0`, ...): each either
//! changes the state at once (and says so to the peer) or is refused with
//! the reason, changing nothing.

use crate::replication::core::{Action, Attached, Event, Msg, Replica, Settings};
use crate::replication::states::{Connection, DiskState, Replication, Role};
use crate::types::Timestamp;

pub type Refused = String;

impl Replica {
    /// Mirrored writes wait for a flush on the peer: a demotion now is
    /// refused until it comes (the shell waits for it, bounded).
    pub fn awaits_peer_flush(&self) -> bool {
        !self.unstable.is_empty()
    }

    fn connected(&self) -> bool {
        self.connection == Connection::Connected
    }

    /// Becomes Primary. `force` declares this disk's data the truth when it
    /// is not UpToDate (the first promotion after create-md): the peer then
    /// gets all of it. `wall_us` orders promotions for the split-brain
    /// policies.
    pub fn primary(
        &mut self,
        force: bool,
        wall_us: u64,
        now: Timestamp,
    ) -> Result<Vec<Action>, Refused> {
        self.now = now.max(self.now);
        let mut out = Vec::new();
        if self.role == Role::Primary {
            return Ok(out);
        }
        if self.peer_role == Some(Role::Primary) {
            return Err(format!(
                "{} is Primary: never two primaries",
                self.s.peer_name
            ));
        }
        if self.unconfirmed && !self.connected() {
            if !force {
                return Err(format!(
                    "the disk is Consistent: this node restarted and has not been connected to {peer} since, and \
                     {peer} may have been Primary and written meanwhile; it becomes UpToDate when they connect \
                     (if {peer} is lost for good, --force makes this copy the good one)",
                    peer = self.s.peer_name
                ));
            }
            self.unconfirmed = false;
        }
        let through_peer = self.connected() && self.peer_disk == DiskState::UpToDate;
        let forcing = self.disk != DiskState::UpToDate;
        match self.disk {
            DiskState::UpToDate => {}
            DiskState::Diskless | DiskState::Failed if through_peer => {}
            DiskState::Inconsistent | DiskState::Outdated if force => {
                if self.replication == Replication::SyncTarget {
                    return Err("the disk is receiving a sync; wait for it to finish".into());
                }
            }
            DiskState::Outdated => {
                return Err(format!(
                    "the disk is Outdated: {peer} outdated it when it wrote without this node, and may have \
                     written since; it syncs from {peer} when they connect (--force makes this copy the good \
                     one, and what {peer} wrote since a split brain)",
                    peer = self.s.peer_name
                ));
            }
            d => {
                return Err(format!(
                    "the disk is {d}: only an UpToDate disk can be Primary{}",
                    if self.has_disk() {
                        " (--force makes this copy the good one and overwrites the peer's)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if forcing && self.has_disk() {
            let fresh = self.fresh_generation();
            self.gens.force_primary(fresh);
            self.bitmap.mark(0, self.s.size);
            self.bitmap_blocks_changed(0, self.s.size, true);
            self.disk = DiskState::UpToDate;
            self.alone = true;
            // An administrator declared this copy the truth.
            self.distrusted = false;
        }
        self.role = Role::Primary;
        self.primary_since = wall_us.max(1);
        self.write_superblock(true, &mut out);
        self.flush_bitmap(&mut out);
        // Promoted without its peer (a failover, or forced): the peer's
        // disk may be UpToDate, and is to be outdated first as after a
        // lost connection.
        let peer_disk = self.peer_disk;
        self.start_fencing(peer_disk, &mut out);
        // Only a disk forced to be the truth has new generations to tell;
        // a diskless node serving through its peer changes none, and its
        // record of the peer's may be stale (the peer took this node's
        // generation at the end of a sync): re-deciding on it refused a
        // good connection.
        if forcing && self.has_disk() && self.connected() {
            // The peer must hear the new generation to sync from it.
            let me = self.my_state();
            self.send(Msg::Hello(me), None, &mut out);
            if let Some(p) = self.peer.clone() {
                self.hello(p, true, &mut out);
            }
        } else {
            self.send_update(&mut out);
        }
        self.state_changed(&mut out);
        Ok(out)
    }

    /// Becomes Secondary; refused while client requests are in flight (the
    /// shell detaches the block device first).
    pub fn secondary(&mut self, now: Timestamp) -> Result<Vec<Action>, Refused> {
        self.now = now.max(self.now);
        let mut out = Vec::new();
        if self.role == Role::Secondary {
            return Ok(out);
        }
        if !self.app.is_empty() || !self.flushes.is_empty() || !self.reads.is_empty() {
            return Err("client requests are still in flight".into());
        }
        // This node's activity log covers them until then: after a
        // demotion a crash here would no longer resync them.
        if !self.unstable.is_empty() {
            return Err(
                "mirrored writes are not yet on the peer's stable storage (its flush is under way): try again in a moment".into(),
            );
        }
        self.role = Role::Secondary;
        if self.has_disk() {
            // The superblock stops saying Primary once this disk's cache
            // is flushed (`demote_flushed`).
            let token = self.token();
            self.demote_flush = Some(token);
            out.push(Action::Flush { token });
        }
        self.send_update(&mut out);
        self.state_changed(&mut out);
        Ok(out)
    }

    /// Starts connecting. `discard_my_data`: after a split brain, this
    /// node's changes are the ones thrown away.
    pub fn connect(&mut self, discard_my_data: bool) -> Result<Vec<Action>, Refused> {
        let mut out = Vec::new();
        if self.connection != Connection::StandAlone {
            if discard_my_data {
                return Err(format!(
                    "already {}: disconnect first",
                    self.connection.title()
                ));
            }
            return Ok(out);
        }
        if discard_my_data && self.role == Role::Primary {
            return Err("a Primary cannot discard its data: demote it first".into());
        }
        self.discard_my_data = discard_my_data;
        self.connection = Connection::Connecting;
        self.state_changed(&mut out);
        Ok(out)
    }

    pub fn disconnect(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(
            self.connection,
            Connection::Handshake | Connection::Connected
        ) {
            self.drop_transport("disconnected by the administrator", &mut out);
        }
        self.connection = Connection::StandAlone;
        self.state_changed(&mut out);
        out
    }

    /// Online verify from this side.
    pub fn verify(&mut self, now: Timestamp) -> Result<Vec<Action>, Refused> {
        self.now = now.max(self.now);
        if !self.connected() || self.replication != Replication::Established {
            return Err(format!(
                "verify needs an established connection (it is {}, {})",
                self.connection.title(),
                self.replication.title()
            ));
        }
        if self.disk != DiskState::UpToDate || self.peer_disk != DiskState::UpToDate {
            return Err("verify needs both disks UpToDate".into());
        }
        let mut out = Vec::new();
        self.start_verify(&mut out);
        self.sync_pump(&mut out);
        Ok(out)
    }

    /// Declares this disk's data bad: it gets a full sync from the peer.
    pub fn invalidate(&mut self, now: Timestamp) -> Result<Vec<Action>, Refused> {
        self.now = now.max(self.now);
        self.may_invalidate()?;
        let mut out = Vec::new();
        self.invalidate_here(&mut out);
        Ok(out)
    }

    /// Declares the peer's data bad (DRBD's invalidate-remote): the peer's
    /// disk becomes Inconsistent with every block out of sync, and a full
    /// sync from this node follows, this node SyncSource. The peer does
    /// the invalidating on its own disk (`Msg::InvalidateRemote`), under
    /// the same rules as its own `invalidate`; checked here first, so that
    /// only a race with a change on the peer can make it decline.
    pub fn invalidate_remote(&mut self, now: Timestamp) -> Result<Vec<Action>, Refused> {
        self.now = now.max(self.now);
        if !self.connected() {
            return Err(format!(
                "invalidate-remote needs a connected peer (the connection is {})",
                self.connection.title()
            ));
        }
        if self.replication == Replication::Off {
            return Err("the connection is still being set up: try again once Established".into());
        }
        if self.disk != DiskState::UpToDate {
            return Err(format!(
                "this node's disk is {}: only an UpToDate disk can overwrite the peer's",
                self.disk
            ));
        }
        if self.peer_role == Some(Role::Primary) {
            return Err(format!(
                "{} is Primary: its disk cannot be made Inconsistent under it; demote it first",
                self.s.peer_name
            ));
        }
        if !matches!(
            self.peer_disk,
            DiskState::UpToDate | DiskState::Inconsistent | DiskState::Outdated
        ) {
            return Err(format!(
                "{}'s disk is {}: there is no data to invalidate",
                self.s.peer_name, self.peer_disk
            ));
        }
        if self.syncing() {
            return Err(format!(
                "a {} runs: wait for it to finish",
                self.replication().title()
            ));
        }
        // This side's bitmap is left as it is: the peer marks all of its
        // own and goes Inconsistent, and that alone decides the direction.
        // Bits set here on a consistent disk, should the request be lost
        // with the connection, would leave the direction of the next
        // resync to the tie-breaks instead, which may pick the peer.
        let mut out = Vec::new();
        self.send(Msg::InvalidateRemote, None, &mut out);
        Ok(out)
    }

    /// The peer's invalidate-remote arrived: invalidate this disk as a
    /// local `invalidate` would, or say why not (to the log here, and the
    /// state as it is to the peer).
    pub(super) fn invalidated_by_peer(&mut self, out: &mut Vec<Action>) {
        match self.may_invalidate() {
            Ok(()) => self.invalidate_here(out),
            Err(why) => {
                out.push(Action::Event(Event::Declined {
                    reason: format!(
                        "{} asked to overwrite this disk (invalidate-remote): {why}",
                        self.s.peer_name
                    ),
                }));
                self.send_update(out);
            }
        }
    }

    fn may_invalidate(&self) -> Result<(), Refused> {
        if self.role == Role::Primary {
            return Err("a Primary cannot invalidate its own disk".into());
        }
        if !self.has_disk() || self.syncing() {
            return Err("no disk, or a sync or verify runs".into());
        }
        if !self.connected() || self.peer_disk != DiskState::UpToDate {
            return Err("invalidate needs a connected peer with an UpToDate disk".into());
        }
        Ok(())
    }

    /// Every block out of sync and the disk Inconsistent; then the
    /// handshake decides again, with the peer as source. The bitmap is
    /// written at once, beside the superblock, not up to a second later by
    /// the lazy writer: a crash in that second would leave an Inconsistent
    /// disk whose bitmap lacks bits, and its next resync would copy too
    /// little.
    fn invalidate_here(&mut self, out: &mut Vec<Action>) {
        self.bitmap.mark(0, self.s.size);
        self.bitmap_blocks_changed(0, self.s.size, true);
        self.disk = DiskState::Inconsistent;
        self.write_superblock(true, out);
        self.flush_bitmap(out);
        let me = self.my_state();
        self.send(Msg::Hello(me), None, out);
        if let Some(p) = self.peer.clone() {
            self.hello(p, true, out);
        }
    }

    /// Lets go of the backing disk.
    pub fn detach(&mut self) -> Result<Vec<Action>, Refused> {
        let mut out = Vec::new();
        if !self.has_disk() {
            return Ok(out);
        }
        if self.role == Role::Primary
            && !(self.connected() && self.peer_disk == DiskState::UpToDate)
        {
            return Err("the Primary's only UpToDate copy: demote it first".into());
        }
        if !self.app.is_empty() || !self.peer_writes.is_empty() || self.syncing() {
            return Err("I/O or a sync is in flight".into());
        }
        self.flush_bitmap(&mut out);
        self.write_superblock(false, &mut out);
        self.disk = DiskState::Diskless;
        self.send_update(&mut out);
        self.state_changed(&mut out);
        Ok(out)
    }
}

impl Replica {
    /// Takes a backing disk again (after detach, or a start without
    /// metadata). A connected peer hears of it through a new handshake.
    pub fn attach(&mut self, a: Attached) -> Result<Vec<Action>, Refused> {
        let mut out = Vec::new();
        if self.has_disk() {
            return Ok(out);
        }
        if self.role == Role::Primary {
            return Err(
                "a diskless Primary reads through its peer: demote it before attaching".into(),
            );
        }
        if a.bitmap.bits() != self.bitmap.bits() {
            return Err("the disk's metadata describes another size than this replica's".into());
        }
        self.attach_metadata(a);
        if matches!(
            self.connection,
            Connection::Handshake | Connection::Connected
        ) {
            // The handshake decides again, with this disk's generations.
            self.drop_transport("disk attached: handshake again", &mut out);
        }
        self.state_changed(&mut out);
        Ok(out)
    }

    /// Takes changed settings live: protocol, split-brain policies, rates,
    /// timeout, the error policy. What would need a new disk or link
    /// (size, granularity, nodes) is refused.
    pub fn adjust(&mut self, s: Settings) -> Result<Vec<Action>, Refused> {
        let old = &self.s;
        if s.size != old.size || s.granularity != old.granularity {
            return Err("the disk's size changed: detach, create-md, attach".into());
        }
        if s.local != old.local || s.peer != old.peer {
            return Err("the replica's nodes changed: restart duetd".into());
        }
        self.s = s;
        let mut out = Vec::new();
        self.fencing_adjusted(&mut out);
        self.state_changed(&mut out);
        Ok(out)
    }

    /// Stops sending sync (or verify) requests until `resume_sync`; what
    /// is in flight finishes. On the node that sends the sync.
    pub fn pause_sync(&mut self) -> Result<Vec<Action>, Refused> {
        if !matches!(
            self.replication,
            Replication::SyncSource | Replication::VerifySource
        ) {
            return Err(format!(
                "no sync or verify is sent from here (this node is {}): pause it on the sync source",
                self.replication.title()
            ));
        }
        self.sync_paused = true;
        let mut out = Vec::new();
        self.state_changed(&mut out);
        Ok(out)
    }

    pub fn resume_sync(&mut self, now: Timestamp) -> Result<Vec<Action>, Refused> {
        self.now = now.max(self.now);
        if !self.sync_paused {
            return Err("no sync is paused here".into());
        }
        self.sync_paused = false;
        let mut out = Vec::new();
        self.sync.refill_from(self.now);
        self.sync_pump(&mut out);
        self.state_changed(&mut out);
        Ok(out)
    }
}
