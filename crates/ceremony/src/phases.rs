//! The phases of IBM's CNM utility, as functions over one node and the ceremony's files.
//!
//! 1 (SA): SA key, `sa.db`. 2a (source): EID, m-of-n, SA key installed (hash, then key),
//! CSS key into `sa.db`. 2b (SA): CSS certified. Per target: 3a (target): EID, m-of-n, SA
//! key installed, CSR key into `<target>.csr.db`; 3b (SA): CSR certified; 3c (source):
//! preflight, shares obtained into bundles; 3d (target): preflight, shares installed, NEW
//! confirmed equal to the source's CURRENT, SET.
//!
//! Every phase can be run again after an interruption: keys are found by their
//! deterministic labels, and every request is reconciled with the node's real state
//! (`Applied::AlreadyDone`), so nothing is duplicated or lost.

use mkclone_backend::{
    Applied, Backend, BackendError, Certificate, CloneableKind, CurrentState, Eid, GenerateRequest,
    InstallProgress, InstallRequest, KeyRole, NewState, NodeStatus, ObtainRequest, PublicKeyToken,
    SubjectInfo, VerificationPattern,
};
use mkclone_formats::pka::{
    CertificateSection, PublicKeyTokenView, RsaPublicKey, registration_hash,
};

use crate::ceremony::{Ceremony, Done, PhaseReport};
use crate::event::{Action, Note};
use crate::phase::Phase;
use mkclone_formats::seal::SealedShareParts;

use crate::dbs::{
    self, BUNDLE_FORMAT, CSR_DB_FORMAT, CsrDb, CssEntry, SA_DB_FORMAT, SaDb, ShareBundle,
};
use crate::durable::Sensitivity;
use crate::failure::{CeremonyError, Problem, Problems, Result};
use crate::plan::PlanNode;
use crate::trust::{self, PatternAuthority, SaFingerprint};

fn applied_word<T>(a: &Applied<T>) -> &'static str {
    if a.was_already_done() {
        "already done"
    } else {
        "done"
    }
}

fn format_err(what: &str) -> impl FnOnce(mkclone_formats::FormatError) -> CeremonyError + '_ {
    move |e| CeremonyError::Format {
        what: what.into(),
        detail: e.to_string(),
    }
}

fn status(node: &mut dyn Backend, name: &str) -> Result<NodeStatus> {
    node.status()
        .map_err(CeremonyError::backend(name, "read status"))
}

fn current_pattern(status: &NodeStatus, kind: CloneableKind) -> Option<VerificationPattern> {
    let reg = status.register(kind.kind())?;
    (reg.current == CurrentState::Valid)
        .then(|| reg.current_patterns.first().cloned())
        .flatten()
}

fn new_pattern(status: &NodeStatus, kind: CloneableKind) -> Option<VerificationPattern> {
    let reg = status.register(kind.kind())?;
    (reg.new == NewState::Full)
        .then(|| reg.new_patterns.first().cloned())
        .flatten()
}

// ----------------------------------------------------------------------------------------
// Files
// ----------------------------------------------------------------------------------------

pub fn read_sa_db(c: &Ceremony) -> Result<SaDb> {
    let path = c.layout.sa_db();
    dbs::read_optional(&path, SA_DB_FORMAT, &c.plan)?.ok_or_else(|| CeremonyError::MissingFile {
        path,
        made_by: format!("phase 1 on the SA node ({})", c.plan.sa.name),
        hint: "Run phase 1 there, or copy sa.db from the SA node into this ceremony directory"
            .into(),
    })
}

/// `sa.db`, held to the plan and to the pinned SA key (refused without a pin: `command`
/// names what needs it). Every other file's trust derives from this one.
pub fn trusted_sa_db(c: &Ceremony, command: &str) -> Result<SaDb> {
    let db = read_sa_db(c)?;
    let Some(anchor) = c.sa_anchor() else {
        return Err(CeremonyError::SaAnchorMissing {
            command: command.into(),
            shown: String::new(),
        });
    };
    trust::check_sa_db(&c.plan, &db, Some(anchor))?;
    Ok(db)
}

/// On the SA node (2b, 3b): the SA key the node retains is the anchor; sa.db must hold it.
fn anchor_from_sa_node(c: &mut Ceremony, sa: &mut dyn Backend) -> Result<()> {
    let name = c.plan.sa.name.clone();
    let token = sa
        .retained_public_key(&c.plan.sa_label())
        .map_err(CeremonyError::backend(&name, "read the SA public key"))?
        .ok_or_else(|| CeremonyError::Conflict {
            what: format!("{name}: the SA key {}", c.plan.sa_label()),
            detail: "is not on this node: run phase 1 here".into(),
        })?;
    c.set_sa_fingerprint(SaFingerprint::of_token(&token)?)
}

