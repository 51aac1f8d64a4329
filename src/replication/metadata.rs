//! The on-disk metadata: where it lives (the tail of the backing disk, or
//! a device or file of its own) and the superblock that describes it
//! (docs/metadata.md). The superblock has two
//! slots and is never overwritten in place: an update goes to the slot not
//! holding the newest valid copy, with a higher sequence number, so a power
//! cut in the middle of a write leaves the previous copy intact. Pure: the
//! caller does the I/O.

use crate::replication::generation::{Generation, Generations};

pub const BLOCK: usize = 4096;
pub const MAGIC: &[u8; 8] = b"DUETMETA";
pub const VERSION: u32 = 1;
/// Default: one bitmap bit per 4 KiB block.
pub const DEFAULT_GRANULARITY: u32 = 4096;
/// Activity log: hot extents of 4 MiB, this many slots (64 KiB of log).
pub const AL_EXTENT: u32 = 4 << 20;
pub const AL_LEN: u64 = 64 << 10;
const CRC_AT: usize = BLOCK - 4;

/// The disk was cleanly in sync when this was written (UpToDate), as
/// opposed to Inconsistent (a sync target mid-sync, or fresh metadata).
pub const FLAG_CONSISTENT: u32 = 1;
/// This node was Primary: after a crash, its activity log extents must be
/// resynced.
pub const FLAG_PRIMARY: u32 = 2;
/// The peer's disk is known to be out of date (Outdated): it confirmed
/// so when this node, Primary, lost the connection to it.
pub const FLAG_PEER_OUTDATED: u32 = 4;
/// With `FLAG_CONSISTENT`: this disk is Outdated, consistent but known to
/// lack the peer's newer writes (the peer, Primary, had it outdated when
/// the connection broke). Read without `FLAG_CONSISTENT` it means nothing:
/// the disk is Inconsistent. Metadata written before this flag existed
/// never has it, and reads as it always did.
pub const FLAG_OUTDATED: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdError {
    #[error("no duet metadata here (bad magic)")]
    BadMagic,
    #[error("metadata version {0} is newer than this duet understands")]
    UnsupportedVersion(u32),
    #[error("metadata checksum mismatch (torn or corrupted superblock)")]
    BadChecksum,
    #[error("metadata block is {0} bytes, not {BLOCK}")]
    WrongSize(usize),
    #[error("metadata fields are inconsistent: {0}")]
    Invalid(&'static str),
    #[error("neither superblock slot holds valid metadata: {0}")]
    NoValidSlot(Box<MdError>),
    #[error("the disk ({0} bytes) is too small for its metadata")]
    DiskTooSmall(u64),
    #[error("the data disk ({0} bytes) holds less than one 4 KiB block")]
    DataTooSmall(u64),
}

/// Where everything is: internal metadata sits at the tail of the backing
/// disk, external metadata at the start of a device or file of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the disk left for data (what the device shows).
    pub usable: u64,
    /// Start of the metadata area: two superblock slots, the activity log,
    /// the bitmap. On the backing disk when internal, on the metadata
    /// device (0) when external.
    pub md_offset: u64,
    pub al_offset: u64,
    pub bitmap_offset: u64,
    pub bitmap_len: u64,
    pub granularity: u32,
    /// The metadata is on a device or file of its own.
    pub external: bool,
}

fn align_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

impl Layout {
    /// Internal metadata at the tail of a disk of `disk_size` bytes. The
    /// bitmap covers the usable part only, so its size is solved for.
    pub fn internal(disk_size: u64, granularity: u32) -> Result<Layout, MdError> {
        let g = u64::from(granularity.max(512));
        let fixed = 2 * BLOCK as u64 + AL_LEN;
        // Bits for the whole disk is an upper bound; the tail it frees is
        // small, so one pass is exact enough and never short.
        let bitmap_len = align_up(disk_size.div_ceil(g).div_ceil(8), BLOCK as u64);
        let md_len = fixed + bitmap_len;
        let md_offset = disk_size
            .checked_sub(md_len)
            .map(|o| o / BLOCK as u64 * BLOCK as u64)
            .filter(|o| *o > 0)
            .ok_or(MdError::DiskTooSmall(disk_size))?;
        Ok(Layout {
            usable: md_offset,
            md_offset,
            al_offset: md_offset + 2 * BLOCK as u64,
            bitmap_offset: md_offset + fixed,
            bitmap_len,
            granularity: g as u32,
            external: false,
        })
    }

