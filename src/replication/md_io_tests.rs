//! Metadata on real files: both layouts created, read back and written
//! through `MdDisk`, and each refusal.

use std::os::unix::fs::FileExt;

use super::*;
use crate::replication::generation::{Generation, Generations};
use crate::replication::metadata::FLAG_CONSISTENT;

const MIB: u64 = 1 << 20;

/// A folder of its own for one test, removed after it.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("duet-mdio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        Dir(dir)
    }

    /// A file of `len` bytes, each byte `fill`.
    fn file(&self, name: &str, len: u64, fill: u8) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, vec![fill; len as usize]).expect("file");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gens(current: u64) -> Generations {
    Generations {
        current: Generation(current),
        ..Generations::default()
    }
}

#[test]
fn external_metadata_leaves_all_of_the_data_disk_to_data() {
    let d = Dir::new("ext");
    let data = d.file("data.img", 64 * MIB, 0x5a);
    // An empty file: create-md grows it to what the layout needs.
    let meta = d.file("meta.img", 0, 0);
    let b = Backing::external(&data, &meta);
    let l = create(&b, 1, false).expect("create-md");
    assert!(l.external);
    assert_eq!(l.usable, 64 * MIB, "all of the data disk is data");
    assert_eq!(l.md_offset, 0);
    assert_eq!(
        std::fs::metadata(&meta).expect("meta").len(),
        l.md_end(),
        "the metadata file was grown to fit"
    );
    // 64 MiB at 4 KiB a bit: 2 KiB of bitmap, one 4 KiB block.
    assert_eq!(l.bitmap_len, BLOCK as u64);

    let (sb, read_layout) = read(&b).expect("dump-md");
    assert_eq!(read_layout, l);
    assert!(sb.external);
    assert_eq!(sb.size, 64 * MIB);
    assert_eq!(sb.node, 1);

    let (mut disk, loaded) = MdDisk::open(&b).expect("attach");
    assert_eq!(loaded.superblock, sb);
    assert!(loaded.bitmap.iter().all(|&b| b == 0));
    assert!(loaded.al.is_none());
    disk.write_superblock(gens(0x77), FLAG_CONSISTENT)
        .expect("superblock");
    disk.write_bitmap(0, &[u64::MAX, 5]).expect("bitmap");
    // Data goes to the data file through the data descriptor.
    disk.data_file()
        .write_all_at(b"hello", 64 * MIB - 5)
        .expect("data write");
    drop(disk);

    let (disk, loaded) = MdDisk::open(&b).expect("attach again");
    assert_eq!(loaded.superblock.generations, gens(0x77));
    assert_eq!(loaded.superblock.flags, FLAG_CONSISTENT);
    assert_eq!(loaded.bitmap[..8], u64::MAX.to_le_bytes());
    assert_eq!(loaded.bitmap[8..16], 5u64.to_le_bytes());
    assert_eq!(disk.backing(), &b);
    // The data disk holds its bytes and nothing of the metadata: every
    // byte but the five written is the fill it started with.
    let bytes = std::fs::read(&data).expect("data");
    assert_eq!(bytes.len() as u64, 64 * MIB);
    assert_eq!(&bytes[bytes.len() - 5..], b"hello");
    assert!(bytes[..bytes.len() - 5].iter().all(|&b| b == 0x5a));
}

#[test]
fn internal_metadata_still_takes_the_tail() {
    let d = Dir::new("int");
    let data = d.file("data.img", 64 * MIB, 0);
    let b = Backing::internal(&data);
    let l = create(&b, 0, false).expect("create-md");
    assert!(!l.external);
    assert!(l.usable < 64 * MIB);
    assert_eq!(l.md_end(), 64 * MIB);
    let (mut disk, loaded) = MdDisk::open(&b).expect("attach");
    assert!(!loaded.superblock.external);
    disk.write_superblock(gens(9), 0).expect("superblock");
    let (_, loaded) = MdDisk::open(&b).expect("attach again");
    assert_eq!(loaded.superblock.generations, gens(9));
    assert_eq!(usable_size(&b), Some(l.usable));
    let ext = Backing::external(&data, d.file("m", 0, 0));
    assert_eq!(usable_size(&ext), Some(64 * MIB));
}

