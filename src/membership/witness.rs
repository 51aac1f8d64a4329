//! The witness's vote (docs/quorum.md). Pure: the membership core of the
//! witness node passes in what each data node reports and the time, and
//! sends the vote in its heartbeats (record type 4).
//!
//! Partitions are the groups of data nodes that the witness hears and that
//! see each other both ways. The vote stays with the partition it last went
//! to while any of that partition's nodes is heard; else it goes to the
//! partition with most votes, a tie to the one with the lowest node id.
//!
//! Safety: a data node counts a vote for at most a deadtime after the
//! heartbeat that carried it, and only if every node granted is in its own
//! partition. So two nodes can count votes at once with disjoint partitions
//! only if they count grants that do not intersect. The witness therefore
//! never sends a grant that misses any grant it sent within the last
//! `hold` (current one included): it withdraws the vote first (an empty
//! grant, which the old side obeys as soon as it hears it) and waits until
//! every such grant is `hold` old. `hold` is the deadtime plus a margin
//! for the last grant's copies still in flight (docs/quorum.md: twice the
//! deadtime). A restarted witness remembers nothing, so it grants nothing
//! for `hold` after it starts.

use std::time::Duration;

use crate::membership::quorum_records::{Seen, Vote, VoteEpoch};
use crate::types::{NodeId, Timestamp};

/// How long the witness waits, after it last sent a grant, before it
/// sends one that misses it: a data node counts a grant for a deadtime
/// after the heartbeat that carried it arrived, and the margin (one more
/// deadtime) covers that heartbeat's time in flight and the scheduling of
/// both daemons.
pub fn hold(deadtime: Duration) -> Duration {
    deadtime * 2
}

/// What the witness knows of one data node.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub node: NodeId,
    /// Up or late in the witness's membership.
    pub alive: bool,
    /// The latest "nodes I see" it announced in its current incarnation.
    pub seen: Option<&'a Seen>,
}

/// A change of the vote, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteChange {
    Granted(Vote),
    /// Withdrawn so it can move to `to`, once the old grants are `hold` old.
    Withdrawn {
        epoch: VoteEpoch,
        to: Vec<NodeId>,
    },
}

#[derive(Debug, Clone)]
pub struct WitnessCore {
    witness: NodeId,
    /// Votes per node, indexed by `NodeId`.
    votes: Vec<u32>,
    hold: Duration,
    epoch: VoteEpoch,
    /// What goes out in every heartbeat; empty while withdrawn.
    granted: Vec<NodeId>,
    /// The partition the vote last went to, kept while withdrawn: if it
    /// comes back before the wait ends, the vote goes back at once.
    last_given: Vec<NodeId>,
    /// Earlier grants and when they stopped being sent.
    retired: Vec<(Vec<NodeId>, Timestamp)>,
    /// A new witness grants nothing before this.
    quiet_until: Timestamp,
}

impl WitnessCore {
    pub fn new(witness: NodeId, votes: Vec<u32>, hold: Duration, now: Timestamp) -> WitnessCore {
        WitnessCore {
            witness,
            votes,
            hold,
            epoch: VoteEpoch(1),
            granted: Vec::new(),
            last_given: Vec::new(),
            retired: Vec::new(),
            quiet_until: now + hold,
        }
    }

    /// The vote as it goes out now.
    pub fn vote(&self) -> Vote {
        Vote {
            epoch: self.epoch,
            granted: self.granted.clone(),
        }
    }

    /// When a wait ends and `decide` should look again.
    pub fn next_wakeup(&self, now: Timestamp) -> Option<Timestamp> {
        let retired = self.retired.iter().map(|(_, t)| *t + self.hold);
        std::iter::once(self.quiet_until)
            .chain(retired)
            .filter(|t| *t > now)
            .min()
    }

