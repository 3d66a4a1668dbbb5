//! The printable ceremony record: the page is built once from the report ([`page`]) and
//! walked once ([`render`]); each format (Markdown, HTML) only says how a block and an
//! inline look ([`Markup`]).
//!
//! Ids, times, patterns, hashes, fingerprints and serials are [`Inline::Mono`]: monospace
//! and never broken across lines, so that a printed value can be read and compared whole
//! (and survives text extraction from the PDF). The timeline is a condensed appendix:
//! one line per action with its outcome, and one line for every run of phases that
//! changed nothing (a rerun); the JSON (`--json`) keeps every record.

use super::*;

/// A piece of text on the page.
pub(super) enum Inline {
    /// Prose: wraps at spaces.
    Text(String),
    /// An id, time, pattern, hash, fingerprint or serial: monospace, never broken.
    Mono(String),
    /// A file path: monospace, broken anywhere when it does not fit.
    Path(String),
    Strong(String),
}

/// Text made of pieces.
pub(super) type Rich = Vec<Inline>;

pub(super) fn t(s: impl Into<String>) -> Inline {
    Inline::Text(s.into())
}

pub(super) fn m(s: impl Into<String>) -> Inline {
    Inline::Mono(s.into())
}

/// A row of a table.
pub(super) enum Row {
    Cells(Vec<Rich>),
    /// One cell across the whole table: a group's heading.
    Span(Rich),
}

pub(super) enum Block {
    Para(Rich),
    List(Vec<Rich>),
    Table {
        /// The table's class in HTML: "kv" (item / value), "timeline", or "".
        class: &'static str,
        head: Vec<&'static str>,
        rows: Vec<Row>,
    },
    Subheading(String),
    Signatures(Vec<String>),
}

pub(super) struct Section {
    pub(super) title: String,
    pub(super) blocks: Vec<Block>,
    /// Starts on a new page.
    pub(super) appendix: bool,
}

pub(super) struct Page {
    pub(super) title: String,
    pub(super) rehearsal: bool,
    pub(super) intro: Vec<Block>,
    pub(super) sections: Vec<Section>,
    /// What every printed page says at its foot (with "page n/N" where pages exist).
    pub(super) footer: String,
}

/// How a format writes the page's parts.
pub(super) trait Markup {
    /// `cell`: inside a table cell.
    fn inline(&self, out: &mut String, inline: &Inline, cell: bool);
    fn start(&self, out: &mut String, page: &Page);
    fn end(&self, out: &mut String, page: &Page);
    fn section(&self, out: &mut String, section: &Section, rehearsal: bool);
    fn section_end(&self, out: &mut String);
    fn para(&self, out: &mut String, text: &Rich);
    fn list(&self, out: &mut String, items: &[Rich]);
    fn table(&self, out: &mut String, class: &str, head: &[&str], rows: &[Row]);
    fn subheading(&self, out: &mut String, text: &str);
    fn signatures(&self, out: &mut String, names: &[String]);

    fn rich(&self, out: &mut String, text: &Rich, cell: bool) {
        for i in text {
            self.inline(out, i, cell);
        }
    }
}

/// The page in one format.
pub(super) fn render(page: &Page, markup: &impl Markup) -> String {
    let mut out = String::new();
    markup.start(&mut out, page);
    let blocks = |out: &mut String, blocks: &[Block]| {
        for b in blocks {
            match b {
                Block::Para(text) => markup.para(out, text),
                Block::List(items) => markup.list(out, items),
                Block::Table { class, head, rows } => markup.table(out, class, head, rows),
                Block::Subheading(text) => markup.subheading(out, text),
                Block::Signatures(names) => markup.signatures(out, names),
            }
        }
    };
    blocks(&mut out, &page.intro);
    for s in &page.sections {
        markup.section(&mut out, s, page.rehearsal);
        blocks(&mut out, &s.blocks);
        markup.section_end(&mut out);
    }
    markup.end(&mut out, page);
    out
}

pub(super) const REHEARSAL_BANNER: &str = "REHEARSAL: this ceremony was planned as a rehearsal (simulated \
    nodes keep their keys in plain files); it did not clone a production master key.";

/// Blank signature lines after the named operators.
pub(super) const BLANK_SIGNATURE_LINES: usize = 4;

pub(super) fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

pub(super) fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "NO".into(),
        None => "-".into(),
    }
}

/// Prose whose `quoted` parts (commands, file names) are ids.
pub(super) fn prose(text: &str) -> Rich {
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { m(part) } else { t(part) })
        .collect()
}

