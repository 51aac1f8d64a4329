//! The heartbeat extension records of quorum with a witness (docs/wire.md,
//! "Extension records"): type 3, which nodes a data node sees alive, and
//! type 4, the witness's vote. Like the node state (type 1) they are
//! skipped by receivers that do not know them, and they skip every other
//! type, so each decoder reads the same extension bytes on its own.

use crate::membership::wire::{DropReason, Reader};
use crate::types::NodeId;

/// Record type of "nodes I see alive", sent by data nodes.
pub const RECORD_SEEN: u8 = 3;
/// Record type of the witness's vote, sent by the witness.
pub const RECORD_VOTE: u8 = 4;

/// What a data node announces it sees: the peers it counts alive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    /// Raised by the sender with every heartbeat round, within its
    /// incarnation: copies on several links may arrive out of order, and a
    /// receiver keeps the highest.
    pub seq: u64,
    /// Strictly increasing; the sender itself is not listed.
    pub alive: Vec<NodeId>,
}

/// Numbers the witness's vote decisions within one witness incarnation; a
/// receiver never goes back to a lower one (a delayed copy of a vote the
/// witness has since withdrawn must not bring it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VoteEpoch(pub u64);

/// The witness's vote as it sends it in every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vote {
    pub epoch: VoteEpoch,
    /// The nodes of the partition the vote goes to, strictly increasing;
    /// empty while the vote is withdrawn.
    pub granted: Vec<NodeId>,
}

/// Both records as a heartbeat carries them; a sender has at most one of
/// each (data nodes send `seen`, the witness `vote`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumRecords {
    pub seen: Option<Seen>,
    pub vote: Option<Vote>,
}

impl QuorumRecords {
    pub fn is_empty(&self) -> bool {
        self.seen.is_none() && self.vote.is_none()
    }
}

/// The extension bytes of `records`. Lists are cut at what a u16 counts;
/// the packet limit bounds them long before that.
pub fn encode(records: &QuorumRecords) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(seen) = &records.seen {
        put_record(&mut out, RECORD_SEEN, seen.seq, &seen.alive);
    }
    if let Some(vote) = &records.vote {
        put_record(&mut out, RECORD_VOTE, vote.epoch.0, &vote.granted);
    }
    out
}

