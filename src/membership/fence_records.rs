//! The heartbeat extension record of replication-level fencing (docs/wire.md,
//! "Extension records"), type 5: a Primary that lost its replication link
//! asks its peer, through the heartbeats, to outdate its disk, and the
//! peer answers the same way (docs/replication.md, "Fencing the peer").
//! It rides beside the node state (type 1), like the quorum records, in
//! every heartbeat of a node that holds a replica; other decoders skip it
//! and it skips them.

use crate::membership::wire::{DropReason, MAX_NAME, Reader};

/// Record type of the fencing notes.
pub const RECORD_FENCE: u8 = 5;

/// What a note says about one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FenceKind {
    /// The sender, Primary without its peer, asks the receiver to outdate
    /// its disk of this replica.
    Request,
    /// The sender's disk is Outdated (or otherwise unpromotable), on disk.
    Outdated,
    /// The sender will not be outdated: it is Primary, or wrote alone.
    Refused,
}

impl FenceKind {
    fn wire(self) -> u8 {
        match self {
            FenceKind::Request => 1,
            FenceKind::Outdated => 2,
            FenceKind::Refused => 3,
        }
    }

    fn from_wire(b: u8) -> Result<FenceKind, DropReason> {
        match b {
            1 => Ok(FenceKind::Request),
            2 => Ok(FenceKind::Outdated),
            3 => Ok(FenceKind::Refused),
            _ => Err(DropReason::Malformed),
        }
    }
}

/// One note: a request or an answer, about one replica, for one request
/// (the generation the Primary writes under without its peer).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FenceNote {
    pub replica: String,
    pub kind: FenceKind,
    pub generation: u64,
}

/// What a node announces: all its notes at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FenceRecord {
    /// Raised by the sender at each change, within its incarnation: copies
    /// on several links may arrive out of order, and a receiver keeps the
    /// highest (an older copy must not bring back a request withdrawn).
    pub seq: u64,
    /// At most one of each kind per replica, ordered by replica name (its
    /// bytes) and kind: one encoding per set.
    pub notes: Vec<FenceNote>,
}

