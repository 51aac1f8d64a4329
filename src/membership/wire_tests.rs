use super::*;
use crate::membership::auth::AuthAlgorithm;
use crate::membership::echo_records::Echo;
use crate::membership::fence_records::{FenceKind, FenceNote, FenceRecord};
use crate::membership::node_state::{GroupIntent, GroupState, NodeState};
use crate::membership::protocol::ProtocolRange;
use crate::membership::quorum_records::{QuorumRecords, Seen, Vote, VoteEpoch};
use crate::resources::intent::Intent;
use crate::resources::placement::Phase;
use crate::testkit::SplitMix64 as Rng;
use crate::types::NodeId;
use std::time::Duration;

fn codec(alg: AuthAlgorithm) -> Codec {
    Codec::new("lab".into(), Auth::new(alg, b"k3y".to_vec()).expect("key"))
}

fn hb() -> Heartbeat {
    Heartbeat {
        node: "node2".into(),
        incarnation: Incarnation(0x0102_0304_0506_0708),
        link: LinkId(1),
        seq: Seq(42),
        ping_reachable: 3,
        state: None,
        quorum: QuorumRecords::default(),
        fences: None,
        config: None,
        protocol: None,
        echoes: Vec::new(),
    }
}

/// Re-signs a hand-edited packet so that only the edit is tested.
fn resign(c: &Codec, body: &[u8]) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&c.auth.sign(body));
    p
}

fn body_of(c: &Codec, hb: &Heartbeat) -> Vec<u8> {
    let p = c.encode(hb);
    p[..p.len() - c.auth.tag_len()].to_vec()
}

/// A body whose extension length says `ext_len` and which carries `extra`
/// extension bytes (they need not agree: that is what some tests check).
fn with_extension(c: &Codec, ext_len: u16, extra: &[u8]) -> Vec<u8> {
    let mut body = body_of(c, &hb());
    let n = body.len();
    body[n - 2..].copy_from_slice(&ext_len.to_be_bytes());
    body.extend_from_slice(extra);
    body
}

/// A valid name of 1..=64 bytes, with multi-byte characters in it so that
/// lengths are counted in bytes, not characters.
/// None, or a node state with up to 4 groups.
fn random_state(rng: &mut Rng) -> Option<NodeState> {
    if rng.below(3) == 0 {
        return None;
    }
    let phases = [Phase::Idle, Phase::Claiming, Phase::Active, Phase::Stopping];
    let groups = (0..rng.below(5))
        .map(|_| GroupState {
            name: random_name(rng).chars().take(12).collect(),
            phase: phases[rng.below(4) as usize],
            eligible: rng.below(2) == 0,
            running: rng.below(2) == 0,
            behind: rng.below(2) == 0,
        })
        .collect();
    let intents = (0..rng.below(3))
        .map(|_| GroupIntent {
            name: random_name(rng).chars().take(12).collect(),
            intent: Intent {
                version: rng.next_u64(),
                origin: NodeId(rng.below(8) as u16),
                stopped: rng.below(2) == 0,
                moved_to: (rng.below(2) == 0).then(|| NodeId(rng.below(8) as u16)),
            },
        })
        .collect();
    Some(NodeState {
        seq: rng.next_u64(),
        standby: rng.below(2) == 0,
        groups,
        intents,
    })
}

fn random_name(rng: &mut Rng) -> String {
    const CHARS: [char; 6] = ['a', 'z', '-', 'é', '€', '🦀'];
    let target = 1 + rng.below(MAX_NAME as u64) as usize;
    let mut s = String::new();
    loop {
        let c = CHARS[rng.below(CHARS.len() as u64) as usize];
        if s.len() + c.len_utf8() > target {
            break;
        }
        s.push(c);
    }
    if s.is_empty() {
        s.push('n');
    }
    s
}

