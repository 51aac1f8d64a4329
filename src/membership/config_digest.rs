//! The heartbeat extension record of the config digest (docs/wire.md,
//! "Extension records"), type 6: a fingerprint of the config the sender
//! runs with, so that every node can say whose file differs from its own.
//! It rides in every heartbeat; other decoders skip it and it skips them.

use crate::membership::wire::{DropReason, Reader, records};

/// Record type of the config digest.
pub const RECORD_CONFIG: u8 = 6;

/// The record's bytes, header included.
pub fn encode(digest: u64) -> Vec<u8> {
    let mut out = vec![RECORD_CONFIG];
    out.extend_from_slice(&8u16.to_be_bytes());
    out.extend_from_slice(&digest.to_be_bytes());
    out
}

/// The digest in extension bytes, if they hold one; two, or one of
/// another length, are malformed.
pub fn decode(ext: &[u8]) -> Result<Option<u64>, DropReason> {
    let mut found = None;
    for record in records(ext) {
        let (kind, body) = record?;
        if kind != RECORD_CONFIG {
            continue;
        }
        let mut b = Reader::new(body);
        let digest = b.u64()?;
        if b.remaining() != 0 || found.replace(digest).is_some() {
            return Err(DropReason::Malformed);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_beside_other_records() {
        let mut ext = vec![9, 0, 2, 0xaa, 0xbb];
        ext.extend_from_slice(&encode(0x0102_0304_0506_0708));
        assert_eq!(decode(&ext), Ok(Some(0x0102_0304_0506_0708)));
        assert_eq!(decode(&[]), Ok(None));
    }

    #[test]
    fn two_or_a_wrong_length_are_malformed() {
        let mut two = encode(1);
        two.extend_from_slice(&encode(2));
        assert_eq!(decode(&two), Err(DropReason::Malformed));
        let short = [RECORD_CONFIG, 0, 4, 1, 2, 3, 4];
        assert!(decode(&short).is_err());
        let long = [RECORD_CONFIG, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 2];
        assert_eq!(decode(&long), Err(DropReason::Malformed));
    }
}
