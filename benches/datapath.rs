//! The data path through one client, fio, in one run: duet's export of a
//! replica (two duetd in network namespaces, protocol C over veth, files
//! as disks, node1 Primary) against nbdkit's file plugin exporting a file
//! of the same size (an NBD server that replicates nothing), both through
//! fio's nbd engine, and against fio writing a file directly (psync).
//! - seq_write, seq_read: 1 MiB blocks, 8 in flight, MiB/s;
//! - randwrite_qd1, randwrite_qd32: 4 KiB random writes, IOPS;
//! - sync_write_p99: 4 KiB writes with FUA, one at a time (the same
//!   minimal client for both servers, benches/common), µs;
//! - cpu_per_write_qd32: the whole machine's busy CPU time per write
//!   during randwrite_qd32, µs: client, both nodes, the link and the
//!   disk share this machine's cores, so this is what bounds the IOPS;
//! - primary_cpu_per_write_qd32, primary_cpu_per_mib: the CPU time of
//!   the server process alone (duet's Primary, nbdkit) per write during
//!   randwrite_qd32 and per MiB during seq_write, and the same of duet's
//!   Secondary: on two machines each node pays only its own share.
//!
//! `cargo bench --bench datapath` (root: namespaces; needs fio and
//! nbdkit). Prints the table and merges its entries into
//! target/bench/results.json.

#[path = "../tests/netns/mod.rs"]
mod netns;

mod common;
mod pair;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{cpu_ticks, latency, median, spread, start_nbdkit, ticks_per_second};
use duet_lab::results::{self, Entry};

const SIZE: u64 = 256 << 20;
const RUNS: usize = 3;
/// Each random-write row runs this long (fio's time_based).
const RANDOM_SECONDS: u32 = 5;
const LATENCY_WRITES: usize = 1000;

#[derive(Clone)]
enum Target {
    Nbd(String),
    File(PathBuf),
}

struct Job {
    rw: &'static str,
    bs: &'static str,
    depth: u32,
    timed: bool,
}

const SEQ_WRITE: Job = Job {
    rw: "write",
    bs: "1M",
    depth: 8,
    timed: false,
};
const SEQ_READ: Job = Job {
    rw: "read",
    bs: "1M",
    depth: 8,
    timed: false,
};
const RAND_QD1: Job = Job {
    rw: "randwrite",
    bs: "4k",
    depth: 1,
    timed: true,
};
const RAND_QD32: Job = Job {
    rw: "randwrite",
    bs: "4k",
    depth: 32,
    timed: true,
};

/// What fio measured: MiB/s and IOPS of the job's direction, and the
/// whole machine's busy CPU time per request meanwhile (every process and
/// the kernel's network and disk work: on this machine the client, both
/// nodes and their link share the same cores).
struct Fio {
    mibs: f64,
    iops: f64,
    cpu_us_per_io: f64,
    /// The CPU time of each process asked for, per request, µs.
    process_us_per_io: Vec<f64>,
    /// The same per MiB moved.
    process_us_per_mib: Vec<f64>,
}

/// Busy CPU time of the whole machine so far, in clock ticks (/proc/stat:
/// everything but idle and iowait is busy).
fn machine_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    total - idle
}

