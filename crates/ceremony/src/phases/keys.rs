//! Phases 1, 2a, 2b, 3a and 3b: the SA, CSS and CSR keys and their certificates.

use super::*;

// ----------------------------------------------------------------------------------------
// Phases
// ----------------------------------------------------------------------------------------

/// Phase 1, on the SA node: the SA key and `sa.db`.
pub fn phase1(c: &mut Ceremony, sa: &mut dyn Backend) -> Result<PhaseReport> {
    // One status read per stretch without a change (mkclone_backend::StatusCache).
    let sa = &mut StatusCache::new(sa);
    let plan_node = c.plan.sa.clone();
    // A pinned SA key must be the one this node holds: a fresh key could never match it.
    if let Some(pinned) = c.sa_anchor() {
        let held = sa
            .retained_public_key(&c.plan.sa_label())
            .map_err(CeremonyError::backend(
                &plan_node.name,
                "read the SA public key",
            ))?;
        match held {
            Some(token) => {
                let found = SaFingerprint::of_token(&token)?;
                if found != pinned {
                    return Err(CeremonyError::SaKeyNotPinned {
                        pinned: pinned.grouped(),
                        found: found.grouped(),
                    });
                }
            }
            None => {
                return Err(CeremonyError::Conflict {
                    what: format!("{}: the SA key", plan_node.name),
                    detail: format!(
                        "the plan pins SA fingerprint {pinned}, but this node holds no SA key {}: phase 1 would \
                         make a new key, which cannot match. Use the SA node that key is on, or remove \
                         sa_fingerprint from the plan to begin a new ceremony",
                        c.plan.sa_label()
                    ),
                });
            }
        }
    }
    c.ensure_nonce()?;
    let mut report = begin(c, Phase::P1, &plan_node, sa)?;
    ensure_eid(c, Phase::P1, sa, &plan_node, &mut report)?;
    let token = generate(c, Phase::P1, sa, &plan_node.name, KeyRole::Sa)?;
    report.did(PhaseAction::GenerateKey {
        role: KeyRole::Sa,
        label: c.plan.sa_label().to_string(),
        result: applied_result(&token),
    });
    let token = token.value();
    let section = PublicKeyTokenView::decode(&token)
        .map_err(format_err("the SA public-key token"))?
        .certificate
        .ok_or_else(|| CeremonyError::Format {
            what: "the SA public-key token".into(),
            detail: "it carries no certificate section".into(),
        })?;
    let sa_hash = registration_hash(&section).map_err(format_err("the SA certificate"))?;
    let sa_certificate = section.encode().map_err(format_err("the SA certificate"))?;
    let fingerprint = SaFingerprint::of_certificate(&sa_certificate)?;
    c.set_sa_fingerprint(fingerprint.clone())?;
    let mut fresh = SaDb {
        sa_node: plan_node.name.clone(),
        sa_eid: plan_node.eid.clone(),
        sa_certificate,
        sa_hash: sa_hash.clone(),
        css: None,
        provenance: Default::default(),
    };
    match dbs::read_optional::<SaDb>(&c.layout.sa_db(), SA_DB_FORMAT, &c.plan)? {
        Some(existing) if existing.sa_certificate == fresh.sa_certificate => {
            trust::check_sa_db(&c.plan, &existing, Some(&fingerprint))?;
            report.did(PhaseAction::WriteFile {
                file: "sa.db".into(),
                result: ActionResult::AlreadyDone,
            })
        }
        Some(other) => {
            let found = SaFingerprint::of_certificate(&other.sa_certificate)
                .map(|f| f.grouped())
                .unwrap_or_else(|_| "an undecodable key".into());
            return Err(CeremonyError::Conflict {
                what: c.layout.sa_db().display().to_string(),
                detail: format!(
                    "it holds SA key {found}, not the SA node's key {fingerprint}; it was left untouched and \
                     nothing was changed on any node. Use a fresh ceremony directory or the SA node this sa.db \
                     came from"
                ),
            });
        }
        None => {
            write_sa_db(c, &mut fresh, Phase::P1, &plan_node.name)?;
            report.did(PhaseAction::WriteFile {
                file: "sa.db".into(),
                result: ActionResult::Done,
            });
        }
    }
    report.did(PhaseAction::SaFingerprint {
        fingerprint: sa_hash.fingerprint().to_string(),
    });
    report.did(PhaseAction::PinSaFingerprint {
        config_line: fingerprint.config_line().to_string(),
    });
    carry_sa_db_to_source_and_targets(
        c,
        &mut report,
        "phase 2a installs the SA key",
        "phase 3a installs the SA key",
    );
    end(c, report)
}

