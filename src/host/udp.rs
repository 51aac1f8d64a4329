//! One UDP socket per cluster link, bound to the link's interface so that a
//! heartbeat goes out (and is taken in) on the link it claims, never routed
//! over another.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use crate::config::{Config, Link, LinkMode};
use crate::types::{LinkId, NodeId};

/// Where heartbeats of one link go.
pub fn destinations(config: &Config, link: LinkId, local: NodeId) -> Vec<SocketAddr> {
    let l = config.link(link);
    match l.mode {
        LinkMode::Unicast => config
            .node_ids()
            .filter(|id| *id != local)
            .filter_map(|id| config.node(id).addresses[link.0 as usize])
            .map(|ip| SocketAddr::new(ip, l.port))
            .collect(),
        LinkMode::Broadcast => vec![SocketAddr::new(Ipv4Addr::BROADCAST.into(), l.port)],
        LinkMode::Multicast { group, .. } => vec![SocketAddr::new(group, l.port)],
    }
}

/// IPv6 if the link's addresses (or group) are.
fn is_v6(config: &Config, link: LinkId) -> bool {
    let l = config.link(link);
    if let LinkMode::Multicast { group, .. } = l.mode {
        return group.is_ipv6();
    }
    config
        .nodes
        .iter()
        .filter_map(|n| n.addresses[link.0 as usize])
        .any(|a| a.is_ipv6())
}

/// Opens the link's socket: bound to the port on every address of the
/// interface, broadcast or multicast enabled as the mode needs.
pub fn open(config: &Config, link: LinkId) -> io::Result<tokio::net::UdpSocket> {
    let l = config.link(link);
    let v6 = is_v6(config, link);
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // No SO_REUSEADDR: sockets bound to different devices may share the
    // port anyway, and a second duetd on the same node must fail here
    // rather than silently take half of the heartbeats.
    socket.bind_device(Some(l.interface.as_bytes()))?;
    if v6 {
        socket.set_only_v6(true)?;
    }
    match l.mode {
        LinkMode::Unicast => {}
        LinkMode::Broadcast => socket.set_broadcast(true)?,
        LinkMode::Multicast { group, ttl } => join(&socket, l, group, ttl)?,
    }
    let any: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    socket.bind(&SocketAddr::new(any, l.port).into())?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

fn join(socket: &Socket, link: &Link, group: IpAddr, ttl: u8) -> io::Result<()> {
    let index = nix::net::if_::if_nametoindex(link.interface.as_str()).map_err(io::Error::from)?;
    match group {
        IpAddr::V4(g) => {
            socket.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))?;
            socket.set_multicast_ttl_v4(u32::from(ttl))?;
            // Our own heartbeats are no news to us.
            socket.set_multicast_loop_v4(false)
        }
        IpAddr::V6(g) => {
            socket.join_multicast_v6(&g, index)?;
            socket.set_multicast_hops_v6(u32::from(ttl))?;
            socket.set_multicast_if_v6(index)?;
            socket.set_multicast_loop_v6(false)
        }
    }
}
