//! `mkclone demo`: a whole cloning ceremony on temporary, in-memory simulated cards.
//!
//! One SA node, one source with random SYM and ASYM master keys, two targets, 3-of-5
//! shares; every phase runs through `CcaBackend`, so every request crosses the CPRB codec
//! as bytes. REHEARSAL: simulated cards keep their keys in memory on the host.

use mkclone_backend::{
    Backend, BackendError, Certificate, CloneableKind, DomainError, Eid, GenerateRequest,
    InstallProgress, InstallRequest, KeyLabel, KeyRole, MofN, NodeStatus, ObtainRequest,
    RsaModulusBits, ShareIndex, SubjectInfo,
};
use mkclone_formats::pka::{PublicKeyTokenView, registration_hash};
use mkclone_hw_sim::{Apqn, SimBackend, memory_card};

/// What can stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    Format(String),
    #[error("the cloned key does not match on {node}: {detail}")]
    Mismatch { node: String, detail: String },
}

/// One line of the phase-by-phase log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    pub phase: &'static str,
    pub node: String,
    pub action: String,
}

/// The demo's outcome: the log and every node's final status.
#[derive(Debug, serde::Serialize)]
pub struct DemoReport {
    pub m_of_n: MofN,
    pub log: Vec<LogEntry>,
    pub nodes: Vec<(String, NodeStatus)>,
}

struct Node {
    name: String,
    backend: SimBackend,
}

fn node(name: &str, card: u8, eid: &str) -> Result<Node, DemoError> {
    let mut backend = memory_card(
        Apqn::new(card, 0x0d).map_err(|e| DemoError::Format(e.to_string()))?,
        &format!("DEMO{card:04}"),
    )?;
    backend.set_eid(&Eid::new(eid)?)?;
    Ok(Node {
        name: name.into(),
        backend,
    })
}

fn fmt_err(e: impl std::fmt::Display) -> DemoError {
    DemoError::Format(e.to_string())
}

