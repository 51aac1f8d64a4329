//! The tokio shell around the pure cores: sockets, timers, signals, the bus
//! and systemd. It owns no policy: the membership core decides, the shell
//! carries out.

pub mod agents;
mod events;
mod fencing;
pub mod groups;
mod links;
pub mod ratelimit;
pub mod replica;
pub mod replicas;
mod state_dir;
pub mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::bus::{
    Bus, BusKind, ClusterStatus, GroupCommand, GroupControl, ReplicaCommand, ReplicaControl,
};
use crate::config::{self, Config};
use crate::host::{notify, ping::Pinger};
use crate::membership::auth::{self, Auth, AuthAlgorithm};
use crate::membership::protocol::ProtocolRange;
use crate::membership::wire::Codec;
use crate::membership::{Action, Event, Input, Membership, PingTarget, Setup};
use crate::resources::placement::Phase;
use crate::types::{LinkId, NodeId, Timestamp};

use events::EventLog;
use groups::{Groups, Wish};
use links::Links;
use replicas::Replicas;

#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    /// The local node's name; the hostname when not given.
    pub node: Option<String>,
    pub bus: BusKind,
    /// Insist that this node is the config's witness (`duetd --witness`);
    /// the witness runs as one anyway when the config says so.
    pub witness: bool,
    /// The protocol versions to speak: this build's, unless a test of
    /// rolling upgrades makes it speak as an older or newer build.
    pub protocol: ProtocolRange,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    #[error("{0}")]
    Untrusted(#[from] config::TrustError),
    #[error("{0}")]
    LocalNode(#[from] config::LocalNodeError),
    #[error("{0}")]
    Key(#[from] auth::KeyError),
    #[error("{0}")]
    Tls(#[from] replicas::TlsSetupError),
    #[error("cannot open the ICMP sockets for ping nodes: {0}")]
    Ping(std::io::Error),
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(
        "--witness, but node {node} is not the witness in the config (set witness = true on its [[node]])"
    )]
    NotWitness { node: String },
}

/// An administrator's command for the groups, with where to answer.
type GroupRequest = (
    GroupCommand,
    tokio::sync::oneshot::Sender<Result<String, String>>,
);

/// A datagram from one of the link sockets.
pub(crate) struct Received {
    link: LinkId,
    from: SocketAddr,
    bytes: Vec<u8>,
}

struct Daemon {
    config: Config,
    local: NodeId,
    /// At SIGTERM: the groups that ran here, which another node is to
    /// take up before this one goes silent.
    moving: Vec<String>,
    core: Membership,
    links: Links,
    pinger: Option<Pinger>,
    replicas: Replicas,
    groups: Groups,
    /// The latest status for the D-Bus task (see `spawn_publisher`).
    published: watch::Sender<ClusterStatus>,
    log: EventLog,
    start: Instant,
    epoch_us: u64,
    summary: String,
    /// The config file's text duetd started with: settings that only a
    /// restart applies are compared with it.
    started_text: String,
    /// The text of the last reload (at first the same): the live settings
    /// are compared with it.
    applied_text: String,
}

/// Runs the node until SIGTERM or SIGINT.
pub async fn run(options: Options) -> Result<(), DaemonError> {
    config::check_trusted(&options.config, nix::unistd::geteuid().as_raw())?;
    let loaded = config::load(&options.config)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut config = loaded.config;
    let local = config::local_node(&config, options.node.as_deref())?;
    let witness = config.witness() == Some(local);
    if options.witness && !witness {
        return Err(DaemonError::NotWitness {
            node: config.node(local).name.clone(),
        });
    }
    if witness {
        // Validation keeps the witness out of every group and replica;
        // emptying them here makes sure it opens no disk, export or agent
        // even for the ones it merely knows of.
        config.replicas.clear();
        config.groups.clear();
        tracing::info!("this node is the witness: membership and its vote only");
    }
    let key = auth::load_key_file(&config.cluster.key_file)?;
    if config.cluster.auth == AuthAlgorithm::Crc {
        tracing::warn!(
            "auth = \"crc\": heartbeats are NOT authenticated; anyone on the links can forge them. Use hmac-sha256."
        );
    }
    let codec = Codec::new(
        config.cluster.name.clone(),
        Auth::new(config.cluster.auth, key)?,
    );

    let (rx_tx, rx) = mpsc::channel::<Received>(1024);
    let (ping_tx, ping_rx) = mpsc::unbounded_channel::<PingTarget>();
    let pinger = if config.ping.nodes.is_empty() {
        None
    } else {
        Some(Pinger::start(config.ping.nodes.clone(), ping_tx).map_err(DaemonError::Ping)?)
    };
    let links = Links::open(&config, local, rx_tx);

    let start = Instant::now();
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch_us = u64::try_from(epoch.as_micros()).unwrap_or(u64::MAX);
    let incarnation = state_dir::incarnation(epoch_us);
    let mut setup = Setup::from_config(&config, local, incarnation);
    // What `duetctl reload` compares the file with, and the digest the
    // heartbeats announce.
    let running_text = std::fs::read_to_string(&config.path).unwrap_or_default();
    setup.config_digest = config::digest::of_text(&running_text);
    setup.protocol.range = options.protocol;
    if options.protocol != ProtocolRange::BUILD {
        let why = if options.protocol == ProtocolRange::native() {
            " (this CPU has no AES instructions: the replication frames keep version 2's BLAKE3 MAC; version 3's AEGIS would run slower in software and leak timing)"
        } else {
            ""
        };
        tracing::warn!(speaks = %options.protocol, "speaking protocol versions {} instead of this build's {}{why}", options.protocol, ProtocolRange::BUILD);
    }
    let core = Membership::new(setup, codec, Timestamp::ZERO);
    let replicas = Replicas::open(&config, local, options.protocol)?;
    if !config.replicas.is_empty() {
        protect_io();
    }
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let host = agents::Host {
        replicas: replicas.clone(),
        peers: agents::replica::Peers::new(&config, local),
        // systemd is on the system bus even when duet's objects are not.
        system_bus: if config.groups.is_empty() {
            None
        } else {
            zbus::Connection::system().await.ok()
        },
    };
    let groups = Groups::new(&config, local, host, done_tx);
    let status = view::cluster_status(&config, &core, epoch_us, replicas.status(), &groups);
    let summary = status.summary();
    let (control, control_rx) = GroupControl::channel();
    let setup = BusSetup {
        kind: options.bus,
        replicas: Arc::new(replicas.clone()),
        groups: control,
    };
    let bus = setup.serve(status).await?;
    tracing::info!(
        node = %config.node(local).name,
        cluster = %config.cluster.name,
        incarnation = incarnation.0,
        "duetd started"
    );
    notify::ready(&summary);

    let log = EventLog::new(&config, local, options.protocol);
    let node_name = config.node(local).name.clone();
    let mut daemon = Daemon {
        config,
        local,
        moving: Vec::new(),
        core,
        links,
        pinger,
        replicas: replicas.clone(),
        groups,
        published: spawn_publisher(bus, setup, node_name.clone()),
        log,
        start,
        epoch_us,
        summary,
        applied_text: running_text.clone(),
        started_text: running_text,
    };
    if let Some(at) = daemon.config.metrics {
        crate::metrics::http::spawn(at, daemon.published.subscribe());
    }
    let result = daemon.main_loop(rx, ping_rx, done_rx, control_rx).await;
    notify::stopping();
    let _ = tokio::task::spawn_blocking(move || replicas.shutdown()).await;
    result?;
    tracing::info!("duetd stopped");
    Ok(())
}

impl Daemon {
    fn now(&self) -> Timestamp {
        Timestamp(self.start.elapsed())
    }

    async fn main_loop(
        &mut self,
        mut rx: mpsc::Receiver<Received>,
        mut ping_rx: mpsc::UnboundedReceiver<PingTarget>,
        mut done_rx: mpsc::UnboundedReceiver<groups::Done>,
        mut control_rx: mpsc::UnboundedReceiver<GroupRequest>,
    ) -> Result<(), DaemonError> {
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
        let watchdog_every = notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
        let mut watchdog = tokio::time::interval(watchdog_every);
        let poll_every = self
            .config
            .timings
            .keepalive
            .max(Duration::from_millis(100));
        let mut link_poll = tokio::time::interval(poll_every);
        self.step(Input::Tick, None);
        // Set at SIGTERM: the groups are being stopped before leaving.
        let mut leaving: Option<tokio::time::Instant> = None;
        // Once the groups stopped: how long to stay for their hand-over.
        let mut handing_over: Option<tokio::time::Instant> = None;
        loop {
            if let Some(deadline) = leaving {
                let now = tokio::time::Instant::now();
                if !self.groups.any_active() {
                    let until = *handing_over.get_or_insert(now + self.hand_over_bound());
                    if self.taken_elsewhere() || now >= until {
                        return Ok(());
                    }
                }
                if now >= deadline {
                    return Ok(());
                }
            }
            let next = self.core.next_wakeup();
            let next = self.groups.next_wakeup().map_or(next, |g| g.min(next));
            let wake = tokio::time::Instant::from_std(self.start + next.0);
            tokio::select! {
                Some(r) = rx.recv() => {
                    let input = Input::Datagram { link: r.link, bytes: &r.bytes };
                    self.step(input, Some(r.from));
                }
                Some(target) = ping_rx.recv() => self.step(Input::PingReply { target }, None),
                _ = tokio::time::sleep_until(wake) => self.step(Input::Tick, None),
                _ = link_poll.tick() => {
                    for (link, up) in self.links.poll(&self.config) {
                        self.step(Input::LocalLink { link, up }, None);
                    }
                }
                Some(d) = done_rx.recv() => {
                    self.groups.done(d, self.now());
                    self.step(Input::Tick, None);
                }
                Some((cmd, reply)) = control_rx.recv() => match cmd {
                    GroupCommand::Reload => self.reload(reply),
                    cmd => {
                        // Answered once the change is published, so that
                        // a client reading status next sees it.
                        let result = self.group_command(cmd);
                        self.step(Input::Tick, None);
                        let _ = reply.send(result);
                    }
                },
                // A replica's fencing changed: the relay runs at once.
                _ = self.replicas.kicked() => self.step(Input::Tick, None),
                _ = watchdog.tick() => notify::watchdog(),
                _ = term.recv(), if leaving.is_none() => leaving = Some(self.leave()),
                _ = int.recv(), if leaving.is_none() => leaving = Some(self.leave()),
            }
        }
    }

    /// Feeds one input to the core, carries out its actions and publishes
    /// the new state.
    fn step(&mut self, input: Input<'_>, from: Option<SocketAddr>) {
        let now = self.now();
        let actions = self.core.handle(input, now);
        self.carry_out(actions, from, now);
        if self.replicas.any() {
            let notes = self.replicas.fence_relay(&self.core);
            let actions = self.core.handle(Input::LocalFences(notes), now);
            self.carry_out(actions, None, now);
        }
        if !self.groups.is_empty() {
            self.groups.evaluate(&self.core, now);
            // Announced at once when it changed (the core sends then).
            let state = self.groups.announcement();
            let actions = self.core.handle(Input::LocalState(state), now);
            self.carry_out(actions, None, now);
        }
        self.publish();
    }

    fn carry_out(&mut self, actions: Vec<Action>, from: Option<SocketAddr>, now: Timestamp) {
        for action in actions {
            match action {
                Action::Send { link, bytes } => self.links.send(link, &bytes),
                Action::Ping { target } => self.ping(target),
                Action::Event(e) => {
                    if let Event::Protocol {
                        node, announced, ..
                    } = &e
                    {
                        self.replicas.peer_speaks(*node, announced.range.max);
                    }
                    self.log.event(&e, from, now)
                }
            }
        }
    }

    fn group_command(&mut self, cmd: GroupCommand) -> Result<String, String> {
        let now = self.now();
        let done = match cmd {
            GroupCommand::Cleanup { group } => self.groups.cleanup(&group, now),
            GroupCommand::Start { group } => self.groups.wish(&group, Wish::Start, &self.core),
            GroupCommand::Stop { group } => self.groups.wish(&group, Wish::Stop, &self.core),
            GroupCommand::Move { group, node } => {
                self.groups.wish(&group, Wish::Move(node), &self.core)
            }
            GroupCommand::Standby(on) => {
                self.groups.set_standby(on);
                Ok(())
            }
            GroupCommand::ConfirmOff { node } => self.groups.confirm_off(&node, &self.core),
            GroupCommand::Maintenance(on) => {
                self.groups.set_maintenance(on);
                Ok(())
            }
            // Answered by `reload`, off this loop.
            GroupCommand::Reload => Err("reload is not a group command".into()),
        };
        done.map(|()| String::new())
    }

    /// `duetctl reload`: the file against the config this daemon runs
    /// with, key by key. Replica settings the engines adjust are applied
    /// (Adjust, on a blocking thread: a replica's lock can be held by a
    /// demotion that waits for this loop's fencing relay); the rest is
    /// named as needing a restart. Once nothing needs one, the file's
    /// digest is announced.
    fn reload(&mut self, reply: tokio::sync::oneshot::Sender<Result<String, String>>) {
        let (text, live, restart) = match self.reload_plan() {
            Ok(plan) => plan,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if restart.is_empty() {
            self.core.set_config_digest(config::digest::of_text(&text));
        }
        self.applied_text = text;
        let path = self.config.path.display().to_string();
        if live.is_empty() && restart.is_empty() {
            let _ = reply.send(Ok(format!("{path}: no change")));
            return;
        }
        // Only the replicas this node holds; the others' changes are
        // their nodes' to apply.
        let mut here: Vec<String> = live
            .iter()
            .filter_map(|k| config::diff::live_replica(k))
            .filter(|name| {
                self.config
                    .replica(name)
                    .is_some_and(|r| r.disk(self.local).is_some())
            })
            .map(str::to_string)
            .collect();
        here.dedup();
        let node = self.config.node(self.local).name.clone();
        let replicas = self.replicas.clone();
        tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            let failed: Vec<String> = here
                .iter()
                .filter_map(|name| {
                    replicas
                        .command(name, ReplicaCommand::Adjust)
                        .err()
                        .map(|e| format!("replica {name}: {e}"))
                })
                .collect();
            if !live.is_empty() {
                tracing::info!(node, "reload applied {}", live.join(", "));
                lines.push(format!("applied: {}", live.join(", ")));
            }
            if !failed.is_empty() {
                lines.push(format!("not applied: {}", failed.join("; ")));
            }
            if !restart.is_empty() {
                tracing::warn!(
                    node,
                    "reload: {} need a restart of duetd",
                    restart.join(", ")
                );
                lines.push(format!(
                    "needs a restart of duetd (systemctl restart duetd, one node at a time): {}",
                    restart.join(", ")
                ));
            }
            let answer = if failed.is_empty() {
                Ok(lines.join("\n"))
            } else {
                Err(lines.join("\n"))
            };
            let _ = reply.send(answer);
        });
    }

    /// The file's text, the live settings changed since the last reload
    /// and the settings that differ from the config duetd started with
    /// and only a restart applies; an error for a file that cannot be
    /// read or has errors.
    fn reload_plan(&self) -> Result<(String, Vec<String>, Vec<String>), String> {
        let path = &self.config.path;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        config::parse(&text, path).map_err(|e| e.to_string())?;
        let live = config::diff::changed_keys(&self.applied_text, &text)?
            .into_iter()
            .filter(|k| config::diff::live_replica(k).is_some())
            .collect();
        let restart = config::diff::changed_keys(&self.started_text, &text)?
            .into_iter()
            .filter(|k| config::diff::live_replica(k).is_none())
            .collect();
        Ok((text, live, restart))
    }

    /// At SIGTERM: the groups running here stop in order first (the peer
    /// takes them over as in a standby), within their stop timeouts.
    fn leave(&mut self) -> tokio::time::Instant {
        let bound = self.groups.stop_bound();
        if self.groups.any_active() {
            tracing::info!("stopping: moving the groups off this node first");
        }
        self.moving = self.running_here();
        self.groups.set_standby(true);
        self.step(Input::Tick, None);
        tokio::time::Instant::now() + bound
    }

    /// The groups active here, as this node announces them.
    fn running_here(&self) -> Vec<String> {
        self.groups
            .announcement()
            .groups
            .into_iter()
            .filter(|g| g.phase != Phase::Idle)
            .map(|g| g.name)
            .collect()
    }

    /// Leaving, with the groups stopped here: this node stays (and keeps
    /// heartbeating, its replicas connected) until every group it ran is
    /// taken over (`resources::leaving`).
    fn taken_elsewhere(&self) -> bool {
        let peers: Vec<_> = self
            .config
            .node_ids()
            .filter(|id| *id != self.local)
            .filter_map(|id| self.core.view(id))
            .filter(|v| v.state.is_alive())
            .filter_map(|v| v.node_state)
            .collect();
        crate::resources::leaving::taken_over(&self.moving, &peers)
    }

    /// At most this long after the groups stopped here: a claim, its
    /// hold and the first start elsewhere take about a deadtime.
    fn hand_over_bound(&self) -> Duration {
        self.config.timings.deadtime * 2 + Duration::from_secs(2)
    }

    fn ping(&mut self, target: PingTarget) {
        if let Some(p) = self.pinger.as_mut()
            && let Err(e) = p.send(target)
        {
            let addr = self.config.ping.nodes.get(target.0);
            tracing::debug!(error = %e, ping_node = ?addr, "cannot send ping");
        }
    }

    /// Says so once when a node starts or stops announcing another config
    /// than this node's.
    fn log_config_differs(&self, now: &[String]) {
        let before = &self.published.borrow().config_differs;
        let node = &self.config.node(self.local).name;
        for peer in now.iter().filter(|p| !before.contains(p)) {
            tracing::warn!(
                message_id = crate::host::message_ids::CONFIG_DIFFERS,
                node,
                peer,
                "{peer} runs another config than this node: make the files the same on every node"
            );
        }
        for peer in before.iter().filter(|p| !now.contains(p)) {
            tracing::info!(node, peer, "{peer} runs the same config as this node again");
        }
    }

    fn publish(&mut self) {
        let replicas = self.replicas.status_now();
        let status = view::cluster_status(
            &self.config,
            &self.core,
            self.epoch_us,
            replicas,
            &self.groups,
        );
        self.log_config_differs(&status.config_differs);
        let summary = status.summary();
        if summary != self.summary {
            notify::status(&summary);
            self.summary = summary;
        }
        self.published.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

/// A block server must not deadlock on memory reclaim that waits for its
/// own device: PR_SET_IO_FLUSHER lets the kernel know (needs
/// CAP_SYS_RESOURCE; without it the daemon runs on and says so).
fn protect_io() {
    // From linux/prctl.h (Linux 5.6); the libc crate does not name it.
    const PR_SET_IO_FLUSHER: nix::libc::c_int = 57;
    // SAFETY: prctl with integer arguments only; no memory is passed.
    let rc = unsafe { nix::libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, "cannot mark duetd as an I/O flusher (PR_SET_IO_FLUSHER)");
    }
}

/// What serving the objects again takes, on a new connection.
struct BusSetup {
    kind: BusKind,
    replicas: Arc<dyn crate::bus::ReplicaControl>,
    groups: GroupControl,
}

impl BusSetup {
    /// The objects served for `status` on a new connection, name taken.
    async fn serve(&self, status: ClusterStatus) -> zbus::Result<Bus> {
        Bus::start(
            self.kind,
            status,
            self.replicas.clone(),
            self.groups.clone(),
        )
        .await
    }
}

/// How often the publisher checks that the bus still answers.
const BUS_CHECK: Duration = Duration::from_secs(1);

/// D-Bus runs in a task of its own, fed the latest status: a slow or stuck
/// bus must never delay a heartbeat. Intermediate states may be skipped
/// when the bus lags; the last one always arrives. A bus that stops
/// answering (dbus-daemon restarted) is left, and the objects are served
/// again, name and all, as soon as a new connection can be made.
fn spawn_publisher(bus: Bus, setup: BusSetup, node: String) -> watch::Sender<ClusterStatus> {
    let (tx, mut rx) = watch::channel(ClusterStatus::default());
    tokio::spawn(async move {
        let mut bus = Some(bus);
        let mut check = tokio::time::interval(BUS_CHECK);
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let status = rx.borrow_and_update().clone();
                    if let Some(b) = &bus
                        && let Err(e) = b.publish(status).await
                    {
                        tracing::warn!(error = %e, node, "cannot publish state on D-Bus");
                    }
                }
                _ = check.tick() => {
                    let alive = match &bus {
                        Some(b) => b.alive().await,
                        None => false,
                    };
                    if !alive {
                        let status = rx.borrow().clone();
                        bus = serve_again(bus.take(), &setup, status, &node).await;
                    }
                }
            }
        }
    });
    tx
}

/// After the bus stopped answering: a new connection serving `status`, or
/// None to try again at the next check.
async fn serve_again(
    lost: Option<Bus>,
    setup: &BusSetup,
    status: ClusterStatus,
    node: &str,
) -> Option<Bus> {
    if lost.is_some() {
        tracing::warn!(
            node,
            "D-Bus stopped answering: serving again once it is back"
        );
    }
    drop(lost);
    match setup.serve(status).await {
        Ok(b) => {
            tracing::info!(node, "serving on D-Bus again");
            Some(b)
        }
        Err(e) => {
            tracing::debug!(error = %e, node, "D-Bus not back yet");
            None
        }
    }
}
