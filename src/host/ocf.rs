//! OCF resource agents: the Open Cluster Framework's resource agent API,
//! Pacemaker's `ocf:` class, Debian's resource-agents package. Where an
//! agent lives, the environment it is given, what its exit codes are called
//! and which parameters its meta-data declares. Shared by config validation
//! (names, parameters, meta-data) and the agent runner
//! (`daemon::agents::ocf`, which says what each exit means for each
//! operation).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where agents are installed unless `OCF_ROOT` says otherwise: the root
/// every distribution's resource-agents package uses.
pub const DEFAULT_ROOT: &str = "/usr/lib/ocf";
/// Read by duetd and duetctl to find the agents elsewhere (a NixOS store
/// path, a test's own tree); the agents themselves read it too.
pub const ROOT_ENV: &str = "OCF_ROOT";
/// The API version duet speaks: 1.0's start, stop, monitor and meta-data.
/// It never promotes, demotes, reloads or migrates.
pub const API_VERSION: (&str, &str) = ("1", "0");
/// Prefix of the meta attributes a cluster manager passes itself
/// (`OCF_RESKEY_CRM_meta_timeout`); a parameter may not take one of those
/// names.
pub const META_PREFIX: &str = "CRM_meta_";
/// Agent and provider names become a path under the root: no `/`, and no
/// leading `.` (so never `..`).
const MAX_NAME: usize = 64;
/// Longer than any parameter name in resource-agents by far; past this a
/// value was written where a name belongs.
const MAX_PARAM_NAME: usize = 128;
/// meta-data only prints a constant document; agents advertise 5 s for it,
/// and a Python agent's interpreter may need a moment on a loaded machine.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// No agent's meta-data comes near this; past it something else is talking.
const METADATA_LIMIT: usize = 1 << 20;
/// How long to wait for the end of an agent's output after it exited: a
/// daemon it started in the background may hold the pipe open for ever.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// The root in effect: `OCF_ROOT` when set to an absolute path, else
/// /usr/lib/ocf.
pub fn root() -> PathBuf {
    match std::env::var_os(ROOT_ENV) {
        Some(v) if Path::new(&v).is_absolute() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_ROOT),
    }
}

/// `provider:type`, e.g. heartbeat:IPaddr2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentName {
    pub provider: String,
    /// The agent's type (Pacemaker's `type=`), its file name.
    pub kind: String,
}

impl AgentName {
    /// `ROOT/resource.d/PROVIDER/TYPE`.
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join("resource.d")
            .join(&self.provider)
            .join(&self.kind)
    }
}

impl std::fmt::Display for AgentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ocf:{}:{}", self.provider, self.kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} has no provider")]
    NoProvider(String),
    #[error("{0:?} is not provider:type")]
    Shape(String),
    #[error("class {class:?} is not ocf")]
    Class { class: String },
    #[error("{what} {name:?} is not a name of letters, digits, _ - and .")]
    Part { what: &'static str, name: String },
}

/// Reads `provider:type` or `ocf:provider:type`.
pub fn parse_name(text: &str) -> Result<AgentName, NameError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (provider, kind) = match parts.as_slice() {
        [_] => return Err(NameError::NoProvider(text.to_string())),
        [provider, kind] => (*provider, *kind),
        ["ocf", provider, kind] => (*provider, *kind),
        [class, _, _] => {
            return Err(NameError::Class {
                class: (*class).to_string(),
            });
        }
        _ => return Err(NameError::Shape(text.to_string())),
    };
    for (what, part) in [("provider", provider), ("type", kind)] {
        let ok = !part.is_empty()
            && part.len() <= MAX_NAME
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok {
            return Err(NameError::Part {
                what,
                name: part.to_string(),
            });
        }
    }
    Ok(AgentName {
        provider: provider.to_string(),
        kind: kind.to_string(),
    })
}

