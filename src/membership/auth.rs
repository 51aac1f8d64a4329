//! Packet authentication: HMAC over the whole packet under the cluster key.
//!
//! HMAC-SHA256 is the default. HMAC-SHA1 and HMAC-MD5 exist only so that a
//! key imported from a classic Heartbeat authkeys file keeps working; crc is
//! no authentication at all and is accepted only with an explicit insecure
//! opt-in in the config.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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
        "key file {path} is accessible by group or others (mode {mode:04o}); anyone who reads it can pose as this node: chmod 600 {path}"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "key file {path} belongs to uid {owner}, not to uid {expected} that duetd runs as; whoever owns it can change it: chown {expected} {path}"
    )]
    Owner {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
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

/// Reads a key file: its bytes, trailing newlines, carriage returns and
/// spaces trimmed (editors add them; nobody means them as key material).
/// Like Heartbeat's authkeys, a file group or others can read or write is
/// refused: a readable key lets anyone on the link join the cluster, a
/// writable one lets them replace it. So is a file another user owns
/// (root's, for duetd): its owner can change its mode or content at will.
pub fn load_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let me = nix::unistd::geteuid().as_raw();
    let mut key = read_private_file(path, Some(me))?;
    while key
        .last()
        .is_some_and(|b| matches!(b, b'\n' | b'\r' | b' '))
    {
        key.pop();
    }
    if key.is_empty() {
        return Err(KeyError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(key)
}

/// Reads a secret file as it is (a private key in PEM, say) after the
/// checks a key file gets: no access for group or others, and with
/// `owner`, owned by that uid (whoever owns a file can change its mode).
pub fn read_private_file(path: &Path, owner: Option<u32>) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Mode and content come from the same open file, so a file swapped in
    // between the check and the read cannot slip through.
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if let Some(expected) = owner
        && meta.uid() != expected
    {
        return Err(KeyError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            expected,
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// Writes a new random key: 32 random bytes as 64 lowercase hex digits and
/// a newline, mode 0600, never over an existing file (overwriting the key
/// of a running cluster would cut this node off from its peers).
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
        .map_err(|source| {
            // A half-written key would be loaded as a valid but different
            // key, and would make the next keygen refuse: remove it.
            let _ = std::fs::remove_file(path);
            KeyError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testkit::TempDir;

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

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Published test vectors, so a wrong hash or byte order is caught and
    /// not just a change of our own output.
    #[test]
    fn tags_match_published_vectors() {
        let data = b"what do ya want for nothing?";
        let cases = [
            // RFC 4231 case 2
            (
                AuthAlgorithm::HmacSha256,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            // RFC 2202 case 2 (SHA-1 and MD5)
            (
                AuthAlgorithm::HmacSha1,
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (AuthAlgorithm::HmacMd5, "750c783e6ab0b503eaa86e310a5db738"),
        ];
        for (alg, want) in cases {
            let a = Auth::new(alg, b"Jefe".to_vec()).expect("key");
            assert_eq!(hex(&a.sign(data)), want, "{alg:?}");
        }
        // The CRC-32C check value, big-endian on the wire.
        let crc = Auth::new(AuthAlgorithm::Crc, b"unused".to_vec()).expect("key");
        assert_eq!(crc.sign(b"123456789"), [0xe3, 0x06, 0x92, 0x83]);
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
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = load_key_file(&path).expect_err("open key accepted");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{mode:o}: {msg}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(
                load_key_file(&path).expect("private key refused"),
                b"sesame"
            );
        }
    }

    #[test]
    fn private_files_may_need_an_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = TempDir::new("owner");
        let path = dir.0.join("key.pem");
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mine = std::fs::metadata(&path).expect("meta").uid();
        // Read as it is: nothing trimmed.
        assert_eq!(
            read_private_file(&path, Some(mine)).expect("own file refused"),
            b"-----BEGIN PRIVATE KEY-----\n"
        );
        let other = mine.wrapping_add(1);
        let err = read_private_file(&path, Some(other)).expect_err("owner not checked");
        assert!(matches!(err, KeyError::Owner { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("chown {other} {}", path.display())),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = read_private_file(&path, Some(mine)).expect_err("open key accepted");
        assert!(matches!(err, KeyError::Permissions { .. }), "{err}");
    }

    #[test]
    fn key_file_trailing_whitespace_is_trimmed_and_nothing_else() {
        let dir = TempDir::new("trim");
        let path = dir.0.join("key");
        let write = |text: &[u8]| {
            let _ = std::fs::remove_file(&path);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(text))
                .expect("write");
        };
        write(b"sesame\r\n \n");
        assert_eq!(load_key_file(&path).expect("load"), b"sesame");
        // Inner and leading whitespace, and a tab, are key material.
        write(b" open sesame\t\n");
        assert_eq!(load_key_file(&path).expect("load"), b" open sesame\t");
        write(b"\n \r\n");
        let err = load_key_file(&path).expect_err("blank key accepted");
        assert!(matches!(err, KeyError::EmptyFile { .. }));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        let missing = dir.0.join("none");
        let err = load_key_file(&missing).expect_err("missing file accepted");
        assert!(matches!(err, KeyError::Io { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        for alg in AuthAlgorithm::ALL {
            let auth = Auth::new(alg, b"s3cr3t-k3y".to_vec()).expect("auth");
            let shown = format!("{auth:?} {auth:#?}");
            assert!(shown.contains("algorithm"), "{shown}");
            for leak in ["s3cr3t", "73 33 63", "115, 51, 99", "7333637233"] {
                assert!(!shown.contains(leak), "{shown}");
            }
        }
    }

    #[test]
    fn a_key_file_another_user_owns_is_refused() {
        let dir = TempDir::new("keyowner");
        let path = dir.0.join("duet.key");
        generate_key_file(&path).expect("keygen");
        assert!(load_key_file(&path).is_ok(), "own key refused");
        // Tests run as root (the lab needs it); a file of nobody's:
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&path, Some(nobody), None).expect("chown (tests run as root)");
        let err = load_key_file(&path).expect_err("a key nobody owns was accepted");
        assert!(matches!(err, KeyError::Owner { owner: 65534, .. }), "{err}");
        assert!(err.to_string().contains("chown 0 "), "{err}");
    }

    #[test]
    fn keygen_writes_a_private_random_key_once() {
        let dir = TempDir::new("gen");
        let path = dir.0.join("duet.key");
        generate_key_file(&path).expect("keygen");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read(&path).expect("read");
        assert_eq!(text.len(), 65);
        assert_eq!(text.last(), Some(&b'\n'));
        let key = load_key_file(&path).expect("load");
        assert_eq!(key.len(), 64);
        assert!(key.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let before = std::fs::read(&path).expect("read");
        let err = generate_key_file(&path).expect_err("overwrote a key");
        assert!(matches!(err, KeyError::Exists { .. }));
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
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
