//! The cluster in the lab: booted Debian nodes (systemd-nspawn), duetd as
//! the project's own systemd unit on the real system bus of each, real
//! links. Needs root, mmdebstrap and systemd-container (`make test`
//! installs them).

use std::process::Command;
use std::time::{Duration, Instant};

use duet::membership::protocol::ProtocolRange;
use duet_lab::replica::{
    MOUNT_UNIT, STOP_MOUNT, filesystem_with_page, in_sync, primary_and_mount, replicated,
    wait as wait_replica,
};
use duet_lab::status::{link_of as link, peer, state_of};
use duet_lab::{Binaries, Lab, wait_until, web};

const KEEPALIVE: Duration = Duration::from_millis(200);
const DEADTIME: Duration = Duration::from_secs(1);
/// Each probe is a `duetctl` run through nsenter, tens of milliseconds.
const PROBE_MARGIN: Duration = Duration::from_millis(250);
const START: Duration = Duration::from_secs(30);

fn bins() -> Binaries {
    Binaries {
        duetd: env!("CARGO_BIN_EXE_duetd").into(),
        duetctl: env!("CARGO_BIN_EXE_duetctl").into(),
    }
}

fn booted(n: usize) -> Lab {
    let mut lab = Lab::new(n, &bins());
    lab.boot_all();
    for name in lab.node_names() {
        lab.wait_for_unit(&name, "duetd.service", START);
    }
    lab
}

fn state(lab: &Lab, observer: &str, name: &str) -> Option<String> {
    state_of(&lab.status(observer)?, name)
}

/// `observer` sees `name` up on both links.
fn fully_up(lab: &Lab, observer: &str, name: &str) -> Option<()> {
    let s = lab.status(observer)?;
    let up = peer(&s, name)?["state"] == "up"
        && link(&s, name, "crossover")? == "up"
        && link(&s, name, "public")? == "up";
    up.then_some(())
}

#[test]
fn lab_cluster_two_nodes_see_each_other_on_the_system_bus() {
    let lab = booted(2);
    for (a, b) in [("node1", "node2"), ("node2", "node1")] {
        wait_until(START, &format!("{a} to see {b} up on both links"), || {
            fully_up(&lab, a, b)
        });
    }
    // The real system bus of the node, through busctl.
    let state = lab.succeed(
        "node1",
        "busctl get-property org.duet.Duet1 /org/duet/Duet1/node/node2 org.duet.Duet1.Node State",
    );
    assert_eq!(state.trim(), "s \"up\"");
    let tree = lab.succeed("node1", "busctl tree org.duet.Duet1");
    assert!(tree.contains("/org/duet/Duet1/node/node1"), "{tree}");
    // systemd knows duetd's state line (Type=notify, STATUS=).
    let status = lab.succeed("node1", "systemctl show -p StatusText --value duetd");
    assert_eq!(status.trim(), "2/2 nodes up, quorate");
    // The second disk is there.
    lab.succeed("node1", "test -b /dev/sdb");
    // An unprivileged user reads status but cannot act on the bus.
    lab.succeed(
        "node1",
        "setpriv --reuid=nobody --regid=nogroup --clear-groups duetctl status",
    );
    lab.fail(
        "node1",
        "setpriv --reuid=nobody --regid=nogroup --clear-groups busctl call org.duet.Duet1 \
         /org/duet/Duet1 org.freedesktop.DBus.Properties Set ssv org.duet.Duet1.Cluster Name s x",
    );
}