#[test]
fn round_trip_for_every_algorithm_and_many_values() {
    let mut rng = Rng(1);
    for alg in AuthAlgorithm::ALL {
        for _ in 0..20 {
            let cluster = random_name(&mut rng);
            let c = Codec::new(
                cluster.clone(),
                Auth::new(alg, b"k3y".to_vec()).expect("key"),
            );
            for _ in 0..200 {
                let h = Heartbeat {
                    node: random_name(&mut rng),
                    incarnation: Incarnation(rng.next_u64()),
                    link: LinkId(rng.next_u64() as u8),
                    seq: Seq(rng.next_u64()),
                    ping_reachable: rng.next_u64() as u16,
                    state: random_state(&mut rng),
                    quorum: random_quorum(&mut rng),
                    fences: random_fences(&mut rng),
                    config: rng
                        .next_u64()
                        .checked_rem(3)
                        .filter(|r| *r == 0)
                        .map(|_| rng.next_u64()),
                    protocol: rng.chance(50).then(|| Announcement {
                        range: ProtocolRange {
                            min: 1 + rng.below(3) as u16,
                            max: 4 + rng.below(3) as u16,
                        },
                        software: random_name(&mut rng)
                            .chars()
                            .scan(0, |len, c| {
                                *len += c.len_utf8();
                                (*len <= crate::membership::protocol::MAX_SOFTWARE).then_some(c)
                            })
                            .collect(),
                    }),
                    echoes: (0..rng.below(4))
                        .map(|_| Echo {
                            node: NodeId(rng.below(8) as u16),
                            link: LinkId(rng.below(4) as u8),
                            seq: Seq(rng.next_u64()),
                            held: Duration::from_micros(rng.next_u64() % u64::from(u32::MAX)),
                        })
                        .collect(),
                };
                let p = c.encode(&h);
                assert!(p.len() <= MAX_PACKET);
                assert_eq!(p[6], alg.wire_id());
                assert_eq!(c.decode(&p), Ok(h), "{alg:?} cluster {cluster:?}");
            }
        }
    }
}

#[test]
fn layout_is_as_documented() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let p = c.encode(&hb());
    assert_eq!(&p[..8], b"DUET\x01\x01\x01\x00");
    assert_eq!(&p[8..12], b"\x03lab");
    assert_eq!(&p[12..18], b"\x05node2");
    assert_eq!(&p[18..26], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(p[26], 1);
    assert_eq!(&p[27..35], &42u64.to_be_bytes());
    assert_eq!(&p[35..39], &[0, 3, 0, 0]);
    assert_eq!(&p[39..], &c.auth.sign(&p[..39])[..]);
    assert_eq!(p.len(), 39 + 32);
}

/// The hex dump in docs/wire.md is this encoder's output, byte for byte.
#[test]
fn documented_example_is_what_the_encoder_writes() {
    let documented = crate::testkit::hexdump_block(include_str!("../../docs/wire.md"));
    assert_eq!(documented, codec(AuthAlgorithm::HmacSha256).encode(&hb()));
}

