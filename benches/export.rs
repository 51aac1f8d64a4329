//! The export, side by side with nbdkit's file plugin on the same backing
//! file, through the same clients: nbdcopy for sequential throughput, and a
//! minimal synchronous NBD client (below, the same for both servers) for
//! 4 KiB random-write latency at queue depth 1.
//!
//! `cargo bench --bench export` prints the table and writes
//! target/bench/export.json. Needs nbdkit and nbdcopy.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet::export::backend::FileBackend;
use duet::export::server::{self, Export};
use duet::testkit::SplitMix64;

mod common;
use common::{Row, latency, report, start_nbdkit};

const SIZE: u64 = 256 << 20;
const RUNS: usize = 5;
const LATENCY_WRITES: usize = 2000;

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
            peer: vec![],
        },
        Row {
            name: "sequential read",
            unit: "MiB/s",
            duet: vec![],
            peer: vec![],
        },
        Row {
            name: "4k sync write p50",
            unit: "us",
            duet: vec![],
            peer: vec![],
        },
        Row {
            name: "4k sync write p99",
            unit: "us",
            duet: vec![],
            peer: vec![],
        },
    ];
    for _ in 0..RUNS {
        // Alternate which server goes first, so caches favour neither.
        for (sock, duet) in [(&duet_sock, true), (&kit_sock, false)] {
            let (w, r) = sequential(sock, &source);
            let (p50, p99) = latency(sock, SIZE, LATENCY_WRITES);
            for (row, v) in rows.iter_mut().zip([w, r, p50, p99]) {
                if duet {
                    row.duet.push(v)
                } else {
                    row.peer.push(v)
                }
            }
        }
    }
    let _ = nbdkit.kill();
    let _ = nbdkit.wait();
    report(
        "export",
        &format!("export benchmark: {} MiB file, {RUNS} runs", SIZE >> 20),
        "nbdkit file plugin",
        &rows,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
