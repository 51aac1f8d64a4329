use super::*;

/// tests/classic/drbd.conf, the sample a classic setup ships.
const CLASSIC: &str = "global {
    usage-count no;
}
common {
    protocol C;
}
resource r0 {
    on node1.example.org {
        device    /dev/drbd1;
        disk      /dev/sdb1;
        address   203.0.113.1:7789;
        meta-disk internal;
    }
    on node2.example.org {
        device    /dev/drbd1;
        disk      /dev/sdb1;
        address   203.0.113.2:7789;
        meta-disk internal;
    }
    net {
        after-sb-0pri discard-younger-primary;
        after-sb-1pri consensus;
        after-sb-2pri disconnect;
    }
}
";

/// A reader for files without includes.
fn no_includes(pattern: &str) -> Result<Vec<(String, String)>, String> {
    Err(format!("unexpected include of {pattern}"))
}

fn conf(text: &str) -> DrbdConf {
    match parse(text, "drbd.conf", &mut no_includes) {
        Ok(conf) => conf,
        Err(errors) => panic!("refused: {errors:#?}"),
    }
}

fn one(text: &str) -> DrbdResource {
    let mut conf = conf(text);
    assert_eq!(conf.resources.len(), 1, "{conf:#?}");
    conf.resources.remove(0)
}

fn errors(text: &str) -> Vec<ImportError> {
    parse(text, "drbd.conf", &mut no_includes).expect_err("refused")
}

/// The error at `line`, whatever else was reported.
fn error_at(errors: &[ImportError], line: usize) -> ImportError {
    errors
        .iter()
        .find(|e| e.line == line)
        .cloned()
        .unwrap_or_else(|| panic!("no error at line {line}: {errors:#?}"))
}

fn addr(text: &str) -> Option<SocketAddr> {
    Some(text.parse().expect("test address"))
}

fn some(text: &str) -> Option<String> {
    Some(text.to_string())
}

fn has_note(conf: &DrbdConf, line: usize, words: &[&str]) -> bool {
    conf.notes
        .iter()
        .any(|n| n.line == line && words.iter().all(|w| n.message.contains(w)))
}

#[test]
fn the_classic_sample_is_one_resource_with_two_hosts() {
    let conf = conf(CLASSIC);
    let r = &conf.resources[0];
    assert_eq!(r.name, "r0");
    assert_eq!(r.line, 7);
    assert_eq!(r.protocol, Some('C'), "from common");
    assert_eq!(r.after_sb_0pri, some("discard-younger-primary"));
    assert_eq!(r.after_sb_1pri, some("consensus"));
    assert_eq!(r.after_sb_2pri, some("disconnect"));
    assert_eq!(r.rate, None);
    assert_eq!(
        r.hosts,
        vec![
            DrbdHost {
                name: some("node1.example.org"),
                line: 8,
                device: some("/dev/drbd1"),
                disk: some("/dev/sdb1"),
                address: addr("203.0.113.1:7789"),
                meta_disk: Some(MetaDisk::Internal),
            },
            DrbdHost {
                name: some("node2.example.org"),
                line: 14,
                device: some("/dev/drbd1"),
                disk: some("/dev/sdb1"),
                address: addr("203.0.113.2:7789"),
                meta_disk: Some(MetaDisk::Internal),
            },
        ]
    );
    assert!(
        has_note(&conf, 1, &["global", "usage-count"]),
        "{:#?}",
        conf.notes
    );
    assert_eq!(conf.notes.len(), 1, "{:#?}", conf.notes);
}

#[test]
fn drbd_8_3_syncer_carries_rate_and_verify_alg() {
    let r = one("resource r0 {
  protocol C;
  syncer { rate 10M; verify-alg md5; csums-alg sha1; al-extents 257; }
  disk { on-io-error detach; }
  on a { device /dev/drbd0; disk /dev/sda7; address 10.1.1.31:7788; meta-disk internal; }
  on b { device /dev/drbd0; disk /dev/sda7; address 10.1.1.32:7788; meta-disk internal; }
}
");
    assert_eq!(r.protocol, Some('C'));
    assert_eq!(r.rate, some("10M"));
    assert_eq!(r.verify_alg, some("md5"));
    assert_eq!(r.csums_alg, some("sha1"));
    assert_eq!(r.on_io_error, some("detach"));
    assert_eq!(r.hosts.len(), 2);
}

