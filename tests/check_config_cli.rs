//! `duetctl check-config` as an administrator runs it: exit codes and the
//! file:line:column errors.

use std::process::Command;

fn check(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_duetctl"))
        .arg("check-config")
        .arg(path)
        .output()
        .expect("duetctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_examples_are_valid_and_a_broken_copy_is_placed_by_line() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in ["examples/two-node.toml", "examples/three-node.toml"] {
        let (code, text) = check(&root.join(example));
        assert_eq!(code, Some(0), "{example}: {text}");
        assert!(text.contains("valid: cluster lab"), "{text}");
        assert!(text.contains("1 replica(s), 1 group(s)"), "{text}");
        assert!(!text.contains("warning"), "{example}: {text}");
    }
    let good = std::fs::read_to_string(root.join("examples/two-node.toml")).expect("example");
    let bad = good.replacen("deadtime = \"1s\"", "deadtime = \"100ms\"", 1);
    assert_ne!(bad, good);
    let line = bad
        .lines()
        .position(|l| l.contains("deadtime = \"100ms\""))
        .expect("edited line")
        + 1;
    let dir = std::env::temp_dir().join(format!("duet-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("broken.toml");
    std::fs::write(&path, bad).expect("write");
    let (code, text) = check(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(1), "{text}");
    let want = format!("{}:{line}:", path.display());
    assert!(text.contains(&want), "expected {want} in: {text}");
    assert!(
        text.contains("timings.deadtime") && text.contains("must be longer than warntime"),
        "{text}"
    );
}

#[test]
fn a_broken_group_resource_is_placed_by_line_with_what_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let good = std::fs::read_to_string(root.join("examples/two-node.toml")).expect("example");
    // Two problems in one run: a bare service name and a missing prefix.
    let bad = good
        .replacen("unit = \"apache2.service\"", "unit = \"apache2\"", 1)
        .replacen("ip = \"198.51.100.10/24\"", "ip = \"198.51.100.10\"", 1);
    let line = |needle: &str| {
        bad.lines()
            .position(|l| l.contains(needle))
            .expect("edited line")
            + 1
    };
    let dir = std::env::temp_dir().join(format!("duet-check-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("broken.toml");
    std::fs::write(&path, &bad).expect("write");
    let (code, text) = check(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(1), "{text}");
    let file = path.display();
    let want = [
        format!(
            "{file}:{}:1: group[0].resource[2].ip: \"198.51.100.10\" has no prefix length \
             (valid: the address with the prefix length of its network, e.g. \"198.51.100.10/24\")",
            line("ip = ")
        ),
        format!(
            "{file}:{}:1: group[0].resource[3].unit: \"apache2\" has no unit type (valid: \
             \"apache2.service\", or the name with another type: .service, .socket, .target, \
             .mount, .automount, .swap, .path, .timer)",
            line("unit = ")
        ),
    ];
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got, want, "{text}");
}
