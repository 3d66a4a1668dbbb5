//! The printable page: one walk over the report that both renderers follow.

use super::*;

// ----------------------------------------------------------------------------------------
// Rendering
// ----------------------------------------------------------------------------------------

/// A page, rendered to Markdown or HTML by the same walk so that both say the same.
pub(super) struct Page {
    pub(super) title: String,
    pub(super) rehearsal: bool,
    pub(super) intro: Vec<Block>,
    pub(super) sections: Vec<Section>,
}

pub(super) struct Section {
    pub(super) title: String,
    pub(super) blocks: Vec<Block>,
}

pub(super) enum Block {
    Text(String),
    Strong(String),
    List(Vec<String>),
    Table {
        head: Vec<&'static str>,
        rows: Vec<Vec<String>>,
    },
    Subheading(String),
    Signatures(Vec<String>),
}

/// A table of one row per item.
fn table<T>(head: Vec<&'static str>, items: &[T], row: impl Fn(&T) -> Vec<String>) -> Block {
    Block::Table {
        head,
        rows: items.iter().map(row).collect(),
    }
}

pub(super) const REHEARSAL_BANNER: &str = "REHEARSAL: this ceremony was planned as a rehearsal (simulated \
    nodes keep their keys in plain files); it did not clone a production master key.";

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

pub(super) fn outcome_cell(e: &TimelineEntry) -> String {
    match &e.outcome {
        None => e.result.clone(),
        Some(o) => {
            let mut s = format!("{} (record {}, {})", e.result, o.seq, o.time);
            if o.operator != e.operator {
                let _ = write!(s, " by {}", or_dash(o.operator.as_deref()));
            }
            s
        }
    }
}

