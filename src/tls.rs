//! PEM files for rustls: certificates, private keys and CA roots, read
//! the same way for the export's TCP listener and the replication link.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// The CA certificates in `path`, as the roots a peer must chain to.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates("ca", path)? {
        roots.add(ca).map_err(|e| TlsError::Ca {
            path: path.to_path_buf(),
            detail: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// Every certificate in a PEM file; at least one.
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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

pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = auth::read_private_file(path, Some(nix::unistd::geteuid().as_raw()))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| TlsError::Pem {
        what: "key",
        path: path.to_path_buf(),
        detail: format!(
            "no private key in it (PEM, -----BEGIN PRIVATE KEY----- or an EC or RSA key): {e}"
        ),
    })
}
