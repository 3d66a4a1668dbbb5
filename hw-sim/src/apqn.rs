//! APQN: an adjunct-processor queue number. The type lives in `mkclone_cca::apqn` (the
//! zcrypt driver addresses cards by it too, and must not depend on the simulator); it is
//! re-exported here so that `mkclone_hw_sim::Apqn` keeps working.

pub use mkclone_cca::apqn::{Apqn, ApqnError, MAX_DOMAIN};
