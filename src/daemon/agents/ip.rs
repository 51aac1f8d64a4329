//! The floating-IP agent: puts `address/prefix` on an interface through
//! rtnetlink, takes it off again, checks it is there, and announces it to
//! the neighbours with gratuitous ARP (IPv4) or unsolicited neighbour
//! advertisements (IPv6) built here and sent over a packet socket. Never
//! runs `ip`: the kernel's own error codes come back over netlink, and
//! there is no output format to parse.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use socket2::{Domain, Socket, Type};
use tokio::task::{AbortHandle, JoinHandle};

use super::Op;

/// Every netlink request is bounded: a kernel that does not answer fails
/// the operation instead of hanging the group.
pub const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Rounds of announcements per start: one may be lost on a busy segment.
pub const ANNOUNCEMENTS: usize = 3;
/// Spread the rounds out, so a switch or host that misses one (a port
/// still coming up, a full queue) catches the next.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(200);

/// Linux's limit on interface names (IFNAMSIZ less the terminating NUL).
const IFNAME_MAX: usize = 15;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const ICMPV6: u8 = 58;
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
const NA_OVERRIDE: u8 = 0x20;
const OPTION_TARGET_LINK_LAYER: u8 = 2;
/// Shorter frames are padded: not every driver pads to the Ethernet
/// minimum by itself.
const ETH_MIN_FRAME: usize = 60;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// ff02::1 mapped to Ethernet (RFC 2464).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Runs `op` for `address/prefix` on `interface`; the error says what is
/// wrong in words for the operator.
pub async fn run(address: IpAddr, prefix: u8, interface: &str, op: Op) -> Result<(), String> {
    match op {
        Op::Start => start(address, prefix, interface).await,
        Op::Stop => stop(address, interface).await,
        Op::Monitor => monitor(address, prefix, interface).await,
    }
}

async fn start(address: IpAddr, prefix: u8, interface: &str) -> Result<(), String> {
    check_prefix(address, prefix)?;
    let netlink = Netlink::open()?;
    let link = netlink.require_link(interface).await?;
    if !link.usable {
        return Err(format!(
            "{interface} is down: {address}/{prefix} would not be reachable there"
        ));
    }
    let present = netlink.addresses(address).await?;
    refuse_elsewhere(&netlink, &present, &link, address).await?;
    if !present.iter().any(|a| a.header.prefix_len == prefix) {
        // The same address with another prefix: a leftover of an older
        // configuration, replaced rather than failing the group. IPv6
        // would refuse the add while it is there anyway.
        for old in present {
            netlink.remove(old, address, interface).await?;
        }
        netlink.add(&link, address, prefix, interface).await?;
    }
    // Also when it was there already: the neighbours may still point at
    // the peer.
    announce(&link, address, interface)
}

async fn stop(address: IpAddr, interface: &str) -> Result<(), String> {
    // First, so nothing claims the address once the stop has returned,
    // even if the interface has gone meanwhile.
    cancel(&key(interface, address));
    let netlink = Netlink::open()?;
    let Some(link) = netlink.link(interface).await? else {
        return Ok(());
    };
    let present = netlink.addresses(address).await?;
    for old in present.into_iter().filter(|a| a.header.index == link.index) {
        netlink.remove(old, address, interface).await?;
    }
    Ok(())
}

async fn monitor(address: IpAddr, prefix: u8, interface: &str) -> Result<(), String> {
    check_prefix(address, prefix)?;
    let netlink = Netlink::open()?;
    let link = netlink.require_link(interface).await?;
    let present = netlink.addresses(address).await?;
    let prefixes: Vec<u8> = present
        .iter()
        .filter(|a| a.header.index == link.index)
        .map(|a| a.header.prefix_len)
        .collect();
    match prefixes.first() {
        _ if prefixes.contains(&prefix) => Ok(()),
        None => Err(format!("{address}/{prefix} is not on {interface}")),
        Some(other) => Err(format!(
            "{address} is on {interface} as /{other}, not /{prefix}"
        )),
    }
}