#[test]
fn the_metadata_device_is_never_the_data_disk() {
    let d = Dir::new("same");
    let data = d.file("data.img", 8 * MIB, 0);
    let err = create(&Backing::external(&data, &data), 0, true).expect_err("same file");
    assert!(matches!(err, MdIoError::SameDisk { .. }), "{err}");
    // Another name for the same file is the same disk.
    let link = d.0.join("link.img");
    std::os::unix::fs::symlink(&data, &link).expect("symlink");
    let err = create(&Backing::external(&data, &link), 0, true).expect_err("a link to it");
    assert!(err.to_string().contains("is the data disk"), "{err}");
    let err = MdDisk::open(&Backing::external(&data, &link))
        .err()
        .expect("attach refused");
    assert!(matches!(err, MdIoError::SameDisk { .. }), "{err}");
}

#[test]
fn create_md_refuses_a_metadata_device_in_use_unless_forced() {
    let d = Dir::new("refuse");
    let data = d.file("data.img", 16 * MIB, 0);
    let meta = d.file("meta.img", 0, 0);
    let b = Backing::external(&data, &meta);
    create(&b, 0, false).expect("first create-md");
    let err = create(&b, 0, false).expect_err("second create-md");
    assert!(matches!(err, MdIoError::HasMetadata { .. }), "{err}");
    create(&b, 0, true).expect("forced");

    // The metadata device was some replica's disk, with internal metadata
    // at its tail: refused too.
    let old_disk = d.file("old.img", 32 * MIB, 0);
    create(&Backing::internal(&old_disk), 0, false).expect("old internal");
    let err = create(&Backing::external(&data, &old_disk), 0, false).expect_err("old disk");
    assert!(matches!(err, MdIoError::HasMetadata { .. }), "{err}");
}

#[test]
fn short_or_mismatched_metadata_is_refused_with_the_reason() {
    let d = Dir::new("short");
    let data = d.file("data.img", 64 * MIB, 0);
    let meta = d.file("meta.img", 0, 0);
    let b = Backing::external(&data, &meta);
    let l = create(&b, 0, false).expect("create-md");
    // The metadata file lost its bitmap's end.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&meta)
        .and_then(|f| f.set_len(l.md_end() - 1))
        .expect("truncate");
    let err = read(&b).expect_err("short");
    assert!(
        matches!(err, MdIoError::MetaTooSmall { need, .. } if need == l.md_end()),
        "{err}"
    );
    // Empty: too small, not an I/O error.
    std::fs::write(&meta, b"").expect("empty");
    let err = read(&b).expect_err("empty");
    assert!(
        matches!(err, MdIoError::MetaTooSmall { have: 0, .. }),
        "{err}"
    );

    // The data disk grew since create-md.
    create(&b, 0, false).expect("create-md again");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .and_then(|f| f.set_len(65 * MIB))
        .expect("grow");
    let err = MdDisk::open(&b).err().expect("grown");
    assert!(err.to_string().contains("changed size"), "{err}");

    // A superblock of the other layout where this one looks.
    let internal = Layout::internal(64 * MIB, DEFAULT_GRANULARITY).expect("layout");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&meta)
        .expect("meta");
    f.write_all_at(&Superblock::fresh(&internal, 0).encode(), 0)
        .expect("write");
    let err = read(&b).expect_err("internal superblock in external place");
    assert!(
        matches!(
            err,
            MdIoError::WrongLayout {
                found: "internal",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_tiny_data_disk_is_refused() {
    let d = Dir::new("tiny");
    let data = d.file("data.img", 1000, 0);
    let meta = d.file("meta.img", 0, 0);
    let err = create(&Backing::external(&data, &meta), 0, false).expect_err("tiny");
    assert!(
        matches!(
            err,
            MdIoError::Metadata {
                source: MdError::DataTooSmall(1000),
                ..
            }
        ),
        "{err}"
    );
}
