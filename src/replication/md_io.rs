//! Reading and writing the metadata area of a backing disk (internal
//! metadata: the tail of the disk). Used by `duetctl create-md` and
//! `dump-md` now, by the replication engine later.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::replication::metadata::{
    BLOCK, DEFAULT_GRANULARITY, Layout, MdError, Superblock, newest,
};

#[derive(Debug, thiserror::Error)]
pub enum MdIoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Metadata { path: PathBuf, source: MdError },
    #[error(
        "{path} already holds duet metadata (generation {generation}); it would be lost. Use --force to overwrite it"
    )]
    HasMetadata { path: PathBuf, generation: String },
    #[error(
        "{path} looks like it holds a {kind} filesystem or volume; use --force to overwrite its tail with metadata"
    )]
    HasData { path: PathBuf, kind: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MdIoError + '_ {
    move |source| MdIoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open(path: &Path, write: bool) -> Result<(File, u64), MdIoError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(io(path))?;
    let size = f.seek(SeekFrom::End(0)).map_err(io(path))?;
    Ok((f, size))
}

fn layout(path: &Path, size: u64) -> Result<Layout, MdIoError> {
    Layout::internal(size, DEFAULT_GRANULARITY).map_err(|source| MdIoError::Metadata {
        path: path.to_path_buf(),
        source,
    })
}

fn read_slots(f: &File, path: &Path, l: &Layout) -> Result<[[u8; BLOCK]; 2], MdIoError> {
    let mut slots = [[0u8; BLOCK]; 2];
    for (i, slot) in slots.iter_mut().enumerate() {
        f.read_exact_at(slot, l.slot_offset(i)).map_err(io(path))?;
    }
    Ok(slots)
}

/// The disk opened, its layout, its newest valid superblock and that
/// superblock's slot.
fn open_newest(path: &Path, write: bool) -> Result<(File, Layout, Superblock, usize), MdIoError> {
    let (f, size) = open(path, write)?;
    let l = layout(path, size)?;
    let slots = read_slots(&f, path, &l)?;
    let (sb, slot) = newest([&slots[0], &slots[1]]).map_err(|source| MdIoError::Metadata {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((f, l, sb, slot))
}

/// The newest valid superblock on the disk, and the layout it implies.
pub fn read(path: &Path) -> Result<(Superblock, Layout), MdIoError> {
    let (_, l, sb, _) = open_newest(path, false)?;
    Ok((sb, l))
}

/// What blkid sees on the disk (a filesystem, RAID member, ...), if
/// anything. No blkid: nothing is known, nothing is claimed.
fn signature(path: &Path) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE"])
        .arg(path)
        .output()
        .ok()?;
    let kind = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !kind.is_empty()).then_some(kind)
}

/// Writes fresh metadata (create-md): Inconsistent, no generation, an
/// empty activity log and bitmap. Refuses to overwrite existing metadata
/// or a disk that looks in use unless `force`.
pub fn create(path: &Path, node: u16, force: bool) -> Result<Layout, MdIoError> {
    let (f, size) = open(path, true)?;
    let l = layout(path, size)?;
    if !force {
        let slots = read_slots(&f, path, &l)?;
        if let Ok((sb, _)) = newest([&slots[0], &slots[1]]) {
            return Err(MdIoError::HasMetadata {
                path: path.to_path_buf(),
                generation: sb.generations.current.to_string(),
            });
        }
        if let Some(kind) = signature(path) {
            return Err(MdIoError::HasData {
                path: path.to_path_buf(),
                kind,
            });
        }
    }
    // Zero the log and bitmap first, then the superblock: a crash before
    // the superblock leaves no metadata at all, never half of it.
    let zeroes = vec![0u8; 1 << 20];
    let mut at = l.al_offset;
    let end = l.bitmap_offset + l.bitmap_len;
    while at < end {
        let n = (end - at).min(zeroes.len() as u64) as usize;
        f.write_all_at(&zeroes[..n], at).map_err(io(path))?;
        at += n as u64;
    }
    f.write_all_at(&[0u8; BLOCK], l.slot_offset(1))
        .map_err(io(path))?;
    f.sync_data().map_err(io(path))?;
    let sb = Superblock::fresh(&l, node);
    f.write_all_at(&sb.encode(), l.slot_offset(0))
        .map_err(io(path))?;
    f.sync_data().map_err(io(path))?;
    Ok(l)
}

/// A backing disk's metadata area, open for the replication engine.
pub struct MdDisk {
    path: PathBuf,
    file: File,
    pub layout: Layout,
    /// The newest superblock on disk, and its slot.
    sb: Superblock,
    slot: usize,
}

