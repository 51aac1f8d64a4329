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
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let sender = {
        let conn = Arc::clone(&conn);
        std::thread::spawn(move || {
            let _ = tid_tx.send(nix::unistd::gettid());
            conn.send_outbox()
        })
    };
    // Only once the sender thread sleeps on an empty outbox does a
    // missing wake-up leave the reply stuck.
    let tid = tid_rx.recv().expect("the sender's thread id");
    assert!(until(|| sleeping(tid)), "the sender thread never waited");
    hold_replies();
    conn.reply_soon(b"late");
    let busy = lock(&conn.writer);
    // A worker halfway through a send of its own holds the stream: the
    // held reply must wake the sender thread, which sends it after.
    send_held();
    assert_eq!(readable(&mut client), b"");
    drop(busy);
    let mut got = Vec::new();
    let sent = until(|| {
        got.extend(readable(&mut client));
        got == b"late"
    });
    conn.close_outbox();
    sender.join().expect("sender thread");
    assert!(sent, "the sender thread sent the held reply: got {got:?}");
}

/// Polls `cond` for up to 10 s; whether it came true.
fn until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Whether thread `tid` of this process is asleep.
fn sleeping(tid: nix::unistd::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| rest.starts_with(" S"))
    })
}

#[test]
fn what_is_held_so_far_goes_out_and_holding_goes_on() {
    let (conn, mut client) = pair();
    hold_replies();
    conn.reply_soon(b"one");
    send_held_so_far();
    assert_eq!(readable(&mut client), b"one");
    conn.reply_soon(b"two");
    assert_eq!(readable(&mut client), b"");
    send_held();
    assert_eq!(readable(&mut client), b"two");
}

#[test]
fn a_long_outbox_is_left_to_the_sender_thread() {
    let (conn, mut client) = pair();
    lock(&conn.outbox)
        .bytes
        .extend_from_slice(&vec![1u8; SEND_SOON_MAX]);
    conn.reply_soon(b"x");
    assert_eq!(readable(&mut client), b"", "not sent from this thread");
    assert_eq!(lock(&conn.outbox).bytes.len(), SEND_SOON_MAX + 1);
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
    assert_eq!(conn.spare.kept().1, 0, "a larger buffer is not kept");
    for _ in 0..SPARE_BYTES / big + 2 {
        conn.give_back(Some(Vec::with_capacity(big)));
    }
    assert_eq!(conn.spare.kept(), (SPARE_BYTES / big, SPARE_BYTES));
    let got = conn.started(1);
    assert!(got.capacity() >= big);
    assert_eq!(conn.spare.kept().1, SPARE_BYTES - got.capacity());
}
