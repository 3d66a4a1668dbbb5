//! The access-control audit (the "Audit access controls" task of CNM's cloning procedure):
//! which access-control points of the device's role each step needs, whether the role has
//! them enabled, and what the operator must check by hand where the device cannot be asked
//! or no public document names the point.

use serde::Serialize;

use crate::backend::Operation;

/// An access-control point ("command") as IBM documents it for a verb: its offset, its
/// name, and where that is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AccessPoint {
    /// The offset in the role's access-control-point list (X'001A' is 0x001A).
    pub offset: u16,
    pub name: &'static str,
    /// The verb and keywords that need it.
    pub verb: &'static str,
    /// The public document that gives the offset.
    pub source: &'static str,
}

/// One point a step needs, and what the role says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PointCheck {
    pub operation: Operation,
    pub point: AccessPoint,
    pub enabled: bool,
}

/// What the operator must check by hand for a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManualCheck {
    pub operation: Operation,
    pub what: String,
}

/// A node's audit for a set of steps. Empty (no role, nothing checked, nothing by hand)
/// for a backend whose device has no access-control roles (the simulator, PKCS#11 tokens).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AccessAudit {
    /// The role whose points were read.
    pub role: Option<String>,
    pub checked: Vec<PointCheck>,
    pub by_hand: Vec<ManualCheck>,
}

impl AccessAudit {
    /// The points a step needs that the role does not enable.
    pub fn missing(&self) -> impl Iterator<Item = &PointCheck> {
        self.checked.iter().filter(|c| !c.enabled)
    }

    pub fn is_empty(&self) -> bool {
        self.role.is_none() && self.checked.is_empty() && self.by_hand.is_empty()
    }
}

impl std::fmt::Display for AccessPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X'{:04X}' {} ({})", self.offset, self.name, self.verb)
    }
}
