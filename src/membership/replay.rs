//! Replay protection for one (sender, link) stream of sequence numbers.
//!
//! A plain "must be higher than the last" rule would drop packets that the
//! network merely reordered, and those still prove the sender alive. So, as
//! IPsec does, a window of the last 64 numbers remembers which were seen:
//! a number is fresh if it is above the highest, or inside the window and
//! not seen before.

use crate::types::Seq;

const WINDOW: u64 = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit i set: `highest - i` was seen.
    seen: u64,
}

impl ReplayWindow {
    /// Records `seq` and says whether it was fresh. Sequence 0 is never
    /// sent, so it is never fresh.
    pub fn accept(&mut self, seq: Seq) -> bool {
        let seq = seq.0;
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
            return true;
        }
        let age = self.highest - seq;
        if age >= WINDOW {
            return false;
        }
        let bit = 1u64 << age;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_accepted_once() {
        let mut w = ReplayWindow::default();
        for s in 1..200 {
            assert!(w.accept(Seq(s)));
            assert!(!w.accept(Seq(s)), "duplicate {s} accepted");
        }
    }

    #[test]
    fn reordered_inside_window_accepted_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(Seq(10)));
        assert!(w.accept(Seq(7)));
        assert!(!w.accept(Seq(7)));
        assert!(w.accept(Seq(9)));
        assert!(w.accept(Seq(11)));
        assert!(!w.accept(Seq(10)));
    }

    #[test]
    fn too_old_and_zero_refused() {
        let mut w = ReplayWindow::default();
        assert!(!w.accept(Seq(0)));
        assert!(w.accept(Seq(1000)));
        assert!(!w.accept(Seq(1000 - WINDOW)));
        assert!(w.accept(Seq(1000 - WINDOW + 1)));
    }

    #[test]
    fn big_jump_clears_window() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(Seq(5)));
        assert!(w.accept(Seq(5 + 500)));
        assert!(!w.accept(Seq(5)));
        assert!(w.accept(Seq(500)));
    }
}
