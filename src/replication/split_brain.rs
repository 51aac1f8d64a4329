//! What to do about a split brain, by the classic policies
//! (after-sb-0pri, after-sb-1pri, after-sb-2pri). Both nodes run this on
//! the same facts, each from its own side, and must reach the same
//! verdict: the functions are symmetric, and where the facts cannot break a
//! tie the answer is Disconnect (an administrator decides), never a guess.

use crate::replication::generation::Side;

/// After a split brain with no primary now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After0Pri {
    Disconnect,
    /// The node that became primary last (after the split) loses.
    DiscardYoungerPrimary,
    /// The node that became primary first loses.
    DiscardOlderPrimary,
    /// A node that wrote nothing apart loses; both wrote: disconnect.
    DiscardZeroChanges,
    /// The node with fewer changed blocks loses; a tie: disconnect.
    DiscardLeastChanges,
    /// This node always loses.
    DiscardNode(String),
}

/// After a split brain with one primary now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After1Pri {
    Disconnect,
    /// Apply after-sb-0pri only if it discards the secondary.
    Consensus,
    DiscardSecondary,
    /// Apply after-sb-0pri, even against the primary.
    ViolentlyAs0p,
}

/// After a split brain with both primary now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After2Pri {
    Disconnect,
    ViolentlyAs0p,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    pub after_sb_0pri: After0Pri,
    pub after_sb_1pri: After1Pri,
    pub after_sb_2pri: After2Pri,
}

impl Default for Policies {
    /// The classic setup's choice (SCENARIO.md): discard-younger-primary,
    /// consensus, disconnect.
    fn default() -> Self {
        Policies {
            after_sb_0pri: After0Pri::DiscardYoungerPrimary,
            after_sb_1pri: After1Pri::Consensus,
            after_sb_2pri: After2Pri::Disconnect,
        }
    }
}

/// What one side knows of itself, exchanged on connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideFacts {
    pub node: String,
    /// Primary at the moment the split brain is found.
    pub primary_now: bool,
    /// When it became primary after the split (any monotonic order both
    /// sides share, e.g. the generation's wall-clock stamp); None if it
    /// never did.
    pub primary_since: Option<u64>,
    /// Blocks it changed while apart (set bits in its bitmap).
    pub changes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// This side discards its changes and syncs from the other.
    Discard(Side),
    /// Stay apart; an administrator picks (discard-my-data on the loser).
    Disconnect,
}

fn index(side: Side) -> usize {
    match side {
        Side::Local => 0,
        Side::Peer => 1,
    }
}

const SIDES: [Side; 2] = [Side::Local, Side::Peer];

/// The verdict for `[local, peer]`.
pub fn resolve(p: &Policies, facts: &[SideFacts; 2]) -> Resolution {
    let primaries = facts.iter().filter(|f| f.primary_now).count();
    match primaries {
        0 => zero_primaries(&p.after_sb_0pri, facts),
        1 => {
            let secondary = if facts[0].primary_now {
                Side::Peer
            } else {
                Side::Local
            };
            match p.after_sb_1pri {
                After1Pri::Disconnect => Resolution::Disconnect,
                After1Pri::DiscardSecondary => Resolution::Discard(secondary),
                After1Pri::Consensus => match zero_primaries(&p.after_sb_0pri, facts) {
                    Resolution::Discard(s) if s == secondary => Resolution::Discard(s),
                    _ => Resolution::Disconnect,
                },
                After1Pri::ViolentlyAs0p => zero_primaries(&p.after_sb_0pri, facts),
            }
        }
        _ => match p.after_sb_2pri {
            After2Pri::Disconnect => Resolution::Disconnect,
            After2Pri::ViolentlyAs0p => zero_primaries(&p.after_sb_0pri, facts),
        },
    }
}