#[test]
fn lab_cluster_a_crashed_node_is_dead_within_deadtime() {
    let mut lab = booted(2);
    wait_until(START, "node2 to see node1 up", || {
        fully_up(&lab, "node2", "node1")
    });
    let crashed = Instant::now();
    lab.crash("node1");
    wait_until(DEADTIME * 5, "node2 to see node1 dead", || {
        (state(&lab, "node2", "node1")? == "dead").then_some(())
    });
    let took = crashed.elapsed();
    println!(
        "crash of node1 detected by node2 in {} ms (deadtime {} ms + keepalive {} ms)",
        took.as_millis(),
        DEADTIME.as_millis(),
        KEEPALIVE.as_millis()
    );
    assert!(took <= DEADTIME + KEEPALIVE + PROBE_MARGIN, "took {took:?}");
    let log = lab.succeed("node2", "journalctl -u duetd --no-pager -o cat");
    assert!(log.contains("node1 is dead"), "{log}");
    // The event log has it, and journalctl -x explains it from the
    // catalog, with the node's name from the entry's fields.
    let events = lab.succeed("node2", "duetctl log");
    assert!(events.contains("node1 is dead"), "{events}");
    let explained = lab.succeed(
        "node2",
        "journalctl --update-catalog && journalctl -x --no-pager -u duetd MESSAGE_ID=dd511fa1a4c54fbea5d5060d7bd06a89",
    );
    assert!(
        explained.contains("Subject: Cluster node node1 is dead"),
        "{explained}"
    );
    assert!(explained.contains("duetctl confirm-off"), "{explained}");
    // The node boots again and is seen as a new incarnation.
    lab.boot("node1");
    wait_until(START, "node2 to see node1 back", || {
        fully_up(&lab, "node2", "node1")
    });
    let log = lab.succeed("node2", "journalctl -u duetd --no-pager -o cat");
    assert!(log.contains("node1 restarted"), "{log}");
}

#[test]
fn lab_cluster_one_cut_link_of_two_keeps_membership() {
    let lab = booted(2);
    wait_until(START, "node1 to see node2 up", || {
        fully_up(&lab, "node1", "node2")
    });
    lab.set_link("node2", "eth1", false);
    wait_until(DEADTIME * 3, "the crossover reported down", || {
        let s = lab.status("node1")?;
        (link(&s, "node2", "crossover")? == "down").then_some(())
    });
    let watch = Instant::now();
    while watch.elapsed() < DEADTIME * 2 {
        let s = lab.status("node1").expect("status");
        assert_eq!(peer(&s, "node2").expect("node2")["state"], "up", "{s}");
        assert_eq!(link(&s, "node2", "public").as_deref(), Some("up"), "{s}");
        assert_eq!(s["quorate"], true, "{s}");
    }
    lab.set_link("node2", "eth1", true);
    wait_until(DEADTIME * 5, "the crossover back", || {
        fully_up(&lab, "node1", "node2")
    });
}

#[test]
fn lab_cluster_a_node_with_the_wrong_key_never_joins() {
    let mut lab = Lab::new(2, &bins());
    lab.node("node2")
        .write_file("/etc/duet/duet.key", b"not the cluster's key\n", 0o600);
    lab.boot_all();
    lab.wait_for_unit("node1", "duetd.service", START);
    lab.wait_for_unit("node2", "duetd.service", START);
    wait_until(START, "node1 to answer", || lab.status("node1"));
    let window = Instant::now();
    while window.elapsed() < DEADTIME * 3 {
        assert_ne!(state(&lab, "node1", "node2").as_deref(), Some("up"));
        assert_ne!(state(&lab, "node2", "node1").as_deref(), Some("up"));
    }
    let log = lab.succeed("node1", "journalctl -u duetd --no-pager -o cat");
    assert!(log.contains("bad signature"), "no line says why: {log}");
}

#[test]
fn lab_cluster_three_nodes_the_partitioned_one_loses_quorum() {
    let lab = booted(3);
    for p in ["node2", "node3"] {
        wait_until(START, &format!("node1 to see {p}"), || {
            fully_up(&lab, "node1", p)
        });
    }
    lab.isolate(&["node3"]);
    wait_until(DEADTIME * 5, "node3 alone to lose quorum", || {
        let s = lab.status("node3")?;
        (s["quorate"] == false).then_some(())
    });
    wait_until(
        DEADTIME * 5,
        "node1 to see node3 dead, still quorate",
        || {
            let s = lab.status("node1")?;
            (peer(&s, "node3")?["state"] == "dead" && s["quorate"] == true).then_some(())
        },
    );
    // node2 agrees with node1 on who is alive a heartbeat or so later.
    wait_until(DEADTIME * 5, "node2 quorate with node1", || {
        let s = lab.status("node2")?;
        (peer(&s, "node3")?["state"] == "dead" && s["quorate"] == true).then_some(())
    });
    lab.heal();
    wait_until(DEADTIME * 5, "node3 back in the majority", || {
        let s = lab.status("node3")?;
        (s["quorate"] == true).then_some(())
    });
}

