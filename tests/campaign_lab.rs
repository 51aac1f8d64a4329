//! The lab's PDU and fault campaign (issue 7) on booted lab nodes: a
//! node fences a hung peer through the lab's power switch, and a short
//! campaign of random faults under client writes and reads finds no
//! violation. Needs root, mmdebstrap and systemd-container (`make test`
//! installs them).

use std::time::Duration;

use duet_lab::{Binaries, Lab, pdu, replica, wait_until, web};

fn bins() -> Binaries {
    Binaries {
        duetd: env!("CARGO_BIN_EXE_duetd").into(),
        duetctl: env!("CARGO_BIN_EXE_duetctl").into(),
    }
}

/// duetd on node1, running web, hangs (SIGSTOP): node2 sees it dead,
/// fences it through the lab's PDU (its fence agent run by duetd under
/// the hardened unit), and only then takes web over. The lab knows node1
/// is off and boots it again; it resyncs as the Secondary.
#[test]
fn lab_campaign_pdu_fences_a_hung_node_before_the_takeover() {
    let mut lab = Lab::new(2, &bins());
    lab.with_pdu();
    lab.boot_all();
    let asked = lab.execute("node1", "lab-fence --any-arg node9");
    let answer = String::from_utf8_lossy(&asked.stdout);
    assert!(
        !asked.status.success() && answer.contains("no node node9"),
        "{asked:?}"
    );
    // The lab has a PDU: the group config fences through it.
    web::start(&lab);

    // systemctl kill fails here (cgroup v1 in nspawn: EIO on the group).
    lab.succeed(
        "node1",
        "kill -STOP $(systemctl show --property MainPID --value duetd)",
    );
    wait_until(
        Duration::from_secs(30),
        "node1 powered off by node2's fence",
        || (!lab.node("node1").is_running()).then_some(()),
    );
    // The PDU records the cut once nspawn is gone, a moment after.
    let (off, _) = wait_until(Duration::from_secs(15), "the PDU's record", || {
        let events = lab.pdu().expect("pdu").events();
        events
            .into_iter()
            .find(|e| e.action == "off" && e.node == "node1")
    });
    assert!(off.ok && off.was_on, "{off:?}");
    wait_until(Duration::from_secs(30), "web running on node2", || {
        web::on(&lab, "node2", "node2")
    });
    wait_until(Duration::from_secs(10), "the page from node2", || {
        web::good_page(&lab)
    });
    let journal = lab.succeed("node2", "journalctl -u duetd --no-pager -o cat");
    assert!(journal.contains("node1 fenced"), "{journal}");

    lab.boot("node1");
    wait_until(Duration::from_secs(60), "node1 sees web on node2", || {
        web::on(&lab, "node1", "node2")
    });
    replica::wait(&lab, "node1", "node1 UpToDate again", replica::in_sync);
    let status = lab.succeed(
        "node2",
        &format!(
            "curl -sS --unix-socket {}/pdu.sock http://pdu/status/node1",
            pdu::NODE_DIR
        ),
    );
    assert_eq!(status.trim(), "node1 on");
}
