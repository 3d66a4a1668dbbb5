//! Unit tests of the report's parts.

use super::html::{css_string, html};
use super::markdown::{code, md, plain_line};
use super::*;
use crate::journal::{Journal, Kind};
use serde_json::{Value, json};

/// Records of one journal ("A"), as the merged record holds them.
fn recs(records: &[Record]) -> Vec<Rec<'_>> {
    records
        .iter()
        .map(|record| Rec {
            label: "A",
            record,
            offset: None,
        })
        .collect()
}

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
    let s = first_node_status(&recs(&records), "t1").unwrap();
    assert_eq!(
        s.record,
        Some(RecordRef {
            journal: "A".into(),
            seq: 2
        })
    );
    assert_eq!(s.serial.as_deref(), Some("S1"));
    assert_eq!(
        s.registers[0].current_patterns[0].to_string(),
        "SHA-1 0101010101010101"
    );
    let sym = register_of(&s, CloneableKind::Sym);
    assert_eq!(
        current_text(sym.as_ref(), Register::Current),
        "SHA-1 0101010101010101"
    );
    assert!(first_node_status(&recs(&records), "other").is_none());
    let t = timeline(&recs(&records));
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
    let t = timeline(&recs(&records));
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

    // An outcome pairs with the intent of its own journal only.
    let other = [outcome(8, "set-master-key", 5, ok(false))];
    let mut merged = recs(&records[..5]);
    merged.push(Rec {
        label: "B",
        record: &other[0],
        offset: None,
    });
    let t = timeline(&merged);
    let set = t.iter().find(|e| e.seq == 5).unwrap();
    assert_eq!(set.result, "NO OUTCOME RECORDED");
    assert_eq!(t.last().unwrap().entry, "outcome");
    assert_eq!(t.last().unwrap().journal, "B");
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
    assert_eq!(md("# h > x"), "\\# h \\> x");
    assert_eq!(md("- item"), "\\- item");
    // Strike-through, entities, images, ordered lists.
    assert_eq!(md("~~x~~"), "\\~\\~x\\~\\~");
    assert_eq!(md("Tom &amp; Jerry"), "Tom \\&amp; Jerry");
    assert_eq!(md("![i](u)"), "\\!\\[i\\](u)");
    assert_eq!(md("1. first"), "1\\. first");
    assert_eq!(md("12) x"), "12\\) x");
    assert_eq!(md("1.5 bits"), "1\\.5 bits");
    assert_eq!(md("x 1. y"), "x 1. y");
    assert_eq!(plain_line("a`b\nc"), "a'b c");

    // Code spans: a fence longer than any backtick run; `|` escaped in table cells.
    assert_eq!(code("SHA-1 0123", false), "`SHA-1 0123`");
    assert_eq!(code("a`b", false), "``a`b``");
    assert_eq!(code("`x``", false), "``` `x`` ```");
    assert_eq!(code("a|b", true), "`a\\|b`");
    assert_eq!(code("a|b\nc", false), "`a|b c`");

    // A CSS string can hold anything and end nothing.
    let hostile = "x\"; } </style><script>alert(1)</script> \\";
    let s = css_string(hostile);
    assert!(s.starts_with('"') && s.ends_with('"'));
    let inner = &s[1..s.len() - 1];
    for bad in ['"', '}', '<', '>', ';', '\n'] {
        assert!(!inner.contains(bad), "{bad:?} in {s}");
    }
    assert_eq!(css_string("C-1 · ab12"), "\"C-1 · ab12\"");
}

#[test]
fn prose_marks_quoted_commands_as_ids() {
    let p = prose("erase with `mkclone abort --erase-files` now");
    assert!(matches!(&p[0], Inline::Text(s) if s == "erase with "));
    assert!(matches!(&p[1], Inline::Mono(s) if s == "mkclone abort --erase-files"));
    assert!(matches!(&p[2], Inline::Text(s) if s == " now"));
    assert_eq!(prose("no quotes").len(), 1);
}

#[test]
fn journal_labels() {
    assert_eq!(label(0), "A");
    assert_eq!(label(1), "B");
    assert_eq!(label(25), "Z");
    assert_eq!(label(26), "A27");
    assert_eq!(record_name("B", 14, false), "B14");
    assert_eq!(record_name("A", 14, true), "14");
}

/// A journal of `n` notes on `node` in a new directory, with ceremony nonce `nonce`.
fn journal_dir(nonce: &str, node: &str, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), "C-1", false).unwrap();
    j.set_nonce(nonce).unwrap();
    for i in 0..n {
        let (event, detail) = if i == 0 {
            Note::PhaseStart {}.parts()
        } else {
            Note::BundleWritten {
                file: format!("f{i}"),
            }
            .parts()
        };
        j.append("3c", node, Kind::Note, None, &event, detail)
            .unwrap();
    }
    dir
}

fn read_journal(dir: &Path, label: &str) -> Source {
    read(
        &dir.join(journal::FILE_NAME),
        &crate::plan::test_plan("C-1", false),
        label.into(),
        true,
        false,
    )
    .unwrap()
}