#[test]
fn an_option_duet_does_not_use_is_a_note_naming_it_and_its_section() {
    let conf =
        conf("resource r0 {\n  syncer { al-extents 257; }\n  net { max-buffers 8000; }\n}\n");
    assert!(
        has_note(&conf, 2, &["resource r0", "syncer", "al-extents 257"]),
        "{:#?}",
        conf.notes
    );
    assert!(
        has_note(&conf, 3, &["net", "max-buffers"]),
        "{:#?}",
        conf.notes
    );
}

#[test]
fn drbd_8_4_has_address_families_resync_rate_in_disk_and_verify_alg_in_net() {
    let r = one("resource r0 {
  net { protocol B; verify-alg sha1; csums-alg md5; cram-hmac-alg sha1; shared-secret \"FooFunFactory\"; }
  disk { resync-rate 10M; c-max-rate 100M; c-min-rate 1M; c-fill-target 1M; on-io-error pass_on; }
  on alice { device /dev/drbd1; disk /dev/sda7; address ipv4 10.1.1.31:7789; meta-disk internal; }
  on bob { device /dev/drbd1; disk /dev/sda7; address ipv6 [2001:db8::2]:7789; meta-disk internal; }
}
");
    assert_eq!(r.protocol, Some('B'));
    assert_eq!(r.rate, some("10M"));
    assert_eq!(r.c_max_rate, some("100M"));
    assert_eq!(r.c_min_rate, some("1M"));
    assert_eq!(r.c_fill_target, some("1M"));
    assert_eq!(r.on_io_error, some("pass_on"));
    assert_eq!(r.verify_alg, some("sha1"));
    assert_eq!(r.csums_alg, some("md5"));
    assert_eq!(r.cram_hmac_alg, some("sha1"));
    assert_eq!(r.shared_secret, some("FooFunFactory"));
    assert_eq!(r.hosts[0].address, addr("10.1.1.31:7789"));
    assert_eq!(r.hosts[1].address, addr("[2001:db8::2]:7789"));
}

#[test]
fn drbd_8_4_volume_0_inside_on_is_the_hosts_disk() {
    let r = one("resource r0 {
  on alice {
    volume 0 {
      device    minor 1;
      disk      /dev/sda7;
      meta-disk internal;
    }
    address   10.1.1.31:7789;
  }
}
");
    assert_eq!(
        r.hosts,
        vec![DrbdHost {
            name: some("alice"),
            line: 2,
            device: some("/dev/drbd1"),
            disk: some("/dev/sda7"),
            address: addr("10.1.1.31:7789"),
            meta_disk: Some(MetaDisk::Internal),
        }]
    );
}

#[test]
fn drbd_9_node_ids_resource_level_volume_and_connection_mesh() {
    let conf = conf(
        "resource r0 {
  device minor 1;
  disk /dev/vg/r0;
  meta-disk internal;
  on alpha { node-id 0; address 10.1.1.31:7000; }
  on bravo { node-id 1; address 10.1.1.32:7000; }
  connection-mesh {
    hosts alpha bravo;
    net { protocol C; verify-alg crc32c; }
  }
}
",
    );
    let r = &conf.resources[0];
    assert_eq!(r.protocol, Some('C'));
    assert_eq!(r.verify_alg, some("crc32c"));
    let names: Vec<_> = r.hosts.iter().map(|h| h.name.clone()).collect();
    assert_eq!(names, vec![some("alpha"), some("bravo")]);
    for h in &r.hosts {
        assert_eq!(h.device, some("/dev/drbd1"));
        assert_eq!(h.disk, some("/dev/vg/r0"));
        assert_eq!(h.meta_disk, Some(MetaDisk::Internal));
    }
    assert!(conf.notes.is_empty(), "{:#?}", conf.notes);
}

