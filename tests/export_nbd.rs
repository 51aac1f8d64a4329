//! duet's NBD server against NBD clients no one here wrote: nbdinfo and
//! nbdcopy (libnbd) and qemu-io (QEMU), and against a hand-driven socket
//! for malformed requests; on the unix socket, and on the TCP listener
//! with TLS and client certificates (made with openssl).

mod pki;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet::export::backend::FileBackend;
use duet::export::proto;
use duet::export::server::{self, Export};
use duet::export::tcp::{self, Limits, TcpExport};

const SIZE: u64 = 64 << 20;

struct Fixture {
    dir: PathBuf,
    socket: PathBuf,
    exports: server::Exports,
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
        let exports = Arc::new(exports);
        server::spawn(listener, exports.clone());
        Fixture {
            dir,
            socket,
            exports,
        }
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

/// A client may send many writes before it reads a reply: the server
/// keeps reading them (the replies it cannot send yet wait in its
/// queue), then every write is answered once, with its own cookie, and
/// is on the disk.
#[test]
fn writes_sent_without_reading_replies_are_all_answered() {
    const WRITES: u64 = 32 << 10;
    const LEN: u64 = 512;
    let f = Fixture::new("unread");
    let c = Raw::connect(&f.socket, "r0");
    let mut tx = c.0.try_clone().expect("clone");
    let (sent, all_sent) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        for i in 0..WRITES {
            let mut r = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
            r.extend_from_slice(&0u16.to_be_bytes());
            r.extend_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&i.to_be_bytes());
            r.extend_from_slice(&(i * LEN).to_be_bytes());
            r.extend_from_slice(&(LEN as u32).to_be_bytes());
            r.extend(std::iter::repeat_n((i % 251) as u8 + 1, LEN as usize));
            tx.write_all(&r).expect("send write");
        }
        let _ = sent.send(());
    });
    // Replies unread: more of them than the socket holds.
    all_sent
        .recv_timeout(Duration::from_secs(60))
        .expect("the server stopped reading requests while its replies were unread");
    sender.join().expect("sender");
    let mut rx = c.0;
    let mut seen = vec![false; WRITES as usize];
    for _ in 0..WRITES {
        let mut h = [0u8; 16];
        rx.read_exact(&mut h).expect("reply");
        assert_eq!(&h[..4], &proto::SIMPLE_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&h[4..8], &[0; 4], "write failed");
        let cookie = u64::from_be_bytes(h[8..].try_into().expect("8 bytes"));
        let slot = seen.get_mut(cookie as usize).expect("a cookie sent");
        assert!(!*slot, "write {cookie} answered twice");
        *slot = true;
    }
    let image = std::fs::read(f.image("r0")).expect("image");
    for i in 0..WRITES {
        let at = (i * LEN) as usize;
        assert!(
            image[at..at + LEN as usize]
                .iter()
                .all(|&b| b == (i % 251) as u8 + 1),
            "write {i} not on disk"
        );
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
    // Busy: detach refuses, says where it is mounted, and leaves the
    // device attached.
    let err = a.detach().expect_err("detached while mounted").to_string();
    assert!(err.contains("in use"), "{err}");
    assert!(
        err.contains(&format!("mounted at {}", mnt.display())),
        "{err}"
    );
    // Frozen, then unmounted: no mount is left, yet the filesystem holds
    // the device until thawed (mounting it again reaches it).
    run(Command::new("fsfreeze").arg("-f").arg(&mnt));
    run(Command::new("umount").arg(&mnt));
    let frozen = a.detach().map_err(|e| e.to_string());
    run(Command::new("mount").arg(&device).arg(&mnt));
    run(Command::new("fsfreeze").arg("-u").arg(&mnt));
    let err = frozen.expect_err("detached under a frozen filesystem");
    assert!(err.contains("frozen"), "{err}");
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

/// A daemon killed with its export attached leaves the loop device bound
/// to a file whose nbdfuse is gone; the next attachment removes it (before,
/// each SIGKILL of duetd on a Primary leaked one loop device).
#[test]
fn an_attachment_left_by_a_killed_daemon_is_removed_by_the_next() {
    use duet::export::attach::attach;
    let f = Fixture::new("leftover");
    let work = f.dir.join("attach");
    let device = f.dir.join("dev/duet/r0");
    let a = attach(&f.socket, "r0", &device, &work).expect("attach");
    let old = a.block_device.clone();
    // As a SIGKILL leaves it: nbdfuse killed, nothing detached.
    let pid = std::fs::read_to_string(work.join("r0.nbdfuse.pid")).expect("nbdfuse pid");
    run(Command::new("kill").args(["-9", pid.trim()]));
    drop(a);
    let sys = Path::new("/sys/block")
        .join(old.file_name().expect("loop name"))
        .join("loop/backing_file");
    assert!(sys.exists(), "the killed attachment's loop is not bound");
    let mut b = attach(&f.socket, "r0", &device, &work).expect("attach again");
    // Freed: gone, or bound again by this attachment (the lowest free).
    let cleared = || b.block_device == old || !sys.exists();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cleared() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let freed = cleared();
    b.detach().expect("detach");
    assert!(freed, "{} still bound to the dead nbdfuse", old.display());
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

// The TCP listener: TLS with client certificates (src/export/tcp.rs).

/// A CA, a server certificate for 127.0.0.1 and client certificates, made
/// with openssl (tests/pki), in the folders libnbd and qemu read
/// (ca-cert.pem, client-cert.pem, client-key.pem).
struct Certs {
    /// The server's files.
    server: duet::config::TlsFiles,
    /// A client with a certificate from the server's CA.
    good: PathBuf,
    /// A client with a certificate from another CA.
    other_ca: PathBuf,
    /// A client with the CA (to check the server) but no certificate.
    none: PathBuf,
}

impl Certs {
    fn new(dir: &Path) -> Certs {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).expect("pki");
        pki::new_ca(&pki, "ca");
        pki::new_ca(&pki, "other-ca");
        pki::signed(
            &pki,
            "server",
            "ca",
            &pki::server_ext("IP:127.0.0.1,DNS:localhost"),
        );
        pki::signed(&pki, "client", "ca", pki::CLIENT_EXT);
        pki::signed(&pki, "stranger", "other-ca", pki::CLIENT_EXT);
        let client_dir = |name: &str, cert: Option<&str>| {
            let d = dir.join(name);
            pki::client_dir(&pki, &d, "ca", cert);
            d
        };
        Certs {
            server: duet::config::TlsFiles {
                cert: pki.join("server-cert.pem"),
                key: pki.join("server-key.pem"),
                ca: pki.join("ca-cert.pem"),
            },
            good: client_dir("good", Some("client")),
            other_ca: client_dir("other-ca", Some("stranger")),
            none: client_dir("no-cert", None),
        }
    }
}

/// The fixture's exports also on 127.0.0.1, a port the kernel picks.
struct TlsFixture {
    f: Fixture,
    certs: Certs,
    tcp: Option<TcpExport>,
    port: u16,
}

impl TlsFixture {
    fn new(tag: &str, limits: Limits) -> TlsFixture {
        let f = Fixture::new(tag);
        let certs = Certs::new(&f.dir);
        let tls = duet::export::tls::server_config(&certs.server).expect("TLS config");
        let listener = tcp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let tcp = TcpExport::serve(listener, f.exports.clone(), tls, limits).expect("serve");
        let port = tcp.local_addr().port();
        TlsFixture {
            f,
            certs,
            tcp: Some(tcp),
            port,
        }
    }

    /// libnbd's URI for `export` with the client files in `dir`.
    fn nbds(&self, export: &str, dir: &Path) -> String {
        format!(
            "nbds://127.0.0.1:{}/{export}?tls-certificates={}",
            self.port,
            dir.display()
        )
    }

    fn plain(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.port)
    }

    /// qemu's options for `export` over TLS with the client files in `dir`.
    fn qemu_args(&self, export: &str, dir: &Path) -> Vec<String> {
        vec![
            "--object".into(),
            format!(
                "tls-creds-x509,id=tls0,endpoint=client,dir={}",
                dir.display()
            ),
            "--image-opts".into(),
            format!(
                "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={},export={export},tls-creds=tls0",
                self.port
            ),
        ]
    }

    fn clients(&self, export: &str) -> usize {
        self.f.exports[export]
            .clients
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TlsFixture {
    fn drop(&mut self) {
        if let Some(t) = self.tcp.take() {
            t.stop();
        }
    }
}

/// Runs a command that must fail; returns what it printed.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{cmd:?} succeeded: {text}");
    text
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut rng = duet::testkit::SplitMix64(seed);
    for chunk in data.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
    }
    data
}