/// A carried file must come from this run of the ceremony (its nonce is sa.db's).
fn check_nonce(c: &Ceremony, file: &std::path::Path, p: &dbs::Provenance) -> Result<()> {
    match c.nonce() {
        Some(n) if n != p.nonce => Err(CeremonyError::UntrustedFile {
            file: file.display().to_string(),
            detail: format!(
                "it carries ceremony nonce {}, this ceremony's (sa.db's) is {n}: it comes from another run \
                 of a ceremony with this id. Nothing was changed on any node",
                p.nonce
            ),
        }),
        _ => Ok(()),
    }
}

/// A target's csr.db, held to the plan and to this run of the ceremony.
fn trusted_csr_db(c: &Ceremony, target: &str) -> Result<CsrDb> {
    let plan_node = plan_target(c, target)?;
    let db = read_csr_db(c, target)?;
    check_nonce(c, &c.layout.csr_db(target), &db.provenance)?;
    trust::check_csr_db(&c.plan, &plan_node, &db)?;
    Ok(db)
}

fn write_sa_db(c: &Ceremony, db: &SaDb) -> Result<()> {
    Ok(dbs::write(
        &c.layout.sa_db(),
        SA_DB_FORMAT,
        &c.plan.id,
        c.plan.rehearsal,
        db,
        Sensitivity::Public,
    )?)
}

pub fn read_csr_db(c: &Ceremony, target: &str) -> Result<CsrDb> {
    let path = c.layout.csr_db(target);
    dbs::read_optional(&path, CSR_DB_FORMAT, &c.plan)?.ok_or_else(|| CeremonyError::MissingFile {
        path,
        made_by: format!("phase 3a on the target {target}"),
        hint: "Run phase 3a there, or copy the file from the target into this ceremony directory"
            .into(),
    })
}

fn write_csr_db(c: &Ceremony, db: &CsrDb) -> Result<()> {
    let path = c.layout.csr_db(&db.target);
    Ok(dbs::write(
        &path,
        CSR_DB_FORMAT,
        &c.plan.id,
        c.plan.rehearsal,
        db,
        Sensitivity::Public,
    )?)
}

fn sa_key(db: &SaDb) -> Result<RsaPublicKey> {
    Ok(CertificateSection::decode(&db.sa_certificate)
        .map_err(format_err("sa.db: the SA certificate"))?
        .key)
}

/// Decode a certificate issued by SA and check it verifies under the SA key in `sa.db`.
fn verify_issued(
    c: &Ceremony,
    db: &SaDb,
    cert: &Certificate,
    what: &str,
) -> Result<CertificateSection> {
    let section = CertificateSection::decode(cert).map_err(format_err(what))?;
    section
        .verify(&c.plan.sa_label(), &sa_key(db)?)
        .map_err(|e| CeremonyError::Format {
            what: what.into(),
            detail: format!("does not verify under the SA key in sa.db: {e}"),
        })?;
    Ok(section)
}

// ----------------------------------------------------------------------------------------
// Shared steps
// ----------------------------------------------------------------------------------------

/// The node carries the plan's EID: set it when unset, refuse when different.
fn ensure_eid(
    c: &mut Ceremony,
    phase: Phase,
    node: &mut dyn Backend,
    plan: &PlanNode,
    report: &mut PhaseReport,
) -> Result<()> {
    let current = status(node, &plan.name)?.identity.eid;
    match current {
        Some(eid) if eid == plan.eid => {
            report.did(format!("EID {} (already set)", plan.eid));
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
            report.did(format!("EID {} ({})", plan.eid, applied_word(&a)));
            Ok(())
        }
    }
}

