//! duet's NBD server against NBD clients no one here wrote: nbdinfo and
//! nbdcopy (libnbd) and qemu-io (QEMU), and against a hand-driven socket
//! for malformed requests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use duet::export::backend::FileBackend;
use duet::export::proto;
use duet::export::server::{self, Export};

const SIZE: u64 = 64 << 20;

struct Fixture {
    dir: PathBuf,
    socket: PathBuf,
}

impl Fixture {
    /// Exports r0 (read-write) and ro (read-only) from files in a temp dir.
    fn new(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("duet-nbd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut exports = HashMap::new();
        for (name, ro) in [("r0", false), ("ro", true)] {
            let path = dir.join(format!("{name}.img"));
            let f = std::fs::File::create(&path).expect("image");
            f.set_len(SIZE).expect("size");
            let backend = Arc::new(FileBackend::open(&path, ro).expect("open"));
            exports.insert(name.to_string(), Export::new(name, backend));
        }
        let socket = dir.join("nbd.sock");
        let listener = server::bind(&socket).expect("bind");
        server::spawn(listener, Arc::new(exports));
        Fixture { dir, socket }
    }

    fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.socket.display())
    }

    fn image(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.img"))
    }
}

impl Drop for Fixture {
    /// Removes what a failed test may have left: mounts, loop devices and
    /// FUSE mounts under the fixture's folder, then the folder.
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let loops = Command::new("losetup")
            .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for p in points.iter().filter(|p| !p.ends_with("/r0")) {
            let _ = Command::new("umount").arg(p).status();
        }
        for line in loops.lines() {
            let mut parts = line.split_whitespace();
            if let (Some(dev), Some(file)) = (parts.next(), parts.next())
                && file.starts_with(&dir)
            {
                let _ = Command::new("losetup").args(["-d", dev]).status();
            }
        }
        for p in points.iter().filter(|p| p.ends_with("/r0")) {
            let _ = Command::new("fusermount3").arg("-u").arg(p).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

fn qemu_io(uri: &str, script: &[&str]) -> String {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in script {
        cmd.args(["-c", c]);
    }
    let out = run(cmd.arg(uri));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert!(!out.to_lowercase().contains("error"), "{out}");
    out
}

#[test]
fn nbdinfo_sees_size_flags_and_block_sizes() {
    let f = Fixture::new("info");
    let json = run(Command::new("nbdinfo").arg("--json").arg(f.uri("r0")));
    let v: serde_json::Value = serde_json::from_str(&json).expect("nbdinfo json");
    let e = &v["exports"][0];
    assert_eq!(e["export-size"], SIZE, "{json}");
    for (key, want) in [
        ("is_read_only", false),
        ("can_flush", true),
        ("can_fua", true),
        ("can_trim", true),
        ("can_zero", true),
        ("can_multi_conn", true),
    ] {
        assert_eq!(e[key], want, "{key}: {json}");
    }
    assert_eq!(e["block_size_preferred"], 4096, "{json}");
    let ro = run(Command::new("nbdinfo").arg("--json").arg(f.uri("ro")));
    let v: serde_json::Value = serde_json::from_str(&ro).expect("json");
    assert_eq!(v["exports"][0]["is_read_only"], true);
    let list = run(Command::new("nbdinfo").arg("--list").arg(f.uri("")));
    assert!(
        list.contains("export=\"r0\"") && list.contains("export=\"ro\""),
        "{list}"
    );
    let missing = Command::new("nbdinfo")
        .arg(f.uri("nope"))
        .output()
        .expect("nbdinfo");
    assert!(
        !missing.status.success(),
        "an unknown export must be refused"
    );
}

#[test]
fn qemu_io_writes_reads_zeroes_trims_and_flushes() {
    let f = Fixture::new("qemu");
    let uri = f.uri("r0");
    qemu_io(
        &uri,
        &["write -P 0xab 0 1M", "write -f -P 0xcd 1M 64k", "flush"],
    );
    qemu_io(&uri, &["read -P 0xab 0 1M", "read -P 0xcd 1M 64k"]);
    qemu_io(
        &uri,
        &[
            "write -z 512k 64k",
            "read -P 0 512k 64k",
            "read -P 0xab 576k 64k",
        ],
    );
    qemu_io(
        &uri,
        &[
            "discard 0 64k",
            "write -z -u 128k 64k",
            "read -P 0 128k 64k",
        ],
    );
    // The bytes are on the file behind the export.
    let bytes = std::fs::read(f.image("r0")).expect("image");
    assert!(bytes[576 << 10..1 << 20].iter().all(|&b| b == 0xab));
    assert!(bytes[512 << 10..576 << 10].iter().all(|&b| b == 0));
    assert!(
        bytes[1 << 20..(1 << 20) + (64 << 10)]
            .iter()
            .all(|&b| b == 0xcd)
    );
    // Read-only is enforced.
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 1 0 4k"])
        .arg(f.uri("ro"))
        .output()
        .expect("qemu-io");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // qemu sees the read-only flag and will not even open it for writing.
    assert!(
        text.contains("Permission denied") || text.contains("Operation not permitted"),
        "{text}"
    );
}

#[test]
fn nbdcopy_round_trips_over_several_connections_at_once() {
    let f = Fixture::new("copy");
    let src = f.dir.join("random.bin");
    let mut data = vec![0u8; 16 << 20];
    let mut rng = duet::testkit::SplitMix64(42);
    for chunk in data.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&src, &data).expect("source");
    run(Command::new("nbdcopy")
        .args(["--connections=4", "--requests=8"])
        .arg(&src)
        .arg(f.uri("r0")));
    let back = f.dir.join("back.bin");
    run(Command::new("nbdcopy")
        .args(["--connections=4"])
        .arg(f.uri("r0"))
        .arg(&back));
    let back = std::fs::read(&back).expect("copied back");
    assert_eq!(back.len() as u64, SIZE);
    assert!(
        back[..data.len()] == data[..],
        "data differs after the round trip"
    );
    // Four qemu-io clients at once on disjoint ranges.
    let clients: Vec<_> = (0..4u64)
        .map(|i| {
            let cmd = format!("write -P {} {}M 1M", 0x10 + i, 20 + i);
            Command::new("qemu-io")
                .args(["-f", "raw", "-c", &cmd])
                .arg(f.uri("r0"))
                .spawn()
                .expect("qemu-io")
        })
        .collect();
    for mut c in clients {
        assert!(c.wait().expect("wait").success());
    }
    let img = std::fs::read(f.image("r0")).expect("image");
    for i in 0..4u64 {
        let start = ((20 + i) << 20) as usize;
        assert!(
            img[start..start + (1 << 20)]
                .iter()
                .all(|&b| u64::from(b) == 0x10 + i),
            "client {i}"
        );
    }
}

/// A client by hand: handshake with GO, then raw requests.
struct Raw(UnixStream);

impl Raw {
    fn connect(socket: &Path, export: &str) -> Raw {
        let mut s = UnixStream::connect(socket).expect("connect");
        let info = duet::export::client::handshake(&mut s, export).expect("handshake");
        assert_eq!(info.size, SIZE);
        Raw(s)
    }

