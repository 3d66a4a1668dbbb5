//! What the ceremony files say: the journal (verified, and whether end to end), sa.db,
//! the csr.db files and the share bundles.

use super::*;

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// What keeps the chain from being verified end to end: journal marks that files carry for
/// the nodes whose phases ran in this journal but that it lacks, and accepted losses.
pub(super) fn chain_gaps(
    layout: &Layout,
    plan: &Plan,
    records: &[Record],
    head: Option<&str>,
) -> Vec<String> {
    let local: Vec<&str> = records
        .iter()
        .filter(|r| matches!(r.note(), Some(Note::PhaseStart {})))
        .map(|r| r.node.as_str())
        .collect();
    let chain = Chain {
        records,
        head: head.unwrap_or(journal::GENESIS_PREV),
    };
    let files = crate::dbs::carried_files(layout, plan);
    let mut gaps: Vec<String> = chain
        .missing(&files, |n| local.contains(&n))
        .into_iter()
        .map(|(file, node, mark)| {
            format!(
                "{}: record {} of this journal (phase {} on {node}) is not in it",
                file_name(Path::new(file)),
                mark.seq,
                mark.phase
            )
        })
        .collect();
    for r in records {
        let Some(Note::JournalLossAccepted { marks, .. }) = r.note() else {
            continue;
        };
        let count = marks.len();
        gaps.push(format!(
            "lost records accepted at record {} by {} at {} ({count} file mark(s) of {})",
            r.seq,
            r.operator.as_deref().unwrap_or("an unnamed operator"),
            r.time,
            r.node
        ));
    }
    gaps
}

