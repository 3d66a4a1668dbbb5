//! What the ceremony's integration tests share: plans, and file-backed simulated cards.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use mkclone_backend::{Backend, CloneableKind, Eid, MofN, RsaModulusBits, SerialNumber};
use mkclone_ceremony::{Plan, PlanSpec};
use mkclone_hw_sim::{Apqn, SimBackend, SimBus};

pub fn apqn(card: u8) -> Apqn {
    Apqn::new(card, 0x0d).unwrap()
}

/// A node's EID: its name in capitals.
pub fn eid(s: &str) -> Eid {
    Eid::new(&s.to_uppercase()).unwrap()
}

/// Plan `id`: SA "sa", source "source", `targets`, each with [`eid`] of its name; `kinds`,
/// m-of-n with share indices 1..=m, RSA 2048, dual control off, nothing pinned.
pub fn plan(
    id: &str,
    targets: &[&str],
    kinds: &[CloneableKind],
    m: u8,
    n: u8,
    rehearsal: bool,
) -> Plan {
    let m_of_n = MofN::new(m, n).unwrap();
    Plan::new(PlanSpec {
        id: id.into(),
        sa: ("sa".into(), eid("sa")),
        source: ("source".into(), eid("source")),
        targets: targets.iter().map(|t| (t.to_string(), eid(t))).collect(),
        kinds: kinds.to_vec(),
        m_of_n,
        bits: RsaModulusBits::B2048,
        rehearsal,
        share_indices: mkclone_ceremony::plan::share_indices(&(1..=m).collect::<Vec<_>>(), m_of_n)
            .unwrap(),
        dual_control: false,
        pinned_serials: Default::default(),
        sa_fingerprint: None,
        source_patterns: Vec::new(),
    })
    .unwrap()
}

/// The bus of the cards in `root/cards`.
pub fn bus(root: &Path) -> SimBus {
    SimBus::new(root.join("cards"))
}

/// Fresh cards for `nodes` (name, card number; serials S<card>); the source gets random
/// master keys.
pub fn create_cards(root: &Path, nodes: &[(&str, u8)]) {
    let bus = bus(root);
    for &(name, card) in nodes {
        let mut b = bus
            .create_card(apqn(card), &SerialNumber::new(&format!("S{card}")).unwrap())
            .unwrap();
        if name == "source" {
            for kind in CloneableKind::ALL {
                b.load_random_master_key(kind).unwrap();
            }
        }
    }
}

/// The cards of `nodes` opened anew, as a new process would, by node name.
pub fn open_cards(root: &Path, nodes: &[(&str, u8)]) -> BTreeMap<String, SimBackend> {
    let bus = bus(root);
    nodes
        .iter()
        .map(|(name, card)| (name.to_string(), bus.open_card(apqn(*card)).unwrap()))
        .collect()
}
