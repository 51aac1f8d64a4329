//! The thread that runs one replica's core: it feeds the core what happens
//! (client requests, disk completions, frames from the peer, time) and
//! carries out what the core asks, holding the data buffers meanwhile.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::daemon::replica::disk::{DiskIo, Job};
use crate::daemon::replica::link::Outgoing;
use crate::daemon::replica::status::Snapshot;
use crate::replication::core::{Action, Buf, Event, Input, Msg, Replica, ReqId};
use crate::replication::wire::Frame;
use crate::types::Timestamp;

/// How long a dropped connection waits for the peer to close its side.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub enum Cmd {
    Input(Input),
    /// An input whose data goes into the buffer store first.
    WithData(Input, Buf, Vec<u8>),
    Client(Client),
    Admin(Admin, Sender<Result<(), String>>),
    LinkUp {
        conn: u64,
        out: Sender<Outgoing>,
    },
    LinkDown {
        conn: u64,
    },
    Received {
        conn: u64,
        frame: Frame,
    },
    Shutdown,
}

pub enum Client {
    Write {
        offset: u64,
        data: Vec<u8>,
        fua: bool,
        reply: Sender<bool>,
    },
    Read {
        offset: u64,
        len: u32,
        reply: Sender<Option<Vec<u8>>>,
    },
    Flush {
        reply: Sender<bool>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Up,
    Down,
    Attach,
    Adjust,
    PauseSync,
    ResumeSync,
    Primary { force: bool },
    Secondary,
    Connect { discard_my_data: bool },
    Disconnect,
    Verify,
    Invalidate,
    InvalidateRemote,
    Detach,
}

enum Waiter {
    Done(Sender<bool>),
    Data(Sender<Option<Vec<u8>>>),
}

/// Where the replica comes from: what attach and adjust read again.
pub struct Origin {
    pub config: std::path::PathBuf,
    pub local: crate::types::NodeId,
    /// The data disk and where its metadata is.
    pub backing: crate::replication::md_io::Backing,
    pub verify: crate::config::VerifyAlg,
}

pub struct Engine {
    pub core: Replica,
    origin: Origin,
    /// The engine's own channel, for the disk threads of a new attach.
    pub engine_tx: Option<Sender<Cmd>>,
    pub name: String,
    pub disk: Option<DiskIo>,
    pub snapshot: Arc<Mutex<Snapshot>>,
    pub wants_link: Arc<std::sync::atomic::AtomicBool>,
    /// Shuts the current connection's socket down (on the core's Drop).
    pub closer: Arc<Mutex<Option<(u64, std::net::TcpStream)>>>,
    start: Instant,
    bufs: HashMap<Buf, Arc<Vec<u8>>>,
    waiters: HashMap<ReqId, Waiter>,
    next_req: u64,
    link: Option<(u64, Sender<Outgoing>)>,
    /// The states last logged (each change is logged once).
    logged: Option<(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    )>,
}

impl Engine {
    pub fn new(
        core: Replica,
        name: String,
        disk: Option<DiskIo>,
        snapshot: Arc<Mutex<Snapshot>>,
        origin: Origin,
    ) -> Engine {
        Engine {
            core,
            origin,
            engine_tx: None,
            name,
            disk,
            snapshot,
            wants_link: Arc::default(),
            closer: Arc::default(),
            start: Instant::now(),
            bufs: HashMap::new(),
            waiters: HashMap::new(),
            next_req: 0,
            link: None,
            logged: None,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.start.elapsed())
    }

    pub fn run(mut self, rx: &Receiver<Cmd>) {
        self.publish();
        loop {
            let wait = self
                .core
                .next_wakeup()
                .map(|t| t.0.saturating_sub(self.now().0))
                .unwrap_or(Duration::from_secs(1));
            match rx.recv_timeout(wait) {
                Ok(Cmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => self.feed(Input::Tick),
            }
            // Drain what else is queued before publishing once.
            while let Ok(cmd) = rx.try_recv() {
                if matches!(cmd, Cmd::Shutdown) {
                    return;
                }
                self.handle(cmd);
            }
            self.publish();
        }
    }

    fn feed(&mut self, input: Input) {
        let now = self.now();
        let actions = self.core.on(input, now);
        self.apply(actions);
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Input(i) => self.feed(i),
            Cmd::WithData(i, buf, data) => {
                self.bufs.insert(buf, Arc::new(data));
                self.feed(i);
            }
            Cmd::Client(c) => self.client(c),
            Cmd::Admin(a, reply) => {
                let r = self.admin(a);
                // Whoever reads the state after the answer sees the change.
                self.publish();
                let _ = reply.send(r);
            }
            Cmd::LinkUp { conn, out } => {
                self.link = Some((conn, out));
                self.feed(Input::TransportUp);
            }
            Cmd::LinkDown { conn } => {
                if self.link.as_ref().is_some_and(|(c, _)| *c == conn) {
                    self.link = None;
                    self.feed(Input::TransportDown);
                }
            }
            Cmd::Received { conn, frame } => {
                if self.link.as_ref().is_some_and(|(c, _)| *c == conn) {
                    self.received(frame);
                }
            }
            Cmd::Shutdown => {}
        }
    }