#[test]
fn tls_clients_with_a_certificate_read_and_write() {
    let t = TlsFixture::new("tls-good", Limits::default());
    let json = run(Command::new("nbdinfo")
        .arg("--json")
        .arg(t.nbds("r0", &t.certs.good)));
    let v: serde_json::Value = serde_json::from_str(&json).expect("nbdinfo json");
    assert_eq!(v["exports"][0]["export-size"], SIZE, "{json}");
    // A pattern in with nbdcopy over two connections, and back out.
    let data = random(8 << 20, 7);
    let src = t.f.dir.join("pattern.bin");
    std::fs::write(&src, &data).expect("pattern");
    run(Command::new("nbdcopy")
        .args(["--connections=2"])
        .arg(&src)
        .arg(t.nbds("r0", &t.certs.good)));
    let back = t.f.dir.join("back.bin");
    run(Command::new("nbdcopy")
        .arg(t.nbds("r0", &t.certs.good))
        .arg(&back));
    let back = std::fs::read(&back).expect("copied back");
    assert_eq!(back.len() as u64, SIZE);
    assert!(
        back[..data.len()] == data[..],
        "the pattern came back changed"
    );
    let image = std::fs::read(t.f.image("r0")).expect("image");
    assert!(
        image[..data.len()] == data[..],
        "the pattern is not on the disk"
    );
    // QEMU with its own TLS stack and the same files.
    let info = run(Command::new("qemu-img")
        .arg("info")
        .args(t.qemu_args("r0", &t.certs.good)));
    assert!(info.contains(&format!("({SIZE} bytes)")), "{info}");
    let out = run(Command::new("qemu-io")
        .args(["-c", "write -P 0x5a 32M 1M", "-c", "read -P 0x5a 32M 1M"])
        .args(t.qemu_args("r0", &t.certs.good)));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let image = std::fs::read(t.f.image("r0")).expect("image");
    assert!(image[32 << 20..33 << 20].iter().all(|&b| b == 0x5a));
}