fn check_prefix(address: IpAddr, prefix: u8) -> Result<(), String> {
    let (family, max) = match address {
        IpAddr::V4(_) => ("IPv4", 32),
        IpAddr::V6(_) => ("IPv6", 128),
    };
    if prefix > max {
        return Err(format!(
            "/{prefix} is not a valid prefix for the {family} address {address} (0 to {max})"
        ));
    }
    Ok(())
}

/// The address on another interface was put there by someone else: duet
/// neither takes it away nor adds a second copy.
async fn refuse_elsewhere(
    netlink: &Netlink,
    present: &[AddressMessage],
    link: &Link,
    address: IpAddr,
) -> Result<(), String> {
    let Some(other) = present.iter().find(|a| a.header.index != link.index) else {
        return Ok(());
    };
    let name = netlink.link_name(other.header.index).await;
    Err(format!(
        "{address} is already on {name}: duet did not put it there and will not take it \
         away; remove it by hand or correct the configuration"
    ))
}

/// What the agent needs of an interface.
struct Link {
    index: u32,
    /// Up, with a carrier: an address there can be reached.
    usable: bool,
    /// The MAC to announce, `None` on interfaces without ARP or an
    /// Ethernet address (loopback, tun, NOARP), which get no announcements.
    mac: Option<[u8; 6]>,
}

impl Link {
    fn from_message(message: &LinkMessage) -> Link {
        let flags = message.header.flags;
        let ethernet = message.header.link_layer_type == LinkLayerType::Ether
            && !flags.contains(LinkFlags::Noarp);
        let mac = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        });
        Link {
            index: message.header.index,
            usable: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
            mac: mac.filter(|_| ethernet),
        }
    }
}

/// A failed netlink request.
enum NetlinkError {
    TimedOut,
    Kernel(rtnetlink::Error),
}

impl NetlinkError {
    /// The kernel's errno, positive, when it answered with one.
    fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel(rtnetlink::Error::NetlinkError(m)) => Some(m.raw_code().abs()),
            _ => None,
        }
    }
}

impl std::fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetlinkError::TimedOut => write!(
                f,
                "the kernel did not answer within {} s",
                NETLINK_TIMEOUT.as_secs()
            ),
            // The errno's text, not rtnetlink's wrapping of the message.
            NetlinkError::Kernel(rtnetlink::Error::NetlinkError(m)) => m.to_io().fmt(f),
            NetlinkError::Kernel(e) => e.fmt(f),
        }
    }
}

async fn bounded<T>(
    request: impl Future<Output = Result<T, rtnetlink::Error>>,
) -> Result<T, NetlinkError> {
    match tokio::time::timeout(NETLINK_TIMEOUT, request).await {
        Ok(answer) => answer.map_err(NetlinkError::Kernel),
        Err(_) => Err(NetlinkError::TimedOut),
    }
}

