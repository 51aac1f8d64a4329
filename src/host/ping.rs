//! ICMP echo to the ping nodes, over raw sockets (CAP_NET_RAW). Replies are
//! matched by our identifier and the sender's address and reported as the
//! index of the ping node that answered.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use crate::membership::PingTarget;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

pub struct Pinger {
    targets: Vec<IpAddr>,
    v4: Option<Arc<Socket>>,
    v6: Option<Arc<Socket>>,
    ident: u16,
    seq: u16,
}

impl Pinger {
    /// Opens the sockets the targets need and starts a thread per socket
    /// that sends the index of each answering target to `replies`.
    pub fn start(
        targets: Vec<IpAddr>,
        replies: mpsc::UnboundedSender<PingTarget>,
    ) -> io::Result<Pinger> {
        let ident = (std::process::id() & 0xffff) as u16;
        let open = |domain, proto| -> io::Result<Arc<Socket>> {
            Ok(Arc::new(Socket::new(domain, Type::RAW, Some(proto))?))
        };
        let v4 = if targets.iter().any(IpAddr::is_ipv4) {
            Some(open(Domain::IPV4, Protocol::ICMPV4)?)
        } else {
            None
        };
        let v6 = if targets.iter().any(IpAddr::is_ipv6) {
            Some(open(Domain::IPV6, Protocol::ICMPV6)?)
        } else {
            None
        };
        for socket in v4.iter().chain(v6.iter()) {
            let (socket, targets, replies) = (socket.clone(), targets.clone(), replies.clone());
            std::thread::spawn(move || receive(&socket, &targets, ident, &replies));
        }
        Ok(Pinger {
            targets,
            v4,
            v6,
            ident,
            seq: 0,
        })
    }

    pub fn send(&mut self, target: PingTarget) -> io::Result<()> {
        let Some(addr) = self.targets.get(target.0).copied() else {
            return Ok(());
        };
        self.seq = self.seq.wrapping_add(1);
        let (socket, kind) = match addr {
            IpAddr::V4(_) => (&self.v4, ECHO_REQUEST_V4),
            IpAddr::V6(_) => (&self.v6, ECHO_REQUEST_V6),
        };
        let Some(socket) = socket else {
            return Ok(());
        };
        let packet = echo_request(kind, self.ident, self.seq);
        socket.send_to(&packet, &SocketAddr::new(addr, 0).into())?;
        Ok(())
    }
}

/// An echo request with an 8-byte payload. The ICMPv4 checksum is ours to
/// fill; for ICMPv6 the kernel fills it (it needs the IPv6 pseudo-header).
fn echo_request(kind: u8, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"duetping");
    if kind == ECHO_REQUEST_V4 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn receive(
    socket: &Socket,
    targets: &[IpAddr],
    ident: u16,
    replies: &mpsc::UnboundedSender<PingTarget>,
) {
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "ping socket failed; ping nodes will look unreachable");
                return;
            }
        };
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let Some(from) = from.as_socket().map(|s| s.ip()) else {
            continue;
        };
        if !is_our_reply(&data, from.is_ipv4(), ident) {
            continue;
        }
        if let Some(i) = targets.iter().position(|t| *t == from)
            && replies.send(PingTarget(i)).is_err()
        {
            return;
        }
    }
}

/// Raw IPv4 sockets hand us the IP header too; IPv6 ones do not.
fn is_our_reply(data: &[u8], v4: bool, ident: u16) -> bool {
    let icmp = if v4 {
        let Some(first) = data.first() else {
            return false;
        };
        let header = usize::from(first & 0x0f) * 4;
        data.get(header..).unwrap_or(&[])
    } else {
        data
    };
    let want = if v4 { ECHO_REPLY_V4 } else { ECHO_REPLY_V6 };
    icmp.len() >= 8 && icmp[0] == want && u16::from_be_bytes([icmp[4], icmp[5]]) == ident
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum_verifies() {
        let p = echo_request(ECHO_REQUEST_V4, 0x1234, 7);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn replies_are_matched_by_type_and_ident() {
        let mut reply = echo_request(ECHO_REPLY_V4, 0x1234, 1);
        reply[0] = ECHO_REPLY_V4;
        let mut ip = vec![0x45; 1];
        ip.extend_from_slice(&[0; 19]);
        ip.extend_from_slice(&reply);
        assert!(is_our_reply(&ip, true, 0x1234));
        assert!(!is_our_reply(&ip, true, 0x9999));
        assert!(!is_our_reply(&ip[..22], true, 0x1234));
        assert!(!is_our_reply(&[], true, 0x1234));
        let mut v6 = echo_request(ECHO_REQUEST_V6, 5, 1);
        v6[0] = ECHO_REPLY_V6;
        assert!(is_our_reply(&v6, false, 5));
    }
}
