//! TLS for the export's TCP listener: the server's certificate and key,
//! and the CA a client's certificate must chain to. Mutual TLS is the
//! authentication: a client without a certificate from that CA fails the
//! TLS handshake and never reaches an export.
//!
//! rustls does the TLS (with ring for the cryptography): memory-safe, no
//! system library to keep in step, and its webpki verifier checks client
//! certificates (chain, validity dates, key usage) without our own code.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use crate::config::TlsFiles;
pub use crate::tls::TlsError;
use crate::tls::{certificates, private_key, roots};

/// The server side of TLS for one export, from its files. The key must be
/// private (mode 0600 or stricter) and owned by the user duetd runs as:
/// duetd refuses to start otherwise, as with the cluster key.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates("cert", &files.cert)?;
    let key = private_key(&files.key)?;
    let roots = roots(&files.ca)?;
    // Client certificates are required: `build` without
    // `allow_unauthenticated` refuses a client that sends none.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Ca {
            path: files.ca.clone(),
            detail: e.to_string(),
        })?;
    let config = ServerConfig::builder_with_provider(provider)
        // TLS 1.3 and 1.2: the NBD spec requires 1.2, nothing older.
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            detail: e.to_string(),
        })?;
    Ok(Arc::new(config))
}