/// A value that is an id when present, "-" otherwise.
fn mono_or_dash(v: Option<&str>) -> Rich {
    match v.filter(|s| !s.is_empty()) {
        Some(v) => vec![m(v)],
        None => vec![t("-")],
    }
}

/// The local time beside a UTC time: its clock time and offset, with its date when the
/// local date is not the UTC date.
fn local_short(s: &Stamp) -> Option<String> {
    let local = s.local.as_deref()?;
    Some(match (local.get(..10), local.get(11..)) {
        (Some(date), Some(rest)) if s.utc.get(..10) == Some(date) => rest.to_string(),
        _ => local.replacen('T', " ", 1),
    })
}

/// A time: UTC, then the local time of the host that recorded it.
fn time(s: &Stamp) -> Rich {
    let mut out = vec![m(&s.utc)];
    if let Some(local) = local_short(s) {
        out.extend([t(" (local "), m(local), t(")")]);
    }
    out
}

/// A record's name, or "-".
fn record_or_dash(at: Option<&At>, rec: &dyn Fn(&str, u64) -> String) -> Rich {
    match at {
        Some(at) => vec![m(rec(&at.record.journal, at.record.seq))],
        None => vec![t("-")],
    }
}

/// A key/value table.
fn kv(rows: Vec<(&str, Rich)>) -> Block {
    Block::Table {
        class: "kv",
        head: vec!["item", "value"],
        rows: rows
            .into_iter()
            .map(|(k, v)| Row::Cells(vec![vec![t(k)], v]))
            .collect(),
    }
}

/// A table of one row per item.
fn table<T>(head: Vec<&'static str>, items: &[T], row: impl Fn(&T) -> Vec<Rich>) -> Block {
    Block::Table {
        class: "",
        head,
        rows: items.iter().map(|i| Row::Cells(row(i))).collect(),
    }
}

/// A register's state and patterns: patterns as ids, states in words.
fn register_rich(state: &str, patterns: &[String]) -> Rich {
    match state {
        "valid" | "full" if !patterns.is_empty() => {
            let mut out = Vec::new();
            if state == "full" {
                out.push(t("full: "));
            }
            for (i, p) in patterns.iter().enumerate() {
                if i > 0 {
                    out.push(t(", "));
                }
                out.push(m(p));
            }
            out
        }
        "valid" => vec![t("valid (no pattern reported)")],
        "invalid" => vec![t("empty")],
        other => vec![t(other)],
    }
}

/// One register of `kind` in a snapshot; `none` when there is no snapshot.
fn snapshot_register(
    s: Option<&Snapshot>,
    kind: CloneableKind,
    none: &str,
    which: Register,
) -> Rich {
    let Some(s) = s else {
        return vec![t(none)];
    };
    match s.registers.iter().find(|r| r.kind == kind.kind()) {
        None => vec![t("not reported")],
        Some(r) => {
            let (state, patterns) = register_texts(r, which);
            register_rich(state, &patterns)
        }
    }
}

/// The record's verdict in one sentence: "COMPLETE: …", "COMPLETE, with 2 open
/// item(s): …", "NOT COMPLETE: 3 item(s) missing; …".
pub fn status_line(r: &Report) -> String {
    // The sentence says the record is whole only when nothing on the page says otherwise:
    // a warning (a step the journals do not record, a node not read) or a journal not
    // verified end to end (a record the ceremony files point to and it lacks) makes it say
    // what the verdict rests on instead, for the people who sign it.
    let gaps: usize = r.journals.iter().map(|j| j.gaps.len()).sum();
    let whole = r.warnings.is_empty() && r.journals.iter().all(|j| j.end_to_end);
    let open = match r.open_items.len() {
        0 => String::new(),
        n => format!(", with {n} open item(s)"),
    };
    match (r.complete, whole, r.open_items.len()) {
        (true, true, 0) => {
            "COMPLETE: every planned step is recorded as done, the journals verified, \
                            and nothing is left open."
                .into()
        }
        (true, true, _) => format!(
            "COMPLETE{open}: every planned step is recorded as done and the journals verified; \
             see \"Open items\" for what is still to close."
        ),
        (true, false, _) => format!(
            "COMPLETE{open}, as far as the devices and the journals show, but the record is not \
             whole: {} thing(s) it could not establish and {gaps} journal gap(s) are listed under \
             \"Findings\" and \"Journals\"; check them before signing.",
            r.warnings.len()
        ),
        (false, _, _) => format!(
            "NOT COMPLETE: {} item(s) missing; see \"Findings\".",
            r.missing.len()
        ),
    }
}

