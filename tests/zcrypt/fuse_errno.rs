//! Every errno of ZSECSENDCPRB through a FUSE-served node and the production transport,
//! mapped as the kernel's code paths imply (crates/zcrypt-fuse `model` cites them;
//! `reached_card_before_failing` in src/zcrypt/transport.rs maps them): an errno that
//! only comes before delivery is "not sent"; one that may come after delivery is, for a
//! state-changing request, "outcome unknown" and never repeated, and for a read, retried
//! or reported with nothing changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mkclone::backend::{Backend, MofN};
use mkclone::cca::verbs::{Query, Request};
use mkclone::cca::{Apqn, Transport, TransportError};
use mkclone::zcrypt::{DeviceFile, ProjectEncodings, XcrbCall, ZcryptDevice, ZcryptError};
use mkclone_zcrypt_fuse::model::STATUS_INVALID_PARM;
use mkclone_zcrypt_fuse::{Fault, NodeKind, ZcdnMasks};
use nix::errno::Errno;

use crate::fuse_node::{Machine, apqn};

const CAPACITY: usize = mkclone_cca::REPLY_CAPACITY;

fn card() -> Apqn {
    apqn(3, 0x0d)
}

fn machine() -> Machine {
    Machine::new(&[(card(), "ERRNO003")])
}

/// A machine whose next call meets `fault`.
fn machine_failing_next(fault: Fault) -> Machine {
    let m = machine();
    m.node.model().fault_next(fault);
    m
}

/// The card behind a node made through /sys/class/zcrypt/create, `/dev/mkclone`, whose
/// masks pass the ioctls `ioctls`, card 3 and the usage domain `domain`.
fn zcdn_machine(ioctls: &[u8], domain: u16) -> Machine {
    let masks = ZcdnMasks {
        ioctls: ioctls.iter().copied().collect(),
        cards: [3].into_iter().collect(),
        domains: [domain].into_iter().collect(),
        control_domains: Default::default(),
    };
    Machine::with(
        "mkclone",
        &[(card(), "ERRNO003")],
        NodeKind::Zcrypt,
        Some(masks),
    )
}

/// A read: FQ STATICSA.
fn read_request() -> Vec<u8> {
    Request::Query(Query::StatIcsa)
        .to_message(card().domain, CAPACITY)
        .unwrap()
}

/// A state change: SET-MOFN 2 of 3 (a project encoding, sent with the override).
fn change_request() -> Vec<u8> {
    Request::SetMofN { m: 2, n: 3 }
        .to_message(card().domain, CAPACITY)
        .unwrap()
}

/// Send `request` once through the node's transport (override on), by the Transport
/// trait as CcaBackend sends it.
fn send(m: &Machine, request: &[u8], idempotent: bool) -> Result<Vec<u8>, TransportError> {
    m.transport(card(), ProjectEncodings::SendAnywayIKnowTheyAreNotIbms)
        .send(request, CAPACITY, idempotent)
}

fn send_cprb(m: &Machine, request: &[u8], idempotent: bool) -> ZcryptError {
    m.transport(card(), ProjectEncodings::SendAnywayIKnowTheyAreNotIbms)
        .send_cprb(request, CAPACITY, idempotent)
        .unwrap_err()
}

