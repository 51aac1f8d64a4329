//! The processes keeping a mount busy, found as `fuser -m` finds them: a
//! process holds the mount when its working directory, root, executable,
//! an open file or a mapped file is on the mount's filesystem (same device
//! number) or at or under the mountpoint (a mount nested below it).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::POLL;
use crate::host::mountinfo::parse_dev;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    /// The command name (/proc/PID/comm).
    pub name: String,
}

/// "pid 812 (sleep), pid 815 (bash)".
pub fn list(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(|h| format!("pid {} ({})", h.pid, h.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every process holding the mount of device `dev` at `target`, except
/// this process and PID 1. Processes that end or cannot be read while
/// scanning are passed over.
pub fn scan(target: &Path, dev: (u64, u64)) -> Vec<Holder> {
    scan_all(target, dev).0
}

/// `scan`, and how many processes could not be looked into (their open
/// files are hidden from a process without CAP_SYS_PTRACE).
pub fn scan_all(target: &Path, dev: (u64, u64)) -> (Vec<Holder>, usize) {
    let own = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return (Vec::new(), 0);
    };
    let mut found = Vec::new();
    let mut hidden = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || pid == 1 {
            continue;
        }
        let proc_dir = entry.path();
        if fs::read_link(proc_dir.join("cwd"))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
        {
            hidden += 1;
        }
        if uses(&proc_dir, target, dev) {
            let name = fs::read_to_string(proc_dir.join("comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_else(|_| "?".to_string());
            if let Ok(pid) = i32::try_from(pid) {
                found.push(Holder { pid, name });
            }
        }
    }
    found.sort_by_key(|h| h.pid);
    (found, hidden)
}

fn uses(proc_dir: &Path, target: &Path, dev: (u64, u64)) -> bool {
    let mut links = vec![
        proc_dir.join("cwd"),
        proc_dir.join("root"),
        proc_dir.join("exe"),
    ];
    if let Ok(fds) = fs::read_dir(proc_dir.join("fd")) {
        links.extend(fds.flatten().map(|fd| fd.path()));
    }
    if links.iter().any(|link| link_uses(link, target, dev)) {
        return true;
    }
    fs::read(proc_dir.join("maps")).is_ok_and(|maps| maps_use(&maps, target, dev))
}

/// A /proc magic link: followed, its object's device; read, its path.
fn link_uses(link: &Path, target: &Path, dev: (u64, u64)) -> bool {
    let same_dev = fs::metadata(link).is_ok_and(|m| {
        (
            nix::sys::stat::major(m.dev()),
            nix::sys::stat::minor(m.dev()),
        ) == dev
    });
    same_dev || fs::read_link(link).is_ok_and(|p| p.starts_with(target))
}

/// /proc/PID/maps: `addr perms offset 08:11 inode   /path`.
fn maps_use(maps: &[u8], target: &Path, dev: (u64, u64)) -> bool {
    use std::os::unix::ffi::OsStrExt;
    maps.split(|&b| b == b'\n').any(|line| {
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let Some(device) = fields.nth(3) else {
            return false;
        };
        if parse_dev(device, 16) == Some(dev) && dev != (0, 0) {
            return true;
        }
        let _inode = fields.next();
        let rest: Vec<&[u8]> = fields.collect();
        let path = rest.join(&b' ');
        !path.is_empty() && Path::new(std::ffi::OsStr::from_bytes(&path)).starts_with(target)
    })
}

/// Ends the holders: SIGTERM, up to `term_grace` for them to go, SIGKILL
/// to what still holds the mount, up to `kill_grace` more. Returns those
/// that outlived it all.
pub async fn end(
    target: &Path,
    dev: (u64, u64),
    term_grace: Duration,
    kill_grace: Duration,
) -> Vec<Holder> {
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        let holders = scan(target, dev);
        if holders.is_empty() {
            return holders;
        }
        for h in &holders {
            // Gone already is fine.
            let _ = kill(Pid::from_raw(h.pid), signal);
        }
        let grace = if signal == Signal::SIGTERM {
            term_grace
        } else {
            kill_grace
        };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !scan(target, dev).is_empty() {
            tokio::time::sleep(POLL * 2).await;
        }
    }
    scan(target, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_match_by_device_or_by_path() {
        let maps = b"\
55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1234    /usr/bin/sleep\n\
7f00-7f01 rw-p 00000000 00:00 0 \n\
7f10-7f11 r--p 00000000 07:d1 12                       /mnt/shared/lib with space.so (deleted)\n";
        assert!(maps_use(maps, Path::new("/elsewhere"), (7, 209)));
        assert!(maps_use(maps, Path::new("/mnt/shared"), (9, 9)));
        assert!(!maps_use(maps, Path::new("/mnt/other"), (9, 9)));
        // Anonymous mappings (device 00:00) hold nothing.
        assert!(!maps_use(
            b"7f00-7f01 rw-p 00000000 00:00 0\n",
            Path::new("/x"),
            (0, 0)
        ));
    }

    /// A folder and a child working in it, both gone afterwards, also
    /// when the test fails.
    struct Scratch {
        dir: std::path::PathBuf,
        child: Option<std::process::Child>,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if let Some(child) = &mut self.child {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_process_working_under_the_mountpoint_is_found() {
        let mut scratch = Scratch {
            dir: std::env::temp_dir().join(format!("duet-holders-{}", std::process::id())),
            child: None,
        };
        let sub = scratch.dir.join("sub");
        fs::create_dir_all(&sub).expect("test folder");
        let child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&sub)
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        scratch.child = Some(child);
        // No filesystem has device 0:0, so only the path can match.
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let found = scan(&scratch.dir, (0, 0));
            if found.iter().any(|h| h.pid == pid) || Instant::now() >= deadline {
                break found;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let me = found.iter().find(|h| h.pid == pid);
        assert_eq!(me.map(|h| h.name.as_str()), Some("sleep"), "{found:?}");
        let own = i32::try_from(std::process::id()).expect("own pid");
        assert!(found.iter().all(|h| h.pid != own && h.pid != 1));
        let elsewhere = scratch.dir.join("elsewhere");
        assert!(!scan(&elsewhere, (0, 0)).iter().any(|h| h.pid == pid));
    }

    #[test]
    fn holders_are_listed_in_words() {
        let hs = [
            Holder {
                pid: 812,
                name: "sleep".into(),
            },
            Holder {
                pid: 815,
                name: "bash".into(),
            },
        ];
        assert_eq!(list(&hs), "pid 812 (sleep), pid 815 (bash)");
    }
}
