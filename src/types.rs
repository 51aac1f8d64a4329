//! Small types shared by every part, so that a node index is never mixed up
//! with a link index or a sequence number.

use std::fmt;
use std::time::Duration;

/// Index of a node in the config's node list (identical on every node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u16);

/// Index of a link in the config's link list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u8);

/// One run of a node's daemon. Chosen at start from the wall clock (in
/// microseconds since the epoch) so a restarted node has a higher one and a
/// replayed packet of an older run is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incarnation(pub u64);

impl Incarnation {
    /// The incarnation of a run starting at `wall_us`, after the run that
    /// had `last`: higher than `last` even when the wall clock went back
    /// (peers refuse a lower one as a replay, and would take the restarted
    /// node for dead until its clock caught up).
    pub fn after(wall_us: u64, last: Option<Incarnation>) -> Incarnation {
        Incarnation(wall_us.max(last.map_or(0, |l| l.0.saturating_add(1))))
    }
}

/// Per-link heartbeat sequence number of one incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// Monotonic time as the shell passes it to a pure core: time since an
/// arbitrary origin (the daemon's start). Cores never read a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub Duration);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    pub fn from_millis(ms: u64) -> Self {
        Timestamp(Duration::from_millis(ms))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0 + d)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node#{}", self.0)
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link#{}", self.0)
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod incarnation_tests {
    use super::Incarnation;

    #[test]
    fn a_restart_after_the_clock_went_back_still_has_a_higher_incarnation() {
        let last = Incarnation(5_000);
        assert_eq!(Incarnation::after(9_000, Some(last)), Incarnation(9_000));
        assert_eq!(Incarnation::after(1_000, Some(last)), Incarnation(5_001));
        assert_eq!(Incarnation::after(1_000, None), Incarnation(1_000));
    }
}
