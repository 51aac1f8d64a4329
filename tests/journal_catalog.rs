//! systemd/duet.catalog as systemd reads it: journalctl builds its catalog
//! database from the file in a root of its own and lists every entry, each
//! MESSAGE_ID duetd logs with its subject.

use std::process::Command;

fn journalctl(root: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("journalctl")
        .arg(format!("--root={}", root.display()))
        .args(args)
        .output()
        .expect("journalctl (scripts/install-deps.sh installs systemd)");
    assert!(
        out.status.success(),
        "journalctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A folder removed when dropped, also when the test fails.
struct Root(std::path::PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn systemd_reads_every_entry_of_the_catalog() {
    let guard = Root(std::env::temp_dir().join(format!("duet-catalog-{}", std::process::id())));
    let root = guard.0.as_path();
    let catalog = root.join("usr/lib/systemd/catalog");
    std::fs::create_dir_all(&catalog).expect("catalog dir");
    std::fs::create_dir_all(root.join("var/lib/systemd/catalog")).expect("database dir");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/duet.catalog"),
        catalog.join("duet.catalog"),
    )
    .expect("copy the catalog");
    journalctl(root, &["--update-catalog"]);
    let listed = journalctl(root, &["--list-catalog"]);
    for id in duet::host::message_ids::ALL {
        let line = listed
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in the catalog systemd read:\n{listed}"));
        assert!(line.contains("duet: "), "{line}");
    }
    assert_eq!(
        listed.lines().count(),
        duet::host::message_ids::ALL.len(),
        "{listed}"
    );
}