#[test]
fn each_drop_reason_of_the_codec() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let good = c.encode(&hb());

    assert_eq!(
        c.decode(&vec![0; MAX_PACKET + 1]),
        Err(DropReason::Oversized)
    );
    assert_eq!(c.decode(b""), Err(DropReason::Truncated));
    assert_eq!(c.decode(&good[..40]), Err(DropReason::Truncated));

    let mut m = good.clone();
    m[..4].copy_from_slice(b"DUEX");
    assert_eq!(c.decode(&m), Err(DropReason::BadMagic));

    let mut v = good.clone();
    v[4] = 2;
    assert_eq!(c.decode(&v), Err(DropReason::UnsupportedVersion));

    // Reserved types are refused even when correctly signed.
    for ty in [0, 2, 255] {
        let mut body = body_of(&c, &hb());
        body[5] = ty;
        assert_eq!(c.decode(&resign(&c, &body)), Err(DropReason::Malformed));
    }

    assert_eq!(
        codec(AuthAlgorithm::HmacSha1).decode(&good),
        Err(DropReason::WrongAlgorithm)
    );
    let other = Codec::new(
        "prod".into(),
        Auth::new(AuthAlgorithm::HmacSha256, b"k3y".to_vec()).expect("key"),
    );
    assert_eq!(other.decode(&good), Err(DropReason::WrongCluster));

    let wrong_key = Codec::new(
        "lab".into(),
        Auth::new(AuthAlgorithm::HmacSha256, b"nope".to_vec()).expect("key"),
    );
    assert_eq!(wrong_key.decode(&good), Err(DropReason::BadSignature));

    // Name lengths outside 1..=64, correctly signed.
    for (at, len) in [(8, 0), (8, 65), (12, 0), (12, 65)] {
        let mut body = body_of(&c, &hb());
        body[at] = len;
        assert_eq!(
            c.decode(&resign(&c, &body)),
            Err(DropReason::Malformed),
            "length {len} at {at}"
        );
    }

    // Invalid UTF-8 in the node name, correctly signed.
    let mut body = body_of(&c, &hb());
    body[13] = 0xff;
    assert_eq!(c.decode(&resign(&c, &body)), Err(DropReason::Malformed));

    // Bytes after the extension that its length does not account for.
    let body = with_extension(&c, 0, b"x");
    assert_eq!(c.decode(&resign(&c, &body)), Err(DropReason::Malformed));
    // An extension length running into the tag.
    let body = with_extension(&c, 40, b"x");
    assert_eq!(c.decode(&resign(&c, &body)), Err(DropReason::Truncated));
}

/// The documented precedence: each check wins over the ones after it.
#[test]
fn drop_reasons_come_in_the_documented_order() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let good = c.encode(&hb());

    // A neighbouring cluster with its own key is named as such, not as a
    // wrong key.
    let neighbour = Codec::new(
        "prod".into(),
        Auth::new(AuthAlgorithm::HmacSha256, b"theirs".to_vec()).expect("key"),
    );
    assert_eq!(neighbour.decode(&good), Err(DropReason::WrongCluster));
    // Another algorithm is reported before another cluster.
    let other = Codec::new(
        "prod".into(),
        Auth::new(AuthAlgorithm::HmacMd5, b"theirs".to_vec()).expect("key"),
    );
    assert_eq!(other.decode(&good), Err(DropReason::WrongAlgorithm));
    // A downgrade to crc is refused by the algorithm byte, even though crc
    // needs no key an attacker lacks.
    let forged = Codec::new(
        "lab".into(),
        Auth::new(AuthAlgorithm::Crc, b"guess".to_vec()).expect("key"),
    )
    .encode(&hb());
    assert_eq!(c.decode(&forged), Err(DropReason::WrongAlgorithm));
    // Bad UTF-8 without a valid tag is a bad signature: content is looked
    // at only once it is authentic.
    let mut p = good.clone();
    p[13] = 0xff;
    assert_eq!(c.decode(&p), Err(DropReason::BadSignature));
    // The version is looked at before the type.
    let mut p = good.clone();
    p[4] = 9;
    p[5] = 9;
    assert_eq!(c.decode(&p), Err(DropReason::UnsupportedVersion));
}

#[test]
fn unknown_flags_are_ignored_but_signed() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let mut body = body_of(&c, &hb());
    body[7] = 0xff;
    assert_eq!(c.decode(&resign(&c, &body)), Ok(hb()));
    let mut unsigned = c.encode(&hb());
    unsigned[7] = 0xff;
    assert_eq!(c.decode(&unsigned), Err(DropReason::BadSignature));
}

#[test]
fn extension_records_of_unknown_types_are_skipped() {
    for alg in AuthAlgorithm::ALL {
        let c = codec(alg);
        let body = with_extension(&c, 6, b"\xc8\x00\x03new");
        assert_eq!(c.decode(&resign(&c, &body)), Ok(hb()), "{alg:?}");
    }
}

