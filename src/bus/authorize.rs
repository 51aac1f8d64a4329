//! Who may change state over D-Bus. The bus policy lets anyone call the
//! methods; duetd then lets root through, and asks polkit about anyone
//! else (actions in polkit/org.duet.Duet1.policy), so an administrators'
//! group can be allowed by a polkit rule without being root. Without an
//! answer from polkit, only root may act. On a session bus (`--bus
//! session`, trying duet out) every caller is the bus's own user: no check.

use std::collections::HashMap;
use std::sync::OnceLock;

use zbus::message::Header;
use zbus::names::BusName;
use zbus::zvariant::Value;

use crate::daemon::ratelimit::Refusals;

/// The polkit actions, one per kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Standby, maintenance, confirm-off; start, stop, move, cleanup of
    /// groups.
    Manage,
    /// Anything done to a replica: roles, connection, verify, invalidate,
    /// up/down, attach/detach, adjust, sync pauses.
    ManageReplicas,
}

impl Action {
    pub fn id(self) -> &'static str {
        match self {
            Action::Manage => "org.duet.Duet1.manage",
            Action::ManageReplicas => "org.duet.Duet1.manage-replicas",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Action::Manage => "manage the cluster's groups and nodes",
            Action::ManageReplicas => "manage replicas",
        }
    }
}

/// Whether callers are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The system bus: root, or whom polkit allows.
    Polkit,
    /// A session bus: its own user only, by the bus's design.
    Open,
}

/// The decision for a caller of `uid`, given polkit's answer (asked only
/// for others than root): `Err` is the message the caller gets.
pub fn verdict(
    uid: u32,
    action: Action,
    polkit: impl FnOnce() -> Result<bool, String>,
) -> Result<(), String> {
    if uid == 0 {
        return Ok(());
    }
    let (id, what) = (action.id(), action.what());
    match polkit() {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "uid {uid} may not {what}: polkit does not grant it {id}; run it as root, \
             or allow a group with a polkit rule (docs/security.md)"
        )),
        Err(e) => Err(format!(
            "uid {uid} may not {what}: only root may while polkit cannot be asked \
             for {id} ({e})"
        )),
    }
}

/// Lets the call through, or answers AccessDenied with the reason.
pub async fn authorize(
    gate: Gate,
    conn: &zbus::Connection,
    header: &Header<'_>,
    action: Action,
) -> zbus::fdo::Result<()> {
    if gate == Gate::Open {
        return Ok(());
    }
    let denied = zbus::fdo::Error::AccessDenied;
    let sender = header
        .sender()
        .ok_or_else(|| denied("a call without a sender".into()))?;
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let uid = dbus
        .get_connection_unix_user(BusName::from(sender.to_owned()))
        .await?;
    let answer = if uid == 0 {
        Ok(true)
    } else {
        ask_polkit(conn, sender.as_str(), action)
            .await
            .map_err(|e| e.to_string())
    };
    verdict(uid, action, || answer).map_err(|why| {
        if let Some(held_back) = refusals().refuse("dbus") {
            tracing::warn!(
                uid,
                action = action.id(),
                held_back,
                "D-Bus call refused: {why}"
            );
        }
        denied(why)
    })
}

/// Refused calls: any local user can make them, so they are logged at
/// most once per 10 s.
fn refusals() -> &'static Refusals {
    static REFUSALS: OnceLock<Refusals> = OnceLock::new();
    REFUSALS.get_or_init(|| Refusals::new(std::time::Duration::from_secs(10)))
}

/// polkit's CheckAuthorization for the caller's bus name, without user
/// interaction (nothing could answer a password prompt here).
async fn ask_polkit(conn: &zbus::Connection, sender: &str, action: Action) -> zbus::Result<bool> {
    let subject = (
        "system-bus-name",
        HashMap::from([("name", Value::from(sender))]),
    );
    let details: HashMap<&str, &str> = HashMap::new();
    let reply = conn
        .call_method(
            Some("org.freedesktop.PolicyKit1"),
            "/org/freedesktop/PolicyKit1/Authority",
            Some("org.freedesktop.PolicyKit1.Authority"),
            "CheckAuthorization",
            &(subject, action.id(), details, 0u32, ""),
        )
        .await?;
    let (authorized, _challenge, _details): (bool, bool, HashMap<String, String>) =
        reply.body().deserialize()?;
    Ok(authorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_passes_without_asking_polkit() {
        let asked = std::cell::Cell::new(false);
        let v = verdict(0, Action::ManageReplicas, || {
            asked.set(true);
            Ok(false)
        });
        assert_eq!(v, Ok(()));
        assert!(!asked.get());
    }

    #[test]
    fn others_pass_only_when_polkit_says_yes() {
        assert_eq!(verdict(1000, Action::Manage, || Ok(true)), Ok(()));
        let no = verdict(1000, Action::Manage, || Ok(false)).expect_err("granted");
        assert!(no.contains("uid 1000 may not manage the cluster"), "{no}");
        assert!(no.contains("org.duet.Duet1.manage;"), "{no}");
        let down = verdict(65534, Action::ManageReplicas, || {
            Err("org.freedesktop.DBus.Error.ServiceUnknown".into())
        })
        .expect_err("granted without polkit");
        assert!(
            down.contains("only root may while polkit cannot be asked"),
            "{down}"
        );
        assert!(down.contains("org.duet.Duet1.manage-replicas"), "{down}");
    }

    #[test]
    fn the_actions_are_those_the_policy_file_declares() {
        let policy = include_str!("../../polkit/org.duet.Duet1.policy");
        for a in [Action::Manage, Action::ManageReplicas] {
            assert!(
                policy.contains(&format!("<action id=\"{}\">", a.id())),
                "{} missing from polkit/org.duet.Duet1.policy",
                a.id()
            );
        }
        assert_eq!(policy.matches("<action id=").count(), 2);
    }
}
