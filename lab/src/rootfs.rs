//! The nodes' root filesystem: a Debian tree built once with mmdebstrap and
//! cached outside the repository, keyed by its package list, so changing
//! the list rebuilds it and nothing else does.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::Command;

use crate::cmd::succeed;

/// What every node has. Add what a scenario needs here, and only here.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iputils-ping",
    "nftables",
    "e2fsprogs",
    "util-linux",
    "procps",
    "fuse3",
    "libnbd-bin",
    "curl",
    "apache2",
    // The failover benchmark's peer (lab/src/bench.rs); enabled, it starts
    // only on a node given a config.
    "keepalived",
];

const SUITE: &str = "bookworm";

pub fn cache_dir() -> PathBuf {
    std::env::var_os("DUET_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/duet-lab"))
}

fn key() -> String {
    let list = format!("{SUITE}:{}", PACKAGES.join(","));
    format!("{:08x}", crc32c::crc32c(list.as_bytes()))
}

/// The cached rootfs, built first if missing. Safe to call from several
/// tests at once: one builds, the others wait on the lock.
pub fn ensure() -> PathBuf {
    let dir = cache_dir();
    fs::create_dir_all(&dir).expect("lab cache dir");
    let root = dir.join(format!("rootfs-{}", key()));
    let lock = File::create(dir.join("lock")).expect("lab cache lock");
    lock.lock().expect("lock the lab cache");
    if !root.join(".complete").exists() {
        build(&root);
    }
    root
}

fn build(root: &PathBuf) {
    eprintln!(
        "lab: building the node rootfs with mmdebstrap (once; cached in {})",
        root.display()
    );
    let tmp = root.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    // No mirror is named: mmdebstrap takes the host's apt sources.
    succeed(
        Command::new("mmdebstrap")
            .arg("--variant=apt")
            .arg(format!("--include={}", PACKAGES.join(",")))
            // The nodes get their names from nspawn, not from the host.
            .arg("--customize-hook=rm -f \"$1/etc/hostname\"")
            .arg(SUITE)
            .arg(&tmp),
    );
    fs::write(tmp.join(".complete"), PACKAGES.join("\n")).expect("mark rootfs complete");
    let _ = fs::remove_dir_all(root);
    fs::rename(&tmp, root).expect("move rootfs into place");
}
