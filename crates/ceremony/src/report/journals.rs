//! The journals of the record: this directory's, and the copies of other servers' journals
//! given with `--journal`. Each is verified; together they must be one ceremony's (one id,
//! one nonce, each server's journal once), they must hold the journal marks the carried
//! files record for the nodes whose phases they ran, and they are merged in time order.
//!
//! Alone, this directory's journal is read leniently: a journal that does not verify is
//! shown as found and the report says so. Merged, every inconsistency is an error that
//! names the journal and the record, since no order or pairing of records could be trusted.

use super::*;

/// One journal as read.
pub(super) struct Source {
    pub(super) view: JournalView,
    pub(super) records: Vec<Record>,
    /// The UTC offset each record's run recorded (by index), if any.
    offsets: Vec<Option<String>>,
}

/// One record of the merged record.
#[derive(Clone, Copy)]
pub(super) struct Rec<'a> {
    pub(super) label: &'a str,
    pub(super) record: &'a Record,
    pub(super) offset: Option<&'a str>,
}

impl Rec<'_> {
    pub(super) fn stamp(&self) -> Stamp {
        Stamp::new(&self.record.time, self.offset)
    }
    pub(super) fn reference(&self) -> RecordRef {
        RecordRef {
            journal: self.label.to_string(),
            seq: self.record.seq,
        }
    }
}

impl Source {
    pub(super) fn new(view: JournalView, records: Vec<Record>) -> Self {
        let mut offset = None;
        let offsets = records
            .iter()
            .map(|r| {
                if let Some(Note::RunStart(run)) = r.note() {
                    offset = Some(run.utc_offset);
                }
                offset.clone()
            })
            .collect();
        Self {
            view,
            records,
            offsets,
        }
    }

    fn chain(&self) -> Chain<'_> {
        Chain {
            records: &self.records,
            head: self.view.head_hash.as_deref().unwrap_or(GENESIS_PREV),
        }
    }

    /// The nodes whose phases ran here (a `phase-start` names them).
    fn ran(&self, node: &str) -> bool {
        self.records
            .iter()
            .any(|r| r.node == node && matches!(r.note(), Some(Note::PhaseStart {})))
    }

    /// "journal B (/media/usb/journal.jsonl)", for messages.
    fn name(&self) -> String {
        format!("journal {} ({})", self.view.label, self.view.file.display())
    }

    /// The hash of its first line: a server's journal is the one that begins with it.
    fn first_hash(&self) -> Option<&str> {
        self.chain().first_hash()
    }
}

/// The label of the `i`-th journal: A, B, … Z, then A27, A28…
pub(super) fn label(i: usize) -> String {
    match u8::try_from(i).ok().filter(|i| *i < 26) {
        Some(i) => char::from(b'A' + i).to_string(),
        None => format!("A{}", i + 1),
    }
}

/// Read this directory's journal (label A) and the `others`: leniently when alone,
/// strictly when merged (see the module documentation).
pub(super) fn read_all(
    layout: &Layout,
    plan: &Plan,
    others: &[PathBuf],
) -> Result<Vec<Source>, CeremonyError> {
    let strict = !others.is_empty();
    let own = read(&layout.journal(), plan, label(0), strict, true)?;
    let mut sources = vec![own];
    for (i, path) in others.iter().enumerate() {
        sources.push(read(path, plan, label(i + 1), true, false)?);
    }
    Ok(sources)
}

