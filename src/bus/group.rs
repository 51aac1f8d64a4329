//! `/org/duet/Duet1/group/<name>` (org.duet.Duet1.Group): where a group
//! runs and how, and the administrator's methods on it. The methods go to
//! the daemon's main loop, which owns the groups.

use tokio::sync::{mpsc, oneshot};
use zbus::object_server::SignalEmitter;

use crate::bus::authorize::{Action, Gate, authorize};
use crate::bus::server::{Shared, lock};
use crate::bus::status::GroupStatus;

/// What an administrator asks of the groups (the node this daemon runs on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCommand {
    /// Forget a group's failures here; a blocked one tries its stop again.
    Cleanup { group: String },
    /// Run the group (after a stop), wherever its preferences say.
    Start { group: String },
    /// Stop the group wherever it runs; it runs nowhere until started.
    Stop { group: String },
    /// Run the group on this node (by name) while that node can.
    Move { group: String, node: String },
    /// Move everything off this node (true) or let it run groups again.
    Standby(bool),
    /// Watch but do not start or stop anything (true), or act again.
    Maintenance(bool),
    /// An administrator made sure this dead node is off: what it ran may
    /// be taken over without a fence.
    ConfirmOff { node: String },
    /// Read the config file again: apply what can be applied live and say
    /// what needs a restart (the answer's text).
    Reload,
}

type Request = (GroupCommand, oneshot::Sender<Result<String, String>>);

/// The bus side of the channel to the daemon's main loop.
#[derive(Clone)]
pub struct GroupControl(mpsc::UnboundedSender<Request>);

impl GroupControl {
    pub fn channel() -> (GroupControl, mpsc::UnboundedReceiver<Request>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (GroupControl(tx), rx)
    }

    pub async fn ask(&self, cmd: GroupCommand) -> zbus::fdo::Result<()> {
        self.ask_text(cmd).await.map(|_| ())
    }

    /// As `ask`, with the daemon's answer.
    pub async fn ask_text(&self, cmd: GroupCommand) -> zbus::fdo::Result<String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send((cmd, tx))
            .map_err(|_| zbus::fdo::Error::Failed("the daemon is stopping".into()))?;
        rx.await
            .map_err(|_| zbus::fdo::Error::Failed("the daemon is stopping".into()))?
            .map_err(zbus::fdo::Error::Failed)
    }
}

pub struct GroupObject {
    pub(crate) shared: Shared,
    pub(crate) index: usize,
    pub(crate) control: GroupControl,
    pub(crate) gate: Gate,
}

impl GroupObject {
    fn with<T>(&self, f: impl FnOnce(&GroupStatus) -> T, default: T) -> T {
        lock(&self.shared)
            .groups
            .get(self.index)
            .map(f)
            .unwrap_or(default)
    }

    pub(crate) async fn changed(
        &self,
        old: &GroupStatus,
        new: &GroupStatus,
        e: &SignalEmitter<'_>,
    ) -> zbus::Result<()> {
        if old.node != new.node {
            self.node_changed(e).await?;
        }
        if old.state != new.state {
            self.state_changed(e).await?;
        }
        if old.running != new.running {
            self.running_changed(e).await?;
        }
        if old.wanted != new.wanted {
            self.wanted_changed(e).await?;
        }
        if old.moved_to != new.moved_to {
            self.moved_to_changed(e).await?;
        }
        if old.resources != new.resources {
            self.resources_changed(e).await?;
        }
        if old.waiting != new.waiting {
            self.waiting_changed(e).await?;
        }
        if (&old.last_transition, &old.last_reason, old.last_duration)
            != (&new.last_transition, &new.last_reason, new.last_duration)
        {
            self.last_transition_changed(e).await?;
        }
        if (old.failovers, old.failover_seconds) != (new.failovers, new.failover_seconds) {
            self.failovers_changed(e).await?;
        }
        Ok(())
    }
}

#[zbus::interface(name = "org.duet.Duet1.Group")]
impl GroupObject {
    /// Forget this group's failures on this node (`duetctl cleanup`).
    async fn cleanup(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::Manage).await?;
        let group = self.with(|g| g.name.clone(), String::new());
        self.control.ask(GroupCommand::Cleanup { group }).await
    }

    /// Run the group again after Stop, where its preferences say (every
    /// node hears it; `duetctl start`).
    async fn start(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::Manage).await?;
        let group = self.with(|g| g.name.clone(), String::new());
        self.control.ask(GroupCommand::Start { group }).await
    }

    /// Stop the group wherever it runs; it stays stopped on every node,
    /// across restarts, until Start (`duetctl stop`).
    async fn stop(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::Manage).await?;
        let group = self.with(|g| g.name.clone(), String::new());
        self.control.ask(GroupCommand::Stop { group }).await
    }

    /// Move the group to `node`: stopped where it runs, then started
    /// there; it stays there while that node can run it (`duetctl move`).
    #[zbus(name = "Move")]
    async fn move_to(
        &self,
        node: String,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::Manage).await?;
        let group = self.with(|g| g.name.clone(), String::new());
        self.control.ask(GroupCommand::Move { group, node }).await
    }

    #[zbus(property)]
    fn name(&self) -> String {
        self.with(|g| g.name.clone(), String::new())
    }

    /// Where the group runs, as this node sees it ("" nowhere).
    #[zbus(property)]
    fn node(&self) -> String {
        self.with(|g| g.node.clone(), String::new())
    }

    /// This node's state for the group: stopped, starting, running,
    /// stopping, moving (stopping for another node to start it) or failed.
    #[zbus(property)]
    fn state(&self) -> String {
        self.with(|g| g.state.clone(), String::new())
    }

    /// Whether every resource is up on Node.
    #[zbus(property)]
    fn running(&self) -> bool {
        self.with(|g| g.running, false)
    }

    /// What the administrators want: "started" or "stopped".
    #[zbus(property)]
    fn wanted(&self) -> String {
        self.with(|g| g.wanted.clone(), String::new())
    }

    /// The node an administrator moved the group to, while that holds ("").
    #[zbus(property)]
    fn moved_to(&self) -> String {
        self.with(|g| g.moved_to.clone(), String::new())
    }

    /// Each resource in start order: name, state here (started or
    /// stopped), failures counted toward the threshold.
    #[zbus(property)]
    fn resources(&self) -> Vec<(String, String, u32)> {
        self.with(
            |g| {
                g.resources
                    .iter()
                    .map(|r| (r.name.clone(), r.state.clone(), r.failures))
                    .collect()
            },
            Vec::new(),
        )
    }

    /// Why the group waits to start here for a dead node that may still
    /// run it: a fence under way, or nothing that can fence it (then
    /// `duetctl confirm-off NODE`); "" when it does not wait.
    #[zbus(property)]
    fn waiting(&self) -> String {
        self.with(|g| g.waiting.clone(), String::new())
    }

    /// The last transition here: to which state, why, and how long the
    /// start or stop took in seconds (-1 while it has not settled).
    #[zbus(property)]
    fn last_transition(&self) -> (String, String, f64) {
        self.with(
            |g| {
                (
                    g.last_transition.clone(),
                    g.last_reason.clone(),
                    g.last_duration.unwrap_or(-1.0),
                )
            },
            (String::new(), String::new(), -1.0),
        )
    }

    /// Takeovers of the group here from a dead node since duetd started,
    /// and the seconds their starts took in all.
    #[zbus(property)]
    fn failovers(&self) -> (u64, f64) {
        self.with(|g| (g.failovers, g.failover_seconds), (0, 0.0))
    }
}
