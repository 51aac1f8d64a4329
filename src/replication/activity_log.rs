//! The activity log: the extents (4 MiB) the primary is writing to, kept on
//! disk so that after a crash of the primary only those extents are
//! resynced, not the whole device. A data write may start only once its
//! extent is in the log on disk; the log is written when the set of hot
//! extents changes (once per extent change, not per data write).
//!
//! Each log transaction is one 4 KiB block holding the whole active set,
//! written round-robin over the log's slots; recovery takes the valid
//! block with the highest sequence number. A torn write leaves the previous
//! transaction, whose set still covers every write that was allowed to
//! start. Pure: the caller writes the blocks and waits for them.

pub const BLOCK: usize = 4096;
const MAGIC: &[u8; 8] = b"DUETALOG";
const HEADER: usize = 8 + 8 + 4;
/// Extents per transaction: what fits in a block after header and crc.
pub const CAPACITY: usize = (BLOCK - HEADER - 4) / 8;

/// An extent number: byte offset / extent size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent(pub u64);

/// A log block to write (and wait for) before the write that needed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub seq: u64,
    pub extents: Vec<Extent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// The extent is already in the log on disk: write at once.
    Go,
    /// Write this transaction first, then the data.
    Log(Transaction),
    /// Every slot holds an extent with writes in flight: wait for one to end.
    Wait,
}

#[derive(Debug, Clone)]
struct Slot {
    extent: Extent,
    in_flight: u32,
    last_use: u64,
}

#[derive(Debug, Clone)]
pub struct ActivityLog {
    capacity: usize,
    slots: Vec<Slot>,
    seq: u64,
    clock: u64,
}

impl ActivityLog {
    /// `capacity` extents at most (at most `CAPACITY`); `seq` continues
    /// from the recovered log.
    pub fn new(capacity: usize, seq: u64) -> ActivityLog {
        ActivityLog {
            capacity: capacity.clamp(1, CAPACITY),
            slots: Vec::new(),
            seq,
            clock: 0,
        }
    }

    /// A write to `extent` wants to start.
    pub fn begin(&mut self, extent: Extent) -> Admit {
        self.clock += 1;
        if let Some(s) = self.slots.iter_mut().find(|s| s.extent == extent) {
            s.in_flight += 1;
            s.last_use = self.clock;
            return Admit::Go;
        }
        if self.slots.len() >= self.capacity {
            // Evict the least recently used idle extent: all its writes
            // are complete, so a crash cannot leave it different.
            let idle = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.in_flight == 0)
                .min_by_key(|(_, s)| s.last_use)
                .map(|(i, _)| i);
            let Some(i) = idle else {
                return Admit::Wait;
            };
            self.slots.swap_remove(i);
        }
        self.slots.push(Slot {
            extent,
            in_flight: 1,
            last_use: self.clock,
        });
        self.seq += 1;
        Admit::Log(Transaction {
            seq: self.seq,
            extents: self.extents(),
        })
    }

    /// Whether every one of a write's `extents` can begin now, once those
    /// in the log already have: a write takes all its extents or none, or
    /// two writes could each hold one and wait for the other forever.
    pub fn room_for(&self, extents: &[Extent]) -> bool {
        let logged = |e: &Extent| self.slots.iter().any(|s| s.extent == *e);
        let new = extents.iter().filter(|e| !logged(e)).count();
        let idle = self
            .slots
            .iter()
            .filter(|s| s.in_flight == 0 && !extents.contains(&s.extent))
            .count();
        new <= self.capacity - self.slots.len() + idle
    }

    /// Whether `extent` is in the log (in memory).
    pub fn contains(&self, extent: Extent) -> bool {
        self.slots.iter().any(|s| s.extent == extent)
    }

    /// A write to `extent` completed (on every disk the protocol waits for).
    pub fn end(&mut self, extent: Extent) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.extent == extent) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }

    pub fn extents(&self) -> Vec<Extent> {
        let mut e: Vec<Extent> = self.slots.iter().map(|s| s.extent).collect();
        e.sort();
        e
    }
}

