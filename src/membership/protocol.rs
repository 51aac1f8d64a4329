//! Protocol versions (docs/wire.md, "Rolling upgrade"): the range of
//! versions a build speaks, and extension record 7 in which every node
//! announces it, with its software version, so that a cluster running two
//! builds side by side knows what each node speaks. One number covers the
//! heartbeat's records and the replication link: version 2 adds the echo
//! record (round-trip times) and a replication handshake that negotiates
//! and authenticates its version; version 3 MACs the replication frames
//! with AEGIS instead of BLAKE3. A node that announces nothing is a build
//! of version 1, which knew no record 7.

use crate::membership::wire::{DropReason, Reader, records};

/// Record type of the protocol announcement.
pub const RECORD_PROTOCOL: u8 = 7;
/// Software version strings on the wire are cut to this many bytes.
pub const MAX_SOFTWARE: usize = 32;

/// The versions a node speaks, lowest and highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolRange {
    pub min: u16,
    pub max: u16,
}

impl ProtocolRange {
    /// What this build speaks.
    pub const BUILD: ProtocolRange = ProtocolRange { min: 1, max: 3 };
    /// What a node that announces nothing speaks: the first version.
    pub const FIRST: ProtocolRange = ProtocolRange { min: 1, max: 1 };

    /// What this build speaks on this machine: `BUILD`, or at most
    /// version 2 on a CPU without AES instructions. Version 3's frame MAC
    /// (AEGIS) would run there on table-based software AES: slower than
    /// version 2's BLAKE3, and its table lookups leak timing.
    pub fn native() -> ProtocolRange {
        Self::for_cpu(cpu_has_aes())
    }

    fn for_cpu(aes: bool) -> ProtocolRange {
        if aes {
            Self::BUILD
        } else {
            ProtocolRange {
                min: Self::BUILD.min,
                max: Self::BUILD.max.min(2),
            }
        }
    }

    /// The highest version both speak, if any.
    pub fn common(self, other: ProtocolRange) -> Option<u16> {
        let top = self.max.min(other.max);
        (top >= self.min.max(other.min)).then_some(top)
    }

    /// `2` or `1-3`, as the hidden `--protocol-versions` flag of duetd
    /// takes it (it makes a build speak as an older or newer one, for
    /// tests of rolling upgrades).
    pub fn parse(text: &str) -> Result<ProtocolRange, String> {
        let number = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| format!("{s:?} is not a protocol version (1, 2, ...)"))
        };
        let (min, max) = match text.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(text)?, number(text)?),
        };
        if min > max {
            return Err(format!(
                "protocol versions {min}-{max}: the lowest comes first"
            ));
        }
        Ok(ProtocolRange { min, max })
    }
}

/// Whether the CPU has AES instructions (AES-NI, ARMv8 AES).
pub fn cpu_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl std::fmt::Display for ProtocolRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// What a node says of itself in record 7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub range: ProtocolRange,
    /// Its software version (`duetd --version`), for people.
    pub software: String,
}