/// m-of-n, then the SA public key: hash first, then the key (dual control).
fn install_sa_key(
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
    report.did(format!("m-of-n {m_of_n} ({})", applied_word(&a)));
    if c.plan.dual_control {
        report.did(format!(
            "SA public key: registered under dual control, by two people: \
             `mkclone register-sa-hash --node {name} --operator NAME`, then \
             `mkclone register-sa-key --node {name} --operator NAME` (fingerprint {})",
            db.sa_hash.fingerprint()
        ));
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
    let sa_name = c.plan.sa_label();
    let hash = db.sa_hash.clone();
    let a = c.step(
        phase,
        name,
        Action::RegisterSaHash {
            clone: true,
            dual_control: false,
            fingerprint: hash.fingerprint(),
            name: sa_name.clone(),
        },
        || node.register_public_key_hash(&sa_name, &hash, true),
        Done::applied,
    )?;
    report.did(format!(
        "SA public-key hash registered, CLONE ({}): {}",
        applied_word(&a),
        hash.fingerprint()
    ));
    let cert = db.sa_certificate.clone();
    let a = c.step(
        phase,
        name,
        Action::RegisterSaKey {
            clone: true,
            dual_control: false,
            hash_registered_by: None,
            name: sa_name.clone(),
        },
        || node.register_public_key(&sa_name, &cert, true),
        Done::applied,
    )?;
    report.did(format!(
        "SA public key registered, CLONE, matching its hash ({})",
        applied_word(&a)
    ));
    Ok(())
}

/// An SA key already registered on `node` under the ceremony's name must be the pinned
/// one (sa.db's, checked against the anchor); another is refused with the way out.
fn check_registered_sa(c: &Ceremony, node: &mut dyn Backend, name: &str, db: &SaDb) -> Result<()> {
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

fn generate(
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
fn generate_announced(
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
    report.did(format!(
        "{role} key fingerprint (read it to the SA operator for phase {certified_at}): {}",
        key_fingerprint(token.value_ref())?
    ));
    let label = if role == KeyRole::Css {
        c.plan.css_label()
    } else {
        c.plan.csr_label()
    };
    report.did(format!("{role} key {label} ({})", applied_word(&token)));
    Ok(token.value())
}

fn certify(
    c: &mut Ceremony,
    phase: Phase,
    sa: &mut dyn Backend,
    subject: &PublicKeyToken,
    node: &PlanNode,
) -> Result<Certificate> {
    let label = c.plan.sa_label();
    let serial = PublicKeyTokenView::decode(subject)
        .map_err(format_err("public-key token"))?
        .certificate
        .and_then(|cert| cert.info.serial);
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

/// Check a node's identity against the plan (pinned serial, EID) before anything is
/// written; returns its status.
pub fn check_identity(plan: &PlanNode, node: &mut dyn Backend) -> Result<NodeStatus> {
    let st = status(node, &plan.name)?;
    if let Some(expected) = &plan.expect_serial
        && &st.identity.serial != expected
    {
        return Err(CeremonyError::IdentityMismatch {
            node: plan.name.clone(),
            what: "serial number",
            expected: expected.to_string(),
            actual: st.identity.serial.to_string(),
        });
    }
    if let Some(eid) = &st.identity.eid
        && eid != &plan.eid
    {
        return Err(CeremonyError::IdentityMismatch {
            node: plan.name.clone(),
            what: "EID",
            expected: plan.eid.to_string(),
            actual: eid.to_string(),
        });
    }
    Ok(st)
}

/// Start a phase on a node: identity first (nothing written before it passes), then the
/// journal's phase-start record with the node's status.
fn begin(
    c: &mut Ceremony,
    phase: Phase,
    plan_node: &PlanNode,
    node: &mut dyn Backend,
) -> Result<PhaseReport> {
    let st = check_identity(plan_node, node)?;
    c.check_journal_marks(&plan_node.name)?;
    c.note(phase, &plan_node.name, Note::PhaseStart {})?;
    c.note(phase, &plan_node.name, Note::NodeStatus(Box::new(st)))?;
    Ok(PhaseReport::new(phase, &plan_node.name))
}

fn end(c: &mut Ceremony, report: PhaseReport) -> Result<PhaseReport> {
    c.note(
        report.phase,
        &report.node,
        Note::PhaseDone {
            actions: report.actions.clone(),
        },
    )?;
    Ok(report)
}

// ----------------------------------------------------------------------------------------
// Phases
// ----------------------------------------------------------------------------------------

/// Phase 1, on the SA node: the SA key and `sa.db`.
pub fn phase1(c: &mut Ceremony, sa: &mut dyn Backend) -> Result<PhaseReport> {
    let plan_node = c.plan.sa.clone();
    // A pinned SA key must be the one this node holds: a fresh key could never match it.
    if let Some(pinned) = c.sa_anchor().cloned() {
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
    report.did(format!(
        "SA key {} ({})",
        c.plan.sa_label(),
        applied_word(&token)
    ));
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
            report.did("sa.db (already written)")
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
            c.stamp(&mut fresh, Phase::P1.name(), &plan_node.name)?;
            write_sa_db(c, &fresh)?;
            report.did("sa.db written");
        }
    }
    report.did(format!(
        "SA key fingerprint (compare in person): {}",
        sa_hash.fingerprint()
    ));
    report.did(format!(
        "pin it on every server: add this line to the [ceremony] table of the configuration \
         (or give it with --sa-fingerprint): {}",
        fingerprint.config_line()
    ));
    report.carry(
        c.layout.sa_db(),
        &c.plan.source.name,
        "phase 2a installs the SA key",
    );
    for t in &c.plan.targets {
        report.carry(c.layout.sa_db(), &t.name, "phase 3a installs the SA key");
    }
    end(c, report)
}

/// Phase 2a, on the source: EID, m-of-n, the SA key installed, the CSS key.
pub fn phase2a(c: &mut Ceremony, source: &mut dyn Backend) -> Result<PhaseReport> {
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
            report.did("CSS public key in sa.db (already)")
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
            c.stamp(&mut db, Phase::P2a.name(), &plan_node.name)?;
            write_sa_db(c, &db)?;
            report.did("CSS public key added to sa.db");
        }
    }
    report.carry(
        c.layout.sa_db(),
        &c.plan.sa.name,
        "phase 2b certifies the CSS key",
    );
    end(c, report)
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
    let hex: String = key
        .fingerprint()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    Ok(hex
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" "))
}