/// Whether the card holds m-of-n 2 of 3, read through the node.
fn m_of_n_is_set(m: &Machine) -> bool {
    let mut node = m.backend(card(), ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
    node.share_status().unwrap().m_of_n == Some(MofN::new(2, 3).unwrap())
}

#[track_caller]
fn not_sent(r: Result<Vec<u8>, TransportError>) -> String {
    match r {
        Err(TransportError::NotSent(m)) => m,
        other => panic!("expected NotSent, got {other:?}"),
    }
}

#[track_caller]
fn outcome_unknown(r: Result<Vec<u8>, TransportError>) -> String {
    match r {
        Err(TransportError::OutcomeUnknown(m)) => m,
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
}

#[test]
fn enodev_comes_before_delivery_and_is_not_sent_even_for_a_change() {
    let m = machine();
    // No such card, then the card offline: no queue is eligible.
    let mut t = m.transport(
        apqn(5, 0x0d),
        ProjectEncodings::SendAnywayIKnowTheyAreNotIbms,
    );
    let msg = Request::SetMofN { m: 2, n: 3 }
        .to_message(0x0d, CAPACITY)
        .unwrap();
    let text = not_sent(t.send(&msg, CAPACITY, false));
    assert!(
        text.contains("(ENODEV)") && text.contains("chzcrypt -e 0x05"),
        "{text}"
    );
    m.node.model().card_mut(3).unwrap().online = false;
    let e = send_cprb(&m, &change_request(), false);
    assert!(matches!(e, ZcryptError::NotOnline { .. }), "{e:?}");
    assert!(!e.outcome_unknown());
    assert!(m.node.model().calls().iter().all(|c| !c.card_ran));
}

#[test]
fn eperm_from_a_node_whose_ioctlmask_leaves_zsecsendcprb_out() {
    // ICARSAMODEXPO and ICARSACRT only.
    let m = zcdn_machine(&[0x05, 0x06], 0x0d);
    let e = send_cprb(&m, &change_request(), false);
    assert!(matches!(e, ZcryptError::IoctlNotAllowed { .. }), "{e:?}");
    assert!(e.to_string().contains("ioctlmask"), "{e}");
    not_sent(send(&m, &change_request(), false));
    // Refused before the driver looked at the request at all.
    assert!(m.node.model().calls().is_empty());
}

#[test]
fn a_zcdn_node_passes_only_the_domains_in_its_masks() {
    let m = zcdn_machine(&[0x81], 0x0e);
    let e = send_cprb(&m, &read_request(), true);
    assert!(matches!(e, ZcryptError::NotOnline { .. }), "{e:?}");
    assert!(e.to_string().contains("aqmask"), "{e}");
}

#[test]
fn enotty_from_a_file_that_is_not_a_zcrypt_device() {
    // Its server has no ioctl; the kernel's FUSE module answers ENOTTY (fs/fuse/ioctl.c).
    let m = Machine::with(
        "not-zcrypt",
        &[(card(), "ERRNO003")],
        NodeKind::NotZcrypt,
        None,
    );
    let e = send_cprb(&m, &change_request(), false);
    assert!(matches!(e, ZcryptError::NotZcrypt { .. }), "{e:?}");
    assert!(
        e.to_string().contains("is not a zcrypt device (ENOTTY)"),
        "{e}"
    );
    not_sent(send(&m, &change_request(), false));
}

#[test]
fn emsgsize_comes_after_the_card_ran() {
    let m = machine();
    let mut t = m.transport(card(), ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
    let e = t.send_cprb(&read_request(), 224, true).unwrap_err();
    assert_matches!(
        e,
        ZcryptError::ReplyTooLarge {
            outcome_unknown: false,
            capacity: 224,
            ..
        }
    );
    let change = Request::SetMofN { m: 2, n: 3 }
        .to_message(0x0d, 224)
        .unwrap();
    outcome_unknown(t.send(&change, 224, false));
    let calls = m.node.model().calls().to_vec();
    assert!(
        calls
            .iter()
            .all(|c| c.card_ran && c.errno == Some(Errno::EMSGSIZE))
    );
    // The card did run it.
    assert!(m_of_n_is_set(&m));
}

#[test]
fn eio_after_the_kernels_own_retries() {
    let m = machine();
    // The kernel sends again after EAGAIN, up to 10 times, then answers EIO; a read is
    // sent again by mkclone (3 attempts in all).
    for k in 1..=3 {
        m.node.model().fault(k, Fault::Again(10));
    }
    let e = send_cprb(&m, &read_request(), true);
    assert_matches!(
        e,
        ZcryptError::CardFailure {
            errno: Errno::EIO,
            attempts: 3,
            ..
        }
    );
    assert!(!e.outcome_unknown());
    assert!(e.to_string().contains("Nothing was changed"), "{e}");
    let calls = m.node.model().calls().to_vec();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|c| c.attempts == 10 && c.errno == Some(Errno::EIO))
    );

    // A change: outcome unknown, not repeated.
    m.node.model().fault_next(Fault::Again(10));
    let text = outcome_unknown(send(&m, &change_request(), false));
    assert!(text.contains("up to 10 times"), "{text}");
    assert_eq!(m.node.model().calls().len(), 4);

    // Fewer than 10: the kernel's own retry succeeds, and mkclone never sees it.
    m.node.model().fault_next(Fault::Again(3));
    send(&m, &change_request(), false).unwrap();
    let last = m.node.model().calls().last().cloned().unwrap();
    assert_eq!((last.attempts, last.errno, last.card_ran), (4, None, true));
}

#[test]
fn einval_before_delivery_from_a_malformed_control_block() {
    let m = machine();
    // The kernel refuses a request control block shorter than a CPRBX before anything is
    // sent (xcrb_msg_to_type6cprb_msgx): mkclone's transport never builds one, so the
    // device is driven directly, through the same DeviceFile and ioctl.
    let mut device = DeviceFile::open(&m.device()).unwrap();
    let request = read_request();
    let mut reply = vec![0u8; 1024];
    let mut call = XcrbCall::new(3, &request[..100], &mut reply).unwrap();
    assert_eq!(device.send_cprb(&mut call), Err(Errno::EINVAL));
    assert_eq!(call.status(), 0);
    let calls = m.node.model().calls().to_vec();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].card_ran);

    // mkclone cannot tell this EINVAL from one after delivery: for a change it is
    // outcome unknown, for a read nothing changed; the status (0) says the card did not
    // answer.
    m.node.model().fault_next(Fault::Before(Errno::EINVAL));
    let e = send_cprb(&m, &change_request(), false);
    assert_matches!(
        e,
        ZcryptError::Rejected {
            status: 0,
            outcome_unknown: true,
            ..
        }
    );
    m.node.model().fault_next(Fault::Before(Errno::EINVAL));
    let e = send_cprb(&m, &read_request(), true);
    assert_matches!(
        e,
        ZcryptError::Rejected {
            outcome_unknown: false,
            ..
        }
    );
    assert!(e.to_string().contains("Nothing was changed"), "{e}");
}

