//! Each errno gets its own error naming cause and fix: against real file descriptors that
//! are not zcrypt devices, and through the fake kernel for the rest. A CCA failure (ioctl
//! 0, non-zero return code) stays a CCA error.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mkclone::backend::{Backend, BackendError, MofN};
use mkclone::cca::verbs::{Query, Request};
use mkclone::cca::{Apqn, Transport, TransportError};
use mkclone::sim::{Fault, FaultPlan};
use mkclone::zcrypt::{IoctlTransport, ProjectEncodings, ZcryptError};
use nix::errno::Errno;

use crate::fake_kernel::{Bus, BusExt, KernelFault, backend, transport};

fn apqn() -> Apqn {
    "03.000d".parse().unwrap()
}

fn query(q: Query) -> Vec<u8> {
    Request::Query(q)
        .to_message(apqn().domain, mkclone_cca::REPLY_CAPACITY)
        .unwrap()
}

/// The error's message contains every one of `parts`.
#[track_caller]
fn says(e: &ZcryptError, parts: &[&str]) {
    let text = e.to_string();
    for part in parts {
        assert!(text.contains(part), "{text}");
    }
}

// ---- real file descriptors ---------------------------------------------------------------

#[test]
fn dev_null_is_not_a_zcrypt_device() {
    let mut t = IoctlTransport::open(Path::new("/dev/null"), apqn()).unwrap();
    let e = t
        .send_cprb(&query(Query::StatIcsa), mkclone_cca::REPLY_CAPACITY, true)
        .unwrap_err();
    assert!(matches!(e, ZcryptError::NotZcrypt { .. }), "{e:?}");
    says(
        &e,
        &["/dev/null is not a zcrypt device (ENOTTY)", "/dev/z90crypt"],
    );
    // Through the Transport trait: nothing was sent.
    assert!(matches!(
        t.send(&query(Query::StatIcsa), mkclone_cca::REPLY_CAPACITY, true),
        Err(TransportError::NotSent(_))
    ));
}

#[test]
fn a_missing_device_node_says_to_load_the_driver() {
    let e = IoctlTransport::open(Path::new("/nonexistent/z90crypt"), apqn())
        .err()
        .unwrap();
    assert!(matches!(e, ZcryptError::DeviceMissing { .. }), "{e:?}");
    says(
        &e,
        &[
            "/nonexistent/z90crypt does not exist (ENOENT)",
            "modprobe zcrypt",
        ],
    );
}

#[test]
fn a_file_without_permission() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("zcrypt-locked");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();

    // The mapping itself, whoever runs the test.
    let e = ZcryptError::from_open_errno(path.clone(), Errno::EACCES);
    assert!(e.to_string().contains("permission denied"), "{e}");
    assert!(e.to_string().contains("(EACCES)"), "{e}");

    let privileged = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .is_ok();
    match IoctlTransport::open(&path, apqn()) {
        Err(e) => {
            assert!(!privileged);
            assert!(matches!(e, ZcryptError::PermissionDenied { .. }), "{e:?}");
        }
        // Root (CAP_DAC_OVERRIDE) opens a mode-000 file: the permission check cannot fail
        // here, so the test goes on to the ioctl, which a regular file refuses with ENOTTY.
        // EACCES from the ioctl is covered through the fake kernel below.
        Ok(mut t) => {
            assert!(privileged, "only a privileged user opens a mode-000 file");
            let e = t
                .send_cprb(&query(Query::StatIcsa), mkclone_cca::REPLY_CAPACITY, true)
                .unwrap_err();
            assert!(matches!(e, ZcryptError::NotZcrypt { .. }), "{e:?}");
        }
    }
}

// ---- through the fake kernel -------------------------------------------------------------

fn bus_with_card() -> std::rc::Rc<std::cell::RefCell<crate::fake_kernel::Bus>> {
    let bus = Bus::new();
    bus.add_card(apqn(), "CARD0003");
    bus
}

