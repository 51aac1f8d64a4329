# The cluster of the VM tests, as services.duet.settings: the lab's
# two-node web cluster (docs/lab.md) with a witness. Plain data, no
# nixpkgs: tests/nix_files.rs renders it with nix/to-toml.nix and checks
# the result with `duetctl check-config`.
#
# eth1 is the crossover (VLAN 1), eth2 the public network (VLAN 2), where
# the client is. Addresses are documentation ranges only.
{
  cluster = {
    name = "vmtest";
    auto-failback = false;
  };

  timings = {
    keepalive = "200ms";
    warntime = "600ms";
    deadtime = "1s";
    initdead = "10s";
  };

  link = [
    {
      name = "crossover";
      interface = "eth1";
      mode = "ucast";
    }
    {
      name = "public";
      interface = "eth2";
      mode = "ucast";
    }
  ];

  node = [
    {
      name = "node1";
      address = {
        crossover = "203.0.113.1";
        public = "198.51.100.1";
      };
    }
    {
      name = "node2";
      address = {
        crossover = "203.0.113.2";
        public = "198.51.100.2";
      };
    }
    {
      name = "witness";
      witness = true;
      address = {
        crossover = "203.0.113.3";
        public = "198.51.100.3";
      };
    }
  ];

  replica = [
    {
      name = "r0";
      # The VMs' second disk (virtio).
      disk = {
        node1 = "/dev/vdb";
        node2 = "/dev/vdb";
      };
      address = {
        node1 = "203.0.113.1";
        node2 = "203.0.113.2";
      };
      protocol = "C";
      after-sb-0pri = "discard-younger-primary";
      after-sb-1pri = "consensus";
      after-sb-2pri = "disconnect";
    }
  ];

  group = [
    {
      name = "web";
      preferred = "node1";
      resource = [
        { replica = "r0"; }
        {
          mount = "/mnt/shared";
          device = "r0";
          fstype = "ext4";
        }
        {
          ip = "198.51.100.10/24";
          interface = "eth2";
        }
        { unit = "httpd.service"; }
      ];
    }
  ];
}
