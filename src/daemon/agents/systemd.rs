//! The parts of systemd's D-Bus API the agents use (org.freedesktop.systemd1
//! Manager and Unit), the wait for a job's end, and systemd's path escaping.
//!
//! Our own small proxies rather than the zbus_systemd crate: the agents need
//! eight calls and one signal, and these proxies say exactly which, with
//! property caching off (no PropertiesChanged match per unit object).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

/// The longest unit name systemd accepts (its UNIT_NAME_MAX less the NUL).
pub const UNIT_NAME_MAX: usize = 255;

/// How often a state is polled while waiting for systemd to catch up.
pub const POLL: Duration = Duration::from_millis(50);

const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";
const ALREADY_SUBSCRIBED: &str = "org.freedesktop.systemd1.AlreadySubscribed";

/// One property of a transient unit: name and value, D-Bus `(sv)`.
pub type Property<'a> = (&'a str, Value<'a>);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    #[zbus(name = "GetUnitByPID")]
    fn get_unit_by_pid(&self, pid: u32) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn subscribe(&self) -> zbus::Result<()>;
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[Property<'_>],
        aux: &[(&str, &[Property<'_>])],
    ) -> zbus::Result<OwnedObjectPath>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn transient(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn fragment_path(&self) -> zbus::Result<String>;
}

/// A unit as systemd sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// "active", "inactive", "failed", "activating", ...
    pub active: String,
    pub sub: String,
    /// The unit type's Result property ("success", "exit-code", ...), where
    /// the type has one.
    pub result: Option<String>,
    pub transient: bool,
    /// The file the unit was loaded from, if any (empty for units systemd
    /// made up, such as a mount it found in /proc/self/mountinfo).
    pub fragment: String,
}

impl UnitState {
    pub fn is_running(&self) -> bool {
        matches!(self.active.as_str(), "active" | "reloading")
    }

    /// "state failed/failed; unit result exit-code", for error messages.
    pub fn describe(&self) -> String {
        match &self.result {
            Some(r) if r != "success" => {
                format!("state {}/{}; unit result {r}", self.active, self.sub)
            }
            _ => format!("state {}/{}", self.active, self.sub),
        }
    }
}

/// The Manager on one bus connection.
pub struct Systemd<'c> {
    conn: &'c zbus::Connection,
    pub manager: ManagerProxy<'c>,
}

/// JobRemoved signals for one unit, from before its job was queued; the
/// match rule goes away when this is dropped.
pub struct JobWatch {
    stream: JobRemovedStream,
    unit: String,
}

impl<'c> Systemd<'c> {
    pub async fn new(conn: &'c zbus::Connection) -> Result<Systemd<'c>, String> {
        let manager = ManagerProxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| format!("cannot reach systemd on the system bus: {e}"))?;
        Ok(Systemd { conn, manager })
    }

    /// Starts listening for the end of `unit`'s jobs. Call before queueing
    /// the job: a job may end before the call that queued it returns.
    pub async fn watch(&self, unit: &str) -> Result<JobWatch, String> {
        // systemd sends job signals to subscribed clients (and to a job's
        // own client); subscribing is per connection, so a second call on
        // the same connection is told it already is.
        match self.manager.subscribe().await {
            Ok(()) => {}
            Err(e) if is_error(&e, ALREADY_SUBSCRIBED) => {}
            Err(e) => return Err(format!("cannot subscribe to systemd's signals: {e}")),
        }
        let stream = self
            .manager
            .receive_job_removed_with_args(&[(2, unit)])
            .await
            .map_err(|e| format!("cannot listen for systemd's job signals: {e}"))?;
        Ok(JobWatch {
            stream,
            unit: unit.to_string(),
        })
    }

    /// The unit's object, or None when systemd has no such unit loaded.
    pub async fn get_unit(&self, unit: &str) -> Result<Option<UnitProxy<'c>>, String> {
        let path = match self.manager.get_unit(unit).await {
            Ok(p) => p,
            Err(e) if is_no_such_unit(&e) => return Ok(None),
            Err(e) => return Err(format!("cannot ask systemd about {unit}: {}", plain(&e))),
        };
        self.unit_at(unit, path).await.map(Some)
    }

    /// The unit's object, loading it from disk if need be (its LoadState
    /// then says whether it exists).
    pub async fn load_unit(&self, unit: &str) -> Result<UnitProxy<'c>, String> {
        let path = self
            .manager
            .load_unit(unit)
            .await
            .map_err(|e| format!("cannot ask systemd about {unit}: {}", plain(&e)))?;
        self.unit_at(unit, path).await
    }

    async fn unit_at(&self, unit: &str, path: OwnedObjectPath) -> Result<UnitProxy<'c>, String> {
        UnitProxy::builder(self.conn)
            .path(path)
            .map(|b| b.cache_properties(CacheProperties::No))
            .map_err(|e| format!("bad object path for {unit}: {e}"))?
            .build()
            .await
            .map_err(|e| format!("cannot reach {unit}'s object: {e}"))
    }

    /// The unit's state, or None when systemd has no such unit loaded.
    pub async fn state(&self, unit: &str) -> Result<Option<UnitState>, String> {
        let Some(proxy) = self.get_unit(unit).await? else {
            return Ok(None);
        };
        let read = |e: zbus::Error| format!("cannot read {unit}'s state: {e}");
        let active = proxy.active_state().await.map_err(read)?;
        let sub = proxy.sub_state().await.map_err(read)?;
        let transient = proxy.transient().await.map_err(read)?;
        let fragment = proxy.fragment_path().await.map_err(read)?;
        let result = match type_interface(unit) {
            Some(interface) => self
                .property(proxy.inner().path(), interface, "Result")
                .await
                .ok()
                .and_then(|v| String::try_from(v).ok()),
            None => None,
        };
        Ok(Some(UnitState {
            active,
            sub,
            result,
            transient,
            fragment,
        }))
    }

    /// One property of a unit object, on any of its interfaces.
    pub async fn property(
        &self,
        path: &zbus::zvariant::ObjectPath<'_>,
        interface: &str,
        name: &str,
    ) -> Result<OwnedValue, String> {
        let props = zbus::fdo::PropertiesProxy::builder(self.conn)
            .destination("org.freedesktop.systemd1")
            .and_then(|b| b.path(path.to_owned()))
            .map(|b| b.cache_properties(CacheProperties::No))
            .map_err(|e| format!("bad object path {path}: {e}"))?
            .build()
            .await
            .map_err(|e| format!("cannot reach {path}: {e}"))?;
        let interface = zbus::names::InterfaceName::try_from(interface)
            .map_err(|e| format!("bad interface name {interface}: {e}"))?;
        props
            .get(interface, name)
            .await
            .map_err(|e| format!("cannot read {name} of {path}: {e}"))
    }

    /// The job mode to stop `unit` with: "replace", or
    /// "ignore-dependencies" while the unit this process runs in is being
    /// stopped and a stop of `unit` already waits in systemd's queue.
    ///
    /// When the whole node shuts down, systemd queues a stop of every unit
    /// at once, ordered as at boot in reverse: a mount (Before=
    /// local-fs.target by default) waits for every ordinary service to
    /// stop first, duetd among them. duetd stops its groups while it is
    /// being stopped, so a "replace" stop of the mount, merged into that
    /// waiting job, would wait for duetd itself until systemd's stop
    /// timeout killed duetd, the group never handed over in order. Merged
    /// with "ignore-dependencies" (systemd then lets the job ignore its
    /// ordering), it runs at once; the group's own order is kept by duetd,
    /// which has stopped the resources above this one already.
    pub async fn stop_mode(&self, unit: &str) -> &'static str {
        if self.stop_waits(unit).await && self.own_unit_stopping().await {
            tracing::info!("{unit}: its stop waits for duetd's own; stopping it now");
            "ignore-dependencies"
        } else {
            "replace"
        }
    }

    /// Whether a stop job of `unit` is queued and not yet running.
    async fn stop_waits(&self, unit: &str) -> bool {
        let Ok(Some(proxy)) = self.get_unit(unit).await else {
            return false;
        };
        self.job_of(proxy.inner().path())
            .await
            .is_some_and(|(kind, state)| kind == "stop" && state == "waiting")
    }

    /// Whether the unit this process runs in (duetd.service) is stopping.
    async fn own_unit_stopping(&self) -> bool {
        let Ok(path) = self.manager.get_unit_by_pid(std::process::id()).await else {
            return false;
        };
        self.job_of(&path)
            .await
            .is_some_and(|(kind, _)| kind == "stop")
    }

    /// The type ("stop", "start", ...) and state ("waiting", "running") of
    /// the job the unit at `path` has, if any.
    async fn job_of(&self, path: &zbus::zvariant::ObjectPath<'_>) -> Option<(String, String)> {
        let job = self
            .property(path, "org.freedesktop.systemd1.Unit", "Job")
            .await
            .ok()?;
        let (id, job): (u32, OwnedObjectPath) = job.try_into().ok()?;
        if id == 0 {
            return None;
        }
        let read = |name| self.property(&job, "org.freedesktop.systemd1.Job", name);
        let kind = String::try_from(read("JobType").await.ok()?).ok()?;
        let state = String::try_from(read("State").await.ok()?).ok()?;
        Some((kind, state))
    }

    /// "state failed/failed; unit result exit-code", or "not loaded".
    pub async fn describe(&self, unit: &str) -> String {
        match self.state(unit).await {
            Ok(Some(s)) => s.describe(),
            Ok(None) => "not loaded".to_string(),
            Err(e) => e,
        }
    }

    /// Forgets a failed unit's failure; systemd then drops a transient unit.
    pub async fn reset_failed(&self, unit: &str) {
        if let Err(e) = self.manager.reset_failed_unit(unit).await
            && !is_no_such_unit(&e)
        {
            tracing::debug!("reset-failed {unit}: {e}");
        }
    }

    /// Waits until systemd has no unit of this name loaded (it drops
    /// inactive transient units shortly after they stop).
    pub async fn wait_unloaded(&self, unit: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(state) = self.state(unit).await? else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "{unit} is still loaded in systemd ({}) after {} s",
                    state.describe(),
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl JobWatch {
    /// Waits for `job` to end; returns its result ("done", "failed",
    /// "canceled", "timeout", "dependency", "skipped", ...).
    pub async fn result(&mut self, job: &OwnedObjectPath) -> Result<String, String> {
        while let Some(signal) = self.stream.next().await {
            let Ok(args) = signal.args() else {
                continue;
            };
            if args.job.as_str() == job.as_str() {
                return Ok(args.result.clone());
            }
        }
        Err(format!(
            "lost the system bus while waiting for {}'s job",
            self.unit
        ))
    }
}

/// The interface holding a unit type's Result property.
fn type_interface(unit: &str) -> Option<&'static str> {
    let suffix = unit.rsplit_once('.')?.1;
    Some(match suffix {
        "service" => "org.freedesktop.systemd1.Service",
        "mount" => "org.freedesktop.systemd1.Mount",
        "socket" => "org.freedesktop.systemd1.Socket",
        "swap" => "org.freedesktop.systemd1.Swap",
        "timer" => "org.freedesktop.systemd1.Timer",
        "path" => "org.freedesktop.systemd1.Path",
        "automount" => "org.freedesktop.systemd1.Automount",
        "scope" => "org.freedesktop.systemd1.Scope",
        _ => return None,
    })
}

