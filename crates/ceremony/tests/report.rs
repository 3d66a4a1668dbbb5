//! The ceremony report over real ceremonies on file-backed simulated cards: finished,
//! rehearsal, unfinished (stopped with `inject_crash_after`), tampered, and one with hostile
//! text in its journal.

use std::collections::BTreeMap;
use std::path::Path;

use mkclone_backend::{Backend, CloneableKind, CurrentState, KeyRole, NodeStatus};
use mkclone_ceremony::dbs::{Layout, SA_DB_FORMAT, SaDb, read_optional};
use mkclone_ceremony::event::RunStart;
use mkclone_ceremony::journal::{Journal, Kind, Record};
use mkclone_ceremony::report::{self, Report};
use mkclone_ceremony::run::{CloneOptions, Nodes, run_clone};
use mkclone_ceremony::{Ceremony, CeremonyError, Plan};
use serde_json::json;

mod common;
use common::*;

const NODES: [(&str, u8); 4] = [("sa", 1), ("source", 2), ("target1", 3), ("target2", 4)];

struct Cards(BTreeMap<String, mkclone_hw_sim::SimBackend>);

impl Nodes for Cards {
    fn node(&mut self, name: &str) -> Result<&mut dyn Backend, CeremonyError> {
        self.0
            .get_mut(name)
            .map(|b| b as &mut dyn Backend)
            .ok_or_else(|| CeremonyError::NodeUnavailable {
                node: name.into(),
                message: "unknown".into(),
            })
    }

    fn nodes_mut(
        &mut self,
        names: &[&str],
    ) -> Result<Vec<&mut (dyn Backend + Send)>, CeremonyError> {
        self.0.nodes_mut(names)
    }
}

fn plan(targets: &[&str], kinds: &[CloneableKind], m: u8, n: u8, rehearsal: bool) -> Plan {
    common::plan("report-test", targets, kinds, m, n, rehearsal)
}

/// Fresh cards (serials S1..S4); the source gets random master keys.
fn setup(root: &Path) {
    create_cards(root, &NODES);
}

fn open_cards(root: &Path) -> Cards {
    Cards(common::open_cards(root, &NODES))
}

/// A new directory where a ceremony of `plan` ran to its end, on fresh cards.
fn finished(plan: &Plan) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    setup(root.path());
    run(root.path(), plan, None).unwrap();
    root
}

fn statuses(root: &Path, names: &[&str]) -> Vec<(String, NodeStatus)> {
    let mut cards = open_cards(root);
    names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                cards.0.get_mut(*n).unwrap().status().unwrap(),
            )
        })
        .collect()
}

/// Run `clone` (stopped after `crash_after` records when given) with operator "Alice Operator".
fn run(root: &Path, plan: &Plan, crash_after: Option<u64>) -> Result<(), CeremonyError> {
    run_as(root, plan, crash_after, None)
}

/// [`run`], journaling `run_start` first when given.
fn run_as(
    root: &Path,
    plan: &Plan,
    crash_after: Option<u64>,
    run_start: Option<RunStart>,
) -> Result<(), CeremonyError> {
    let mut ceremony = Ceremony::open(&root.join("ceremony"), plan.clone())?;
    ceremony.set_operator(Some("Alice Operator".into()))?;
    if let Some(r) = run_start {
        ceremony.set_run_start(r);
    }
    if let Some(k) = crash_after {
        ceremony.inject_crash_after(k);
    }
    let mut cards = open_cards(root);
    run_clone(&mut ceremony, &mut cards, &CloneOptions::default()).map(|_| ())
}

fn current_pattern(st: &NodeStatus, kind: CloneableKind) -> String {
    let reg = st.register(kind.kind()).unwrap();
    assert_eq!(reg.current, CurrentState::Valid);
    reg.current_patterns[0].to_string()
}

fn node<'a>(r: &'a Report, name: &str) -> &'a report::NodeView {
    r.nodes.iter().find(|n| n.name == name).unwrap()
}

