//! Building the report from the ceremony directory, the journal and the nodes' statuses.

use super::*;
use crate::phase::Phase;

// ----------------------------------------------------------------------------------------
// Building
// ----------------------------------------------------------------------------------------

/// What a report is built from.
pub struct Inputs<'a> {
    /// The ceremony directory (its journal is journal A).
    pub dir: &'a Path,
    pub plan: &'a Plan,
    /// The statuses of the nodes the caller could read, by plan name.
    pub nodes: &'a [(String, NodeStatus)],
    /// The nodes that could not be opened or read, and why, by plan name: their status is
    /// "unavailable: <reason>".
    pub unavailable: &'a [(String, String)],
    /// Copies of the journals of the other servers of the ceremony, merged with this
    /// directory's (journals B, C, …): see [`build`].
    pub journals: &'a [PathBuf],
    /// Who makes the report.
    pub generator: Generator,
}

/// [`build`] from this directory's journal alone, made on this host with no configuration
/// digest.
pub fn build_with(
    dir: &Path,
    plan: &Plan,
    nodes: &[(String, NodeStatus)],
    unavailable: &[(String, String)],
) -> Result<Report, CeremonyError> {
    build(&Inputs {
        dir,
        plan,
        nodes,
        unavailable,
        journals: &[],
        generator: Generator::here(None),
    })
}

