//! The Backend contract (crates/conformance) on SoftHSM tokens through `Pkcs11Backend`,
//! each node a fresh token of this binary's hermetic SoftHSM (tests/common: fails, never
//! skips, without libsofthsm2.so).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use mkclone_conformance::{NodeFactory, conformance_suite};
use mkclone_pkcs11::Pkcs11Backend;

/// Token labels are unique in the process: tests run in parallel on one SoftHSM.
static TOKENS: AtomicU32 = AtomicU32::new(0);

/// Fresh SoftHSM tokens.
struct SoftHsmTokens;

impl NodeFactory for SoftHsmTokens {
    type Node = Pkcs11Backend;

    fn fresh_node(&self) -> Pkcs11Backend {
        let n = TOKENS.fetch_add(1, Ordering::Relaxed) + 1;
        common::open(&common::new_token(&format!("conformance-{n}")))
    }
}

conformance_suite!(SoftHsmTokens);
