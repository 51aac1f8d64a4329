//! The dirty bitmap: one bit per block (4 KiB by default) of the replica,
//! set for every block written while the peer could not confirm it. A
//! resync copies exactly the set blocks. Pure and in memory; it is stored
//! in the metadata area as little-endian 64-bit words.

/// Dirty blocks of a device of `size` bytes at `granularity` bytes a bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBitmap {
    words: Vec<u64>,
    granularity: u64,
    size: u64,
    /// Set bits, kept so progress and out-of-sync figures are O(1).
    count: u64,
}

impl DirtyBitmap {
    pub fn new(size: u64, granularity: u32) -> DirtyBitmap {
        let g = u64::from(granularity.max(1));
        let bits = size.div_ceil(g);
        DirtyBitmap {
            words: vec![0; bits.div_ceil(64) as usize],
            granularity: g,
            size,
            count: 0,
        }
    }

    pub fn bits(&self) -> u64 {
        self.size.div_ceil(self.granularity)
    }

    /// Blocks touched by [offset, offset + len), clipped to the device.
    fn blocks(&self, offset: u64, len: u64) -> std::ops::Range<u64> {
        let end = offset.saturating_add(len).min(self.size);
        if len == 0 || offset >= end {
            return 0..0;
        }
        offset / self.granularity..end.div_ceil(self.granularity)
    }

    fn set(&mut self, bit: u64, on: bool) {
        let (w, m) = ((bit / 64) as usize, 1u64 << (bit % 64));
        let was = self.words[w] & m != 0;
        if was != on {
            self.words[w] ^= m;
            if on {
                self.count += 1;
            } else {
                self.count -= 1;
            }
        }
    }

    pub fn is_dirty(&self, bit: u64) -> bool {
        self.words
            .get((bit / 64) as usize)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// Marks every block the write touches, partly or wholly.
    pub fn mark(&mut self, offset: u64, len: u64) {
        for b in self.blocks(offset, len) {
            self.set(b, true);
        }
    }

    /// Clears the blocks a completed sync copied whole. A block only partly
    /// covered stays dirty: erring toward syncing more, never less.
    pub fn clear(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size);
        let first = offset.div_ceil(self.granularity);
        // The last block counts as whole if the range reaches the device end.
        let last = if end == self.size {
            self.bits()
        } else {
            end / self.granularity
        };
        for b in first..last {
            self.set(b, false);
        }
    }

    pub fn dirty_blocks(&self) -> u64 {
        self.count
    }

    /// Bytes out of sync (the last block counted only as far as the device).
    pub fn dirty_bytes(&self) -> u64 {
        let bits = self.bits();
        let tail = self.size - (bits.saturating_sub(1)) * self.granularity;
        let last_dirty = bits > 0 && self.is_dirty(bits - 1);
        self.count * self.granularity
            - if last_dirty {
                self.granularity - tail
            } else {
                0
            }
    }

    /// The first run of dirty blocks at or after byte `from`, as a byte
    /// range (offset, length), at most `max` bytes long.
    pub fn next_dirty(&self, from: u64, max: u64) -> Option<(u64, u64)> {
        let bits = self.bits();
        let mut b = from.div_ceil(self.granularity);
        while b < bits {
            let word = self.words[(b / 64) as usize] >> (b % 64);
            if word == 0 {
                b = (b / 64 + 1) * 64;
                continue;
            }
            b += u64::from(word.trailing_zeros());
            break;
        }
        if b >= bits {
            return None;
        }
        let start = b;
        let limit = max.max(self.granularity).div_ceil(self.granularity);
        let mut end = start;
        while end < bits && end - start < limit && self.is_dirty(end) {
            end += 1;
        }
        let offset = start * self.granularity;
        Some((offset, (end * self.granularity).min(self.size) - offset))
    }

    /// The words as stored (bit i of word w is block 64 w + i).
    pub fn to_words(&self) -> Vec<u64> {
        self.words.clone()
    }

