//! What duetd keeps in its state directory (systemd's StateDirectory=):
//! the incarnation of its last run, and the administrators' wishes for
//! groups (stop, start, move), so that a group stopped by hand stays stopped when
//! every node restarts at once (no peer is left to tell). A node that
//! restarts while others run hears their newer wishes in their heartbeats.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::resources::intent::Intent;
use crate::types::NodeId;

const FILE: &str = "group-intents.json";

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    group: String,
    version: u64,
    origin: u16,
    stopped: bool,
    moved_to: Option<u16>,
}

/// Where the wishes live: systemd's StateDirectory= (STATE_DIRECTORY);
/// none when duetd runs without one (then they live in memory and in the
/// other nodes' heartbeats only).
pub fn location() -> Option<PathBuf> {
    state_file(FILE)
}

/// A file in systemd's StateDirectory= (STATE_DIRECTORY), if there is one.
pub fn state_file(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("STATE_DIRECTORY")?;
    let first = std::env::split_paths(&dirs).next()?;
    Some(first.join(name))
}

/// Replaces `path` through a temporary file and a rename, so a crash
/// leaves the old or the new content, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The saved wishes by group name. A missing file is no wish; a broken
/// one is reported and ignored (the configuration's defaults apply).
pub fn load(path: &Path) -> Vec<(String, Intent)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the saved group wishes: {e}");
            return Vec::new();
        }
    };
    match serde_json::from_str::<Vec<Saved>>(&text) {
        Ok(list) => list
            .into_iter()
            .map(|s| {
                let intent = Intent {
                    version: s.version,
                    origin: NodeId(s.origin),
                    stopped: s.stopped,
                    moved_to: s.moved_to.map(NodeId),
                };
                (s.group, intent)
            })
            .collect(),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring the saved group wishes: {e}");
            Vec::new()
        }
    }
}

/// Writes the wishes (atomically).
pub fn save(path: &Path, wishes: &[(String, Intent)]) -> std::io::Result<()> {
    let list: Vec<Saved> = wishes
        .iter()
        .map(|(group, i)| Saved {
            group: group.clone(),
            version: i.version,
            origin: i.origin.0,
            stopped: i.stopped,
            moved_to: i.moved_to.map(|n| n.0),
        })
        .collect();
    let text = serde_json::to_string_pretty(&list).map_err(std::io::Error::other)?;
    write_atomically(path, text.as_bytes())
}

/// This run's incarnation: from the wall clock, but above the last run's
/// (kept in the state directory), so that a clock set back does not make
/// the peers refuse this node's heartbeats as replays.
pub fn incarnation(wall_us: u64) -> crate::types::Incarnation {
    use crate::types::Incarnation;
    let Some(path) = state_file("incarnation") else {
        return Incarnation(wall_us);
    };
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(Incarnation);
    let next = Incarnation::after(wall_us, last);
    if last.is_some_and(|l| next.0 != wall_us && l.0 >= wall_us) {
        tracing::warn!(
            "the wall clock is behind the last run's start: incarnation {} instead of {wall_us}",
            next.0
        );
    }
    if let Err(e) = write_atomically(&path, format!("{}\n", next.0).as_bytes()) {
        tracing::warn!(path = %path.display(), "cannot save the incarnation: {e}");
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wishes_survive_a_save_and_load_and_a_broken_file_is_no_wish() {
        let dir = crate::testkit::TempDir::new("intents");
        let path = dir.0.join(FILE);
        assert!(load(&path).is_empty());
        let wish = Intent::default().next(NodeId(1), true, Some(NodeId(0)));
        save(&path, &[("web".to_string(), wish)]).expect("save");
        assert_eq!(load(&path), vec![("web".to_string(), wish)]);
        std::fs::write(&path, "{not json").expect("write");
        assert!(load(&path).is_empty());
    }
}
