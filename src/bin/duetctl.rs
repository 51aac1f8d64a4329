//! duetctl: inspect and control a duet cluster.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = duet::ctl::cli::Cli::parse();
    ExitCode::from(duet::ctl::run(cli))
}