/// Carry `sa.db` to the source (`source_why`: what uses it there) and to every target
/// (`target_why`).
fn carry_sa_db_to_source_and_targets(
    c: &Ceremony,
    report: &mut PhaseReport,
    source_why: &str,
    target_why: &str,
) {
    report.carry(c.layout.sa_db(), &c.plan.source.name, source_why);
    for t in &c.plan.targets {
        report.carry(c.layout.sa_db(), &t.name, target_why);
    }
}

/// Phase 2a, on the source: EID, m-of-n, the SA key installed, the CSS key.
pub fn phase2a(c: &mut Ceremony, source: &mut dyn Backend) -> Result<PhaseReport> {
    // One status read per stretch without a change (mkclone_backend::StatusCache).
    let source = &mut StatusCache::new(source);
    let plan_node = c.plan.source.clone();
    let mut db = trusted_sa_db(c, "phase 2a")?;
    let mut report = begin(c, Phase::P2a, &plan_node, source)?;
    check_registered_sa(c, source, &plan_node.name, &db)?;
    ensure_eid(c, Phase::P2a, source, &plan_node, &mut report)?;
    install_sa_key(c, Phase::P2a, source, &plan_node.name, &db, &mut report)?;
    let token = generate_announced(
        c,
        Phase::P2a,
        source,
        &plan_node.name,
        KeyRole::Css,
        &mut report,
    )?;
    match &db.css {
        Some(css) if css.public_key == token && css.node == plan_node.name => {
            report.did(PhaseAction::AddCssKey {
                result: ActionResult::AlreadyDone,
            })
        }
        Some(css) if css.certificate.is_some() => {
            return Err(CeremonyError::Conflict {
                what: "sa.db: the CSS key".into(),
                detail: format!(
                    "sa.db certifies another CSS key (of {}); it was left untouched",
                    css.node
                ),
            });
        }
        _ => {
            db.css = Some(CssEntry {
                node: plan_node.name.clone(),
                eid: plan_node.eid.clone(),
                public_key: token,
                certificate: None,
            });
            write_sa_db(c, &mut db, Phase::P2a, &plan_node.name)?;
            report.did(PhaseAction::AddCssKey {
                result: ActionResult::Done,
            });
        }
    }
    report.carry(
        c.layout.sa_db(),
        &c.plan.sa.name,
        "phase 2b certifies the CSS key",
    );
    end(c, report)
}

/// Phase 2b, on the SA node: the CSS key certified into `sa.db`.
pub fn phase2b(
    c: &mut Ceremony,
    sa: &mut dyn Backend,
    confirmation: &KeyConfirmation,
) -> Result<PhaseReport> {
    // One status read per stretch without a change (mkclone_backend::StatusCache).
    let sa = &mut StatusCache::new(sa);
    anchor_from_sa_node(c, sa)?;
    let mut db = trusted_sa_db(c, "phase 2b")?;
    let sa_plan = c.plan.sa.clone();
    let mut report = begin(c, Phase::P2b, &sa_plan, sa)?;
    let Some(css) = db.css.clone() else {
        return Err(CeremonyError::MissingFile {
            path: c.layout.sa_db(),
            made_by: format!(
                "phase 2a on the source ({}) (sa.db holds no CSS key yet)",
                c.plan.source.name
            ),
            hint: "Run phase 2a and bring its sa.db back".into(),
        });
    };
    if let Some(cert) = &css.certificate {
        verify_issued(c, &db, cert, "sa.db: the CSS certificate")?;
        report.did(PhaseAction::Certify {
            role: KeyRole::Css,
            target: None,
            result: ActionResult::AlreadyDone,
        });
    } else {
        confirm_key(
            &css.public_key,
            confirmation,
            "sa.db: the CSS key",
            "phase 2a on the source",
            "--css-fingerprint",
        )?;
        report.did(PhaseAction::ConfirmFingerprint {
            role: KeyRole::Css,
            target: None,
            fingerprint: key_fingerprint(&css.public_key)?.to_string(),
        });
        let plan_source = c.plan.source.clone();
        let cert = certify(c, Phase::P2b, sa, &css.public_key, &plan_source)?;
        verify_issued(c, &db, &cert, "the new CSS certificate")?;
        if let Some(entry) = db.css.as_mut() {
            entry.certificate = Some(cert);
        }
        write_sa_db(c, &mut db, Phase::P2b, &sa_plan.name)?;
        report.did(PhaseAction::Certify {
            role: KeyRole::Css,
            target: None,
            result: ActionResult::Done,
        });
    }
    carry_sa_db_to_source_and_targets(
        c,
        &mut report,
        "phase 3c signs shares with the certified CSS key",
        "phase 3d checks shares against the CSS certificate",
    );
    end(c, report)
}