    /// Merges the peer's bits (from a bitmap exchange); words past the
    /// end and bits past the device are ignored.
    pub fn or_words(&mut self, first_word: u64, words: &[u64]) {
        let bits = self.bits();
        for (i, w) in words.iter().enumerate() {
            let Some(base) = first_word
                .checked_add(i as u64)
                .and_then(|a| a.checked_mul(64))
            else {
                break;
            };
            let mut w = *w;
            while w != 0 {
                let bit = base + u64::from(w.trailing_zeros());
                w &= w - 1;
                if bit < bits {
                    self.set(bit, true);
                }
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Reads a stored bitmap; bits past the device's end are ignored.
    pub fn from_bytes(size: u64, granularity: u32, bytes: &[u8]) -> DirtyBitmap {
        let mut bm = DirtyBitmap::new(size, granularity);
        for (i, chunk) in bytes.chunks(8).take(bm.words.len()).enumerate() {
            let mut a = [0u8; 8];
            a[..chunk.len()].copy_from_slice(chunk);
            bm.words[i] = u64::from_le_bytes(a);
        }
        let bits = bm.bits();
        if !bits.is_multiple_of(64)
            && let Some(last) = bm.words.last_mut()
        {
            *last &= (1u64 << (bits % 64)) - 1;
        }
        bm.count = bm.words.iter().map(|w| u64::from(w.count_ones())).sum();
        bm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::SplitMix64;

    /// The obvious model: a bool per block.
    fn model_mark(m: &mut [bool], g: u64, size: u64, off: u64, len: u64) {
        let end = (off + len).min(size);
        if len == 0 || off >= end {
            return;
        }
        for b in off / g..end.div_ceil(g) {
            m[b as usize] = true;
        }
    }

    #[test]
    fn matches_a_bool_per_block_model() {
        let mut rng = SplitMix64(17);
        for _ in 0..200 {
            let g = [512u32, 4096, 65536][rng.below(3) as usize];
            let size = 1 + rng.below(3 << 20);
            let mut bm = DirtyBitmap::new(size, g);
            let mut model = vec![false; bm.bits() as usize];
            let g64 = u64::from(g);
            for _ in 0..50 {
                let off = rng.below(size + g64);
                let len = rng.below(4 * g64);
                if rng.chance(70) {
                    bm.mark(off, len);
                    model_mark(&mut model, g64, size, off, len);
                } else {
                    bm.clear(off, len);
                    let end = (off + len).min(size);
                    let last = if end == size {
                        model.len() as u64
                    } else {
                        end / g64
                    };
                    for b in off.div_ceil(g64)..last {
                        model[b as usize] = false;
                    }
                }
                let count = model.iter().filter(|x| **x).count() as u64;
                assert_eq!(bm.dirty_blocks(), count);
                // Walking the runs visits exactly the dirty blocks.
                let mut seen = vec![false; model.len()];
                let mut at = 0;
                while let Some((o, l)) = bm.next_dirty(at, 8 * g64) {
                    assert!(l > 0 && l <= 8 * g64 && o + l <= size);
                    for b in o / g64..(o + l).div_ceil(g64) {
                        seen[b as usize] = true;
                    }
                    at = o + l;
                }
                assert_eq!(seen, model);
                let back = DirtyBitmap::from_bytes(size, g, &bm.to_bytes());
                assert_eq!(back, bm);
            }
        }
    }

    #[test]
    fn partial_blocks_stay_dirty_and_bytes_count_to_the_end() {
        let mut bm = DirtyBitmap::new(10_000, 4096);
        bm.mark(100, 1);
        assert_eq!(bm.dirty_blocks(), 1);
        bm.clear(0, 4095);
        assert_eq!(
            bm.dirty_blocks(),
            1,
            "a partial clear must not lose a dirty block"
        );
        bm.clear(0, 4096);
        assert_eq!(bm.dirty_blocks(), 0);
        bm.mark(9_999, 1);
        assert_eq!(bm.dirty_bytes(), 10_000 - 8192, "the short last block");
        bm.clear(8192, 10_000);
        assert_eq!(
            bm.dirty_blocks(),
            0,
            "a range to the end clears the short block"
        );
        assert_eq!(bm.next_dirty(0, 1 << 20), None);
    }

    #[test]
    fn stored_garbage_past_the_end_is_ignored() {
        let bm = DirtyBitmap::from_bytes(4096 * 3, 4096, &[0xff; 16]);
        assert_eq!(bm.dirty_blocks(), 3);
        assert_eq!(DirtyBitmap::from_bytes(4096, 4096, &[]).dirty_blocks(), 0);
    }
}
