//! Whether a network interface is usable. A link whose interface is down,
//! or has lost its carrier (the peer end of a crossover cable unplugged),
//! is reported to the membership core at once instead of after deadtime.
//!
//! Read through getifaddrs (netlink), not sysfs: in a container, /sys may
//! show another network namespace than the one the daemon runs in.

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

/// `Some(true)` when the interface is up with a carrier, `Some(false)` when
/// it is down, `None` when there is no such interface.
pub fn is_up(interface: &str) -> Option<bool> {
    let flags = getifaddrs()
        .ok()?
        .filter(|a| a.interface_name == interface)
        .map(|a| a.flags)
        .reduce(|a, b| a | b)?;
    Some(usable(flags))
}

/// Up and running (the kernel's carrier bit); loopback and other virtual
/// interfaces without carrier reporting count as running when up.
fn usable(flags: InterfaceFlags) -> bool {
    flags.contains(InterfaceFlags::IFF_UP) && flags.contains(InterfaceFlags::IFF_RUNNING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert!(usable(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING));
        assert!(!usable(InterfaceFlags::IFF_UP));
        assert!(!usable(InterfaceFlags::IFF_RUNNING));
    }

    #[test]
    fn loopback_is_up_and_nonsense_is_absent() {
        assert_eq!(is_up("lo"), Some(true));
        assert_eq!(is_up("no-such-if0"), None);
    }
}
