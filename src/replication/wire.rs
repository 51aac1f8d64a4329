//! The replication link's wire format (docs/replication-wire.md): versions
//! 1 and 2 differ in the handshake alone, version 3 in the frames' MAC
//! (`FrameMac`). Each side greets with the
//! version it offers and both use the lower; version 2 binds both offers
//! into the proofs and session keys, and a side that knows from the
//! peer's authenticated heartbeats what it speaks refuses to settle lower,
//! so no one in the middle can talk the two down to an older version.
//!
//! A connection starts with a handshake: both send a greeting (magic,
//! version, node, replica, a fresh nonce), then a proof that they hold the
//! replication key (an HMAC over both nonces), so a stranger can neither
//! connect nor replay an old handshake. Every frame after that carries a
//! MAC (AEGIS-128X4; keyed BLAKE3 below version 3) under a per-direction
//! session key over a
//! per-direction counter, the header, the body and the payload: a frame that is
//! tampered with, replayed, dropped, reordered or reflected fails.

use std::io::{Read, Write};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::replication::core::{AckKind, Msg, PeerState};
use crate::replication::generation::{Generation, Generations};
use crate::replication::states::{DiskState, Role};

use crate::membership::protocol::ProtocolRange;
use aegis::aegis128x4::Aegis128X4Mac;

/// The newest version of the link; `ProtocolRange::BUILD` is what this
/// build speaks.
pub const VERSION: u16 = ProtocolRange::BUILD.max;
/// Largest payload: an NBD request is at most 32 MiB.
pub const MAX_PAYLOAD: usize = 32 << 20;
/// Largest bitmap chunk, in words.
pub const MAX_BITMAP_WORDS: usize = 1 << 20;
const MAX_BODY: usize = 16 + MAX_BITMAP_WORDS * 8;
const FRAME_MAGIC: &[u8; 4] = b"DRP1";
const GREETING_MAGIC: &[u8; 8] = b"DUETREPL";
/// magic, type, flags, reserved, body length, payload length.
pub const HEADER_LEN: usize = 16;
pub const MAC_LEN: usize = 32;
const NONCE_LEN: usize = 32;
const MAX_NAME: usize = 64;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame cut short")]
    Truncated,
    #[error("not a duet replication frame")]
    BadMagic,
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(u64),
    #[error("authentication failed (tampered, replayed or foreign frame)")]
    BadMac,
    #[error("malformed frame: {0}")]
    Invalid(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the peer does not speak duet's replication protocol")]
    NotDuet,
    /// As a build of version 1 answers any other greeting.
    #[error("the peer greets with replication protocol version {0}; this node speaks 1 only")]
    Version(u16),
    #[error(
        "the peer offers replication protocol version {theirs} at most; this node speaks {ours}: upgrade the older node"
    )]
    Incompatible { theirs: u16, ours: ProtocolRange },
    #[error(
        "the peer greeted with replication protocol version {theirs} and hung up on this node's {offered}: {}",
        if theirs < offered { "an older build takes its own version only; the next attempt offers it" }
        else if offered < newest { "its heartbeats announced an older version; the next attempt follows its newer ones" }
        else { "it no longer speaks this node's version; upgrade this node" }
    )]
    HungUp {
        theirs: u16,
        offered: u16,
        /// The newest version this node speaks.
        newest: u16,
    },
    #[error(
        "the two offers settle on replication protocol version {settled}, below the {floor} the peer's heartbeats announced: refused (a greeting changed on the way, or the peer just changed builds)"
    )]
    Downgraded { settled: u16, floor: u16 },
    #[error("the peer serves replica {got:?}, not {expected:?}")]
    WrongReplica { expected: String, got: String },
    #[error("the peer says it is node #{got}, not node #{expected}")]
    WrongNode { expected: u16, got: u16 },
    #[error("the peer could not prove it holds the replication key")]
    BadProof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub msg: Msg,
    pub payload: Option<Vec<u8>>,
}

/// Keys and counters of one authenticated connection.
pub struct Session {
    send_key: [u8; 32],
    recv_key: [u8; 32],
    send_ctr: u64,
    recv_ctr: u64,
    /// The version the two settled on.
    pub version: u16,
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC takes keys of any length.
        <HmacSha256 as KeyInit>::new_from_slice(&[0]).expect("a one-byte key")
    });
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn mac_ok(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut m) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        m.update(p);
    }
    // Constant time.
    m.verify_slice(tag).is_ok()
}

