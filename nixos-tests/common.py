# The first steps of every duet VM test (docs/lab.md, SCENARIO.md): the
# key, the metadata, the initial sync, the filesystem with its page, then
# the disk handed to the cluster. The test script that includes this file
# names the machines node1, node2, witness and client.
import json
import time

ADDRESS = "198.51.100.10"
PAGE = "hello from the duet VM test"
DATA = (node1, node2)
MEMBERS = (node1, node2, witness)
PREPARE = "/run/current-system/specialisation/prepare/bin/switch-to-configuration test"
FULL = "/run/booted-system/bin/switch-to-configuration test"


def status(m):
    return json.loads(m.succeed("duetctl status --json"))


def until(m, jq, what, timeout=60):
    """Waits until `duetctl status --json` on m satisfies the jq filter."""
    with m.nested(f"waiting for {what}"):
        m.wait_until_succeeds(f"duetctl status --json | jq -e '{jq}'", timeout=timeout)


def holders():
    """The data nodes that have the floating address, and those that have
    the mount."""
    ip = [m.name for m in DATA if m.execute(f"ip -br addr show eth2 | grep -q ' {ADDRESS}/'")[0] == 0]
    mount = [m.name for m in DATA if m.execute("mountpoint -q /mnt/shared")[0] == 0]
    return ip, mount


def watch_one_holder(seconds):
    """Looks at both data nodes for `seconds`: never both hold web.
    Returns what the last look saw."""
    end = time.monotonic() + seconds
    looks = 0
    while True:
        ip, mount = holders()
        looks += 1
        assert len(ip) <= 1 and len(mount) <= 1, f"web on both nodes: ip {ip}, mount {mount}"
        if time.monotonic() > end:
            print(f"{looks} looks in {seconds} s: ip on {ip}, mount on {mount}")
            return ip, mount
        time.sleep(0.2)


def wait_one_holder(timeout, on=None):
    """Waits until exactly one data node (`on`, if named) has both the
    address and the mount, asserting at every look that never both do.
    Returns it."""
    end = time.monotonic() + timeout
    while True:
        ip, mount = holders()
        assert len(ip) <= 1 and len(mount) <= 1, f"web on both nodes: ip {ip}, mount {mount}"
        if len(ip) == 1 and ip == mount and on in (None, ip[0]):
            return ip[0]
        assert time.monotonic() < end, f"web not on one node within {timeout} s: ip {ip}, mount {mount}"
        time.sleep(0.2)


def page_from_client(timeout=60):
    client.wait_until_succeeds(
        f"curl -sf --max-time 2 http://{ADDRESS}/ | grep -q '{PAGE}'", timeout=timeout
    )


def prepare_cluster():
    start_all()
    for m in MEMBERS:
        m.wait_for_unit("multi-user.target")
        m.succeed(PREPARE)

    with subtest("the key, made once and copied to every node"):
        node1.succeed("duetctl keygen /etc/duet/duet.key")
        key = node1.succeed("base64 -w0 /etc/duet/duet.key").strip()
        for m in (node2, witness):
            m.succeed(f"(umask 077; echo {key} | base64 -d > /etc/duet/duet.key)")

    with subtest("metadata on /dev/vdb of both data nodes"):
        for m in DATA:
            m.succeed("duetctl check-config /etc/duet/duet.toml")
            m.succeed("duetctl create-md r0")
        for m in MEMBERS:
            m.succeed("systemctl start duetd.service")
        for m in MEMBERS:
            m.wait_for_unit("duetd.service")
        until(node1, '[.nodes[] | .state] | all(. == "up")', "every node up")
        until(node1, '.replicas[0].connection == "connected"', "r0 connected")

    with subtest("node1 the good copy: the initial full sync"):
        t = time.monotonic()
        node1.succeed("duetctl primary r0 --force")
        until(node2, '.replicas[0].disk == "uptodate"', "the initial sync", timeout=300)
        print(f"initial sync done in {time.monotonic() - t:.1f} s")

    with subtest("the filesystem and the page, then r0 back to Secondary"):
        node1.succeed(
            "mkfs.ext4 -q -F /dev/duet/r0",
            "mkdir -p /mnt/shared && mount /dev/duet/r0 /mnt/shared",
            f"mkdir -p /mnt/shared/www && echo '{PAGE}' > /mnt/shared/www/index.html",
            "umount /mnt/shared",
            "duetctl secondary r0",
        )
        # Node2 must never mount it while node1 is Primary: it has no device.
        node2.fail("test -e /dev/duet/r0")

    with subtest("the disk handed to the cluster: the group web"):
        for m in MEMBERS:
            m.succeed(FULL)
        for m in MEMBERS:
            m.succeed("systemctl restart duetd.service")
        t = time.monotonic()
        until(node1, '.groups[0].node == "node1" and .groups[0].state == "running"', "web on node1")
        page_from_client()
        print(f"web running and the page served {time.monotonic() - t:.1f} s after duetd restarted")
        until(node2, '.replicas[0].disk == "uptodate" and .replicas[0].replication == "established"', "r0 in sync")
