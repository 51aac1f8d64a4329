#!/usr/bin/env bash
# The two-node demo in network namespaces: two duetd nodes on a crossover
# and a public link, each with its own D-Bus system bus. It shows them find
# each other, detects a crash of node2 within deadtime, and sees node2 come
# back as a new incarnation. Timings are printed. Everything it makes is
# removed on exit, also on failure or Ctrl-C.
#
# (The lab issue replaces namespaces with booted systemd containers, a
# replicated disk, a mount, a floating IP and a web page.)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=${DUET_BIN:-$top/target/release}
duetd=$bin/duetd
duetctl=$bin/duetctl
[ -x "$duetd" ] && [ -x "$duetctl" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "the demo needs root (network namespaces)" >&2; exit 1; }

tag="duet-demo-$$"
work=$(mktemp -d "/tmp/$tag.XXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in 1 2; do ip netns del "$tag-$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

ms() { date +%s%3N; }

# poll TIMEOUT_MS CMD...: run CMD every 20 ms until it succeeds.
poll() {
  local limit=$1 start; shift
  start=$(ms)
  until "$@" >/dev/null 2>&1; do
    if [ $(( $(ms) - start )) -ge "$limit" ]; then return 1; fi
    sleep 0.02
  done
}

status() { DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/bus$1" "$duetctl" status "${@:2}"; }
state_is() { status "$1" --json | grep -A2 "\"name\": \"$2\"" | grep -q "\"state\": \"$3\""; }
incarnation_of() { status 1 --json | grep -A3 "\"name\": \"$1\"" | grep -o '"incarnation": [0-9]*' | grep -o '[0-9]*$'; }
quorate() { status "$1" --json | grep -q '"quorate": true'; }

echo "== Setting up two nodes in $work"
for n in 1 2; do
  ip netns add "$tag-$n"
  ip -n "$tag-$n" link set lo up
done
ip link add eth1 netns "$tag-1" type veth peer name eth1 netns "$tag-2"
ip link add eth0 netns "$tag-1" type veth peer name eth0 netns "$tag-2"
for n in 1 2; do
  ip -n "$tag-$n" addr add "203.0.113.$n/24" dev eth1
  ip -n "$tag-$n" addr add "198.51.100.$n/24" dev eth0
  ip -n "$tag-$n" link set eth1 up
  ip -n "$tag-$n" link set eth0 up
done
"$duetctl" keygen "$work/duet.key" >/dev/null
sed -e 's/^initdead = .*/initdead = "5s"/' -e '/^\[ping\]/,$d' \
  "$top/examples/two-node.toml" > "$work/duet.toml"
"$duetctl" check-config "$work/duet.toml"

for n in 1 2; do
  cat > "$work/bus$n.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=$work/bus$n</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/></policy>
</busconfig>
CONF
  dbus-daemon --config-file="$work/bus$n.conf" --nofork 2>/dev/null &
  pids+=($!)
  poll 5000 test -S "$work/bus$n"
done

start_node() {
  ip netns exec "$tag-$1" env DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/bus$1" \
    "$duetd" --config "$work/duet.toml" --node "node$1" 2>>"$work/node$1.log" &
  pids+=($!)
  node_pid[$1]=$!
}
declare -a node_pid

echo
echo "== Starting node1 and node2 (keepalive 200ms, warntime 600ms, deadtime 1s)"
t0=$(ms)
start_node 1
start_node 2
poll 10000 state_is 1 node2 up || { echo "node2 never came up"; exit 1; }
poll 10000 state_is 2 node1 up || { echo "node1 never came up"; exit 1; }
echo "both nodes up after $(( $(ms) - t0 )) ms"
status 1

echo
echo "== Crashing node2 (SIGKILL)"
inc1=$(incarnation_of node2)
t0=$(ms)
kill -9 "${node_pid[2]}"
poll 5000 state_is 1 node2 dead || { echo "node2 never seen dead"; exit 1; }
detect=$(( $(ms) - t0 ))
echo "node1 saw node2 dead after $detect ms (deadtime 1000 ms; the classic Heartbeat default is 10000 ms)"
quorate 1 && echo "node1: still quorate" || echo "node1: quorum lost (1 of 2 votes)"
status 1

echo
echo "== Restarting node2"
t0=$(ms)
start_node 2
poll 10000 state_is 1 node2 up || { echo "node2 never came back"; exit 1; }
inc2=$(incarnation_of node2)
echo "node2 back after $(( $(ms) - t0 )) ms as a new incarnation: $inc1 -> $inc2"
status 1

echo
echo "== node1's log"
sed -e 's/^[^ ]* //' "$work/node1.log" | tail -n 20
echo
echo "demo ok: detection $detect ms"