/// The algorithm of the frames' MAC, which the settled version decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMac {
    /// Versions 1 and 2: keyed BLAKE3 over the counter and the frame.
    Blake3,
    /// From version 3: AEGIS-128X4 as a MAC (RFC 10032), keyed with the
    /// first half of the session key, the counter as its nonce. Several
    /// times faster than BLAKE3 on CPUs with AES instructions (47 against
    /// 5.9 GB/s at 1 MiB here); both sides MAC every replicated byte, and
    /// BLAKE3 was a fifth of the Primary's CPU time in sequential writes
    /// (docs/performance.md, "The frames' MAC").
    Aegis128X4,
}

impl FrameMac {
    pub fn of(version: u16) -> FrameMac {
        if version >= 3 {
            FrameMac::Aegis128X4
        } else {
            FrameMac::Blake3
        }
    }
}

/// The sending half of a session: it seals frames in order.
pub struct Sealer {
    key: [u8; 32],
    ctr: u64,
    mac: FrameMac,
}

/// The receiving half of a session: it opens frames in order.
pub struct Opener {
    key: [u8; 32],
    ctr: u64,
    mac: FrameMac,
}

impl Session {
    /// The two directions apart, for a sender and a receiver that run
    /// on different threads.
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer(), self.opener())
    }

    fn sealer(&self) -> Sealer {
        Sealer {
            key: self.send_key,
            ctr: self.send_ctr,
            mac: self.frame_mac(),
        }
    }

    fn opener(&self) -> Opener {
        Opener {
            key: self.recv_key,
            ctr: self.recv_ctr,
            mac: self.frame_mac(),
        }
    }

    /// The MAC this session's frames carry.
    pub fn frame_mac(&self) -> FrameMac {
        FrameMac::of(self.version)
    }

    pub fn seal(&mut self, msg: &Msg, payload: Option<&[u8]>) -> Vec<u8> {
        let mut s = self.sealer();
        let mut frame = Vec::new();
        s.seal_into(msg, payload, &mut frame);
        self.send_ctr = s.ctr;
        frame
    }

    /// How many bytes follow a header (body, payload, MAC); refuses
    /// oversized frames before anything is allocated.
    pub fn body_len(&self, header: &[u8]) -> Result<usize, WireError> {
        body_len(header)
    }

    pub fn open(&mut self, header: &[u8], rest: &[u8]) -> Result<Frame, WireError> {
        let mut o = self.opener();
        let frame = o.open(header, rest);
        // A frame refused after its MAC checked still counts.
        self.recv_ctr = o.ctr;
        frame
    }
}

impl Sealer {
    /// Appends the sealed frame to `out`.
    pub fn seal_into(&mut self, msg: &Msg, payload: Option<&[u8]>, out: &mut Vec<u8>) {
        let (head, tag) = self.seal_parts(msg, payload);
        out.extend_from_slice(&head);
        out.extend_from_slice(payload.unwrap_or(&[]));
        out.extend_from_slice(&tag);
    }

    /// Seals a frame without copying its payload: returns the header and
    /// body, which the payload follows on the wire, and the MAC, which
    /// ends the frame.
    pub fn seal_parts(&mut self, msg: &Msg, payload: Option<&[u8]>) -> (Vec<u8>, [u8; MAC_LEN]) {
        let mut body = Vec::with_capacity(64);
        let kind = encode(msg, &mut body);
        let payload = payload.unwrap_or(&[]);
        let mut head = Vec::with_capacity(HEADER_LEN + body.len());
        head.extend_from_slice(FRAME_MAGIC);
        head.extend_from_slice(&[kind, 0, 0, 0]);
        head.extend_from_slice(&(body.len() as u32).to_le_bytes());
        head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        head.extend_from_slice(&body);
        let tag = frame_tag(self.mac, &self.key, self.ctr, &[&head, payload]);
        self.ctr += 1;
        (head, tag)
    }
}

