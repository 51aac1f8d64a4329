//! An administrator's wish for a group (stop it, start it, move it to a
//! node), which every node must apply alike. Each node announces the newest
//! wish it knows in its heartbeats and adopts a newer one it hears; newest
//! is the highest (version, origin), so two wishes made at the same moment
//! on different nodes settle the same way everywhere.

use crate::types::NodeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    /// One more than the version of the wish it replaces; 0 is the
    /// configuration's own (started, no move).
    pub version: u64,
    /// The node where the administrator asked.
    pub origin: NodeId,
    /// `duetctl stop`: the group runs nowhere until `duetctl start`.
    pub stopped: bool,
    /// `duetctl move`: the group runs on this node while it can.
    pub moved_to: Option<NodeId>,
}

/// The configuration's own wish, which any administrator's replaces.
impl Default for Intent {
    fn default() -> Intent {
        Intent {
            version: 0,
            origin: NodeId(0),
            stopped: false,
            moved_to: None,
        }
    }
}

impl Intent {
    pub fn newer_than(&self, other: &Intent) -> bool {
        (self.version, self.origin.0) > (other.version, other.origin.0)
    }

    /// The wish that replaces this one, asked by an administrator on node
    /// `me`. Two versions up, so that it wins over a `spent` made from the
    /// same wish at the same moment elsewhere.
    pub fn next(&self, me: NodeId, stopped: bool, moved_to: Option<NodeId>) -> Intent {
        Intent {
            version: self.version.saturating_add(2),
            origin: me,
            stopped,
            moved_to,
        }
    }

    /// The same wish with its move dropped, made by the node that took the
    /// group over (the move is spent). One version up: an administrator's
    /// wish made from the same one meanwhile wins.
    pub fn spent(&self, me: NodeId) -> Intent {
        Intent {
            version: self.version.saturating_add(1),
            origin: me,
            stopped: self.stopped,
            moved_to: None,
        }
    }

    /// Keeps the newer of this and `heard`; true if `heard` replaced it.
    pub fn adopt(&mut self, heard: &Intent) -> bool {
        let newer = heard.newer_than(self);
        if newer {
            *self = *heard;
        }
        newer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_wishes_settle_alike_in_any_order() {
        let base = Intent::default();
        let a = base.next(NodeId(0), true, None);
        let b = base.next(NodeId(1), false, Some(NodeId(0)));
        let mut x = base;
        x.adopt(&a);
        x.adopt(&b);
        let mut y = base;
        y.adopt(&b);
        assert!(!y.adopt(&a), "an older wish must not replace a newer");
        assert_eq!(x, y);
        assert_eq!(x, b, "same version: the higher origin wins");
    }

    #[test]
    fn an_administrators_wish_wins_over_a_spent_move_made_at_the_same_time() {
        let moved = Intent::default().next(NodeId(0), false, Some(NodeId(2)));
        let stop = moved.next(NodeId(0), true, Some(NodeId(2)));
        let spent = moved.spent(NodeId(1));
        let mut x = moved;
        x.adopt(&spent);
        x.adopt(&stop);
        let mut y = moved;
        y.adopt(&stop);
        assert!(!y.adopt(&spent));
        assert_eq!((x, y), (stop, stop));
        // Made after the stop was heard, the spent move is newer.
        let later = stop.spent(NodeId(1));
        assert!(y.adopt(&later));
        assert!(y.stopped && y.moved_to.is_none());
    }

    #[test]
    fn a_later_wish_wins_over_one_from_a_higher_node() {
        let first = Intent::default().next(NodeId(5), true, None);
        let second = first.next(NodeId(0), false, None);
        let mut seen = first;
        assert!(seen.adopt(&second));
        assert!(!seen.stopped);
    }
}
