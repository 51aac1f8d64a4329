//! A Heartbeat + DRBD cluster moved to duet in the lab, the way
//! docs/migrating.md tells an administrator to: the classic files
//! (tests/classic, the set of ../shared/classic) with the lab's host names
//! and disk, imported on each node by `duetctl import heartbeat` from
//! their default places, the old DRBD data kept, then the classic
//! scenario on that config alone: the page on the floating address, a
//! crash and the takeover, the node's return and a standby.
//! Needs root, mmdebstrap and systemd-container (`make test` installs
//! them).

use std::path::Path;
use std::time::{Duration, Instant};

use duet_lab::replica::{in_sync, wait as wait_replica};
use duet_lab::{Binaries, Lab, wait_until, web};

const START: Duration = Duration::from_secs(30);

/// The classic files name their hosts node1.example.org and their DRBD
/// disk /dev/sdb1; the lab's hosts are node1 and node2 (uname -n, as
/// Heartbeat matched them) and their second disk is /dev/sdb.
fn adapted(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/classic")
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace(".example.org", "")
        .replace("/dev/sdb1", "/dev/sdb")
}

/// Heartbeat's and DRBD's files where the import looks by default.
fn install_classic_files(lab: &Lab, node: &str) {
    let n = lab.node(node);
    n.write_file("/etc/ha.d/ha.cf", adapted("ha.cf").as_bytes(), 0o644);
    n.write_file(
        "/etc/ha.d/haresources",
        adapted("haresources").as_bytes(),
        0o644,
    );
    n.write_file("/etc/ha.d/authkeys", adapted("authkeys").as_bytes(), 0o600);
    n.write_file("/etc/drbd.conf", adapted("drbd.conf").as_bytes(), 0o644);
}

/// What DRBD left on node1: an ext3 filesystem with the site on the
/// backing disk, as big as the DRBD device was (the end of the disk held
/// DRBD's metadata, where duet's goes now).
fn old_data() -> String {
    format!(
        "mkfs.ext3 -q -F /dev/sdb 1000M && mkdir -p /mnt/old && mount /dev/sdb /mnt/old \
         && echo '{}' > /mnt/old/index.html && umount /mnt/old && sync",
        web::PAGE
    )
}

#[test]
fn lab_import_the_classic_files_run_the_two_node_scenario() {
    let bins = Binaries {
        duetd: env!("CARGO_BIN_EXE_duetd").into(),
        duetctl: env!("CARGO_BIN_EXE_duetctl").into(),
    };
    let mut lab = Lab::new(2, &bins);
    lab.boot_all();
    for n in ["node1", "node2"] {
        lab.wait_for_unit(n, "duetd.service", START);
        // Heartbeat's nodes ran no duet: the lab's own config goes.
        lab.succeed(
            n,
            &format!(
                "systemctl stop duetd && rm /etc/duet/duet.toml /etc/duet/duet.key && {}",
                web::PREPARE_NODE
            ),
        );
        install_classic_files(&lab, n);
    }
    lab.succeed("node1", &old_data());

    // The import on each node, from the default places; the same files
    // give the same config and key.
    for n in ["node1", "node2"] {
        let said = lab.succeed(n, "duetctl import heartbeat 2>&1");
        assert!(
            said.contains(
                "imported and valid: cluster ha, 2 node(s), 1 link(s), 1 replica(s), 1 group(s)"
            ),
            "{n}: {said}"
        );
    }
    let digest = |n: &str| lab.succeed(n, "cat /etc/duet/duet.toml /etc/duet/duet.key | sha256sum");
    assert_eq!(digest("node1"), digest("node2"));

    // duet's metadata: refused over the old filesystem, then forced.
    let refused = lab.fail("node1", "duetctl create-md r0");
    assert!(refused.contains("--force"), "{refused}");
    lab.succeed("node1", "duetctl create-md r0 --force");
    lab.succeed("node2", "duetctl create-md r0");

    // node1 holds the good data: it starts first and is declared the
    // good copy before its peer (and the group) can start anything.
    lab.succeed("node1", "systemctl start duetd");
    lab.wait_for_unit("node1", "duetd.service", START);
    lab.succeed("node1", "duetctl primary r0 --force");
    lab.succeed("node2", "systemctl start duetd");
    lab.wait_for_unit("node2", "duetd.service", START);

    // The old site, on the floating address, from the imported group.
    wait_until(Duration::from_secs(90), "apache2 running on node1", || {
        web::on(&lab, "node1", "node1")
    });
    wait_until(
        Duration::from_secs(10),
        "the old page on the floating address",
        || web::good_page(&lab),
    );
    assert_eq!(
        web::holders(&lab),
        (vec!["node1".into()], vec!["node1".into()])
    );
    wait_replica(&lab, "node2", "node2 UpToDate after the full sync", in_sync);

    // node1 dies: node2 takes over after ha.cf's deadtime (10 s), without
    // a fence, as Heartbeat did (unfenced-takeover, noted by the import).
    let crashed = Instant::now();
    lab.crash("node1");
    let took = duet_lab::measure(
        Duration::from_secs(60),
        "the page from node2",
        crashed,
        || web::good_page(&lab),
    );
    println!(
        "imported config: failover {:.2} s (crash to first good reply, deadtime 10 s)",
        took.as_secs_f64()
    );
    wait_until(Duration::from_secs(10), "apache2 running on node2", || {
        web::on(&lab, "node2", "node2")
    });

    // node1 returns: auto_failback off, so it stays Secondary and resyncs.
    lab.boot("node1");
    lab.wait_for_unit("node1", "duetd.service", START);
    wait_until(
        Duration::from_secs(60),
        "node1 to see apache2 on node2",
        || web::on(&lab, "node1", "node2"),
    );
    wait_replica(&lab, "node1", "node1 UpToDate", in_sync);

    // hb_standby's duet form sends the group home, never on two nodes.
    lab.succeed("node2", "duetctl standby node2");
    web::watch_move(&lab, "node1", Duration::from_secs(60));
    let page = web::fetch(&lab);
    assert_eq!(page.as_deref().map(str::trim), Some(web::PAGE));
}