#[test]
fn a_finished_ceremony_report_names_every_node_share_and_set() {
    let kinds = CloneableKind::ALL;
    let plan = plan(&["target1", "target2"], &kinds, 2, 3, false);
    let root = finished(&plan);
    let root = root.path();
    let dir = root.join("ceremony");
    let names = ["sa", "source", "target1", "target2"];
    let nodes = statuses(root, &names);
    let source = &nodes[1].1;
    let r = report::build_with(&dir, &plan, &nodes, &[]).unwrap();

    assert!(r.complete, "missing: {:?}", r.missing);
    assert!(r.missing.is_empty());
    assert!(!r.rehearsal);
    assert_eq!(r.ceremony, "report-test");
    assert_eq!((r.plan.m, r.plan.n), (2, 3));
    assert_eq!(r.plan.kinds, CloneableKind::ALL);
    assert_eq!(r.plan.share_indices, [1, 2]);
    assert!(!r.plan.dual_control);

    // Every node with its identity and its patterns before -> after.
    assert_eq!(r.nodes.len(), 4);
    for (i, name) in names.iter().enumerate() {
        let n = node(&r, name);
        assert_eq!(n.status, "read");
        assert_eq!(n.serial.as_deref(), Some(format!("S{}", i + 1).as_str()));
        assert_eq!(n.eid.as_deref(), Some(name.to_uppercase().as_str()));
        let before = n
            .before
            .as_ref()
            .expect("node-status recorded in the journal");
        assert!(before.record.is_some());
        assert_eq!(n.kinds.len(), 2);
    }
    for kind in kinds {
        let src = current_pattern(source, kind);
        let s = node(&r, "source")
            .kinds
            .iter()
            .find(|k| k.kind == kind)
            .unwrap();
        assert_eq!(s.current_before, src, "the source's CURRENT is unchanged");
        assert_eq!(s.current_after, src);
        assert_eq!(s.mark, "source");
        for t in ["target1", "target2"] {
            let k = node(&r, t).kinds.iter().find(|k| k.kind == kind).unwrap();
            assert_eq!(k.current_before, "empty", "{t} {kind}");
            assert_eq!(k.current_after, src, "{t} {kind}");
            assert_eq!(k.new_after, "empty");
            assert_eq!(k.old_after, "empty");
            assert_eq!(k.equals_source, Some(true));
            assert_eq!(k.mark, "= source");
        }
    }

    // Every share issued and installed; SET for each target and kind.
    assert_eq!(r.shares.len(), 2 * 2 * 2);
    for s in &r.shares {
        assert!(s.planned);
        assert_eq!(s.bundle, "present", "{s:?}");
        assert!(s.issued());
        assert!(s.obtained.is_some(), "{s:?}");
        assert!(s.installed.is_some(), "{s:?}");
    }
    assert_eq!(r.set.len(), 4);
    for s in &r.set {
        assert!(s.set.is_some(), "{s:?}");
        assert_eq!(s.current_equals_source, Some(true));
        let kind = s.kind;
        assert_eq!(
            s.confirmed.as_deref(),
            Some(current_pattern(source, kind).as_str())
        );
    }

    // Keys and certificates; the SA fingerprint is sa.db's.
    let sa_db: SaDb = read_optional(&Layout::new(&dir).sa_db(), SA_DB_FORMAT, &plan)
        .unwrap()
        .unwrap();
    assert_eq!(r.sa_fingerprint, Some(sa_db.sa_hash.fingerprint()));
    let roles: Vec<&str> = r.keys.iter().map(|k| k.role.name()).collect();
    assert_eq!(roles, ["SA", "CSS", "CSR", "CSR"]);
    for k in r.keys.iter().filter(|k| k.role != KeyRole::Sa) {
        assert!(k.certified && k.verified == Some(true), "{k:?}");
        assert!(k.fingerprint.is_some());
    }
    for g in &r.sa_registrations {
        assert!(g.hash_at.is_some() && g.key_at.is_some(), "{g:?}");
        assert_eq!(
            g.control,
            "one command (the plan sets dual_control = false)"
        );
    }

    // The journal: every record, its final hash and count, verified.
    let journal = Journal::open(&dir, &plan.id, false).unwrap();
    assert!(r.journals[0].verified);
    assert_eq!(r.journals[0].head_hash, Some(journal.head_hash()));
    assert_eq!(r.journals[0].records, journal.records().len());
    let shown: usize = r
        .timeline
        .iter()
        .map(|e| 1 + usize::from(e.outcome.is_some()))
        .sum();
    assert_eq!(
        shown,
        journal.records().len(),
        "every record is in the timeline"
    );
    assert!(r.timeline.iter().all(|e| e.result != "NO OUTCOME RECORDED"));
    assert_eq!(r.operators, ["Alice Operator"]);
    assert!(
        r.timeline
            .iter()
            .filter(|e| e.entry == "action")
            .all(|e| e.operator.as_deref() == Some("Alice Operator"))
    );

    // The page says it all, and never REHEARSAL.
    let md = report::render_markdown(&r);
    let html = report::render_html(&r);
    for page in [&md, &html] {
        assert!(!page.contains("REHEARSAL"));
        assert!(page.contains(&journal.head_hash()));
        assert!(page.contains("Alice Operator"));
        assert!(page.contains(&sa_db.sa_hash.fingerprint()));
        assert!(page.contains("COMPLETE"));
        for name in names {
            assert!(page.contains(name));
        }
        for i in 1..=4 {
            assert!(page.contains(&format!("S{i}")));
        }
        for kind in kinds {
            assert!(page.contains(&current_pattern(source, kind)));
        }
        assert!(page.contains("= source"));
    }
    assert!(md.starts_with("# mkclone ceremony record: report-test\n"));
    // No Rust Debug text anywhere.
    for page in [&md, &html] {
        for debug in [
            "NeedMore",
            "Some(",
            "None)",
            "None,",
            "{ m:",
            "Complete {",
            "\\\"",
        ] {
            assert!(!page.contains(debug), "{debug}");
        }
    }
    assert!(md.contains("## Signatures"));
    assert!(md.contains("Name: Alice Operator"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("@media print"));

    // JSON: the same data.
    let v = serde_json::to_value(&r).unwrap();
    // (`format` and `version` are the command line's envelope, docs/JSON.md.)
    assert_eq!(v["plan"]["kinds"], json!(["sym", "asym"]));
    assert_eq!(v["journals"][0]["head_hash"], json!(journal.head_hash()));
    assert_eq!(v["nodes"].as_array().unwrap().len(), 4);
}

#[test]
fn a_rehearsal_report_says_rehearsal_in_its_title_and_every_section() {
    let plan = plan(&["target1"], &[CloneableKind::Sym], 1, 1, true);
    let root = finished(&plan);
    let root = root.path();
    let nodes = statuses(root, &["sa", "source", "target1"]);
    let r = report::build_with(&root.join("ceremony"), &plan, &nodes, &[]).unwrap();
    assert!(r.rehearsal && r.complete, "{:?}", r.missing);

    let md = report::render_markdown(&r);
    let first = md.lines().next().unwrap();
    assert!(first.starts_with("# REHEARSAL"), "{first}");
    assert!(md.contains("> **REHEARSAL"));
    let sections: Vec<&str> = md.lines().filter(|l| l.starts_with("## ")).collect();
    assert!(sections.len() >= 6, "{sections:?}");
    for s in &sections {
        assert!(s.contains("REHEARSAL"), "{s}");
    }

    let html = report::render_html(&r);
    assert!(html.contains("<title>REHEARSAL"));
    assert!(html.contains("<h1>REHEARSAL"));
    assert!(html.contains("class=\"rehearsal\""));
    // On every printed page: the page's top-right margin box.
    assert!(
        html.contains("@top-right { content: \"REHEARSAL\""),
        "{html}"
    );
    let h2: Vec<&str> = html.lines().filter(|l| l.starts_with("<h2>")).collect();
    assert_eq!(h2.len(), sections.len());
    for h in h2 {
        assert!(h.contains("REHEARSAL"), "{h}");
    }
}

#[test]
fn an_unfinished_ceremony_report_shows_what_is_missing() {
    let plan = plan(&["target1"], &CloneableKind::ALL, 2, 3, false);
    // Where does a whole run write its first install-share intent?
    let clean = tempfile::tempdir().unwrap();
    setup(clean.path());
    run(clean.path(), &plan, None).unwrap();
    let records = Journal::open(&clean.path().join("ceremony"), &plan.id, false)
        .unwrap()
        .records()
        .to_vec();
    let first_install = records
        .iter()
        .find(|r| r.event == "install-share" && r.kind == Kind::Intent)
        .unwrap()
        .seq;

    // The same ceremony, stopped right after that intent.
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    setup(root);
    match run(root, &plan, Some(first_install)) {
        Err(CeremonyError::InjectedCrash { after }) => assert_eq!(after, first_install),
        other => panic!("expected the injected crash, got {other:?}"),
    }
    let dir = root.join("ceremony");
    let nodes = statuses(root, &["sa", "source"]);
    let unavailable = [("target1".to_string(), "powered off".to_string())];
    let r = report::build_with(&dir, &plan, &nodes, &unavailable).unwrap();

    assert!(!r.complete);
    assert!(r.journals[0].verified);
    assert_eq!(r.journals[0].records as u64, first_install);
    for kind in ["SYM", "ASYM"] {
        assert!(
            r.missing.iter().any(
                |m| m.what.contains(&format!("SET of the {kind} master key"))
                    && m.kind == "set-not-done"
                    && m.node.as_deref() == Some("target1")
                    && m.master_key.map(|k| k.to_string()).as_deref() == Some(kind)
            ),
            "{:?}",
            r.missing
        );
    }
    for index in [1, 2] {
        assert!(
            r.missing.iter().any(|m| m.what
                == format!("SYM share {index} for target1: not installed (phase 3d on target1)")
                && m.kind == "share-not-installed"
                && m.share_index == Some(index)
                && m.phase.as_deref() == Some("3d")),
            "{:?}",
            r.missing
        );
    }
    // The shares were obtained (3c is done), none installed.
    for s in &r.shares {
        assert_eq!(s.bundle, "present");
        assert!(s.obtained.is_some());
        assert!(s.installed.is_none());
    }
    // The interrupted step: an intent without its outcome.
    let stopped = r.timeline.iter().find(|e| e.seq == first_install).unwrap();
    assert_eq!(stopped.event, "install-share");
    assert_eq!(stopped.result, "NO OUTCOME RECORDED");
    assert!(r.warnings.iter().any(|w| {
        w.what
            .contains(&format!("record {first_install} (install-share on target1"))
            && w.kind == "no-outcome"
            && w.record == Some(first_install)
    }));
    let t = node(&r, "target1");
    assert_eq!(t.status, "unavailable: powered off");
    assert!(t.after.is_none());
    assert!(t.before.is_some(), "phase 3a journaled its status");
    assert_eq!(t.serial.as_deref(), Some("S3"), "from the journal");
    assert_eq!(t.kinds[0].current_after, "not read");
    assert!(r.set.iter().all(|s| s.set.is_none()));

    let md = report::render_markdown(&r);
    assert!(md.contains("NOT COMPLETE"));
    assert!(md.contains("## Findings"));
    assert!(md.contains("### Missing steps"));
    assert!(md.contains("unavailable: powered off"));
    assert!(md.contains("NO OUTCOME RECORDED"));
    assert!(md.contains("SET of the ASYM master key (phase 3d on target1)"));

    // A journal changed afterwards: the report says it does not verify.
    let path = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"phase\":\"1\"", "\"phase\":\"9\"", 1),
    )
    .unwrap();
    let r = report::build_with(&dir, &plan, &nodes, &unavailable).unwrap();
    assert!(!r.journals[0].verified && !r.complete);
    assert_eq!(r.journals[0].head_hash, None);
    assert!(r.journals[0].problem.as_deref().unwrap().contains("line 1"));
    assert!(
        r.missing[0].what.starts_with("a journal that verifies")
            && r.missing[0].kind == "journal-unverified",
        "{:?}",
        r.missing
    );
    assert!(
        report::render_markdown(&r).contains("chain NOT verified")
            || report::render_markdown(&r).contains("NO: ")
    );
}