#[test]
fn drbd_9_resource_level_volume_0_and_connection_host_addresses() {
    let r = one("resource r0 {
  volume 0 { device minor 2; disk /dev/sdb1; meta-disk internal; }
  on alpha { node-id 0; }
  on bravo { node-id 1; }
  connection {
    host alpha address 10.1.1.31:7000;
    host bravo address ipv4 10.1.1.32:7000;
    net { protocol A; after-sb-0pri discard-zero-changes; }
  }
}
");
    assert_eq!(r.protocol, Some('A'));
    assert_eq!(r.after_sb_0pri, some("discard-zero-changes"));
    assert_eq!(r.hosts[0].address, addr("10.1.1.31:7000"));
    assert_eq!(r.hosts[1].address, addr("10.1.1.32:7000"));
    assert_eq!(r.hosts[1].device, some("/dev/drbd2"));
}

#[test]
fn a_connection_naming_an_unknown_host_is_an_error() {
    let e = errors(
        "resource r0 {\n  on alpha { }\n  connection {\n    host zulu address 10.0.0.1:7000;\n  }\n}\n",
    );
    assert!(error_at(&e, 4).message.contains("zulu"), "{e:#?}");
}

#[test]
fn device_forms() {
    let r = one("resource r0 {
  on a { device /dev/drbd1; }
  on b { device minor 1; }
  on c { device /dev/drbd1 minor 1; }
  on d { device \"/dev/drbd_r0\" minor 0; }
}
");
    let devices: Vec<_> = r.hosts.iter().map(|h| h.device.clone()).collect();
    assert_eq!(
        devices,
        vec![
            some("/dev/drbd1"),
            some("/dev/drbd1"),
            some("/dev/drbd1"),
            some("/dev/drbd_r0")
        ]
    );
    let e = errors(
        "resource r0 {\n  on a { device /dev/drbd1 minor 2; }\n  on b { device minor x; }\n}\n",
    );
    assert!(error_at(&e, 2).message.contains("must match"), "{e:#?}");
    assert!(error_at(&e, 3).message.contains("not a number"), "{e:#?}");
}

#[test]
fn common_is_the_default_a_resource_overrides() {
    let r = one("common {
  protocol B;
  net { after-sb-0pri disconnect; after-sb-1pri consensus; }
  syncer { rate 5M; }
  disk { on-io-error detach; }
}
resource r0 {
  protocol C;
  net { after-sb-0pri discard-zero-changes; }
  syncer { rate 20M; }
}
");
    assert_eq!(r.protocol, Some('C'));
    assert_eq!(r.after_sb_0pri, some("discard-zero-changes"));
    assert_eq!(r.after_sb_1pri, some("consensus"), "from common");
    assert_eq!(r.rate, some("20M"));
    assert_eq!(r.on_io_error, some("detach"), "from common");
}

#[test]
fn common_after_the_resources_still_counts() {
    let r = one("resource r0 { }\ncommon { net { protocol A; } }\n");
    assert_eq!(r.protocol, Some('A'));
}

#[test]
fn a_host_section_in_common_is_an_error() {
    let e = errors("common {\n  on a { device /dev/drbd1; }\n}\n");
    assert!(error_at(&e, 2).message.contains("common"), "{e:#?}");
}

#[test]
fn resource_level_device_disk_and_meta_disk_are_every_hosts_default() {
    let r = one("resource r0 {
  on a { address 10.0.0.1:7789; disk /dev/sdc1; }
  device /dev/drbd3;
  disk /dev/sdb1;
  meta-disk /dev/sdd1 [2];
  on b { address 10.0.0.2:7789; meta-disk internal; }
}
");
    assert_eq!(r.hosts[0].device, some("/dev/drbd3"));
    assert_eq!(r.hosts[0].disk, some("/dev/sdc1"), "the host's own wins");
    assert_eq!(
        r.hosts[0].meta_disk,
        Some(MetaDisk::External {
            path: "/dev/sdd1".into(),
            index: Some(2)
        })
    );
    assert_eq!(r.hosts[1].disk, some("/dev/sdb1"));
    assert_eq!(r.hosts[1].meta_disk, Some(MetaDisk::Internal));
}

#[test]
fn meta_disk_forms() {
    let r = one("resource r0 {
  on a { meta-disk internal; }
  on b { meta-disk /dev/sdc1; }
  on c { meta-disk /dev/sdc1 [0]; }
  on d { meta-disk /dev/sdc1[1]; }
  on e { meta-disk /dev/sdc1 [ 3 ]; }
  on f { flexible-meta-disk /dev/sdc2; }
  on g { flexible-meta-disk internal; }
}
");
    let ext = |path: &str, index| {
        Some(MetaDisk::External {
            path: path.into(),
            index,
        })
    };
    let metas: Vec<_> = r.hosts.iter().map(|h| h.meta_disk.clone()).collect();
    assert_eq!(
        metas,
        vec![
            Some(MetaDisk::Internal),
            ext("/dev/sdc1", None),
            ext("/dev/sdc1", Some(0)),
            ext("/dev/sdc1", Some(1)),
            ext("/dev/sdc1", Some(3)),
            ext("/dev/sdc2", None),
            Some(MetaDisk::Internal),
        ]
    );
    let e = errors(
        "resource r0 {\n  on a { meta-disk /dev/sdc1 [x]; }\n  on b { meta-disk /dev/sdc1 extra; }\n  on c { meta-disk; }\n}\n",
    );
    for line in [2, 3, 4] {
        assert!(error_at(&e, line).message.contains("meta-disk"), "{e:#?}");
    }
}

#[test]
fn floating_sections_are_hosts_without_a_name() {
    let r = one("resource r0 {
  device /dev/drbd1;
  disk /dev/sdb1;
  meta-disk internal;
  floating 10.1.1.31:7788 { disk /dev/sdc1; }
  floating ipv6 [2001:db8::7]:7788;
}
");
    assert_eq!(
        r.hosts,
        vec![
            DrbdHost {
                name: None,
                line: 5,
                device: some("/dev/drbd1"),
                disk: some("/dev/sdc1"),
                address: addr("10.1.1.31:7788"),
                meta_disk: Some(MetaDisk::Internal),
            },
            DrbdHost {
                name: None,
                line: 6,
                device: some("/dev/drbd1"),
                disk: some("/dev/sdb1"),
                address: addr("[2001:db8::7]:7788"),
                meta_disk: Some(MetaDisk::Internal),
            },
        ]
    );
    let e =
        errors("resource r0 {\n  floating { }\n  floating 10.0.0.1:1 { address 10.0.0.2:2; }\n}\n");
    assert!(error_at(&e, 2).message.contains("floating"), "{e:#?}");
    assert!(error_at(&e, 3).message.contains("address"), "{e:#?}");
}

#[test]
fn address_forms_and_bad_addresses() {
    let ok = |text: &str| address(&words(text));
    assert_eq!(ok("203.0.113.1:7789").ok(), addr("203.0.113.1:7789"));
    assert_eq!(ok("ipv4 203.0.113.1:7789").ok(), addr("203.0.113.1:7789"));
    assert_eq!(ok("203.0.113.1 : 7789").ok(), addr("203.0.113.1:7789"));
    assert_eq!(
        ok("ipv6 [2001:db8::1]:7789").ok(),
        addr("[2001:db8::1]:7789")
    );
    for bad in [
        "",
        "node1:7789",
        "203.0.113.1",
        "203.0.113.300:7789",
        "ipv4 [::1]:7789",
        "ipv6 10.0.0.1:1",
        "10.0.0.1:0",
    ] {
        assert!(ok(bad).is_err(), "{bad} accepted");
    }
    assert!(ok("sdp 10.0.0.1:7789").unwrap_err().contains("TCP"));
}

fn words(text: &str) -> Vec<Word> {
    text.split_whitespace()
        .map(|w| Word {
            text: w.to_string(),
            line: 1,
        })
        .collect()
}

#[test]
fn a_bad_address_is_an_error_at_its_line() {
    let e = errors("resource r0 {\n  on a {\n    address 203.0.113.300:7789;\n  }\n}\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].line, 3);
    assert_eq!(e[0].file, "drbd.conf");
    assert!(e[0].message.contains("203.0.113.300:7789"), "{e:#?}");
}

#[test]
fn protocol_is_a_b_or_c_in_either_case() {
    assert_eq!(one("resource r0 { protocol c; }").protocol, Some('C'));
    assert_eq!(
        one("resource r0 { net { protocol a; } }").protocol,
        Some('A')
    );
    let e = errors("resource r0 {\n  protocol D;\n}\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].line, 2);
    assert!(e[0].message.contains("protocol `D`"), "{e:#?}");
    let e = errors("resource r0 {\n  net { protocol; }\n}\n");
    assert_eq!(error_at(&e, 2).line, 2);
}

#[test]
fn two_volumes_are_an_error_naming_them() {
    let e = errors(
        "resource r0 {
  on a {
    volume 0 { device minor 1; disk /dev/sdb1; meta-disk internal; }
    volume 1 { device minor 2; disk /dev/sdc1; meta-disk internal; }
    address 10.0.0.1:7789;
  }
}
",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].line, 4);
    assert!(e[0].message.contains("volumes 0, 1"), "{e:#?}");
    assert!(e[0].message.contains("one disk per replica"), "{e:#?}");
}

#[test]
fn one_volume_other_than_0_is_taken() {
    let r = one("resource r0 { on a { volume 5 { disk /dev/sdb1; } } }");
    assert_eq!(r.hosts[0].disk, some("/dev/sdb1"));
}

#[test]
fn an_on_section_must_name_one_host() {
    let e = errors(
        "resource r0 {\n  on {\n    disk /dev/sdb1;\n  }\n  on a b { }\n  on c { }\n  on c { }\n}\n",
    );
    assert!(
        error_at(&e, 2).message.contains("without a host name"),
        "{e:#?}"
    );
    assert!(
        error_at(&e, 5).message.contains("its own `on` section"),
        "{e:#?}"
    );
    assert!(
        error_at(&e, 7).message.contains("two `on` sections"),
        "{e:#?}"
    );
}

#[test]
fn a_resource_needs_one_name_and_only_once() {
    let e = errors("resource {\n}\nresource r0 { }\nresource r0 { }\nresource a b { }\n");
    assert!(error_at(&e, 1).message.contains("without a name"), "{e:#?}");
    assert!(error_at(&e, 4).message.contains("defined twice"), "{e:#?}");
    assert!(error_at(&e, 5).message.contains("one name"), "{e:#?}");
}

#[test]
fn unknown_top_level_is_an_error() {
    let e = errors("global { }\nfrobnicate { }\nprotocol C;\n");
    assert!(error_at(&e, 2).message.contains("frobnicate"), "{e:#?}");
    assert!(error_at(&e, 3).message.contains("protocol"), "{e:#?}");
}

#[test]
fn stacked_resources_are_an_error() {
    let e = errors("resource r0-U {\n  stacked-on-top-of r0 { device /dev/drbd10; }\n}\n");
    assert!(error_at(&e, 2).message.contains("stacked"), "{e:#?}");
}

#[test]
fn handlers_startup_and_fencing_are_noted_once_each() {
    let conf = conf(
        "resource r0 {
  handlers {
    fence-peer \"/usr/lib/drbd/crm-fence-peer.sh\";
    after-resync-target \"/usr/lib/drbd/crm-unfence-peer.sh\";
  }
  startup { wfc-timeout 30; degr-wfc-timeout 120; }
  disk { fencing resource-only; }
  options { quorum majority; }
}
",
    );
    assert!(
        has_note(
            &conf,
            2,
            &["handlers", "fence-peer", "after-resync-target", "[fencing]"]
        ),
        "{:#?}",
        conf.notes
    );
    assert!(
        has_note(&conf, 6, &["startup", "wfc-timeout", "degr-wfc-timeout"]),
        "{:#?}",
        conf.notes
    );
    assert!(
        has_note(&conf, 7, &["fencing resource-only", "[fencing]"]),
        "{:#?}",
        conf.notes
    );
    assert!(
        has_note(&conf, 8, &["options", "quorum"]),
        "{:#?}",
        conf.notes
    );
    assert_eq!(conf.notes.len(), 4, "{:#?}", conf.notes);
}

#[test]
fn comments_odd_spacing_and_glued_tokens() {
    let r = one("# the replica\nresource r0{protocol C;}  # trailing\n");
    assert_eq!(r.protocol, Some('C'));
    let r = one(
        "resource r0{on a{device /dev/drbd1;disk /dev/sdb1;address 10.0.0.1:7789;meta-disk internal;}net{after-sb-0pri disconnect;}}",
    );
    assert_eq!(r.hosts[0].address, addr("10.0.0.1:7789"));
    assert_eq!(r.after_sb_0pri, some("disconnect"));
    let r = one(
        "resource\tr0\n{\n\ton a\n\t{\n\t\tdisk\t/dev/sdb1 ;  # the disk; not { a brace\n\t}\n}\n",
    );
    assert_eq!(r.hosts[0].disk, some("/dev/sdb1"));
    assert_eq!(r.hosts[0].line, 3);
}

#[test]
fn underscore_spellings_are_read_like_dashes() {
    let r = one(
        "resource r0 {\n  net { after_sb_0pri disconnect; }\n  disk { on_io_error detach; }\n  on a { meta_disk internal; }\n}\n",
    );
    assert_eq!(r.after_sb_0pri, some("disconnect"));
    assert_eq!(r.on_io_error, some("detach"));
    assert_eq!(r.hosts[0].meta_disk, Some(MetaDisk::Internal));
}

#[test]
fn quoted_strings_keep_spaces_and_escapes() {
    let r = one(
        "resource \"r0\" {\n  net { shared-secret \"Foo Fun \\\"Factory\\\" #1\"; }\n  on \"node one\" { disk \"/dev/disk/by-id/a b\"; }\n}\n",
    );
    assert_eq!(r.name, "r0");
    assert_eq!(r.shared_secret, some("Foo Fun \"Factory\" #1"));
    assert_eq!(r.hosts[0].name, some("node one"));
    assert_eq!(r.hosts[0].disk, some("/dev/disk/by-id/a b"));
    let e = errors("resource r0 {\n  net { shared-secret \"open; }\n}\n");
    assert!(error_at(&e, 2).message.contains("unterminated"), "{e:#?}");
}

#[test]
fn a_missing_semicolon_is_an_error_at_its_line_and_reading_goes_on() {
    let e = errors(
        "resource r0 {
  on a {
    device /dev/drbd1
    disk /dev/sdb1;
    address 10.0.0.1:77x9;
  }
}
",
    );
    assert!(
        error_at(&e, 3)
            .message
            .contains("missing `;` after `device /dev/drbd1`"),
        "{e:#?}"
    );
    assert!(
        error_at(&e, 5).message.contains("10.0.0.1:77x9"),
        "the error after it is found too: {e:#?}"
    );
    let e = errors("resource r0 {\n  protocol C\n}\n");
    assert!(error_at(&e, 2).message.contains("missing `;`"), "{e:#?}");
    let e = errors("resource r0 { }\ninclude \"x\"");
    assert!(error_at(&e, 2).message.contains("missing `;`"), "{e:#?}");
}

#[test]
fn unbalanced_braces_are_errors_at_the_right_line() {
    let e = errors("resource r0 {\n  on a {\n    disk /dev/sdb1;\n  }\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].line, 1);
    assert!(
        e[0].message.contains("`resource r0 {` is never closed"),
        "{e:#?}"
    );
    let e = errors("resource r0 {\n  on a { }\n}\n}\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].line, 4);
    assert!(e[0].message.contains("without a `{`"), "{e:#?}");
    let e = errors("resource r0 {\n  { disk /dev/sdb1; }\n}\n");
    assert!(
        error_at(&e, 2).message.contains("without a section name"),
        "{e:#?}"
    );
}

#[test]
fn absurd_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!("resource r0 {}{}", "a {".repeat(10_000), "}".repeat(10_001));
    let e = errors(&text);
    assert!(e.iter().any(|e| e.message.contains("nested")), "{e:#?}");
}

#[test]
fn several_errors_are_reported_at_once() {
    let e = errors(
        "resource r0 {\n  protocol D;\n  on a { address nowhere; }\n  on b { device; }\n}\n",
    );
    let lines: Vec<_> = e.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4], "{e:#?}");
}