pub(super) fn page(r: &Report) -> Page {
    let single = r.journals.len() == 1;
    let rec = |journal: &str, seq: u64| record_name(journal, seq, single);
    let mark = if r.rehearsal { "REHEARSAL: " } else { "" };
    let title = format!("{mark}mkclone ceremony record: {}", r.ceremony);

    // The record's identity.
    let mut intro = vec![Block::Para(vec![Inline::Strong(status_line(r))])];
    if let Some(at) = &r.aborted {
        let mut text = vec![
            Inline::Strong("ABORT / CLEAN-UP recorded".into()),
            t(" at "),
        ];
        text.extend(time(&at.time));
        text.extend([
            t(", record "),
            m(rec(&at.record.journal, at.record.seq)),
            t(": its steps are in the timeline."),
        ]);
        intro.push(Block::Para(text));
    }
    let g = &r.generated_by;
    let mut generated = time(&r.generated);
    generated.extend([
        t(" on "),
        m(&g.host),
        t(" by mkclone "),
        m(&g.mkclone_version),
    ]);
    let mut rows: Vec<(&str, Rich)> = vec![
        ("ceremony", {
            let mut v = vec![m(&r.ceremony), t(", nonce ")];
            v.extend(mono_or_dash(r.nonce.as_deref()));
            v
        }),
        ("record made", generated),
        (
            "configuration of this report (SHA-256)",
            mono_or_dash(g.config_sha256.as_deref()),
        ),
        (
            "ceremony directory",
            vec![Inline::Path(r.directory.display().to_string())],
        ),
    ];
    for j in &r.journals {
        let mut v = vec![t(format!("{}: ", j.label))];
        match &j.head_hash {
            Some(h) => {
                v.extend([
                    t(format!("{} records, final hash ", j.records)),
                    m(h),
                    t(if j.end_to_end {
                        ", chain verified end to end"
                    } else if j.verified {
                        ", chain verified, NOT end to end (see Journals)"
                    } else {
                        ", chain NOT verified"
                    }),
                ]);
            }
            None => v.push(t(or_dash(j.problem.as_deref()))),
        }
        rows.push(("journal", v));
    }
    intro.push(kv(rows));

    let mut sections = vec![
        plan_section(&r.plan),
        nodes_section(r, &rec),
        keys_section(r, &rec),
        shares_section(r, &rec),
        findings_section(r),
        runs_section(r, &rec),
        journals_section(r),
        Section {
            title: "Signatures".into(),
            blocks: vec![
                Block::Para(vec![t(
                    "We were present at this ceremony and confirm that this record describes it.",
                )]),
                Block::Signatures(r.operators.clone()),
            ],
            appendix: false,
        },
    ];
    sections.push(timeline_section(r, &rec));

    let footer = match r.journals.as_slice() {
        [j] => format!(
            "ceremony {} · journal {}",
            r.ceremony,
            j.head_hash.as_deref().unwrap_or("not verified")
        ),
        many => format!(
            "ceremony {} · journals {}",
            r.ceremony,
            many.iter()
                .map(|j| format!(
                    "{} {}",
                    j.label,
                    j.head_hash
                        .as_deref()
                        .map_or("not verified", |h| h.get(..16).unwrap_or(h))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Page {
        title,
        rehearsal: r.rehearsal,
        intro,
        sections,
        footer,
    }
}

fn plan_section(p: &PlanView) -> Section {
    let mut nodes = Vec::new();
    let mut node = |role: &str, n: &PlanNode| {
        if !nodes.is_empty() {
            nodes.push(t("; "));
        }
        nodes.extend([
            t(format!("{role} ")),
            m(&n.name),
            t(" (EID "),
            m(n.eid.to_string()),
        ]);
        if let Some(serial) = &n.expect_serial {
            nodes.extend([t(", serial "), m(serial.to_string()), t(" pinned")]);
        }
        nodes.push(t(")"));
    };
    node("SA", &p.sa);
    node("source", &p.source);
    for n in &p.targets {
        node("target", n);
    }
    Section {
        title: "Plan".into(),
        blocks: vec![kv(vec![
            (
                "rehearsal",
                vec![t(if p.rehearsal { "YES: REHEARSAL" } else { "no" })],
            ),
            (
                "master keys, shares",
                vec![t(format!(
                    "{}; m-of-n {} of {} (any {} shares rebuild a key); share indices {} for \
                     each target; RSA keys of {} bits",
                    p.kinds
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.m,
                    p.n,
                    p.m,
                    p.share_indices
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.rsa_bits
                ))],
            ),
            (
                "dual control",
                vec![t(if p.dual_control {
                    "yes: two named operators register the SA key's hash and the key on each node"
                } else {
                    "NO: the plan sets dual_control = false; clone registers the SA key's hash \
                     and the key itself"
                })],
            ),
            ("nodes", nodes),
            (
                "key labels",
                vec![
                    t("SA "),
                    m(&p.sa_label),
                    t(", CSS "),
                    m(&p.css_label),
                    t(", CSR "),
                    m(&p.csr_label),
                ],
            ),
        ])],
        appendix: false,
    }
}

fn nodes_section(r: &Report, rec: &dyn Fn(&str, u64) -> String) -> Section {
    let identity = table(
        vec![
            "node",
            "role",
            "state",
            "serial",
            "pinned serial",
            "EID",
            "before: record",
        ],
        &r.nodes,
        |n| {
            let mut eid = mono_or_dash(n.eid.as_deref());
            if n.eid.as_deref().map(str::trim_end) != Some(n.planned_eid.trim_end()) {
                eid.extend([t(" (plan: "), m(&n.planned_eid), t(")")]);
            }
            vec![
                vec![m(&n.name)],
                vec![t(n
                    .roles
                    .iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join(", "))],
                vec![t(&n.status)],
                mono_or_dash(n.serial.as_deref()),
                mono_or_dash(n.expect_serial.as_deref()),
                eid,
                match n.before.as_ref().and_then(|b| b.record.as_ref()) {
                    Some(at) => vec![
                        m(rec(&at.journal, at.seq)),
                        t(format!(
                            " (phase {})",
                            or_dash(n.before.as_ref().and_then(|b| b.phase.as_deref()))
                        )),
                    ],
                    None => vec![t(NOT_RECORDED)],
                },
            ]
        },
    );
    let mut rows = Vec::new();
    for n in &r.nodes {
        for k in &n.kinds {
            let current = |s: Option<&Snapshot>, none: &str| {
                snapshot_register(s, k.kind, none, Register::Current)
            };
            let mut new_old =
                snapshot_register(n.after.as_ref(), k.kind, "not read", Register::New);
            new_old.push(t(" / "));
            new_old.extend(snapshot_register(
                n.after.as_ref(),
                k.kind,
                "not read",
                Register::Old,
            ));
            rows.push(Row::Cells(vec![
                vec![m(&n.name)],
                vec![t(k.kind.to_string())],
                current(n.before.as_ref(), NOT_RECORDED),
                current(n.after.as_ref(), "not read"),
                new_old,
                vec![Inline::Strong(k.mark.clone())],
            ]));
        }
    }
    Section {
        title: "Nodes".into(),
        blocks: vec![
            identity,
            Block::Subheading("Master-key verification patterns".into()),
            Block::Table {
                class: "",
                head: vec![
                    "node",
                    "key",
                    "CURRENT before",
                    "CURRENT after",
                    "NEW / OLD after",
                    "vs source",
                ],
                rows,
            },
        ],
        appendix: false,
    }
}

fn keys_section(r: &Report, rec: &dyn Fn(&str, u64) -> String) -> Section {
    let mut blocks = vec![table(
        vec![
            "key",
            "node",
            "file",
            "state and fingerprint (compare in person)",
        ],
        &r.keys,
        |k| {
            let mut state = vec![t(&k.state)];
            if let Some(f) = &k.fingerprint {
                state.extend([t("; fingerprint "), m(f)]);
            }
            vec![
                vec![t(k.role.name())],
                vec![m(&k.node)],
                vec![m(&k.file)],
                state,
            ]
        },
    )];
    blocks.push(Block::Subheading(
        "SA key registration on each node: its hash, then the key (dual control)".into(),
    ));
    blocks.push(table(
        vec!["node", "hash registered", "key registered", "control"],
        &r.sa_registrations,
        |g| {
            let who = |by: &Option<String>, at: &Option<At>| match at {
                None => vec![t("-")],
                Some(at) => vec![
                    t("record "),
                    m(rec(&at.record.journal, at.record.seq)),
                    t(format!(" by {}", or_dash(by.as_deref()))),
                ],
            };
            vec![
                vec![m(&g.node)],
                who(&g.hash_by, &g.hash_at),
                who(&g.key_by, &g.key_at),
                vec![t(&g.control)],
            ]
        },
    ));
    Section {
        title: "Keys and certificates".into(),
        blocks,
        appendix: false,
    }
}

/// Records as ids, one after another ("68, 71, 74"), "-" for a step not recorded.
fn records<'a>(
    ats: impl Iterator<Item = Option<&'a At>>,
    rec: &dyn Fn(&str, u64) -> String,
) -> Rich {
    let mut out = Vec::new();
    for (i, at) in ats.enumerate() {
        if i > 0 {
            out.push(t(", "));
        }
        out.extend(record_or_dash(at, rec));
    }
    out
}

/// The states of a target's bundles: "present" when all are, else each index's.
fn bundle_states(shares: &[&ShareView]) -> Rich {
    match shares {
        [first, rest @ ..] if rest.iter().all(|s| s.bundle == first.bundle) => {
            vec![t(&first.bundle)]
        }
        _ => vec![t(shares
            .iter()
            .map(|s| format!("{}: {}", s.index, s.bundle))
            .collect::<Vec<_>>()
            .join("; "))],
    }
}

fn shares_section(r: &Report, rec: &dyn Fn(&str, u64) -> String) -> Section {
    let rows = r
        .set
        .iter()
        .map(|s| {
            let shares: Vec<&ShareView> = r
                .shares
                .iter()
                .filter(|x| x.planned && x.target == s.target && x.kind == s.kind)
                .collect();
            let set = match &s.set {
                Some(at) => time(&at.time),
                None => vec![t("NOT RECORDED")],
            };
            let mut confirmed = mono_or_dash(s.confirmed.as_deref());
            match s.confirmed_against.as_deref() {
                Some("plan") => confirmed.push(t(" (the plan's source_patterns)")),
                Some("signed-shares") => confirmed.push(t(" (signed in the shares)")),
                Some(other) => confirmed.push(t(format!(" ({other})"))),
                None => {}
            }
            Row::Cells(vec![
                vec![m(&s.target)],
                vec![t(s.kind.to_string())],
                vec![t(shares
                    .iter()
                    .map(|x| x.index.to_string())
                    .collect::<Vec<_>>()
                    .join(", "))],
                bundle_states(&shares),
                records(shares.iter().map(|x| x.obtained.as_ref()), rec),
                records(shares.iter().map(|x| x.installed.as_ref()), rec),
                set,
                confirmed,
                vec![t(yes_no(s.current_equals_source))],
            ])
        })
        .collect();
    let mut blocks = vec![Block::Table {
        class: "",
        head: vec![
            "target",
            "key",
            "shares",
            "bundles",
            "obtained: records",
            "installed: records",
            "SET",
            "NEW confirmed before SET",
            "CURRENT = source now",
        ],
        rows,
    }];
    let unplanned: Vec<Rich> = r
        .shares
        .iter()
        .filter(|s| !s.planned)
        .map(|s| {
            vec![
                m(format!("shares/{}", s.file)),
                t(format!(
                    ": a bundle the plan does not name (target {}, {} share {})",
                    s.target, s.kind, s.index
                )),
            ]
        })
        .collect();
    if !unplanned.is_empty() {
        blocks.push(Block::List(unplanned));
    }
    Section {
        title: "Shares and SET".into(),
        blocks,
        appendix: false,
    }
}

fn findings_section(r: &Report) -> Section {
    let list = |items: &[Finding], none: &str| {
        if items.is_empty() {
            Block::Para(vec![t(none)])
        } else {
            Block::List(items.iter().map(|i| prose(&i.what)).collect())
        }
    };
    let mut blocks = vec![
        Block::Subheading("Missing steps".into()),
        list(
            &r.missing,
            if r.warnings.is_empty() {
                "None: every planned step is recorded as done."
            } else {
                "None missing; what this record could not establish is listed below."
            },
        ),
        Block::Subheading("Open items".into()),
        list(
            &r.open_items,
            "None: no share bundle or csr.db is left on disk after SET, and the journals show \
             no registration or retained key of this ceremony still in place.",
        ),
    ];
    if !r.warnings.is_empty() {
        blocks.push(Block::Subheading(
            "What this record could not establish".into(),
        ));
        blocks.push(list(&r.warnings, ""));
    }
    Section {
        title: "Findings".into(),
        blocks,
        appendix: false,
    }
}

fn runs_section(r: &Report, rec: &dyn Fn(&str, u64) -> String) -> Section {
    // Each configuration digest once, numbered.
    let mut configs: Vec<&str> = Vec::new();
    for s in r.runs.iter().filter_map(|run| run.run_start.as_ref()) {
        if let Some(c) = s.config_sha256.as_deref()
            && !configs.contains(&c)
        {
            configs.push(c);
        }
    }
    let config_ref = |c: Option<&str>| match c.and_then(|c| configs.iter().position(|x| *x == c)) {
        Some(i) => vec![m(format!("C{}", i + 1))],
        None => vec![t("-")],
    };
    let runs = table(
        vec![
            "records",
            "started (UTC)",
            "local",
            "host",
            "command",
            "operators",
            "mkclone",
            "config",
            "changed",
        ],
        &r.runs,
        |run| {
            let s = run.run_start.as_ref();
            vec![
                vec![
                    m(rec(&run.journal, run.first_seq)),
                    t("–"),
                    m(rec(&run.journal, run.last_seq)),
                ],
                vec![m(&run.started.utc)],
                match (local_short(&run.started), s) {
                    (Some(l), _) => vec![m(l)],
                    (None, _) => vec![t("-")],
                },
                match s {
                    Some(s) => vec![m(&s.host)],
                    None => vec![t(NOT_RECORDED)],
                },
                vec![t(s.map_or("-", |s| s.command.as_str()))],
                vec![t(if run.operators.is_empty() {
                    "-".to_string()
                } else {
                    run.operators.join(", ")
                })],
                mono_or_dash(s.map(|s| s.mkclone_version.as_str())),
                config_ref(s.and_then(|s| s.config_sha256.as_deref())),
                vec![t(if run.changed_nothing {
                    "nothing (a rerun: every step already done)"
                } else {
                    "yes"
                })],
            ]
        },
    );
    let mut blocks = vec![
        Block::Para(vec![t(
            "One row per command that worked in a ceremony directory, from its run-start \
             note; local times use the UTC offset its host recorded.",
        )]),
        runs,
    ];
    if !configs.is_empty() {
        blocks.push(Block::List(
            configs
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut v = vec![m(format!("C{}", i + 1)), t(" = SHA-256 "), m(*c)];
                    if r.generated_by.config_sha256.as_deref() == Some(*c) {
                        v.push(t(" (the configuration of this report)"));
                    }
                    v
                })
                .collect(),
        ));
    }
    Section {
        title: "Runs".into(),
        blocks,
        appendix: false,
    }
}

fn journals_section(r: &Report) -> Section {
    let rows = r
        .journals
        .iter()
        .map(|j| {
            let mut chain = vec![t(if j.verified {
                "verified"
            } else {
                "NOT verified"
            })];
            if let Some(p) = j.problem.as_ref().filter(|_| !j.verified) {
                chain.push(t(format!(": {p}")));
            }
            chain.push(t(if j.end_to_end {
                "; end to end: every journal mark the ceremony files carry for the nodes \
                 whose phases ran here is in it"
                    .to_string()
            } else if j.gaps.is_empty() {
                "; not end to end".to_string()
            } else {
                format!(
                    "; NOT end to end: {}",
                    j.gaps
                        .iter()
                        .map(|g| g.what.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }));
            let mut file = vec![Inline::Path(j.file.display().to_string())];
            if !j.hosts.is_empty() {
                file.push(t(" (host "));
                for (i, h) in j.hosts.iter().enumerate() {
                    if i > 0 {
                        file.push(t(", "));
                    }
                    file.push(m(h));
                }
                file.push(t(")"));
            }
            Row::Cells(vec![
                vec![m(&j.label)],
                file,
                vec![t(j.records.to_string())],
                chain,
            ])
        })
        .collect();
    let merged = if r.journals.len() > 1 {
        "The journals of the ceremony's servers, merged in time order (each server's clock; \
         each journal's own order kept); record B14 is record 14 of journal B."
    } else {
        "This directory's journal; give the other servers' journals with --journal to merge \
         them into one record."
    };
    Section {
        title: "Journals".into(),
        blocks: vec![
            Block::Para(vec![t(merged)]),
            Block::Table {
                class: "",
                head: vec!["", "file", "records", "chain (final hashes: at the top)"],
                rows,
            },
        ],
        appendix: false,
    }
}

/// Notes the condensed timeline counts but does not show: what the sections above show
/// (node status, bundles, dual control off) or the group headings say (run, phase).
fn shown_in_timeline(e: &TimelineEntry) -> bool {
    !e.note
        .as_ref()
        .is_some_and(|n| bookkeeping(n) || matches!(n, Note::BundleWritten { .. }))
}

/// Two fingerprints as printed are one (spaces and case aside).
fn same_fingerprint(a: Option<&str>, b: Option<&str>) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect()
    };
    matches!((a, b), (Some(a), Some(b)) if norm(a) == norm(b))
}

/// The timeline's groups, in the order they begin: one per run of a phase on a node (its
/// `phase-start` to the next `phase-start` of that phase on that node), per journal. `clone`
/// runs targets in parallel, so the records of concurrent phases interleave: a group is
/// made of its own phase's records (every record names its phase and node), not of the
/// records that happen to lie between two phase starts. A `run-start` note heads the group
/// of the record that follows it.
fn timeline_groups(timeline: &[TimelineEntry]) -> Vec<Vec<TimelineEntry>> {
    let mut groups: Vec<Vec<TimelineEntry>> = Vec::new();
    // The open group of each (journal, phase, node), by index into `groups`.
    let mut open: Vec<((&str, &str, &str), usize)> = Vec::new();
    let mut pending: Vec<TimelineEntry> = Vec::new();
    for e in timeline {
        if matches!(e.note, Some(Note::RunStart(_))) {
            pending.push(e.clone());
            continue;
        }
        let key = (e.journal.as_str(), e.phase.as_str(), e.node.as_str());
        let at = open.iter().position(|(k, _)| *k == key);
        let starts = matches!(e.note, Some(Note::PhaseStart {})) || !pending.is_empty();
        match at {
            Some(i) if !starts => groups[open[i].1].push(e.clone()),
            _ => {
                let mut g = std::mem::take(&mut pending);
                g.push(e.clone());
                groups.push(g);
                let index = groups.len() - 1;
                match at {
                    Some(i) => open[i].1 = index,
                    None => open.push((key, index)),
                }
            }
        }
    }
    if !pending.is_empty() {
        groups.push(pending);
    }
    groups
}

/// "records 86–106" of a group (its intents' outcomes included).
fn group_range(g: &[&TimelineEntry], rec: &dyn Fn(&str, u64) -> String) -> Rich {
    let first = g.first().map_or(0, |e| e.seq);
    let last = g
        .iter()
        .map(|e| e.outcome.as_ref().map_or(e.seq, |o| o.seq.max(e.seq)))
        .max()
        .unwrap_or(first);
    let j = g.first().map_or("", |e| e.journal.as_str());
    vec![
        t("records "),
        m(format!("{}–{}", rec(j, first), rec(j, last))),
    ]
}

/// What a group is: "phase 3d on target1", or its first record's phase and node.
fn group_name(g: &[TimelineEntry]) -> String {
    match g
        .iter()
        .find(|e| matches!(e.note, Some(Note::PhaseStart {})))
    {
        Some(e) => format!("phase {} on {}", e.phase, e.node),
        None => g
            .first()
            .map(|e| {
                if e.node.is_empty() {
                    e.phase.clone()
                } else {
                    format!("{} on {}", e.phase, e.node)
                }
            })
            .unwrap_or_default(),
    }
}

/// A phase 3d run again on a target whose CURRENT already held the key: the shares were
/// installed into NEW again, NEW was confirmed and cleared, no SET (see phases/shares.rs).
/// The patterns it confirmed, when the group is exactly that.
fn recheck(g: &[TimelineEntry]) -> Option<Vec<(CloneableKind, VerificationPattern)>> {
    let mut cleared = false;
    let mut confirmed = Vec::new();
    for e in g {
        match (&e.action, &e.note) {
            (Some(Action::InstallShare { .. }), _) if e.ok() => {}
            (Some(Action::ClearNew { .. }), _) if e.ok() => cleared = true,
            (Some(_), _) => return None,
            (_, Some(Note::Confirmed { kind, pattern, .. })) => {
                confirmed.push((*kind, pattern.clone()))
            }
            (_, Some(_)) if !shown_in_timeline(e) => {}
            _ => return None,
        }
    }
    (cleared && g.iter().any(|e| e.phase == "3d")).then_some(confirmed)
}

fn timeline_section(r: &Report, rec: &dyn Fn(&str, u64) -> String) -> Section {
    let owned = timeline_groups(&r.timeline);
    let groups: Vec<&[TimelineEntry]> = owned.iter().map(Vec::as_slice).collect();
    let quiet = |g: &[TimelineEntry]| g.iter().all(TimelineEntry::changes_nothing);
    let mut rows = Vec::new();
    let mut shown = 0usize;
    let mut i = 0;
    while i < groups.len() {
        // Groups that changed nothing, one after another in one journal: one line.
        let mut j = i;
        while j < groups.len() && quiet(groups[j]) && groups[j][0].journal == groups[i][0].journal {
            j += 1;
        }
        if j > i {
            let all: Vec<&TimelineEntry> = groups[i..j].iter().flat_map(|g| g.iter()).collect();
            let names: Vec<String> = groups[i..j].iter().map(|g| group_name(g)).collect();
            let mut line = group_range(&all, rec);
            line.push(t(format!(
                ": {} run again; nothing changed (every step was already done)",
                names.join(", ")
            )));
            rows.push(Row::Span(line));
            shown += 1;
            i = j;
            continue;
        }
        let g = groups[i];
        let all: Vec<&TimelineEntry> = g.iter().collect();
        let mut heading = vec![Inline::Strong(group_name(g)), t(", ")];
        heading.extend(group_range(&all, rec));
        let mut operators: Vec<&str> = Vec::new();
        for o in g.iter().filter_map(|e| e.operator.as_deref()) {
            if !operators.contains(&o) {
                operators.push(o);
            }
        }
        if !operators.is_empty() {
            heading.push(t(format!(", operator {}", operators.join(", "))));
        }
        if let Some(Note::RunStart(run)) = &g[0].note {
            heading.extend([t(format!(", {} on ", run.command)), m(&run.host)]);
        }
        if let Some(confirmed) = recheck(g) {
            heading.push(t(
                ": run again; the shares were installed into NEW again and NEW confirmed (",
            ));
            for (k, (kind, pattern)) in confirmed.iter().enumerate() {
                if k > 0 {
                    heading.push(t(", "));
                }
                heading.extend([t(format!("{kind} ")), m(pattern.to_string())]);
            }
            heading.push(t(
                "); CURRENT already held that key, so NEW was cleared and no SET was made",
            ));
            rows.push(Row::Span(heading));
            shown += 1;
            i += 1;
            continue;
        }
        rows.push(Row::Span(heading));
        for e in g.iter().filter(|e| shown_in_timeline(e)) {
            shown += 1;
            let mut what = vec![t(&e.event)];
            let detail = match (&e.action, &e.note, &e.unreadable) {
                // The fingerprint is the SA key's, shown under "Keys": said, not repeated.
                (
                    Some(Action::RegisterSaHash {
                        clone,
                        dual_control,
                        fingerprint,
                        name,
                    }),
                    _,
                    _,
                ) if same_fingerprint(Some(fingerprint), r.sa_fingerprint.as_deref()) => {
                    format!(
                        "SA key hash {name}{}{}, fingerprint = the SA key's",
                        if *clone { ", CLONE" } else { "" },
                        if *dual_control { ", dual control" } else { "" }
                    )
                }
                (Some(a), _, _) => a.describe(),
                (_, Some(n), _) => n.describe(),
                (_, _, Some(why)) => why.clone(),
                _ => String::new(),
            };
            if !detail.is_empty() {
                what.push(t(format!(": {detail}")));
            }
            let result = match e.entry {
                "note" => vec![t("-")],
                "action" => {
                    let mut v = vec![t(&e.result)];
                    if let Some(o) = &e.outcome
                        && o.operator != e.operator
                    {
                        v.push(t(format!(" by {}", or_dash(o.operator.as_deref()))));
                    }
                    v
                }
                "outcome" => vec![t(format!(
                    "{} (an outcome whose intent is not in the journal)",
                    e.result
                ))],
                _ => vec![t(&e.result)],
            };
            rows.push(Row::Cells(vec![
                vec![m(rec(&e.journal, e.seq))],
                vec![m(&e.time.utc)],
                mono_or_dash(local_short(&e.time).as_deref()),
                what,
                result,
            ]));
        }
        i += 1;
    }
    let records: usize = r.journals.iter().map(|j| j.records).sum();
    Section {
        title: "Appendix: timeline (condensed)".into(),
        blocks: vec![
            Block::Para(vec![t(format!(
                "{records} journal records in {shown} lines: every action with its outcome and \
                 every note not shown elsewhere, grouped by phase; a run of phases that changed \
                 nothing, and a phase 3d that only confirmed a key already SET, is one line. \
                 Node statuses are in \"Nodes\", bundles in \"Shares\"; --json holds every \
                 record. Operators named: {}.",
                if r.operators.is_empty() {
                    "none".to_string()
                } else {
                    r.operators.join(", ")
                }
            ))]),
            Block::Table {
                class: "timeline",
                head: vec!["record", "time (UTC)", "local", "what", "result"],
                rows,
            },
        ],
        appendix: true,
    }
}
