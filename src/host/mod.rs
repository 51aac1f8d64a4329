//! Glue to the host: systemd notification, journald logging, UDP sockets
//! bound to interfaces, ICMP echo for ping nodes, interface state.

pub mod direct;
pub mod iface;
pub mod logging;
pub mod message_ids;
pub mod mountinfo;
pub mod notify;
pub mod ocf;
pub mod pagecache;
pub mod ping;
pub mod recv;
pub mod spares;
pub mod udp;