/// A parameter name that can be an environment variable's tail
/// (`OCF_RESKEY_<name>`) and a shell variable the agent reads.
pub fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_PARAM_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The exit codes of the API (and Pacemaker's 190 and 191), by name.
pub fn exit_name(code: i32) -> Option<&'static str> {
    Some(match code {
        0 => "OCF_SUCCESS",
        1 => "OCF_ERR_GENERIC",
        2 => "OCF_ERR_ARGS",
        3 => "OCF_ERR_UNIMPLEMENTED",
        4 => "OCF_ERR_PERM",
        5 => "OCF_ERR_INSTALLED",
        6 => "OCF_ERR_CONFIGURED",
        7 => "OCF_NOT_RUNNING",
        8 => "OCF_RUNNING_PROMOTED",
        9 => "OCF_FAILED_PROMOTED",
        190 => "OCF_DEGRADED",
        191 => "OCF_DEGRADED_PROMOTED",
        _ => return None,
    })
}

/// What an agent is told besides its parameters, for `action`.
pub struct Call<'a> {
    pub root: &'a Path,
    pub agent: &'a AgentName,
    /// OCF_RESOURCE_INSTANCE: agents name state files and pid files after
    /// it, so it must stay the same from one operation to the next.
    pub instance: &'a str,
    pub params: &'a BTreeMap<String, String>,
    /// The operation's time limit, which agents read to pace their waits.
    pub timeout: Duration,
    /// For a recurring monitor, how often it runs; agents tell a one-off
    /// probe (no interval, or 0) from it by this.
    pub interval: Option<Duration>,
}

/// The environment of one agent call, in a fixed order.
pub fn environment(call: &Call) -> Vec<(String, String)> {
    let root = call.root.display().to_string();
    let functions = call
        .root
        .join("lib")
        .join("heartbeat")
        .display()
        .to_string();
    let mut env = vec![
        ("OCF_ROOT".to_string(), root),
        ("OCF_FUNCTIONS_DIR".to_string(), functions),
        (
            "OCF_RA_VERSION_MAJOR".to_string(),
            API_VERSION.0.to_string(),
        ),
        (
            "OCF_RA_VERSION_MINOR".to_string(),
            API_VERSION.1.to_string(),
        ),
        (
            "OCF_RESOURCE_INSTANCE".to_string(),
            call.instance.to_string(),
        ),
        ("OCF_RESOURCE_TYPE".to_string(), call.agent.kind.clone()),
        (
            "OCF_RESOURCE_PROVIDER".to_string(),
            call.agent.provider.clone(),
        ),
    ];
    for (name, value) in call.params {
        env.push((format!("OCF_RESKEY_{name}"), value.clone()));
    }
    env.push((
        format!("OCF_RESKEY_{META_PREFIX}timeout"),
        call.timeout.as_millis().to_string(),
    ));
    if let Some(interval) = call.interval {
        env.push((
            format!("OCF_RESKEY_{META_PREFIX}interval"),
            interval.as_millis().to_string(),
        ));
    }
    env
}

