//! The phases of a ceremony (IBM's CNM utility's 1, 2a, 2b, 3a-3d, and mkclone's abort
//! and journal maintenance) and the roles nodes play in them. Each phase knows its role
//! and the operations it needs from its node.

use std::fmt;
use std::str::FromStr;

use mkclone_backend::Operation;
use serde::{Deserialize, Serialize};

/// A node's role in the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Role {
    /// Share administration: certifies CSS and CSR keys.
    Sa,
    /// The node whose master key is cloned.
    Source,
    /// A node that receives it.
    Target,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sa => "SA",
            Self::Source => "source",
            Self::Target => "target",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A phase, as journaled (`"1"`, `"2a"`, … `"3d"`, `"abort"`, `"journal"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Phase {
    /// On the SA node: the SA key, sa.db.
    #[cfg_attr(feature = "clap", value(name = "1"))]
    P1,
    /// On the source: EID, m-of-n, the SA key installed, the CSS key.
    #[cfg_attr(feature = "clap", value(name = "2a"))]
    P2a,
    /// On the SA node: the CSS key certified.
    #[cfg_attr(feature = "clap", value(name = "2b"))]
    P2b,
    /// On a target: EID, m-of-n, the SA key installed, the CSR key.
    #[cfg_attr(feature = "clap", value(name = "3a"))]
    P3a,
    /// On the SA node: a CSR key certified.
    #[cfg_attr(feature = "clap", value(name = "3b"))]
    P3b,
    /// On the source: the shares for a target.
    #[cfg_attr(feature = "clap", value(name = "3c"))]
    P3c,
    /// On a target: the shares installed, NEW confirmed, SET.
    #[cfg_attr(feature = "clap", value(name = "3d"))]
    P3d,
    /// Undoing what a ceremony left, step by step.
    #[cfg_attr(feature = "clap", value(name = "abort"))]
    Abort,
    /// Journal maintenance (`journal accept-loss`).
    #[cfg_attr(feature = "clap", value(name = "journal"))]
    Journal,
    /// Preparing simulated nodes (the demo, `sim init`): no ceremony step.
    #[cfg_attr(feature = "clap", value(name = "setup"))]
    Setup,
}

impl Phase {
    /// The cloning phases, in ceremony order.
    pub const CLONING: [Phase; 7] = [
        Self::P1,
        Self::P2a,
        Self::P2b,
        Self::P3a,
        Self::P3b,
        Self::P3c,
        Self::P3d,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::P1 => "1",
            Self::P2a => "2a",
            Self::P2b => "2b",
            Self::P3a => "3a",
            Self::P3b => "3b",
            Self::P3c => "3c",
            Self::P3d => "3d",
            Self::Abort => "abort",
            Self::Journal => "journal",
            Self::Setup => "setup",
        }
    }

    /// The role of the node a cloning phase runs on.
    pub fn role(self) -> Option<Role> {
        match self {
            Self::P1 | Self::P2b | Self::P3b => Some(Role::Sa),
            Self::P2a | Self::P3c => Some(Role::Source),
            Self::P3a | Self::P3d => Some(Role::Target),
            Self::Abort | Self::Journal | Self::Setup => None,
        }
    }

    /// Whether the phase concerns one target (`--target`).
    pub fn per_target(self) -> bool {
        matches!(self, Self::P3a | Self::P3b | Self::P3c | Self::P3d)
    }

    /// The operations the phase needs from its node, for capability checks.
    pub fn needed_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Self::P1 => &[Status, SetEid, GenerateRetainedKey],
            Self::P2a | Self::P3a => &[
                Status,
                SetEid,
                SetMofN,
                RegisterPublicKeyHash,
                RegisterPublicKey,
                GenerateRetainedKey,
            ],
            Self::P2b | Self::P3b => &[CertifyPublicKey, RetainedPublicKey],
            Self::P3c => &[Status, ShareStatus, ListRegistrations, ObtainShare],
            Self::P3d => &[Status, ShareStatus, InstallShare, SetMasterKey],
            Self::Abort | Self::Journal | Self::Setup => &[],
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown phase name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase {0:?}: the phases are 1, 2a, 2b, 3a, 3b, 3c, 3d, abort, journal and setup")]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Abort, Self::Journal, Self::Setup]
            .into_iter()
            .chain(Self::CLONING)
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

impl Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_roles() {
        for p in Phase::CLONING
            .into_iter()
            .chain([Phase::Abort, Phase::Journal, Phase::Setup])
        {
            assert_eq!(p.name().parse::<Phase>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), p);
        }
        assert_eq!("3D".parse::<Phase>().unwrap(), Phase::P3d);
        assert!("4".parse::<Phase>().is_err());
        assert_eq!(Phase::P3c.role(), Some(Role::Source));
        assert_eq!(Phase::P2b.role(), Some(Role::Sa));
        assert_eq!(Phase::P3a.role(), Some(Role::Target));
        assert!(Phase::P3b.per_target() && !Phase::P2b.per_target());
    }
}
