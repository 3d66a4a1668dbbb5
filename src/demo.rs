//! `mkclone demo`: a whole ceremony on temporary simulated cards, through the same
//! orchestrator `mkclone clone` uses.
//!
//! One SA node, one source with random SYM and ASYM master keys, two targets, 3-of-5
//! shares, in a temporary directory removed at the end. REHEARSAL: simulated cards keep
//! their keys in plain files.

use std::collections::BTreeMap;

use mkclone_backend::{
    Backend, CloneableKind, DomainError, Eid, MofN, RsaModulusBits, SerialNumber,
};
use mkclone_ceremony::progress::{Observer, Progress};
use mkclone_ceremony::run::{CloneOptions, CloneSummary, run_clone};
use mkclone_ceremony::{Ceremony, CeremonyError, PhaseReport, Plan, PlanSpec};
use mkclone_hw_sim::{Apqn, SimBus, StoreError};

/// What can stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Ceremony(#[from] CeremonyError),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Card(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

/// The demo's outcome.
#[derive(Debug, serde::Serialize)]
pub struct DemoReport {
    pub m_of_n: MofN,
    pub summary: CloneSummary,
}

/// Run the demo (the targets in parallel, as `clone` does); `progress` sees each phase's
/// report as it completes.
pub fn run(
    progress: impl Fn(&PhaseReport) + Send + Sync + 'static,
) -> Result<DemoReport, DemoError> {
    let dir = tempfile::tempdir()
        .map_err(|e| DemoError::Setup(format!("cannot create a temporary directory: {e}")))?;
    let bus = SimBus::new(dir.path().join("cards"));
    let roles = [
        ("sa", 1u8, "DEMO SA"),
        ("source", 2, "DEMO SOURCE"),
        ("target1", 3, "DEMO TARGET 1"),
        ("target2", 4, "DEMO TARGET 2"),
    ];
    let mut nodes = BTreeMap::new();
    let mut eids = BTreeMap::new();
    for (name, card, eid) in roles {
        let apqn = Apqn::new(card, 0x0d).map_err(|e| DemoError::Setup(e.to_string()))?;
        let backend = bus.create_card(apqn, &SerialNumber::new(&format!("DEMO{card:04}"))?)?;
        nodes.insert(name.to_string(), backend);
        eids.insert(name, Eid::new(eid)?);
    }
    let m_of_n = MofN::new(3, 5)?;
    let plan = Plan::new(PlanSpec {
        id: "demo".into(),
        sa: ("sa".into(), eids["sa"].clone()),
        source: ("source".into(), eids["source"].clone()),
        targets: vec![
            ("target1".into(), eids["target1"].clone()),
            ("target2".into(), eids["target2"].clone()),
        ],
        kinds: CloneableKind::ALL.to_vec(),
        m_of_n,
        bits: RsaModulusBits::B2048,
        rehearsal: true,
        share_indices: mkclone_ceremony::plan::share_indices(&[1, 3, 5], m_of_n)
            .map_err(|e| DemoError::Setup(e.to_string()))?,
        // One operator runs the demo: no dual control (a real plan keeps it on).
        dual_control: false,
        pinned_serials: Default::default(),
        sa_fingerprint: None,
        source_patterns: Vec::new(),
    })
    .map_err(|e| DemoError::Setup(e.to_string()))?;

    if let Some(source) = nodes.get_mut("source") {
        for kind in CloneableKind::ALL {
            source
                .load_random_master_key(kind)
                .map_err(|e| DemoError::Setup(format!("source: {e}")))?;
        }
    }
    let mut setup = PhaseReport::new(mkclone_ceremony::Phase::Setup, "source");
    setup.did(mkclone_ceremony::PhaseAction::SourceKeysLoaded {
        kinds: mkclone_backend::CloneableKind::ALL.to_vec(),
    });
    progress(&setup);

    let mut ceremony = Ceremony::open(&dir.path().join("ceremony"), plan)?;
    let options = CloneOptions {
        jobs: None,
        observer: Some(Observer::new(move |event| {
            if let Progress::PhaseDone { report, .. } = event {
                progress(report);
            }
        })),
        ..CloneOptions::default()
    };
    let summary = run_clone(&mut ceremony, &mut nodes, &options)?;
    Ok(DemoReport { m_of_n, summary })
}
