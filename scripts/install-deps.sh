#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine.
# Idempotent: when everything is there it only checks and returns.
set -euo pipefail

# Every Debian package the project uses, in one place.
PACKAGES=(
  dbus            # dbus-daemon: a private system bus per lab node
  iproute2        # ip: namespaces, veth pairs, addresses
  procps          # pgrep/pkill for cleanup checks, sysctl in test namespaces
  util-linux      # setpriv, blkid, losetup, nsenter
  e2fsprogs       # mkfs.ext4 in the export and metadata tests
  systemd         # systemd-analyze verify of the unit file in tests, busctl
  systemd-container # systemd-nspawn: the lab's booted nodes
  mmdebstrap      # builds the lab nodes' Debian rootfs (cached)
  nftables        # nft: partitions and packet loss between lab nodes
  fio             # the benchmarks' client (nbd engine): benches/datapath.rs
  nbdkit          # the lab nodes' /dev/sdb, with an error filter for disk faults
  libnbd-bin      # nbdfuse: shows nbdkit's disk as a file for a loop device
  fuse3
  qemu-utils      # qemu-io and qemu-img: NBD clients the export is tested with
  openssl         # the test CA and certificates for the NBD TLS listener
  resource-agents # OCF agents (ocf:heartbeat:Dummy, IPaddr2) the ocf resource kind is tested with
  nix-bin         # nix-instantiate: the Nix files parse, the module's TOML renderer (tests/nix_files.rs)
  pyflakes3       # the NixOS VM tests' Python scripts checked (tests/nix_files.rs)
  polkitd         # who else than root may act over D-Bus (tests/packaging_netns.rs)
  faketime        # libfaketime: a daemon's wall clock stepped alone (tests/membership_netns.rs)
  curl            # scrapes the metrics endpoint (tests/replication_netns.rs)
  python3-prometheus-client # the Prometheus project's parser of the metrics text
  prometheus      # promtool check metrics: the metric names follow the conventions
  corosync        # the membership benchmark's peer (benches/overhead.rs)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Nix makes its state (profiles, gcroots) on first use; two tests making
# it at once race ("creating symlink ... File exists"). Made here, once.
NIX_CONFIG='build-users-group =' nix-instantiate --eval --expr 1 >/dev/null

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is missing; install Rust with rustup first" >&2
  exit 1
fi
for c in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
    rustup component add "$c"
  fi
done
