//! The NBD protocol (fixed newstyle handshake, simple replies, STARTTLS),
//! as the NetworkBlockDevice project's doc/proto.md defines it. Pure: bytes
//! in, values out, and replies as bytes; the server does the I/O.

use thiserror::Error;

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
pub const FLAG_NO_ZEROES: u16 = 2;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1;
pub const FLAG_C_NO_ZEROES: u32 = 2;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;

// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
pub const REP_ERR_POLICY: u32 = (1 << 31) | 2;
pub const REP_ERR_INVALID: u32 = (1 << 31) | 3;
pub const REP_ERR_TLS_REQD: u32 = (1 << 31) | 5;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) | 6;

// Info types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1;
pub const TFLAG_READ_ONLY: u16 = 2;
pub const TFLAG_SEND_FLUSH: u16 = 4;
pub const TFLAG_SEND_FUA: u16 = 8;
pub const TFLAG_SEND_TRIM: u16 = 32;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 64;
pub const TFLAG_CAN_MULTI_CONN: u16 = 256;

// Command flags.
pub const CMD_FLAG_FUA: u16 = 1;
pub const CMD_FLAG_NO_HOLE: u16 = 2;

// Errors in replies (errno values the protocol fixes).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;

/// Block size constraints every export advertises: any 512-byte aligned
/// client does, and 32 MiB is the most one request may carry.
pub const MIN_BLOCK: u32 = 1;
pub const PREFERRED_BLOCK: u32 = 4096;
pub const MAX_PAYLOAD: u32 = 32 << 20;

/// Longest option payload accepted; names are short, this is generous.
pub const MAX_OPTION_LEN: u32 = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disconnect,
    Flush,
    Trim,
    WriteZeroes,
    /// A command this server does not implement (CACHE, BLOCK_STATUS, ...).
    Other(u16),
}

impl Command {
    fn from_wire(t: u16) -> Command {
        match t {
            0 => Command::Read,
            1 => Command::Write,
            2 => Command::Disconnect,
            3 => Command::Flush,
            4 => Command::Trim,
            6 => Command::WriteZeroes,
            other => Command::Other(other),
        }
    }
}

/// A transmission request header (the payload of a WRITE follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub command: Command,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

pub const REQUEST_LEN: usize = 28;
pub const OPTION_HEADER_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("bad magic {0:#x}: not an NBD request (the connection is closed)")]
    BadMagic(u64),
    #[error("option payload of {0} bytes is too long")]
    OptionTooLong(u32),
    #[error("client does not speak fixed newstyle")]
    NotFixedNewstyle,
}

/// What a server that insists on TLS (the spec's FORCEDTLS mode) does with
/// an option received before TLS is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeTls {
    /// Reply `REP_ACK`; the TLS handshake follows on the same connection.
    StartTls,
    /// Reply `REP_ACK` and close: the client gives up.
    Abort,
    /// Close without a reply: `OPT_EXPORT_NAME` has no way to report an
    /// error, and entering transmission without TLS is not allowed.
    Close,
    /// Reply this error and read the next option.
    Refuse(u32),
}

/// The FORCEDTLS rules: before TLS, only STARTTLS and ABORT are answered;
/// every other option gets `REP_ERR_TLS_REQD`, and EXPORT_NAME (which
/// cannot be refused by a reply) ends the session. `len` is the option's
/// payload length: STARTTLS carries none.
pub fn before_tls(option: u32, len: u32) -> BeforeTls {
    match option {
        OPT_STARTTLS if len != 0 => BeforeTls::Refuse(REP_ERR_INVALID),
        OPT_STARTTLS => BeforeTls::StartTls,
        OPT_ABORT => BeforeTls::Abort,
        OPT_EXPORT_NAME => BeforeTls::Close,
        _ => BeforeTls::Refuse(REP_ERR_TLS_REQD),
    }
}