#[test]
fn lab_cluster_leaves_nothing_behind() {
    let prefix;
    {
        let lab = booted(2);
        prefix = lab.prefix().to_string();
        let netns = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .expect("ip")
                .stdout,
        )
        .into_owned();
        assert!(
            netns.contains(&prefix),
            "the lab made no namespaces? {netns}"
        );
    }
    let check = |what: &str, cmd: &mut Command| {
        let out = cmd.output().expect("check command");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains(&prefix), "{what} left behind: {text}");
    };
    check("namespaces", Command::new("ip").args(["netns", "list"]));
    check("loop devices", Command::new("losetup").arg("-a"));
    check(
        "mounts",
        Command::new("findmnt").args(["-l", "-o", "TARGET"]),
    );
    check(
        "containers",
        Command::new("pgrep").args(["-a", "systemd-nspawn"]),
    );
    let dir = std::env::temp_dir().join(&prefix);
    assert!(!dir.exists(), "{} left behind", dir.display());
    // A container can outlive its nspawn: none of its processes may remain.
    let left = duet_lab::cleanup::processes_of(&prefix);
    assert!(left.is_empty(), "container processes left behind: {left:?}");
}

#[test]
fn lab_cluster_heavy_packet_loss_does_not_kill_a_live_peer() {
    let lab = booted(2);
    wait_until(START, "node1 to see node2 up", || {
        fully_up(&lab, "node1", "node2")
    });
    // A third of node1's incoming heartbeats vanish: with two links and
    // five heartbeats per deadtime on each, node2 must stay alive.
    lab.lose("node1", 33);
    let watch = Instant::now();
    let mut polls = 0;
    while watch.elapsed() < DEADTIME * 4 {
        let s = lab.status("node1").expect("status");
        let state = peer(&s, "node2").expect("node2")["state"].clone();
        assert!(
            state == "up" || state == "late",
            "node2 declared {state} under loss: {s}"
        );
        polls += 1;
    }
    assert!(polls > 10);
    lab.lose("node1", 0);
    // And a total loss is a death, on time.
    lab.lose("node1", 100);
    let cut = Instant::now();
    wait_until(DEADTIME * 5, "node1 to see node2 dead", || {
        (state(&lab, "node1", "node2")? == "dead").then_some(())
    });
    assert!(
        cut.elapsed() <= DEADTIME + KEEPALIVE + PROBE_MARGIN,
        "{:?}",
        cut.elapsed()
    );
}

#[test]
fn lab_cluster_a_node_disk_can_be_made_to_fail() {
    let lab = booted(2);
    // Past what mkfs wrote, so no cache can answer in the disk's place.
    let read = "dd if=/dev/sdb of=/dev/null bs=4096 count=1 skip=200000 iflag=direct";
    lab.succeed("node1", "mkfs.ext4 -q -F /dev/sdb");
    lab.succeed("node1", read);
    lab.set_disk_failing("node1", true);
    let err = lab.fail("node1", read);
    assert!(err.contains("Input/output error"), "{err}");
    lab.succeed("node2", read);
    lab.set_disk_failing("node1", false);
    lab.succeed("node1", read);
}

