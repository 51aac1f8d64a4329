//! `duetctl import heartbeat`: the files read, the host's routes, the
//! pure import (crate::import), then the config written beside its keys
//! and checked as check-config checks it. Nothing existing is overwritten
//! without --force, and a config that does not check is not written.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::cli::{HeartbeatImport, exit};
use crate::config;
use crate::import::convert::{self, Classic, Key, Options, Route};
use crate::import::{ImportError, authkeys, drbdconf, hacf, haresources};

pub fn heartbeat(args: &HeartbeatImport) -> u8 {
    match run(args) {
        Ok(()) => 0,
        Err(lines) => {
            for l in lines {
                eprintln!("{l}");
            }
            exit::FAILURE
        }
    }
}

fn run(args: &HeartbeatImport) -> Result<(), Vec<String>> {
    check_out(args)?;
    let addresses = hints(&args.node_address)?;
    let ha_cf_text = read(&args.ha_cf)?;
    let haresources_text = read(&args.haresources)?;
    let authkeys_text = read_strict(&args.authkeys)?;
    let mode = fs::metadata(&args.authkeys)
        .ok()
        .map(|m| m.permissions().mode() & 0o777);
    let drbd_text = match read(&args.drbd_conf) {
        Ok(t) => Some(t),
        // The default path absent: a cluster without replicated disks.
        Err(_) if args.drbd_conf == Path::new("/etc/drbd.conf") && !args.drbd_conf.exists() => None,
        Err(e) => return Err(e),
    };
    let names = [
        &args.ha_cf,
        &args.haresources,
        &args.authkeys,
        &args.drbd_conf,
    ]
    .map(|p| p.display().to_string());
    let mut errors: Vec<ImportError> = Vec::new();
    let ha = hacf::parse(&ha_cf_text, &names[0])
        .map_err(|e| errors.extend(e))
        .ok();
    let groups = haresources::parse(&haresources_text, &names[1])
        .map_err(|e| errors.extend(e))
        .ok();
    let keys = authkeys::parse(&authkeys_text, &names[2], mode)
        .map_err(|e| errors.extend(e))
        .ok();
    let drbd = drbd_text.and_then(|t| {
        // The parser gives each pattern from its including file's folder.
        let mut include = |pattern: &str| includes(pattern);
        drbdconf::parse(&t, &names[3], &mut include)
            .map_err(|e| errors.extend(e))
            .ok()
    });
    let (Some(ha), Some(groups), Some(keys)) = (ha, groups, keys) else {
        return Err(errors.iter().map(ToString::to_string).collect());
    };
    if !errors.is_empty() {
        return Err(errors.iter().map(ToString::to_string).collect());
    }
    let routes = routes();
    let resource_d = names_in(Path::new("/etc/ha.d/resource.d"));
    let init_d = names_in(Path::new("/etc/init.d"));
    let classic = Classic {
        ha_cf: &ha,
        ha_cf_name: &names[0],
        authkeys: Some(&keys),
        authkeys_name: &names[2],
        groups: &groups,
        haresources_name: &names[1],
        drbd: drbd.as_ref(),
        drbd_name: &names[3],
    };
    let options = Options {
        cluster_name: &args.name,
        key_file: "duet.key",
        routes: &routes,
        addresses: &addresses,
        resource_d: &resource_d,
        init_d: &init_d,
    };
    let imported = convert::convert(&classic, &options)
        .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    write_all(args, &imported)?;
    for n in &imported.notes {
        if n.warning {
            eprintln!("warning: {n}");
        } else {
            println!("note: {n}");
        }
    }
    Ok(())
}

/// --out names the config file to write: not a folder, not one of the
/// files read. Checked first, since the keys go beside it.
fn check_out(args: &HeartbeatImport) -> Result<(), Vec<String>> {
    let out = &args.out;
    let refuse = |why: &str| Err(vec![format!("--out {}: {why}", out.display())]);
    if out.as_os_str().to_string_lossy().ends_with('/') || out.is_dir() {
        return refuse("a folder; name the config file (e.g. /etc/duet/duet.toml)");
    }
    let same = |input: &Path| match (fs::canonicalize(input), fs::canonicalize(out)) {
        (Ok(a), Ok(b)) => a == b,
        _ => input == out.as_path(),
    };
    if [
        &args.ha_cf,
        &args.haresources,
        &args.authkeys,
        &args.drbd_conf,
    ]
    .into_iter()
    .any(|p| same(p))
    {
        return refuse("that is one of the files being imported");
    }
    Ok(())
}

