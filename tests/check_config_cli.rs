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