    fn received(&mut self, frame: Frame) {
        let payload = frame.payload.is_some();
        if let Some(data) = frame.payload {
            let buf = match &frame.msg {
                Msg::Data { seq, .. } => Buf::Peer(*seq),
                Msg::ResyncData { id, .. } => Buf::ResyncIn(*id),
                Msg::ReadReply { id, .. } => Buf::App(ReqId(*id)),
                _ => return,
            };
            self.bufs.insert(buf, Arc::new(data));
        }
        self.feed(Input::Received {
            msg: frame.msg,
            payload,
        });
    }

    fn client(&mut self, c: Client) {
        self.next_req += 1;
        let req = ReqId(self.next_req);
        let input = match c {
            Client::Write {
                offset,
                data,
                fua,
                reply,
            } => {
                let len = data.len() as u32;
                self.bufs.insert(Buf::App(req), Arc::new(data));
                self.waiters.insert(req, Waiter::Done(reply));
                Input::Write {
                    req,
                    offset,
                    len,
                    fua,
                }
            }
            Client::Read { offset, len, reply } => {
                self.waiters.insert(req, Waiter::Data(reply));
                Input::Read { req, offset, len }
            }
            Client::Flush { reply } => {
                self.waiters.insert(req, Waiter::Done(reply));
                Input::FlushReq { req }
            }
        };
        self.feed(input);
    }

