//! A minimal driver of the cloning phases over the `Backend` trait, for protocol tests.
//! (The production orchestrator is crates/ceremony; this one is deliberately plain so
//! that each test reads as the protocol itself.)
#![allow(dead_code)]

use mkclone_backend::{
    Applied, Backend, Certificate, CloneableKind, Eid, InstallProgress, KeyLabel, KeyRole, MofN,
    SealedShare, VerificationPattern,
};
pub use mkclone_hw_sim::{Apqn, SimBackend, memory_card};

pub fn label(s: &str) -> KeyLabel {
    KeyLabel::new(s).unwrap()
}

pub fn card(n: u8, eid: &str) -> SimBackend {
    let mut b = memory_card(Apqn::new(n, 0x0d).unwrap(), &format!("SIM{n:05}")).unwrap();
    b.set_eid(&Eid::new(eid).unwrap()).unwrap();
    b
}

pub const SA_LABEL: &str = "MKCLONE.SA";
pub const CSS_LABEL: &str = "MKCLONE.CSS";
pub const CSR_LABEL: &str = "MKCLONE.CSR";

// Phase 1, the SA key registered, keys generated and certified by the SA node, and the
// requests that move a share: the conformance suite's own driver.
pub use mkclone_conformance::{SaKey, certify, generate, install_request, install_sa, sa_key};

/// The SA node after phase 1, with its key.
pub struct Sa {
    pub node: SimBackend,
    pub key: SaKey,
}

pub fn phase1(mut node: SimBackend) -> Sa {
    let key = sa_key(&mut node);
    Sa { node, key }
}

/// Phases 2a + 2b: CSS key on the source, SA key installed there, CSS certified by SA.
pub fn phase2(sa: &mut Sa, source: &mut SimBackend, m_of_n: MofN) -> Certificate {
    source.set_m_of_n(m_of_n).unwrap();
    install_sa(source, &sa.key);
    certify(&mut sa.node, source, CSS_LABEL, KeyRole::Css)
}

/// Phases 3a + 3b: CSR key on the target, SA key installed there, CSR certified by SA.
pub fn phase3ab(sa: &mut Sa, target: &mut SimBackend, m_of_n: MofN) -> Certificate {
    target.set_m_of_n(m_of_n).unwrap();
    install_sa(target, &sa.key);
    certify(&mut sa.node, target, CSR_LABEL, KeyRole::Csr)
}

pub fn obtain(
    source: &mut SimBackend,
    kind: CloneableKind,
    index: u8,
    csr_certificate: &Certificate,
) -> SealedShare {
    source
        .obtain_share(&mkclone_conformance::obtain_request(
            kind,
            index,
            csr_certificate,
        ))
        .unwrap()
}

pub fn install(
    target: &mut SimBackend,
    kind: CloneableKind,
    css_certificate: &Certificate,
    share: SealedShare,
) -> Applied<InstallProgress> {
    target
        .install_share(&install_request(kind, css_certificate, share))
        .unwrap()
}

pub fn current_pattern(node: &mut SimBackend, kind: CloneableKind) -> Option<VerificationPattern> {
    node.status()
        .unwrap()
        .register(kind.kind())
        .unwrap()
        .current_patterns
        .first()
        .cloned()
}

pub fn new_pattern(node: &mut SimBackend, kind: CloneableKind) -> Option<VerificationPattern> {
    node.status()
        .unwrap()
        .register(kind.kind())
        .unwrap()
        .new_patterns
        .first()
        .cloned()
}

/// Everything up to 3b for one source and `targets` targets.
pub struct Rig {
    pub sa: Sa,
    pub source: SimBackend,
    pub css_certificate: Certificate,
    pub targets: Vec<(SimBackend, Certificate)>,
    pub m_of_n: MofN,
}

pub fn rig(m: u8, n: u8, targets: usize) -> Rig {
    rig_with_source(card(2, "SOURCE"), m, n, targets)
}

/// [`rig`] around `source` (a card with its EID set, e.g. one kept in a file).
pub fn rig_with_source(mut source: SimBackend, m: u8, n: u8, targets: usize) -> Rig {
    let m_of_n = MofN::new(m, n).unwrap();
    let mut sa = phase1(card(1, "SA NODE"));
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
    }
    let css_certificate = phase2(&mut sa, &mut source, m_of_n);
    let targets = (0..targets)
        .map(|i| {
            let mut t = card(10 + i as u8, &format!("TARGET {}", i + 1));
            let csr = phase3ab(&mut sa, &mut t, m_of_n);
            (t, csr)
        })
        .collect();
    Rig {
        sa,
        source,
        css_certificate,
        targets,
        m_of_n,
    }
}

/// 3c + 3d for one target and one kind with the shares `indices`, then SET.
pub fn clone_into(rig: &mut Rig, target: usize, kind: CloneableKind, indices: &[u8]) {
    let csr = rig.targets[target].1.clone();
    let shares: Vec<SealedShare> = indices
        .iter()
        .map(|&i| obtain(&mut rig.source, kind, i, &csr))
        .collect();
    let m = usize::from(rig.m_of_n.m());
    for (k, share) in shares.into_iter().enumerate() {
        let progress = install(
            &mut rig.targets[target].0,
            kind,
            &rig.css_certificate,
            share,
        )
        .value();
        if k + 1 < m {
            assert_eq!(
                progress,
                InstallProgress::NeedMore {
                    received: k as u8 + 1,
                    m: m as u8
                }
            );
        } else {
            assert_eq!(progress, InstallProgress::Complete);
        }
    }
    // Confirm before SET: NEW equals the source's CURRENT.
    let source_pattern = current_pattern(&mut rig.source, kind).unwrap();
    assert_eq!(
        new_pattern(&mut rig.targets[target].0, kind),
        Some(source_pattern)
    );
    rig.targets[target].0.set_master_key(kind).unwrap();
}

/// The whole card state, for before/after comparisons.
pub fn state_json(node: &SimBackend) -> String {
    serde_json::to_string(&node.transport().store().snapshot().unwrap()).unwrap()
}

/// Generate the CSS key on `node`.
pub fn generate_css(node: &mut SimBackend) {
    generate(node, CSS_LABEL, KeyRole::Css);
}
