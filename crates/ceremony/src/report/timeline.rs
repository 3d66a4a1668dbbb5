//! Who did what and when: the journals' records, intents paired with their outcomes, and
//! the runs (commands) that wrote them.

use super::*;

/// The journals' `file-erased` note of `path` (matched by file name: a journal records
/// the path as the ceremony that erased it named it).
pub(super) fn erased<'a>(timeline: &'a [TimelineEntry], path: &Path) -> Option<&'a TimelineEntry> {
    let name = path.file_name()?;
    timeline.iter().rev().find(|e| match &e.note {
        Some(Note::FileErased { file }) => Path::new(file).file_name() == Some(name),
        _ => false,
    })
}

/// How the printed record names record `seq` of journal `journal`: "14" when the record
/// has one journal, "B14" when it merges several.
pub(super) fn record_name(journal: &str, seq: u64, single: bool) -> String {
    if single {
        seq.to_string()
    } else {
        format!("{journal}{seq}")
    }
}

/// "erased (record B14, 2026-…Z)".
pub(super) fn erased_text(e: &TimelineEntry, single: bool) -> String {
    format!(
        "erased (record {}, {})",
        record_name(&e.journal, e.seq, single),
        e.time.utc
    )
}

/// The intents (with their outcomes) whose action `which` selects.
pub(super) fn actions<'a>(
    timeline: &'a [TimelineEntry],
    which: impl Fn(&Action) -> bool + 'a,
) -> impl Iterator<Item = &'a TimelineEntry> + 'a {
    timeline
        .iter()
        .filter(move |e| e.action.as_ref().is_some_and(&which))
}

pub(super) fn operators(records: &[Rec<'_>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in records.iter().filter_map(|r| r.record.operator.as_ref()) {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Every record, intents paired with their outcomes (an outcome names its intent's seq in
/// its own journal).
pub(super) fn timeline(records: &[Rec<'_>]) -> Vec<TimelineEntry> {
    let mut out: Vec<TimelineEntry> = Vec::new();
    // Indices into `out` of intents still waiting for their outcome.
    let mut open: Vec<usize> = Vec::new();
    for rec in records {
        let r = rec.record;
        let base = |entry: &'static str, result: String| TimelineEntry {
            journal: rec.label.to_string(),
            seq: r.seq,
            time: rec.stamp(),
            phase: r.phase.clone(),
            node: r.node.clone(),
            operator: r.operator.clone(),
            entry,
            event: r.event.clone(),
            action: None,
            note: None,
            outcome: None,
            unreadable: None,
            result,
        };
        match r.entry() {
            Err(why) => out.push(TimelineEntry {
                unreadable: Some(why),
                ..base("unreadable", "NOT READABLE".into())
            }),
            Ok(Entry::Intent(action)) => {
                open.push(out.len());
                out.push(TimelineEntry {
                    action: Some(action),
                    ..base("action", "NO OUTCOME RECORDED".into())
                });
            }
            Ok(Entry::Note(note)) => out.push(TimelineEntry {
                note: Some(note),
                ..base("note", "note".into())
            }),
            Ok(Entry::Outcome(outcome)) => {
                let position = open.iter().position(|&i| {
                    out.get(i)
                        .is_some_and(|e| e.seq == outcome.intent && e.journal == rec.label)
                });
                let result = outcome.describe();
                let view = OutcomeView {
                    seq: r.seq,
                    time: rec.stamp(),
                    operator: r.operator.clone(),
                    outcome,
                };
                match position
                    .map(|p| open.remove(p))
                    .and_then(|i| out.get_mut(i))
                {
                    Some(entry) => {
                        entry.result = result;
                        entry.outcome = Some(view);
                    }
                    None => out.push(TimelineEntry {
                        outcome: Some(view),
                        ..base("outcome", result)
                    }),
                }
            }
        }
    }
    out
}

/// The runs of each journal, journal by journal: a run begins at a `run-start` note (or
/// at the journal's first record, when it was written without them).
pub(super) fn runs(timeline: &[TimelineEntry], journals: &[JournalView]) -> Vec<RunView> {
    let mut out = Vec::new();
    for j in journals {
        let mut entries: Vec<&TimelineEntry> =
            timeline.iter().filter(|e| e.journal == j.label).collect();
        entries.sort_by_key(|e| e.seq);
        let mut current: Option<RunView> = None;
        for e in entries {
            let start = match &e.note {
                Some(Note::RunStart(run)) => Some(Some(run.clone())),
                _ if current.is_none() => Some(None),
                _ => None,
            };
            if let Some(run_start) = start {
                out.extend(current.take());
                current = Some(RunView {
                    journal: j.label.clone(),
                    first_seq: e.seq,
                    last_seq: e.seq,
                    started: e.time.clone(),
                    ended: e.time.clone(),
                    run_start,
                    operators: Vec::new(),
                    phases: Vec::new(),
                    changed_nothing: true,
                });
            }
            let Some(run) = current.as_mut() else {
                continue;
            };
            let last = e.outcome.as_ref().map_or(e.seq, |o| o.seq.max(e.seq));
            if last >= run.last_seq {
                run.last_seq = last;
                run.ended = e.outcome.as_ref().map_or(&e.time, |o| &o.time).clone();
            }
            if let Some(op) = &e.operator
                && !run.operators.contains(op)
            {
                run.operators.push(op.clone());
            }
            if matches!(e.note, Some(Note::PhaseStart {})) {
                let phase = format!("{} on {}", e.phase, e.node);
                if !run.phases.contains(&phase) {
                    run.phases.push(phase);
                }
            }
            run.changed_nothing &= e.changes_nothing();
        }
        out.extend(current);
    }
    out
}