const NONCE: &str = "00112233445566778899aabbccddeeff";

#[test]
fn merged_journals_must_be_one_run_and_each_server_once() {
    let a = journal_dir(NONCE, "source", 3);
    let b = journal_dir(NONCE, "t1", 2);
    let ok = [read_journal(a.path(), "A"), read_journal(b.path(), "B")];
    check_one_ceremony(&ok, Some(NONCE), "C-1").unwrap();
    check_one_ceremony(&ok, None, "C-1").unwrap();

    // Another run of the ceremony (another nonce), against sa.db or the first journal.
    let other = journal_dir("ffeeddccbbaa99887766554433221100", "t1", 2);
    let err = check_one_ceremony(
        &[read_journal(a.path(), "A"), read_journal(other.path(), "B")],
        None,
        "C-1",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("journal B ("), "{err}");
    assert!(
        err.contains("record 1") && err.contains("another run"),
        "{err}"
    );
    let err = check_one_ceremony(&ok, Some("ffeeddccbbaa99887766554433221100"), "C-1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("journal A") && err.contains("sa.db"), "{err}");

    // The same journal twice.
    let twice = [read_journal(a.path(), "A"), read_journal(a.path(), "B")];
    let err = check_one_ceremony(&twice, None, "C-1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("given twice"), "{err}");

    // An older copy: the first records of a journal that went on.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        a.path().join(journal::FILE_NAME),
        copy.path().join(journal::FILE_NAME),
    )
    .unwrap();
    let append = |dir: &Path, note: Note| {
        let mut j = Journal::open(dir, "C-1", false).unwrap();
        let (event, detail) = note.parts();
        j.append("3c", "source", Kind::Note, None, &event, detail)
            .unwrap();
    };
    let a_and_copy = || {
        check_one_ceremony(
            &[read_journal(a.path(), "A"), read_journal(copy.path(), "B")],
            None,
            "C-1",
        )
        .unwrap_err()
        .to_string()
    };
    append(a.path(), Note::PhaseStart {});
    let err = a_and_copy();
    assert!(err.starts_with("journal B"), "{err}");
    assert!(err.contains("older copy of journal A"), "{err}");

    // Two versions of one journal: the copy went on differently.
    append(copy.path(), Note::FileErased { file: "x".into() });
    let err = a_and_copy();
    assert!(err.contains("record 4") && err.contains("altered"), "{err}");
}

/// A verified journal's view, for records made by hand.
fn view(label: &str) -> JournalView {
    JournalView {
        label: label.into(),
        file: PathBuf::from(label),
        present: true,
        hosts: Vec::new(),
        records: 0,
        head_hash: None,
        verified: true,
        problem: None,
        torn_tail_bytes: None,
        end_to_end: false,
        gaps: Vec::new(),
    }
}

#[test]
fn merged_records_keep_each_journal_s_order_by_time() {
    let rec = |seq: u64, time: &str| Record {
        time: time.into(),
        ..record(seq, Kind::Note, "n", "phase-start", json!({}))
    };
    let a = Source::new(
        view("A"),
        vec![
            rec(1, "2026-05-01T10:00:00.000Z"),
            // A clock set back: still after A1.
            rec(2, "2026-05-01T09:00:00.000Z"),
            rec(3, "2026-05-01T10:00:05.000Z"),
        ],
    );
    let b = Source::new(
        view("B"),
        vec![
            rec(1, "2026-05-01T10:00:01.000Z"),
            rec(2, "2026-05-01T10:00:05.000Z"),
        ],
    );
    let sources = [a, b];
    let order: Vec<String> = merged(&sources)
        .iter()
        .map(|r| format!("{}{}", r.label, r.record.seq))
        .collect();
    assert_eq!(order, ["A1", "A2", "B1", "A3", "B2"]);
}

#[test]
fn local_times_come_from_the_run_that_wrote_the_record() {
    let run = |seq: u64, offset: &str| {
        let mut r = RunStart::here("clone", None);
        r.utc_offset = offset.into();
        note(seq, "", Note::RunStart(r))
    };
    let records = vec![
        record(1, Kind::Note, "t1", "phase-start", json!({})),
        run(2, "+02:00"),
        record(3, Kind::Note, "t1", "phase-start", json!({})),
        run(4, "-05:00"),
        record(5, Kind::Note, "t1", "phase-start", json!({})),
    ];
    let source = Source::new(view("A"), records);
    let sources = [source];
    let t = timeline(&merged(&sources));
    let local: Vec<Option<&str>> = t.iter().map(|e| e.time.local.as_deref()).collect();
    assert_eq!(
        local,
        [
            None,
            Some("2026-05-01T12:00:02+02:00"),
            Some("2026-05-01T12:00:03+02:00"),
            Some("2026-05-01T05:00:04-05:00"),
            Some("2026-05-01T05:00:05-05:00"),
        ]
    );
}