/// fio's job on the target, with the CPU time of `pids` (the servers)
/// counted meanwhile.
fn fio(target: &Target, job: &Job, pids: &[u32]) -> Fio {
    let mut c = Command::new("fio");
    c.args([
        "--name=bench",
        "--output-format=json",
        "--randrepeat=1",
        "--end_fsync=1",
    ])
    .arg(format!("--rw={}", job.rw))
    .arg(format!("--bs={}", job.bs))
    .arg(format!("--iodepth={}", job.depth))
    .arg(format!("--size={SIZE}"));
    let busy_before = machine_busy();
    let ticks_before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    if job.timed {
        c.arg(format!("--runtime={RANDOM_SECONDS}"))
            .arg("--time_based");
    }
    match target {
        Target::Nbd(uri) => c.args(["--ioengine=nbd"]).arg(format!("--uri={uri}")),
        Target::File(path) => c
            .args(["--ioengine=psync"])
            .arg(format!("--filename={}", path.display())),
    };
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .expect("fio (package fio)");
    let busy = (machine_busy() - busy_before) as f64 / ticks_per_second();
    let process_secs: Vec<f64> = pids
        .iter()
        .zip(ticks_before)
        .map(|(p, before)| cpu_ticks(*p).saturating_sub(before) as f64 / ticks_per_second())
        .collect();
    assert!(out.status.success(), "fio {}", job.rw);
    let text = String::from_utf8_lossy(&out.stdout);
    // The nbd engine says "connected" on stdout before the JSON.
    let json = &text[text.find('{').expect("fio's JSON")..];
    let v: serde_json::Value = serde_json::from_str(json).expect("fio JSON");
    let side = if job.rw.contains("read") {
        "read"
    } else {
        "write"
    };
    let r = &v["jobs"][0][side];
    let ios = r["total_ios"].as_f64().unwrap_or(0.0).max(1.0);
    let mib = (r["io_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64).max(1.0);
    Fio {
        mibs: r["bw"].as_f64().unwrap_or(0.0) / 1024.0,
        iops: r["iops"].as_f64().unwrap_or(0.0),
        cpu_us_per_io: busy * 1e6 / ios,
        process_us_per_io: process_secs.iter().map(|s| s * 1e6 / ios).collect(),
        process_us_per_mib: process_secs.iter().map(|s| s * 1e6 / mib).collect(),
    }
}

fn uri(socket: &Path) -> String {
    format!("nbd+unix:///r0?socket={}", socket.display())
}

/// One row: duet, nbdkit and the file, each a figure per run.
struct Row {
    name: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    /// Which column the results entry compares duet with.
    peer: Peer,
    figures: [Vec<f64>; 3],
}

#[derive(Clone, Copy)]
enum Peer {
    Nbdkit = 1,
    File = 2,
}

const COLUMNS: [&str; 3] = [
    "duet, protocol C",
    "nbdkit file plugin",
    "file, written directly",
];

fn row(name: &'static str, unit: &'static str, higher: bool, peer: Peer) -> Row {
    Row {
        name,
        unit,
        higher_is_better: higher,
        peer,
        figures: Default::default(),
    }
}

fn print(rows: &[Row]) {
    println!(
        "data path benchmark: {} MiB, {RUNS} runs, fio (nbd engine; psync for the file), median [min-max]",
        SIZE >> 20
    );
    println!(
        "{:<28} {:>24} {:>24} {:>24}",
        "", COLUMNS[0], COLUMNS[1], COLUMNS[2]
    );
    for r in rows {
        let cells: Vec<String> = r
            .figures
            .iter()
            .map(|f| {
                if f.is_empty() {
                    return "-".to_string();
                }
                let (lo, hi) = spread(f);
                format!("{:.1} [{:.1}-{:.1}]", median(f), lo, hi)
            })
            .collect();
        println!(
            "{:<28} {:>24} {:>24} {:>24} {}",
            r.name, cells[0], cells[1], cells[2], r.unit
        );
    }
}

fn entries(rows: &[Row]) -> Vec<Entry> {
    rows.iter()
        .filter(|r| !r.figures[r.peer as usize].is_empty())
        .map(|r| Entry {
            name: r.name,
            value: median(&r.figures[0]),
            unit: r.unit,
            peer: COLUMNS[r.peer as usize].to_string(),
            peer_value: median(&r.figures[r.peer as usize]),
            higher_is_better: r.higher_is_better,
        })
        .collect()
}

fn main() {
    let mut lab = pair::lab(SIZE);
    let kit_image = lab.dir.join("nbdkit.img");
    let file = lab.dir.join("direct.img");
    for f in [&kit_image, &file] {
        std::fs::File::create(f)
            .and_then(|h| h.set_len(SIZE))
            .expect("image");
    }
    let kit_sock = lab.dir.join("nbdkit.sock");
    let mut nbdkit = start_nbdkit(&kit_sock, &kit_image);
    let duet = Target::Nbd(uri(&pair::socket(&lab)));
    let kit = Target::Nbd(uri(&kit_sock));
    let direct = Target::File(file);

    let mut rows = [
        row("seq_write", "MiB/s", true, Peer::File),
        row("seq_read", "MiB/s", true, Peer::Nbdkit),
        row("randwrite_qd1", "IOPS", true, Peer::Nbdkit),
        row("randwrite_qd32", "IOPS", true, Peer::Nbdkit),
        row("sync_write_p99", "us", false, Peer::Nbdkit),
        row("cpu_per_write_qd32", "us", false, Peer::Nbdkit),
        row("primary_cpu_per_write_qd32", "us", false, Peer::Nbdkit),
        row("secondary_cpu_per_write_qd32", "us", false, Peer::Nbdkit),
        row("primary_cpu_per_mib", "us", false, Peer::Nbdkit),
        row("secondary_cpu_per_mib", "us", false, Peer::Nbdkit),
    ];
    let duet_pids = |lab: &netns::Lab| -> Vec<u32> {
        ["node1", "node2"]
            .iter()
            .map(|n| lab.pid(n).expect("duetd runs"))
            .collect()
    };
    for _ in 0..RUNS {
        pair::fresh_pair(&mut lab);
        let servers = [duet_pids(&lab), vec![nbdkit.id()], vec![]];
        for (i, target) in [&duet, &kit, &direct].into_iter().enumerate() {
            let pids = &servers[i];
            let seq = fio(target, &SEQ_WRITE, pids);
            rows[0].figures[i].push(seq.mibs);
            rows[1].figures[i].push(fio(target, &SEQ_READ, pids).mibs);
            if matches!(target, Target::File(_)) {
                continue;
            }
            rows[2].figures[i].push(fio(target, &RAND_QD1, pids).iops);
            let qd32 = fio(target, &RAND_QD32, pids);
            rows[3].figures[i].push(qd32.iops);
            rows[5].figures[i].push(qd32.cpu_us_per_io);
            // Columns: duet's node (Primary, then Secondary), nbdkit.
            for (k, us) in qd32.process_us_per_io.iter().enumerate() {
                rows[6 + k].figures[i].push(*us);
            }
            for (k, us) in seq.process_us_per_mib.iter().enumerate() {
                rows[8 + k].figures[i].push(*us);
            }
        }
        rows[4].figures[0].push(latency(&pair::socket(&lab), SIZE, LATENCY_WRITES).1);
        rows[4].figures[1].push(latency(&kit_sock, SIZE, LATENCY_WRITES).1);
    }
    pair::stop_both(&mut lab);
    let _ = nbdkit.kill();
    let _ = nbdkit.wait();
    print(&rows);
    results::merge(&entries(&rows));
}
