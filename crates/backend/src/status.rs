//! What a node reports about itself.

use serde::{Deserialize, Serialize};

use crate::types::{
    CloneableKind, Eid, MasterKeyKind, MofN, SerialNumber, ShareIndex, VerificationPattern,
};

/// Identity of a node: coprocessor serial (or token serial) and EID.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub serial: SerialNumber,
    pub eid: Option<Eid>,
}

/// NEW register states (CSUACFQ: 1 empty, 2 partially loaded, 3 full).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewState {
    Empty,
    Partial,
    Full,
}

/// CURRENT and OLD register states (CSUACFQ: 1 empty/invalid, 2 valid).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CurrentState {
    Invalid,
    Valid,
}

/// One master key's three registers, each with the patterns the node reports for it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RegisterStatus {
    pub kind: MasterKeyKind,
    pub new: NewState,
    pub current: CurrentState,
    pub old: CurrentState,
    pub new_patterns: Vec<VerificationPattern>,
    pub current_patterns: Vec<VerificationPattern>,
    pub old_patterns: Vec<VerificationPattern>,
}

/// A node's master-key view.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub identity: Identity,
    pub registers: Vec<RegisterStatus>,
}

impl NodeStatus {
    pub fn register(&self, kind: MasterKeyKind) -> Option<&RegisterStatus> {
        self.registers.iter().find(|r| r.kind == kind)
    }
}

/// STATMOFN generation states of one share index.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenerationState {
    /// 0: this index cannot be generated (beyond n, or no m-of-n).
    Cannot,
    /// 1: can be generated.
    Can,
    /// 2: generated, not yet distributed.
    Generated,
    /// 3: distributed once.
    DistributedOnce,
    /// 4: distributed more than once.
    DistributedMore,
}

/// STATMOFN reception states of one share index.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceptionState {
    /// 0: cannot be received.
    Cannot,
    /// 1: can be received.
    Can,
    /// 3: received.
    Received,
    /// 4: received more than once.
    ReceivedMore,
}

/// One master key's share tables (the STATMOFN character strings): index 0 is share 1.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ShareTables {
    pub kind: CloneableKind,
    pub generation: [GenerationState; 15],
    pub reception: [ReceptionState; 15],
}

impl ShareTables {
    pub fn generation_of(&self, index: ShareIndex) -> GenerationState {
        self.generation[usize::from(index.get() - 1)]
    }
    pub fn reception_of(&self, index: ShareIndex) -> ReceptionState {
        self.reception[usize::from(index.get() - 1)]
    }
    /// Indices received so far.
    pub fn received(&self) -> Vec<ShareIndex> {
        (1..=15u8)
            .filter_map(|i| ShareIndex::new(i).ok())
            .filter(|i| {
                matches!(
                    self.reception_of(*i),
                    ReceptionState::Received | ReceptionState::ReceivedMore
                )
            })
            .collect()
    }
}

/// A node's threshold and share tables, one per cloneable master key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ShareStatus {
    pub m_of_n: Option<MofN>,
    pub tables: Vec<ShareTables>,
}

impl ShareStatus {
    pub fn tables(&self, kind: CloneableKind) -> Option<&ShareTables> {
        self.tables.iter().find(|t| t.kind == kind)
    }
}
