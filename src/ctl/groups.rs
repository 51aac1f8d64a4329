//! duetctl's group verbs: standby, online, cleanup, maintenance.
//! They act through the daemon on the node duetctl runs on, which tells
//! the others in its heartbeats.

use crate::bus::{BusKind, GroupCommand, client};
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
