use super::*;
use crate::membership::auth::AuthAlgorithm;

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
    }
}

use crate::testkit::SplitMix64 as Rng;

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

#[test]
fn round_trip_for_every_algorithm_and_many_values() {
    let mut rng = Rng(1);
    for alg in AuthAlgorithm::ALL {
        let c = codec(alg);
        for i in 0..2000 {
            let name_len = 1 + (rng.next_u64() % 64) as usize;
            let h = Heartbeat {
                node: (0..name_len)
                    .map(|j| (b'a' + ((i + j) % 26) as u8) as char)
                    .collect(),
                incarnation: Incarnation(rng.next_u64()),
                link: LinkId(rng.next_u64() as u8),
                seq: Seq(rng.next_u64()),
                ping_reachable: rng.next_u64() as u16,
            };
            let p = c.encode(&h);
            assert!(p.len() <= MAX_PACKET);
            assert_eq!(c.decode(&p), Ok(h), "{alg:?}");
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
    assert_eq!(p.len(), 39 + 32);
}

#[test]
fn each_drop_reason_of_the_codec() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let good = c.encode(&hb());
    assert_eq!(
        c.decode(&vec![0; MAX_PACKET + 1]),
        Err(DropReason::Oversized)
    );
    assert_eq!(c.decode(b"DU"), Err(DropReason::Truncated));
    assert_eq!(c.decode(b"XXXXXXXXXXXXXXXXXXXX"), Err(DropReason::BadMagic));
    let mut v = good.clone();
    v[4] = 2;
    assert_eq!(c.decode(&v), Err(DropReason::UnsupportedVersion));
    let mut t = good.clone();
    t[5] = 9;
    assert_eq!(c.decode(&t), Err(DropReason::Malformed));
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
    // A zero-length name, even correctly signed, is malformed.
    let mut body = body_of(&c, &hb());
    body[12] = 0;
    assert_eq!(c.decode(&resign(&c, &body)), Err(DropReason::Malformed));
    // Invalid UTF-8 in the node name, correctly signed.
    let mut body = body_of(&c, &hb());
    body[13] = 0xff;
    assert_eq!(c.decode(&resign(&c, &body)), Err(DropReason::Malformed));
    // Extra bytes the extension length does not account for.
    let mut body = body_of(&c, &hb());
    body.push(0);
    assert_eq!(c.decode(&resign(&c, &body)), Err(DropReason::Malformed));
}

#[test]
fn extension_bytes_are_skipped() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let mut body = body_of(&c, &hb());
    let n = body.len();
    body[n - 2..].copy_from_slice(&3u16.to_be_bytes());
    body.extend_from_slice(b"new");
    assert_eq!(c.decode(&resign(&c, &body)), Ok(hb()));
}

#[test]
fn any_single_bit_flip_is_refused() {
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
    let c = codec(AuthAlgorithm::HmacSha256);
    let good = c.encode(&hb());
    for len in 0..good.len() {
        assert!(c.decode(&good[..len]).is_err(), "accepted at length {len}");
    }
}

#[test]
fn random_bytes_and_mutations_never_panic() {
    let c = codec(AuthAlgorithm::HmacSha256);
    let good = c.encode(&hb());
    let mut rng = Rng(99);
    for _ in 0..100_000 {
        let len = (rng.next_u64() % 1100) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        assert!(c.decode(&junk).is_err());
        let mut m = good.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let i = (rng.next_u64() as usize) % m.len();
            m[i] = rng.next_u64() as u8;
        }
        if m != good {
            assert!(c.decode(&m).is_err(), "mutation accepted");
        }
    }
}

/// Writes the fuzz seed corpus when DUET_WRITE_CORPUS is set; otherwise
/// checks the committed seeds still decode (the format did not drift).
#[test]
fn write_fuzz_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/heartbeat_decode");
    for alg in AuthAlgorithm::ALL {
        let c = Codec::new(
            "fuzz".into(),
            Auth::new(alg, b"fuzz key".to_vec()).expect("key"),
        );
        let path = dir.join(format!("valid-{}", alg.wire_id()));
        if std::env::var_os("DUET_WRITE_CORPUS").is_some() {
            std::fs::write(&path, c.encode(&hb())).expect("write seed");
        }
        let seed = std::fs::read(&path).expect("seed file (DUET_WRITE_CORPUS=1 writes it)");
        assert_eq!(c.decode(&seed), Ok(hb()), "{}", path.display());
    }
}
