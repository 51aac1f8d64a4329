//! Reading and writing a replica's metadata: at the tail of the backing
//! disk (internal) or at the start of a device or file of its own
//! (external). Used by `duetctl create-md` and `dump-md`, and by the
//! replication engine.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::replication::metadata::{
    BLOCK, DEFAULT_GRANULARITY, Layout, MdError, Superblock, newest,
};

/// Where one replica's data and metadata are on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// The backing disk (or file): the data.
    pub data: PathBuf,
    /// The metadata's own device or file; `None`: internal, at the tail
    /// of `data`.
    pub meta: Option<PathBuf>,
}

impl Backing {
    pub fn internal(data: impl Into<PathBuf>) -> Backing {
        Backing {
            data: data.into(),
            meta: None,
        }
    }

    pub fn external(data: impl Into<PathBuf>, meta: impl Into<PathBuf>) -> Backing {
        Backing {
            data: data.into(),
            meta: Some(meta.into()),
        }
    }

    /// The file the metadata is in.
    pub fn meta_path(&self) -> &Path {
        self.meta.as_deref().unwrap_or(&self.data)
    }

    /// The layout for a data disk of `data_size` bytes.
    fn layout(&self, data_size: u64) -> Result<Layout, MdIoError> {
        let l = match self.meta {
            None => Layout::internal(data_size, DEFAULT_GRANULARITY),
            Some(_) => Layout::external(data_size, DEFAULT_GRANULARITY),
        };
        l.map_err(|source| MdIoError::Metadata {
            path: self.data.clone(),
            source,
        })
    }
}

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
        "{path} looks like it holds a {kind} filesystem or volume; use --force to overwrite {area} with metadata"
    )]
    HasData {
        path: PathBuf,
        kind: String,
        /// What would be overwritten: "its tail" or "its start".
        area: &'static str,
    },
    #[error(
        "{path} holds {have} bytes, but the metadata of a {data_size}-byte data disk needs {need} (create-md grows a file; a device must be that big)"
    )]
    MetaTooSmall {
        path: PathBuf,
        have: u64,
        need: u64,
        data_size: u64,
    },
    #[error(
        "{meta} is the data disk {data} itself: external metadata needs a device or file of its own (or meta-disk = \"internal\")"
    )]
    SameDisk { data: PathBuf, meta: PathBuf },
    #[error(
        "{path} holds {found} metadata, but the config says meta-disk = {wanted}: run `duetctl create-md` for the layout configured"
    )]
    WrongLayout {
        path: PathBuf,
        found: &'static str,
        wanted: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MdIoError + '_ {
    move |source| MdIoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn md(path: &Path) -> impl FnOnce(MdError) -> MdIoError + '_ {
    move |source| MdIoError::Metadata {
        path: path.to_path_buf(),
        source,
    }
}

/// The file opened and its size (seeking finds a block device's size too;
/// its metadata says 0).
fn open(path: &Path, write: bool) -> Result<(File, u64), MdIoError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(io(path))?;
    let size = f.seek(SeekFrom::End(0)).map_err(io(path))?;
    Ok((f, size))
}

/// Two paths for one disk: the same block device (by device number, so
/// /dev/sdb and a /dev/disk/by-id link to it match), or the same file.
fn same_disk(a: &Path, b: &Path) -> bool {
    let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    if x.file_type().is_block_device() && y.file_type().is_block_device() {
        return x.rdev() == y.rdev();
    }
    x.dev() == y.dev() && x.ino() == y.ino()
}

/// What a caller of `open_files` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    /// The metadata only (create-md).
    Meta,
    /// Data and metadata (the engine).
    Both,
}

/// The files of a replica's backing, opened, and the layout their sizes
/// give.
struct Files {
    meta: File,
    meta_size: u64,
    /// The data disk when it is not the metadata's file (external).
    data: Option<File>,
    layout: Layout,
}

/// Opened for what `access` says: create-md writes nothing of an external
/// layout's data disk, and opens it read-only.
fn open_files(b: &Backing, access: Access) -> Result<Files, MdIoError> {
    let data_write = match (access, &b.meta) {
        (Access::Read, _) => false,
        (Access::Meta, Some(_)) => false,
        (Access::Meta, None) | (Access::Both, _) => true,
    };
    let (data, data_size) = open(&b.data, data_write)?;
    let layout = b.layout(data_size)?;
    let Some(meta_path) = &b.meta else {
        return Ok(Files {
            meta: data,
            meta_size: data_size,
            data: None,
            layout,
        });
    };
    if same_disk(&b.data, meta_path) {
        return Err(MdIoError::SameDisk {
            data: b.data.clone(),
            meta: meta_path.clone(),
        });
    }
    let (meta, meta_size) = open(meta_path, access != Access::Read)?;
    Ok(Files {
        meta,
        meta_size,
        data: Some(data),
        layout,
    })
}

