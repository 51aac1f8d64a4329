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
    // What a command's effect is measured against, where the effect may
    // come and go between two polls (a short sync the peer runs).
    let before = match cmd {
        ReplicaCommand::InvalidateRemote => client::read_status(&conn)
            .ok()
            .and_then(|s| s.replicas.into_iter().find(|r| r.name == replica)),
        _ => None,
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
    // Since when the state has said the command cannot succeed.
    let mut failing_since: Option<Instant> = None;
    loop {
        let r = match client::read_status(&conn) {
            Ok(s) => s.replicas.into_iter().find(|r| r.name == replica),
            Err(e) => {
                eprintln!("duetctl: {e}");
                return exit::FAILURE;
            }
        };
        if let Some(r) = &r {
            match reached(cmd, r, before.as_ref()) {
                Some(Ok(msg)) => {
                    println!("{replica}: {msg}");
                    return 0;
                }
                Some(Err(msg)) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= settle(cmd) {
                        eprintln!("duetctl: {replica}: {msg}");
                        return exit::FAILURE;
                    }
                }
                None => failing_since = None,
            }
        }
        last = r.or(last);
        if Instant::now() >= deadline {
            let state = last.map_or("unknown".to_string(), |r| one_line(&r));
            // The peer decides on its own disk; this side cannot tell a
            // refusal from a slow peer.
            let hint = match cmd {
                ReplicaCommand::InvalidateRemote => "; the peer may have declined: see its log",
                _ => "",
            };
            eprintln!("duetctl: {replica}: timed out waiting ({state}){hint}");
            return exit::FAILURE;
        }
        std::thread::sleep(POLL);
    }
}

/// How long a state that says the command failed must last before it is
/// believed. StandAlone just after `connect` may be the state from before
/// the command, still in the status the bus serves; a refused handshake
/// leaves it StandAlone for good.
fn settle(cmd: ReplicaCommand) -> Duration {
    match cmd {
        ReplicaCommand::Connect { .. } | ReplicaCommand::Up => Duration::from_secs(2),
        _ => Duration::ZERO,
    }
}

fn resynced(r: &ReplicaStatus) -> u64 {
    r.counters.get("resynced").copied().unwrap_or(0)
}

fn one_line(r: &ReplicaStatus) -> String {
    format!(
        "role {}, connection {}, replication {}, disk {}, peer disk {}",
        r.role, r.connection, r.replication, r.disk, r.peer_disk
    )
}

/// Whether the command's effect shows; Err if it cannot come any more.
/// `before` is the replica's status before the command, where it matters.
fn reached(
    cmd: ReplicaCommand,
    r: &ReplicaStatus,
    before: Option<&ReplicaStatus>,
) -> Option<Result<String, String>> {
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
        // The peer invalidates its disk when the request arrives: the sync
        // from here starts, or (a small disk) has already come and gone,
        // which the resynced bytes tell.
        ReplicaCommand::InvalidateRemote
            if matches!(r.replication.as_str(), "syncsource" | "pausedsync")
                || r.peer_disk == "inconsistent" =>
        {
            done(one_line(r))
        }
        ReplicaCommand::InvalidateRemote if before.is_some_and(|b| resynced(r) > resynced(b)) => {
            done(format!("full sync to the peer done: {}", one_line(r)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(replication: &str, peer_disk: &str, resynced: u64) -> ReplicaStatus {
        ReplicaStatus {
            name: "r0".into(),
            replication: replication.into(),
            peer_disk: peer_disk.into(),
            counters: [("resynced".to_string(), resynced)].into(),
            ..ReplicaStatus::default()
        }
    }

    #[test]
    fn invalidate_remote_is_done_once_the_sync_shows_or_has_come_and_gone() {
        let cmd = ReplicaCommand::InvalidateRemote;
        let before = status("established", "uptodate", 100);
        // Not yet: the request is on its way.
        assert_eq!(reached(cmd, &before, Some(&before)), None);
        // The peer said Inconsistent, or the sync runs (paused too).
        for now in [
            status("established", "inconsistent", 100),
            status("syncsource", "inconsistent", 100),
            status("pausedsync", "inconsistent", 100),
        ] {
            assert!(matches!(reached(cmd, &now, Some(&before)), Some(Ok(_))));
        }
        // Over between two polls: only the resynced bytes show it.
        let after = status("established", "uptodate", 100 + (64 << 20));
        let done = reached(cmd, &after, Some(&before));
        assert!(
            matches!(&done, Some(Ok(m)) if m.starts_with("full sync to the peer done")),
            "{done:?}"
        );
        assert_eq!(reached(cmd, &after, None), None);
    }
}