/// An rtnetlink connection for one operation; its task ends with it.
struct Netlink {
    handle: Handle,
    connection: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Netlink {
    /// Opens the socket in the caller's network namespace (the socket is
    /// created here, not in the spawned task).
    fn open() -> Result<Netlink, String> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| format!("cannot open a netlink socket: {e}"))?;
        Ok(Netlink {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    async fn require_link(&self, name: &str) -> Result<Link, String> {
        self.link(name)
            .await?
            .ok_or_else(|| format!("no interface named {name} on this node"))
    }

    /// The interface, `None` when there is none of that name.
    async fn link(&self, name: &str) -> Result<Option<Link>, String> {
        // The kernel rejects an impossible name with EINVAL rather than
        // ENODEV; it cannot name an interface either way.
        if name.is_empty() || name.len() > IFNAME_MAX {
            return Ok(None);
        }
        let request = self.handle.link().get().match_name(name).execute();
        match bounded(async { pin!(request).try_next().await }).await {
            Ok(message) => Ok(message.as_ref().map(Link::from_message)),
            Err(e) if e.errno() == Some(nix::libc::ENODEV) => Ok(None),
            Err(e) => Err(format!("cannot look up interface {name}: {e}")),
        }
    }

    /// The name of interface `index`, for messages; a placeholder when it
    /// cannot be had (it may have gone meanwhile).
    async fn link_name(&self, index: u32) -> String {
        let request = self.handle.link().get().match_index(index).execute();
        let message = bounded(async { pin!(request).try_next().await }).await;
        let name = message.ok().flatten().and_then(|m| {
            m.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name),
                _ => None,
            })
        });
        name.unwrap_or_else(|| format!("interface #{index}"))
    }

    /// `address` wherever it is on this node, with whatever prefix.
    async fn addresses(&self, address: IpAddr) -> Result<Vec<AddressMessage>, String> {
        let mut request = self.handle.address().get();
        // The kernel filters the dump by family; the rest is filtered here.
        request.message_mut().header.family = match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        let all: Vec<AddressMessage> = bounded(request.execute().try_collect())
            .await
            .map_err(|e| format!("cannot list the addresses: {e}"))?;
        Ok(all
            .into_iter()
            .filter(|a| local_address(a) == Some(address))
            .collect())
    }

    async fn add(
        &self,
        link: &Link,
        address: IpAddr,
        prefix: u8,
        interface: &str,
    ) -> Result<(), String> {
        let mut request = self.handle.address().add(link.index, address, prefix);
        if address.is_ipv6() {
            // Usable at once: the cluster, not duplicate address
            // detection, keeps the address on one node.
            request.message_mut().header.flags = AddressHeaderFlags::Nodad;
        }
        bounded(request.execute())
            .await
            .map_err(|e| format!("cannot add {address}/{prefix} to {interface}: {e}"))
    }

    async fn remove(
        &self,
        message: AddressMessage,
        address: IpAddr,
        interface: &str,
    ) -> Result<(), String> {
        let prefix = message.header.prefix_len;
        match bounded(self.handle.address().del(message).execute()).await {
            Ok(()) => Ok(()),
            // Gone meanwhile: what the removal was for.
            Err(e) if e.errno() == Some(nix::libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(format!(
                "cannot remove {address}/{prefix} from {interface}: {e}"
            )),
        }
    }
}

/// The node's own address of an entry: IFA_LOCAL when there is one (on a
/// point-to-point link IFA_ADDRESS is the peer's), else IFA_ADDRESS.
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let find = |local: bool| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    find(true).or_else(|| find(false))
}

/// Announcements still to go out, by network namespace, interface and
/// address. The namespace is part of the key because one process may run
/// agents in several (a stop in one must not cancel another's start).
type Key = (u64, String, IpAddr);

struct Pending {
    id: u64,
    /// Set by a stop; checked under the lock right before each round, so
    /// no round goes out once the stop has returned, whichever thread the
    /// task runs on.
    cancelled: Arc<Mutex<bool>>,
    task: AbortHandle,
}

static PENDING: Mutex<BTreeMap<Key, Pending>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn key(interface: &str, address: IpAddr) -> Key {
    (network_namespace(), interface.to_owned(), address)
}

/// The inode of the calling thread's network namespace, which names it;
/// 0 when /proc cannot tell (then all namespaces share one key space).
fn network_namespace() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
}

fn cancel(key: &Key) {
    let pending = PENDING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(key);
    if let Some(pending) = pending {
        *pending
            .cancelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        pending.task.abort();
    }
}

/// Sends the first round now (its failure fails the start) and leaves the
/// others to a task that a stop cancels.
fn announce(link: &Link, address: IpAddr, interface: &str) -> Result<(), String> {
    let key = key(interface, address);
    // A new start announces afresh; the rounds of an earlier one would
    // only add to them.
    cancel(&key);
    let Some(mac) = link.mac else {
        return Ok(());
    };
    let announcer = Announcer::open(link.index, mac, address)
        .map_err(|e| format!("cannot announce {address} on {interface}: {e}"))?;
    announcer
        .round()
        .map_err(|e| format!("cannot announce {address} on {interface}: {e}"))?;
    let cancelled = Arc::new(Mutex::new(false));
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    // Spawned under the registry's lock: the task cannot deregister
    // before it is registered.
    let task = tokio::spawn(later_rounds(announcer, cancelled.clone(), key.clone(), id));
    pending.insert(
        key,
        Pending {
            id,
            cancelled,
            task: task.abort_handle(),
        },
    );
    Ok(())
}