    /// External metadata for a data disk of `data_size` bytes: all of the
    /// disk is data (rounded down to whole 4 KiB blocks, the exported
    /// device's block size), and the metadata starts at byte 0 of its own
    /// device, which must hold `md_end()` bytes.
    pub fn external(data_size: u64, granularity: u32) -> Result<Layout, MdError> {
        let g = u64::from(granularity.max(512));
        let usable = data_size / BLOCK as u64 * BLOCK as u64;
        if usable == 0 {
            return Err(MdError::DataTooSmall(data_size));
        }
        let fixed = 2 * BLOCK as u64 + AL_LEN;
        Ok(Layout {
            usable,
            md_offset: 0,
            al_offset: 2 * BLOCK as u64,
            bitmap_offset: fixed,
            bitmap_len: align_up(usable.div_ceil(g).div_ceil(8), BLOCK as u64),
            granularity: g as u32,
            external: true,
        })
    }

    /// Where the metadata area ends: the size the metadata device needs
    /// at least (external), or the disk's tail (internal).
    pub fn md_end(&self) -> u64 {
        self.bitmap_offset + self.bitmap_len
    }

    /// Bytes the metadata takes: of the backing disk when internal, of
    /// its own device when external.
    pub fn md_len(&self) -> u64 {
        self.md_end() - self.md_offset
    }

    /// Byte offset of superblock slot `slot` (0 or 1).
    pub fn slot_offset(&self, slot: usize) -> u64 {
        self.md_offset + (slot as u64 % 2) * BLOCK as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Higher is newer; the slot with the highest valid one wins.
    pub seq: u64,
    pub flags: u32,
    /// Usable data size in bytes.
    pub size: u64,
    /// This node's index in the config (a disk moved to another node is
    /// noticed).
    pub node: u16,
    pub generations: Generations,
    pub granularity: u32,
    pub al_extent: u32,
    pub al_offset: u64,
    pub al_len: u64,
    pub bitmap_offset: u64,
    pub bitmap_len: u64,
    /// The layout is external: the offsets are into the metadata device,
    /// and all of the data disk up to `size` is data.
    pub external: bool,
}

/// Byte 34 of the superblock: which layout its offsets describe.
const LAYOUT_INTERNAL: u8 = 0;
const LAYOUT_EXTERNAL: u8 = 1;

impl Superblock {
    /// Fresh metadata for `layout` (create-md): Inconsistent, no
    /// generation yet.
    pub fn fresh(layout: &Layout, node: u16) -> Superblock {
        Superblock {
            seq: 1,
            flags: 0,
            size: layout.usable,
            node,
            generations: Generations::fresh(),
            granularity: layout.granularity,
            al_extent: AL_EXTENT,
            al_offset: layout.al_offset,
            al_len: AL_LEN,
            bitmap_offset: layout.bitmap_offset,
            bitmap_len: layout.bitmap_len,
            external: layout.external,
        }
    }

