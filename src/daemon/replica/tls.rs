//! TLS on the replication link (`[replica.tls]`), an option on top of the
//! shared-key handshake: mutual TLS 1.3, both nodes' certificates signed
//! by one CA, each naming its node. The dialling node is the TLS client.
//!
//! The link's code reads and writes one socket from several threads (a
//! reader, a sender that never waits, a writer for when the socket is
//! full), which one rustls connection cannot serve. So a thread of its own
//! pumps between the TCP socket and one end of a socket pair; the link
//! uses the other end as it would the TCP socket, and sees plaintext.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::config::TlsFiles;
use crate::tls::{TlsError, certificates, private_key, roots};

/// This node's side of the link's TLS, read from its files at start.
pub struct LinkTls {
    side: Side,
    /// The peer node's name, which its certificate must carry.
    peer: ServerName<'static>,
}

enum Side {
    /// This node dials: TLS client.
    Dials(Arc<ClientConfig>),
    /// This node listens: TLS server.
    Listens(Arc<ServerConfig>),
}

/// TLS setup that cannot work: duetd does not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkTlsError {
    #[error("{0}")]
    Files(#[from] TlsError),
    #[error(
        "node name {0:?} cannot be named in a certificate (a DNS name is needed for [replica.tls])"
    )]
    Name(String),
}

impl LinkTls {
    /// `dials`: this node is the one that connects (the lower node id);
    /// `peer_name`: the other node's name in the config.
    pub fn new(files: &TlsFiles, dials: bool, peer_name: &str) -> Result<LinkTls, LinkTlsError> {
        let peer = ServerName::try_from(peer_name.to_string())
            .map_err(|_| LinkTlsError::Name(peer_name.to_string()))?;
        if !matches!(peer, ServerName::DnsName(_)) {
            return Err(LinkTlsError::Name(peer_name.to_string()));
        }
        let side = if dials {
            Side::Dials(client_config(files)?)
        } else {
            Side::Listens(server_config(files)?)
        };
        Ok(LinkTls { side, peer })
    }

    /// The TLS handshake on a fresh connection, bounded by the socket's
    /// timeouts; then a check that the peer's certificate names the peer
    /// (the client's verifier checks the server's; the listener checks the
    /// client's here).
    pub fn handshake(&self, tcp: &mut TcpStream) -> Result<Connection, String> {
        let mut conn: Connection = match &self.side {
            Side::Dials(c) => ClientConnection::new(c.clone(), self.peer.clone())
                .map_err(|e| e.to_string())?
                .into(),
            Side::Listens(c) => ServerConnection::new(c.clone())
                .map_err(|e| e.to_string())?
                .into(),
        };
        while conn.is_handshaking() {
            conn.complete_io(tcp).map_err(|e| e.to_string())?;
        }
        // Whatever the handshake left to send (the client's Finished).
        while conn.wants_write() {
            conn.write_tls(tcp).map_err(|e| e.to_string())?;
        }
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("the peer sent no certificate")?;
        let cert = webpki::EndEntityCert::try_from(cert).map_err(|e| e.to_string())?;
        cert.verify_is_valid_for_subject_name(&self.peer)
            .map_err(|e| format!("the peer's certificate does not name {:?}: {e}", self.peer))?;
        Ok(conn)
    }
}

/// The listener's side: this node's certificate, and a client certificate
/// required, chained to the CA.
fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&files.ca)?), provider.clone())
            .build()
            .map_err(|e| TlsError::Ca {
                path: files.ca.clone(),
                detail: e.to_string(),
            })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        // Both ends are duet: TLS 1.3 only.
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates("cert", &files.cert)?, private_key(&files.key)?)
        .map_err(|e| pair(files, e))?;
    // A link is long-lived and never resumed: no tickets to send.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The dialler's side: the CA for the listener's certificate, and this
/// node's certificate to show.
fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(certificates("cert", &files.cert)?, private_key(&files.key)?)
        .map_err(|e| pair(files, e))?;
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

fn pair(files: &TlsFiles, e: rustls::Error) -> TlsError {
    TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail: e.to_string(),
    }
}

/// Starts the pump for a connection past its handshake; returns the
/// plaintext end. The pump ends when either side closes, and closes the
/// other.
pub fn tunnel(tcp: TcpStream, conn: Connection, name: String) -> std::io::Result<UnixStream> {
    let (mine, theirs) = UnixStream::pair()?;
    tcp.set_read_timeout(None)?;
    tcp.set_write_timeout(None)?;
    tcp.set_nonblocking(true)?;
    mine.set_nonblocking(true)?;
    std::thread::Builder::new().name(name).spawn(move || {
        let mut pump = Pump::new(tcp, mine, conn);
        if let Err(e) = pump.run() {
            tracing::debug!("replication TLS ended: {e}");
        }
    })?;
    Ok(theirs)
}

/// Plaintext read from the link at a time.
const CHUNK: usize = 64 * 1024;
/// Wake this often without events; ends are noticed by events, this only
/// bounds each wait.
const TICK: Duration = Duration::from_secs(1);

struct Pump {
    tcp: TcpStream,
    plain: UnixStream,
    tls: Connection,
    /// Decrypted, not yet taken by the link.
    to_plain: Vec<u8>,
    buf: Vec<u8>,
    /// The link sent all it will (its end shut for writing).
    plain_done: bool,
    /// The peer sent all it will (close_notify or the TCP end).
    tcp_done: bool,
    close_sent: bool,
}

