use super::*;
use crate::testkit::SplitMix64;

const GIB: u64 = 1 << 30;

fn sample(seq: u64) -> Superblock {
    let layout = Layout::internal(GIB, DEFAULT_GRANULARITY).expect("layout");
    let mut sb = Superblock::fresh(&layout, 1);
    sb.seq = seq;
    sb.flags = FLAG_CONSISTENT | FLAG_PRIMARY;
    sb.generations = Generations {
        current: Generation(0xAAAA),
        bitmap: Generation(0xBBBB),
        history: [Generation(0xCCCC), Generation(0xDDDD)],
    };
    sb
}

#[test]
fn internal_layout_fits_and_covers_the_data() {
    for size in [64 << 20, GIB, 10 * GIB + 12345, 2 << 40] {
        let l = Layout::internal(size, DEFAULT_GRANULARITY).expect("layout");
        assert_eq!(l.md_offset % BLOCK as u64, 0);
        assert_eq!(l.usable, l.md_offset);
        assert!(
            l.bitmap_offset + l.bitmap_len <= size,
            "{size}: past the end"
        );
        assert!(
            l.bitmap_len * 8 * u64::from(l.granularity) >= l.usable,
            "{size}: bitmap short"
        );
        // The metadata costs a tiny fraction: 32 KiB of bitmap per GiB.
        assert!(size - l.usable <= 2 * BLOCK as u64 + AL_LEN + size / (1 << 15) + 2 * BLOCK as u64);
    }
    assert_eq!(
        Layout::internal(4096, 4096),
        Err(MdError::DiskTooSmall(4096))
    );
    let coarse = Layout::internal(GIB, 1 << 16).expect("64k granularity");
    assert!(coarse.bitmap_len < Layout::internal(GIB, 4096).expect("4k").bitmap_len);
}

#[test]
fn external_layout_leaves_the_whole_disk_to_data() {
    for size in [64 << 20, GIB, 10 * GIB + 12345, 2 << 40] {
        let l = Layout::external(size, DEFAULT_GRANULARITY).expect("layout");
        assert!(l.external);
        // Whole 4 KiB blocks of the disk, nothing kept back.
        assert_eq!(l.usable, size / 4096 * 4096);
        assert_eq!(l.md_offset, 0);
        assert_eq!(l.slot_offset(0), 0);
        assert_eq!(l.slot_offset(1), BLOCK as u64);
        assert_eq!(l.al_offset, 2 * BLOCK as u64);
        assert_eq!(l.bitmap_offset, l.al_offset + AL_LEN);
        assert!(
            l.bitmap_len * 8 * u64::from(l.granularity) >= l.usable,
            "{size}: bitmap short"
        );
        assert_eq!(l.bitmap_len % BLOCK as u64, 0);
        // The metadata device needs what internal metadata would take.
        let internal = Layout::internal(size, DEFAULT_GRANULARITY).expect("internal");
        assert!(l.md_len() <= internal.md_len() + BLOCK as u64, "{size}");
        assert_eq!(l.md_len(), l.md_end());
    }
    assert_eq!(
        Layout::external(4095, 4096),
        Err(MdError::DataTooSmall(4095))
    );
    let l = Layout::external(4096, 4096).expect("one block");
    assert_eq!((l.usable, l.bitmap_len), (4096, BLOCK as u64));
}

#[test]
fn the_superblock_says_which_layout_it_describes() {
    let layout = Layout::external(GIB, DEFAULT_GRANULARITY).expect("layout");
    let sb = Superblock::fresh(&layout, 1);
    assert!(sb.external);
    let block = sb.encode();
    assert_eq!(block[34], 1, "byte 34: the layout");
    assert_eq!(Superblock::decode(&block), Ok(sb));
    assert_eq!(sample(1).encode()[34], 0, "internal is 0, as before");
    // External offsets read as internal ones would overlap the data: an
    // older reader, or a flipped layout byte, refuses them.
    let mut b = block;
    b[34] = 0;
    assert_eq!(
        Superblock::decode(&resealed(b)),
        Err(MdError::Invalid("areas overlap"))
    );
    b[34] = 2;
    assert_eq!(
        Superblock::decode(&resealed(b)),
        Err(MdError::Invalid("unknown metadata layout"))
    );
    // External areas must not overlap the superblock slots.
    let mut bad = sb;
    bad.al_offset = BLOCK as u64;
    assert!(matches!(
        Superblock::decode(&bad.encode()),
        Err(MdError::Invalid(_))
    ));
}

