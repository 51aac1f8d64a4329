//! duet: a high-availability stack for two (and more) nodes.
//!
//! One folder per part: `config` (the cluster file), `membership` (heartbeats,
//! who is alive, quorum), `bus` (the D-Bus API), `host` (systemd, journald,
//! sockets), `daemon` (the tokio shell that runs the pure cores) and `ctl`
//! (the `duetctl` client).

pub mod bus;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod export;
pub mod host;
pub mod membership;
pub mod replication;
#[doc(hidden)]
pub mod testkit;
pub mod types;
