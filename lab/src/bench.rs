//! The failover benchmark: group web (replica, filesystem, floating
//! address, apache2) in the lab, the node that runs it crashed again and
//! again. Each run measures, from the crash (SIGKILL to the node's init),
//! when the peer declares it dead and when the client first reads the page
//! from the floating address again. Two series in the same run: duet's
//! timings (deadtime 1 s) and the classic Heartbeat ones (deadtime 10 s)
//! as the reference line.

use std::time::{Duration, Instant};

use crate::{Lab, replica, wait_until, web};

pub struct Series {
    pub name: &'static str,
    /// The [timings] the nodes ran with.
    pub timings: &'static str,
    pub detect: Vec<Duration>,
    pub failover: Vec<Duration>,
}

const DUET: &str =
    "keepalive = \"200ms\"\nwarntime = \"600ms\"\ndeadtime = \"1s\"\ninitdead = \"5s\"";
const CLASSIC: &str =
    "keepalive = \"1s\"\nwarntime = \"5s\"\ndeadtime = \"10s\"\ninitdead = \"20s\"";

/// Runs `runs` failovers with duet's timings and `classic_runs` with the
/// classic ones, printing each as it comes.
pub fn failover(lab: &mut Lab, runs: usize, classic_runs: usize) -> Vec<Series> {
    web::start(lab);
    let mut out = Vec::new();
    for (name, timings, n) in [
        ("duet (deadtime 1 s)", DUET, runs),
        ("classic (deadtime 10 s)", CLASSIC, classic_runs),
    ] {
        if n == 0 {
            continue;
        }
        configure(lab, timings);
        let mut s = Series {
            name,
            timings,
            detect: Vec::new(),
            failover: Vec::new(),
        };
        for i in 1..=n {
            let (detect, failover) = one(lab);
            println!(
                "   {name} run {i}/{n}: dead after {:.2} s, page again after {:.2} s",
                detect.as_secs_f64(),
                failover.as_secs_f64()
            );
            s.detect.push(detect);
            s.failover.push(failover);
        }
        out.push(s);
    }
    out
}

/// Both nodes on these timings, web running and its replica in sync.
fn configure(lab: &Lab, timings: &str) {
    let config = lab.group_config(web::GROUP);
    let config = config.replacen(DUET, timings, 1);
    for n in ["node1", "node2"] {
        lab.node(n)
            .write_file("/etc/duet/duet.toml", config.as_bytes(), 0o644);
    }
    lab.succeed("node1", "systemctl restart duetd");
    lab.succeed("node2", "systemctl restart duetd");
    let active = wait_until(Duration::from_secs(90), "web running again", || {
        ["node1", "node2"]
            .into_iter()
            .find(|n| web::on(lab, n, n).is_some())
    })
    .0;
    settle(lab, active);
}

/// Waits for the page and for the other node's copy in sync: every run
/// starts from a replicated disk.
fn settle(lab: &Lab, active: &str) {
    wait_until(Duration::from_secs(30), "the page", || web::good_page(lab));
    let other = if active == "node1" { "node2" } else { "node1" };
    replica::wait(lab, other, "the standby's copy in sync", replica::in_sync);
}

/// One crash of the node running web, and its return.
fn one(lab: &mut Lab) -> (Duration, Duration) {
    let active = if web::on(lab, "node1", "node1").is_some() {
        "node1"
    } else {
        "node2"
    };
    let other = if active == "node1" { "node2" } else { "node1" };
    let t = Instant::now();
    lab.crash(active);
    let dead = || {
        let s = lab.status(other)?;
        let n = s["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == active)?;
        (n["state"] == "dead").then_some(())
    };
    let detect = crate::measure(Duration::from_secs(60), "the crash seen", t, dead);
    let failover = crate::measure(Duration::from_secs(60), "the page again", t, || {
        web::good_page(lab)
    });
    lab.boot(active);
    wait_until(Duration::from_secs(60), "the crashed node back", || {
        web::on(lab, active, other)
    });
    settle(lab, other);
    (detect, failover)
}

/// Median, min and max in seconds.
pub fn spread(v: &[Duration]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    let median = match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    };
    (
        median,
        s.first().copied().unwrap_or(f64::NAN),
        s.last().copied().unwrap_or(f64::NAN),
    )
}

/// The side-by-side table.
pub fn table(series: &[Series]) -> String {
    let mut t = format!(
        "{:<26} {:>4}  {:>22}  {:>22}\n",
        "failover (crash to ...)", "runs", "peer declared dead", "first good reply"
    );
    for s in series {
        let (dm, dl, dh) = spread(&s.detect);
        let (fm, fl, fh) = spread(&s.failover);
        t.push_str(&format!(
            "{:<26} {:>4}  {:>6.2} s ({:.2}-{:.2})  {:>6.2} s ({:.2}-{:.2})\n",
            s.name,
            s.detect.len(),
            dm,
            dl,
            dh,
            fm,
            fl,
            fh
        ));
    }
    t
}

/// results.json's `failover`: duet's median crash-to-page time against
/// the classic timings' (when both series ran).
pub fn entries(series: &[Series]) -> Vec<crate::results::Entry> {
    let [duet, classic] = series else {
        return Vec::new();
    };
    vec![crate::results::Entry {
        name: "failover",
        value: spread(&duet.failover).0,
        unit: "s, crash to first good reply (deadtime 1 s)",
        peer: "Heartbeat's timings (deadtime 10 s)".into(),
        peer_value: spread(&classic.failover).0,
        higher_is_better: false,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_config;

    #[test]
    fn the_median_of_an_even_count_is_between_the_middle_two() {
        let d = |ms| Duration::from_millis(ms);
        assert_eq!(spread(&[d(3000), d(1000), d(2000)]), (2.0, 1.0, 3.0));
        assert_eq!(
            spread(&[d(4000), d(1000), d(2000), d(3000)]),
            (2.5, 1.0, 4.0)
        );
    }

    #[test]
    fn the_classic_timings_replace_the_lab_ones() {
        let config = cluster_config(2);
        assert!(config.contains(DUET), "the lab's timings changed: {config}");
        assert!(
            config
                .replacen(DUET, CLASSIC, 1)
                .contains("deadtime = \"10s\"")
        );
    }
}
