use super::*;
use crate::import::{authkeys, drbdconf, hacf, haresources};

const HA_CF: &str = "autojoin none\nbcast eth1\nwarntime 5\ndeadtime 10\ninitdead 30\nkeepalive 2\nlogfacility local0\nnode node1.example.org\nnode node2.example.org\nping 198.51.100.254\nrespawn hacluster /usr/lib/heartbeat/ipfail\nauto_failback off\n";
const HARESOURCES: &str = "node1.example.org drbddisk::r0 \\\n    Filesystem::/dev/drbd1::/mnt/shared::ext3 \\\n    IPaddr::198.51.100.10/24/eth0 apache2\n";
const AUTHKEYS: &str = "auth 2\n1 crc\n2 sha1 thisisasecretsha1key\n3 md5 thisisasecretmd5key\n";
const DRBD: &str = "global {\n    usage-count no;\n}\ncommon {\n    protocol C;\n}\nresource r0 {\n    on node1.example.org {\n        device    /dev/drbd1;\n        disk      /dev/sdb1;\n        address   203.0.113.1:7789;\n        meta-disk internal;\n    }\n    on node2.example.org {\n        device    /dev/drbd1;\n        disk      /dev/sdb1;\n        address   203.0.113.2:7789;\n        meta-disk internal;\n    }\n    net {\n        after-sb-0pri discard-younger-primary;\n        after-sb-1pri consensus;\n        after-sb-2pri disconnect;\n    }\n}\n";

struct Files {
    ha: hacf::HaCf,
    keys: authkeys::AuthKeys,
    groups: Vec<haresources::Group>,
    drbd: drbdconf::DrbdConf,
}

fn files(ha_cf: &str, haresources: &str, drbd: &str) -> Files {
    let mut no_include =
        |p: &str| -> Result<Vec<(String, String)>, String> { Err(format!("no include here: {p}")) };
    Files {
        ha: hacf::parse(ha_cf, "ha.cf").expect("ha.cf"),
        keys: authkeys::parse(AUTHKEYS, "authkeys", Some(0o600)).expect("authkeys"),
        groups: haresources::parse(haresources, "haresources").expect("haresources"),
        drbd: drbdconf::parse(drbd, "drbd.conf", &mut no_include).expect("drbd.conf"),
    }
}

fn run(
    f: &Files,
    routes: &[Route],
    addresses: &[(String, IpAddr)],
) -> Result<Imported, Vec<ImportError>> {
    let c = Classic {
        ha_cf: &f.ha,
        ha_cf_name: "ha.cf",
        authkeys: Some(&f.keys),
        authkeys_name: "authkeys",
        groups: &f.groups,
        haresources_name: "haresources",
        drbd: Some(&f.drbd),
        drbd_name: "drbd.conf",
    };
    let o = Options {
        cluster_name: "ha",
        key_file: "duet.key",
        routes,
        addresses,
        resource_d: &[],
        init_d: &[],
    };
    convert(&c, &o)
}

