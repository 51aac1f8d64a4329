{
  description = "duet: a high-availability cluster for two and more nodes (membership, block replication, failover)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        duet = pkgs.callPackage ./nix/package.nix { };
        default = duet;
      });

      overlays.default = final: _prev: {
        duet = final.callPackage ./nix/package.nix { };
      };

      # The module, with this flake's package as its default.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.duet.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.duet;
        };

      # The VM tests (nixos-tests/): `nix flake check`, or one of them with
      # `nix build .#checks.x86_64-linux.two-node -L`.
      checks = forAllSystems (pkgs: import ./nixos-tests { inherit pkgs; });
    };
}
