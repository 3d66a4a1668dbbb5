//! The Backend contract (crates/conformance) on `backend = "cca"` nodes through the
//! simulated CCA host library: dlopen, the verbs' C signatures, hw-sim's cards.

mod common;

use common::SimMachine;
use mkclone_conformance::{NodeFactory, conformance_suite};
use mkclone_hostlib::HostlibBackend;

/// One simulated machine (one copy of the library) per clause; a new card per node.
struct SimLibNodes {
    machine: SimMachine,
}

impl NodeFactory for SimLibNodes {
    type Node = HostlibBackend;

    fn fresh_node(&self) -> HostlibBackend {
        self.machine.node()
    }
}

conformance_suite!(SimLibNodes {
    machine: SimMachine::new()
});
