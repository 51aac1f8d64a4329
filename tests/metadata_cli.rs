//! `duetctl create-md` and `dump-md` on real files, as an administrator
//! runs them before the first start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(tag: &str) -> Dir {
    setup_with(tag, "")
}

/// `extra` goes into the replica's section; `{d}` in it is the folder.
fn setup_with(tag: &str, extra: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("duet-md-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    for disk in ["disk1.img", "disk2.img"] {
        let f = std::fs::File::create(dir.join(disk)).expect("disk");
        f.set_len(1 << 30).expect("size");
    }
    let config = format!(
        "[cluster]\nname = \"lab\"\nkey-file = \"duet.key\"\n\n\
         [[link]]\nname = \"crossover\"\ninterface = \"eth1\"\nmode = \"ucast\"\n\n\
         [[node]]\nname = \"node1\"\naddress = {{ crossover = \"203.0.113.1\" }}\n\n\
         [[node]]\nname = \"node2\"\naddress = {{ crossover = \"203.0.113.2\" }}\n\n\
         [[replica]]\nname = \"r0\"\ndisk = {{ node1 = \"{d}/disk1.img\", node2 = \"{d}/disk2.img\" }}\n\
         address = {{ node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }}\n{extra}\n",
        d = dir.display(),
        extra = extra.replace("{d}", &dir.display().to_string()),
    );
    std::fs::write(dir.join("duet.toml"), config).expect("config");
    Dir(dir)
}

