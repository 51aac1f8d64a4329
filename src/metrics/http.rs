//! Just enough HTTP/1.1 for a Prometheus scrape: `GET /metrics` answered
//! from the latest published status, one request per connection. A few
//! connections at a time, each with a deadline, so a slow or hostile
//! client on the loopback costs nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::bus::ClusterStatus;

/// Connections served at once; more wait in the kernel's backlog.
const AT_ONCE: usize = 4;
/// A request and its answer must be done in this time.
const DEADLINE: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// What a request asks for, from its head.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Metrics { head_only: bool },
    Index,
    NotFound,
    BadMethod,
    Bad,
}

/// Reads the request line of a head (`GET /metrics HTTP/1.1`).
pub fn parse(head: &[u8]) -> Request {
    let Ok(text) = std::str::from_utf8(head) else {
        return Request::Bad;
    };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Request::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::BadMethod,
    };
    // A query string (Prometheus sends none) changes nothing.
    match target.split('?').next().unwrap_or_default() {
        "/metrics" => Request::Metrics { head_only },
        "/" => Request::Index,
        _ => Request::NotFound,
    }
}

/// The whole answer to a request.
pub fn answer(request: &Request, status: &ClusterStatus) -> Vec<u8> {
    let (code, kind, body) = match request {
        Request::Metrics { .. } => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            super::text::render(status),
        ),
        Request::Index => (
            "200 OK",
            "text/plain; charset=utf-8",
            "duetd: the metrics are at /metrics\n".to_string(),
        ),
        Request::NotFound => ("404 Not Found", "text/plain", "not found\n".to_string()),
        Request::BadMethod => (
            "405 Method Not Allowed",
            "text/plain",
            "GET or HEAD only\n".to_string(),
        ),
        Request::Bad => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
    };
    let mut out = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if matches!(request, Request::BadMethod) {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !matches!(request, Request::Metrics { head_only: true }) {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

/// Binds `at` and serves until the status channel closes. A bind that
/// fails is logged and leaves the daemon without an endpoint.
pub fn spawn(at: SocketAddr, status: watch::Receiver<ClusterStatus>) {
    tokio::spawn(async move {
        let listener = match TcpListener::bind(at).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %at, error = %e, "cannot serve the metrics");
                return;
            }
        };
        tracing::info!(listen = %at, "serving metrics at http://{at}/metrics");
        let slots = Arc::new(Semaphore::new(AT_ONCE));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((conn, _)) = listener.accept().await else {
                // Out of file descriptors, say: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if status.has_changed().is_err() {
                return;
            }
            let status = status.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(DEADLINE, serve(conn, &status)).await;
                drop(permit);
            });
        }
    });
}

async fn serve(
    mut conn: TcpStream,
    status: &watch::Receiver<ClusterStatus>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            let reply = answer(&Request::Bad, &ClusterStatus::default());
            return conn.write_all(&reply).await;
        }
    }
    let request = parse(&head);
    let snapshot = status.borrow().clone();
    conn.write_all(&answer(&request, &snapshot)).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_from_their_first_line() {
        let ask = |s: &str| parse(s.as_bytes());
        assert_eq!(
            ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            ask("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head_only: true }
        );
        assert_eq!(ask("GET / HTTP/1.1\r\n\r\n"), Request::Index);
        assert_eq!(ask("GET /other HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(ask("POST /metrics HTTP/1.1\r\n\r\n"), Request::BadMethod);
        assert_eq!(ask("GET /metrics\r\n\r\n"), Request::Bad);
        assert_eq!(ask("GET /metrics SPDY/3 extra\r\n\r\n"), Request::Bad);
        assert_eq!(parse(&[0xff, 0xfe, b'\r', b'\n']), Request::Bad);
    }

    #[test]
    fn answers_carry_their_length_and_head_has_no_body() {
        let s = ClusterStatus::default();
        let full =
            String::from_utf8(answer(&Request::Metrics { head_only: false }, &s)).expect("text");
        let (head, body) = full.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 200 OK"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("duet_quorate 0"));
        let bare = answer(&Request::Metrics { head_only: true }, &s);
        assert!(bare.ends_with(b"\r\n\r\n"));
        let refused = String::from_utf8(answer(&Request::BadMethod, &s)).expect("text");
        assert!(refused.starts_with("HTTP/1.1 405") && refused.contains("Allow: GET, HEAD"));
    }
}