impl Announcement {
    /// This build's.
    pub fn of_build() -> Announcement {
        Announcement {
            range: ProtocolRange::BUILD,
            software: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The record's bytes, header included: min (u16), max (u16), software
/// version length (u8) and UTF-8 bytes.
pub fn encode(a: &Announcement) -> Vec<u8> {
    let mut end = a.software.len().min(MAX_SOFTWARE);
    while !a.software.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = vec![RECORD_PROTOCOL];
    out.extend_from_slice(&(5 + end as u16).to_be_bytes());
    out.extend_from_slice(&a.range.min.to_be_bytes());
    out.extend_from_slice(&a.range.max.to_be_bytes());
    out.push(end as u8);
    out.extend_from_slice(&a.software.as_bytes()[..end]);
    out
}

/// The announcement in extension bytes, if they hold one. Two, a range
/// that starts at 0 or runs backwards, or a length that does not add up
/// are malformed.
pub fn decode(ext: &[u8]) -> Result<Option<Announcement>, DropReason> {
    let mut found = None;
    for record in records(ext) {
        let (kind, body) = record?;
        if kind != RECORD_PROTOCOL {
            continue;
        }
        let mut r = Reader::new(body);
        let (min, max) = (r.u16()?, r.u16()?);
        let len = usize::from(r.u8()?);
        let software = std::str::from_utf8(r.take(len)?).map_err(|_| DropReason::Malformed)?;
        if r.remaining() != 0 || min == 0 || min > max || len > MAX_SOFTWARE {
            return Err(DropReason::Malformed);
        }
        let a = Announcement {
            range: ProtocolRange { min, max },
            software: software.to_string(),
        };
        if found.replace(a).is_some() {
            return Err(DropReason::Malformed);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(min: u16, max: u16, software: &str) -> Announcement {
        Announcement {
            range: ProtocolRange { min, max },
            software: software.into(),
        }
    }

    #[test]
    fn round_trip_beside_other_records() {
        let mut ext = vec![9, 0, 2, 0xaa, 0xbb];
        ext.extend_from_slice(&encode(&a(1, 2, "0.1.0")));
        assert_eq!(decode(&ext), Ok(Some(a(1, 2, "0.1.0"))));
        assert_eq!(decode(&[]), Ok(None));
        let long = "x".repeat(40);
        assert_eq!(
            decode(&encode(&a(2, 3, &long))),
            Ok(Some(a(2, 3, &long[..MAX_SOFTWARE])))
        );
    }

    #[test]
    fn the_documented_example() {
        let bytes = [7, 0, 0x0a, 0, 1, 0, 2, 5, b'0', b'.', b'1', b'.', b'0'];
        assert_eq!(encode(&a(1, 2, "0.1.0")), bytes);
    }

    #[test]
    fn bad_ranges_lengths_and_doubles_are_malformed() {
        for bad in [a(0, 1, ""), a(3, 2, "")] {
            assert_eq!(decode(&encode(&bad)), Err(DropReason::Malformed));
        }
        let mut two = encode(&a(1, 2, ""));
        two.extend_from_slice(&encode(&a(1, 2, "")));
        assert_eq!(decode(&two), Err(DropReason::Malformed));
        let mut short = encode(&a(1, 2, "abc"));
        short[2] -= 1;
        assert!(decode(&short).is_err());
        let not_utf8 = [RECORD_PROTOCOL, 0, 6, 0, 1, 0, 2, 1, 0xff];
        assert_eq!(decode(&not_utf8), Err(DropReason::Malformed));
    }

    #[test]
    fn the_common_version_is_the_highest_both_speak() {
        let r = |min, max| ProtocolRange { min, max };
        assert_eq!(ProtocolRange::BUILD.common(ProtocolRange::FIRST), Some(1));
        assert_eq!(r(1, 2).common(r(1, 3)), Some(2));
        assert_eq!(r(2, 3).common(r(1, 1)), None);
        assert_eq!(r(3, 3).common(r(1, 2)), None);
    }

    #[test]
    fn a_cpu_without_aes_speaks_at_most_version_2() {
        assert_eq!(ProtocolRange::for_cpu(true), ProtocolRange::BUILD);
        assert_eq!(
            ProtocolRange::for_cpu(false),
            ProtocolRange { min: 1, max: 2 }
        );
        assert_eq!(
            ProtocolRange::native(),
            ProtocolRange::for_cpu(cpu_has_aes())
        );
    }

    #[test]
    fn the_flag_takes_one_version_or_a_range() {
        assert_eq!(ProtocolRange::parse("1"), Ok(ProtocolRange::FIRST));
        assert_eq!(ProtocolRange::parse("1-3"), Ok(ProtocolRange::BUILD));
        assert_eq!(
            ProtocolRange::parse("2"),
            Ok(ProtocolRange { min: 2, max: 2 })
        );
        for bad in ["0", "2-1", "x", "", "1-"] {
            assert!(ProtocolRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ProtocolRange::BUILD.to_string(), "1-3");
        assert_eq!(ProtocolRange::FIRST.to_string(), "1");
    }
}
