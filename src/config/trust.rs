//! duetd runs what its config names (scripts, units, fence commands, OCF
//! agents) as root, so a config someone else may change is a way to root:
//! duetd refuses to start on one, as it does on an open key file. The
//! file itself, or its folder (where it could be replaced), writable by
//! group or others, or either owned by another user than root or duetd's
//! own, is refused. A symlink is followed (NixOS links /etc into the
//! store); a folder with the sticky bit lets nobody replace a file of
//! someone else's.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot check the config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the config {path} may be changed by group or others (mode {mode:04o}), and duetd runs what it names as root: chmod go-w {path}"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error(
        "the config {path} belongs to uid {owner}, who could change it, and duetd runs what it names as root: chown {expected} {path}"
    )]
    Owner {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
}

/// Whether `config` may be trusted by a daemon running as `me`.
pub fn check(config: &Path, me: u32) -> Result<(), TrustError> {
    check_one(config, me, false)?;
    let folder = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_one(folder, me, true)
}

fn check_one(path: &Path, me: u32, folder: bool) -> Result<(), TrustError> {
    let meta = std::fs::metadata(path).map_err(|source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    let sticky = folder && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(TrustError::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Err(TrustError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            expected: me,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("duet-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        d
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_config_others_may_change_is_refused() {
        let d = dir("mode");
        let file = d.join("duet.toml");
        std::fs::write(&file, "").expect("write");
        chmod(&file, 0o644);
        assert!(check(&file, 0).is_ok());
        chmod(&file, 0o664);
        let e = check(&file, 0).expect_err("group-writable accepted");
        assert!(matches!(e, TrustError::Writable { mode: 0o664, .. }), "{e}");
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        chmod(&file, 0o640);
        // Its folder: someone could put another file in its place.
        chmod(&d, 0o777);
        assert!(matches!(check(&file, 0), Err(TrustError::Writable { .. })));
        chmod(&d, 0o1777);
        assert!(
            check(&file, 0).is_ok(),
            "a sticky folder lets nobody replace it"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_config_another_user_owns_is_refused() {
        let d = dir("owner");
        let file = d.join("duet.toml");
        std::fs::write(&file, "").expect("write");
        // Tests run as root (the lab needs it); nobody's file:
        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
        let e = check(&file, 0).expect_err("nobody's config accepted");
        assert!(matches!(e, TrustError::Owner { owner: 65534, .. }), "{e}");
        assert!(e.to_string().contains("chown 0 "), "{e}");
        // The user duetd runs as may own it (a session-bus trial).
        assert!(check(&file, 65534).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlink_is_followed() {
        let d = dir("link");
        let target = d.join("store-duet.toml");
        std::fs::write(&target, "").expect("write");
        chmod(&target, 0o444);
        let link = d.join("duet.toml");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(check(&link, 0).is_ok());
        chmod(&target, 0o666);
        assert!(matches!(check(&link, 0), Err(TrustError::Writable { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }
}
