//! Quorum of a data node when the cluster has a witness (docs/quorum.md).
//! Pure: the membership core passes in what it heard and the time.
//!
//! A node's partition is itself and every data peer it sees alive that
//! also says (record type 3) it sees this node: with a one-way cut, the
//! side that still hears the other must not count it, or it would stay
//! quorate beside a side that has given it up. The witness's vote is
//! counted only while the latest vote heard names this node, every node it
//! names is in this node's partition, and the heartbeat that carried it
//! is less than a deadtime old. The subset rule is what makes shrinking a
//! vote (a partition split) safe without waiting: nodes cut off from the
//! others no longer have the whole granted set in their partition.

use std::time::Duration;

use crate::membership::quorum_records::{Seen, Vote, VoteEpoch};
use crate::types::{Incarnation, NodeId, Timestamp};

/// One data node's peer as the quorum sees it.
#[derive(Debug, Clone, Copy)]
pub struct PeerReport<'a> {
    pub node: NodeId,
    /// Up or late in this node's membership.
    pub alive: bool,
    /// The latest "nodes I see" it announced in its current incarnation.
    pub seen: Option<&'a Seen>,
}

/// This node's partition, in node order: itself and the data peers alive
/// that see it too. The witness is never part of it (it counts through its
/// vote).
pub fn partition(local: NodeId, witness: NodeId, peers: &[PeerReport<'_>]) -> Vec<NodeId> {
    let mut p: Vec<NodeId> = peers
        .iter()
        .filter(|r| r.node != local && r.node != witness && r.alive)
        .filter(|r| r.seen.is_some_and(|s| s.alive.contains(&local)))
        .map(|r| r.node)
        .collect();
    p.push(local);
    p.sort_unstable();
    p.dedup();
    p
}

/// Without a witness, three nodes or more: whether the nodes alive here
/// agree on who is alive. Counting whoever one sees is not enough when the
/// network does not cut cleanly: if node1 and node2 lose each other but
/// both still see node3, each would have two of three votes and both
/// would run the groups. Here a node counts its partition (itself and its
/// live peers) only if every peer in it announced (record type 3) seeing
/// exactly the same nodes; node3, seeing both, agrees with neither, and
/// no one is quorate until the network heals or a side is declared dead.
pub fn agreed(local: NodeId, reports: &[PeerReport<'_>]) -> bool {
    let mine: Vec<NodeId> = reports.iter().filter(|r| r.alive).map(|r| r.node).collect();
    reports
        .iter()
        .filter(|r| r.alive && r.node != local)
        .all(|r| {
            let Some(seen) = r.seen else {
                return false;
            };
            let mut theirs: Vec<NodeId> = seen.alive.clone();
            theirs.push(r.node);
            theirs.sort_unstable();
            theirs.dedup();
            theirs == mine
        })
}

/// A strict majority of all configured votes (the witness's among them):
/// those of `partition`, plus the witness's while its vote is counted.
pub fn quorate(votes: &[u32], witness: NodeId, partition: &[NodeId], vote_counted: bool) -> bool {
    let total: u64 = votes.iter().map(|v| u64::from(*v)).sum();
    let of = |id: NodeId| votes.get(usize::from(id.0)).map_or(0, |v| u64::from(*v));
    let mut have: u64 = partition
        .iter()
        .filter(|id| **id != witness)
        .map(|id| of(*id))
        .sum();
    if vote_counted {
        have += of(witness);
    }
    2 * have > total
}

/// The witness's vote as last heard by a data node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Heard {
    incarnation: Incarnation,
    epoch: VoteEpoch,
    granted: Vec<NodeId>,
    /// When the last heartbeat carrying this epoch arrived.
    at: Timestamp,
}

/// What a data node knows of the witness's vote.
#[derive(Debug, Clone, Default)]
pub struct HeardVote {
    heard: Option<Heard>,
}

impl HeardVote {
    /// A vote record from the witness, of incarnation `incarnation` (the
    /// membership core already refused older incarnations). Returns true
    /// when it is a decision not heard before.
    pub fn hear(&mut self, incarnation: Incarnation, vote: &Vote, now: Timestamp) -> bool {
        match &mut self.heard {
            Some(h) if h.incarnation == incarnation && h.epoch == vote.epoch => {
                h.at = now;
                false
            }
            // A delayed copy of an earlier decision: the witness may have
            // withdrawn it since.
            Some(h) if (h.incarnation, h.epoch) > (incarnation, vote.epoch) => false,
            _ => {
                self.heard = Some(Heard {
                    incarnation,
                    epoch: vote.epoch,
                    granted: vote.granted.clone(),
                    at: now,
                });
                true
            }
        }
    }

    /// The latest decision heard: epoch and granted nodes.
    pub fn latest(&self) -> Option<(VoteEpoch, &[NodeId])> {
        self.heard.as_ref().map(|h| (h.epoch, h.granted.as_slice()))
    }

    /// Whether `local` may count the vote now. `witness_alive`: the
    /// membership hears the witness (up or late).
    pub fn counts(
        &self,
        local: NodeId,
        partition: &[NodeId],
        witness_alive: bool,
        now: Timestamp,
        deadtime: Duration,
    ) -> bool {
        let Some(h) = &self.heard else {
            return false;
        };
        witness_alive
            && now.since(h.at) < deadtime
            && h.granted.contains(&local)
            && h.granted.iter().all(|g| partition.contains(g))
    }

    /// When a counted vote runs out unless renewed.
    pub fn expiry(&self, deadtime: Duration) -> Option<Timestamp> {
        self.heard.as_ref().map(|h| h.at + deadtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: NodeId = NodeId(2);
    const DEAD: Duration = Duration::from_millis(1000);

    fn ms(t: u64) -> Timestamp {
        Timestamp::from_millis(t)
    }

    fn seen(ids: &[u16]) -> Seen {
        Seen {
            seq: 1,
            alive: ids.iter().map(|&i| NodeId(i)).collect(),
        }
    }

    fn vote(epoch: u64, ids: &[u16]) -> Vote {
        Vote {
            epoch: VoteEpoch(epoch),
            granted: ids.iter().map(|&i| NodeId(i)).collect(),
        }
    }

    #[test]
    fn a_peer_counts_only_if_it_sees_us_too() {
        let both = seen(&[0, 2]);
        let not_us = seen(&[2]);
        let p = |s: Option<&Seen>, alive| {
            partition(
                NodeId(0),
                W,
                &[
                    PeerReport {
                        node: NodeId(1),
                        alive,
                        seen: s,
                    },
                    PeerReport {
                        node: W,
                        alive: true,
                        seen: None,
                    },
                ],
            )
        };
        assert_eq!(p(Some(&both), true), [NodeId(0), NodeId(1)]);
        assert_eq!(p(Some(&not_us), true), [NodeId(0)]);
        assert_eq!(p(None, true), [NodeId(0)]);
        assert_eq!(p(Some(&both), false), [NodeId(0)]);
    }

    #[test]
    fn three_nodes_agree_on_who_is_alive_before_any_is_quorate() {
        fn r(node: u16, alive: bool, seen: Option<&Seen>) -> PeerReport<'_> {
            PeerReport {
                node: NodeId(node),
                alive,
                seen,
            }
        }
        let (sees_0_2, sees_0_1, sees_0) = (seen(&[0, 2]), seen(&[0, 1]), seen(&[0]));
        let me = r(0, true, None);
        // Everyone sees everyone.
        let all = [me, r(1, true, Some(&sees_0_2)), r(2, true, Some(&sees_0_1))];
        assert!(agreed(NodeId(0), &all));
        // node0 and node1 lost each other; node2 sees both: node0 sees
        // {0, 2}, but node2 says {0, 1, 2}.
        let torn = [me, r(1, false, None), r(2, true, Some(&sees_0_1))];
        assert!(!agreed(NodeId(0), &torn));
        // node1 is dead to both: they agree on {0, 2}.
        let clean = [me, r(1, false, None), r(2, true, Some(&sees_0))];
        assert!(agreed(NodeId(0), &clean));
        // A peer not heard saying whom it sees does not agree yet.
        let unheard = [me, r(1, false, None), r(2, true, None)];
        assert!(!agreed(NodeId(0), &unheard));
    }

    #[test]
    fn two_nodes_and_a_witness_need_two_of_three() {
        let votes = [1, 1, 1];
        assert!(quorate(&votes, W, &[NodeId(0), NodeId(1)], false));
        assert!(!quorate(&votes, W, &[NodeId(0)], false));
        assert!(quorate(&votes, W, &[NodeId(0)], true));
        // The witness in a partition list is not a second vote.
        assert!(!quorate(&votes, W, &[NodeId(0), W], false));
    }

    #[test]
    fn the_vote_counts_while_fresh_naming_us_and_within_our_partition() {
        let mut h = HeardVote::default();
        let me = NodeId(0);
        assert!(!h.counts(me, &[me], true, ms(0), DEAD));
        assert!(h.hear(Incarnation(1), &vote(1, &[0]), ms(100)));
        assert!(h.counts(me, &[me], true, ms(100), DEAD));
        assert!(h.counts(me, &[me], true, ms(1099), DEAD));
        assert!(!h.counts(me, &[me], true, ms(1100), DEAD), "a deadtime old");
        assert!(
            !h.counts(me, &[me], false, ms(200), DEAD),
            "witness not heard"
        );
        // The same decision again renews it.
        assert!(!h.hear(Incarnation(1), &vote(1, &[0]), ms(1000)));
        assert!(h.counts(me, &[me], true, ms(1500), DEAD));
        // Granted to both of us, but the other is not in my partition.
        h.hear(Incarnation(1), &vote(2, &[0, 1]), ms(1600));
        assert!(!h.counts(me, &[me], true, ms(1600), DEAD));
        assert!(h.counts(me, &[me, NodeId(1)], true, ms(1600), DEAD));
        // Granted to the other alone.
        h.hear(Incarnation(1), &vote(3, &[1]), ms(1700));
        assert!(!h.counts(me, &[me, NodeId(1)], true, ms(1700), DEAD));
    }

    #[test]
    fn a_late_copy_of_an_older_decision_changes_nothing() {
        let mut h = HeardVote::default();
        let me = NodeId(0);
        h.hear(Incarnation(1), &vote(5, &[]), ms(100));
        assert!(!h.hear(Incarnation(1), &vote(4, &[0]), ms(150)));
        assert!(!h.counts(me, &[me], true, ms(150), DEAD));
        assert_eq!(h.latest(), Some((VoteEpoch(5), &[][..])));
        // A restarted witness starts its epochs afresh.
        assert!(h.hear(Incarnation(2), &vote(1, &[0]), ms(200)));
        assert!(h.counts(me, &[me], true, ms(200), DEAD));
        assert!(!h.hear(Incarnation(1), &vote(9, &[1]), ms(250)));
    }
}