/// The error that starts with `start` (file:line and the first words).
fn said_line(e: &[ImportError], start: &str) -> String {
    e.iter()
        .map(ToString::to_string)
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no error starting {start:?}: {e:#?}"))
}

/// These files refused, with an error starting `start`: that error.
fn refused(ha_cf: &str, haresources: &str, drbd: &str, start: &str) -> String {
    let e = run(&files(ha_cf, haresources, drbd), &[], &[]).expect_err(start);
    said_line(&e, start)
}

/// The imported text, loaded by duet's own config parser (with the key
/// beside it), so the test checks what check-config would.
fn load(i: &Imported) -> crate::config::Config {
    let dir = std::env::temp_dir().join(format!(
        "duet-import-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("duet.toml");
    std::fs::write(&path, &i.toml).expect("write");
    let loaded = crate::config::load(&path);
    let _ = std::fs::remove_dir_all(&dir);
    match loaded {
        Ok(l) => l.config,
        Err(e) => panic!("{e}\n{}", i.toml),
    }
}

#[test]
fn the_classic_files_import_into_a_config_duet_accepts() {
    let f = files(HA_CF, HARESOURCES, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    let c = load(&i);
    assert_eq!(c.cluster.name, "ha");
    assert_eq!(i.key, Key::Imported(b"thisisasecretsha1key".to_vec()));
    let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1.example.org", "node2.example.org"]);
    assert_eq!(c.links.len(), 1);
    assert_eq!(c.replicas.len(), 1);
    assert_eq!(c.groups.len(), 1);
    assert!(i.toml.contains("auth = \"hmac-sha1\""), "{}", i.toml);
    assert!(i.toml.contains("deadtime = \"10s\""), "{}", i.toml);
    assert!(i.toml.contains("device = \"/dev/drbd1\""), "{}", i.toml);
    assert!(i.toml.contains("port = 7789"), "{}", i.toml);
    assert!(i.toml.contains("name = \"apache2\""), "{}", i.toml);
    assert!(i.toml.contains("unit = \"apache2.service\""), "{}", i.toml);
    // The mount names the replica, which stands for /dev/drbd1.
    assert!(
        i.toml.contains("device = \"r0\"\nfstype = \"ext3\""),
        "{}",
        i.toml
    );
    // The notes head the file as comments.
    assert!(i.toml.starts_with("# Imported by"), "{}", i.toml);
}

#[test]
fn the_short_form_finds_the_prefix_and_interface_in_the_routes() {
    let f = files(HA_CF, "node1.example.org 198.51.100.10 apache2\n", DRBD);
    let routes = [
        Route {
            network: "198.51.100.0".parse().expect("net"),
            prefix: 24,
            interface: "eth0".into(),
        },
        Route {
            network: "198.51.100.0".parse().expect("net"),
            prefix: 25,
            interface: "eth3".into(),
        },
        Route {
            network: "203.0.113.0".parse().expect("net"),
            prefix: 24,
            interface: "eth1".into(),
        },
    ];
    let i = run(&f, &routes, &[]).expect("converts");
    assert!(
        i.toml
            .contains("ip = \"198.51.100.10/25\"\ninterface = \"eth3\""),
        "the narrowest route: {}",
        i.toml
    );
    load(&i);
    let e = run(&f, &routes[2..], &[]).expect_err("no route");
    assert!(
        e[0].message
            .contains("IPaddr::198.51.100.10/PREFIX/INTERFACE"),
        "{e:?}"
    );
    assert_eq!((e[0].file.as_str(), e[0].line), ("haresources", 1));
}

#[test]
fn ucast_addresses_belong_to_nodes_through_drbd_or_hints() {
    let ha = HA_CF.replace(
        "bcast eth1",
        "ucast eth1 203.0.113.1\nucast eth1 203.0.113.2\nucast eth0 198.51.100.2",
    );
    let f = files(&ha, HARESOURCES, DRBD);
    let e = run(&f, &[], &[]).expect_err("198.51.100.2 has no owner");
    assert!(
        e.iter()
            .any(|e| e.message.contains("--node-address NODE=198.51.100.2")),
        "{e:?}"
    );
    let hints = [(
        "node2.example.org".to_string(),
        "198.51.100.2".parse().expect("ip"),
    )];
    let e = run(&f, &[], &hints).expect_err("node1 lacks an address on eth0");
    assert!(
        e.iter().any(|e| e
            .message
            .contains("node1.example.org has no address on the ucast link eth0")),
        "{e:?}"
    );
    let hints = [
        (
            "node2.example.org".to_string(),
            "198.51.100.2".parse().expect("ip"),
        ),
        (
            "node1.example.org".to_string(),
            "198.51.100.1".parse().expect("ip"),
        ),
    ];
    let ha = format!("{ha}\nucast eth0 198.51.100.1\n");
    let f = files(&ha, HARESOURCES, DRBD);
    let i = run(&f, &[], &hints).expect("converts");
    let c = load(&i);
    assert_eq!(c.links.len(), 2);
    assert!(
        i.toml
            .contains("address = { eth0 = \"198.51.100.1\", eth1 = \"203.0.113.1\" }"),
        "{}",
        i.toml
    );
}

#[test]
fn drbd_policies_rates_keys_and_meta_disks_carry_over_or_are_noted() {
    let drbd = DRBD
        .replace("after-sb-1pri consensus;", "after-sb-1pri call-pri-lost-after-sb;\n        shared-secret \"s3cret\";\n        cram-hmac-alg sha1;\n        verify-alg md5;")
        .replace("common {\n    protocol C;\n}", "common {\n    protocol B;\n    disk { on-io-error pass_on; }\n    syncer { rate 33M; }\n}");
    let f = files(HA_CF, HARESOURCES, &drbd);
    let i = run(&f, &[], &[]).expect("converts");
    let c = load(&i);
    assert_eq!(c.replicas.len(), 1);
    assert!(i.toml.contains("protocol = \"B\""), "{}", i.toml);
    assert!(i.toml.contains("on-io-error = \"pass-on\""), "{}", i.toml);
    assert!(i.toml.contains("rate-max = \"33M\""), "{}", i.toml);
    assert!(i.toml.contains("key-file = \"r0-link.key\""), "{}", i.toml);
    assert_eq!(
        i.replica_keys,
        vec![("r0-link.key".to_string(), b"s3cret".to_vec())]
    );
    let notes: Vec<String> = i.notes.iter().map(|n| n.message.clone()).collect();
    for want in [
        "call-pri-lost-after-sb has no equivalent",
        "verify-alg md5",
        "cram-hmac-alg sha1",
        "rate-max of duet's dynamic controller",
    ] {
        assert!(notes.iter().any(|n| n.contains(want)), "{want}: {notes:?}");
    }
    let indexed = DRBD.replace(
        "meta-disk internal;\n    }\n    on node2",
        "meta-disk /dev/sdc1 [0];\n    }\n    on node2",
    );
    let f = files(HA_CF, HARESOURCES, &indexed);
    let e = run(&f, &[], &[]).expect_err("indexed meta-disk");
    assert!(
        e[0].message.contains("one replica's metadata per device"),
        "{e:?}"
    );
}

#[test]
fn names_that_are_not_nodes_are_errors_with_their_line() {
    let f = files(HA_CF, "node3.example.org apache2\n", DRBD);
    let e = run(&f, &[], &[]).expect_err("node3");
    assert_eq!((e[0].file.as_str(), e[0].line), ("haresources", 1));
    assert!(
        e[0].message.contains("node3.example.org is not a node"),
        "{e:?}"
    );
    let f = files(
        HA_CF,
        HARESOURCES,
        &DRBD.replace("on node2.example.org", "on other"),
    );
    let e = run(&f, &[], &[]).expect_err("other");
    assert!(
        e.iter()
            .any(|e| e.file == "drbd.conf" && e.message.contains("host other is not a node")),
        "{e:?}"
    );
}

#[test]
fn stonith_becomes_fencing_through_the_stonith_command() {
    let ha = format!("{HA_CF}stonith_host * baytech 10.0.0.3 mylogin mysecret\n");
    let f = files(&ha, HARESOURCES, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    let c = load(&i);
    assert!(c.fencing.is_some());
    assert!(
        i.toml.contains(
            "args = [\"-t\", \"baytech\", \"-p\", \"10.0.0.3 mylogin mysecret\", \"-T\", \"reset\"]"
        ),
        "{}",
        i.toml
    );
}

#[test]
fn short_names_match_and_group_names_stay_unique() {
    let two = "node1 IPaddr::198.51.100.10/24/eth0 apache2\nnode2 IPaddr::198.51.100.11/24/eth0 mysql\nnode1 Delay::5\n";
    let f = files(HA_CF, two, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    let c = load(&i);
    let names: Vec<&str> = c.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["apache2", "mysql", "group3"]);
    assert!(
        i.toml.contains("preferred = \"node2.example.org\""),
        "{}",
        i.toml
    );
    let g = &f.groups[1];
    assert_eq!(group_name(g, 1, &["mysql".to_string()]), "mysql-2");
}

#[test]
fn what_the_files_leave_out_gets_the_classic_defaults_not_duets() {
    // No after-sb lines: DRBD's disconnect, never an automatic discard.
    let drbd = DRBD.replace("        after-sb-0pri discard-younger-primary;\n        after-sb-1pri consensus;\n        after-sb-2pri disconnect;\n", "");
    let ha = "bcast eth1\nnode node1.example.org\nnode node2.example.org\n";
    let f = files(ha, HARESOURCES, &drbd);
    let i = run(&f, &[], &[]).expect("converts");
    load(&i);
    for p in ["after-sb-0pri", "after-sb-1pri", "after-sb-2pri"] {
        assert!(
            i.toml.contains(&format!("{p} = \"disconnect\"")),
            "{p}: {}",
            i.toml
        );
    }
    // No timings: Heartbeat's (keepalive 2s, deadtime 30s), not duet's 1s.
    assert!(i.toml.contains("keepalive = \"2s\""), "{}", i.toml);
    assert!(i.toml.contains("deadtime = \"30s\""), "{}", i.toml);
    // No auto_failback: Heartbeat's legacy default fails back.
    assert!(i.toml.contains("auto-failback = true"), "{}", i.toml);
}

#[test]
fn drbd_units_rates_below_the_default_minimum_and_zero_rates() {
    let drbd = DRBD.replace(
        "common {\n    protocol C;\n}",
        "common {\n    protocol C;\n    syncer { rate 500K; }\n    disk { c-min-rate 0; c-fill-target 100; }\n}",
    );
    let f = files(HA_CF, HARESOURCES, &drbd);
    let i = run(&f, &[], &[]).expect("converts");
    load(&i);
    assert!(
        i.toml.contains("rate-max = \"500K\"\nrate-min = \"500K\""),
        "{}",
        i.toml
    );
    assert!(
        i.toml.contains("fill-target = \"50K\""),
        "100 sectors: {}",
        i.toml
    );
    assert!(
        i.notes.iter().any(|n| n.message.contains("c-min-rate 0")),
        "{:?}",
        i.notes
    );
}

#[test]
fn a_crc_key_gives_way_to_a_new_one_and_hints_fill_ucast_addresses() {
    let mut f = files(
        &HA_CF.replace("bcast eth1", "ucast eth0 198.51.100.2"),
        HARESOURCES,
        DRBD,
    );
    f.keys = authkeys::parse("auth 1\n1 crc\n", "authkeys", Some(0o600)).expect("authkeys");
    let hints = [
        ("node2".to_string(), "198.51.100.2".parse().expect("ip")),
        ("node1".to_string(), "198.51.100.1".parse().expect("ip")),
    ];
    let i = run(&f, &[], &hints).expect("converts");
    load(&i);
    assert_eq!(i.key, Key::Generate);
    assert!(
        !i.toml.contains("auth = "),
        "hmac-sha256, the default: {}",
        i.toml
    );
    assert!(
        i.toml.contains("address = { eth0 = \"198.51.100.1\" }"),
        "{}",
        i.toml
    );
    let bad = [("node9".to_string(), "198.51.100.9".parse().expect("ip"))];
    let e = run(&f, &[], &bad).expect_err("node9");
    assert!(
        e.iter().any(|e| e.message.contains("node9 is not a node")),
        "{e:?}"
    );
}

#[test]
fn mounts_name_their_replica_by_any_drbd_path_and_stonith_per_node_is_refused() {
    let hr = HARESOURCES.replace("/dev/drbd1", "/dev/drbd/by-res/r0/0");
    let f = files(HA_CF, &hr, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    assert!(i.toml.contains("device = \"r0\"\nfstype"), "{}", i.toml);
    let f = files(
        HA_CF,
        &HARESOURCES.replace("/dev/drbd1", "/dev/drbd7"),
        DRBD,
    );
    let e = run(&f, &[], &[]).expect_err("drbd7");
    assert!(e[0].message.contains("/dev/drbd7: no resource"), "{e:?}");
    let ha = format!(
        "{HA_CF}stonith_host node1 external/ipmi node2 10.0.0.12 admin pw\nstonith_host node2 external/ipmi node1 10.0.0.11 admin pw\n"
    );
    let f = files(&ha, HARESOURCES, DRBD);
    let e = run(&f, &[], &[]).expect_err("two devices");
    assert!(
        e[0].message
            .contains("stonith lines with different devices"),
        "{e:?}"
    );
}

#[test]
fn without_stonith_a_silent_peer_is_taken_over_as_heartbeat_did_and_said_so() {
    let f = files(HA_CF, HARESOURCES, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    assert!(load(&i).cluster.unfenced_takeover, "{}", i.toml);
    assert!(
        i.notes
            .iter()
            .any(|n| n.to_string().contains("no stonith") && n.to_string().contains("split brain")),
        "{:?}",
        i.notes
    );
    // With stonith the fence decides, as in Heartbeat.
    let ha = format!("{HA_CF}stonith_host * baytech 10.0.0.3 mylogin mysecret\n");
    let f = files(&ha, HARESOURCES, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    assert!(!load(&i).cluster.unfenced_takeover, "{}", i.toml);
    // Three nodes have quorum: nothing to carry over.
    let ha = format!("{HA_CF}node node3.example.org\n");
    let f = files(&ha, HARESOURCES, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    assert!(!i.toml.contains("unfenced-takeover"), "{}", i.toml);
}

#[test]
fn a_stonith_device_reached_from_one_node_only_is_refused() {
    let ha = format!(
        "{HA_CF}stonith_host node1.example.org external/ipmi node2.example.org 10.0.0.12 admin pw lan\n"
    );
    let said = refused(
        &ha,
        HARESOURCES,
        DRBD,
        "ha.cf:13: stonith_host node1.example.org",
    );
    assert!(
        said.contains("reached from node1.example.org only"),
        "{said}"
    );
}

#[test]
fn timings_out_of_order_are_refused_naming_what_the_file_said() {
    let ha = HA_CF
        .replace("deadtime 10\n", "deadtime 1\n")
        .replace("warntime 5\n", "");
    refused(
        &ha,
        HARESOURCES,
        DRBD,
        "ha.cf: keepalive 2s, warntime 1500ms (not in the file), deadtime 1s",
    );
}

#[test]
fn what_is_said_of_an_included_resource_names_its_own_file() {
    let res = DRBD[DRBD.find("resource r0").expect("resource")..]
        .replace("203.0.113.2:7789", "203.0.113.2:7790");
    let mut include = |_: &str| -> Result<Vec<(String, String)>, String> {
        Ok(vec![("drbd.d/r0.res".to_string(), res.clone())])
    };
    let drbd = drbdconf::parse("include \"drbd.d/*.res\";\n", "drbd.conf", &mut include)
        .expect("drbd.conf");
    let mut f = files(HA_CF, HARESOURCES, DRBD);
    f.drbd = drbd;
    let e = run(&f, &[], &[]).expect_err("different ports");
    said_line(
        &e,
        "drbd.d/r0.res:1: resource r0: the hosts use different ports",
    );
}

#[test]
fn floating_sections_are_the_nodes_that_have_their_addresses() {
    let drbd = "resource r0 {\n  device /dev/drbd1;\n  disk /dev/sdb1;\n  meta-disk internal;\n  floating 203.0.113.1:7789;\n  floating ipv4 203.0.113.2:7789 { disk /dev/sdc1; }\n}\n";
    let f = files(HA_CF, HARESOURCES, drbd);
    // Nothing says which node has which address: refused, with the way out.
    let e = run(&f, &[], &[]).expect_err("unknown addresses");
    said_line(
        &e,
        "drbd.conf:5: resource r0: floating 203.0.113.1:7789: no node is known to have this address; give it with --node-address NODE=203.0.113.1",
    );
    let hints = [
        (
            "node1.example.org".to_string(),
            "203.0.113.1".parse().expect("ip"),
        ),
        ("node2".to_string(), "203.0.113.2".parse().expect("ip")),
    ];
    let i = run(&f, &[], &hints).expect("converts");
    let c = load(&i);
    let r = &c.replicas[0];
    assert!(
        i.toml.contains("disk = { \"node1.example.org\" = \"/dev/sdb1\", \"node2.example.org\" = \"/dev/sdc1\" }"),
        "{}",
        i.toml
    );
    assert_eq!(r.name, "r0");
    // Two sections for one node: refused.
    let e = run(
        &f,
        &[],
        &[
            hints[0].clone(),
            ("node1".to_string(), "203.0.113.2".parse().expect("ip")),
        ],
    )
    .expect_err("one node twice");
    said_line(
        &e,
        "drbd.conf:6: resource r0: node1.example.org has two host sections",
    );
}

#[test]
fn internal_metadata_on_one_node_only_is_refused_at_its_host() {
    let drbd = DRBD.replacen("meta-disk internal;", "flexible-meta-disk /dev/sdc1;", 1);
    refused(
        HA_CF,
        HARESOURCES,
        &drbd,
        "drbd.conf:14: resource r0: node2.example.org keeps its metadata internal",
    );
}

#[test]
fn filesystem_labels_and_uuids_are_udev_links_and_nfs_is_refused() {
    let hr = "node1.example.org Filesystem::-LDATA::/srv::ext4 Filesystem::-U0b7c-11ee::/var/www::xfs apache2\n";
    let f = files(HA_CF, hr, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    load(&i);
    assert!(
        i.toml.contains("device = \"/dev/disk/by-label/DATA\""),
        "{}",
        i.toml
    );
    assert!(
        i.toml.contains("device = \"/dev/disk/by-uuid/0b7c-11ee\""),
        "{}",
        i.toml
    );
    for (hr, says) in [
        (
            "node1.example.org Filesystem::nfs1:/export::/home::nfs\n",
            "network filesystem",
        ),
        (
            "node1.example.org Filesystem::sdc1::/data::ext4\n",
            "not a device path",
        ),
        (
            "node1.example.org Filesystem::-L::/data::ext4\n",
            "not a filesystem label",
        ),
    ] {
        let f = files(HA_CF, hr, DRBD);
        let e = run(&f, &[], &[]).expect_err(hr);
        assert!(
            said_line(&e, "haresources:1: Filesystem on").contains(says),
            "{hr}"
        );
    }
}

#[test]
fn an_alias_label_becomes_its_interface_with_a_note() {
    let hr = "node1.example.org IPaddr::198.51.100.10/24/eth0:0 apache2\n";
    let f = files(HA_CF, hr, DRBD);
    let i = run(&f, &[], &[]).expect("converts");
    load(&i);
    assert!(i.toml.contains("interface = \"eth0\"\n"), "{}", i.toml);
    assert!(
        i.notes
            .iter()
            .any(|n| n.to_string().contains("the alias label goes")),
        "{:?}",
        i.notes
    );
}

#[test]
fn notes_quoting_the_files_stay_inside_their_comment() {
    // A control character before a statement the notes quote: TOML
    // allows none in a comment (found by fuzz target import_convert).
    let drbd = DRBD.replacen("meta-disk internal;", "\u{1d}meta-disk internal;", 1);
    let i = run(&files(HA_CF, HARESOURCES, &drbd), &[], &[]).expect("converts");
    let note = i
        .toml
        .lines()
        .find(|l| l.contains("meta-disk"))
        .unwrap_or_else(|| panic!("no note on meta-disk:\n{}", i.toml));
    assert!(note.contains("`\\u{1d}meta-disk internal`"), "{note}");
    let header = i.toml.lines().take_while(|l| !l.starts_with('['));
    assert!(header.into_iter().all(|l| l.starts_with('#')), "{}", i.toml);
    assert_eq!(load(&i).cluster.name, "ha");
}
