//! duetctl's command line. The same definition generates the shell
//! completions and the man page.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Control and inspect a duet cluster. Talks to the local duetd over D-Bus
/// (the system bus, or DBUS_SYSTEM_BUS_ADDRESS when set); check-config and
/// keygen work without a daemon.
#[derive(Debug, Parser)]
#[command(name = "duetctl", version, propagate_version = true)]
pub struct Cli {
    /// The bus where duetd serves: system (DBUS_SYSTEM_BUS_ADDRESS overrides
    /// its address) or session.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "system",
        env = "DUET_BUS"
    )]
    pub bus: crate::bus::BusKind,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the cluster: quorum, every node with its state and links.
    Status {
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Draw the view again at each change duetd signals, until
        /// interrupted (on a terminal: in place, in colour unless NO_COLOR
        /// is set; otherwise one view after another, each with its time).
        #[arg(long)]
        watch: bool,
    },
    /// The cluster's notable events from this node's journal (nodes up,
    /// late and dead, links down, quorum, groups running or failed, syncs,
    /// split brains, disk failures, config mismatches), oldest first;
    /// `journalctl -x` explains each.
    Log {
        /// How many of the latest events.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: u32,
        /// Go on printing new events as they come.
        #[arg(short, long)]
        follow: bool,
        /// Only events since this time (journalctl's syntax, e.g. "1 hour ago").
        #[arg(long)]
        since: Option<String>,
    },
    /// Read the config file again: apply what can change live (a
    /// replica's protocol, fencing, split-brain policies, on-io-error,
    /// timeout, resync rates)
    /// and name each changed setting that needs a restart of duetd. A file
    /// with errors changes nothing.
    Reload,
    /// Print every state change as it happens, one line each: first each
    /// object as it is (`exists`, ending with `exists -`), then `change`
    /// lines with the value replaced and how long it held. Runs until
    /// interrupted; follows duetd across restarts.
    Events {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move every group off this node, in order (heartbeat's hb_standby).
    /// NODE must be the node duetctl runs on.
    Standby {
        /// This node's name.
        node: String,
    },
    /// Let this node run groups again after a standby.
    Online {
        /// This node's name.
        node: String,
    },
    /// Forget a group's failures on this node; a group blocked by a failed
    /// stop tries the stop again.
    Cleanup {
        /// The group, as named in the config.
        group: String,
    },
    /// Move a group to NODE: stopped where it runs, then started there (no
    /// overlap). It stays on NODE while NODE can run it; if NODE fails, the
    /// group goes where its preferences say and the move is spent. Waits
    /// until the group runs on NODE.
    Move {
        /// The group, as named in the config.
        group: String,
        /// Where it goes.
        node: String,
        /// Seconds to wait for the group to run there.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Start a group stopped with `duetctl stop`, where its preferences say
    /// (every node hears it). Waits until it runs.
    Start {
        /// The group, as named in the config.
        group: String,
        /// Seconds to wait for the group to run.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Stop a group wherever it runs, in reverse order; it runs nowhere,
    /// also across restarts, until `duetctl start`. Waits until it is
    /// stopped everywhere.
    Stop {
        /// The group, as named in the config.
        group: String,
        /// Seconds to wait for the group to stop.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// `on`: duet keeps watching but starts and stops nothing on this node
    /// (for work on the resources by hand); `off`: it acts again.
    Maintenance {
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
    /// Tell this node that NODE, which it sees dead, is off (you powered
    /// it down or checked its console): the groups NODE may still have run
    /// are taken over without a fence. Needed in a two-node cluster
    /// without a witness or [fencing], where a silent peer may only be cut
    /// off. Wrong, it makes both nodes run the groups.
    ConfirmOff {
        /// The dead node that is off.
        node: String,
    },
    /// Make this node the replica's Primary: its block device appears at
    /// the replica's device path (e.g. /dev/duet/r0). Refused unless the
    /// disk is UpToDate and the peer is not Primary.
    Primary {
        /// The replica, e.g. r0.
        replica: String,
        /// Declare this node's data the good copy even if it is not
        /// UpToDate (the first time after create-md): the peer gets a full
        /// sync from here.
        #[arg(long)]
        force: bool,
    },
    /// Make this node Secondary for the replica: the block device goes away
    /// (refused while it is mounted or otherwise in use).
    Secondary {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Connect to the peer (waits until connected, or fails with the state
    /// it is stuck in).
    Connect {
        /// The replica, e.g. r0.
        replica: String,
        /// After a split brain: this node's changes are the ones thrown
        /// away; it syncs from the peer.
        #[arg(long)]
        discard_my_data: bool,
        /// Seconds to wait for the connection.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Drop the connection to the peer and stop trying (StandAlone).
    Disconnect {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Compare both disks by checksums (online, while in use); waits for
    /// the end and prints the bytes found different (marked out of sync:
    /// `duetctl disconnect R && duetctl connect R` resyncs them).
    Verify {
        /// The replica, e.g. r0.
        replica: String,
        /// Seconds to wait for the end.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Declare this node's data bad: a full sync from the peer follows.
    Invalidate {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Declare the peer's data bad: a full sync from this node follows
    /// (this node SyncSource, the peer SyncTarget). Needs a connection,
    /// this disk UpToDate and the peer not Primary; waits until the sync
    /// starts.
    InvalidateRemote {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Let go of the backing disk (Diskless).
    Detach {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Take the backing disk again (reads its metadata; a connected peer
    /// handshakes again).
    Attach {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Attach and connect (what duetd does for every replica at start).
    Up {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Disconnect and detach (the replica must be Secondary).
    Down {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Re-read the config file and apply the replica's changed settings
    /// live: protocol, fencing, split-brain policies, resync rates,
    /// timeout, on-io-error.
    Adjust {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Pause the sync (or verify) this node sends; in-flight blocks finish.
    PauseSync {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Resume a paused sync.
    ResumeSync {
        /// The replica, e.g. r0.
        replica: String,
    },
    /// Write fresh metadata for a replica on this node's disk (no daemon
    /// needed). Refuses a disk with metadata or a filesystem unless --force.
    CreateMd {
        /// The replica, e.g. r0.
        replica: String,
        #[command(flatten)]
        local: LocalDisk,
        /// Overwrite existing metadata or whatever the disk's tail holds.
        #[arg(long)]
        force: bool,
    },
    /// Show a replica's on-disk metadata on this node (no daemon needed).
    DumpMd {
        /// The replica, e.g. r0.
        replica: String,
        #[command(flatten)]
        local: LocalDisk,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one resource agent on this node now, bypassing duetd: for
    /// debugging a resource (as Pacemaker's `crm_resource --force-start`).
    /// It talks to systemd on the system bus itself; duetd does not know,
    /// so do not use it on a resource a running group manages. Prints what
    /// happened; exits 0 when the operation succeeded (for monitor: the
    /// resource runs), 1 when not.
    ResourceOp {
        /// Seconds to wait for the operation (systemd goes on with a job
        /// that outlives it).
        #[arg(long, global = true, default_value_t = 120)]
        timeout: u64,
        #[command(subcommand)]
        resource: ResourceArgs,
    },
    /// Validate a config file without a daemon; errors name file:line:column and key.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Import a classic setup into a duet config, checked as check-config
    /// checks it (docs/migrating.md).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Write a new random cluster key (mode 0600; never overwrites).
    Keygen {
        /// Where to write the key.
        file: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of duetctl.
    Man,
}

/// The resource `duetctl resource-op` runs an agent for.
#[derive(Debug, Subcommand)]
pub enum ResourceArgs {
    /// Any systemd unit: start and stop through systemd, monitor reads its
    /// state (e.g. `duetctl resource-op unit apache2.service start`).
    Unit {
        /// The full unit name, e.g. apache2.service.
        unit: String,
        /// The operation to run.
        op: AgentOp,
    },
    /// A filesystem, mounted by a transient systemd mount unit (e.g.
    /// `duetctl resource-op mount --device /dev/duet/r0 --mountpoint
    /// /mnt/shared --fstype ext4 start`).
    Mount {
        /// The block device (or source, such as server:/export).
        #[arg(long)]
        device: PathBuf,
        /// Where to mount it; created (mode 0755) when missing.
        #[arg(long)]
        mountpoint: PathBuf,
        /// The filesystem type, e.g. ext4.
        #[arg(long)]
        fstype: String,
        /// Mount options as in fstab, comma-separated.
        #[arg(long, default_value = "")]
        options: String,
        /// Check the filesystem (systemd-fsck) before mounting.
        #[arg(long, value_enum, default_value = "auto")]
        fsck: FsckArg,
        /// The operation to run.
        op: AgentOp,
    },
    /// An OCF resource agent, found under OCF_ROOT (default /usr/lib/ocf),
    /// e.g. `duetctl resource-op ocf heartbeat:IPaddr2 --param
    /// ip=198.51.100.10 --param cidr_netmask=24 start`. Its monitor is a
    /// probe (interval 0). No system bus needed.
    Ocf {
        /// provider:type, or ocf:provider:type.
        agent: String,
        /// A parameter, passed as OCF_RESKEY_NAME; once per parameter.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// OCF_RESOURCE_INSTANCE (default: the agent's type). The name a
        /// group gives it (GROUP-TYPE) reaches the same state files.
        #[arg(long)]
        instance: Option<String>,
        /// The operation to run.
        op: AgentOp,
    },
}

/// What `duetctl resource-op` asks of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentOp {
    Start,
    Stop,
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsckArg {
    Auto,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// Heartbeat's ha.cf, haresources and authkeys, and DRBD's drbd.conf
    /// (with its include lines): writes the config and its key file(s)
    /// beside it, never over existing files unless --force.
    Heartbeat(HeartbeatImport),
}

#[derive(Debug, clap::Args)]
pub struct HeartbeatImport {
    /// Heartbeat's ha.cf: nodes, links, timings, ping nodes.
    #[arg(long, default_value = "/etc/ha.d/ha.cf")]
    pub ha_cf: PathBuf,
    /// Heartbeat's haresources: the groups.
    #[arg(long, default_value = "/etc/ha.d/haresources")]
    pub haresources: PathBuf,
    /// Its key becomes duet's key (a crc one: a new key).
    #[arg(long, default_value = "/etc/ha.d/authkeys")]
    pub authkeys: PathBuf,
    /// Left out when the default is absent (no replicated disks).
    #[arg(long, default_value = "/etc/drbd.conf")]
    pub drbd_conf: PathBuf,
    /// The config to write; the key is written beside it as duet.key.
    #[arg(long, default_value = "/etc/duet/duet.toml")]
    pub out: PathBuf,
    /// The cluster's name (Heartbeat clusters have none).
    #[arg(long, default_value = "ha")]
    pub name: String,
    /// A node's address the files do not give (ucast peers), e.g.
    /// node2=203.0.113.2; repeatable.
    #[arg(long = "node-address", value_name = "NODE=IP")]
    pub node_address: Vec<String>,
    /// Overwrite an existing config or key file.
    #[arg(long)]
    pub force: bool,
}

/// Which config and node find the replica's local disk.
#[derive(Debug, clap::Args)]
pub struct LocalDisk {
    /// The cluster config.
    #[arg(long, short, default_value = "/etc/duet/duet.toml")]
    pub config: PathBuf,
    /// This node's name in the config [default: the hostname].
    #[arg(long)]
    pub node: Option<String>,
}

/// Exit codes, documented in the man page and docs.
pub mod exit {
    /// A config with errors, or a command that failed.
    pub const FAILURE: u8 = 1;
    /// The daemon is not running or the bus is unreachable.
    pub const NO_DAEMON: u8 = 3;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn man_page_and_completions_cover_every_command() {
        let mut man = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut man)
            .expect("man page");
        let man = String::from_utf8(man).expect("utf-8");
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "duetctl",
            &mut bash,
        );
        let bash = String::from_utf8(bash).expect("utf-8");
        for cmd in ["status", "check\\-config", "keygen"] {
            assert!(man.contains(cmd), "man page lacks {cmd}");
        }
        for cmd in ["status", "check-config", "keygen"] {
            assert!(bash.contains(cmd), "bash completion lacks {cmd}");
        }
    }

    #[test]
    fn resource_op_takes_a_kind_its_settings_and_an_operation() {
        let cli =
            Cli::try_parse_from(["duetctl", "resource-op", "unit", "apache2.service", "start"])
                .expect("parse unit");
        let Command::ResourceOp { timeout, resource } = cli.command else {
            panic!("not resource-op");
        };
        assert_eq!(timeout, 120);
        assert!(matches!(
            resource,
            ResourceArgs::Unit { ref unit, op: AgentOp::Start } if unit == "apache2.service"
        ));
        let cli = Cli::try_parse_from([
            "duetctl",
            "resource-op",
            "mount",
            "--device",
            "/dev/sdb",
            "--mountpoint",
            "/mnt/shared",
            "--fstype",
            "ext4",
            "--fsck",
            "never",
            "stop",
            "--timeout",
            "7",
        ])
        .expect("parse mount");
        let Command::ResourceOp { timeout, resource } = cli.command else {
            panic!("not resource-op");
        };
        assert_eq!(timeout, 7);
        let ResourceArgs::Mount {
            device,
            options,
            fsck,
            op,
            ..
        } = resource
        else {
            panic!("not mount");
        };
        assert_eq!(device, PathBuf::from("/dev/sdb"));
        assert_eq!(options, "");
        assert_eq!((fsck, op), (FsckArg::Never, AgentOp::Stop));
        // A mount needs its device, mountpoint and type; ops are three.
        assert!(
            Cli::try_parse_from(["duetctl", "resource-op", "mount", "--device", "/d", "start"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["duetctl", "resource-op", "unit", "a.service", "restart"])
                .is_err()
        );
        let cli = Cli::try_parse_from([
            "duetctl",
            "resource-op",
            "ocf",
            "heartbeat:IPaddr2",
            "--param",
            "ip=198.51.100.10",
            "--param",
            "cidr_netmask=24",
            "monitor",
        ])
        .expect("parse ocf");
        let Command::ResourceOp {
            resource:
                ResourceArgs::Ocf {
                    agent,
                    params,
                    instance,
                    op,
                },
            ..
        } = cli.command
        else {
            panic!("not resource-op ocf");
        };
        assert_eq!(agent, "heartbeat:IPaddr2");
        assert_eq!(params, ["ip=198.51.100.10", "cidr_netmask=24"]);
        assert_eq!((instance, op), (None, AgentOp::Monitor));
    }

    #[test]
    fn status_takes_json_and_bad_args_are_refused() {
        let cli = Cli::try_parse_from(["duetctl", "status", "--json"]).expect("parse");
        assert!(matches!(cli.command, Command::Status { json: true, .. }));
        assert!(Cli::try_parse_from(["duetctl", "status", "--jsn"]).is_err());
        assert!(Cli::try_parse_from(["duetctl", "check-config"]).is_err());
    }
}
