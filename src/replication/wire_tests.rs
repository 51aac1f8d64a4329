use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use super::*;
use crate::testkit::SplitMix64;

fn pair_with(
    keys: (&'static [u8], &'static [u8]),
) -> (
    Result<Session, HandshakeError>,
    Result<Session, HandshakeError>,
) {
    let (mut a, mut b) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || handshake(&mut b, keys.1, "r0", 2, 1, false));
    let i = handshake(&mut a, keys.0, "r0", 1, 2, true);
    // A failed proof on one side leaves the other waiting for bytes that
    // never come; closing ends it.
    drop(a);
    (i, t.join().expect("thread"))
}

fn sessions() -> (Session, Session) {
    match pair_with((b"secret key", b"secret key")) {
        (Ok(i), Ok(a)) => (i, a),
        (i, a) => panic!("handshake: {:?} / {:?}", i.err(), a.err()),
    }
}

/// Sessions of each frame MAC: version 2's BLAKE3 (with a peer not yet
/// upgraded) and this build's.
fn sessions_of_each_mac() -> [(Session, Session); 2] {
    [2, VERSION].map(|v| {
        let (mut i, mut a) = sessions();
        (i.version, a.version) = (v, v);
        (i, a)
    })
}

fn through(
    tx: &mut Session,
    rx: &mut Session,
    msg: &Msg,
    payload: Option<&[u8]>,
) -> Result<Frame, WireError> {
    let f = tx.seal(msg, payload);
    let (h, rest) = f.split_at(HEADER_LEN);
    assert_eq!(rx.body_len(h)?, rest.len());
    rx.open(h, rest)
}

fn all_messages() -> Vec<(Msg, Option<Vec<u8>>)> {
    let gens = Generations {
        current: Generation(1),
        bitmap: Generation(2),
        history: [Generation(3), Generation(u64::MAX)],
    };
    vec![
        (
            Msg::Hello(PeerState {
                generations: gens,
                role: Role::Primary,
                disk: DiskState::Inconsistent,
                size: 1 << 40,
                granularity: 4096,
                dirty_blocks: 7,
                primary_since: 99,
                discard_my_data: true,
                crashed_primary: true,
            }),
            None,
        ),
        (
            Msg::Update {
                role: Role::Secondary,
                disk: DiskState::Diskless,
            },
            None,
        ),
        (
            Msg::Bitmap {
                first_word: 5,
                words: vec![1, u64::MAX, 0],
                last: true,
            },
            None,
        ),
        (
            Msg::Bitmap {
                first_word: 0,
                words: vec![],
                last: false,
            },
            None,
        ),
        (
            Msg::Data {
                seq: 9,
                offset: 4096,
                len: 3,
                fua: true,
            },
            Some(vec![1, 2, 3]),
        ),
        (Msg::Flush { seq: 10 }, None),
        (
            Msg::Ack {
                seq: 11,
                kind: AckKind::Flushed,
                ok: false,
            },
            None,
        ),
        (
            Msg::Ack {
                seq: 12,
                kind: AckKind::Received,
                ok: true,
            },
            None,
        ),
        (
            Msg::ResyncData {
                id: 1,
                offset: 0,
                len: 2,
            },
            Some(vec![9, 9]),
        ),
        (Msg::ResyncAck { id: 1, ok: true }, None),
        (Msg::SyncDone { generations: gens }, None),
        (
            Msg::VerifyRequest {
                id: 3,
                offset: 8,
                len: 4096,
                digest: 77,
            },
            None,
        ),
        (
            Msg::VerifyReply {
                id: 3,
                equal: false,
            },
            None,
        ),
        (Msg::VerifyDone, None),
        (
            Msg::VerifyAsk {
                id: 3,
                offset: 8,
                len: 4096,
            },
            None,
        ),
        (
            Msg::ReadRequest {
                id: 4,
                offset: 0,
                len: 512,
            },
            None,
        ),
        (Msg::ReadReply { id: 4, ok: true }, Some(vec![0; 512])),
        (Msg::ReadReply { id: 5, ok: false }, None),
        (Msg::Ping, None),
        (Msg::PingAck, None),
        (
            Msg::OutOfSync {
                offset: 1 << 30,
                len: 4096,
            },
            None,
        ),
        (Msg::InvalidateRemote, None),
    ]
}

#[test]
fn every_message_round_trips_both_ways() {
    let (mut i, mut a) = sessions();
    for (msg, payload) in all_messages() {
        let f = through(&mut i, &mut a, &msg, payload.as_deref()).expect("i->a");
        assert_eq!(
            f,
            Frame {
                msg: msg.clone(),
                payload: payload.clone()
            }
        );
        let f = through(&mut a, &mut i, &msg, payload.as_deref()).expect("a->i");
        assert_eq!(f.msg, msg);
    }
}

#[test]
fn a_flipped_bit_anywhere_is_caught() {
    for (mut i, mut a) in sessions_of_each_mac() {
        let msg = Msg::Data {
            seq: 1,
            offset: 0,
            len: 16,
            fua: false,
        };
        let frame = i.seal(&msg, Some(&[7u8; 16]));
        for bit in 0..frame.len() * 8 {
            let mut f = frame.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            let (h, rest) = f.split_at(HEADER_LEN);
            let r = a.body_len(h).and_then(|n| {
                if n != rest.len() {
                    return Err(WireError::Truncated);
                }
                a.open(h, rest)
            });
            assert!(r.is_err(), "bit {bit} flipped went through");
        }
        // The intact frame still opens (nothing was consumed by failures).
        let (h, rest) = frame.split_at(HEADER_LEN);
        assert_eq!(a.open(h, rest).expect("intact").msg, msg);
    }
}

#[test]
fn replayed_reordered_and_reflected_frames_fail() {
    for (mut i, mut a) in sessions_of_each_mac() {
        let one = i.seal(&Msg::Ping, None);
        let two = i.seal(&Msg::PingAck, None);
        let (h2, r2) = two.split_at(HEADER_LEN);
        assert_eq!(a.open(h2, r2), Err(WireError::BadMac), "reordered");
        let (h1, r1) = one.split_at(HEADER_LEN);
        a.open(h1, r1).expect("in order");
        assert_eq!(a.open(h1, r1), Err(WireError::BadMac), "replayed");
        // i's own frame sent back to it.
        let mine = i.seal(&Msg::Ping, None);
        let (h, r) = mine.split_at(HEADER_LEN);
        assert_eq!(i.open(h, r), Err(WireError::BadMac), "reflected");
    }
}

