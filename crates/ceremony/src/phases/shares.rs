//! Phases 3c and 3d: the shares obtained on the source, installed on a target, NEW
//! confirmed, SET.

use super::*;

/// Phase 3c, on the source: the preflight, then the shares for one target into bundles.
pub fn phase3c(c: &mut Ceremony, source: &mut dyn Backend, target: &str) -> Result<PhaseReport> {
    let plan_target = plan_target(c, target)?;
    let src = c.plan.source.clone();
    let mut problems = Vec::new();
    let ready = preflight_source(c, source, target, &mut problems);
    let ready = match (ready, problems.is_empty()) {
        (Some(r), true) => r,
        _ => {
            return Err(CeremonyError::Preflight {
                problems: Problems(problems),
            });
        }
    };
    let csr_fingerprint = CertificateSection::decode(&ready.csr_certificate)
        .map_err(format_err("the CSR certificate"))?
        .key
        .fingerprint();
    let mut report = begin(c, Phase::P3c, &src, source)?;
    let st = status(source, &src.name)?;
    for kind in c.plan.kinds.clone() {
        let pattern = current_pattern(&st, kind).ok_or_else(|| CeremonyError::Conflict {
            what: format!("{}: {kind} CURRENT", src.name),
            detail: "became invalid during the phase".into(),
        })?;
        for index in c.plan.share_indices.clone() {
            let path = c.layout.bundle(target, kind, index);
            if let Some(b) = dbs::read_optional::<ShareBundle>(&path, BUNDLE_FORMAT, &c.plan)? {
                if b.source_pattern == pattern
                    && b.target == target
                    && sealed_for(&b, csr_fingerprint, kind, index)
                    && check_nonce(c, &path, &b.provenance).is_ok()
                    && trust::check_bundle(&c.plan, &plan_target, kind, index, &b).is_ok()
                {
                    report.did(PhaseAction::ObtainShare {
                        kind,
                        index,
                        target: target.to_string(),
                        result: ActionResult::AlreadyDone,
                    });
                    continue;
                }
                // Never overwritten: it may be the only copy of something someone needs.
                return Err(CeremonyError::Conflict {
                    what: path.display().to_string(),
                    detail: format!(
                        "this bundle was made for another key (another CSR key of {target}, or another source \
                         master key); it was left untouched. Erase it with `mkclone abort --target {target} \
                         --erase-files` and run phase 3c again"
                    ),
                });
            }
            let request = ObtainRequest {
                kind,
                index,
                css_label: c.plan.css_label(),
                sa_name: c.plan.sa_label(),
                csr_certificate: ready.csr_certificate.clone(),
            };
            let sealed = c.step(
                Phase::P3c,
                &src.name,
                Action::ObtainShare {
                    index: index.get(),
                    kind,
                    target: target.into(),
                },
                || source.obtain_share(&request),
                |s| Done {
                    share_bytes: Some(s.as_bytes().len()),
                    ..Done::default()
                },
            )?;
            let mut bundle = ShareBundle {
                target: target.into(),
                target_eid: plan_target.eid.clone(),
                kind,
                index,
                source: src.name.clone(),
                source_eid: src.eid.clone(),
                source_pattern: pattern.clone(),
                sealed,
                provenance: Default::default(),
            };
            c.stamp(&mut bundle, Phase::P3c, &src.name)?;
            // Never over an existing file, even one that appeared meanwhile.
            put_file(
                c,
                &path,
                BUNDLE_FORMAT,
                &bundle,
                Sensitivity::Secret,
                Put::CreateNew,
            )?;
            c.note(
                Phase::P3c,
                &src.name,
                Note::BundleWritten {
                    file: path.display().to_string(),
                },
            )?;
            report.did(PhaseAction::ObtainShare {
                kind,
                index,
                target: target.to_string(),
                result: ActionResult::Done,
            });
        }
    }
    let _ = ready.css_certificate;
    report.carry(
        c.layout.shares_dir(),
        target,
        &format!("phase 3d installs the files {target}.*.share"),
    );
    end(c, report)
}

