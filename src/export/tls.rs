//! TLS for the export's TCP listener: the server's certificate and key,
//! and the CA a client's certificate must chain to. Mutual TLS is the
//! authentication: a client without a certificate from that CA fails the
//! TLS handshake and never reaches an export.
//!
//! rustls does the TLS (with ring for the cryptography): memory-safe, no
//! system library to keep in step, and its webpki verifier checks client
//! certificates (chain, validity dates, key usage) without our own code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::NbdTls;
use crate::membership::auth::{self, KeyError};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {detail}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("private key: {0}")]
    Key(#[from] KeyError),
    #[error("ca {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
    #[error("TLS setup: {0}")]
    Setup(String),
    #[error("cert {cert} and key {key} do not go together: {detail}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

/// The server side of TLS for one export, from its files. The key must be
/// private (mode 0600 or stricter) and owned by the user duetd runs as:
/// duetd refuses to start otherwise, as with the cluster key.
pub fn server_config(files: &NbdTls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates("cert", &files.cert)?;
    let key = private_key(&files.key)?;
    let mut roots = RootCertStore::empty();
    for ca in certificates("ca", &files.ca)? {
        roots.add(ca).map_err(|e| TlsError::Ca {
            path: files.ca.clone(),
            detail: format!("not a usable CA certificate: {e}"),
        })?;
    }
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

/// Every certificate in a PEM file; at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |detail: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read(path).map_err(|e| pem(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(pem(
            "no certificate in it (a PEM file with -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = auth::read_private_file(path, Some(nix::unistd::geteuid().as_raw()))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| TlsError::Pem {
        what: "key",
        path: path.to_path_buf(),
        detail: format!(
            "no private key in it (PEM, -----BEGIN PRIVATE KEY----- or an EC or RSA key): {e}"
        ),
    })
}