impl Files {
    /// Refuses a metadata device too small for the layout (reading its
    /// bitmap would run off its end).
    fn check_size(&self, b: &Backing) -> Result<(), MdIoError> {
        if self.meta_size >= self.layout.md_end() {
            return Ok(());
        }
        Err(MdIoError::MetaTooSmall {
            path: b.meta_path().to_path_buf(),
            have: self.meta_size,
            need: self.layout.md_end(),
            data_size: self.layout.usable,
        })
    }
}

fn read_slots(f: &File, path: &Path, l: &Layout) -> Result<[[u8; BLOCK]; 2], MdIoError> {
    let mut slots = [[0u8; BLOCK]; 2];
    for (i, slot) in slots.iter_mut().enumerate() {
        f.read_exact_at(slot, l.slot_offset(i)).map_err(io(path))?;
    }
    Ok(slots)
}

/// The newest valid superblock where `l` puts it, if any; a file too short
/// to hold the slots holds none.
fn existing(f: &File, path: &Path, l: &Layout) -> Result<Option<Superblock>, MdIoError> {
    match read_slots(f, path, l) {
        Ok(slots) => Ok(newest([&slots[0], &slots[1]]).ok().map(|(sb, _)| sb)),
        Err(MdIoError::Io { source, .. }) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn layout_name(external: bool) -> &'static str {
    if external {
        "external (a path)"
    } else {
        "\"internal\""
    }
}

/// The backing opened, its layout, its newest valid superblock and that
/// superblock's slot.
fn open_newest(b: &Backing, access: Access) -> Result<(Files, Superblock, usize), MdIoError> {
    let files = open_files(b, access)?;
    let path = b.meta_path();
    let slots = match read_slots(&files.meta, path, &files.layout) {
        // Too short for even the superblock: say that, not "end of file".
        Err(MdIoError::Io { source, .. }) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            files.check_size(b)?;
            return Err(MdIoError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        r => r?,
    };
    let (sb, slot) = newest([&slots[0], &slots[1]]).map_err(md(path))?;
    if sb.external != files.layout.external {
        return Err(MdIoError::WrongLayout {
            path: path.to_path_buf(),
            found: if sb.external { "external" } else { "internal" },
            wanted: layout_name(files.layout.external),
        });
    }
    files.check_size(b)?;
    Ok((files, sb, slot))
}

/// The newest valid superblock of the backing, and the layout it implies.
pub fn read(b: &Backing) -> Result<(Superblock, Layout), MdIoError> {
    let (files, sb, _) = open_newest(b, Access::Read)?;
    Ok((sb, files.layout))
}

/// The size the device would show: the data disk's usable part. `None`
/// if the data disk cannot be opened or is too small.
pub fn usable_size(b: &Backing) -> Option<u64> {
    let (_, size) = open(&b.data, false).ok()?;
    b.layout(size).ok().map(|l| l.usable)
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

/// What create-md must not overwrite without `force`: duet metadata where
/// this layout puts it, or (external) where it would be if the metadata
/// device had been some replica's disk with internal metadata; then
/// anything blkid recognises on the file the metadata goes to.
fn refuse_to_overwrite(b: &Backing, files: &Files) -> Result<(), MdIoError> {
    let path = b.meta_path();
    let mut places = vec![files.layout];
    if files.layout.external
        && let Ok(l) = Layout::internal(files.meta_size, DEFAULT_GRANULARITY)
    {
        places.push(l);
    }
    for l in &places {
        if let Some(sb) = existing(&files.meta, path, l)? {
            return Err(MdIoError::HasMetadata {
                path: path.to_path_buf(),
                generation: sb.generations.current.to_string(),
            });
        }
    }
    if let Some(kind) = signature(path) {
        return Err(MdIoError::HasData {
            path: path.to_path_buf(),
            kind,
            area: if files.layout.external {
                "its start"
            } else {
                "its tail"
            },
        });
    }
    Ok(())
}

/// Writes fresh metadata (create-md): Inconsistent, no generation, an
/// empty activity log and bitmap. Refuses to overwrite existing metadata
/// or a disk that looks in use unless `force`. External metadata leaves
/// the data disk untouched; a metadata file smaller than the layout needs
/// is grown (a device is refused).
pub fn create(b: &Backing, node: u16, force: bool) -> Result<Layout, MdIoError> {
    let mut files = open_files(b, Access::Meta)?;
    let path = b.meta_path();
    if !force {
        refuse_to_overwrite(b, &files)?;
    }
    let l = files.layout;
    if files.meta_size < l.md_end() {
        let regular = files
            .meta
            .metadata()
            .map_err(io(path))?
            .file_type()
            .is_file();
        // Only external metadata can be short here: an internal layout
        // always fits its disk.
        if !regular {
            files.check_size(b)?;
        }
        files.meta.set_len(l.md_end()).map_err(io(path))?;
        files.meta_size = l.md_end();
    }
    let f = &files.meta;
    // Zero the log and bitmap first, then the superblock: a crash before
    // the superblock leaves no metadata at all, never half of it.
    let zeroes = vec![0u8; 1 << 20];
    let mut at = l.al_offset;
    let end = l.md_end();
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

/// A replica's data disk and metadata, open for the replication engine.
pub struct MdDisk {
    backing: Backing,
    /// Where the metadata is written: the data disk itself (internal) or
    /// the metadata device (external).
    meta: File,
    /// The data disk, for the data I/O: a second descriptor of the same
    /// file as `meta` when internal.
    data: File,
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
    pub fn open(b: &Backing) -> Result<(MdDisk, Loaded), MdIoError> {
        let (files, sb, slot) = open_newest(b, Access::Both)?;
        let l = files.layout;
        let path = b.meta_path();
        if sb.size != l.usable || sb.bitmap_offset != l.bitmap_offset {
            return Err(MdIoError::Metadata {
                path: b.data.clone(),
                source: MdError::Invalid("the disk changed size since create-md"),
            });
        }
        let mut bitmap = vec![0u8; l.bitmap_len as usize];
        files
            .meta
            .read_exact_at(&mut bitmap, l.bitmap_offset)
            .map_err(io(path))?;
        let mut al_area = vec![0u8; (l.bitmap_offset - l.al_offset) as usize];
        files
            .meta
            .read_exact_at(&mut al_area, l.al_offset)
            .map_err(io(path))?;
        let al = crate::replication::activity_log::recover(al_area.chunks(BLOCK));
        let data = match files.data {
            Some(data) => data,
            None => files.meta.try_clone().map_err(io(&b.data))?,
        };
        let md = MdDisk {
            backing: b.clone(),
            meta: files.meta,
            data,
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

    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The data disk, for the data I/O.
    pub fn data_file(&self) -> &File {
        &self.data
    }

    pub fn data_path(&self) -> &Path {
        &self.backing.data
    }

    /// Writes one metadata block range durably, ordered after every data
    /// write that completed before the call: the data disk is synced
    /// first, then the metadata is written and synced. The core asks for
    /// metadata that describes data already written (bitmap bits cleared
    /// by a resync, an activity-log extent evicted, the superblock saying
    /// UpToDate or no longer Primary); if the metadata could reach stable
    /// storage before that data, a power cut would leave it claiming data
    /// the disk never got. One fdatasync after the write is not enough
    /// even on one file: the device may persist the pages of one flush in
    /// any order. With external metadata nothing else would sync the data
    /// disk at all. The other direction (metadata before the data writes
    /// that depend on it) is the core's: it starts those writes only after
    /// `MetaDone`, which follows the metadata's own sync.
    fn commit(&self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        self.data.sync_data()?;
        self.meta.write_all_at(bytes, at)?;
        self.meta.sync_data()
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
        self.commit(&next.encode(), self.layout.slot_offset(slot))?;
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
        self.commit(&bytes, self.layout.bitmap_offset + at)
    }

    pub fn write_al(
        &self,
        txn: &crate::replication::activity_log::Transaction,
    ) -> std::io::Result<()> {
        let slots = ((self.layout.bitmap_offset - self.layout.al_offset) / BLOCK as u64) as usize;
        let slot = crate::replication::activity_log::slot_of(txn.seq, slots);
        self.commit(&txn.encode(), self.layout.al_offset + (slot * BLOCK) as u64)
    }
}

#[cfg(test)]
#[path = "md_io_tests.rs"]
mod tests;

#[cfg(test)]
mod power_cut_tests {
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

    /// Internal metadata at the tail of `path`.
    fn internal(path: &Path) -> Backing {
        Backing {
            data: path.to_path_buf(),
            meta: None,
        }
    }

    /// What attaching reads (the parts a torn write may touch).
    fn loaded(path: &Path) -> (Superblock, Vec<u8>, Option<Transaction>) {
        let (_, l) = MdDisk::open(&internal(path)).unwrap_or_else(|e| panic!("{e}"));
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
        let l = create(&internal(path), 1, true).expect("create-md");
        let (mut md, _) = MdDisk::open(&internal(path)).expect("open");
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