#[test]
fn a_bad_extension_record_is_malformed() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let state = |groups: &[u8]| {
        let mut v = vec![1, 0, 0];
        v.extend_from_slice(&7u64.to_be_bytes());
        v.push(0);
        v.extend_from_slice(groups);
        let n = (v.len() - 3) as u16;
        v[1..3].copy_from_slice(&n.to_be_bytes());
        v
    };
    let good = state(&[1, 3, b'w', b'e', b'b', 2, 1]);
    let body = with_extension(&c, good.len() as u16, &good);
    let hb = c.decode(&resign(&c, &body)).expect("a valid record");
    assert_eq!(
        hb.state.map(|s| s.groups),
        Some(vec![GroupState {
            name: "web".into(),
            phase: Phase::Active,
            eligible: true,
            running: false,
            behind: false,
        }])
    );
    // A wish for web: version 9 from node 1, stopped and moved to node 0.
    let intents = |flags: u8| {
        let mut v = vec![2, 0, 0, 1, 3, b'w', b'e', b'b'];
        v.extend_from_slice(&9u64.to_be_bytes());
        v.extend_from_slice(&[0, 1, flags, 0, 0]);
        let n = (v.len() - 3) as u16;
        v[1..3].copy_from_slice(&n.to_be_bytes());
        v
    };
    let ext = [good.clone(), intents(3)].concat();
    let body = with_extension(&c, ext.len() as u16, &ext);
    let hb = c.decode(&resign(&c, &body)).expect("a valid record");
    let wish = Intent {
        version: 9,
        origin: NodeId(1),
        stopped: true,
        moved_to: Some(NodeId(0)),
    };
    assert_eq!(
        hb.state.map(|s| s.intents),
        Some(vec![GroupIntent {
            name: "web".into(),
            intent: wish
        }])
    );
    let cases: [(&str, Vec<u8>); 8] = [
        ("a record running past the extension", vec![200, 0, 9, 1]),
        (
            "a phase no one knows",
            state(&[1, 3, b'w', b'e', b'b', 4, 1]),
        ),
        ("a group name that is not UTF-8", state(&[1, 1, 0xff, 2, 1])),
        ("an empty group name", state(&[1, 0, 2, 1])),
        (
            "fewer groups than counted",
            state(&[2, 3, b'w', b'e', b'b', 2, 1]),
        ),
        (
            "two node-state records",
            [good.clone(), good.clone()].concat(),
        ),
        (
            "a wish with flags no one knows",
            [good.clone(), intents(4)].concat(),
        ),
        (
            "two wish records",
            [good.clone(), intents(1), intents(1)].concat(),
        ),
    ];
    for (what, ext) in cases {
        let body = with_extension(&c, ext.len() as u16, &ext);
        assert_eq!(
            c.decode(&resign(&c, &body)),
            Err(DropReason::Malformed),
            "{what}"
        );
    }
}

#[test]
fn the_minimum_size_is_the_shortest_packet_of_any_algorithm() {
    let shortest = AuthAlgorithm::ALL.iter().map(|a| a.tag_len()).min();
    assert_eq!(shortest, Some(MIN_TAG));
    let one = Heartbeat {
        node: "n".into(),
        ..hb()
    };
    let c = Codec::new(
        "c".into(),
        Auth::new(AuthAlgorithm::Crc, b"k".to_vec()).expect("key"),
    );
    let p = c.encode(&one);
    assert_eq!(p.len(), MIN_BODY + MIN_TAG);
    assert_eq!(c.decode(&p), Ok(one));
}

#[test]
fn the_size_limit_is_exactly_max_packet() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let base = body_of(&c, &hb()).len() + c.auth.tag_len();
    let fill = MAX_PACKET - base;
    let mut record = vec![99; fill];
    record[1..3].copy_from_slice(&(fill as u16 - 3).to_be_bytes());
    let body = with_extension(&c, fill as u16, &record);
    let p = resign(&c, &body);
    assert_eq!(p.len(), MAX_PACKET);
    assert_eq!(c.decode(&p), Ok(hb()));
    let body = with_extension(&c, fill as u16 + 1, &vec![7; fill + 1]);
    assert_eq!(c.decode(&resign(&c, &body)), Err(DropReason::Oversized));
}

