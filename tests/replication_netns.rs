//! Two real duetd processes replicating a disk (files as disks) over TCP
//! between network namespaces, driven with duetctl as an administrator
//! would: create-md, initial sync with primary --force, mirrored writes,
//! a disconnect and a bitmap resync, split brains, verify,
//! invalidate-remote, external metadata, the export over TCP with TLS on
//! whichever node is Primary. Needs root.

mod netns;
mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netns::{Lab, config};
use serde_json::Value;

/// Data area of each disk file (the metadata takes the tail).
const DISK: u64 = 64 << 20;
const MIB: u64 = 1 << 20;
const SYNC: Duration = Duration::from_secs(60);

fn replica_section(lab: &Lab, node: usize, rate: &str, extra: &str) -> String {
    format!(
        "\n[[replica]]\nname = \"r0\"\n\
         disk = {{ node1 = \"{d}/node1.img\", node2 = \"{d}/node2.img\" }}\n\
         address = {{ node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }}\n\
         port = 7789\n\
         device = \"{d}/node{node}-r0\"\n\
         nbd-socket = \"{d}/node{node}-r0.sock\"\n\
         timeout = \"2s\"\n\
         connect-retry = \"200ms\"\n{extra}\n\
         [replica.resync]\nrate-max = \"{rate}\"\n",
        d = lab.dir.display()
    )
}

/// Two nodes with a 64 MiB disk each, fresh metadata, daemons running.
fn pair(rate: &str, extra: &str) -> Lab {
    pair_with(rate, |_| extra.to_string(), |_| {}, false)
}