#[test]
fn a_ceremony_not_started_lists_every_step() {
    let root = tempfile::tempdir().unwrap();
    let plan = plan(&["target1"], &[CloneableKind::Sym], 1, 1, false);
    let r = report::build_with(root.path(), &plan, &[], &[]).unwrap();
    assert!(!r.complete && !r.journals[0].present);
    for (kind, expected) in [
        (
            "journal-absent",
            "the journal: no phase has run in this directory",
        ),
        ("key-missing", "sa.db: the SA key (phase 1 on sa)"),
        (
            "key-missing",
            "target1.csr.db: the CSR key of target1 (phase 3a on target1)",
        ),
        (
            "share-not-obtained",
            "SYM share 1 for target1: not obtained (phase 3c on source)",
        ),
        (
            "set-not-done",
            "target1: SET of the SYM master key (phase 3d on target1)",
        ),
    ] {
        assert!(
            r.missing
                .iter()
                .any(|m| m.what == expected && m.kind == kind),
            "{expected}: {:?}",
            r.missing
        );
    }
    assert!(node(&r, "sa").status == "not read");
    // A missing directory is an error, not an empty report.
    assert!(report::build_with(&root.path().join("nope"), &plan, &[], &[]).is_err());
}

/// Append records to the journal in `dir` line by line, chained as mkclone chains them but
/// without its checks: what an older mkclone or an edit by hand leaves. Returns nothing;
/// the file is what it is.
fn write_raw_journal(dir: &Path, plan: &Plan, lines: &[(Kind, &str, &str, serde_json::Value)]) {
    let mut prev = mkclone_ceremony::journal::GENESIS_PREV.to_string();
    let mut out = Vec::new();
    for (i, (kind, operator, event, detail)) in lines.iter().enumerate() {
        let record = Record {
            seq: i as u64 + 1,
            prev: prev.clone(),
            time: format!("2026-05-01T10:00:{:02}.000Z", i + 1),
            ceremony: plan.id.clone(),
            nonce: "00112233445566778899aabbccddeeff".into(),
            rehearsal: plan.rehearsal,
            phase: "1".into(),
            node: "sa".into(),
            kind: *kind,
            operator: Some(operator.to_string()),
            event: event.to_string(),
            detail: detail.clone(),
        };
        let line = serde_json::to_vec(&record).unwrap();
        prev = mkclone_ceremony::journal::line_hash(&line);
        out.extend(line);
        out.push(b'\n');
    }
    std::fs::write(dir.join("journal.jsonl"), out).unwrap();
}

