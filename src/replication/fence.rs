//! The fencing relay's rules, pure (docs/replication.md, "Fencing the
//! peer"): between a replica core (`Replica::fence_view`, `Input::Fence`)
//! and the membership's heartbeats (record 5, `membership::fence_records`).
//! Per replica, each time the daemon looks (after every step of the
//! membership, and when a core's view changes):
//!
//! 1. `inputs`: what the core is told. A Primary asking for request `g`
//!    hears its peer's `Outdated g` (confirmed) or `Refused g`, or, with
//!    its answers held and the peer not alive in the membership, that the
//!    peer is unreachable. A node whose live peer asks `g` is asked to
//!    outdate its disk, until it has answered `g`.
//! 2. `notes`: what this node announces then: its own request, and its
//!    answer to each request its peer still makes (once the requester has
//!    its answer it stops asking, and the answer goes too).
//!
//! A request names the generation its Primary writes under without the
//! peer, fresh for each loss of the peer, so an answer to an earlier one
//! still in the heartbeats never passes for an answer to this one.

use crate::membership::fence_records::{FenceKind, FenceNote};
use crate::replication::core::{Answer, FenceInput, FenceView};
use crate::replication::generation::Generation;

/// What the core is told, from the notes its peer announces for this
/// replica (`heard`) and whether the membership sees the peer alive.
pub fn inputs(view: &FenceView, heard: &[FenceNote], peer_alive: bool) -> Vec<FenceInput> {
    let said = |kind: FenceKind| {
        heard
            .iter()
            .filter(move |n| n.kind == kind)
            .map(|n| Generation(n.generation))
    };
    let mut out = Vec::new();
    if let Some(g) = view.request {
        if said(FenceKind::Outdated).any(|h| h == g) {
            out.push(FenceInput::PeerOutdated(g));
        } else if said(FenceKind::Refused).any(|h| h == g) {
            out.push(FenceInput::PeerRefused(g));
        } else if view.holding && !peer_alive {
            out.push(FenceInput::PeerUnreachable);
        }
    }
    // A dead peer's request is not taken up: it answered none of its
    // writes while it waited, and outdating this copy now would leave
    // none to promote in its place.
    if peer_alive {
        for g in said(FenceKind::Request) {
            if view.answer.is_none_or(|(a, _)| a != g) {
                out.push(FenceInput::Outdate(g));
            }
        }
    }
    out
}

/// What this node announces for `replica`, from its core's view after
/// `inputs` were fed.
pub fn notes(replica: &str, view: &FenceView, heard: &[FenceNote]) -> Vec<FenceNote> {
    let note = |kind, g: Generation| FenceNote {
        replica: replica.to_string(),
        kind,
        generation: g.0,
    };
    let mut out = Vec::new();
    if let Some(g) = view.request {
        out.push(note(FenceKind::Request, g));
    }
    for n in heard.iter().filter(|n| n.kind == FenceKind::Request) {
        let g = Generation(n.generation);
        match view.answer {
            Some((a, Answer::Outdated)) if a == g => out.push(note(FenceKind::Outdated, g)),
            Some((a, Answer::Refused)) if a == g => out.push(note(FenceKind::Refused, g)),
            _ => {}
        }
    }
    out
}

/// The notes of `all` that are about `replica`.
pub fn about(all: &[FenceNote], replica: &str) -> Vec<FenceNote> {
    all.iter()
        .filter(|n| n.replica == replica)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Generation = Generation(0x51);

    fn heard(kind: FenceKind, g: Generation) -> Vec<FenceNote> {
        vec![FenceNote {
            replica: "r0".into(),
            kind,
            generation: g.0,
        }]
    }

    fn asking(holding: bool) -> FenceView {
        FenceView {
            request: Some(G),
            holding,
            answer: None,
        }
    }

    #[test]
    fn a_requester_takes_only_the_answer_to_its_own_request() {
        let old = Generation(0x50);
        for (view, heard, alive, want) in [
            (
                asking(true),
                heard(FenceKind::Outdated, G),
                true,
                vec![FenceInput::PeerOutdated(G)],
            ),
            (
                asking(true),
                heard(FenceKind::Refused, G),
                true,
                vec![FenceInput::PeerRefused(G)],
            ),
            // An answer to an earlier request is no answer.
            (asking(true), heard(FenceKind::Outdated, old), true, vec![]),
            (
                asking(true),
                heard(FenceKind::Outdated, old),
                false,
                vec![FenceInput::PeerUnreachable],
            ),
            (
                asking(true),
                vec![],
                false,
                vec![FenceInput::PeerUnreachable],
            ),
            // Nothing held: nothing to release (a confirmation is still taken).
            (asking(false), vec![], false, vec![]),
            (
                asking(false),
                heard(FenceKind::Outdated, G),
                true,
                vec![FenceInput::PeerOutdated(G)],
            ),
            // The peer's confirmation counts even as it dies.
            (
                asking(true),
                heard(FenceKind::Outdated, G),
                false,
                vec![FenceInput::PeerOutdated(G)],
            ),
            (
                FenceView::default(),
                heard(FenceKind::Outdated, G),
                true,
                vec![],
            ),
        ] {
            assert_eq!(
                inputs(&view, &heard, alive),
                want,
                "{view:?} {heard:?} {alive}"
            );
        }
    }

    #[test]
    fn a_live_peers_request_is_taken_until_answered() {
        let asked = heard(FenceKind::Request, G);
        let idle = FenceView::default();
        assert_eq!(inputs(&idle, &asked, true), [FenceInput::Outdate(G)]);
        // A dead peer's request is not.
        assert_eq!(inputs(&idle, &asked, false), []);
        for answer in [Answer::Outdated, Answer::Refused] {
            let answered = FenceView {
                answer: Some((G, answer)),
                ..idle
            };
            assert_eq!(inputs(&answered, &asked, true), []);
            // A new request is taken up though an old one was answered.
            let newer = heard(FenceKind::Request, Generation(0x52));
            assert_eq!(
                inputs(&answered, &newer, true),
                [FenceInput::Outdate(Generation(0x52))]
            );
        }
    }

    #[test]
    fn answers_are_announced_while_asked() {
        let asked = heard(FenceKind::Request, G);
        let outdated = FenceView {
            answer: Some((G, Answer::Outdated)),
            ..FenceView::default()
        };
        assert_eq!(
            notes("r0", &outdated, &asked),
            heard(FenceKind::Outdated, G)
        );
        // No longer asked: the answer goes.
        assert_eq!(notes("r0", &outdated, &[]), []);
        // Asked something else: not this answer.
        assert_eq!(
            notes("r0", &outdated, &heard(FenceKind::Request, Generation(1))),
            []
        );
        // Both Primary apart: each asks, and refuses the other.
        let both = FenceView {
            request: Some(Generation(0x77)),
            holding: false,
            answer: Some((G, Answer::Refused)),
        };
        let mut want = heard(FenceKind::Request, Generation(0x77));
        want.extend(heard(FenceKind::Refused, G));
        assert_eq!(notes("r0", &both, &asked), want);
    }

    #[test]
    fn about_keeps_one_replicas_notes() {
        let mut all = heard(FenceKind::Request, G);
        all.push(FenceNote {
            replica: "r1".into(),
            kind: FenceKind::Outdated,
            generation: 3,
        });
        assert_eq!(about(&all, "r0"), heard(FenceKind::Request, G));
        assert_eq!(about(&all, "r2"), []);
    }
}