#[test]
fn lab_cluster_the_replica_carries_a_filesystem_through_a_mount_unit_and_a_switchover() {
    let lab = booted(2);
    replicated(&lab);
    lab.succeed("node1", "test -b /dev/duet/r0");
    let s = lab.status("node1").expect("status");
    let r = &s["replicas"][0];
    assert_eq!(r["name"], "r0", "{s}");
    assert_eq!(r["role"], "primary", "{s}");
    assert_eq!(r["device"], "/dev/duet/r0", "{s}");
    assert_eq!(r["nbd_socket"], "/run/duet/nbd/r0.sock", "{s}");
    // The peer may still be syncing: the primary serves meanwhile.
    filesystem_with_page(&lab);
    // Mounted: becoming Secondary is refused, and says why.
    let err = lab.fail("node1", "duetctl secondary r0");
    assert!(err.contains("in use"), "{err}");
    lab.succeed("node1", STOP_MOUNT);
    lab.succeed("node1", "duetctl secondary r0");
    lab.fail("node1", "test -e /dev/duet/r0");
    let s = lab.status("node1").expect("status");
    assert_eq!(s["replicas"][0]["role"], "secondary", "{s}");
    // Attached again, the files are there.
    lab.succeed("node1", "duetctl primary r0");
    lab.succeed("node1", "systemctl start mnt-shared.mount");
    let page = lab.succeed("node1", "cat /mnt/shared/index.html");
    assert_eq!(page.trim(), web::PAGE);
    lab.succeed("node1", STOP_MOUNT);
    lab.succeed("node1", "duetctl secondary r0");
    // Switchover: node2's copy, once in sync, carries the same files.
    wait_replica(&lab, "node2", "node2 UpToDate", in_sync);
    primary_and_mount(&lab, "node2");
    let page = lab.succeed("node2", "cat /mnt/shared/index.html");
    assert_eq!(page.trim(), web::PAGE);
    // Never two primaries.
    let err = lab.fail("node1", "duetctl primary r0");
    assert!(err.contains("Primary"), "{err}");
    lab.succeed("node2", STOP_MOUNT);
    lab.succeed("node2", "duetctl secondary r0");
}

#[test]
fn lab_cluster_a_failing_disk_detaches_and_the_primary_serves_through_its_peer() {
    let lab = booted(2);
    replicated(&lab);
    wait_replica(&lab, "node2", "node2 UpToDate", in_sync);
    lab.succeed("node1", "mkfs.ext4 -q -F /dev/duet/r0");
    lab.succeed("node1", MOUNT_UNIT);
    lab.succeed("node1", "systemctl start mnt-shared.mount");
    // node1's /dev/sdb now fails every read and write.
    lab.set_disk_failing("node1", true);
    lab.succeed(
        "node1",
        "dd if=/dev/urandom of=/mnt/shared/data bs=1M count=8 status=none && sync",
    );
    wait_replica(&lab, "node1", "node1 diskless", |r| r["disk"] == "diskless");
    // Read past the page cache: the blocks come from node2's disk.
    let sum1 = lab.succeed(
        "node1",
        "dd if=/mnt/shared/data iflag=direct bs=1M status=none | md5sum",
    );
    let journal = lab.succeed("node1", "journalctl -u duetd --no-pager -o cat");
    assert!(
        journal.contains("I/O error on the backing disk"),
        "{journal}"
    );
    // Switchover to node2, then node1's disk is replaced: attached again
    // (a diskless Primary is demoted first), it gets a full sync.
    lab.succeed("node1", STOP_MOUNT);
    lab.succeed("node1", "duetctl secondary r0");
    lab.set_disk_failing("node1", false);
    lab.succeed("node1", "duetctl attach r0");
    wait_replica(&lab, "node1", "node1 UpToDate again", in_sync);
    primary_and_mount(&lab, "node2");
    let sum2 = lab.succeed(
        "node2",
        "dd if=/mnt/shared/data iflag=direct bs=1M status=none | md5sum",
    );
    assert_eq!(
        sum1.split_whitespace().next(),
        sum2.split_whitespace().next()
    );
    lab.succeed("node2", STOP_MOUNT);
    lab.succeed("node2", "duetctl secondary r0");
}

#[test]
fn lab_group_web_fails_over_with_its_disk_filesystem_address_and_page() {
    let mut lab = Lab::new(2, &bins());
    // The crashed node is fenced (its power cut at the PDU) before node2
    // takes over: without fencing or a witness, node2 would wait.
    lab.with_pdu();
    lab.boot_all();
    web::start(&lab);

    // node1 dies: node2 takes over, and the client gets the same page.
    let crashed = Instant::now();
    lab.crash("node1");
    let took = duet_lab::measure(
        Duration::from_secs(30),
        "the page from node2",
        crashed,
        || web::good_page(&lab),
    );
    println!(
        "failover: {:.2} s (crash to first good reply on 198.51.100.10, deadtime 1 s)",
        took.as_secs_f64()
    );
    wait_until(Duration::from_secs(10), "web running on node2", || {
        web::on(&lab, "node2", "node2")
    });

    // node1 returns: no failback; its replica resyncs as Secondary.
    lab.boot("node1");
    lab.wait_for_unit("node1", "duetd.service", START);
    wait_until(Duration::from_secs(30), "node1 to see web on node2", || {
        web::on(&lab, "node1", "node2")
    });
    wait_replica(&lab, "node1", "node1 UpToDate", in_sync);
    assert_eq!(
        lab.status("node1").expect("status")["groups"][0]["state"],
        "stopped"
    );

    // Standby node2: the group moves back to node1 in order; the address
    // and the mount are never on both nodes meanwhile.
    lab.succeed("node2", "duetctl standby node2");
    web::watch_move(&lab, "node1", Duration::from_secs(60));
    let page = web::fetch(&lab);
    assert_eq!(page.as_deref().map(str::trim), Some(web::PAGE));
}