/// A command for `path action` in an environment of its own: the OCF
/// variables of the caller's environment are dropped (a stray
/// OCF_RESKEY_x exported in an admin's shell would reach the agent as a
/// parameter), then `env` is set. It runs in a process group of its own,
/// so a timeout can kill whatever it started with it.
pub fn command(path: &Path, action: &str, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(path);
    cmd.arg(action)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OCF_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// A parameter as an agent's meta-data declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// In the agent's order.
    pub parameters: Vec<Parameter>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot run it: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("it did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("meta-data {how}{said}")]
    Failed { how: String, said: String },
    #[error("its meta-data is not XML: {0}")]
    Xml(String),
    #[error("its meta-data is not a <resource-agent> document (it starts with <{0}>)")]
    NotAgent(String),
    #[error("its meta-data is larger than {} bytes", METADATA_LIMIT)]
    TooLarge,
}

/// The parameters a meta-data document declares.
pub fn parse_metadata(xml: &str) -> Result<Metadata, MetadataError> {
    // The documents start with <!DOCTYPE resource-agent SYSTEM
    // "ra-api-1.dtd">: allowed, and never fetched (roxmltree reads no
    // external DTD and bounds entity expansion).
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| MetadataError::Xml(e.to_string()))?;
    let top = doc.root_element();
    if top.tag_name().name() != "resource-agent" {
        return Err(MetadataError::NotAgent(top.tag_name().name().to_string()));
    }
    let parameters = top
        .children()
        .filter(|n| n.has_tag_name("parameters"))
        .flat_map(|p| p.children().filter(|n| n.has_tag_name("parameter")))
        .filter_map(|p| {
            let name = p.attribute("name")?.trim();
            // "1", and in some agents "true" or "yes".
            let required = p
                .attribute("required")
                .is_some_and(|r| matches!(r.trim(), "1" | "true" | "yes"));
            (!name.is_empty()).then(|| Parameter {
                name: name.to_string(),
                required,
            })
        })
        .collect();
    Ok(Metadata { parameters })
}

/// Runs `agent meta-data` (bounded by METADATA_TIMEOUT) and reads what it
/// declares. Blocking: for config validation, which runs before anything
/// async.
pub fn read_metadata(root: &Path, agent: &AgentName) -> Result<Metadata, MetadataError> {
    let params = BTreeMap::new();
    let env = environment(&Call {
        root,
        agent,
        instance: &format!("{}-meta-data", agent.kind),
        params: &params,
        timeout: METADATA_TIMEOUT,
        interval: None,
    });
    let mut child = command(&agent.path(root), "meta-data", &env)
        .spawn()
        .map_err(MetadataError::Spawn)?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + METADATA_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(MetadataError::Timeout(METADATA_TIMEOUT));
            }
            Err(e) => return Err(MetadataError::Spawn(e)),
        }
    };
    let out = stdout.recv_timeout(OUTPUT_GRACE).unwrap_or_default();
    if !status.success() {
        let err = stderr.recv_timeout(OUTPUT_GRACE).unwrap_or_default();
        let said = crate::daemon::agents::script::said(&err, &out);
        return Err(MetadataError::Failed {
            how: match status.code() {
                Some(code) => format!("exited with {code}"),
                None => "was killed by a signal".to_string(),
            },
            said: if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            },
        });
    }
    if out.len() > METADATA_LIMIT {
        return Err(MetadataError::TooLarge);
    }
    parse_metadata(&String::from_utf8_lossy(&out))
}

/// Reads a pipe to its end (at most one byte over METADATA_LIMIT) on a
/// thread of its own; the result comes on the channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.take(METADATA_LIMIT as u64 + 1).read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

