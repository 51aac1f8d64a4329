use std::collections::BTreeSet;

use super::*;
use crate::testkit::SplitMix64;

fn g(n: u64) -> Generation {
    Generation(n)
}

fn gens(current: u64, bitmap: u64, h0: u64, h1: u64) -> Generations {
    Generations {
        current: g(current),
        bitmap: g(bitmap),
        history: [g(h0), g(h1)],
    }
}

#[test]
fn the_classic_cases() {
    use Decision::*;
    let cases = [
        (gens(0, 0, 0, 0), gens(0, 0, 0, 0), BothFresh),
        (
            gens(0, 0, 0, 0),
            gens(5, 0, 0, 0),
            FullSync { source: Side::Peer },
        ),
        (gens(5, 0, 0, 0), gens(5, 0, 0, 0), InSync),
        // The peer wrote alone since generation 5: bitmap sync from it.
        (
            gens(5, 0, 0, 0),
            gens(6, 5, 0, 0),
            BitmapSync { source: Side::Peer },
        ),
        (
            gens(6, 5, 0, 0),
            gens(5, 0, 0, 0),
            BitmapSync {
                source: Side::Local,
            },
        ),
        // Both wrote alone since 5.
        (gens(7, 5, 0, 0), gens(6, 5, 0, 0), SplitBrain),
        // Our current is only in the peer's history: full sync from it.
        (
            gens(4, 0, 0, 0),
            gens(6, 5, 4, 0),
            FullSync { source: Side::Peer },
        ),
        // Diverged long ago: a shared ancestor in both histories.
        (gens(9, 8, 3, 0), gens(7, 6, 3, 0), SplitBrain),
        (gens(9, 0, 0, 0), gens(7, 0, 0, 0), Unrelated),
    ];
    for (local, peer, want) in cases {
        assert_eq!(decide(&local, &peer), want, "{local:?} vs {peer:?}");
        assert_eq!(decide(&peer, &local), want.mirrored(), "mirrored {local:?}");
    }
}

#[test]
fn generations_move_as_documented() {
    let mut a = Generations::fresh();
    a.force_primary(g(10));
    assert_eq!(a, gens(10, 0, 0, 0));
    a.clear_bitmap();
    a.new_generation(g(11));
    assert_eq!(a, gens(11, 10, 0, 0));
    a.new_generation(g(12));
    assert_eq!(a, gens(12, 10, 11, 0), "the bitmap keeps its base");
    a.clear_bitmap();
    assert_eq!(a, gens(12, 0, 10, 11));
    let mut b = gens(10, 0, 0, 0);
    b.finish_sync_as_target(&a);
    assert_eq!(b.current, g(12));
    assert!(b.bitmap.is_none());
    assert_eq!(decide(&a, &b), Decision::InSync);
}

/// One node of the model: its generations, the writes its disk holds, and
/// the writes since its bitmap's base (what a bitmap sync would send).
#[derive(Clone, Default)]
struct Node {
    gens: Generations,
    data: BTreeSet<u64>,
    dirty: BTreeSet<u64>,
    primary: bool,
    /// Wrote since the last disconnect (a new generation was started).
    diverged: bool,
}

struct Model {
    rng: SplitMix64,
    nodes: [Node; 2],
    connected: bool,
    next_write: u64,
    next_gen: u64,
    split_brains: u64,
    syncs: u64,
    full_syncs: u64,
}

impl Model {
    fn fresh_gen(&mut self) -> Generation {
        self.next_gen += 1;
        Generation(self.next_gen * 0x9e37_79b9)
    }

    fn write(&mut self, i: usize) {
        if !self.nodes[i].primary {
            return;
        }
        self.next_write += 1;
        let w = self.next_write;
        if self.connected {
            for n in &mut self.nodes {
                n.data.insert(w);
            }
            return;
        }
        if !self.nodes[i].diverged {
            let fresh = self.fresh_gen();
            let n = &mut self.nodes[i];
            if n.gens.bitmap.is_none() {
                n.dirty.clear();
            }
            n.gens.new_generation(fresh);
            n.diverged = true;
        }
        let n = &mut self.nodes[i];
        n.data.insert(w);
        n.dirty.insert(w);
    }