fn zero_primaries(policy: &After0Pri, f: &[SideFacts; 2]) -> Resolution {
    let pick = |loser: Option<Side>| loser.map_or(Resolution::Disconnect, Resolution::Discard);
    match policy {
        After0Pri::Disconnect => Resolution::Disconnect,
        After0Pri::DiscardYoungerPrimary => pick(by_primary_age(f, true)),
        After0Pri::DiscardOlderPrimary => pick(by_primary_age(f, false)),
        After0Pri::DiscardZeroChanges => match (f[0].changes, f[1].changes) {
            (0, c) if c > 0 => Resolution::Discard(Side::Local),
            (c, 0) if c > 0 => Resolution::Discard(Side::Peer),
            _ => Resolution::Disconnect,
        },
        After0Pri::DiscardLeastChanges => match f[0].changes.cmp(&f[1].changes) {
            std::cmp::Ordering::Less => Resolution::Discard(Side::Local),
            std::cmp::Ordering::Greater => Resolution::Discard(Side::Peer),
            std::cmp::Ordering::Equal => Resolution::Disconnect,
        },
        After0Pri::DiscardNode(name) => {
            let losers: Vec<Side> = SIDES
                .into_iter()
                .filter(|s| f[index(*s)].node == *name)
                .collect();
            match losers.as_slice() {
                [one] => Resolution::Discard(*one),
                _ => Resolution::Disconnect,
            }
        }
    }
}