/// The server's greeting.
pub fn greeting() -> [u8; 18] {
    let mut g = [0u8; 18];
    g[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    g[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    g[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    g
}

/// Client flags: only fixed newstyle clients are served (every current
/// client is one; the old style cannot report errors during options).
pub fn parse_client_flags(b: [u8; 4]) -> Result<u32, ProtocolError> {
    let flags = u32::from_be_bytes(b);
    if flags & FLAG_C_FIXED_NEWSTYLE == 0 {
        return Err(ProtocolError::NotFixedNewstyle);
    }
    Ok(flags)
}

/// An option header: (option, payload length).
pub fn parse_option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<(u32, u32), ProtocolError> {
    let magic = u64::from_be_bytes(be8(&b[..8]));
    if magic != IHAVEOPT {
        return Err(ProtocolError::BadMagic(magic));
    }
    let option = u32::from_be_bytes(be4(&b[8..12]));
    let len = u32::from_be_bytes(be4(&b[12..16]));
    if len > MAX_OPTION_LEN {
        return Err(ProtocolError::OptionTooLong(len));
    }
    Ok((option, len))
}

/// The export name and info requests of an INFO or GO payload; None when
/// the payload is malformed.
pub fn parse_info_request(data: &[u8]) -> Option<(String, Vec<u16>)> {
    let name_len = u32::from_be_bytes(be4(data.get(..4)?)) as usize;
    let name = data.get(4..4usize.checked_add(name_len)?)?;
    let rest = &data[4 + name_len..];
    let count = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let infos = rest.get(2..)?;
    if infos.len() != count * 2 {
        return None;
    }
    let requests = infos
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Some((String::from_utf8(name.to_vec()).ok()?, requests))
}

/// One option reply.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(20 + data.len());
    r.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    r.extend_from_slice(&option.to_be_bytes());
    r.extend_from_slice(&reply.to_be_bytes());
    r.extend_from_slice(&(data.len() as u32).to_be_bytes());
    r.extend_from_slice(data);
    r
}

/// REP_SERVER for NBD_OPT_LIST: one export name.
pub fn server_entry(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d
}

pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut d = INFO_EXPORT.to_be_bytes().to_vec();
    d.extend_from_slice(&size.to_be_bytes());
    d.extend_from_slice(&flags.to_be_bytes());
    d
}

pub fn info_name(name: &str) -> Vec<u8> {
    let mut d = INFO_NAME.to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d
}

pub fn info_block_size() -> Vec<u8> {
    let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    for v in [MIN_BLOCK, PREFERRED_BLOCK, MAX_PAYLOAD] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    d
}

/// What NBD_OPT_EXPORT_NAME answers on success (no option reply: size and
/// flags, then 124 zero bytes unless the client asked for none).
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut r = size.to_be_bytes().to_vec();
    r.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        r.extend_from_slice(&[0u8; 124]);
    }
    r
}

pub fn parse_request(b: &[u8; REQUEST_LEN]) -> Result<Request, ProtocolError> {
    let magic = u32::from_be_bytes(be4(&b[..4]));
    if magic != REQUEST_MAGIC {
        return Err(ProtocolError::BadMagic(u64::from(magic)));
    }
    Ok(Request {
        flags: u16::from_be_bytes([b[4], b[5]]),
        command: Command::from_wire(u16::from_be_bytes([b[6], b[7]])),
        cookie: u64::from_be_bytes(be8(&b[8..16])),
        offset: u64::from_be_bytes(be8(&b[16..24])),
        length: u32::from_be_bytes(be4(&b[24..28])),
    })
}

/// A simple reply header; the data of a successful READ follows it.
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    r[4..8].copy_from_slice(&error.to_be_bytes());
    r[8..].copy_from_slice(&cookie.to_be_bytes());
    r
}

/// Whether [offset, offset + length) lies inside an export of `size`.
pub fn in_range(offset: u64, length: u32, size: u64) -> bool {
    offset
        .checked_add(u64::from(length))
        .is_some_and(|end| end <= size)
}

fn be4(s: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&s[..4]);
    a
}

