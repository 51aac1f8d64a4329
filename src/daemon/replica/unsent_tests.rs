use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::Unsent;
use crate::replication::core::Msg;
use crate::replication::wire::{self, Frame, HEADER_LEN, MAC_LEN, Opener, Sealer};

fn keys() -> (Sealer, Opener) {
    let (mut a, mut b) = UnixStream::pair().expect("pair");
    let t = std::thread::spawn(move || wire::handshake(&mut b, b"k", "r0", 2, 1, false));
    let mine = wire::handshake(&mut a, b"k", "r0", 1, 2, true).expect("handshake");
    let theirs = t.join().expect("thread").expect("handshake");
    (mine.split().0, theirs.split().1)
}

fn data(seq: u64, len: usize) -> (Msg, Arc<Vec<u8>>) {
    let payload: Vec<u8> = (0..len).map(|i| (i as u64 * 31 + seq) as u8).collect();
    let msg = Msg::Data {
        seq,
        offset: seq * 4096,
        len: len as u32,
        fua: false,
    };
    (msg, Arc::new(payload))
}

/// Reads frames off `s` until it closes.
fn read_frames(mut s: UnixStream, mut opener: Opener) -> Vec<Frame> {
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).expect("read");
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = &bytes[at..at + HEADER_LEN];
        let (body, payload) = wire::frame_lengths(header).expect("header");
        let end = at + HEADER_LEN + body + payload + MAC_LEN;
        let frame = opener
            .open(header, &bytes[at + HEADER_LEN..end])
            .expect("frame opens");
        frames.push(frame);
        at = end;
    }
    frames
}

#[test]
fn frames_of_every_size_arrive_whole_and_in_order_through_a_full_socket() {
    let (mut sealer, opener) = keys();
    let (a, b) = UnixStream::pair().expect("pair");
    let sock = socket2::Socket::from(a);
    // A small buffer, so that sends stop part-way through pieces.
    sock.set_send_buffer_size(4096).expect("buffer size");
    let reader = std::thread::spawn(move || read_frames(b, opener));
    let sizes = [0usize, 512, 4096, 16 << 10, 1 << 20, 100, 200 << 10, 4096];
    let mut sent = Vec::new();
    let mut unsent = Unsent::default();
    let mut fulls = 0;
    for (seq, len) in sizes.into_iter().enumerate() {
        let (msg, payload) = match len {
            // A frame without a payload.
            0 => (Msg::Flush { seq: seq as u64 }, None),
            _ => {
                let (msg, payload) = data(seq as u64, len);
                (msg, Some(payload))
            }
        };
        unsent.seal(&mut sealer, &msg, payload.as_ref());
        sent.push(Frame {
            msg,
            payload: payload.map(|p| p.to_vec()),
        });
        // Without waiting first, as the link does, then waiting.
        if !unsent.send(&sock, false).expect("send") {
            fulls += 1;
            assert!(unsent.send(&sock, true).expect("send, waiting"));
        }
        assert!(unsent.is_empty());
    }
    drop(sock);
    let got = reader.join().expect("reader");
    assert!(
        fulls > 0,
        "the socket never filled: the test proves nothing"
    );
    assert_eq!(got, sent);
}

#[test]
fn a_large_payload_is_sent_from_its_buffer_and_a_small_one_copied() {
    let (mut sealer, _opener) = keys();
    let mut unsent = Unsent::default();
    let (msg, large) = data(1, 1 << 20);
    unsent.seal(&mut sealer, &msg, Some(&large));
    assert_eq!(Arc::strong_count(&large), 2, "the large payload is shared");
    let (msg, small) = data(2, 4096);
    unsent.seal(&mut sealer, &msg, Some(&small));
    assert_eq!(Arc::strong_count(&small), 1, "the small one is copied");
    // Head, payload, then the MAC with the next frame in one piece.
    assert_eq!(unsent.pieces.len(), 3);
    unsent.clear();
    assert_eq!(Arc::strong_count(&large), 1);
}
