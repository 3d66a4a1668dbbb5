//! What the ceremony files say: sa.db, the csr.db files and the share bundles.

use super::*;
use crate::phase::Phase;

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

// ----------------------------------------------------------------------------------------
// Files
// ----------------------------------------------------------------------------------------

pub(super) fn sa_key_of(db: &SaDb) -> Option<RsaPublicKey> {
    CertificateSection::decode(&db.sa_certificate)
        .ok()
        .map(|s| s.key)
}

/// Fingerprint of a public-key token's self-signed certificate section.
pub(super) fn token_fingerprint(token: &PublicKeyToken) -> Option<String> {
    let section = PublicKeyTokenView::decode(token).ok()?.certificate?;
    registration_hash(&section).ok().map(|h| h.fingerprint())
}

/// Whether `cert` verifies under the SA key; Err(reason) when it does not.
pub(super) fn verify_cert(
    plan: &Plan,
    sa: Option<&RsaPublicKey>,
    cert: &Certificate,
) -> Option<Result<(), String>> {
    let sa = sa?;
    Some(match CertificateSection::decode(cert) {
        Err(e) => Err(format!("the certificate is malformed: {e}")),
        Ok(section) => section
            .verify(&plan.sa_label(), sa)
            .map_err(|e| e.to_string()),
    })
}

/// What a CSS or CSR key's certification is checked against.
pub(super) struct Certification<'a> {
    /// "the CSR key of target1", for `missing`.
    pub(super) what: String,
    /// The phase that certifies it ("phase 3b on sa").
    pub(super) step: String,
    /// The record of a journal where the SA certified it, if any.
    pub(super) recorded: Option<String>,
    pub(super) missing: &'a mut Vec<Finding>,
}

/// A CSS or CSR key as its file holds it: `who` (role, node, file), `key` (its public-key
/// token and the SA's certificate, if any). A missing or failing certificate is added to
/// the missing steps, unless (missing) a journal records the SA certifying the key: the
/// certified copy of the file is then on another server, as in a ceremony whose nodes sit
/// in different servers.
pub(super) fn certified_key(
    plan: &Plan,
    sa: Option<&RsaPublicKey>,
    who: (KeyRole, &str, String),
    key: (&PublicKeyToken, Option<&Certificate>),
    c: Certification<'_>,
) -> KeyView {
    let (role, node, file) = who;
    let finding = |kind: &'static str, text: String| {
        Finding::new(kind, text)
            .node(node)
            .key(role)
            .file(file.clone())
    };
    let (token, cert) = key;
    let Certification {
        what,
        step: missing_step,
        recorded,
        missing,
    } = c;
    let (state, certified, verified) = match (cert, recorded) {
        (None, Some(record)) => (
            format!(
                "public key present; the SA certified it (record {record}), this copy of the \
                 file predates that"
            ),
            true,
            None,
        ),
        (None, None) => {
            missing.push(finding(
                "not-certified",
                format!("{what}: not certified yet ({missing_step})"),
            ));
            ("public key present, not certified yet".into(), false, None)
        }
        (Some(cert), _) => match verify_cert(plan, sa, cert) {
            None => (
                "certified (not checked: the SA key is not readable)".into(),
                true,
                None,
            ),
            Some(Ok(())) => (
                "certified; the certificate verifies under the SA key of sa.db".into(),
                true,
                Some(true),
            ),
            Some(Err(why)) => {
                missing.push(finding(
                    "certificate-invalid",
                    format!("{what}: the certificate does not verify ({why})"),
                ));
                (
                    format!(
                        "certified, but the certificate does NOT verify under the SA key: {why}"
                    ),
                    true,
                    Some(false),
                )
            }
        },
    };
    KeyView {
        role,
        node: node.to_string(),
        file,
        state,
        fingerprint: token_fingerprint(token),
        certified,
        verified,
    }
}

