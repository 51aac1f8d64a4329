//! Helpers for deterministic tests (the simulation, randomised unit
//! tests). Not part of duet's API.

/// SplitMix64: tiny, seedable, and the same on every platform and version,
/// so a failing seed replays exactly.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough below `n` (n > 0) for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// `count` variants of `base`, each with one to three characters dropped,
/// doubled, or replaced by one of `tricky`, for tests that a parser of
/// outside text never panics. Seeded: the same texts on every run.
pub fn mutations(base: &str, tricky: &[char], seed: u64, count: usize) -> Vec<String> {
    let chars: Vec<char> = base.chars().collect();
    let mut rng = SplitMix64(seed);
    (0..count)
        .map(|_| {
            let mut text = chars.clone();
            for _ in 0..=rng.below(3) {
                if text.is_empty() {
                    break;
                }
                let at = rng.below(text.len() as u64) as usize;
                match rng.below(3) {
                    0 => {
                        text.remove(at);
                    }
                    1 => text.insert(at, text[at]),
                    _ => text[at] = tricky[rng.below(tricky.len() as u64) as usize],
                }
            }
            text.into_iter().collect()
        })
        .collect()
}

/// The bytes of the first ```hexdump block of a document (lines of
/// "offset: hex bytes | ascii"), for tests that check a doc's example
/// against the encoder.
pub fn hexdump_block(doc: &str) -> Vec<u8> {
    hexdump_block_at(doc, 0)
}

/// The bytes of the document's `index`th hexdump block (from 0).
pub fn hexdump_block_at(doc: &str, index: usize) -> Vec<u8> {
    let block = doc
        .split("```hexdump\n")
        .nth(index + 1)
        .and_then(|rest| rest.split("```").next())
        .expect("the document has a ```hexdump block");
    let mut bytes = Vec::new();
    for line in block.lines() {
        let (_, rest) = line.split_once(": ").expect("offset");
        let hex = rest.split('|').next().expect("bytes");
        for byte in hex.split_whitespace() {
            bytes.push(u8::from_str_radix(byte, 16).expect("hex byte"));
        }
    }
    bytes
}

/// A folder of its own under the system's temporary folder, removed with
/// everything in it when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("duet-{tag}-{}", std::process::id()));
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
