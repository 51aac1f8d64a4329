//! The kernel NBD driver's generic netlink messages (as nbd-client sends
//! them): resolve the "nbd" family, CONNECT a /dev/nbdN to sockets that
//! already finished the NBD handshake, DISCONNECT it. Pure: bytes out,
//! values in; parsing never trusts a length.
//!
//! Layouts from linux/netlink.h, linux/genetlink.h and
//! linux/nbd-netlink.h. Integers are in host order (netlink is local).

use thiserror::Error;

const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
const NLA_HDRLEN: usize = 4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
/// Types below this are netlink's own (NOOP, ERROR, DONE, OVERRUN), never
/// a family's reply.
const NLMSG_MIN_TYPE: u16 = 0x10;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_NEWFAMILY: u8 = 1;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const NBD_GENL_VERSION: u8 = 1;
const NBD_CMD_CONNECT: u8 = 1;
const NBD_CMD_DISCONNECT: u8 = 2;
const NBD_ATTR_INDEX: u16 = 1;
const NBD_ATTR_SIZE_BYTES: u16 = 2;
const NBD_ATTR_BLOCK_SIZE_BYTES: u16 = 3;
const NBD_ATTR_TIMEOUT: u16 = 4;
const NBD_ATTR_SERVER_FLAGS: u16 = 5;
const NBD_ATTR_CLIENT_FLAGS: u16 = 6;
const NBD_ATTR_SOCKETS: u16 = 7;
const NBD_ATTR_DEAD_CONN_TIMEOUT: u16 = 8;
const NBD_ATTR_BACKEND_IDENTIFIER: u16 = 10;
const NBD_SOCK_ITEM: u16 = 1;
const NBD_SOCK_FD: u16 = 1;
const NBD_CFLAG_DESTROY_ON_DISCONNECT: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetlinkError {
    #[error("the kernel has no NBD driver (modprobe nbd)")]
    NoNbdDriver,
    #[error("the kernel refused: {}", nix::errno::Errno::from_raw(*.0))]
    Kernel(i32),
    #[error("malformed netlink message: {0}")]
    Malformed(&'static str),
    #[error("the reply lacks {0}")]
    Missing(&'static str),
}

/// The backend identifier is only a label in sysfs; bounding it keeps its
/// nla_len (a u16) truthful whatever the export is called.
const MAX_BACKEND_LEN: usize = 1024;

/// What CONNECT tells the kernel: the export as negotiated, and the
/// sockets (one per connection) that are already in transmission phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// A specific /dev/nbdN, or the first free one.
    pub index: Option<u32>,
    pub size_bytes: u64,
    pub block_size: u64,
    /// The export's transmission flags from the handshake.
    pub server_flags: u64,
    pub timeout_secs: u64,
    pub dead_conn_timeout_secs: u64,
    pub sockets: Vec<i32>,
    /// Shown in /sys/block/nbdN/backend, so a device is traceable to us.
    pub backend: Option<String>,
    /// The device goes away with the last disconnect, not lingering.
    pub destroy_on_disconnect: bool,
}

/// A sensible request size for an nbd device: large enough for streaming,
/// small enough that one request never hits the export's 32 MiB limit.
pub const MAX_SECTORS_KB: u32 = 1024;

pub fn max_sectors_kb_path(index: u32) -> String {
    format!("/sys/block/nbd{index}/queue/max_sectors_kb")
}

/// Builds one netlink message: header, genl header, attributes.
struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    fn new(family: u16, flags: u16, seq: u32, cmd: u8, version: u8) -> Message {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&family.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&[cmd, version, 0, 0]);
        Message {
            buf,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = (NLA_HDRLEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn u64(&mut self, kind: u16, v: u64) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn string(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut z = s.as_bytes().to_vec();
        z.push(0);
        self.attr(kind, &z)
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

pub fn get_family_request(seq: u32) -> Vec<u8> {
    let mut m = Message::new(GENL_ID_CTRL, NLM_F_REQUEST, seq, CTRL_CMD_GETFAMILY, 1);
    m.string(CTRL_ATTR_FAMILY_NAME, "nbd");
    m.finish()
}

pub fn connect_request(family: u16, seq: u32, req: &ConnectRequest) -> Vec<u8> {
    let mut m = Message::new(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        NBD_CMD_CONNECT,
        NBD_GENL_VERSION,
    );
    if let Some(i) = req.index {
        m.u32(NBD_ATTR_INDEX, i);
    }
    m.u64(NBD_ATTR_SIZE_BYTES, req.size_bytes)
        .u64(NBD_ATTR_BLOCK_SIZE_BYTES, req.block_size)
        .u64(NBD_ATTR_SERVER_FLAGS, req.server_flags)
        .u64(NBD_ATTR_TIMEOUT, req.timeout_secs)
        .u64(NBD_ATTR_DEAD_CONN_TIMEOUT, req.dead_conn_timeout_secs);
    if req.destroy_on_disconnect {
        m.u64(NBD_ATTR_CLIENT_FLAGS, NBD_CFLAG_DESTROY_ON_DISCONNECT);
    }
    if let Some(b) = &req.backend {
        m.string(NBD_ATTR_BACKEND_IDENTIFIER, truncate(b, MAX_BACKEND_LEN));
    }
    m.begin(NBD_ATTR_SOCKETS);
    for fd in &req.sockets {
        m.begin(NBD_SOCK_ITEM).u32(NBD_SOCK_FD, *fd as u32).end();
    }
    m.end();
    m.finish()
}

/// The longest prefix of `s` of at most `max` bytes that is still UTF-8.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub fn disconnect_request(family: u16, seq: u32, index: u32) -> Vec<u8> {
    let mut m = Message::new(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        NBD_CMD_DISCONNECT,
        NBD_GENL_VERSION,
    );
    m.u32(NBD_ATTR_INDEX, index);
    m.finish()
}

/// One attribute as parsed: its type (without flags) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub nested: bool,
    pub payload: &'a [u8],
}

/// Splits a run of attributes; any length that does not fit is an error.
pub fn attributes(mut data: &[u8]) -> Result<Vec<Attr<'_>>, NetlinkError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let header = data
            .get(..NLA_HDRLEN)
            .ok_or(NetlinkError::Malformed("truncated attribute header"))?;
        let len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let kind = u16::from_ne_bytes([header[2], header[3]]);
        if len < NLA_HDRLEN {
            return Err(NetlinkError::Malformed("attribute shorter than its header"));
        }
        let payload = data
            .get(NLA_HDRLEN..len)
            .ok_or(NetlinkError::Malformed("attribute longer than the message"))?;
        out.push(Attr {
            kind: kind & NLA_TYPE_MASK,
            nested: kind & NLA_F_NESTED != 0,
            payload,
        });
        let padded = (len + 3) & !3;
        data = data.get(padded..).unwrap_or(&[]);
    }
    Ok(out)
}

