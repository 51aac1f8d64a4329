//! Packet authentication: HMAC over the whole packet under the cluster key.
//!
//! HMAC-SHA256 is the default. HMAC-SHA1 and HMAC-MD5 exist only so that a
//! key imported from a classic Heartbeat authkeys file keeps working; crc is
//! no authentication at all and is accepted only with an explicit insecure
//! opt-in in the config.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;

/// The signing method named in the config (`cluster.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthAlgorithm {
    #[default]
    HmacSha256,
    HmacSha1,
    HmacMd5,
    Crc,
}

impl AuthAlgorithm {
    pub const ALL: [AuthAlgorithm; 4] = [
        AuthAlgorithm::HmacSha256,
        AuthAlgorithm::HmacSha1,
        AuthAlgorithm::HmacMd5,
        AuthAlgorithm::Crc,
    ];

    /// Its number in the packet header (docs/wire.md).
    pub fn wire_id(self) -> u8 {
        match self {
            AuthAlgorithm::HmacSha256 => 1,
            AuthAlgorithm::HmacSha1 => 2,
            AuthAlgorithm::HmacMd5 => 3,
            AuthAlgorithm::Crc => 4,
        }
    }

    pub fn tag_len(self) -> usize {
        match self {
            AuthAlgorithm::HmacSha256 => 32,
            AuthAlgorithm::HmacSha1 => 20,
            AuthAlgorithm::HmacMd5 => 16,
            AuthAlgorithm::Crc => 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the cluster key is empty")]
    Empty,
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is empty")]
    EmptyFile { path: PathBuf },
    #[error(
        "key file {path} is accessible by group or others (mode {mode:04o}); anyone who reads it can join the cluster: chmod 600 {path}"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "key file {path} already exists; refusing to overwrite it (remove it first if you mean to replace the key on every node)"
    )]
    Exists { path: PathBuf },
}

/// A signing method with its key.
#[derive(Clone)]
pub struct Auth {
    pub algorithm: AuthAlgorithm,
    key: Vec<u8>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Auth")
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl Auth {
    pub fn new(algorithm: AuthAlgorithm, key: Vec<u8>) -> Result<Auth, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Auth { algorithm, key })
    }

    pub fn tag_len(&self) -> usize {
        self.algorithm.tag_len()
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        match self.algorithm {
            AuthAlgorithm::HmacSha256 => mac::<Hmac<sha2::Sha256>>(&self.key, data),
            AuthAlgorithm::HmacSha1 => mac::<Hmac<sha1::Sha1>>(&self.key, data),
            AuthAlgorithm::HmacMd5 => mac::<Hmac<md5::Md5>>(&self.key, data),
            AuthAlgorithm::Crc => crc32c::crc32c(data).to_be_bytes().to_vec(),
        }
    }

    /// Constant time for the HMACs, so timing tells an attacker nothing.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        match self.algorithm {
            AuthAlgorithm::HmacSha256 => verify::<Hmac<sha2::Sha256>>(&self.key, data, tag),
            AuthAlgorithm::HmacSha1 => verify::<Hmac<sha1::Sha1>>(&self.key, data, tag),
            AuthAlgorithm::HmacMd5 => verify::<Hmac<md5::Md5>>(&self.key, data, tag),
            AuthAlgorithm::Crc => self.sign(data) == tag,
        }
    }
}

fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    match <M as KeyInit>::new_from_slice(key) {
        Ok(m) => m.chain_update(data).finalize().into_bytes().to_vec(),
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => Vec::new(),
    }
}

fn verify<M: Mac + KeyInit>(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    match <M as KeyInit>::new_from_slice(key) {
        Ok(m) => m.chain_update(data).verify_slice(tag).is_ok(),
        Err(_) => false,
    }
}

/// Reads a key file: its bytes, trailing whitespace trimmed. Like
/// Heartbeat's authkeys, a file others can read is refused.
pub fn load_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut key = std::fs::read(path).map_err(io)?;
    while key.last().is_some_and(|b| b.is_ascii_whitespace()) {
        key.pop();
    }
    if key.is_empty() {
        return Err(KeyError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(key)
}

/// Writes a new random key: 32 random bytes as 64 hex digits, mode 0600,
/// never over an existing file.
pub fn generate_key_file(path: &Path) -> Result<(), KeyError> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let mut text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_path_buf(),
            },
            _ => KeyError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("duet-auth-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for alg in AuthAlgorithm::ALL {
            let a = Auth::new(alg, b"secret".to_vec()).expect("key");
            let tag = a.sign(b"data");
            assert_eq!(tag.len(), alg.tag_len(), "{alg:?}");
            assert!(a.verify(b"data", &tag));
            assert!(!a.verify(b"datb", &tag));
            assert!(!a.verify(b"data", &tag[1..]));
            let other = Auth::new(alg, b"secreT".to_vec()).expect("key");
            if alg != AuthAlgorithm::Crc {
                assert!(!other.verify(b"data", &tag), "{alg:?} ignores the key");
            }
        }
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        let a = Auth::new(AuthAlgorithm::HmacSha256, b"Jefe".to_vec()).expect("key");
        let tag = a.sign(b"what do ya want for nothing?");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn empty_key_refused() {
        assert!(matches!(
            Auth::new(AuthAlgorithm::HmacSha256, vec![]),
            Err(KeyError::Empty)
        ));
    }

    #[test]
    fn key_files_must_be_private() {
        let dir = TempDir::new("perm");
        let path = dir.0.join("key");
        std::fs::write(&path, "sesame\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_key_file(&path).expect_err("0644 accepted");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(load_key_file(&path).expect("0600 refused"), b"sesame");
        std::fs::write(&path, "\n \n").expect("write");
        assert!(matches!(
            load_key_file(&path),
            Err(KeyError::EmptyFile { .. })
        ));
        assert!(matches!(
            load_key_file(&dir.0.join("none")),
            Err(KeyError::Io { .. })
        ));
    }

    #[test]
    fn keygen_writes_a_private_random_key_once() {
        let dir = TempDir::new("gen");
        let path = dir.0.join("duet.key");
        generate_key_file(&path).expect("keygen");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = load_key_file(&path).expect("load");
        assert_eq!(key.len(), 64);
        assert!(key.iter().all(|b| b.is_ascii_hexdigit()));
        let before = std::fs::read(&path).expect("read");
        assert!(matches!(
            generate_key_file(&path),
            Err(KeyError::Exists { .. })
        ));
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "key overwritten"
        );
        let second = dir.0.join("other.key");
        generate_key_file(&second).expect("keygen");
        assert_ne!(load_key_file(&second).expect("load"), key, "keys repeat");
    }
}
