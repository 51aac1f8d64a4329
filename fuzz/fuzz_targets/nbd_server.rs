//! Any bytes from a client into the real NBD server (handshake and
//! transmission) over a socket pair, with a small in-memory disk: it must
//! never panic, and must never write outside the disk.

#![no_main]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use duet::export::backend::Backend;
use duet::export::server::{Export, serve_client};
use libfuzzer_sys::fuzz_target;

const SIZE: usize = 64 << 10;

struct Memory(Mutex<Vec<u8>>);

impl Backend for Memory {
    fn size(&self) -> u64 {
        SIZE as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.0.lock().expect("lock");
        let o = offset as usize;
        buf.copy_from_slice(&d[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64, _fua: bool) -> io::Result<()> {
        let mut d = self.0.lock().expect("lock");
        let o = offset as usize;
        d[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn trim(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64, _p: bool, _f: bool) -> io::Result<()> {
        let mut d = self.0.lock().expect("lock");
        d[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let backend = Arc::new(Memory(Mutex::new(vec![0; SIZE])));
    let exports = Arc::new(HashMap::from([(
        "r0".to_string(),
        Export::new("r0", backend),
    )]));
    let Ok((mut client, server)) = UnixStream::pair() else {
        return;
    };
    let t = std::thread::spawn(move || serve_client(server, &exports));
    // The server writes replies while we write requests: read them on the
    // side so neither end blocks on a full socket buffer.
    let mut reader = client.try_clone().expect("clone");
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    let _ = client.write_all(data);
    let _ = client.shutdown(std::net::Shutdown::Write);
    t.join().expect("the server panicked");
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = drain.join();
});
