//! Attaching an export to the kernel's NBD driver: open connections to our
//! own server, finish the handshake on each, and hand them to the kernel
//! with one netlink CONNECT (as nbd-client does). `nbd_family` is also the
//! probe for "does this kernel have an NBD driver".

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};

use crate::export::client;
use crate::export::netlink::{self, ConnectRequest, NetlinkError};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{0}")]
    Netlink(#[from] NetlinkError),
    #[error("netlink socket: {0}")]
    Socket(nix::Error),
    #[error("NBD handshake with our own export: {0}")]
    Handshake(std::io::Error),
}

/// A generic netlink socket bound to the kernel.
struct Genl {
    fd: OwnedFd,
    seq: u32,
}

impl Genl {
    fn open() -> Result<Genl, KernelError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkGeneric,
        )
        .map_err(KernelError::Socket)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(KernelError::Socket)?;
        Ok(Genl { fd, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Sends one request and returns the first reply.
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, KernelError> {
        send(self.fd.as_raw_fd(), request, MsgFlags::empty()).map_err(KernelError::Socket)?;
        let mut buf = vec![0u8; 8192];
        let n =
            recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(KernelError::Socket)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// The NBD family id, or `NoNbdDriver` when the kernel has none.
pub fn nbd_family() -> Result<u16, KernelError> {
    let mut genl = Genl::open()?;
    let seq = genl.next_seq();
    let reply = genl.call(&netlink::get_family_request(seq))?;
    Ok(netlink::parse_family_reply(&reply)?)
}

/// An export attached as /dev/nbdN.
pub struct KernelDevice {
    pub index: u32,
    family: u16,
}

impl KernelDevice {
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/nbd{}", self.index))
    }

    /// Disconnects; with DESTROY_ON_DISCONNECT the device then goes away.
    pub fn disconnect(&self) -> Result<(), KernelError> {
        let mut genl = Genl::open()?;
        let seq = genl.next_seq();
        let reply = genl.call(&netlink::disconnect_request(self.family, seq, self.index))?;
        Ok(netlink::parse_ack(&reply)?)
    }
}

/// Connects `connections` sockets to the export and gives them to the
/// kernel. The kernel keeps the sockets; ours are closed after CONNECT.
pub fn connect(
    socket: &Path,
    export: &str,
    connections: usize,
) -> Result<KernelDevice, KernelError> {
    let family = nbd_family()?;
    let mut streams = Vec::with_capacity(connections);
    let mut info = None;
    for _ in 0..connections.max(1) {
        let mut s = UnixStream::connect(socket).map_err(KernelError::Handshake)?;
        info = Some(client::handshake(&mut s, export).map_err(KernelError::Handshake)?);
        streams.push(s);
    }
    let Some(info) = info else {
        return Err(KernelError::Netlink(NetlinkError::Missing("a connection")));
    };
    let request = ConnectRequest {
        index: None,
        size_bytes: info.size,
        block_size: 4096,
        server_flags: u64::from(info.flags),
        timeout_secs: 30,
        dead_conn_timeout_secs: 10,
        sockets: streams.iter().map(|s| s.as_fd().as_raw_fd()).collect(),
        backend: Some(format!("duet:{export}")),
        destroy_on_disconnect: true,
    };
    let mut genl = Genl::open()?;
    let seq = genl.next_seq();
    let reply = genl.call(&netlink::connect_request(family, seq, &request))?;
    let index = netlink::parse_connect_reply(&reply)?;
    // Requests stay well under the export's 32 MiB limit; best effort.
    let _ = std::fs::write(
        netlink::max_sectors_kb_path(index),
        netlink::MAX_SECTORS_KB.to_string(),
    );
    Ok(KernelDevice { index, family })
}
