//! Packet authentication: HMAC over the whole packet under the cluster key.
//!
//! HMAC-SHA256 is the default. HMAC-SHA1 and HMAC-MD5 exist only so that a
//! key imported from a classic Heartbeat authkeys file keeps working; crc is
//! no authentication at all and is accepted only with an explicit insecure
//! opt-in in the config.

use serde::Deserialize;

/// The signing method named in the config (`cluster.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthAlgorithm {
    #[default]
    HmacSha256,
    HmacSha1,
    HmacMd5,
    Crc,
}

/// A signing method with its key.
pub struct Auth {
    pub algorithm: AuthAlgorithm,
    key: Vec<u8>,
}
