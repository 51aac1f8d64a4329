//! Generation identifiers: how two replicas that meet again decide, without
//! comparing a byte of data, whether they are in sync, who must sync from
//! whom and how much, or whether both changed apart (split brain). The
//! scheme is DRBD's; docs/replication.md tells it for administrators.
//!
//! Each side keeps:
//! - `current`: the generation of its data now;
//! - `bitmap`: the generation its dirty bitmap started from (the last one
//!   both sides had), zero while the bitmap is empty;
//! - `history`: the two generations before that.
//!
//! A new generation starts whenever a primary writes without its peer
//! (disconnected, or a forced primary). Pure: the caller brings the fresh
//! random numbers.

use std::fmt;

/// A generation identifier: a random 64-bit number, 0 for "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Generation(pub u64);

impl Generation {
    pub const NONE: Generation = Generation(0);

    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generations {
    pub current: Generation,
    pub bitmap: Generation,
    pub history: [Generation; 2],
}

/// Which side of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Peer,
}

/// What the handshake decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Same data: nothing to sync.
    InSync,
    /// `source` has changes the other lacks, all recorded in its bitmap.
    BitmapSync { source: Side },
    /// `source` is newer but its bitmap does not cover the difference: the
    /// whole device is copied.
    FullSync { source: Side },
    /// Both sides are fresh (never had data): the administrator picks one
    /// with a forced primary.
    BothFresh,
    /// Both changed since their last common generation: someone must
    /// decide whose changes are thrown away.
    SplitBrain,
    /// No common past at all: refuse to connect.
    Unrelated,
}

impl Generations {
    /// Fresh metadata: no data generation yet.
    pub fn fresh() -> Self {
        Generations::default()
    }

    /// Starts a new data generation: the current one becomes the bitmap's
    /// base (if the bitmap was empty, i.e. we were in sync until now), or
    /// goes to history (the bitmap already tracks an older base).
    pub fn new_generation(&mut self, fresh: Generation) {
        if self.bitmap.is_none() {
            self.bitmap = self.current;
        } else {
            self.push_history(self.current);
        }
        self.current = fresh;
    }

    /// Connected and in sync again: the bitmap is empty, its base moves to
    /// history.
    pub fn clear_bitmap(&mut self) {
        if !self.bitmap.is_none() {
            self.push_history(self.bitmap);
            self.bitmap = Generation::NONE;
        }
    }

    /// A resync target that finished takes the source's generation.
    pub fn finish_sync_as_target(&mut self, source: &Generations) {
        self.push_history(self.current);
        self.current = source.current;
        self.bitmap = Generation::NONE;
    }

    /// The first `primary --force` on fresh metadata: this side's data is
    /// declared the truth and the peer will get a full sync.
    pub fn force_primary(&mut self, fresh: Generation) {
        self.new_generation(fresh);
    }

    fn push_history(&mut self, g: Generation) {
        if g.is_none() || self.history[0] == g {
            return;
        }
        self.history = [g, self.history[0]];
    }

    fn in_history(&self, g: Generation) -> bool {
        !g.is_none() && self.history.contains(&g)
    }
}

/// What a full sync's target keeps as its bitmap's base (its current
/// generation stays none until the sync ends): derived from the source's
/// generation `from`, so both sides know it without a message. Met again
/// after the sync broke off (a crash, a cut link), it lets the sync go on
/// from the target's bitmap, which its lazy writes keep clearing, instead
/// of starting over.
pub fn full_sync_base(from: Generation) -> Generation {
    if from.is_none() {
        return Generation::NONE;
    }
    let g = from.0.rotate_left(29) ^ 0x6475_6574_5f66_756c;
    Generation(if g == 0 { 1 } else { g })
}

/// A target `t` that broke off a full sync from `s`'s data as it is
/// now (`s.current`), or as it was when `s`'s bitmap started (`s`
/// wrote alone since, all in that bitmap): the two bitmaps together
/// cover what `t` lacks.
fn resumes_full_sync(t: &Generations, s: &Generations) -> bool {
    t.current.is_none()
        && !t.bitmap.is_none()
        && (t.bitmap == full_sync_base(s.current) || t.bitmap == full_sync_base(s.bitmap))
}

/// Compares the two sides, in the order DRBD does.
pub fn decide(local: &Generations, peer: &Generations) -> Decision {
    let (l, p) = (local, peer);
    match (l.current.is_none(), p.current.is_none()) {
        (true, true) => return Decision::BothFresh,
        (true, false) if resumes_full_sync(l, p) => {
            return Decision::BitmapSync { source: Side::Peer };
        }
        (true, false) => return Decision::FullSync { source: Side::Peer },
        (false, true) if resumes_full_sync(p, l) => {
            return Decision::BitmapSync {
                source: Side::Local,
            };
        }
        (false, true) => {
            return Decision::FullSync {
                source: Side::Local,
            };
        }
        (false, false) => {}
    }
    if l.current == p.current {
        return Decision::InSync;
    }
    // One side moved on from the other's current generation, and its
    // bitmap records everything since.
    if p.bitmap == l.current {
        return Decision::BitmapSync { source: Side::Peer };
    }
    if l.bitmap == p.current {
        return Decision::BitmapSync {
            source: Side::Local,
        };
    }
    // Both moved on from the same base: both have changes of their own.
    if !l.bitmap.is_none() && l.bitmap == p.bitmap {
        return Decision::SplitBrain;
    }
    // One side's current is in the other's past, but not as its bitmap
    // base: the changes are not all in a bitmap, so copy everything.
    if p.in_history(l.current) {
        return Decision::FullSync { source: Side::Peer };
    }
    if l.in_history(p.current) {
        return Decision::FullSync {
            source: Side::Local,
        };
    }
    // A shared ancestor further back on both sides: diverged long ago.
    let shared = [l.bitmap, l.history[0], l.history[1]]
        .iter()
        .any(|g| !g.is_none() && (p.bitmap == *g || p.in_history(*g)));
    if shared {
        return Decision::SplitBrain;
    }
    Decision::Unrelated
}

impl Decision {
    /// The same decision seen from the other side.
    pub fn mirrored(self) -> Decision {
        let flip = |s| match s {
            Side::Local => Side::Peer,
            Side::Peer => Side::Local,
        };
        match self {
            Decision::BitmapSync { source } => Decision::BitmapSync {
                source: flip(source),
            },
            Decision::FullSync { source } => Decision::FullSync {
                source: flip(source),
            },
            other => other,
        }
    }
}

#[cfg(test)]
#[path = "generation_tests.rs"]
mod tests;