/// A reader over a fixed set of files, globs matched by prefix before `*`.
fn files(
    list: &[(&str, &str)],
) -> impl FnMut(&str) -> Result<Vec<(String, String)>, String> + use<> {
    let list: Vec<(String, String)> = list
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    move |pattern: &str| {
        let prefix = pattern.split('*').next().unwrap_or_default();
        let exact = !pattern.contains('*');
        Ok(list
            .iter()
            .filter(|(name, _)| {
                if exact {
                    name == pattern
                } else {
                    name.starts_with(prefix)
                }
            })
            .cloned()
            .collect())
    }
}

#[test]
fn an_included_file_is_read_in_place() {
    let mut reader = files(&[
        (
            "drbd.d/global_common.conf",
            "global { usage-count no; }\ncommon { protocol C; }\n",
        ),
        (
            "drbd.d/r0.res",
            "resource r0 {\n  on a { disk /dev/sdb1; }\n}\n",
        ),
    ]);
    let text = "include \"drbd.d/global_common.conf\";\ninclude \"drbd.d/*.res\";\n";
    let conf = parse(text, "drbd.conf", &mut reader).expect("parses");
    assert_eq!(conf.resources.len(), 1);
    assert_eq!(conf.resources[0].protocol, Some('C'));
    assert_eq!(conf.resources[0].hosts[0].disk, some("/dev/sdb1"));
    assert_eq!(conf.notes[0].file, "drbd.d/global_common.conf");
}