/// Read and verify one journal. `own`: this directory's, which may be absent (no phase
/// ran here); a copy given must exist and hold records.
pub(super) fn read(
    path: &Path,
    plan: &Plan,
    label: String,
    strict: bool,
    own: bool,
) -> Result<Source, CeremonyError> {
    let view = |present: bool, records, head_hash, problem: Option<String>| JournalView {
        label: label.clone(),
        file: path.to_path_buf(),
        present,
        hosts: Vec::new(),
        records,
        head_hash,
        verified: problem.is_none() && present,
        problem,
        torn_tail_bytes: None,
        end_to_end: false,
        gaps: Vec::new(),
    };
    let bytes = match crate::envelope::read_bytes(path) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() && own => {
            let problem = "there is no journal: no phase has run in this directory";
            return Ok(Source::new(
                view(false, 0, None, Some(problem.into())),
                Vec::new(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut source = match journal::verify(path, &bytes, Some(&plan.id), Some(plan.rehearsal)) {
        Ok(v) => {
            let mut journal = view(true, v.records.len(), Some(v.head_hash), None);
            journal.torn_tail_bytes = v.torn_tail;
            Source::new(journal, v.records)
        }
        Err(e) if strict => return Err(e.into()),
        Err(e) => {
            // Shown as found, unverified.
            let records: Vec<Record> = bytes
                .split(|&b| b == b'\n')
                .filter_map(|line| serde_json::from_slice::<Record>(line).ok())
                .collect();
            Source::new(
                view(true, records.len(), None, Some(e.to_string())),
                records,
            )
        }
    };
    if strict && source.records.is_empty() {
        return Err(CeremonyError::JournalMerge {
            journal: source.name(),
            record: None,
            detail: "it holds no record: give the journal of a server where a phase ran".into(),
        });
    }
    for r in &source.records {
        if let Some(Note::RunStart(run)) = r.note()
            && !source.view.hosts.contains(&run.host)
        {
            source.view.hosts.push(run.host);
        }
    }
    Ok(source)
}

/// Merged journals must be one ceremony's: one nonce (sa.db's, when this directory has
/// one), and each server's journal once.
pub(super) fn check_one_ceremony(
    sources: &[Source],
    sa_nonce: Option<&str>,
    ceremony: &str,
) -> Result<(), CeremonyError> {
    let with_records: Vec<&Source> = sources.iter().filter(|s| !s.records.is_empty()).collect();
    let Some(first) = with_records.first() else {
        return Ok(());
    };
    let (reference, whose) = match sa_nonce {
        Some(n) => (n.to_string(), "sa.db of this directory".to_string()),
        None => (first.records[0].nonce.clone(), first.name()),
    };
    for s in &with_records {
        let nonce = &s.records[0].nonce;
        if *nonce != reference {
            return Err(CeremonyError::JournalMerge {
                journal: s.name(),
                record: Some(1),
                detail: format!(
                    "it carries ceremony nonce {nonce}, {whose} carries {reference}: it is the \
                     journal of another run of ceremony {ceremony}; give the journals of this run \
                     only"
                ),
            });
        }
    }
    for (i, a) in with_records.iter().enumerate() {
        for b in &with_records[i + 1..] {
            if a.first_hash() != b.first_hash() {
                continue;
            }
            let (short, long) = if a.records.len() <= b.records.len() {
                (a, b)
            } else {
                (b, a)
            };
            let n = short.records.len();
            let common = long.chain().hash_of(n as u64) == short.view.head_hash.as_deref();
            let detail = if common && n == long.records.len() {
                format!(
                    "it is {} given twice (the same {n} records): give each server's journal once",
                    long.name()
                )
            } else if common {
                format!(
                    "it is an older copy of {}: its {n} records are that journal's first {n}; \
                     give only the newer one",
                    long.name()
                )
            } else {
                let at = (1..=n as u64)
                    .find(|&k| short.chain().hash_of(k) != long.chain().hash_of(k))
                    .unwrap_or(1);
                return Err(CeremonyError::JournalMerge {
                    journal: short.name(),
                    record: Some(at),
                    detail: format!(
                        "it and {} begin with the same record but differ from record {at} on: \
                         two versions of one server's journal, one of them altered",
                        long.name()
                    ),
                });
            };
            return Err(CeremonyError::JournalMerge {
                journal: short.name(),
                record: None,
                detail,
            });
        }
    }
    Ok(())
}

/// Check every journal mark the carried files record against the journals that ran the
/// marked node's phases, and fill in each journal's gaps and whether it verified end to
/// end. Merged (`strict`), a mark those journals lack (and no accepted loss covers) is an
/// error naming the file, the journal and the record. Returns what no journal given can
/// confirm (marks of nodes whose phases ran in none of them).
pub(super) fn check_marks(
    sources: &mut [Source],
    files: &[(String, Provenance)],
    strict: bool,
) -> Result<Vec<Finding>, CeremonyError> {
    let mut uncovered = Vec::new();
    let mut gaps: Vec<Vec<Finding>> = vec![Vec::new(); sources.len()];
    for (file, provenance) in files {
        for (node, mark) in &provenance.written {
            // The journals that must hold the mark: the one it names (cut before its first
            // record of the node, it ran no phase there any more) and those that ran the
            // node's phases (a version 2 file's marks name no journal).
            let covering: Vec<usize> = (0..sources.len())
                .filter(|&i| {
                    sources[i].view.verified
                        && (sources[i].ran(node) || sources[i].chain().named_by(mark))
                })
                .collect();
            let name = file_name(Path::new(file));
            if covering.is_empty() {
                if strict {
                    uncovered.push(
                        Finding::new(
                            "journal-not-given",
                            format!(
                                "{name} names record {} (phase {} on {node}) of the journal of the server \
                                 that ran {node}'s phases{}; no journal given is that one or ran a phase \
                                 on {node}: add it with --journal",
                                mark.seq,
                                mark.phase,
                                mark.journal
                                    .as_deref()
                                    .map(|j| format!(" (the journal whose first record has hash {j})"))
                                    .unwrap_or_default()
                            ),
                        )
                        .file(name.clone())
                        .node(node.clone())
                        .phase(&mark.phase),
                    );
                }
                continue;
            }
            if covering.iter().any(|&i| sources[i].chain().holds(mark)) {
                continue;
            }
            let accepted = covering.iter().any(|&i| {
                sources[i]
                    .chain()
                    .accepted_losses()
                    .contains(&(mark.seq, mark.hash.clone()))
            });
            if strict && !accepted {
                let s = &sources[covering[0]];
                return Err(CeremonyError::JournalMerge {
                    journal: s.name(),
                    record: Some(mark.seq),
                    detail: format!(
                        "{file} says the journal of the server that ran phase {} on {node} held \
                         record {} (hash {}) when the file was written, but this journal, which \
                         ran {node}'s phases, {}: the journal was cut, replaced or altered after \
                         the file was written, or the file comes from another server",
                        mark.phase,
                        mark.seq,
                        mark.hash,
                        s.chain().instead(mark)
                    ),
                });
            }
            for i in covering {
                gaps[i].push(
                    Finding::new(
                        "record-not-in-journal",
                        format!(
                            "{name}: record {} of this journal (phase {} on {node}) is not in it",
                            mark.seq, mark.phase
                        ),
                    )
                    .file(name.clone())
                    .node(node.clone())
                    .phase(&mark.phase)
                    .record(&sources[i].view.label, Some(mark.seq)),
                );
            }
        }
    }
    // An empty chain verifies: nothing in it can break, and it has no first record for a
    // mark to name. But phases journal before they write, so files carrying marks beside a
    // journal that holds no record mean it was emptied or replaced, or that the phases ran
    // on other servers, whose journals are needed: either way nothing here is verified end
    // to end.
    let marked = files.iter().filter(|(_, p)| !p.written.is_empty()).count();
    for (source, gaps) in sources.iter().zip(gaps.iter_mut()) {
        if source.view.verified && source.records.is_empty() && marked > 0 {
            gaps.push(Finding::new(
                "journal-empty",
                format!(
                    "{} holds no record, yet {marked} ceremony file(s) here carry the journal marks \
                     of the phases that wrote them: if a phase ran on this server, its journal was \
                     emptied or replaced (restore it from its copy); if none did, give the \
                     journals of the servers that ran them (--journal)",
                    source.name()
                ),
            ));
        }
    }
    for (source, mut gaps) in sources.iter_mut().zip(gaps) {
        for r in &source.records {
            let Some(Note::JournalLossAccepted { marks, .. }) = r.note() else {
                continue;
            };
            gaps.push(Finding {
                operator: r.operator.clone(),
                ..Finding::new(
                    "loss-accepted",
                    format!(
                        "lost records accepted at record {} by {} at {} ({} file mark(s) of {})",
                        r.seq,
                        r.operator.as_deref().unwrap_or("an unnamed operator"),
                        r.time,
                        marks.len(),
                        r.node
                    ),
                )
                .node(r.node.clone())
                .record(&source.view.label, Some(r.seq))
            });
        }
        source.view.end_to_end = source.view.verified && gaps.is_empty();
        source.view.gaps = gaps;
    }
    Ok(uncovered)
}

/// Every record of every journal, in time order: each journal's own order is kept, and
/// the next record is the earliest of the journals' next ones (ties: the earlier journal).
/// The times are each server's clock: informative, never checked.
pub(super) fn merged(sources: &[Source]) -> Vec<Rec<'_>> {
    let mut next = vec![0usize; sources.len()];
    let mut out = Vec::with_capacity(sources.iter().map(|s| s.records.len()).sum());
    loop {
        let pick = (0..sources.len())
            .filter(|&i| next[i] < sources[i].records.len())
            .min_by(|&a, &b| {
                let time = |i: usize| sources[i].records[next[i]].time.as_str();
                time(a).cmp(time(b)).then(a.cmp(&b))
            });
        let Some(i) = pick else {
            return out;
        };
        let s = &sources[i];
        out.push(Rec {
            label: &s.view.label,
            record: &s.records[next[i]],
            offset: s.offsets[next[i]].as_deref(),
        });
        next[i] += 1;
    }
}