/// How many bytes follow a header (body, payload, MAC); refuses
/// oversized frames before anything is allocated.
pub fn body_len(header: &[u8]) -> Result<usize, WireError> {
    let (body, payload) = lengths(header)?;
    Ok(body + payload + MAC_LEN)
}

/// A frame read in its parts (the payload into a buffer of its own, so
/// it never needs copying out).
pub struct Parts<'a> {
    pub header: &'a [u8],
    pub body: &'a [u8],
    pub payload: Vec<u8>,
    pub tag: &'a [u8; MAC_LEN],
}

/// The body and payload lengths a header announces; refuses oversized
/// frames before anything is allocated.
pub fn frame_lengths(header: &[u8]) -> Result<(usize, usize), WireError> {
    lengths(header)
}

impl Opener {
    /// Opens a frame read as `Parts` (see `frame_lengths`).
    pub fn open_parts(&mut self, p: Parts<'_>) -> Result<Frame, WireError> {
        let (body_len, payload_len) = lengths(p.header)?;
        if p.body.len() != body_len || p.payload.len() != payload_len {
            return Err(WireError::Truncated);
        }
        let parts = [p.header, p.body, &p.payload[..]];
        if !frame_tag_ok(self.mac, &self.key, self.ctr, &parts, p.tag) {
            return Err(WireError::BadMac);
        }
        self.ctr += 1;
        let msg = decode(p.header[4], p.body)?;
        // The payload must be there exactly for the messages that carry
        // data, and as long as they say.
        let want = match &msg {
            Msg::Data { len, .. } | Msg::ResyncData { len, .. } => Some(*len as usize),
            Msg::ReadReply { ok: true, .. } => Some(payload_len),
            _ => None,
        };
        let payload = match want {
            Some(n) if n == payload_len && n > 0 => Some(p.payload),
            None if payload_len == 0 => None,
            _ => {
                return Err(WireError::Invalid(
                    "payload missing, unexpected or of the wrong length",
                ));
            }
        };
        Ok(Frame { msg, payload })
    }

    /// Opens a frame read whole: the header, then body, payload and MAC.
    pub fn open(&mut self, header: &[u8], rest: &[u8]) -> Result<Frame, WireError> {
        let (body_len, payload_len) = lengths(header)?;
        if rest.len() != body_len + payload_len + MAC_LEN {
            return Err(WireError::Truncated);
        }
        let (body, rest) = rest.split_at(body_len);
        let (payload, tag) = rest.split_at(payload_len);
        let tag = <&[u8; MAC_LEN]>::try_from(tag).map_err(|_| WireError::Truncated)?;
        self.open_parts(Parts {
            header,
            body,
            payload: payload.to_vec(),
            tag,
        })
    }
}

/// A frame's MAC over the direction's counter and the frame: keyed
/// BLAKE3 (a MAC by design, and several times faster than HMAC-SHA256,
/// which every replicated byte pays twice) up to version 2, AEGIS-128X4
/// from version 3 (`FrameMac`).
fn frame_tag(mac: FrameMac, key: &[u8; 32], counter: u64, parts: &[&[u8]]) -> [u8; MAC_LEN] {
    match mac {
        FrameMac::Blake3 => *blake3_mac(key, counter, parts).as_bytes(),
        FrameMac::Aegis128X4 => aegis_mac(key, counter, parts).finalize(),
    }
}

/// Whether `tag` is the frame's MAC, compared in constant time.
fn frame_tag_ok(
    mac: FrameMac,
    key: &[u8; 32],
    counter: u64,
    parts: &[&[u8]],
    tag: &[u8; MAC_LEN],
) -> bool {
    match mac {
        // blake3::Hash compares in constant time.
        FrameMac::Blake3 => blake3_mac(key, counter, parts) == blake3::Hash::from(*tag),
        FrameMac::Aegis128X4 => aegis_mac(key, counter, parts).verify(tag).is_ok(),
    }
}