fn is_error(e: &zbus::Error, name: &str) -> bool {
    matches!(e, zbus::Error::MethodError(n, _, _) if n.as_str() == name)
}

/// systemd's answer when it has no unit of that name (not found on start,
/// not loaded on get and stop).
pub fn is_no_such_unit(e: &zbus::Error) -> bool {
    is_error(e, NO_SUCH_UNIT)
}

/// StartTransientUnit's answer when a unit of that name is loaded.
pub fn is_unit_exists(e: &zbus::Error) -> bool {
    is_error(e, UNIT_EXISTS)
}

/// The words of a D-Bus error reply (systemd's own sentence), or the error.
pub fn plain(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(_, Some(text), _) => text.clone(),
        other => other.to_string(),
    }
}

/// systemd's path escaping (`systemd-escape --path`, the C function
/// unit_name_path_escape): `/mnt/shared` becomes `mnt-shared`, the unit
/// name stem of the path's mount unit. Duplicate slashes and `.` parts go;
/// `..` is refused, as systemd refuses it.
pub fn escape_path(path: &Path) -> Result<String, String> {
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.as_os_str().as_bytes().split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(format!(
                    "{} has a `..` part; write the path without it",
                    path.display()
                ));
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Ok("-".to_string());
    }
    let joined = parts.join(&b'/');
    let mut out = String::with_capacity(joined.len());
    for (i, &b) in joined.iter().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => {
                out.push(char::from(b))
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    Ok(out)
}