#[test]
fn a_file_matched_twice_is_read_once_as_drbdadm_does() {
    let mut reader = files(&[("drbd.d/r0.res", "resource r0 { }\n")]);
    let text = "include \"drbd.d/*\";\ninclude \"drbd.d/r0.res\";\n";
    let conf = parse(text, "drbd.conf", &mut reader).expect("parses");
    assert_eq!(conf.resources.len(), 1);
}

#[test]
fn include_works_inside_a_section() {
    let mut reader = files(&[("net.inc", "net { protocol B; }\n")]);
    let conf = parse(
        "resource r0 {\n  include \"net.inc\";\n}\n",
        "drbd.conf",
        &mut reader,
    )
    .expect("parses");
    assert_eq!(conf.resources[0].protocol, Some('B'));
}

#[test]
fn an_error_in_an_included_file_names_that_file() {
    let mut reader = files(&[("drbd.d/r0.res", "resource r0 {\n  protocol D;\n}\n")]);
    let e = parse("\ninclude \"drbd.d/*.res\";\n", "drbd.conf", &mut reader).expect_err("refused");
    assert_eq!(
        e,
        vec![ImportError::new(
            "drbd.d/r0.res",
            2,
            "protocol `D`: DRBD's protocols are A, B and C"
        )]
    );
}