fn blake3_mac(key: &[u8; 32], counter: u64, parts: &[&[u8]]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&counter.to_le_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// AEGIS-128X4's MAC state over the frame: the key is the session key's
/// first 16 bytes (an HMAC-SHA256 output, uniformly random), the nonce
/// the counter (u64, little-endian, then zeros), never repeated under
/// one key.
fn aegis_mac(key: &[u8; 32], counter: u64, parts: &[&[u8]]) -> Aegis128X4Mac<MAC_LEN> {
    let mut k = [0u8; 16];
    k.copy_from_slice(&key[..16]);
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&counter.to_le_bytes());
    let mut m = Aegis128X4Mac::<MAC_LEN>::new_with_nonce(&k, &nonce);
    for p in parts {
        m.update(p);
    }
    m
}

fn lengths(header: &[u8]) -> Result<(usize, usize), WireError> {
    if header.len() != HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if &header[..4] != FRAME_MAGIC {
        return Err(WireError::BadMagic);
    }
    if header[5..8] != [0, 0, 0] {
        return Err(WireError::Invalid("reserved header bytes set"));
    }
    let body = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let payload = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize;
    if body > MAX_BODY {
        return Err(WireError::TooLarge(body as u64));
    }
    if payload > MAX_PAYLOAD {
        return Err(WireError::TooLarge(payload as u64));
    }
    Ok((body, payload))
}

// ---- message bodies ----

/// A message's body alone (no header, no MAC): for the fuzz target, which
/// cannot forge MACs and must still reach the decoder.
#[doc(hidden)]
pub fn decode_body(kind: u8, body: &[u8]) -> Result<Msg, WireError> {
    decode(kind, body)
}

#[doc(hidden)]
pub fn encode_body(msg: &Msg) -> (u8, Vec<u8>) {
    let mut b = Vec::new();
    let kind = encode(msg, &mut b);
    (kind, b)
}

fn put_gens(b: &mut Vec<u8>, g: &Generations) {
    for id in [g.current, g.bitmap, g.history[0], g.history[1]] {
        b.extend_from_slice(&id.0.to_le_bytes());
    }
}

fn encode(msg: &Msg, b: &mut Vec<u8>) -> u8 {
    let u64s = |b: &mut Vec<u8>, vs: &[u64]| {
        vs.iter()
            .for_each(|v| b.extend_from_slice(&v.to_le_bytes()))
    };
    match msg {
        Msg::Hello(p) => {
            put_gens(b, &p.generations);
            b.extend_from_slice(&[p.role.code(), p.disk.code()]);
            u64s(b, &[p.size]);
            b.extend_from_slice(&p.granularity.to_le_bytes());
            u64s(b, &[p.dirty_blocks, p.primary_since]);
            b.push(u8::from(p.discard_my_data) | (u8::from(p.crashed_primary) << 1));
            1
        }
        Msg::Update { role, disk } => {
            b.extend_from_slice(&[role.code(), disk.code()]);
            2
        }
        Msg::Bitmap {
            first_word,
            words,
            last,
        } => {
            u64s(b, &[*first_word]);
            b.push(u8::from(*last));
            b.extend_from_slice(&(words.len() as u32).to_le_bytes());
            u64s(b, words);
            3
        }
        Msg::Data {
            seq,
            offset,
            len,
            fua,
        } => {
            u64s(b, &[*seq, *offset]);
            b.extend_from_slice(&len.to_le_bytes());
            b.push(u8::from(*fua));
            4
        }
        Msg::Flush { seq } => {
            u64s(b, &[*seq]);
            5
        }
        Msg::Ack { seq, kind, ok } => {
            u64s(b, &[*seq]);
            let k = match kind {
                AckKind::Received => 0,
                AckKind::Written => 1,
                AckKind::Flushed => 2,
            };
            b.extend_from_slice(&[k, u8::from(*ok)]);
            6
        }
        Msg::ResyncData { id, offset, len } => {
            u64s(b, &[*id, *offset]);
            b.extend_from_slice(&len.to_le_bytes());
            7
        }
        Msg::ResyncAck { id, ok } => {
            u64s(b, &[*id]);
            b.push(u8::from(*ok));
            8
        }
        Msg::SyncDone { generations } => {
            put_gens(b, generations);
            9
        }
        Msg::VerifyRequest {
            id,
            offset,
            len,
            digest,
        } => {
            u64s(b, &[*id, *offset]);
            b.extend_from_slice(&len.to_le_bytes());
            u64s(b, &[*digest]);
            10
        }
        Msg::VerifyReply { id, equal } => {
            u64s(b, &[*id]);
            b.push(u8::from(*equal));
            11
        }
        Msg::VerifyDone => 12,
        Msg::ReadRequest { id, offset, len } => {
            u64s(b, &[*id, *offset]);
            b.extend_from_slice(&len.to_le_bytes());
            13
        }
        Msg::ReadReply { id, ok } => {
            u64s(b, &[*id]);
            b.push(u8::from(*ok));
            14
        }
        Msg::Ping => 15,
        Msg::PingAck => 16,
        Msg::OutOfSync { offset, len } => {
            u64s(b, &[*offset]);
            b.extend_from_slice(&len.to_le_bytes());
            17
        }
        Msg::InvalidateRemote => 18,
        Msg::VerifyAsk { id, offset, len } => {
            u64s(b, &[*id, *offset]);
            b.extend_from_slice(&len.to_le_bytes());
            19
        }
    }
}