#[test]
fn tcp_clients_without_tls_are_refused_and_change_nothing() {
    let t = TlsFixture::new("tls-plain", Limits::default());
    let before = std::fs::read(t.f.image("r0")).expect("image");
    fails(Command::new("nbdinfo").arg(t.plain("r0")));
    let src = t.f.dir.join("ones.bin");
    std::fs::write(&src, vec![1u8; 1 << 20]).expect("source");
    fails(Command::new("nbdcopy").arg(&src).arg(t.plain("r0")));
    fails(
        Command::new("qemu-io")
            .args(["-f", "raw", "-c", "write -P 1 0 1M"])
            .arg(t.plain("r0")),
    );
    assert_eq!(
        std::fs::read(t.f.image("r0")).expect("image"),
        before,
        "a client without TLS changed the disk"
    );

    // By hand, the spec's FORCEDTLS rules.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", t.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).expect("greeting");
    assert_eq!(greeting, proto::greeting());
    s.write_all(&(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES).to_be_bytes())
        .expect("flags");
    let go = {
        let mut d = 2u32.to_be_bytes().to_vec();
        d.extend_from_slice(b"r0");
        d.extend_from_slice(&0u16.to_be_bytes());
        d
    };
    for (option, data, want) in [
        (proto::OPT_GO, &go[..], proto::REP_ERR_TLS_REQD),
        (proto::OPT_INFO, &go[..], proto::REP_ERR_TLS_REQD),
        (proto::OPT_LIST, &[][..], proto::REP_ERR_TLS_REQD),
        (99, &[1, 2, 3][..], proto::REP_ERR_TLS_REQD),
        // STARTTLS carries no data.
        (proto::OPT_STARTTLS, &[0][..], proto::REP_ERR_INVALID),
    ] {
        send_raw_option(&mut s, option, data);
        let (reply_to, reply, message) = raw_option_reply(&mut s);
        assert_eq!((reply_to, reply), (option, want), "option {option}");
        if want == proto::REP_ERR_TLS_REQD {
            assert!(String::from_utf8_lossy(&message).contains("TLS"));
        }
    }
    // EXPORT_NAME cannot be refused by a reply: the server hangs up.
    send_raw_option(&mut s, proto::OPT_EXPORT_NAME, b"r0");
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).expect("closed"), 0, "{rest:?}");
    assert_eq!(t.clients("r0"), 0);
}