pub(super) fn page(r: &Report) -> Page {
    let mark = if r.rehearsal { "REHEARSAL: " } else { "" };
    let title = format!("{mark}mkclone ceremony report: {}", r.ceremony);
    let mut intro = vec![Block::Text(format!(
        "Generated {} from the ceremony directory {}.",
        r.generated,
        r.directory.display()
    ))];
    if let Some(at) = &r.aborted {
        intro.push(Block::Strong(format!(
            "ABORT / CLEAN-UP recorded at {at}: its steps are in \"Who did what and when\"."
        )));
    }
    intro.push(Block::Strong(if r.complete {
        "Status: COMPLETE. Every planned step is recorded as done and the journal verified."
            .to_string()
    } else {
        format!(
            "Status: NOT COMPLETE. {} item(s) missing: see \"What is missing\".",
            r.missing.len()
        )
    }));
    if let Some(hash) = &r.journal.head_hash {
        intro.push(Block::Text(format!(
            "Journal final hash: {hash} ({} records{}).",
            r.journal.records,
            if r.journal.end_to_end {
                ", chain verified end to end"
            } else if r.journal.verified {
                ", chain verified, but NOT end to end: see \"Journal\""
            } else {
                ", chain NOT verified"
            }
        )));
    }

    let p = &r.plan;
    let node = |n: &PlanNodeView| match &n.pinned_serial {
        Some(serial) => format!("{} (EID {}, serial {serial} pinned)", n.name, n.eid),
        None => format!("{} (EID {})", n.name, n.eid),
    };
    let plan = Section {
        title: "Plan".into(),
        blocks: vec![Block::Table {
            head: vec!["item", "value"],
            rows: vec![
                vec!["ceremony id".into(), p.id.clone()],
                vec![
                    "rehearsal".into(),
                    if p.rehearsal { "YES: REHEARSAL" } else { "no" }.into(),
                ],
                vec![
                    "m-of-n".into(),
                    format!("{} of {} (any {} shares rebuild the key)", p.m, p.n, p.m),
                ],
                vec!["master keys".into(), p.kinds.join(", ")],
                vec![
                    "share indices per target".into(),
                    p.share_indices
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                ],
                vec!["RSA key size".into(), format!("{} bits", p.rsa_bits)],
                vec![
                    "dual control".into(),
                    if p.dual_control {
                        "yes: the SA key's hash and the key are registered on each node by two \
                         named operators"
                    } else {
                        "NO: the plan sets dual_control = false; clone registers the SA key's \
                         hash and the key itself"
                    }
                    .into(),
                ],
                vec!["SA node".into(), node(&p.sa)],
                vec!["source".into(), node(&p.source)],
                vec![
                    "targets".into(),
                    p.targets.iter().map(node).collect::<Vec<_>>().join(", "),
                ],
                vec![
                    "key labels".into(),
                    format!(
                        "SA {}, CSS {}, CSR {}",
                        p.sa_label, p.css_label, p.csr_label
                    ),
                ],
            ],
        }],
    };

    let identity_rows = r
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.roles.join(", "),
                n.status.clone(),
                or_dash(n.serial.as_deref()),
                or_dash(n.eid.as_deref()),
                match &n.pinned_serial {
                    Some(serial) => format!("EID {}, serial {serial}", n.planned_eid),
                    None => format!("EID {}", n.planned_eid),
                },
                n.before
                    .as_ref()
                    .map(|b| {
                        format!(
                            "record {}, phase {}, {}",
                            b.seq.unwrap_or(0),
                            or_dash(b.phase.as_deref()),
                            or_dash(b.time.as_deref())
                        )
                    })
                    .unwrap_or_else(|| NOT_RECORDED.into()),
            ]
        })
        .collect();
    let pattern_rows = r
        .nodes
        .iter()
        .flat_map(|n| {
            n.kinds.iter().map(|k| {
                vec![
                    n.name.clone(),
                    k.kind.clone(),
                    format!("{} → {}", k.current_before, k.current_after),
                    k.new_after.clone(),
                    k.old_after.clone(),
                    k.mark.clone(),
                ]
            })
        })
        .collect();
    let nodes = Section {
        title: "Nodes".into(),
        blocks: vec![
            Block::Table {
                head: vec![
                    "node",
                    "role",
                    "state",
                    "serial",
                    "EID",
                    "plan",
                    "patterns before recorded at",
                ],
                rows: identity_rows,
            },
            Block::Subheading("Master-key verification patterns: CURRENT before → after".into()),
            Block::Table {
                head: vec![
                    "node",
                    "key",
                    "CURRENT before → after",
                    "NEW after",
                    "OLD after",
                    "vs source",
                ],
                rows: pattern_rows,
            },
        ],
    };

    let mut key_blocks = vec![Block::Strong(match &r.sa_fingerprint {
        Some(f) => format!("SA key fingerprint (compare in person): {f}"),
        None => "SA key fingerprint: sa.db is not here".into(),
    })];
    key_blocks.push(table(
        vec!["key", "node", "file", "state", "fingerprint"],
        &r.keys,
        |k| {
            vec![
                k.role.to_string(),
                k.node.clone(),
                k.file.clone(),
                k.state.clone(),
                or_dash(k.fingerprint.as_deref()),
            ]
        },
    ));
    key_blocks.push(Block::Subheading(
        "SA key registration on each node: its hash, then the key (dual control)".into(),
    ));
    key_blocks.push(table(
        vec!["node", "hash registered", "key registered", "control"],
        &r.sa_registrations,
        |g| {
            let who = |by: &Option<String>, at: &Option<String>| match at {
                None => "-".to_string(),
                Some(at) => format!("{at} by {}", or_dash(by.as_deref())),
            };
            vec![
                g.node.clone(),
                who(&g.hash_by, &g.hash_at),
                who(&g.key_by, &g.key_at),
                g.control.clone(),
            ]
        },
    ));
    let keys = Section {
        title: "Keys and certificates".into(),
        blocks: key_blocks,
    };

    let shares = Section {
        title: "Shares".into(),
        blocks: vec![
            table(
                vec!["target", "key", "index", "bundle", "obtained", "installed"],
                &r.shares,
                |s| {
                    vec![
                        s.target.clone(),
                        s.kind.clone(),
                        if s.planned {
                            s.index.to_string()
                        } else {
                            format!("{} (not in the plan)", s.index)
                        },
                        s.bundle.clone(),
                        or_dash(s.obtained.as_deref()),
                        or_dash(s.installed.as_deref()),
                    ]
                },
            ),
            Block::Subheading("SET per target and master key".into()),
            table(
                vec![
                    "target",
                    "key",
                    "SET",
                    "NEW confirmed before SET",
                    "against",
                    "CURRENT = source now",
                ],
                &r.set,
                |s| {
                    vec![
                        s.target.clone(),
                        s.kind.clone(),
                        s.set.clone().unwrap_or_else(|| "NOT RECORDED".into()),
                        or_dash(s.confirmed.as_deref()),
                        match s.confirmed_against.as_deref() {
                            Some("plan") => "the plan's source_patterns".to_string(),
                            Some("signed-shares") => {
                                "the pattern signed in the shares (checked by the device)"
                                    .to_string()
                            }
                            other => or_dash(other),
                        },
                        yes_no(s.current_equals_source),
                    ]
                },
            ),
        ],
    };

    let timeline = Section {
        title: "Who did what and when".into(),
        blocks: vec![
            Block::Text(format!(
                "Every journal record, oldest first; an action's outcome is shown on its line. \
                 Operators named in the journal: {}.",
                if r.operators.is_empty() {
                    "none".to_string()
                } else {
                    r.operators.join(", ")
                }
            )),
            table(
                vec![
                    "#",
                    "time (UTC)",
                    "phase",
                    "node",
                    "operator",
                    "event",
                    "detail",
                    "outcome",
                ],
                &r.timeline,
                |e| {
                    vec![
                        e.seq.to_string(),
                        e.time.clone(),
                        e.phase.clone(),
                        or_dash(Some(&e.node)),
                        or_dash(e.operator.as_deref()),
                        match e.entry {
                            "action" => e.event.clone(),
                            other => format!("{} ({other})", e.event),
                        },
                        match (&e.action, &e.note, &e.unreadable) {
                            (Some(a), _, _) => a.describe(),
                            (_, Some(n), _) => n.describe(),
                            (_, _, Some(why)) => why.clone(),
                            _ => String::new(),
                        },
                        outcome_cell(e),
                    ]
                },
            ),
        ],
    };

    let mut findings = Vec::new();
    if r.missing.is_empty() {
        findings.push(Block::Text(
            "Nothing: every planned step is recorded as done.".into(),
        ));
    } else {
        findings.push(Block::List(r.missing.clone()));
    }
    if !r.warnings.is_empty() {
        findings.push(Block::Subheading(
            "What this report could not establish".into(),
        ));
        findings.push(Block::List(r.warnings.clone()));
    }
    let findings = Section {
        title: "What is missing".into(),
        blocks: findings,
    };

    let j = &r.journal;
    let journal = Section {
        title: "Journal".into(),
        blocks: vec![Block::Table {
            head: vec!["item", "value"],
            rows: vec![
                vec!["file".into(), j.file.display().to_string()],
                vec!["present".into(), yes_no(Some(j.present))],
                vec!["records".into(), j.records.to_string()],
                vec![
                    "chain verified".into(),
                    if j.verified {
                        "yes".to_string()
                    } else {
                        format!("NO: {}", or_dash(j.problem.as_deref()))
                    },
                ],
                vec![
                    "verified end to end".into(),
                    if j.end_to_end {
                        "yes: every journal mark the ceremony files carry for this server is in it"
                            .to_string()
                    } else if j.gaps.is_empty() {
                        "no".to_string()
                    } else {
                        format!("NO: {}", j.gaps.join("; "))
                    },
                ],
                vec![
                    "final hash (SHA-256 of the last record)".into(),
                    or_dash(j.head_hash.as_deref()),
                ],
            ],
        }],
    };

    let signatures = Section {
        title: "Signatures".into(),
        blocks: vec![
            Block::Text(
                "We were present at this ceremony and confirm that this report describes it."
                    .into(),
            ),
            Block::Signatures(r.operators.clone()),
        ],
    };

    Page {
        title,
        rehearsal: r.rehearsal,
        intro,
        sections: vec![
            plan, nodes, keys, shares, timeline, findings, journal, signatures,
        ],
    }
}

/// Blank signature lines after the named operators.
pub(super) const BLANK_SIGNATURE_LINES: usize = 4;