fn hints(list: &[String]) -> Result<Vec<(String, IpAddr)>, Vec<String>> {
    let parsed: Vec<(String, IpAddr)> = list
        .iter()
        .map(|h| {
            let (node, ip) = h
                .split_once('=')
                .ok_or_else(|| vec![format!("--node-address {h}: expected NODE=IP")])?;
            let ip = ip
                .parse()
                .map_err(|_| vec![format!("--node-address {h}: \"{ip}\" is not an IP address")])?;
            Ok((node.to_string(), ip))
        })
        .collect::<Result<_, Vec<String>>>()?;
    for (i, (node, ip)) in parsed.iter().enumerate() {
        if parsed[..i]
            .iter()
            .any(|(n, a)| n == node && a.is_ipv4() == ip.is_ipv4())
        {
            return Err(vec![format!(
                "--node-address {node}={ip}: {node} has an address of this family already"
            )]);
        }
    }
    Ok(parsed)
}

/// The file names in `dir` (none when it does not exist).
fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn read(path: &Path) -> Result<String, Vec<String>> {
    text_of(path).map_err(|e| vec![e])
}

/// A classic file as text. Heartbeat and drbdadm read bytes: a comment in
/// Latin-1 is fine there, so bytes that are not UTF-8 are replaced (only
/// comments hold such), and a byte-order mark is dropped.
fn text_of(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    // A classic config file is a regular file of some KiB: a device, a
    // FIFO or a giant is a mistake, not something to read to the end.
    let meta = fs::metadata(path).map_err(|e| cannot(&e))?;
    if !meta.is_file() {
        return Err(cannot(&"not a regular file"));
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(cannot(&format!("larger than {} MiB", MAX_FILE >> 20)));
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.strip_prefix('\u{feff}').unwrap_or(&text).to_string())
}

/// The largest classic file read (Heartbeat's and DRBD's are KiB).
const MAX_FILE: u64 = 64 << 20;

/// authkeys holds the key itself, which a replaced byte would change.
fn read_strict(path: &Path) -> Result<String, Vec<String>> {
    let text = read(path)?;
    match text.lines().position(|l| l.contains('\u{fffd}')) {
        Some(i) => Err(vec![format!(
            "{}:{}: not UTF-8 text: write the key in ASCII (or UTF-8)",
            path.display(),
            i + 1
        )]),
        None => Ok(text),
    }
}

