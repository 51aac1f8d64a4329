# duetd and duetctl, built from this repository with the committed Cargo.lock.
# Used by flake.nix and nix/module.nix (services.duet.package).
{
  lib,
  rustPlatform,
  installShellFiles,
}:

rustPlatform.buildRustPackage {
  pname = "duet";
  version = "0.1.0";

  # The sources without build output (a local target/ would be copied).
  src = lib.cleanSourceWith {
    src = lib.cleanSource ../.;
    filter = path: type: !(type == "directory" && baseNameOf path == "target");
  };
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ installShellFiles ];

  # The lab tests need root, network namespaces and a D-Bus daemon.
  checkFlags = [
    "--skip=lab"
  ];
  cargoTestFlags = [ "--lib" ];

  postInstall = ''
    install -Dm644 systemd/duetd.service -t $out/lib/systemd/system
    substituteInPlace $out/lib/systemd/system/duetd.service \
      --replace-fail /usr/bin/duetd $out/bin/duetd
    install -Dm644 dbus/org.duet.Duet1.conf -t $out/share/dbus-1/system.d
    install -Dm644 dbus/org.duet.Duet1.*.xml -t $out/share/dbus-1/interfaces
    installShellCompletion --cmd duetctl \
      --bash <($out/bin/duetctl completions bash) \
      --zsh <($out/bin/duetctl completions zsh) \
      --fish <($out/bin/duetctl completions fish)
    $out/bin/duetctl man > duetctl.1
    installManPage duetctl.1
  '';

  meta = {
    description = "High-availability cluster for two and more nodes: heartbeat membership, replication, failover";
    platforms = lib.platforms.linux;
    mainProgram = "duetctl";
  };
}