#[test]
fn superblocks_round_trip() {
    let mut rng = SplitMix64(3);
    for _ in 0..1000 {
        let mut sb = sample(rng.next_u64() >> 1);
        sb.node = rng.next_u64() as u16;
        sb.flags = rng.next_u64() as u32;
        sb.generations.current = Generation(rng.next_u64());
        let block = sb.encode();
        assert_eq!(Superblock::decode(&block), Ok(sb));
    }
}

#[test]
fn any_damage_is_detected() {
    let block = sample(7).encode();
    for i in 0..BLOCK {
        let mut b = block;
        b[i] ^= 0x10;
        assert!(
            Superblock::decode(&b).is_err(),
            "a flip at byte {i} went unnoticed"
        );
    }
    assert_eq!(
        Superblock::decode(&block[..100]),
        Err(MdError::WrongSize(100))
    );
    assert_eq!(Superblock::decode(&[0u8; BLOCK]), Err(MdError::BadMagic));
}

/// Re-checksums a hand-edited block, so only the edit is tested.
fn resealed(mut b: [u8; BLOCK]) -> [u8; BLOCK] {
    let crc = crc32c::crc32c(&b[..CRC_AT]);
    b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn well_sealed_nonsense_is_refused_too() {
    let mut b = sample(1).encode();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(
        Superblock::decode(&resealed(b)),
        Err(MdError::UnsupportedVersion(2))
    );
    let mut sb = sample(1);
    sb.granularity = 3000;
    assert!(matches!(
        Superblock::decode(&sb.encode()),
        Err(MdError::Invalid(_))
    ));
    let mut sb = sample(1);
    sb.bitmap_len = 1;
    assert!(matches!(
        Superblock::decode(&sb.encode()),
        Err(MdError::Invalid(_))
    ));
    let mut sb = sample(1);
    sb.al_offset = 0;
    assert!(matches!(
        Superblock::decode(&sb.encode()),
        Err(MdError::Invalid(_))
    ));
}

/// A power cut during a superblock write: the slot being written holds a
/// prefix of the new block (whole sectors, or any byte for disks that tear
/// inside a sector) over the old one. Reading afterwards must give the last
/// committed superblock or the new one, never an error or an older one.
#[test]
fn a_crash_at_any_point_of_an_update_leaves_a_valid_newest_superblock() {
    let mut slots = [sample(1).encode(), [0u8; BLOCK]];
    let mut committed = sample(1);
    let mut rng = SplitMix64(11);
    for round in 0..40u64 {
        let (newest_sb, slot) = newest([&slots[0], &slots[1]]).expect("valid");
        assert_eq!(newest_sb, committed);
        let mut next = newest_sb.next();
        next.generations.current = Generation(rng.next_u64());
        let new_block = next.encode();
        let target = 1 - slot;
        let old_block = slots[target];
        let cuts: Vec<usize> = (0..=BLOCK / 512)
            .map(|s| s * 512)
            .chain((0..20).map(|_| rng.below(BLOCK as u64) as usize))
            .collect();
        for cut in cuts {
            let mut torn = old_block;
            torn[..cut].copy_from_slice(&new_block[..cut]);
            let mut after = slots;
            after[target] = torn;
            let (seen, _) = newest([&after[0], &after[1]])
                .unwrap_or_else(|e| panic!("round {round}, cut at {cut}: {e}"));
            let complete = cut == BLOCK;
            let want = if complete { next } else { committed };
            assert_eq!(seen, want, "round {round}, cut at {cut}");
        }
        slots[target] = new_block;
        committed = next;
    }
}

#[test]
fn the_newest_slot_wins_and_both_bad_is_an_error() {
    let (a, b) = (sample(5).encode(), sample(6).encode());
    assert_eq!(newest([&a, &b]).expect("ok").1, 1);
    assert_eq!(newest([&b, &a]).expect("ok").1, 0);
    let junk = [0xffu8; BLOCK];
    assert_eq!(newest([&junk, &a]).expect("ok").0.seq, 5);
    assert!(matches!(
        newest([&junk, &junk]),
        Err(MdError::NoValidSlot(_))
    ));
}

/// Writes the fuzz seed when DUET_WRITE_CORPUS is set; otherwise checks the
/// committed seed still decodes (the format did not drift).
#[test]
fn write_fuzz_corpus() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/metadata_decode/valid-superblock");
    if std::env::var_os("DUET_WRITE_CORPUS").is_some() {
        std::fs::write(&path, sample(9).encode()).expect("write seed");
    }
    let seed = std::fs::read(&path).expect("seed file (DUET_WRITE_CORPUS=1 writes it)");
    assert_eq!(Superblock::decode(&seed), Ok(sample(9)));
}
