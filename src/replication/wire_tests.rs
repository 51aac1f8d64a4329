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
    let (mut i, mut a) = sessions();
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

#[test]
fn replayed_reordered_and_reflected_frames_fail() {
    let (mut i, mut a) = sessions();
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
        let tag = frame_mac(&i.send_key, i.send_ctr, &[&frame]);
        i.send_ctr += 1;
        frame.extend_from_slice(tag.as_bytes());
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
    let (i, a) = pair_with((b"one key", b"another key"));
    assert!(matches!(i, Err(HandshakeError::BadProof)), "{:?}", i.err());
    assert!(a.is_err());

    let (mut x, mut y) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || handshake(&mut y, b"k", "r1", 2, 1, false));
    let r = handshake(&mut x, b"k", "r0", 1, 2, true);
    assert!(matches!(r, Err(HandshakeError::WrongReplica { .. })));
    drop(x);
    assert!(t.join().expect("thread").is_err());

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
    let _ = t.join();
}

#[test]
#[ignore]
fn seal_open_speed() {
    let (mut i, mut a) = sessions();
    let data = vec![7u8; 256 << 10];
    let msg = Msg::Data {
        seq: 1,
        offset: 0,
        len: data.len() as u32,
        fua: false,
    };
    let t = std::time::Instant::now();
    for _ in 0..400 {
        let f = i.seal(&msg, Some(&data));
        let (h, r) = f.split_at(HEADER_LEN);
        a.open(h, r).expect("open");
    }
    let mb = 400.0 * 0.25;
    eprintln!("seal+open {:.0} MiB/s", mb / t.elapsed().as_secs_f64());
}