/// Reads fields off a body; every read is bounds-checked.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid("a boolean is neither 0 nor 1")),
        }
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn gens(&mut self) -> Result<Generations, WireError> {
        Ok(Generations {
            current: Generation(self.u64()?),
            bitmap: Generation(self.u64()?),
            history: [Generation(self.u64()?), Generation(self.u64()?)],
        })
    }
    fn role(&mut self) -> Result<Role, WireError> {
        Role::from_code(self.u8()?).ok_or(WireError::Invalid("unknown role"))
    }
    fn disk(&mut self) -> Result<DiskState, WireError> {
        // Consistent is a local state, never sent.
        DiskState::from_code(self.u8()?)
            .filter(|d| *d != DiskState::Consistent)
            .ok_or(WireError::Invalid("unknown disk state"))
    }
    fn done(&self) -> Result<(), WireError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(WireError::Invalid("trailing bytes"))
        }
    }
}

fn decode(kind: u8, body: &[u8]) -> Result<Msg, WireError> {
    let mut r = Reader { b: body };
    let msg = match kind {
        1 => {
            let generations = r.gens()?;
            let role = r.role()?;
            let disk = r.disk()?;
            let size = r.u64()?;
            let granularity = r.u32()?;
            let dirty_blocks = r.u64()?;
            let primary_since = r.u64()?;
            let flags = r.u8()?;
            if flags > 3 {
                return Err(WireError::Invalid("unknown state flags"));
            }
            Msg::Hello(PeerState {
                generations,
                role,
                disk,
                size,
                granularity,
                dirty_blocks,
                primary_since,
                discard_my_data: flags & 1 != 0,
                crashed_primary: flags & 2 != 0,
            })
        }
        2 => Msg::Update {
            role: r.role()?,
            disk: r.disk()?,
        },
        3 => {
            let first_word = r.u64()?;
            let last = r.bool()?;
            let n = r.u32()? as usize;
            if n > MAX_BITMAP_WORDS {
                return Err(WireError::TooLarge(n as u64));
            }
            if r.b.len() != n * 8 {
                return Err(WireError::Invalid("bitmap word count"));
            }
            let words = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
            Msg::Bitmap {
                first_word,
                words,
                last,
            }
        }
        4 => Msg::Data {
            seq: r.u64()?,
            offset: r.u64()?,
            len: r.u32()?,
            fua: r.bool()?,
        },
        5 => Msg::Flush { seq: r.u64()? },
        6 => {
            let seq = r.u64()?;
            let kind = match r.u8()? {
                0 => AckKind::Received,
                1 => AckKind::Written,
                2 => AckKind::Flushed,
                _ => return Err(WireError::Invalid("unknown acknowledgement")),
            };
            Msg::Ack {
                seq,
                kind,
                ok: r.bool()?,
            }
        }
        7 => Msg::ResyncData {
            id: r.u64()?,
            offset: r.u64()?,
            len: r.u32()?,
        },
        8 => Msg::ResyncAck {
            id: r.u64()?,
            ok: r.bool()?,
        },
        9 => Msg::SyncDone {
            generations: r.gens()?,
        },
        10 => Msg::VerifyRequest {
            id: r.u64()?,
            offset: r.u64()?,
            len: r.u32()?,
            digest: r.u64()?,
        },
        11 => Msg::VerifyReply {
            id: r.u64()?,
            equal: r.bool()?,
        },
        12 => Msg::VerifyDone,
        13 => Msg::ReadRequest {
            id: r.u64()?,
            offset: r.u64()?,
            len: r.u32()?,
        },
        14 => Msg::ReadReply {
            id: r.u64()?,
            ok: r.bool()?,
        },
        15 => Msg::Ping,
        16 => Msg::PingAck,
        17 => Msg::OutOfSync {
            offset: r.u64()?,
            len: r.u32()?,
        },
        18 => Msg::InvalidateRemote,
        19 => Msg::VerifyAsk {
            id: r.u64()?,
            offset: r.u64()?,
            len: r.u32()?,
        },
        k => return Err(WireError::UnknownType(k)),
    };
    r.done()?;
    Ok(msg)
}