/// A message's type and body (after the netlink header), checked against
/// the length it claims.
fn message(bytes: &[u8]) -> Result<(u16, &[u8]), NetlinkError> {
    let header = bytes
        .get(..NLMSG_HDRLEN)
        .ok_or(NetlinkError::Malformed("truncated message header"))?;
    let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    if len < NLMSG_HDRLEN {
        return Err(NetlinkError::Malformed("message shorter than its header"));
    }
    let body = bytes
        .get(NLMSG_HDRLEN..len)
        .ok_or(NetlinkError::Malformed("message longer than the data"))?;
    if kind == NLMSG_ERROR {
        let code = body
            .get(..4)
            .ok_or(NetlinkError::Malformed("truncated error"))?;
        let error = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
        // The kernel sends 0 or a negative errno; anything else (i32::MIN
        // would even overflow the negation) did not come from it.
        return match error.checked_neg() {
            Some(errno) if errno >= 0 => Err(NetlinkError::Kernel(errno)),
            _ => Err(NetlinkError::Malformed(
                "error code is not a negative errno",
            )),
        };
    }
    Ok((kind, body))
}

/// The attributes of a generic netlink reply carrying command `cmd`.
fn genl_attributes(bytes: &[u8], cmd: u8) -> Result<Vec<Attr<'_>>, NetlinkError> {
    let (kind, body) = message(bytes).map_err(|e| match e {
        // A bare acknowledgement where a reply was due is not a refusal;
        // "refused: success" would only confuse whoever reads the log.
        NetlinkError::Kernel(0) => NetlinkError::Malformed("an acknowledgement instead of a reply"),
        other => other,
    })?;
    if kind < NLMSG_MIN_TYPE {
        return Err(NetlinkError::Malformed(
            "a control message instead of a reply",
        ));
    }
    let genl = body
        .get(..GENL_HDRLEN)
        .ok_or(NetlinkError::Malformed("truncated genl header"))?;
    if genl[0] != cmd {
        return Err(NetlinkError::Malformed("a reply to another command"));
    }
    attributes(&body[GENL_HDRLEN..])
}

fn u16_of(a: &Attr<'_>) -> Result<u16, NetlinkError> {
    let p = a.payload;
    match p {
        [x, y, ..] => Ok(u16::from_ne_bytes([*x, *y])),
        _ => Err(NetlinkError::Malformed("short u16 attribute")),
    }
}

fn u32_of(a: &Attr<'_>) -> Result<u32, NetlinkError> {
    match a.payload {
        [a, b, c, d, ..] => Ok(u32::from_ne_bytes([*a, *b, *c, *d])),
        _ => Err(NetlinkError::Malformed("short u32 attribute")),
    }
}

/// The "nbd" family id; ENOENT means the driver is not loaded.
pub fn parse_family_reply(bytes: &[u8]) -> Result<u16, NetlinkError> {
    let attrs = genl_attributes(bytes, CTRL_CMD_NEWFAMILY).map_err(|e| match e {
        NetlinkError::Kernel(e) if e == nix::errno::Errno::ENOENT as i32 => {
            NetlinkError::NoNbdDriver
        }
        other => other,
    })?;
    let id = attrs
        .iter()
        .find(|a| a.kind == CTRL_ATTR_FAMILY_ID)
        .ok_or(NetlinkError::Missing("CTRL_ATTR_FAMILY_ID"))?;
    u16_of(id)
}

/// The index of the /dev/nbdN the kernel configured.
pub fn parse_connect_reply(bytes: &[u8]) -> Result<u32, NetlinkError> {
    let attrs = genl_attributes(bytes, NBD_CMD_CONNECT)?;
    let index = attrs
        .iter()
        .find(|a| a.kind == NBD_ATTR_INDEX)
        .ok_or(NetlinkError::Missing("NBD_ATTR_INDEX"))?;
    u32_of(index)
}

/// An acknowledgement (NLMSG_ERROR with error 0) or the kernel's error.
pub fn parse_ack(bytes: &[u8]) -> Result<(), NetlinkError> {
    match message(bytes) {
        Err(NetlinkError::Kernel(0)) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(NetlinkError::Malformed("expected an acknowledgement")),
    }
}

#[cfg(test)]
#[path = "netlink_tests.rs"]
mod tests;
