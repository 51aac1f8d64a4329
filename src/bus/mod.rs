//! The D-Bus API: the cluster and node objects on the system bus, and the
//! client side `duetctl` uses. docs/dbus.md describes it for users.

pub mod authorize;
pub mod client;
pub mod group;
pub mod server;
pub mod status;

pub use server::{BUS_NAME, Bus, ROOT_PATH};

/// Which bus duetd serves on and duetctl asks. The system bus is the real
/// thing (its address may be overridden with DBUS_SYSTEM_BUS_ADDRESS); the
/// session bus lets an unprivileged user try duet out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BusKind {
    #[default]
    System,
    Session,
}
pub use group::{GroupCommand, GroupControl};
pub use server::{ReplicaCommand, ReplicaControl};
pub use status::{
    ClusterStatus, GroupStatus, LinkStatus, NodeStatus, PingStatus, ReplicaStatus, ResourceStatus,
    group_path, node_path, replica_path,
};