fn confirm_key(
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

/// Phase 2b, on the SA node: the CSS key certified into `sa.db`.
pub fn phase2b(
    c: &mut Ceremony,
    sa: &mut dyn Backend,
    confirmation: &KeyConfirmation,
) -> Result<PhaseReport> {
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
        report.did("CSS key certified (already)");
    } else {
        confirm_key(
            &css.public_key,
            confirmation,
            "sa.db: the CSS key",
            "phase 2a on the source",
            "--css-fingerprint",
        )?;
        report.did(format!(
            "CSS key fingerprint confirmed: {}",
            key_fingerprint(&css.public_key)?
        ));
        let plan_source = c.plan.source.clone();
        let cert = certify(c, Phase::P2b, sa, &css.public_key, &plan_source)?;
        verify_issued(c, &db, &cert, "the new CSS certificate")?;
        if let Some(entry) = db.css.as_mut() {
            entry.certificate = Some(cert);
        }
        c.stamp(&mut db, Phase::P2b.name(), &sa_plan.name)?;
        write_sa_db(c, &db)?;
        report.did("CSS key certified by SA into sa.db");
    }
    report.carry(
        c.layout.sa_db(),
        &c.plan.source.name,
        "phase 3c signs shares with the certified CSS key",
    );
    for t in &c.plan.targets {
        report.carry(
            c.layout.sa_db(),
            &t.name,
            "phase 3d checks shares against the CSS certificate",
        );
    }
    end(c, report)
}

fn plan_target(c: &Ceremony, target: &str) -> Result<PlanNode> {
    c.plan
        .target(target)
        .cloned()
        .ok_or_else(|| CeremonyError::NotInPlan {
            node: target.into(),
            role: "target",
        })
}

/// Phase 3a, on a target: EID, m-of-n, the SA key installed, the CSR key into its csr.db.
pub fn phase3a(
    c: &mut Ceremony,
    target_node: &mut dyn Backend,
    target: &str,
) -> Result<PhaseReport> {
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
            report.did(format!("{} (already written)", path.display()))
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
            c.stamp(&mut db, Phase::P3a.name(), target)?;
            write_csr_db(c, &db)?;
            report.did(format!("{} written", path.display()));
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
    let plan_node = plan_target(c, target)?;
    anchor_from_sa_node(c, sa)?;
    let sa_db = trusted_sa_db(c, "phase 3b")?;
    let mut db = trusted_csr_db(c, target)?;
    let sa_plan = c.plan.sa.clone();
    let mut report = begin(c, Phase::P3b, &sa_plan, sa)?;
    if let Some(cert) = &db.certificate {
        verify_issued(c, &sa_db, cert, "the CSR certificate")?;
        report.did(format!("CSR key of {target} certified (already)"));
    } else {
        confirm_key(
            &db.public_key,
            confirmation,
            &format!("{target}.csr.db: the CSR key"),
            &format!("phase 3a on {target}"),
            "--csr-fingerprint",
        )?;
        report.did(format!(
            "CSR key fingerprint of {target} confirmed: {}",
            key_fingerprint(&db.public_key)?
        ));
        let cert = certify(c, Phase::P3b, sa, &db.public_key, &plan_node)?;
        verify_issued(c, &sa_db, &cert, "the new CSR certificate")?;
        db.certificate = Some(cert);
        c.stamp(&mut db, Phase::P3b.name(), &sa_plan.name)?;
        write_csr_db(c, &db)?;
        report.did(format!("CSR key of {target} certified by SA"));
    }
    report.carry(
        c.layout.csr_db(target),
        &c.plan.source.name,
        "phase 3c seals shares for this CSR key",
    );
    end(c, report)
}

/// What phase 3c needs, checked all at once before any share leaves the source.
pub struct SourceReady {
    pub css_certificate: Certificate,
    pub csr_certificate: Certificate,
}