/// What attaching reads: the superblock, the bitmap and the newest
/// activity-log transaction.
pub struct Loaded {
    pub superblock: Superblock,
    pub bitmap: Vec<u8>,
    pub al: Option<crate::replication::activity_log::Transaction>,
}

impl MdDisk {
    pub fn open(path: &Path) -> Result<(MdDisk, Loaded), MdIoError> {
        let (file, l, sb, slot) = open_newest(path, true)?;
        if sb.size != l.usable || sb.bitmap_offset != l.bitmap_offset {
            return Err(MdIoError::Metadata {
                path: path.to_path_buf(),
                source: MdError::Invalid("the disk changed size since create-md"),
            });
        }
        let mut bitmap = vec![0u8; l.bitmap_len as usize];
        file.read_exact_at(&mut bitmap, l.bitmap_offset)
            .map_err(io(path))?;
        let mut al_area = vec![0u8; (l.bitmap_offset - l.al_offset) as usize];
        file.read_exact_at(&mut al_area, l.al_offset)
            .map_err(io(path))?;
        let al = crate::replication::activity_log::recover(al_area.chunks(BLOCK));
        let md = MdDisk {
            path: path.to_path_buf(),
            file,
            layout: l,
            sb,
            slot,
        };
        Ok((
            md,
            Loaded {
                superblock: sb,
                bitmap,
                al,
            },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data file, shared with the data I/O (one descriptor, so a
    /// metadata sync also makes earlier data writes durable).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The next superblock goes to the other slot with a higher sequence:
    /// a torn write leaves the previous one.
    pub fn write_superblock(
        &mut self,
        generations: crate::replication::generation::Generations,
        flags: u32,
    ) -> std::io::Result<()> {
        let mut next = self.sb.next();
        next.generations = generations;
        next.flags = flags;
        let slot = 1 - self.slot;
        self.file
            .write_all_at(&next.encode(), self.layout.slot_offset(slot))?;
        self.file.sync_data()?;
        self.sb = next;
        self.slot = slot;
        Ok(())
    }

    pub fn write_bitmap(&self, first_word: u64, words: &[u64]) -> std::io::Result<()> {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let at = first_word
            .checked_mul(8)
            .filter(|o| o + bytes.len() as u64 <= self.layout.bitmap_len)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        self.file
            .write_all_at(&bytes, self.layout.bitmap_offset + at)?;
        self.file.sync_data()
    }

    pub fn write_al(
        &self,
        txn: &crate::replication::activity_log::Transaction,
    ) -> std::io::Result<()> {
        let slots = ((self.layout.bitmap_offset - self.layout.al_offset) / BLOCK as u64) as usize;
        let slot = crate::replication::activity_log::slot_of(txn.seq, slots);
        self.file
            .write_all_at(&txn.encode(), self.layout.al_offset + (slot * BLOCK) as u64)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    //! A power cut in the middle of any metadata update the replication
    //! engine makes (`MdDisk`: superblock, bitmap block, activity-log
    //! transaction) leaves the written block as any mix of its old and new
    //! sectors: disks promise only sectors to be atomic, in no order.
    //! Reading the disk back must give the old or the new superblock and
    //! the old or the new newest log transaction, never an error, and
    //! nothing outside the written block may change.

    use super::*;
    use crate::replication::activity_log::{Extent, Transaction};
    use crate::replication::generation::{Generation, Generations};
    use crate::replication::metadata::{FLAG_CONSISTENT, FLAG_PRIMARY};
    use crate::testkit::SplitMix64;

    const SIZE: u64 = 64 << 20;
    const SECTOR: usize = 512;
    const SECTORS: usize = BLOCK / SECTOR;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            let p = std::env::temp_dir().join(format!("duet-md-io-{}", std::process::id()));
            let _ = std::fs::remove_file(&p);
            let f = File::create(&p).expect("scratch disk");
            f.set_len(SIZE).expect("sparse size");
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// The metadata area, as on disk.
    fn area(path: &Path, l: &Layout) -> Vec<u8> {
        let f = File::open(path).expect("open");
        let mut v = vec![0u8; (SIZE - l.md_offset) as usize];
        f.read_exact_at(&mut v, l.md_offset).expect("read");
        v
    }

    fn put_area(path: &Path, l: &Layout, bytes: &[u8]) {
        let f = OpenOptions::new().write(true).open(path).expect("open");
        f.write_all_at(bytes, l.md_offset).expect("write");
    }

    /// What attaching reads (the parts a torn write may touch).
    fn loaded(path: &Path) -> (Superblock, Vec<u8>, Option<Transaction>) {
        let (_, l) = MdDisk::open(path).unwrap_or_else(|e| panic!("{e}"));
        (l.superblock, l.bitmap, l.al)
    }

    /// Sector masks of a torn 4 KiB block (bit i: sector i is new): every
    /// prefix and suffix, and some at random.
    fn tears(rng: &mut SplitMix64) -> Vec<u32> {
        let all = (1u32 << SECTORS) - 1;
        (0..=SECTORS as u32)
            .flat_map(|n| [(1u32 << n) - 1, all & !((1u32 << (SECTORS as u32 - n)) - 1)])
            .chain((0..12).map(|_| rng.below(u64::from(all) + 1) as u32))
            .collect()
    }

    #[test]
    fn a_power_cut_in_any_metadata_update_leaves_the_old_or_the_new() {
        let disk = Scratch::new();
        let path = disk.0.as_path();
        let l = create(path, 1, true).expect("create-md");
        let (mut md, _) = MdDisk::open(path).expect("open");
        let al_slots = ((l.bitmap_offset - l.al_offset) / BLOCK as u64) as usize;
        let mut rng = SplitMix64(17);
        let mut al_seq = 0;
        // Enough rounds for the log and the superblock to wrap their slots.
        for round in 0..3 * al_slots {
            let before = area(path, &l);
            let old = loaded(path);
            let what = match round % 3 {
                0 => {
                    let gens = Generations {
                        current: Generation(rng.next_u64() | 1),
                        ..Generations::default()
                    };
                    let flags = FLAG_CONSISTENT | (rng.below(2) as u32 * FLAG_PRIMARY);
                    md.write_superblock(gens, flags).expect("superblock");
                    "superblock"
                }
                1 => {
                    let blocks = l.bitmap_len / BLOCK as u64;
                    let first = rng.below(blocks) * (BLOCK as u64 / 8);
                    let words: Vec<u64> = (0..BLOCK / 8).map(|_| rng.next_u64()).collect();
                    md.write_bitmap(first, &words).expect("bitmap");
                    "bitmap"
                }
                _ => {
                    al_seq += 1;
                    let n = 1 + rng.below(8);
                    let extents = (0..n).map(|_| Extent(rng.below(1 << 20))).collect();
                    md.write_al(&Transaction {
                        seq: al_seq,
                        extents,
                    })
                    .expect("log");
                    "activity log"
                }
            };
            let after = area(path, &l);
            let new = loaded(path);
            // One 4 KiB block changed, nothing else.
            let first = before.iter().zip(&after).position(|(a, b)| a != b);
            let last = before.iter().zip(&after).rposition(|(a, b)| a != b);
            let Some((first, last)) = first.zip(last) else {
                continue;
            };
            let block = first / BLOCK * BLOCK;
            assert!(last < block + BLOCK, "round {round}: {what} touched more");
            // The sectors the update changes (the rest are the same).
            let changed = (0..SECTORS)
                .filter(|s| {
                    let r = block + s * SECTOR..block + (s + 1) * SECTOR;
                    before[r.clone()] != after[r]
                })
                .fold(0u32, |m, s| m | 1 << s);
            for mask in tears(&mut rng) {
                let mut torn = before.clone();
                for s in (0..SECTORS).filter(|s| mask >> s & 1 == 1) {
                    let r = block + s * SECTOR..block + (s + 1) * SECTOR;
                    torn[r.clone()].copy_from_slice(&after[r]);
                }
                put_area(path, &l, &torn);
                let seen = loaded(path);
                let why = format!("round {round}, {what} torn as {mask:#x} of {changed:#x}");
                let is =
                    |x: &(Superblock, Vec<u8>, Option<Transaction>)| (seen.0 == x.0, seen.2 == x.2);
                assert!(is(&old).0 || is(&new).0, "{why}: superblock");
                assert!(is(&old).1 || is(&new).1, "{why}: log");
                if mask & changed == changed {
                    assert!(seen == new, "{why}: not the new metadata");
                } else if what != "bitmap" {
                    // Checksummed blocks: anything torn reads as the old.
                    assert!(seen == old, "{why}: not the old metadata");
                } else {
                    assert!(
                        is(&old) == (true, true),
                        "{why}: a bitmap write changed more"
                    );
                }
            }
            put_area(path, &l, &after);
        }
    }
}