/// SIGKILL to the process group an agent leads (`command` makes one).
pub fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_the_class() {
        let want = AgentName {
            provider: "heartbeat".into(),
            kind: "IPaddr2".into(),
        };
        assert_eq!(parse_name("heartbeat:IPaddr2"), Ok(want.clone()));
        assert_eq!(parse_name("ocf:heartbeat:IPaddr2"), Ok(want.clone()));
        assert_eq!(want.to_string(), "ocf:heartbeat:IPaddr2");
        assert_eq!(
            want.path(Path::new("/usr/lib/ocf")),
            PathBuf::from("/usr/lib/ocf/resource.d/heartbeat/IPaddr2")
        );
        assert_eq!(
            parse_name("IPaddr2"),
            Err(NameError::NoProvider("IPaddr2".into()))
        );
        assert_eq!(
            parse_name("lsb:heartbeat:x"),
            Err(NameError::Class {
                class: "lsb".into()
            })
        );
        assert_eq!(
            parse_name("a:b:c:d"),
            Err(NameError::Shape("a:b:c:d".into()))
        );
        for bad in [
            "heartbeat:",
            ":IPaddr2",
            "..:x",
            "heartbeat:../../bin/sh",
            "a b:c",
        ] {
            assert!(
                matches!(parse_name(bad), Err(NameError::Part { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn parameter_names_are_shell_identifiers() {
        for good in ["ip", "cidr_netmask", "_x", "A1"] {
            assert!(valid_param_name(good), "{good}");
        }
        for bad in ["", "1ip", "cidr-netmask", "a.b", "ip addr", "é"] {
            assert!(!valid_param_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_environment_names_the_resource_and_its_parameters() {
        let agent = parse_name("heartbeat:IPaddr2").expect("name");
        let params = BTreeMap::from([
            ("ip".to_string(), "198.51.100.10".to_string()),
            ("cidr_netmask".to_string(), "24".to_string()),
        ]);
        let env = environment(&Call {
            root: Path::new("/usr/lib/ocf"),
            agent: &agent,
            instance: "web-IPaddr2",
            params: &params,
            timeout: Duration::from_secs(20),
            interval: Some(Duration::from_millis(5000)),
        });
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            env,
            [
                ("OCF_ROOT", "/usr/lib/ocf"),
                ("OCF_FUNCTIONS_DIR", "/usr/lib/ocf/lib/heartbeat"),
                ("OCF_RA_VERSION_MAJOR", "1"),
                ("OCF_RA_VERSION_MINOR", "0"),
                ("OCF_RESOURCE_INSTANCE", "web-IPaddr2"),
                ("OCF_RESOURCE_TYPE", "IPaddr2"),
                ("OCF_RESOURCE_PROVIDER", "heartbeat"),
                ("OCF_RESKEY_cidr_netmask", "24"),
                ("OCF_RESKEY_ip", "198.51.100.10"),
                ("OCF_RESKEY_CRM_meta_timeout", "20000"),
                ("OCF_RESKEY_CRM_meta_interval", "5000"),
            ]
        );
    }

    #[test]
    fn exit_codes_have_their_api_names() {
        assert_eq!(exit_name(0), Some("OCF_SUCCESS"));
        assert_eq!(exit_name(5), Some("OCF_ERR_INSTALLED"));
        assert_eq!(exit_name(7), Some("OCF_NOT_RUNNING"));
        assert_eq!(exit_name(9), Some("OCF_FAILED_PROMOTED"));
        assert_eq!(exit_name(190), Some("OCF_DEGRADED"));
        assert_eq!(exit_name(42), None);
    }

    const IPADDR2_LIKE: &str = r#"<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="IPaddr2" version="1.0">
<version>1.0</version>
<longdesc lang="en">Manages &lt;addresses&gt;.</longdesc>
<parameters>
<parameter name="ip" unique="1" required="1">
<content type="string" default=""/>
</parameter>
<parameter name="cidr_netmask">
<content type="string" default=""/>
</parameter>
<parameter name="nic" required="0"/>
</parameters>
<actions><action name="start" timeout="20s"/></actions>
</resource-agent>
"#;

    #[test]
    fn meta_data_gives_the_parameters_and_which_are_required() {
        let md = parse_metadata(IPADDR2_LIKE).expect("meta-data");
        let got: Vec<(&str, bool)> = md
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.required))
            .collect();
        assert_eq!(got, [("ip", true), ("cidr_netmask", false), ("nic", false)]);
    }

    #[test]
    fn meta_data_that_is_not_an_agent_document_is_refused() {
        assert!(matches!(
            parse_metadata("usage: IPaddr2 {start|stop}"),
            Err(MetadataError::Xml(_))
        ));
        assert!(matches!(
            parse_metadata("<html><body/></html>"),
            Err(MetadataError::NotAgent(t)) if t == "html"
        ));
        // No parameters element: an agent without parameters.
        let md = parse_metadata("<resource-agent name=\"x\"/>").expect("meta-data");
        assert!(md.parameters.is_empty());
    }
}
