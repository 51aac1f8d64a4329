//! The heartbeat extension record of echoes (docs/wire.md, type 8,
//! protocol version 2): in each heartbeat a node sends on a link, the
//! newest heartbeat it took from each peer on that link (the peer's own
//! link index and sequence number) and how long it held it. The peer knows
//! when it sent that sequence number, so its round trip is now, less the
//! send time, less the hold; no clock is shared.

use std::time::Duration;

use crate::membership::wire::{DropReason, Reader, records};
use crate::types::{LinkId, NodeId, Seq};

pub const RECORD_ECHO: u8 = 8;
/// node (u16), link (u8), seq (u64), held in microseconds (u32).
const ENTRY: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// Whose heartbeat is echoed.
    pub node: NodeId,
    /// The link index that node sent it on.
    pub link: LinkId,
    pub seq: Seq,
    /// From its arrival to this heartbeat, cut to u32 microseconds.
    pub held: Duration,
}

/// Nothing when there is nothing to echo.
pub fn encode(echoes: &[Echo]) -> Vec<u8> {
    if echoes.is_empty() {
        return Vec::new();
    }
    let mut out = vec![RECORD_ECHO];
    out.extend_from_slice(&((echoes.len() * ENTRY) as u16).to_be_bytes());
    for e in echoes {
        let held = u32::try_from(e.held.as_micros()).unwrap_or(u32::MAX);
        out.extend_from_slice(&e.node.0.to_be_bytes());
        out.push(e.link.0);
        out.extend_from_slice(&e.seq.0.to_be_bytes());
        out.extend_from_slice(&held.to_be_bytes());
    }
    out
}

/// The echoes in extension bytes; a record whose length is not a whole
/// number of entries, or two records, are malformed.
pub fn decode(ext: &[u8]) -> Result<Vec<Echo>, DropReason> {
    let mut found: Option<Vec<Echo>> = None;
    for record in records(ext) {
        let (kind, body) = record?;
        if kind != RECORD_ECHO {
            continue;
        }
        if body.len() % ENTRY != 0 || found.is_some() {
            return Err(DropReason::Malformed);
        }
        let mut r = Reader::new(body);
        let mut echoes = Vec::with_capacity(body.len() / ENTRY);
        while r.remaining() > 0 {
            let node = NodeId(r.u16()?);
            let link = LinkId(r.u8()?);
            let seq = Seq(r.u64()?);
            let held = Duration::from_micros(u64::from(r.u32()?));
            echoes.push(Echo {
                node,
                link,
                seq,
                held,
            });
        }
        found = Some(echoes);
    }
    Ok(found.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(node: u16, seq: u64, held_us: u64) -> Echo {
        Echo {
            node: NodeId(node),
            link: LinkId(1),
            seq: Seq(seq),
            held: Duration::from_micros(held_us),
        }
    }

    #[test]
    fn round_trip_beside_other_records() {
        let echoes = vec![echo(0, 7, 1500), echo(2, u64::MAX, 0)];
        let mut ext = vec![9, 0, 1, 0xaa];
        ext.extend_from_slice(&encode(&echoes));
        assert_eq!(decode(&ext), Ok(echoes));
        assert!(encode(&[]).is_empty());
        assert_eq!(decode(&[]), Ok(vec![]));
    }

    #[test]
    fn the_documented_example() {
        let e = Echo {
            link: LinkId(0),
            ..echo(1, 7, 150_000)
        };
        let bytes = [
            8, 0, 0x0f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2, 0x49, 0xf0,
        ];
        assert_eq!(encode(&[e]), bytes);
    }

    #[test]
    fn a_long_hold_is_cut_and_bad_lengths_or_doubles_are_malformed() {
        let long = Echo {
            held: Duration::from_secs(1 << 20),
            ..echo(1, 1, 0)
        };
        let got = decode(&encode(&[long])).expect("decodes");
        assert_eq!(got[0].held, Duration::from_micros(u64::from(u32::MAX)));
        let mut bad = encode(&[echo(1, 1, 1)]);
        bad[2] -= 1;
        bad.pop();
        assert_eq!(decode(&bad), Err(DropReason::Malformed));
        let mut two = encode(&[echo(1, 1, 1)]);
        two.extend_from_slice(&encode(&[echo(1, 2, 1)]));
        assert_eq!(decode(&two), Err(DropReason::Malformed));
    }
}