/// Phase 3d, on a target: every share of every master key installed and each NEW
/// confirmed equal to the source's CURRENT, then SET — no SET before every key is
/// confirmed, so a bad bundle of one key leaves the other unSET too.
pub fn phase3d(c: &mut Ceremony, node: &mut dyn Backend, target: &str) -> Result<PhaseReport> {
    plan_target(c, target)?;
    let mut problems = Vec::new();
    let css_cert = preflight_target(c, node, target, &mut problems);
    let per_kind: Vec<(CloneableKind, Vec<ShareBundle>)> = c
        .plan
        .kinds
        .clone()
        .into_iter()
        .map(|k| (k, bundles(c, target, k, &mut problems)))
        .collect();
    // Every bundle must be sealed to the CSR key this target holds.
    if let Ok(Some(token)) = node.retained_public_key(&c.plan.csr_label())
        && let Ok(view) = PublicKeyTokenView::decode(&token)
    {
        let fingerprint = view.key.fingerprint();
        for (_, list) in &per_kind {
            for b in list {
                if !sealed_for(b, fingerprint, b.kind, b.index) {
                    problems.push(
                        Problem::new(
                            target,
                            "bundle-mismatch",
                            format!(
                                "the {} share {} is sealed to another CSR key than this target's: it came from another run of phase 3c",
                                b.kind, b.index
                            ),
                        )
                        .with_share(b.kind, b.index.get()),
                    );
                }
            }
        }
    }
    // What the target confirms each NEW against: the plan's pattern, or the pattern signed
    // inside the shares, which only a device that checks it vouches for.
    let unpinned: Vec<String> = c
        .plan
        .kinds
        .iter()
        .filter(|k| PatternAuthority::of(&c.plan, **k) == PatternAuthority::SignedShares)
        .map(ToString::to_string)
        .collect();
    if !unpinned.is_empty() && !node.capabilities().install_checks_signed_pattern {
        problems.push(Problem::new(
            target,
            "pattern-unconfirmable",
            format!(
                "the {} backend does not report checking the rebuilt key against the source's signed pattern, \
                 so NEW ({}) cannot be confirmed from the shares: add source_patterns to the plan (the source's \
                 operator reads them from `mkclone status {}`)",
                node.capabilities().backend,
                unpinned.join(", "),
                c.plan.source.name
            ),
        ));
    }
    // Registers that hold something else than the incoming key stop the ceremony here.
    if let Ok(st) = node.status() {
        for (kind, list) in &per_kind {
            let incoming = c
                .plan
                .source_pattern(*kind)
                .cloned()
                .or_else(|| list.first().map(|b| b.source_pattern.clone()));
            if let (Some(new), Some(incoming)) = (new_pattern(&st, *kind), &incoming)
                && &new != incoming
            {
                problems.push(
                    Problem::new(
                        target,
                        "new-register-occupied",
                        format!(
                            "the {kind} NEW register holds another key ({new}); clear it first"
                        ),
                    )
                    .with_master_key(*kind)
                    .with_register("new"),
                );
            }
            // The overwrite guard: SET would turn a valid, different CURRENT into OLD.
            if let (Some(current), Some(incoming)) = (current_pattern(&st, *kind), &incoming)
                && &current != incoming
                && !c.replace_current()
            {
                problems.push(
                    Problem::new(
                        target,
                        "would-replace-current",
                        format!(
                            "the {kind} CURRENT register holds another valid key ({current}): SET would make it OLD \
                             and destroy the OLD key. Keys enciphered under it must be re-enciphered afterwards; \
                             rerun with --replace-current if that is intended"
                        ),
                    )
                    .with_master_key(*kind)
                    .with_register("current"),
                );
            }
        }
    }
    let css_cert = match (css_cert, problems.is_empty()) {
        (Some(cert), true) => cert,
        _ => {
            return Err(CeremonyError::Preflight {
                problems: Problems(problems),
            });
        }
    };
    let target_plan = plan_target(c, target)?;
    let mut report = begin(c, Phase::P3d, &target_plan, node)?;

    // Stage 1: every key installed and confirmed.
    let mut to_set: Vec<(CloneableKind, VerificationPattern)> = Vec::new();
    for (kind, list) in per_kind {
        let claimed = list
            .first()
            .map(|b| b.source_pattern.clone())
            .ok_or_else(|| CeremonyError::Conflict {
                what: format!("{target}: {kind}"),
                detail: "no share bundles".into(),
            })?;
        let expected = c.plan.source_pattern(kind).cloned().unwrap_or(claimed);
        let authority = PatternAuthority::of(&c.plan, kind);
        let st = status(node, target)?;
        // A SET an earlier run made, known without the device only from the plan: CURRENT
        // holds the planned key and NEW is empty. Neither the bundles' claim nor the
        // journal (both can be edited) is enough: otherwise the device rebuilds the key
        // below and says whether CURRENT already holds it.
        if authority == PatternAuthority::Plan
            && new_pattern(&st, kind).is_none()
            && let Some(current) = current_pattern(&st, kind)
            && current == expected
        {
            report.did(PhaseAction::CurrentEqualsSource {
                kind,
                pattern: current,
            });
            continue;
        }
        // Every share is installed, also when NEW is already full: the device answers
        // "already received" for a share it holds, so NEW is proven built from these.
        let mut complete = false;
        for b in &list {
            let request = InstallRequest {
                kind,
                csr_label: c.plan.csr_label(),
                sa_name: c.plan.sa_label(),
                css_certificate: css_cert.clone(),
                share: b.sealed.clone(),
            };
            let progress = c.step(
                Phase::P3d,
                target,
                Action::InstallShare {
                    index: b.index.get(),
                    kind,
                },
                || node.install_share(&request),
                |p| Done {
                    progress: Some(*p.value_ref()),
                    ..Done::applied(p)
                },
            )?;
            report.did(PhaseAction::InstallShare {
                kind,
                index: b.index,
                result: applied_result(&progress),
            });
            if progress.value() == InstallProgress::Complete {
                complete = true;
                break;
            }
        }
        if !complete {
            return Err(CeremonyError::Conflict {
                what: format!("{target}: {kind} NEW register"),
                detail: "all bundles were installed but the key is not complete".into(),
            });
        }
        // Confirm before SET.
        let st = status(node, target)?;
        let new = new_pattern(&st, kind).ok_or_else(|| CeremonyError::Conflict {
            what: format!("{target}: {kind} NEW register"),
            detail: "empty after the last share".into(),
        })?;
        if new != expected {
            return Err(CeremonyError::PatternMismatch {
                target: target.into(),
                kind,
                new,
                source_pattern: expected,
            });
        }
        c.note(
            Phase::P3d,
            target,
            Note::Confirmed {
                authority,
                kind,
                pattern: new.clone(),
            },
        )?;
        report.did(PhaseAction::ConfirmNew {
            kind,
            pattern: new.clone(),
            against: authority,
        });
        // CURRENT already holds that very key (a SET an earlier run made, whose outcome
        // this run cannot otherwise trust): NEW is cleared and no SET is made, which would
        // destroy the OLD key.
        if current_pattern(&st, kind).as_ref() == Some(&new) {
            c.step(
                Phase::P3d,
                target,
                Action::ClearNew { kind },
                || node.clear_new(kind),
                Done::applied,
            )?;
            report.did(PhaseAction::AlreadySet { kind });
            continue;
        }
        to_set.push((kind, new));
    }

    // Stage 2: the overwrite guard for every key, then SET.
    let st = status(node, target)?;
    for (kind, incoming) in &to_set {
        if let Some(current) = current_pattern(&st, *kind)
            && &current != incoming
        {
            if !c.replace_current() {
                return Err(CeremonyError::WouldReplaceCurrent {
                    target: target.into(),
                    kind: *kind,
                    current: Box::new(current),
                });
            }
            c.note(
                Phase::P3d,
                target,
                Note::ReplaceCurrent {
                    current: current.clone(),
                    kind: *kind,
                },
            )?;
            report.did(PhaseAction::ReplaceCurrent {
                kind: *kind,
                pattern: current,
            });
        }
    }
    for (kind, incoming) in to_set {
        let expected = incoming.clone();
        c.step(
            Phase::P3d,
            target,
            Action::SetMasterKey { kind },
            || match node.set_master_key(kind) {
                // A SET whose reply was lost: the repetition finds NEW empty; the key is
                // set when CURRENT now holds the incoming key.
                Err(BackendError::NewNotFull { .. }) => match node.status() {
                    Ok(st) if current_pattern(&st, kind).as_ref() == Some(&expected) => {
                        Ok(Applied::AlreadyDone(()))
                    }
                    _ => Err(BackendError::NewNotFull { kind }),
                },
                other => other,
            },
            Done::applied,
        )?;
        let st = status(node, target)?;
        if current_pattern(&st, kind).as_ref() != Some(&incoming) {
            return Err(CeremonyError::Conflict {
                what: format!("{target}: {kind} CURRENT"),
                detail: "after SET it does not hold the source's key".into(),
            });
        }
        report.did(PhaseAction::Set {
            kind,
            pattern: incoming,
        });
    }
    end(c, report)
}
