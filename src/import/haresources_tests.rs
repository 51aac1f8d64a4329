use super::*;

const CLASSIC: &str =
    "# preferred node, then the resources, started left to right and stopped right to left
node1.example.org drbddisk::r0 \\
    Filesystem::/dev/drbd1::/mnt/shared::ext3 \\
    IPaddr::198.51.100.10/24/eth0 apache2
";

fn one(text: &str) -> Group {
    let mut groups = parse(text, "haresources").expect("parses");
    assert_eq!(groups.len(), 1, "{groups:?}");
    groups.remove(0)
}

fn err(text: &str) -> ImportError {
    let errors = parse(text, "haresources").expect_err("refused");
    errors[0].clone()
}

fn ip(address: &str, prefix: Option<u8>, interface: Option<&str>) -> Resource {
    Resource::Ip {
        address: address.parse().expect("test address"),
        prefix,
        interface: interface.map(String::from),
        broadcast: None,
    }
}

#[test]
fn the_classic_line_with_continuations_is_one_group_in_order() {
    let g = one(CLASSIC);
    assert_eq!(g.preferred, "node1.example.org");
    assert_eq!(g.line, 2, "the line the group starts on");
    assert_eq!(
        g.resources,
        vec![
            Resource::Replica {
                name: Some("r0".into())
            },
            Resource::Filesystem {
                device: "/dev/drbd1".into(),
                mountpoint: "/mnt/shared".into(),
                fstype: "ext3".into(),
                options: None,
            },
            ip("198.51.100.10", Some(24), Some("eth0")),
            Resource::Unit {
                name: "apache2".into()
            },
        ]
    );
}

#[test]
fn the_short_form_is_a_bare_address_then_an_init_script() {
    let g = one("node1.example.org 198.51.100.10 apache2\n");
    assert_eq!(
        g.resources,
        vec![
            ip("198.51.100.10", None, None),
            Resource::Unit {
                name: "apache2".into()
            }
        ]
    );
}

#[test]
fn scripts_keep_their_arguments_and_resource_d_names_are_scripts_even_bare() {
    let g = one(
        "node1.example.org IPaddr::198.51.100.10/26 apache2 pageme::650-555-1212 MailTo::root@example.org::failover Delay\n",
    );
    assert_eq!(g.resources[0], ip("198.51.100.10", Some(26), None));
    assert_eq!(
        g.resources[2],
        Resource::Script {
            name: "pageme".into(),
            args: vec!["650-555-1212".into()]
        }
    );
    assert_eq!(
        g.resources[3],
        Resource::Script {
            name: "MailTo".into(),
            args: vec!["root@example.org".into(), "failover".into()]
        }
    );
    assert_eq!(
        g.resources[4],
        Resource::Script {
            name: "Delay".into(),
            args: vec![]
        }
    );
}

#[test]
fn ip_forms_prefix_netmask_nic_broadcast_ipv6_and_ipaddr2() {
    let g = one(
        "n1 IPaddr2::198.51.100.11/24/eth0/198.51.100.255 IPaddr::198.51.100.12/255.255.255.0 \
         IPaddr2::2001:db8::10/64/eth1 198.51.100.13/25/eth2\n",
    );
    assert_eq!(
        g.resources[0],
        Resource::Ip {
            address: "198.51.100.11".parse().expect("addr"),
            prefix: Some(24),
            interface: Some("eth0".into()),
            broadcast: Some("198.51.100.255".into()),
        }
    );
    assert_eq!(g.resources[1], ip("198.51.100.12", Some(24), None));
    assert_eq!(g.resources[2], ip("2001:db8::10", Some(64), Some("eth1")));
    assert_eq!(g.resources[3], ip("198.51.100.13", Some(25), Some("eth2")));
}

#[test]
fn ipv6addr_is_a_native_ipv6_address_and_nothing_else() {
    let g = one("n1 IPv6addr::2001:db8::10/64/eth0 IPv6addr::2001:db8:1::5\n");
    assert_eq!(g.resources[0], ip("2001:db8::10", Some(64), Some("eth0")));
    assert_eq!(g.resources[1], ip("2001:db8:1::5", None, None));
    for bad in [
        "n1 IPv6addr::198.51.100.10/24/eth0\n",
        "n1 IPv6addr::2001:db8::10/64/eth0/2001:db8::ff\n",
        "n1 IPv6addr::2001:db8::10/129\n",
    ] {
        let e = err(bad);
        assert!(
            e.message.contains("IPv6") || e.message.contains("prefix"),
            "{bad}: {e}"
        );
    }
    // Without an argument it stays heartbeat's script, as before.
    assert!(matches!(
        &one("n1 IPv6addr\n").resources[0],
        Resource::Script { .. }
    ));
}