/// Read and verify the journal's bytes; an unverifiable journal is read leniently.
pub(super) fn read_journal(
    layout: &Layout,
    plan: &Plan,
) -> Result<(JournalView, Vec<Record>), CeremonyError> {
    let path = layout.journal();
    let bytes = match crate::envelope::read_bytes(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Ok((
                JournalView {
                    file: path,
                    present: false,
                    records: 0,
                    head_hash: None,
                    verified: false,
                    problem: Some("there is no journal: no phase has run in this directory".into()),
                    torn_tail_bytes: None,
                    end_to_end: false,
                    gaps: Vec::new(),
                },
                Vec::new(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(
        match journal::verify(&path, &bytes, Some(&plan.id), Some(plan.rehearsal)) {
            Ok(v) => (
                JournalView {
                    file: path,
                    present: true,
                    records: v.records.len(),
                    head_hash: Some(v.head_hash),
                    verified: true,
                    problem: None,
                    torn_tail_bytes: v.torn_tail,
                    end_to_end: false,
                    gaps: Vec::new(),
                },
                v.records,
            ),
            Err(e) => {
                let records: Vec<Record> = bytes
                    .split(|&b| b == b'\n')
                    .filter_map(|line| serde_json::from_slice::<Record>(line).ok())
                    .collect();
                (
                    JournalView {
                        file: path,
                        present: true,
                        records: records.len(),
                        head_hash: None,
                        verified: false,
                        problem: Some(e.to_string()),
                        torn_tail_bytes: None,
                        end_to_end: false,
                        gaps: Vec::new(),
                    },
                    records,
                )
            }
        },
    )
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

pub(super) fn certified_state(
    plan: &Plan,
    sa: Option<&RsaPublicKey>,
    cert: Option<&Certificate>,
    missing_step: String,
    missing: &mut Vec<String>,
    what: &str,
) -> (String, bool, Option<bool>) {
    match cert {
        None => {
            missing.push(format!("{what}: not certified yet ({missing_step})"));
            ("public key present, not certified yet".into(), false, None)
        }
        Some(cert) => match verify_cert(plan, sa, cert) {
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
                missing.push(format!("{what}: the certificate does not verify ({why})"));
                (
                    format!(
                        "certified, but the certificate does NOT verify under the SA key: {why}"
                    ),
                    true,
                    Some(false),
                )
            }
        },
    }
}

pub(super) fn keys(
    layout: &Layout,
    plan: &Plan,
    timeline: &[TimelineEntry],
    missing: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> (Vec<KeyView>, Option<String>) {
    let mut out = Vec::new();
    // A key no file vouches for (absent, unreadable, erased): no fingerprint, not certified.
    let absent = |role: &'static str, node: &str, file: String, state: String| KeyView {
        role,
        node: node.to_string(),
        file,
        state,
        fingerprint: None,
        certified: false,
        verified: None,
    };
    let db = match dbs::read_optional::<SaDb>(&layout.sa_db(), SA_DB_FORMAT, plan) {
        Ok(Some(db)) => Some(db),
        Ok(None) => {
            missing.push(format!("sa.db: the SA key (phase 1 on {})", plan.sa.name));
            out.push(absent("SA", &plan.sa.name, "sa.db".into(), "absent".into()));
            None
        }
        Err(e) => {
            warnings.push(e.to_string());
            missing.push("a readable sa.db".into());
            out.push(absent(
                "SA",
                &plan.sa.name,
                "sa.db".into(),
                format!("unreadable: {e}"),
            ));
            None
        }
    };
    let sa_key = db.as_ref().and_then(sa_key_of);
    let fingerprint = db.as_ref().map(|db| db.sa_hash.fingerprint());
    if let Some(db) = &db {
        out.push(KeyView {
            role: "SA",
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
            missing.push(format!(
                "the CSS key in sa.db (phase 2a on {})",
                plan.source.name
            ));
            out.push(absent(
                "CSS",
                &plan.source.name,
                "sa.db".into(),
                "absent".into(),
            ));
        }
        Some(css) => {
            let (state, certified, verified) = certified_state(
                plan,
                sa_key.as_ref(),
                css.certificate.as_ref(),
                format!("phase 2b on {}", plan.sa.name),
                missing,
                "the CSS key",
            );
            out.push(KeyView {
                role: "CSS",
                node: css.node.clone(),
                file: "sa.db".into(),
                state,
                fingerprint: token_fingerprint(&css.public_key),
                certified,
                verified,
            });
        }
    }
    for t in &plan.targets {
        let path = layout.csr_db(&t.name);
        let file = file_name(&path);
        match dbs::read_optional::<CsrDb>(&path, CSR_DB_FORMAT, plan) {
            Err(e) => {
                warnings.push(e.to_string());
                missing.push(format!("a readable {file}"));
                out.push(absent("CSR", &t.name, file, format!("unreadable: {e}")));
            }
            Ok(None) => {
                // Erased by the clean-up after 3d or by an abort: recorded, not missing.
                let state = match erased(timeline, &path) {
                    Some(e) => format!("erased (record {}, {})", e.seq, e.time),
                    None => {
                        missing.push(format!(
                            "{file}: the CSR key of {} (phase 3a on {})",
                            t.name, t.name
                        ));
                        "absent".into()
                    }
                };
                out.push(absent("CSR", &t.name, file, state));
            }
            Ok(Some(db)) => {
                let (state, certified, verified) = certified_state(
                    plan,
                    sa_key.as_ref(),
                    db.certificate.as_ref(),
                    format!("phase 3b on {}", plan.sa.name),
                    missing,
                    &format!("the CSR key of {}", t.name),
                );
                out.push(KeyView {
                    role: "CSR",
                    node: db.target.clone(),
                    file,
                    state,
                    fingerprint: token_fingerprint(&db.public_key),
                    certified,
                    verified,
                });
            }
        }
    }
    (out, fingerprint)
}

/// Every readable share bundle in `shares/`; unreadable ones become warnings that start
/// with their path.
pub(super) fn bundles(
    layout: &Layout,
    plan: &Plan,
    warnings: &mut Vec<String>,
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
            Err(e) => warnings.push(format!("{}: unreadable: {e}", path.display())),
        }
    }
    out
}

/// The reason an expected bundle could not be read, if `bundles` reported one.
pub(super) fn bundle_problem(path: &Path, warnings: &[String]) -> Option<String> {
    let prefix = format!("{}: ", path.display());
    warnings
        .iter()
        .find(|w| w.starts_with(&prefix))
        .map(|_| "present but unreadable (see the warnings)".to_string())
}
