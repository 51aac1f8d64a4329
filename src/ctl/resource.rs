//! `duetctl resource-op`: one resource agent run here and now, on the
//! system bus, without duetd (for debugging a resource).

use std::time::Duration;

use crate::config::Fsck;
use crate::ctl::cli::{AgentOp, FsckArg, ResourceArgs, exit};
use crate::daemon::agents::{Op, mount, unit};

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
    }
}
