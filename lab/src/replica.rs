//! The replicated disk r0 in the lab, set up by hand as an administrator
//! sets up a new cluster (metadata, the first sync, a filesystem), and
//! read back from `duetctl status --json`.

use std::time::{Duration, Instant};

use crate::Lab;

const START: Duration = Duration::from_secs(30);
/// The first sync of the 1 GiB disks, on a busy machine.
const SYNC: Duration = Duration::from_secs(120);

/// A mount unit in /run for the replica's device, as an administrator
/// would write one before duet's groups mount it themselves.
pub const MOUNT_UNIT: &str = "printf '[Mount]\\nWhat=/dev/duet/r0\\nWhere=/mnt/shared\\nType=ext4\\n' \
     > /run/systemd/system/mnt-shared.mount && systemctl daemon-reload";

/// Stops the mount unit. Until each node had a cgroup of its own
/// (lab/src/cgroup.rs), another node's systemd could remove this unit's
/// cgroup, and umount then failed to spawn (status 219/CGROUP, "Failed to
/// attach to cgroup"); only on that failure the test unmounts by hand. It
/// should no longer happen; the fallback stays as a guard.
pub const STOP_MOUNT: &str = "systemctl stop mnt-shared.mount || \
    (systemctl status mnt-shared.mount | grep -q 219/CGROUP && umount /mnt/shared \
     && systemctl reset-failed mnt-shared.mount)";

/// Metadata on both nodes' /dev/sdb (create-md, then the daemon attaches
/// it at start), connected, node1 the good copy: a full sync follows.
pub fn replicated(lab: &Lab) {
    for n in ["node1", "node2"] {
        lab.succeed(n, "duetctl create-md r0 && systemctl restart duetd");
        lab.wait_for_unit(n, "duetd.service", START);
    }
    wait(lab, "node1", "connected", |r| {
        r["connection"] == "connected"
    });
    lab.succeed("node1", "duetctl primary r0 --force");
}

/// Waits until r0 as `node` reports it satisfies `ok`.
pub fn wait(lab: &Lab, node: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + SYNC;
    loop {
        let r = lab.status(node).map(|s| s["replicas"][0].clone());
        if r.as_ref().is_some_and(&ok) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} on {node}; last: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// This node's copy is good and replicating.
pub fn in_sync(r: &serde_json::Value) -> bool {
    r["disk"] == "uptodate" && r["replication"] == "established"
}

/// Makes `node` Primary and mounts the replica there.
pub fn primary_and_mount(lab: &Lab, node: &str) {
    lab.succeed(node, "duetctl primary r0");
    lab.succeed(node, MOUNT_UNIT);
    lab.succeed(node, "systemctl start mnt-shared.mount");
}

/// On node1, Primary: a filesystem on the replica, mounted by a mount unit
/// in /run, with the page the tests read (`web::PAGE`).
pub fn filesystem_with_page(lab: &Lab) {
    lab.succeed("node1", "mkfs.ext4 -q -F /dev/duet/r0");
    lab.succeed("node1", MOUNT_UNIT);
    lab.succeed("node1", "systemctl start mnt-shared.mount");
    lab.succeed(
        "node1",
        &format!(
            "echo '{}' > /mnt/shared/index.html && sync",
            crate::web::PAGE
        ),
    );
}