/// The simplified path systemd keeps for an escaped name (no duplicate or
/// trailing slashes, no `.` parts): what a mount unit's Where= must be.
pub fn simplify_path(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::from("/");
    for part in path.as_os_str().as_bytes().split(|&b| b == b'/') {
        if !matches!(part, b"" | b".") {
            out.push(OsStr::from_bytes(part));
        }
    }
    out
}

/// `prefix` + escaped `path` + `suffix`, checked against systemd's length
/// limit: `unit_name_for_path("", "/mnt/shared", ".mount")`.
pub fn unit_name_for_path(prefix: &str, path: &Path, suffix: &str) -> Result<String, String> {
    let name = format!("{prefix}{}{suffix}", escape_path(path)?);
    if name.len() > UNIT_NAME_MAX {
        return Err(format!(
            "the unit name for {} would be {} characters long; systemd takes at most {UNIT_NAME_MAX}",
            path.display(),
            name.len()
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair as `systemd-escape --path` (systemd 252) prints it.
    #[test]
    fn path_escaping_matches_systemd_escape() {
        for (path, escaped) in [
            ("/mnt/shared", "mnt-shared"),
            ("/", "-"),
            ("/foo//bar/", "foo-bar"),
            ("/foo bar/baz", "foo\\x20bar-baz"),
            ("/mnt/a-b", "mnt-a\\x2db"),
            ("/.hidden/x", "\\x2ehidden-x"),
            ("/mnt/ä", "mnt-\\xc3\\xa4"),
            ("/a/./b", "a-b"),
            ("/x\\y", "x\\x5cy"),
            (
                "/dev/disk/by-uuid/1234-ABCD",
                "dev-disk-by\\x2duuid-1234\\x2dABCD",
            ),
            ("/a:b_c.d", "a:b_c.d"),
            ("/a/.b", "a-.b"),
            ("/dev/sdb", "dev-sdb"),
        ] {
            assert_eq!(
                escape_path(Path::new(path)).as_deref(),
                Ok(escaped),
                "{path}"
            );
        }
    }

    #[test]
    fn non_utf8_bytes_are_escaped_one_by_one() {
        let path = Path::new(OsStr::from_bytes(b"/mnt/\xff"));
        assert_eq!(escape_path(path).as_deref(), Ok("mnt-\\xff"));
    }

    #[test]
    fn relative_and_dotdot_paths_are_refused_in_words() {
        let e = escape_path(Path::new("mnt/shared")).expect_err("relative");
        assert!(e.contains("not an absolute path"), "{e}");
        let e = escape_path(Path::new("/a/../b")).expect_err("dotdot");
        assert!(e.contains("`..`"), "{e}");
    }

    #[test]
    fn unit_names_from_paths_and_their_limit() {
        assert_eq!(
            unit_name_for_path("", Path::new("/mnt/shared"), ".mount").as_deref(),
            Ok("mnt-shared.mount")
        );
        assert_eq!(
            unit_name_for_path("duet-fsck@", Path::new("/dev/sdb"), ".service").as_deref(),
            Ok("duet-fsck@dev-sdb.service")
        );
        let long = format!("/{}", "a".repeat(250));
        let e = unit_name_for_path("", Path::new(&long), ".mount").expect_err("too long");
        assert!(e.contains("at most 255"), "{e}");
    }

    #[test]
    fn where_is_the_simplified_path() {
        assert_eq!(
            simplify_path(Path::new("/mnt//shared/./")),
            Path::new("/mnt/shared")
        );
        assert_eq!(simplify_path(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn state_descriptions_name_a_failed_result() {
        let mut s = UnitState {
            active: "failed".into(),
            sub: "failed".into(),
            result: Some("exit-code".into()),
            transient: false,
            fragment: String::new(),
        };
        assert_eq!(s.describe(), "state failed/failed; unit result exit-code");
        assert!(!s.is_running());
        s.active = "reloading".into();
        s.result = Some("success".into());
        assert!(s.is_running());
        assert_eq!(s.describe(), "state reloading/failed");
    }
}