/// The side that became primary last (`younger`) or first. Only one
/// primary since the split: that one is both the youngest and the only.
fn by_primary_age(f: &[SideFacts; 2], younger: bool) -> Option<Side> {
    match (f[0].primary_since, f[1].primary_since) {
        (Some(_), None) => younger.then_some(Side::Local),
        (None, Some(_)) => younger.then_some(Side::Peer),
        (Some(a), Some(b)) if a != b => {
            let local_younger = a > b;
            Some(if local_younger == younger {
                Side::Local
            } else {
                Side::Peer
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::SplitMix64;

    fn side(node: &str, primary_now: bool, since: Option<u64>, changes: u64) -> SideFacts {
        SideFacts {
            node: node.into(),
            primary_now,
            primary_since: since,
            changes,
        }
    }

    fn policies(p0: After0Pri, p1: After1Pri, p2: After2Pri) -> Policies {
        Policies {
            after_sb_0pri: p0,
            after_sb_1pri: p1,
            after_sb_2pri: p2,
        }
    }

    use After0Pri as P0;
    use Resolution::*;

    #[test]
    fn each_zero_primary_policy_does_what_it_says() {
        let f = [
            side("node1", false, Some(100), 10),
            side("node2", false, Some(200), 0),
        ];
        let p = |p0| policies(p0, After1Pri::Disconnect, After2Pri::Disconnect);
        assert_eq!(resolve(&p(P0::Disconnect), &f), Disconnect);
        assert_eq!(
            resolve(&p(P0::DiscardYoungerPrimary), &f),
            Discard(Side::Peer)
        );
        assert_eq!(
            resolve(&p(P0::DiscardOlderPrimary), &f),
            Discard(Side::Local)
        );
        assert_eq!(resolve(&p(P0::DiscardZeroChanges), &f), Discard(Side::Peer));
        assert_eq!(
            resolve(&p(P0::DiscardLeastChanges), &f),
            Discard(Side::Peer)
        );
        assert_eq!(
            resolve(&p(P0::DiscardNode("node1".into())), &f),
            Discard(Side::Local)
        );
        assert_eq!(resolve(&p(P0::DiscardNode("node9".into())), &f), Disconnect);
        // Both changed: discard-zero-changes cannot choose.
        let both = [side("node1", false, None, 3), side("node2", false, None, 5)];
        assert_eq!(resolve(&p(P0::DiscardZeroChanges), &both), Disconnect);
        assert_eq!(
            resolve(&p(P0::DiscardLeastChanges), &both),
            Discard(Side::Local)
        );
        // Nobody was primary apart: primary age cannot choose.
        assert_eq!(resolve(&p(P0::DiscardYoungerPrimary), &both), Disconnect);
        // Only one was primary apart: it is the younger, and no older one exists.
        let one = [
            side("node1", false, Some(5), 3),
            side("node2", false, None, 5),
        ];
        assert_eq!(
            resolve(&p(P0::DiscardYoungerPrimary), &one),
            Discard(Side::Local)
        );
        assert_eq!(resolve(&p(P0::DiscardOlderPrimary), &one), Disconnect);
    }

    #[test]
    fn one_primary_policies() {
        // node1 is primary now; 0pri would discard node2 (the younger).
        let f = [
            side("node1", true, Some(100), 10),
            side("node2", false, Some(200), 4),
        ];
        let p = |p1| policies(P0::DiscardYoungerPrimary, p1, After2Pri::Disconnect);
        assert_eq!(resolve(&p(After1Pri::Disconnect), &f), Disconnect);
        assert_eq!(
            resolve(&p(After1Pri::DiscardSecondary), &f),
            Discard(Side::Peer)
        );
        assert_eq!(resolve(&p(After1Pri::Consensus), &f), Discard(Side::Peer));
        // If 0pri would discard the primary, consensus refuses...
        let g = [
            side("node1", true, Some(300), 10),
            side("node2", false, Some(200), 4),
        ];
        assert_eq!(resolve(&p(After1Pri::Consensus), &g), Disconnect);
        // ...and violently-as0p goes ahead anyway.
        assert_eq!(
            resolve(&p(After1Pri::ViolentlyAs0p), &g),
            Discard(Side::Local)
        );
    }

    #[test]
    fn two_primaries_disconnect_unless_told_to_be_violent() {
        let f = [
            side("node1", true, Some(1), 1),
            side("node2", true, Some(2), 2),
        ];
        let calm = policies(
            P0::DiscardLeastChanges,
            After1Pri::Consensus,
            After2Pri::Disconnect,
        );
        assert_eq!(resolve(&calm, &f), Disconnect);
        let violent = policies(
            P0::DiscardLeastChanges,
            After1Pri::Consensus,
            After2Pri::ViolentlyAs0p,
        );
        assert_eq!(resolve(&violent, &f), Discard(Side::Local));
    }

    fn mirrored(r: Resolution) -> Resolution {
        match r {
            Discard(Side::Local) => Discard(Side::Peer),
            Discard(Side::Peer) => Discard(Side::Local),
            Disconnect => Disconnect,
        }
    }

    /// Both nodes compute the verdict from their own side; they must agree,
    /// or each could decide to keep its own data.
    #[test]
    fn both_sides_always_reach_the_same_verdict() {
        let mut rng = SplitMix64(5);
        let p0s = [
            P0::Disconnect,
            P0::DiscardYoungerPrimary,
            P0::DiscardOlderPrimary,
            P0::DiscardZeroChanges,
            P0::DiscardLeastChanges,
            P0::DiscardNode("node2".into()),
        ];
        let p1s = [
            After1Pri::Disconnect,
            After1Pri::Consensus,
            After1Pri::DiscardSecondary,
            After1Pri::ViolentlyAs0p,
        ];
        let p2s = [After2Pri::Disconnect, After2Pri::ViolentlyAs0p];
        let mut discards = 0;
        for _ in 0..20_000 {
            let mut random_side = |name: &str| {
                side(
                    name,
                    rng.chance(50),
                    rng.chance(60).then(|| rng.below(4)),
                    rng.below(3),
                )
            };
            let f = [random_side("node1"), random_side("node2")];
            let swapped = [f[1].clone(), f[0].clone()];
            let p = policies(
                p0s[rng.below(6) as usize].clone(),
                p1s[rng.below(4) as usize],
                p2s[rng.below(2) as usize],
            );
            let here = resolve(&p, &f);
            assert_eq!(resolve(&p, &swapped), mirrored(here), "{p:?} {f:?}");
            // Never discard a primary unless a violent policy allows it.
            if let Discard(s) = here
                && f[index(s)].primary_now
            {
                let primaries = f.iter().filter(|x| x.primary_now).count();
                let violent = (primaries == 1 && p.after_sb_1pri == After1Pri::ViolentlyAs0p)
                    || (primaries == 2 && p.after_sb_2pri == After2Pri::ViolentlyAs0p);
                assert!(violent, "discarded a primary under {p:?}: {f:?}");
            }
            if matches!(here, Discard(_)) {
                discards += 1;
            }
        }
        assert!(discards > 1000);
    }
}