    fn admin(&mut self, a: Admin) -> Result<(), String> {
        let now = self.now();
        let actions = match a {
            Admin::Primary { force } => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_micros() as u64);
                self.core.primary(force, wall, now)?
            }
            Admin::Secondary => self.core.secondary(now)?,
            Admin::Connect { discard_my_data } => self.core.connect(discard_my_data)?,
            Admin::Disconnect => self.core.disconnect(),
            Admin::Verify => self.core.verify(now)?,
            Admin::Invalidate => self.core.invalidate(now)?,
            Admin::InvalidateRemote => self.core.invalidate_remote(now)?,
            Admin::Detach => self.core.detach()?,
            Admin::Attach => self.attach()?,
            Admin::Up => {
                let mut a = self.attach()?;
                a.extend(self.core.connect(false)?);
                a
            }
            Admin::Down => {
                let mut a = self.core.disconnect();
                a.extend(self.core.detach()?);
                a
            }
            Admin::Adjust => self.adjust()?,
            Admin::PauseSync => self.core.pause_sync()?,
            Admin::ResumeSync => self.core.resume_sync(now)?,
        };
        tracing::info!(replica = %self.name, "{a:?} done");
        self.apply(actions);
        Ok(())
    }

    /// Opens the disk's metadata again and hands it to the core.
    fn attach(&mut self) -> Result<Vec<Action>, String> {
        if self.disk.is_some()
            && self.core.disk() != crate::replication::states::DiskState::Diskless
        {
            return Ok(Vec::new());
        }
        let (md, loaded) = crate::replication::md_io::MdDisk::open(&self.origin.backing)
            .map_err(|e| e.to_string())?;
        let tx = self
            .engine_tx
            .clone()
            .ok_or_else(|| "the engine has no channel".to_string())?;
        let io = DiskIo::start(md, tx, self.origin.verify).map_err(|e| e.to_string())?;
        let actions = self.core.attach(super::attached(loaded))?;
        self.disk = Some(io);
        Ok(actions)
    }

    /// Reads the config file again and applies what can change live.
    fn adjust(&mut self) -> Result<Vec<Action>, String> {
        let loaded = crate::config::load(&self.origin.config).map_err(|e| e.to_string())?;
        let c = &loaded.config;
        let r = c.replica(&self.name).ok_or_else(|| {
            format!(
                "{} is no longer in {}",
                self.name,
                self.origin.config.display()
            )
        })?;
        let s = self.core.settings();
        let peer = r
            .peer(self.origin.local)
            .ok_or_else(|| "the replica has no peer any more".to_string())?;
        let new = super::settings(c, r, self.origin.local, peer, s.size);
        self.core.adjust(new)
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            self.action(a);
        }
        self.wants_link.store(
            self.core.wants_transport(),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    fn submit(&mut self, job: Job) {
        match &self.disk {
            Some(d) => d.submit(job),
            // No disk: the core never asks for I/O then; answer failure.
            None => tracing::error!(replica = %self.name, "disk I/O asked of a diskless replica"),
        }
    }

    fn action(&mut self, a: Action) {
        match a {
            Action::Read { buf, offset, len } => self.submit(Job::Read { buf, offset, len }),
            Action::Write {
                buf,
                offset,
                len,
                fua,
            } => match self.bufs.get(&buf) {
                Some(data) if data.len() == len as usize => {
                    let data = data.clone();
                    self.submit(Job::Write {
                        buf,
                        offset,
                        data,
                        fua,
                    })
                }
                _ => self.feed(Input::Written { buf, ok: false }),
            },
            Action::Flush { token } => self.submit(Job::Flush { token }),
            Action::Meta { token, write } => self.submit(Job::Meta { token, write }),
            Action::Send { msg, payload } => {
                let data = payload.and_then(|b| self.bufs.get(&b).cloned());
                if let Some((_, out)) = &self.link {
                    let _ = out.send(Outgoing { msg, payload: data });
                }
            }
            Action::Release(buf) => {
                self.bufs.remove(&buf);
            }
            Action::Complete { req, ok } => self.complete(req, ok),
            Action::Drop { reason } => {
                tracing::warn!(replica = %self.name, "replication link dropped: {reason}");
                self.link = None;
                // Dropping the writer's channel makes it send what is
                // queued (the state that made the peer refuse too, say),
                // then half-close; a reset would throw that away. The
                // reader gives a silent peer a moment to close its side.
                if let Some((_, s)) = self.closer.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = s.set_read_timeout(Some(CLOSE_GRACE));
                }
            }
            Action::Event(e) => self.event(e),
        }
    }

    fn complete(&mut self, req: ReqId, ok: bool) {
        let data = self.bufs.remove(&Buf::App(req));
        match self.waiters.remove(&req) {
            Some(Waiter::Done(tx)) => {
                let _ = tx.send(ok);
            }
            Some(Waiter::Data(tx)) => {
                let data = data
                    .filter(|_| ok)
                    .map(|d| Arc::try_unwrap(d).unwrap_or_else(|d| (*d).clone()));
                let _ = tx.send(data);
            }
            None => {}
        }
    }

    fn event(&mut self, e: Event) {
        let r = &self.core;
        let name = &self.name;
        match e {
            Event::StateChanged => {
                let now = (
                    r.role().as_str(),
                    r.connection().as_str(),
                    r.replication().as_str(),
                    r.disk().as_str(),
                    r.peer_disk().as_str(),
                );
                if self.logged != Some(now) {
                    self.logged = Some(now);
                    tracing::info!(
                        replica = %name,
                        role = now.0,
                        connection = now.1,
                        replication = now.2,
                        disk = now.3,
                        peer_disk = now.4,
                        "{} {} {} {}/{}",
                        now.0, now.1, now.2, now.3, now.4
                    );
                }
            }
            Event::SyncStarted { full, bytes } => {
                tracing::info!(replica = %name, full, bytes, "sync started")
            }
            Event::SyncFinished { bytes } => {
                tracing::info!(replica = %name, bytes, "sync finished")
            }
            Event::VerifyFinished { out_of_sync_bytes } => {
                tracing::info!(replica = %name, out_of_sync_bytes, "verify finished")
            }
            Event::SplitBrain { resolved } => {
                tracing::error!(replica = %name, "split brain detected: {resolved}")
            }
            Event::Refused { reason } => {
                tracing::error!(replica = %name, "connection refused: {reason}")
            }
            Event::Declined { reason } => {
                tracing::warn!(replica = %name, "declined: {reason}")
            }
            Event::DiskFailed => tracing::error!(
                replica = %name,
                "I/O error on the backing disk: detached; this node now serves through its peer if it can"
            ),
        }
    }

    fn publish(&self) {
        let snap = Snapshot::of(&self.core);
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snap;
    }
}
