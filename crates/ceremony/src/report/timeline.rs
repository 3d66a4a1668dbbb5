//! Who did what and when: the journal's records, intents paired with their outcomes.

use super::*;

/// The journal's `file-erased` note of `path` (matched by file name: the journal records
/// the path as the ceremony that erased it named it).
pub(super) fn erased<'a>(timeline: &'a [TimelineEntry], path: &Path) -> Option<&'a TimelineEntry> {
    let name = path.file_name()?;
    timeline.iter().rev().find(|e| match &e.note {
        Some(Note::FileErased { file }) => Path::new(file).file_name() == Some(name),
        _ => false,
    })
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

pub(super) fn operators(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in records.iter().filter_map(|r| r.operator.as_ref()) {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Every record, intents paired with their outcomes (the outcome names its intent's seq).
pub(super) fn timeline(records: &[Record]) -> Vec<TimelineEntry> {
    let mut out: Vec<TimelineEntry> = Vec::new();
    // Indices into `out` of intents still waiting for their outcome.
    let mut open: Vec<usize> = Vec::new();
    for r in records {
        let base = |entry: &'static str, result: String| TimelineEntry {
            seq: r.seq,
            time: r.time.clone(),
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
                let position = open
                    .iter()
                    .position(|&i| out.get(i).is_some_and(|e| e.seq == outcome.intent));
                let result = outcome.describe();
                let view = OutcomeView {
                    seq: r.seq,
                    time: r.time.clone(),
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