async fn later_rounds(announcer: Announcer, cancelled: Arc<Mutex<bool>>, key: Key, id: u64) {
    for _ in 1..ANNOUNCEMENTS {
        tokio::time::sleep(ANNOUNCE_INTERVAL).await;
        let stopped = cancelled.lock().unwrap_or_else(PoisonError::into_inner);
        if *stopped {
            return;
        }
        if let Err(e) = announcer.round() {
            tracing::warn!(interface = %key.1, address = %key.2, "cannot announce: {e}");
        }
    }
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    // Only its own entry: a later start may have replaced it.
    if pending.get(&key).is_some_and(|p| p.id == id) {
        pending.remove(&key);
    }
}

/// A packet socket and the frames of one round.
struct Announcer {
    socket: Socket,
    index: u32,
    frames: Vec<Vec<u8>>,
}

impl Announcer {
    fn open(index: u32, mac: [u8; 6], address: IpAddr) -> io::Result<Announcer> {
        // Protocol 0: the socket only sends, nothing queues up to be read.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        // A full queue fails the round instead of stalling the runtime.
        socket.set_nonblocking(true)?;
        let frames = match address {
            IpAddr::V4(ip) => vec![
                arp(ARP_REQUEST, mac, ip, [0; 6]),
                arp(ARP_REPLY, mac, ip, mac),
            ],
            IpAddr::V6(ip) => vec![neighbour_advertisement(mac, ip)],
        };
        Ok(Announcer {
            socket,
            index,
            frames,
        })
    }

    fn round(&self) -> io::Result<()> {
        self.frames.iter().try_for_each(|f| self.send(f))
    }

    /// Sends a whole Ethernet frame on the interface; the link-layer
    /// address tells the kernel its destination and protocol.
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
        let mut to: nix::libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = nix::libc::AF_PACKET as u16;
        to.sll_protocol = u16::from_ne_bytes([frame[12], frame[13]]);
        to.sll_ifindex = i32::try_from(self.index).map_err(io::Error::other)?;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and the address are valid for their lengths
        // during the call, and the descriptor is ours.
        let sent = unsafe {
            nix::libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const nix::libc::sockaddr_ll).cast(),
                std::mem::size_of::<nix::libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn ethernet(destination: [u8; 6], source: [u8; 6], protocol: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_MIN_FRAME + 32);
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&protocol.to_be_bytes());
    frame
}

/// A gratuitous ARP (sender and target IP both `ip`) to broadcast: the
/// request form (RFC 5227's announcement) has a zero target MAC; Linux
/// treats the reply form as gratuitous only when its target MAC is the
/// sender's.
fn arp(op: u16, mac: [u8; 6], ip: Ipv4Addr, target_mac: [u8; 6]) -> Vec<u8> {
    let mut frame = ethernet(BROADCAST_MAC, mac, ETH_P_ARP);
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]); // Ethernet, IPv4
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&target_mac);
    frame.extend_from_slice(&ip.octets());
    frame.resize(ETH_MIN_FRAME, 0);
    frame
}

/// An unsolicited neighbour advertisement for `ip` to all nodes: override
/// set so caches replace the peer's MAC, solicited clear as RFC 4861 asks
/// of a multicast one, hop limit 255 or receivers drop it.
fn neighbour_advertisement(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![NEIGHBOUR_ADVERTISEMENT, 0, 0, 0, NA_OVERRIDE, 0, 0, 0];
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[OPTION_TARGET_LINK_LAYER, 1]);
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(ip, ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut frame = ethernet(ALL_NODES_MAC, mac, ETH_P_IPV6);
    frame.extend_from_slice(&[0x60, 0, 0, 0]); // version 6
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[ICMPV6, 255]);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&ALL_NODES.octets());
    frame.extend_from_slice(&icmp);
    frame
}