#[test]
fn certificates_from_another_ca_or_none_are_refused() {
    let t = TlsFixture::new("tls-ca", Limits::default());
    let before = std::fs::read(t.f.image("r0")).expect("image");
    let src = t.f.dir.join("ones.bin");
    std::fs::write(&src, vec![1u8; 1 << 20]).expect("source");
    for dir in [&t.certs.other_ca, &t.certs.none] {
        let out = fails(Command::new("nbdinfo").arg(t.nbds("r0", dir)));
        // The server ends the TLS handshake with an alert.
        assert!(out.contains("TLS fatal alert"), "{out}");
        fails(Command::new("nbdcopy").arg(&src).arg(t.nbds("r0", dir)));
        fails(
            Command::new("qemu-io")
                .args(["-c", "write -P 1 0 1M"])
                .args(t.qemu_args("r0", dir)),
        );
    }
    assert_eq!(
        std::fs::read(t.f.image("r0")).expect("image"),
        before,
        "a refused client changed the disk"
    );
    // The good certificate still gets in.
    run(Command::new("nbdinfo").arg(t.nbds("r0", &t.certs.good)));
}

#[test]
fn silent_connections_are_dropped_and_never_crowd_out_for_long() {
    let timeout = Duration::from_secs(2);
    let limits = Limits {
        max_connections: 4,
        handshake_timeout: timeout,
    };
    let t = TlsFixture::new("tls-flood", limits);
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", t.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    };
    // One says nothing after the greeting; a good client works meanwhile.
    let started = Instant::now();
    let mut silent = connect();
    let mut greeting = [0u8; 18];
    silent.read_exact(&mut greeting).expect("greeting");
    run(Command::new("nbdinfo").arg(t.nbds("r0", &t.certs.good)));
    let tcp = t.tcp.as_ref().expect("listener");
    wait_until(Duration::from_secs(5), "nbdinfo's slot to be free", || {
        tcp.connections() == 1
    });
    // One more starts TLS and then stalls in the handshake.
    let mut stalled = connect();
    stalled.read_exact(&mut greeting).expect("greeting");
    stalled
        .write_all(&proto::FLAG_C_FIXED_NEWSTYLE.to_be_bytes())
        .expect("flags");
    send_raw_option(&mut stalled, proto::OPT_STARTTLS, &[]);
    assert_eq!(raw_option_reply(&mut stalled).1, proto::REP_ACK);
    // Two more fill the slots: the next connection is closed at once.
    let mut others: Vec<_> = (0..2).map(|_| connect()).collect();
    for s in &mut others {
        s.read_exact(&mut greeting).expect("greeting");
    }
    let mut over = connect();
    let mut rest = Vec::new();
    assert_eq!(over.read_to_end(&mut rest).expect("closed"), 0);
    // After the timeout every silent one is gone, and not long before.
    for s in [&mut silent, &mut stalled].into_iter().chain(&mut others) {
        let n = s.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(n, 0, "data instead of the end");
    }
    let waited = started.elapsed();
    assert!(
        waited >= timeout - Duration::from_millis(100) && waited < timeout * 3,
        "dropped after {waited:?}"
    );
    // And the slots are free again.
    wait_until(Duration::from_secs(5), "a good client to get in", || {
        Command::new("nbdinfo")
            .arg(t.nbds("r0", &t.certs.good))
            .output()
            .is_ok_and(|o| o.status.success())
    });
}

