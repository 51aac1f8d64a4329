use super::*;
use crate::testkit::mutations;

const FILE: &str = "/etc/ha.d/ha.cf";

/// tests/classic/ha.cf, a two-node active/passive cluster.
const SAMPLE: &str = "\
# Classic Heartbeat cluster definition, as a two-node active/passive
# cluster would have it. eth1 is the private crossover link.
autojoin none
bcast eth1
warntime 5
deadtime 10
initdead 30
keepalive 2
logfacility local0
node node1.example.org
node node2.example.org
ping 198.51.100.254
respawn hacluster /usr/lib/heartbeat/ipfail
auto_failback off
";

fn ok(text: &str) -> HaCf {
    match parse(text, FILE) {
        Ok(cf) => cf,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn errors(text: &str) -> Vec<ImportError> {
    match parse(text, FILE) {
        Ok(cf) => panic!("expected an error, got {cf:#?}"),
        Err(errors) => errors,
    }
}

/// The one error of `text`, which must be on `line` and say `needle`.
fn error_at(text: &str, line: usize, needle: &str) -> ImportError {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = errors[0].clone();
    assert_eq!((e.file.as_str(), e.line), (FILE, line), "{e}");
    assert!(
        e.message.contains(needle),
        "{:?} lacks {needle:?}",
        e.message
    );
    e
}

/// The notes of `text` on `line`, joined.
fn notes_on(cf: &HaCf, line: usize) -> String {
    cf.notes
        .iter()
        .filter(|n| n.line == line)
        .map(|n| n.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

#[test]
fn sample_file() {
    let cf = ok(SAMPLE);
    assert_eq!(
        cf.nodes,
        vec![
            ("node1.example.org".to_string(), 10),
            ("node2.example.org".to_string(), 11)
        ]
    );
    assert_eq!(cf.keepalive, ms(2_000));
    assert_eq!(cf.warntime, ms(5_000));
    assert_eq!(cf.deadtime, ms(10_000));
    assert_eq!(cf.initdead, ms(30_000));
    assert_eq!(cf.deadping, None);
    assert_eq!(cf.udpport, None);
    assert_eq!(
        cf.links,
        vec![HbLink::Bcast {
            interface: "eth1".into(),
            line: 4
        }]
    );
    assert_eq!(cf.ping, vec![ip("198.51.100.254")]);
    assert!(cf.ipfail);
    assert_eq!(cf.auto_failback, Some(false));
    assert!(cf.stonith.is_empty());
    assert!(notes_on(&cf, 3).contains("autojoin none"));
    assert!(notes_on(&cf, 9).contains("journalctl -u duetd"));
    assert!(notes_on(&cf, 13).contains("ping-node policy"));
    assert_eq!(cf.notes.len(), 3, "{:#?}", cf.notes);
}

#[test]
fn empty_and_comment_only_files_are_empty() {
    assert_eq!(ok(""), HaCf::default());
    assert_eq!(ok("# nothing\n\n   \t\n#node a\n"), HaCf::default());
}

#[test]
fn spacing_tabs_comments_and_crlf() {
    let cf = ok(
        "\t  keepalive\t\t 1 # a second\r\n  node   a\t b#c,d\r\ndeadtime 3#no space before the comment\n",
    );
    assert_eq!(cf.keepalive, ms(1_000));
    assert_eq!(cf.deadtime, ms(3_000));
    // Heartbeat cuts at '#' even inside a word: "b#c,d" is "b".
    assert_eq!(cf.nodes, vec![("a".into(), 2), ("b".into(), 2)]);
}

#[test]
fn a_comment_inside_a_value_cuts_it() {
    let cf = ok("ping 10.0.0.1#10.0.0.2\n");
    assert_eq!(cf.ping, vec![ip("10.0.0.1")]);
}

#[test]
fn continuation_lines_keep_the_first_line_number() {
    let cf = ok("node a \\\n  b \\\n\tc\nkeepalive \\\n 2\n");
    assert_eq!(
        cf.nodes,
        vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]
    );
    assert_eq!(cf.keepalive, ms(2_000));
    // A comment before the backslash hides it, so the line ends there.
    let cf = ok("node a # \\\nnode b\n");
    assert_eq!(cf.nodes, vec![("a".into(), 1), ("b".into(), 2)]);
    // A continuation at the end of the file is simply the end.
    let cf = ok("node a \\");
    assert_eq!(cf.nodes, vec![("a".into(), 1)]);
}

#[test]
fn errors_after_a_continuation_name_its_first_line() {
    error_at("# x\nkeepalive \\\n  soon\n", 2, "keepalive soon");
}

#[test]
fn nodes_several_per_line_commas_and_repeats() {
    let cf = ok("node a b,c\nnode D\nnode a\n");
    assert_eq!(
        cf.nodes,
        vec![
            ("a".into(), 1),
            ("b".into(), 1),
            ("c".into(), 1),
            ("D".into(), 2)
        ]
    );
    assert!(notes_on(&cf, 3).contains("node a is named again (first on line 1)"));
}

#[test]
fn times_in_heartbeat_syntax() {
    let cases = [
        ("2", 2_000),
        ("0.5", 500),
        (".5", 500),
        ("5.", 5_000),
        ("1.7", 1_700),
        ("500ms", 500),
        ("1500MS", 1_500),
        ("250msec", 250),
        ("1500000us", 1_500),
        ("1500usec", 2),
        ("1499us", 1),
        ("0.0015", 2),
        ("0.0014999", 1),
        ("2.5ms", 3),
        ("120", 120_000),
        ("0.123456789123", 123),
    ];
    for (text, want) in cases {
        assert_eq!(
            heartbeat_time(text),
            Ok(Duration::from_millis(want)),
            "{text}"
        );
    }
}

#[test]
fn bad_times_are_errors_at_their_line() {
    for bad in [
        "2s",
        "1min",
        "-1",
        "abc",
        ".",
        "1.2.3",
        "0",
        "0ms",
        "400us",
        "1 s",
        "99999999999999999999999",
    ] {
        let text = format!("node a\nwarntime {bad}\n");
        let errors = errors(&text);
        assert!(
            errors.iter().all(|e| e.line == 2 && e.file == FILE),
            "{bad}: {errors:#?}"
        );
        assert!(
            errors[0].message.starts_with("warntime "),
            "{bad}: {errors:#?}"
        );
    }
    let e = error_at("deadtime 2s\n", 1, "milliseconds (`500ms`)");
    assert_eq!(e.to_string(), format!("{FILE}:1: {}", e.message));
    error_at("deadping -5\n", 1, "negative");
    error_at("initdead 0\n", 1, "at least 1ms");
}

#[test]
fn every_time_directive() {
    let cf = ok("keepalive 200ms\nwarntime 1\ndeadtime 3\ninitdead 20\ndeadping 4\n");
    assert_eq!(
        (
            cf.keepalive,
            cf.warntime,
            cf.deadtime,
            cf.initdead,
            cf.deadping
        ),
        (ms(200), ms(1_000), ms(3_000), ms(20_000), ms(4_000))
    );
}

#[test]
fn a_repeated_setting_keeps_the_last_with_a_note() {
    let cf = ok("keepalive 1\nkeepalive 2\ndeadtime 5 6\n");
    assert_eq!(cf.keepalive, ms(2_000));
    assert_eq!(cf.deadtime, ms(6_000));
    assert!(notes_on(&cf, 2).contains("also on line 1"));
    assert!(notes_on(&cf, 3).contains("also on line 3"));
}

#[test]
fn a_directive_without_value_is_ignored_as_in_heartbeat() {
    let cf = ok("keepalive\nnode\nbcast\nmcast\nucast\nping\n");
    assert_eq!(cf.keepalive, None);
    assert!(cf.nodes.is_empty() && cf.links.is_empty() && cf.ping.is_empty());
    for line in 1..=6 {
        assert!(
            notes_on(&cf, line).contains("without a value"),
            "line {line}"
        );
    }
}

#[test]
fn udpport() {
    assert_eq!(ok("udpport 694\n").udpport, Some(694));
    assert_eq!(ok("udpport 65535\n").udpport, Some(65535));
    for bad in ["0", "65536", "-1", "694x", "ha-cluster"] {
        error_at(&format!("udpport {bad}\n"), 1, "1 to 65535");
    }
}

#[test]
fn udpport_after_a_link_is_noted() {
    let cf = ok("udpport 700\nbcast eth0\n");
    assert!(cf.notes.is_empty(), "{:#?}", cf.notes);
    let cf = ok("bcast eth0\nudpport 700\n");
    assert_eq!(cf.udpport, Some(700));
    assert!(notes_on(&cf, 2).contains("after the link on line 1"));
    let cf = ok("ucast eth0 10.0.0.2\n\nudpport 700\n");
    assert!(notes_on(&cf, 3).contains("after the link on line 1"));
    // mcast has its own port: udpport after it is fine.
    let cf = ok("mcast eth0 239.0.0.1 694 1 0\nudpport 700\n");
    assert!(cf.notes.is_empty(), "{:#?}", cf.notes);
}

#[test]
fn bcast_gives_one_link_per_interface() {
    let cf = ok("bcast eth1 eth2\nbcast\teth3,eth4\n");
    let names: Vec<(String, usize)> = cf
        .links
        .iter()
        .map(|l| match l {
            HbLink::Bcast { interface, line } => (interface.clone(), *line),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("eth1".into(), 1),
            ("eth2".into(), 1),
            ("eth3".into(), 2),
            ("eth4".into(), 2)
        ]
    );
}

#[test]
fn udp_is_the_old_name_of_bcast() {
    let cf = ok("udp eth0\n");
    assert_eq!(
        cf.links,
        vec![HbLink::Bcast {
            interface: "eth0".into(),
            line: 1
        }]
    );
    assert!(notes_on(&cf, 1).contains("old name"));
}

#[test]
fn mcast() {
    let cf = ok("mcast eth0 225.0.0.1 694 1 0\nmcast6 eth1 ff12::1:2:3:4 695 2 0\n");
    assert_eq!(
        cf.links,
        vec![
            HbLink::Mcast {
                interface: "eth0".into(),
                group: ip("225.0.0.1"),
                port: 694,
                ttl: 1,
                line: 1
            },
            HbLink::Mcast {
                interface: "eth1".into(),
                group: ip("ff12::1:2:3:4"),
                port: 695,
                ttl: 2,
                line: 2
            }
        ]
    );
    assert!(cf.notes.is_empty(), "{:#?}", cf.notes);
}

#[test]
fn mcast_loop_and_extra_values_are_noted() {
    let cf = ok("mcast eth0 239.0.0.1 694 255 1 extra\n");
    assert!(matches!(cf.links[0], HbLink::Mcast { ttl: 255, .. }));
    let notes = notes_on(&cf, 1);
    assert!(notes.contains("loop 1 is not carried over"), "{notes}");
    assert!(notes.contains("1 more value(s)"), "{notes}");
}

#[test]
fn malformed_mcast_lines() {
    let cases = [
        ("mcast eth0 239.0.0.1 694 1", "five values"),
        ("mcast eth0", "five values"),
        ("mcast eth0 10.0.0.1 694 1 0", "not a multicast address"),
        ("mcast eth0 mcast.example.org 694 1 0", "host name"),
        ("mcast eth0 239.0.0.1 0 1 0", "1 to 65535"),
        ("mcast eth0 239.0.0.1 70000 1 0", "1 to 65535"),
        ("mcast eth0 239.0.0.1 694 0 0", "ttl 0"),
        ("mcast eth0 239.0.0.1 694 256 0", "ttl 256"),
        ("mcast eth0 239.0.0.1 694 1 2", "loop 2"),
        ("mcast6 eth0 fe80::1 694 1 0", "not a multicast address"),
    ];
    for (text, needle) in cases {
        error_at(&format!("node a\n{text}\n"), 2, needle);
    }
}

#[test]
fn ucast() {
    let cf = ok(
        "ucast eth1 10.0.0.2\nucast6 eth1 fe80::5054:ff:fe29:3949%eth1\nucast6 eth2 2001:db8::2\n",
    );
    assert_eq!(
        cf.links,
        vec![
            HbLink::Ucast {
                interface: "eth1".into(),
                peer: ip("10.0.0.2"),
                line: 1
            },
            HbLink::Ucast {
                interface: "eth1".into(),
                peer: ip("fe80::5054:ff:fe29:3949"),
                line: 2
            },
            HbLink::Ucast {
                interface: "eth2".into(),
                peer: ip("2001:db8::2"),
                line: 3
            }
        ]
    );
}

#[test]
fn malformed_ucast_lines() {
    error_at("ucast eth1\n", 1, "an interface and the peer's address");
    error_at(
        "ucast eth1 node2.example.org\n",
        1,
        "node2.example.org is a host name",
    );
    error_at("ucast eth1 10.0.0.300\n", 1, "not an IP address");
    error_at(
        "ucast6 eth1 fe80::1%eth2\n",
        1,
        "scope eth2 is not the interface eth1",
    );
    error_at("ucast eth1 fe80::1%eth1\n", 1, "not an IP address");
    let cf = ok("ucast eth1 10.0.0.2 10.0.0.3\n");
    assert!(notes_on(&cf, 1).contains("ignored"));
}

#[test]
fn links_keep_file_order() {
    let cf = ok("ucast eth1 10.0.0.2\nbcast eth0\nmcast eth2 239.1.1.1 694 1 0\n");
    let lines: Vec<usize> = cf
        .links
        .iter()
        .map(|l| match l {
            HbLink::Bcast { line, .. }
            | HbLink::Mcast { line, .. }
            | HbLink::Ucast { line, .. } => *line,
        })
        .collect();
    assert_eq!(lines, vec![1, 2, 3]);
}

#[test]
fn ping_and_ping_groups_merge_without_duplicates() {
    let cf = ok(
        "ping 10.0.0.254 10.0.1.254,2001:db8::1\nping_group uplinks 10.0.0.254 10.0.2.254\nping6 2001:db8::1\n",
    );
    assert_eq!(
        cf.ping,
        vec![
            ip("10.0.0.254"),
            ip("10.0.1.254"),
            ip("2001:db8::1"),
            ip("10.0.2.254")
        ]
    );
    assert!(notes_on(&cf, 2).contains("no ping groups"));
}

#[test]
fn ping_host_names_ask_for_addresses() {
    error_at(
        "ping gateway.example.org\n",
        1,
        "write the address it resolves to",
    );
    error_at("ping_group g 10.0.0.1 router\n", 1, "router is a host name");
    error_at("ping_group g\n", 1, "no addresses");
    error_at("ping_group\t\n", 1, "needs a name and addresses");
    error_at("ping 10.0.0.1/24\n", 1, "not an IP address");
}

#[test]
fn auto_failback_values() {
    for (value, want) in [
        ("on", true),
        ("off", false),
        ("yes", true),
        ("no", false),
        ("TRUE", true),
        ("False", false),
        ("y", true),
        ("n", false),
        ("1", true),
        ("0", false),
    ] {
        let cf = ok(&format!("auto_failback {value}\n"));
        assert_eq!(cf.auto_failback, Some(want), "{value}");
        assert!(cf.notes.is_empty(), "{value}: {:#?}", cf.notes);
    }
    let cf = ok("auto_failback legacy\n");
    assert_eq!(cf.auto_failback, Some(true));
    assert!(notes_on(&cf, 1).contains("legacy"));
    error_at("auto_failback sometimes\n", 1, "on, off or legacy");
    // Heartbeat does not know the dashed spelling.
    error_at("auto-failback on\n", 1, "did you mean `auto_failback`");
}

#[test]
fn nice_failback_is_the_inverse_of_auto_failback() {
    let cf = ok("nice_failback on\n");
    assert_eq!(cf.auto_failback, Some(false));
    assert!(notes_on(&cf, 1).contains("old name"));
    let cf = ok("nice_failback off\n");
    assert_eq!(cf.auto_failback, Some(true));
    let cf = ok("auto_failback on\nnice_failback on\n");
    assert_eq!(cf.auto_failback, Some(false));
    assert!(notes_on(&cf, 2).contains("also on line 1"));
    error_at("nice_failback legacy\n", 1, "on or off");
}

#[test]
fn autojoin() {
    assert!(notes_on(&ok("autojoin any\n"), 1).contains("no equivalent"));
    assert!(notes_on(&ok("autojoin Other\n"), 1).contains("no equivalent"));
    assert!(notes_on(&ok("autojoin none\n"), 1).contains("as here"));
    error_at("autojoin some\n", 1, "none, other or any");
}

#[test]
fn respawn_ipfail_and_other_programs() {
    let cf = ok("respawn hacluster /usr/lib64/heartbeat/ipfail\nping 10.0.0.1\n");
    assert!(cf.ipfail);
    assert!(notes_on(&cf, 1).contains("runs no group"));
    let cf = ok(
        "respawn root /usr/local/bin/monitor --fast\nfailfast hacluster /usr/lib/heartbeat/ccm\n",
    );
    assert!(!cf.ipfail);
    assert!(notes_on(&cf, 1).contains("/usr/local/bin/monitor is not carried over"));
    assert!(notes_on(&cf, 2).contains("FailureAction=reboot"));
    // ipfail's name must be the whole file name.
    assert!(!ok("respawn hacluster /usr/lib/heartbeat/notipfail\n").ipfail);
    error_at("respawn hacluster\n", 1, "needs a user and a program");
}

#[test]
fn ipfail_without_ping_nodes_is_noted() {
    let cf = ok("respawn hacluster /usr/lib/heartbeat/ipfail\n");
    assert!(cf.ipfail);
    assert!(notes_on(&cf, 1).contains("without ping nodes"));
}

#[test]
fn crm_on_is_an_error_and_off_is_silent() {
    for value in [
        "on", "yes", "true", "respawn", "RESPAWN", "minimal", "manual", "valgrind",
    ] {
        error_at(&format!("crm {value}\n"), 1, "CIB, not in haresources");
        error_at(&format!("pacemaker {value}\n"), 1, "Pacemaker's tools");
    }
    for value in ["off", "no", "false"] {
        let cf = ok(&format!("crm {value}\npacemaker {value}\n"));
        assert!(cf.notes.is_empty(), "{value}: {:#?}", cf.notes);
    }
    error_at("crm maybe\n", 1, "on, off or respawn");
}

#[test]
fn stonith_forms() {
    let cf = ok(concat!(
        "stonith baytech /etc/ha.d/conf/stonith.baytech\n",
        "stonith_host *     baytech 10.0.0.3 mylogin mysecretpassword\n",
        "stonith_host ken3  rps10 /dev/ttyS1 kathy 0 \n",
        "stonith_host kathy null\n",
    ));
    assert_eq!(
        cf.stonith,
        vec![
            Stonith {
                host: None,
                device_type: "baytech".into(),
                params: vec!["/etc/ha.d/conf/stonith.baytech".into()],
                from_file: true,
                line: 1
            },
            Stonith {
                host: None,
                device_type: "baytech".into(),
                params: vec![
                    "10.0.0.3".into(),
                    "mylogin".into(),
                    "mysecretpassword".into()
                ],
                from_file: false,
                line: 2
            },
            Stonith {
                host: Some("ken3".into()),
                device_type: "rps10".into(),
                params: vec!["/dev/ttyS1".into(), "kathy".into(), "0".into()],
                from_file: false,
                line: 3
            },
            Stonith {
                host: Some("kathy".into()),
                device_type: "null".into(),
                params: vec![],
                from_file: false,
                line: 4
            },
        ]
    );
    // The conversion says what becomes of them (once, convert.rs).
    for line in 1..=4 {
        assert!(notes_on(&cf, line).is_empty(), "line {line}");
    }
    // A note is written into the imported config: no password in it.
    assert!(
        cf.notes
            .iter()
            .all(|n| !n.message.contains("mysecretpassword"))
    );
}

#[test]
fn malformed_stonith_lines() {
    error_at("stonith baytech\n", 1, "`stonith TYPE FILE`");
    error_at("stonith\n", 1, "`stonith TYPE FILE`");
    error_at("stonith_host *\n", 1, "stonith_host needs a host");
}

#[test]
fn directives_without_equivalent_are_noted() {
    for (name, value, needle) in [
        ("logfacility", "local0", "journalctl"),
        ("logfile", "/var/log/ha-log", "journalctl"),
        ("debugfile", "/var/log/ha-debug", "journalctl"),
        ("use_logd", "yes", "journalctl"),
        ("debug", "1", "journalctl"),
        ("conn_logd_time", "60", "journalctl"),
        ("serial", "/dev/ttyS0 /dev/ttyS1", "second network link"),
        ("baud", "19200", "second network link"),
        ("watchdog", "/dev/watchdog", "WatchdogSec"),
        ("apiauth", "ipfail gid=haclient uid=hacluster,root", "D-Bus"),
        ("hopfudge", "1", "forwards no packets"),
        ("hbgenmethod", "time", "incarnation"),
        ("realtime", "off", "CPUSchedulingPolicy"),
        ("rtprio", "5", "CPUSchedulingPolicy"),
        ("coredumps", "true", "coredumpctl"),
        ("msgfmt", "netstring", "format of their own"),
        ("compression", "bz2", "format of their own"),
        ("compression_threshold", "2", "format of their own"),
        ("traditional_compression", "on", "format of their own"),
        ("max_rexmit_delay", "250", "format of their own"),
        ("uuidfrom", "nodename", "UUIDs"),
        ("quorum_server", "qs.example.org", "witness"),
        ("hbaping", "qlogic-qla2200-0", "Fibre Channel"),
        ("crmd_spawns_pengine", "off", "Pacemaker"),
        ("env", "logpriority=debug", "Environment="),
    ] {
        let cf = ok(&format!("node a\n{name} {value}\n"));
        let notes = notes_on(&cf, 2);
        assert!(notes.contains(&format!("`{name}`")), "{name}: {notes}");
        assert!(notes.contains(needle), "{name}: {notes}");
    }
}

#[test]
fn every_documented_directive_is_known() {
    // The directives of Heartbeat 3.0.6 (config.c's tables and the HBcomm
    // plugins) and 2.1's openais.
    let all = [
        "cluster",
        "node",
        "hopfudge",
        "keepalive",
        "deadtime",
        "deadping",
        "initdead",
        "warntime",
        "watchdog",
        "baud",
        "udpport",
        "logfacility",
        "logfile",
        "debugfile",
        "nice_failback",
        "auto_failback",
        "rtprio",
        "hbgenmethod",
        "realtime",
        "debug",
        "normalpoll",
        "msgfmt",
        "use_logd",
        "conn_logd_time",
        "use_apphbd",
        "log_badpack",
        "syslogmsgfmt",
        "coredumps",
        "coreroot",
        "crm_daemon_dir",
        "crmd_spawns_pengine",
        "crm",
        "pacemaker",
        "autojoin",
        "uuidfrom",
        "compression",
        "compression_threshold",
        "traditional_compression",
        "env",
        "max_rexmit_delay",
        "record_config_changes",
        "record_pengine_inputs",
        "enable_config_writes",
        "memreserve",
        "quorum_server",
        "stonith",
        "stonith_host",
        "apiauth",
        "respawn",
        "failfast",
        "bcast",
        "udp",
        "mcast",
        "mcast6",
        "ucast",
        "ucast6",
        "serial",
        "ping",
        "ping6",
        "ping_group",
        "hbaping",
        "rds",
        "tipc",
        "openais",
    ];
    for name in all {
        assert!(is_known(name), "{name}");
    }
}

#[test]
fn unknown_directives_are_errors_with_a_hint() {
    error_at(
        "node a\nfrobnicate yes\n",
        2,
        "unknown directive `frobnicate`",
    );
    error_at("Keepalive 2\n", 1, "did you mean `keepalive`");
    error_at("keepalive=2\n", 1, "with spaces");
    error_at("auto-failback off\n", 1, "underscores");
}

#[test]
fn cluster_name_is_noted() {
    let cf = ok("cluster prod\n");
    assert!(notes_on(&cf, 1).contains("[cluster] name"));
}

#[test]
fn all_errors_of_a_file_are_reported_at_once() {
    let errors = errors("keepalive soon\nnode a\nping gw\nmcast eth0\nbogus\n");
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 3, 4, 5], "{errors:#?}");
}

#[test]
fn heartbeat_sample_ha_cf_directives() {
    // The active lines of Heartbeat's own annotated ha.cf and its man page example.
    let cf = ok(concat!(
        "logfacility\tlocal0\n",
        "auto_failback on\n",
        "keepalive  1\nwarntime   6\ndeadtime  10\n",
        "initdead 120 # your choice.\n",
        "mcast eth0 239.192.0.42 694 1 0\n",
        "ucast eth1 10.0.0.7\nucast eth1 10.0.0.8\n",
        "node alice\nnode bob\n",
        "compression bz2\ncompression_threshold 20\ntraditional_compression on\n",
        "crmd_spawns_pengine off\n",
        "pacemaker off\n",
    ));
    assert_eq!(cf.links.len(), 3);
    assert_eq!(cf.initdead, ms(120_000));
    assert_eq!(cf.nodes.len(), 2);
}

/// Drops, doubles or swaps in a tricky character at random places of the
/// sample: whatever comes out, the parser answers without panicking, and
/// every error names the file and a line of it.
#[test]
fn mutated_files_never_panic() {
    let base = format!(
        "{SAMPLE}mcast eth0 239.0.0.1 694 1 0\nucast6 eth1 fe80::1%eth1\nstonith_host * ipmi 10.0.0.9 admin pw\n\
         ping_group g 10.0.0.1 10.0.0.2\nnode a \\\n b\nkeepalive 1.5ms\n"
    );
    let tricky = [
        '#', '\\', ',', '=', '.', '%', '\t', '\n', '-', ':', 'é', '\r',
    ];
    for text in mutations(&base, &tricky, 0x4a_2e_cf, 500) {
        let lines = text.lines().count();
        if let Err(errors) = parse(&text, FILE) {
            for e in errors {
                assert!(
                    e.file == FILE && (1..=lines).contains(&e.line),
                    "{e} in {text:?}"
                );
                assert!(!e.message.is_empty());
            }
        }
    }
}
