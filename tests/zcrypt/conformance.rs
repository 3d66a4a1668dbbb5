//! The Backend contract (crates/conformance) through CcaBackend -> IoctlTransport ->
//! ica_xcRB -> fake kernel -> hw-sim, with the experiment override the whole-ceremony
//! test uses (the cloning verbs' encodings are the project's own). Without the override
//! a real-device node offers no `Backend` operation at all (status too needs the project
//! encodings of FQ STATCCAE and STATEID): the capabilities clause checks that every one
//! answers NotSupported; the public facility query works.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use mkclone::cca::{Apqn, CcaBackend};
use mkclone::zcrypt::{IoctlTransport, ProjectEncodings};
use mkclone_conformance::{NodeFactory, clauses, conformance_suite};

use crate::fake_kernel::{Bus, BusExt, FakeKernel, backend};

/// Fresh simulated card domains behind one fake kernel, one APQN each.
struct ZcryptNodes {
    bus: Rc<RefCell<Bus>>,
    encodings: ProjectEncodings,
    cards: Cell<u8>,
}

impl ZcryptNodes {
    fn new(encodings: ProjectEncodings) -> Self {
        Self {
            bus: Bus::new(),
            encodings,
            cards: Cell::new(0),
        }
    }
}

impl NodeFactory for ZcryptNodes {
    type Node = CcaBackend<IoctlTransport<FakeKernel>>;

    fn fresh_node(&self) -> Self::Node {
        let card = self.cards.get() + 1;
        self.cards.set(card);
        let apqn = Apqn::new(card, 0x0d).unwrap();
        self.bus.add_card(apqn, &format!("ZC{card:06}"));
        backend(&self.bus, apqn, self.encodings)
    }
}

mod with_project_encodings {
    use super::*;

    conformance_suite!(ZcryptNodes::new(
        ProjectEncodings::SendAnywayIKnowTheyAreNotIbms
    ));
}

#[test]
fn without_project_encodings_every_cloning_verb_answers_not_supported() {
    let factory = ZcryptNodes::new(ProjectEncodings::Refuse);
    clauses::capabilities_are_honest(&factory);
    // Nothing went to a card: even status needs FQ STATCCAE and STATEID, whose encodings
    // are the project's own.
    assert!(factory.bus.calls().is_empty(), "{:?}", factory.bus.calls());
    // The public facility query does go, as FQ.
    factory.fresh_node().facility_query().unwrap();
    let calls = factory.bus.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| &c.function == b"FQ"), "{calls:?}");
}
