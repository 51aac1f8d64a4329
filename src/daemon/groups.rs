//! The shell around the node's group policy (src/resources/policy.rs):
//! feeds it the membership and the results of what it asked for, runs the
//! resource operations as tasks, the fence and self-fence commands, and
//! saves the administrators' wishes. It decides nothing itself.

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::bus::GroupStatus;
use crate::config::{Config, Fencing, ResourceKind, SelfFence};
use crate::daemon::agents::{self, Host, Op};
use crate::daemon::{fencing, state_dir};
use crate::membership::Membership;
use crate::membership::node_state::NodeState;
use crate::resources::group::OpId;
use crate::resources::policy::{Decision, NodePolicy, OpKind, Rules};
use crate::types::{NodeId, Timestamp};

pub use crate::resources::policy::Wish;

/// A finished resource operation or fence attempt, back from its task.
pub enum Done {
    Op {
        group: usize,
        op: OpId,
        result: Result<(), String>,
    },
    Fence {
        node: NodeId,
        /// Which command run (FenceCore).
        id: u64,
        result: Result<(), String>,
    },
}

pub struct Groups {
    policy: NodePolicy,
    node_names: Vec<String>,
    host: Host,
    done: mpsc::UnboundedSender<Done>,
    fencing: Option<Fencing>,
    self_fence: Option<SelfFence>,
    /// Where the wishes are saved, if anywhere (state_dir.rs).
    intents_file: Option<PathBuf>,
}

impl Groups {
    pub fn new(
        config: &Config,
        local: NodeId,
        host: Host,
        done: mpsc::UnboundedSender<Done>,
    ) -> Groups {
        let intents_file = state_dir::location();
        let saved = intents_file
            .as_deref()
            .map(state_dir::load)
            .unwrap_or_default();
        let rules = Rules::from_config(config, local);
        Groups {
            policy: NodePolicy::new(rules, &config.groups, &saved),
            node_names: config.nodes.iter().map(|n| n.name.clone()).collect(),
            host,
            done,
            fencing: config.fencing.clone(),
            self_fence: config.self_fence.clone(),
            intents_file,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policy.is_empty()
    }

    /// What this node announces now.
    pub fn announcement(&self) -> NodeState {
        self.policy.announcement()
    }

    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.policy.next_wakeup()
    }

    /// Looks at the cluster again and carries out what the policy says.
    pub fn evaluate(&mut self, m: &Membership, now: Timestamp) {
        let up = (0..self.node_names.len())
            .map(|n| m.view(NodeId(n as u16)).is_some_and(|v| v.state.is_alive()))
            .collect();
        self.note_replicas_behind();
        let decisions = self.policy.evaluate(m, now);
        self.host.peers.set_up(up, self.policy.may_run());
        self.carry_out(decisions);
    }

    /// Tells the policy which groups have a replica that is not UpToDate
    /// here (it cannot be promoted here yet).
    fn note_replicas_behind(&mut self) {
        let status = self.host.replicas.status_now();
        let behind = |name: &str| {
            status
                .iter()
                .find(|s| s.name == name)
                .is_none_or(|s| s.disk != "uptodate")
        };
        let mut i = 0;
        while let Some(group) = self.policy.group(i) {
            let any = group.resources.iter().any(|r| match &r.kind {
                ResourceKind::Replica { replica } => behind(replica),
                _ => false,
            });
            self.policy.set_behind(i, any);
            i += 1;
        }
    }

    /// `duetctl start|stop|move`.
    pub fn wish(&mut self, name: &str, wish: Wish, m: &Membership) -> Result<(), String> {
        let decisions = self.policy.wish(name, wish, m)?;
        self.carry_out(decisions);
        Ok(())
    }

    /// `duetctl confirm-off NODE`.
    pub fn confirm_off(&mut self, node: &str, m: &Membership) -> Result<(), String> {
        self.policy.confirm_off(node, m)
    }

    pub fn done(&mut self, d: Done, now: Timestamp) {
        match d {
            Done::Op { group, op, result } => {
                let decisions = self.policy.done(group, op, result, now);
                self.carry_out(decisions);
            }
            Done::Fence { node, id, result } => self.policy.fence_done(node, id, result, now),
        }
    }

