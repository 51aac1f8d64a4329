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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the cluster: quorum, every node with its state and links.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file without a daemon; errors name file:line:column and key.
    CheckConfig {
        /// The config file.
        file: PathBuf,
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

/// Exit codes, documented in the man page and docs.
pub mod exit {
    /// A config with errors, or a command that failed.
    pub const FAILURE: u8 = 1;
    /// The daemon is not running or the bus is unreachable.
    pub const NO_DAEMON: u8 = 3;
}
