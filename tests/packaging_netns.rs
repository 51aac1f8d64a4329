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

/// Runs a command as `user` (a system account: nobody, daemon), in its
/// own group (nobody's is nogroup).
fn as_user(user: &str, cmd: &str, args: &[&str], bus: &str) -> std::process::Output {
    let group = if user == "nobody" { "nogroup" } else { user };
    Command::new("setpriv")
        .args([&format!("--reuid={user}"), &format!("--regid={group}")])
        .args(["--clear-groups", "--"])
        .arg(cmd)
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .output()
        .expect("setpriv (util-linux)")
}

fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// polkit's own policy for the bus (it owns org.freedesktop.PolicyKit1).
const POLKIT_BUS_POLICY: &str = "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf";

/// polkitd on the lab's bus, seeing duet's actions and `rule` alone in
/// place of the host's (a mount namespace of its own: nothing of the
/// host changes); the lab stops it. Returns once it owns its name.
fn start_polkitd(lab: &mut Lab, bus: &str, rule: &str) {
    let actions = lab.dir.join("polkit-actions");
    let rules = lab.dir.join("polkit-rules");
    for d in [&actions, &rules] {
        std::fs::create_dir_all(d).expect("polkit dirs");
    }
    std::fs::copy(
        Path::new(ROOT).join("polkit/org.duet.Duet1.policy"),
        actions.join("org.duet.Duet1.policy"),
    )
    .expect("policy");
    std::fs::write(rules.join("50-test.rules"), rule).expect("rule");
    let script = format!(
        "mount --bind {} /usr/share/polkit-1/actions && mount --bind {} /etc/polkit-1/rules.d && exec /usr/lib/polkit-1/polkitd --no-debug",
        actions.display(),
        rules.display()
    );
    let child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(lab.dir.join("polkitd.log")).expect("log"))
        .spawn()
        .expect("polkitd (package polkitd)");
    lab.adopt(child);
    let address = format!("--address={bus}");
    wait_until(Duration::from_secs(10), "polkitd to own its name", || {
        let out = Command::new("busctl")
            .args([&address, "status", "org.freedesktop.PolicyKit1"])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
}

/// A replica for node1 (node2 never starts): something to promote.
fn with_replica(lab: &Lab) -> String {
    let disk = lab.dir.join("node1.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(66 << 20))
        .expect("disk file");
    format!(
        "{}\n[[replica]]\nname = \"r0\"\n\
         disk = {{ node1 = \"{d}/node1.img\", node2 = \"{d}/node2.img\" }}\n\
         address = {{ node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }}\n\
         port = 7789\ndevice = \"{d}/node1-r0\"\nnbd-socket = \"{d}/node1-r0.sock\"\n",
        config(2, "ucast", "ucast", "duet.key"),
        d = lab.dir.display()
    )
}

#[test]
fn lab_dbus_anyone_reads_and_polkit_decides_who_else_acts() {
    let mut lab = Lab::nodes(2, &config(2, "ucast", "ucast", "duet.key"));
    let cfg = lab.write("duet.toml", &with_replica(&lab));
    let md = Command::new(netns::DUETCTL)
        .args(["create-md", "r0", "--config"])
        .arg(&cfg)
        .args(["--node", "node1"])
        .output()
        .expect("duetctl");
    assert!(md.status.success(), "create-md: {}", printed(&md));
    let policy = Path::new(ROOT).join("dbus/org.duet.Duet1.conf");
    let bus = lab.system_bus_with("node1-system", &[&policy, Path::new(POLKIT_BUS_POLICY)]);
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

    // Properties.Set is refused by the bus before duetd sees it.
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

    // duet's methods reach duetd, which lets only root act while polkit
    // cannot be asked.
    let standby = |user: &str| as_user(user, netns::DUETCTL, &["standby", "node1"], &bus);
    let promote = |user: &str| as_user(user, netns::DUETCTL, &["primary", "r0"], &bus);
    let refused = standby("nobody");
    assert!(!refused.status.success(), "{}", printed(&refused));
    assert!(
        printed(&refused).contains("only root may while polkit cannot be asked"),
        "{}",
        printed(&refused)
    );

    // With polkit: a rule grants the user daemon, and nobody else.
    start_polkitd(
        &mut lab,
        &bus,
        "polkit.addRule(function(action, subject) {\n\
         if (action.id.indexOf(\"org.duet.Duet1.\") == 0 && subject.user == \"daemon\") {\n\
         return polkit.Result.YES; } });\n",
    );
    for (out, action) in [
        (standby("nobody"), "org.duet.Duet1.manage;"),
        (promote("nobody"), "org.duet.Duet1.manage-replicas;"),
    ] {
        let said = printed(&out);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains(&format!("polkit does not grant it {action}")),
            "{said}"
        );
    }
    let s = lab.status("node1").expect("status");
    assert_eq!(
        (&s["standby"], &s["replicas"][0]["role"]),
        (&serde_json::json!(false), &serde_json::json!("secondary")),
        "{s}"
    );

    let granted = standby("daemon");
    assert!(granted.status.success(), "{}", printed(&granted));
    assert_eq!(lab.status("node1").expect("status")["standby"], true);
    let back = as_user("daemon", netns::DUETCTL, &["online", "node1"], &bus);
    assert!(back.status.success(), "{}", printed(&back));
    // The replica refuses on its own grounds (its disk is not UpToDate),
    // past the authorization.
    let promoted = promote("daemon");
    let said = printed(&promoted);
    assert!(!promoted.status.success(), "{said}");
    assert!(
        !said.contains("may not") && said.contains("UpToDate"),
        "{said}"
    );
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