#[test]
fn a_reader_error_is_an_error_at_the_include_line() {
    let mut reader =
        |_: &str| -> Result<Vec<(String, String)>, String> { Err("permission denied".into()) };
    let e = parse(
        "global { }\ninclude \"/etc/drbd.d/*.res\";\n",
        "drbd.conf",
        &mut reader,
    )
    .expect_err("refused");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].file.as_str(), e[0].line), ("drbd.conf", 2));
    assert!(e[0].message.contains("/etc/drbd.d/*.res"), "{e:#?}");
    assert!(e[0].message.contains("permission denied"), "{e:#?}");
}

#[test]
fn a_missing_plain_include_is_an_error_an_empty_glob_is_not() {
    let mut reader = files(&[]);
    assert!(parse("include \"drbd.d/*.res\";\n", "drbd.conf", &mut reader).is_ok());
    let e = parse(
        "include \"global_common.conf\";\n",
        "drbd.conf",
        &mut reader,
    )
    .expect_err("refused");
    assert!(e[0].message.contains("no such file"), "{e:#?}");
    let e = parse("include;\ninclude a b;\n", "drbd.conf", &mut reader).expect_err("refused");
    assert_eq!(e.len(), 2, "{e:#?}");
}

#[test]
fn an_include_loop_is_an_error() {
    let mut reader = files(&[
        ("a.conf", "include \"b.conf\";\n"),
        ("b.conf", "\ninclude \"a.conf\";\n"),
    ]);
    let e = parse("include \"a.conf\";\n", "drbd.conf", &mut reader).expect_err("refused");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].file.as_str(), e[0].line), ("b.conf", 2));
    assert!(
        e[0].message
            .contains("drbd.conf -> a.conf -> b.conf -> a.conf"),
        "{e:#?}"
    );
    let mut reader = files(&[("drbd.conf", "")]);
    let e = parse("include \"drbd.conf\";\n", "drbd.conf", &mut reader).expect_err("refused");
    assert!(e[0].message.contains("include loop"), "{e:#?}");
}

