//! The unit agent: any systemd unit, started and stopped by systemd.
//!
//! Start and stop queue a job ("replace" mode) and wait for its end; the
//! job's result decides. Monitor reads the unit's ActiveState. The group
//! core bounds every operation with its own timeout; a cancelled wait
//! drops its signal match.

use super::Op;
use super::systemd::{Systemd, is_no_such_unit, plain};

pub async fn run(bus: &zbus::Connection, unit: &str, op: Op) -> Result<(), String> {
    let sd = Systemd::new(bus).await?;
    match op {
        Op::Start => start(&sd, unit).await,
        Op::Stop => stop(&sd, unit).await,
        Op::Monitor => monitor(&sd, unit).await,
    }
}

async fn start(sd: &Systemd<'_>, unit: &str) -> Result<(), String> {
    let mut watch = sd.watch(unit).await?;
    let job = match sd.manager.start_unit(unit, "replace").await {
        Ok(job) => job,
        Err(e) if is_no_such_unit(&e) => {
            return Err(format!("no unit named {unit} on this node"));
        }
        Err(e) => return Err(format!("systemd refused to start {unit}: {}", plain(&e))),
    };
    let result = watch.result(&job).await?;
    drop(watch);
    if result != "done" {
        return Err(format!(
            "{unit} failed to start (result: {result}; {})",
            sd.describe(unit).await
        ));
    }
    // A job is done once the unit got going (for Type=simple, once the
    // process was forked); one that died at once is a failed start too. A
    // oneshot that ran and ended (inactive) did what it was asked.
    match sd.state(unit).await? {
        Some(s) if s.active == "failed" => Err(format!(
            "{unit} started but failed at once ({})",
            s.describe()
        )),
        _ => Ok(()),
    }
}

async fn stop(sd: &Systemd<'_>, unit: &str) -> Result<(), String> {
    let mut watch = sd.watch(unit).await?;
    let mode = sd.stop_mode(unit).await;
    let job = match sd.manager.stop_unit(unit, mode).await {
        Ok(job) => job,
        // Not loaded: nothing of it runs.
        Err(e) if is_no_such_unit(&e) => return Ok(()),
        Err(e) => return Err(format!("systemd refused to stop {unit}: {}", plain(&e))),
    };
    let result = watch.result(&job).await?;
    drop(watch);
    if result == "done" {
        Ok(())
    } else {
        Err(format!(
            "{unit} failed to stop (result: {result}; {})",
            sd.describe(unit).await
        ))
    }
}

async fn monitor(sd: &Systemd<'_>, unit: &str) -> Result<(), String> {
    match sd.state(unit).await? {
        Some(s) if s.is_running() => Ok(()),
        Some(s) => Err(format!("{unit} is not running ({})", s.describe())),
        None => Err(format!("{unit} is not running (not loaded)")),
    }
}