#[test]
fn filesystem_options_lose_a_leading_dash_o() {
    for form in ["noatime,nodev", "-onoatime,nodev"] {
        let g = one(&format!("n1 Filesystem::/dev/drbd1::/data::ext4::{form}\n"));
        let Resource::Filesystem { options, .. } = &g.resources[0] else {
            panic!("{g:?}");
        };
        assert_eq!(options.as_deref(), Some("noatime,nodev"), "{form}");
    }
    // Words are split at whitespace, as heartbeat splits them.
    let e = err("n1 Filesystem::/dev/drbd1::/data::ext4::-o noatime\n");
    assert!(e.message.contains("without spaces"), "{e}");
}

#[test]
fn comments_blank_lines_tabs_and_several_groups() {
    let text =
        "\n# two groups\n\tn1\t198.51.100.10\tapache2   # web\n\n  n2 drbddisk  mysql # db\n";
    let groups = parse(text, "haresources").expect("parses");
    assert_eq!(groups.len(), 2);
    assert_eq!((groups[0].preferred.as_str(), groups[0].line), ("n1", 3));
    assert_eq!((groups[1].preferred.as_str(), groups[1].line), ("n2", 5));
    assert_eq!(groups[1].resources[0], Resource::Replica { name: None });
}

#[test]
fn a_continuation_at_the_end_of_the_file_still_makes_a_group() {
    let g = one("n1 apache2 \\\n");
    assert_eq!(g.resources.len(), 1);
}

#[test]
fn bad_lines_are_errors_with_file_and_line() {
    let e = err("\nn1\n");
    assert_eq!((e.file.as_str(), e.line), ("haresources", 2));
    assert!(e.message.contains("no resources"), "{e}");

    let e = err("n1 IPaddr::198.51.100.300/24\n");
    assert!(e.message.contains("not an IP address"), "{e}");
    let e = err("n1 IPaddr::198.51.100.10/33\n");
    assert!(e.message.contains("not a prefix length"), "{e}");
    let e = err("n1 IPaddr::198.51.100.10/255.0.255.0\n");
    assert!(e.message.contains("not a prefix length"), "{e}");
    let e = err("n1 IPaddr\n");
    assert!(e.message.contains("takes one argument"), "{e}");
    let e = err("n1 IPaddr::198.51.100.10/24/eth0/198.51.100.255/x\n");
    assert!(e.message.contains("unexpected"), "{e}");
    let e = err("n1 Filesystem::/dev/drbd1::mnt::ext4\n");
    assert!(e.message.contains("not an absolute path"), "{e}");
    let e = err("n1 Filesystem::/dev/drbd1::/mnt\n");
    assert!(e.message.contains("expected Filesystem::"), "{e}");
    let e = err("n1 drbddisk::r0::r1\n");
    assert!(e.message.contains("one DRBD resource"), "{e}");
    let e = err("n1 ::x\n");
    assert!(e.message.contains("without a name"), "{e}");
    let e = err("n1 apa$che\n");
    assert!(e.message.contains("not a script"), "{e}");
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let errors = parse("n1 IPaddr\nn2 Filesystem::x\n", "hr").expect_err("refused");
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 2]);
}

/// Mutations of the classic file never panic.
#[test]
fn mutated_files_never_panic() {
    let tricky = [':', '/', '\\', '#', ' ', '\n', 'x', '9', '.'];
    for text in crate::testkit::mutations(CLASSIC, &tricky, 0x9E37_79B9, 500) {
        let _ = parse(&text, "haresources");
    }
}

#[test]
fn a_comment_line_inside_a_continued_group_is_skipped() {
    let groups = parse(
        "n1 drbddisk::r0 \\\n# the filesystem next\n    Filesystem::/dev/drbd1::/mnt/shared::ext3 \\\n   apache2\n",
        "haresources",
    )
    .expect("parses");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].resources.len(), 3, "{:?}", groups[0]);
}
