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
