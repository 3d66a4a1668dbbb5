//! Fault injection: make the k-th request of a transport fail in one of the ways a real
//! coprocessor or driver can.

use std::collections::BTreeMap;

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The card answers with these return/reason codes and does nothing.
    Reply { return_code: u16, reason_code: u16 },
    /// The request never reaches the card (nothing changes).
    BeforeCard,
    /// The card runs the request (and saves its state), then the reply is lost: the
    /// caller cannot know the outcome.
    AfterCard,
    /// The card runs the request; one byte of the reply is flipped in transit at this
    /// offset (modulo the reply's length).
    CorruptReply { offset: usize },
}

/// Faults keyed by the 1-based number of the request they hit.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    faults: BTreeMap<u64, Fault>,
}

impl FaultPlan {
    pub fn new() -> Self {
        Self::default()
    }
    /// Fail request number `k` (counting from 1) with `fault`.
    pub fn at(mut self, k: u64, fault: Fault) -> Self {
        self.faults.insert(k, fault);
        self
    }
    pub fn take(&mut self, k: u64) -> Option<Fault> {
        self.faults.remove(&k)
    }
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }
}
