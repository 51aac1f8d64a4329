//! Heartbeat's haresources: one resource group per line (backslash
//! continues a line), the preferred node first, then the resources in
//! start order. A resource is `NAME::ARG::ARG`; a bare address is the
//! short form of `IPaddr::ADDRESS`; a bare name is an init script, which
//! on a systemd machine is the unit of the same name.

use std::net::IpAddr;

use super::ImportError;

/// One line of haresources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub preferred: String,
    pub resources: Vec<Resource>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `drbddisk::r0`; `None` for a bare `drbddisk` (DRBD's "all").
    Replica { name: Option<String> },
    /// `Filesystem::DEVICE::MOUNTPOINT::FSTYPE[::OPTIONS]`.
    Filesystem {
        device: String,
        mountpoint: String,
        fstype: String,
        options: Option<String>,
    },
    /// `IPaddr::IP[/PREFIX[/NIC[/BROADCAST]]]`, IPaddr2 alike, or a bare IP.
    Ip {
        address: IpAddr,
        prefix: Option<u8>,
        interface: Option<String>,
        broadcast: Option<String>,
    },
    /// A bare name other than a heartbeat resource script: an init script,
    /// `apache2` for `apache2.service`.
    Unit { name: String },
    /// A heartbeat resource script (resource.d) with its arguments.
    Script { name: String, args: Vec<String> },
}

/// heartbeat's own resource scripts (resource.d): a bare one of these is
/// the script, not an init script. Filesystem, IPaddr, IPaddr2 and
/// drbddisk are mapped to native resources instead.
const RESOURCE_SCRIPTS: &[&str] = &[
    "AudibleAlarm",
    "Delay",
    "ICP",
    "IPsrcaddr",
    "IPv6addr",
    "LVM",
    "LVSSyncDaemonSwap",
    "LinuxSCSI",
    "MailTo",
    "OCF",
    "Raid1",
    "SendArp",
    "ServeRAID",
    "WAS",
    "WinPopup",
    "Xinetd",
    "apache",
    "db2",
    "hto-mapfuncs",
    "ids",
    "portblock",
];

pub fn parse(text: &str, file: &str) -> Result<Vec<Group>, Vec<ImportError>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for (line, words) in logical_lines(text) {
        let alone = words.len() == 1;
        let mut words = words.into_iter();
        let Some(preferred) = words.next() else {
            continue;
        };
        let mut resources = Vec::new();
        for word in words {
            match resource(&word) {
                Ok(r) => resources.push(r),
                Err(e) => errors.push(ImportError::new(file, line, e)),
            }
        }
        if alone {
            errors.push(ImportError::new(
                file,
                line,
                format!(
                    "{preferred} has no resources: a line is the preferred node, then its resources"
                ),
            ));
        }
        groups.push(Group {
            preferred,
            resources,
            line,
        });
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// The logical lines split into words, with the line each starts on.
fn logical_lines(text: &str) -> Vec<(usize, Vec<String>)> {
    super::logical_lines(text)
        .into_iter()
        .map(|(n, l)| {
            (
                n,
                l.split_whitespace().map(String::from).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, words)| !words.is_empty())
        .collect()
}

/// One resource word.
fn resource(word: &str) -> Result<Resource, String> {
    let mut parts = word.split("::");
    let name = parts.next().unwrap_or("");
    let args: Vec<String> = parts.map(String::from).collect();
    if args.is_empty() && looks_like_address(name) {
        return ip(name);
    }
    match name {
        // One argument, which may be an IPv6 address with "::" in it.
        "IPaddr" | "IPaddr2" if !args.is_empty() => ip(&args.join("::")),
        "IPaddr" | "IPaddr2" => Err(format!(
            "{word}: {name} takes one argument, IP[/PREFIX[/NIC[/BROADCAST]]]"
        )),
        // resource.d/IPv6addr: IPV6[/PREFIX[/NIC]], split at its "::" too.
        "IPv6addr" if !args.is_empty() => {
            let r = ip(&args.join("::"))?;
            match &r {
                Resource::Ip {
                    address: IpAddr::V6(_),
                    broadcast: None,
                    ..
                } => Ok(r),
                _ => Err(format!(
                    "{word}: IPv6addr takes one IPv6 address, IPV6[/PREFIX[/NIC]]"
                )),
            }
        }
        "Filesystem" => filesystem(word, &args),
        "drbddisk" => match args.as_slice() {
            [] => Ok(Resource::Replica { name: None }),
            [r] if !r.is_empty() => Ok(Resource::Replica {
                name: Some(r.clone()),
            }),
            _ => Err(format!("{word}: drbddisk takes one DRBD resource name")),
        },
        "" => Err(format!("{word}: a resource without a name")),
        _ if args.is_empty() && !RESOURCE_SCRIPTS.contains(&name) => {
            valid_name(word, name)?;
            Ok(Resource::Unit {
                name: name.to_string(),
            })
        }
        _ => {
            valid_name(word, name)?;
            Ok(Resource::Script {
                name: name.to_string(),
                args,
            })
        }
    }
}

fn valid_name(word: &str, name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{word}: \"{name}\" is not a script or init script name"
        ))
    }
}

