//! Steps the phases share: EID, m-of-n and the SA key installed, key generation and
//! certification, and the confirmation of a key before it is certified.

use super::*;

// ----------------------------------------------------------------------------------------
// Shared steps
// ----------------------------------------------------------------------------------------

/// The node carries the plan's EID: set it when unset, refuse when different.
pub(super) fn ensure_eid(
    c: &mut Ceremony,
    phase: Phase,
    node: &mut dyn Backend,
    plan: &PlanNode,
    report: &mut PhaseReport,
) -> Result<()> {
    let current = status(node, &plan.name)?.identity.eid;
    match current {
        Some(eid) if eid == plan.eid => {
            report.did(PhaseAction::SetEid {
                eid: plan.eid.to_string(),
                result: ActionResult::AlreadyDone,
            });
            Ok(())
        }
        Some(eid) => Err(CeremonyError::Conflict {
            what: format!("{}: EID", plan.name),
            detail: format!(
                "the node's EID is {eid:?}, the plan says {:?}: fix the plan or use the right node",
                plan.eid
            ),
        }),
        None => {
            let eid: Eid = plan.eid.clone();
            let a = c.step(
                phase,
                &plan.name,
                Action::SetEid { eid: eid.clone() },
                || node.set_eid(&eid),
                Done::applied,
            )?;
            report.did(PhaseAction::SetEid {
                eid: plan.eid.to_string(),
                result: applied_result(&a),
            });
            Ok(())
        }
    }
}

/// m-of-n, then the SA public key: hash first, then the key (dual control).
pub(super) fn install_sa_key(
    c: &mut Ceremony,
    phase: Phase,
    node: &mut dyn Backend,
    name: &str,
    db: &SaDb,
    report: &mut PhaseReport,
) -> Result<()> {
    let m_of_n = c.plan.m_of_n;
    let a = c.step(
        phase,
        name,
        Action::SetMOfN {
            m: m_of_n.m(),
            n: m_of_n.n(),
        },
        || node.set_m_of_n(m_of_n),
        Done::applied,
    )?;
    report.did(PhaseAction::SetMOfN {
        m_of_n,
        result: applied_result(&a),
    });
    if c.plan.dual_control {
        report.did(PhaseAction::SaKeyDualControl {
            node: name.to_string(),
            fingerprint: db.sa_hash.fingerprint().to_string(),
        });
        return Ok(());
    }
    c.note(
        phase,
        name,
        Note::DualControlOff {
            note: "the plan sets dual_control = false: one command registers the SA hash and key"
                .into(),
        },
    )?;
    let a = register_sa_hash_step(c, phase, node, name, db, false)?;
    report.did(PhaseAction::RegisterSaHash {
        operator: None,
        fingerprint: Some(db.sa_hash.fingerprint().to_string()),
        result: applied_result(&a),
    });
    let a = register_sa_key_step(c, phase, node, name, db, None)?;
    report.did(PhaseAction::RegisterSaKey {
        operator: None,
        result: applied_result(&a),
    });
    Ok(())
}

/// Register the SA public key's hash (CLONE) on `node`, journaled as one step.
pub(super) fn register_sa_hash_step(
    c: &mut Ceremony,
    phase: Phase,
    node: &mut dyn Backend,
    name: &str,
    db: &SaDb,
    dual_control: bool,
) -> Result<Applied<()>> {
    let sa_name = c.plan.sa_label();
    let hash = db.sa_hash.clone();
    c.step(
        phase,
        name,
        Action::RegisterSaHash {
            clone: true,
            dual_control,
            fingerprint: hash.fingerprint(),
            name: sa_name.clone(),
        },
        || node.register_public_key_hash(&sa_name, &hash, true),
        Done::applied,
    )
}