// ---- handshake ----

struct Greeting {
    node: u16,
    replica: String,
    nonce: [u8; NONCE_LEN],
}

fn write_greeting<S: Write>(s: &mut S, g: &Greeting, version: u16) -> std::io::Result<()> {
    let name = g.replica.as_bytes();
    let mut b = Vec::with_capacity(8 + 2 + 2 + 1 + name.len() + NONCE_LEN);
    b.extend_from_slice(GREETING_MAGIC);
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&g.node.to_le_bytes());
    b.push(name.len().min(MAX_NAME) as u8);
    b.extend_from_slice(&name[..name.len().min(MAX_NAME)]);
    b.extend_from_slice(&g.nonce);
    s.write_all(&b)?;
    s.flush()
}

/// The peer's greeting and the version it offers.
fn read_greeting<S: Read>(s: &mut S) -> Result<(Greeting, u16), HandshakeError> {
    let mut head = [0u8; 13];
    s.read_exact(&mut head)?;
    if &head[..8] != GREETING_MAGIC {
        return Err(HandshakeError::NotDuet);
    }
    let version = u16::from_le_bytes([head[8], head[9]]);
    let node = u16::from_le_bytes([head[10], head[11]]);
    let len = usize::from(head[12]);
    if len > MAX_NAME {
        return Err(HandshakeError::NotDuet);
    }
    let mut name = vec![0u8; len];
    s.read_exact(&mut name)?;
    let mut nonce = [0u8; NONCE_LEN];
    s.read_exact(&mut nonce)?;
    let greeting = Greeting {
        node,
        replica: String::from_utf8_lossy(&name).into_owned(),
        nonce,
    };
    Ok((greeting, version))
}

/// What a side offers: the versions it speaks, the one it greets with
/// (its newest, or lower when the peer is known to be older), and the
/// lowest it settles on (above its oldest when the peer's heartbeats
/// announced a newer one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub speaks: ProtocolRange,
    pub version: u16,
    pub floor: u16,
}

impl Offer {
    pub const BUILD: Offer = Offer {
        speaks: ProtocolRange::BUILD,
        version: ProtocolRange::BUILD.max,
        floor: ProtocolRange::BUILD.min,
    };

    /// Greets with what this node and the peer both speak, as far as
    /// known (`peer_max`: the newest version the peer announced), with
    /// no floor.
    pub fn towards(speaks: ProtocolRange, peer_max: u16) -> Offer {
        Offer {
            speaks,
            version: peer_max.clamp(speaks.min, speaks.max),
            floor: speaks.min,
        }
    }

    /// As `towards`, from what the peer's authenticated heartbeats
    /// announced: nothing lower than that is settled on.
    pub fn announced(speaks: ProtocolRange, peer_max: u16) -> Offer {
        let o = Offer::towards(speaks, peer_max);
        Offer {
            floor: o.version,
            ..o
        }
    }

    /// The version both use once this side read the peer's offer. A
    /// build of version 1 alone takes nothing but its own, as the first
    /// builds did.
    fn settle(self, theirs: u16) -> Result<u16, HandshakeError> {
        if self.speaks.max < 2 {
            return match theirs {
                1 => Ok(1),
                v => Err(HandshakeError::Version(v)),
            };
        }
        let v = self.version.min(theirs);
        if v < self.speaks.min {
            return Err(HandshakeError::Incompatible {
                theirs,
                ours: self.speaks,
            });
        }
        if v < self.floor {
            return Err(HandshakeError::Downgraded {
                settled: v,
                floor: self.floor,
            });
        }
        Ok(v)
    }
}

