//! Membership: heartbeats between nodes, who is alive on which link, quorum
//! and ping-node reachability. `core` is the pure state machine; the daemon
//! shell feeds it datagrams and time and carries out what it returns.

pub mod auth;
pub mod config_digest;
pub mod core;
pub mod echo_records;
pub mod fence_records;
pub mod node_state;
pub mod protocol;
pub mod quorum;
pub mod quorum_records;
pub mod replay;
pub mod state;
pub mod wire;
pub mod witness;

pub use self::core::{Action, Input, Member, Membership, NodeView, Params, Setup};
pub use state::{Event, LinkState, PeerState, PingTarget};

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod version_core_tests;
#[cfg(test)]
mod witness_core_tests;
