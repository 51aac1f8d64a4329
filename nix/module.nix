# services.duet: the duet cluster daemon on a NixOS node.
#
# The whole cluster is described once in `settings` (the TOML config of
# docs/config.md, as Nix), and the same value goes on every node; each
# node finds itself by its host name (or `nodeName`). Key files stay out
# of the Nix store: they are named by path and handed to duetd as systemd
# credentials.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    any
    attrNames
    concatMap
    elem
    filter
    hasPrefix
    hasSuffix
    imap0
    length
    literalExpression
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    mkPackageOption
    optional
    removeSuffix
    types
    unique
    ;

  cfg = config.services.duet;
  settingsFormat = pkgs.formats.toml { };
  toTOML = import ./to-toml.nix;

  # Where systemd puts the credentials of duetd.service.
  credentialDir = "/run/credentials/duetd.service";

  localName = if cfg.nodeName != null then cfg.nodeName else config.networking.hostName;
  nodes = cfg.settings.node;
  nodeNames = map (n: n.name) nodes;
  localNode = lib.findFirst (n: n.name == localName) null nodes;
  isWitness = localNode != null && localNode.witness or false;
  links = cfg.settings.link;
  replicas = cfg.settings.replica;
  groups = cfg.settings.group;
  resources = concatMap (g: g.resource or [ ]) groups;

  # The replication port of each replica, as duetd computes the default.
  replicaPort = i: r: if r.port or null != null then r.port else 7788 + i;
  replicaPorts = imap0 replicaPort replicas;

  # Ports an NBD listener of this node takes ("ADDR:PORT", "[V6]:PORT" or
  # an address alone for 10809).
  listenPort =
    text:
    let
      m = builtins.match ".*:([0-9]+)" text;
    in
    if m == null || hasSuffix "]" text then 10809 else lib.toInt (builtins.head m);
  nbdPorts = concatMap (
    r: optional (r ? nbd-listen && r.nbd-listen ? ${localName}) (listenPort r.nbd-listen.${localName})
  ) replicas;

  # The interface of the link that carries `address` for this node, or
  # null (the address is on no link of the config).
  linkInterfaceOf =
    address:
    let
      ls = filter (l: (localNode.address or { }).${l.name} or null == address) links;
    in
    if ls == [ ] then null else (builtins.head ls).interface;

  # Numbered in the whole list first: the default port counts every
  # replica, not only this node's.
  replicaFirewall = filter (x: x.here) (
    imap0 (i: r: {
      here = (r.disk or { }) ? ${localName};
      interface = linkInterfaceOf ((r.address or { }).${localName} or null);
      port = replicaPort i r;
    }) replicas
  );

  # Files that must not be world-readable in the store.
  secretPaths =
    [ (cfg.settings.cluster.key-file or null) ]
    ++ map (r: r.key-file or null) replicas
    ++ map (r: (r.nbd-tls or { }).key or null) replicas;
  inStore = p: p != null && hasPrefix builtins.storeDir (toString p);

  unitResources = filter (r: r ? unit) resources;
  # Units duet starts and stops, by the NixOS option set they live in.
  unitKinds = {
    service = "services";
    socket = "sockets";
    timer = "timers";
    target = "targets";
    path = "paths";
  };
  unitKind = name: lib.last (lib.splitString "." name);
  # (None on the witness, which runs no group.)
  managedUnits =
    kind:
    lib.optionals (!isWitness) (
      map (r: removeSuffix ".${kind}" r.unit) (filter (r: unitKind r.unit == kind) unitResources)
    );

  mounts = filter (r: r ? mount) resources;
  mountPoints = map (r: r.mount) mounts;
  floatingIps = filter (r: r ? ip) resources;
  staticAddresses =
    iface:
    let
      i = config.networking.interfaces.${iface} or null;
    in
    if i == null then
      [ ]
    else
      map (a: "${a.address}/${toString a.prefixLength}") ((i.ipv4.addresses or [ ]) ++ (i.ipv6.addresses or [ ]));

  configFile = pkgs.writeTextFile {
    name = "duet.toml";
    text = toTOML cfg.settings;
    checkPhase = lib.optionalString cfg.checkConfig ''
      ${lib.getExe' cfg.package "duetctl"} check-config "$target"
    '';
  };

  # A section of `settings` with typed keys where mistakes are likely,
  # and any other key of docs/config.md accepted as it is.
  section =
    options:
    types.submodule {
      freeformType = settingsFormat.type;
      inherit options;
    };
  optionalSetting = type: description: mkOption {
    type = types.nullOr type;
    default = null;
    inherit description;
  };
in
{
  options.services.duet = {
    enable = mkEnableOption "duet, the high-availability cluster daemon (membership, replicated disks, failover of resource groups)";

    package = mkPackageOption pkgs "duet" { };

    nodeName = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "node1";
      description = ''
        The `[[node]]` this machine is in `settings` (duetd's `--node`).
        By default the host name (`networking.hostName`), which duetd
        also matches in its short form.
      '';
    };

    keyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/etc/duet/duet.key";
      description = ''
        Path on the node of the cluster key that signs every heartbeat
        (and, unless a replica names its own, authenticates the
        replication links). Create it with `duetctl keygen FILE` and copy
        it to every node; it must not be in the Nix store (anything there
        is world-readable). duetd receives it as the systemd credential
        `cluster.key`, and `settings.cluster.key-file` defaults to where
        that appears (`${credentialDir}/cluster.key`).
      '';
    };

    credentials = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        "r0.key" = "/etc/duet/r0.key";
      };
      description = ''
        More files for duetd as systemd credentials (`LoadCredential=`),
        from a name to a path on the node: for example a replica's own
        `key-file` or an NBD TLS key. Each appears to duetd as
        `${credentialDir}/NAME`: name that path in `settings`.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the heartbeat ports (UDP, on each link's interface), the
        replication ports of this node's replicas (TCP, on the interface of
        the link that carries its replication address, or on every
        interface when no link does) and the NBD listeners' ports (TCP).
      '';
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Check the generated config with `duetctl check-config` when it is
        built, so that a mistake fails the build instead of the daemon.
      '';
    };

    settings = mkOption {
      description = ''
        The cluster config, as in docs/config.md: the same value on every
        node. Keys are those of the TOML file (`key-file`,
        `auto-failback`, ...); `[[node]]`, `[[link]]`, `[[replica]]` and
        `[[group]]` are lists of attribute sets. Keys without an option
        here are passed through as they are.
      '';
      default = { };
      example = literalExpression ''
        {
          cluster.name = "web";
          timings = { keepalive = "200ms"; deadtime = "1s"; };
          link = [
            { name = "crossover"; interface = "eth1"; mode = "ucast"; }
            { name = "public"; interface = "eth0"; mode = "ucast"; }
          ];
          node = [
            { name = "node1"; address = { crossover = "203.0.113.1"; public = "198.51.100.1"; }; }
            { name = "node2"; address = { crossover = "203.0.113.2"; public = "198.51.100.2"; }; }
          ];
        }
      '';
      type = section {
        cluster = mkOption {
          description = "`[cluster]`: the cluster's name, key and defaults.";
          default = { };
          type = section {
            name = mkOption {
              type = types.strMatching "[A-Za-z0-9._-]{1,64}";
              example = "web";
              description = "The cluster's name, the same on every node: packets of another cluster are ignored.";
            };
            key-file = mkOption {
              type = types.str;
              default = "${credentialDir}/cluster.key";
              defaultText = literalExpression ''"${credentialDir}/cluster.key"'';
              description = ''
                Path of the shared key as duetd sees it. The default is the
                credential made from `services.duet.keyFile`.
              '';
            };
          };
        };

        timings = mkOption {
          description = "`[timings]`: keepalive, warntime, deadtime and initdead, as duration strings (`\"200ms\"`, `\"1s\"`).";
          default = { };
          type = section {
            keepalive = optionalSetting types.str "How often a heartbeat goes out on each link (default `\"200ms\"`).";
            warntime = optionalSetting types.str "Silence after which a peer is reported late (default `\"600ms\"`).";
            deadtime = optionalSetting types.str "Silence after which a peer is declared dead (default `\"1s\"`).";
            initdead = optionalSetting types.str "Grace at start-up for a peer never heard from (default `\"10s\"`).";
          };
        };

        link = mkOption {
          description = "`[[link]]`: the networks heartbeats travel on, in the same order on every node.";
          default = [ ];
          type = types.listOf (section {
            name = mkOption {
              type = types.strMatching "[A-Za-z0-9_-]{1,32}";
              description = "The link's name, a key of the nodes' `address` tables.";
            };
            interface = mkOption {
              type = types.str;
              example = "eth1";
              description = "The network interface heartbeats go out on.";
            };
            mode = mkOption {
              type = types.enum [
                "ucast"
                "bcast"
                "mcast"
              ];
              description = "`ucast` to each peer's address, `bcast` IPv4 broadcast, `mcast` a multicast group (`group`).";
            };
            port = mkOption {
              type = types.port;
              default = 694;
              description = "The UDP port heartbeats use on this link.";
            };
          });
        };

        node = mkOption {
          description = "`[[node]]`: every machine of the cluster, the witness included.";
          default = [ ];
          type = types.listOf (section {
            name = mkOption {
              type = types.strMatching "[A-Za-z0-9.-]{1,64}";
              description = "The node's name, usually its host name.";
            };
            address = mkOption {
              type = types.attrsOf types.str;
              default = { };
              example = {
                crossover = "203.0.113.1";
                public = "198.51.100.1";
              };
              description = "The node's address on each link, by link name.";
            };
            votes = mkOption {
              type = types.ints.unsigned;
              default = 1;
              description = "The node's weight in the quorum.";
            };
            witness = mkOption {
              type = types.bool;
              default = false;
              description = "This node is the cluster's witness: membership and its vote only, no data, no resources (docs/quorum.md).";
            };
          });
        };

        replica = mkOption {
          description = ''
            `[[replica]]`: disks kept on two nodes (docs/config.md,
            "Replicas"). Typed here: the keys that differ per node; every
            other key (`protocol`, `after-sb-0pri`, `[replica.resync]`, ...)
            as in the TOML file.
          '';
          default = [ ];
          type = types.listOf (section {
            name = mkOption {
              type = types.strMatching "[A-Za-z0-9_-]{1,32}";
              description = "The replica's name (and NBD export name).";
            };
            disk = mkOption {
              type = types.attrsOf types.str;
              example = {
                node1 = "/dev/sdb";
                node2 = "/dev/sdb";
              };
              description = "The backing disk on each node that holds a copy, by node name.";
            };
            address = mkOption {
              type = types.attrsOf types.str;
              description = "The replication address of each node with a disk, by node name.";
            };
            port = optionalSetting types.port "The replication link's TCP port; by default 7788 plus the replica's index.";
            protocol = mkOption {
              type = types.enum [
                "A"
                "B"
                "C"
              ];
              default = "C";
              description = "When a write counts as done: `A` local disk, `B` received by the peer, `C` on both disks.";
            };
          });
        };

        group = mkOption {
          description = ''
            `[[group]]`: resource groups with their nodes and an ordered
            `resource` list (docs/config.md, "Resource groups"). Units named
            by a `unit` resource are left for duet to start: this module
            removes them from boot targets.
          '';
          default = [ ];
          type = types.listOf (section {
            name = mkOption {
              type = types.strMatching "[A-Za-z0-9_-]{1,32}";
              description = "The group's name.";
            };
            resource = mkOption {
              type = types.listOf settingsFormat.type;
              default = [ ];
              example = literalExpression ''
                [
                  { replica = "r0"; }
                  { mount = "/mnt/shared"; device = "r0"; fstype = "ext4"; }
                  { ip = "198.51.100.10/24"; interface = "eth0"; }
                  { unit = "httpd.service"; }
                ]
              '';
              description = "The group's resources, started in this order and stopped in reverse.";
            };
          });
        };
      };
    };
  };

  config = mkIf cfg.enable {
    assertions =
      [
        {
          assertion = elem localName nodeNames;
          message = ''
            services.duet: this machine is "${localName}", which is not a node of services.duet.settings.node (${lib.concatStringsSep ", " nodeNames}); set services.duet.nodeName or networking.hostName.
          '';
        }
        {
          assertion = length (unique nodeNames) == length nodeNames;
          message = "services.duet: two entries of settings.node have the same name.";
        }
        {
          assertion = length (unique replicaPorts) == length replicaPorts;
          message = "services.duet: two replicas use the same replication port (${lib.concatMapStringsSep ", " toString replicaPorts}); give one another `port`.";
        }
        {
          assertion = !(any (p: elem p replicaPorts) nbdPorts);
          message = "services.duet: an NBD listener (nbd-listen) uses the port of a replication link.";
        }
        {
          assertion = cfg.keyFile != null || cfg.settings.cluster.key-file != "${credentialDir}/cluster.key";
          message = "services.duet: set services.duet.keyFile (a path on the node, made with `duetctl keygen`), or settings.cluster.key-file.";
        }
        {
          assertion = !(inStore cfg.keyFile) && !(any (p: inStore p) (lib.attrValues cfg.credentials));
          message = "services.duet: keyFile and credentials must be paths on the node, not in the Nix store, where every user can read them.";
        }
        {
          assertion = !(any inStore secretPaths);
          message = "services.duet: a key-file or nbd-tls key in settings is in the Nix store, where every user can read it; use services.duet.keyFile or services.duet.credentials.";
        }
      ]
      ++ map (m: {
        assertion = !(config.fileSystems ? ${m});
        message = "services.duet: ${m} is mounted by a group of duet and must not be in fileSystems as well (systemd would mount it at boot, on whichever node).";
      }) mountPoints
      ++ map (r: {
        assertion = !(elem r.ip (staticAddresses r.interface));
        message = "services.duet: the floating address ${r.ip} is also set statically on ${r.interface} in networking.interfaces; duet alone adds it, on the node that runs its group.";
      }) floatingIps
      ++ map (r: {
        assertion = elem (unitKind r.unit) (attrNames unitKinds ++ [
          "mount"
          "automount"
          "swap"
        ]);
        message = "services.duet: resource unit \"${r.unit}\" needs its type (\"${r.unit}.service\", say).";
      }) unitResources;

    warnings = optional (cfg.openFirewall && any (r: r.interface == null) replicaFirewall) "services.duet: a replica's replication address is on no link of the config; its port is opened on every interface.";

    environment.systemPackages = [ cfg.package ];
    environment.etc."duet/duet.toml".source = configFile;

    services.dbus.packages = [ cfg.package ];

    # The kernel's NBD client shows a replica as a block device on the
    # Primary; the witness holds no data.
    boot.kernelModules = optional (replicas != [ ] && !isWitness) "nbd";
    # The tools (fsck.ext4, ...) and kernel modules of the filesystems that
    # groups mount: NixOS adds them only for filesystems it mounts itself.
    boot.supportedFilesystems = mkIf (!isWitness) (unique (map (r: r.fstype) (filter (r: r ? fstype) mounts)));

    systemd = mkMerge (
      [
        {
          packages = [ cfg.package ];
          services = {
            duetd = {
              wantedBy = [ "multi-user.target" ];
              # Restarting duetd moves every group it runs to another node, so a
              # rebuild does not do it: restart node by node when the config or
              # the package changed (`systemctl restart duetd`).
              restartIfChanged = false;
              # blkid (create-md's check), losetup and nbdfuse (the export where
              # the kernel has no NBD), mkfs for the administrator's shell.
              path = [
                pkgs.util-linux
                pkgs.fuse3
                pkgs.libnbd
              ];
              serviceConfig = {
                ExecStart = [
                  ""
                  "${lib.getExe' cfg.package "duetd"} --config /etc/duet/duet.toml${
                    lib.optionalString (cfg.nodeName != null) " --node ${cfg.nodeName}"
                  }"
                ];
                LoadCredential =
                  optional (cfg.keyFile != null) "cluster.key:${cfg.keyFile}"
                  ++ lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;
              };
            };
          };
        }
      ]
      # duet starts these on the node that runs their group: never at boot.
      ++ lib.mapAttrsToList (kind: option: {
        ${option} = lib.genAttrs (managedUnits kind) (_: {
          wantedBy = lib.mkForce [ ];
        });
      }) unitKinds
    );

    networking.firewall = mkIf cfg.openFirewall {
      interfaces = mkMerge (
        map (l: { ${l.interface}.allowedUDPPorts = [ l.port ]; }) links
        ++ map (r: { ${r.interface}.allowedTCPPorts = [ r.port ]; }) (
          filter (r: r.interface != null) replicaFirewall
        )
      );
      allowedTCPPorts = map (r: r.port) (filter (r: r.interface == null) replicaFirewall) ++ nbdPorts;
    };
  };

  meta.maintainers = [ ];
}