impl Pump {
    fn new(tcp: TcpStream, plain: UnixStream, mut tls: Connection) -> Pump {
        // Plaintext is only read while the records before it are sent, so
        // rustls need not bound its own buffer.
        tls.set_buffer_limit(None);
        Pump {
            tcp,
            plain,
            tls,
            to_plain: Vec::new(),
            buf: vec![0; CHUNK],
            plain_done: false,
            tcp_done: false,
            close_sent: false,
        }
    }

    fn run(&mut self) -> Result<(), String> {
        // The handshake's last read may have brought the first records.
        self.take_plaintext()?;
        loop {
            self.flush_tcp()?;
            self.flush_plain()?;
            if self.plain_done
                && self.tcp_done
                && !self.tls.wants_write()
                && self.to_plain.is_empty()
            {
                return Ok(());
            }
            let (tcp, plain) = self.wait()?;
            if plain.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                // The link let go of this connection (it closed or shut
                // both ways): nothing more to deliver either way.
                return Err("the link closed".into());
            }
            if tcp.intersects(PollFlags::POLLERR)
                || (self.tcp_done && tcp.contains(PollFlags::POLLHUP))
            {
                return Err("the connection failed or closed".into());
            }
            if tcp.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
                self.read_tcp()?;
            }
            if plain.intersects(PollFlags::POLLIN) {
                self.read_plain()?;
            }
        }
    }

    /// Waits for what can move now; returns each end's events.
    fn wait(&self) -> Result<(PollFlags, PollFlags), String> {
        let mut tcp_ev = PollFlags::empty();
        if !self.tcp_done && self.to_plain.is_empty() {
            tcp_ev |= PollFlags::POLLIN;
        }
        if self.tls.wants_write() {
            tcp_ev |= PollFlags::POLLOUT;
        }
        let mut plain_ev = PollFlags::empty();
        if !self.plain_done && !self.tls.wants_write() {
            plain_ev |= PollFlags::POLLIN;
        }
        if !self.to_plain.is_empty() {
            plain_ev |= PollFlags::POLLOUT;
        }
        let mut fds = [
            PollFd::new(self.tcp.as_fd(), tcp_ev),
            PollFd::new(self.plain.as_fd(), plain_ev),
        ];
        let tick = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::NONE);
        match poll(&mut fds, tick) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.to_string()),
        }
        let ev = |f: &PollFd| f.revents().unwrap_or(PollFlags::empty());
        Ok((ev(&fds[0]), ev(&fds[1])))
    }

    /// Records to the peer, as far as the socket takes them; once the link
    /// sent all it will, close_notify and the TCP end after them.
    fn flush_tcp(&mut self) -> Result<(), String> {
        loop {
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.tcp) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("send: {e}")),
                }
            }
            match (self.plain_done, self.close_sent) {
                (false, _) => return Ok(()),
                (true, false) => {
                    self.tls.send_close_notify();
                    self.close_sent = true;
                }
                (true, true) => {
                    let _ = self.tcp.shutdown(Shutdown::Write);
                    return Ok(());
                }
            }
        }
    }

    /// Plaintext to the link, as far as it takes it.
    fn flush_plain(&mut self) -> Result<(), String> {
        while !self.to_plain.is_empty() {
            match self.plain.write(&self.to_plain) {
                Ok(n) => {
                    self.to_plain.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("to the link: {e}")),
            }
        }
        if self.tcp_done {
            let _ = self.plain.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    fn read_tcp(&mut self) -> Result<(), String> {
        match self.tls.read_tls(&mut self.tcp) {
            Ok(0) => self.tcp_done = true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return Ok(());
            }
            Err(e) => return Err(format!("receive: {e}")),
        }
        if let Err(e) = self.tls.process_new_packets() {
            // An alert tells the peer why, if it can still be sent.
            let _ = self.tls.write_tls(&mut self.tcp);
            return Err(format!("TLS: {e}"));
        }
        self.take_plaintext()
    }

    /// What rustls decrypted, into the queue for the link.
    fn take_plaintext(&mut self) -> Result<(), String> {
        loop {
            match self.tls.reader().read(&mut self.buf) {
                Ok(0) => {
                    self.tcp_done = true;
                    return Ok(());
                }
                Ok(n) => self.to_plain.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // The peer's TCP end without close_notify: an end all
                // the same (the link's frames are sealed on their own).
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    self.tcp_done = true;
                    return Ok(());
                }
                Err(e) => return Err(format!("TLS: {e}")),
            }
        }
    }

    fn read_plain(&mut self) -> Result<(), String> {
        match self.plain.read(&mut self.buf) {
            Ok(0) => self.plain_done = true,
            Ok(n) => self
                .tls
                .writer()
                .write_all(&self.buf[..n])
                .map_err(|e| format!("TLS: {e}"))?,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(format!("from the link: {e}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> TlsFiles {
        TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            ca: "/nonexistent/ca.pem".into(),
        }
    }

    #[test]
    fn a_peer_name_a_certificate_cannot_carry_is_refused_first() {
        for name in ["a..b", "198.51.100.2", ""] {
            match LinkTls::new(&files(), true, name) {
                Err(LinkTlsError::Name(n)) => assert_eq!(n, name),
                Err(e) => panic!("{name:?}: {e}"),
                Ok(_) => panic!("{name:?} accepted"),
            }
        }
    }

    #[test]
    fn missing_files_are_named_on_either_side() {
        for dials in [true, false] {
            let e = LinkTls::new(&files(), dials, "node2")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("/nonexistent/"), "{dials}: {e:?}");
        }
    }
}
