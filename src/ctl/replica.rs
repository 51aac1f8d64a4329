//! duetctl's replica verbs, in drbdadm's words: each calls the bus method
//! and waits until the state it asked for shows (or fails with the state
//! it is stuck in).

use std::time::{Duration, Instant};

use crate::bus::{BusKind, ReplicaCommand, ReplicaStatus, client};
use crate::ctl::cli::exit;

/// How often the state is read while waiting.
const POLL: Duration = Duration::from_millis(200);

pub fn run(bus: BusKind, replica: &str, cmd: ReplicaCommand, timeout_secs: u64) -> u8 {
    let conn = match client::connect(bus) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("duetctl: {e}");
            return exit::NO_DAEMON;
        }
    };
    if let Err(e) = client::replica_command(&conn, replica, cmd) {
        let code = if matches!(e, client::ClientError::NotRunning) {
            exit::NO_DAEMON
        } else {
            exit::FAILURE
        };
        eprintln!("duetctl: {replica}: {e}");
        return code;
    }
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut last = None;
    loop {
        let r = match client::read_status(&conn) {
            Ok(s) => s.replicas.into_iter().find(|r| r.name == replica),
            Err(e) => {
                eprintln!("duetctl: {e}");
                return exit::FAILURE;
            }
        };
        if let Some(r) = &r {
            match reached(cmd, r) {
                Some(Ok(msg)) => {
                    println!("{replica}: {msg}");
                    return 0;
                }
                Some(Err(msg)) => {
                    eprintln!("duetctl: {replica}: {msg}");
                    return exit::FAILURE;
                }
                None => {}
            }
        }
        last = r.or(last);
        if Instant::now() >= deadline {
            let state = last.map_or("unknown".to_string(), |r| one_line(&r));
            eprintln!("duetctl: {replica}: timed out waiting ({state})");
            return exit::FAILURE;
        }
        std::thread::sleep(POLL);
    }
}

fn one_line(r: &ReplicaStatus) -> String {
    format!(
        "role {}, connection {}, replication {}, disk {}, peer disk {}",
        r.role, r.connection, r.replication, r.disk, r.peer_disk
    )
}

/// Whether the command's effect shows; Err if it cannot come any more.
fn reached(cmd: ReplicaCommand, r: &ReplicaStatus) -> Option<Result<String, String>> {
    let done = |m: String| Some(Ok(m));
    match cmd {
        ReplicaCommand::Primary { .. } if r.role == "primary" => done(one_line(r)),
        ReplicaCommand::Secondary if r.role == "secondary" => done(one_line(r)),
        ReplicaCommand::Connect { .. } if r.connection == "connected" => done(one_line(r)),
        ReplicaCommand::Connect { .. } if r.connection == "standalone" => Some(Err(format!(
            "gave up connecting ({}); see the log",
            one_line(r)
        ))),
        ReplicaCommand::Disconnect if r.connection == "standalone" => done(one_line(r)),
        ReplicaCommand::Verify if !r.replication.starts_with("verify") => done(format!(
            "verify finished: {} bytes out of sync",
            r.out_of_sync_bytes
        )),
        ReplicaCommand::Invalidate if r.replication == "synctarget" || r.disk == "uptodate" => {
            done(one_line(r))
        }
        ReplicaCommand::Detach if r.disk == "diskless" => done(one_line(r)),
        ReplicaCommand::Attach if r.disk != "diskless" => done(one_line(r)),
        ReplicaCommand::Down if r.disk == "diskless" && r.connection == "standalone" => {
            done(one_line(r))
        }
        ReplicaCommand::Up if r.connection == "connected" => done(one_line(r)),
        ReplicaCommand::Up if r.connection == "standalone" => Some(Err(format!(
            "gave up connecting ({}); see the log",
            one_line(r)
        ))),
        ReplicaCommand::Adjust => done(format!("adjusted: protocol {}", r.protocol)),
        ReplicaCommand::PauseSync if r.replication == "pausedsync" => done(one_line(r)),
        ReplicaCommand::ResumeSync if r.replication != "pausedsync" => done(one_line(r)),
        _ => None,
    }
}
