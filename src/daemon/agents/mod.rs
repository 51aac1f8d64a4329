//! Resource agents: what starting, stopping and checking each kind of
//! resource means on this machine. Each operation is one async call that
//! ends with Ok or the reason it failed, in words for the journal; the
//! group core (src/resources/group.rs) decides which to run and when, and
//! bounds each with its timeout.
//!
//! Every stop must succeed on a resource that is already stopped, and
//! every start on one already started: after a crash or a failed step the
//! core stops or starts again without knowing how far the last attempt got.

pub mod ip;
pub mod mount;
pub mod ocf;
pub mod replica;
pub mod script;
pub mod systemd;
pub mod unit;

use crate::config::{Resource, ResourceKind};
use crate::daemon::replicas::Replicas;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Monitor,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Monitor => "monitor",
        }
    }
}

/// What the agents reach the machine through.
#[derive(Clone)]
pub struct Host {
    pub replicas: Replicas,
    /// Which replica peers the membership sees up (the replica agent will
    /// not promote while disconnected from a live peer).
    pub peers: replica::Peers,
    /// The system bus, for systemd; None when it cannot be reached (units
    /// and mounts then fail with that reason).
    pub system_bus: Option<zbus::Connection>,
}

/// Runs `op` on `resource`.
pub async fn run(host: &Host, resource: &Resource, op: Op) -> Result<(), String> {
    match &resource.kind {
        ResourceKind::Replica { replica } => {
            let timeout = resource.start_timeout;
            replica::run(&host.replicas, &host.peers, replica, op, timeout).await
        }
        ResourceKind::Mount {
            device,
            mountpoint,
            fstype,
            options,
            fsck,
        } => {
            let m = mount::Mount {
                device,
                mountpoint,
                fstype,
                options,
                fsck: *fsck,
            };
            mount::run(bus(host)?, &m, op).await
        }
        ResourceKind::Ip {
            address,
            prefix,
            interface,
        } => ip::run(*address, *prefix, interface, op).await,
        ResourceKind::Unit { unit } => unit::run(bus(host)?, unit, op).await,
        ResourceKind::Script { path, args } => script::run(path, args, op).await,
        ResourceKind::Ocf(agent) => ocf::run(agent, op, op_timeout(resource, op)).await,
    }
}

/// The limit an operation on `resource` is held to: its start or stop
/// timeout, and for a check the start timeout up to 20 s. The group runner
/// (src/daemon/groups.rs) enforces it; an OCF agent is told it
/// (OCF_RESKEY_CRM_meta_timeout).
pub fn op_timeout(resource: &Resource, op: Op) -> std::time::Duration {
    match op {
        Op::Start => resource.start_timeout,
        Op::Stop => resource.stop_timeout,
        Op::Monitor => resource
            .start_timeout
            .min(std::time::Duration::from_secs(20)),
    }
}

fn bus(host: &Host) -> Result<&zbus::Connection, String> {
    host.system_bus
        .as_ref()
        .ok_or_else(|| "the system bus (systemd) cannot be reached".to_string())
}
