//! The export, side by side with nbdkit's file plugin on the same backing
//! file, through the same clients: nbdcopy for sequential throughput, and a
//! minimal synchronous NBD client (below, the same for both servers) for
//! 4 KiB random-write latency at queue depth 1.
//!
//! `cargo bench --bench export` prints the table and writes
//! target/bench/export.json. Needs nbdkit and nbdcopy.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet::export::backend::FileBackend;
use duet::export::proto;
use duet::export::server::{self, Export};
use duet::testkit::SplitMix64;

const SIZE: u64 = 256 << 20;
const RUNS: usize = 5;
const LATENCY_WRITES: usize = 2000;

struct Row {
    name: &'static str,
    unit: &'static str,
    duet: Vec<f64>,
    nbdkit: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn spread(v: &[f64]) -> (f64, f64) {
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn uri(socket: &Path) -> String {
    format!("nbd+unix:///r0?socket={}", socket.display())
}

fn nbdcopy(from: &str, to: &str) -> Duration {
    let t = Instant::now();
    let st = Command::new("nbdcopy")
        .args(["--flush", from, to])
        .status()
        .expect("nbdcopy (package libnbd-bin)");
    assert!(st.success(), "nbdcopy {from} {to}");
    t.elapsed()
}

fn mib_per_s(d: Duration) -> f64 {
    (SIZE as f64 / (1 << 20) as f64) / d.as_secs_f64()
}

/// Sequential write (file -> export) and read (export -> null), MiB/s.
fn sequential(socket: &Path, source: &Path) -> (f64, f64) {
    let w = nbdcopy(&source.to_string_lossy(), &uri(socket));
    let r = nbdcopy(&uri(socket), "null:");
    (mib_per_s(w), mib_per_s(r))
}

/// p50 and p99 of synchronous 4 KiB writes with FUA at random offsets, µs.
fn latency(socket: &Path) -> (f64, f64) {
    let mut s = handshake(socket);
    let mut rng = SplitMix64(7);
    let data = vec![0x5a; 4096];
    let mut lat = Vec::with_capacity(LATENCY_WRITES);
    for i in 0..LATENCY_WRITES {
        let offset = rng.below(SIZE / 4096) * 4096;
        let mut req = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
        req.extend_from_slice(&proto::CMD_FLAG_FUA.to_be_bytes());
        req.extend_from_slice(&1u16.to_be_bytes());
        req.extend_from_slice(&(i as u64).to_be_bytes());
        req.extend_from_slice(&offset.to_be_bytes());
        req.extend_from_slice(&4096u32.to_be_bytes());
        req.extend_from_slice(&data);
        let t = Instant::now();
        s.write_all(&req).expect("write request");
        let mut reply = [0u8; 16];
        s.read_exact(&mut reply).expect("reply");
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(&reply[4..8], &[0, 0, 0, 0], "write failed");
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

fn handshake(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    duet::export::client::handshake(&mut s, "r0").expect("handshake");
    s
}

fn start_nbdkit(socket: &Path, image: &Path) -> Child {
    let child = Command::new("nbdkit")
        .args(["-f", "-U"])
        .arg(socket)
        .args(["-e", "r0", "file"])
        .arg(image)
        .stdout(Stdio::null())
        .spawn()
        .expect("nbdkit");
    let t = Instant::now();
    while !socket.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "nbdkit did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn main() {
    let dir = std::env::temp_dir().join(format!("duet-bench-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let image = dir.join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(SIZE))
        .expect("image");
    let source = dir.join("source.bin");
    let mut rng = SplitMix64(1);
    let data: Vec<u8> = (0..SIZE / 8)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    std::fs::write(&source, data).expect("source");

    let duet_sock = dir.join("duet.sock");
    let backend = Arc::new(FileBackend::open(&image, false).expect("backend"));
    let exports = HashMap::from([("r0".to_string(), Export::new("r0", backend))]);
    server::spawn(server::bind(&duet_sock).expect("bind"), Arc::new(exports));
    let kit_sock = dir.join("nbdkit.sock");
    let mut nbdkit = start_nbdkit(&kit_sock, &image);

    let mut rows = [
        Row {
            name: "sequential write",
            unit: "MiB/s",
            duet: vec![],
            nbdkit: vec![],
        },
        Row {
            name: "sequential read",
            unit: "MiB/s",
            duet: vec![],
            nbdkit: vec![],
        },
        Row {
            name: "4k sync write p50",
            unit: "us",
            duet: vec![],
            nbdkit: vec![],
        },
        Row {
            name: "4k sync write p99",
            unit: "us",
            duet: vec![],
            nbdkit: vec![],
        },
    ];
    for _ in 0..RUNS {
        // Alternate which server goes first, so caches favour neither.
        for (sock, duet) in [(&duet_sock, true), (&kit_sock, false)] {
            let (w, r) = sequential(sock, &source);
            let (p50, p99) = latency(sock);
            for (row, v) in rows.iter_mut().zip([w, r, p50, p99]) {
                if duet {
                    row.duet.push(v)
                } else {
                    row.nbdkit.push(v)
                }
            }
        }
    }
    let _ = nbdkit.kill();
    let _ = nbdkit.wait();
    report(&rows);
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(rows: &[Row]) {
    println!(
        "export benchmark: {} MiB file, {RUNS} runs, median [min-max]",
        SIZE >> 20
    );
    println!("{:<20} {:>26} {:>26}", "", "duet", "nbdkit file plugin");
    let mut json = Vec::new();
    for r in rows {
        let (dmin, dmax) = spread(&r.duet);
        let (kmin, kmax) = spread(&r.nbdkit);
        println!(
            "{:<20} {:>9.1} [{:>6.1}-{:>6.1}] {:>9.1} [{:>6.1}-{:>6.1}] {}",
            r.name,
            median(&r.duet),
            dmin,
            dmax,
            median(&r.nbdkit),
            kmin,
            kmax,
            r.unit
        );
        json.push(format!(
            "{{\"name\":\"{}\",\"unit\":\"{}\",\"duet\":{:?},\"nbdkit\":{:?}}}",
            r.name, r.unit, r.duet, r.nbdkit
        ));
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("export.json"), format!("[{}]\n", json.join(",")));
    }
}
