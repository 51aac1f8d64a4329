//! Resource groups: what runs where. `placement` decides where a group
//! belongs from a node's view of the cluster; `group` is the pure state
//! machine that starts and stops one group's resources on this node, in
//! order, with checks, restarts and safe hand-over; `fence` says when a
//! dead node is known to hold nothing; `leaving` when a node that stops
//! may go silent; `policy` is one node's decisions
//! about all its groups (quorum, fencing, wishes), which the daemon and
//! the whole-cluster simulation both run.

pub mod fence;
pub mod group;
pub mod intent;
pub mod leaving;
pub mod placement;
pub mod policy;

#[cfg(test)]
mod group_tests;
