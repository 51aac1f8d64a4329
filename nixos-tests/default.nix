# The VM tests, outside the flake too:
#   nix-build nixos-tests -A two-node
#   nix-build nixos-tests -A split-brain
{
  pkgs ? import <nixpkgs> { },
}:
{
  two-node = pkgs.testers.runNixOSTest ./two-node.nix;
  split-brain = pkgs.testers.runNixOSTest ./split-brain.nix;
}
