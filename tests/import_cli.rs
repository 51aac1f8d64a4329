//! `duetctl import heartbeat` on the classic files (tests/classic/, the
//! set every migrating user has): a config check-config accepts, the key
//! beside it, nothing existing overwritten, and bad input refused with
//! its file and line before anything is written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = std::env::temp_dir().join(format!(
            "duet-import-cli-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        for f in [
            "ha.cf",
            "haresources",
            "haresources.short",
            "haresources.script",
            "authkeys",
            "drbd.conf",
        ] {
            let from = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/classic")
                .join(f);
            std::fs::copy(&from, d.join(f)).expect("copy classic file");
        }
        std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn import(d: &Dir, haresources: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duetctl"))
        .args(["import", "heartbeat", "--ha-cf"])
        .arg(d.0.join("ha.cf"))
        .arg("--haresources")
        .arg(d.0.join(haresources))
        .arg("--authkeys")
        .arg(d.0.join("authkeys"))
        .arg("--drbd-conf")
        .arg(d.0.join("drbd.conf"))
        .arg("--out")
        .arg(d.0.join("out/duet.toml"))
        .args(extra)
        .output()
        .expect("run duetctl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_classic_files_import_into_a_checked_config_with_the_key_beside_it() {
    let d = Dir::new();
    let out = import(&d, "haresources", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(
            "imported and valid: cluster ha, 2 node(s), 1 link(s), 1 replica(s), 1 group(s)"
        ),
        "{said}"
    );
    assert!(said.contains("note: "), "the notes are shown: {said}");
    let check = Command::new(env!("CARGO_BIN_EXE_duetctl"))
        .arg("check-config")
        .arg(d.0.join("out/duet.toml"))
        .output()
        .expect("check-config");
    assert!(check.status.success(), "{}", text(&check));
    let key = d.0.join("out/duet.key");
    assert_eq!(
        std::fs::read_to_string(&key).expect("key"),
        "thisisasecretsha1key\n"
    );
    let mode = std::fs::metadata(&key)
        .expect("key metadata")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let config = std::fs::read_to_string(d.0.join("out/duet.toml")).expect("config");
    assert!(
        config.contains("# Carried over differently, or not at all:"),
        "{config}"
    );
    // docs/migrating.md shows this very output.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrating.md"))
            .expect("doc");
    let shown = doc
        .split("makes of them (its notes first):\n\n```\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the imported config in docs/migrating.md");
    let body = |t: &str| t[t.find("[cluster]").unwrap_or(0)..].to_string();
    assert_eq!(
        body(shown),
        body(&config),
        "docs/migrating.md shows another import"
    );

    // Again: nothing is overwritten without --force.
    std::fs::write(&key, "changed\n").expect("edit key");
    let out = import(&d, "haresources", &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("exists: not overwritten (--force to replace it)"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&key).expect("key"), "changed\n");
    let out = import(&d, "haresources", &["--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&key).expect("key"),
        "thisisasecretsha1key\n"
    );
}

#[test]
fn an_address_without_prefix_and_no_route_for_it_is_refused_and_nothing_written() {
    // 198.51.100.0/24 is a documentation range: no route of the test host
    // holds it, so the short form cannot be placed.
    let d = Dir::new();
    let out = import(&d, "haresources.short", &[]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("haresources.short:1: 198.51.100.10: no route of this host contains it"),
        "{said}"
    );
    assert!(
        said.contains("IPaddr::198.51.100.10/PREFIX/INTERFACE"),
        "{said}"
    );
    assert!(!d.0.join("out").join("duet.toml").exists());
    assert!(!d.0.join("out").join("duet.key").exists());
}

#[test]
fn bad_lines_are_reported_with_file_and_line_for_every_file_at_once() {
    let d = Dir::new();
    std::fs::write(
        d.0.join("ha.cf"),
        "node node1\nkeepalive soon\nbcast eth1\n",
    )
    .expect("ha.cf");
    std::fs::write(
        d.0.join("haresources"),
        "node1 IPaddr::198.51.100.300/24/eth0\n",
    )
    .expect("haresources");
    let out = import(&d, "haresources", &[]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("ha.cf:2: "), "{said}");
    assert!(said.contains("haresources:1: "), "{said}");
    assert!(!d.0.join("out").exists(), "nothing written");
    let out = import(&d, "haresources", &["--node-address", "node2"]);
    assert!(
        text(&out).contains("--node-address node2: expected NODE=IP"),
        "{}",
        text(&out)
    );
}

#[test]
fn latin1_comments_and_a_byte_order_mark_import_but_a_latin1_key_is_refused() {
    let d = Dir::new();
    let mut ha = b"# \xdcberwachung der Knoten\n".to_vec();
    ha.extend(std::fs::read(d.0.join("ha.cf")).expect("ha.cf"));
    std::fs::write(d.0.join("ha.cf"), ha).expect("write");
    let mut hr = "\u{feff}".as_bytes().to_vec();
    hr.extend(std::fs::read(d.0.join("haresources")).expect("haresources"));
    std::fs::write(d.0.join("haresources"), hr).expect("write");
    let out = import(&d, "haresources", &[]);
    assert!(out.status.success(), "{}", text(&out));

    std::fs::write(d.0.join("authkeys"), b"auth 1\n1 sha1 geheim\xdf\n").expect("write");
    let out = import(&d, "haresources", &["--force"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("authkeys:2: not UTF-8 text"),
        "{}",
        text(&out)
    );
}

#[test]
fn includes_are_found_from_the_folder_of_the_file_that_includes_them() {
    let d = Dir::new();
    let drbd = std::fs::read_to_string(d.0.join("drbd.conf")).expect("drbd.conf");
    let at = drbd.find("resource r0").expect("resource");
    let inc = d.0.join("drbd.d");
    std::fs::create_dir_all(&inc).expect("drbd.d");
    // drbd.d/global_common.conf includes common.inc from drbd.d itself.
    std::fs::write(inc.join("global_common.conf"), "include \"common.inc\";\n").expect("write");
    std::fs::write(inc.join("common.inc"), "common { protocol C; }\n").expect("write");
    std::fs::write(inc.join("r0.res"), &drbd[at..]).expect("write");
    std::fs::write(inc.join("r0.res.bak"), "garbage {").expect("write");
    std::fs::write(
        d.0.join("drbd.conf"),
        "include \"drbd.d/global_common.conf\";\ninclude \"drbd.d/r[0-9].res\";\n",
    )
    .expect("write");
    let out = import(&d, "haresources", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let config = std::fs::read_to_string(d.0.join("out/duet.toml")).expect("config");
    assert!(config.contains("name = \"r0\""), "{config}");
}

#[test]
fn an_out_that_is_a_folder_or_an_input_and_a_device_to_read_are_refused_before_anything_is_written()
{
    let d = Dir::new();
    let run = |out: &Path, drbd: &Path| {
        Command::new(env!("CARGO_BIN_EXE_duetctl"))
            .args(["import", "heartbeat", "--force", "--ha-cf"])
            .arg(d.0.join("ha.cf"))
            .arg("--haresources")
            .arg(d.0.join("haresources"))
            .arg("--authkeys")
            .arg(d.0.join("authkeys"))
            .arg("--drbd-conf")
            .arg(drbd)
            .arg("--out")
            .arg(out)
            .output()
            .expect("run duetctl")
    };
    let drbd = d.0.join("drbd.conf");
    std::fs::create_dir_all(d.0.join("etc/duet")).expect("dir");
    std::fs::write(d.0.join("etc/duet.key"), "old\n").expect("key");
    for (out, says) in [
        (d.0.join("etc/duet"), "a folder"),
        (d.0.join("ha.cf"), "one of the files being imported"),
    ] {
        let o = run(&out, &drbd);
        assert!(!o.status.success());
        assert!(text(&o).contains(says), "{}", text(&o));
    }
    assert_eq!(
        std::fs::read_to_string(d.0.join("etc/duet.key")).expect("key"),
        "old\n"
    );
    assert!(
        std::fs::read_to_string(d.0.join("ha.cf"))
            .expect("ha.cf")
            .contains("keepalive")
    );
    // Nothing read to the end that is not a file.
    std::fs::write(&drbd, "include \"/dev/zero\";\n").expect("drbd.conf");
    let o = run(&d.0.join("out/duet.toml"), &drbd);
    assert!(!o.status.success());
    assert!(text(&o).contains("not a regular file"), "{}", text(&o));
}

#[test]
fn a_node_given_two_addresses_of_one_family_is_refused() {
    let d = Dir::new();
    let out = import(
        &d,
        "haresources",
        &[
            "--node-address",
            "node1=203.0.113.1",
            "--node-address",
            "node1=203.0.113.2",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("node1 has an address of this family already"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_dangling_link_an_include_pattern_matches_is_named_not_skipped() {
    let d = Dir::new();
    let drbd = std::fs::read_to_string(d.0.join("drbd.conf")).expect("drbd.conf");
    let inc = d.0.join("drbd.d");
    std::fs::create_dir_all(&inc).expect("drbd.d");
    std::fs::write(
        inc.join("r0.res"),
        &drbd[drbd.find("resource r0").expect("r0")..],
    )
    .expect("write");
    std::os::unix::fs::symlink(inc.join("gone.res"), inc.join("r1.res")).expect("symlink");
    std::fs::write(d.0.join("drbd.conf"), "include \"drbd.d/*.res\";\n").expect("write");
    let out = import(&d, "haresources", &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("r1.res"), "{}", text(&out));
}
