//! `ocf` resources: names, parameters and instances from the file alone,
//! and the checks against an agent's meta-data, with fake agents in an OCF
//! root of the test's own.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::host::ocf::AgentName;
use crate::testkit::TempDir;

const BASE: &str = r#"[cluster]
name = "lab"
key-file = "duet.key"

[[link]]
name = "public"
interface = "eth0"
mode = "ucast"

[[node]]
name = "node1"
address = { public = "198.51.100.1" }

[[node]]
name = "node2"
address = { public = "198.51.100.2" }

[fencing]
command = "/usr/local/sbin/fence-node"

[[group]]
name = "web"
preferred = "node1"
monitor-interval = "2s"
"#;

/// Meta-data in the shape resource-agents prints, with a required `ip`.
const METADATA: &str = r#"<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="IPaddr2" version="1.0">
<version>1.0</version>
<parameters>
<parameter name="ip" unique="1" required="1"><content type="string"/></parameter>
<parameter name="cidr_netmask"><content type="string"/></parameter>
<parameter name="nic"><content type="string"/></parameter>
</parameters>
<actions><action name="start" timeout="20s"/></actions>
</resource-agent>"#;

fn path() -> &'static Path {
    Path::new("/etc/duet/duet.toml")
}

/// An OCF root with `heartbeat/NAME` agents running each body as sh.
fn root(tag: &str, agents: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new(&format!("ocf-config-{tag}"));
    let provider = dir.0.join("resource.d/heartbeat");
    std::fs::create_dir_all(&provider).expect("provider folder");
    for (name, body) in agents {
        let agent = provider.join(name);
        std::fs::write(&agent, format!("#!/bin/sh\n{body}\n")).expect("agent");
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

/// An agent that prints METADATA for meta-data.
fn ipaddr2() -> (&'static str, String) {
    (
        "IPaddr2",
        format!("[ \"$1\" = meta-data ] && cat <<'END'\n{METADATA}\nEND\nexit 0"),
    )
}

fn load(text: &str, root: &Path) -> Result<Loaded, ConfigErrors> {
    parse_in(text, path(), root)
}

/// 1-based number of the last line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .rfind(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    text[..at].matches('\n').count() + 1
}

fn resources(tables: &[&str]) -> String {
    let mut text = BASE.to_string();
    for t in tables {
        text.push_str(&format!("\n[[group.resource]]\n{t}\n"));
    }
    text
}

#[test]
fn an_ocf_resource_reads_into_agent_instance_and_parameters() {
    let (name, body) = ipaddr2();
    let dir = root("model", &[(name, &body), ("Dummy", "exit 0")]);
    let text = resources(&[
        "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.10\", cidr_netmask = \"24\" }",
        "ocf = \"ocf:heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.11\" }\nstart-timeout = \"20s\"",
        "unit = \"apache2.service\"",
        "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.12\" }\ninstance = \"p_ip_mail\"",
    ]);
    let loaded = load(&text, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    // Dummy prints no meta-data; it is not used, so never asked.
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let group = &loaded.config.groups[0];
    let agent = AgentName {
        provider: "heartbeat".into(),
        kind: "IPaddr2".into(),
    };
    let ocf = |instance: &str, params: &[(&str, &str)]| {
        ResourceKind::Ocf(OcfAgent {
            agent: agent.clone(),
            instance: instance.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            root: dir.0.clone(),
            monitor_interval: Duration::from_secs(2),
        })
    };
    assert_eq!(
        group.resources[0].kind,
        ocf(
            "web-IPaddr2",
            &[("cidr_netmask", "24"), ("ip", "198.51.100.10")]
        )
    );
    // The second of a type in the group is numbered; a name written wins.
    assert_eq!(
        group.resources[1].kind,
        ocf("web-IPaddr2-2", &[("ip", "198.51.100.11")])
    );
    assert_eq!(
        group.resources[3].kind,
        ocf("p_ip_mail", &[("ip", "198.51.100.12")])
    );
    let timeouts: Vec<(u64, u64)> = group
        .resources
        .iter()
        .map(|r| (r.start_timeout.as_secs(), r.stop_timeout.as_secs()))
        .collect();
    assert_eq!(timeouts, [(60, 60), (20, 60), (90, 90), (60, 60)]);
    assert_eq!(
        group.resources[0].label(),
        "ocf:heartbeat:IPaddr2 web-IPaddr2"
    );
    let ResourceKind::Ocf(a) = &group.resources[0].kind else {
        panic!("not ocf");
    };
    assert_eq!(a.path(), dir.0.join("resource.d/heartbeat/IPaddr2"));
}

#[test]
fn a_missing_agent_is_a_warning_not_an_error() {
    let dir = root("missing", &[]);
    let text = resources(&["ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.10\" }"]);
    let loaded = load(&text, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    let agent = dir.0.join("resource.d/heartbeat/IPaddr2");
    assert_eq!(
        (w.line, w.key.as_str()),
        (line_of(&text, "ocf = "), "group[0].resource[0].ocf")
    );
    assert_eq!(
        w.message,
        format!(
            "ocf:heartbeat:IPaddr2 is not installed on this machine (no {}): a node without \
             it cannot start this group; its parameters are not checked",
            agent.display()
        )
    );
    assert!(
        w.hint
            .as_deref()
            .is_some_and(|h| h.starts_with("install resource-agents")),
        "{w}"
    );
    assert_eq!(loaded.config.groups[0].resources.len(), 1);
}

#[test]
fn parameters_are_checked_against_the_meta_data() {
    let (name, body) = ipaddr2();
    let dir = root("params", &[(name, &body)]);
    // A typo: the name, its line, the nearest name and every valid one.
    let text = resources(&[
        "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.10\", cidr_netmas = \"24\" }",
    ]);
    let errors = load(&text, &dir.0).expect_err("typo").errors;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert_eq!(
        (e.line, e.key.as_str(), e.message.as_str()),
        (
            line_of(&text, "params = "),
            "group[0].resource[0].params.cidr_netmas",
            "ocf:heartbeat:IPaddr2 has no parameter \"cidr_netmas\""
        )
    );
    assert_eq!(
        e.hint.as_deref(),
        Some(
            "\"cidr_netmask\"? The parameters of ocf:heartbeat:IPaddr2: \"ip\", \
             \"cidr_netmask\", \"nic\""
        )
    );
    // A required parameter left out.
    let text = resources(&["ocf = \"heartbeat:IPaddr2\"\nparams = { nic = \"eth0\" }"]);
    let errors = load(&text, &dir.0).expect_err("required").errors;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert_eq!(
        (e.line, e.key.as_str(), e.message.as_str()),
        (
            line_of(&text, "params = "),
            "group[0].resource[0].params",
            "ocf:heartbeat:IPaddr2 needs parameter \"ip\""
        )
    );
    assert!(
        e.hint
            .as_deref()
            .is_some_and(|h| h.contains("params = { ip = \"...\" }")),
        "{e}"
    );
    // No params at all: at the resource's table.
    let text = resources(&["ocf = \"heartbeat:IPaddr2\""]);
    let errors = load(&text, &dir.0).expect_err("no params").errors;
    assert_eq!(
        (errors.len(), errors[0].line, errors[0].key.as_str()),
        (
            1,
            line_of(&text, "[[group.resource]]"),
            "group[0].resource[0]"
        )
    );
}

#[test]
fn meta_data_that_cannot_be_read_is_a_warning_saying_why() {
    let dir = root(
        "metadata",
        &[
            ("Broken", "echo 'ocf-shellfuncs: not found' >&2; exit 5"),
            ("Chatty", "echo usage: Chatty start stop; exit 0"),
        ],
    );
    let text = resources(&[
        "ocf = \"heartbeat:Broken\"\nparams = { anything = \"1\" }",
        "ocf = \"heartbeat:Chatty\"",
    ]);
    let loaded = load(&text, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    let messages: Vec<(usize, &str)> = loaded
        .warnings
        .iter()
        .map(|w| (w.line, w.message.as_str()))
        .collect();
    let broken = dir.0.join("resource.d/heartbeat/Broken");
    let chatty = dir.0.join("resource.d/heartbeat/Chatty");
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(
        messages[0],
        (
            line_of(&text, "ocf = \"heartbeat:Broken"),
            format!(
                "cannot read the meta-data of ocf:heartbeat:Broken ({}): meta-data exited \
                 with 5: ocf-shellfuncs: not found; its parameters are not checked",
                broken.display()
            )
            .as_str()
        )
    );
    assert!(
        messages[1].1.starts_with(&format!(
            "cannot read the meta-data of ocf:heartbeat:Chatty ({}): its meta-data is not XML",
            chatty.display()
        )),
        "{messages:#?}"
    );
}

#[test]
fn names_parameters_and_instances_are_checked_from_the_file_alone() {
    let (name, body) = ipaddr2();
    let dir = root("names", &[(name, &body)]);
    // (resource table, line with, key, message, hint)
    let cases = [
        (
            "ocf = \"IPaddr2\"",
            "ocf = ",
            "group[0].resource[0].ocf",
            "\"IPaddr2\" has no provider",
            "the provider first, e.g. \"heartbeat:IPaddr2\"",
        ),
        (
            "ocf = \"lsb:heartbeat:apache\"",
            "ocf = ",
            "group[0].resource[0].ocf",
            "class \"lsb\" is not ocf",
            "script = \"/etc/init.d/NAME\" (lsb)",
        ),
        (
            "ocf = \"heartbeat:../../sh\"",
            "ocf = ",
            "group[0].resource[0].ocf",
            "type \"../../sh\" is not a name",
            "provider:type of an OCF resource agent",
        ),
        (
            "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.10\", cidr-netmask = \"24\" }",
            "params = ",
            "group[0].resource[0].params.cidr-netmask",
            "\"cidr-netmask\" is not a parameter name",
            "OCF_RESKEY_<name>",
        ),
        (
            "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.10\", CRM_meta_timeout = \"5000\" }",
            "params = ",
            "group[0].resource[0].params.CRM_meta_timeout",
            "CRM_meta_timeout is a cluster meta attribute",
            "start-timeout",
        ),
        (
            "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"a\\u0000b\" }",
            "params = ",
            "group[0].resource[0].params.ip",
            "the value of ip has a NUL character",
            "environment",
        ),
        (
            "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.10\" }\ninstance = \"a/b\"",
            "instance = ",
            "group[0].resource[0].instance",
            "invalid instance name \"a/b\"",
            "unique in the cluster",
        ),
        (
            "unit = \"x.service\"\nparams = { ip = \"198.51.100.10\" }",
            "params = ",
            "group[0].resource[0].params",
            "params is only for ocf resources",
            "remove it from this unit resource",
        ),
    ];
    for (table, line_with, key, message, hint) in cases {
        let text = resources(&[table]);
        let errors = load(&text, &dir.0).expect_err(table).errors;
        let want = super::tests::Want {
            line: line_of(&text, line_with),
            key,
            message,
            hint,
        };
        super::tests::assert_single(table, &errors, &want);
    }
}

#[test]
fn two_resources_may_not_share_an_instance() {
    let (name, body) = ipaddr2();
    let dir = root("instances", &[(name, &body)]);
    let text = resources(&[
        "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.10\" }",
        "ocf = \"heartbeat:IPaddr2\"\nparams = { ip = \"198.51.100.11\" }\ninstance = \"web-IPaddr2\"",
    ]);
    let errors = load(&text, &dir.0).expect_err("shared instance").errors;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        (errors[0].line, errors[0].message.as_str()),
        (
            line_of(&text, "instance = "),
            "instance web-IPaddr2 is also group[0].resource[0]'s"
        )
    );
}
