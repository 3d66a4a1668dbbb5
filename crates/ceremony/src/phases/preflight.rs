//! The preflights of phases 3c and 3d (and of `clone`): every problem at once, nothing
//! changed.

use super::*;

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
    let mut p = |problem: Problem| problems.push(problem);
    for problem in capability_problems(&src, source, Phase::P3c) {
        p(problem);
    }
    let sa_db = match trusted_sa_db(c, "phase 3c") {
        Ok(db) => Some(db),
        Err(e) => {
            p(Problem::error(&src, &e));
            None
        }
    };
    let css_certificate = match sa_db
        .as_ref()
        .map(|db| db.css.as_ref().and_then(|css| css.certificate.clone()))
    {
        Some(Some(cert)) => Some(cert),
        Some(None) => {
            p(Problem::new(
                &src,
                "not-certified",
                "sa.db holds no certified CSS key: run phases 2a and 2b first",
            )
            .with_file(c.layout.sa_db().display().to_string()));
            None
        }
        None => None,
    };
    let csr = match trusted_csr_db(c, target) {
        Ok(db) => Some(db),
        Err(e) => {
            p(Problem::error(target, &e));
            None
        }
    };
    let mut csr_certificate = None;
    if let (Some(sa_db), Some(csr)) = (&sa_db, &csr) {
        match &csr.certificate {
            None => p(Problem::new(
                target,
                "not-certified",
                format!("{target}.csr.db holds no certificate: run phase 3b on the SA node"),
            )
            .with_file(c.layout.csr_db(target).display().to_string())),
            Some(cert) => match verify_issued(c, sa_db, cert, "the CSR certificate") {
                Ok(section) => {
                    let planned = c.plan.target(target).map(|t| t.eid.clone());
                    if section.info.eid != planned {
                        p(Problem::new(
                            target,
                            "identity-mismatch",
                            format!(
                                "the CSR certificate names EID {:?}, the plan {:?}",
                                section.info.eid, planned
                            ),
                        )
                        .with_file(c.layout.csr_db(target).display().to_string()));
                    }
                    csr_certificate = Some(cert.clone());
                }
                Err(e) => p(Problem::error(target, &e)),
            },
        }
        if let Some(css) = &sa_db.css
            && let Some(cert) = &css.certificate
            && let Err(e) = verify_issued(c, sa_db, cert, "the CSS certificate")
        {
            p(Problem::error(&css.node, &e));
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
                    p(Problem::new(&src, "key-mismatch", "the CSS key certified in sa.db is not the one this source holds: sa.db comes from elsewhere")
                        .with_file(c.layout.sa_db().display().to_string()));
                }
            }
            Ok(None) => p(Problem::new(
                &src,
                "key-missing",
                format!(
                    "the CSS key {} is not on this source: run phase 2a",
                    c.plan.css_label()
                ),
            )),
            Err(e) => p(Problem::new(
                &src,
                "node",
                format!("cannot read the CSS key: {e}"),
            )),
        }
    }
    match source.status() {
        Err(e) => p(Problem::new(
            &src,
            "node",
            format!("cannot read status: {e}"),
        )),
        Ok(st) => {
            if st.identity.eid.as_ref() != Some(&c.plan.source.eid) {
                p(Problem::new(
                    &src,
                    "identity-mismatch",
                    format!(
                        "EID is {:?}, the plan says {:?}",
                        st.identity.eid, c.plan.source.eid
                    ),
                ));
            }
            for kind in &c.plan.kinds {
                match (current_pattern(&st, *kind), c.plan.source_pattern(*kind)) {
                    (None, _) => p(Problem::new(
                        &src,
                        "register-not-valid",
                        format!(
                            "the {kind} CURRENT master-key register is not valid: there is nothing to clone"
                        ),
                    )
                    .with_master_key(*kind)
                    .with_register("current")),
                    (Some(current), Some(planned)) if &current != planned => p(Problem::new(
                        &src,
                        "pattern-mismatch",
                        format!(
                            "the {kind} CURRENT master key is {current}, the plan's source_patterns say {planned}: \
                             this is not the key the plan clones"
                        ),
                    )
                    .with_master_key(*kind)
                    .with_register("current")),
                    _ => {}
                }
            }
        }
    }
    if let Some(problem) = m_of_n_problem(c, &src, source, "phase 2a") {
        p(problem);
    }
    match source.list_registrations() {
        Err(e) => p(Problem::new(
            &src,
            "node",
            format!("cannot list registrations: {e}"),
        )),
        Ok(list) => match list.iter().find(|r| r.name == c.plan.sa_label()) {
            None => p(Problem::new(
                &src,
                "sa-not-registered",
                "the SA public key is not registered: run phase 2a",
            )),
            Some(r) if r.key.is_none() => p(Problem::new(
                &src,
                "sa-not-registered",
                "the SA public-key hash is registered but not the key: complete phase 2a",
            )),
            Some(r) if !r.clone => p(Problem::new(
                &src,
                "sa-not-registered",
                "the SA public key is registered without the CLONE mark",
            )),
            Some(r) => {
                if let Some(db) = &sa_db
                    && r.hash != db.sa_hash
                {
                    p(Problem::new(
                        &src,
                        "key-mismatch",
                        "the registered SA key is not the one in sa.db",
                    ));
                }
            }
        },
    }
    Some(SourceReady {
        css_certificate: css_certificate?,
        csr_certificate: csr_certificate?,
    })
}

