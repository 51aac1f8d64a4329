//! The Nix files (issue 8): every one parses, the TOML renderer of the
//! NixOS module writes what TOML readers read back as the same value, and
//! the VM tests' cluster, rendered as the module renders it, passes
//! `duetctl check-config`. Needs nix-instantiate (Debian's nix-bin,
//! installed by scripts/install-deps.sh); nixpkgs is not needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nix_instantiate(args: &[&str]) -> Output {
    // One at a time: on a machine where Nix never ran, the first calls
    // make its state, and two at once race ("File exists").
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Command::new("nix-instantiate")
        .args(args)
        .current_dir(root())
        // No builds happen here: Debian's default nixbld group need not exist.
        .env("NIX_CONFIG", "build-users-group =")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run nix-instantiate ({e}): install nix-bin (scripts/install-deps.sh)")
        })
}

/// The JSON of a Nix expression, evaluated strictly.
fn eval_json(expr: &str) -> serde_json::Value {
    let out = nix_instantiate(&["--eval", "--strict", "--json", "--expr", expr]);
    assert!(
        out.status.success(),
        "nix-instantiate --eval {expr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nix-instantiate prints JSON")
}

/// `expr` rendered by nix/to-toml.nix.
fn render(expr: &str) -> String {
    let text = eval_json(&format!("import ./nix/to-toml.nix ({expr})"));
    text.as_str()
        .expect("the renderer gives a string")
        .to_string()
}

fn nix_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                nix_files(&path, found);
            }
        } else if name.ends_with(".nix") {
            found.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    nix_files(&root(), &mut files);
    for want in [
        "flake.nix",
        "nix/package.nix",
        "nix/module.nix",
        "nix/to-toml.nix",
        "nixos-tests/two-node.nix",
        "nixos-tests/split-brain.nix",
    ] {
        assert!(files.contains(&root().join(want)), "{want} is missing");
    }
    for f in &files {
        let out = nix_instantiate(&["--parse", &f.to_string_lossy()]);
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Nulls are left out of TOML (an unset optional option): the value a
/// reader should get back.
fn without_nulls(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.into_iter()
                .filter(|v| !v.is_null())
                .map(without_nulls)
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn the_toml_renderer_writes_what_toml_reads_back() {
    let value = r#"{
        cluster = { name = "lab"; key-file = "/run/credentials/duetd.service/cluster.key"; unset = null; };
        "key with spaces.and dots" = "quote \" backslash \\ newline \n tab \t dollar \${x} unicode é ✓";
        numbers = { int = 42; negative = -7; float = 1.5; yes = true; no = false; };
        empty = { list = [ ]; table = { }; };
        link = [ { name = "crossover"; port = 694; } { name = "public"; } ];
        node = [ { name = "node1"; address = { crossover = "203.0.113.1"; public = "198.51.100.1"; }; } ];
        group = [ {
          name = "web";
          resource = [
            { replica = "r0"; }
            { ocf = "heartbeat:IPaddr2"; params = { ip = "198.51.100.10"; cidr_netmask = "24"; }; }
          ];
          deep = { deeper = { deepest = [ 1 2 ]; }; };
        } ];
        inline = [ [ 1 2 ] [ "a" ] { a = 1; b = [ { c = "d"; } ]; } ];
    }"#;
    let text = render(value);
    let read: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let read = serde_json::to_value(read).expect("TOML as JSON");
    let want = without_nulls(eval_json(value));
    assert_eq!(read, want, "rendered:\n{text}");
    // The order of a list is kept: duet matches [[link]] by its index.
    assert!(text.find("crossover").unwrap_or(usize::MAX) < text.find("public").unwrap_or(0));
    // A node's address reads as in docs/config.md.
    assert!(
        text.contains("address = { crossover = \"203.0.113.1\", public = \"198.51.100.1\" }"),
        "{text}"
    );
}

#[test]
fn the_renderer_refuses_what_toml_cannot_hold() {
    for bad in ["[ 1 2 ]", "{ f = x: x; }"] {
        let out = nix_instantiate(&[
            "--eval",
            "--strict",
            "--expr",
            &format!("import ./nix/to-toml.nix ({bad})"),
        ]);
        assert!(!out.status.success(), "{bad} rendered");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("to-toml:"), "{bad}: {err}");
    }
}

/// The VM tests' Python scripts (nixos-tests/common.py and each test's
/// own part) have no syntax error and use no undefined name, the test
/// driver's globals aside.
#[test]
fn the_vm_test_scripts_pass_pyflakes() {
    const DRIVER: &str = "start_all = subtest = node1 = node2 = witness = client = None\n";
    for test in ["two-node", "split-brain"] {
        let script = eval_json(&format!(
            "(import ./nixos-tests/{test}.nix {{ }}).testScript"
        ));
        let script = script.as_str().expect("testScript is a string");
        assert!(script.contains("prepare_cluster()"), "{test}: {script}");
        let dir = std::env::temp_dir().join(format!("duet-pyflakes-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("script.py");
        std::fs::write(&file, format!("{DRIVER}{script}")).expect("write script");
        let out = Command::new("pyflakes3")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run pyflakes3 ({e}): install pyflakes3 (scripts/install-deps.sh)")
            });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{test}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The VM tests' cluster as the module writes it: the key as the
/// credential of services.duet.keyFile (the module's default key-file).
#[test]
fn the_vm_tests_cluster_passes_check_config() {
    let text = render(
        r#"let c = import ./nixos-tests/cluster.nix; in c // {
             cluster = c.cluster // { key-file = "/run/credentials/duetd.service/cluster.key"; };
           }"#,
    );
    let dir = std::env::temp_dir().join(format!("duet-nix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("duet.toml");
    std::fs::write(&file, &text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_duetctl"))
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run duetctl");
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("valid: cluster vmtest, 3 node(s), 2 link(s), 1 replica(s), 1 group(s)"),
        "{said}"
    );
}
