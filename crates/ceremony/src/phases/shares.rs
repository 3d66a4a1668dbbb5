//! Phases 3c and 3d: the shares obtained on the source, installed on a target, NEW
//! confirmed, SET.

use super::*;
use mkclone_backend::ShareIndex;

/// Phase 3c, on the source: the preflight, then the shares for one target into bundles
/// (written by a second thread while the source obtains the next share when `clone` runs
/// more than one job: `Bundles`).
pub fn phase3c(c: &mut Ceremony, source: &mut dyn Backend, target: &str) -> Result<PhaseReport> {
    // One status read per stretch without a change (mkclone_backend::StatusCache).
    let source = &mut StatusCache::new(source);
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
    let mut obtain = |c: &mut Ceremony, bundles: &mut Bundles<'_>, report: &mut PhaseReport| {
        for kind in c.plan.kinds.clone() {
            let pattern = current_pattern(&st, kind).ok_or_else(|| CeremonyError::Conflict {
                what: format!("{}: {kind} CURRENT", src.name),
                detail: "became invalid during the phase".into(),
            })?;
            for index in c.plan.share_indices.clone() {
                // A bundle the other thread wrote meanwhile, or its failure, shows first.
                bundles.collect(report, false)?;
                let path = c.layout.bundle(target, kind, index);
                if let Some(b) = dbs::read_optional::<ShareBundle>(&path, BUNDLE_FORMAT, &c.plan)? {
                    if b.source_pattern == pattern
                        && b.target == target
                        && sealed_for(&b, csr_fingerprint, kind, index)
                        && check_nonce(c, &path, &b.provenance).is_ok()
                        && trust::check_bundle(&c.plan, &plan_target, kind, index, &b).is_ok()
                    {
                        report.did(obtained(kind, index, target, ActionResult::AlreadyDone));
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
                // Stamped here, after the outcome is synced: the mark names the last record of
                // this phase on the source (this outcome, or the writer's last note), whichever
                // thread writes the file.
                c.stamp(&mut bundle, Phase::P3c, &src.name)?;
                bundles.write(c, report, Obtained { path, bundle })?;
            }
        }
        Ok(())
    };
    if c.write_behind() {
        let writer = c.worker();
        std::thread::scope(|scope| {
            let mut bundles = Bundles::behind(scope, writer, target);
            let obtained = obtain(c, &mut bundles, &mut report);
            // Whatever was obtained is written before the phase ends, even after a failure.
            let written = bundles.collect(&mut report, true);
            settle(target, obtained, written)
        })?;
    } else {
        obtain(c, &mut Bundles::Inline, &mut report)?;
    }
    let _ = ready.css_certificate;
    report.carry(
        c.layout.shares_dir(),
        target,
        &format!("phase 3d installs the files {target}.*.share"),
    );
    end(c, report)
}

fn obtained(
    kind: CloneableKind,
    index: ShareIndex,
    target: &str,
    result: ActionResult,
) -> PhaseAction {
    PhaseAction::ObtainShare {
        kind,
        index,
        target: target.to_string(),
        result,
    }
}

/// The outcome of a phase 3c whose bundles were written behind: when both sides failed, a
/// bundle that could not be written (a file planted at its path, a full disk) is what the
/// operator must see; the obtaining side's failure (an interrupt, a device error) is logged.
fn settle(target: &str, obtained: Result<()>, written: Result<()>) -> Result<()> {
    match (obtained, written) {
        (Err(other), Err(writing)) => {
            log::warn!("phase 3c for {target}: {other}");
            Err(writing)
        }
        (obtained, written) => obtained.and(written),
    }
}

/// A share the source gave, in its bundle, and where the bundle goes.
struct Obtained {
    path: std::path::PathBuf,
    bundle: ShareBundle,
}

/// Write one bundle (never over an existing file, even one that appeared meanwhile) and
/// journal it, as the plan's source.
fn write_bundle(c: &mut Ceremony, o: &Obtained) -> Result<()> {
    put_file(
        c,
        &o.path,
        BUNDLE_FORMAT,
        &o.bundle,
        Sensitivity::Secret,
        Put::CreateNew,
    )?;
    let source = c.plan.source.name.clone();
    c.note(
        Phase::P3c,
        &source,
        Note::BundleWritten {
            file: o.path.display().to_string(),
        },
    )
}

/// Where phase 3c's bundles are written: right after each share is obtained (one job:
/// one action at a time), or behind, by a second thread with a handle of its own, while
/// the source obtains the next share. With more than one job the source's chain of 3c
/// phases is the ceremony's critical path, and a bundle's durable write and its note need
/// no node. Behind, the states a crash can leave are those of one action at a time: each
/// bundle is written after its share's outcome is journaled, and one that is not yet
/// written when the process dies is obtained again by the next run, as after a crash
/// between an outcome and its bundle today.
enum Bundles<'scope> {
    Inline,
    Behind {
        /// A rendezvous: the source obtains share i+1 while bundle i is written, and no
        /// further: after a failed write, at most one more share has been obtained.
        queue: Option<std::sync::mpsc::SyncSender<Obtained>>,
        written: std::sync::mpsc::Receiver<Result<(CloneableKind, ShareIndex)>>,
        thread: Option<std::thread::ScopedJoinHandle<'scope, ()>>,
        target: String,
    },
}