impl Transaction {
    pub fn encode(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        let n = self.extents.len().min(CAPACITY);
        b[16..20].copy_from_slice(&(n as u32).to_le_bytes());
        for (i, e) in self.extents.iter().take(n).enumerate() {
            let at = HEADER + i * 8;
            b[at..at + 8].copy_from_slice(&e.0.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..BLOCK - 4]);
        b[BLOCK - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// None for anything but an intact transaction block.
    pub fn decode(b: &[u8]) -> Option<Transaction> {
        if b.len() != BLOCK || &b[..8] != MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes([b[BLOCK - 4], b[BLOCK - 3], b[BLOCK - 2], b[BLOCK - 1]]);
        if crc32c::crc32c(&b[..BLOCK - 4]) != crc {
            return None;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[8..16]);
        let n = u32::from_le_bytes([b[16], b[17], b[18], b[19]]) as usize;
        if n > CAPACITY {
            return None;
        }
        let extents = (0..n)
            .map(|i| {
                let mut e = [0u8; 8];
                e.copy_from_slice(&b[HEADER + i * 8..HEADER + i * 8 + 8]);
                Extent(u64::from_le_bytes(e))
            })
            .collect();
        Some(Transaction {
            seq: u64::from_le_bytes(seq),
            extents,
        })
    }
}

/// Where transaction `seq` goes among `slots` log blocks.
pub fn slot_of(seq: u64, slots: usize) -> usize {
    (seq % slots.max(1) as u64) as usize
}

/// The newest intact transaction of the log's blocks: the extents to
/// resync after a crash of the primary, and the sequence to continue from.
pub fn recover<'a>(blocks: impl IntoIterator<Item = &'a [u8]>) -> Option<Transaction> {
    blocks
        .into_iter()
        .filter_map(Transaction::decode)
        .max_by_key(|t| t.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::SplitMix64;
    use std::collections::BTreeSet;

    #[test]
    fn a_hot_extent_is_logged_once() {
        let mut al = ActivityLog::new(4, 0);
        assert!(matches!(al.begin(Extent(7)), Admit::Log(t) if t.extents == [Extent(7)]));
        assert_eq!(al.begin(Extent(7)), Admit::Go);
        al.end(Extent(7));
        al.end(Extent(7));
        assert_eq!(al.begin(Extent(7)), Admit::Go);
    }

    #[test]
    fn a_full_log_evicts_the_coldest_idle_extent_or_waits() {
        let mut al = ActivityLog::new(2, 0);
        al.begin(Extent(1));
        al.begin(Extent(2));
        assert_eq!(al.begin(Extent(3)), Admit::Wait, "both busy");
        al.end(Extent(1));
        match al.begin(Extent(3)) {
            Admit::Log(t) => assert_eq!(t.extents, [Extent(2), Extent(3)]),
            other => panic!("{other:?}"),
        }
    }

    /// Two writes over two extents each, in a log of two: the second must
    /// not take a slot it cannot complete with, or both wait forever.
    #[test]
    fn a_write_takes_all_its_extents_or_none() {
        let mut al = ActivityLog::new(2, 0);
        let first = [Extent(0), Extent(1)];
        assert!(al.room_for(&first));
        for e in first {
            assert!(matches!(al.begin(e), Admit::Log(_)));
        }
        // Both slots busy: a write over 2 and 3 has no room at all.
        assert!(!al.room_for(&[Extent(2), Extent(3)]));
        // One of its extents logged already needs only one more slot.
        assert!(!al.room_for(&[Extent(1), Extent(2)]));
        al.end(Extent(0));
        assert!(al.room_for(&[Extent(1), Extent(2)]));
        // Idle slots make room; extents already logged need none.
        al.end(Extent(1));
        assert!(al.room_for(&[Extent(0), Extent(1)]));
        assert!(al.room_for(&[Extent(0), Extent(5)]));
        assert!(al.contains(Extent(0)) && !al.contains(Extent(5)));
    }

    #[test]
    fn transactions_round_trip_and_damage_is_refused() {
        let t = Transaction {
            seq: 9,
            extents: (0..CAPACITY as u64).map(Extent).collect(),
        };
        let b = t.encode();
        assert_eq!(Transaction::decode(&b), Some(t));
        for i in [0, 9, 17, 100, BLOCK - 1] {
            let mut d = b;
            d[i] ^= 4;
            assert_eq!(Transaction::decode(&d), None, "byte {i}");
        }
    }

    /// Writes start only after their extent's transaction is on disk, and
    /// a crash (with the newest log block possibly torn) recovers a set
    /// that covers every write still in flight.
    #[test]
    fn after_any_crash_the_recovered_set_covers_every_unfinished_write() {
        const SLOTS: usize = 16;
        for seed in 1..=100 {
            let mut rng = SplitMix64(seed);
            let mut al = ActivityLog::new(8, 0);
            let mut disk = vec![[0u8; BLOCK]; SLOTS];
            let mut in_flight: Vec<Extent> = Vec::new();
            for _ in 0..500 {
                if rng.chance(55) || in_flight.is_empty() {
                    let e = Extent(rng.below(20));
                    match al.begin(e) {
                        Admit::Go => in_flight.push(e),
                        Admit::Log(t) => {
                            disk[slot_of(t.seq, SLOTS)] = t.encode();
                            in_flight.push(e);
                        }
                        Admit::Wait => {}
                    }
                } else {
                    let i = rng.below(in_flight.len() as u64) as usize;
                    al.end(in_flight.swap_remove(i));
                }
                // Crash now, maybe in the middle of the next log write: the
                // slot it was overwriting (an old transaction) is torn.
                let mut crashed = disk.clone();
                if rng.chance(30) {
                    let s = slot_of(al.seq + 1, SLOTS);
                    let cut = rng.below(BLOCK as u64) as usize;
                    crashed[s][cut..].fill(0xa5);
                }
                let recovered: BTreeSet<Extent> = recover(crashed.iter().map(|b| &b[..]))
                    .map(|t| t.extents.into_iter().collect())
                    .unwrap_or_default();
                for e in &in_flight {
                    assert!(
                        recovered.contains(e),
                        "seed {seed}: {e:?} in flight but not logged"
                    );
                }
            }
        }
    }
}