    /// Looks at the partitions again; returns the change made, if any.
    pub fn decide(&mut self, reports: &[Report<'_>], now: Timestamp) -> Option<VoteChange> {
        let hold = self.hold;
        self.retired.retain(|(_, t)| *t + hold > now);
        let partitions = self.partitions(reports);
        // Nobody heard: the vote stays where it is. A grant to nodes that
        // cannot be heard costs nothing, and moving it would gain nothing.
        let target = self.choose(&partitions)?;
        if target == self.granted {
            return None;
        }
        let safe = now >= self.quiet_until
            && (self.granted.is_empty() || intersects(&target, &self.granted))
            && self.retired.iter().all(|(g, _)| intersects(&target, g));
        if safe {
            self.retire(now);
            self.granted = target.clone();
            self.last_given = target;
            self.epoch.0 += 1;
            return Some(VoteChange::Granted(self.vote()));
        }
        if self.granted.is_empty() {
            return None;
        }
        self.retire(now);
        self.epoch.0 += 1;
        Some(VoteChange::Withdrawn {
            epoch: self.epoch,
            to: target,
        })
    }

    fn retire(&mut self, now: Timestamp) {
        let old = std::mem::take(&mut self.granted);
        if !old.is_empty() {
            self.retired.push((old, now));
        }
    }

    /// Connected groups of the data nodes heard alive, joined where two
    /// nodes each say they see the other; each sorted, in order of their
    /// lowest node.
    fn partitions(&self, reports: &[Report<'_>]) -> Vec<Vec<NodeId>> {
        let live: Vec<&Report<'_>> = reports
            .iter()
            .filter(|r| r.alive && r.node != self.witness)
            .collect();
        let sees = |a: &Report<'_>, b: NodeId| a.seen.is_some_and(|s| s.alive.contains(&b));
        let mut group: Vec<usize> = (0..live.len()).collect();
        // Few nodes: a plain fixpoint is clearer than a union-find.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..live.len() {
                for j in 0..live.len() {
                    if sees(live[i], live[j].node)
                        && sees(live[j], live[i].node)
                        && group[j] > group[i]
                    {
                        group[j] = group[i];
                        changed = true;
                    }
                }
            }
        }
        let mut out: Vec<Vec<NodeId>> = Vec::new();
        let mut roots: Vec<usize> = group.clone();
        roots.sort_unstable();
        roots.dedup();
        for root in roots {
            let mut p: Vec<NodeId> = live
                .iter()
                .zip(&group)
                .filter(|(_, g)| **g == root)
                .map(|(r, _)| r.node)
                .collect();
            p.sort_unstable();
            out.push(p);
        }
        out.sort();
        out
    }

    /// The partition the vote should be with.
    fn choose(&self, partitions: &[Vec<NodeId>]) -> Option<Vec<NodeId>> {
        let keeps: Vec<&Vec<NodeId>> = partitions
            .iter()
            .filter(|p| intersects(p, &self.last_given))
            .collect();
        let candidates = if keeps.is_empty() {
            partitions.iter().collect()
        } else {
            keeps
        };
        candidates
            .into_iter()
            .max_by_key(|p| (self.votes_of(p), std::cmp::Reverse(p.first().copied())))
            .cloned()
    }

    fn votes_of(&self, p: &[NodeId]) -> u64 {
        p.iter()
            .map(|id| {
                self.votes
                    .get(usize::from(id.0))
                    .map_or(0, |v| u64::from(*v))
            })
            .sum()
    }
}