    fn request(&mut self, magic: u32, flags: u16, cmd: u16, offset: u64, len: u32, payload: &[u8]) {
        let mut r = magic.to_be_bytes().to_vec();
        r.extend_from_slice(&flags.to_be_bytes());
        r.extend_from_slice(&cmd.to_be_bytes());
        r.extend_from_slice(&0x1234u64.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
        r.extend_from_slice(payload);
        self.0.write_all(&r).expect("send request");
    }

    /// The error of the next simple reply.
    fn error(&mut self) -> u32 {
        let mut h = [0u8; 16];
        self.0.read_exact(&mut h).expect("reply");
        assert_eq!(&h[..4], &proto::SIMPLE_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&h[8..], &0x1234u64.to_be_bytes());
        u32::from_be_bytes([h[4], h[5], h[6], h[7]])
    }
}

#[test]
fn malformed_requests_get_nbd_errors_and_change_nothing() {
    let f = Fixture::new("bad");
    let before = std::fs::read(f.image("r0")).expect("image");
    let m = proto::REQUEST_MAGIC;
    let mut c = Raw::connect(&f.socket, "r0");
    // Out of range read, write, trim, zeroes.
    c.request(m, 0, 0, SIZE - 512, 4096, &[]);
    assert_eq!(c.error(), proto::EINVAL);
    c.request(m, 0, 1, SIZE, 4, &[1, 2, 3, 4]);
    assert_eq!(c.error(), proto::ENOSPC);
    c.request(m, 0, 4, u64::MAX - 1, 4096, &[]);
    assert_eq!(c.error(), proto::EINVAL);
    c.request(m, 0, 6, SIZE, 1, &[]);
    assert_eq!(c.error(), proto::EINVAL);
    // An oversized read, and an oversized write whose payload is taken
    // off the wire so the next request is still understood.
    c.request(m, 0, 0, 0, proto::MAX_PAYLOAD + 1, &[]);
    assert_eq!(c.error(), proto::EOVERFLOW);
    let big = vec![0xee; proto::MAX_PAYLOAD as usize + 512];
    c.request(m, 0, 1, 0, big.len() as u32, &big);
    assert_eq!(c.error(), proto::EOVERFLOW);
    // Unknown commands.
    c.request(m, 0, 99, 0, 0, &[]);
    assert_eq!(c.error(), proto::EINVAL);
    // Still in step: a valid read works.
    c.request(m, 0, 0, 0, 512, &[]);
    assert_eq!(c.error(), 0);
    let mut data = [0u8; 512];
    c.0.read_exact(&mut data).expect("read data");
    // Garbage instead of a request: the server hangs up.
    c.request(0xdead_beef, 0, 0, 0, 0, &[]);
    let mut rest = Vec::new();
    let n = c.0.read_to_end(&mut rest).expect("server closes");
    assert_eq!(n, 0, "no reply to garbage");
    // Writes to the read-only export are refused.
    let mut ro = Raw::connect(&f.socket, "ro");
    ro.request(m, 0, 1, 0, 4, &[9, 9, 9, 9]);
    assert_eq!(ro.error(), proto::EPERM);
    ro.request(m, 0, 4, 0, 4096, &[]);
    assert_eq!(ro.error(), proto::EPERM);
    assert_eq!(
        std::fs::read(f.image("r0")).expect("image"),
        before,
        "disk changed"
    );
    assert!(
        std::fs::read(f.image("ro"))
            .expect("ro")
            .iter()
            .all(|&b| b == 0)
    );
}

#[test]
fn the_socket_is_for_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new("mode");
    let mode = std::fs::metadata(&f.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_attached_export_is_a_block_device_that_keeps_its_files() {
    use duet::export::attach::attach;
    let f = Fixture::new("attach");
    let work = f.dir.join("attach");
    let device = f.dir.join("dev/duet/r0");
    let mnt = f.dir.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mountpoint");
    let mut a = attach(&f.socket, "r0", &device, &work).expect("attach");
    assert_eq!(std::fs::read_link(&device).expect("link"), a.block_device);
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&device));
    run(Command::new("mount").arg(&device).arg(&mnt));
    std::fs::write(mnt.join("hello.txt"), b"kept across attachments\n").expect("write");
    // Busy: detach refuses and leaves the device attached.
    let err = a.detach().expect_err("detached while mounted");
    assert!(err.to_string().contains("in use"), "{err}");
    run(Command::new("umount").arg(&mnt));
    a.detach().expect("detach");
    assert!(!device.exists(), "stable path left behind");
    let mut a = attach(&f.socket, "r0", &device, &work).expect("reattach");
    run(Command::new("mount").arg(&device).arg(&mnt));
    let text = std::fs::read_to_string(mnt.join("hello.txt")).expect("file survives");
    assert_eq!(text, "kept across attachments\n");
    run(Command::new("umount").arg(&mnt));
    a.detach().expect("detach");
}

#[test]
fn the_kernel_nbd_probe_asks_the_real_kernel() {
    use duet::export::kernel::{KernelError, nbd_family};
    use duet::export::netlink::NetlinkError;
    // A real generic netlink round trip: the family exists exactly when
    // the nbd module is loaded.
    let loaded = Path::new("/sys/module/nbd").exists();
    match nbd_family() {
        Ok(id) => assert!(loaded && id > 0, "family {id} without the module"),
        Err(KernelError::Netlink(NetlinkError::NoNbdDriver)) => assert!(!loaded),
        Err(e) => panic!("netlink probe failed: {e}"),
    }
}

#[test]
fn the_client_handshake_reports_unknown_exports() {
    let f = Fixture::new("client");
    let mut s = UnixStream::connect(&f.socket).expect("connect");
    let err = duet::export::client::handshake(&mut s, "nope").expect_err("unknown export");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    let mut s = UnixStream::connect(&f.socket).expect("connect");
    let info = duet::export::client::handshake(&mut s, "ro").expect("ro");
    assert_ne!(info.flags & proto::TFLAG_READ_ONLY, 0);
}
