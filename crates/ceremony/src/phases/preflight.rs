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