fn put_record(out: &mut Vec<u8>, kind: u8, number: u64, ids: &[NodeId]) {
    let ids = &ids[..ids.len().min(usize::from(u16::MAX))];
    let mut v = Vec::with_capacity(10 + 2 * ids.len());
    v.extend_from_slice(&number.to_be_bytes());
    v.extend_from_slice(&(ids.len() as u16).to_be_bytes());
    for id in ids {
        v.extend_from_slice(&id.0.to_be_bytes());
    }
    out.push(kind);
    // A record longer than a u16 cannot be in a packet of 1024 bytes; the
    // length is cut like the list so a misuse fails to decode, not panics.
    out.extend_from_slice(&(v.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(&v);
}

/// The quorum records in extension bytes; other types are skipped. A record
/// of type 3 or 4 that appears twice or does not parse exactly is the
/// sender's error: the packet is malformed.
pub fn decode(ext: &[u8]) -> Result<QuorumRecords, DropReason> {
    let mut r = Reader::new(ext);
    let mut found = QuorumRecords::default();
    while r.remaining() > 0 {
        let kind = r.u8()?;
        let len = usize::from(r.u16()?);
        let body = r.take(len)?;
        match kind {
            RECORD_SEEN => {
                if found.seen.is_some() {
                    return Err(DropReason::Malformed);
                }
                let (seq, alive) = numbered_ids(body)?;
                found.seen = Some(Seen { seq, alive });
            }
            RECORD_VOTE => {
                if found.vote.is_some() {
                    return Err(DropReason::Malformed);
                }
                let (epoch, granted) = numbered_ids(body)?;
                found.vote = Some(Vote {
                    epoch: VoteEpoch(epoch),
                    granted,
                });
            }
            _ => {}
        }
    }
    Ok(found)
}

/// A u64, a u16 count and that many u16 node ids, strictly increasing (one
/// encoding per set, so what decodes re-encodes to the same bytes).
fn numbered_ids(body: &[u8]) -> Result<(u64, Vec<NodeId>), DropReason> {
    let mut r = Reader::new(body);
    let number = r.u64()?;
    let count = usize::from(r.u16()?);
    if r.remaining() != 2 * count {
        return Err(DropReason::Malformed);
    }
    let mut ids: Vec<NodeId> = Vec::with_capacity(count);
    for _ in 0..count {
        let id = NodeId(r.u16()?);
        if ids.last().is_some_and(|last| *last >= id) {
            return Err(DropReason::Malformed);
        }
        ids.push(id);
    }
    Ok((number, ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::node_state::{self, NodeState};
    use crate::testkit::SplitMix64 as Rng;

    fn ids(v: &[u16]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    fn both() -> QuorumRecords {
        QuorumRecords {
            seen: Some(Seen {
                seq: 7,
                alive: ids(&[0, 2]),
            }),
            vote: Some(Vote {
                epoch: VoteEpoch(3),
                granted: ids(&[1]),
            }),
        }
    }

    #[test]
    fn the_records_are_laid_out_as_documented() {
        let r = QuorumRecords {
            seen: Some(Seen {
                seq: 1,
                alive: ids(&[1]),
            }),
            vote: Some(Vote {
                epoch: VoteEpoch(2),
                granted: vec![],
            }),
        };
        assert_eq!(
            encode(&r),
            [
                3, 0, 12, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, // seen: seq 1, [node 1]
                4, 0, 10, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, // vote: epoch 2, withdrawn
            ]
        );
    }

    #[test]
    fn records_round_trip_alone_and_together() {
        for r in [
            QuorumRecords::default(),
            both(),
            QuorumRecords {
                seen: None,
                vote: Some(Vote {
                    epoch: VoteEpoch(u64::MAX),
                    granted: ids(&[0, 1, u16::MAX]),
                }),
            },
            QuorumRecords {
                seen: Some(Seen::default()),
                vote: None,
            },
        ] {
            assert_eq!(decode(&encode(&r)), Ok(r));
        }
    }

    #[test]
    fn random_records_round_trip() {
        let mut rng = Rng(11);
        for _ in 0..500 {
            let set = |rng: &mut Rng| {
                let mut v: Vec<u16> = (0..rng.below(6)).map(|_| rng.below(8) as u16).collect();
                v.sort_unstable();
                v.dedup();
                ids(&v)
            };
            let r = QuorumRecords {
                seen: rng.chance(50).then(|| Seen {
                    seq: rng.below(u64::MAX),
                    alive: set(&mut rng),
                }),
                vote: rng.chance(50).then(|| Vote {
                    epoch: VoteEpoch(rng.below(1000)),
                    granted: set(&mut rng),
                }),
            };
            assert_eq!(decode(&encode(&r)), Ok(r));
        }
    }

    #[test]
    fn they_live_beside_the_node_state_and_unknown_records() {
        let state = NodeState {
            seq: 4,
            standby: true,
            groups: vec![],
            intents: vec![],
        };
        let mut ext = node_state::encode(&state);
        ext.extend_from_slice(&[9, 0, 2, 0xab, 0xcd]);
        ext.extend_from_slice(&encode(&both()));
        assert_eq!(decode(&ext), Ok(both()));
        assert_eq!(node_state::decode(&ext), Ok(Some(state)));
    }

    #[test]
    fn bad_records_are_malformed_or_truncated() {
        let good = encode(&both());
        // Twice the same type.
        let twice = [good.clone(), good.clone()].concat();
        assert_eq!(decode(&twice), Err(DropReason::Malformed));
        let record = |kind: u8, body: &[u8]| {
            let mut v = vec![kind];
            v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            v.extend_from_slice(body);
            v
        };
        let body = |count: u16, list: &[u16]| {
            let mut v = 5u64.to_be_bytes().to_vec();
            v.extend_from_slice(&count.to_be_bytes());
            for id in list {
                v.extend_from_slice(&id.to_be_bytes());
            }
            v
        };
        for kind in [RECORD_SEEN, RECORD_VOTE] {
            // Count and list disagree, either way.
            assert_eq!(
                decode(&record(kind, &body(2, &[1]))),
                Err(DropReason::Malformed)
            );
            assert_eq!(
                decode(&record(kind, &body(0, &[1]))),
                Err(DropReason::Malformed)
            );
            // Not strictly increasing: a duplicate, or out of order.
            assert_eq!(
                decode(&record(kind, &body(2, &[1, 1]))),
                Err(DropReason::Malformed)
            );
            assert_eq!(
                decode(&record(kind, &body(2, &[2, 1]))),
                Err(DropReason::Malformed)
            );
            // Shorter than its fixed part.
            assert_eq!(
                decode(&record(kind, &[0, 0, 0])),
                Err(DropReason::Truncated)
            );
        }
        // A record longer than the extension.
        assert_eq!(decode(&good[..good.len() - 1]), Err(DropReason::Truncated));
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panicking() {
        let mut rng = Rng(5);
        let good = encode(&both());
        for _ in 0..5000 {
            let mut bytes = good.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = rng.below(256) as u8;
            }
            bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
            if let Ok(r) = decode(&bytes) {
                assert_eq!(decode(&encode(&r)), Ok(r));
            }
        }
    }

    /// Writes the fuzz seed corpus when DUET_WRITE_CORPUS is set; otherwise
    /// checks that the committed seeds still decode to what they were.
    #[test]
    fn write_fuzz_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/quorum_records_decode");
        let seeds = [
            ("valid-both", encode(&both())),
            (
                "valid-withdrawn",
                encode(&QuorumRecords {
                    seen: None,
                    vote: Some(Vote {
                        epoch: VoteEpoch(9),
                        granted: vec![],
                    }),
                }),
            ),
        ];
        for (name, bytes) in seeds {
            let path = dir.join(name);
            if std::env::var_os("DUET_WRITE_CORPUS").is_some() {
                std::fs::create_dir_all(&dir).expect("corpus dir");
                std::fs::write(&path, &bytes).expect("write seed");
            }
            let seed = std::fs::read(&path).expect("seed file (DUET_WRITE_CORPUS=1 writes it)");
            assert_eq!(decode(&seed), decode(&bytes), "{}", path.display());
            assert!(decode(&seed).is_ok_and(|r| !r.is_empty()));
        }
    }
}