#[test]
fn einval_after_delivery_from_an_error_reply_is_outcome_unknown_for_a_change() {
    let m = machine_failing_next(Fault::ErrorReply);
    let e = send_cprb(&m, &change_request(), false);
    assert_matches!(
        e,
        ZcryptError::Rejected {
            status: STATUS_INVALID_PARM,
            outcome_unknown: true,
            ..
        }
    );
    let text = e.to_string();
    for says in [
        "EINVAL",
        "0x0008044D",
        "0x8B filtered by the hypervisor",
        "may have reached the card",
    ] {
        assert!(text.contains(says), "{text}");
    }
    m.node.model().fault_next(Fault::ErrorReply);
    outcome_unknown(send(&m, &change_request(), false));
    // A read: not repeated by the transport (EINVAL is no transient failure), nothing
    // changed.
    m.node.model().fault_next(Fault::ErrorReply);
    let before = m.node.model().calls().len();
    not_sent(send(&m, &read_request(), true));
    assert_eq!(m.node.model().calls().len(), before + 1);
}

#[test]
fn efault_on_the_reply_copy_comes_after_the_card_ran() {
    let m = machine_failing_next(Fault::ReplyCopy);
    let e = send_cprb(&m, &change_request(), false);
    assert_matches!(e, ZcryptError::BadAddress { .. });
    assert!(e.outcome_unknown(), "{e:?}");
    assert!(m.node.model().calls()[0].card_ran);
    assert!(m_of_n_is_set(&m), "the card ran the request");

    // The ica_xcRB copied back last: the same.
    let m = machine_failing_next(Fault::XcrbCopyBack);
    outcome_unknown(send(&m, &change_request(), false));
    assert!(m_of_n_is_set(&m));

    // A read: a defect, nothing changed.
    m.node.model().fault_next(Fault::ReplyCopy);
    let e = send_cprb(&m, &read_request(), true);
    assert_matches!(e, ZcryptError::BadAddress { .. });
    assert!(!e.outcome_unknown(), "{e:?}");
}