/// Phase 3a, on a target: EID, m-of-n, the SA key installed, the CSR key into its csr.db.
pub fn phase3a(
    c: &mut Ceremony,
    target_node: &mut dyn Backend,
    target: &str,
) -> Result<PhaseReport> {
    // One status read per stretch without a change (mkclone_backend::StatusCache).
    let target_node = &mut StatusCache::new(target_node);
    let plan_node = plan_target(c, target)?;
    let db = trusted_sa_db(c, "phase 3a")?;
    let mut report = begin(c, Phase::P3a, &plan_node, target_node)?;
    check_registered_sa(c, target_node, target, &db)?;
    ensure_eid(c, Phase::P3a, target_node, &plan_node, &mut report)?;
    install_sa_key(c, Phase::P3a, target_node, target, &db, &mut report)?;
    let token = generate_announced(
        c,
        Phase::P3a,
        target_node,
        target,
        KeyRole::Csr,
        &mut report,
    )?;
    let path = c.layout.csr_db(target);
    match dbs::read_optional::<CsrDb>(&path, CSR_DB_FORMAT, &c.plan)? {
        Some(existing) if existing.public_key == token => {
            check_nonce(c, &path, &existing.provenance)?;
            trust::check_csr_db(&c.plan, &plan_node, &existing)?;
            report.did(PhaseAction::WriteFile {
                file: path.display().to_string(),
                result: ActionResult::AlreadyDone,
            })
        }
        Some(_) => {
            return Err(CeremonyError::Conflict {
                what: path.display().to_string(),
                detail: "it holds another CSR key than the target's; it was left untouched".into(),
            });
        }
        None => {
            let mut db = CsrDb {
                target: target.into(),
                eid: plan_node.eid.clone(),
                public_key: token,
                certificate: None,
                provenance: Default::default(),
            };
            c.stamp(&mut db, Phase::P3a, target)?;
            write_csr_db(c, &db)?;
            report.did(PhaseAction::WriteFile {
                file: path.display().to_string(),
                result: ActionResult::Done,
            });
        }
    }
    report.carry(path, &c.plan.sa.name, "phase 3b certifies the CSR key");
    end(c, report)
}

/// Phase 3b, on the SA node: a target's CSR key certified into its csr.db.
pub fn phase3b(
    c: &mut Ceremony,
    sa: &mut dyn Backend,
    target: &str,
    confirmation: &KeyConfirmation,
) -> Result<PhaseReport> {
    // One status read per stretch without a change (mkclone_backend::StatusCache).
    let sa = &mut StatusCache::new(sa);
    let plan_node = plan_target(c, target)?;
    anchor_from_sa_node(c, sa)?;
    let sa_db = trusted_sa_db(c, "phase 3b")?;
    let mut db = trusted_csr_db(c, target)?;
    let sa_plan = c.plan.sa.clone();
    let mut report = begin(c, Phase::P3b, &sa_plan, sa)?;
    if let Some(cert) = &db.certificate {
        verify_issued(c, &sa_db, cert, "the CSR certificate")?;
        report.did(PhaseAction::Certify {
            role: KeyRole::Csr,
            target: Some(target.into()),
            result: ActionResult::AlreadyDone,
        });
    } else {
        confirm_key(
            &db.public_key,
            confirmation,
            &format!("{target}.csr.db: the CSR key"),
            &format!("phase 3a on {target}"),
            "--csr-fingerprint",
        )?;
        report.did(PhaseAction::ConfirmFingerprint {
            role: KeyRole::Csr,
            target: Some(target.into()),
            fingerprint: key_fingerprint(&db.public_key)?.to_string(),
        });
        let cert = certify(c, Phase::P3b, sa, &db.public_key, &plan_node)?;
        verify_issued(c, &sa_db, &cert, "the new CSR certificate")?;
        db.certificate = Some(cert);
        c.stamp(&mut db, Phase::P3b, &sa_plan.name)?;
        write_csr_db(c, &db)?;
        report.did(PhaseAction::Certify {
            role: KeyRole::Csr,
            target: Some(target.into()),
            result: ActionResult::Done,
        });
    }
    report.carry(
        c.layout.csr_db(target),
        &c.plan.source.name,
        "phase 3c seals shares for this CSR key",
    );
    end(c, report)
}