fn intersects(a: &[NodeId], b: &[NodeId]) -> bool {
    a.iter().any(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(0);
    const B: NodeId = NodeId(1);
    const C: NodeId = NodeId(2);
    const W: NodeId = NodeId(3);
    const HOLD: Duration = Duration::from_millis(2000);

    fn ms(t: u64) -> Timestamp {
        Timestamp::from_millis(t)
    }

    fn seen(ids: &[NodeId]) -> Seen {
        Seen {
            seq: 1,
            alive: ids.to_vec(),
        }
    }

    fn witness() -> WitnessCore {
        WitnessCore::new(W, vec![1, 1, 1, 1], HOLD, ms(0))
    }

    /// Reports of A, B and C, each seeing the nodes listed (all alive).
    fn reports<'a>(seen: &'a [Seen]) -> Vec<Report<'a>> {
        seen.iter()
            .enumerate()
            .map(|(i, s)| Report {
                node: NodeId(i as u16),
                alive: true,
                seen: Some(s),
            })
            .collect()
    }

    fn granted(w: &WitnessCore) -> Vec<NodeId> {
        w.vote().granted
    }

    #[test]
    fn a_new_witness_waits_hold_before_its_first_grant() {
        let mut w = witness();
        let s = [seen(&[B, C, W]), seen(&[A, C, W]), seen(&[A, B, W])];
        assert_eq!(w.decide(&reports(&s), ms(0)), None);
        assert_eq!(w.next_wakeup(ms(0)), Some(ms(2000)));
        assert_eq!(w.decide(&reports(&s), ms(1999)), None);
        let change = w.decide(&reports(&s), ms(2000));
        assert_eq!(
            change,
            Some(VoteChange::Granted(Vote {
                epoch: VoteEpoch(2),
                granted: vec![A, B, C],
            }))
        );
    }

    #[test]
    fn a_split_keeps_the_vote_with_the_bigger_part_at_once() {
        let mut w = witness();
        let all = [seen(&[B, C]), seen(&[A, C]), seen(&[A, B])];
        w.decide(&reports(&all), ms(2000));
        // C is cut off from A and B.
        let split = [seen(&[B]), seen(&[A]), seen(&[])];
        assert!(w.decide(&reports(&split), ms(3000)).is_some());
        assert_eq!(granted(&w), [A, B]);
    }

    #[test]
    fn a_tie_goes_to_the_lowest_node_and_then_stays() {
        let mut w = WitnessCore::new(W, vec![1, 1, 0, 1], HOLD, ms(0));
        let apart = [seen(&[]), seen(&[]), seen(&[])];
        let r = reports(&apart);
        // C has no votes: A and B tie, A is lowest.
        w.decide(&r[..2], ms(2000));
        assert_eq!(granted(&w), [A]);
        // A stays heard: the vote stays with A even if B had more votes.
        let mut w2 = WitnessCore::new(W, vec![1, 2, 0, 1], HOLD, ms(0));
        w2.decide(&r[..1], ms(2000));
        assert_eq!(granted(&w2), [A]);
        assert_eq!(w2.decide(&r[..2], ms(2100)), None);
        assert_eq!(granted(&w2), [A]);
    }

    #[test]
    fn moving_to_a_disjoint_side_withdraws_then_waits_hold() {
        let mut w = witness();
        let apart = [seen(&[]), seen(&[])];
        let r = reports(&apart);
        w.decide(&r, ms(2000));
        assert_eq!(granted(&w), [A]);
        // A is no longer heard.
        let only_b = [Report {
            node: B,
            alive: true,
            seen: Some(&apart[1]),
        }];
        let change = w.decide(&only_b, ms(5000));
        assert_eq!(
            change,
            Some(VoteChange::Withdrawn {
                epoch: VoteEpoch(3),
                to: vec![B],
            })
        );
        assert!(granted(&w).is_empty());
        assert_eq!(w.next_wakeup(ms(5000)), Some(ms(7000)));
        assert_eq!(w.decide(&only_b, ms(6999)), None);
        assert!(granted(&w).is_empty());
        assert!(matches!(
            w.decide(&only_b, ms(7000)),
            Some(VoteChange::Granted(_))
        ));
        assert_eq!(granted(&w), [B]);
        assert_eq!(w.vote().epoch, VoteEpoch(4));
    }

    #[test]
    fn the_old_side_back_during_the_wait_gets_the_vote_back_at_once() {
        let mut w = witness();
        let apart = [seen(&[]), seen(&[])];
        let r = reports(&apart);
        w.decide(&r, ms(2000));
        w.decide(&r[1..], ms(5000));
        assert!(granted(&w).is_empty());
        w.decide(&r, ms(5500));
        assert_eq!(granted(&w), [A]);
    }

    #[test]
    fn a_chain_of_overlapping_grants_never_skips_the_wait() {
        // {A,B} -> {B,C} -> {C}: {C} misses {A,B}, sent less than hold ago.
        let mut w = witness();
        let ab = [seen(&[B]), seen(&[A]), seen(&[])];
        w.decide(&reports(&ab), ms(2000));
        assert_eq!(granted(&w), [A, B]);
        let bc = [seen(&[]), seen(&[C]), seen(&[B])];
        w.decide(&reports(&bc)[1..], ms(3000));
        assert_eq!(granted(&w), [B, C]);
        let c = [seen(&[]), seen(&[]), seen(&[])];
        w.decide(&reports(&c)[2..], ms(3500));
        assert!(granted(&w).is_empty(), "must wait for {{A,B}} to age");
        assert_eq!(w.decide(&reports(&c)[2..], ms(4999)), None);
        // {B,C}, still within hold, shares C: no need to wait for it.
        w.decide(&reports(&c)[2..], ms(5000));
        assert_eq!(granted(&w), [C]);
    }

    #[test]
    fn one_way_sight_is_no_partition() {
        let mut w = witness();
        // A sees B but B does not see A.
        let s = [seen(&[B]), seen(&[])];
        w.decide(&reports(&s), ms(2000));
        assert_eq!(granted(&w), [A]);
    }

    #[test]
    fn nobody_heard_keeps_the_vote_where_it_is() {
        let mut w = witness();
        let s = [seen(&[B]), seen(&[A])];
        w.decide(&reports(&s), ms(2000));
        assert_eq!(w.decide(&[], ms(9000)), None);
        assert_eq!(granted(&w), [A, B]);
    }
}
