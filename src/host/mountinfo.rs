//! proc(5)'s mountinfo: which filesystems are mounted where, in this
//! process's mount namespace or in another process's.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

/// One line of /proc/self/mountinfo, the parts used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The filesystem's device number (major, minor).
    pub dev: (u64, u64),
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Parses proc(5)'s mountinfo: `36 35 98:0 /mnt1 /mnt2 rw,noatime
/// master:1 - ext3 /dev/root rw,errors=continue`. Lines it cannot read
/// are skipped.
pub fn parse(text: &[u8]) -> Vec<MountEntry> {
    use std::os::unix::ffi::OsStringExt;
    let mut entries = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        let Some(sep) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 3 {
            continue;
        }
        let Some(dev) = parse_dev(fields[2], 10) else {
            continue;
        };
        let target = PathBuf::from(std::ffi::OsString::from_vec(unescape(fields[4])));
        entries.push(MountEntry {
            dev,
            target,
            fstype: String::from_utf8_lossy(&unescape(fields[sep + 1])).into_owned(),
            source: String::from_utf8_lossy(&unescape(fields[sep + 2])).into_owned(),
        });
    }
    entries
}

/// A mount of a device seen in some process's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenMount {
    /// A process in that namespace (the first one found).
    pub pid: u32,
    pub command: String,
    pub target: PathBuf,
}

/// Every mount of the block device `dev` in every mount namespace this
/// process can look into (/proc/PID/mountinfo needs CAP_SYS_PTRACE for
/// other users' processes), one namespace read once. A mount the current
/// namespace no longer shows may live on in another one (a namespace
/// made with private propagation while it was mounted).
pub fn mounts_of(dev: (u64, u64)) -> Vec<SeenMount> {
    let mut namespaces = HashSet::new();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let dir = entry.path();
        let Ok(ns) = fs::read_link(dir.join("ns/mnt")) else {
            continue;
        };
        if namespaces.contains(&ns) {
            continue;
        }
        // A process that exits now, or one this process may not look
        // into, leaves its namespace to the next process in it.
        let Ok(text) = fs::read(dir.join("mountinfo")) else {
            continue;
        };
        namespaces.insert(ns);
        let mounts: Vec<MountEntry> = parse(&text).into_iter().filter(|m| m.dev == dev).collect();
        if mounts.is_empty() {
            continue;
        }
        let command = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        for m in mounts {
            found.push(SeenMount {
                pid,
                command: command.trim().to_string(),
                target: m.target,
            });
        }
    }
    found
}

/// "8:17" (mountinfo, decimal) or "08:11" (maps, hex).
pub fn parse_dev(field: &[u8], radix: u32) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(field).ok()?;
    let (major, minor) = text.split_once(':')?;
    Some((
        u64::from_str_radix(major, radix).ok()?,
        u64::from_str_radix(minor, radix).ok()?,
    ))
}

/// Undoes the kernel's octal escapes (`\040` for a space).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MOUNTINFO: &[u8] = b"\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/a\n\
983 159 7:209 / /mnt/shared rw,relatime shared:357 - ext4 /dev/sdb rw\n\
36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 propagate_from:2 - ext3 /dev/root rw,errors=continue\n\
garbage line\n\
40 22 0:50 / /srv rw - nfs4 server:/export rw\n\
990 159 7:210 / /mnt/shared rw,relatime - xfs /dev/sdc rw\n";

    #[test]
    fn mountinfo_lines_are_read_with_escapes_and_optional_fields() {
        let entries = parse(MOUNTINFO);
        assert_eq!(entries.len(), 5);
        assert_eq!(
            entries[1],
            MountEntry {
                dev: (7, 209),
                target: PathBuf::from("/mnt/shared"),
                fstype: "ext4".into(),
                source: "/dev/sdb".into(),
            }
        );
        assert_eq!(entries[2].target, Path::new("/mnt/with space"));
        assert_eq!(entries[2].fstype, "ext3");
        assert_eq!(entries[2].source, "/dev/root");
        assert_eq!(entries[3].source, "server:/export");
    }

    #[test]
    fn the_topmost_mount_is_the_last_one_listed() {
        let top = parse(MOUNTINFO)
            .into_iter()
            .rev()
            .find(|e| e.target == Path::new("/mnt/shared"));
        assert_eq!(top.map(|e| e.dev), Some((7, 210)));
    }

    #[test]
    fn unescape_leaves_lone_backslashes_alone() {
        assert_eq!(unescape(b"a\\040b"), b"a b");
        assert_eq!(unescape(b"a\\\\b\\1"), b"a\\\\b\\1");
        assert_eq!(unescape(b"\\134"), b"\\");
    }

    #[test]
    fn device_numbers_in_both_spellings() {
        assert_eq!(parse_dev(b"7:209", 10), Some((7, 209)));
        assert_eq!(parse_dev(b"07:d1", 16), Some((7, 209)));
        assert_eq!(parse_dev(b"7-209", 10), None);
    }

    /// This process's own root filesystem is found mounted at /.
    #[test]
    fn the_mounts_of_the_root_device_include_the_root() {
        let text = fs::read("/proc/self/mountinfo").expect("own mountinfo");
        let root = parse(&text)
            .into_iter()
            .rev()
            .find(|e| e.target == Path::new("/"))
            .expect("a root mount");
        let seen = mounts_of(root.dev);
        assert!(seen.iter().any(|m| m.target == Path::new("/")), "{seen:?}");
        assert!(mounts_of((u64::MAX, u64::MAX)).is_empty());
    }
}