#[test]
fn includes_nested_too_deep_are_an_error() {
    // Every file includes a new one: no loop by name, but no end either.
    let mut count = 0;
    let mut reader = |_: &str| -> Result<Vec<(String, String)>, String> {
        count += 1;
        Ok(vec![(
            format!("f{count}.conf"),
            "include \"next\";\n".to_string(),
        )])
    };
    let e = parse("include \"next\";\n", "drbd.conf", &mut reader).expect_err("refused");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].file, "f8.conf");
    assert!(e[0].message.contains("nested more than 8"), "{e:#?}");
}

#[test]
fn includes_that_multiply_are_cut_off_with_one_error() {
    // Every file includes four new ones, eight deep: 4^8 files unbounded.
    let mut count = 0;
    let mut reader = |_: &str| -> Result<Vec<(String, String)>, String> {
        count += 1;
        Ok(vec![(
            format!("f{count}.conf"),
            "include \"a\";\ninclude \"b\";\ninclude \"c\";\ninclude \"d\";\n".to_string(),
        )])
    };
    let e = parse("include \"next\";\n", "drbd.conf", &mut reader).expect_err("refused");
    let cut: Vec<_> = e
        .iter()
        .filter(|e| e.message.contains("more than 256 files"))
        .collect();
    assert_eq!(cut.len(), 1, "{e:#?}");
    assert!(count <= 4 * 256 + 1, "{count} files asked for");
}

