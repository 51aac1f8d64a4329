//! The heartbeat packet: versioned binary format, documented in docs/wire.md.
//! Decoding never trusts a length or an index: every read goes through a
//! bounds-checked cursor, and any doubt is a `DropReason`.

use crate::membership::auth::{Auth, AuthAlgorithm};
use crate::membership::config_digest;
use crate::membership::echo_records::{self, Echo};
use crate::membership::fence_records::{self, FenceRecord};
use crate::membership::node_state::{self, NodeState};
use crate::membership::protocol::{self, Announcement};
use crate::membership::quorum_records::{self, QuorumRecords};
use crate::types::{Incarnation, LinkId, Seq};

/// What a heartbeat says, once decoded and authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sender's node name (as in the config).
    pub node: String,
    pub incarnation: Incarnation,
    /// The link the sender sent this copy on (its own link index).
    pub link: LinkId,
    /// Per-link sequence number within the incarnation.
    pub seq: Seq,
    /// How many of the configured ping nodes the sender reaches.
    pub ping_reachable: u16,
    /// Standby and group phases, from the extension bytes (none from a
    /// sender that has nothing to say, or an older one).
    pub state: Option<NodeState>,
    /// With a witness: what a data node sees, or the witness's vote
    /// (extension records 3 and 4).
    pub quorum: QuorumRecords,
    /// Replication-level fencing: outdate requests and their answers
    /// (extension record 5), from a node that holds a replica.
    pub fences: Option<FenceRecord>,
    /// The digest of the sender's config (extension record 6).
    pub config: Option<u64>,
    /// The protocol versions the sender speaks (record 7; none from a
    /// build of version 1).
    pub protocol: Option<Announcement>,
    /// The newest heartbeats the sender took from its peers on this link
    /// (record 8), for round-trip times.
    pub echoes: Vec<Echo>,
}

/// Why a datagram was dropped. Each has its own counter in the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    #[error("truncated packet")]
    Truncated,
    #[error("oversized packet")]
    Oversized,
    #[error("not a duet packet (bad magic)")]
    BadMagic,
    #[error(
        "unsupported wire version (a layout newer than this build reads: see docs/wire.md, Rolling upgrade)"
    )]
    UnsupportedVersion,
    #[error("packet of another cluster")]
    WrongCluster,
    #[error("signed with another algorithm than this cluster's")]
    WrongAlgorithm,
    #[error("bad signature (wrong key or tampered)")]
    BadSignature,
    #[error("malformed packet")]
    Malformed,
    #[error("unknown sender node")]
    UnknownNode,
    #[error("replayed or stale packet")]
    Replay,
}

impl DropReason {
    /// Stable name for counters (D-Bus, JSON, metrics).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::BadMagic => "bad-magic",
            DropReason::UnsupportedVersion => "unsupported-version",
            DropReason::WrongCluster => "wrong-cluster",
            DropReason::WrongAlgorithm => "wrong-algorithm",
            DropReason::BadSignature => "bad-signature",
            DropReason::Malformed => "malformed",
            DropReason::UnknownNode => "unknown-node",
            DropReason::Replay => "replay",
        }
    }
}

pub const MAGIC: &[u8; 4] = b"DUET";
pub const VERSION: u8 = 1;
pub const TYPE_HEARTBEAT: u8 = 1;
/// No valid heartbeat comes near this; anything longer is refused unread.
pub const MAX_PACKET: usize = 1024;
/// Names on the wire (cluster, node) are 1..=64 bytes.
pub const MAX_NAME: usize = 64;

/// The size of a heartbeat with names of these lengths, `ext` extension
/// bytes and a tag of `tag` bytes (docs/wire.md).
pub fn heartbeat_len(cluster: usize, node: usize, ext: usize, tag: usize) -> usize {
    8 + (1 + cluster) + (1 + node) + 8 + 1 + 8 + 2 + 2 + ext + tag
}
/// The shortest signed part of a v1 heartbeat: header, two one-byte names,
/// incarnation, link, seq, ping count, empty extension.
const MIN_BODY: usize = 8 + 2 + 2 + 8 + 1 + 8 + 2 + 2;
/// The shortest tag of any algorithm (crc).
const MIN_TAG: usize = 4;

/// Encodes and decodes heartbeats of one cluster under one key.
#[derive(Debug, Clone)]
pub struct Codec {
    cluster: String,
    auth: Auth,
}

impl Codec {
    pub fn new(cluster: String, auth: Auth) -> Codec {
        Codec { cluster, auth }
    }

    pub fn algorithm(&self) -> AuthAlgorithm {
        self.auth.algorithm
    }

    /// Names longer than `MAX_NAME` are cut (config validation keeps them
    /// shorter, so this never happens in a running cluster).
    pub fn encode(&self, hb: &Heartbeat) -> Vec<u8> {
        let mut p = Vec::with_capacity(128);
        p.extend_from_slice(MAGIC);
        p.extend_from_slice(&[VERSION, TYPE_HEARTBEAT, self.auth.algorithm.wire_id(), 0]);
        put_name(&mut p, &self.cluster);
        put_name(&mut p, &hb.node);
        p.extend_from_slice(&hb.incarnation.0.to_be_bytes());
        p.push(hb.link.0);
        p.extend_from_slice(&hb.seq.0.to_be_bytes());
        p.extend_from_slice(&hb.ping_reachable.to_be_bytes());
        let mut ext = hb
            .state
            .as_ref()
            .map(node_state::encode)
            .unwrap_or_default();
        ext.extend_from_slice(&quorum_records::encode(&hb.quorum));
        if let Some(f) = &hb.fences {
            ext.extend_from_slice(&fence_records::encode(f));
        }
        if let Some(d) = hb.config {
            ext.extend_from_slice(&config_digest::encode(d));
        }
        if let Some(a) = &hb.protocol {
            ext.extend_from_slice(&protocol::encode(a));
        }
        ext.extend_from_slice(&echo_records::encode(&hb.echoes));
        p.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        p.extend_from_slice(&ext);
        let tag = self.auth.sign(&p);
        p.extend_from_slice(&tag);
        p
    }

