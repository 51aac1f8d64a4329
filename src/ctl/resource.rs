//! `duetctl resource-op`: one resource agent run here and now, without
//! duetd (for debugging a resource): units and mounts on the system bus,
//! OCF agents as processes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Fsck, OcfAgent};
use crate::ctl::cli::{AgentOp, FsckArg, ResourceArgs, exit};
use crate::daemon::agents::{Op, mount, ocf, unit};
use crate::host::ocf as ocf_api;

pub fn run(resource: ResourceArgs, timeout_secs: u64) -> u8 {
    // The agents report what they had to do (processes ended to unmount)
    // as warnings: to stderr here.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .try_init();
    let (label, op) = match &resource {
        ResourceArgs::Unit { unit, op } => (format!("unit {unit}"), *op),
        ResourceArgs::Mount { mountpoint, op, .. } => {
            (format!("mount {}", mountpoint.display()), *op)
        }
        ResourceArgs::Ocf { agent, op, .. } => (format!("ocf {agent}"), *op),
    };
    // An OCF agent needs no bus: it is checked and run apart.
    let ocf_agent = match &resource {
        ResourceArgs::Ocf {
            agent,
            params,
            instance,
            ..
        } => match ocf_agent(agent, params, instance.as_deref()) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("duetctl: {label}: {e}");
                return exit::FAILURE;
            }
        },
        _ => None,
    };
    let op_word = match op {
        AgentOp::Start => "start",
        AgentOp::Stop => "stop",
        AgentOp::Monitor => "monitor",
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("duetctl: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        if let Some(agent) = &ocf_agent {
            let limit = Duration::from_secs(timeout_secs);
            let work = ocf::run(agent, agent_op(op), limit);
            return match tokio::time::timeout(limit, work).await {
                Ok(Ok(())) => Outcome::Done,
                Ok(Err(e)) => Outcome::Failed(e),
                Err(_) => Outcome::TimedOut,
            };
        }
        let bus = match zbus::Connection::system().await {
            Ok(b) => b,
            Err(e) => return Outcome::NoBus(e.to_string()),
        };
        let work = agent(&bus, &resource, agent_op(op));
        match tokio::time::timeout(Duration::from_secs(timeout_secs), work).await {
            Ok(Ok(())) => Outcome::Done,
            Ok(Err(e)) => Outcome::Failed(e),
            Err(_) => Outcome::TimedOut,
        }
    });
    match outcome {
        Outcome::Done => {
            let what = match op {
                AgentOp::Start => "started",
                AgentOp::Stop => "stopped",
                AgentOp::Monitor => "running",
            };
            println!("{label}: {what}");
            0
        }
        Outcome::Failed(e) => {
            eprintln!("duetctl: {label}: {op_word}: {e}");
            exit::FAILURE
        }
        Outcome::TimedOut if ocf_agent.is_some() => {
            eprintln!(
                "duetctl: {label}: {op_word} did not finish within {timeout_secs} s \
                 (the agent and what it started were killed)"
            );
            exit::FAILURE
        }
        Outcome::TimedOut => {
            eprintln!(
                "duetctl: {label}: {op_word} did not finish within {timeout_secs} s \
                 (systemd goes on with its job: see `systemctl list-jobs`)"
            );
            exit::FAILURE
        }
        Outcome::NoBus(e) => {
            eprintln!("duetctl: cannot reach the system bus: {e}");
            exit::NO_DAEMON
        }
    }
}

enum Outcome {
    Done,
    Failed(String),
    TimedOut,
    NoBus(String),
}

fn agent_op(op: AgentOp) -> Op {
    match op {
        AgentOp::Start => Op::Start,
        AgentOp::Stop => Op::Stop,
        AgentOp::Monitor => Op::Monitor,
    }
}

async fn agent(bus: &zbus::Connection, resource: &ResourceArgs, op: Op) -> Result<(), String> {
    match resource {
        ResourceArgs::Unit { unit, .. } => unit::run(bus, unit, op).await,
        ResourceArgs::Mount {
            device,
            mountpoint,
            fstype,
            options,
            fsck,
            ..
        } => {
            let m = mount::Mount {
                device,
                mountpoint,
                fstype,
                options,
                fsck: match fsck {
                    FsckArg::Auto => Fsck::Auto,
                    FsckArg::Never => Fsck::Never,
                },
            };
            mount::run(bus, &m, op).await
        }
        // Run apart, before the bus is sought.
        ResourceArgs::Ocf { .. } => Err("an OCF agent needs no bus".to_string()),
    }
}

/// The agent `resource-op ocf` runs: its name and `NAME=VALUE` parameters
/// checked as a config's would be (without its meta-data: this is for
/// trying things).
fn ocf_agent(name: &str, params: &[String], instance: Option<&str>) -> Result<OcfAgent, String> {
    let agent = ocf_api::parse_name(name)
        .map_err(|e| format!("{e} (valid: provider:type, e.g. heartbeat:IPaddr2)"))?;
    let mut map = BTreeMap::new();
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            return Err(format!("--param {p:?} is not NAME=VALUE"));
        };
        if !ocf_api::valid_param_name(k) || k.starts_with(ocf_api::META_PREFIX) {
            return Err(format!(
                "--param {k:?}: not a parameter name (letters, digits and _, \
                 not starting with a digit or CRM_meta_)"
            ));
        }
        if v.contains('\0') {
            return Err(format!("--param {k}: the value has a NUL character"));
        }
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("--param {k} is given twice"));
        }
    }
    Ok(OcfAgent {
        instance: instance.unwrap_or(&agent.kind).to_string(),
        agent,
        params: map,
        root: ocf_api::root(),
        // A one-off check is what Pacemaker calls a probe: interval 0.
        monitor_interval: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocf_arguments_become_the_agent() {
        let a = ocf_agent(
            "ocf:heartbeat:IPaddr2",
            &[
                "ip=198.51.100.10".into(),
                "cidr_netmask=24".into(),
                "x=a=b".into(),
            ],
            None,
        )
        .expect("agent");
        assert_eq!(a.agent.to_string(), "ocf:heartbeat:IPaddr2");
        assert_eq!(a.instance, "IPaddr2");
        let params: Vec<(&str, &str)> = a
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            params,
            [
                ("cidr_netmask", "24"),
                ("ip", "198.51.100.10"),
                ("x", "a=b")
            ]
        );
        assert_eq!(a.monitor_interval, Duration::ZERO);
        let a = ocf_agent("heartbeat:Dummy", &[], Some("web-Dummy")).expect("agent");
        assert_eq!(a.instance, "web-Dummy");
        for (name, params, want) in [
            ("IPaddr2", vec![], "has no provider"),
            ("heartbeat:IPaddr2", vec!["ip"], "is not NAME=VALUE"),
            (
                "heartbeat:IPaddr2",
                vec!["cidr-netmask=24"],
                "not a parameter name",
            ),
            (
                "heartbeat:IPaddr2",
                vec!["CRM_meta_timeout=1"],
                "not a parameter name",
            ),
            ("heartbeat:IPaddr2", vec!["ip=a", "ip=b"], "given twice"),
        ] {
            let params: Vec<String> = params.into_iter().map(String::from).collect();
            let err = ocf_agent(name, &params, None).expect_err(name);
            assert!(err.contains(want), "{name} {params:?}: {err}");
        }
    }
}