#[test]
fn any_single_bit_flip_is_refused() {
    // CRC-32C detects every single-bit error too, so this holds for all.
    for alg in AuthAlgorithm::ALL {
        let c = codec(alg);
        let good = c.encode(&hb());
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut p = good.clone();
                p[i] ^= 1 << bit;
                assert!(
                    c.decode(&p).is_err(),
                    "{alg:?}: flip of bit {bit} in byte {i} accepted"
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    for alg in AuthAlgorithm::ALL {
        let c = codec(alg);
        let good = c.encode(&hb());
        for len in 0..good.len() {
            assert_eq!(
                c.decode(&good[..len]),
                Err(DropReason::Truncated),
                "{alg:?} at length {len}"
            );
        }
    }
}

#[test]
fn random_bytes_and_mutations_never_panic() {
    let mut rng = Rng(99);
    for alg in AuthAlgorithm::ALL {
        let c = codec(alg);
        let good = c.encode(&hb());
        for _ in 0..100_000 {
            let len = rng.below(1100) as usize;
            let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            assert!(c.decode(&junk).is_err());

            // Behind a valid header, so the body parser and the tag check
            // see random input too, not just the magic check.
            let mut deep = good[..12].to_vec();
            deep.extend_from_slice(&junk[..junk.len().min(200)]);
            let _ = c.decode(&deep);

            let mut m = good.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len() as u64) as usize;
                m[i] = rng.next_u64() as u8;
            }
            if rng.chance(20) {
                m.truncate(rng.below(m.len() as u64 + 1) as usize);
            }
            // A few changed bytes may in principle fool a CRC; never an HMAC.
            if m != good && alg != AuthAlgorithm::Crc {
                assert!(c.decode(&m).is_err(), "{alg:?}: mutation accepted");
            }
            let _ = c.decode(&m);
        }
    }
}

/// Writes the fuzz seed corpus when DUET_WRITE_CORPUS is set; otherwise
/// checks the committed seeds still decode (the format did not drift).
/// Three seeds per algorithm: plain, with extension bytes, and with the
/// longest names, so the fuzzer starts from every branch of the body.
#[test]
fn write_fuzz_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/heartbeat_decode");
    for alg in AuthAlgorithm::ALL {
        let c = Codec::new(
            "fuzz".into(),
            Auth::new(alg, b"fuzz key".to_vec()).expect("key"),
        );
        let long = Heartbeat {
            node: "é".repeat(MAX_NAME / 2),
            incarnation: Incarnation(u64::MAX),
            link: LinkId(255),
            seq: Seq(u64::MAX),
            ping_reachable: u16::MAX,
            state: Some(NodeState {
                seq: u64::MAX,
                standby: true,
                groups: vec![GroupState {
                    name: "web".into(),
                    phase: Phase::Active,
                    eligible: false,
                    running: false,
                    behind: true,
                }],
                intents: Vec::new(),
            }),
            quorum: QuorumRecords::default(),
            fences: None,
            config: None,
            protocol: Some(Announcement::of_build()),
            echoes: vec![Echo {
                node: NodeId(1),
                link: LinkId(0),
                seq: Seq(7),
                held: Duration::from_millis(150),
            }],
        };
        let seeds = [
            ("", c.encode(&hb()), hb()),
            (
                "-ext",
                resign(&c, &with_extension(&c, 8, b"\x09\x00\x05later")),
                hb(),
            ),
            ("-long", c.encode(&long), long.clone()),
        ];
        for (suffix, packet, want) in seeds {
            let path = dir.join(format!("valid-{}{suffix}", alg.wire_id()));
            if std::env::var_os("DUET_WRITE_CORPUS").is_some() {
                std::fs::write(&path, &packet).expect("write seed");
            }
            let seed = std::fs::read(&path).expect("seed file (DUET_WRITE_CORPUS=1 writes it)");
            assert_eq!(c.decode(&seed), Ok(want), "{}", path.display());
        }
    }
}