/// The ICMPv6 checksum over the pseudo-header (RFC 8200 8.1) and `icmp`
/// with its checksum field zero.
fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(40 + icmp.len() + 1);
    data.extend_from_slice(&source.octets());
    data.extend_from_slice(&destination.octets());
    data.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, ICMPV6]);
    data.extend_from_slice(icmp);
    !ones_complement_sum(&data)
}

fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x0a, 0x01];

    #[test]
    fn prefixes() {
        let v4: IpAddr = "198.51.100.10".parse().expect("address");
        let v6: IpAddr = "2001:db8::10".parse().expect("address");
        assert_eq!(check_prefix(v4, 32), Ok(()));
        assert_eq!(check_prefix(v6, 128), Ok(()));
        assert_eq!(
            check_prefix(v4, 33),
            Err("/33 is not a valid prefix for the IPv4 address 198.51.100.10 (0 to 32)".into())
        );
        assert_eq!(
            check_prefix(v6, 129),
            Err("/129 is not a valid prefix for the IPv6 address 2001:db8::10 (0 to 128)".into())
        );
    }

    #[test]
    fn arp_frames() {
        let ip = Ipv4Addr::new(198, 51, 100, 10);
        let request = arp(ARP_REQUEST, MAC, ip, [0; 6]);
        assert_eq!(request.len(), ETH_MIN_FRAME);
        assert_eq!(request[..6], BROADCAST_MAC);
        assert_eq!(request[6..12], MAC);
        assert_eq!(request[12..14], [0x08, 0x06]);
        assert_eq!(request[14..22], [0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(request[22..28], MAC);
        assert_eq!(request[28..32], ip.octets());
        assert_eq!(request[32..38], [0; 6]);
        assert_eq!(request[38..42], ip.octets());
        let reply = arp(ARP_REPLY, MAC, ip, MAC);
        assert_eq!(reply[20..22], [0, 2]);
        assert_eq!(reply[32..38], MAC);
    }

    #[test]
    fn neighbour_advertisement_frame() {
        let ip: Ipv6Addr = "2001:db8::10".parse().expect("address");
        let frame = neighbour_advertisement(MAC, ip);
        assert_eq!(frame.len(), 86);
        assert_eq!(frame[..6], ALL_NODES_MAC);
        assert_eq!(frame[12..14], [0x86, 0xdd]);
        assert_eq!(frame[18..22], [0, 32, ICMPV6, 255]);
        assert_eq!(frame[22..38], ip.octets());
        assert_eq!(frame[38..54], ALL_NODES.octets());
        assert_eq!(frame[54], NEIGHBOUR_ADVERTISEMENT);
        assert_eq!(frame[58], NA_OVERRIDE);
        assert_eq!(frame[62..78], ip.octets());
        assert_eq!(frame[78..86], [2, 1, 0x02, 0, 0x5e, 0, 0x0a, 0x01]);
        // A correct checksum makes the sum over pseudo-header and message
        // all ones.
        let mut data = Vec::new();
        data.extend_from_slice(&frame[22..54]);
        data.extend_from_slice(&32u32.to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, ICMPV6]);
        data.extend_from_slice(&frame[54..]);
        assert_eq!(ones_complement_sum(&data), 0xffff);
    }

    #[test]
    fn checksum_of_odd_length_pads_with_zero() {
        assert_eq!(ones_complement_sum(&[0x12, 0x34, 0x56]), 0x6834);
        assert_eq!(ones_complement_sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    }

    #[test]
    fn local_address_prefers_ifa_local() {
        let mut message = AddressMessage::default();
        let peer: IpAddr = "198.51.100.99".parse().expect("address");
        let local: IpAddr = "198.51.100.10".parse().expect("address");
        message.attributes.push(AddressAttribute::Address(peer));
        assert_eq!(local_address(&message), Some(peer));
        message.attributes.push(AddressAttribute::Local(local));
        assert_eq!(local_address(&message), Some(local));
    }
}
