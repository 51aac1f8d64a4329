//! Whether a network interface is usable, read from sysfs. A link whose
//! interface is down (or whose carrier is gone, as when the peer end of a
//! crossover cable is unplugged) is reported to the membership core at once
//! instead of waiting for deadtime.

use std::path::PathBuf;

/// `Some(true)` when the interface is up with a carrier, `Some(false)` when
/// it is down, `None` when there is no such interface.
pub fn is_up(interface: &str) -> Option<bool> {
    let path = PathBuf::from("/sys/class/net")
        .join(interface)
        .join("operstate");
    let state = std::fs::read_to_string(path).ok()?;
    Some(operstate_is_up(state.trim()))
}

/// "unknown" is what virtual interfaces without carrier reporting (and the
/// loopback) say; they pass packets.
fn operstate_is_up(state: &str) -> bool {
    matches!(state, "up" | "unknown" | "dormant")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operstates() {
        assert!(operstate_is_up("up"));
        assert!(operstate_is_up("unknown"));
        assert!(!operstate_is_up("down"));
        assert!(!operstate_is_up("lowerlayerdown"));
        assert!(!operstate_is_up("notpresent"));
    }

    #[test]
    fn loopback_is_up_and_nonsense_is_absent() {
        assert_eq!(is_up("lo"), Some(true));
        assert_eq!(is_up("no-such-if0"), None);
    }
}
