//! The D-Bus API: the cluster and node objects on the system bus, and the
//! client side `duetctl` uses. docs/dbus.md describes it for users.

pub mod client;
pub mod server;
pub mod status;

pub use server::{BUS_NAME, Bus, ROOT_PATH};
pub use status::{ClusterStatus, LinkStatus, NodeStatus, PingStatus, node_path};
