//! The provenance guard: a project-assigned verb is refused on a real device node (by
//! CcaBackend and by the transport itself) and goes through to hw-sim. On a real device
//! only public encodings are sent: FQ STATICSA and STATICSB, never STATCCAE or STATEID.

use mkclone::backend::{
    Backend, BackendError, CurrentState, GenerateRequest, KeyLabel, KeyRole, Operation,
    RsaModulusBits,
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

    // The capabilities say so before any phase runs: nothing, not even status (FQ
    // STATCCAE and STATEID are project encodings).
    let caps = node.capabilities();
    assert!(caps.operations.is_empty(), "{:?}", caps.operations);
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
    let message = request
        .to_message(apqn().domain, mkclone_cca::REPLY_CAPACITY)
        .unwrap();

    // Through the ioctl transport (the guard inside the transport, below CcaBackend).
    let bus = Bus::new();
    bus.add_card(apqn(), "CARD0003");
    let mut t = transport(&bus, apqn());
    match t.send(&message, mkclone_cca::REPLY_CAPACITY, false) {
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
        t.send_cprb(&message, mkclone_cca::REPLY_CAPACITY, false),
        Err(ZcryptError::ProjectAssigned { .. })
    ));
    assert!(bus.calls().is_empty());

    // The very same bytes through the simulator's transport: answered.
    let mut sim = memory_card(apqn(), "CARD0003").unwrap();
    let reply = sim
        .transport_mut()
        .send(&message, mkclone_cca::REPLY_CAPACITY, false)
        .unwrap();
    let decoded = mkclone::cca::verbs::Reply::from_message(&reply, &request).unwrap();
    assert_eq!(decoded.return_code, 0);

    // And with the experiment override, through the fake kernel to hw-sim.
    let mut t = transport(&bus, apqn())
        .with_project_encodings(ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
    assert!(t.allows_project_encodings());
    let reply = t
        .send_cprb(&message, mkclone_cca::REPLY_CAPACITY, false)
        .unwrap();
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

/// FQ STATCCAE and STATEID: the function code is public, their CPRB encoding is not (the
/// kernel sends only STATICSA and STATICSB: zcrypt_ccamisc.c `cca_get_info`). On a real
/// device without the override, status is refused before anything is sent, naming where
/// the EID can be read; the public facility query still works.
#[test]
fn status_on_a_real_device_sends_public_encodings_only() {
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
    assert!(!node.capabilities().supports(Operation::Status));
    let e = node.status().unwrap_err();
    assert!(matches!(e, BackendError::NotSupported { .. }), "{e:?}");
    let text = e.to_string();
    for says in ["STATCCAE", "CCA host library", "EID", "STATICSA"] {
        assert!(text.contains(says), "{text}");
    }
    assert_eq!(bus.calls().len(), before, "nothing was sent");

    let (a, b) = node.facility_query().unwrap();
    assert_eq!(a.serial.as_str(), "CARD0003");
    assert_eq!(a.asym.current, Some(CurrentState::Valid));
    // A real card reports the ASYM MDC-4 pattern here; the simulator computes no MDC-4
    // and leaves the field zero, which is "not reported" - never a made-up value.
    assert_eq!(a.asym.current_pattern, None);
    assert!(b.sym_current_pattern.is_some());
    let codes: Vec<[u8; 2]> = bus.calls()[before..].iter().map(|c| c.function).collect();
    assert_eq!(codes, [*b"FQ"; 2], "STATICSA, STATICSB");
}

#[test]
fn the_transport_itself_refuses_fq_statccae_and_stateid_on_a_real_device() {
    let bus = Bus::new();
    bus.add_card(apqn(), "CARD0003");
    let mut t = transport(&bus, apqn());
    for query in [Query::StatCcae, Query::StatEid] {
        let message = Request::Query(query)
            .to_message(apqn().domain, 4096)
            .unwrap();
        let e = t.send_cprb(&message, 4096, true).unwrap_err();
        assert!(matches!(e, ZcryptError::ProjectAssigned { .. }), "{e:?}");
        assert!(e.to_string().contains("IBM has not published"), "{e}");
    }
    // An FQ rule mkclone does not know is not sent either.
    let mut message = Request::Query(Query::StatCcae)
        .to_message(apqn().domain, 4096)
        .unwrap();
    message[224..232].copy_from_slice(b"STATAES ");
    let e = t.send_cprb(&message, 4096, true).unwrap_err();
    assert!(matches!(e, ZcryptError::UnknownFunction { .. }), "{e:?}");
    assert!(e.to_string().contains("FQ STATAES"), "{e}");
    assert!(bus.calls().is_empty());
    // The public forms go.
    let message = Request::Query(Query::StatIcsa)
        .to_message(apqn().domain, mkclone_cca::REPLY_CAPACITY)
        .unwrap();
    t.send_cprb(&message, mkclone_cca::REPLY_CAPACITY, true)
        .unwrap();
    assert_eq!(bus.calls().len(), 1);
}