#[test]
fn tls_clients_are_counted_and_stopping_the_listener_drops_them() {
    let mut t = TlsFixture::new("tls-stop", Limits::default());
    // qemu-io reads commands from its standard input: connected until quit.
    let mut client = Command::new("qemu-io")
        .args(t.qemu_args("r0", &t.certs.good))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("qemu-io");
    wait_until(Duration::from_secs(10), "the client to be counted", || {
        t.clients("r0") == 1
    });
    // The daemon stops the listener when the replica stops being Primary.
    // It returns once the client's requests are done, not after a
    // timeout (the listener waits at most 10 s for stragglers).
    let stopping = Instant::now();
    if let Some(tcp) = t.tcp.take() {
        tcp.stop();
    }
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopping.elapsed()
    );
    assert_eq!(t.clients("r0"), 0, "a client outlived the listener");
    let refused = std::net::TcpStream::connect(("127.0.0.1", t.port));
    assert!(refused.is_err(), "still listening");
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn tls_files_are_checked_before_anything_is_served() {
    use duet::export::tls::server_config;
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new("tls-files");
    let certs = Certs::new(&f.dir);
    let good = certs.server.clone();
    server_config(&good).expect("the good files");
    let error = |files: &duet::config::TlsFiles| match server_config(files) {
        Ok(_) => panic!("accepted: {files:?}"),
        Err(e) => e.to_string(),
    };
    // A key that group or others may read, or someone else owns.
    std::fs::set_permissions(&good.key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = error(&good);
    assert!(
        e.contains(&format!("chmod 600 {}", good.key.display())),
        "{e}"
    );
    std::fs::set_permissions(&good.key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let theirs = f.dir.join("theirs-key.pem");
    std::fs::copy(&good.key, &theirs).expect("copy");
    std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown (needs root)");
    let e = error(&duet::config::TlsFiles {
        key: theirs,
        ..good.clone()
    });
    assert!(e.contains("belongs to uid 65534"), "{e}");
    // A key of another certificate.
    let pki = good.cert.parent().expect("pki");
    let e = error(&duet::config::TlsFiles {
        key: pki.join("client-key.pem"),
        ..good.clone()
    });
    assert!(e.contains("do not go together"), "{e}");
    // A CA file without a certificate, a missing certificate.
    let e = error(&duet::config::TlsFiles {
        ca: pki.join("server.ext"),
        ..good.clone()
    });
    assert!(e.contains("no certificate in it"), "{e}");
    let missing = f.dir.join("missing.pem");
    let e = error(&duet::config::TlsFiles {
        cert: missing.clone(),
        ..good.clone()
    });
    assert!(e.contains(&missing.display().to_string()), "{e}");
}

#[test]
fn starttls_is_unsupported_on_the_unix_socket_and_invalid_inside_tls() {
    let f = Fixture::new("starttls");
    // The unix socket never does TLS (NOTLS mode): unsupported.
    let mut s = UnixStream::connect(&f.socket).expect("connect");
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).expect("greeting");
    s.write_all(&proto::FLAG_C_FIXED_NEWSTYLE.to_be_bytes())
        .expect("flags");
    send_raw_option(&mut s, proto::OPT_STARTTLS, &[]);
    assert_eq!(raw_option_reply(&mut s).1, proto::REP_ERR_UNSUP);
    // What the TCP side hands on once TLS is up: a second STARTTLS is
    // invalid, and GO then enters transmission.
    let (mut client, inner) = UnixStream::pair().expect("pair");
    let exports = f.exports.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        server::serve_tls_client(inner, &exports, proto::FLAG_C_FIXED_NEWSTYLE, move || {
            let _ = ready_tx.send(());
        })
    });
    send_raw_option(&mut client, proto::OPT_STARTTLS, &[]);
    assert_eq!(raw_option_reply(&mut client).1, proto::REP_ERR_INVALID);
    let mut go = 2u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"r0");
    go.extend_from_slice(&0u16.to_be_bytes());
    send_raw_option(&mut client, proto::OPT_GO, &go);
    loop {
        let (_, reply, _) = raw_option_reply(&mut client);
        assert!(reply & (1 << 31) == 0, "GO refused: {reply:#x}");
        if reply == proto::REP_ACK {
            break;
        }
    }
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("ready not called");
    drop(client);
    server.join().expect("server thread");
}

fn send_raw_option(s: &mut impl Write, option: u32, data: &[u8]) {
    let mut o = proto::IHAVEOPT.to_be_bytes().to_vec();
    o.extend_from_slice(&option.to_be_bytes());
    o.extend_from_slice(&(data.len() as u32).to_be_bytes());
    o.extend_from_slice(data);
    s.write_all(&o).expect("send option");
}

/// (option, reply type, data) of the next option reply.
fn raw_option_reply(s: &mut impl Read) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).expect("option reply");
    assert_eq!(&h[..8], &proto::REPLY_MAGIC.to_be_bytes());
    let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let mut data = vec![0u8; word(16) as usize];
    s.read_exact(&mut data).expect("reply data");
    (word(8), word(12), data)
}
