# The administrator's scenario (SCENARIO.md) on two NixOS VMs with a
# witness and a client, through the kernel's NBD client: metadata, the
# initial sync, a filesystem with a web page on the floating address, a
# crash of the active node (the client still gets the page), the crashed
# node back and resynced, and failback by standby. The same steps as the
# lab's `duet-lab demo` and tests/groups_lab.rs.
{ ... }:
{
  name = "duet-two-node";

  nodes = import ./machines.nix;

  testScript =
    builtins.readFile ./common.py
    + ''
      prepare_cluster()

      with subtest("node1 crashes: node2 takes web over, the client gets the page"):
          t = time.monotonic()
          node1.crash()
          until(node2, '.nodes[] | select(.name == "node1") | .state == "dead"', "node2 to see node1 dead", timeout=30)
          detected = time.monotonic() - t
          page_from_client(timeout=60)
          until(node2, '.groups[0].node == "node2" and .groups[0].state == "running"', "web on node2")
          print(f"failover: node1 declared dead after {detected:.2f} s, page served from node2 {time.monotonic() - t:.2f} s after the crash")
          node2.succeed("mountpoint -q /mnt/shared", f"ip -br addr show eth2 | grep -q ' {ADDRESS}/'")
          node2.succeed("echo 'written on node2' > /mnt/shared/www/node2.html")

      with subtest("node1 boots again and resyncs what changed; web stays on node2"):
          node1.start()
          node1.wait_for_unit("duetd.service")
          until(node1, '.replicas[0].disk == "uptodate" and .replicas[0].replication == "established"', "node1 resynced", timeout=120)
          until(node1, '.groups[0].node == "node2"', "node1 to see web on node2")
          watch_one_holder(5)

      with subtest("failback by standby: web moves to node1 in order, never on both"):
          node2.succeed("duetctl standby node2")
          t = time.monotonic()
          wait_one_holder(60, on="node1")
          until(node1, '.groups[0].node == "node1" and .groups[0].state == "running"', "web on node1")
          page_from_client()
          client.succeed(f"curl -sf http://{ADDRESS}/node2.html | grep -q 'written on node2'")
          print(f"standby: web on node1 after {time.monotonic() - t:.2f} s")
          node2.succeed("duetctl online node2")
          until(node2, '.standby == false', "node2 online")

      with subtest("the copies are the same"):
          until(node2, '.replicas[0].disk == "uptodate" and .replicas[0].replication == "established"', "r0 in sync")
          out = node1.succeed("duetctl verify r0")
          assert "verify finished: 0 bytes out of sync" in out, out
    '';
}
