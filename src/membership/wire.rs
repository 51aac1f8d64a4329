//! The heartbeat packet: versioned binary format, documented in docs/wire.md.
//!
//! TODO(helper): implement encode/decode as specified in docs/wire.md.

use crate::membership::auth::Auth;
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
    #[error("unsupported wire version")]
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

/// Encodes and decodes heartbeats of one cluster under one key.
pub struct Codec {
    pub cluster: String,
    pub auth: Auth,
}
