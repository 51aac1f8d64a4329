//! The config's fingerprint, which every node announces in its heartbeats
//! so that a file that differs between nodes shows (the classic advice
//! "keep the files identical" made a check).

use std::path::Path;

use sha2::{Digest, Sha256};

/// The first 8 bytes of SHA-256 over the settings as canonical JSON: keys
/// sorted, comments, layout and the order of tables ignored. `None` for
/// text that is not TOML.
pub fn of_text(text: &str) -> Option<u64> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let canonical: serde_json::Value = serde_json::to_value(table).ok()?;
    let hash = Sha256::digest(canonical.to_string().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    Some(u64::from_be_bytes(first))
}

/// The digest of the file duetd runs with; `None` when it cannot be read.
pub fn of_file(path: &Path) -> Option<u64> {
    of_text(&std::fs::read_to_string(path).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_comments_do_not_count_settings_do() {
        let a = "[cluster]\nname = \"lab\"\nkey-file = \"k\"\n\n[timings]\ndeadtime = \"2s\"\n";
        let b = "# the lab\n[timings]\ndeadtime   =   \"2s\" # short\n[cluster]\nkey-file = \"k\"\nname = \"lab\"\n";
        let c = "[cluster]\nname = \"lab\"\nkey-file = \"k\"\n\n[timings]\ndeadtime = \"3s\"\n";
        assert_eq!(of_text(a), of_text(b));
        assert_ne!(of_text(a), of_text(c));
        assert!(of_text(a).is_some());
        assert_eq!(of_text("not = = toml"), None);
    }
}
