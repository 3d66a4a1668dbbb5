//! The ceremony plan: who is SA, source and targets, which master keys, m-of-n, and the
//! deterministic key labels that let a rerun find what an earlier run made.

use std::collections::BTreeMap;

use mkclone_backend::{
    CloneableKind, DomainError, Eid, KeyLabel, MofN, RsaModulusBits, SerialNumber, ShareIndex,
    VerificationPattern,
};

use crate::trust::SaFingerprint;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a plan is made from (the configuration's `[ceremony]` table, validated there).
#[derive(Debug, Clone)]
pub struct PlanSpec {
    pub id: String,
    pub sa: (String, Eid),
    pub source: (String, Eid),
    pub targets: Vec<(String, Eid)>,
    pub kinds: Vec<CloneableKind>,
    pub m_of_n: MofN,
    pub bits: RsaModulusBits,
    pub rehearsal: bool,
    pub share_indices: Vec<ShareIndex>,
    /// Register the SA key on source and targets only through the two dual-control
    /// commands (hash, then key, each by a named operator). `clone` registers both itself
    /// only when this is false.
    pub dual_control: bool,
    /// Serial numbers nodes must report (identity pinning), by node name.
    pub pinned_serials: BTreeMap<String, SerialNumber>,
    /// The SA key's fingerprint, pinned (`sa_fingerprint`): the ceremony's trust anchor.
    pub sa_fingerprint: Option<SaFingerprint>,
    /// The source's CURRENT patterns, read out by its operator (`source_patterns`).
    pub source_patterns: Vec<(CloneableKind, VerificationPattern)>,
}

/// A node of the plan: its name in the configuration and the EID it must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNode {
    pub name: String,
    pub eid: Eid,
    /// The serial number the node must report, when pinned.
    pub expect_serial: Option<SerialNumber>,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub sa: PlanNode,
    pub source: PlanNode,
    pub targets: Vec<PlanNode>,
    pub kinds: Vec<CloneableKind>,
    pub m_of_n: MofN,
    pub bits: RsaModulusBits,
    pub rehearsal: bool,
    /// The share indices every target receives (m of them, each <= n).
    pub share_indices: Vec<ShareIndex>,
    /// See [`PlanSpec::dual_control`].
    pub dual_control: bool,
    /// See [`PlanSpec::sa_fingerprint`].
    pub sa_fingerprint: Option<SaFingerprint>,
    /// See [`PlanSpec::source_patterns`].
    pub source_patterns: Vec<(CloneableKind, VerificationPattern)>,
}

/// Why a plan is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("ceremony id {0:?} must be 1 to 40 characters of letters, digits, '-' and '_'")]
    Id(String),
    #[error("node names must be 1 to 32 characters of letters, digits, '-' and '_': {0:?}")]
    NodeName(String),
    #[error("{0}")]
    Indices(String),
    #[error(
        "nodes {first} and {second} both have the EID {eid:?}: a share names its source and its \
         target by EID, so each node of the ceremony needs an EID of its own (set a distinct `eid` \
         for one of them)"
    )]
    SharedEid {
        first: String,
        second: String,
        eid: String,
    },
    #[error(transparent)]
    Domain(#[from] DomainError),
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validate the share indices a target receives: exactly m distinct indices within 1..=n.
pub fn share_indices(indices: &[u8], m_of_n: MofN) -> Result<Vec<ShareIndex>, PlanError> {
    let mut out = Vec::new();
    for &i in indices {
        let index = ShareIndex::new(i)?.check_against(m_of_n)?;
        if out.contains(&index) {
            return Err(PlanError::Indices(format!("index {i} is listed twice")));
        }
        out.push(index);
    }
    if out.len() != usize::from(m_of_n.m()) {
        return Err(PlanError::Indices(format!(
            "each target needs exactly m = {} shares; {} indices are listed",
            m_of_n.m(),
            out.len()
        )));
    }
    Ok(out)
}

impl Plan {
    pub fn new(spec: PlanSpec) -> Result<Self, PlanError> {
        if !valid_name(&spec.id, 40) {
            return Err(PlanError::Id(spec.id));
        }
        // A node named in two roles (SA and source on one device) is one node; two names are
        // two devices, which must not answer to one EID.
        let named = std::iter::once(&spec.sa)
            .chain(std::iter::once(&spec.source))
            .chain(spec.targets.iter());
        let mut seen: Vec<&(String, Eid)> = Vec::new();
        for node in named {
            if let Some(other) = seen.iter().find(|o| o.1 == node.1 && o.0 != node.0) {
                return Err(PlanError::SharedEid {
                    first: other.0.clone(),
                    second: node.0.clone(),
                    eid: node.1.to_string(),
                });
            }
            seen.push(node);
        }
        let pins = spec.pinned_serials;
        let node = |(name, eid): (String, Eid)| {
            if valid_name(&name, 32) {
                let expect_serial = pins.get(&name).cloned();
                Ok(PlanNode {
                    name,
                    eid,
                    expect_serial,
                })
            } else {
                Err(PlanError::NodeName(name))
            }
        };
        Ok(Self {
            id: spec.id,
            sa: node(spec.sa)?,
            source: node(spec.source)?,
            targets: spec
                .targets
                .into_iter()
                .map(node)
                .collect::<Result<_, _>>()?,
            kinds: spec.kinds,
            m_of_n: spec.m_of_n,
            bits: spec.bits,
            rehearsal: spec.rehearsal,
            share_indices: spec.share_indices,
            dual_control: spec.dual_control,
            sa_fingerprint: spec.sa_fingerprint,
            source_patterns: spec.source_patterns,
        })
    }

    /// Every node of the plan, each once (SA, source, targets).
    pub fn nodes(&self) -> Vec<&PlanNode> {
        let mut out: Vec<&PlanNode> = vec![&self.sa];
        for n in std::iter::once(&self.source).chain(self.targets.iter()) {
            if !out.iter().any(|o| o.name == n.name) {
                out.push(n);
            }
        }
        out
    }

    /// The source's CURRENT pattern for `kind`, when the plan gives it.
    pub fn source_pattern(&self, kind: CloneableKind) -> Option<&VerificationPattern> {
        self.source_patterns
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p)
    }

    pub fn target(&self, name: &str) -> Option<&PlanNode> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The label token naming this ceremony: "C" and 7 hex digits of SHA-256(id), so that
    /// it obeys CCA's label rules whatever the id.
    pub fn label_token(&self) -> String {
        let digest = Sha256::digest(self.id.as_bytes());
        format!("C{}", &hex::encode_upper(digest)[..7])
    }

    fn label(&self, role: &str) -> KeyLabel {
        // Not input-dependent: "MKCLONE", "C" + 7 hex digits and a fixed role name are
        // always a valid CCA label.
        KeyLabel::new(&format!("MKCLONE.{}.{role}", self.label_token()))
            .expect("ceremony labels are valid by construction")
    }

    /// The SA key's label (on the SA node) and the name it is registered under elsewhere.
    pub fn sa_label(&self) -> KeyLabel {
        self.label("SA")
    }
    pub fn css_label(&self) -> KeyLabel {
        self.label("CSS")
    }
    pub fn csr_label(&self) -> KeyLabel {
        self.label("CSR")
    }
}

