//! Spare loop devices for the nodes. A container has no devtmpfs: only the
//! device nodes bound into it exist, so a node that attaches its export
//! needs loop devices of its own. Each is created in the kernel by opening
//! a fresh device number above the host's usual range, and its number is
//! written into the lab folder so a later run can detach it if this one
//! dies.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::cmd::succeed;

const FIRST: u32 = 200;
const LAST: u32 = 999;
const LOOP_MAJOR: u32 = 7;

/// Reserves `n` loop devices that no one else uses, creating them.
pub fn reserve(dir: &Path, n: usize) -> Vec<String> {
    let lock = File::create(crate::rootfs::cache_dir().join("loops.lock")).expect("loop lock");
    lock.lock().expect("lock loop allocation");
    let taken = taken();
    let mut out = Vec::new();
    let mut record = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("spare-loops"))
        .expect("spare loop record");
    for i in (FIRST..=LAST).filter(|i| !taken.contains(i)).take(n) {
        create(dir, i);
        let dev = format!("/dev/loop{i}");
        writeln!(record, "{dev}").expect("record spare loop");
        out.push(dev);
    }
    assert_eq!(out.len(), n, "no free loop device numbers left");
    out
}

/// Loop numbers in use by any lab (recorded) or existing with a backing
/// file; unattached ones that exist are reused.
fn taken() -> Vec<u32> {
    // Attached now (a leftover of a lab that died, or anyone else's).
    let mut used: Vec<u32> = fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("loop/backing_file").exists())
        .filter_map(|e| number(&format!("/dev/{}", e.file_name().to_string_lossy())))
        .collect();
    let tmp = std::env::temp_dir();
    for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        if !e.file_name().to_string_lossy().starts_with(crate::PREFIX) {
            continue;
        }
        let text = fs::read_to_string(e.path().join("spare-loops")).unwrap_or_default();
        used.extend(text.lines().filter_map(number));
    }
    used
}

fn number(dev: &str) -> Option<u32> {
    dev.trim().strip_prefix("/dev/loop")?.parse().ok()
}

/// Opening a device node of a loop number makes the kernel create it.
fn create(dir: &Path, i: u32) {
    let dev = format!("/dev/loop{i}");
    if Path::new(&dev).exists() {
        return;
    }
    let node = dir.join(format!("loop{i}.node"));
    succeed(
        Command::new("mknod")
            .arg(&node)
            .args(["b", &LOOP_MAJOR.to_string(), &i.to_string()]),
    );
    let _ = File::open(&node);
    let _ = fs::remove_file(&node);
    crate::cmd::wait_until(
        std::time::Duration::from_secs(5),
        &format!("{dev} to appear"),
        || Path::new(&dev).exists().then_some(()),
    );
}

/// Detaches the spare loops a dead lab recorded.
pub fn release_recorded(dir: &Path) {
    let text = fs::read_to_string(dir.join("spare-loops")).unwrap_or_default();
    for dev in text.lines() {
        detach(dev.trim());
    }
}

/// Detaches `dev`. A filesystem on it that a killed run left frozen (the
/// campaign's copy check) is thawed first, through a process that still
/// has it mounted: one blocked on it keeps its mount namespace, and the
/// device, alive. (A frozen filesystem no process has mounted any more
/// is not reached: `losetup -d` then only sets autoclear.)
pub fn detach(dev: &str) {
    if let Some(n) = number(dev) {
        thaw_mounts_of(n);
    }
    crate::cmd::quietly(Command::new("losetup").args(["-d", dev]));
}

/// `fsfreeze -u` on every mount of loop device `n`, reached through the
/// mounting process's root (/proc/PID/root), and only where that path
/// is still on the device (the PID may have gone and been reused).
fn thaw_mounts_of(n: u32) {
    use std::os::unix::fs::MetadataExt;
    let ours = format!("{LOOP_MAJOR}:{n}");
    let device = nix::sys::stat::makedev(u64::from(LOOP_MAJOR), u64::from(n));
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let info = fs::read_to_string(e.path().join("mountinfo")).unwrap_or_default();
        for line in info.lines() {
            // ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ...; octal escapes.
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(&devno), Some(point)) = (fields.get(2), fields.get(4)) else {
                continue;
            };
            if devno != ours {
                continue;
            }
            let path = format!("/proc/{pid}/root{}", unescape(point));
            if fs::metadata(&path).is_ok_and(|m| m.dev() == device) {
                crate::cmd::quietly(Command::new("fsfreeze").args(["-u", &path]));
            }
        }
    }
}

/// mountinfo's `\040`-style escapes undone.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(super::unescape("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(super::unescape("/plain"), "/plain");
        assert_eq!(super::unescape("/odd\\x"), "/odd\\x");
    }
}