    /// Reconnects and checks the decision against the model's truth.
    fn connect(&mut self) {
        let (a, b) = (&self.nodes[0], &self.nodes[1]);
        let d = decide(&a.gens, &b.gens);
        assert_eq!(decide(&b.gens, &a.gens), d.mirrored(), "asymmetric");
        let a_only: BTreeSet<u64> = a.data.difference(&b.data).copied().collect();
        let b_only: BTreeSet<u64> = b.data.difference(&a.data).copied().collect();
        let winner = match d {
            Decision::InSync => {
                assert!(
                    a_only.is_empty() && b_only.is_empty(),
                    "InSync but data differs"
                );
                None
            }
            Decision::BitmapSync { source } | Decision::FullSync { source } => {
                if matches!(d, Decision::FullSync { .. }) {
                    self.full_syncs += 1;
                }
                let (src, missing_at_src) = match source {
                    Side::Local => (0, &b_only),
                    Side::Peer => (1, &a_only),
                };
                assert!(
                    missing_at_src.is_empty(),
                    "{d:?} would overwrite writes the target has and the source lacks"
                );
                if matches!(d, Decision::BitmapSync { .. }) {
                    let diff = if src == 0 { &a_only } else { &b_only };
                    assert!(
                        diff.is_subset(&self.nodes[src].dirty),
                        "the source's bitmap misses changes"
                    );
                }
                self.syncs += 1;
                Some(src)
            }
            Decision::SplitBrain => {
                assert!(
                    !a_only.is_empty() && !b_only.is_empty(),
                    "split brain without divergence"
                );
                self.split_brains += 1;
                // The administrator discards one side's data.
                Some(self.rng.below(2) as usize)
            }
            Decision::BothFresh => {
                assert!(
                    a.data.is_empty() && b.data.is_empty(),
                    "BothFresh with data"
                );
                // The administrator's `primary --force` on one of them.
                let fresh = self.fresh_gen();
                self.nodes[0].gens.force_primary(fresh);
                Some(0)
            }
            Decision::Unrelated => panic!("Unrelated between related replicas"),
        };
        if let Some(src) = winner {
            let source = self.nodes[src].clone();
            let t = &mut self.nodes[1 - src];
            t.gens.finish_sync_as_target(&source.gens);
            t.data = source.data.clone();
            t.dirty.clear();
        }
        for n in &mut self.nodes {
            n.gens.clear_bitmap();
            n.dirty.clear();
            n.diverged = false;
        }

        assert_eq!(
            decide(&self.nodes[0].gens, &self.nodes[1].gens),
            Decision::InSync
        );
        // Connected, at most one primary.
        if self.nodes[0].primary && self.nodes[1].primary {
            self.nodes[1].primary = false;
        }
        self.connected = true;
    }

    /// A node's failed disk is replaced and given fresh metadata
    /// (create-md): no data, no generations.
    fn replace_disk(&mut self, i: usize) {
        if self.connected {
            return;
        }
        let n = &mut self.nodes[i];
        n.gens = Generations::fresh();
        n.data.clear();
        n.dirty.clear();
        n.diverged = false;
        n.primary = false;
    }

    fn step(&mut self) {
        match self.rng.below(12) {
            3 => {
                let i = self.rng.below(2) as usize;
                self.replace_disk(i);
            }
            0 if self.connected => self.connected = false,
            1 if !self.connected => self.connect(),
            2 => {
                let i = self.rng.below(2) as usize;
                let other_primary = self.nodes[1 - i].primary;
                // Connected: never two primaries. Disconnected: allowed (a
                // failover that split the brain).
                // A fresh disk (replaced, not synced yet) holds no data
                // to serve: it cannot become primary without --force.
                let fresh = self.nodes[i].gens.current.is_none();
                if (!self.connected || !other_primary) && !fresh {
                    self.nodes[i].primary = !self.nodes[i].primary;
                }
            }
            _ => {
                let i = self.rng.below(2) as usize;
                self.write(i);
            }
        }
    }
}

#[test]
fn random_histories_always_decide_what_the_data_says() {
    let (mut splits, mut syncs, mut full) = (0, 0, 0);
    for seed in 1..=500 {
        let mut base = Generations::fresh();
        base.force_primary(Generation(1));
        let node = Node {
            gens: base,
            ..Node::default()
        };
        let mut m = Model {
            rng: SplitMix64(seed),
            nodes: [node.clone(), node],
            connected: true,
            next_write: 0,
            next_gen: 1,
            split_brains: 0,
            syncs: 0,
            full_syncs: 0,
        };
        m.nodes[0].primary = true;
        for _ in 0..300 {
            m.step();
        }
        if !m.connected {
            m.connect();
        }
        splits += m.split_brains;
        syncs += m.syncs;
        full += m.full_syncs;
    }
    // The schedules must have produced every kind of reunion.
    assert!(
        splits > 100 && syncs > 100 && full > 20,
        "split brains {splits}, syncs {syncs}, full syncs {full}"
    );
}

#[test]
fn a_full_sync_broken_off_goes_on_from_the_bitmaps() {
    let base = |n: u64| full_sync_base(g(n)).0;
    // The target of a full sync from generation 7: nothing current yet.
    let target = gens(0, base(7), 0, 0);
    let peer = Side::Peer;
    let local = Side::Local;
    // The source as it was: the bitmaps together cover what is missing.
    assert_eq!(
        decide(&target, &gens(7, 0, 0, 0)),
        Decision::BitmapSync { source: peer }
    );
    assert_eq!(
        decide(&gens(7, 0, 0, 0), &target),
        Decision::BitmapSync { source: local }
    );
    // The source wrote alone since (a new generation over bitmap 7).
    assert_eq!(
        decide(&target, &gens(9, 7, 0, 0)),
        Decision::BitmapSync { source: peer }
    );
    // Its bitmap no longer starts at 7: only a whole copy is sure.
    assert_eq!(
        decide(&target, &gens(11, 9, 7, 0)),
        Decision::FullSync { source: peer }
    );
    // Another source altogether, or a fresh target: the whole device.
    assert_eq!(
        decide(&target, &gens(8, 0, 0, 0)),
        Decision::FullSync { source: peer }
    );
    assert_eq!(
        decide(&gens(0, 0, 0, 0), &gens(7, 0, 0, 0)),
        Decision::FullSync { source: peer }
    );
    // The base is never "none", and differs from the generation itself.
    assert!(!full_sync_base(g(7)).is_none());
    assert_ne!(full_sync_base(g(7)), g(7));
    assert!(full_sync_base(Generation::NONE).is_none());
}