fn fail_first_with(errno: Errno) -> ZcryptError {
    let bus = bus_with_card();
    bus.fault(1, KernelFault::Before(errno));
    let mut t = transport(&bus, apqn()).with_retry(mkclone::zcrypt::RetryPolicy {
        attempts: 1,
        backoff: std::time::Duration::ZERO,
    });
    t.send_cprb(&query(Query::StatIcsa), mkclone_cca::REPLY_CAPACITY, true)
        .unwrap_err()
}

#[test]
fn enodev_names_the_apqn_and_how_to_bring_it_online() {
    let bus = bus_with_card();
    for missing in ["05.000d", "03.0001"] {
        let apqn: Apqn = missing.parse().unwrap();
        let mut t = transport(&bus, apqn);
        let m = Request::Query(Query::StatIcsa)
            .to_message(apqn.domain, 4096)
            .unwrap();
        let e = t.send_cprb(&m, 4096, true).unwrap_err();
        assert!(matches!(e, ZcryptError::NotOnline { .. }), "{e:?}");
        says(
            &e,
            &[
                &format!("APQN {missing}"),
                "(ENODEV)",
                &format!("chzcrypt -e 0x{}", &missing[..2]),
            ],
        );
        assert!(!e.outcome_unknown());
    }
}

#[test]
fn eperm_points_at_the_ioctlmask() {
    let e = fail_first_with(Errno::EPERM);
    assert!(matches!(e, ZcryptError::IoctlNotAllowed { .. }), "{e:?}");
    assert!(e.to_string().contains("ioctlmask"), "{e}");
}

#[test]
fn eacces_points_at_the_device_file_permissions() {
    let e = fail_first_with(Errno::EACCES);
    assert!(matches!(e, ZcryptError::PermissionDenied { .. }), "{e:?}");
}

