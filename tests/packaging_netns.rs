//! The files duet installs besides its binaries: the D-Bus policy on a bus
//! with real system-bus defaults, and the systemd unit.

mod netns;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netns::{Lab, config, wait_until};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A call that changes state: setting the (read-only) cluster name.
const SET_NAME: [&str; 10] = [
    "call",
    "org.duet.Duet1",
    "/org/duet/Duet1",
    "org.freedesktop.DBus.Properties",
    "Set",
    "ssv",
    "org.duet.Duet1.Cluster",
    "Name",
    "s",
    "evil",
];

/// Runs a command as the unprivileged user nobody.
fn as_nobody(cmd: &str, args: &[&str], bus: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(cmd)
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn lab_dbus_policy_lets_anyone_read_and_only_root_act() {
    let mut lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let policy = Path::new(ROOT).join("dbus/org.duet.Duet1.conf");
    let bus = lab.system_bus("node1-system", &policy);
    lab.nodes[0].bus = bus.clone();
    lab.start("node1");
    wait_until(
        Duration::from_secs(5),
        "root's duetd to own its name",
        || lab.status("node1"),
    );

    // Anyone may read: busctl and duetctl status work for nobody.
    let address = format!("--address={bus}");
    let read = as_nobody(
        "busctl",
        &[
            &address,
            "get-property",
            "org.duet.Duet1",
            "/org/duet/Duet1",
            "org.duet.Duet1.Cluster",
            "Name",
        ],
        &bus,
    );
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "s \"lab\"",
        "{read:?}"
    );
    let status = as_nobody(netns::DUETCTL, &["status", "--json"], &bus);
    assert!(
        status.status.success(),
        "nobody cannot read status: {status:?}"
    );

    // Anything else is refused by the bus before duetd sees it.
    let mut set_name = vec![address.as_str()];
    set_name.extend(SET_NAME);
    let set = as_nobody("busctl", &set_name, &bus);
    let err = String::from_utf8_lossy(&set.stderr);
    assert!(
        !set.status.success() && err.contains("Access denied"),
        "{set:?}"
    );

    // Root gets through the bus (and duetd itself refuses: read-only).
    let root = Command::new("busctl")
        .args(&set_name)
        .output()
        .expect("busctl");
    let err = String::from_utf8_lossy(&root.stderr);
    assert!(
        !root.status.success() && !err.contains("Access denied"),
        "{root:?}"
    );
    let name = lab.status("node1").expect("status")["cluster"].clone();
    assert_eq!(name, "lab");
}

#[test]
fn systemd_unit_verifies() {
    let dir = std::env::temp_dir().join(format!("duet-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let unit =
        std::fs::read_to_string(Path::new(ROOT).join("systemd/duetd.service")).expect("unit");
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    // Verify against the binary this build made, as it would be installed.
    let unit = unit.replace("/usr/bin/duetd", netns::DUETD);
    let path = dir.join("duetd.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("duetd.service"))
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify: {text}");
}