/// Where a node's duetd is told to speak as another build: a drop-in in
/// /run, so it is gone when the node boots again (upgraded).
const AS_BUILD: &str = "/run/systemd/system/duetd.service.d/protocol.conf";

/// Makes `node`'s duetd speak `versions` ("1": the first build) from its
/// next restart on; `None` makes it this build again.
fn speak_as(lab: &Lab, node: &str, versions: Option<&str>) {
    let script = match versions {
        Some(v) => format!(
            "mkdir -p {dir} && printf '[Service]\\nEnvironment=DUET_PROTOCOL_VERSIONS={v}\\n' > {AS_BUILD} && systemctl daemon-reload",
            dir = AS_BUILD.trim_end_matches("/protocol.conf")
        ),
        None => format!("rm -f {AS_BUILD} && systemctl daemon-reload"),
    };
    lab.succeed(node, &script);
}

/// What `observer` says `node` speaks, and the version r0's link uses.
fn speaks(lab: &Lab, observer: &str, node: &str) -> Option<(String, u64)> {
    let s = lab.status(observer)?;
    let protocol = peer(&s, node)?["protocol"].as_str()?.to_string();
    let link = s["replicas"][0]["link_version"].as_u64()?;
    Some((protocol, link))
}

/// The client's replies from `load` since `from`: all good, and how many.
fn all_good_since(load: &web::Load, from: usize, what: &str) -> usize {
    let replies = load.replies();
    let during = &replies[from.min(replies.len())..];
    let bad: Vec<_> = during.iter().filter(|r| !r.good).map(|r| r.at).collect();
    assert!(
        bad.is_empty(),
        "{} of {} replies failed {what}, ending at {bad:?} of the client's run (counted from {:?})",
        bad.len(),
        during.len(),
        during.first().map(|r| r.at)
    );
    during.len()
}

/// Waits for the client's next good reply; the count of replies after it.
fn good_again(load: &web::Load) -> usize {
    wait_until(Duration::from_secs(10), "the client's page again", || {
        let replies = load.replies();
        replies.last().filter(|r| r.good).map(|_| replies.len())
    })
    .0
}

