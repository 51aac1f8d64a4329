use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::*;

fn pair() -> (Arc<Conn>, UnixStream) {
    let (ours, client) = UnixStream::pair().expect("socket pair");
    client.set_nonblocking(true).expect("nonblocking");
    (Arc::new(Conn::new(&ours).expect("conn")), client)
}

/// What the client can read right now.
fn readable(client: &mut UnixStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return got,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn a_reply_goes_out_at_once_when_nothing_is_held() {
    let (conn, mut client) = pair();
    conn.reply_soon(b"one");
    assert_eq!(readable(&mut client), b"one");
}

#[test]
fn held_replies_wait_for_the_end_of_the_batch_and_keep_their_order() {
    let (conn, mut client) = pair();
    let (other, mut other_client) = pair();
    hold_replies();
    conn.reply_soon(b"one,");
    other.reply_soon(b"alpha");
    conn.reply_soon(b"two");
    assert_eq!(readable(&mut client), b"");
    assert_eq!(readable(&mut other_client), b"");
    send_held();
    assert_eq!(readable(&mut client), b"one,two");
    assert_eq!(readable(&mut other_client), b"alpha");
    // Held no longer: the next reply leaves at once.
    conn.reply_soon(b",three");
    assert_eq!(readable(&mut client), b",three");
}

#[test]
fn replies_held_while_a_worker_sends_go_out_through_the_sender_thread() {
    let (conn, mut client) = pair();
    hold_replies();
    conn.reply_soon(b"late");
    {
        // A worker halfway through a send of its own holds the stream.
        let _busy = lock(&conn.writer);
        send_held();
        assert_eq!(readable(&mut client), b"");
    }
    let sender = {
        let conn = Arc::clone(&conn);
        std::thread::spawn(move || conn.send_outbox())
    };
    conn.close_outbox();
    sender.join().expect("sender thread");
    assert_eq!(readable(&mut client), b"late");
}

#[test]
fn a_buffer_given_back_serves_the_next_write() {
    let (conn, _client) = pair();
    let mut b = Vec::with_capacity(4096);
    b.extend_from_slice(&[7u8; 4096]);
    let at = b.as_ptr();
    assert_eq!(conn.started(4096).capacity(), 0, "no spare yet");
    conn.give_back(Some(b));
    conn.answered(4096);
    let next = conn.started(4096);
    assert_eq!(next.as_ptr(), at);
    assert!(next.is_empty() && next.capacity() >= 4096);
}

#[test]
fn spare_buffers_are_bounded_by_bytes() {
    let (conn, _client) = pair();
    let big = SPARE_MAX_LEN;
    conn.give_back(Some(Vec::with_capacity(big + 1)));
    assert_eq!(lock(&conn.spare).bytes, 0, "a larger buffer is not kept");
    for _ in 0..SPARE_BYTES / big + 2 {
        conn.give_back(Some(Vec::with_capacity(big)));
    }
    let spare = lock(&conn.spare);
    assert_eq!(spare.buffers.len(), SPARE_BYTES / big);
    assert_eq!(spare.bytes, SPARE_BYTES);
    drop(spare);
    let got = conn.started(1);
    assert!(got.capacity() >= big);
    assert_eq!(lock(&conn.spare).bytes, SPARE_BYTES - got.capacity());
}