/// `count` groups with the longest names, active and running.
fn longest_groups(count: usize) -> (Vec<String>, Vec<GroupState>) {
    let names: Vec<String> = (0..count)
        .map(|i| format!("{i:02}{}", "g".repeat(MAX_NAME - 2)))
        .collect();
    let groups = names
        .iter()
        .map(|n| GroupState {
            name: n.clone(),
            phase: Phase::Active,
            eligible: true,
            running: true,
            behind: false,
        })
        .collect();
    (names, groups)
}

/// The size config validation computes is the size sent: groups with a
/// state and a wish each, at the longest names.
#[test]
fn the_worst_case_size_is_what_is_sent_and_decodes() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let name = |c: char| c.to_string().repeat(MAX_NAME);
    for count in [1, 5, 6] {
        let (names, groups) = longest_groups(count);
        let wish = Intent::default().next(NodeId(1), true, Some(NodeId(0)));
        let intents = names
            .iter()
            .map(|n| GroupIntent {
                name: n.clone(),
                intent: wish,
            })
            .collect();
        let h = Heartbeat {
            node: name('n'),
            state: Some(NodeState {
                seq: 1,
                standby: false,
                groups,
                intents,
            }),
            ..hb()
        };
        let c = Codec::new(name('c'), c.auth.clone());
        let p = c.encode(&h);
        let refs: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        let ext = crate::membership::node_state::worst_case_len(&refs);
        assert_eq!(p.len(), heartbeat_len(MAX_NAME, MAX_NAME, ext, 32));
        assert_eq!(
            p.len() <= MAX_PACKET,
            count <= 5,
            "five such groups fit, six do not"
        );
        if count <= 5 {
            assert_eq!(c.decode(&p), Ok(h));
        }
    }
}

/// The fuzz target's invariant over its committed seeds, in every test
/// run: no panic, and what decodes survives a round trip.
#[test]
fn the_node_state_seed_corpus_decodes_and_round_trips() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/node_state_decode");
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus folder") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("seed");
        if let Ok(Some(state)) = crate::membership::node_state::decode(&bytes) {
            let again = crate::membership::node_state::encode(&state);
            assert_eq!(
                crate::membership::node_state::decode(&again),
                Ok(Some(state))
            );
            accepted += 1;
        }
    }
    assert!(accepted > 0, "no seed holds a node state");
}

fn random_quorum(rng: &mut Rng) -> QuorumRecords {
    let set = |rng: &mut Rng| {
        let mut ids: Vec<u16> = (0..rng.below(5)).map(|_| rng.below(6) as u16).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(NodeId).collect::<Vec<_>>()
    };
    QuorumRecords {
        seen: rng.chance(40).then(|| Seen {
            seq: rng.next_u64(),
            alive: set(rng),
        }),
        vote: rng.chance(40).then(|| Vote {
            epoch: VoteEpoch(rng.next_u64()),
            granted: set(rng),
        }),
    }
}

fn random_fences(rng: &mut Rng) -> Option<FenceRecord> {
    let kinds = [FenceKind::Request, FenceKind::Outdated, FenceKind::Refused];
    rng.chance(40).then(|| {
        let mut notes: Vec<FenceNote> = (0..rng.below(4))
            .map(|_| FenceNote {
                replica: format!("r{}", rng.below(3)),
                kind: kinds[rng.below(3) as usize],
                generation: rng.next_u64(),
            })
            .collect();
        notes.sort_by(|a, b| (&a.replica, a.kind).cmp(&(&b.replica, b.kind)));
        notes.dedup_by(|a, b| (&a.replica, a.kind) == (&b.replica, b.kind));
        FenceRecord {
            seq: rng.next_u64(),
            notes,
        }
    })
}

