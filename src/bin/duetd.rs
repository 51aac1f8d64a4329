//! duetd: the duet daemon, one per node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use duet::membership::protocol::ProtocolRange;

/// The duet cluster daemon: heartbeats, membership and the D-Bus API of one node.
#[derive(Parser)]
#[command(name = "duetd", version)]
struct Args {
    /// The cluster config (identical on every node).
    #[arg(long, short, default_value = "/etc/duet/duet.toml")]
    config: PathBuf,
    /// This node's name in the config [default: the hostname].
    #[arg(long)]
    node: Option<String>,
    /// The bus to serve on: the system bus (DBUS_SYSTEM_BUS_ADDRESS
    /// overrides its address), or the session bus to try duet without root.
    #[arg(long, value_enum, default_value = "system", env = "DUET_BUS")]
    bus: duet::bus::BusKind,
    /// Run as the cluster's witness: membership and its vote only, no
    /// replicas, groups or exports. Refused unless the config marks this
    /// node `witness = true` (which alone is enough).
    #[arg(long)]
    witness: bool,
    /// Speak these protocol versions ("1" or "1-3") instead of this
    /// build's, as an older or newer build would: for tests of rolling
    /// upgrades only (docs/wire.md).
    #[arg(long, hide = true, env = "DUET_PROTOCOL_VERSIONS", value_parser = ProtocolRange::parse)]
    protocol_versions: Option<ProtocolRange>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    duet::host::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("duetd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = duet::daemon::Options {
        config: args.config,
        node: args.node,
        bus: args.bus,
        witness: args.witness,
        protocol: args.protocol_versions.unwrap_or_else(ProtocolRange::native),
    };
    match runtime.block_on(duet::daemon::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Config errors span several lines; each goes out whole.
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
