# Never two primaries, on NixOS VMs (the lab's
# lab_with_a_witness_a_cut_between_the_data_nodes_leaves_web_on_one_side
# and the witness tests of tests/groups_witness_netns.rs): both links
# between the data nodes cut while each still reaches the witness, and
# exactly one side keeps web, never both; then the same cut without the
# witness, and neither side runs web (duet says why: no quorum).
{ ... }:
{
  name = "duet-split-brain";

  nodes = import ./machines.nix;

  testScript =
    builtins.readFile ./common.py
    + ''
      PEER = {"node1": "2", "node2": "1"}


      def cut(m):
          """m sends nothing to the other data node on either link; the
          witness and the client it still reaches."""
          n = PEER[m.name]
          m.succeed(f"ip route add blackhole 203.0.113.{n}/32", f"ip route add blackhole 198.51.100.{n}/32")


      def heal(m):
          n = PEER[m.name]
          m.succeed(f"ip route del blackhole 203.0.113.{n}/32", f"ip route del blackhole 198.51.100.{n}/32")


      prepare_cluster()

      with subtest("the data nodes cut apart, both reach the witness: web on exactly one side"):
          for m in DATA:
              cut(m)
          until(node1, '.nodes[] | select(.name == "node2") | .state == "dead"', "node1 to lose node2", timeout=30)
          until(node2, '.nodes[] | select(.name == "node1") | .state == "dead"', "node2 to lose node1", timeout=30)
          holder = wait_one_holder(60)
          ip, mount = watch_one_holder(10)
          assert ip == mount == [holder], f"web left {holder}: ip {ip}, mount {mount}"
          page_from_client(timeout=30)
          quorate = [m.name for m in DATA if status(m)["quorate"]]
          assert quorate == [holder], f"quorate: {quorate}, web on {holder}"
          print(f"cut with the witness: web kept on {holder}, quorate only there")

      with subtest("healed: both in sync again, web where it was"):
          for m in DATA:
              heal(m)
          for m in DATA:
              until(m, '[.nodes[] | .state] | all(. == "up")', "every node up again", timeout=60)
              until(m, '.replicas[0].disk == "uptodate" and .replicas[0].replication == "established"', "r0 in sync", timeout=120)
          until(node1, f'.groups[0].node == "{holder}" and .groups[0].running', "web still on the holder")

      with subtest("no witness, the data nodes cut apart: neither side runs web, and says why"):
          witness.crash()
          for m in DATA:
              until(m, '.nodes[] | select(.name == "witness") | .state == "dead"', "the witness dead", timeout=30)
          for m in DATA:
              cut(m)
          for m in DATA:
              until(m, '.quorate == false and (.groups[0].running | not)', "web stopped for want of quorum", timeout=30)
          ip, mount = watch_one_holder(10)
          assert ip == [] and mount == [], f"web runs without quorum: ip {ip}, mount {mount}"
          for m in DATA:
              s = status(m)
              assert s["quorate"] is False, s
              assert not any(r["role"] == "primary" for r in s["replicas"]), s["replicas"]
              why = m.succeed("duetctl status")
              assert "NOT quorate" in why, why
          client.fail(f"curl -sf --max-time 2 http://{ADDRESS}/")
    '';
}
