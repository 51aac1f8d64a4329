//! What the benchmarks share: the table of figures (median and spread over
//! runs, side by side with a peer tool) and a minimal synchronous NBD
//! client for write latency, the same for every server measured.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use std::time::Instant;

use duet::export::proto;
use duet::testkit::SplitMix64;

pub struct Row {
    pub name: &'static str,
    pub unit: &'static str,
    pub duet: Vec<f64>,
    /// The peer tool's figures, same runs.
    pub peer: Vec<f64>,
}

/// Clock ticks per second (USER_HZ), the unit of /proc's CPU times.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let t = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: state is field 3, utime 14.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

pub fn spread(v: &[f64]) -> (f64, f64) {
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// p50 and p99 of synchronous 4 KiB writes with FUA at random offsets, µs.
pub fn latency(socket: &Path, size: u64, writes: usize) -> (f64, f64) {
    latency_with(socket, size, writes, true)
}

/// The same, with or without FUA (without: what the stack itself costs).
pub fn latency_with(socket: &Path, size: u64, writes: usize, fua: bool) -> (f64, f64) {
    let mut s = handshake(socket);
    let mut rng = SplitMix64(7);
    let data = vec![0x5a; 4096];
    let mut lat = Vec::with_capacity(writes);
    for i in 0..writes {
        let offset = rng.below(size / 4096) * 4096;
        let mut req = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
        let flags = if fua { proto::CMD_FLAG_FUA } else { 0 };
        req.extend_from_slice(&flags.to_be_bytes());
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

pub fn handshake(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    duet::export::client::handshake(&mut s, "r0").expect("handshake");
    s
}

/// Prints the table and writes target/bench/NAME.json.
pub fn report(name: &str, title: &str, peer: &str, rows: &[Row]) {
    println!("{title}, median [min-max]");
    println!("{:<24} {:>26} {:>26}", "", "duet", peer);
    let mut json = Vec::new();
    for r in rows {
        let (dmin, dmax) = spread(&r.duet);
        let (pmin, pmax) = spread(&r.peer);
        println!(
            "{:<24} {:>9.1} [{:>6.1}-{:>6.1}] {:>9.1} [{:>6.1}-{:>6.1}] {}",
            r.name,
            median(&r.duet),
            dmin,
            dmax,
            median(&r.peer),
            pmin,
            pmax,
            r.unit
        );
        json.push(format!(
            "{{\"name\":\"{}\",\"unit\":\"{}\",\"duet\":{:?},\"peer\":{:?},\"peer_name\":{:?}}}",
            r.name, r.unit, r.duet, r.peer, peer
        ));
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(
            out.join(format!("{name}.json")),
            format!("[{}]\n", json.join(",")),
        );
    }
}

/// nbdkit's file plugin serving `image` as export r0 on a unix socket.
pub fn start_nbdkit(socket: &Path, image: &Path) -> Child {
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