#[test]
fn eintr_leaves_a_change_with_the_card_and_a_read_is_asked_again() {
    let m = machine();
    // The wait was interrupted after the card had the request (ap_cancel_message drops
    // the reply, not the request).
    m.node.model().fault_next(Fault::After(Errno::EINTR));
    let e = send_cprb(&m, &change_request(), false);
    assert_matches!(
        e,
        ZcryptError::CardFailureOutcomeUnknown {
            errno: Errno::EINTR,
            ..
        }
    );
    assert!(e.to_string().contains("interrupted"), "{e}");
    assert_eq!(m.node.model().calls().len(), 1, "never repeated");
    assert!(m_of_n_is_set(&m));

    m.node.model().fault_next(Fault::After(Errno::EINTR));
    let before = m.node.model().calls().len();
    send(&m, &read_request(), true).unwrap();
    assert_eq!(
        m.node.model().calls().len(),
        before + 2,
        "the read was asked again"
    );
}

/// A signal during a state-changing request neither interrupts it nor sends it again:
/// the transport blocks signals for the ioctl (src/zcrypt/ioctl.rs), so the kernel's
/// wait is not interrupted and the handler runs once the reply is in.
#[test]
fn a_signal_during_a_request_waits_for_the_reply() {
    let m = machine();
    let raised = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, raised.clone()).unwrap();
    m.node
        .model()
        .fault_next(Fault::Delay(Duration::from_millis(800)));
    let device = m.device();
    let (tx, rx) = std::sync::mpsc::channel();
    let caller = std::thread::spawn(move || {
        tx.send(nix::sys::pthread::pthread_self()).unwrap();
        let mut t = mkclone::zcrypt::IoctlTransport::open(&device, card())
            .unwrap()
            .with_project_encodings(ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
        t.send(&change_request(), CAPACITY, false)
    });
    let thread = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(250));
    nix::sys::pthread::pthread_kill(thread, nix::sys::signal::Signal::SIGUSR1).unwrap();
    let reply = caller.join().unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    assert!(
        raised.load(Ordering::SeqCst),
        "the handler ran after the reply"
    );
    let calls = m.node.model().calls().to_vec();
    assert_eq!(calls.len(), 1, "sent once");
    // While the caller waited, its signals were blocked: SIGINT, SIGTERM, SIGUSR1.
    let blocked = calls[0].blocked_signals.expect("the caller's SigBlk");
    for signal in [2, 15, 10] {
        assert_ne!(
            blocked & (1 << (signal - 1)),
            0,
            "signal {signal}: {blocked:#x}"
        );
    }
    // (`m.node.interrupts()` cannot show a cut wait here: the kernel drops the interrupt
    // of a request once it is answered, and the server answers the delayed request before
    // it reads anything else. The mask above is what keeps the wait whole.)
    assert!(m_of_n_is_set(&m));
}

/// A reply shaped as the kernel may hand one over: non-zero reserved bytes, bytes after
/// the parameter block inside rpld_parml and after it. Decoded, for the public FQ and for
/// the project's verbs alike.
#[test]
fn a_real_kernel_shaped_reply_is_decoded() {
    let m = machine();
    let mut node = m.backend(card(), ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
    let clean = node.facility_query().unwrap();
    m.node.model().fault_next(Fault::KernelShapedReply);
    m.node.model().fault(4, Fault::KernelShapedReply);
    assert_eq!(node.facility_query().unwrap(), clean);
    node.set_m_of_n(MofN::new(2, 3).unwrap()).unwrap();
    m.node.model().fault_next(Fault::KernelShapedReply);
    assert_eq!(
        node.share_status().unwrap().m_of_n,
        Some(MofN::new(2, 3).unwrap())
    );
    assert!(m.node.model().calls().iter().all(|c| c.errno.is_none()));
}
