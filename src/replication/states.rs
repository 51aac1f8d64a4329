//! The states of a replica, named as DRBD users know them. `as_str` gives
//! the lower-case names of `duetctl status --json` and D-Bus.

use std::fmt;

macro_rules! named {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            /// The DRBD-style name (`UpToDate`), for logs.
            pub fn title(self) -> &'static str {
                match self { $($name::$v => stringify!($v)),+ }
            }

            pub fn code(self) -> u8 {
                Self::ALL.iter().position(|x| *x == self).unwrap_or(0) as u8
            }

            pub fn from_code(c: u8) -> Option<$name> {
                Self::ALL.get(usize::from(c)).copied()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.title())
            }
        }
    };
}

named!(
    /// Who may write: only a Primary's device is exported.
    Role {
        Primary => "primary",
        Secondary => "secondary",
    }
);

named!(
    /// The replication link.
    Connection {
        /// Not trying: administratively disconnected, or after a split
        /// brain or unrelated data (an administrator decides).
        StandAlone => "standalone",
        /// Trying to reach the peer (or waiting for it).
        Connecting => "connecting",
        /// Transport up, exchanging states and bitmaps.
        Handshake => "handshake",
        Connected => "connected",
    }
);

named!(
    /// What the connection is doing with the data.
    Replication {
        /// Not connected.
        Off => "off",
        /// Mirroring writes, nothing to sync.
        Established => "established",
        /// Sending the blocks the peer lacks.
        SyncSource => "syncsource",
        /// Receiving them: this disk is Inconsistent until done.
        SyncTarget => "synctarget",
        /// A sync paused by an administrator (`duetctl pause-sync`).
        PausedSync => "pausedsync",
        /// Comparing checksums, this side leads.
        VerifySource => "verifysource",
        VerifyTarget => "verifytarget",
    }
);

named!(
    /// The state of a disk, this node's or (as the peer reported) the peer's.
    DiskState {
        /// No backing disk attached.
        Diskless => "diskless",
        /// Reading metadata.
        Attaching => "attaching",
        /// Partly written by a sync (or never synced): not usable alone.
        Inconsistent => "inconsistent",
        /// Consistent but known to lack the peer's newer data.
        Outdated => "outdated",
        UpToDate => "uptodate",
        /// An I/O error; detaching.
        Failed => "failed",
        /// The peer's disk while not connected.
        DUnknown => "dunknown",
        /// Good data, but attached after a restart and not connected to
        /// the peer since: the peer may have written after (DRBD's
        /// Consistent). Shown, never sent: it is UpToDate once the peers
        /// have compared generations.
        Consistent => "consistent",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for d in DiskState::ALL {
            assert_eq!(DiskState::from_code(d.code()), Some(*d));
        }
        assert_eq!(DiskState::from_code(200), None);
        assert_eq!(Replication::SyncTarget.as_str(), "synctarget");
        assert_eq!(DiskState::UpToDate.to_string(), "UpToDate");
    }
}
