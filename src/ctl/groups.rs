//! duetctl's group verbs: standby, online, cleanup, maintenance, move,
//! start, stop.
//! They act through the daemon on the node duetctl runs on, which tells
//! the others in its heartbeats.

use std::time::{Duration, Instant};

use crate::bus::{BusKind, GroupCommand, GroupStatus, client};
use crate::ctl::cli::exit;

pub fn run(bus: BusKind, cmd: GroupCommand) -> u8 {
    let conn = match client::connect(bus) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("duetctl: {e}");
            return exit::NO_DAEMON;
        }
    };
    match client::group_command(&conn, &cmd) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("duetctl: {e}");
            exit::FAILURE
        }
    }
}

/// Standby or online for `node`, which must be this node: the daemon
/// answering is the local one.
pub fn standby(bus: BusKind, node: &str, on: bool) -> u8 {
    let local = client::connect(bus).and_then(|c| client::read_status(&c));
    match local {
        Ok(s) if s.local_node != node => {
            eprintln!(
                "duetctl: this is {}; run `duetctl {} {node}` on {node}",
                s.local_node,
                if on { "standby" } else { "online" }
            );
            exit::FAILURE
        }
        Ok(_) => run(bus, GroupCommand::Standby(on)),
        Err(e) => {
            eprintln!("duetctl: {e}");
            exit::NO_DAEMON
        }
    }
}

/// Start, stop or move a group, then wait until the cluster shows it done
/// (or `timeout_secs` pass: exit 1 with where the group is).
pub fn wish(bus: BusKind, cmd: GroupCommand, timeout_secs: u64) -> u8 {
    let (group, goal) = match &cmd {
        GroupCommand::Start { group } => (group.clone(), Goal::Running),
        GroupCommand::Stop { group } => (group.clone(), Goal::Stopped),
        GroupCommand::Move { group, node } => (group.clone(), Goal::Moved(node.clone())),
        _ => return run(bus, cmd),
    };
    let conn = match client::connect(bus) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("duetctl: {e}");
            return exit::NO_DAEMON;
        }
    };
    if let Err(e) = client::group_command(&conn, &cmd) {
        eprintln!("duetctl: {group}: {e}");
        return exit::FAILURE;
    }
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let g = match client::read_status(&conn) {
            Ok(s) => s.groups.into_iter().find(|g| g.name == group),
            Err(e) => {
                eprintln!("duetctl: {e}");
                return exit::FAILURE;
            }
        };
        let Some(g) = g else {
            eprintln!("duetctl: no group named {group}");
            return exit::FAILURE;
        };
        if let Some(msg) = goal.reached(&g) {
            println!("{group}: {msg}");
            return 0;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "duetctl: {group}: timed out waiting ({})",
                crate::ctl::render::group_line(&g)
            );
            return exit::FAILURE;
        }
        std::thread::sleep(POLL);
    }
}

const POLL: Duration = Duration::from_millis(100);

enum Goal {
    /// Running on some node.
    Running,
    /// Running on this node, or stopped by an administrator.
    Moved(String),
    /// Up nowhere.
    Stopped,
}

impl Goal {
    fn reached(&self, g: &GroupStatus) -> Option<String> {
        match self {
            Goal::Moved(_) if g.wanted == "stopped" => {
                // A move of a stopped group only says where it will run.
                Some(format!(
                    "stopped; it will run on {} after `duetctl start {}`",
                    if g.moved_to.is_empty() {
                        "its preferred node"
                    } else {
                        &g.moved_to
                    },
                    g.name
                ))
            }
            Goal::Moved(to) if *to != g.node => None,
            Goal::Running | Goal::Moved(_) => g.running.then(|| format!("running on {}", g.node)),
            Goal::Stopped => g.node.is_empty().then(|| "stopped everywhere".to_string()),
        }
    }
}
