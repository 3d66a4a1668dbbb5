//! Unit tests of the report's parts.

use super::html::html;
use super::markdown::{md, plain_line};
use super::*;
use crate::journal::Kind;
use serde_json::{Value, json};

fn record(seq: u64, kind: Kind, node: &str, event: &str, detail: Value) -> Record {
    Record {
        seq,
        prev: journal::GENESIS_PREV.into(),
        time: format!("2026-05-01T10:00:{seq:02}.000Z"),
        ceremony: "C-1".into(),
        nonce: "00112233445566778899aabbccddeeff".into(),
        rehearsal: false,
        phase: "3d".into(),
        node: node.into(),
        kind,
        operator: None,
        event: event.into(),
        detail,
    }
}

fn status(serial: &str, pattern: u8) -> NodeStatus {
    use mkclone_backend::{
        Identity, MasterKeyKind, PatternAlgorithm, RegisterStatus, SerialNumber,
    };
    NodeStatus {
        identity: Identity {
            serial: SerialNumber::new(serial).unwrap(),
            eid: None,
        },
        registers: vec![RegisterStatus {
            kind: MasterKeyKind::Sym,
            new: NewState::Empty,
            current: CurrentState::Valid,
            old: CurrentState::Invalid,
            new_patterns: vec![],
            current_patterns: vec![
                VerificationPattern::new(PatternAlgorithm::Sha1Method, &[pattern; 8]).unwrap(),
            ],
            old_patterns: vec![],
        }],
    }
}

fn note(seq: u64, node: &str, n: Note) -> Record {
    let (event, detail) = n.parts();
    record(seq, Kind::Note, node, &event, detail)
}

fn intent(seq: u64, a: Action) -> Record {
    let (event, detail) = a.parts();
    record(seq, Kind::Intent, "t1", &event, detail)
}

fn outcome(seq: u64, event: &str, intent: u64, result: StepResult) -> Record {
    let detail = serde_json::to_value(Outcome { intent, result }).unwrap();
    record(seq, Kind::Outcome, "t1", event, detail)
}

#[test]
fn the_first_readable_node_status_is_the_before() {
    let records = vec![
        // Not what mkclone writes: reported, not guessed at.
        record(
            1,
            Kind::Note,
            "t1",
            "node-status",
            json!({"registers": "garbage"}),
        ),
        note(2, "t1", Note::NodeStatus(Box::new(status("S1", 1)))),
        note(3, "t1", Note::NodeStatus(Box::new(status("S1", 2)))),
    ];
    let s = first_node_status(&records, "t1").unwrap();
    assert_eq!(s.seq, Some(2));
    assert_eq!(s.serial.as_deref(), Some("S1"));
    assert_eq!(s.registers[0].current_patterns, ["SHA-1 0101010101010101"]);
    let sym = register_of(&s, CloneableKind::Sym);
    assert_eq!(
        current_text(sym.as_ref(), |r| (&r.current, &r.current_patterns)),
        "SHA-1 0101010101010101"
    );
    assert!(first_node_status(&records, "other").is_none());
    let t = timeline(&records);
    assert_eq!(t[0].entry, "unreadable");
    assert!(t[0].unreadable.as_deref().unwrap().contains("record 1"));
}

#[test]
fn intents_pair_with_the_outcome_that_names_them() {
    let ok = |already_done| StepResult::Ok {
        already_done,
        progress: None,
        share_bytes: None,
    };
    let install = Action::InstallShare {
        index: 1,
        kind: CloneableKind::Sym,
    };
    let records = vec![
        intent(1, install.clone()),
        // Interrupted: no outcome; the rerun does it again.
        intent(2, install.clone()),
        note(
            3,
            "t1",
            Note::OutcomeUnknownRetry {
                error: "lost".into(),
                intent: 2,
            },
        ),
        outcome(4, "install-share", 2, ok(true)),
        intent(
            5,
            Action::SetMasterKey {
                kind: CloneableKind::Sym,
            },
        ),
        outcome(
            6,
            "set-master-key",
            5,
            StepResult::Failed {
                error: "boom".into(),
            },
        ),
        outcome(7, "orphan", 99, ok(false)),
    ];
    let t = timeline(&records);
    let by_seq = |s: u64| t.iter().find(|e| e.seq == s).unwrap();
    assert!(by_seq(1).outcome.is_none());
    assert_eq!(by_seq(1).result, "NO OUTCOME RECORDED");
    assert_eq!(by_seq(2).outcome.as_ref().unwrap().seq, 4);
    assert_eq!(by_seq(2).result, "ok (already done)");
    assert_eq!(by_seq(2).action, Some(install));
    assert_eq!(by_seq(3).entry, "note");
    assert_eq!(by_seq(5).result, "FAILED: boom");
    assert!(!by_seq(5).ok());
    assert_eq!(by_seq(7).entry, "outcome");
    assert!(t.iter().all(|e| e.seq != 4 && e.seq != 6));
}

#[test]
fn patterns_compare_per_algorithm() {
    use mkclone_backend::PatternAlgorithm::{Mdc4, Sha1Method};
    let p =
        |a, b: u8| VerificationPattern::new(a, &vec![b; if a == Mdc4 { 16 } else { 8 }]).unwrap();
    assert_eq!(
        compare(&[p(Sha1Method, 1)], &[p(Sha1Method, 1)]),
        Some(true)
    );
    assert_eq!(
        compare(&[p(Sha1Method, 1)], &[p(Sha1Method, 2)]),
        Some(false)
    );
    assert_eq!(compare(&[p(Mdc4, 1)], &[p(Sha1Method, 1)]), None);
    assert_eq!(
        compare(&[p(Mdc4, 1), p(Sha1Method, 2)], &[p(Sha1Method, 2)]),
        Some(true)
    );
    assert_eq!(compare(&[], &[p(Sha1Method, 2)]), None);
}

#[test]
fn escaping() {
    assert_eq!(
        html("<a href=\"x\">&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
    );
    assert_eq!(md("a|b*c_d`e<f\nz\\"), "a\\|b\\*c\\_d\\`e\\<f z\\\\");
    assert_eq!(md("# h > x"), "\\# h > x");
    assert_eq!(md("- item"), "\\- item");
    assert_eq!(plain_line("a`b\nc"), "a'b c");
}