    fn carry_out(&mut self, decisions: Vec<Decision>) {
        for d in decisions {
            match d {
                Decision::Op {
                    group,
                    op,
                    index,
                    kind,
                } => {
                    let what = match kind {
                        OpKind::Start => Op::Start,
                        OpKind::Stop => Op::Stop,
                        OpKind::Monitor => Op::Monitor,
                    };
                    self.spawn(group, op, index, what);
                }
                Decision::Fence(run) => match &self.fencing {
                    Some(config) => {
                        let name = self
                            .node_names
                            .get(usize::from(run.node.0))
                            .cloned()
                            .unwrap_or_default();
                        fencing::spawn(config, name, run, self.done.clone());
                    }
                    None => tracing::error!("a fence was asked without a fence command"),
                },
                Decision::SelfFence { held } => self.self_fence(&held),
                Decision::SaveWishes(list) => self.save_wishes(&list),
            }
        }
    }

    fn save_wishes(&self, list: &[(String, crate::resources::intent::Intent)]) {
        let Some(path) = &self.intents_file else {
            return;
        };
        if let Err(e) = state_dir::save(path, list) {
            tracing::warn!(path = %path.display(), "cannot save the group wishes: {e}");
        }
    }

    /// Without quorum and still holding resources past `[self-fence]
    /// after`: the command that makes this node stop.
    fn self_fence(&self, held: &[String]) {
        let Some(sf) = self.self_fence.clone() else {
            return;
        };
        tracing::error!(
            "self-fencing: without quorum for {:.1} s and still holding {}: running {}",
            sf.after.as_secs_f64(),
            held.join(", "),
            sf.command.display()
        );
        tokio::spawn(async move {
            let out = tokio::process::Command::new(&sf.command)
                .args(&sf.args)
                .stdin(std::process::Stdio::null())
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => tracing::error!(
                    "self-fence command {} failed ({}): {}",
                    sf.command.display(),
                    o.status,
                    crate::daemon::agents::script::said(&o.stderr, &o.stdout)
                ),
                Err(e) => tracing::error!(
                    "cannot run the self-fence command {}: {e}",
                    sf.command.display()
                ),
            }
        });
    }

    fn spawn(&self, i: usize, op: OpId, index: usize, what: Op) {
        let Some(g) = self.policy.group(i) else {
            return;
        };
        let Some(resource) = g.resources.get(index).cloned() else {
            return;
        };
        let limit = agents::op_timeout(&resource, what);
        let (host, done) = (self.host.clone(), self.done.clone());
        let (group, label) = (g.name.clone(), resource.label());
        if what != Op::Monitor {
            tracing::info!(group = %group, resource = %label, "{}: {label}", what.name());
        }
        tokio::spawn(async move {
            // Past its timeout the operation is dropped (a script with it).
            let result =
                match tokio::time::timeout(limit, agents::run(&host, &resource, what)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {:.1} s", limit.as_secs_f64())),
                };
            if let Err(e) = &result {
                tracing::warn!(group = %group, resource = %label, "{} of {label} failed: {e}", what.name());
            }
            let _ = done.send(Done::Op {
                group: i,
                op,
                result,
            });
        });
    }

    pub fn set_standby(&mut self, on: bool) {
        self.policy.set_standby(on);
    }

    pub fn set_maintenance(&mut self, on: bool) {
        self.policy.set_maintenance(on);
    }

    pub fn cleanup(&mut self, name: &str, now: Timestamp) -> Result<(), String> {
        let decisions = self.policy.cleanup(name, now)?;
        self.carry_out(decisions);
        Ok(())
    }

    /// Whether any group's resources may be up here.
    pub fn any_active(&self) -> bool {
        self.policy.any_active()
    }

    /// The longest stopping everything here can take.
    pub fn stop_bound(&self) -> std::time::Duration {
        self.policy.stop_bound()
    }

    pub fn standby(&self) -> bool {
        self.policy.standby()
    }

    pub fn maintenance(&self) -> bool {
        self.policy.maintenance()
    }

    pub fn status(&self, m: &Membership) -> Vec<GroupStatus> {
        self.policy.status(m)
    }
}