fn looks_like_address(s: &str) -> bool {
    let head = s.split('/').next().unwrap_or("");
    head.parse::<IpAddr>().is_ok()
}

/// `IP[/PREFIX[/NIC[/BROADCAST]]]`; the prefix may be a dotted netmask.
fn ip(arg: &str) -> Result<Resource, String> {
    let mut parts = arg.split('/');
    let head = parts.next().unwrap_or("");
    let address: IpAddr = head
        .parse()
        .map_err(|_| format!("IP address \"{arg}\": \"{head}\" is not an IP address"))?;
    let prefix = match parts.next() {
        None | Some("") => None,
        Some(p) => Some(prefix_of(address, p).ok_or_else(|| {
            format!("{arg}: \"{p}\" is not a prefix length (or netmask) for {address}")
        })?),
    };
    let interface = parts.next().filter(|s| !s.is_empty()).map(String::from);
    let broadcast = parts.next().filter(|s| !s.is_empty()).map(String::from);
    if let Some(extra) = parts.next() {
        return Err(format!(
            "{arg}: unexpected \"/{extra}\" after IP/PREFIX/NIC/BROADCAST"
        ));
    }
    if let Some(i) = &interface
        && (i.len() > 15 || i.contains(char::is_whitespace))
    {
        return Err(format!("{arg}: \"{i}\" is not an interface name"));
    }
    Ok(Resource::Ip {
        address,
        prefix,
        interface,
        broadcast,
    })
}

fn prefix_of(address: IpAddr, text: &str) -> Option<u8> {
    let max = if address.is_ipv4() { 32 } else { 128 };
    if let Ok(bits) = text.parse::<u8>() {
        return (1..=max).contains(&bits).then_some(bits);
    }
    // A dotted netmask, as old IPaddr lines have: contiguous ones only.
    let mask: std::net::Ipv4Addr = text.parse().ok()?;
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (address.is_ipv4() && ones > 0 && bits.checked_shl(ones).unwrap_or(0) == 0)
        .then_some(ones as u8)
}

fn filesystem(word: &str, args: &[String]) -> Result<Resource, String> {
    let usage = "Filesystem::DEVICE::MOUNTPOINT::FSTYPE[::OPTIONS]";
    let (device, mountpoint, fstype, options) = match args {
        [d, m, t] => (d, m, t, None),
        [d, m, t, o] => (d, m, t, Some(o)),
        _ => return Err(format!("{word}: expected {usage}")),
    };
    if !mountpoint.starts_with('/') {
        return Err(format!(
            "{word}: the mount point \"{mountpoint}\" is not an absolute path ({usage})"
        ));
    }
    if device.is_empty() || fstype.is_empty() {
        return Err(format!("{word}: expected {usage}"));
    }
    // Filesystem passes OPTIONS to mount as `-o OPTIONS`; some lines
    // carry the flag themselves.
    let options = match options.map(|o| o.trim().trim_start_matches("-o").trim()) {
        Some("") => {
            return Err(format!(
                "{word}: no mount options after \"-o\" (a space splits the line there): write ::OPTION,OPTION without spaces"
            ));
        }
        o => o.map(String::from),
    };
    Ok(Resource::Filesystem {
        device: device.clone(),
        mountpoint: mountpoint.clone(),
        fstype: fstype.clone(),
        options,
    })
}

#[cfg(test)]
#[path = "haresources_tests.rs"]
mod tests;