/// Build the report of the ceremony in `inputs.dir` for its plan.
///
/// Fails when the directory is not a directory, fails the check of a ceremony directory
/// ([`durable::check_private_dir`]: a link, another user's, writable by others), or its
/// journal exists but cannot be read (a link, a FIFO…); with other journals given, also
/// when any journal does not verify, when they are not one run of this ceremony (id,
/// nonce, each server's journal once), or when one lacks a journal mark that a carried
/// file records for a node whose phases it ran: each error names the journal and the
/// record. Every other problem is in the report.
pub fn build(inputs: &Inputs<'_>) -> Result<Report, CeremonyError> {
    let Inputs {
        dir,
        plan,
        nodes,
        unavailable,
        journals: others,
        ..
    } = *inputs;
    if !dir.is_dir() {
        return Err(CeremonyError::MissingFile {
            path: dir.into(),
            made_by: "the first phase run for this plan".into(),
            hint: "Give the ceremony directory of the configuration, or carry the ceremony's \
                   files here"
                .into(),
        });
    }
    let layout = Layout::new(dir);
    layout.check_dirs()?;
    let mut missing = Vec::new();
    let mut warnings = Vec::new();

    let strict = !others.is_empty();
    let mut sources = read_all(&layout, plan, others)?;
    let single = sources.len() == 1;
    let files = crate::dbs::carried_files(&layout, plan);
    let sa_db = layout.sa_db().display().to_string();
    let sa_nonce = files
        .iter()
        .find(|(f, _)| *f == sa_db)
        .map(|(_, p)| p.nonce.as_str());
    match check_one_ceremony(&sources, sa_nonce, &plan.id) {
        Err(e) if strict => return Err(e),
        Err(e) => missing.push(Finding::error(
            &e,
            format!("a journal of this run of the ceremony: {e}"),
        )),
        Ok(()) => {}
    }
    warnings.extend(check_marks(&mut sources, &files, strict)?);
    for s in &sources {
        let j = &s.view;
        let file = j.file.display().to_string();
        if !j.present {
            missing.push(
                Finding::new(
                    "journal-absent",
                    "the journal: no phase has run in this directory",
                )
                .record(&j.label, None)
                .file(file.clone()),
            );
        } else if let Some(problem) = j.problem.as_ref().filter(|_| !j.verified) {
            missing.push(
                Finding::new(
                    "journal-unverified",
                    format!(
                        "a journal that verifies: {problem} (the records below are shown as found, unverified)"
                    ),
                )
                .record(&j.label, None)
                .file(file.clone()),
            );
        }
        if let Some(n) = j.torn_tail_bytes {
            warnings.push(
                Finding::new(
                    "journal-torn-tail",
                    format!(
                        "journal {} ends with a torn line ({n} bytes) left by an interrupted append; it \
                         was never acknowledged and is not counted",
                        j.label
                    ),
                )
                .record(&j.label, None)
                .file(file),
            );
        }
    }
    let records = merged(&sources);
    let nonce = records.first().map(|r| r.record.nonce.clone());
    let rehearsal = plan.rehearsal || records.iter().any(|r| r.record.rehearsal);
    let timeline = timeline(&records);
    for e in timeline
        .iter()
        .filter(|e| e.entry == "action" && e.outcome.is_none())
    {
        warnings.push(
            Finding::new(
                "no-outcome",
                format!(
                    "record {} ({} on {}, phase {}) has no outcome: the run stopped there; a later run \
                     may have done it again",
                    record_name(&e.journal, e.seq, single),
                    e.event,
                    e.node,
                    e.phase
                ),
            )
            .record(&e.journal, Some(e.seq))
            .node(&e.node)
            .phase(&e.phase),
        );
    }
    let operators = operators(&records);
    for name in &operators {
        if let Err(e) = crate::operator::check(name) {
            warnings.push(Finding::new(
                "operator-name",
                format!(
                    "{e}. It was written by an older mkclone or edited in; it is printed escaped"
                ),
            ));
        }
    }

    let (keys, sa_fingerprint) = keys(
        &layout,
        plan,
        (&timeline, single),
        &mut missing,
        &mut warnings,
    );
    let bundles = bundles(&layout, plan, &mut warnings);

    // The source's CURRENT patterns, per kind: read now, else as the bundles or the
    // journal's confirmations recorded them.
    let source_status = nodes
        .iter()
        .find(|(n, _)| *n == plan.source.name)
        .map(|(_, st)| st);
    let source_ref: Vec<(CloneableKind, Vec<VerificationPattern>)> = plan
        .kinds
        .iter()
        .map(|kind| {
            let now: Vec<VerificationPattern> = source_status
                .and_then(|st| st.register(kind.kind()))
                .filter(|r| r.current == CurrentState::Valid)
                .map(|r| r.current_patterns.clone())
                .unwrap_or_default();
            let recorded = || -> Vec<VerificationPattern> {
                let mut out: Vec<VerificationPattern> = Vec::new();
                let confirmed = timeline.iter().filter_map(|e| match &e.note {
                    Some(Note::Confirmed {
                        kind: k, pattern, ..
                    }) if k == kind => Some(pattern.clone()),
                    _ => None,
                });
                for p in bundles
                    .iter()
                    .filter(|(_, b)| b.kind == *kind)
                    .map(|(_, b)| b.source_pattern.clone())
                    .chain(confirmed)
                {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                out
            };
            (*kind, if now.is_empty() { recorded() } else { now })
        })
        .collect();
    let reference = |kind: CloneableKind| -> &[VerificationPattern] {
        source_ref
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    };

    // Nodes.
    let mut names: Vec<(&str, Role, &PlanNode)> = vec![
        (plan.sa.name.as_str(), Role::Sa, &plan.sa),
        (plan.source.name.as_str(), Role::Source, &plan.source),
    ];
    names.extend(
        plan.targets
            .iter()
            .map(|t| (t.name.as_str(), Role::Target, t)),
    );
    let mut node_views: Vec<NodeView> = Vec::new();
    for (name, role, planned) in names {
        if let Some(v) = node_views.iter_mut().find(|v| v.name == name) {
            v.roles.push(role);
            continue;
        }
        let after_status = nodes.iter().find(|(n, _)| n == name).map(|(_, st)| st);
        let status = match (after_status, unavailable.iter().find(|(n, _)| n == name)) {
            (Some(_), _) => "read".to_string(),
            (None, Some((_, why))) => format!("unavailable: {why}"),
            (None, None) => "not read".to_string(),
        };
        if after_status.is_none() {
            warnings.push(
                Finding::new(
                    "node-not-read",
                    format!(
                        "node {name}: {status}; its patterns after the ceremony are not in this report"
                    ),
                )
                .node(name),
            );
        }
        let before = first_node_status(&records, name);
        if before.is_none() && sources.iter().any(|s| s.view.present) {
            warnings.push(
                Finding::new(
                    "status-not-recorded",
                    format!(
                        "node {name}: its patterns before the ceremony are {NOT_RECORDED} in the journal"
                    ),
                )
                .node(name),
            );
        }
        let after = after_status.map(snapshot_of);
        let serial = after
            .as_ref()
            .and_then(|s| s.serial.clone())
            .or_else(|| before.as_ref().and_then(|s| s.serial.clone()));
        let eid = after
            .as_ref()
            .and_then(|s| s.eid.clone())
            .or_else(|| before.as_ref().and_then(|s| s.eid.clone()));
        node_views.push(NodeView {
            name: name.to_string(),
            roles: vec![role],
            planned_eid: planned.eid.to_string(),
            expect_serial: planned.expect_serial.as_ref().map(ToString::to_string),
            status,
            serial,
            eid,
            before,
            after,
            kinds: Vec::new(),
        });
    }
    for v in &mut node_views {
        let is_target = v.roles.contains(&Role::Target);
        let is_source = v.roles.contains(&Role::Source);
        v.kinds = plan
            .kinds
            .iter()
            .map(|kind| {
                let before = v.before.as_ref().map(|s| register_of(s, *kind));
                let after = v.after.as_ref().map(|s| register_of(s, *kind));
                let equals_source = match (&after, is_target && !is_source) {
                    (Some(Some(reg)), true) if reg.current == CurrentState::Valid => v
                        .after
                        .as_ref()
                        .and_then(|s| s.status.as_ref())
                        .and_then(|st| st.register(kind.kind()))
                        .and_then(|r| compare(&r.current_patterns, reference(*kind))),
                    _ => None,
                };
                let mark = if is_source {
                    "source".to_string()
                } else {
                    match equals_source {
                        Some(true) => "= source".to_string(),
                        Some(false) => "DIFFERS from source".to_string(),
                        None => String::new(),
                    }
                };
                KindPatterns {
                    kind: *kind,
                    current_before: match &before {
                        None => NOT_RECORDED.to_string(),
                        Some(reg) => current_text(reg.as_ref(), Register::Current),
                    },
                    current_after: match &after {
                        None => "not read".to_string(),
                        Some(reg) => current_text(reg.as_ref(), Register::Current),
                    },
                    new_after: match &after {
                        None => "not read".to_string(),
                        Some(reg) => new_text(reg.as_ref()),
                    },
                    old_after: match &after {
                        None => "not read".to_string(),
                        Some(reg) => current_text(reg.as_ref(), Register::Old),
                    },
                    equals_source,
                    mark,
                }
            })
            .collect();
    }

    // Identity pinning.
    for v in &node_views {
        if let (Some(pinned), Some(after)) = (&v.expect_serial, &v.after)
            && after.serial.as_deref() != Some(pinned.as_str())
        {
            missing.push(
                Finding::new(
                    "identity-mismatch",
                    format!(
                        "node {}: it reports serial {}, the plan pins {pinned}: it is not the planned node",
                        v.name,
                        or_dash(after.serial.as_deref())
                    ),
                )
                .node(&v.name),
            );
        }
    }

    // The SA key's registrations (dual control).
    let mut sa_registrations = Vec::new();
    let mut registering: Vec<&PlanNode> = vec![&plan.source];
    registering.extend(plan.targets.iter());
    for n in registering {
        if sa_registrations
            .iter()
            .any(|r: &SaRegistrationView| r.node == n.name)
        {
            continue;
        }
        let done = |hash: bool| {
            actions(&timeline, |a| match a {
                Action::RegisterSaHash { .. } => hash,
                Action::RegisterSaKey { .. } => !hash,
                _ => false,
            })
            .filter(|e| e.node == n.name && e.ok())
            .map(|e| {
                let by = e
                    .operator
                    .clone()
                    .or_else(|| e.outcome.as_ref().and_then(|o| o.operator.clone()));
                (by, e.done_at())
            })
            .next()
        };
        let hash = done(true);
        let key = done(false);
        let off = timeline
            .iter()
            .any(|e| matches!(e.note, Some(Note::DualControlOff { .. })) && e.node == n.name);
        let control = match (&hash, &key) {
            (None, _) | (_, None) if single => "not recorded in this journal".to_string(),
            (None, _) | (_, None) => "not recorded in these journals".to_string(),
            _ if off => "one command (the plan sets dual_control = false)".to_string(),
            (Some((Some(a), _)), Some((Some(b), _))) if a != b => "two operators".to_string(),
            (Some((Some(a), _)), Some((Some(_), _))) => format!("ONE operator ({a}) did both"),
            _ => "operators not recorded".to_string(),
        };
        if let (Some((by, _)), None) = (&hash, &key) {
            // Half of dual control: nothing goes on without the key.
            let command = format!(
                "mkclone register-sa-key --config FILE --node {} --operator NAME",
                n.name
            );
            missing.push(
                Finding::new(
                    "sa-key-not-registered",
                    format!(
                        "{}: the SA public key is not registered, only its hash (by {}): a second \
                         person runs `{command}`",
                        n.name,
                        or_dash(by.as_deref()),
                    ),
                )
                .node(&n.name)
                .command(command),
            );
        }
        let (hash_by, hash_at) = hash.unwrap_or((None, None));
        let (key_by, key_at) = key.unwrap_or((None, None));
        sa_registrations.push(SaRegistrationView {
            node: n.name.clone(),
            hash_by,
            hash_at,
            key_by,
            key_at,
            control,
        });
    }

    // Shares.
    let mut shares = Vec::new();
    for t in &plan.targets {
        for kind in &plan.kinds {
            for index in &plan.share_indices {
                let path = layout.bundle(&t.name, *kind, *index);
                let bundle = match bundles.iter().find(|(p, _)| *p == path) {
                    Some(_) => "present".to_string(),
                    None => match bundle_problem(&path, &warnings) {
                        Some(problem) => problem,
                        None => match erased(&timeline, &path) {
                            Some(e) => erased_text(e, single),
                            None => "absent".to_string(),
                        },
                    },
                };
                let obtained = actions(&timeline, |a| {
                    matches!(a, Action::ObtainShare { target, kind: k, index: i }
                        if *target == t.name && k == kind && *i == index.get())
                })
                .filter(|e| e.node == plan.source.name)
                .find_map(TimelineEntry::done_at);
                let installed = actions(&timeline, |a| {
                    matches!(a, Action::InstallShare { kind: k, index: i }
                        if k == kind && *i == index.get())
                })
                .filter(|e| e.node == t.name)
                .find_map(TimelineEntry::done_at);
                shares.push(ShareView {
                    target: t.name.clone(),
                    kind: *kind,
                    index: index.get(),
                    planned: true,
                    file: crate::dbs::bundle_name(&t.name, *kind, *index),
                    bundle,
                    obtained,
                    installed,
                });
            }
        }
    }
    for (path, b) in &bundles {
        let planned = plan.target(&b.target).is_some()
            && plan.kinds.contains(&b.kind)
            && plan.share_indices.contains(&b.index)
            && *path == layout.bundle(&b.target, b.kind, b.index);
        if !planned {
            warnings.push(
                Finding::new(
                    "unplanned-bundle",
                    format!(
                        "{} is a share bundle the plan does not name (target {}, {} share {})",
                        path.display(),
                        b.target,
                        b.kind,
                        b.index
                    ),
                )
                .node(&b.target)
                .file(path.display().to_string())
                .share(b.kind, b.index.get()),
            );
            shares.push(ShareView {
                target: b.target.clone(),
                kind: b.kind,
                index: b.index.get(),
                planned: false,
                file: file_name(path),
                bundle: "present".into(),
                obtained: None,
                installed: None,
            });
        }
    }

    // SET.
    let mut set = Vec::new();
    for t in &plan.targets {
        let view = node_views.iter().find(|v| v.name == t.name);
        for kind in &plan.kinds {
            let done = actions(&timeline, |a| matches!(a, Action::SetMasterKey { .. }))
                .filter(|e| e.node == t.name && e.kind() == Some(*kind))
                .find_map(TimelineEntry::done_at);
            let confirmation = timeline
                .iter()
                .filter(|e| e.node == t.name)
                .find_map(|e| match &e.note {
                    Some(Note::Confirmed {
                        authority,
                        kind: k,
                        pattern,
                    }) if k == kind => Some((authority, pattern)),
                    _ => None,
                });
            let confirmed = confirmation.map(|(_, p)| p.to_string());
            let confirmed_against = confirmation.map(|(a, _)| a.name().to_string());
            let current_equals_source = view
                .and_then(|v| v.kinds.iter().find(|k| k.kind == *kind))
                .and_then(|k| k.equals_source);
            set.push(SetView {
                target: t.name.clone(),
                kind: *kind,
                set: done,
                confirmed,
                confirmed_against,
                current_equals_source,
            });
        }
    }

    // What is missing, in ceremony order.
    for t in &plan.targets {
        for kind in &plan.kinds {
            let of = |s: &&ShareView| s.planned && s.target == t.name && s.kind == *kind;
            let s = set.iter().find(|s| s.target == t.name && s.kind == *kind);
            let was_set = s.is_some_and(|s| s.set.is_some());
            let equal_now = s.and_then(|s| s.current_equals_source);
            for share in shares.iter().filter(of) {
                if !share.issued() && !was_set && equal_now != Some(true) {
                    missing.push(
                        Finding::new(
                            "share-not-obtained",
                            format!(
                                "{} share {} for {}: not obtained (phase 3c on {})",
                                share.kind, share.index, share.target, plan.source.name
                            ),
                        )
                        .node(&share.target)
                        .phase(Phase::P3c)
                        .share(share.kind, share.index)
                        .file(share.file.clone()),
                    );
                }
            }
            for share in shares.iter().filter(of) {
                if share.installed.is_none() && !was_set && equal_now != Some(true) {
                    missing.push(
                        Finding::new(
                            "share-not-installed",
                            format!(
                                "{} share {} for {}: not installed (phase 3d on {})",
                                share.kind, share.index, share.target, share.target
                            ),
                        )
                        .node(&share.target)
                        .phase(Phase::P3d)
                        .share(share.kind, share.index)
                        .file(share.file.clone()),
                    );
                }
            }
            match (was_set, equal_now) {
                (_, Some(false)) => missing.push(
                    Finding::new(
                        "current-differs",
                        format!(
                            "{}: the {kind} CURRENT register does not hold the source's key",
                            t.name
                        ),
                    )
                    .node(&t.name)
                    .master_key(*kind),
                ),
                (false, Some(true)) => warnings.push(
                    Finding::new(
                        "set-not-recorded",
                        format!(
                            "{}: SET of the {kind} master key is not recorded in this journal, but its \
                             CURRENT equals the source's (done from another directory?)",
                            t.name
                        ),
                    )
                    .node(&t.name)
                    .master_key(*kind),
                ),
                (false, None) => missing.push(
                    Finding::new(
                        "set-not-done",
                        format!(
                            "{}: SET of the {kind} master key (phase 3d on {})",
                            t.name, t.name
                        ),
                    )
                    .node(&t.name)
                    .phase(Phase::P3d)
                    .master_key(*kind),
                ),
                (true, _) => {}
            }
        }
    }

    let complete = missing.is_empty() && sources.iter().all(|s| s.view.verified);
    let open_items = open_items(&layout, plan, &timeline, &shares, &set, complete);
    let aborted = timeline
        .iter()
        .rev()
        .find(|e| matches!(e.note, Some(Note::AbortStart { .. })))
        .map(|e| At {
            record: e.record(),
            time: e.time.clone(),
        });
    let journals: Vec<JournalView> = sources.into_iter().map(|s| s.view).collect();
    let runs = runs(&timeline, &journals);
    Ok(Report {
        ceremony: plan.id.clone(),
        nonce,
        rehearsal,
        generated: Stamp::new(
            &journal::rfc3339_utc(SystemTime::now()),
            Some(&inputs.generator.utc_offset),
        ),
        generated_by: inputs.generator.clone(),
        directory: dir.to_path_buf(),
        complete,
        aborted,
        plan: plan_view(plan),
        nodes: node_views,
        sa_fingerprint,
        keys,
        sa_registrations,
        shares,
        set,
        runs,
        timeline,
        operators,
        journals,
        missing,
        open_items,
        warnings,
    })
}

/// What the ceremony left that should not stay once it is over, with the command that
/// closes each: per target whose SET is done, its share bundles and csr.db still on disk;
/// once the whole ceremony is complete, the SA public key still registered and the
/// ceremony's retained keys (CSS, CSR) still on the nodes, as the journals show them.
fn open_items(
    layout: &Layout,
    plan: &Plan,
    timeline: &[TimelineEntry],
    shares: &[ShareView],
    set: &[SetView],
    complete: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in &plan.targets {
        let done = set
            .iter()
            .filter(|s| s.target == t.name)
            .all(|s| s.set.is_some() || s.current_equals_source == Some(true));
        if !done {
            continue;
        }
        let bundles = shares
            .iter()
            .filter(|s| s.target == t.name && s.bundle.starts_with("present"))
            .count();
        let mut left = Vec::new();
        if bundles > 0 {
            left.push(format!(
                "{bundles} share bundle(s) `shares/{}.*.share`",
                t.name
            ));
        }
        let csr = layout.csr_db(&t.name);
        if std::fs::symlink_metadata(&csr).is_ok() {
            left.push(format!("`{}`", file_name(&csr)));
        }
        if !left.is_empty() {
            let command = format!(
                "mkclone abort --config FILE --target {} --erase-files",
                t.name
            );
            out.push(
                Finding::new(
                    "files-after-set",
                    format!(
                        "{}: {} still on disk after SET: erase with `{command}`",
                        t.name,
                        left.join(" and "),
                    ),
                )
                .node(&t.name)
                .command(command),
            );
        }
    }
    if !complete {
        return out;
    }
    // What the journals say is still in place: the last successful action that puts a
    // thing on a node, not followed by a successful one that takes it away there.
    let still = |change: &dyn Fn(&Action) -> Option<(Held, String)>| {
        let mut held: Vec<(String, String)> = Vec::new();
        for e in timeline.iter().filter(|e| e.ok()) {
            let Some(a) = &e.action else { continue };
            let Some((change, what)) = change(a) else {
                continue;
            };
            let here = (e.node.clone(), what);
            match change {
                Held::Put if !held.contains(&here) => held.push(here),
                Held::Put => {}
                Held::Taken => held.retain(|h| *h != here),
            }
        }
        held
    };
    let registered = still(&sa_registration);
    if !registered.is_empty() {
        let nodes: Vec<String> = registered.iter().map(|(n, _)| n.clone()).collect();
        let command = "mkclone abort --config FILE --unregister-sa";
        out.push(Finding {
            nodes: nodes.clone(),
            ..Finding::new(
                "sa-key-registered",
                format!(
                    "the SA public key is still registered on {}: unregister it with `{command}`",
                    nodes.join(", ")
                ),
            )
            .command(command)
        });
    }
    let retained = still(&retained_key);
    if !retained.is_empty() {
        let command = "mkclone abort --config FILE --delete-keys";
        let mut nodes: Vec<String> = Vec::new();
        for (node, _) in &retained {
            if !nodes.contains(node) {
                nodes.push(node.clone());
            }
        }
        out.push(Finding {
            nodes,
            ..Finding::new(
                "retained-keys",
                format!(
                    "the ceremony's retained keys are still on the nodes ({}): delete them with `{command}`",
                    retained
                        .iter()
                        .map(|(node, label)| format!("`{label}` on {node}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .command(command)
        });
    }
    out
}

/// What an action does to a thing the ceremony leaves on its node.
enum Held {
    /// Puts it there.
    Put,
    /// Takes it away.
    Taken,
}

/// The SA key an action registers (its hash or the key) on its node, or unregisters.
fn sa_registration(a: &Action) -> Option<(Held, String)> {
    match a {
        Action::RegisterSaHash { name, .. } | Action::RegisterSaKey { name, .. } => {
            Some((Held::Put, name.to_string()))
        }
        Action::UnregisterSaKey { name } => Some((Held::Taken, name.to_string())),
        _ => None,
    }
}

/// The CSS or CSR key an action generates (the SA key stays: it is the SA node's), or
/// deletes.
fn retained_key(a: &Action) -> Option<(Held, String)> {
    match a {
        Action::GenerateRetainedKey { label, role, .. } if *role != KeyRole::Sa => {
            Some((Held::Put, label.to_string()))
        }
        Action::DeleteRetainedKey { label } => Some((Held::Taken, label.to_string())),
        _ => None,
    }
}

pub(super) fn plan_view(plan: &Plan) -> PlanView {
    PlanView {
        id: plan.id.clone(),
        m: plan.m_of_n.m(),
        n: plan.m_of_n.n(),
        kinds: plan.kinds.clone(),
        share_indices: plan.share_indices.iter().map(|i| i.get()).collect(),
        rsa_bits: plan.bits.bits(),
        rehearsal: plan.rehearsal,
        dual_control: plan.dual_control,
        sa: plan.sa.clone(),
        source: plan.source.clone(),
        targets: plan.targets.clone(),
        sa_label: plan.sa_label().to_string(),
        css_label: plan.css_label().to_string(),
        csr_label: plan.csr_label().to_string(),
    }
}