pub(super) fn keys(
    layout: &Layout,
    plan: &Plan,
    (timeline, single): (&[TimelineEntry], bool),
    missing: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) -> (Vec<KeyView>, Option<String>) {
    let mut out = Vec::new();
    // A key no file vouches for (absent, unreadable, erased): no fingerprint, not certified.
    let absent = |role: KeyRole, node: &str, file: &str, state: String| KeyView {
        role,
        node: node.to_string(),
        file: file.to_string(),
        state,
        fingerprint: None,
        certified: false,
        verified: None,
    };
    let db = match dbs::read_optional::<SaDb>(&layout.sa_db(), SA_DB_FORMAT, plan) {
        Ok(Some(db)) => Some(db),
        Ok(None) => {
            missing.push(key_missing(
                (KeyRole::Sa, &plan.sa.name, "sa.db"),
                Phase::P1,
                format!("sa.db: the SA key (phase 1 on {})", plan.sa.name),
            ));
            out.push(absent(KeyRole::Sa, &plan.sa.name, "sa.db", "absent".into()));
            None
        }
        Err(e) => {
            warnings.push(unreadable(&e, e.to_string()));
            missing.push(Finding::new("file-unreadable", "a readable sa.db").file("sa.db"));
            out.push(absent(
                KeyRole::Sa,
                &plan.sa.name,
                "sa.db",
                format!("unreadable: {e}"),
            ));
            None
        }
    };
    let sa_key = db.as_ref().and_then(sa_key_of);
    // The SA's certification of `node`'s key, as a journal recorded it.
    let certified = |node: &str| {
        actions(
            timeline,
            |a| matches!(a, Action::Certify { subject, .. } if subject == node),
        )
        .find(|e| e.ok())
        .map(|e| record_name(&e.journal, e.seq, single))
    };
    let fingerprint = db.as_ref().map(|db| db.sa_hash.fingerprint());
    if let Some(db) = &db {
        out.push(KeyView {
            role: KeyRole::Sa,
            node: db.sa_node.clone(),
            file: "sa.db".into(),
            state: if sa_key.is_some() {
                format!("present (self-signed, EID {})", db.sa_eid)
            } else {
                "present, but its certificate cannot be decoded".into()
            },
            fingerprint: fingerprint.clone(),
            certified: true,
            verified: None,
        });
    }
    match db.as_ref().and_then(|db| db.css.as_ref()) {
        None => {
            missing.push(key_missing(
                (KeyRole::Css, &plan.source.name, "sa.db"),
                Phase::P2a,
                format!("the CSS key in sa.db (phase 2a on {})", plan.source.name),
            ));
            out.push(absent(
                KeyRole::Css,
                &plan.source.name,
                "sa.db",
                "absent".into(),
            ));
        }
        Some(css) => out.push(certified_key(
            plan,
            sa_key.as_ref(),
            (KeyRole::Css, &css.node, "sa.db".into()),
            (&css.public_key, css.certificate.as_ref()),
            Certification {
                what: "the CSS key".into(),
                step: format!("phase 2b on {}", plan.sa.name),
                recorded: certified(&css.node),
                missing,
            },
        )),
    }
    for t in &plan.targets {
        let path = layout.csr_db(&t.name);
        let file = file_name(&path);
        match dbs::read_optional::<CsrDb>(&path, CSR_DB_FORMAT, plan) {
            Err(e) => {
                warnings.push(unreadable(&e, e.to_string()));
                missing.push(
                    Finding::new("file-unreadable", format!("a readable {file}"))
                        .node(&t.name)
                        .file(file.clone()),
                );
                out.push(absent(
                    KeyRole::Csr,
                    &t.name,
                    &file,
                    format!("unreadable: {e}"),
                ));
            }
            Ok(None) => {
                // Erased by the clean-up after 3d or by an abort: recorded, not missing.
                let state = match erased(timeline, &path) {
                    Some(e) => erased_text(e, single),
                    None => {
                        missing.push(key_missing(
                            (KeyRole::Csr, &t.name, &file),
                            Phase::P3a,
                            format!("{file}: the CSR key of {} (phase 3a on {})", t.name, t.name),
                        ));
                        "absent".into()
                    }
                };
                out.push(absent(KeyRole::Csr, &t.name, &file, state));
            }
            Ok(Some(db)) => out.push(certified_key(
                plan,
                sa_key.as_ref(),
                (KeyRole::Csr, &db.target, file),
                (&db.public_key, db.certificate.as_ref()),
                Certification {
                    what: format!("the CSR key of {}", t.name),
                    step: format!("phase 3b on {}", plan.sa.name),
                    recorded: certified(&db.target),
                    missing,
                },
            )),
        }
    }
    (out, fingerprint)
}

/// Every readable share bundle in `shares/`; unreadable ones become warnings that start
/// with their path.
pub(super) fn bundles(
    layout: &Layout,
    plan: &Plan,
    warnings: &mut Vec<Finding>,
) -> Vec<(PathBuf, ShareBundle)> {
    let dir = layout.shares_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "share"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        match dbs::read_optional::<ShareBundle>(&path, BUNDLE_FORMAT, plan) {
            Ok(Some(b)) => out.push((path, b)),
            Ok(None) => {}
            Err(e) => warnings.push(
                unreadable(&e, format!("{}: unreadable: {e}", path.display()))
                    .file(path.display().to_string()),
            ),
        }
    }
    out
}

/// The reason an expected bundle could not be read, if `bundles` reported one.
pub(super) fn bundle_problem(path: &Path, warnings: &[Finding]) -> Option<String> {
    let path = path.display().to_string();
    warnings
        .iter()
        .find(|w| w.kind == "file-unreadable" && w.file.as_deref() == Some(path.as_str()))
        .map(|_| "present but unreadable (see the warnings)".to_string())
}

/// The finding that the `role` key of `node` is not in `file`, where `phase` puts it
/// (`what` as the page says it).
fn key_missing((role, node, file): (KeyRole, &str, &str), phase: Phase, what: String) -> Finding {
    Finding::new("key-missing", what)
        .key(role)
        .node(node)
        .phase(phase)
        .file(file)
}

/// The warning that a ceremony file cannot be read (`what` as the page says it).
fn unreadable(e: &crate::error::FileError, what: String) -> Finding {
    let finding = Finding::new("file-unreadable", what);
    match e.path() {
        Some(path) => finding.file(path.display().to_string()),
        None => finding,
    }
}
