//! The record, in the state directory, that a replica's disk failed on
//! this node and has not been synced since. The disk's own metadata may
//! not say so (a failing disk takes no writes, and writes it answered may
//! never have reached its media), so a restarted daemon must not trust
//! it again: the core attaches it Inconsistent and syncs it whole.

use std::path::PathBuf;

use crate::daemon::state_dir;

pub struct Record {
    path: Option<PathBuf>,
    saved: bool,
}

impl Record {
    /// The record of `replica`; none without a state directory (then the
    /// distrust lasts as long as this run).
    pub fn open(replica: &str) -> Record {
        let path = state_dir::state_file(&format!("{replica}.disk-failed"));
        let saved = path.as_ref().is_some_and(|p| p.exists());
        Record { path, saved }
    }

    pub fn saved(&self) -> bool {
        self.saved
    }

    /// Makes the record say `distrusted`; cheap when it already does.
    pub fn keep(&mut self, distrusted: bool, replica: &str) {
        if distrusted == self.saved {
            return;
        }
        // Tried once per change: a state directory that fails is reported,
        // not retried at every input.
        self.saved = distrusted;
        let Some(path) = &self.path else { return };
        let result = if distrusted {
            let text = format!(
                "The disk of replica {replica} failed on this node: it is attached Inconsistent and synced whole from its peer.\n"
            );
            state_dir::write_atomically(path, text.as_bytes())
        } else {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        };
        if let Err(e) = result {
            tracing::error!(replica, path = %path.display(), "cannot record whether the disk failed here: {e}");
        }
    }
}
