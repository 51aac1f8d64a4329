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

/// The newest valid superblock on the disk, and the layout it implies.
pub fn read(path: &Path) -> Result<(Superblock, Layout), MdIoError> {
    let (f, size) = open(path, false)?;
    let l = layout(path, size)?;
    let slots = read_slots(&f, path, &l)?;
    let (sb, _) = newest([&slots[0], &slots[1]]).map_err(|source| MdIoError::Metadata {
        path: path.to_path_buf(),
        source,
    })?;
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