impl<'scope> Bundles<'scope> {
    fn behind<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        mut writer: Ceremony,
        target: &str,
    ) -> Self {
        let (queue, to_write) = std::sync::mpsc::sync_channel::<Obtained>(0);
        let (done, written) = std::sync::mpsc::channel();
        let thread = scope.spawn(move || {
            for o in to_write {
                let result = write_bundle(&mut writer, &o);
                let failed = result.is_err();
                let sent = done.send(result.map(|()| (o.bundle.kind, o.bundle.index)));
                // After a failure nothing more is written: the phase stops there.
                if failed || sent.is_err() {
                    break;
                }
            }
        });
        Self::Behind {
            queue: Some(queue),
            written,
            thread: Some(thread),
            target: target.to_string(),
        }
    }

    /// Write `o` now, or hand it to the writing thread.
    fn write(&mut self, c: &mut Ceremony, report: &mut PhaseReport, o: Obtained) -> Result<()> {
        match self {
            Self::Inline => {
                write_bundle(c, &o)?;
                let b = &o.bundle;
                report.did(obtained(b.kind, b.index, &b.target, ActionResult::Done));
                Ok(())
            }
            Self::Behind { queue, .. } => {
                let path = o.path.display().to_string();
                if queue.as_ref().is_some_and(|q| q.send(o).is_ok()) {
                    return Ok(());
                }
                // The thread stops only after a failure (or a panic): collect gives it.
                self.collect(report, true)?;
                Err(CeremonyError::Conflict {
                    what: path,
                    detail: "the thread writing the bundles had stopped: nothing was written for this share; \
                             run phase 3c again"
                        .into(),
                })
            }
        }
    }

    /// The bundles written since the last call, into `report`, and the first failure;
    /// with `all`, after every bundle handed over is written (or the thread stopped).
    fn collect(&mut self, report: &mut PhaseReport, all: bool) -> Result<()> {
        let Self::Behind {
            queue,
            written,
            thread,
            target,
        } = self
        else {
            return Ok(());
        };
        if all {
            // The thread ends once the queue is closed and drained.
            queue.take();
            if let Some(t) = thread.take()
                && let Err(panic) = t.join()
            {
                std::panic::resume_unwind(panic);
            }
        }
        while let Ok(result) = written.try_recv() {
            let (kind, index) = result?;
            report.did(obtained(kind, index, target, ActionResult::Done));
        }
        Ok(())
    }
}

