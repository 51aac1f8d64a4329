# One machine of the VM tests' cluster (cluster.nix): `number` 1 and 2 are
# the data nodes, 3 the witness. Two VLANs: 1 is the crossover (eth1), 2
# the public network (eth2) that the client shares. Data nodes get a
# second, empty disk, /dev/vdb (virtio, as nixpkgs' drbd test), for the
# replica r0.
#
# Boots in the full cluster config (the group web included). The
# specialisation `prepare` is the same config without the group, for the
# first steps (metadata, the initial sync, the filesystem), before the
# disk is handed to the cluster.
number:
{ lib, pkgs, ... }:
let
  data = number != 3;
in
{
  imports = [ ../nix/module.nix ];

  virtualisation.vlans = [
    1
    2
  ];
  virtualisation.memorySize = 1024;
  virtualisation.emptyDiskImages = lib.optional data 512;

  networking.useDHCP = false;
  # /etc/hosts of every machine names this one by its public address.
  networking.primaryIPAddress = lib.mkForce "198.51.100.${toString number}";
  networking.interfaces.eth1.ipv4.addresses = lib.mkForce [
    {
      address = "203.0.113.${toString number}";
      prefixLength = 24;
    }
  ];
  networking.interfaces.eth2.ipv4.addresses = lib.mkForce [
    {
      address = "198.51.100.${toString number}";
      prefixLength = 24;
    }
  ];
  networking.firewall.allowedTCPPorts = lib.optional data 80;

  environment.systemPackages = [
    pkgs.e2fsprogs
    pkgs.jq
  ];

  services.duet = {
    enable = true;
    package = pkgs.callPackage ../nix/package.nix { };
    keyFile = "/etc/duet/duet.key";
    openFirewall = true;
    settings = import ./cluster.nix;
  };
  # At the first boot there is no key yet: the test makes it, as an
  # administrator would, and starts duetd by hand. After a crash the node
  # boots with the key and duetd starts on its own.
  systemd.services.duetd.unitConfig.ConditionPathExists = "/etc/duet/duet.key";

  # The web server of the group web, serving from the replicated disk.
  services.httpd = lib.mkIf data {
    enable = true;
    adminAddr = "root@localhost";
    virtualHosts.localhost.documentRoot = "/mnt/shared/www";
  };

  specialisation.prepare.configuration = {
    services.duet.settings.group = lib.mkForce [ ];
    services.httpd.enable = lib.mkForce false;
  };
}