#[test]
fn enotty_einval_efault_and_others_each_have_their_own_error() {
    assert!(matches!(
        fail_first_with(Errno::ENOTTY),
        ZcryptError::NotZcrypt { .. }
    ));
    let e = fail_first_with(Errno::EINVAL);
    assert!(matches!(e, ZcryptError::Rejected { .. }), "{e:?}");
    assert!(e.to_string().contains("defect in mkclone"), "{e}");
    assert!(matches!(
        fail_first_with(Errno::EFAULT),
        ZcryptError::BadAddress {
            outcome_unknown: false,
            ..
        }
    ));
    let e = fail_first_with(Errno::ENOMEM);
    assert!(
        matches!(
            e,
            ZcryptError::Ioctl {
                errno: Errno::ENOMEM,
                outcome_unknown: false,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn eagain_on_an_idempotent_request_is_retried() {
    let bus = bus_with_card();
    bus.fault(1, KernelFault::Before(Errno::EAGAIN));
    bus.fault(2, KernelFault::After(Errno::EIO));
    let mut t = transport(&bus, apqn());
    let reply = t
        .send_cprb(&query(Query::StatIcsa), mkclone_cca::REPLY_CAPACITY, true)
        .unwrap();
    assert_eq!(reply.return_code, 0);
    assert_eq!(bus.calls().len(), 3);
}

#[test]
fn eio_on_a_state_changing_request_is_outcome_unknown_and_not_repeated() {
    let bus = bus_with_card();
    let mut node = backend(
        &bus,
        apqn(),
        ProjectEncodings::SendAnywayIKnowTheyAreNotIbms,
    );
    // The card sets m-of-n, then the reply is lost.
    bus.fault(1, KernelFault::After(Errno::EIO));
    let e = node.set_m_of_n(MofN::new(2, 3).unwrap()).unwrap_err();
    assert!(e.is_outcome_unknown(), "{e:?}");
    assert!(e.to_string().contains("may or may not have run"), "{e}");
    let calls = bus.calls();
    assert_eq!(calls.len(), 1, "a state-changing request is never repeated");
    assert!(calls[0].card_ran);
    // Reading the state shows it did run; a rerun converges.
    assert_eq!(
        node.share_status().unwrap().m_of_n,
        Some(MofN::new(2, 3).unwrap())
    );
    assert!(
        node.set_m_of_n(MofN::new(2, 3).unwrap())
            .unwrap()
            .was_already_done()
    );

    // EAGAIN too.
    bus.fault(4, KernelFault::Before(Errno::EAGAIN));
    let e = node.set_m_of_n(MofN::new(3, 3).unwrap()).unwrap_err();
    assert!(e.is_outcome_unknown(), "{e:?}");
    assert_eq!(bus.calls().len(), 4);
}

#[test]
fn emsgsize_is_a_defect_for_a_read_and_outcome_unknown_for_a_change() {
    let bus = bus_with_card();
    let mut t = transport(&bus, apqn());
    let e = t.send_cprb(&query(Query::StatIcsa), 224, true).unwrap_err();
    assert!(
        matches!(
            e,
            ZcryptError::ReplyTooLarge {
                capacity: 224,
                outcome_unknown: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("(EMSGSIZE)"), "{e}");

    let mut t = t.with_project_encodings(ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
    let m = Request::SetMofN { m: 2, n: 3 }
        .to_message(apqn().domain, 224)
        .unwrap();
    let e = t.send_cprb(&m, 224, false).unwrap_err();
    assert!(e.outcome_unknown(), "{e:?}");
    assert!(matches!(
        t.send(&m, 224, false),
        Err(TransportError::OutcomeUnknown(_))
    ));
}

#[test]
fn a_cca_failure_is_a_reply_not_an_errno() {
    let bus = bus_with_card();
    bus.sim(apqn()).set_faults(FaultPlan::new().at(
        1,
        Fault::Reply {
            return_code: 8,
            reason_code: 43,
        },
    ));
    let mut t = transport(&bus, apqn());
    let reply = t
        .send_cprb(&query(Query::StatIcsa), mkclone_cca::REPLY_CAPACITY, true)
        .unwrap();
    assert_eq!((reply.return_code, reply.reason_code), (8, 43));
    assert!(bus.calls()[0].errno.is_none());

    // Through CcaBackend it stays a CCA error with its codes.
    bus.sim(apqn()).set_faults(FaultPlan::new().at(
        1,
        Fault::Reply {
            return_code: 8,
            reason_code: 43,
        },
    ));
    let mut node = backend(&bus, apqn(), ProjectEncodings::Refuse);
    match node.facility_query() {
        Err(BackendError::Device {
            return_code: 8,
            reason_code: 43,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_request_the_kernel_receives_is_rounded_and_points_where_the_kernel_expects() {
    let bus = bus_with_card();
    let mut t = transport(&bus, apqn())
        .with_project_encodings(ProjectEncodings::SendAnywayIKnowTheyAreNotIbms);
    let m = Request::SetMofN { m: 2, n: 3 }
        .to_message(apqn().domain, 1001)
        .unwrap();
    assert_ne!(m.len() % 4, 0, "the message itself is not a multiple of 4");
    let reply = t.send_cprb(&m, 1001, false).unwrap();
    assert_eq!(reply.return_code, 0);
    // A reply whose length is not a multiple of 4 (a fresh card's `vp`: 237 bytes): the
    // kernel writes back 240, the reply message is exactly the CPRBX and rpld_parml bytes.
    let vp = Request::Patterns.to_message(apqn().domain, 1001).unwrap();
    let reply = t.send_cprb(&vp, 1001, true).unwrap();
    assert_eq!(reply.message.len(), 237);
    let rpld_parml = u32::from_be_bytes(reply.message[24..28].try_into().unwrap());
    assert_eq!(reply.message.len(), 220 + rpld_parml as usize);
    mkclone::cca::verbs::Reply::from_message(&reply.message, &Request::Patterns).unwrap();
    let call = &bus.calls()[0];
    assert_eq!(call.request_len as usize, m.len().div_ceil(4) * 4);
    assert_eq!(call.reply_capacity, 1004);
    assert_eq!(call.card, 3);
    assert_eq!(call.domain, 0x0d);
}
