//! Resource groups: what runs where. `placement` decides where a group
//! belongs from a node's view of the cluster; `group` is the pure state
//! machine that starts and stops one group's resources on this node, in
//! order, with checks, restarts and safe hand-over.

pub mod group;
pub mod intent;
pub mod placement;

#[cfg(test)]
mod group_tests;