/// `pair`, with `extra(node)` in each node's replica section and
/// `prepare` run on the lab before the daemons start; `external`: the
/// metadata lives in a file of its own per node (nodeN.md, empty until
/// create-md grows it), and each disk file is the 64 MiB of data alone.
fn pair_with(
    rate: &str,
    extra: impl Fn(usize) -> String,
    prepare: impl FnOnce(&Lab),
    external: bool,
) -> Lab {
    let base = config(2, "ucast", "ucast", "duet.key");
    let mut lab = Lab::nodes(2, &base);
    prepare(&lab);
    let meta = if external {
        format!(
            "meta-disk = {{ node1 = \"{d}/node1.md\", node2 = \"{d}/node2.md\" }}\n",
            d = lab.dir.display()
        )
    } else {
        String::new()
    };
    for n in 1..=2 {
        let img = lab.dir.join(format!("node{n}.img"));
        let f = std::fs::File::create(&img).expect("disk file");
        let tail = if external { 0 } else { 2 * MIB };
        f.set_len(DISK + tail).expect("size");
        if external {
            std::fs::File::create(lab.dir.join(format!("node{n}.md"))).expect("meta file");
        }
        let text = format!(
            "{base}{}",
            replica_section(&lab, n, rate, &format!("{meta}{}", extra(n)))
        );
        let cfg = lab.write(&format!("node{n}.toml"), &text);
        let out = duetctl_local(&cfg, &format!("node{n}"), &["create-md", "r0"]);
        assert!(
            out.status.success(),
            "create-md: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for n in ["node1", "node2"] {
        let cfg = lab.path(&format!("{n}.toml"));
        lab.start_with(n, &cfg, &[]);
    }
    lab
}

fn duetctl_local(config: &Path, node: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_duetctl"))
        .args(args)
        .arg("--config")
        .arg(config)
        .args(["--node", node])
        .output()
        .expect("duetctl")
}

fn r0(s: &Value) -> &Value {
    &s["replicas"][0]
}

fn states(s: &Value) -> String {
    let r = r0(s);
    format!(
        "{} {} {} {}/{}",
        r["role"], r["connection"], r["replication"], r["disk"], r["peer_disk"]
    )
}

fn wait_r0(lab: &Lab, node: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    lab.wait_status(node, SYNC, what, |s| ok(r0(s))).0
}

fn established(lab: &Lab, node: &str) {
    wait_r0(lab, node, "r0 established with both disks UpToDate", |r| {
        r["connection"] == "connected"
            && r["replication"] == "established"
            && r["disk"] == "uptodate"
            && r["peer_disk"] == "uptodate"
    });
}

fn ctl_ok(lab: &Lab, node: &str, args: &[&str]) -> String {
    let out = lab.duetctl(node, args);
    assert!(
        out.status.success(),
        "duetctl {args:?} on {node}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn socket(lab: &Lab, node: &str) -> PathBuf {
    lab.dir.join(format!("{node}-r0.sock"))
}

/// Writes `len` bytes of `pattern` at `offset` through the node's NBD
/// export, with qemu-io (a client no one here wrote).
fn nbd_write(lab: &Lab, node: &str, pattern: u8, offset: u64, len: u64) {
    let uri = format!("nbd+unix:///r0?socket={}", socket(lab, node).display());
    let cmd = format!("write -P {pattern} {offset} {len}");
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", &cmd, "-c", "flush", &uri])
        .output()
        .expect("qemu-io");
    assert!(
        out.status.success(),
        "qemu-io {cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn disk(lab: &Lab, node: &str) -> PathBuf {
    lab.dir.join(format!("{node}.img"))
}

/// The data areas of both disks are equal.
fn same_data(lab: &Lab, size: u64) -> bool {
    let out = Command::new("cmp")
        .arg("-n")
        .arg(size.to_string())
        .arg(disk(lab, "node1"))
        .arg(disk(lab, "node2"))
        .output()
        .expect("cmp");
    out.status.success()
}

/// How much of `file` the page cache holds (fincore, util-linux).
fn cached_bytes(file: &Path) -> u64 {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(file)
        .output()
        .expect("fincore");
    assert!(out.status.success(), "fincore: {}", printed(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("fincore said {text:?}"))
}

fn counter(s: &Value, name: &str) -> u64 {
    r0(s)["counters"][name].as_u64().unwrap_or(0)
}

fn usable(lab: &Lab) -> u64 {
    let s = lab.status("node1").expect("status");
    // The device size is what the peer's data area must match.
    let out = duetctl_local(
        &lab.path("node1.toml"),
        "node1",
        &["dump-md", "r0", "--json"],
    );
    let md: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "dump-md: {}; status {s}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    md["size"].as_u64().expect("size in dump-md")
}

#[test]
fn lab_initial_sync_mirrors_writes_and_resyncs_only_what_changed() {
    // Slow enough that the sync's progress can be watched.
    let lab = pair("16M", "");
    for n in ["node1", "node2"] {
        wait_r0(&lab, n, "connected, both Inconsistent", |r| {
            r["connection"] == "connected" && r["disk"] == "inconsistent"
        });
    }
    // An Inconsistent disk may not become Primary without --force.
    let refused = lab.duetctl("node1", &["primary", "r0"]);
    assert!(!refused.status.success());
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    let s = wait_r0(&lab, "node2", "a sync in progress, visible", |r| {
        r["replication"] == "synctarget"
            && r["sync_progress"]
                .as_f64()
                .is_some_and(|p| p > 0.0 && p < 1.0)
    });
    println!("sync seen: {}", states(&s));
    // Paused on the source, shown as such, then resumed.
    ctl_ok(&lab, "node1", &["pause-sync", "r0"]);
    let s = lab.status("node1").expect("status");
    assert_eq!(r0(&s)["replication"], "pausedsync", "{s}");
    ctl_ok(&lab, "node1", &["resume-sync", "r0"]);
    established(&lab, "node1");
    established(&lab, "node2");
    let size = usable(&lab);

    // The sync's data went to the secondary's disk direct, not into its
    // page cache (host::direct): of its file the cache holds the metadata
    // at most.
    let cached = cached_bytes(&disk(&lab, "node2"));
    println!("node2's disk in the page cache after the sync: {cached} bytes of {size}");
    assert!(
        cached < size / 8,
        "node2's cache holds {cached} bytes of its {size}-byte disk"
    );

    // Mirrored writes reach the secondary's disk, direct too.
    nbd_write(&lab, "node1", 0xab, 0, 4 * MIB);
    nbd_write(&lab, "node1", 0xcd, 40 * MIB, MIB);
    let more = cached_bytes(&disk(&lab, "node2")).saturating_sub(cached);
    println!("node2's cache after 5 MiB of mirrored writes: {more} bytes more");
    assert!(
        more < MIB,
        "node2's cache took {more} bytes of 5 MiB mirrored"
    );
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    assert!(
        same_data(&lab, size),
        "the disks differ after mirrored writes"
    );

    // Apart: only what was written while disconnected resyncs.
    ctl_ok(&lab, "node1", &["primary", "r0"]);
    ctl_ok(&lab, "node2", &["disconnect", "r0"]);
    nbd_write(&lab, "node1", 0x11, 8 * MIB, 2 * MIB);
    let s = wait_r0(&lab, "node1", "2 MiB out of sync", |r| {
        r["out_of_sync_bytes"] == 2 * MIB
    });
    let before = counter(&s, "resynced");
    ctl_ok(&lab, "node2", &["connect", "r0"]);
    established(&lab, "node1");
    let s = lab.status("node1").expect("status");
    let resynced = counter(&s, "resynced") - before;
    println!("bitmap resync: {resynced} bytes for 2 MiB written apart");
    assert_eq!(resynced, 2 * MIB, "only the dirty blocks resync");
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    assert!(same_data(&lab, size), "the disks differ after the resync");
}

#[test]
fn lab_split_brain_is_detected_and_resolved_by_policy_or_discard_my_data() {
    // No automatic recovery at all: an administrator decides. Without
    // fencing, so that both can write apart: with it (the default) node2's
    // disk is Outdated by node1 and refuses to be promoted.
    let lab = pair(
        "1G",
        "after-sb-0pri = \"disconnect\"\nafter-sb-1pri = \"disconnect\"\nfencing = \"none\"\n",
    );
    for n in ["node1", "node2"] {
        wait_r0(&lab, n, "connected", |r| r["connection"] == "connected");
    }
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node2");
    let size = usable(&lab);

    // Both write apart.
    ctl_ok(&lab, "node1", &["disconnect", "r0"]);
    ctl_ok(&lab, "node2", &["disconnect", "r0"]);
    nbd_write(&lab, "node1", 0x01, 0, MIB);
    // node1 is up: duetd refuses to promote a copy apart from it unless
    // the administrator insists, as this one does to make a split brain.
    ctl_ok(&lab, "node2", &["primary", "r0", "--force"]);
    nbd_write(&lab, "node2", 0x02, 16 * MIB, MIB);
    ctl_ok(&lab, "node2", &["secondary", "r0"]);
    let _ = lab.duetctl("node1", &["connect", "r0", "--timeout", "1"]);
    let refused = lab.duetctl("node2", &["connect", "r0", "--timeout", "20"]);
    assert!(!refused.status.success(), "a split brain must not connect");
    for n in ["node1", "node2"] {
        wait_r0(&lab, n, "standalone after the split brain", |r| {
            r["connection"] == "standalone"
        });
        assert!(
            lab.log(n).contains("split brain"),
            "{n} logs the split brain"
        );
    }
    // node2's changes lose.
    let _ = lab.duetctl("node1", &["connect", "r0", "--timeout", "1"]);
    ctl_ok(&lab, "node2", &["connect", "r0", "--discard-my-data"]);
    established(&lab, "node2");
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    assert!(
        same_data(&lab, size),
        "the loser did not take the winner's data"
    );
}

/// Overwrites `len` bytes at `offset` of the node's disk file under its
/// daemon, as a failing disk or a stray writer would.
fn rot(lab: &Lab, node: &str, offset: u64, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk(lab, node))
        .expect("disk");
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![0xee; len as usize], offset).expect("rot");
}

#[test]
fn lab_verify_and_invalidate_remote_repair_a_corrupted_secondary() {
    let lab = pair("1G", "");
    for n in ["node1", "node2"] {
        wait_r0(&lab, n, "connected", |r| r["connection"] == "connected");
    }
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node2");
    let size = usable(&lab);
    // Rot one block under node2's daemon.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk(&lab, "node2"))
        .expect("disk");
    std::os::unix::fs::FileExt::write_all_at(&f, b"bit rot", 20 * MIB + 100).expect("rot");
    let out = ctl_ok(&lab, "node1", &["verify", "r0"]);
    let oos: u64 = out
        .split("verify finished: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no verify result in {out:?}"));
    // One verify request's range (256 KiB) holds the rotten bytes.
    assert!(oos > 0 && oos <= 256 << 10, "{out}");
    // Disconnect and connect resyncs the marked block.
    ctl_ok(&lab, "node2", &["disconnect", "r0"]);
    ctl_ok(&lab, "node2", &["connect", "r0"]);
    established(&lab, "node1");
    assert!(same_data(&lab, size), "verify's resync left a difference");

    // Worse rot, spread over the data area: rather than verify, the
    // administrator declares node2's copy bad from the Primary.
    rot(&lab, "node2", 5 * MIB, MIB);
    rot(&lab, "node2", 33 * MIB + 7, 3000);
    rot(&lab, "node2", size - 4096, 4096);
    assert!(!same_data(&lab, size));
    // Not from node2: its peer is Primary, and a Primary's disk is never
    // made Inconsistent under it.
    let refused = lab.duetctl("node2", &["invalidate-remote", "r0"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("node1 is Primary"), "{said}");
    let before = counter(&lab.status("node1").expect("status"), "resynced");
    let out = ctl_ok(&lab, "node1", &["invalidate-remote", "r0"]);
    println!("invalidate-remote: {out}");
    established(&lab, "node1");
    established(&lab, "node2");
    let s = lab.status("node1").expect("status");
    assert_eq!(r0(&s)["role"], "primary", "{s}");
    assert_eq!(
        counter(&s, "resynced") - before,
        size,
        "a full sync: every block, once"
    );
    assert!(
        lab.log("node2").contains("sync started"),
        "node2 logs the sync it received"
    );
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    assert!(same_data(&lab, size), "invalidate-remote left a difference");
}

#[test]
fn lab_external_metadata_syncs_and_resyncs_the_whole_disk() {
    let lab = pair_with("1G", |_| String::new(), |_| {}, true);
    for n in ["node1", "node2"] {
        wait_r0(&lab, n, "connected, both Inconsistent", |r| {
            r["connection"] == "connected" && r["disk"] == "inconsistent"
        });
    }
    // All of each disk file is data: the device is as big as the file.
    let size = usable(&lab);
    assert_eq!(size, DISK, "external metadata takes none of the disk");
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node2");
    nbd_write(&lab, "node1", 0xab, 0, 4 * MIB);
    // The very last block, where internal metadata would be.
    nbd_write(&lab, "node1", 0xcd, DISK - MIB, MIB);

    // Apart: the bitmap in the metadata files says what to resync.
    ctl_ok(&lab, "node2", &["disconnect", "r0"]);
    nbd_write(&lab, "node1", 0x11, 8 * MIB, 2 * MIB);
    let s = wait_r0(&lab, "node1", "2 MiB out of sync", |r| {
        r["out_of_sync_bytes"] == 2 * MIB
    });
    let before = counter(&s, "resynced");
    ctl_ok(&lab, "node2", &["connect", "r0"]);
    established(&lab, "node1");
    let s = lab.status("node1").expect("status");
    assert_eq!(
        counter(&s, "resynced") - before,
        2 * MIB,
        "only the dirty blocks resync"
    );

    // node2 lets go of its disk and takes it again: attaching reads the
    // metadata file, and what it missed meanwhile resyncs.
    ctl_ok(&lab, "node2", &["down", "r0"]);
    nbd_write(&lab, "node1", 0x22, 48 * MIB, MIB);
    ctl_ok(&lab, "node2", &["up", "r0"]);
    established(&lab, "node1");
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    for n in ["node1", "node2"] {
        let len = std::fs::metadata(disk(&lab, n)).expect("disk").len();
        assert_eq!(len, DISK, "{n}'s disk file changed size");
        let out = duetctl_local(
            &lab.path(&format!("{n}.toml")),
            n,
            &["dump-md", "r0", "--json"],
        );
        let md: Value = serde_json::from_slice(&out.stdout).expect("dump-md json");
        assert_eq!(md["flags"][0], "consistent", "{n}: {md}");
        assert_eq!(
            md["meta_disk"],
            lab.dir.join(format!("{n}.md")).display().to_string()
        );
    }
    // Both whole files alike: nothing of the metadata went into either.
    assert!(same_data(&lab, DISK), "the disks differ");
}

#[test]
fn lab_down_up_resyncs_what_was_missed_and_adjust_applies_the_config() {
    let lab = pair("1G", "");
    for n in ["node1", "node2"] {
        wait_r0(&lab, n, "connected", |r| r["connection"] == "connected");
    }
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node2");
    let size = usable(&lab);

    ctl_ok(&lab, "node2", &["down", "r0"]);
    let s = lab.status("node2").expect("status");
    assert_eq!(r0(&s)["disk"], "diskless", "{s}");
    nbd_write(&lab, "node1", 0x42, 30 * MIB, MIB);
    ctl_ok(&lab, "node2", &["up", "r0"]);
    established(&lab, "node1");
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    assert!(
        same_data(&lab, size),
        "node2 missed what was written while it was down"
    );

    // A Primary with its device attached cannot go down.
    ctl_ok(&lab, "node1", &["primary", "r0"]);
    let refused = lab.duetctl("node1", &["down", "r0"]);
    assert!(!refused.status.success());
    ctl_ok(&lab, "node1", &["secondary", "r0"]);

    // A config with an error is refused whole, the running replica
    // untouched: an unknown protocol, then a file that is not TOML.
    let cfg = lab.path("node2.toml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    let before = states(&lab.status("node2").expect("status"));
    for (broken, said) in [
        ("port = 7789\nprotocol = \"Z\"\n", "protocol"),
        ("port = 7789\nprotocol = \"A\"\n[[[\n", "node2.toml:"),
    ] {
        std::fs::write(&cfg, text.replace("port = 7789\n", broken)).expect("config");
        let out = lab.duetctl("node2", &["adjust", "r0"]);
        let printed = printed(&out);
        assert!(!out.status.success(), "a broken config applied: {printed}");
        assert!(printed.contains(said), "{printed}");
        let s = lab.status("node2").expect("status");
        assert_eq!(r0(&s)["protocol"], "C", "{s}");
        assert_eq!(states(&s), before);
    }

    // Protocol A from the config file, live.
    std::fs::write(
        &cfg,
        text.replace("port = 7789\n", "port = 7789\nprotocol = \"A\"\n"),
    )
    .expect("config");
    let out = ctl_ok(&lab, "node2", &["adjust", "r0"]);
    assert!(out.contains("protocol A"), "{out}");
    let s = lab.status("node2").expect("status");
    assert_eq!(r0(&s)["protocol"], "A", "{s}");
}

/// Runs `args` in `node`'s namespace; the output, whatever the outcome.
fn in_ns(lab: &Lab, node: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &lab.node(node).ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn lab_the_tcp_export_is_served_with_tls_by_the_primary_only() {
    // Each node listens on its public address while Primary; its
    // certificate names that address. Paths are relative to the config.
    let extra = |n: usize| {
        format!(
            "nbd-listen = {{ node1 = \"198.51.100.1:10809\", node2 = \"198.51.100.2\" }}\n\
             [replica.nbd-tls]\ncert = \"pki/node{n}-cert.pem\"\n\
             key = \"pki/node{n}-key.pem\"\nca = \"pki/ca-cert.pem\"\n"
        )
    };
    let lab = pair_with(
        "1G",
        extra,
        |lab| {
            let dir = lab.dir.join("pki");
            std::fs::create_dir_all(&dir).expect("pki");
            pki::new_ca(&dir, "ca");
            for n in 1..=2 {
                let ext = pki::server_ext(&format!("IP:198.51.100.{n}"));
                pki::signed(&dir, &format!("node{n}"), "ca", &ext);
            }
            pki::signed(&dir, "client", "ca", pki::CLIENT_EXT);
            pki::client_dir(&dir, &lab.dir.join("client"), "ca", Some("client"));
        },
        false,
    );
    let client = lab.dir.join("client");
    let nbds = |n: usize| {
        format!(
            "nbds://198.51.100.{n}/r0?tls-certificates={}",
            client.display()
        )
    };
    for n in ["node1", "node2"] {
        wait_r0(&lab, n, "connected", |r| r["connection"] == "connected");
    }
    // Secondary: nothing listens.
    let out = in_ns(&lab, "node2", &["nbdinfo", &nbds(1)]);
    assert!(
        !out.status.success(),
        "served by a Secondary: {}",
        printed(&out)
    );

    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node1");
    // The attachment's own connections, before any remote client (a
    // remote client's count lingers a moment after it disconnects).
    let s = lab.status("node1").expect("status");
    let local = r0(&s)["clients"].as_u64().expect("clients");
    let size = usable(&lab);
    // From node2's side of the public link, as a remote client.
    let out = in_ns(&lab, "node2", &["nbdinfo", "--size", &nbds(1)]);
    assert!(out.status.success(), "nbdinfo: {}", printed(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        size.to_string()
    );
    // Without TLS: refused.
    let out = in_ns(&lab, "node2", &["nbdinfo", "nbd://198.51.100.1/r0"]);
    assert!(
        !out.status.success(),
        "served without TLS: {}",
        printed(&out)
    );
    // A pattern in over TLS, mirrored to node2.
    let pattern = lab.dir.join("pattern.bin");
    std::fs::write(&pattern, vec![0x6bu8; 4 * MIB as usize]).expect("pattern");
    let out = in_ns(
        &lab,
        "node2",
        &["nbdcopy", &pattern.display().to_string(), &nbds(1)],
    );
    assert!(out.status.success(), "nbdcopy: {}", printed(&out));

    // A client stays connected: counted (beside the attachment's own
    // connections), then cut off by `secondary`.
    let mut qemu = Command::new("ip")
        .args(["netns", "exec", &lab.node("node2").ns, "qemu-io"])
        .args([
            "--object",
            &format!(
                "tls-creds-x509,id=tls0,endpoint=client,dir={}",
                client.display()
            ),
            "--image-opts",
            "driver=nbd,server.type=inet,server.host=198.51.100.1,server.port=10809,export=r0,tls-creds=tls0",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("qemu-io");
    wait_r0(&lab, "node1", "the TCP client counted", |r| {
        r["clients"] == local + 1
    });
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    // Dropped by the demotion, while qemu-io still runs (its connection
    // is closed from this side; the count follows the workers' exit).
    wait_r0(&lab, "node1", "the TCP client dropped", |r| {
        r["clients"] == 0
    });
    let _ = qemu.kill();
    let _ = qemu.wait();
    let out = in_ns(&lab, "node2", &["nbdinfo", &nbds(1)]);
    assert!(!out.status.success(), "still listening: {}", printed(&out));
    assert!(same_data(&lab, size), "the disks differ");

    // The other node as Primary serves the same data at its address.
    ctl_ok(&lab, "node2", &["primary", "r0"]);
    let back = lab.dir.join("back.bin");
    let out = in_ns(
        &lab,
        "node1",
        &["nbdcopy", &nbds(2), &back.display().to_string()],
    );
    assert!(out.status.success(), "nbdcopy back: {}", printed(&out));
    let back = std::fs::read(&back).expect("copied back");
    assert!(back[..4 * MIB as usize].iter().all(|&b| b == 0x6b));
    ctl_ok(&lab, "node2", &["secondary", "r0"]);
}

#[test]
fn lab_duetd_does_not_start_with_a_tls_key_others_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let extra = |_| {
        "nbd-listen = { node1 = \"198.51.100.1\" }\n[replica.nbd-tls]\n\
         cert = \"pki/node1-cert.pem\"\nkey = \"pki/node1-key.pem\"\nca = \"pki/ca-cert.pem\"\n"
            .to_string()
    };
    let lab = pair_with(
        "1G",
        extra,
        |lab| {
            let dir = lab.dir.join("pki");
            std::fs::create_dir_all(&dir).expect("pki");
            pki::new_ca(&dir, "ca");
            pki::signed(&dir, "node1", "ca", &pki::server_ext("IP:198.51.100.1"));
            let key = dir.join("node1-key.pem");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        },
        false,
    );
    // node2 has no listener, so it never reads the files: it runs.
    wait_r0(&lab, "node2", "node2 up", |r| r["name"] == "r0");
    // node1 stops at once, naming the file and the fix.
    let key = lab.dir.join("pki/node1-key.pem");
    let want = format!("chmod 600 {}", key.display());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !lab.log("node1").contains(&want) {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal in node1's log: {}",
            lab.log("node1")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lab.try_status("node1").is_err(), "node1 answers");
}

/// `n` TCP connections to `to`, one after another, each from `from` (an
/// address of namespace `ns`), sending `junk` and closing. Connections the
/// peer refuses or resets count as made: the point is to knock.
fn knock(ns: &str, from: &str, to: &str, n: usize, junk: &'static [u8]) {
    use std::io::Write;
    let (from, to): (std::net::SocketAddr, std::net::SocketAddr) = (
        format!("{from}:0").parse().expect("from"),
        to.parse().expect("to"),
    );
    let t = netns::in_netns(ns, move || {
        for _ in 0..n {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            s.bind(&from.into()).expect("bind");
            if s.connect_timeout(&to.into(), Duration::from_secs(2))
                .is_ok()
            {
                let _ = (&s).write_all(junk);
            }
        }
    });
    t.join().expect("knocking thread");
}

#[test]
fn lab_a_flood_on_the_replication_port_is_refused_counted_and_quiet() {
    let lab = pair("100M", "");
    wait_r0(&lab, "node1", "connected", |r| {
        r["connection"] == "connected"
    });
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node2");
    let lines = |node: &str, what: &str| lab.log(node).matches(what).count();
    let ups = lines("node2", "replication link up");
    // node2 listens (the higher id); a stranger beside node1 knocks 300
    // times, and node1's own address sends junk in place of a handshake.
    netns::ip(&[
        "-n",
        &lab.node("node1").ns,
        "addr",
        "add",
        "203.0.113.99/24",
        "dev",
        "eth1",
    ]);
    let t = std::time::Instant::now();
    knock(
        &lab.node("node1").ns,
        "203.0.113.99",
        "203.0.113.2:7789",
        300,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    knock(
        &lab.node("node1").ns,
        "203.0.113.1",
        "203.0.113.2:7789",
        20,
        &[0xff; 64],
    );
    let (s, _) = lab.wait_status("node2", SYNC, "300 refusals counted", |s| {
        counter(s, "refused-connections") >= 300
    });
    // The replica kept its connection and still mirrors.
    assert_eq!(states(&s), states(&lab.status("node2").expect("status")));
    let received = counter(&s, "received");
    nbd_write(&lab, "node1", 0x5a, 0, MIB);
    wait_r0(&lab, "node2", "the write mirrored after the flood", |r| {
        r["counters"]["received"].as_u64().unwrap_or(0) >= received + MIB
    });
    established(&lab, "node2");
    assert_eq!(
        lines("node2", "replication link up"),
        ups,
        "{}",
        lab.log("node2")
    );
    assert_eq!(
        lines("node2", "replication link down"),
        0,
        "{}",
        lab.log("node2")
    );
    // Logged at most once per 10 s: every refusal is in the counter.
    let bound = 1 + t.elapsed().as_secs() as usize / 10 + 1;
    let said = lines("node2", "replication connection from a stranger refused");
    assert!(
        (1..=bound).contains(&said),
        "{said} lines in {:?}",
        t.elapsed()
    );
}

/// Waits for `node`'s r0 to be SyncTarget between `from` and 90% done:
/// its out-of-sync bytes then.
fn mid_sync(lab: &Lab, node: &str, from: f64) -> u64 {
    let s = wait_r0(lab, node, "a sync under way", |r| {
        r["replication"] == "synctarget"
            && r["sync_progress"]
                .as_f64()
                .is_some_and(|p| (from..0.9).contains(&p))
    });
    r0(&s)["out_of_sync_bytes"].as_u64().unwrap_or(u64::MAX)
}

/// node2 disconnected, `len` written on node1 (Primary), node1 back to
/// Secondary and node2 connected: a bitmap resync starts.
fn apart_then_resync(lab: &Lab, pattern: u8, len: u64) {
    ctl_ok(lab, "node1", &["primary", "r0"]);
    ctl_ok(lab, "node2", &["disconnect", "r0"]);
    nbd_write(lab, "node1", pattern, 0, len);
    ctl_ok(lab, "node1", &["secondary", "r0"]);
    ctl_ok(lab, "node2", &["connect", "r0"]);
}

/// node2's out-of-sync bytes once its restarted daemon syncs again.
fn syncing_again(lab: &Lab) -> u64 {
    let s = wait_r0(lab, "node2", "syncing again", |r| {
        r["replication"] == "synctarget" || r["disk"] == "uptodate"
    });
    r0(&s)["out_of_sync_bytes"].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn lab_duetd_killed_mid_resync_resumes_it_and_loses_nothing() {
    // 64 MiB at 16 MiB/s: about 4 s of sync to kill into.
    let mut lab = pair("16M", "");
    wait_r0(&lab, "node1", "connected", |r| {
        r["connection"] == "connected"
    });
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    nbd_write(&lab, "node1", 0x77, 10 * MIB, 2 * MIB);
    // A Secondary SyncSource: killing it leaves no device behind.
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    let size = usable(&lab);
    let (cfg1, cfg2) = (lab.path("node1.toml"), lab.path("node2.toml"));

    // Each target SIGKILLed past its first lazy bitmap write (1 s):
    // restarted, it goes on from what its metadata kept.
    // The initial full sync's target.
    let left = mid_sync(&lab, "node2", 0.4);
    lab.kill("node2");
    lab.start_with("node2", &cfg2, &[]);
    let again = syncing_again(&lab);
    println!("full sync of {size}: target killed with {left} bytes left, restarted with {again}");
    assert!(
        again < size,
        "the full sync started over: {again} of {size}"
    );
    established(&lab, "node2");
    assert!(
        same_data(&lab, size),
        "the disks differ after the full sync"
    );

    // A bitmap resync's target.
    const APART: u64 = 48 * MIB;
    apart_then_resync(&lab, 0x3c, APART);
    let left = mid_sync(&lab, "node2", 0.75);
    lab.kill("node2");
    lab.start_with("node2", &cfg2, &[]);
    let again = syncing_again(&lab);
    println!(
        "bitmap resync of {APART}: target killed with {left} bytes left, restarted with {again}"
    );
    assert!(again < APART, "the resync started over: {again} of {APART}");
    established(&lab, "node2");
    assert!(same_data(&lab, size), "the disks differ after the resync");

    // A bitmap resync's source, SIGKILLed: restarted, it syncs the rest.
    apart_then_resync(&lab, 0xc3, APART);
    let left = mid_sync(&lab, "node2", 0.05);
    lab.kill("node1");
    lab.start_with("node1", &cfg1, &[]);
    println!("bitmap resync: source killed with {left} bytes left");
    established(&lab, "node1");
    established(&lab, "node2");
    assert!(
        same_data(&lab, size),
        "the disks differ after the resumed resync"
    );
}

/// A tmpfs of `mib` MiB at `dir`, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: PathBuf, mib: u64) -> SmallFs {
        std::fs::create_dir_all(&dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("mount");
        assert!(out.status.success(), "mount tmpfs: {}", printed(&out));
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn lab_a_full_backing_disk_detaches_and_the_primary_writes_through_its_peer() {
    // node1's disk file lives on a 16 MiB filesystem: sparse at first,
    // full once 16 MiB of it are written.
    let small = std::cell::RefCell::new(None);
    let lab = pair_with(
        "100M",
        |_| String::new(),
        |lab| {
            let fs = SmallFs::mount(lab.dir.join("small"), 16);
            std::os::unix::fs::symlink(fs.0.join("node1.img"), lab.dir.join("node1.img"))
                .expect("symlink");
            *small.borrow_mut() = Some(fs);
        },
        false,
    );
    let _small = small.into_inner();
    wait_r0(&lab, "node1", "connected", |r| {
        r["connection"] == "connected"
    });
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node2");

    // 24 MiB through node1's export: the disk fills on the way, node1
    // detaches it, and the rest goes to node2 alone.
    nbd_write(&lab, "node1", 0x42, 0, 24 * MIB);
    let s = wait_r0(&lab, "node1", "node1 without its disk", |r| {
        r["disk"] == "diskless"
    });
    assert_eq!(r0(&s)["role"], "primary", "{s}");
    assert!(
        lab.log("node1").contains("I/O error on the backing disk"),
        "{}",
        lab.log("node1")
    );
    let mut on_node2 = vec![0u8; (24 * MIB) as usize];
    use std::io::Read;
    std::fs::File::open(disk(&lab, "node2"))
        .and_then(|mut f| f.read_exact(&mut on_node2))
        .expect("node2's disk");
    assert!(
        on_node2.iter().all(|b| *b == 0x42),
        "node2 lacks what node1 acknowledged"
    );
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
}

#[test]
fn lab_a_peer_with_the_wrong_replication_key_never_connects() {
    // node2's replica has a key of its own; node1 keeps the cluster's.
    let lab = pair_with(
        "100M",
        |n| {
            if n == 2 {
                "key-file = \"other.key\"\n".to_string()
            } else {
                String::new()
            }
        },
        |lab| {
            lab.keygen("other.key");
        },
        false,
    );
    // Membership is fine (the cluster key), the replica never connects:
    // node1 dials every 200 ms, node2 refuses and counts each.
    let (s, took) = lab.wait_status("node2", SYNC, "10 refused handshakes", |s| {
        counter(s, "refused-connections") >= 10
    });
    assert_ne!(r0(&s)["connection"], "connected", "{s}");
    let s1 = lab.status("node1").expect("status");
    assert_ne!(r0(&s1)["connection"], "connected", "{s1}");
    assert_eq!(netns::state_of(&s, "node1").as_deref(), Some("up"), "{s}");
    let said = lab
        .log("node2")
        .matches("replication handshake failed")
        .count();
    // One line per 10 s at most (the daemons started before `took`).
    let bound = 2 + took.as_secs() as usize / 10;
    assert!(
        (1..=bound).contains(&said),
        "{said} lines:\n{}",
        lab.log("node2")
    );
}

/// Certificates for the replication link's TLS in `lab.dir/pki`: a CA,
/// and per node a certificate naming `names[i]` (node i+1's), usable
/// both ways (the dialling node is the TLS client).
fn link_pki(lab: &Lab, ca: &str, names: [&str; 2]) {
    let dir = lab.dir.join("pki");
    std::fs::create_dir_all(&dir).expect("pki");
    if !dir.join(format!("{ca}-cert.pem")).exists() {
        pki::new_ca(&dir, ca);
    }
    for (i, name) in names.iter().enumerate() {
        let ext = format!(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:{name}\n"
        );
        pki::signed(&dir, &format!("node{}", i + 1), ca, &ext);
    }
}

/// node N's `[replica.tls]`, its files in `pki/`.
fn link_tls(n: usize) -> String {
    format!(
        "[replica.tls]\ncert = \"pki/node{n}-cert.pem\"\n\
         key = \"pki/node{n}-key.pem\"\nca = \"pki/ca-cert.pem\"\n"
    )
}

/// Every frame crossing namespace `ns` while `during` runs, concatenated
/// (at most 256 MiB).
fn captured(ns: &str, during: impl FnOnce()) -> Vec<u8> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const ETH_P_ALL: u16 = 0x0003;
    // Made inside the namespace, the socket sees its frames from any thread.
    let socket = netns::in_netns(ns, || {
        Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )
        .expect("packet socket")
    })
    .join()
    .expect("capture socket");
    let _ = socket.set_recv_buffer_size(16 << 20);
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 1 << 16];
            while !stop.load(Ordering::SeqCst) && all.len() < 256 << 20 {
                if let Ok(n) = socket.recv(&mut buf) {
                    // SAFETY: recv initialised the first n bytes.
                    all.extend(buf[..n].iter().map(|b| unsafe { b.assume_init() }));
                }
            }
            all
        })
    };
    during();
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("capture thread")
}

/// The longest run of `byte` in `bytes`.
fn longest_run(bytes: &[u8], byte: u8) -> usize {
    let (mut best, mut run) = (0, 0);
    for &b in bytes {
        run = if b == byte { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

#[test]
fn lab_the_replication_link_over_tls_mirrors_resyncs_and_hides_the_data() {
    let lab = pair_with(
        "1G",
        link_tls,
        |lab| link_pki(lab, "ca", ["node1", "node2"]),
        false,
    );
    wait_r0(&lab, "node2", "connected over TLS", |r| {
        r["connection"] == "connected"
    });
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node2");
    let size = usable(&lab);
    // 4 MiB of one byte cross the link: in the clear it would show as
    // runs of thousands.
    let wire = captured(&lab.node("node2").ns, || {
        nbd_write(&lab, "node1", 0x5a, 0, 4 * MIB);
    });
    println!(
        "captured {} bytes on node2, longest run of the data byte {}",
        wire.len(),
        longest_run(&wire, 0x5a)
    );
    assert!(wire.len() as u64 > 2 * MIB, "the data was not captured");
    assert!(
        longest_run(&wire, 0x5a) < 64,
        "the data crossed the link in the clear"
    );
    // Apart and back: the TLS connection closes and another one resyncs.
    ctl_ok(&lab, "node2", &["disconnect", "r0"]);
    nbd_write(&lab, "node1", 0x33, 16 * MIB, MIB);
    ctl_ok(&lab, "node2", &["connect", "r0"]);
    established(&lab, "node1");
    let s = lab.status("node1").expect("status");
    assert_eq!(counter(&s, "refused-connections"), 0, "{s}");
    assert!(
        lab.log("node2").contains("tls=true"),
        "{}",
        lab.log("node2")
    );
    ctl_ok(&lab, "node1", &["secondary", "r0"]);
    assert!(same_data(&lab, size), "the disks differ");
}

/// A pair whose link TLS cannot pass: node2 counts refused handshakes,
/// says `why` in its log, and the replica never connects while the
/// cluster stays up.
fn tls_refused(prepare: impl FnOnce(&Lab), extra: impl Fn(usize) -> String, why: &str) {
    let lab = pair_with("100M", extra, prepare, false);
    let (s, _) = lab.wait_status("node2", SYNC, "5 refused connections", |s| {
        counter(s, "refused-connections") >= 5
    });
    assert_ne!(r0(&s)["connection"], "connected", "{s}");
    assert_eq!(netns::state_of(&s, "node1").as_deref(), Some("up"), "{s}");
    let log = lab.log("node2");
    assert!(log.contains(why), "no {why:?} in node2's log:\n{log}");
    let s1 = lab.status("node1").expect("status");
    assert_ne!(r0(&s1)["connection"], "connected", "{s1}");
}

#[test]
fn lab_a_peer_without_a_certificate_of_the_clusters_ca_never_connects() {
    // node1's certificate comes from a CA of its own, named right.
    tls_refused(
        |lab| {
            link_pki(lab, "ca", ["node1", "node2"]);
            let dir = lab.dir.join("pki");
            pki::new_ca(&dir, "rogue");
            pki::signed(
                &dir,
                "node1",
                "rogue",
                "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:node1\n",
            );
        },
        link_tls,
        "replication TLS handshake failed",
    );
}

#[test]
fn lab_a_certificate_naming_another_node_or_no_tls_never_connects() {
    // Signed by the cluster's CA, but node1 shows node2's name.
    tls_refused(
        |lab| link_pki(lab, "ca", ["node2", "node2"]),
        link_tls,
        "does not name",
    );
    // node1 dials without TLS: node2 sees no TLS handshake.
    tls_refused(
        |lab| link_pki(lab, "ca", ["node1", "node2"]),
        |n| if n == 2 { link_tls(n) } else { String::new() },
        "replication TLS handshake failed",
    );
}

/// The percentage in a view's progress bar, if it has one.
fn progress(view: &str) -> Option<f64> {
    let after = view.split("] ").nth(1)?;
    after.split('%').next()?.trim().parse().ok()
}

#[test]
fn lab_status_watch_follows_a_sync_with_its_progress_to_the_end() {
    let mut lab = pair("16M", "");
    wait_r0(&lab, "node2", "connected", |r| {
        r["connection"] == "connected"
    });
    lab.wait_status("node2", SYNC, "node1's links up", |s| {
        s["nodes"][0]["links"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["state"] == "up"))
    });
    let rx = lab.watch("node2");
    netns::recv_until(&rx, SYNC, "r0 connected", |v| v.contains(" connected "));
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    let views = netns::recv_until(&rx, SYNC, "r0 synced", |v| v.contains("uptodate/uptodate"));
    for v in &views {
        println!("{v}");
    }
    let seen: Vec<f64> = views.iter().filter_map(|v| progress(v)).collect();
    // 64 MiB at 16 MiB/s, a signal a second: the bar moves forward.
    assert!(seen.len() >= 2, "{views:#?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        views
            .iter()
            .any(|v| v.contains("synctarget") && v.contains(" eta ")),
        "{views:#?}"
    );
    assert!(
        views
            .iter()
            .flat_map(|v| v.lines())
            .all(|l| l.chars().count() <= 80)
    );
}

/// Prints each sample of a Prometheus text exposition as JSON, parsed by
/// the Prometheus project's own Python client (Debian's).
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type})
print(json.dumps(out))
"#;

/// The node's /metrics, fetched from inside its namespace.
fn scrape(lab: &Lab, node: &str) -> String {
    let out = in_ns(
        lab,
        node,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:9649/metrics",
        ],
    );
    assert!(out.status.success(), "curl: {}", printed(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Pipes `text` through a command and returns its output.
fn through(cmd: &str, args: &[&str], text: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd} (scripts/install-deps.sh installs it): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

#[test]
fn lab_the_metrics_endpoint_parses_and_matches_the_status() {
    let lab = pair_with(
        "1G",
        |_| "[metrics]\nlisten = \"127.0.0.1:9649\"\n".to_string(),
        |_| {},
        false,
    );
    wait_r0(&lab, "node2", "connected", |r| {
        r["connection"] == "connected"
    });
    ctl_ok(&lab, "node1", &["primary", "r0", "--force"]);
    established(&lab, "node1");
    established(&lab, "node2");
    nbd_write(&lab, "node1", 0x42, 0, 2 * MIB);
    // Idle now: the counters hold still between the two reads.
    let status = wait_r0(&lab, "node1", "nothing pending", |r| {
        r["counters"]["pending"] == 0 && r["counters"]["unacked"] == 0
    });
    // The status is published at the daemon's next step after the writes.
    let write_count = "duet_export_request_duration_seconds_count{replica=\"r0\",kind=\"write\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !scrape(&lab, "node1").contains(write_count) {
        assert!(
            std::time::Instant::now() < deadline,
            "no write in the histogram"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = lab.status("node1").unwrap_or(status);
    let text = scrape(&lab, "node1");
    let lint = through("promtool", &["check", "metrics"], &text);
    assert!(
        lint.status.success(),
        "promtool: {}\n{text}",
        printed(&lint)
    );
    let parsed = through("/usr/bin/python3", &["-c", PARSE], &text);
    assert!(parsed.status.success(), "parser: {}", printed(&parsed));
    let samples: Vec<Value> = serde_json::from_slice(&parsed.stdout).expect("parser's JSON");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .and_then(|s| s["value"].as_f64())
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    let r = r0(&status);
    assert_eq!(value("duet_quorate", &[]), 1.0);
    assert_eq!(status["quorate"], true);
    for n in status["nodes"].as_array().expect("nodes") {
        let (name, state) = (
            n["name"].as_str().unwrap_or(""),
            n["state"].as_str().unwrap_or(""),
        );
        assert_eq!(
            value("duet_node_state", &[("node", name), ("state", state)]),
            1.0
        );
    }
    for (metric, key) in [
        ("duet_replica_role", "role"),
        ("duet_replica_peer_role", "peer_role"),
        ("duet_replica_connection", "connection"),
        ("duet_replica_replication", "replication"),
        ("duet_replica_disk", "disk"),
        ("duet_replica_peer_disk", "peer_disk"),
    ] {
        let state = r[key].as_str().expect("state");
        assert_eq!(
            value(metric, &[("replica", "r0"), ("state", state)]),
            1.0,
            "{metric}"
        );
    }
    assert_eq!(
        value(
            "duet_replica_role",
            &[("replica", "r0"), ("state", "secondary")]
        ),
        0.0
    );
    assert_eq!(
        value("duet_replica_out_of_sync_bytes", &[("replica", "r0")]),
        r["out_of_sync_bytes"].as_f64().expect("out of sync")
    );
    // Counters: the parser names them without _total, as the format says.
    for (metric, key) in [
        ("duet_replica_sent_bytes", "sent"),
        ("duet_replica_written_bytes", "written"),
        ("duet_replica_resynced_bytes", "resynced"),
    ] {
        assert_eq!(
            value(&format!("{metric}_total"), &[("replica", "r0")]),
            r["counters"][key].as_f64().expect("counter"),
            "{metric}"
        );
        let family = samples
            .iter()
            .find(|s| s["name"] == format!("{metric}_total"));
        assert_eq!(
            family.map(|s| s["type"].clone()),
            Some(Value::from("counter"))
        );
    }
    // The 2 MiB written went to the peer.
    assert!(value("duet_replica_sent_bytes_total", &[("replica", "r0")]) >= (2 * MIB) as f64);
    let newest = duet::membership::protocol::ProtocolRange::BUILD.max;
    assert_eq!(r["link_version"], newest, "{r}");
    assert_eq!(
        value("duet_replica_link_version", &[("replica", "r0")]),
        f64::from(newest)
    );
    // node2 echoes node1's heartbeats: a round trip on each link, as the
    // status has one too (each read at its own heartbeat).
    let node2 = netns::node_of(&status, "node2").expect("node2");
    for l in node2["links"].as_array().expect("links") {
        let link = l["name"].as_str().expect("link name");
        let us = l["rtt_us"]
            .as_u64()
            .unwrap_or_else(|| panic!("no round trip: {l}"));
        let rtt = value(
            "duet_heartbeat_rtt_seconds",
            &[("node", "node2"), ("link", link)],
        );
        assert!(us > 0 && rtt > 0.0 && rtt < 1.0, "{us} µs, {rtt} s");
    }
    // Read later than the status: never fewer.
    let lost = node2["lost_heartbeats"].as_f64().expect("lost heartbeats");
    assert!(value("duet_heartbeats_lost_total", &[("node", "node2")]) >= lost);
    assert_eq!(
        value("duet_node_protocol_incompatible", &[("node", "node2")]),
        0.0
    );
    // The writes through the export, in its latency histogram.
    let write = [("replica", "r0"), ("kind", "write")];
    let count = value("duet_export_request_duration_seconds_count", &write);
    assert!(count >= 1.0, "{count}");
    let mut all = write.to_vec();
    all.push(("le", "+Inf"));
    assert_eq!(
        value("duet_export_request_duration_seconds_bucket", &all),
        count
    );
    assert!(value("duet_export_request_duration_seconds_sum", &write) > 0.0);
    // Bound to the loopback: not reachable on the node's own address.
    let out = in_ns(
        &lab,
        "node2",
        &[
            "curl",
            "-sS",
            "--max-time",
            "2",
            "http://203.0.113.1:9649/metrics",
        ],
    );
    assert!(!out.status.success(), "served beyond the loopback");
}

#[test]
fn lab_reload_applies_what_it_can_and_names_what_needs_a_restart() {
    let lab = pair("100M", "");
    wait_r0(&lab, "node1", "connected", |r| {
        r["connection"] == "connected"
    });
    let path = lab.path("node1.toml");
    let original = std::fs::read_to_string(&path).expect("config");
    assert!(ctl_ok(&lab, "node1", &["reload"]).contains("no change"));

    let edited = original
        .replace(
            "connect-retry = \"200ms\"",
            "connect-retry = \"300ms\"\nprotocol = \"A\"",
        )
        .replace("rate-max = \"100M\"", "rate-max = \"50M\"");
    assert_ne!(edited, original);
    std::fs::write(&path, &edited).expect("edit");
    let said = ctl_ok(&lab, "node1", &["reload"]);
    assert!(
        said.contains("applied: replica.r0.protocol, replica.r0.resync.rate-max"),
        "{said}"
    );
    assert!(
        said.contains("needs a restart of duetd") && said.contains("replica.r0.connect-retry"),
        "{said}"
    );
    wait_r0(&lab, "node1", "protocol A", |r| r["protocol"] == "A");

    // A file with an error: refused, named, nothing changes.
    std::fs::write(
        &path,
        edited.replace("protocol = \"A\"", "protocol = \"Z\""),
    )
    .expect("edit");
    let out = lab.duetctl("node1", &["reload"]);
    assert!(!out.status.success());
    assert!(printed(&out).contains("protocol"), "{}", printed(&out));
    let s = lab.status("node1").expect("status");
    assert_eq!(r0(&s)["protocol"], "A", "{s}");

    // Back to the file duetd started with: applied, nothing to restart.
    std::fs::write(&path, &original).expect("restore");
    let said = ctl_ok(&lab, "node1", &["reload"]);
    assert!(said.contains("applied: replica.r0.protocol"), "{said}");
    assert!(!said.contains("restart"), "{said}");
    wait_r0(&lab, "node1", "protocol C", |r| r["protocol"] == "C");
    assert!(ctl_ok(&lab, "node1", &["reload"]).contains("no change"));
}