#[test]
fn hostile_text_is_escaped_in_html_and_markdown() {
    let root = tempfile::tempdir().unwrap();
    let plan = plan(&["target1"], &[CloneableKind::Sym], 1, 1, false);
    let hostile =
        "</td><script>alert(\"x\")</script><img src=x onerror=alert(1)> | **b** & 'q'\n# h";
    // Today's mkclone refuses such a name where it enters, and so does the journal.
    let mut j = Journal::open(root.path(), &plan.id, false).unwrap();
    j.set_nonce("00112233445566778899aabbccddeeff").unwrap();
    let refused = j
        .append("1", "sa", Kind::Note, Some(hostile), "x", json!({}))
        .unwrap_err();
    assert!(refused.to_string().contains("operator name"), "{refused}");
    drop(j);
    // A journal written otherwise still gets printed safely.
    write_raw_journal(
        root.path(),
        &plan,
        &[
            (Kind::Intent, hostile, "set-eid", json!({"eid": hostile})),
            (
                Kind::Outcome,
                hostile,
                "set-eid",
                json!({"result": "failed", "error": hostile, "intent": 1}),
            ),
            (Kind::Note, "~~x~~", "phase-start", json!({})),
            (Kind::Note, "Tom &amp; Jerry", "phase-start", json!({})),
            (
                Kind::Note,
                "http://evil.example/[a](b)",
                "phase-start",
                json!({}),
            ),
        ],
    );
    let r = report::build_with(root.path(), &plan, &[], &[]).unwrap();
    assert!(r.journals[0].verified, "{:?}", r.journals[0].problem);
    assert_eq!(r.operators[0], hostile);
    for name in &r.operators {
        assert!(
            r.warnings.iter().any(|w| w.what.contains("is refused")
                && w.what.contains(&format!("{name:?}"))
                && w.kind == "operator-name"),
            "{name}: {:?}",
            r.warnings
        );
    }

    let html = report::render_html(&r);
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"));
    assert!(!html.contains("</td><script"));
    assert!(html.contains("&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    assert!(html.contains("&amp; &#39;q&#39;"));
    assert!(html.contains("Tom &amp;amp; Jerry"));
    // Only our own tags: every '<' opens a tag mkclone writes.
    for (i, _) in html.match_indices('<') {
        let rest = &html[i + 1..];
        assert!(
            [
                "!DOCTYPE", "html", "/html", "head", "/head", "meta", "title", "/title", "style",
                "/style", "body", "/body", "h1", "/h1", "h2", "/h2", "h3", "/h3", "p", "/p", "ul",
                "/ul", "li", "/li", "table", "/table", "thead", "/thead", "tbody", "/tbody", "tr",
                "/tr", "th", "/th", "td", "/td", "section", "/section", "span", "/span", "div",
                "/div", "b>", "/b>",
            ]
            .iter()
            .any(|t| rest.starts_with(t)),
            "unexpected tag at {}",
            &html[i..(i + 40).min(html.len())]
        );
    }

    let md = report::render_markdown(&r);
    let row = md
        .lines()
        .find(|l| l.starts_with("| `1` |"))
        .expect("the timeline row");
    let unescaped_pipes = row
        .char_indices()
        .filter(|(i, c)| *c == '|' && (*i == 0 || row.as_bytes()[i - 1] != b'\\'))
        .count();
    assert_eq!(unescaped_pipes, 6, "5 columns stay 5 columns: {row}");
    assert!(row.contains("\\<script\\>") && !row.contains(" <script"));
    assert!(
        !md.lines().any(|l| l.starts_with("# h")),
        "no injected heading"
    );
    // The operators named in the timeline's note: no strike-through, entity or link.
    assert!(md.contains("\\~\\~x\\~\\~"), "{md}");
    assert!(md.contains("Tom \\&amp; Jerry"), "{md}");
    assert!(md.contains("http://evil.example/\\[a\\](b)"), "{md}");
    // (The signature lines are a fenced block: literal text, no markup.)
    let unescaped = md
        .lines()
        .filter(|l| !l.starts_with("Name: "))
        .find(|l| l.contains("~~x~~") || l.contains(" &amp; "));
    assert_eq!(unescaped, None);
}

#[test]
fn files_erased_by_the_clean_up_are_recorded_not_missing() {
    let plan = plan(&["target1"], &[CloneableKind::Sym], 2, 2, false);
    let root = finished(&plan);
    let root = root.path();
    let dir = root.join("ceremony");
    let report_now = || {
        let nodes = statuses(root, &["sa", "source", "target1"]);
        report::build_with(&dir, &plan, &nodes, &[]).unwrap()
    };
    // Done, with what the ceremony left still open: the files, the SA key's
    // registrations, the retained keys.
    let r = report_now();
    assert!(r.complete, "{:?}", r.missing);
    assert_eq!(r.open_items.len(), 3, "{:#?}", r.open_items);
    assert!(
        r.open_items[0]
            .what
            .starts_with("target1: 2 share bundle(s)")
    );
    assert!(r.open_items[0].what.contains("`target1.csr.db`"));
    assert!(
        r.open_items[0]
            .what
            .contains("--target target1 --erase-files")
    );
    assert_eq!(r.open_items[0].kind, "files-after-set");
    assert_eq!(r.open_items[0].node.as_deref(), Some("target1"));
    assert_eq!(
        r.open_items[0].command.as_deref(),
        Some("mkclone abort --config FILE --target target1 --erase-files")
    );
    assert!(
        r.open_items[1]
            .what
            .contains("still registered on source, target1")
    );
    assert!(r.open_items[1].what.contains("--unregister-sa"));
    assert_eq!(r.open_items[1].kind, "sa-key-registered");
    assert_eq!(r.open_items[1].nodes, ["source", "target1"]);
    assert!(r.open_items[2].what.contains("`MKCLONE."));
    assert!(r.open_items[2].what.contains("--delete-keys"));
    assert_eq!(r.open_items[2].kind, "retained-keys");
    let md = report::render_markdown(&r);
    assert!(md.contains("COMPLETE, with 3 open item(s)"), "{md}");
    assert!(md.contains("### Open items\n\n- target1: 2 share bundle(s) `shares/target1.*.share`"));
    assert!(!md.contains("None: no share bundle"));

    let abort = |steps: mkclone_ceremony::abort::AbortSteps| {
        let mut ceremony = Ceremony::open(&dir, plan.clone()).unwrap();
        let mut cards = open_cards(root);
        mkclone_ceremony::abort::abort(&mut ceremony, &mut cards, &steps).unwrap();
    };
    abort(mkclone_ceremony::abort::AbortSteps {
        erase_files: true,
        ..Default::default()
    });
    assert!(!dir.join("target1.csr.db").exists());
    let r = report_now();
    assert!(r.aborted.is_some());
    assert!(r.complete, "{:?}", r.missing);
    let csr = r.keys.iter().find(|k| k.role == KeyRole::Csr).unwrap();
    assert!(csr.state.starts_with("erased (record "), "{csr:?}");
    for s in &r.shares {
        assert!(s.bundle.starts_with("erased (record "), "{s:?}");
        assert!(s.issued() && s.installed.is_some());
    }
    assert_eq!(r.open_items.len(), 2, "{:#?}", r.open_items);
    let md = report::render_markdown(&r);
    assert!(md.contains("**ABORT / CLEAN-UP recorded** at"));

    // The clean-up finished: nothing open.
    abort(mkclone_ceremony::abort::AbortSteps {
        unregister_sa: true,
        delete_keys: true,
        ..Default::default()
    });
    let r = report_now();
    assert!(r.complete && r.open_items.is_empty(), "{:#?}", r.open_items);
    assert!(report::status_line(&r).contains("nothing is left open"));
    assert!(report::render_html(&r).contains("None: no share bundle or csr.db is left"));
}

/// A journal cut after 3b (its end lost, or rolled back) while the devices show every
/// target holding the source's key: the report may say COMPLETE from the devices, but its
/// verdict never says the steps are recorded as done and the journals verified when its
/// own findings say they are not.
#[test]
fn a_complete_ceremony_with_a_cut_journal_is_not_called_a_whole_record() {
    let plan = plan(&["target1"], &[CloneableKind::Sym], 1, 1, false);
    let root = finished(&plan);
    let root = root.path();
    let dir = root.join("ceremony");
    let names = ["sa", "source", "target1"];
    let whole = report::build_with(&dir, &plan, &statuses(root, &names), &[]).unwrap();
    assert!(report::status_line(&whole).contains("every planned step is recorded as done"));

    let journal = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let first_3c = text
        .lines()
        .position(|l| l.contains("\"phase\":\"3c\""))
        .expect("a 3c record");
    let cut: String = text
        .lines()
        .take(first_3c)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&journal, cut).unwrap();

    let r = report::build_with(&dir, &plan, &statuses(root, &names), &[]).unwrap();
    let line = report::status_line(&r);
    assert!(
        !r.warnings.is_empty() || r.journals.iter().any(|j| !j.end_to_end),
        "the cut is not noticed at all: {:#?}",
        r.journals
    );
    assert!(
        !line.contains("every planned step is recorded as done"),
        "{line}"
    );
    if r.complete {
        assert!(line.contains("the record is not whole"), "{line}");
    }
    assert!(
        !report::render_markdown(&r).contains("None: every planned step is recorded as done"),
        "the findings claim it too"
    );
}

/// A journal emptied after the ceremony (every record gone, the file left) verifies: an
/// empty chain has nothing to break. But the directory's files carry the marks of the
/// journals that wrote them, so a journal holding no record is not "verified end to end":
/// the report says what is wrong and what to do, and does not call the record whole.
#[test]
fn an_emptied_journal_is_not_verified_end_to_end() {
    let plan = plan(&["target1"], &[CloneableKind::Sym], 1, 1, false);
    let root = finished(&plan);
    let root = root.path();
    let dir = root.join("ceremony");
    let names = ["sa", "source", "target1"];
    std::fs::write(dir.join("journal.jsonl"), b"").unwrap();

    let r = report::build_with(&dir, &plan, &statuses(root, &names), &[]).unwrap();
    let journal = &r.journals[0];
    assert!(journal.verified && journal.records == 0, "{journal:#?}");
    assert!(!journal.end_to_end, "{journal:#?}");
    let gap = journal
        .gaps
        .iter()
        .find(|g| g.kind == "journal-empty")
        .unwrap_or_else(|| panic!("no journal-empty finding: {:#?}", journal.gaps));
    assert!(
        gap.what.contains("holds no record")
            && gap.what.contains("emptied or replaced")
            && gap.what.contains("--journal"),
        "{}",
        gap.what
    );
    let line = report::status_line(&r);
    assert!(
        !line.contains("every planned step is recorded as done"),
        "{line}"
    );
    let page = report::render_markdown(&r);
    assert!(!page.contains("chain verified end to end"), "{page}");
}

/// A journal cut to its first record (the run-start, before any phase) verifies, and
/// names no node: the marks of the files it wrote used to be taken for other servers'
/// and the journal read "verified end to end". A mark names its journal (the hash of its
/// first record), so the journal that began with that record must hold it.
#[test]
fn a_journal_cut_before_its_first_phase_is_not_verified_end_to_end() {
    let plan = plan(&["target1"], &[CloneableKind::Sym], 1, 1, false);
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    setup(root);
    // As the CLI does: a run-start before the first record.
    run_as(root, &plan, None, Some(RunStart::here("clone", None))).unwrap();
    let dir = root.join("ceremony");
    let names = ["sa", "source", "target1"];
    let path = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.split_inclusive('\n').next().unwrap();
    assert!(first.contains("run-start"), "{first}");
    std::fs::write(&path, first).unwrap();

    let r = report::build_with(&dir, &plan, &statuses(root, &names), &[]).unwrap();
    let journal = &r.journals[0];
    assert!(journal.verified && journal.records == 1, "{journal:#?}");
    assert!(!journal.end_to_end, "{journal:#?}");
    let missing: Vec<_> = journal
        .gaps
        .iter()
        .filter(|g| g.kind == "record-not-in-journal")
        .collect();
    // sa.db (phases 1, 2a, 2b), the csr.db (3a, 3b) and the bundle (3c): every node's.
    for node in names {
        assert!(
            missing.iter().any(|g| g.node.as_deref() == Some(node)),
            "no missing record of {node}: {:#?}",
            journal.gaps
        );
    }
    let page = report::render_markdown(&r);
    assert!(!page.contains("chain verified end to end"), "{page}");
}

#[test]
fn runs_are_recorded_and_reruns_are_one_line_of_the_printed_timeline() {
    let plan = plan(&["target1", "target2"], &CloneableKind::ALL, 2, 3, false);
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    setup(root);
    let start = |offset: &str| {
        let mut r = RunStart::here("clone", Some("ab".repeat(32)));
        r.utc_offset = offset.into();
        Some(r)
    };
    run_as(root, &plan, None, start("+05:30")).unwrap();
    run_as(root, &plan, None, start("-03:00")).unwrap();
    let dir = root.join("ceremony");
    let nodes = statuses(root, &["sa", "source", "target1", "target2"]);
    let r = report::build_with(&dir, &plan, &nodes, &[]).unwrap();
    assert!(r.complete, "{:?}", r.missing);

    // Two runs, each with its host, mkclone, configuration digest and offset.
    assert_eq!(r.runs.len(), 2, "{:#?}", r.runs);
    for (run, offset) in r.runs.iter().zip(["+05:30", "-03:00"]) {
        let s = run.run_start.as_ref().unwrap();
        assert_eq!(s.host, mkclone_ceremony::host::host_name());
        assert_eq!(s.mkclone_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(s.config_sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(s.utc_offset, offset);
        assert_eq!(run.operators, ["Alice Operator"]);
        assert!(run.started.local.as_deref().unwrap().ends_with(offset));
    }
    assert_eq!(r.runs[0].first_seq, 1);
    assert_eq!(r.runs[1].first_seq, r.runs[0].last_seq + 1);
    assert_eq!(r.runs[1].last_seq as usize, r.journals[0].records);
    // Every record's local time is its own run's.
    for e in &r.timeline {
        let offset = if e.seq <= r.runs[0].last_seq {
            "+05:30"
        } else {
            "-03:00"
        };
        assert!(e.time.local.as_deref().unwrap().ends_with(offset), "{e:?}");
    }

    // The rerun: the phases that found everything done are one line, a 3d that only
    // confirmed the key already SET is one line; the first run is shown in full.
    let md = report::render_markdown(&r);
    let rerun = &r.runs[1];
    let collapsed: Vec<&str> = md
        .lines()
        .filter(|l| l.contains("run again; nothing changed"))
        .collect();
    assert!(!collapsed.is_empty(), "{md}");
    assert!(
        collapsed[0].contains(&format!("records `{}–", rerun.first_seq)),
        "{collapsed:?}"
    );
    assert_eq!(
        md.lines()
            .filter(|l| l.contains("CURRENT already held that key"))
            .count(),
        2,
        "one line per target"
    );
    let timeline_rows = md
        .lines()
        .skip_while(|l| !l.starts_with("## Appendix"))
        .filter(|l| l.starts_with("| `"))
        .count();
    let rows_in_rerun = md
        .lines()
        .skip_while(|l| !l.starts_with("## Appendix"))
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l[3..].split('`').next()?.parse::<u64>().ok())
        .filter(|seq| *seq >= rerun.first_seq)
        .count();
    assert_eq!(rows_in_rerun, 0, "no line of the rerun but its summaries");
    // The first run: one line per action, and its confirmations.
    let first_run = r
        .timeline
        .iter()
        .filter(|e| e.seq <= r.runs[0].last_seq)
        .filter(|e| e.entry == "action" || e.event == "confirmed")
        .count();
    assert_eq!(timeline_rows, first_run);
    // Local times beside UTC in the timeline.
    assert!(md.contains("+05:30`"), "{md}");
    // JSON keeps every record.
    let shown: usize = r
        .timeline
        .iter()
        .map(|e| 1 + usize::from(e.outcome.is_some()))
        .sum();
    assert_eq!(shown, r.journals[0].records);
}
