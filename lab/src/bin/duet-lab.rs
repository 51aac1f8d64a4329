//! duet-lab: the lab for people. `up` boots a cluster and leaves it
//! running, `down` removes every lab, `demo` is the README's first command.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use duet_lab::{Binaries, Lab, wait_until, web};

const USAGE: &str = "usage: duet-lab up [2|3] | shell NODE | down | demo | bench-failover [RUNS] | plot | campaign [FAULTS [SEED]]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["up"] => up(2),
        ["up", n] => match n.parse() {
            Ok(n @ 2..=3) => up(n),
            _ => usage(),
        },
        ["down"] => {
            duet_lab::cleanup::remove_all();
            println!("lab removed");
            ExitCode::SUCCESS
        }
        ["demo"] => demo(),
        ["plot"] => match duet_lab::results::redraw() {
            Ok(svg) => {
                println!("{}", svg.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("target/bench/results.svg: {e}");
                ExitCode::FAILURE
            }
        },
        ["bench-failover"] => bench_failover(10, 3),
        ["bench-failover", runs] => match runs.parse() {
            Ok(n @ 1..=100) => bench_failover(n, n.div_ceil(3)),
            _ => usage(),
        },
        ["shell", node] => shell(node),
        ["campaign"] => campaign(20, None),
        ["campaign", faults] => match faults.parse() {
            Ok(n @ 1..=10_000) => campaign(n, None),
            _ => usage(),
        },
        ["campaign", faults, seed] => match (faults.parse(), seed.parse()) {
            (Ok(n @ 1..=10_000), Ok(seed)) => campaign(n, Some(seed)),
            _ => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn up(n: usize) -> ExitCode {
    let mut lab = Lab::new(n, &Binaries::beside_current_exe());
    lab.boot_all();
    for name in lab.node_names() {
        println!("{name}: up; a shell on it: duet-lab shell {name}");
    }
    println!(
        "the client (a browser on a third host): ip netns exec {} bash",
        lab.client
    );
    println!("remove it all with: duet-lab down");
    lab.keep();
    ExitCode::SUCCESS
}

/// A shell on a running lab node (of the lab `up` left running).
fn shell(node: &str) -> ExitCode {
    let Some(leader) = duet_lab::node::find_running(node) else {
        eprintln!("no running lab node {node}; start one with: duet-lab up");
        return ExitCode::FAILURE;
    };
    let status = duet_lab::node::enter(leader).args(["bash", "-l"]).status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// `make bench-failover`: the group's failover timed over many crashes,
/// with the classic timings as the reference line.
fn bench_failover(runs: usize, classic_runs: usize) -> ExitCode {
    println!(
        "== failover benchmark: group web, the node running it crashed {runs} times with duet's timings, {classic_runs} with the classic ones"
    );
    let mut lab = Lab::new(2, &Binaries::beside_current_exe());
    // The crashed node is fenced at the PDU before the takeover.
    lab.with_pdu();
    lab.boot_all();
    let series = duet_lab::bench::failover(&mut lab, runs, classic_runs);
    drop(lab);
    println!();
    print!("{}", duet_lab::bench::table(&series));
    duet_lab::results::merge(&duet_lab::bench::entries(&series));
    ExitCode::SUCCESS
}

/// `make campaign`: random faults against two nodes and a witness under
/// client reads and writes (lab/src/campaign.rs); exits 1 on a violation
/// or a lost write. Without a seed, one from the clock (printed first).
fn campaign(faults: usize, seed: Option<u64>) -> ExitCode {
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!(
        "== fault campaign: {faults} faults, seed {seed} (replay: duet-lab campaign {faults} {seed})"
    );
    // CAMPAIGN_ONLY=KIND: faults of that kind only, to chase one.
    let only = match std::env::var("CAMPAIGN_ONLY")
        .ok()
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(kind) => match kind.parse::<duet_lab::campaign::Only>() {
            Ok(o) => {
                println!("== only faults of the kind {kind}");
                Some(o)
            }
            Err(e) => {
                eprintln!("CAMPAIGN_ONLY: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut lab = duet_lab::campaign::lab(&Binaries::beside_current_exe());
    let report = duet_lab::campaign::run(&mut lab, faults, seed, only);
    drop(lab);
    println!(
        "acknowledged writes: {}, failovers: {}, fenced: {}, copies compared equal: {}, unmounted by hand (lab systemd): {}",
        report.acked_writes,
        report.failovers,
        report.fences,
        report.copies_compared,
        report.by_hand
    );
    for v in &report.violations {
        println!("violation: {v}");
    }
    println!("{}", report.summary());
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn state(lab: &Lab, observer: &str, peer: &str) -> Option<String> {
    let s = lab.status(observer)?;
    s["nodes"].as_array()?.iter().find(|n| n["name"] == peer)?["state"]
        .as_str()
        .map(String::from)
}

/// `observer` sees `peer` up on every link.
fn fully_up(lab: &Lab, observer: &str, peer: &str) -> Option<()> {
    let s = lab.status(observer)?;
    let node = s["nodes"].as_array()?.iter().find(|n| n["name"] == peer)?;
    let links_up = node["links"].as_array()?.iter().all(|l| l["state"] == "up");
    (node["state"] == "up" && links_up).then_some(())
}

/// The mount unit duet's resource groups will write (in /run).
const MOUNT_UNIT: &str = "printf '[Mount]\\nWhat=/dev/duet/r0\\nWhere=/mnt/shared\\nType=ext4\\n' > /run/systemd/system/mnt-shared.mount && systemctl daemon-reload";

/// The page from the floating address, as the client gets it.
fn wait_for_page(lab: &Lab, timeout: Duration) -> String {
    wait_until(timeout, "the page from the floating address", || {
        web::fetch(lab)
    })
    .0
}

fn replica(lab: &Lab, node: &str) -> Option<serde_json::Value> {
    Some(lab.status(node)?["replicas"][0].clone())
}

fn demo() -> ExitCode {
    println!("== The duet lab: two Debian nodes booted with systemd-nspawn");
    println!(
        "   crossover 203.0.113.0/24 on eth1, public 198.51.100.0/24 on eth0, /dev/sdb on each"
    );
    let t = Instant::now();
    let mut lab = Lab::new(2, &Binaries::beside_current_exe());
    println!("   rootfs ready and nodes wired in {} ms", ms(t.elapsed()));
    // A power switch the nodes fence each other with: without fencing (or
    // a witness) a node never takes over from one that went silent.
    lab.with_pdu();
    println!("   a PDU for fencing: each node can cut the other's power");
    let t = Instant::now();
    lab.boot_all();
    println!(
        "   both nodes booted (systemd as PID 1) in {} ms",
        ms(t.elapsed())
    );

    let t = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "node1 and node2 to see each other",
        || {
            // Each sees the other, and its own links, up on every link.
            let pairs = [
                ("node1", "node2"),
                ("node2", "node1"),
                ("node1", "node1"),
                ("node2", "node2"),
            ];
            for (a, b) in pairs {
                fully_up(&lab, a, b)?;
            }
            Some(())
        },
    );
    println!(
        "\n== duetd runs as a systemd unit on each node; they found each other in {} ms",
        ms(t.elapsed())
    );
    print!("{}", lab.succeed("node2", "duetctl status"));

    println!("\n== The replicated disk r0: /dev/sdb on both, metadata, node1 the good copy");
    for n in ["node1", "node2"] {
        print!(
            "{}",
            lab.succeed(n, "duetctl create-md r0 && systemctl restart duetd")
        );
    }
    wait_until(Duration::from_secs(30), "r0 connected", || {
        (replica(&lab, "node1")?["connection"] == "connected").then_some(())
    });
    let t = Instant::now();
    lab.succeed("node1", "duetctl primary r0 --force");
    wait_until(Duration::from_secs(300), "the initial sync", || {
        (replica(&lab, "node2")?["disk"] == "uptodate").then_some(())
    });
    println!(
        "   initial full sync of 1 GiB done in {} ms",
        ms(t.elapsed())
    );
    lab.succeed(
        "node1",
        &format!(
            "mkfs.ext4 -q -F /dev/duet/r0 && {MOUNT_UNIT} && systemctl start mnt-shared.mount"
        ),
    );
    lab.succeed(
        "node1",
        "echo 'hello from the duet demo' > /mnt/shared/index.html && sync",
    );
    lab.succeed(
        "node1",
        "systemctl stop mnt-shared.mount && rm /run/systemd/system/mnt-shared.mount \
         && systemctl daemon-reload && duetctl secondary r0",
    );

    println!("\n== The group web: r0 Primary, /mnt/shared, 198.51.100.10 on eth0, apache2");
    let config = lab.group_config(web::GROUP);
    for n in ["node1", "node2"] {
        lab.succeed(n, web::PREPARE_NODE);
        lab.node(n)
            .write_file("/etc/duet/duet.toml", config.as_bytes(), 0o644);
        lab.succeed(n, "systemctl restart duetd");
    }
    let t = Instant::now();
    wait_until(Duration::from_secs(60), "web running on node1", || {
        web::on(&lab, "node1", "node1")
    });
    let page = wait_for_page(&lab, Duration::from_secs(10));
    println!(
        "   web running on node1 {} ms after duetd started; the client reads from http://{}/: {}",
        ms(t.elapsed()),
        web::ADDRESS,
        page.trim()
    );
    wait_until(Duration::from_secs(60), "r0 in sync under web", || {
        let r = replica(&lab, "node2")?;
        (r["disk"] == "uptodate" && r["replication"] == "established").then_some(())
    });
    print!(
        "{}",
        lab.succeed("node1", "duetctl status | grep -E 'replica|group'")
    );

    println!("\n== Pulling the plug on node1 (SIGKILL to its init)");
    let t = Instant::now();
    lab.crash("node1");
    wait_until(Duration::from_secs(10), "node2 to see node1 dead", || {
        (state(&lab, "node2", "node1")? == "dead").then_some(())
    });
    let detect = t.elapsed();
    println!(
        "   node2 declared node1 dead after {} ms (deadtime 1000 ms, keepalive 200 ms; classic Heartbeat: 10000 ms)",
        ms(detect)
    );
    let page = wait_for_page(&lab, Duration::from_secs(30));
    let takeover = t.elapsed();
    println!(
        "   node2 took the group over; the client reads the same page again: {}",
        page.trim()
    );
    println!("failover: {:.2} s", takeover.as_secs_f64());
    print!(
        "{}",
        lab.succeed("node2", "duetctl status | grep -E 'replica|group'")
    );

    println!("\n== Booting node1 again");
    let t = Instant::now();
    lab.boot("node1");
    wait_until(Duration::from_secs(30), "node2 to see node1 back", || {
        fully_up(&lab, "node2", "node1")
    });
    println!(
        "   node1 back in {} ms (boot included), as a new incarnation",
        ms(t.elapsed())
    );
    wait_until(Duration::from_secs(120), "node1 to resync", || {
        let r = replica(&lab, "node1")?;
        (r["disk"] == "uptodate" && r["replication"] == "established").then_some(())
    });
    println!(
        "   node1 resynced from node2 (only what changed) {} ms after booting",
        ms(t.elapsed())
    );
    print!(
        "{}",
        lab.succeed(
            "node2",
            "journalctl -u duetd --no-pager -o cat | grep -E 'dead|restarted|sync|group' | tail -n 10"
        )
    );
    println!("\n== Removing the lab");
    drop(lab);
    println!(
        "demo ok: failure detected in {} ms, the page served again from node2 {} ms after the crash",
        ms(detect),
        ms(takeover)
    );
    ExitCode::SUCCESS
}