fn be8(s: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&s[..8]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_is_nbdmagic_ihaveopt_and_flags() {
        let g = greeting();
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(&g[16..], &[0, 3]);
    }

    #[test]
    fn requests_parse_and_bad_magic_is_refused() {
        let mut b = [0u8; REQUEST_LEN];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        b[8..16].copy_from_slice(&7u64.to_be_bytes());
        b[16..24].copy_from_slice(&4096u64.to_be_bytes());
        b[24..].copy_from_slice(&512u32.to_be_bytes());
        let r = parse_request(&b).expect("request");
        assert_eq!(
            r,
            Request {
                flags: CMD_FLAG_FUA,
                command: Command::Write,
                cookie: 7,
                offset: 4096,
                length: 512
            }
        );
        b[0] = 0;
        assert!(matches!(parse_request(&b), Err(ProtocolError::BadMagic(_))));
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[6..8].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(parse_request(&b).expect("cache").command, Command::Other(5));
    }

    #[test]
    fn info_requests_parse_and_malformed_ones_do_not() {
        let mut d = 2u32.to_be_bytes().to_vec();
        d.extend_from_slice(b"r0");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        d.extend_from_slice(&INFO_NAME.to_be_bytes());
        assert_eq!(
            parse_info_request(&d),
            Some(("r0".into(), vec![INFO_BLOCK_SIZE, INFO_NAME]))
        );
        for cut in 0..d.len() {
            assert_eq!(parse_info_request(&d[..cut]), None, "cut at {cut}");
        }
        let mut long = d.clone();
        long.push(0);
        assert_eq!(parse_info_request(&long), None);
        let mut lying = d.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_info_request(&lying), None);
    }

    #[test]
    fn option_headers_need_the_magic_and_a_sane_length() {
        let mut h = [0u8; OPTION_HEADER_LEN];
        h[..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        h[8..12].copy_from_slice(&OPT_GO.to_be_bytes());
        h[12..].copy_from_slice(&10u32.to_be_bytes());
        assert_eq!(parse_option_header(&h), Ok((OPT_GO, 10)));
        h[12..].copy_from_slice(&(MAX_OPTION_LEN + 1).to_be_bytes());
        assert!(parse_option_header(&h).is_err());
        h[0] = 0;
        assert!(parse_option_header(&h).is_err());
    }

    #[test]
    fn before_tls_only_starttls_and_abort_are_answered() {
        assert_eq!(before_tls(OPT_STARTTLS, 0), BeforeTls::StartTls);
        assert_eq!(
            before_tls(OPT_STARTTLS, 1),
            BeforeTls::Refuse(REP_ERR_INVALID)
        );
        assert_eq!(before_tls(OPT_ABORT, 0), BeforeTls::Abort);
        assert_eq!(before_tls(OPT_EXPORT_NAME, 2), BeforeTls::Close);
        for option in [OPT_LIST, OPT_INFO, OPT_GO, 8, 99, u32::MAX] {
            assert_eq!(
                before_tls(option, 0),
                BeforeTls::Refuse(REP_ERR_TLS_REQD),
                "option {option}"
            );
        }
    }

    #[test]
    fn ranges_never_overflow() {
        assert!(in_range(0, 512, 512));
        assert!(!in_range(1, 512, 512));
        assert!(!in_range(u64::MAX, 1, u64::MAX));
        assert!(in_range(512, 0, 512));
    }

    #[test]
    fn replies_have_their_layout() {
        let r = option_reply(OPT_GO, REP_ACK, &[]);
        assert_eq!(r.len(), 20);
        assert_eq!(&r[..8], &REPLY_MAGIC.to_be_bytes());
        assert_eq!(export_name_reply(1, 3, false).len(), 134);
        assert_eq!(export_name_reply(1, 3, true).len(), 10);
        let s = simple_reply(EIO, 9);
        assert_eq!(&s[4..8], &5u32.to_be_bytes());
        assert_eq!(info_block_size().len(), 14);
    }
}
