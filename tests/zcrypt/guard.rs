//! The provenance guard: a project-assigned verb is refused on a real device node (by
//! CcaBackend and by the transport itself) and goes through to hw-sim. Status on a real
//! device uses public encodings only.

use mkclone::backend::{
    Backend, BackendError, CurrentState, GenerateRequest, KeyLabel, KeyRole, MasterKeyKind,
    NewState, Operation, RsaModulusBits,
};
use mkclone::cca::verbs::{Query, Request};
use mkclone::cca::{Apqn, Transport, TransportError};
use mkclone::sim::memory_card;
use mkclone::zcrypt::{ProjectEncodings, ZcryptError};

use crate::fake_kernel::{Bus, BusExt, backend, transport};

fn generate_request() -> GenerateRequest {
    GenerateRequest {
        label: KeyLabel::new("MKCLONE.SA").unwrap(),
        role: KeyRole::Sa,
        bits: RsaModulusBits::B2048,
        clone: true,
    }
}

fn apqn() -> Apqn {
    "03.000d".parse().unwrap()
}

#[test]
fn a_project_assigned_verb_is_refused_on_a_real_device_and_nothing_reaches_the_kernel() {
    let bus = Bus::new();
    bus.add_card(apqn(), "CARD0003");
    let mut node = backend(&bus, apqn(), ProjectEncodings::Refuse);

    let e = node.generate_retained_key(&generate_request()).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            BackendError::NotSupported {
                operation: Operation::GenerateRetainedKey,
                backend: "zcrypt",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        text.contains("IBM has not published the encoding"),
        "{text}"
    );
    assert!(text.contains("simulator"), "{text}");
    assert!(bus.calls().is_empty(), "nothing may reach the device");

    // The capabilities say so before any phase runs: status only.
    let caps = node.capabilities();
    assert!(caps.operations.contains(&Operation::Status));
    assert!(!caps.operations.contains(&Operation::GenerateRetainedKey));
    assert!(!caps.operations.contains(&Operation::ObtainShare));
    assert!(!caps.operations.contains(&Operation::SetEid));
    assert!(!caps.rehearsal_only);
}

#[test]
fn the_transport_refuses_a_project_assigned_request_itself_and_hw_sim_accepts_the_same_bytes() {
    let request = Request::GenerateRetained {
        label: KeyLabel::new("MKCLONE.SA").unwrap(),
        usage: mkclone::backend::KeyUsage::SignatureOnly,
        clone: true,
        bits: 2048,
    };
    let message = request.to_message(apqn().domain, 12 * 1024).unwrap();

    // Through the ioctl transport (the guard inside the transport, below CcaBackend).
    let bus = Bus::new();
    bus.add_card(apqn(), "CARD0003");
    let mut t = transport(&bus, apqn());
    match t.send(&message, 12 * 1024, false) {
        Err(TransportError::NotSent(m)) => {
            assert!(
                m.contains("IBM has not published the encoding of PKA_Key_Generate"),
                "{m}"
            );
            assert!(m.contains("\"kg\""), "{m}");
            assert!(m.contains("backend = \"sim\""), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        t.send_cprb(&message, 12 * 1024, false),
        Err(ZcryptError::ProjectAssigned { .. })
    ));
    assert!(bus.calls().is_empty());

    // The very same bytes through the simulator's transport: answered.
    let mut sim = memory_card(apqn(), "CARD0003").unwrap();
    let reply = sim
        .transport_mut()
        .send(&message, 12 * 1024, false)
        .unwrap();
    let decoded = mkclone::cca::verbs::Reply::from_message(&reply, &request).unwrap();
    assert_eq!(decoded.return_code, 0);

    // And with the experiment override, through the fake kernel to hw-sim.
    let mut t = transport(&bus, apqn())
        .with_project_encodings(ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
    assert!(t.allows_project_encodings());
    let reply = t.send_cprb(&message, 12 * 1024, false).unwrap();
    assert_eq!((reply.return_code, reply.reason_code), (0, 0));
    assert_eq!(bus.calls().len(), 1);
    assert_eq!(&bus.calls()[0].function, b"kg");
}

#[test]
fn an_unknown_function_code_is_not_sent() {
    let bus = Bus::new();
    bus.add_card(apqn(), "CARD0003");
    let mut t = transport(&bus, apqn());
    let mut message = Request::Query(Query::StatCcae)
        .to_message(apqn().domain, 4096)
        .unwrap();
    message[220..222].copy_from_slice(b"ZZ");
    assert!(matches!(
        t.send_cprb(&message, 4096, true),
        Err(ZcryptError::UnknownFunction { .. })
    ));
    assert!(bus.calls().is_empty());
}

#[test]
fn status_on_a_real_device_uses_public_encodings_only() {
    let bus = Bus::new();
    bus.add_card(apqn(), "CARD0003");
    // Give the simulated card master keys (with the override: the card is a simulator).
    let mut setup = backend(
        &bus,
        apqn(),
        ProjectEncodings::SendAnywayIKnowTheyAreNotIbms,
    );
    for kind in mkclone::backend::CloneableKind::ALL {
        setup.load_random_master_key(kind).unwrap();
    }
    let before = bus.calls().len();
    let mut node = backend(&bus, apqn(), ProjectEncodings::Refuse);
    let status = node.status().unwrap();
    assert_eq!(status.identity.serial.as_str(), "CARD0003");
    assert_eq!(status.identity.eid, None);
    let sym = status.register(MasterKeyKind::Sym).unwrap();
    assert_eq!(
        (sym.new, sym.current),
        (NewState::Empty, CurrentState::Valid)
    );
    assert_eq!(sym.current_patterns.len(), 1);
    let asym = status.register(MasterKeyKind::Asym).unwrap();
    assert_eq!(asym.current, CurrentState::Valid);
    // A real card reports the ASYM MDC-4 pattern here; the simulator computes no MDC-4
    // and leaves the field zero, which is "not reported" - never a made-up value.
    assert!(asym.current_patterns.is_empty());
    let codes: Vec<[u8; 2]> = bus.calls()[before..].iter().map(|c| c.function).collect();
    assert_eq!(codes, [*b"FQ"; 4], "STATCCAE, STATEID, STATICSA, STATICSB");
}
