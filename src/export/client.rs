//! The client side of the NBD handshake: what the kernel path needs before
//! it hands a connection to the kernel's NBD driver (which only speaks the
//! transmission phase), and what tests and the benchmark use to talk to
//! the server by hand.

use std::io::{self, Read, Write};

use crate::export::proto;

/// The export as the server described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    pub size: u64,
    pub flags: u16,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Fixed newstyle handshake with NBD_OPT_GO for `export`; on success the
/// stream is in transmission phase.
pub fn handshake<S: Read + Write>(s: &mut S, export: &str) -> io::Result<ExportInfo> {
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting)?;
    if greeting[..8] != proto::NBDMAGIC.to_be_bytes()
        || greeting[8..16] != proto::IHAVEOPT.to_be_bytes()
    {
        return Err(invalid("not an NBD server"));
    }
    s.write_all(&(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES).to_be_bytes())?;
    let name = export.as_bytes();
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name);
    data.extend_from_slice(&0u16.to_be_bytes());
    let mut opt = proto::IHAVEOPT.to_be_bytes().to_vec();
    opt.extend_from_slice(&proto::OPT_GO.to_be_bytes());
    opt.extend_from_slice(&(data.len() as u32).to_be_bytes());
    opt.extend_from_slice(&data);
    s.write_all(&opt)?;
    let mut info = None;
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h)?;
        let reply = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        if len > proto::MAX_OPTION_LEN {
            return Err(invalid("option reply too long"));
        }
        let mut body = vec![0u8; len as usize];
        s.read_exact(&mut body)?;
        match reply {
            proto::REP_ACK => return info.ok_or_else(|| invalid("no export information")),
            proto::REP_INFO => {
                if let [0, 0, rest @ ..] = body.as_slice()
                    && rest.len() == 10
                {
                    let mut size = [0u8; 8];
                    size.copy_from_slice(&rest[..8]);
                    info = Some(ExportInfo {
                        size: u64::from_be_bytes(size),
                        flags: u16::from_be_bytes([rest[8], rest[9]]),
                    });
                }
            }
            other if other & (1 << 31) != 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the server refused export {export:?} (reply {other:#x})"),
                ));
            }
            _ => {}
        }
    }
}
