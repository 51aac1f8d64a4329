//! Resource agents: start, stop and monitor one resource of a group on
//! this node, through systemd's D-Bus API.

pub mod mount;
pub mod systemd;
pub mod unit;

/// What the group core asks of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Monitor,
}