/// The bundles of one target and kind, checked.
/// Does the sealed header of `b` say what its JSON says, and name this CSR key?
pub(super) fn sealed_for(
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

pub(super) fn bundles(
    c: &Ceremony,
    target: &str,
    kind: CloneableKind,
    problems: &mut Vec<Problem>,
) -> Vec<ShareBundle> {
    let mut out = Vec::new();
    let mut problem = |p: Problem| problems.push(p);
    let Some(plan_node) = c.plan.target(target).cloned() else {
        problem(Problem::new(
            target,
            "not-in-plan",
            format!("{target} is not a target of the plan"),
        ));
        return out;
    };
    for index in &c.plan.share_indices {
        let path = c.layout.bundle(target, kind, *index);
        match dbs::read_optional::<ShareBundle>(&path, BUNDLE_FORMAT, &c.plan) {
            Ok(Some(b)) => match check_nonce(c, &path, &b.provenance)
                .and_then(|()| trust::check_bundle(&c.plan, &plan_node, kind, *index, &b))
            {
                Ok(()) => out.push(b),
                Err(e) => problem(Problem::error(target, &e).with_share(kind, index.get())),
            },
            Ok(None) => problem(
                Problem::new(
                    target,
                    "missing-file",
                    format!(
                        "{} is missing: run phase 3c on the source and carry the shares here",
                        path.display()
                    ),
                )
                .with_file(path.display().to_string())
                .with_share(kind, index.get()),
            ),
            Err(e) => problem(Problem::file_error(target, &e).with_share(kind, index.get())),
        }
    }
    if let Some(first) = out.first()
        && out.iter().any(|b| b.source_pattern != first.source_pattern)
    {
        problem(
            Problem::new(
                target,
                "bundle-mismatch",
                format!("the {kind} bundles come from different source keys"),
            )
            .with_master_key(kind),
        );
    }
    out
}

/// One problem for each operation `phase` needs that `node`'s backend cannot do.
fn capability_problems(node: &str, backend: &dyn Backend, phase: Phase) -> Vec<Problem> {
    let caps = backend.capabilities();
    caps.missing(phase.needed_operations())
        .into_iter()
        .map(|op| {
            Problem::new(
                node,
                "capability",
                format!("the {} backend cannot {op}", caps.backend),
            )
            .with_operation(op)
        })
        .collect()
}

/// The problem with `node`'s share tables, if any: unreadable, or an m-of-n other than
/// the plan's (which `step` sets).
fn m_of_n_problem(
    c: &Ceremony,
    node: &str,
    backend: &mut dyn Backend,
    step: &str,
) -> Option<Problem> {
    match backend.share_status() {
        Err(e) => Some(Problem::new(
            node,
            "node",
            format!("cannot read share tables: {e}"),
        )),
        Ok(s) if s.m_of_n != Some(c.plan.m_of_n) => Some(Problem::new(
            node,
            "m-of-n-mismatch",
            format!(
                "m-of-n is {:?}, the plan says {}: run {step}",
                s.m_of_n.map(|x| x.to_string()),
                c.plan.m_of_n
            ),
        )),
        Ok(_) => None,
    }
}

/// The preflight of phase 3d: every problem at once.
pub fn preflight_target(
    c: &Ceremony,
    node: &mut dyn Backend,
    target: &str,
    problems: &mut Vec<Problem>,
) -> Option<Certificate> {
    let mut p = |p: Problem| problems.push(p);
    for problem in capability_problems(target, node, Phase::P3d) {
        p(problem);
    }
    let sa_db = trusted_sa_db(c, "phase 3d");
    let sa_hash = sa_db.as_ref().ok().map(|db| db.sa_hash.clone());
    let css_cert = match sa_db {
        Err(e) => {
            p(Problem::error(target, &e));
            None
        }
        Ok(db) => match db.css.as_ref().and_then(|css| css.certificate.clone()) {
            None => {
                p(Problem::new(
                    target,
                    "not-certified",
                    "sa.db holds no certified CSS key: carry the sa.db of phase 2b here",
                )
                .with_file(c.layout.sa_db().display().to_string()));
                None
            }
            Some(cert) => match verify_issued(c, &db, &cert, "the CSS certificate") {
                Ok(_) => Some(cert),
                Err(e) => {
                    p(Problem::error(target, &e));
                    None
                }
            },
        },
    };
    let plan = c.plan.target(target).cloned();
    match node.status() {
        Err(e) => p(Problem::new(
            target,
            "node",
            format!("cannot read status: {e}"),
        )),
        Ok(st) => {
            if st.identity.eid.as_ref() != plan.as_ref().map(|t| &t.eid) {
                p(Problem::new(
                    target,
                    "identity-mismatch",
                    format!(
                        "EID is {:?}, the plan says {:?}",
                        st.identity.eid,
                        plan.map(|t| t.eid)
                    ),
                ));
            }
            for kind in &c.plan.kinds {
                let reg = st.register(kind.kind());
                if let Some(reg) = reg
                    && reg.new == NewState::Partial
                {
                    p(Problem::new(
                        target,
                        "new-register-partial",
                        format!("the {kind} NEW register is partially loaded: clear it first"),
                    )
                    .with_master_key(*kind)
                    .with_register("new"));
                }
            }
        }
    }
    if let Some(problem) = m_of_n_problem(c, target, node, "phase 3a") {
        p(problem);
    }
    match node.list_registrations() {
        Err(e) => p(Problem::new(
            target,
            "node",
            format!("cannot list registrations: {e}"),
        )),
        Ok(list) => match list.iter().find(|r| r.name == c.plan.sa_label()) {
            Some(r) if sa_hash.as_ref().is_some_and(|h| &r.hash != h) => p(Problem::new(
                target,
                "key-mismatch",
                format!(
                    "the SA key registered here ({}) is not the pinned one: remove it with \
                     `mkclone abort --target {target} --unregister-sa` and register the pinned key",
                    r.hash.fingerprint()
                ),
            )),
            Some(r) if r.key.is_some() && r.clone => {}
            Some(_) => p(Problem::new(
                target,
                "sa-not-registered",
                "the SA public key is not fully registered with CLONE: complete phase 3a",
            )),
            None => p(Problem::new(
                target,
                "sa-not-registered",
                "the SA public key is not registered: run phase 3a",
            )),
        },
    }
    css_cert
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
            problems.push(
                Problem::new(
                    target_name,
                    "would-replace-current",
                    format!(
                        "the {kind} CURRENT register holds another valid key ({cur}): SET would make it OLD and destroy \
                         the OLD key; keys enciphered under it must then be re-enciphered. Use --replace-current if intended"
                    ),
                )
                .with_master_key(*kind)
                .with_register("current"),
            );
        }
    }
}
