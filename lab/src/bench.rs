//! The failover benchmark: group web (replica, filesystem, floating
//! address, apache2) in the lab, the node that runs it crashed again and
//! again. Each run measures, from the crash (SIGKILL to the node's init),
//! when the peer declares it dead and when the client first reads the page
//! from the floating address again. Two series in the same run: duet's
//! timings (deadtime 1 s) and the classic Heartbeat ones (deadtime 10 s)
//! as the reference line; then keepalived (VRRP) moving the same floating
//! address between the same two nodes, where apache2 serves a copy of the
//! page on each (no disk, no filesystem: the address alone moves).

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

impl Series {
    /// `runs` crashes by `one` (detection, first good reply), each
    /// printed as it comes; `detected` says what the detection is.
    fn run(
        name: &'static str,
        timings: &'static str,
        runs: usize,
        detected: &str,
        mut one: impl FnMut() -> (Duration, Duration),
    ) -> Series {
        let mut s = Series {
            name,
            timings,
            detect: Vec::new(),
            failover: Vec::new(),
        };
        for i in 1..=runs {
            let (detect, failover) = one();
            println!(
                "   {name} run {i}/{runs}: {detected} after {:.2} s, page again after {:.2} s",
                detect.as_secs_f64(),
                failover.as_secs_f64()
            );
            s.detect.push(detect);
            s.failover.push(failover);
        }
        s
    }
}

/// Runs `runs` failovers with duet's timings, `classic_runs` with the
/// classic ones and `runs` with keepalived, printing each as it comes.
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
        out.push(Series::run(name, timings, n, "dead", || one(lab)));
    }
    if runs > 0 {
        out.push(keepalived::series(lab, runs));
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
/// the classic timings' (when both series ran), and
/// `failover_keepalived` against keepalived's.
pub fn entries(series: &[Series]) -> Vec<crate::results::Entry> {
    let [duet, classic, rest @ ..] = series else {
        return Vec::new();
    };
    let mut out = vec![crate::results::Entry {
        name: "failover",
        value: spread(&duet.failover).0,
        unit: "s, crash to first good reply (deadtime 1 s)",
        peer: "Heartbeat's timings (deadtime 10 s)".into(),
        peer_value: spread(&classic.failover).0,
        higher_is_better: false,
    }];
    if let Some(k) = rest.first() {
        out.push(crate::results::Entry {
            name: "failover_keepalived",
            value: spread(&duet.failover).0,
            unit: "s, crash to first good reply (deadtime 1 s; disk, mount, address, apache2)",
            peer: format!("{} (address alone)", k.name),
            peer_value: spread(&k.failover).0,
            higher_is_better: false,
        });
    }
    out
}

/// The keepalived series: duet stopped on both nodes, apache2 serving
/// the page from a local copy on each, keepalived holding the address.
mod keepalived {
    use std::time::{Duration, Instant};

    use super::Series;
    use crate::{Lab, net, wait_until, web};

    /// VRRPv3 adverts every 0.3 s: the backup takes over after three
    /// missed ones and its skew, about 1.1 s, as close to deadtime 1 s as
    /// VRRP's rules allow. nopreempt on both, as auto-failback = false.
    const ADVERT: &str = "0.3";

    fn config(me: usize, peer: usize) -> String {
        let priority = if me == 1 { 150 } else { 100 };
        format!(
            "global_defs {{\n  vrrp_version 3\n  vrrp_garp_master_delay 0\n}}\n\
             vrrp_instance web {{\n  state BACKUP\n  nopreempt\n  interface eth0\n  \
             virtual_router_id 51\n  priority {priority}\n  advert_int {ADVERT}\n  \
             unicast_src_ip {}\n  unicast_peer {{\n    {}\n  }}\n  \
             virtual_ipaddress {{\n    {}/24 dev eth0\n  }}\n}}\n",
            net::public_v4(me),
            net::public_v4(peer),
            web::ADDRESS
        )
    }

    /// Who holds the address, asked of each running node.
    fn holder(lab: &Lab) -> Option<String> {
        let (ip, _) = web::holders(lab);
        match ip.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    pub fn series(lab: &mut Lab, runs: usize) -> Series {
        for n in ["node1", "node2"] {
            lab.succeed(n, "systemctl disable --now duetd");
        }
        wait_until(Duration::from_secs(60), "web stopped by duet", || {
            (web::holders(lab) == (vec![], vec![])).then_some(())
        });
        for (me, peer) in [(1, 2), (2, 1)] {
            let n = format!("node{me}");
            lab.node(&n).write_file(
                "/etc/keepalived/keepalived.conf",
                config(me, peer).as_bytes(),
                0o644,
            );
            lab.succeed(
                &n,
                &format!(
                    "mkdir -p /srv/page && echo '{}' > /srv/page/index.html && \
                     rm -f /var/www/html && ln -s /srv/page /var/www/html && \
                     systemctl enable --now apache2 && systemctl enable keepalived && \
                     systemctl restart keepalived",
                    web::PAGE
                ),
            );
        }
        wait_until(
            Duration::from_secs(30),
            "the page through keepalived",
            || web::good_page(lab),
        );
        Series::run(
            "keepalived (advert 0.3 s)",
            "advert_int 0.3 (VRRPv3)",
            runs,
            "address moved",
            || one(lab),
        )
    }

    /// One crash of the node holding the address, and its return (it
    /// comes back as backup: nopreempt).
    fn one(lab: &mut Lab) -> (Duration, Duration) {
        let active = wait_until(Duration::from_secs(30), "one holder", || holder(lab)).0;
        let other = if active == "node1" { "node2" } else { "node1" };
        let t = Instant::now();
        lab.crash(&active);
        let moved = || (holder(lab)? == other).then_some(());
        let detect = crate::measure(Duration::from_secs(60), "the address moved", t, moved);
        let failover = crate::measure(Duration::from_secs(60), "the page again", t, || {
            web::good_page(lab)
        });
        lab.boot(&active);
        lab.wait_for_unit(&active, "keepalived.service", Duration::from_secs(60));
        lab.wait_for_unit(&active, "apache2.service", Duration::from_secs(60));
        wait_until(
            Duration::from_secs(30),
            "the address still on the other",
            || (holder(lab)? == other && web::good_page(lab).is_some()).then_some(()),
        );
        (detect, failover)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn each_node_names_itself_and_its_peer() {
            let c = super::config(2, 1);
            assert!(c.contains("unicast_src_ip 198.51.100.2"), "{c}");
            assert!(c.contains("unicast_peer {\n    198.51.100.1\n"), "{c}");
            assert!(c.contains("198.51.100.10/24 dev eth0"), "{c}");
            assert!(c.contains("priority 100"), "{c}");
        }
    }
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