/// The preflight of phase 3c (and of `clone`, for every target): every problem at once.
pub fn preflight_source(
    c: &Ceremony,
    source: &mut dyn Backend,
    target: &str,
    problems: &mut Vec<Problem>,
) -> Option<SourceReady> {
    let src = c.plan.source.name.clone();
    let mut p = |node: &str, what: String| {
        problems.push(Problem {
            node: node.into(),
            what,
        })
    };
    let caps = source.capabilities();
    for op in caps.missing(Phase::P3c.needed_operations()) {
        p(&src, format!("the {} backend cannot {op}", caps.backend));
    }
    let sa_db = match trusted_sa_db(c, "phase 3c") {
        Ok(db) => Some(db),
        Err(e) => {
            p(&src, e.to_string());
            None
        }
    };
    let css_certificate = match sa_db
        .as_ref()
        .map(|db| db.css.as_ref().and_then(|css| css.certificate.clone()))
    {
        Some(Some(cert)) => Some(cert),
        Some(None) => {
            p(
                &src,
                "sa.db holds no certified CSS key: run phases 2a and 2b first".into(),
            );
            None
        }
        None => None,
    };
    let csr = match trusted_csr_db(c, target) {
        Ok(db) => Some(db),
        Err(e) => {
            p(target, e.to_string());
            None
        }
    };
    let mut csr_certificate = None;
    if let (Some(sa_db), Some(csr)) = (&sa_db, &csr) {
        match &csr.certificate {
            None => p(
                target,
                format!(
                    "{}.csr.db holds no certificate: run phase 3b on the SA node",
                    target
                ),
            ),
            Some(cert) => match verify_issued(c, sa_db, cert, "the CSR certificate") {
                Ok(section) => {
                    let planned = c.plan.target(target).map(|t| t.eid.clone());
                    if section.info.eid != planned {
                        p(
                            target,
                            format!(
                                "the CSR certificate names EID {:?}, the plan {:?}",
                                section.info.eid, planned
                            ),
                        );
                    }
                    csr_certificate = Some(cert.clone());
                }
                Err(e) => p(target, e.to_string()),
            },
        }
        if let Some(css) = &sa_db.css
            && let Some(cert) = &css.certificate
            && let Err(e) = verify_issued(c, sa_db, cert, "the CSS certificate")
        {
            p(&css.node, e.to_string());
        }
    }
    // The certified CSS key must be the one this source holds.
    if let Some(cert) = &css_certificate {
        let certified = CertificateSection::decode(cert).map(|s| s.key);
        match source.retained_public_key(&c.plan.css_label()) {
            Ok(Some(token)) => {
                let held = PublicKeyTokenView::decode(&token).map(|t| t.key);
                if let (Ok(a), Ok(b)) = (&certified, &held)
                    && a != b
                {
                    p(&src, "the CSS key certified in sa.db is not the one this source holds: sa.db comes from elsewhere".into());
                }
            }
            Ok(None) => p(
                &src,
                format!(
                    "the CSS key {} is not on this source: run phase 2a",
                    c.plan.css_label()
                ),
            ),
            Err(e) => p(&src, format!("cannot read the CSS key: {e}")),
        }
    }
    match source.status() {
        Err(e) => p(&src, format!("cannot read status: {e}")),
        Ok(st) => {
            if st.identity.eid.as_ref() != Some(&c.plan.source.eid) {
                p(
                    &src,
                    format!(
                        "EID is {:?}, the plan says {:?}",
                        st.identity.eid, c.plan.source.eid
                    ),
                );
            }
            for kind in &c.plan.kinds {
                match (current_pattern(&st, *kind), c.plan.source_pattern(*kind)) {
                    (None, _) => p(
                        &src,
                        format!(
                            "the {kind} CURRENT master-key register is not valid: there is nothing to clone"
                        ),
                    ),
                    (Some(current), Some(planned)) if &current != planned => p(
                        &src,
                        format!(
                            "the {kind} CURRENT master key is {current}, the plan's source_patterns say {planned}: \
                             this is not the key the plan clones"
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }
    match source.share_status() {
        Err(e) => p(&src, format!("cannot read share tables: {e}")),
        Ok(s) if s.m_of_n != Some(c.plan.m_of_n) => p(
            &src,
            format!(
                "m-of-n is {:?}, the plan says {}: run phase 2a",
                s.m_of_n.map(|x| x.to_string()),
                c.plan.m_of_n
            ),
        ),
        Ok(_) => {}
    }
    match source.list_registrations() {
        Err(e) => p(&src, format!("cannot list registrations: {e}")),
        Ok(list) => match list.iter().find(|r| r.name == c.plan.sa_label()) {
            None => p(
                &src,
                "the SA public key is not registered: run phase 2a".into(),
            ),
            Some(r) if r.key.is_none() => p(
                &src,
                "the SA public-key hash is registered but not the key: complete phase 2a".into(),
            ),
            Some(r) if !r.clone => p(
                &src,
                "the SA public key is registered without the CLONE mark".into(),
            ),
            Some(r) => {
                if let Some(db) = &sa_db
                    && r.hash != db.sa_hash
                {
                    p(&src, "the registered SA key is not the one in sa.db".into());
                }
            }
        },
    }
    Some(SourceReady {
        css_certificate: css_certificate?,
        csr_certificate: csr_certificate?,
    })
}

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
                    report.did(format!(
                        "{kind} share {index} for {target} (already obtained)"
                    ));
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
            c.stamp(&mut bundle, Phase::P3c.name(), &src.name)?;
            dbs::write(
                &path,
                BUNDLE_FORMAT,
                &c.plan.id,
                c.plan.rehearsal,
                &bundle,
                Sensitivity::Secret,
            )?;
            c.note(
                Phase::P3c,
                &src.name,
                Note::BundleWritten {
                    file: path.display().to_string(),
                },
            )?;
            report.did(format!("{kind} share {index} for {target} obtained"));
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

/// The bundles of one target and kind, checked.
/// Does the sealed header of `b` say what its JSON says, and name this CSR key?
fn sealed_for(
    b: &ShareBundle,
    csr_fingerprint: [u8; 32],
    kind: CloneableKind,
    index: mkclone_backend::ShareIndex,
) -> bool {
    match SealedShareParts::decode(&b.sealed) {
        Ok(parts) => {
            let h = &parts.header;
            h.csr_fingerprint == csr_fingerprint
                && h.kind == kind
                && h.index == index
                && h.target_eid == b.target_eid
        }
        Err(_) => false,
    }
}

fn bundles(
    c: &Ceremony,
    target: &str,
    kind: CloneableKind,
    problems: &mut Vec<Problem>,
) -> Vec<ShareBundle> {
    let mut out = Vec::new();
    let mut problem = |what: String| {
        problems.push(Problem {
            node: target.into(),
            what,
        })
    };
    let Some(plan_node) = c.plan.target(target).cloned() else {
        problem(format!("{target} is not a target of the plan"));
        return out;
    };
    for index in &c.plan.share_indices {
        let path = c.layout.bundle(target, kind, *index);
        match dbs::read_optional::<ShareBundle>(&path, BUNDLE_FORMAT, &c.plan) {
            Ok(Some(b)) => match check_nonce(c, &path, &b.provenance)
                .and_then(|()| trust::check_bundle(&c.plan, &plan_node, kind, *index, &b))
            {
                Ok(()) => out.push(b),
                Err(e) => problem(e.to_string()),
            },
            Ok(None) => problem(format!(
                "{} is missing: run phase 3c on the source and carry the shares here",
                path.display()
            )),
            Err(e) => problem(e.to_string()),
        }
    }
    if let Some(first) = out.first()
        && out.iter().any(|b| b.source_pattern != first.source_pattern)
    {
        problem(format!(
            "the {kind} bundles come from different source keys"
        ));
    }
    out
}

/// The preflight of phase 3d: every problem at once.
pub fn preflight_target(
    c: &Ceremony,
    node: &mut dyn Backend,
    target: &str,
    problems: &mut Vec<Problem>,
) -> Option<Certificate> {
    let mut p = |what: String| {
        problems.push(Problem {
            node: target.into(),
            what,
        })
    };
    let caps = node.capabilities();
    for op in caps.missing(Phase::P3d.needed_operations()) {
        p(format!("the {} backend cannot {op}", caps.backend));
    }
    let sa_db = trusted_sa_db(c, "phase 3d");
    let sa_hash = sa_db.as_ref().ok().map(|db| db.sa_hash.clone());
    let css_cert = match sa_db {
        Err(e) => {
            p(e.to_string());
            None
        }
        Ok(db) => match db.css.as_ref().and_then(|css| css.certificate.clone()) {
            None => {
                p("sa.db holds no certified CSS key: carry the sa.db of phase 2b here".into());
                None
            }
            Some(cert) => match verify_issued(c, &db, &cert, "the CSS certificate") {
                Ok(_) => Some(cert),
                Err(e) => {
                    p(e.to_string());
                    None
                }
            },
        },
    };
    let plan = c.plan.target(target).cloned();
    match node.status() {
        Err(e) => p(format!("cannot read status: {e}")),
        Ok(st) => {
            if st.identity.eid.as_ref() != plan.as_ref().map(|t| &t.eid) {
                p(format!(
                    "EID is {:?}, the plan says {:?}",
                    st.identity.eid,
                    plan.map(|t| t.eid)
                ));
            }
            for kind in &c.plan.kinds {
                let reg = st.register(kind.kind());
                if let Some(reg) = reg
                    && reg.new == NewState::Partial
                {
                    p(format!(
                        "the {kind} NEW register is partially loaded: clear it first"
                    ));
                }
            }
        }
    }
    match node.share_status() {
        Err(e) => p(format!("cannot read share tables: {e}")),
        Ok(s) if s.m_of_n != Some(c.plan.m_of_n) => p(format!(
            "m-of-n is {:?}, the plan says {}: run phase 3a",
            s.m_of_n.map(|x| x.to_string()),
            c.plan.m_of_n
        )),
        Ok(_) => {}
    }
    match node.list_registrations() {
        Err(e) => p(format!("cannot list registrations: {e}")),
        Ok(list) => match list.iter().find(|r| r.name == c.plan.sa_label()) {
            Some(r) if sa_hash.as_ref().is_some_and(|h| &r.hash != h) => p(format!(
                "the SA key registered here ({}) is not the pinned one: remove it with \
                 `mkclone abort --target {target} --unregister-sa` and register the pinned key",
                r.hash.fingerprint()
            )),
            Some(r) if r.key.is_some() && r.clone => {}
            Some(_) => p(
                "the SA public key is not fully registered with CLONE: complete phase 3a".into(),
            ),
            None => p("the SA public key is not registered: run phase 3a".into()),
        },
    }
    css_cert
}

/// The pattern this journal recorded as confirmed for a target's master key (the NEW
/// pattern checked before SET), if any: how a rerun recognizes a SET it already made.
fn confirmed_in_journal(
    c: &Ceremony,
    target: &str,
    kind: CloneableKind,
) -> Option<VerificationPattern> {
    c.journal()
        .records()
        .iter()
        .rev()
        .filter(|r| r.node == target)
        .find_map(|r| match r.note() {
            Some(Note::Confirmed {
                kind: k, pattern, ..
            }) if k == kind => Some(pattern),
            _ => None,
        })
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
                    problems.push(Problem {
                        node: target.into(),
                        what: format!(
                            "the {} share {} is sealed to another CSR key than this target's: it came from another run of phase 3c",
                            b.kind, b.index
                        ),
                    });
                }
            }
        }
    }
    // What the target confirms NEW against: the plan's pattern, or the pattern signed
    // inside the shares, which only a device that checks it vouches for.
    let authority = if c
        .plan
        .kinds
        .iter()
        .all(|k| c.plan.source_pattern(*k).is_some())
    {
        PatternAuthority::Plan
    } else {
        if !node.capabilities().install_checks_signed_pattern {
            problems.push(Problem {
                node: target.into(),
                what: format!(
                    "the {} backend does not report checking the rebuilt key against the source's signed pattern, \
                     so NEW cannot be confirmed from the shares: add source_patterns to the plan (the source's \
                     operator reads them from `mkclone status {}`)",
                    node.capabilities().backend,
                    c.plan.source.name
                ),
            });
        }
        PatternAuthority::SignedShares
    };
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
                problems.push(Problem {
                    node: target.into(),
                    what: format!(
                        "the {kind} NEW register holds another key ({new}); clear it first"
                    ),
                });
            }
            // The overwrite guard: SET would turn a valid, different CURRENT into OLD.
            if let (Some(current), Some(incoming)) = (current_pattern(&st, *kind), &incoming)
                && &current != incoming
                && !c.replace_current()
            {
                problems.push(Problem {
                    node: target.into(),
                    what: format!(
                        "the {kind} CURRENT register holds another valid key ({current}): SET would make it OLD \
                         and destroy the OLD key. Keys enciphered under it must be re-enciphered afterwards; \
                         rerun with --replace-current if that is intended"
                    ),
                });
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
        let st = status(node, target)?;
        // A SET an earlier run made: CURRENT holds the key this journal confirmed (or the
        // plan names), NEW is empty. The bundles' own claim is never enough.
        let known = match authority {
            PatternAuthority::Plan => Some(expected.clone()),
            PatternAuthority::SignedShares => confirmed_in_journal(c, target, kind),
        };
        if new_pattern(&st, kind).is_none()
            && let Some(current) = current_pattern(&st, kind)
            && known.as_ref() == Some(&current)
        {
            report.did(format!(
                "{kind}: CURRENT already equals the source's ({current}; confirmed by the {})",
                if authority == PatternAuthority::Plan {
                    "plan"
                } else {
                    "journal of this ceremony"
                }
            ));
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
            report.did(format!(
                "{kind} share {} installed ({})",
                b.index,
                applied_word(&progress)
            ));
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
        report.did(format!(
            "{kind}: NEW confirmed equal to the source's CURRENT ({new}; {})",
            match authority {
                PatternAuthority::Plan => "the plan's source_patterns",
                PatternAuthority::SignedShares =>
                    "the pattern the source's CSS key signed in every share, checked by this device",
            }
        ));
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
            report.did(format!(
                "{kind}: CURRENT {current} becomes OLD (--replace-current): re-encipher the keys enciphered under it"
            ));
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
        report.did(format!("{kind}: SET; CURRENT = {incoming}"));
    }
    end(c, report)
}

// ----------------------------------------------------------------------------------------
// Dual control: the SA key registered by two commands, two people
// ----------------------------------------------------------------------------------------

fn dual_control_node(c: &Ceremony, node_name: &str) -> Result<PlanNode> {
    let plan = &c.plan;
    std::iter::once(&plan.source)
        .chain(plan.targets.iter())
        .find(|n| n.name == node_name)
        .cloned()
        .ok_or_else(|| CeremonyError::NotInPlan {
            node: node_name.into(),
            role: "source or target",
        })
}

/// Start a dual-control step: the operator is recorded, the phase (2a on the source, 3a on
/// a target) begins, and the SA key's fingerprint is shown for comparison in person.
fn dual_control_begin(
    c: &mut Ceremony,
    node: &mut dyn Backend,
    plan_node: &PlanNode,
    operator: &str,
    db: &SaDb,
) -> Result<(Phase, PhaseReport)> {
    c.set_operator(Some(operator.to_string()));
    let phase = if plan_node.name == c.plan.source.name {
        Phase::P2a
    } else {
        Phase::P3a
    };
    let mut report = begin(c, phase, plan_node, node)?;
    report.did(format!(
        "SA key fingerprint to compare in person: {}",
        db.sa_hash.fingerprint()
    ));
    Ok((phase, report))
}

fn require_operator(operator: &str) -> Result<()> {
    if operator.trim().is_empty() {
        return Err(CeremonyError::DualControl(
            "dual control: say who you are with --operator NAME; it is recorded in the journal"
                .into(),
        ));
    }
    Ok(())
}

/// Dual control, step 1 (one person): register the SA public key's hash on `node`.
pub fn register_sa_hash(
    c: &mut Ceremony,
    node: &mut dyn Backend,
    node_name: &str,
    operator: &str,
) -> Result<PhaseReport> {
    require_operator(operator)?;
    let plan_node = dual_control_node(c, node_name)?;
    let db = trusted_sa_db(c, "register-sa-hash")?;
    let (phase, mut report) = dual_control_begin(c, node, &plan_node, operator, &db)?;
    check_registered_sa(c, node, node_name, &db)?;
    let sa_name = c.plan.sa_label();
    let hash = db.sa_hash.clone();
    let a = c.step(
        phase,
        node_name,
        Action::RegisterSaHash {
            clone: true,
            dual_control: true,
            fingerprint: hash.fingerprint(),
            name: sa_name.clone(),
        },
        || node.register_public_key_hash(&sa_name, &hash, true),
        Done::applied,
    )?;
    report.did(format!(
        "SA public-key hash registered by {operator}, CLONE ({})",
        applied_word(&a)
    ));
    report.did(
        "next: a second person registers the key itself with `mkclone register-sa-key`".to_string(),
    );
    end(c, report)
}

/// Dual control, step 2 (a second person): register the SA public key itself on `node`;
/// the node checks it matches the hash registered in step 1.
pub fn register_sa_key(
    c: &mut Ceremony,
    node: &mut dyn Backend,
    node_name: &str,
    operator: &str,
) -> Result<PhaseReport> {
    require_operator(operator)?;
    let plan_node = dual_control_node(c, node_name)?;
    let db = trusted_sa_db(c, "register-sa-key")?;
    // Who registered the hash here (a successful outcome, with a name)? Dual control means
    // another person registers the key; names are compared trimmed and case-folded.
    let normal = |s: &str| s.trim().to_lowercase();
    let records = c.journal().records();
    let hash_by = records
        .iter()
        .rev()
        .filter(|r| r.node == node_name)
        .find(|r| {
            r.outcome().is_some_and(|o| {
                o.ok()
                    && records.iter().any(|i| {
                        i.seq == o.intent
                            && matches!(i.action(), Some(Action::RegisterSaHash { .. }))
                    })
            })
        })
        .and_then(|r| r.operator.clone());
    let Some(hash_by) = hash_by else {
        return Err(CeremonyError::DualControl(format!(
            "dual control: this ceremony's journal does not show who registered the SA key's hash on {node_name}. \
             The person who did runs `mkclone register-sa-hash --node {node_name} --operator NAME` here (it is \
             already done on the node, so only the name is recorded), then a second person registers the key"
        )));
    };
    if normal(&hash_by) == normal(operator) {
        return Err(CeremonyError::DualControl(format!(
            "dual control: {operator} registered the SA key's hash on {node_name}; the key must be registered by someone else"
        )));
    }
    let (phase, mut report) = dual_control_begin(c, node, &plan_node, operator, &db)?;
    let sa_name = c.plan.sa_label();
    let cert = db.sa_certificate.clone();
    let a = c.step(
        phase,
        node_name,
        Action::RegisterSaKey {
            clone: true,
            dual_control: true,
            hash_registered_by: Some(hash_by.clone()),
            name: sa_name.clone(),
        },
        || node.register_public_key(&sa_name, &cert, true),
        Done::applied,
    )?;
    report.did(format!(
        "SA public key registered by {operator}, CLONE, matching its hash ({})",
        applied_word(&a)
    ));
    end(c, report)
}

/// The overwrite guard, before any share leaves the source: a target whose CURRENT holds
/// a valid key other than the source's would lose it to OLD at SET.
pub fn overwrite_guard(
    c: &Ceremony,
    source: &NodeStatus,
    target: &NodeStatus,
    target_name: &str,
    problems: &mut Vec<Problem>,
) {
    if c.replace_current() {
        return;
    }
    for kind in &c.plan.kinds {
        if let (Some(cur), Some(src)) = (
            current_pattern(target, *kind),
            current_pattern(source, *kind),
        ) && cur != src
        {
            problems.push(Problem {
                node: target_name.into(),
                what: format!(
                    "the {kind} CURRENT register holds another valid key ({cur}): SET would make it OLD and destroy \
                     the OLD key; keys enciphered under it must then be re-enciphered. Use --replace-current if intended"
                ),
            });
        }
    }
}