/// A plan for unit tests: SA "sa", source "source", target "target1", SYM, 2-of-3 with
/// share indices 1 and 2, nothing pinned, dual control off.
#[cfg(test)]
pub(crate) fn test_plan(id: &str, rehearsal: bool) -> Plan {
    use mkclone_backend::{CloneableKind, Eid, MofN, RsaModulusBits};
    let m_of_n = MofN::new(2, 3).unwrap();
    let eid = |s: &str| Eid::new(s).unwrap();
    Plan::new(PlanSpec {
        id: id.into(),
        sa: ("sa".into(), eid("SA")),
        source: ("source".into(), eid("SOURCE")),
        targets: vec![("target1".into(), eid("TARGET1"))],
        kinds: vec![CloneableKind::Sym],
        m_of_n,
        bits: RsaModulusBits::B2048,
        rehearsal,
        share_indices: share_indices(&[1, 2], m_of_n).unwrap(),
        dual_control: false,
        pinned_serials: Default::default(),
        sa_fingerprint: None,
        source_patterns: Vec::new(),
    })
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two devices may not share an EID; one device named in two roles is one node.
    #[test]
    fn two_nodes_with_one_eid_are_refused_one_node_in_two_roles_is_not() {
        use mkclone_backend::{CloneableKind, Eid, MofN, RsaModulusBits};
        let m_of_n = MofN::new(2, 3).unwrap();
        let eid = |s: &str| Eid::new(s).unwrap();
        let spec = |sa: (&str, &str), source: (&str, &str), targets: &[(&str, &str)]| PlanSpec {
            id: "p".into(),
            sa: (sa.0.into(), eid(sa.1)),
            source: (source.0.into(), eid(source.1)),
            targets: targets.iter().map(|t| (t.0.into(), eid(t.1))).collect(),
            kinds: vec![CloneableKind::Sym],
            m_of_n,
            bits: RsaModulusBits::B2048,
            rehearsal: true,
            share_indices: share_indices(&[1, 2], m_of_n).unwrap(),
            dual_control: false,
            pinned_serials: Default::default(),
            sa_fingerprint: None,
            source_patterns: Vec::new(),
        };
        let err = Plan::new(spec(
            ("sa", "SA"),
            ("source", "SRC"),
            &[("t1", "T1"), ("t2", "T1")],
        ))
        .unwrap_err();
        assert_eq!(
            err,
            PlanError::SharedEid {
                first: "t1".into(),
                second: "t2".into(),
                eid: "T1".into()
            }
        );
        assert!(
            err.to_string().contains("t1 and t2 both have the EID"),
            "{err}"
        );
        assert!(matches!(
            Plan::new(spec(("sa", "SA"), ("source", "SA"), &[("t1", "T1")])),
            Err(PlanError::SharedEid { .. })
        ));
        // SA and source played by one node: one name, one EID.
        Plan::new(spec(("node", "N"), ("node", "N"), &[("t1", "T1")])).unwrap();
    }
}