/// Phase 3d, on a target: every share of every master key installed and each NEW
/// confirmed equal to the source's CURRENT, then SET — no SET before every key is
/// confirmed, so a bad bundle of one key leaves the other unSET too.
pub fn phase3d(c: &mut Ceremony, node: &mut dyn Backend, target: &str) -> Result<PhaseReport> {
    // One status read per stretch without a change (mkclone_backend::StatusCache).
    let node = &mut StatusCache::new(node);
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

#[cfg(test)]
mod tests {
    use mkclone_backend::{PatternAlgorithm, SealedShare};

    use super::*;
    use crate::journal::Kind;

    fn ceremony(dir: &std::path::Path) -> Ceremony {
        let mut c = Ceremony::open(dir, crate::plan::test_plan("bundles-test", true)).unwrap();
        c.ensure_nonce().unwrap();
        std::fs::create_dir_all(c.layout.shares_dir()).unwrap();
        c
    }

    fn share(c: &Ceremony, index: u8) -> Obtained {
        let index = ShareIndex::from_u32(u32::from(index)).unwrap();
        let target = &c.plan.targets[0];
        Obtained {
            path: c.layout.bundle(&target.name, CloneableKind::Sym, index),
            bundle: ShareBundle {
                target: target.name.clone(),
                target_eid: target.eid.clone(),
                kind: CloneableKind::Sym,
                index,
                source: c.plan.source.name.clone(),
                source_eid: c.plan.source.eid.clone(),
                source_pattern: VerificationPattern::new(PatternAlgorithm::Sha1Method, &[7; 8])
                    .unwrap(),
                sealed: SealedShare::new(vec![index.get(); 64]).unwrap(),
                provenance: Default::default(),
            },
        }
    }

    fn notes(c: &Ceremony) -> Vec<String> {
        c.journal()
            .records()
            .iter()
            .filter(|r| r.kind == Kind::Note && r.event == "bundle-written")
            .map(|r| r.detail["file"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Written behind, every bundle lands, each with its note, and the report lists them
    /// in the order they were obtained.
    #[test]
    fn bundles_written_behind_are_all_written_journaled_and_reported_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ceremony(dir.path());
        let mut report = PhaseReport::new(Phase::P3c, "source");
        let shares: Vec<Obtained> = (1..=3).map(|i| share(&c, i)).collect();
        let paths: Vec<String> = shares
            .iter()
            .map(|o| o.path.display().to_string())
            .collect();
        std::thread::scope(|scope| {
            let mut bundles = Bundles::behind(scope, c.worker(), "target1");
            for o in shares {
                bundles.write(&mut c, &mut report, o).unwrap();
            }
            bundles.collect(&mut report, true).unwrap();
        });
        for p in &paths {
            assert!(std::path::Path::new(p).is_file(), "{p}");
        }
        assert_eq!(notes(&c), paths);
        let indices: Vec<u8> = report
            .actions
            .iter()
            .map(|a| match a {
                PhaseAction::ObtainShare {
                    index,
                    result: ActionResult::Done,
                    ..
                } => index.get(),
                other => panic!("unexpected action {other:?}"),
            })
            .collect();
        assert_eq!(indices, [1, 2, 3]);
    }

    /// Someone plants a file (here a symbolic link) where a bundle is about to go, after
    /// the phase looked: the writing thread refuses to write over it, the phase gets that
    /// failure at the very next hand-over (one more share obtained at most), the planted
    /// link is left as it was, and nothing is written after it.
    #[test]
    fn a_file_planted_at_a_bundles_path_stops_the_writer_and_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ceremony(dir.path());
        let mut report = PhaseReport::new(Phase::P3c, "source");
        let (first, second, third) = (share(&c, 1), share(&c, 2), share(&c, 3));
        let decoy = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&decoy, &second.path).unwrap();
        let (second_path, third_path) = (second.path.clone(), third.path.clone());
        let failure = std::thread::scope(|scope| {
            let mut bundles = Bundles::behind(scope, c.worker(), "target1");
            bundles.write(&mut c, &mut report, first).unwrap();
            bundles.write(&mut c, &mut report, second).unwrap();
            // The hand-over of the third waits for the writer, which stopped at the second.
            let third = bundles.write(&mut c, &mut report, third);
            assert!(
                bundles.collect(&mut report, true).is_ok(),
                "the failure is given once"
            );
            third.expect_err("the planted link stops the phase at the next hand-over")
        });
        assert!(
            failure
                .to_string()
                .contains(&*second_path.to_string_lossy()),
            "the error names the file: {failure}"
        );
        assert!(
            second_path.is_symlink() && !decoy.exists(),
            "the link is untouched"
        );
        assert!(!third_path.exists(), "nothing is written after the failure");
        assert_eq!(notes(&c).len(), 1, "only the first bundle was written");
        assert_eq!(report.actions.len(), 1);
    }

    /// Both sides failed: the bundle that could not be written is the error shown.
    #[test]
    fn a_failed_bundle_write_is_shown_before_an_interrupt() {
        let interrupted = || CeremonyError::Interrupted {
            signal: 2,
            during: "obtain-share".into(),
        };
        let planted = || CeremonyError::Conflict {
            what: "shares/target1.sym.2.share".into(),
            detail: "exists".into(),
        };
        let shown = settle("target1", Err(interrupted()), Err(planted())).unwrap_err();
        assert!(matches!(shown, CeremonyError::Conflict { .. }), "{shown}");
        let shown = settle("target1", Err(interrupted()), Ok(())).unwrap_err();
        assert!(
            matches!(shown, CeremonyError::Interrupted { .. }),
            "{shown}"
        );
        let shown = settle("target1", Ok(()), Err(planted())).unwrap_err();
        assert!(matches!(shown, CeremonyError::Conflict { .. }), "{shown}");
        assert!(settle("target1", Ok(()), Ok(())).is_ok());
    }

    /// One action at a time (`--jobs 1`): each bundle is written before `write` returns.
    #[test]
    fn bundles_written_inline_are_on_disk_when_write_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ceremony(dir.path());
        let mut report = PhaseReport::new(Phase::P3c, "source");
        let o = share(&c, 1);
        let path = o.path.clone();
        Bundles::Inline.write(&mut c, &mut report, o).unwrap();
        assert!(path.is_file());
        assert_eq!(notes(&c), [path.display().to_string()]);
        assert_eq!(report.actions.len(), 1);
    }
}
