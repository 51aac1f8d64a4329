# The client of the VM tests: on the public VLAN only (its eth1), reads the
# page on the floating address.
{ lib, pkgs, ... }:
{
  virtualisation.vlans = [ 2 ];
  networking.useDHCP = false;
  networking.primaryIPAddress = lib.mkForce "198.51.100.20";
  networking.interfaces.eth1.ipv4.addresses = lib.mkForce [
    {
      address = "198.51.100.20";
      prefixLength = 24;
    }
  ];
  environment.systemPackages = [ pkgs.curl ];
}
