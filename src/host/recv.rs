//! Receiving a payload of known length from a stream socket into a buffer
//! of its own without zeroing it first: for a 1 MiB write, the memset
//! costs as much as the copy out of the socket. (`read_exact` needs an
//! initialized buffer; `read_to_end` reads in small, growing pieces.)

use std::io;
use std::os::fd::AsFd;

use socket2::SockRef;

/// Appends exactly `n` bytes from `sock` to `buf`.
pub fn recv_exact_into(sock: &impl AsFd, buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let sock = SockRef::from(sock);
    let end = buf
        .len()
        .checked_add(n)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    buf.reserve(n);
    while buf.len() < end {
        let want = end - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..want];
        match sock.recv(spare) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => {
                let k = k.min(want);
                // SAFETY: recv initialized the first k bytes of the spare
                // capacity, and k is within it.
                unsafe { buf.set_len(buf.len() + k) };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use super::recv_exact_into;

    #[test]
    fn takes_exactly_n_bytes_across_several_sends_and_leaves_the_rest() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let t = std::thread::spawn(move || {
            for piece in sent.chunks(70_000) {
                a.write_all(piece).expect("send");
            }
            a.write_all(b"rest").expect("send");
        });
        let mut buf = b"kept".to_vec();
        recv_exact_into(&b, &mut buf, data.len()).expect("recv");
        t.join().expect("sender");
        assert_eq!(&buf[..4], b"kept");
        assert_eq!(&buf[4..], &data[..]);
        let mut rest = Vec::new();
        recv_exact_into(&b, &mut rest, 4).expect("recv");
        assert_eq!(rest, b"rest");
    }

    #[test]
    fn a_stream_ending_early_is_an_error() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(&[1, 2, 3]).expect("send");
        drop(a);
        let mut buf = Vec::new();
        let e = recv_exact_into(&b, &mut buf, 10).expect_err("short");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(buf, [1, 2, 3]);
    }
}