/// Record 5 rides beside the others, and the worst case config
/// validation counts for replicas is what a node sends.
#[test]
fn the_fencing_record_rides_beside_the_others_within_its_worst_case() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let names = ["r0", "r1"];
    let notes = names
        .iter()
        .flat_map(|r| {
            [FenceKind::Request, FenceKind::Refused].map(|kind| FenceNote {
                replica: r.to_string(),
                kind,
                generation: u64::MAX,
            })
        })
        .collect();
    let plain = c.encode(&hb());
    let h = Heartbeat {
        fences: Some(FenceRecord {
            seq: u64::MAX,
            notes,
        }),
        ..hb()
    };
    let p = c.encode(&h);
    assert_eq!(
        p.len() - plain.len(),
        crate::membership::fence_records::worst_case_len(&names)
    );
    assert_eq!(c.decode(&p), Ok(h));
}

#[test]
fn the_quorum_records_ride_beside_the_node_state() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let h = Heartbeat {
        state: Some(NodeState {
            seq: 3,
            standby: false,
            groups: vec![],
            intents: vec![],
        }),
        quorum: QuorumRecords {
            seen: Some(Seen {
                seq: 9,
                alive: vec![NodeId(0), NodeId(2)],
            }),
            vote: None,
        },
        ..hb()
    };
    assert_eq!(c.decode(&c.encode(&h)), Ok(h));
}

#[test]
fn a_witness_grant_to_every_node_of_a_big_cluster_fits() {
    let all: Vec<NodeId> = (0..64).map(NodeId).collect();
    let h = Heartbeat {
        node: "n".repeat(MAX_NAME),
        quorum: QuorumRecords {
            seen: Some(Seen {
                seq: u64::MAX,
                alive: all.clone(),
            }),
            vote: Some(Vote {
                epoch: VoteEpoch(u64::MAX),
                granted: all,
            }),
        },
        ..hb()
    };
    let c = Codec::new("c".repeat(MAX_NAME), codec(AuthAlgorithm::HmacSha256).auth);
    let p = c.encode(&h);
    assert!(p.len() <= MAX_PACKET, "{} bytes", p.len());
    assert_eq!(c.decode(&p), Ok(h));
}

/// A heartbeat that only fits without its echoes goes out without them,
/// and one that fits with nothing optional goes out without the protocol
/// announcement too: never over the limit.
#[test]
fn echoes_and_the_announcement_give_way_to_what_must_be_said() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let (_, groups) = longest_groups(5);
    let echo = Echo {
        node: NodeId(1),
        link: LinkId(0),
        seq: Seq(1),
        held: Duration::ZERO,
    };
    let full = Heartbeat {
        state: Some(NodeState {
            seq: 1,
            standby: false,
            groups,
            intents: Vec::new(),
        }),
        protocol: Some(Announcement::of_build()),
        echoes: Vec::new(),
        ..hb()
    };
    // As many echoes as overflow what the rest leaves.
    let spare = MAX_PACKET - c.encode(&full).len();
    let full = Heartbeat {
        echoes: vec![echo; spare / 15 + 1],
        ..full
    };
    assert!(c.encode(&full).len() > MAX_PACKET);
    let sent = crate::membership::core::encode_within_limit(&c, full.clone());
    assert!(sent.len() <= MAX_PACKET, "{}", sent.len());
    let got = c.decode(&sent).expect("decodes");
    assert!(got.echoes.is_empty(), "{got:?}");
    assert_eq!(got.protocol, Some(Announcement::of_build()));
    // Small enough: everything goes.
    let small = Heartbeat {
        echoes: vec![echo],
        ..hb()
    };
    let got = c.decode(&crate::membership::core::encode_within_limit(
        &c,
        small.clone(),
    ));
    assert_eq!(got, Ok(small));
}