/// The record's bytes, header included. Notes are put in their order and
/// duplicates dropped, so that any list encodes to what decodes; names
/// longer than a heartbeat allows are cut (config validation keeps them
/// short).
pub fn encode(record: &FenceRecord) -> Vec<u8> {
    let mut notes: Vec<(&[u8], FenceKind, u64)> = record
        .notes
        .iter()
        .map(|n| {
            let name = n.replica.as_bytes();
            (&name[..name.len().min(MAX_NAME)], n.kind, n.generation)
        })
        .filter(|(name, ..)| !name.is_empty())
        .collect();
    notes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    notes.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    notes.truncate(usize::from(u8::MAX));
    let mut v = Vec::new();
    v.extend_from_slice(&record.seq.to_be_bytes());
    v.push(notes.len() as u8);
    for (name, kind, generation) in notes {
        v.push(name.len() as u8);
        v.extend_from_slice(name);
        v.push(kind.wire());
        v.extend_from_slice(&generation.to_be_bytes());
    }
    let mut out = Vec::with_capacity(3 + v.len());
    out.push(RECORD_FENCE);
    // A packet of 1024 bytes never holds more; cut like the list, so a
    // misuse fails to decode rather than panics.
    out.extend_from_slice(&(v.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(&v);
    out
}

/// The most bytes a node announces for replicas of these names: a request
/// and an answer for each (both Primary apart, each asks the other and
/// refuses the other's request).
pub fn worst_case_len(replicas: &[&str]) -> usize {
    let notes: usize = replicas.iter().map(|n| 2 * (1 + n.len() + 1 + 8)).sum();
    3 + 8 + 1 + notes
}

/// The fencing record in extension bytes, if there is one; other types are
/// skipped. Twice, an unknown kind, notes out of order or repeated, a
/// count that does not match: the sender's error, a malformed packet.
pub fn decode(ext: &[u8]) -> Result<Option<FenceRecord>, DropReason> {
    let mut r = Reader::new(ext);
    let mut found = None;
    while r.remaining() > 0 {
        let kind = r.u8()?;
        let len = usize::from(r.u16()?);
        let body = r.take(len)?;
        if kind == RECORD_FENCE && found.replace(record(body)?).is_some() {
            return Err(DropReason::Malformed);
        }
    }
    Ok(found)
}

fn record(body: &[u8]) -> Result<FenceRecord, DropReason> {
    let mut r = Reader::new(body);
    let seq = r.u64()?;
    let count = r.u8()?;
    let mut notes: Vec<FenceNote> = Vec::with_capacity(usize::from(count));
    let mut last: Option<(&[u8], FenceKind)> = None;
    for _ in 0..count {
        let name = r.name()?;
        let kind = FenceKind::from_wire(r.u8()?)?;
        let generation = r.u64()?;
        if last.is_some_and(|l| l >= (name, kind)) {
            return Err(DropReason::Malformed);
        }
        last = Some((name, kind));
        let replica = std::str::from_utf8(name).map_err(|_| DropReason::Malformed)?;
        notes.push(FenceNote {
            replica: replica.to_string(),
            kind,
            generation,
        });
    }
    if r.remaining() != 0 {
        return Err(DropReason::Malformed);
    }
    Ok(FenceRecord { seq, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::node_state::{self, NodeState};
    use crate::membership::quorum_records::{self, QuorumRecords, Seen};
    use crate::testkit::SplitMix64 as Rng;

    #[test]
    fn the_example_of_docs_wire_md_is_what_encodes() {
        let r = FenceRecord {
            seq: 1,
            notes: vec![note("r0", FenceKind::Request, 16)],
        };
        let hex: Vec<String> = encode(&r).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "05 00 15 00 00 00 00 00 00 00 01 01 02 72 30 01 00 00 00 00 00 00 00 10"
        );
        let doc = include_str!("../../docs/wire.md");
        assert!(
            doc.contains(&hex.join(" ")),
            "docs/wire.md shows another encoding"
        );
    }

    fn note(replica: &str, kind: FenceKind, generation: u64) -> FenceNote {
        FenceNote {
            replica: replica.into(),
            kind,
            generation,
        }
    }

    fn sample() -> FenceRecord {
        FenceRecord {
            seq: 3,
            notes: vec![
                note("r0", FenceKind::Request, 0x0102_0304_0506_0708),
                note("r1", FenceKind::Outdated, 9),
                note("r1", FenceKind::Refused, 10),
            ],
        }
    }

    #[test]
    fn the_record_is_laid_out_as_documented() {
        let r = FenceRecord {
            seq: 1,
            notes: vec![note("r0", FenceKind::Request, 0x0102_0304_0506_0708)],
        };
        assert_eq!(
            encode(&r),
            [
                5, 0, 21, // type 5, 21 bytes
                0, 0, 0, 0, 0, 0, 0, 1, // seq 1
                1, // one note
                2, b'r', b'0', // replica "r0"
                1,    // outdate request
                1, 2, 3, 4, 5, 6, 7, 8, // generation
            ]
        );
        // Nothing to say is still said: it withdraws what was said before.
        assert_eq!(
            encode(&FenceRecord {
                seq: 2,
                notes: vec![]
            }),
            [5, 0, 9, 0, 0, 0, 0, 0, 0, 0, 2, 0]
        );
    }

    #[test]
    fn records_round_trip() {
        for r in [FenceRecord::default(), sample()] {
            assert_eq!(decode(&encode(&r)), Ok(Some(r)));
        }
        assert_eq!(decode(&[]), Ok(None));
    }

    #[test]
    fn any_list_encodes_to_what_decodes() {
        // Out of order and repeated: put in order, once each.
        let r = FenceRecord {
            seq: 8,
            notes: vec![
                note("r1", FenceKind::Refused, 10),
                note("r0", FenceKind::Request, 1),
                note("r1", FenceKind::Outdated, 9),
                note("r0", FenceKind::Request, 1),
            ],
        };
        let back = decode(&encode(&r)).expect("decodes").expect("a record");
        assert_eq!(
            back.notes,
            [
                note("r0", FenceKind::Request, 1),
                note("r1", FenceKind::Outdated, 9),
                note("r1", FenceKind::Refused, 10),
            ]
        );
    }

    #[test]
    fn random_records_round_trip() {
        let mut rng = Rng(17);
        let names = ["r0", "r1", "data", "a-very-long-replica-name-of-thirty-2"];
        let kinds = [FenceKind::Request, FenceKind::Outdated, FenceKind::Refused];
        for _ in 0..500 {
            let mut notes: Vec<FenceNote> = (0..rng.below(6))
                .map(|_| {
                    let name = names[rng.below(names.len() as u64) as usize];
                    let kind = kinds[rng.below(3) as usize];
                    note(name, kind, rng.below(u64::MAX))
                })
                .collect();
            notes.sort_by(|a, b| (&a.replica, a.kind).cmp(&(&b.replica, b.kind)));
            notes.dedup_by(|a, b| (&a.replica, a.kind) == (&b.replica, b.kind));
            let r = FenceRecord {
                seq: rng.below(u64::MAX),
                notes,
            };
            assert_eq!(decode(&encode(&r)), Ok(Some(r)));
        }
    }

    #[test]
    fn it_lives_beside_the_other_records() {
        let state = NodeState {
            seq: 4,
            standby: false,
            groups: vec![],
            intents: vec![],
        };
        let quorum = QuorumRecords {
            seen: Some(Seen {
                seq: 2,
                alive: vec![],
            }),
            vote: None,
        };
        let mut ext = node_state::encode(&state);
        ext.extend_from_slice(&encode(&sample()));
        ext.extend_from_slice(&[9, 0, 2, 0xab, 0xcd]);
        ext.extend_from_slice(&quorum_records::encode(&quorum));
        assert_eq!(decode(&ext), Ok(Some(sample())));
        assert_eq!(node_state::decode(&ext), Ok(Some(state)));
        assert_eq!(quorum_records::decode(&ext), Ok(quorum));
    }

    #[test]
    fn bad_records_are_malformed_or_truncated() {
        let good = encode(&sample());
        let twice = [good.clone(), good.clone()].concat();
        assert_eq!(decode(&twice), Err(DropReason::Malformed));
        let record = |notes: &[(&[u8], u8, u64)], count: u8| {
            let mut v = 7u64.to_be_bytes().to_vec();
            v.push(count);
            for (name, kind, generation) in notes {
                v.push(name.len() as u8);
                v.extend_from_slice(name);
                v.push(*kind);
                v.extend_from_slice(&generation.to_be_bytes());
            }
            let mut out = vec![RECORD_FENCE];
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(&v);
            out
        };
        let malformed = [
            // An unknown kind, and kind 0.
            record(&[(b"r0", 4, 1)], 1),
            record(&[(b"r0", 0, 1)], 1),
            // The same note twice, and notes out of order.
            record(&[(b"r0", 1, 1), (b"r0", 1, 2)], 2),
            record(&[(b"r1", 1, 1), (b"r0", 1, 1)], 2),
            record(&[(b"r0", 2, 1), (b"r0", 1, 1)], 2),
            // An empty name, a name that is no UTF-8.
            record(&[(b"", 1, 1)], 1),
            record(&[(&[0xff, 0xfe], 1, 1)], 1),
            // Fewer notes than counted... or bytes left over.
            record(&[(b"r0", 1, 1)], 0),
        ];
        for bytes in malformed {
            assert_eq!(decode(&bytes), Err(DropReason::Malformed), "{bytes:?}");
        }
        // More counted than there are, and a record longer than the bytes.
        assert_eq!(
            decode(&record(&[(b"r0", 1, 1)], 2)),
            Err(DropReason::Truncated)
        );
        assert_eq!(decode(&good[..good.len() - 1]), Err(DropReason::Truncated));
        assert_eq!(
            decode(&[RECORD_FENCE, 0, 3, 0, 0, 0]),
            Err(DropReason::Truncated)
        );
    }

    #[test]
    fn the_worst_case_is_what_a_node_can_send() {
        let names = ["r0", "r1", "a-very-long-replica-name-of-thirty-2"];
        let notes = names
            .iter()
            .flat_map(|n| {
                [
                    note(n, FenceKind::Request, u64::MAX),
                    note(n, FenceKind::Refused, u64::MAX),
                ]
            })
            .collect();
        let r = FenceRecord {
            seq: u64::MAX,
            notes,
        };
        assert_eq!(encode(&r).len(), worst_case_len(&names));
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panicking() {
        let mut rng = Rng(23);
        let good = encode(&sample());
        for _ in 0..5000 {
            let mut bytes = good.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = rng.below(256) as u8;
            }
            bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
            if let Ok(Some(r)) = decode(&bytes) {
                assert_eq!(decode(&encode(&r)), Ok(Some(r)));
            }
        }
    }

    /// Writes the fuzz seed corpus when DUET_WRITE_CORPUS is set; otherwise
    /// checks that the committed seeds still decode to what they were.
    #[test]
    fn write_fuzz_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/fence_records_decode");
        let seeds = [
            ("valid-three", encode(&sample())),
            ("valid-empty", encode(&FenceRecord::default())),
        ];
        for (name, bytes) in seeds {
            let path = dir.join(name);
            if std::env::var_os("DUET_WRITE_CORPUS").is_some() {
                std::fs::create_dir_all(&dir).expect("corpus dir");
                std::fs::write(&path, &bytes).expect("write seed");
            }
            let seed = std::fs::read(&path).expect("seed file (DUET_WRITE_CORPUS=1 writes it)");
            assert_eq!(decode(&seed), decode(&bytes), "{}", path.display());
            assert!(decode(&seed).is_ok_and(|r| r.is_some()));
        }
    }
}