/// Register the SA public key itself (CLONE) on `node`, which checks it against the
/// registered hash, journaled as one step; under dual control, `hash_registered_by` names
/// who registered the hash.
pub(super) fn register_sa_key_step(
    c: &mut Ceremony,
    phase: Phase,
    node: &mut dyn Backend,
    name: &str,
    db: &SaDb,
    hash_registered_by: Option<String>,
) -> Result<Applied<()>> {
    let sa_name = c.plan.sa_label();
    let cert = db.sa_certificate.clone();
    c.step(
        phase,
        name,
        Action::RegisterSaKey {
            clone: true,
            dual_control: hash_registered_by.is_some(),
            hash_registered_by,
            name: sa_name.clone(),
        },
        || node.register_public_key(&sa_name, &cert, true),
        Done::applied,
    )
}

/// An SA key already registered on `node` under the ceremony's name must be the pinned
/// one (sa.db's, checked against the anchor); another is refused with the way out.
pub(super) fn check_registered_sa(
    c: &Ceremony,
    node: &mut dyn Backend,
    name: &str,
    db: &SaDb,
) -> Result<()> {
    let list = node
        .list_registrations()
        .map_err(CeremonyError::backend(name, "list registrations"))?;
    if let Some(r) = list.iter().find(|r| r.name == c.plan.sa_label())
        && r.hash != db.sa_hash
    {
        let target = if name == c.plan.source.name {
            String::new()
        } else {
            format!(" --target {name}")
        };
        return Err(CeremonyError::Conflict {
            what: format!("{name}: the SA key registered as {}", c.plan.sa_label()),
            detail: format!(
                "it is another key ({}) than the pinned one ({}): it came from another sa.db. Nothing was \
                 changed. Remove it with `mkclone abort --config FILE{target} --unregister-sa`, then run this \
                 command again",
                r.hash.fingerprint(),
                db.sa_hash.fingerprint()
            ),
        });
    }
    Ok(())
}

pub(super) fn generate(
    c: &mut Ceremony,
    phase: Phase,
    node: &mut dyn Backend,
    name: &str,
    role: KeyRole,
) -> Result<Applied<PublicKeyToken>> {
    let request = GenerateRequest {
        label: match role {
            KeyRole::Sa => c.plan.sa_label(),
            KeyRole::Css => c.plan.css_label(),
            KeyRole::Csr => c.plan.csr_label(),
        },
        role,
        bits: c.plan.bits,
        clone: true,
    };
    let action = Action::GenerateRetainedKey {
        bits: request.bits.bits(),
        label: request.label.clone(),
        role,
    };
    c.step(
        phase,
        name,
        action,
        || node.generate_retained_key(&request),
        Done::applied,
    )
}

/// Generate the CSS or CSR key and report it with the fingerprint its node's operator
/// reads out to the SA operator (who confirms it at 2b/3b before certifying).
pub(super) fn generate_announced(
    c: &mut Ceremony,
    phase: Phase,
    node: &mut dyn Backend,
    name: &str,
    role: KeyRole,
    report: &mut PhaseReport,
) -> Result<PublicKeyToken> {
    let token = generate(c, phase, node, name, role)?;
    let certified_at = if role == KeyRole::Css {
        Phase::P2b
    } else {
        Phase::P3b
    };
    report.did(PhaseAction::KeyFingerprint {
        role,
        certified_at,
        fingerprint: key_fingerprint(token.value_ref())?.to_string(),
    });
    let label = if role == KeyRole::Css {
        c.plan.css_label()
    } else {
        c.plan.csr_label()
    };
    report.did(PhaseAction::GenerateKey {
        role,
        label: label.to_string(),
        result: applied_result(&token),
    });
    Ok(token.value())
}