#[test]
fn skip_sections_and_module_version_requirements_are_notes() {
    let conf = conf(
        "skip resource old { on x { } }\nrequire-drbd-module-version-ge 9.0.0;\nresource r0 { skip { anything; } }\n",
    );
    assert_eq!(conf.resources.len(), 1);
    assert!(has_note(&conf, 1, &["skip"]), "{:#?}", conf.notes);
    assert!(
        has_note(&conf, 2, &["require-drbd-module-version-ge"]),
        "{:#?}",
        conf.notes
    );
    assert!(has_note(&conf, 3, &["skip"]), "{:#?}", conf.notes);
}

/// Seeded mutations of the sample: errors or a result, never a panic.
#[test]
fn the_sample_with_a_character_dropped_never_panics() {
    let tricky = ['{', '}', ';', '"', '#', ' ', '\n', ':', '[', 'x'];
    let mut refused = 0;
    for text in crate::testkit::mutations(CLASSIC, &tricky, 0x9e37_79b9_7f4a_7c15, 500) {
        if let Err(errors) = parse(&text, "drbd.conf", &mut no_includes) {
            refused += 1;
            let lines = text.lines().count() + 1;
            assert!(
                errors.iter().all(|e| (1..=lines).contains(&e.line)),
                "{text}\n{errors:#?}"
            );
        }
    }
    assert!(refused > 0, "some mutations must be refused");
}

#[test]
fn a_keyword_may_have_its_value_on_the_next_line() {
    let r = one(
        "resource r0 {\n  on a {\n    device /dev/drbd1; disk /dev/sdb1; meta-disk internal;\n    address\n      10.1.1.1:7788;\n  }\n  on b {\n    device /dev/drbd1; disk /dev/sdb1; meta-disk internal;\n    address ipv4\n      10.1.1.2:7788;\n  }\n}\n",
    );
    let addresses: Vec<String> = r
        .hosts
        .iter()
        .map(|h| h.address.map(|a| a.to_string()).unwrap_or_default())
        .collect();
    assert_eq!(addresses, ["10.1.1.1:7788", "10.1.1.2:7788"]);
    // A keyword and its value, then a new line: the `;` was forgotten.
    let e = errors("resource r0 {\n  protocol C\n  on a { disk /dev/sdb1; }\n}\n");
    assert!(
        error_at(&e, 2)
            .message
            .contains("missing `;` after `protocol C`")
    );
}