fn duetctl(dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("duet.toml");
    Command::new(env!("CARGO_BIN_EXE_duetctl"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .args(["--node", "node1"])
        .output()
        .expect("duetctl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn create_md_then_dump_md_and_refusals() {
    let d = setup("create");
    let out = duetctl(&d.0, &["create-md", "r0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("usable of 1.0 GiB"), "{}", text(&out));
    let dump = duetctl(&d.0, &["dump-md", "r0", "--json"]);
    assert!(dump.status.success(), "{}", text(&dump));
    let v: serde_json::Value = serde_json::from_slice(&dump.stdout).expect("json");
    assert_eq!(v["seq"], 1);
    assert_eq!(v["flags"][0], "inconsistent");
    assert_eq!(v["generations"]["current"], "0000000000000000");
    let size = v["size"].as_u64().expect("size");
    assert!(
        size < 1 << 30 && size > (1 << 30) - (1 << 20),
        "usable {size}"
    );
    // Again: refused, the metadata is kept.
    let again = duetctl(&d.0, &["create-md", "r0"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).contains("already holds duet metadata"),
        "{}",
        text(&again)
    );
    assert!(
        duetctl(&d.0, &["create-md", "r0", "--force"])
            .status
            .success()
    );
    // A disk with a filesystem is refused too.
    let fs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(d.0.join("disk1.img"))
        .status()
        .expect("mkfs.ext4");
    assert!(fs.success());
    let busy = duetctl(&d.0, &["create-md", "r0"]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(text(&busy).contains("ext4"), "{}", text(&busy));
}

#[test]
fn damaged_or_missing_metadata_is_reported_clearly() {
    let d = setup("damage");
    let none = duetctl(&d.0, &["dump-md", "r0"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none).contains("no duet metadata here"),
        "{}",
        text(&none)
    );
    assert!(duetctl(&d.0, &["create-md", "r0"]).status.success());
    // Flip a byte of the superblock in slot 0 (the tail of the disk).
    let disk = d.0.join("disk1.img");
    let layout = duet::replication::metadata::Layout::internal(1 << 30, 4096).expect("layout");
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .expect("disk");
    let mut byte = [0u8; 1];
    let at = layout.slot_offset(0) + 20;
    f.read_exact_at(&mut byte, at).expect("read");
    f.write_all_at(&[byte[0] ^ 1], at).expect("write");
    let bad = duetctl(&d.0, &["dump-md", "r0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("torn or corrupted"), "{}", text(&bad));
    let unknown = duetctl(&d.0, &["dump-md", "r9"]);
    assert!(
        text(&unknown).contains("no replica \"r9\"") && text(&unknown).contains("r0"),
        "{}",
        text(&unknown)
    );
}

/// The last `len` bytes of the file at `path` are all zero.
fn zero_tail(path: &Path, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open");
    let size = f.metadata().expect("size").len();
    let mut buf = vec![1u8; len as usize];
    f.read_exact_at(&mut buf, size - len).expect("read");
    buf.iter().all(|&b| b == 0)
}

#[test]
fn external_metadata_takes_none_of_the_data_disk() {
    let d = setup_with(
        "external",
        "meta-disk = { node1 = \"{d}/meta1.img\", node2 = \"{d}/meta2.img\" }",
    );
    let meta = d.0.join("meta1.img");
    // Not there yet: named in the error, nothing created in its place.
    let missing = duetctl(&d.0, &["create-md", "r0"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("meta1.img") && text(&missing).contains("No such file"),
        "{}",
        text(&missing)
    );
    assert!(!meta.exists());

    std::fs::File::create(&meta).expect("meta file");
    let out = duetctl(&d.0, &["create-md", "r0"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("all 1.0 GiB of it usable")
            && said.contains("takes none of the data disk")
            && said.contains("meta1.img"),
        "{said}"
    );
    // The data disk was not written: its tail, where internal metadata
    // would be, is still zero, and its size is unchanged.
    let disk = d.0.join("disk1.img");
    assert_eq!(std::fs::metadata(&disk).expect("disk").len(), 1 << 30);
    assert!(zero_tail(&disk, 1 << 20));

    let dump = duetctl(&d.0, &["dump-md", "r0", "--json"]);
    assert!(dump.status.success(), "{}", text(&dump));
    let v: serde_json::Value = serde_json::from_slice(&dump.stdout).expect("json");
    assert_eq!(v["size"], 1u64 << 30, "the whole disk is data");
    assert_eq!(v["meta_disk"], meta.display().to_string());
    assert_eq!(v["disk"], disk.display().to_string());
    assert_eq!(v["flags"][0], "inconsistent");
    assert_eq!(
        v["activity_log"]["offset"], 8192,
        "right after the two slots"
    );
    let plain = duetctl(&d.0, &["dump-md", "r0"]);
    assert!(
        text(&plain).contains(&format!("metadata on {}", meta.display())),
        "{}",
        text(&plain)
    );

    // Again: refused, naming the metadata file; --force overwrites.
    let again = duetctl(&d.0, &["create-md", "r0"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).contains("already holds duet metadata") && text(&again).contains("meta1.img"),
        "{}",
        text(&again)
    );
    assert!(
        duetctl(&d.0, &["create-md", "r0", "--force"])
            .status
            .success()
    );

    // A metadata device with a filesystem on it is refused too.
    std::fs::File::create(&meta)
        .and_then(|f| f.set_len(8 << 20))
        .expect("meta file");
    let fs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&meta)
        .status()
        .expect("mkfs.ext4");
    assert!(fs.success());
    let busy = duetctl(&d.0, &["create-md", "r0"]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(
        text(&busy).contains("ext4") && text(&busy).contains("overwrite its start"),
        "{}",
        text(&busy)
    );
    assert!(
        duetctl(&d.0, &["create-md", "r0", "--force"])
            .status
            .success()
    );
}

#[test]
fn the_metadata_device_is_never_the_data_disk_under_another_name() {
    let d = setup_with("samedisk", "meta-disk = \"{d}/link.img\"");
    std::os::unix::fs::symlink(d.0.join("disk1.img"), d.0.join("link.img")).expect("link");
    let out = duetctl(&d.0, &["create-md", "r0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("is the data disk"), "{}", text(&out));
    // And the config itself refuses the same path for both.
    let cfg = d.0.join("duet.toml");
    let body = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, body.replace("link.img", "disk1.img")).expect("config");
    let out = duetctl(&d.0, &["create-md", "r0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("duet.toml:") && text(&out).contains("replica[0].meta-disk"),
        "{}",
        text(&out)
    );
}
