//! Any bytes into the replication link's decoder, three ways; none may
//! panic or allocate past the limits (docs/replication-wire.md):
//! - as a message body (first byte: the type): whatever the decoder
//!   accepts must encode back to the same body;
//! - as a frame off the link (header, then the rest) into a live session's
//!   `body_len` and `open`: never accepted, since nobody can forge the MAC
//!   (the input's last byte picks the session: BLAKE3 frames of version 2
//!   or this build's AEGIS ones);
//! - once decoded as a body, the message sealed with and without a payload
//!   and opened by the peer session: opened exactly when the payload
//!   belongs, and then unchanged.

#![no_main]

use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock};

use duet::replication::core::Msg;
use duet::replication::wire::{
    Frame, HEADER_LEN, MAX_PAYLOAD, Session, WireError, decode_body, encode_body, handshake,
};
use libfuzzer_sys::fuzz_target;

/// (initiator, acceptor) of one real handshake, made once.
fn handshaken() -> (Session, Session) {
    let (mut a, mut b) = UnixStream::pair().expect("socket pair");
    let t = std::thread::spawn(move || handshake(&mut b, b"fuzz key", "fuzz", 2, 1, false));
    let i = handshake(&mut a, b"fuzz key", "fuzz", 1, 2, true).expect("initiator");
    (i, t.join().expect("thread").expect("acceptor"))
}

/// Two pairs of sessions: this build's version, and version 2 (the other
/// frame MAC).
fn sessions() -> &'static [Mutex<(Session, Session)>; 2] {
    static SESSIONS: OnceLock<[Mutex<(Session, Session)>; 2]> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        let newest = handshaken();
        let (mut i, mut a) = handshaken();
        (i.version, a.version) = (2, 2);
        [Mutex::new(newest), Mutex::new((i, a))]
    })
}

/// The payload rule, said again independently of the decoder.
fn belongs(msg: &Msg, payload: &[u8]) -> bool {
    match msg {
        Msg::Data { len, .. } | Msg::ResyncData { len, .. } => {
            *len > 0 && payload.len() == *len as usize
        }
        Msg::ReadReply { ok: true, .. } => !payload.is_empty(),
        _ => payload.is_empty(),
    }
}

fuzz_target!(|data: &[u8]| {
    let pair = &sessions()[usize::from(data.last().is_some_and(|b| b & 1 == 1))];
    let mut guard = pair.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = &mut *guard;

    // A frame off the link. A failed open changes nothing in the session.
    let (header, rest) = data.split_at(data.len().min(HEADER_LEN));
    let rest = match rx.body_len(header) {
        Ok(n) if n <= rest.len() => &rest[..n],
        _ => rest,
    };
    assert!(
        rx.open(header, rest).is_err(),
        "an unsealed frame was opened"
    );

    // A message body.
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let Ok(msg) = decode_body(kind, body) else {
        return;
    };
    assert_eq!(encode_body(&msg), (kind, body.to_vec()));

    // Sealed and opened: both sessions count every frame, in step.
    if data.len() > MAX_PAYLOAD {
        return;
    }
    for payload in [None, Some(data)] {
        let frame = tx.seal(&msg, payload);
        let (h, r) = frame.split_at(HEADER_LEN);
        assert_eq!(rx.body_len(h), Ok(r.len()));
        let got = rx.open(h, r);
        if belongs(&msg, payload.unwrap_or(&[])) {
            let want = Frame {
                msg: msg.clone(),
                payload: payload.map(<[u8]>::to_vec),
            };
            assert_eq!(got, Ok(want));
        } else {
            assert!(matches!(got, Err(WireError::Invalid(_))), "{got:?}");
        }
    }
});