    /// Checks in the order of docs/wire.md: cheap structural checks first,
    /// then what this cluster expects (so a neighbour is named as such),
    /// then the tag, and only then is any content trusted.
    pub fn decode(&self, bytes: &[u8]) -> Result<Heartbeat, DropReason> {
        if bytes.len() > MAX_PACKET {
            return Err(DropReason::Oversized);
        }
        // Against the shortest tag of any algorithm, not ours: a short
        // packet of a node misconfigured with crc must still be reported as
        // a wrong algorithm, the error the operator can act on.
        if bytes.len() < MIN_BODY + MIN_TAG {
            return Err(DropReason::Truncated);
        }
        let mut r = Reader::new(bytes);
        if r.take(4)? != MAGIC {
            return Err(DropReason::BadMagic);
        }
        if r.u8()? != VERSION {
            return Err(DropReason::UnsupportedVersion);
        }
        if r.u8()? != TYPE_HEARTBEAT {
            return Err(DropReason::Malformed);
        }
        let algorithm = r.u8()?;
        let _flags = r.u8()?;
        let cluster = r.name()?;
        if algorithm != self.auth.algorithm.wire_id() {
            return Err(DropReason::WrongAlgorithm);
        }
        if cluster != self.cluster.as_bytes() {
            return Err(DropReason::WrongCluster);
        }
        let tag_len = self.auth.tag_len();
        // The tag is the last T bytes whatever the body says, so nothing can
        // hide after it; the body must then end exactly where it begins.
        let (signed, tag) = bytes
            .len()
            .checked_sub(tag_len)
            .and_then(|n| bytes.split_at_checked(n))
            .ok_or(DropReason::Truncated)?;
        let raw = read_body(Reader {
            data: signed,
            pos: r.pos,
        })?;
        if !self.auth.verify(signed, tag) {
            return Err(DropReason::BadSignature);
        }
        raw.into_heartbeat()
    }
}

fn put_name(p: &mut Vec<u8>, name: &str) {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    p.push(end as u8);
    p.extend_from_slice(&name.as_bytes()[..end]);
}

/// The body as read, before the signature is checked and the name is
/// trusted to be UTF-8.
struct RawBody<'a> {
    node: &'a [u8],
    incarnation: u64,
    link: u8,
    seq: u64,
    ping_reachable: u16,
    extension: &'a [u8],
}

impl RawBody<'_> {
    fn into_heartbeat(self) -> Result<Heartbeat, DropReason> {
        let node = std::str::from_utf8(self.node).map_err(|_| DropReason::Malformed)?;
        Ok(Heartbeat {
            node: node.to_string(),
            incarnation: Incarnation(self.incarnation),
            link: LinkId(self.link),
            seq: Seq(self.seq),
            ping_reachable: self.ping_reachable,
            // Inside the extension, any inconsistency is the sender's.
            state: node_state::decode(self.extension).map_err(|_| DropReason::Malformed)?,
            quorum: quorum_records::decode(self.extension).map_err(|_| DropReason::Malformed)?,
            fences: fence_records::decode(self.extension).map_err(|_| DropReason::Malformed)?,
            config: config_digest::decode(self.extension).map_err(|_| DropReason::Malformed)?,
            protocol: protocol::decode(self.extension).map_err(|_| DropReason::Malformed)?,
            echoes: echo_records::decode(self.extension).map_err(|_| DropReason::Malformed)?,
        })
    }
}

/// Reads from after the cluster name to the start of the tag, which must
/// be exactly where the body ends.
fn read_body(mut r: Reader<'_>) -> Result<RawBody<'_>, DropReason> {
    let node = r.name()?;
    let incarnation = r.u64()?;
    let link = r.u8()?;
    let seq = r.u64()?;
    let ping_reachable = r.u16()?;
    let extension = r.u16()?;
    let extension = r.take(usize::from(extension))?;
    if r.pos != r.data.len() {
        return Err(DropReason::Malformed);
    }
    Ok(RawBody {
        node,
        incarnation,
        link,
        seq,
        ping_reachable,
        extension,
    })
}

/// The extension records in `ext`, as (type, value): each record's own
/// decoder picks its type and skips the rest. A record that runs past
/// the end yields `Truncated` and ends the walk.
pub(crate) fn records(ext: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), DropReason>> {
    let mut r = Reader::new(ext);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || r.remaining() == 0 {
            return None;
        }
        let next = (|| {
            let kind = r.u8()?;
            let len = usize::from(r.u16()?);
            Ok((kind, r.take(len)?))
        })();
        failed = next.is_err();
        Some(next)
    })
}

/// A bounds-checked cursor: running off the end is `Truncated`.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DropReason> {
        let end = self.pos.checked_add(n).ok_or(DropReason::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(DropReason::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DropReason> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DropReason> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DropReason> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DropReason> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn name(&mut self) -> Result<&'a [u8], DropReason> {
        let len = usize::from(self.u8()?);
        if len == 0 || len > MAX_NAME {
            return Err(DropReason::Malformed);
        }
        self.take(len)
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
