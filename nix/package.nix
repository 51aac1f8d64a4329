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

  # What cargo needs, and the files installed: editing docs, tests or the
  # VM tests does not rebuild the package.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../lab
      ../benches
      ../systemd
      ../dbus
      ../polkit
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ installShellFiles ];

  # The project's CI runs every test (`make test`); many need root,
  # network namespaces, /proc and a D-Bus daemon, which the build sandbox
  # does not give.
  doCheck = false;

  postInstall = ''
    install -Dm644 systemd/duetd.service -t $out/lib/systemd/system
    install -Dm644 systemd/duet.catalog -t $out/lib/systemd/catalog
    substituteInPlace $out/lib/systemd/system/duetd.service \
      --replace-fail /usr/bin/duetd $out/bin/duetd
    install -Dm644 dbus/org.duet.Duet1.conf -t $out/share/dbus-1/system.d
    install -Dm644 dbus/org.duet.Duet1.*.xml -t $out/share/dbus-1/interfaces
    install -Dm644 polkit/org.duet.Duet1.policy -t $out/share/polkit-1/actions
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