/// drbd.conf's `include "PATTERN";`: `*`, `?` and `[...]` in the file
/// name, in name order.
fn includes(pattern: &str) -> Result<Vec<(String, String)>, String> {
    let path = Path::new(pattern);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?', '[']) {
        let text = text_of(path)?;
        return Ok(vec![(path.display().to_string(), text)]);
    }
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        // Folders aside, whatever matches is read: a dangling or looping
        // link or a device says why it cannot be, rather than vanish.
        .filter(|p| {
            !p.is_dir()
                && p.file_name()
                    .is_some_and(|n| matches(&name, &n.to_string_lossy()))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| text_of(&p).map(|t| (p.display().to_string(), t)))
        .collect()
}

/// Shell-style `*`, `?` and `[...]` matching of a whole name.
fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        let one = match p.get(pi) {
            Some('?') => Some(pi + 1),
            Some('[') => class(&p, pi, n[ni]),
            Some(c) if *c == n[ni] => Some(pi + 1),
            _ => None,
        };
        if let Some(next) = one {
            pi = next;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `[abc]`, `[a-z]`, `[!...]` or `[^...]` at `p[at]` against `c`: where
/// the pattern goes on if `c` is in it. A `[` without its `]` matches
/// nothing.
fn class(p: &[char], at: usize, c: char) -> Option<usize> {
    let negated = matches!(p.get(at + 1), Some('!' | '^'));
    let first = at + 1 + usize::from(negated);
    // A `]` right after the opening is one of the set.
    let close = (first + 1..p.len()).find(|&i| p[i] == ']')?;
    let set = &p[first..close];
    let mut hit = false;
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            hit |= (set[i]..=set[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= set[i] == c;
            i += 1;
        }
    }
    (hit != negated).then_some(close + 1)
}

/// This host's connected routes (/proc/net/route, /proc/net/ipv6_route):
/// where IPaddr or IPv6addr would put an address given without prefix or
/// interface.
fn routes() -> Vec<Route> {
    let v4 = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut all: Vec<Route> = v4.lines().skip(1).filter_map(route).collect();
    all.extend(v6.lines().filter_map(route_v6));
    all
}

/// Destination, its prefix length, source and its length, next hop,
/// metric, refcount, use, flags, interface; hex, no header. A connected
/// route has no next hop; the /128 ones are the host's own addresses.
fn route_v6(line: &str) -> Option<Route> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (dest, prefix, next_hop, iface) = (f.first()?, f.get(1)?, f.get(4)?, f.get(9)?);
    let prefix = u8::from_str_radix(prefix, 16).ok()?;
    let dest = u128::from_str_radix(dest, 16).ok()?;
    let multicast = dest >> 120 == 0xff;
    let connected = next_hop.bytes().all(|b| b == b'0') && next_hop.len() == 32;
    (connected && (1..128).contains(&prefix) && !multicast && *iface != "lo").then(|| Route {
        network: IpAddr::V6(std::net::Ipv6Addr::from(dest)),
        prefix,
        interface: iface.to_string(),
    })
}

fn route(line: &str) -> Option<Route> {
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; hex in
    // the host's byte order.
    let f: Vec<&str> = line.split_whitespace().collect();
    let (iface, dest, gateway, mask) = (f.first()?, f.get(1)?, f.get(2)?, f.get(7)?);
    if *gateway != "00000000" {
        return None;
    }
    let dest = u32::from_str_radix(dest, 16).ok()?;
    let prefix = u32::from_str_radix(mask, 16).ok()?.count_ones();
    (prefix > 0).then(|| Route {
        network: IpAddr::V4(std::net::Ipv4Addr::from(dest.to_ne_bytes())),
        prefix: prefix as u8,
        interface: iface.to_string(),
    })
}

/// Every file is written under a temporary name first; the config must
/// pass check-config; then the keys take their names and the config last.
/// On any failure the temporary files go and nothing existing changes.
fn write_all(args: &HeartbeatImport, imported: &convert::Imported) -> Result<(), Vec<String>> {
    let dir = args
        .out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let key_path = dir.join("duet.key");
    let mut keys: Vec<(PathBuf, Option<&[u8]>)> = vec![(
        key_path.clone(),
        match &imported.key {
            Key::Imported(bytes) => Some(bytes.as_slice()),
            Key::Generate => None,
        },
    )];
    keys.extend(
        imported
            .replica_keys
            .iter()
            .map(|(n, b)| (dir.join(n), Some(b.as_slice()))),
    );
    let mut finals: Vec<PathBuf> = keys.iter().map(|(p, _)| p.clone()).collect();
    finals.push(args.out.clone());
    if !args.force {
        let existing: Vec<String> = finals
            .iter()
            .filter(|p| p.exists())
            .map(|p| {
                format!(
                    "{} exists: not overwritten (--force to replace it)",
                    p.display()
                )
            })
            .collect();
        if !existing.is_empty() {
            return Err(existing);
        }
    }
    fs::create_dir_all(&dir).map_err(|e| vec![format!("cannot create {}: {e}", dir.display())])?;
    let temp = |p: &Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        dir.join(format!(".{name}.import-{}", std::process::id()))
    };
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = stage(imported, &keys, &args.out, &temp, &mut staged).and_then(|checked| {
        staged.iter().try_for_each(|(t, f)| {
            fs::rename(t, f).map_err(|e| vec![format!("cannot write {}: {e}", f.display())])
        })?;
        Ok(checked)
    });
    for (t, _) in &staged {
        let _ = fs::remove_file(t);
    }
    let c = result?;
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: imported and valid: cluster {}, {} node(s), {} link(s), {} replica(s), {} group(s); key in {}",
        args.out.display(),
        c.config.cluster.name,
        c.config.nodes.len(),
        c.config.links.len(),
        c.config.replicas.len(),
        c.config.groups.len(),
        key_path.display()
    );
    Ok(())
}