/// Issue 12's rolling upgrade: both nodes start as builds of protocol 1,
/// web on node1. node2 is upgraded while the client reads the page; the
/// mixed cluster replicates at version 1 and fails web over to node2 when
/// node1 crashes; node1 boots as the new build and the link goes to
/// this build's newest, web untouched. A node too new for its peer is named, its
/// replica never connects, and web stays up.
#[test]
fn lab_cluster_a_rolling_upgrade_keeps_web_up_and_an_incompatible_peer_is_refused() {
    let build = ProtocolRange::BUILD;
    let (range, newest, too_new) = (build.to_string(), build.max, build.max + 1);
    let mut lab = Lab::new(2, &bins());
    lab.with_pdu();
    lab.boot_all();
    for n in ["node1", "node2"] {
        lab.wait_for_unit(n, "duetd.service", START);
        speak_as(&lab, n, Some("1"));
    }
    web::start(&lab);
    let both_first = Some(("1".to_string(), 1));
    wait_until(START, "both nodes speaking protocol 1", || {
        (speaks(&lab, "node1", "node2") == both_first
            && speaks(&lab, "node2", "node1") == both_first)
            .then_some(())
    });

    // node2 upgraded while node1 serves.
    let load = web::Load::start(&lab);
    let from = load.replies().len();
    speak_as(&lab, "node2", None);
    lab.succeed("node2", "systemctl restart duetd");
    lab.wait_for_unit("node2", "duetd.service", START);
    wait_until(
        START,
        "node2 to see node1 speak 1 over a version-1 link",
        || (speaks(&lab, "node2", "node1")? == ("1".into(), 1)).then_some(()),
    );
    wait_until(START, "node1 to see node2 speak this build's range", || {
        (speaks(&lab, "node1", "node2")?.0 == range).then_some(())
    });
    wait_replica(&lab, "node2", "node2 UpToDate again", in_sync);
    let status = lab.succeed("node2", "duetctl status");
    assert!(
        status.contains(&format!("protocols: node1 1, node2 {range} (duet ")),
        "{status}"
    );
    let served = all_good_since(&load, from, "while node2 was upgraded");
    let log = lab.succeed("node2", "journalctl -u duetd --no-pager -o cat");
    assert!(
        log.contains(&format!("node1 speaks protocol 1 (a build before version announcements); this node {range}: they use version 1")),
        "{log}"
    );

    // Failover across the mix: node1 (old) crashes, node2 (new) takes web.
    let crashed = Instant::now();
    lab.crash("node1");
    let failover = duet_lab::measure(
        Duration::from_secs(30),
        "the page from node2",
        crashed,
        || web::good_page(&lab),
    );
    wait_until(Duration::from_secs(10), "web running on node2", || {
        web::on(&lab, "node2", "node2")
    });

    // node1 boots as the new build: the link goes to the newest. Counted
    // from the client's first good reply after the failover: a request it
    // sent while the address was moving may end (failed) after the page
    // came back to the test's own probe.
    let from = good_again(&load);
    lab.boot("node1");
    lab.wait_for_unit("node1", "duetd.service", START);
    let both_new = Some((range.clone(), u64::from(newest)));
    wait_until(
        Duration::from_secs(60),
        "both on a link of the newest version",
        || {
            (speaks(&lab, "node1", "node2") == both_new
                && speaks(&lab, "node2", "node1") == both_new)
                .then_some(())
        },
    );
    wait_replica(&lab, "node1", "node1 UpToDate", in_sync);
    let rejoined = all_good_since(&load, from, "while node1 rejoined upgraded");
    assert!(
        lab.succeed("node2", "duetctl status")
            .lines()
            .all(|l| !l.starts_with("protocols:"))
    );

    // A node too new for this one: named, never connected, web stays.
    let from = load.replies().len();
    speak_as(&lab, "node1", Some(&too_new.to_string()));
    lab.succeed("node1", "systemctl restart duetd");
    lab.wait_for_unit("node1", "duetd.service", START);
    wait_until(START, "node2 to call node1 incompatible", || {
        let s = lab.status("node2")?;
        (peer(&s, "node1")?["incompatible"] == true).then_some(())
    });
    let status = lab.succeed("node2", "duetctl status");
    assert!(
        status.contains(&format!(
            "INCOMPATIBLE: node1 speaks protocol {too_new}, no version in common with this node"
        )),
        "{status}"
    );
    wait_until(START, "node1's refusal in its journal", || {
        let log = lab.succeed("node1", "journalctl -u duetd --no-pager -o cat");
        log.contains(&format!("replication handshake refused: the peer offers replication protocol version {newest} at most; this node speaks {too_new}: upgrade the older node"))
            .then_some(())
    });
    let s = lab.status("node2").expect("status");
    assert_ne!(s["replicas"][0]["connection"], "connected", "{s}");
    assert_eq!(peer(&s, "node1").expect("node1")["state"], "up", "{s}");
    assert!(web::on(&lab, "node2", "node2").is_some(), "{s}");
    let refused = all_good_since(&load, from, "while node1 was incompatible");
    let replies = load.finish();
    println!(
        "rolling upgrade: {served} good replies while node2 was upgraded, failover across the mix \
         {:.2} s, {rejoined} good replies while node1 rejoined upgraded, {refused} while it was \
         incompatible; {} replies in all",
        failover.as_secs_f64(),
        replies.len()
    );
}