    pub fn encode(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        let mut w = Writer { b: &mut b, at: 0 };
        w.put(MAGIC);
        w.put(&VERSION.to_le_bytes());
        w.put(&self.flags.to_le_bytes());
        w.put(&self.seq.to_le_bytes());
        w.put(&self.size.to_le_bytes());
        w.put(&self.node.to_le_bytes());
        let layout = if self.external {
            LAYOUT_EXTERNAL
        } else {
            LAYOUT_INTERNAL
        };
        w.put(&[layout, 0, 0, 0, 0, 0]);
        let g = &self.generations;
        for id in [g.current, g.bitmap, g.history[0], g.history[1]] {
            w.put(&id.0.to_le_bytes());
        }
        w.put(&self.granularity.to_le_bytes());
        w.put(&self.al_extent.to_le_bytes());
        for v in [
            self.al_offset,
            self.al_len,
            self.bitmap_offset,
            self.bitmap_len,
        ] {
            w.put(&v.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(block: &[u8]) -> Result<Superblock, MdError> {
        if block.len() != BLOCK {
            return Err(MdError::WrongSize(block.len()));
        }
        if &block[..8] != MAGIC {
            return Err(MdError::BadMagic);
        }
        let stored = u32::from_le_bytes(four(&block[CRC_AT..]));
        if crc32c::crc32c(&block[..CRC_AT]) != stored {
            return Err(MdError::BadChecksum);
        }
        let mut r = Reader { b: block, at: 8 };
        let version = r.u32();
        if version != VERSION {
            return Err(MdError::UnsupportedVersion(version));
        }
        let flags = r.u32();
        let seq = r.u64();
        let size = r.u64();
        let node = u16::from_le_bytes([block[r.at], block[r.at + 1]]);
        let external = match block[r.at + 2] {
            LAYOUT_INTERNAL => false,
            LAYOUT_EXTERNAL => true,
            _ => return Err(MdError::Invalid("unknown metadata layout")),
        };
        r.at += 8;
        let mut gens = [Generation::NONE; 4];
        for g in &mut gens {
            *g = Generation(r.u64());
        }
        let sb = Superblock {
            seq,
            flags,
            size,
            node,
            generations: Generations {
                current: gens[0],
                bitmap: gens[1],
                history: [gens[2], gens[3]],
            },
            granularity: r.u32(),
            al_extent: r.u32(),
            al_offset: r.u64(),
            al_len: r.u64(),
            bitmap_offset: r.u64(),
            bitmap_len: r.u64(),
            external,
        };
        sb.check()?;
        Ok(sb)
    }

    /// Sanity beyond the checksum: a block that checks out but describes
    /// an impossible layout is refused rather than trusted.
    fn check(&self) -> Result<(), MdError> {
        if self.granularity < 512 || !self.granularity.is_power_of_two() {
            return Err(MdError::Invalid("bitmap granularity"));
        }
        let bits = self.size.div_ceil(u64::from(self.granularity));
        if self.bitmap_len.saturating_mul(8) < bits {
            return Err(MdError::Invalid("bitmap too small for the data"));
        }
        // Internal: the metadata follows the data on the same disk.
        // External: it follows the two superblock slots on its own device.
        let md_start = if self.external {
            2 * BLOCK as u64
        } else {
            self.size
        };
        if self.al_offset < md_start
            || self.bitmap_offset < self.al_offset.saturating_add(self.al_len)
        {
            return Err(MdError::Invalid("areas overlap"));
        }
        Ok(())
    }

    /// The next version of this superblock, for the other slot.
    pub fn next(&self) -> Superblock {
        Superblock {
            seq: self.seq + 1,
            ..*self
        }
    }
}

/// Picks the newest valid superblock of the two slots. Returns it and its
/// slot; the next write goes to the other slot.
pub fn newest(slots: [&[u8]; 2]) -> Result<(Superblock, usize), MdError> {
    let parsed = [Superblock::decode(slots[0]), Superblock::decode(slots[1])];
    match parsed {
        [Ok(a), Ok(b)] => Ok(if b.seq > a.seq { (b, 1) } else { (a, 0) }),
        [Ok(a), Err(_)] => Ok((a, 0)),
        [Err(_), Ok(b)] => Ok((b, 1)),
        [Err(e), Err(_)] => Err(MdError::NoValidSlot(Box::new(e))),
    }
}

struct Writer<'a> {
    b: &'a mut [u8; BLOCK],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.b[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// Reads fixed fields; the block's size was checked, and every field lies
/// well inside it.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> u32 {
        let v = u32::from_le_bytes(four(&self.b[self.at..]));
        self.at += 4;
        v
    }

    fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.b[self.at..self.at + 8]);
        self.at += 8;
        u64::from_le_bytes(a)
    }
}

fn four(s: &[u8]) -> [u8; 4] {
    [s[0], s[1], s[2], s[3]]
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
