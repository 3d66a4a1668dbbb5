//! The Backend contract (crates/conformance) on simulated cards through `CcaBackend`.

use std::cell::Cell;

use mkclone_conformance::{NodeFactory, conformance_suite};
use mkclone_hw_sim::{Apqn, SimBackend, memory_card};

/// Fresh in-memory cards, each with its own APQN and serial.
#[derive(Default)]
struct SimCards {
    made: Cell<u8>,
}

impl NodeFactory for SimCards {
    type Node = SimBackend;

    fn fresh_node(&self) -> SimBackend {
        let n = self.made.get() + 1;
        self.made.set(n);
        memory_card(Apqn::new(n, 0x0d).unwrap(), &format!("SIM{n:05}")).unwrap()
    }
}

conformance_suite!(SimCards::default());