/// The labels of the proofs and keys: version 1's as they were; from
/// version 2 on, the version and both offers (initiator's first) too.
fn labels(version: u16, offers: (u16, u16)) -> (String, Vec<u8>) {
    if version == 1 {
        return ("duet-repl-v1".into(), Vec::new());
    }
    let mut bound = version.to_le_bytes().to_vec();
    bound.extend_from_slice(&offers.0.to_le_bytes());
    bound.extend_from_slice(&offers.1.to_le_bytes());
    (format!("duet-repl-v{version}"), bound)
}

fn proof_parts<'a>(
    label: &'a [u8],
    nonces: (&'a [u8], &'a [u8]),
    sender: &'a [u8; 2],
    replica: &'a str,
    bound: &'a [u8],
) -> [&'a [u8]; 6] {
    [label, nonces.0, nonces.1, sender, replica.as_bytes(), bound]
}

/// `handshake_offering` with this build's offer.
pub fn handshake<S: Read + Write>(
    s: &mut S,
    key: &[u8],
    replica: &str,
    local: u16,
    peer: u16,
    initiator: bool,
) -> Result<Session, HandshakeError> {
    handshake_offering(s, key, replica, local, peer, initiator, Offer::BUILD)
}

/// Greets, checks the peer's greeting, settles the version, exchanges
/// proofs of the key and derives the session keys. `initiator`: this
/// side dialled.
pub fn handshake_offering<S: Read + Write>(
    s: &mut S,
    key: &[u8],
    replica: &str,
    local: u16,
    peer: u16,
    initiator: bool,
    offer: Offer,
) -> Result<Session, HandshakeError> {
    let mine = Greeting {
        node: local,
        replica: replica.to_string(),
        nonce: rand::random(),
    };
    write_greeting(s, &mine, offer.version)?;
    let (theirs, their_offer) = read_greeting(s)?;
    let version = offer.settle(their_offer)?;
    if theirs.replica != replica {
        return Err(HandshakeError::WrongReplica {
            expected: replica.into(),
            got: theirs.replica,
        });
    }
    if theirs.node != peer {
        return Err(HandshakeError::WrongNode {
            expected: peer,
            got: theirs.node,
        });
    }
    let nonces = if initiator {
        (&mine.nonce[..], &theirs.nonce[..])
    } else {
        (&theirs.nonce[..], &mine.nonce[..])
    };
    let offers = if initiator {
        (offer.version, their_offer)
    } else {
        (their_offer, offer.version)
    };
    let (label, bound) = labels(version, offers);
    let proof_label = format!("{label} proof");
    let local_id = local.to_le_bytes();
    let mine = proof_parts(proof_label.as_bytes(), nonces, &local_id, replica, &bound);
    let mut got = [0u8; MAC_LEN];
    let proofs = s
        .write_all(&hmac(key, &mine))
        .and_then(|_| s.flush())
        .and_then(|_| s.read_exact(&mut got));
    if let Err(e) = proofs {
        // After greetings of two versions, a hang-up is the peer's
        // refusal of this node's.
        return Err(if their_offer != offer.version {
            HandshakeError::HungUp {
                theirs: their_offer,
                offered: offer.version,
                newest: offer.speaks.max,
            }
        } else {
            e.into()
        });
    }
    let peer_id = peer.to_le_bytes();
    let parts = proof_parts(proof_label.as_bytes(), nonces, &peer_id, replica, &bound);
    if !mac_ok(key, &parts, &got) {
        return Err(HandshakeError::BadProof);
    }
    let key_of = |dir: &str| {
        let label = format!("{label} {dir}");
        hmac(key, &[label.as_bytes(), nonces.0, nonces.1, &bound])
    };
    let (i2a, a2i) = (key_of("i2a"), key_of("a2i"));
    let (send_key, recv_key) = if initiator { (i2a, a2i) } else { (a2i, i2a) };
    Ok(Session {
        send_key,
        recv_key,
        send_ctr: 0,
        recv_ctr: 0,
        version,
    })
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
