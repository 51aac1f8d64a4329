//! The unit and mount agents against a real systemd: a lab node (systemd
//! as PID 1 in systemd-nspawn, the system bus, journald) runs them through
//! `duetctl resource-op`. Needs root, mmdebstrap and systemd-container
//! (`make test` installs them). Everything made here lives inside the
//! node, which the lab removes, also when the test fails.

use std::time::Duration;

use duet_lab::{Binaries, Lab, wait_until};

const BOOT: Duration = Duration::from_secs(30);
const JOURNAL: Duration = Duration::from_secs(10);

fn bins() -> Binaries {
    Binaries {
        duetd: env!("CARGO_BIN_EXE_duetd").into(),
        duetctl: env!("CARGO_BIN_EXE_duetctl").into(),
    }
}

/// stdout and stderr of a command that must succeed.
fn succeed_all(lab: &Lab, script: &str) -> String {
    lab.succeed("node1", &format!("{script} 2>&1"))
}

fn is_active(lab: &Lab, unit: &str) -> String {
    let out = lab.execute("node1", &format!("systemctl is-active {unit}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How many lines of the unit's journal contain `needle`.
fn journal_count(lab: &Lab, unit: &str, needle: &str) -> usize {
    let out = lab.execute("node1", &format!("journalctl -o cat --no-pager -u {unit}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn lab_agents_unit_and_mount_through_systemd() {
    let mut lab = Lab::new(2, &bins());
    // One node is enough: the agents talk to the local systemd only.
    lab.boot("node1");
    lab.wait_for_unit("node1", "dbus.service", BOOT);
    unit_agent(&lab);
    mount_agent(&lab);
    mount_agent_in_duetds_sandbox(&lab);
}

fn unit_agent(lab: &Lab) {
    lab.succeed(
        "node1",
        "printf '[Service]\\nExecStart=/bin/sleep infinity\\n' \
           > /run/systemd/system/duet-test.service && \
         printf '[Service]\\nType=oneshot\\nExecStart=/bin/false\\n' \
           > /run/systemd/system/duet-fail.service && \
         systemctl daemon-reload",
    );
    let op = |args: &str| format!("duetctl resource-op unit {args}");

    let out = succeed_all(lab, &op("duet-test.service start"));
    assert!(out.contains("unit duet-test.service: started"), "{out}");
    assert_eq!(is_active(lab, "duet-test.service"), "active");
    // Started already: fine.
    succeed_all(lab, &op("duet-test.service start"));
    let out = succeed_all(lab, &op("duet-test.service monitor"));
    assert!(out.contains("running"), "{out}");

    succeed_all(lab, &op("duet-test.service stop"));
    assert_eq!(is_active(lab, "duet-test.service"), "inactive");
    let err = lab.fail("node1", &op("duet-test.service monitor"));
    assert!(
        err.contains("duet-test.service is not running"),
        "monitor of a stopped unit: {err}"
    );
    // Stopped already, and a unit systemd has never heard of: both fine.
    succeed_all(lab, &op("duet-test.service stop"));
    succeed_all(lab, &op("nosuch.service stop"));

    let err = lab.fail("node1", &op("duet-fail.service start"));
    assert!(
        err.contains("duet-fail.service failed to start (result: failed")
            && err.contains("exit-code"),
        "start of a failing unit: {err}"
    );
    let err = lab.fail("node1", &op("nosuch.service start"));
    assert!(
        err.contains("no unit named nosuch.service on this node"),
        "start of an unknown unit: {err}"
    );
}

/// umount as systemd runs it, failing as busy three times (a user that
/// comes and goes between the scans), then working.
const UMOUNT_FAILS_THRICE: &str = "cp /usr/bin/umount /run/umount.real && \
    printf '#!/bin/sh\\necho x >> /run/umount-failed; \
    if [ $(wc -l < /run/umount-failed) -le 3 ]; then \
    echo \"umount: target is busy\" >&2; exit 32; fi\\nexec /run/umount.real \"$@\"\\n' \
    > /run/umount-once && chmod 755 /run/umount-once && mount --bind /run/umount-once /usr/bin/umount";

fn mount_agent(lab: &Lab) {
    let op = |extra: &str, what: &str| {
        format!(
            "duetctl resource-op mount --device /dev/sdb --mountpoint /mnt/shared \
             --fstype {extra} {what}"
        )
    };
    let mounted = || {
        let out = lab.execute("node1", "findmnt -n -o SOURCE,FSTYPE /mnt/shared");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    lab.succeed("node1", "mkfs.ext4 -q -F /dev/sdb && test ! -e /mnt/shared");

    // The wrong type: the mount fails, in words, and leaves nothing behind
    // that would stop the next start.
    let err = lab.fail("node1", &op("xfs --fsck never", "start"));
    assert!(
        err.contains("mounting /dev/sdb at /mnt/shared failed"),
        "mount with the wrong type: {err}"
    );
    assert_eq!(mounted(), "");

    // Start: checked by systemd-fsck first, then mounted; the mountpoint
    // is created.
    succeed_all(lab, &op("ext4", "start"));
    assert_eq!(mounted(), "/dev/sdb ext4");
    assert_eq!(is_active(lab, "mnt-shared.mount"), "active");
    let fsck = "duet-fsck@dev-sdb.service";
    wait_until(JOURNAL, "the file system check in the journal", || {
        (journal_count(lab, fsck, "/dev/sdb: clean") == 1).then_some(())
    });
    // Mounted already: fine; monitor agrees.
    succeed_all(lab, &op("ext4", "start"));
    let out = succeed_all(lab, &op("ext4", "monitor"));
    assert!(out.contains("mount /mnt/shared: running"), "{out}");

    // A process working in the mount keeps it busy: stop ends it, says
    // so, and unmounts. (A service with WorkingDirectory= there would be
    // stopped by systemd first: it Requires= the mount.)
    lab.succeed(
        "node1",
        "systemd-run --unit duet-busy sh -c 'cd /mnt/shared && exec sleep 1000'",
    );
    wait_until(JOURNAL, "a process with its cwd in /mnt/shared", || {
        let out = lab.execute(
            "node1",
            "readlink /proc/$(systemctl show -p MainPID --value duet-busy)/cwd",
        );
        (String::from_utf8_lossy(&out.stdout).trim() == "/mnt/shared").then_some(())
    });
    let out = succeed_all(lab, &op("ext4", "stop"));
    assert!(
        out.contains("/mnt/shared is busy") && out.contains("(sleep)"),
        "stop of a busy mount: {out}"
    );
    assert!(out.contains("mount /mnt/shared: stopped"), "{out}");
    assert_eq!(mounted(), "");
    assert_ne!(is_active(lab, "duet-busy.service"), "active");

    let err = lab.fail("node1", &op("ext4", "monitor"));
    assert!(err.contains("/mnt/shared is not mounted"), "{err}");
    succeed_all(lab, &op("ext4", "stop"));

    // Every mount is checked again, not only the first.
    succeed_all(lab, &op("ext4", "start"));
    assert_eq!(mounted(), "/dev/sdb ext4");
    wait_until(
        JOURNAL,
        "the second file system check in the journal",
        || (journal_count(lab, fsck, "/dev/sdb: clean") == 2).then_some(()),
    );
    succeed_all(lab, &op("ext4", "stop"));
    assert_eq!(mounted(), "");
    // Left clean: no failed unit from the busy stop.
    assert_eq!(is_active(lab, "mnt-shared.mount"), "inactive");

    // An unmount that fails with nothing found using the mount (a user
    // that comes and goes, systemd failing to spawn umount) is tried
    // again, a few times.
    succeed_all(lab, &op("ext4", "start"));
    lab.succeed("node1", UMOUNT_FAILS_THRICE);
    let out = lab.execute("node1", &op("ext4", "stop"));
    lab.succeed(
        "node1",
        "umount /usr/bin/umount && rm -f /run/umount-failed",
    );
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("unmounted /mnt/shared on a later try"),
        "{said}"
    );
    assert_eq!(mounted(), "");
    assert_eq!(is_active(lab, "mnt-shared.mount"), "inactive");

    // A filesystem the check cannot repair on its own (its root inode
    // cleared, and marked as having errors: a clean one is not checked
    // through) is not mounted.
    lab.succeed(
        "node1",
        "debugfs -w -R 'clri <2>' /dev/sdb && tune2fs -E force_fsck /dev/sdb",
    );
    let err = lab.fail("node1", &op("ext4", "start"));
    assert!(
        err.contains("the file system check of /dev/sdb failed (duet-fsck@dev-sdb.service"),
        "start on a broken filesystem: {err}"
    );
    assert!(err.contains("/dev/sdb was not mounted"), "{err}");
    assert_eq!(mounted(), "");
    // The mountpoint systemd made for the first mount.
    assert_eq!(lab.succeed("node1", "stat -c %a /mnt/shared").trim(), "755");
}

/// The hardening of duetd's own unit (systemd/duetd.service), as
/// `systemd-run -p` arguments: what the agents meet inside duetd.
fn duetd_sandbox() -> String {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/duetd.service"),
    )
    .expect("read systemd/duetd.service");
    let not_sandbox = [
        "Type",
        "NotifyAccess",
        "WatchdogSec",
        "ExecStart",
        "Restart",
        "RestartSec",
    ];
    let mut in_service = false;
    let mut props = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        if in_service && !line.starts_with('#') && !not_sandbox.contains(&key) {
            assert!(!line.contains('\''), "a quote in {line}");
            props.push(format!("-p '{line}'"));
        }
    }
    assert!(
        props.iter().any(|p| p.contains("CapabilityBoundingSet=")),
        "no sandbox found in duetd.service: {props:?}"
    );
    props.join(" ")
}

/// Inside duetd's sandbox (/ read-only, a bounded set of capabilities) the
/// mountpoint is still made, and a busy mount held by another user's
/// process is still freed.
fn mount_agent_in_duetds_sandbox(lab: &Lab) {
    let sandbox = duetd_sandbox();
    let op = |what: &str| {
        format!(
            "systemd-run --wait --pipe --collect --quiet {sandbox} \
             duetctl resource-op mount --device /dev/sdb --mountpoint /srv/data \
             --fstype ext4 {what}"
        )
    };
    let mounted = || {
        let out = lab.execute("node1", "findmnt -n -o SOURCE,FSTYPE /srv/data");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    lab.succeed("node1", "mkfs.ext4 -q -F /dev/sdb && test ! -e /srv/data");
    succeed_all(lab, &op("start"));
    assert_eq!(mounted(), "/dev/sdb ext4");

    lab.succeed(
        "node1",
        "systemd-run --unit duet-busy-nobody -p User=nobody \
         sh -c 'cd /srv/data && exec sleep 1000'",
    );
    wait_until(
        JOURNAL,
        "nobody's process with its cwd in /srv/data",
        || {
            let out = lab.execute(
                "node1",
                "readlink /proc/$(systemctl show -p MainPID --value duet-busy-nobody)/cwd",
            );
            (String::from_utf8_lossy(&out.stdout).trim() == "/srv/data").then_some(())
        },
    );
    let out = succeed_all(lab, &op("stop"));
    assert!(
        out.contains("/srv/data is busy") && out.contains("(sleep)"),
        "stop of a mount another user keeps busy, in duetd's sandbox: {out}"
    );
    assert_eq!(mounted(), "");
    assert_ne!(is_active(lab, "duet-busy-nobody.service"), "active");
}
