//! Results that tell a fresh change from one already in place.

use serde::{Deserialize, Serialize};

/// A state-changing operation either did the work now or found it already done,
/// identically. (A different state already in place is `BackendError::Conflict`; an
/// unknown outcome is `BackendError::OutcomeUnknown`.)
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "applied", content = "value", rename_all = "kebab-case")]
pub enum Applied<T> {
    Done(T),
    AlreadyDone(T),
}

impl<T> Applied<T> {
    pub fn value(self) -> T {
        match self {
            Self::Done(v) | Self::AlreadyDone(v) => v,
        }
    }
    pub fn value_ref(&self) -> &T {
        match self {
            Self::Done(v) | Self::AlreadyDone(v) => v,
        }
    }
    pub fn was_already_done(&self) -> bool {
        matches!(self, Self::AlreadyDone(_))
    }
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Applied<U> {
        match self {
            Self::Done(v) => Applied::Done(f(v)),
            Self::AlreadyDone(v) => Applied::AlreadyDone(f(v)),
        }
    }
}

/// Where a target stands after a share was installed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum InstallProgress {
    /// `received` distinct shares of the `m` needed are held.
    NeedMore { received: u8, m: u8 },
    /// The m-th share arrived: the key is in the NEW register (CCA 4/1024).
    Complete,
}