#[test]
fn oversized_frames_are_refused_before_reading_them() {
    let (i, _) = sessions();
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(FRAME_MAGIC);
    h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(i.body_len(&h), Err(WireError::TooLarge(_))));
    h[12..16].copy_from_slice(&0u32.to_le_bytes());
    h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(i.body_len(&h), Err(WireError::TooLarge(_))));
    h[0] = b'X';
    assert_eq!(i.body_len(&h), Err(WireError::BadMagic));
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    // Bodies built by hand, authenticated, so only decoding can refuse.
    let mut rng = SplitMix64(42);
    let (mut i, mut a) = sessions();
    for _ in 0..3000 {
        let kind = rng.below(20) as u8;
        let len = rng.below(64) as usize;
        let body: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        let payload_len = if rng.chance(30) {
            rng.below(8) as usize
        } else {
            0
        };
        let mut frame = Vec::new();
        frame.extend_from_slice(FRAME_MAGIC);
        frame.extend_from_slice(&[kind, 0, 0, 0]);
        frame.extend_from_slice(&(len as u32).to_le_bytes());
        frame.extend_from_slice(&(payload_len as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        frame.extend(std::iter::repeat_n(5u8, payload_len));
        let tag = frame_tag(i.frame_mac(), &i.send_key, i.send_ctr, &[&frame]);
        i.send_ctr += 1;
        frame.extend_from_slice(&tag);
        let (h, rest) = frame.split_at(HEADER_LEN);
        if let Ok(f) = a.open(h, rest) {
            // Whatever decodes must encode back to the same body.
            let mut again = Vec::new();
            assert_eq!(encode(&f.msg, &mut again), kind);
            assert_eq!(again, body);
        }
    }
}

#[test]
fn a_wrong_key_or_peer_fails_the_handshake() {
    // Both sides send their proof before reading the other's, so both see
    // the wrong one.
    let (i, a) = pair_with((b"one key", b"another key"));
    assert!(matches!(i, Err(HandshakeError::BadProof)), "{:?}", i.err());
    assert!(matches!(a, Err(HandshakeError::BadProof)), "{:?}", a.err());

    // Both greetings go out before either is read: each side names the
    // other's replica.
    let (mut x, mut y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || handshake(&mut y, b"k", "r1", 2, 1, false));
    let r = handshake(&mut x, b"k", "r0", 1, 2, true);
    match r {
        Err(HandshakeError::WrongReplica { expected, got }) => {
            assert_eq!((expected.as_str(), got.as_str()), ("r0", "r1"));
        }
        other => panic!("{:?}", other.err()),
    }
    drop(x);
    match t.join().expect("thread") {
        Err(HandshakeError::WrongReplica { expected, got }) => {
            assert_eq!((expected.as_str(), got.as_str()), ("r1", "r0"));
        }
        other => panic!("{:?}", other.err()),
    }

    let (mut x, mut y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || handshake(&mut y, b"k", "r0", 3, 1, false));
    let r = handshake(&mut x, b"k", "r0", 1, 2, true);
    assert!(matches!(
        r,
        Err(HandshakeError::WrongNode {
            expected: 2,
            got: 3
        })
    ));
    drop(x);
    // The acceptor found nothing wrong with the initiator's greeting and
    // waited for a proof that never came.
    let a = t.join().expect("thread");
    assert!(matches!(a, Err(HandshakeError::Io(_))), "{:?}", a.err());
}

#[test]
#[ignore]
fn seal_open_speed() {
    let data = vec![7u8; 256 << 10];
    let msg = Msg::Data {
        seq: 1,
        offset: 0,
        len: data.len() as u32,
        fua: false,
    };
    for version in [2, VERSION] {
        let (mut i, mut a) = sessions();
        (i.version, a.version) = (version, version);
        let t = std::time::Instant::now();
        for _ in 0..400 {
            let f = i.seal(&msg, Some(&data));
            let (h, r) = f.split_at(HEADER_LEN);
            a.open(h, r).expect("open");
        }
        let mb = 400.0 * 0.25;
        eprintln!(
            "version {version} ({:?}): seal+open {:.0} MiB/s",
            i.frame_mac(),
            mb / t.elapsed().as_secs_f64()
        );
    }
}

/// The AEGISMAC-128X4 test vector of the AEGIS specification (RFC 10032,
/// 256-bit tag): the library computes the MAC the RFC defines, so a peer
/// built on another implementation interoperates.
#[test]
fn the_aegis_mac_matches_the_specifications_test_vector() {
    let hex = |h: &str| -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let key: [u8; 16] = hex("10010000000000000000000000000000")
        .try_into()
        .expect("16 bytes");
    let nonce: [u8; 16] = hex("10000200000000000000000000000000")
        .try_into()
        .expect("16 bytes");
    let data: Vec<u8> = (0u8..0x23).collect();
    let mut m = Aegis128X4Mac::<MAC_LEN>::new_with_nonce(&key, &nonce);
    m.update(&data);
    assert_eq!(
        m.finalize().to_vec(),
        hex("26fdc76f41b1da7aec7779f6e964beae8904e662f05aca8345ae3befb357412a")
    );
}

/// A frame sealed under one version's MAC never opens under the other's,
/// with the same keys and counter.
#[test]
fn the_versions_macs_do_not_open_each_others_frames() {
    for (seal, open) in [(2, VERSION), (VERSION, 2)] {
        let (mut i, mut a) = sessions();
        (i.version, a.version) = (seal, open);
        let f = i.seal(&Msg::Ping, None);
        let (h, r) = f.split_at(HEADER_LEN);
        assert_eq!(a.open(h, r), Err(WireError::BadMac), "{seal} to {open}");
        // And the receiver's counter did not move: the same frame under
        // the right MAC still opens.
        a.version = seal;
        assert_eq!(a.open(h, r).map(|f| f.msg), Ok(Msg::Ping));
    }
}

// ---- frames built by hand, random messages, limits ----

/// An authenticated frame around any type and body: only the decoder can
/// refuse it.
fn seal_raw(tx: &mut Session, kind: u8, body: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(FRAME_MAGIC);
    frame.extend_from_slice(&[kind, 0, 0, 0]);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(body);
    frame.extend_from_slice(payload);
    let tag = frame_tag(tx.frame_mac(), &tx.send_key, tx.send_ctr, &[&frame]);
    tx.send_ctr += 1;
    frame.extend_from_slice(&tag);
    frame
}

/// What a reader does with a frame off the stream.
fn read_frame(rx: &mut Session, frame: &[u8]) -> Result<Frame, WireError> {
    if frame.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let (h, rest) = frame.split_at(HEADER_LEN);
    if rx.body_len(h)? != rest.len() {
        return Err(WireError::Truncated);
    }
    rx.open(h, rest)
}

fn random_bytes(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn random_gens(rng: &mut SplitMix64) -> Generations {
    let mut g = || Generation(if rng.chance(20) { 0 } else { rng.next_u64() });
    Generations {
        current: g(),
        bitmap: g(),
        history: [g(), g()],
    }
}

/// Any valid message, with its payload when it carries one.
fn random_message(rng: &mut SplitMix64) -> (Msg, Option<Vec<u8>>) {
    let role = Role::ALL[rng.below(Role::ALL.len() as u64) as usize];
    // Every state that goes on the wire (Consistent is local).
    let sent: Vec<DiskState> = DiskState::ALL
        .iter()
        .copied()
        .filter(|d| *d != DiskState::Consistent)
        .collect();
    let disk = sent[rng.below(sent.len() as u64) as usize];
    let data_len = match rng.below(10) {
        0 => 1,
        1 => 4096,
        _ => 1 + rng.below(2048) as u32,
    };
    let (msg, payload_len) = match rng.below(19) {
        0 => (
            Msg::Hello(PeerState {
                generations: random_gens(rng),
                role,
                disk,
                size: rng.next_u64(),
                granularity: rng.next_u64() as u32,
                dirty_blocks: rng.next_u64(),
                primary_since: rng.next_u64(),
                discard_my_data: rng.chance(50),
                crashed_primary: rng.chance(50),
            }),
            None,
        ),
        1 => (Msg::Update { role, disk }, None),
        2 => {
            let n = if rng.chance(10) { 0 } else { rng.below(200) };
            (
                Msg::Bitmap {
                    first_word: rng.next_u64(),
                    words: (0..n).map(|_| rng.next_u64()).collect(),
                    last: rng.chance(50),
                },
                None,
            )
        }
        3 => (
            Msg::Data {
                seq: rng.next_u64(),
                offset: rng.next_u64(),
                len: data_len,
                fua: rng.chance(50),
            },
            Some(data_len),
        ),
        4 => (
            Msg::Flush {
                seq: rng.next_u64(),
            },
            None,
        ),
        5 => (
            Msg::Ack {
                seq: rng.next_u64(),
                kind: [AckKind::Received, AckKind::Written, AckKind::Flushed]
                    [rng.below(3) as usize],
                ok: rng.chance(50),
            },
            None,
        ),
        6 => (
            Msg::ResyncData {
                id: rng.next_u64(),
                offset: rng.next_u64(),
                len: data_len,
            },
            Some(data_len),
        ),
        7 => (
            Msg::ResyncAck {
                id: rng.next_u64(),
                ok: rng.chance(50),
            },
            None,
        ),
        8 => (
            Msg::SyncDone {
                generations: random_gens(rng),
            },
            None,
        ),
        9 => (
            Msg::VerifyRequest {
                id: rng.next_u64(),
                offset: rng.next_u64(),
                len: rng.next_u64() as u32,
                digest: rng.next_u64(),
            },
            None,
        ),
        10 => (
            Msg::VerifyReply {
                id: rng.next_u64(),
                equal: rng.chance(50),
            },
            None,
        ),
        11 => (Msg::VerifyDone, None),
        12 => (
            Msg::ReadRequest {
                id: rng.next_u64(),
                offset: rng.next_u64(),
                len: rng.next_u64() as u32,
            },
            None,
        ),
        13 => {
            let ok = rng.chance(70);
            (
                Msg::ReadReply {
                    id: rng.next_u64(),
                    ok,
                },
                ok.then_some(data_len),
            )
        }
        14 => (Msg::Ping, None),
        15 => (
            Msg::OutOfSync {
                offset: rng.next_u64(),
                len: rng.next_u64() as u32,
            },
            None,
        ),
        16 => (Msg::InvalidateRemote, None),
        17 => (
            Msg::VerifyAsk {
                id: rng.next_u64(),
                offset: rng.next_u64(),
                len: rng.next_u64() as u32,
            },
            None,
        ),
        _ => (Msg::PingAck, None),
    };
    let payload = payload_len.map(|n| random_bytes(rng, n as usize));
    (msg, payload)
}

#[test]
fn thousands_of_random_messages_round_trip() {
    for (mut i, mut a) in sessions_of_each_mac() {
        let mut rng = SplitMix64(0x5eed_0001);
        for n in 0..4000 {
            let (msg, payload) = random_message(&mut rng);
            // Both directions, interleaved as on a live link.
            let (tx, rx) = if rng.chance(50) {
                (&mut i, &mut a)
            } else {
                (&mut a, &mut i)
            };
            let got = through(tx, rx, &msg, payload.as_deref())
                .unwrap_or_else(|e| panic!("message {n} ({msg:?}): {e}"));
            assert_eq!(got, Frame { msg, payload }, "message {n}");
        }
    }
}

#[test]
fn a_flipped_bit_in_any_message_is_caught() {
    let mut rng = SplitMix64(0x5eed_0002);
    for (mut i, mut a) in sessions_of_each_mac() {
        let mut msgs: Vec<(Msg, Option<Vec<u8>>)> = all_messages();
        msgs.extend((0..40).map(|_| random_message(&mut rng)));
        for (msg, payload) in msgs {
            // Short payloads: every bit of every frame is tried.
            let payload = payload.map(|p| p[..p.len().min(64)].to_vec());
            let msg = match msg {
                Msg::Data {
                    seq, offset, fua, ..
                } => Msg::Data {
                    seq,
                    offset,
                    fua,
                    len: payload.as_ref().map_or(0, |p| p.len() as u32),
                },
                Msg::ResyncData { id, offset, .. } => Msg::ResyncData {
                    id,
                    offset,
                    len: payload.as_ref().map_or(0, |p| p.len() as u32),
                },
                m => m,
            };
            let frame = i.seal(&msg, payload.as_deref());
            for bit in 0..frame.len() * 8 {
                let mut f = frame.clone();
                f[bit / 8] ^= 1 << (bit % 8);
                match read_frame(&mut a, &f) {
                    Err(_) => {}
                    Ok(got) => panic!("{msg:?}: bit {bit} flipped gave {got:?}"),
                }
            }
            // Failures consumed nothing: the intact frame still opens.
            assert_eq!(read_frame(&mut a, &frame).expect("intact").msg, msg);
        }
    }
}

#[test]
fn a_frame_sent_back_to_its_sender_fails() {
    // Counters in step (both 0): only the key of the direction differs.
    for (mut i, mut a) in sessions_of_each_mac() {
        let f = i.seal(&Msg::Ping, None);
        assert_eq!(read_frame(&mut i, &f), Err(WireError::BadMac));
        let g = a.seal(&Msg::Ping, None);
        assert_eq!(read_frame(&mut a, &g), Err(WireError::BadMac));
        // Each opens at the other end.
        assert_eq!(read_frame(&mut a, &f).expect("i->a").msg, Msg::Ping);
        assert_eq!(read_frame(&mut i, &g).expect("a->i").msg, Msg::Ping);
    }
}

#[test]
fn every_field_is_checked() {
    use WireError::*;
    let (mut i, mut a) = sessions();
    let id = 7u64.to_le_bytes();
    let with = |head: &[u8], tail: &[u8]| [head, tail].concat();
    let (_, hello) = encode_body(&all_messages()[0].0);
    let hello_with = |at: usize, v: u8| {
        let mut b = hello.clone();
        b[at] = v;
        b
    };
    let data = |fua: u8| {
        let mut b = with(&id, &id);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.push(fua);
        b
    };
    let bitmap = |last: u8, count: u32, words: usize| {
        let mut b = with(&id, &[last]);
        b.extend_from_slice(&count.to_le_bytes());
        b.extend(std::iter::repeat_n(0u8, words * 8));
        b
    };
    let cases: Vec<(u8, Vec<u8>, WireError)> = vec![
        // Hello: role at 32, disk at 33, flags last.
        (1, hello_with(32, 2), Invalid("unknown role")),
        (1, hello_with(33, 7), Invalid("unknown disk state")),
        (1, hello_with(62, 4), Invalid("unknown state flags")),
        (1, hello[..62].to_vec(), Truncated),
        (1, with(&hello, &[0]), Invalid("trailing bytes")),
        (2, vec![2, 4], Invalid("unknown role")),
        (2, vec![255, 4], Invalid("unknown role")),
        (2, vec![0, 7], Invalid("unknown disk state")),
        (2, vec![0], Truncated),
        (2, vec![0, 4, 0], Invalid("trailing bytes")),
        (3, bitmap(2, 0, 0), Invalid("a boolean is neither 0 nor 1")),
        (3, bitmap(1, 3, 2), Invalid("bitmap word count")),
        (3, bitmap(1, 1, 2), Invalid("bitmap word count")),
        (
            3,
            bitmap(1, MAX_BITMAP_WORDS as u32 + 1, 0),
            TooLarge(MAX_BITMAP_WORDS as u64 + 1),
        ),
        (3, bitmap(1, u32::MAX, 0), TooLarge(u64::from(u32::MAX))),
        (4, data(2), Invalid("a boolean is neither 0 nor 1")),
        (4, data(0)[..20].to_vec(), Truncated),
        (5, id[..7].to_vec(), Truncated),
        (6, with(&id, &[3, 1]), Invalid("unknown acknowledgement")),
        (
            6,
            with(&id, &[1, 2]),
            Invalid("a boolean is neither 0 nor 1"),
        ),
        (
            8,
            with(&id, &[255]),
            Invalid("a boolean is neither 0 nor 1"),
        ),
        (9, vec![0; 31], Truncated),
        (11, with(&id, &[2]), Invalid("a boolean is neither 0 nor 1")),
        (12, vec![0], Invalid("trailing bytes")),
        (14, with(&id, &[2]), Invalid("a boolean is neither 0 nor 1")),
        (15, vec![0], Invalid("trailing bytes")),
        (16, vec![1], Invalid("trailing bytes")),
        (18, vec![0], Invalid("trailing bytes")),
        (20, vec![], UnknownType(20)),
        (0, vec![], UnknownType(0)),
        (255, vec![], UnknownType(255)),
    ];
    for (kind, body, want) in cases {
        let f = seal_raw(&mut i, kind, &body, &[]);
        assert_eq!(
            read_frame(&mut a, &f),
            Err(want),
            "type {kind}, body {body:02x?}"
        );
    }
    // The link is still in step.
    assert_eq!(
        through(&mut i, &mut a, &Msg::Ping, None).expect("ping").msg,
        Msg::Ping
    );
}

#[test]
fn a_payload_is_there_exactly_when_the_message_carries_data() {
    let (mut i, mut a) = sessions();
    let data = |len| Msg::Data {
        seq: 1,
        offset: 0,
        len,
        fua: false,
    };
    let resync = |len| Msg::ResyncData {
        id: 1,
        offset: 0,
        len,
    };
    let refused: Vec<(Msg, Option<&[u8]>)> = vec![
        (data(3), None),
        (data(3), Some(&[1, 2])),
        (data(3), Some(&[1, 2, 3, 4])),
        // No payload is a zero-length one: a write of nothing is refused.
        (data(0), Some(&[])),
        (data(0), None),
        (resync(2), None),
        (resync(2), Some(&[1])),
        (Msg::ReadReply { id: 1, ok: true }, None),
        (Msg::ReadReply { id: 1, ok: false }, Some(&[1])),
        (Msg::Ping, Some(&[1])),
        (Msg::Flush { seq: 1 }, Some(&[0; 8])),
        (
            Msg::ReadRequest {
                id: 1,
                offset: 0,
                len: 1,
            },
            Some(&[0]),
        ),
    ];
    for (msg, payload) in refused {
        let r = through(&mut i, &mut a, &msg, payload);
        assert!(
            matches!(r, Err(WireError::Invalid(_))),
            "{msg:?} with {payload:?}: {r:?}"
        );
    }
    let ok = through(&mut i, &mut a, &data(2), Some(&[5, 6])).expect("data");
    assert_eq!(ok.payload, Some(vec![5, 6]));
}

fn header(kind: u8, body: usize, payload: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(FRAME_MAGIC);
    h[4] = kind;
    h[8..12].copy_from_slice(&(body as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(payload as u32).to_le_bytes());
    h
}

#[test]
fn lengths_are_checked_from_the_header_alone() {
    let (mut i, _) = sessions();
    assert_eq!(
        i.body_len(&header(4, MAX_BODY, MAX_PAYLOAD)),
        Ok(MAX_BODY + MAX_PAYLOAD + MAC_LEN)
    );
    assert_eq!(
        i.body_len(&header(4, MAX_BODY + 1, 0)),
        Err(WireError::TooLarge(MAX_BODY as u64 + 1))
    );
    assert_eq!(
        i.body_len(&header(4, 0, MAX_PAYLOAD + 1)),
        Err(WireError::TooLarge(MAX_PAYLOAD as u64 + 1))
    );
    // A header of another size, or with a reserved byte set.
    let h = header(15, 0, 0);
    assert_eq!(i.body_len(&h[..HEADER_LEN - 1]), Err(WireError::Truncated));
    assert_eq!(i.body_len(&[]), Err(WireError::Truncated));
    for at in 5..8 {
        let mut h = header(15, 0, 0);
        h[at] = 1;
        assert!(matches!(i.body_len(&h), Err(WireError::Invalid(_))));
        assert!(matches!(
            i.open(&h, &[0; MAC_LEN]),
            Err(WireError::Invalid(_))
        ));
    }
    // open makes the same checks, and wants exactly the rest.
    assert_eq!(
        i.open(&header(4, 0, MAX_PAYLOAD + 1), &[]),
        Err(WireError::TooLarge(MAX_PAYLOAD as u64 + 1))
    );
    assert_eq!(i.open(&h, &[0; MAC_LEN - 1]), Err(WireError::Truncated));
    assert_eq!(i.open(&h, &[0; MAC_LEN + 1]), Err(WireError::Truncated));
    assert_eq!(i.open(&h, &[0; MAC_LEN]), Err(WireError::BadMac));
}

#[test]
fn the_largest_bitmap_chunk_round_trips() {
    let (mut i, mut a) = sessions();
    let msg = Msg::Bitmap {
        first_word: 1 << 40,
        words: (0..MAX_BITMAP_WORDS as u64).collect(),
        last: true,
    };
    // It fits in the largest body.
    assert!(encode_body(&msg).1.len() <= MAX_BODY);
    let f = through(&mut i, &mut a, &msg, None).expect("largest chunk");
    assert_eq!(f.msg, msg);
}

// ---- handshake against a scripted peer ----

/// Runs one side of the handshake (key `key`, replica r0, node 1 talking to
/// node 2) against a peer that only writes `peer_says` and then reads
/// whatever comes until the end.
fn against(key: &[u8], initiator: bool, peer_says: Vec<u8>) -> Result<Session, HandshakeError> {
    let (mut x, mut y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || {
        let _ = y.write_all(&peer_says);
        let _ = y.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(&mut y, &mut std::io::sink());
    });
    let r = handshake(&mut x, key, "r0", 1, 2, initiator);
    drop(x);
    t.join().expect("thread");
    r
}

fn greeting(magic: &[u8], version: u16, node: u16, name: &[u8]) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&node.to_le_bytes());
    b.push(name.len() as u8);
    b.extend_from_slice(name);
    b.extend_from_slice(&[0x11; NONCE_LEN]);
    b
}

#[test]
fn a_bad_greeting_is_named() {
    use HandshakeError::*;
    let r = against(b"k", true, b"SSH-2.0-OpenSSH_9.6\r\n\r\n.....".to_vec());
    assert!(matches!(r, Err(NotDuet)), "{:?}", r.err());
    // A newer peer that hangs up on this node's version, and an offer
    // below every version there is.
    let r = against(b"k", true, greeting(GREETING_MAGIC, VERSION + 1, 2, b"r0"));
    assert!(
        matches!(
            r,
            Err(HungUp {
                theirs,
                offered: VERSION,
                ..
            }) if theirs == VERSION + 1
        ),
        "{:?}",
        r.err()
    );
    let r = against(b"k", false, greeting(GREETING_MAGIC, 0, 2, b"r0"));
    assert!(
        matches!(r, Err(Incompatible { theirs: 0, .. })),
        "{:?}",
        r.err()
    );
    let r = against(b"k", true, greeting(GREETING_MAGIC, 1, 2, &[b'r'; 65]));
    assert!(matches!(r, Err(NotDuet)), "{:?}", r.err());
    let r = against(
        b"k",
        true,
        greeting(GREETING_MAGIC, 1, 2, b"r0")[..20].to_vec(),
    );
    assert!(matches!(r, Err(Io(_))), "{:?}", r.err());
    let r = against(b"k", true, greeting(GREETING_MAGIC, 1, 2, b"r00"));
    assert!(matches!(r, Err(WrongReplica { .. })), "{:?}", r.err());
    let r = against(b"k", true, greeting(GREETING_MAGIC, 1, 7, b"r0"));
    assert!(
        matches!(
            r,
            Err(WrongNode {
                expected: 2,
                got: 7
            })
        ),
        "{:?}",
        r.err()
    );
    // A stranger with a perfect greeting but without the key.
    let mut stranger = greeting(GREETING_MAGIC, 1, 2, b"r0");
    stranger.extend_from_slice(&[0; MAC_LEN]);
    let r = against(b"k", true, stranger);
    assert!(matches!(r, Err(BadProof)), "{:?}", r.err());
    // The greeting closes before the proof: with the same version, an
    // I/O error; with an older one, an old build that hung up.
    let r = against(b"k", true, greeting(GREETING_MAGIC, VERSION, 2, b"r0"));
    assert!(matches!(r, Err(Io(_))), "{:?}", r.err());
    let r = against(b"k", true, greeting(GREETING_MAGIC, 1, 2, b"r0"));
    assert!(
        matches!(
            r,
            Err(HungUp {
                theirs: 1,
                offered: VERSION,
                ..
            })
        ),
        "{:?}",
        r.err()
    );
}

/// A stream that keeps a copy of what its owner writes.
struct Tap {
    inner: UnixStream,
    written: Vec<u8>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What each side wrote in one good handshake between node 1 (initiator)
/// and node 2, both holding `key`.
fn recorded_handshake(key: &'static [u8]) -> (Vec<u8>, Vec<u8>) {
    let (x, y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || {
        let mut tap = Tap {
            inner: y,
            written: Vec::new(),
        };
        handshake(&mut tap, key, "r0", 2, 1, false).expect("acceptor");
        tap.written
    });
    let mut tap = Tap {
        inner: x,
        written: Vec::new(),
    };
    handshake(&mut tap, key, "r0", 1, 2, true).expect("initiator");
    (tap.written, t.join().expect("thread"))
}

#[test]
fn a_recorded_handshake_cannot_be_replayed() {
    let (initiator_said, acceptor_said) = recorded_handshake(b"key");
    let greeting_len = 8 + 2 + 2 + 1 + 2 + NONCE_LEN;
    assert_eq!(acceptor_said.len(), greeting_len + MAC_LEN);
    assert_eq!(initiator_said.len(), greeting_len + MAC_LEN);
    // Played to a new initiator (node 1) by someone posing as node 2: the
    // initiator's nonce is fresh, the proof is not.
    let r = against(b"key", true, acceptor_said);
    assert!(matches!(r, Err(HandshakeError::BadProof)), "{:?}", r.err());
    // The initiator's side played to node 2 as acceptor, the same.
    let (x, y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || {
        let mut y = y;
        let _ = y.write_all(&initiator_said);
        let _ = y.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(&mut y, &mut std::io::sink());
    });
    let mut x = x;
    let r = handshake(&mut x, b"key", "r0", 2, 1, false);
    drop(x);
    t.join().expect("thread");
    assert!(matches!(r, Err(HandshakeError::BadProof)), "{:?}", r.err());
    // Each connection's session keys are its own.
    let (i1, _) = sessions();
    let (i2, _) = sessions();
    assert_ne!(i1.send_key, i2.send_key);
    assert_ne!(i1.send_key, i1.recv_key);
}

#[test]
fn a_reflected_proof_does_not_pass() {
    // Someone posing as node 2 answers node 1's greeting with node 1's own
    // nonce and sends node 1's own proof back: the proof names its
    // sender, so it fails.
    let (mut x, y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || {
        let mut y = y;
        let mut theirs = vec![0u8; 8 + 2 + 2 + 1 + 2 + NONCE_LEN];
        y.read_exact(&mut theirs).expect("greeting");
        let nonce = theirs[theirs.len() - NONCE_LEN..].to_vec();
        let mut g = greeting(GREETING_MAGIC, 1, 2, b"r0");
        let at = g.len() - NONCE_LEN;
        g[at..].copy_from_slice(&nonce);
        y.write_all(&g).expect("greeting");
        let mut proof = [0u8; MAC_LEN];
        y.read_exact(&mut proof).expect("proof");
        let _ = y.write_all(&proof);
    });
    let r = handshake(&mut x, b"key", "r0", 1, 2, true);
    drop(x);
    t.join().expect("thread");
    assert!(matches!(r, Err(HandshakeError::BadProof)), "{:?}", r.err());
}

// ---- the documented example and the fuzz seeds ----

/// The example frames of docs/replication-wire.md: under the session key
/// 00 01 .. 1f, the first frame (counter 0) of a direction, in a session
/// of `version`.
fn example_of(version: u16) -> (Session, Session, Msg, Vec<u8>) {
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let tx = Session {
        send_key: key,
        recv_key: [0; 32],
        send_ctr: 0,
        recv_ctr: 0,
        version,
    };
    let rx = Session {
        send_key: [0; 32],
        recv_key: key,
        send_ctr: 0,
        recv_ctr: 0,
        version,
    };
    let msg = Msg::Data {
        seq: 1,
        offset: 4096,
        len: 4,
        fua: true,
    };
    (tx, rx, msg, b"duet".to_vec())
}

/// The first example: BLAKE3, as versions 1 and 2 seal.
fn example() -> (Session, Session, Msg, Vec<u8>) {
    example_of(1)
}

/// The hex dump in docs/replication-wire.md is this encoder's output, byte
/// for byte, and opens to the message it names.
#[test]
fn documented_example_is_what_seal_writes() {
    let documented = crate::testkit::hexdump_block(include_str!("../../docs/replication-wire.md"));
    let (mut tx, mut rx, msg, payload) = example();
    assert_eq!(documented, tx.seal(&msg, Some(&payload)));
    // The MAC is what the doc says: keyed BLAKE3 over the counter (0, as a
    // u64) and every byte before the MAC.
    let (covered, tag) = documented.split_at(documented.len() - MAC_LEN);
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let want = blake3::keyed_hash(&key, &[&0u64.to_le_bytes()[..], covered].concat());
    assert_eq!(tag, want.as_bytes());
    assert_eq!(
        read_frame(&mut rx, &documented),
        Ok(Frame {
            msg,
            payload: Some(payload)
        })
    );
}

/// The second hex dump: the same frame in a session of version 3, the
/// MAC AEGIS-128X4 (RFC 10032) keyed with the session key's first 16
/// bytes, the counter as the nonce.
#[test]
fn documented_example_of_version_3_is_what_seal_writes() {
    let doc = include_str!("../../docs/replication-wire.md");
    let documented = crate::testkit::hexdump_block_at(doc, 1);
    let (mut tx, mut rx, msg, payload) = example_of(3);
    assert_eq!(documented, tx.seal(&msg, Some(&payload)));
    let (covered, tag) = documented.split_at(documented.len() - MAC_LEN);
    let key: [u8; 16] = std::array::from_fn(|i| i as u8);
    let mut m = Aegis128X4Mac::<MAC_LEN>::new_with_nonce(&key, &[0; 16]);
    m.update(covered);
    assert_eq!(tag, m.finalize());
    // Only the MAC differs from the first example's frame.
    let first = crate::testkit::hexdump_block(doc);
    assert_eq!(first[..covered.len()], *covered);
    assert_ne!(first[covered.len()..], *tag);
    assert_eq!(
        read_frame(&mut rx, &documented),
        Ok(Frame {
            msg,
            payload: Some(payload)
        })
    );
}

/// Writes the fuzz seed corpus when DUET_WRITE_CORPUS is set; otherwise
/// checks the committed seeds still decode (the format did not drift). One
/// seed per message type (the type byte, then the body: what the target
/// reads as a body) and the documented example frame (what it reads as a
/// frame off the link).
#[test]
fn write_fuzz_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/replication_decode");
    let gens = Generations {
        current: Generation(1),
        bitmap: Generation(2),
        history: [Generation(3), Generation(4)],
    };
    let seeds = [
        (
            "hello",
            Msg::Hello(PeerState {
                generations: gens,
                role: Role::Primary,
                disk: DiskState::UpToDate,
                size: 1 << 30,
                granularity: 4096,
                dirty_blocks: 7,
                primary_since: 99,
                discard_my_data: true,
                crashed_primary: true,
            }),
        ),
        (
            "update",
            Msg::Update {
                role: Role::Secondary,
                disk: DiskState::UpToDate,
            },
        ),
        (
            "bitmap",
            Msg::Bitmap {
                first_word: 0,
                words: vec![5, u64::MAX],
                last: true,
            },
        ),
        (
            "data",
            Msg::Data {
                seq: 9,
                offset: 4096,
                len: 512,
                fua: true,
            },
        ),
        ("flush", Msg::Flush { seq: 10 }),
        (
            "ack",
            Msg::Ack {
                seq: 3,
                kind: AckKind::Written,
                ok: true,
            },
        ),
        (
            "resync-data",
            Msg::ResyncData {
                id: 1,
                offset: 8192,
                len: 4096,
            },
        ),
        ("resync-ack", Msg::ResyncAck { id: 1, ok: false }),
        ("sync-done", Msg::SyncDone { generations: gens }),
        (
            "verify",
            Msg::VerifyRequest {
                id: 1,
                offset: 0,
                len: 4096,
                digest: 77,
            },
        ),
        ("verify-reply", Msg::VerifyReply { id: 1, equal: true }),
        ("verify-done", Msg::VerifyDone),
        (
            "read-request",
            Msg::ReadRequest {
                id: 2,
                offset: 0,
                len: 512,
            },
        ),
        ("read-reply", Msg::ReadReply { id: 2, ok: true }),
        ("ping", Msg::Ping),
        ("ping-ack", Msg::PingAck),
        ("invalidate-remote", Msg::InvalidateRemote),
        (
            "verify-ask",
            Msg::VerifyAsk {
                id: 1,
                offset: 0,
                len: 4096,
            },
        ),
    ];
    let write = std::env::var_os("DUET_WRITE_CORPUS").is_some();
    for (name, msg) in seeds {
        let path = dir.join(name);
        let (kind, body) = encode_body(&msg);
        let want = [&[kind][..], &body].concat();
        if write {
            std::fs::write(&path, &want).expect("write seed");
        }
        let seed = std::fs::read(&path).expect("seed file (DUET_WRITE_CORPUS=1 writes it)");
        assert_eq!(seed, want, "{}", path.display());
        assert_eq!(
            decode_body(seed[0], &seed[1..]),
            Ok(msg),
            "{}",
            path.display()
        );
    }
    let (mut tx, mut rx, msg, payload) = example();
    let path = dir.join("frame-data");
    if write {
        std::fs::write(&path, tx.seal(&msg, Some(&payload))).expect("write seed");
    }
    let seed = std::fs::read(&path).expect("seed file (DUET_WRITE_CORPUS=1 writes it)");
    assert_eq!(
        read_frame(&mut rx, &seed).map(|f| f.msg),
        Ok(msg),
        "{}",
        path.display()
    );
}

// ---- version negotiation ----

const FIRST_BUILD: Offer = Offer {
    speaks: ProtocolRange::FIRST,
    version: 1,
    floor: 1,
};

/// One handshake between node 1 (initiator, offering `i`) and node 2
/// (offering `a`); each side hangs up when it returns, as the link does.
fn offered(
    i: Offer,
    a: Offer,
) -> (
    Result<Session, HandshakeError>,
    Result<Session, HandshakeError>,
) {
    let (mut x, mut y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || handshake_offering(&mut y, b"k", "r0", 2, 1, false, a));
    let r = handshake_offering(&mut x, b"k", "r0", 1, 2, true, i);
    drop(x);
    (r, t.join().expect("thread"))
}

#[test]
fn two_builds_settle_on_the_newest_version_both_speak() {
    let (i, a) = offered(Offer::BUILD, Offer::BUILD);
    let (mut i, mut a) = (i.expect("initiator"), a.expect("acceptor"));
    assert_eq!((i.version, a.version), (VERSION, VERSION));
    assert_eq!(i.frame_mac(), FrameMac::Aegis128X4);
    let f = through(&mut i, &mut a, &Msg::Ping, None).expect("a frame passes");
    assert_eq!(f.msg, Msg::Ping);

    // A newer build meets this one: both use this one's newest.
    let newer = Offer {
        speaks: ProtocolRange {
            min: 2,
            max: VERSION + 1,
        },
        version: VERSION + 1,
        floor: 2,
    };
    let (i, a) = offered(newer, Offer::BUILD);
    assert_eq!(
        (i.expect("i").version, a.expect("a").version),
        (VERSION, VERSION)
    );

    // A build of version 2 (BLAKE3 frames): both use 2, and the frames
    // pass.
    let second = Offer {
        speaks: ProtocolRange { min: 1, max: 2 },
        version: 2,
        floor: 1,
    };
    let (i, a) = offered(second, Offer::BUILD);
    let (mut i, mut a) = (i.expect("initiator"), a.expect("acceptor"));
    assert_eq!((i.version, a.version), (2, 2));
    assert_eq!(a.frame_mac(), FrameMac::Blake3);
    through(&mut a, &mut i, &Msg::PingAck, None).expect("a frame passes");

    // Offered version 1 (the peer known to be old) by a build that speaks
    // 2: both use 1, and the frames pass.
    let (i, a) = offered(Offer::towards(ProtocolRange::BUILD, 1), Offer::BUILD);
    let (mut i, mut a) = (i.expect("initiator"), a.expect("acceptor"));
    assert_eq!((i.version, a.version), (1, 1));
    through(&mut a, &mut i, &Msg::PingAck, None).expect("a frame passes");
}

#[test]
fn a_first_build_hangs_up_on_a_newer_greeting_which_then_offers_its_version() {
    let (i, a) = offered(Offer::BUILD, FIRST_BUILD);
    assert!(
        matches!(
            i,
            Err(HandshakeError::HungUp {
                theirs: 1,
                offered: VERSION,
                ..
            })
        ),
        "{:?}",
        i.err()
    );
    assert!(
        matches!(a, Err(HandshakeError::Version(VERSION))),
        "{:?}",
        a.err()
    );
    let (i, a) = offered(Offer::towards(ProtocolRange::BUILD, 1), FIRST_BUILD);
    assert_eq!((i.expect("i").version, a.expect("a").version), (1, 1));
}

#[test]
fn versions_with_nothing_in_common_are_refused_with_both_named() {
    let newer = Offer {
        speaks: ProtocolRange { min: 2, max: 3 },
        version: 3,
        floor: 2,
    };
    let (i, a) = offered(newer, FIRST_BUILD);
    let i = i.err().expect("refused");
    assert!(
        matches!(i, HandshakeError::Incompatible { theirs: 1, .. }),
        "{i:?}"
    );
    assert_eq!(
        i.to_string(),
        "the peer offers replication protocol version 1 at most; this node speaks 2-3: upgrade the older node"
    );
    assert!(
        matches!(a, Err(HandshakeError::Version(3))),
        "{:?}",
        a.err()
    );
}

/// Version 1 as the first builds spoke it: the same proof, byte for
/// byte, so a build of today and one of then connect.
#[test]
fn version_1_proofs_are_those_of_the_first_builds() {
    let (x, y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || {
        let mut tap = Tap {
            inner: y,
            written: Vec::new(),
        };
        handshake_offering(&mut tap, b"key", "r0", 2, 1, false, FIRST_BUILD).expect("acceptor");
        tap.written
    });
    let mut tap = Tap {
        inner: x,
        written: Vec::new(),
    };
    let offer = Offer::towards(ProtocolRange::BUILD, 1);
    let session = handshake_offering(&mut tap, b"key", "r0", 1, 2, true, offer);
    let (i_said, a_said) = (tap.written, t.join().expect("thread"));
    let greeting_len = 8 + 2 + 2 + 1 + 2 + NONCE_LEN;
    let nonce = |said: &[u8]| said[greeting_len - NONCE_LEN..greeting_len].to_vec();
    let (ni, na) = (nonce(&i_said), nonce(&a_said));
    let first_proof = |sender: u16| {
        hmac(
            b"key",
            &[
                b"duet-repl-v1 proof",
                &ni,
                &na,
                &sender.to_le_bytes(),
                b"r0",
            ],
        )
    };
    assert_eq!(&i_said[greeting_len..], &first_proof(1));
    assert_eq!(&a_said[greeting_len..], &first_proof(2));
    assert_eq!(&i_said[8..10], &1u16.to_le_bytes());
    // And the session keys of then.
    let session = session.expect("initiator");
    let first_key = |dir: &[u8]| hmac(b"key", &[dir, &ni, &na]);
    assert_eq!(session.send_key, first_key(b"duet-repl-v1 i2a"));
    assert_eq!(session.recv_key, first_key(b"duet-repl-v1 a2i"));
}

/// Someone in the middle who lowers both offers (3 to 2) gets two nodes
/// that settle on 2 but bind different offers: the proofs fail.
#[test]
fn a_lowered_offer_fails_the_proofs() {
    struct Lower<S>(S, u16);
    impl<S: Read> Read for Lower<S> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl<S: Write> Write for Lower<S> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut b = buf.to_vec();
            if b.starts_with(GREETING_MAGIC) && b.len() > 10 {
                b[8..10].copy_from_slice(&self.1.to_le_bytes());
            }
            self.0.write_all(&b)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    let newer = Offer {
        speaks: ProtocolRange { min: 2, max: 3 },
        version: 3,
        floor: 2,
    };
    let (x, y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || {
        handshake_offering(&mut Lower(y, 2), b"k", "r0", 2, 1, false, newer)
    });
    let r = handshake_offering(&mut Lower(x, 2), b"k", "r0", 1, 2, true, newer);
    let a = t.join().expect("thread");
    assert!(matches!(r, Err(HandshakeError::BadProof)), "{:?}", r.err());
    assert!(matches!(a, Err(HandshakeError::BadProof)), "{:?}", a.err());
}

/// Lowered to version 1, nothing is bound; a side that heard the peer
/// announce version 2 in its heartbeats refuses to settle below it.
#[test]
fn a_side_that_heard_the_peers_version_does_not_settle_below_it() {
    let announced = Offer::announced(ProtocolRange::BUILD, 2);
    assert_eq!(announced.floor, 2);
    let lowered = Offer::towards(ProtocolRange::BUILD, 1);
    let (i, a) = offered(lowered, announced);
    assert!(
        matches!(
            a,
            Err(HandshakeError::Downgraded {
                settled: 1,
                floor: 2
            })
        ),
        "{:?}",
        a.err()
    );
    assert!(i.is_err());
    // Without the heartbeats' word, version 1 is what it is.
    let (i, a) = offered(lowered, Offer::BUILD);
    assert_eq!((i.expect("i").version, a.expect("a").version), (1, 1));
}