/// Writes the keys and the config under temporary names (recorded in
/// `staged`, the config last) and checks the config: what it loaded.
fn stage(
    imported: &convert::Imported,
    keys: &[(PathBuf, Option<&[u8]>)],
    out: &Path,
    temp: &dyn Fn(&Path) -> PathBuf,
    staged: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<config::Loaded, Vec<String>> {
    for (path, bytes) in keys {
        let t = temp(path);
        staged.push((t.clone(), path.clone()));
        match bytes {
            Some(b) => write_file(&t, &[b, b"\n".as_slice()].concat(), 0o600)?,
            None => {
                let _ = fs::remove_file(&t);
                crate::membership::auth::generate_key_file(&t).map_err(|e| vec![e.to_string()])?;
            }
        }
    }
    let t = temp(out);
    staged.push((t.clone(), out.to_path_buf()));
    // A [fencing] section may hold a power switch's password.
    let mode = if imported.toml.contains("\n[fencing]\n") {
        0o600
    } else {
        0o644
    };
    write_file(&t, imported.toml.as_bytes(), mode)?;
    // Checked under its final name, so that what check-config says names
    // it; the key file beside it need not exist yet.
    config::parse(&imported.toml, out).map_err(|e| {
        vec![format!(
            "the imported config does not check, nothing was written (each line it names is shown as it would have been):\n{}",
            with_lines(&e.to_string(), &out.display().to_string(), &imported.toml)
        )]
    })
}

/// After each `FILE:LINE:...` of check-config's errors, that line of the
/// config that was not written, so the reader sees what it was about.
fn with_lines(said: &str, file: &str, toml: &str) -> String {
    let lines: Vec<&str> = toml.lines().collect();
    let prefix = format!("{file}:");
    said.lines()
        .map(|l| {
            let number = l
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse::<usize>().ok());
            match number.and_then(|n| Some((n, lines.get(n.checked_sub(1)?)?))) {
                Some((n, text)) => format!("{l}\n    {n} | {text}"),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Vec<String>> {
    let _ = fs::remove_file(path);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    written.map_err(|e| {
        let _ = fs::remove_file(path);
        vec![format!("cannot write {}: {e}", path.display())]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_patterns_match_whole_names() {
        assert!(matches("*.res", "r0.res"));
        assert!(matches("global_common.conf", "global_common.conf"));
        assert!(matches("r?.res", "r1.res"));
        assert!(!matches("*.res", "r0.res.bak"));
        assert!(!matches("r?.res", "r10.res"));
        assert!(matches("*", ""));
        assert!(matches("r[0-9].res", "r7.res"));
        assert!(matches("r[!0-9].res", "rx.res"));
        assert!(!matches("r[!0-9].res", "r7.res"));
        assert!(matches("[ab]*", "b.res"));
        assert!(!matches("[ab]*", "c.res"));
    }

    #[test]
    fn proc_net_route_lines_are_connected_routes() {
        // 198.51.100.0/24 on eth0 (host byte order, as /proc writes it),
        // and a default route through a gateway.
        let net = u32::from_ne_bytes([198, 51, 100, 0]);
        let mask = u32::from_ne_bytes([255, 255, 255, 0]);
        let line = format!("eth0\t{net:08X}\t00000000\t0001\t0\t0\t0\t{mask:08X}\t0\t0\t0");
        let r = route(&line).expect("route");
        assert_eq!(r.network, "198.51.100.0".parse::<IpAddr>().expect("ip"));
        assert_eq!((r.prefix, r.interface.as_str()), (24, "eth0"));
        assert!(route("eth0\t00000000\t0100330A\t0003\t0\t0\t0\t00000000\t0\t0\t0").is_none());
        assert!(route("garbage").is_none());
    }

    #[test]
    fn check_errors_show_the_line_they_name() {
        let toml = "[cluster]\nname = \"ha\"\n";
        let said = "out/duet.toml:2:1: cluster.name: bad\nout/duet.toml:9:1: past the end\nother";
        assert_eq!(
            with_lines(said, "out/duet.toml", toml),
            "out/duet.toml:2:1: cluster.name: bad\n    2 | name = \"ha\"\nout/duet.toml:9:1: past the end\nother"
        );
    }

    #[test]
    fn proc_net_ipv6_route_lines_are_connected_routes() {
        let zero = "0".repeat(32);
        let line = |dest: &str, len: &str, hop: &str, iface: &str| {
            format!("{dest} {len} {zero} 00 {hop} 00000100 00000001 00000000 00000001 {iface}")
        };
        let r = route_v6(&line(
            "20010db8000100000000000000000000",
            "40",
            &zero,
            "eth0",
        ))
        .expect("route");
        assert_eq!(r.network, "2001:db8:1::".parse::<IpAddr>().expect("ip"));
        assert_eq!((r.prefix, r.interface.as_str()), (64, "eth0"));
        // A default route through a router, a host's own /128, multicast, lo.
        let router = format!("fe80{}", "0".repeat(27) + "1");
        assert!(route_v6(&line(&zero, "00", &router, "eth0")).is_none());
        assert!(
            route_v6(&line(
                "20010db8000100000000000000000001",
                "80",
                &zero,
                "eth0"
            ))
            .is_none()
        );
        assert!(
            route_v6(&line(
                "ff000000000000000000000000000000",
                "08",
                &zero,
                "eth0"
            ))
            .is_none()
        );
        assert!(route_v6(&line("20010db8000200000000000000000000", "40", &zero, "lo")).is_none());
        assert!(route_v6("garbage").is_none());
    }
}