pub(super) fn certify(
    c: &mut Ceremony,
    phase: Phase,
    sa: &mut dyn Backend,
    subject: &PublicKeyToken,
    node: &PlanNode,
) -> Result<Certificate> {
    let label = c.plan.sa_label();
    // The serial the certificate names comes from the key's own self-signed section (made
    // by the device that holds the private key: an edit of it is refused), or from the plan
    // when it pins one; the two must agree.
    let key_label = if phase == Phase::P2b {
        c.plan.css_label()
    } else {
        c.plan.csr_label()
    };
    let view = PublicKeyTokenView::decode(subject).map_err(format_err("public-key token"))?;
    if view.certificate.is_none() {
        return Err(CeremonyError::UntrustedFile {
            file: node.name.clone(),
            detail: "the public key to certify carries no self-signed section (its node always makes one): \
                     it was stripped. Nothing was certified"
                .into(),
        });
    }
    trust::self_signed(&node.name, "the public key to certify", &view, &key_label)?;
    let serial = view.certificate.and_then(|cert| cert.info.serial);
    if let (Some(pinned), Some(found)) = (&node.expect_serial, &serial)
        && pinned != found
    {
        return Err(CeremonyError::IdentityMismatch {
            node: node.name.clone(),
            what: "serial number in its public key",
            expected: pinned.to_string(),
            actual: found.to_string(),
        });
    }
    let serial = node.expect_serial.clone().or(serial);
    let info = SubjectInfo {
        eid: Some(node.eid.clone()),
        serial,
    };
    let sa_name = c.plan.sa.name.clone();
    c.step(
        phase,
        &sa_name,
        Action::Certify {
            eid: node.eid.clone(),
            subject: node.name.clone(),
        },
        || sa.certify_public_key(&label, subject, &info),
        |_| Done::default(),
    )
}

/// How the SA node knows that the public key it is about to certify is the one the
/// source (CSS) or target (CSR) generated, and not one swapped into the carried file.
#[derive(Debug, Clone)]
pub enum KeyConfirmation {
    /// Read from the key's own node just now (`clone`, where every node is reachable).
    FromNode(PublicKeyToken),
    /// The fingerprint the key's node printed (phase 2a/3a), read out and typed by the SA
    /// operator: at least 16 hexadecimal digits of it, spaces ignored.
    Fingerprint(String),
    /// Nothing: certification is refused.
    None,
}

/// A public key's fingerprint in groups of four, as the phases print it.
pub fn key_fingerprint(token: &PublicKeyToken) -> Result<String> {
    let key = PublicKeyTokenView::decode(token)
        .map_err(format_err("public-key token"))?
        .key;
    Ok(mkclone_backend::grouped_hex(&key.fingerprint()))
}

pub(super) fn confirm_key(
    token: &PublicKeyToken,
    confirmation: &KeyConfirmation,
    what: &str,
    shown_by: &str,
    flag: &str,
) -> Result<()> {
    let expected = key_fingerprint(token)?;
    let bare = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase()
    };
    match confirmation {
        KeyConfirmation::FromNode(on_node) if on_node == token => Ok(()),
        KeyConfirmation::FromNode(_) => Err(CeremonyError::Conflict {
            what: what.into(),
            detail: format!(
                "the key in the carried file ({expected}) is not the one its node holds; the file was changed \
                 or comes from elsewhere. Nothing was certified"
            ),
        }),
        KeyConfirmation::Fingerprint(given) => {
            let given = bare(given);
            if given.len() < 16 || !given.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(CeremonyError::Conflict {
                    what: what.into(),
                    detail: format!(
                        "{flag} needs at least 16 hexadecimal digits of the fingerprint {shown_by} printed"
                    ),
                });
            }
            if bare(&expected).starts_with(&given) {
                Ok(())
            } else {
                Err(CeremonyError::Conflict {
                    what: what.into(),
                    detail: format!(
                        "the fingerprint given ({given}) is not that of the key in the carried file ({expected}): \
                         the file may have been swapped. Nothing was certified"
                    ),
                })
            }
        }
        KeyConfirmation::None => Err(CeremonyError::Conflict {
            what: what.into(),
            detail: format!(
                "before certifying, compare the key's fingerprint with the one {shown_by} printed, and give it with \
                 {flag} (the file carried here shows {expected})"
            ),
        }),
    }
}
