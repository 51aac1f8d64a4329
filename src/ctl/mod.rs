//! duetctl: the command-line client. `run` returns the process exit code.

pub mod cli;
mod events;
mod groups;
mod import;
pub mod metadata;
pub mod reference;
pub mod render;
mod replica;
mod resource;
mod watch;

use std::io::Write;

use clap::CommandFactory;

use crate::bus::{GroupCommand, ReplicaCommand, client};
use crate::config;
use crate::membership::auth;
use cli::{Cli, Command, exit};

pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Status { watch: true, .. } => watch::run(cli.bus),
        Command::Status { json, .. } => status(cli.bus, json),
        Command::Events { json } => events::run(cli.bus, json),
        Command::Reload => reload(cli.bus),
        Command::Log {
            lines,
            follow,
            since,
        } => log(lines, follow, since.as_deref()),
        Command::Standby { node } => groups::standby(cli.bus, &node, true),
        Command::Online { node } => groups::standby(cli.bus, &node, false),
        Command::Cleanup { group } => groups::run(cli.bus, GroupCommand::Cleanup { group }),
        Command::Move {
            group,
            node,
            timeout,
        } => groups::wish(cli.bus, GroupCommand::Move { group, node }, timeout),
        Command::Start { group, timeout } => {
            groups::wish(cli.bus, GroupCommand::Start { group }, timeout)
        }
        Command::Stop { group, timeout } => {
            groups::wish(cli.bus, GroupCommand::Stop { group }, timeout)
        }
        Command::Maintenance { mode } => {
            groups::run(cli.bus, GroupCommand::Maintenance(mode == "on"))
        }
        Command::ConfirmOff { node } => groups::run(cli.bus, GroupCommand::ConfirmOff { node }),
        Command::CheckConfig { file } => check_config(&file),
        Command::Import {
            from: cli::ImportFrom::Heartbeat(args),
        } => import::heartbeat(&args),
        Command::CreateMd {
            replica,
            local,
            force,
        } => print_or_fail(metadata::create(&replica, &local, force)),
        Command::DumpMd {
            replica,
            local,
            json,
        } => print_or_fail(metadata::dump(&replica, &local, json)),
        Command::Primary { replica, force } => {
            replica::run(cli.bus, &replica, ReplicaCommand::Primary { force }, 10)
        }
        Command::Secondary { replica } => {
            replica::run(cli.bus, &replica, ReplicaCommand::Secondary, 10)
        }
        Command::Connect {
            replica,
            discard_my_data,
            timeout,
        } => replica::run(
            cli.bus,
            &replica,
            ReplicaCommand::Connect { discard_my_data },
            timeout,
        ),
        Command::Disconnect { replica } => {
            replica::run(cli.bus, &replica, ReplicaCommand::Disconnect, 10)
        }
        Command::Verify { replica, timeout } => {
            replica::run(cli.bus, &replica, ReplicaCommand::Verify, timeout)
        }
        Command::Invalidate { replica } => {
            replica::run(cli.bus, &replica, ReplicaCommand::Invalidate, 60)
        }
        Command::InvalidateRemote { replica } => {
            replica::run(cli.bus, &replica, ReplicaCommand::InvalidateRemote, 60)
        }
        Command::Detach { replica } => replica::run(cli.bus, &replica, ReplicaCommand::Detach, 10),
        Command::Attach { replica } => replica::run(cli.bus, &replica, ReplicaCommand::Attach, 10),
        Command::Up { replica } => replica::run(cli.bus, &replica, ReplicaCommand::Up, 30),
        Command::Down { replica } => replica::run(cli.bus, &replica, ReplicaCommand::Down, 10),
        Command::Adjust { replica } => replica::run(cli.bus, &replica, ReplicaCommand::Adjust, 10),
        Command::PauseSync { replica } => {
            replica::run(cli.bus, &replica, ReplicaCommand::PauseSync, 10)
        }
        Command::ResumeSync { replica } => {
            replica::run(cli.bus, &replica, ReplicaCommand::ResumeSync, 10)
        }
        Command::ResourceOp { timeout, resource } => resource::run(resource, timeout),
        Command::Keygen { file } => match auth::generate_key_file(&file) {
            Ok(()) => {
                println!(
                    "wrote a new cluster key to {} (mode 0600); copy it to every node",
                    file.display()
                );
                0
            }
            Err(e) => fail(&e.to_string()),
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "duetctl",
                &mut std::io::stdout(),
            );
            0
        }
        Command::Man => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut out) {
                return fail(&e.to_string());
            }
            let _ = std::io::stdout().write_all(&out);
            0
        }
    }
}

/// journalctl's arguments for `duetctl log`: duet's notable events by
/// their MESSAGE_IDs (one field matched several times: any of them).
pub fn log_args(lines: u32, follow: bool, since: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--no-pager".to_string(),
        "--output=short-iso".to_string(),
        format!("--lines={lines}"),
    ];
    if follow {
        args.push("--follow".into());
    }
    if let Some(s) = since {
        args.push(format!("--since={s}"));
    }
    args.extend(
        crate::host::message_ids::ALL
            .iter()
            .map(|id| format!("MESSAGE_ID={id}")),
    );
    args
}

fn log(lines: u32, follow: bool, since: Option<&str>) -> u8 {
    let status = std::process::Command::new("journalctl")
        .args(log_args(lines, follow, since))
        .status();
    match status {
        Ok(s) if s.success() => 0,
        Ok(s) => fail(&format!("journalctl exited with {s}")),
        Err(e) => fail(&format!("cannot run journalctl: {e}")),
    }
}

fn reload(bus: crate::bus::BusKind) -> u8 {
    let conn = match client::connect(bus) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    match client::reload(&conn) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(client::ClientError::NotRunning) => {
            eprintln!("duetctl: {}", client::ClientError::NotRunning);
            exit::NO_DAEMON
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn print_or_fail(result: Result<String, String>) -> u8 {
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            0
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> u8 {
    eprintln!("duetctl: {message}");
    exit::FAILURE
}

fn status(bus: crate::bus::BusKind, json: bool) -> u8 {
    let result = client::connect(bus).and_then(|c| client::read_status(&c));
    let status = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("duetctl: {e}");
            return exit::NO_DAEMON;
        }
    };
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(&e.to_string()),
        }
    } else {
        print!("{}", render::status_table(&status));
    }
    0
}

fn check_config(file: &std::path::Path) -> u8 {
    match config::load(file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            let c = &loaded.config;
            println!(
                "{}: valid: cluster {}, {} node(s), {} link(s), {} replica(s), {} group(s)",
                file.display(),
                c.cluster.name,
                c.nodes.len(),
                c.links.len(),
                c.replicas.len(),
                c.groups.len()
            );
            if !c.cluster.key_file.exists() {
                println!(
                    "note: key file {} does not exist yet; create it with `duetctl keygen {}`",
                    c.cluster.key_file.display(),
                    c.cluster.key_file.display()
                );
            }
            0
        }
        Err(errors) => {
            eprint!("{errors}");
            if !errors.to_string().ends_with('\n') {
                eprintln!();
            }
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn log_asks_journalctl_for_every_notable_event() {
        let args = log_args(20, true, Some("1 hour ago"));
        assert!(args.contains(&"--lines=20".to_string()));
        assert!(args.contains(&"--follow".to_string()));
        assert!(args.contains(&"--since=1 hour ago".to_string()));
        let ids = args.iter().filter(|a| a.starts_with("MESSAGE_ID=")).count();
        assert_eq!(ids, crate::host::message_ids::ALL.len());
        assert!(!log_args(5, false, None).contains(&"--follow".to_string()));
    }
}