/// Run the demo; `progress` sees each log entry as it happens.
pub fn run(mut progress: impl FnMut(&LogEntry)) -> Result<DemoReport, DemoError> {
    let m_of_n = MofN::new(3, 5)?;
    let mut log = Vec::new();
    let mut say = |phase: &'static str, node: &str, action: String| {
        let entry = LogEntry {
            phase,
            node: node.into(),
            action,
        };
        progress(&entry);
        log.push(entry);
    };
    let sa_label = KeyLabel::new("MKCLONE.DEMO.SA")?;
    let css_label = KeyLabel::new("MKCLONE.DEMO.CSS")?;
    let csr_label = KeyLabel::new("MKCLONE.DEMO.CSR")?;

    let mut sa = node("sa", 1, "DEMO SA")?;
    let mut source = node("source", 2, "DEMO SOURCE")?;
    let mut targets = [
        node("target1", 3, "DEMO TARGET 1")?,
        node("target2", 4, "DEMO TARGET 2")?,
    ];
    for kind in CloneableKind::ALL {
        source.backend.load_random_master_key(kind)?;
    }
    say(
        "setup",
        "source",
        "random SYM and ASYM master keys loaded and set".into(),
    );

    // Phase 1: the SA key.
    let sa_token = sa
        .backend
        .generate_retained_key(&GenerateRequest {
            label: sa_label.clone(),
            role: KeyRole::Sa,
            bits: RsaModulusBits::B2048,
            clone: true,
        })?
        .value();
    let sa_section = PublicKeyTokenView::decode(&sa_token)
        .map_err(fmt_err)?
        .certificate
        .ok_or_else(|| fmt_err("SA token without certificate"))?;
    let sa_hash = registration_hash(&sa_section).map_err(fmt_err)?;
    let sa_cert = sa_section.encode().map_err(fmt_err)?;
    say(
        "1",
        &sa.name,
        format!(
            "SA key {sa_label} generated; fingerprint {}",
            sa_hash.fingerprint()
        ),
    );

    let install_sa = |n: &mut Node,
                      say: &mut dyn FnMut(&'static str, &str, String),
                      phase: &'static str|
     -> Result<(), DemoError> {
        n.backend
            .register_public_key_hash(&sa_label, &sa_hash, true)?;
        say(
            phase,
            &n.name,
            "SA public-key hash registered (CLONE)".into(),
        );
        n.backend.register_public_key(&sa_label, &sa_cert, true)?;
        say(
            phase,
            &n.name,
            "SA public key registered (CLONE), matches its hash".into(),
        );
        Ok(())
    };
    let certify = |sa: &mut Node,
                   n: &mut Node,
                   label: &KeyLabel,
                   role: KeyRole|
     -> Result<Certificate, DemoError> {
        let token = n
            .backend
            .generate_retained_key(&GenerateRequest {
                label: label.clone(),
                role,
                bits: RsaModulusBits::B2048,
                clone: true,
            })?
            .value();
        let id = n.backend.status()?.identity;
        Ok(sa.backend.certify_public_key(
            &sa_label,
            &token,
            &SubjectInfo {
                eid: id.eid,
                serial: Some(id.serial),
            },
        )?)
    };

    // Phase 2a/2b: the source's CSS key, certified.
    source.backend.set_m_of_n(m_of_n)?;
    say("2a", &source.name, format!("m-of-n set to {m_of_n}"));
    install_sa(&mut source, &mut say, "2a")?;
    let css_cert = certify(&mut sa, &mut source, &css_label, KeyRole::Css)?;
    say("2a", &source.name, format!("CSS key {css_label} generated"));
    say("2b", &sa.name, "CSS key certified by SA".into());

    for target in targets.iter_mut() {
        // Phase 3a/3b: the target's CSR key, certified.
        target.backend.set_m_of_n(m_of_n)?;
        install_sa(target, &mut say, "3a")?;
        let csr_cert = certify(&mut sa, target, &csr_label, KeyRole::Csr)?;
        say("3a", &target.name, format!("CSR key {csr_label} generated"));
        say(
            "3b",
            &sa.name,
            format!("CSR key of {} certified by SA", target.name),
        );
        for kind in CloneableKind::ALL {
            // Phase 3c: shares 1, 3 and 5 (any 3 of the 5 would do).
            let shares = [1u8, 3, 5]
                .into_iter()
                .map(|i| {
                    source
                        .backend
                        .obtain_share(&ObtainRequest {
                            kind,
                            index: ShareIndex::new(i)?,
                            css_label: css_label.clone(),
                            sa_name: sa_label.clone(),
                            csr_certificate: csr_cert.clone(),
                        })
                        .map_err(DemoError::from)
                })
                .collect::<Result<Vec<_>, _>>()?;
            say(
                "3c",
                &source.name,
                format!("{kind} shares 1, 3, 5 obtained for {}", target.name),
            );
            // Phase 3d: install, confirm, set.
            let mut last = InstallProgress::NeedMore {
                received: 0,
                m: m_of_n.m(),
            };
            for share in shares {
                last = target
                    .backend
                    .install_share(&InstallRequest {
                        kind,
                        csr_label: csr_label.clone(),
                        sa_name: sa_label.clone(),
                        css_certificate: css_cert.clone(),
                        share,
                    })?
                    .value();
            }
            if last != InstallProgress::Complete {
                return Err(DemoError::Mismatch {
                    node: target.name.clone(),
                    detail: format!("{kind}: shares installed but the key is not complete"),
                });
            }
            let expected = pattern(&source.backend.status()?, kind, true);
            let got = pattern(&target.backend.status()?, kind, false);
            if expected != got || expected.is_none() {
                return Err(DemoError::Mismatch {
                    node: target.name.clone(),
                    detail: format!(
                        "{kind}: NEW {got:?} is not the source's CURRENT {expected:?}; SET refused"
                    ),
                });
            }
            target.backend.set_master_key(kind)?;
            say(
                "3d",
                &target.name,
                format!(
                    "{kind} shares installed, NEW confirmed equal to the source's CURRENT, SET"
                ),
            );
        }
    }

    let mut nodes = Vec::new();
    for n in std::iter::once(&mut sa)
        .chain(std::iter::once(&mut source))
        .chain(targets.iter_mut())
    {
        nodes.push((n.name.clone(), n.backend.status()?));
    }
    Ok(DemoReport { m_of_n, log, nodes })
}

/// The first SHA-1-method pattern of a register (CURRENT or NEW).
fn pattern(
    status: &NodeStatus,
    kind: CloneableKind,
    current: bool,
) -> Option<mkclone_backend::VerificationPattern> {
    let reg = status.register(kind.kind())?;
    let list = if current {
        &reg.current_patterns
    } else {
        &reg.new_patterns
    };
    list.first().cloned()
}
