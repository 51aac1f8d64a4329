//! Leftovers of lab runs that died without cleaning up (a killed test, a
//! `duet-lab up` left running): recognised by the owner pid in their names
//! and removed before a new lab starts, so a crashed run never breaks the
//! next one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::PREFIX;
use crate::cmd::{output, quietly};

/// The owner pid in a name like `duetlab-1234-0-node1`.
fn owner(name: &str) -> Option<i32> {
    name.strip_prefix(PREFIX)?
        .strip_prefix('-')?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn stale(name: &str, everything: bool) -> bool {
    owner(name).is_some_and(|pid| everything || !alive(pid))
}

/// Removes what dead lab runs left behind.
pub fn remove_leftovers() {
    remove(false);
}

/// Removes every lab on the machine, running or not (`duet-lab down`).
pub fn remove_all() {
    remove(true);
}

fn remove(everything: bool) {
    kill_stale_containers(everything);
    let dirs: Vec<PathBuf> = fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| stale(&e.file_name().to_string_lossy(), everything))
        .map(|e| e.path())
        .collect();
    for dir in &dirs {
        eprintln!("lab: removing leftovers in {}", dir.display());
        kill_under(dir, "systemd-nspawn");
        wait_unmounted_containers(dir);
        crate::loops::release_recorded(dir);
        detach_loops_under(dir);
        unmount_under(dir);
        kill_under(dir, "nbdfuse");
        let _ = fs::remove_dir_all(dir);
    }
    for (name, path) in crate::cgroup::lab_cgroups() {
        if stale(&name, everything) {
            crate::cgroup::remove_tree(&path);
        }
    }
    let list = String::from_utf8_lossy(&output(Command::new("ip").args(["netns", "list"])).stdout)
        .into_owned();
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if stale(ns, everything) {
            eprintln!("lab: removing leftover namespace {ns}");
            quietly(Command::new("ip").args(["netns", "del", ns]));
        }
    }
}

/// SIGKILL to every `program` whose command line names something in `dir`.
fn kill_under(dir: &Path, program: &str) {
    let needle = dir.to_string_lossy().into_owned();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.starts_with(program) && cmdline.contains(&needle) {
            quietly(Command::new("kill").args(["-KILL", &entry.file_name().to_string_lossy()]));
        }
    }
}

/// The lab a process belongs to: the lab folder name in the upper dir of
/// its root overlay (a container's processes see their root as "/", so
/// the mount table is what tells).
fn lab_of(pid: &str) -> Option<String> {
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let root = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))?;
    let at = root.find(&format!(
        "upperdir={}/{PREFIX}-",
        std::env::temp_dir().display()
    ))?;
    let name = root[at..].split('/').nth(2)?;
    Some(name.to_string())
}

/// Pids of the container processes of the lab folder named `name`.
pub fn processes_of(name: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            (lab_of(&pid)? == name).then(|| pid.parse().ok())?
        })
        .collect()
}

/// Kills the containers of dead (or, with `everything`, all) labs: a
/// container outlives a killed nspawn, its init re-parented.
fn kill_stale_containers(everything: bool) {
    for _ in 0..100 {
        let mut any = false;
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if lab_of(&pid).is_some_and(|name| stale(&name, everything)) {
                quietly(Command::new("kill").args(["-KILL", &pid]));
                any = true;
            }
        }
        if !any {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// nspawn's containers die with it; the kernel takes a moment to reap them
/// and free their overlays (bounded).
fn wait_unmounted_containers(dir: &Path) {
    let root_mounts = |m: &str| {
        m.lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .any(|p| p.starts_with(&*dir.to_string_lossy()) && p.ends_with("/root"))
    };
    for _ in 0..100 {
        let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
        if !root_mounts(&mounts) {
            break;
        }
        unmount_under(dir);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn unmount_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&needle))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        quietly(Command::new("umount").arg(p));
    }
}

fn detach_loops_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let list = String::from_utf8_lossy(
        &output(Command::new("losetup").args([
            "--list",
            "--noheadings",
            "--output",
            "NAME,BACK-FILE",
        ]))
        .stdout,
    )
    .into_owned();
    for line in list.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(dev), Some(file)) = (parts.next(), parts.next())
            && file.starts_with(&needle)
        {
            crate::loops::detach(dev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_names() {
        assert_eq!(owner("duetlab-1234-0-node1"), Some(1234));
        assert_eq!(owner("duetlab-99-hub"), Some(99));
        assert_eq!(owner("duet-1234-0"), None);
        assert_eq!(owner("duetlabx-1"), None);
        assert!(!stale("duetlab-1-0", false), "pid 1 is alive");
        assert!(stale("duetlab-1-0", true));
    }
}
