//! Journal marks: the ceremony files name, for each node whose phase wrote them, the record
//! the writing server's journal ended with. A server whose own journal lacks a mark it made
//! has lost records (deleted, cut at a record, replaced). One place answers "does this
//! journal hold that mark?", for the phases (before writing), the dry run and the report.

use crate::dbs::{JournalMark, Provenance};
use crate::event::Note;
use crate::failure::JournalGap;
use crate::journal::{Kind, Record};

/// A journal's verified records and head hash.
#[derive(Clone, Copy)]
pub struct Chain<'a> {
    pub records: &'a [Record],
    pub head: &'a str,
}

impl<'a> Chain<'a> {
    fn record(&self, seq: u64) -> Option<&'a Record> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        self.records.get(i)
    }

    /// The hash of record `seq` (1-based): the next record's `prev`, or the head.
    pub fn hash_of(&self, seq: u64) -> Option<&'a str> {
        self.record(seq)?;
        let next = usize::try_from(seq).ok()?;
        Some(match self.records.get(next) {
            Some(r) => r.prev.as_str(),
            None => self.head,
        })
    }

    /// The hash of its first record, which names the journal (a mark's `journal`).
    pub fn first_hash(&self) -> Option<&'a str> {
        self.hash_of(1)
    }

    /// Is this the journal `mark` names (none named: unknown, version 2 files)?
    pub fn named_by(&self, mark: &JournalMark) -> bool {
        mark.journal.is_some() && mark.journal.as_deref() == self.first_hash()
    }

    /// Does the chain hold `mark` (the record at its seq has its hash and phase, and the
    /// chain is the journal the mark names, if it names one)? A hash covers every record
    /// before it, the first included, so a mark whose record is held but whose journal is
    /// another was edited: not held.
    pub fn holds(&self, mark: &JournalMark) -> bool {
        self.hash_of(mark.seq) == Some(mark.hash.as_str())
            && self.record(mark.seq).is_some_and(|r| r.phase == mark.phase)
            && mark
                .journal
                .as_deref()
                .is_none_or(|named| Some(named) == self.first_hash())
    }

    /// What the chain has where `mark` should be, for a message.
    pub(crate) fn instead(&self, mark: &JournalMark) -> String {
        if let (Some(named), Some(first)) = (mark.journal.as_deref(), self.first_hash())
            && named != first
        {
            return format!(
                "is not the journal that wrote the file: that one began with the record of hash                  {named}, this one begins with {first}"
            );
        }
        match (self.hash_of(mark.seq), self.record(mark.seq)) {
            (Some(h), Some(r)) if h == mark.hash => format!(
                "has record {} of phase {}, not {}",
                mark.seq, r.phase, mark.phase
            ),
            (Some(h), _) => format!("holds another record {} (hash {h})", mark.seq),
            _ if self.records.is_empty() => "is empty".to_string(),
            _ => format!("ends at record {}", self.records.len()),
        }
    }

    /// The (seq, hash) of every mark a `journal-loss-accepted` note accepts.
    pub fn accepted_losses(&self) -> Vec<(u64, String)> {
        self.records
            .iter()
            .filter(|r| r.kind == Kind::Note)
            .filter_map(|r| match r.note() {
                Some(Note::JournalLossAccepted { marks, .. }) => Some(marks),
                _ => None,
            })
            .flatten()
            .map(|m| (m.seq, m.hash))
            .collect()
    }

    /// The first mark of `node` in `files` this chain lacks and no accepted loss covers.
    pub fn first_gap(
        &self,
        files: &[(String, Provenance)],
        node: &str,
        journal: &str,
    ) -> Option<JournalGap> {
        // The accepted losses are read (every note decoded) only when a mark is missing:
        // a phase start checks every file its node wrote, and in a ceremony that runs
        // well none is, so this stays one lookup per mark instead of decoding the journal.
        let accepted = std::cell::OnceCell::new();
        files.iter().find_map(|(file, provenance)| {
            let mark = provenance.written.get(node)?;
            if self.holds(mark)
                || accepted
                    .get_or_init(|| self.accepted_losses())
                    .contains(&(mark.seq, mark.hash.clone()))
            {
                return None;
            }
            Some(JournalGap {
                file: file.clone(),
                phase: mark.phase.clone(),
                node: node.into(),
                seq: mark.seq,
                hash: mark.hash.clone(),
                journal: journal.into(),
                found: self.instead(mark),
            })
        })
    }

    /// Every (file, node, mark) in `files` this chain lacks, accepted or not, for the
    /// nodes `nodes` selects.
    pub fn missing<'f>(
        &self,
        files: &'f [(String, Provenance)],
        nodes: impl Fn(&str) -> bool,
    ) -> Vec<(&'f str, &'f str, &'f JournalMark)> {
        files
            .iter()
            .flat_map(|(file, p)| {
                p.written
                    .iter()
                    .map(move |(node, mark)| (file.as_str(), node.as_str(), mark))
            })
            .filter(|(_, node, mark)| nodes(node) && !self.holds(mark))
            .collect()
    }
}
