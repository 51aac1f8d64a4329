//! A node leaving (duetd stopping) with its groups stopped here stays
//! until each is taken over: a peer that takes one over claims it while
//! this node is heard alive, and a node gone silent at once would leave
//! the peer a silent node that may still hold the group (in a two-node
//! cluster without fencing it would then take nothing over).

use crate::membership::node_state::NodeState;
use crate::resources::placement::Phase;

/// Whether every group in `moving` is active on a peer that can run it,
/// or no peer can (`peers`: the states of the peers alive now).
pub fn taken_over(moving: &[String], peers: &[NodeState]) -> bool {
    moving.iter().all(|name| {
        let can: Vec<Phase> = peers
            .iter()
            .filter(|s| !s.standby)
            .filter_map(|s| s.groups.iter().find(|g| &g.name == name))
            .filter(|g| g.eligible)
            .map(|g| g.phase)
            .collect();
        can.is_empty() || can.contains(&Phase::Active)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::node_state::GroupState;

    fn peer(phase: Phase, eligible: bool, standby: bool) -> NodeState {
        NodeState {
            seq: 1,
            standby,
            groups: vec![GroupState {
                name: "web".into(),
                phase,
                eligible,
                running: phase == Phase::Active,
                behind: false,
            }],
            intents: Vec::new(),
        }
    }

    #[test]
    fn a_group_is_taken_over_once_a_peer_that_can_run_it_has_it_active() {
        let web = ["web".to_string()];
        assert!(!taken_over(&web, &[peer(Phase::Idle, true, false)]));
        assert!(!taken_over(&web, &[peer(Phase::Claiming, true, false)]));
        assert!(taken_over(&web, &[peer(Phase::Active, true, false)]));
        // One peer of two has it.
        let two = [
            peer(Phase::Idle, true, false),
            peer(Phase::Active, true, false),
        ];
        assert!(taken_over(&web, &two));
    }

    #[test]
    fn nothing_is_waited_for_when_no_peer_can_run_the_group() {
        let web = ["web".to_string()];
        assert!(taken_over(&web, &[]));
        // Failed there beyond its threshold, or in standby.
        assert!(taken_over(&web, &[peer(Phase::Idle, false, false)]));
        assert!(taken_over(&web, &[peer(Phase::Idle, true, true)]));
        // A peer that does not know the group cannot run it.
        assert!(taken_over(
            &["db".to_string()],
            &[peer(Phase::Idle, true, false)]
        ));
        // Nothing was moving.
        assert!(taken_over(&[], &[peer(Phase::Idle, true, false)]));
    }
}
