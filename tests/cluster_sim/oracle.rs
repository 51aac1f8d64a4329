//! What the client may expect of the replicated disk, watched from
//! outside the cluster: at every promotion the new Primary holds every
//! acknowledged write that a node still holds (protocol C: lost only when
//! the one node that held it lost power before a flush covered it), and
//! a split brain is reported only
//! when both nodes wrote apart. Built on the replication simulation's
//! world (tests/replication_sim/world.rs), which keeps the promises.

use duet::replication::core::Event;
use duet::replication::states::{Connection, DiskState, Replication, Role};

use crate::world::{SECTOR, SIZE, World, sector_id};

#[derive(Default)]
pub struct Oracle {
    was_synced: bool,
    primaries_apart: [bool; 2],
    /// `World::reunions` as last seen.
    reunions_seen: [u64; 2],
    split_brains_seen: usize,
    split_brains_checked: usize,
    pub promotions: u64,
    pub split_brains: u64,
    /// An administrator threw data away on purpose (discard-my-data after
    /// a split brain): the promises are rebased on the winner.
    pub resolved: u64,
}

impl Oracle {
    pub fn new() -> Oracle {
        Oracle {
            primaries_apart: [true, false],
            ..Oracle::default()
        }
    }

    /// Node `n` was just promoted: it must hold what was promised, and its
    /// data is the truth from now on.
    pub fn promoted(&mut self, w: &mut World, n: usize, how: &str) -> Result<(), String> {
        self.promotions += 1;
        self.primaries_apart[n] = true;
        let want = promised(w);
        // A Primary without a disk of its own serves its peer's.
        let diskless = w
            .replica(n)
            .is_some_and(|r| r.disk() == DiskState::Diskless);
        let from = if diskless { 1 - n } else { n };
        let disk = &w.nodes[from].disk;
        let missing = (0..SIZE / SECTOR).find(|s| sector_id(disk, *s) < want[*s as usize]);
        // Rebased either way: one loss is reported once, not at every
        // promotion after it.
        w.rebase(n, &want);
        if let Some(s) = missing {
            return Err(format!(
                "node{} promoted ({how}) without acknowledged write {} on sector {s} (it has {})",
                n + 1,
                want[s as usize],
                sector_id(&w.nodes[from].disk, s)
            ));
        }
        Ok(())
    }

    /// After an administrator's discard-my-data on `loser`: the winner's
    /// data is what the client may expect from now on.
    pub fn discarded(&mut self, w: &mut World, loser: usize) {
        self.resolved += 1;
        let want = promised(w);
        w.rebase(1 - loser, &want);
    }

    fn in_sync_pair(w: &World) -> bool {
        (0..2).all(|n| {
            w.state(n).is_some_and(|(_, c, rep, d, pd)| {
                c == Connection::Connected
                    && rep == Replication::Established
                    && d == DiskState::UpToDate
                    && pd == DiskState::UpToDate
            })
        })
    }

    pub fn synced(w: &World) -> bool {
        Oracle::in_sync_pair(w)
    }

    /// Called at every step: follows syncs and reunions. Returns a
    /// violation: a split brain with only one Primary since the last sync
    /// (a false alarm that stops the pair), or both sides written apart
    /// and reconnected without one (a split brain hidden).
    pub fn track(&mut self, w: &mut World) -> Option<String> {
        if Oracle::in_sync_pair(w) {
            w.latest = [true; 2];
        }
        let primary = (0..2).find(|n| w.replica(*n).is_some_and(|r| r.role() == Role::Primary));
        let synced = primary.filter(|_| Oracle::in_sync_pair(w));
        if let Some(p) = synced
            && !self.was_synced
        {
            w.synced(p);
            self.primaries_apart = [p == 0, p == 1];
        }
        self.was_synced = synced.is_some();
        let mut violation = None;
        for n in 0..2 {
            if w.reunions[n] != self.reunions_seen[n] {
                violation = violation.or(self.reunion(w));
            }
            self.reunions_seen[n] = w.reunions[n];
        }
        let sb = split_brains(w);
        let one_primary = !self.primaries_apart.iter().all(|p| *p);
        if sb > self.split_brains_seen {
            self.split_brains += (sb - self.split_brains_seen) as u64;
            if one_primary {
                violation = violation.or(Some(format!(
                    "a split brain though only one node was Primary: {:?}",
                    w.events_seen.last()
                )));
            }
        }
        self.split_brains_seen = sb;
        violation
    }

    fn reunion(&mut self, w: &mut World) -> Option<String> {
        let apart = w.wrote_apart;
        let mut violation = None;
        if apart[0] && apart[1] && self.split_brains_seen == self.split_brains_checked {
            let sb = split_brains(w);
            if sb == self.split_brains_checked {
                violation =
                    Some("both nodes wrote apart and reconnected without a split brain".into());
            }
        }
        self.split_brains_checked = self.split_brains_seen;
        w.wrote_apart = [false; 2];
        violation
    }
}

fn split_brains(w: &World) -> usize {
    w.events_seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::SplitBrain { .. }))
        .count()
}

/// Per sector, the newest write node `n` must hold if made Primary now:
/// protocol C promises every acknowledged write, but after a power cut of
/// `n` only what the client was told is durable there.
/// Per sector, the newest acknowledged write that some node still holds:
/// in its cache (it kept its power since), or on its media (flushed
/// before a power cut, `World::power_cut` leaves only those). A write
/// held only by a node that lost power before a flush covered it is gone,
/// as from any single disk; every other one must be on the new Primary,
/// whichever node it was written through.
fn promised(w: &World) -> Vec<u64> {
    let [a, b] = &w.promise;
    a.holds
        .iter()
        .zip(&b.holds)
        .zip(&w.acked)
        .map(|((x, y), acked)| (*x).max(*y).min(*acked))
        .collect()
}
