//! A cgroup of its own for each node's container. systemd-nspawn with
//! `--keep-unit` puts the container in `payload` below its caller's
//! cgroup; every node started from one process shared that cgroup, and
//! their systemd instances managed the same directories (one node's
//! system.slice/apache2.service was the other's too). A unit stopped on
//! one node removed the cgroup of the same unit on the other (its umount
//! then failed with 219/CGROUP), and a stop on one node waited for the
//! other node's processes ("Processes still around after SIGKILL"). Each
//! node's nspawn now starts in a cgroup named after the node, in the
//! hierarchies systemd uses (name=systemd and the unified one on a
//! hybrid host, the unified one alone on a cgroup v2 host).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";

/// The hierarchies a container's systemd tracks its units in.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    ["systemd", "unified"]
        .iter()
        .map(|h| root.join(h))
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

/// A node's cgroups: one per boot (a crashed boot's may still hold a
/// process stuck in the kernel, and the next boot must not share it),
/// each with a directory per hierarchy.
#[derive(Debug, Clone)]
pub struct NodeCgroup {
    /// Unique on the machine, with the lab's prefix and owner pid, so that
    /// `cleanup` can remove a dead run's.
    base: String,
    boots: u32,
    /// The current boot's directories (none: boot without).
    dirs: Vec<PathBuf>,
}

impl NodeCgroup {
    pub fn new(base: &str) -> NodeCgroup {
        NodeCgroup {
            base: base.to_string(),
            boots: 0,
            dirs: Vec::new(),
        }
    }

    /// Removes the earlier boots' cgroups (what it can) and makes the
    /// next boot's. If they cannot be made, the node boots in the lab's
    /// cgroup as before, with a warning.
    pub fn next_boot(&mut self) {
        self.remove();
        self.boots += 1;
        let name = format!("{}-b{}", self.base, self.boots);
        let dirs: Vec<PathBuf> = hierarchies().into_iter().map(|h| h.join(&name)).collect();
        match dirs.iter().try_for_each(fs::create_dir_all) {
            Ok(()) => self.dirs = dirs,
            Err(e) => {
                eprintln!("lab: no cgroup of its own for {name} ({e}); it shares the lab's");
                self.dirs.clear();
            }
        }
    }

    /// Shell words (builtins only) that move the shell into the current
    /// boot's cgroups before it execs nspawn; the paths are passed as the
    /// script's arguments from `first` on.
    pub fn enter_script(&self, first: usize) -> String {
        (0..self.dirs.len())
            .map(|i| format!("echo $$ > \"${}/cgroup.procs\" && ", first + i))
            .collect()
    }

    /// The current boot's directories, for `enter_script`'s arguments.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Removes every boot's cgroups whose containers are gone (their own
    /// cgroups below first); a cgroup still holding processes stays.
    pub fn remove(&self) {
        for h in hierarchies() {
            for b in 1..=self.boots {
                remove_tree(&h.join(format!("{}-b{b}", self.base)));
            }
        }
    }
}

/// Removes every cgroup in `dir`, deepest first, for up to a second (a
/// cgroup empties a moment after its last process exits).
pub fn remove_tree(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let mut all = Vec::new();
        collect(dir, &mut all);
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let left = all.iter().filter(|d| fs::remove_dir(d).is_err()).count();
        if left == 0 || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect(&entry.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

/// Cgroups of labs, by name, in every hierarchy (for `cleanup`).
pub fn lab_cgroups() -> Vec<(String, PathBuf)> {
    hierarchies()
        .iter()
        .flat_map(|h| fs::read_dir(h).into_iter().flatten().flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}
