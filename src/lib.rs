//! duet: a high-availability stack for two (and more) nodes.
//!
//! One folder per part: `config` (the cluster file), `membership`
//! (heartbeats, who is alive, quorum), `replication` and `export` (the
//! replicated disk and its block device), `resources` (groups and where
//! they run), `bus` (the D-Bus API), `host` (systemd, journald, sockets),
//! `daemon` (the shell that runs the pure cores), `ctl` (the `duetctl`
//! client), `import` (classic Heartbeat and DRBD files into a config) and
//! `metrics` (the Prometheus endpoint).

pub mod bus;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod export;
pub mod host;
pub mod import;
pub mod membership;
pub mod metrics;
pub mod replication;
pub mod resources;
#[doc(hidden)]
pub mod testkit;
pub mod tls;
pub mod types;
